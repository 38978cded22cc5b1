//! Moving MNIST (Srivastava et al. 2015): 20 frames of 64×64 pixels in which two 28×28 MNIST
//! digits move with constant velocity and bounce off the edges; the model sees the first 10
//! frames and predicts the last 10.
//!
//! Generation ([`draw_sequence`], [`render`]): each digit's top-left corner starts uniform in
//! [0, 36]² (real-valued, rounded to whole pixels when drawn), moves [`SPEED`] = 3 pixels per
//! frame in a direction drawn uniform in [0, 2π), and bounces: when a step would take the
//! corner outside [0, 36] (the digit's box outside the frame) that velocity component is
//! reflected and so is the position ([`advance`]). The digits are combined by the pixel-wise
//! maximum; pixels are bytes, scaled to [0, 1] in batches. Sequence `i` of a split is drawn
//! from a ChaCha8 generator seeded by the data seed on stream `split·2⁴⁸ + i`, so any sequence
//! is made on demand (nothing is stored) and the same (seed, split, index) gives the same
//! sequence. Training sequences use MNIST training digits, test sequences MNIST test digits. A
//! user's video can replace the generated test set (`--video`): a `.npy` file (the published
//! `(20, N, 64, 64)` uint8 layout, [`npy`]) or a folder of frame folders
//! (`DIR/<sequence>/<frame>.png|.jpg|.jpeg`, 20 grey 64×64 frames a sequence, [`frames`]).
//!
//! Frame prediction, one step per frame transition ([`STEPS`] = 19 steps): the input at step
//! t < 10 is frame t (4096 features); at steps 10..18 the input is all zeros, so the model
//! forecasts frames 11–20 from frames 1–10 alone, with no ground truth fed back (the field's
//! setting, which makes the numbers comparable). The target at step t is frame t + 1; only
//! steps 9..18 (predicting frames 11–20) count ([`Objective::MultiLabelPerStep`]: per-pixel
//! binary cross-entropy with logits against the pixel intensities in [0, 1], summed over the
//! pixels, averaged over the 10 predicted steps).
//!
//! Metrics, on the test set, from σ(read-out), both conventions of the field: the per-sequence
//! cross-entropy summed over the 10 × 64 × 64 predicted pixels and averaged over sequences
//! (Shi et al. 2015: FC-LSTM 4832, ConvLSTM 3670.85), and the squared error summed over a
//! frame's pixels, averaged over the 10 predicted frames and the sequences (PredRNN-style
//! tables, intensities in [0, 1]).
//!
//! Digit classification (`moving-mnist-digits`, [`Mode::Digits`]): the same generated sequences,
//! all [`FRAMES`] frames fed one per step (4096 features), and [`CLASSES`] independent sigmoid
//! outputs read at the last step: the multi-hot set of the digits in the video (one or two
//! distinct classes, since both digits may be of the same class). The target is that set at
//! the last step and zeros before it; the mask is 1 on the last step only, so the loss
//! ([`Objective::MultiLabelPerStep`]) is the binary cross-entropy summed over the 10 classes of
//! the last step. A user's video carries no digit labels, so this mode refuses one. Metrics
//! ([`DigitScores`]): exact-set accuracy (the headline, `test_set_accuracy`: every class right
//! at the 0.5 threshold), the per-class F1 averaged over the classes (macro), and the mean
//! cross-entropy per video; a non-finite output is never right.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TaskError};
use crate::frames;
use crate::npy;
use crate::task::{Batch, Evaluation, Objective, Predict, SequenceTask, Split};

/// Frames per sequence.
pub const FRAMES: usize = 20;
/// Frames the model sees.
pub const OBSERVED: usize = 10;
/// Frames it predicts.
pub const PREDICTED: usize = FRAMES - OBSERVED;
/// Steps of a batch: one per transition (the last frame is only a target).
pub const STEPS: usize = FRAMES - 1;
/// Side of a frame.
pub const SIDE: usize = 64;
/// Pixels of a frame: the input and output size.
pub const PIXELS: usize = SIDE * SIDE;
/// Side of an MNIST digit.
pub const DIGIT: usize = 28;
/// Largest coordinate of a digit's top-left corner (64 − 28).
pub const MAX_CORNER: f64 = (SIDE - DIGIT) as f64;
/// Pixels a digit moves per frame (Srivastava et al.'s generator moves about 3.6; 3 is kept
/// as a round documented constant).
pub const SPEED: f64 = 3.0;
/// Digits per sequence.
pub const DIGITS: usize = 2;
/// Digit classes: the outputs of [`Mode::Digits`].
pub const CLASSES: usize = 10;
/// Default (train, test) sizes, used when a size is 0.
pub const DEFAULT_SIZES: (usize, usize) = (10_000, 1_000);
/// Published results in the cross-entropy convention (Shi et al. 2015, Table 1).
pub const SHI_FC_LSTM_BCE: f64 = 4832.49;
pub const SHI_CONVLSTM_BCE: f64 = 3670.85;

/// One sequence's random draw.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceDraw {
    /// Index of each digit in its MNIST split.
    pub digits: [usize; DIGITS],
    /// Top-left corner (column, row) of each digit in frame 0.
    pub starts: [[f64; 2]; DIGITS],
    /// Velocity (columns, rows per frame) of each digit, of length [`SPEED`].
    pub velocities: [[f64; 2]; DIGITS],
}

fn split_stream(split: Split) -> u64 {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

/// The generator of sequence `index` of `split`: ChaCha8 seeded by `seed`, on stream
/// `split·2⁴⁸ + index` (train 0, test 1).
pub fn sequence_rng(seed: u64, split: Split, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(split_stream(split) << 48 | index as u64);
    rng
}

/// Draws the digits (uniform among `available`), start corners (uniform in [0, 36]²) and
/// directions (uniform angle) of one sequence.
pub fn draw_sequence(rng: &mut ChaCha8Rng, available: usize) -> SequenceDraw {
    let mut d = SequenceDraw {
        digits: [0; DIGITS],
        starts: [[0.0; 2]; DIGITS],
        velocities: [[0.0; 2]; DIGITS],
    };
    for k in 0..DIGITS {
        d.digits[k] = rng.random_range(0..available);
        d.starts[k] = [
            rng.random::<f64>() * MAX_CORNER,
            rng.random::<f64>() * MAX_CORNER,
        ];
        let angle = rng.random::<f64>() * std::f64::consts::TAU;
        d.velocities[k] = [SPEED * angle.cos(), SPEED * angle.sin()];
    }
    d
}

/// One frame's move: each coordinate advances by its velocity; one that would leave [0, 36]
/// is reflected at the edge and its velocity component flips sign.
pub fn advance(pos: &mut [f64; 2], vel: &mut [f64; 2]) {
    for k in 0..2 {
        let mut p = pos[k] + vel[k];
        if p < 0.0 {
            p = -p;
            vel[k] = -vel[k];
        } else if p > MAX_CORNER {
            p = 2.0 * MAX_CORNER - p;
            vel[k] = -vel[k];
        }
        pos[k] = p;
    }
}

/// The top-left corners of a digit over `frames` frames, from its start and velocity.
pub fn trajectory(start: [f64; 2], velocity: [f64; 2], frames: usize) -> Vec<[f64; 2]> {
    let (mut p, mut v) = (start, velocity);
    let mut out = Vec::with_capacity(frames);
    for f in 0..frames {
        if f > 0 {
            advance(&mut p, &mut v);
        }
        out.push(p);
    }
    out
}

/// The [`FRAMES`] frames (`FRAMES × PIXELS` bytes) of a draw, with the digits' 784-byte images
/// taken from `images` (`n × 784` bytes).
pub fn render(images: &[u8], draw: &SequenceDraw) -> Vec<u8> {
    let mut out = vec![0u8; FRAMES * PIXELS];
    for k in 0..DIGITS {
        let img = &images[draw.digits[k] * DIGIT * DIGIT..(draw.digits[k] + 1) * DIGIT * DIGIT];
        for (f, corner) in trajectory(draw.starts[k], draw.velocities[k], FRAMES)
            .into_iter()
            .enumerate()
        {
            let (cx, cy) = (corner[0].round() as usize, corner[1].round() as usize);
            let frame = &mut out[f * PIXELS..(f + 1) * PIXELS];
            for r in 0..DIGIT {
                let row = &mut frame[(cy + r) * SIDE + cx..(cy + r) * SIDE + cx + DIGIT];
                for (o, &v) in row.iter_mut().zip(&img[r * DIGIT..(r + 1) * DIGIT]) {
                    *o = (*o).max(v);
                }
            }
        }
    }
    out
}

/// The draw of sequence `index` of `split` over `available` digits with data seed `seed`.
pub fn sequence_draw(seed: u64, split: Split, index: usize, available: usize) -> SequenceDraw {
    draw_sequence(&mut sequence_rng(seed, split, index), available)
}

/// Sequence `index` of `split` made from `images` (`n × 784` bytes) with data seed `seed`.
pub fn generate(images: &[u8], seed: u64, split: Split, index: usize) -> Vec<u8> {
    render(
        images,
        &sequence_draw(seed, split, index, images.len() / (DIGIT * DIGIT)),
    )
}

/// The multi-hot set of digit classes `labels` (each below [`CLASSES`]).
pub fn multi_hot(labels: &[u8]) -> [f32; CLASSES] {
    let mut t = [0.0; CLASSES];
    for &l in labels {
        t[l as usize] = 1.0;
    }
    t
}

/// The digit-classification scores of a test set, one video at a time ([`Self::add`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DigitScores {
    /// Videos scored.
    pub videos: usize,
    /// Videos whose predicted set (classes with σ(logit) > 0.5) is exactly their digits.
    pub exact: usize,
    /// Per class: true positives, false positives, false negatives.
    pub tp: [usize; CLASSES],
    pub fp: [usize; CLASSES],
    pub fn_: [usize; CLASSES],
    /// Cross-entropy summed over the classes and the videos (nats).
    pub bce: f64,
}

impl DigitScores {
    /// Scores one video: the [`CLASSES`] logits of its last step against its multi-hot target.
    /// A non-finite logit counts as the wrong answer for its class (a false negative where the
    /// digit is present, a false positive where it is not) and an infinite cross-entropy.
    pub fn add(&mut self, logits: &[f32], truth: &[f32; CLASSES]) {
        let mut all_right = logits.len() == CLASSES;
        for c in 0..CLASSES {
            let z = logits.get(c).map_or(f64::NAN, |&z| z as f64);
            let present = truth[c] > 0.5;
            let said = if z.is_finite() { z > 0.0 } else { !present };
            match (said, present) {
                (true, true) => self.tp[c] += 1,
                (true, false) => self.fp[c] += 1,
                (false, true) => self.fn_[c] += 1,
                (false, false) => {}
            }
            all_right &= said == present;
            self.bce += pixel_bce(z, truth[c] as f64);
        }
        self.exact += all_right as usize;
        self.videos += 1;
    }

    /// The share of videos named exactly (0 when none were scored).
    pub fn set_accuracy(&self) -> f64 {
        if self.videos == 0 {
            0.0
        } else {
            self.exact as f64 / self.videos as f64
        }
    }

    /// The mean over the classes of F1 = 2·TP / (2·TP + FP + FN); a class neither present nor
    /// predicted anywhere (nothing to get right or wrong) is left out of the mean (0 when every
    /// class is).
    pub fn macro_f1(&self) -> f64 {
        let f1: Vec<f64> = (0..CLASSES)
            .filter_map(|c| {
                let d = 2 * self.tp[c] + self.fp[c] + self.fn_[c];
                (d > 0).then(|| 2.0 * self.tp[c] as f64 / d as f64)
            })
            .collect();
        if f1.is_empty() {
            0.0
        } else {
            f1.iter().sum::<f64>() / f1.len() as f64
        }
    }

    /// The cross-entropy per video, summed over the classes (the training loss's scale).
    pub fn mean_bce(&self) -> f64 {
        if self.videos == 0 {
            0.0
        } else {
            self.bce / self.videos as f64
        }
    }
}

/// −log p(y) of one pixel of intensity `y` ∈ [0, 1] from the logit `z`:
/// softplus(z) − y·z, stably; infinite for a non-finite logit.
pub fn pixel_bce(z: f64, y: f64) -> f64 {
    if !z.is_finite() {
        return f64::INFINITY;
    }
    z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z
}

/// Cross-entropy (nats) and squared error of σ(logits) of one frame against its bytes.
pub fn frame_scores(logits: &[f32], target: &[u8]) -> (f64, f64) {
    let (mut bce, mut se) = (0.0, 0.0);
    for (&z, &t) in logits.iter().zip(target) {
        let (z, y) = (z as f64, t as f64 / 255.0);
        if !z.is_finite() {
            return (f64::INFINITY, f64::INFINITY);
        }
        bce += pixel_bce(z, y);
        let p = 1.0 / (1.0 + (-z).exp());
        se += (p - y) * (p - y);
    }
    (bce, se)
}

/// Where a split's sequences come from.
enum Source {
    /// Generated on demand from MNIST digits (`n × 784` bytes) and their classes (`n` bytes,
    /// or none when the digits came unlabelled).
    Generated {
        images: Vec<u8>,
        labels: Vec<u8>,
        len: usize,
    },
    /// Read from a user's video (a `.npy` file or a folder of frame folders).
    Video { video: npy::Video, file: PathBuf },
}

/// What a [`MovingMnistTask`] asks of its sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forecast frames 11–20 from frames 1–10 (`moving-mnist`).
    #[default]
    Predict,
    /// Name the digits of the video from its 20 frames (`moving-mnist-digits`).
    Digits,
}

impl Mode {
    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Predict => "moving-mnist",
            Mode::Digits => "moving-mnist-digits",
        }
    }
    /// Steps of a batch.
    pub fn steps(self) -> usize {
        match self {
            Mode::Predict => STEPS,
            Mode::Digits => FRAMES,
        }
    }
    /// Outputs per step.
    pub fn outputs(self) -> usize {
        match self {
            Mode::Predict => PIXELS,
            Mode::Digits => CLASSES,
        }
    }
}

/// Why [`Mode::Digits`] takes no video.
const NO_VIDEO_FOR_DIGITS: &str = "moving-mnist-digits cannot take --video: a video (.npy file or \
     frame folders) carries no digit labels, and this task scores the digits it names; drop \
     --video, or use moving-mnist to forecast a video's frames";

/// The Moving MNIST task: frame prediction or digit classification ([`Mode`]).
pub struct MovingMnistTask {
    train: Source,
    test: Source,
    seed: u64,
    mode: Mode,
}

impl MovingMnistTask {
    /// Generated sequences from the MNIST files in `dir`: `train_size` from the training digits,
    /// `test_size` from the test digits (0: [`DEFAULT_SIZES`]); with `video`, the test set is
    /// the video's sequences instead (its first `test_size`; 0: all), bad sequences of a frame
    /// folder skipped with `skip_bad` (see [`Self::with_video`]).
    pub fn new(
        dir: &Path,
        train_size: usize,
        test_size: usize,
        seed: u64,
        video: Option<&Path>,
        skip_bad: bool,
    ) -> Result<Self> {
        let (train, test) = crate::mnist::load(dir)?;
        let mut task = Self::from_labelled_digits(
            (train.images, train.labels),
            (test.images, test.labels),
            train_size,
            test_size,
            seed,
        )?;
        if let Some(file) = video {
            task = task.with_video(file, test_size, skip_bad)?;
        }
        Ok(task)
    }

    /// The digit-classification task ([`Mode::Digits`]) over the MNIST files in `dir`:
    /// `train_size` sequences from the training digits, `test_size` from the test digits
    /// (0: [`DEFAULT_SIZES`]).
    pub fn digits(dir: &Path, train_size: usize, test_size: usize, seed: u64) -> Result<Self> {
        Self::new(dir, train_size, test_size, seed, None, false)?.with_mode(Mode::Digits)
    }

    /// The frame-prediction task over unlabelled digit images (`n × 784` bytes each split).
    pub fn from_digits(
        train_images: Vec<u8>,
        test_images: Vec<u8>,
        train_size: usize,
        test_size: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::from_labelled_digits(
            (train_images, Vec::new()),
            (test_images, Vec::new()),
            train_size,
            test_size,
            seed,
        )
    }

    /// The frame-prediction task over digit images and their classes, `(images, labels)` each
    /// split (`n × 784` bytes and `n` classes below 10, or no labels); [`Self::with_mode`]
    /// turns it into the digit-classification task.
    pub fn from_labelled_digits(
        train: (Vec<u8>, Vec<u8>),
        test: (Vec<u8>, Vec<u8>),
        train_size: usize,
        test_size: usize,
        seed: u64,
    ) -> Result<Self> {
        for (what, (im, lab)) in [("training", &train), ("test", &test)] {
            if im.is_empty() || im.len() % (DIGIT * DIGIT) != 0 {
                return Err(TaskError::Data(format!(
                    "moving-mnist needs whole 28×28 {what} digits, got {} bytes",
                    im.len()
                )));
            }
            let n = im.len() / (DIGIT * DIGIT);
            if !lab.is_empty() && lab.len() != n {
                return Err(TaskError::Data(format!(
                    "moving-mnist: {n} {what} digits but {} labels",
                    lab.len()
                )));
            }
            if let Some(bad) = lab.iter().find(|&&l| l as usize >= CLASSES) {
                return Err(TaskError::Data(format!(
                    "moving-mnist: a {what} digit is labelled {bad}, not a class 0–9"
                )));
            }
        }
        let or = |n: usize, d: usize| if n == 0 { d } else { n };
        Ok(Self {
            train: Source::Generated {
                images: train.0,
                labels: train.1,
                len: or(train_size, DEFAULT_SIZES.0),
            },
            test: Source::Generated {
                images: test.0,
                labels: test.1,
                len: or(test_size, DEFAULT_SIZES.1),
            },
            seed,
            mode: Mode::Predict,
        })
    }

    /// The task asking `mode` of the same sequences. [`Mode::Digits`] needs labelled digits
    /// (as [`Self::new`] reads them) and refuses a video test set.
    pub fn with_mode(mut self, mode: Mode) -> Result<Self> {
        if mode == Mode::Digits {
            for split in [Split::Train, Split::Test] {
                match self.source(split) {
                    Source::Video { .. } => {
                        return Err(TaskError::Config(NO_VIDEO_FOR_DIGITS.into()))
                    }
                    Source::Generated { labels, .. } if labels.is_empty() => {
                        return Err(TaskError::Data(
                            "moving-mnist-digits needs the digits' labels, and these digits \
                             came without"
                                .into(),
                        ))
                    }
                    Source::Generated { .. } => {}
                }
            }
        }
        self.mode = mode;
        Ok(self)
    }

    /// What the task asks of its sequences.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Uses the sequences of `file` as the test set, its first `test_size` (0: all); see
    /// [`load_video`]. Refused in [`Mode::Digits`] (a video has no digit labels).
    pub fn with_video(self, file: &Path, test_size: usize, skip_bad: bool) -> Result<Self> {
        if self.mode == Mode::Digits {
            return Err(TaskError::Config(NO_VIDEO_FOR_DIGITS.into()));
        }
        self.with_loaded_video(load_video(file, test_size, skip_bad)?, file)
    }

    /// Uses `video`, read from `file` by [`load_video`], as the test set; refused in
    /// [`Mode::Digits`].
    pub fn with_loaded_video(mut self, video: npy::Video, file: &Path) -> Result<Self> {
        if self.mode == Mode::Digits {
            return Err(TaskError::Config(NO_VIDEO_FOR_DIGITS.into()));
        }
        self.test = Source::Video {
            video,
            file: file.to_path_buf(),
        };
        Ok(self)
    }

    /// The random draw behind generated sequence `index` of `split` (`None` for a video).
    pub fn draw(&self, split: Split, index: usize) -> Option<SequenceDraw> {
        match self.source(split) {
            Source::Generated { images, .. } => Some(sequence_draw(
                self.seed,
                split,
                index,
                images.len() / (DIGIT * DIGIT),
            )),
            Source::Video { .. } => None,
        }
    }

    /// The classes of the two digits drawn in sequence `index` of `split` (`None` for a video
    /// or unlabelled digits).
    pub fn digit_labels(&self, split: Split, index: usize) -> Option<[u8; DIGITS]> {
        match self.source(split) {
            Source::Generated { labels, .. } if !labels.is_empty() => {
                let d = self.draw(split, index)?;
                Some(d.digits.map(|k| labels[k]))
            }
            _ => None,
        }
    }

    fn source(&self, split: Split) -> &Source {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// The [`FRAMES`] frames of sequence `index` of `split`, `FRAMES × PIXELS` bytes.
    pub fn sequence(&self, split: Split, index: usize) -> Cow<'_, [u8]> {
        match self.source(split) {
            Source::Generated { images, .. } => {
                Cow::Owned(generate(images, self.seed, split, index))
            }
            Source::Video { video, .. } => Cow::Borrowed(video.sequence(index)),
        }
    }
}

/// The first `test_size` (0: all) sequences of a user's video `file`: a folder of frame
/// folders ([`frames::read_frame_folders`]; a bad sequence stops with its error, or with
/// `skip_bad` is left out and reported by [`SequenceTask::warnings`]) or else a
/// `(20, N, 64, 64)` uint8 `.npy` array ([`npy::read_video`], read whole or refused).
pub fn load_video(file: &Path, test_size: usize, skip_bad: bool) -> Result<npy::Video> {
    if file.is_dir() {
        frames::read_frame_folders(file, FRAMES, SIDE, SIDE, test_size, skip_bad)
    } else {
        npy::read_video(file, FRAMES, SIDE, SIDE, test_size)
    }
}

/// x, target and mask of one sequence's steps (see the module doc), appended to the buffers.
fn push_steps(frames: &[u8], x: &mut Vec<f32>, target: &mut Vec<f32>) {
    for s in 0..STEPS {
        if s < OBSERVED {
            x.extend(
                frames[s * PIXELS..(s + 1) * PIXELS]
                    .iter()
                    .map(|&v| v as f32 / 255.0),
            );
        } else {
            x.extend(std::iter::repeat_n(0.0f32, PIXELS));
        }
        target.extend(
            frames[(s + 1) * PIXELS..(s + 2) * PIXELS]
                .iter()
                .map(|&v| v as f32 / 255.0),
        );
    }
}

/// The mask of one sequence: 1 on steps 9..18 (predicting frames 11–20), 0 before.
pub fn step_mask() -> [f32; STEPS] {
    let mut m = [0.0; STEPS];
    m[OBSERVED - 1..].fill(1.0);
    m
}

/// x and target of one sequence in [`Mode::Digits`], appended to the buffers: the
/// [`FRAMES`] frames as inputs; the multi-hot set of `labels` at the last step, zeros before.
fn push_digit_steps(frames: &[u8], labels: &[u8], x: &mut Vec<f32>, target: &mut Vec<f32>) {
    x.extend(frames[..FRAMES * PIXELS].iter().map(|&v| v as f32 / 255.0));
    target.extend(std::iter::repeat_n(0.0f32, (FRAMES - 1) * CLASSES));
    target.extend(multi_hot(labels));
}

/// The mask of one sequence in [`Mode::Digits`]: 1 on the last step only.
pub fn last_step_mask() -> [f32; FRAMES] {
    let mut m = [0.0; FRAMES];
    m[FRAMES - 1] = 1.0;
    m
}

/// Writes `bytes` to `path` through a temporary sibling and a rename, so a reader never sees a
/// partly written file.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            TaskError::Data(format!("{}: cannot write: {e}", path.display()))
        })
}

/// A PNG of two rows of [`PREDICTED`] 64×64 grey frames: `true_frames` on top, `predicted`
/// below (each `PREDICTED × PIXELS` intensities in [0, 1]; values outside are clamped, NaN is
/// drawn black), with a 2-pixel mid-grey gap between frames and rows.
pub fn strip_png_bytes(true_frames: &[f32], predicted: &[f32]) -> Result<Vec<u8>> {
    const GAP: usize = 2;
    let n = PREDICTED;
    for (what, v) in [("true", true_frames), ("predicted", predicted)] {
        if v.len() != n * PIXELS {
            return Err(TaskError::Data(format!(
                "a prediction strip needs {n} {what} frames of {PIXELS} pixels, got {} values",
                v.len()
            )));
        }
    }
    let width = n * SIDE + (n - 1) * GAP;
    let height = 2 * SIDE + GAP;
    let mut img = vec![128u8; width * height];
    for (row, frames) in [true_frames, predicted].into_iter().enumerate() {
        for f in 0..n {
            for r in 0..SIDE {
                for c in 0..SIDE {
                    let v = frames[f * PIXELS + r * SIDE + c];
                    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
                    let (y, x) = (row * (SIDE + GAP) + r, f * (SIDE + GAP) + c);
                    img[y * width + x] = (v * 255.0).round() as u8;
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let png_err = |e: png::EncodingError| TaskError::Data(format!("PNG encoding: {e}"));
        let mut w = enc.write_header().map_err(png_err)?;
        w.write_image_data(&img).map_err(png_err)?;
    }
    Ok(out)
}

/// Writes [`strip_png_bytes`] to `path` (through a temporary name and a rename).
pub fn strip_png(true_frames: &[f32], predicted: &[f32], path: &Path) -> Result<()> {
    write_replacing(path, &strip_png_bytes(true_frames, predicted)?)
}

/// The true frames 11–20 of `batch`'s sequence `row` and σ of the model's read-out `y` at the
/// steps predicting them, each `PREDICTED × PIXELS` values: what [`strip_png`] draws.
pub fn predicted_frames(batch: &Batch, y: &Tensor, row: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let pick = |t: &Tensor| -> Result<Vec<f32>> {
        Ok(t.narrow(0, row, 1)?
            .narrow(1, OBSERVED - 1, PREDICTED)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?)
    };
    let truth = pick(&batch.target)?;
    let p = pick(y)?
        .into_iter()
        .map(|z| 1.0 / (1.0 + (-z).exp()))
        .collect();
    Ok((truth, p))
}

impl MovingMnistTask {
    /// The digit-classification metrics ([`DigitScores`]) on the test set.
    fn evaluate_digits(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        let n = self.len(Split::Test);
        let order: Vec<usize> = (0..n).collect();
        let mut scores = DigitScores::default();
        for chunk in order.chunks(batch_size.max(1)) {
            let batch = self.batch(Split::Test, chunk, dtype, device)?;
            let y = predict(&batch)?;
            let (b, t, o) = y.dims3()?;
            if b != chunk.len() || t != FRAMES || o != CLASSES {
                return Err(TaskError::Data(format!(
                    "the model's read-out is {b}×{t}×{o}; moving-mnist-digits needs \
                     {}×{FRAMES}×{CLASSES}",
                    chunk.len()
                )));
            }
            let z: Vec<f32> = y
                .narrow(1, FRAMES - 1, 1)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            for (row, &i) in chunk.iter().enumerate() {
                let labels = self.digit_labels(Split::Test, i).ok_or_else(|| {
                    TaskError::Data("moving-mnist-digits: a test sequence has no labels".into())
                })?;
                scores.add(&z[row * CLASSES..(row + 1) * CLASSES], &multi_hot(&labels));
            }
        }
        let (acc, f1, bce) = (scores.set_accuracy(), scores.macro_f1(), scores.mean_bce());
        let mut summary = format!(
            "test set accuracy {acc:.4} ({} of {n} videos with exactly their digits above 0.5), \
             per-digit F1 macro-average {f1:.4}, cross-entropy {bce:.4} nats per video (summed \
             over the 10 digits); naming the one or two distinct digits of 20-frame 64×64 \
             Moving MNIST videos, on {n} test sequences generated from MNIST test digits (data \
             seed {})",
            scores.exact, self.seed
        );
        if !bce.is_finite() {
            summary.push_str(
                "; the model emitted a non-finite logit, which counts as wrong and makes the \
                 cross-entropy infinite",
            );
        }
        let values = BTreeMap::from([
            ("test_set_accuracy".to_string(), acc),
            ("test_macro_f1".to_string(), f1),
            ("test_bce".to_string(), bce),
            ("test_sequences".to_string(), n as f64),
        ]);
        Ok(Evaluation {
            metric_name: "test_set_accuracy".into(),
            metric: acc,
            solved: None,
            values,
            summary,
        })
    }
}

impl SequenceTask for MovingMnistTask {
    fn name(&self) -> &str {
        self.mode.name()
    }
    fn input_size(&self) -> usize {
        PIXELS
    }
    fn output_size(&self) -> usize {
        self.mode.outputs()
    }
    fn objective(&self) -> Objective {
        Objective::MultiLabelPerStep
    }
    fn len(&self, split: Split) -> usize {
        match self.source(split) {
            Source::Generated { len, .. } => *len,
            Source::Video { video, .. } => video.sequences,
        }
    }

    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let b = indices.len();
        let n = self.len(split);
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(TaskError::Data(format!(
                "{}: sequence {bad} asked of a split of {n}",
                self.name()
            )));
        }
        let (steps, outputs) = (self.mode.steps(), self.mode.outputs());
        let mut x = Vec::with_capacity(b * steps * PIXELS);
        let mut target = Vec::with_capacity(b * steps * outputs);
        let mut mask = Vec::with_capacity(b * steps);
        for &i in indices {
            let frames = self.sequence(split, i);
            match self.mode {
                Mode::Predict => {
                    push_steps(&frames, &mut x, &mut target);
                    mask.extend(step_mask());
                }
                Mode::Digits => {
                    let labels = self.digit_labels(split, i).ok_or_else(|| {
                        TaskError::Data(format!("moving-mnist-digits: sequence {i} has no labels"))
                    })?;
                    push_digit_steps(&frames, &labels, &mut x, &mut target);
                    mask.extend(last_step_mask());
                }
            }
        }
        Ok(Batch {
            x: Tensor::from_vec(x, (b, steps, PIXELS), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(target, (b, steps, outputs), device)?.to_dtype(dtype)?,
            mask: Some(Tensor::from_vec(mask, (b, steps), device)?.to_dtype(dtype)?),
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![steps; b],
        })
    }

    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        if self.mode == Mode::Digits {
            return self.evaluate_digits(batch_size, dtype, device, predict);
        }
        let n = self.len(Split::Test);
        let order: Vec<usize> = (0..n).collect();
        let (mut bce, mut se, mut copy_se) = (0.0f64, 0.0f64, 0.0f64);
        for chunk in order.chunks(batch_size.max(1)) {
            let batch = self.batch(Split::Test, chunk, dtype, device)?;
            let y = predict(&batch)?;
            let (b, t, o) = y.dims3()?;
            if b != chunk.len() || t != STEPS || o != PIXELS {
                return Err(TaskError::Data(format!(
                    "the model's read-out is {b}×{t}×{o}; moving-mnist needs {}×{STEPS}×{PIXELS}",
                    chunk.len()
                )));
            }
            let z: Vec<f32> = y
                .narrow(1, OBSERVED - 1, PREDICTED)?
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1()?;
            for (row, &i) in chunk.iter().enumerate() {
                let frames = self.sequence(Split::Test, i);
                let last = &frames[(OBSERVED - 1) * PIXELS..OBSERVED * PIXELS];
                for k in 0..PREDICTED {
                    let truth = &frames[(OBSERVED + k) * PIXELS..(OBSERVED + k + 1) * PIXELS];
                    let at = (row * PREDICTED + k) * PIXELS;
                    let (l, s) = frame_scores(&z[at..at + PIXELS], truth);
                    bce += l;
                    se += s;
                    copy_se += last
                        .iter()
                        .zip(truth)
                        .map(|(&a, &b)| ((a as f64 - b as f64) / 255.0).powi(2))
                        .sum::<f64>();
                }
            }
        }
        let test_bce = bce / n as f64;
        let mse = se / (n * PREDICTED) as f64;
        let copy_mse = copy_se / (n * PREDICTED) as f64;
        let source = match &self.test {
            Source::Generated { .. } => format!(
                "{n} test sequences generated from MNIST test digits (data seed {})",
                self.seed
            ),
            Source::Video { file, video } if video.skipped.is_empty() => format!(
                "the first {n} of the {} sequences of {}",
                video.in_file,
                file.display()
            ),
            Source::Video { file, video } => format!(
                "{n} of the {} sequences of {} ({} skipped as bad)",
                video.in_file,
                file.display(),
                video.skipped.len()
            ),
        };
        let mut summary = format!(
            "test cross-entropy {test_bce:.2} nats per sequence (summed over the 10 predicted \
             64×64 frames; Shi et al. 2015: FC-LSTM {SHI_FC_LSTM_BCE}, ConvLSTM \
             {SHI_CONVLSTM_BCE}), MSE {mse:.2} per frame (squared error summed over a frame, \
             intensities in [0, 1]; copying frame 10: {copy_mse:.2}); frames 11–20 forecast \
             from frames 1–10 without ground truth, on {source}"
        );
        if !test_bce.is_finite() {
            summary.push_str(
                "; the model emitted a non-finite logit on a predicted frame, so the \
                 cross-entropy and MSE are infinite",
            );
        }
        let values = BTreeMap::from([
            ("neg_test_bce".to_string(), -test_bce),
            ("test_bce".to_string(), test_bce),
            ("test_mse_per_frame".to_string(), mse),
            ("baseline_copy_last_mse_per_frame".to_string(), copy_mse),
            ("test_sequences".to_string(), n as f64),
        ]);
        Ok(Evaluation {
            metric_name: "neg_test_bce".into(),
            metric: -test_bce,
            solved: None,
            values,
            summary,
        })
    }

    fn warnings(&self) -> Vec<String> {
        match &self.test {
            Source::Video { video, .. } => video
                .skipped
                .iter()
                .map(|s| format!("skipped a bad video sequence: {s}"))
                .collect(),
            Source::Generated { .. } => Vec::new(),
        }
    }
}

impl std::fmt::Debug for MovingMnistTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovingMnistTask")
            .field("train", &self.len(Split::Train))
            .field("test", &self.len(Split::Test))
            .field("seed", &self.seed)
            .field("mode", &self.mode)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` synthetic 28×28 "digits": digit k is a filled square of intensity 55 + 20k with a
    /// bright 1-pixel border, so frames hold 0, 255 and in-between values.
    fn digits(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n * 784];
        for k in 0..n {
            for r in 4..24 {
                for c in 4..24 {
                    let edge = r == 4 || r == 23 || c == 4 || c == 23;
                    v[k * 784 + r * 28 + c] = if edge { 255 } else { 55 + 20 * k as u8 };
                }
            }
        }
        v
    }

    fn task(train: usize, test: usize) -> MovingMnistTask {
        MovingMnistTask::from_digits(digits(5), digits(3), train, test, 7).unwrap()
    }

    #[test]
    fn bouncing_keeps_digits_inside_and_reflects_the_velocity() {
        // Heading left at the left edge: x reflects from −2 to 2, vx flips; y unchanged.
        let (mut p, mut v) = ([1.0, 10.0], [-3.0, 0.0]);
        advance(&mut p, &mut v);
        assert_eq!((p, v), ([2.0, 10.0], [3.0, 0.0]));
        // Heading down-right into the corner: both components reflect.
        let (mut p, mut v) = ([35.0, 34.5], [2.0, 2.0]);
        advance(&mut p, &mut v);
        assert_eq!((p, v), ([35.0, 35.5], [-2.0, -2.0]));
        // Over many random draws every corner stays in [0, 36], every step is SPEED long
        // (up to the reflection) and directions do flip.
        let mut flips = 0;
        for i in 0..200 {
            let d = draw_sequence(&mut sequence_rng(3, Split::Train, i), 5);
            for k in 0..DIGITS {
                let vel = d.velocities[k];
                assert!((vel[0].hypot(vel[1]) - SPEED).abs() < 1e-12);
                let (mut p, mut v) = (d.starts[k], vel);
                for _ in 0..FRAMES {
                    let before = v;
                    advance(&mut p, &mut v);
                    assert!(p.iter().all(|&c| (0.0..=MAX_CORNER).contains(&c)), "{p:?}");
                    assert!((v[0].hypot(v[1]) - SPEED).abs() < 1e-12);
                    flips += (before != v) as usize;
                }
            }
        }
        assert!(flips > 50, "{flips}");
    }

    #[test]
    fn rendering_draws_two_digits_by_pixelwise_max() {
        let img = digits(2);
        let d = SequenceDraw {
            digits: [0, 1],
            starts: [[0.0, 0.0], [10.0, 0.4]],
            velocities: [[3.0, 0.0], [0.0, 0.0]],
        };
        let frames = render(&img, &d);
        assert_eq!(frames.len(), FRAMES * PIXELS);
        // Frame 0: digit 0 at (0, 0), digit 1 at (10, 0) (0.4 rounds to 0). Pixel (row 10,
        // col 20) lies inside both squares: max(55, 75) = 75.
        assert_eq!(frames[10 * SIDE + 20], 75);
        assert_eq!(frames[4 * SIDE + 4], 255);
        assert_eq!(frames[30 * SIDE + 30], 0);
        // Frame 1: digit 0 moved 3 columns right: its top-left border pixel is at col 7.
        assert_eq!(frames[PIXELS + 4 * SIDE + 7], 255);
        assert_eq!(frames[PIXELS + 5 * SIDE + 6], 0);
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_sequence() {
        let img = digits(5);
        let a = generate(&img, 11, Split::Train, 4);
        assert_eq!(a, generate(&img, 11, Split::Train, 4));
        assert_ne!(a, generate(&img, 11, Split::Train, 5));
        assert_ne!(a, generate(&img, 12, Split::Train, 4));
        assert_ne!(a, generate(&img, 11, Split::Test, 4));
        let t = task(6, 4);
        let b1 = t
            .batch(Split::Train, &[4, 1], DType::F32, &Device::Cpu)
            .unwrap();
        let b2 = t
            .batch(Split::Train, &[4], DType::F32, &Device::Cpu)
            .unwrap();
        let row: Vec<Vec<f32>> = b1.x.get(0).unwrap().to_vec2().unwrap();
        assert_eq!(row, b2.x.get(0).unwrap().to_vec2::<f32>().unwrap());
    }

    #[test]
    fn batches_feed_ten_frames_and_mask_exactly_steps_9_to_18() {
        let t = task(6, 4);
        assert_eq!((t.len(Split::Train), t.len(Split::Test)), (6, 4));
        let b = t
            .batch(Split::Test, &[2, 0], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, STEPS, PIXELS]);
        assert_eq!(b.target.dims(), &[2, STEPS, PIXELS]);
        let mask: Vec<Vec<f32>> = b.mask.unwrap().to_vec2().unwrap();
        for m in &mask {
            let on: Vec<usize> = (0..STEPS).filter(|&s| m[s] == 1.0).collect();
            assert_eq!(on, (9..=18).collect::<Vec<_>>());
            assert!(m.iter().all(|&v| v == 0.0 || v == 1.0));
        }
        let frames = t.sequence(Split::Test, 2);
        let x: Vec<Vec<f32>> = b.x.get(0).unwrap().to_vec2().unwrap();
        let y: Vec<Vec<f32>> = b.target.get(0).unwrap().to_vec2().unwrap();
        let f = |k: usize| -> Vec<f32> {
            frames[k * PIXELS..(k + 1) * PIXELS]
                .iter()
                .map(|&v| v as f32 / 255.0)
                .collect()
        };
        for s in 0..STEPS {
            assert_eq!(y[s], f(s + 1), "target of step {s} is frame {}", s + 1);
            if s < OBSERVED {
                assert_eq!(x[s], f(s));
            } else {
                assert!(x[s].iter().all(|&v| v == 0.0), "step {s} sees no frame");
            }
        }
        // Default sizes when 0 is asked for.
        let d = MovingMnistTask::from_digits(digits(2), digits(2), 0, 0, 0).unwrap();
        assert_eq!((d.len(Split::Train), d.len(Split::Test)), DEFAULT_SIZES);
        assert!(t
            .batch(Split::Test, &[4], DType::F32, &Device::Cpu)
            .is_err());
    }

    fn logit_of(target: &Tensor) -> Tensor {
        let v: Vec<f32> = target.flatten_all().unwrap().to_vec1().unwrap();
        let z: Vec<f32> = v
            .iter()
            .map(|&p| match p {
                p if p <= 0.0 => -60.0,
                p if p >= 1.0 => 60.0,
                p => (p as f64 / (1.0 - p as f64)).ln() as f32,
            })
            .collect();
        Tensor::from_vec(z, target.dims(), target.device()).unwrap()
    }

    #[test]
    fn a_perfect_predictor_scores_the_targets_entropy_and_zero_mse() {
        let t = task(2, 5);
        let mut predict = |b: &Batch| -> Result<Tensor> { Ok(logit_of(&b.target)) };
        let e = t
            .evaluate(2, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        // The entropy of the predicted frames' intensities, per sequence.
        let mut h = 0.0;
        for i in 0..5 {
            let frames = t.sequence(Split::Test, i);
            for &v in &frames[OBSERVED * PIXELS..] {
                let p = v as f64 / 255.0;
                if p > 0.0 && p < 1.0 {
                    h -= p * p.ln() + (1.0 - p) * (1.0 - p).ln();
                }
            }
        }
        h /= 5.0;
        assert!(h > 100.0, "the synthetic digits have grey pixels: {h}");
        let bce = e.values["test_bce"];
        assert!((bce - h).abs() < 1e-4 * h, "{bce} vs entropy {h}");
        assert_eq!(e.metric_name, "neg_test_bce");
        assert_eq!(e.metric, -bce);
        assert!(e.values["test_mse_per_frame"] < 1e-9);
        assert!(e.values["baseline_copy_last_mse_per_frame"] > 1.0);
        assert_eq!(e.values["test_sequences"], 5.0);
        // A constant 0 logit costs 4096·ln 2 per frame, and its MSE is Σ (½ − y)².
        let mut zero = |b: &Batch| -> Result<Tensor> { Ok(b.target.zeros_like()?) };
        let e = t.evaluate(3, DType::F32, &Device::Cpu, &mut zero).unwrap();
        let want = (PREDICTED * PIXELS) as f64 * 2f64.ln();
        assert!((e.values["test_bce"] - want).abs() < 1e-6 * want);
    }

    #[test]
    fn a_nan_predictor_scores_infinite() {
        let t = task(2, 3);
        let mut predict = |b: &Batch| -> Result<Tensor> {
            Ok(Tensor::full(f32::NAN, b.target.dims(), &Device::Cpu)?)
        };
        let e = t
            .evaluate(2, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        assert_eq!(e.metric, f64::NEG_INFINITY);
        assert_eq!(e.values["test_bce"], f64::INFINITY);
        assert_eq!(e.values["test_mse_per_frame"], f64::INFINITY);
        assert!(e.summary.contains("infinite"), "{}", e.summary);
        assert_eq!(pixel_bce(f64::INFINITY, 1.0), f64::INFINITY);
    }

    #[test]
    fn a_video_file_replaces_the_test_set() {
        // Two sequences of the published layout (20, N, 64, 64), sequence q frame f filled
        // with the value 10·q + f.
        let n = 2;
        let mut data = vec![0u8; FRAMES * n * PIXELS];
        for f in 0..FRAMES {
            for q in 0..n {
                let at = (f * n + q) * PIXELS;
                data[at..at + PIXELS].fill((10 * q + f) as u8);
            }
        }
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (20, 2, 64, 64), }";
        let dir = std::env::temp_dir().join(format!("remanence-mm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("video.npy");
        std::fs::write(&file, npy::npy_bytes(1, dict, &data)).unwrap();
        let t = task(3, 0).with_video(&file, 0, false).unwrap();
        assert_eq!(t.len(Split::Test), 2);
        let b = t
            .batch(Split::Test, &[1], DType::F32, &Device::Cpu)
            .unwrap();
        let y: Vec<Vec<f32>> = b.target.get(0).unwrap().to_vec2().unwrap();
        assert_eq!(
            y[9][0],
            20.0 / 255.0,
            "step 9 predicts frame 10 of sequence 1"
        );
        let mut zero = |b: &Batch| -> Result<Tensor> { Ok(b.target.zeros_like()?) };
        let e = t.evaluate(8, DType::F32, &Device::Cpu, &mut zero).unwrap();
        assert!(e.summary.contains("video.npy"), "{}", e.summary);
        assert_eq!(
            task(3, 0)
                .with_video(&file, 1, false)
                .unwrap()
                .len(Split::Test),
            1
        );
        let bad = dir.join("bad.npy");
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 2, 64, 64), }";
        std::fs::write(&bad, npy::npy_bytes(1, dict, &data[..10 * 2 * PIXELS])).unwrap();
        let err = task(3, 0)
            .with_video(&bad, 0, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.npy") && err.contains("expected (20, SEQUENCES, 64, 64)"),
            "{err}"
        );
    }

    #[test]
    fn a_folder_of_frame_folders_replaces_the_test_set() {
        // Three sequences of 20 PNG frames, sequence q frame f filled with 10·q + f; the middle
        // one misses its last frame.
        let dir = std::env::temp_dir().join(format!("remanence-mm-frames-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for q in 0..3 {
            let seq = dir.join(format!("seq{q:02}"));
            std::fs::create_dir_all(&seq).unwrap();
            let frames = if q == 1 { FRAMES - 1 } else { FRAMES };
            for f in 0..frames {
                let img = image::GrayImage::from_pixel(64, 64, image::Luma([(10 * q + f) as u8]));
                img.save(seq.join(format!("{f:02}.png"))).unwrap();
            }
        }
        let err = task(3, 0)
            .with_video(&dir, 0, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("seq01")
                && err.contains("holds 19 of 20 frames")
                && err.contains("--skip-bad"),
            "{err}"
        );
        let t = task(3, 0).with_video(&dir, 0, true).unwrap();
        assert_eq!(t.len(Split::Test), 2);
        let b = t
            .batch(Split::Test, &[1], DType::F32, &Device::Cpu)
            .unwrap();
        let y: Vec<Vec<f32>> = b.target.get(0).unwrap().to_vec2().unwrap();
        assert_eq!(
            y[9][0],
            30.0 / 255.0,
            "sequence 2 (the second kept) frame 10"
        );
        let w = t.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("seq01") && w[0].contains("19 of 20"), "{w:?}");
        let mut zero = |b: &Batch| -> Result<Tensor> { Ok(b.target.zeros_like()?) };
        let e = t.evaluate(8, DType::F32, &Device::Cpu, &mut zero).unwrap();
        assert!(e.summary.contains("1 skipped as bad"), "{}", e.summary);
        assert!(task(3, 0).warnings().is_empty());
    }

    #[test]
    fn the_strip_is_a_png_of_two_rows_of_ten_frames() {
        let truth: Vec<f32> = (0..PREDICTED * PIXELS)
            .map(|i| (i % 7) as f32 / 6.0)
            .collect();
        let pred = vec![1.0f32; PREDICTED * PIXELS];
        let bytes = strip_png_bytes(&truth, &pred).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (10 * 64 + 9 * 2, 2 * 64 + 2));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        let w = info.width as usize;
        assert_eq!(buf[0], 0);
        assert_eq!(buf[3], 128, "truth 0.5 → 128");
        assert_eq!(buf[6], 255);
        assert_eq!(buf[64], 128, "gap between frames");
        assert_eq!(buf[64 * w + 5], 128, "gap between rows");
        assert_eq!(buf[66 * w], 255, "predictions start on row 66");
        assert_eq!(buf[(66 + 5) * w + 70], 255);
        assert_eq!(buf[(66 + 5) * w + 65], 128);
        assert!(strip_png_bytes(&truth[1..], &pred).is_err());
    }

    /// The digit task over five synthetic digits of classes 3, 3, 7, 1, 0 (two of one class,
    /// so some videos hold a single class) and three test digits of classes 9, 2, 2.
    fn digits_task(train: usize, test: usize) -> MovingMnistTask {
        MovingMnistTask::from_labelled_digits(
            (digits(5), vec![3, 3, 7, 1, 0]),
            (digits(3), vec![9, 2, 2]),
            train,
            test,
            7,
        )
        .unwrap()
        .with_mode(Mode::Digits)
        .unwrap()
    }

    #[test]
    fn digit_labels_are_the_classes_of_the_digits_drawn() {
        let train = [3u8, 3, 7, 1, 0];
        let t = digits_task(40, 6);
        assert_eq!(t.name(), "moving-mnist-digits");
        assert_eq!((t.input_size(), t.output_size()), (PIXELS, CLASSES));
        let (mut single, mut pair) = (0, 0);
        for i in 0..40 {
            let d = t.draw(Split::Train, i).unwrap();
            assert_eq!(d, sequence_draw(7, Split::Train, i, 5));
            let labels = t.digit_labels(Split::Train, i).unwrap();
            assert_eq!(labels, [train[d.digits[0]], train[d.digits[1]]]);
            // The frames are the draw's rendering.
            assert_eq!(&*t.sequence(Split::Train, i), &render(&digits(5), &d)[..]);
            let hot = multi_hot(&labels);
            let ones = hot.iter().filter(|&&v| v == 1.0).count();
            assert!(hot.iter().all(|&v| v == 0.0 || v == 1.0));
            assert_eq!(ones, if labels[0] == labels[1] { 1 } else { 2 });
            single += (ones == 1) as usize;
            pair += (ones == 2) as usize;
        }
        assert!(single > 0 && pair > 0, "{single} {pair}");
        // The test split draws from the test digits.
        let labels = t.digit_labels(Split::Test, 0).unwrap();
        assert!(labels.iter().all(|l| [9, 2].contains(l)), "{labels:?}");
        // Unlabelled digits make no digit task.
        assert!(task(2, 2).digit_labels(Split::Train, 0).is_none());
        assert!(task(2, 2).with_mode(Mode::Digits).is_err());
    }

    #[test]
    fn digit_batches_feed_twenty_frames_and_mask_the_last_step_only() {
        let t = digits_task(6, 4);
        assert_eq!(t.objective(), Objective::MultiLabelPerStep);
        let b = t
            .batch(Split::Train, &[5, 1], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, FRAMES, PIXELS]);
        assert_eq!(b.target.dims(), &[2, FRAMES, CLASSES]);
        assert_eq!(b.lengths, vec![FRAMES; 2]);
        let mask: Vec<Vec<f32>> = b.mask.unwrap().to_vec2().unwrap();
        for m in &mask {
            let on: Vec<usize> = (0..FRAMES).filter(|&s| m[s] != 0.0).collect();
            assert_eq!(on, vec![FRAMES - 1]);
            assert_eq!(m[FRAMES - 1], 1.0);
        }
        for (row, &i) in [5usize, 1].iter().enumerate() {
            let frames = t.sequence(Split::Train, i);
            let x: Vec<Vec<f32>> = b.x.get(row).unwrap().to_vec2().unwrap();
            for (f, step) in x.iter().enumerate() {
                let want: Vec<f32> = frames[f * PIXELS..(f + 1) * PIXELS]
                    .iter()
                    .map(|&v| v as f32 / 255.0)
                    .collect();
                assert_eq!(step, &want, "step {f} sees frame {f}");
            }
            let y: Vec<Vec<f32>> = b.target.get(row).unwrap().to_vec2().unwrap();
            for step in &y[..FRAMES - 1] {
                assert!(step.iter().all(|&v| v == 0.0));
            }
            let labels = t.digit_labels(Split::Train, i).unwrap();
            assert_eq!(y[FRAMES - 1], multi_hot(&labels).to_vec());
        }
        assert!(t
            .batch(Split::Test, &[4], DType::F32, &Device::Cpu)
            .is_err());
    }

    #[test]
    fn a_perfect_digit_predictor_names_every_set_and_a_nan_one_none() {
        let t = digits_task(2, 9);
        let mut perfect = |b: &Batch| -> Result<Tensor> { Ok(((&b.target * 40.0)? - 20.0)?) };
        let e = t
            .evaluate(4, DType::F32, &Device::Cpu, &mut perfect)
            .unwrap();
        assert_eq!(e.metric_name, "test_set_accuracy");
        assert_eq!(e.metric, 1.0);
        assert_eq!(e.values["test_set_accuracy"], 1.0);
        assert_eq!(e.values["test_macro_f1"], 1.0);
        assert!(e.values["test_bce"] < 1e-6, "{}", e.values["test_bce"]);
        assert_eq!(e.values["test_sequences"], 9.0);
        let mut nan = |b: &Batch| -> Result<Tensor> {
            Ok(Tensor::full(f32::NAN, b.target.dims(), &Device::Cpu)?)
        };
        let e = t.evaluate(4, DType::F32, &Device::Cpu, &mut nan).unwrap();
        assert_eq!(e.metric, 0.0);
        assert_eq!(e.values["test_macro_f1"], 0.0);
        assert_eq!(e.values["test_bce"], f64::INFINITY);
        assert!(e.summary.contains("non-finite"), "{}", e.summary);
        // One infinite logit on a right answer is still wrong.
        let mut s = DigitScores::default();
        let truth = multi_hot(&[2, 9]);
        let mut z = [-9.0f32; CLASSES];
        z[2] = 9.0;
        z[9] = f32::INFINITY;
        s.add(&z, &truth);
        assert_eq!((s.exact, s.fn_[9], s.tp[2]), (0, 1, 1));
        // Everything predicted absent: no set right; F1 0 for the present classes only.
        let mut s = DigitScores::default();
        s.add(&[-5.0; CLASSES], &truth);
        assert_eq!((s.set_accuracy(), s.macro_f1()), (0.0, 0.0));
        let want = 8.0 * pixel_bce(-5.0, 0.0) + 2.0 * pixel_bce(-5.0, 1.0);
        assert!((s.mean_bce() - want).abs() < 1e-12);
        // One of two digits right, nothing else: F1 1 for class 2, 0 for class 9.
        let mut s = DigitScores::default();
        let mut z = [-5.0f32; CLASSES];
        z[2] = 5.0;
        s.add(&z, &truth);
        assert_eq!((s.set_accuracy(), s.macro_f1()), (0.0, 0.5));
    }

    #[test]
    fn the_digit_task_refuses_a_video() {
        let dir = std::env::temp_dir().join(format!("remanence-mmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("video.npy");
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (20, 1, 64, 64), }";
        std::fs::write(&file, npy::npy_bytes(1, dict, &vec![0u8; FRAMES * PIXELS])).unwrap();
        let err = digits_task(2, 2)
            .with_video(&file, 0, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--video") && err.contains("no digit labels"),
            "{err}"
        );
        let video = load_video(&file, 0, false).unwrap();
        assert!(digits_task(2, 2).with_loaded_video(video, &file).is_err());
        // A video test set cannot become a digit task either.
        let t = task(2, 0).with_video(&file, 0, false).unwrap();
        assert!(t.with_mode(Mode::Digits).is_err());
    }

    #[test]
    fn real_mnist_digit_videos_carry_their_labels() {
        let Some(dir) = crate::datasets::shared_for_tests("datasets/mnist") else {
            return;
        };
        let (_, test) = crate::mnist::load(&dir).unwrap();
        let t = MovingMnistTask::digits(&dir, 4, 16, 0).unwrap();
        assert_eq!(t.name(), "moving-mnist-digits");
        for i in 0..16 {
            let d = t.draw(Split::Test, i).unwrap();
            let labels = t.digit_labels(Split::Test, i).unwrap();
            assert_eq!(labels, d.digits.map(|k| test.labels[k]));
            assert!(labels.iter().all(|&l| l < 10));
        }
        let b = t
            .batch(Split::Test, &[0, 1, 2], DType::F32, &Device::Cpu)
            .unwrap();
        let y: Vec<Vec<Vec<f32>>> = b.target.to_vec3().unwrap();
        for (row, i) in [0usize, 1, 2].into_iter().enumerate() {
            let ones = y[row][FRAMES - 1].iter().filter(|&&v| v == 1.0).count();
            assert!((1..=2).contains(&ones));
            assert_eq!(
                y[row][FRAMES - 1],
                multi_hot(&t.digit_labels(Split::Test, i).unwrap()).to_vec()
            );
        }
        let mut perfect = |b: &Batch| -> Result<Tensor> { Ok(((&b.target * 40.0)? - 20.0)?) };
        let e = t
            .evaluate(8, DType::F32, &Device::Cpu, &mut perfect)
            .unwrap();
        assert_eq!(e.metric, 1.0);
        let mut zero = |b: &Batch| -> Result<Tensor> { Ok(b.target.zeros_like()?) };
        let e = t.evaluate(8, DType::F32, &Device::Cpu, &mut zero).unwrap();
        println!("{}", e.summary);
        assert!((e.values["test_bce"] - 10.0 * 2f64.ln()).abs() < 1e-9);
    }

    #[test]
    fn real_mnist_digits_make_plausible_sequences() {
        let Some(dir) = crate::datasets::shared_for_tests("datasets/mnist") else {
            return;
        };
        let t = MovingMnistTask::new(&dir, 8, 4, 0, None, false).unwrap();
        for split in [Split::Train, Split::Test] {
            for i in 0..t.len(split) {
                let f = t.sequence(split, i);
                assert_eq!(f.len(), FRAMES * PIXELS);
                for k in 0..FRAMES {
                    let frame = &f[k * PIXELS..(k + 1) * PIXELS];
                    let lit = frame.iter().filter(|&&v| v > 0).count();
                    // Two digits of ~150 lit pixels each, possibly overlapping.
                    assert!(
                        (80..=2 * 784).contains(&lit),
                        "{split:?} {i} frame {k}: {lit}"
                    );
                    assert_eq!(*frame.iter().max().unwrap(), 255);
                }
            }
        }
        let mut zero = |b: &Batch| -> Result<Tensor> { Ok(b.target.zeros_like()?) };
        let e = t.evaluate(4, DType::F32, &Device::Cpu, &mut zero).unwrap();
        println!("{}", e.summary);
        assert!(e.values["baseline_copy_last_mse_per_frame"] > 0.0);
    }
}
