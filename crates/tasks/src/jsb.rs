//! Polyphonic music: next-step prediction on the JSB chorales (382 four-part chorales by J. S.
//! Bach, the train/valid/test split of Boulanger-Lewandowski et al. 2012: 229/76/77 chorales).
//!
//! Each time step is an 88-key binary piano roll (key = MIDI pitch − 21). The input at step t is
//! the roll at t and the target is the roll at t + 1, so a chorale of n frames is a sequence of
//! n − 1 steps. The model emits one logit per key and step (independent Bernoulli outputs,
//! [`Objective::MultiLabelPerStep`]).
//!
//! The metric is the field's: the negative log-likelihood in nats per time step, summed over the
//! 88 keys and averaged over all real steps of a split (Boulanger-Lewandowski et al. 2012,
//! Chung et al. 2014), and the frame-level accuracy TP / (TP + FP + FN) of Bay et al. (2009).
//! Two baselines fitted on the training split (key frequencies, and a first-order Markov chain
//! per key) are scored the same way so a reader can calibrate the model's numbers.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TaskError};
use crate::task::{Batch, Evaluation, Objective, Predict, SequenceTask, Split};

/// Keys of the piano roll.
pub const KEYS: usize = 88;
/// MIDI pitch of key 0 (A0); key 87 is C8 (pitch 108).
pub const LOWEST_PITCH: i64 = 21;
/// Probability clip of the frequency baseline.
const FREQUENCY_CLIP: f64 = 1e-6;

/// The time grid of the chorales: one frame per quarter, eighth or sixteenth note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum JsbResolution {
    #[default]
    #[serde(rename = "quarter")]
    Quarter,
    #[serde(rename = "8th")]
    Eighth,
    #[serde(rename = "16th")]
    Sixteenth,
}

impl JsbResolution {
    pub const ALL: [JsbResolution; 3] = [Self::Quarter, Self::Eighth, Self::Sixteenth];

    pub fn name(self) -> &'static str {
        match self {
            Self::Quarter => "quarter",
            Self::Eighth => "8th",
            Self::Sixteenth => "16th",
        }
    }

    /// The file of the data set at this resolution.
    pub fn file_name(self) -> String {
        format!("jsb-chorales-{}.json", self.name())
    }

    /// A bound on the steps of one sequence: the longest chorale has 160 frames at quarter
    /// resolution (test split), twice as many at 8th and four times at 16th; a sequence has one
    /// step fewer than its chorale has frames.
    pub fn max_steps(self) -> usize {
        match self {
            Self::Quarter => 160,
            Self::Eighth => 320,
            Self::Sixteenth => 640,
        }
    }
}

impl std::str::FromStr for JsbResolution {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown resolution `{s}`; valid: quarter, 8th, 16th"))
    }
}

impl std::fmt::Display for JsbResolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One chorale: a bit set of sounding keys per frame (bit k = key k).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chorale {
    pub frames: Vec<u128>,
}

impl Chorale {
    /// Steps of its sequence (frames − 1).
    pub fn steps(&self) -> usize {
        self.frames.len() - 1
    }
}

fn on(frame: u128, key: usize) -> bool {
    frame >> key & 1 == 1
}

/// The three splits of the data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsbData {
    pub train: Vec<Chorale>,
    pub valid: Vec<Chorale>,
    pub test: Vec<Chorale>,
}

#[derive(Deserialize)]
struct RawJsb {
    train: Vec<Vec<Vec<f64>>>,
    valid: Vec<Vec<Vec<f64>>>,
    test: Vec<Vec<Vec<f64>>>,
}

/// Parses the Coconet JSON encoding (`{"train": [[[pitch, ...], ...], ...], "valid": ...,
/// "test": ...}`); `file` names the source in errors.
pub fn parse(text: &str, file: &str) -> Result<JsbData> {
    let raw: RawJsb = serde_json::from_str(text)
        .map_err(|e| TaskError::Data(format!("{file}: not JSB chorales JSON: {e}")))?;
    let convert = |split: &str, list: Vec<Vec<Vec<f64>>>| -> Result<Vec<Chorale>> {
        list.into_iter()
            .enumerate()
            .map(|(c, chorale)| {
                if chorale.len() < 2 {
                    return Err(TaskError::Data(format!(
                        "{file}: {split} chorale {c}: empty chorale ({} frame{}; next-step \
                         prediction needs at least 2)",
                        chorale.len(),
                        if chorale.len() == 1 { "" } else { "s" }
                    )));
                }
                let frames = chorale
                    .into_iter()
                    .enumerate()
                    .map(|(t, pitches)| {
                        pitches.into_iter().try_fold(0u128, |bits, p| {
                            // The 8th and 16th files write pitches as 73.0.
                            if p.fract() != 0.0
                                || !(LOWEST_PITCH as f64..(LOWEST_PITCH + KEYS as i64) as f64)
                                    .contains(&p)
                            {
                                return Err(TaskError::Data(format!(
                                    "{file}: {split} chorale {c}, step {t}: pitch {p} is outside \
                                     the piano's 21..=108"
                                )));
                            }
                            Ok(bits | 1u128 << (p as i64 - LOWEST_PITCH))
                        })
                    })
                    .collect::<Result<Vec<u128>>>()?;
                Ok(Chorale { frames })
            })
            .collect()
    };
    Ok(JsbData {
        train: convert("train", raw.train)?,
        valid: convert("valid", raw.valid)?,
        test: convert("test", raw.test)?,
    })
}

/// −log p(y | z) of one Bernoulli output from its logit, computed stably in f64
/// (log σ(z) = −softplus(−z)); infinite for a non-finite logit.
pub fn bernoulli_nll(z: f64, y: bool) -> f64 {
    if !z.is_finite() {
        return f64::INFINITY;
    }
    let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
    if y {
        softplus(-z)
    } else {
        softplus(z)
    }
}

/// −log p(y) of one Bernoulli output from its probability.
fn probability_nll(p: f64, y: bool) -> f64 {
    -(if y { p } else { 1.0 - p }).ln()
}

/// Running NLL and frame-accuracy counts over the steps of a split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub nll_sum: f64,
    pub steps: usize,
    pub true_positives: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
}

impl Score {
    /// Adds one step scored from its 88 logits against the target frame.
    pub fn add_logits(&mut self, logits: &[f64], target: u128) {
        debug_assert_eq!(logits.len(), KEYS);
        let mut nll = 0.0;
        let mut predicted = 0u128;
        for (k, &z) in logits.iter().enumerate() {
            nll += bernoulli_nll(z, on(target, k));
            if z > 0.0 {
                predicted |= 1 << k;
            }
        }
        self.add(nll, predicted, target);
    }

    /// Adds one step scored from the probability that each key is on.
    pub fn add_probabilities(&mut self, p: &[f64], target: u128) {
        let mut nll = 0.0;
        let mut predicted = 0u128;
        for (k, &p) in p.iter().enumerate() {
            nll += probability_nll(p, on(target, k));
            if p > 0.5 {
                predicted |= 1 << k;
            }
        }
        self.add(nll, predicted, target);
    }

    fn add(&mut self, nll: f64, predicted: u128, target: u128) {
        self.nll_sum += nll;
        self.steps += 1;
        self.true_positives += (predicted & target).count_ones() as u64;
        self.false_positives += (predicted & !target).count_ones() as u64;
        self.false_negatives += (!predicted & target).count_ones() as u64;
    }

    /// Nats per time step (NaN without steps; infinite if a logit was not finite).
    pub fn nll(&self) -> f64 {
        self.nll_sum / self.steps as f64
    }

    /// TP / (TP + FP + FN) at threshold 0.5 (1 when there was nothing to find or predict).
    pub fn frame_accuracy(&self) -> f64 {
        let d = self.true_positives + self.false_positives + self.false_negatives;
        if d == 0 {
            1.0
        } else {
            self.true_positives as f64 / d as f64
        }
    }
}

/// Each key on with its frequency over the training frames, clipped to [1e-6, 1 − 1e-6].
pub fn key_frequencies(train: &[Chorale]) -> Vec<f64> {
    let mut count = [0usize; KEYS];
    let mut frames = 0usize;
    for c in train {
        for &f in &c.frames {
            for (k, n) in count.iter_mut().enumerate() {
                *n += on(f, k) as usize;
            }
        }
        frames += c.frames.len();
    }
    count
        .iter()
        .map(|&n| (n as f64 / frames.max(1) as f64).clamp(FREQUENCY_CLIP, 1.0 - FREQUENCY_CLIP))
        .collect()
}

/// First-order Markov chain per key, fitted on the training transitions with add-one
/// smoothing: `[k][s]` = P(key k on at t + 1 | key k on (s = 1) or off (s = 0) at t).
pub fn markov_probabilities(train: &[Chorale]) -> Vec<[f64; 2]> {
    let mut on_after = [[0usize; 2]; KEYS];
    let mut seen = [[0usize; 2]; KEYS];
    for c in train {
        for w in c.frames.windows(2) {
            for k in 0..KEYS {
                let s = on(w[0], k) as usize;
                seen[k][s] += 1;
                on_after[k][s] += on(w[1], k) as usize;
            }
        }
    }
    (0..KEYS)
        .map(|k| [0, 1].map(|s| (on_after[k][s] as f64 + 1.0) / (seen[k][s] as f64 + 2.0)))
        .collect()
}

/// The frequency baseline's score on `chorales`.
pub fn frequency_baseline(train: &[Chorale], chorales: &[Chorale]) -> Score {
    let p = key_frequencies(train);
    let mut score = Score::default();
    for c in chorales {
        for &f in &c.frames[1..] {
            score.add_probabilities(&p, f);
        }
    }
    score
}

/// The Markov baseline's score on `chorales`.
pub fn markov_baseline(train: &[Chorale], chorales: &[Chorale]) -> Score {
    let m = markov_probabilities(train);
    let mut score = Score::default();
    let mut p = [0.0; KEYS];
    for c in chorales {
        for w in c.frames.windows(2) {
            for (k, p) in p.iter_mut().enumerate() {
                *p = m[k][on(w[0], k) as usize];
            }
            score.add_probabilities(&p, w[1]);
        }
    }
    score
}

/// The padded batch of `indices` of `chorales`: x (B, T, 88) the rolls at 0..n−1, target
/// (B, T, 88) the rolls at 1..n, mask (B, T) 1 on each chorale's real steps, 0 after its end.
fn batch_of(
    chorales: &[Chorale],
    indices: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<Batch> {
    let lengths: Vec<usize> = indices.iter().map(|&i| chorales[i].steps()).collect();
    let t = lengths.iter().copied().max().unwrap_or(1);
    let b = indices.len();
    let mut x = vec![0f32; b * t * KEYS];
    let mut target = vec![0f32; b * t * KEYS];
    let mut mask = vec![0f32; b * t];
    for (row, &i) in indices.iter().enumerate() {
        let c = &chorales[i];
        for (s, w) in c.frames.windows(2).enumerate() {
            let at = (row * t + s) * KEYS;
            for k in 0..KEYS {
                x[at + k] = on(w[0], k) as u8 as f32;
                target[at + k] = on(w[1], k) as u8 as f32;
            }
            mask[row * t + s] = 1.0;
        }
    }
    Ok(Batch {
        x: Tensor::from_vec(x, (b, t, KEYS), device)?.to_dtype(dtype)?,
        target: Tensor::from_vec(target, (b, t, KEYS), device)?.to_dtype(dtype)?,
        mask: Some(Tensor::from_vec(mask, (b, t), device)?.to_dtype(dtype)?),
        dt: None,
        indices: indices.to_vec(),
        lengths,
    })
}

/// Scores `predict` on every real step of `chorales`.
fn score_model(
    chorales: &[Chorale],
    batch_size: usize,
    dtype: DType,
    device: &Device,
    predict: &mut Predict<'_>,
) -> Result<Score> {
    let mut score = Score::default();
    let order: Vec<usize> = (0..chorales.len()).collect();
    for chunk in order.chunks(batch_size.max(1)) {
        let batch = batch_of(chorales, chunk, dtype, device)?;
        let y = predict(&batch)?;
        let (b, t, o) = y.dims3()?;
        if b != chunk.len() || o != KEYS || t < batch.lengths.iter().copied().max().unwrap_or(0) {
            return Err(TaskError::Data(format!(
                "the model's read-out is {b}×{t}×{o}; the batch needs {}×{}×{KEYS}",
                chunk.len(),
                batch.lengths.iter().copied().max().unwrap_or(0)
            )));
        }
        let y: Vec<Vec<Vec<f64>>> = y.to_dtype(DType::F64)?.to_vec3()?;
        for (row, &i) in chunk.iter().enumerate() {
            let c = &chorales[i];
            for (z, &target) in y[row].iter().zip(&c.frames[1..]) {
                score.add_logits(z, target);
            }
        }
    }
    Ok(score)
}

/// The JSB chorales next-step prediction task.
pub struct JsbTask {
    resolution: JsbResolution,
    file: PathBuf,
    data: JsbData,
    /// The baselines' scores on test (key frequencies, Markov chain), fitted once.
    baselines: (Score, Score),
}

impl JsbTask {
    /// Reads `dir/jsb-chorales-{resolution}.json`. `train_size`/`test_size` keep the first
    /// chorales of the train and test splits (0 = all); the validation split is kept whole.
    pub fn new(
        dir: &Path,
        resolution: JsbResolution,
        train_size: usize,
        test_size: usize,
    ) -> Result<Self> {
        let file = dir.join(resolution.file_name());
        let text = std::fs::read_to_string(&file)
            .map_err(|e| TaskError::Data(format!("{}: cannot read: {e}", file.display())))?;
        let data = parse(&text, &file.display().to_string())?;
        Self::from_data(data, resolution, file, train_size, test_size)
    }

    /// The task on parsed data; `file` names where it came from.
    pub fn from_data(
        mut data: JsbData,
        resolution: JsbResolution,
        file: PathBuf,
        train_size: usize,
        test_size: usize,
    ) -> Result<Self> {
        if train_size > 0 {
            data.train.truncate(train_size);
        }
        if test_size > 0 {
            data.test.truncate(test_size);
        }
        if data.train.is_empty() || data.test.is_empty() {
            return Err(TaskError::Data(format!(
                "{}: {} training and {} test chorales; both splits need at least one",
                file.display(),
                data.train.len(),
                data.test.len()
            )));
        }
        let baselines = (
            frequency_baseline(&data.train, &data.test),
            markov_baseline(&data.train, &data.test),
        );
        Ok(Self {
            resolution,
            file,
            data,
            baselines,
        })
    }

    pub fn data(&self) -> &JsbData {
        &self.data
    }

    pub fn resolution(&self) -> JsbResolution {
        self.resolution
    }

    fn split(&self, split: Split) -> &[Chorale] {
        match split {
            Split::Train => &self.data.train,
            Split::Test => &self.data.test,
        }
    }
}

impl SequenceTask for JsbTask {
    fn name(&self) -> &str {
        "jsb-chorales"
    }
    fn input_size(&self) -> usize {
        KEYS
    }
    fn output_size(&self) -> usize {
        KEYS
    }
    fn objective(&self) -> Objective {
        Objective::MultiLabelPerStep
    }
    fn len(&self, split: Split) -> usize {
        self.split(split).len()
    }

    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        batch_of(self.split(split), indices, dtype, device)
    }

    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        let d = &self.data;
        let test = score_model(&d.test, batch_size, dtype, device, predict)?;
        let valid = score_model(&d.valid, batch_size, dtype, device, predict)?;
        let train = score_model(&d.train, batch_size, dtype, device, predict)?;
        let (frequency, markov) = &self.baselines;
        let nll = test.nll();
        let mut values = BTreeMap::new();
        values.insert("neg_test_nll".to_string(), -nll);
        values.insert("test_nll".to_string(), nll);
        values.insert("valid_nll".to_string(), valid.nll());
        values.insert("train_nll".to_string(), train.nll());
        values.insert("test_frame_accuracy".to_string(), test.frame_accuracy());
        values.insert("baseline_frequency_nll".to_string(), frequency.nll());
        values.insert("baseline_markov_nll".to_string(), markov.nll());
        values.insert("test_steps".to_string(), test.steps as f64);
        let mut summary = format!(
            "test NLL {nll:.3} nats per step over {} steps of {} chorales (valid {:.3}, train \
             {:.3}), frame accuracy {:.1}%; baselines on test: key frequencies {:.3}, per-key \
             Markov chain {:.3}; {} resolution",
            test.steps,
            d.test.len(),
            valid.nll(),
            train.nll(),
            100.0 * test.frame_accuracy(),
            frequency.nll(),
            markov.nll(),
            self.resolution
        );
        if !nll.is_finite() {
            summary.push_str(
                "; the model emitted a non-finite logit on a test step, so the NLL is infinite",
            );
        }
        Ok(Evaluation {
            metric_name: "neg_test_nll".into(),
            metric: -nll,
            solved: None,
            values,
            summary,
        })
    }

    /// The training frequency of each of the 88 keys (the frequency baseline).
    fn fitted_statistics(&self) -> Vec<(String, Vec<f64>)> {
        vec![(
            "key_frequency".to_string(),
            key_frequencies(&self.data.train),
        )]
    }
}

impl std::fmt::Debug for JsbTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsbTask")
            .field("resolution", &self.resolution)
            .field("file", &self.file)
            .field("train", &self.data.train.len())
            .field("valid", &self.data.valid.len())
            .field("test", &self.data.test.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{
        "train": [[[60, 64], [62], [], [60, 64, 67, 72]], [[21], [108]]],
        "valid": [[[60], [60]]],
        "test": [[[60, 64], [60], [64]]]
    }"#;

    fn tiny() -> JsbTask {
        let data = parse(TINY, "tiny.json").unwrap();
        JsbTask::from_data(data, JsbResolution::Quarter, "tiny.json".into(), 0, 0).unwrap()
    }

    fn err(text: &str) -> String {
        parse(text, "bad.json").unwrap_err().to_string()
    }

    #[test]
    fn batches_shift_the_roll_by_one_step_and_mask_the_padding() {
        let task = tiny();
        assert_eq!((task.len(Split::Train), task.len(Split::Test)), (2, 1));
        let b = task
            .batch(Split::Train, &[0, 1], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, 3, KEYS]);
        assert_eq!(b.target.dims(), &[2, 3, KEYS]);
        assert_eq!(b.lengths, vec![3, 1]);
        let mask: Vec<Vec<f32>> = b.mask.unwrap().to_vec2().unwrap();
        assert_eq!(mask, vec![vec![1.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]]);
        let x: Vec<Vec<Vec<f32>>> = b.x.to_vec3().unwrap();
        let y: Vec<Vec<Vec<f32>>> = b.target.to_vec3().unwrap();
        let keys = |v: &[f32]| -> Vec<usize> { (0..KEYS).filter(|&k| v[k] == 1.0).collect() };
        assert_eq!(keys(&x[0][0]), vec![39, 43]);
        assert_eq!(keys(&y[0][0]), vec![41]);
        assert_eq!(keys(&x[0][1]), vec![41]);
        assert_eq!(keys(&y[0][1]), Vec::<usize>::new());
        assert_eq!(keys(&y[0][2]), vec![39, 43, 46, 51]);
        for s in 0..2 {
            assert_eq!(x[0][s + 1], y[0][s], "target at t is the input at t+1");
        }
        assert_eq!(keys(&x[1][0]), vec![0]);
        assert_eq!(keys(&y[1][0]), vec![87]);
        assert!(x[1][1].iter().chain(&y[1][2]).all(|&v| v == 0.0));
    }

    #[test]
    fn bad_files_are_refused_with_their_place() {
        let e = err(r#"{"train": [[[60], [20]]], "valid": [], "test": []}"#);
        assert!(
            e.contains("bad.json")
                && e.contains("train chorale 0, step 1")
                && e.contains("pitch 20"),
            "{e}"
        );
        let e = err(r#"{"train": [], "valid": [[[60], [61]], [[109], [60]]], "test": []}"#);
        assert!(
            e.contains("valid chorale 1, step 0") && e.contains("109"),
            "{e}"
        );
        let e = err(r#"{"train": [], "valid": [], "test": [[[60], [61]], [[62]]]}"#);
        assert!(
            e.contains("bad.json") && e.contains("test chorale 1") && e.contains("empty chorale"),
            "{e}"
        );
        let e = err(r#"{"train": [[[60.5], [60]]], "valid": [], "test": []}"#);
        assert!(e.contains("pitch 60.5"), "{e}");
        // Whole numbers written as floats (the 8th and 16th files) and doubled voices are fine.
        let d = parse(
            r#"{"train": [[[60.0, 64, 64], [60.0]]], "valid": [], "test": []}"#,
            "ok.json",
        )
        .unwrap();
        assert_eq!(d.train[0].frames, vec![1 << 39 | 1 << 43, 1 << 39]);
        let e = err(r#"{"train": [], "valid": [], "test": [[]]}"#);
        assert!(e.contains("empty chorale"), "{e}");
        let e = err("{\"train\": [[[60],\n [61]]");
        assert!(e.contains("bad.json") && e.contains("line 2 column"), "{e}");
        let e = err(r#"{"train": [], "valid": []}"#);
        assert!(e.contains("bad.json") && e.contains("test"), "{e}");
    }

    #[test]
    fn nll_and_frame_accuracy_match_a_hand_computation() {
        // One step: key 0 on with logit 2, key 1 off with logit −1, key 2 on with logit −3,
        // key 3 off with logit 4, the other keys off with logit 0.
        let mut z = vec![0.0; KEYS];
        z[..4].copy_from_slice(&[2.0, -1.0, -3.0, 4.0]);
        let target = 0b0101u128;
        let mut s = Score::default();
        s.add_logits(&z, target);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let hand = -(sig(2.0).ln()
            + (1.0 - sig(-1.0)).ln()
            + sig(-3.0).ln()
            + (1.0 - sig(4.0)).ln()
            + 84.0 * 0.5f64.ln());
        assert!((s.nll() - hand).abs() < 1e-12, "{} vs {hand}", s.nll());
        // Predicted on: keys 0 and 3; TP 1 (key 0), FP 1 (key 3), FN 1 (key 2).
        assert_eq!(
            (s.true_positives, s.false_positives, s.false_negatives),
            (1, 1, 1)
        );
        assert!((s.frame_accuracy() - 1.0 / 3.0).abs() < 1e-12);
        // A second, perfectly silent step (all logits −∞-ish) averages in per step.
        s.add_logits(&[-50.0; KEYS], 0);
        assert!((s.nll() - (hand + 88.0 * (-50f64).exp()) / 2.0).abs() < 1e-9);
        // Large logits stay finite and exact.
        assert!((bernoulli_nll(1000.0, false) - 1000.0).abs() < 1e-9);
        assert!(bernoulli_nll(1000.0, true) >= 0.0 && bernoulli_nll(1000.0, true) < 1e-300);
    }

    #[test]
    fn a_nan_predictor_has_infinite_nll() {
        let task = tiny();
        let mut predict = |b: &Batch| -> Result<Tensor> {
            let (n, t, _) = b.x.dims3()?;
            Ok(Tensor::full(f32::NAN, (n, t, KEYS), &Device::Cpu)?)
        };
        let e = task
            .evaluate(4, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        assert_eq!(e.metric_name, "neg_test_nll");
        assert_eq!(e.metric, f64::NEG_INFINITY);
        assert_eq!(e.values["test_nll"], f64::INFINITY);
        assert!(e.summary.contains("infinite"), "{}", e.summary);
    }

    #[test]
    fn a_zero_predictor_scores_88_ln2_per_step() {
        let task = tiny();
        let mut predict = |b: &Batch| -> Result<Tensor> { Ok(b.x.zeros_like()?) };
        let e = task
            .evaluate(1, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        let ln2 = 88.0 * 2f64.ln();
        for k in ["test_nll", "valid_nll", "train_nll"] {
            assert!((e.values[k] - ln2).abs() < 1e-9, "{k} {}", e.values[k]);
        }
        assert!((e.metric + ln2).abs() < 1e-9);
        assert_eq!(e.values["test_steps"], 2.0);
        // Nothing predicted on: TP 0.
        assert_eq!(e.values["test_frame_accuracy"], 0.0);
    }

    #[test]
    fn baselines_match_hand_values() {
        let d = parse(TINY, "tiny.json").unwrap();
        // Training frames: [39,43], [41], [], [39,43,46,51], [0], [87]: 6 frames.
        let p = key_frequencies(&d.train);
        assert!((p[39] - 2.0 / 6.0).abs() < 1e-15);
        assert!((p[41] - 1.0 / 6.0).abs() < 1e-15);
        assert_eq!(p[1], FREQUENCY_CLIP);
        // Test targets: [39] then [43].
        let f = frequency_baseline(&d.train, &d.test);
        assert_eq!(f.steps, 2);
        let off_rest: f64 = (0..KEYS)
            .filter(|&k| k != 39 && k != 43)
            .map(|k| -(1.0 - p[k]).ln())
            .sum();
        let hand = (-(p[39]).ln() - (1.0 - p[43]).ln() + -(1.0 - p[39]).ln() - (p[43]).ln()) / 2.0
            + off_rest;
        assert!((f.nll() - hand).abs() < 1e-12, "{} vs {hand}", f.nll());

        // Transitions of key 39 in training: on→off, off→off, off→on (chorale 0), off→off
        // (chorale 1): from on 1 seen, 0 on; from off 3 seen, 1 on.
        let m = markov_probabilities(&d.train);
        assert!((m[39][1] - 1.0 / 3.0).abs() < 1e-15);
        assert!((m[39][0] - 2.0 / 5.0).abs() < 1e-15);
        // Key 43 behaves the same; key 41: off→on, on→off, off→off, off→off.
        assert!((m[41][0] - 2.0 / 5.0).abs() < 1e-15 && (m[41][1] - 1.0 / 3.0).abs() < 1e-15);
        // Key 5 never on: 4 transitions from off, none on.
        assert!((m[5][0] - 1.0 / 6.0).abs() < 1e-15 && m[5][1] == 0.5);
        // Test: [39,43] → [39] → [43].
        let mk = markov_baseline(&d.train, &d.test);
        let mut hand = 0.0;
        for (prev, next) in [(0b11u8, 0b01u8), (0b01, 0b10)] {
            for (bit, key) in [(0, 39), (1, 43)] {
                let pk = m[key][(prev >> bit & 1) as usize];
                hand -= if next >> bit & 1 == 1 { pk } else { 1.0 - pk }.ln();
            }
            hand += (0..KEYS)
                .filter(|&k| k != 39 && k != 43)
                .map(|k| -(1.0 - m[k][0]).ln())
                .sum::<f64>();
        }
        assert!(
            (mk.nll() - hand / 2.0).abs() < 1e-12,
            "{} vs {}",
            mk.nll(),
            hand / 2.0
        );
    }

    #[test]
    fn resolution_names_round_trip() {
        for r in JsbResolution::ALL {
            assert_eq!(r.name().parse::<JsbResolution>().unwrap(), r);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.name()));
        }
        assert!("half"
            .parse::<JsbResolution>()
            .unwrap_err()
            .contains("16th"));
    }

    #[test]
    fn the_real_data_set_has_the_published_split() {
        let Some(dir) = crate::datasets::shared_for_tests("datasets/jsb_chorales") else {
            return;
        };
        let task = JsbTask::new(&dir, JsbResolution::Quarter, 0, 0).unwrap();
        let d = task.data();
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (229, 76, 77));
        let frames = |s: &[Chorale]| s.iter().map(|c| c.frames.len()).sum::<usize>();
        assert_eq!(
            (frames(&d.train), frames(&d.valid), frames(&d.test)),
            (13_807, 4_602, 4_725)
        );
        let steps = |s: &[Chorale]| s.iter().map(|c| c.steps()).sum::<usize>();
        assert_eq!(steps(&d.test), 4_725 - 77);
        let longest = d.test.iter().chain(&d.valid).chain(&d.train);
        assert!(longest.map(|c| c.steps()).max().unwrap() <= JsbResolution::Quarter.max_steps());
        let f = frequency_baseline(&d.train, &d.test);
        let m = markov_baseline(&d.train, &d.test);
        println!(
            "jsb quarter test NLL per step: frequency baseline {:.4}, Markov baseline {:.4}",
            f.nll(),
            m.nll()
        );
        assert!(m.nll() < f.nll() && f.nll() < 88.0 * 2f64.ln());
        for r in [JsbResolution::Eighth, JsbResolution::Sixteenth] {
            let t = JsbTask::new(&dir, r, 0, 0).unwrap();
            let d = t.data();
            assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (229, 76, 77));
            let all = d.test.iter().chain(&d.valid).chain(&d.train);
            assert!(
                all.map(|c| c.steps()).max().unwrap() <= r.max_steps(),
                "{r}"
            );
        }
    }
}
