//! Monophonic music: next-token prediction on the soprano line of the JSB chorales.
//!
//! The data is `Jsb16thSeparated.json` (the Boulanger-Lewandowski train/valid/test split at
//! 16th-note resolution, each step holding exactly four pitches: soprano, alto, tenor, bass;
//! −1 = silent). Voice 0 becomes one token per 16th step:
//!
//! - `rest`: the soprano is silent;
//! - `hold`: the pitch of the previous step goes on;
//! - `note p`: a new onset of MIDI pitch p.
//!
//! The encoding has no articulation, so a pitch repeated on consecutive steps counts as one held
//! note (the convention of the piano-roll benchmarks); a pitch after a rest, after another pitch
//! or at the start of a chorale is an onset.
//!
//! The vocabulary is fixed, so the sizes are known before the data is read: rest, hold and every
//! pitch of [`LOWEST_PITCH`]`..=`[`HIGHEST_PITCH`] (G3..C6, 32 tokens). The soprano of all three
//! splits spans 60..=81 (C4..A5); a pitch outside the range is refused with its file, split,
//! chorale and step. No transposition is applied: the chorales keep their keys.
//!
//! The input at step t is the one-hot of token t and the target is token t + 1
//! ([`Objective::ClassPerStep`]), so a chorale of n steps is a sequence of n − 1. The metric is
//! the negative log-likelihood in nats per step over the test split, with next-token accuracy;
//! two baselines fitted on the training targets (unigram token frequencies and a first-order
//! Markov chain over tokens, both with add-one smoothing) are scored the same way.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::error::{Result, TaskError};
use crate::task::{Batch, Evaluation, Objective, Predict, SequenceTask, Split};

/// Lowest pitch of the vocabulary (G3).
pub const LOWEST_PITCH: i64 = 55;
/// Highest pitch of the vocabulary (C6).
pub const HIGHEST_PITCH: i64 = 84;
/// Token index of a rest.
pub const REST: u32 = 0;
/// Token index of a held pitch.
pub const HOLD: u32 = 1;
/// Tokens: rest, hold and one onset per pitch of the range.
pub const VOCAB: usize = 2 + (HIGHEST_PITCH - LOWEST_PITCH + 1) as usize;
/// The file read from the data set's folder.
pub const FILE: &str = "Jsb16thSeparated.json";
/// A bound on the steps of one sequence: the longest chorale has 640 16th steps (test split).
pub const MAX_STEPS: usize = 639;

/// One token of the soprano line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    Rest,
    Hold,
    /// An onset of this MIDI pitch (within the vocabulary's range).
    Note(u8),
}

impl Token {
    /// The token's index in the vocabulary.
    pub fn index(self) -> u32 {
        match self {
            Token::Rest => REST,
            Token::Hold => HOLD,
            Token::Note(p) => 2 + (p as i64 - LOWEST_PITCH) as u32,
        }
    }

    /// The token at `index` (below [`VOCAB`]).
    pub fn from_index(index: u32) -> Token {
        match index {
            REST => Token::Rest,
            HOLD => Token::Hold,
            i => {
                assert!(
                    (i as usize) < VOCAB,
                    "token index {i} is outside the vocabulary"
                );
                Token::Note((LOWEST_PITCH + i as i64 - 2) as u8)
            }
        }
    }

    /// `rest`, `hold` or the pitch name (`C5`).
    pub fn name(self) -> String {
        match self {
            Token::Rest => "rest".into(),
            Token::Hold => "hold".into(),
            Token::Note(p) => pitch_name(p as i64),
        }
    }
}

/// The name of a MIDI pitch in scientific notation, sharps for the black keys: 60 → `C4`,
/// 69 → `A4`, 73 → `C#5`.
pub fn pitch_name(pitch: i64) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    format!(
        "{}{}",
        NAMES[pitch.rem_euclid(12) as usize],
        pitch.div_euclid(12) - 1
    )
}

/// The tokens of a soprano line given per step as `Some(pitch)` or `None` (silent). Pitches
/// must lie in the vocabulary's range (checked by [`parse`]).
pub fn tokenize(line: &[Option<i64>]) -> Vec<u32> {
    let mut prev = None;
    line.iter()
        .map(|&p| {
            let t = match p {
                None => Token::Rest,
                Some(p) if prev == Some(p) => Token::Hold,
                Some(p) => Token::Note(p as u8),
            };
            prev = p;
            t.index()
        })
        .collect()
}

/// The soprano lines of the three splits, as token sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SopranoData {
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<Vec<u32>>,
    pub test: Vec<Vec<u32>>,
}

#[derive(Deserialize)]
struct RawSeparated {
    train: Vec<Vec<Vec<f64>>>,
    valid: Vec<Vec<Vec<f64>>>,
    test: Vec<Vec<Vec<f64>>>,
}

/// Parses the separated-voices JSON (`{"train": [[[s, a, t, b], ...], ...], "valid": ...,
/// "test": ...}`, −1 = silent) into soprano token sequences; `file` names the source in errors.
pub fn parse(text: &str, file: &str) -> Result<SopranoData> {
    parse_with(text, file, false)
}

/// The shift in semitones that moves a line's last sounding pitch to the pitch class C while
/// keeping every pitch in the vocabulary: of the two shifts in −11..=11 that reach C, the smaller
/// one that fits (a chorale's soprano ends on the tonic, so this puts every chorale in C major or
/// C minor). `None` when neither fits or the line never sounds.
pub fn shift_to_c(line: &[Option<i64>]) -> Option<i64> {
    let last = line.iter().rev().flatten().next()?;
    let up = (-last).rem_euclid(12);
    let (lo, hi) = (line.iter().flatten().min()?, line.iter().flatten().max()?);
    let fits = |s: i64| lo + s >= LOWEST_PITCH as i64 && hi + s <= HIGHEST_PITCH as i64;
    let mut candidates = [up, up - 12];
    candidates.sort_by_key(|s| s.abs());
    candidates.into_iter().find(|&s| fits(s))
}

/// [`parse`], with every chorale transposed so its soprano ends on a C ([`shift_to_c`]) when
/// `transpose` is set.
pub fn parse_with(text: &str, file: &str, transpose: bool) -> Result<SopranoData> {
    let raw: RawSeparated = serde_json::from_str(text)
        .map_err(|e| TaskError::Data(format!("{file}: not separated JSB chorales JSON: {e}")))?;
    let convert = |split: &str, list: Vec<Vec<Vec<f64>>>| -> Result<Vec<Vec<u32>>> {
        list.into_iter()
            .enumerate()
            .map(|(c, chorale)| {
                if chorale.len() < 2 {
                    return Err(TaskError::Data(format!(
                        "{file}: {split} chorale {c}: empty chorale ({} step{}; next-token \
                         prediction needs at least 2)",
                        chorale.len(),
                        if chorale.len() == 1 { "" } else { "s" }
                    )));
                }
                let line = chorale
                    .iter()
                    .enumerate()
                    .map(|(t, voices)| {
                        let place = || format!("{file}: {split} chorale {c}, step {t}");
                        if voices.len() != 4 {
                            return Err(TaskError::Data(format!(
                                "{}: {} voices; the separated encoding has exactly 4 (soprano, \
                                 alto, tenor, bass)",
                                place(),
                                voices.len()
                            )));
                        }
                        let p = voices[0];
                        if p == -1.0 {
                            return Ok(None);
                        }
                        if p.fract() != 0.0
                            || !(LOWEST_PITCH as f64..=HIGHEST_PITCH as f64).contains(&p)
                        {
                            return Err(TaskError::Data(format!(
                                "{}: soprano pitch {p} is outside the vocabulary's \
                                 {LOWEST_PITCH}..={HIGHEST_PITCH} (and is not −1, silent)",
                                place()
                            )));
                        }
                        Ok(Some(p as i64))
                    })
                    .collect::<Result<Vec<_>>>()?;
                if !transpose {
                    return Ok(tokenize(&line));
                }
                let shift = shift_to_c(&line).ok_or_else(|| {
                    TaskError::Data(format!(
                        "{file}: {split} chorale {c}: cannot be transposed to end on a C within \
                         the vocabulary's {LOWEST_PITCH}..={HIGHEST_PITCH}"
                    ))
                })?;
                let moved: Vec<Option<i64>> = line.iter().map(|p| p.map(|p| p + shift)).collect();
                Ok(tokenize(&moved))
            })
            .collect()
    };
    Ok(SopranoData {
        train: convert("train", raw.train)?,
        valid: convert("valid", raw.valid)?,
        test: convert("test", raw.test)?,
    })
}

/// Running NLL and accuracy over the steps of a split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub nll_sum: f64,
    pub steps: usize,
    pub correct: usize,
}

impl Score {
    /// Adds one step scored from its logits (log-softmax in f64). A read-out with a non-finite
    /// logit scores an infinite NLL and a miss.
    pub fn add_logits(&mut self, logits: &[f64], target: u32) {
        self.steps += 1;
        if logits.iter().any(|z| !z.is_finite()) {
            self.nll_sum = f64::INFINITY;
            return;
        }
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = max + logits.iter().map(|z| (z - max).exp()).sum::<f64>().ln();
        self.nll_sum += log_sum - logits[target as usize];
        self.correct += (argmax(logits) == target as usize) as usize;
    }

    /// Adds one step scored from a probability per token.
    pub fn add_probabilities(&mut self, p: &[f64], target: u32) {
        self.steps += 1;
        self.nll_sum -= p[target as usize].ln();
        self.correct += (argmax(p) == target as usize) as usize;
    }

    /// Nats per step (NaN without steps).
    pub fn nll(&self) -> f64 {
        self.nll_sum / self.steps as f64
    }

    /// The fraction of steps whose most likely token was the target.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.steps as f64
    }
}

/// Index of the first largest value.
fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Token frequencies over the training targets (every token but each chorale's first), with
/// add-one smoothing over the vocabulary.
pub fn unigram_probabilities(train: &[Vec<u32>]) -> Vec<f64> {
    let mut count = vec![1.0; VOCAB];
    for c in train {
        for &t in &c[1..] {
            count[t as usize] += 1.0;
        }
    }
    let total: f64 = count.iter().sum();
    count.iter().map(|n| n / total).collect()
}

/// First-order Markov chain over tokens fitted on the training transitions with add-one
/// smoothing: `[a][b]` = P(token b at t + 1 | token a at t).
pub fn markov_probabilities(train: &[Vec<u32>]) -> Vec<Vec<f64>> {
    let mut count = vec![vec![1.0; VOCAB]; VOCAB];
    for c in train {
        for w in c.windows(2) {
            count[w[0] as usize][w[1] as usize] += 1.0;
        }
    }
    count
        .into_iter()
        .map(|row| {
            let total: f64 = row.iter().sum();
            row.into_iter().map(|n| n / total).collect()
        })
        .collect()
}

/// The unigram baseline's score on `chorales`.
pub fn unigram_baseline(train: &[Vec<u32>], chorales: &[Vec<u32>]) -> Score {
    let p = unigram_probabilities(train);
    let mut score = Score::default();
    for c in chorales {
        for &t in &c[1..] {
            score.add_probabilities(&p, t);
        }
    }
    score
}

/// The Markov baseline's score on `chorales`.
pub fn markov_baseline(train: &[Vec<u32>], chorales: &[Vec<u32>]) -> Score {
    let m = markov_probabilities(train);
    let mut score = Score::default();
    for c in chorales {
        for w in c.windows(2) {
            score.add_probabilities(&m[w[0] as usize], w[1]);
        }
    }
    score
}

/// The padded batch of `indices` of `chorales`: x (B, T, VOCAB) the one-hot tokens at 0..n−1,
/// target (B, T) u32 the tokens at 1..n (0 on padding), mask (B, T) 1 on real steps.
fn batch_of(
    chorales: &[Vec<u32>],
    indices: &[usize],
    dtype: DType,
    device: &Device,
) -> Result<Batch> {
    let lengths: Vec<usize> = indices.iter().map(|&i| chorales[i].len() - 1).collect();
    let t = lengths.iter().copied().max().unwrap_or(1);
    let b = indices.len();
    let mut x = vec![0f32; b * t * VOCAB];
    let mut target = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    for (row, &i) in indices.iter().enumerate() {
        for (s, w) in chorales[i].windows(2).enumerate() {
            x[(row * t + s) * VOCAB + w[0] as usize] = 1.0;
            target[row * t + s] = w[1];
            mask[row * t + s] = 1.0;
        }
    }
    Ok(Batch {
        x: Tensor::from_vec(x, (b, t, VOCAB), device)?.to_dtype(dtype)?,
        target: Tensor::from_vec(target, (b, t), device)?,
        mask: Some(Tensor::from_vec(mask, (b, t), device)?.to_dtype(dtype)?),
        dt: None,
        indices: indices.to_vec(),
        lengths,
    })
}

/// Scores `predict` on every real step of `chorales`.
fn score_model(
    chorales: &[Vec<u32>],
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
        let need = batch.lengths.iter().copied().max().unwrap_or(0);
        if b != chunk.len() || o != VOCAB || t < need {
            return Err(TaskError::Data(format!(
                "the model's read-out is {b}×{t}×{o}; the batch needs {}×{need}×{VOCAB}",
                chunk.len()
            )));
        }
        let y: Vec<Vec<Vec<f64>>> = y.to_dtype(DType::F64)?.to_vec3()?;
        for (row, &i) in chunk.iter().enumerate() {
            for (z, &target) in y[row].iter().zip(&chorales[i][1..]) {
                score.add_logits(z, target);
            }
        }
    }
    Ok(score)
}

/// The soprano next-token task.
pub struct SopranoTask {
    file: PathBuf,
    data: SopranoData,
    /// The baselines' scores on test (token frequencies, Markov chain), fitted once.
    baselines: (Score, Score),
}

impl SopranoTask {
    /// Reads `dir/Jsb16thSeparated.json`. `train_size`/`test_size` keep the first chorales of
    /// the train and test splits (0 = all); the validation split is kept whole.
    /// With `transpose`, every chorale is moved to end on a C ([`shift_to_c`]).
    pub fn new(dir: &Path, train_size: usize, test_size: usize, transpose: bool) -> Result<Self> {
        let file = dir.join(FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| TaskError::Data(format!("{}: cannot read: {e}", file.display())))?;
        let data = parse_with(&text, &file.display().to_string(), transpose)?;
        Self::from_data(data, file, train_size, test_size)
    }

    /// The task on parsed data; `file` names where it came from.
    pub fn from_data(
        mut data: SopranoData,
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
            unigram_baseline(&data.train, &data.test),
            markov_baseline(&data.train, &data.test),
        );
        Ok(Self {
            file,
            data,
            baselines,
        })
    }

    pub fn data(&self) -> &SopranoData {
        &self.data
    }

    fn split(&self, split: Split) -> &[Vec<u32>] {
        match split {
            Split::Train => &self.data.train,
            Split::Test => &self.data.test,
        }
    }
}

impl SequenceTask for SopranoTask {
    fn name(&self) -> &str {
        "bach-soprano"
    }
    fn input_size(&self) -> usize {
        VOCAB
    }
    fn output_size(&self) -> usize {
        VOCAB
    }
    fn objective(&self) -> Objective {
        Objective::ClassPerStep
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
        let (unigram, markov) = &self.baselines;
        let nll = test.nll();
        let mut values = BTreeMap::new();
        values.insert("neg_test_nll".to_string(), -nll);
        values.insert("test_nll".to_string(), nll);
        values.insert("valid_nll".to_string(), valid.nll());
        values.insert("train_nll".to_string(), train.nll());
        values.insert("test_accuracy".to_string(), test.accuracy());
        values.insert("valid_accuracy".to_string(), valid.accuracy());
        values.insert("baseline_unigram_nll".to_string(), unigram.nll());
        values.insert("baseline_unigram_accuracy".to_string(), unigram.accuracy());
        values.insert("baseline_markov_nll".to_string(), markov.nll());
        values.insert("baseline_markov_accuracy".to_string(), markov.accuracy());
        values.insert("test_steps".to_string(), test.steps as f64);
        let mut summary = format!(
            "test NLL {nll:.3} nats per 16th step over {} steps of {} soprano lines (valid {:.3}, \
             train {:.3}), next-token accuracy {:.1}%; baselines on test: token frequencies \
             {:.3} ({:.1}%), token Markov chain {:.3} ({:.1}%)",
            test.steps,
            d.test.len(),
            valid.nll(),
            train.nll(),
            100.0 * test.accuracy(),
            unigram.nll(),
            100.0 * unigram.accuracy(),
            markov.nll(),
            100.0 * markov.accuracy(),
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

    /// The smoothed training frequency of each token (the unigram baseline).
    fn fitted_statistics(&self) -> Vec<(String, Vec<f64>)> {
        vec![(
            "token_frequency".to_string(),
            unigram_probabilities(&self.data.train),
        )]
    }
}

impl std::fmt::Debug for SopranoTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SopranoTask")
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

    fn note(p: u8) -> u32 {
        Token::Note(p).index()
    }

    // Soprano: 60 60 -1 62 | 64 64 64 | 60 -1 (other voices arbitrary, floats allowed).
    const TINY: &str = r#"{
        "train": [[[60, 55, 52, 48], [60, 55, 52, 48], [-1, 55, 52, 48], [62.0, 57, 53, 50]],
                  [[64, 60, 55, 48], [64, 60, 55, 48], [64, -1, 55, 48]]],
        "valid": [[[60, 57, 53, 41], [60, 57, 53, 41]]],
        "test": [[[60, 55, 52, 48], [-1, -1, -1, -1]]]
    }"#;

    fn tiny() -> SopranoTask {
        SopranoTask::from_data(parse(TINY, "tiny.json").unwrap(), "tiny.json".into(), 0, 0).unwrap()
    }

    fn err(text: &str) -> String {
        parse(text, "bad.json").unwrap_err().to_string()
    }

    #[test]
    fn tokens_are_rests_holds_and_onsets() {
        assert_eq!(VOCAB, 32);
        let d = parse(TINY, "tiny.json").unwrap();
        assert_eq!(d.train[0], vec![note(60), HOLD, REST, note(62)]);
        assert_eq!(d.train[1], vec![note(64), HOLD, HOLD]);
        assert_eq!(d.test[0], vec![note(60), REST]);
        // A new pitch right after another is an onset; a rest never holds.
        // A line ending on D moves down a tone to end on C; one ending on A moves up a minor third
        // (the smaller shift) unless that leaves the vocabulary.
        assert_eq!(shift_to_c(&[Some(64), None, Some(62)]), Some(-2));
        assert_eq!(shift_to_c(&[Some(69), Some(69)]), Some(3));
        assert_eq!(shift_to_c(&[Some(84), Some(81)]), Some(-9));
        assert_eq!(shift_to_c(&[None, None]), None);
        let t = tokenize(&[Some(60), Some(62), Some(62), None, None, Some(62)]);
        assert_eq!(t, vec![note(60), note(62), HOLD, REST, REST, note(62)]);
        for i in 0..VOCAB as u32 {
            assert_eq!(Token::from_index(i).index(), i);
        }
        assert_eq!(note(55), 2);
        assert_eq!(note(84), VOCAB as u32 - 1);
        assert_eq!(Token::from_index(note(72)).name(), "C5");
        assert_eq!(pitch_name(60), "C4");
        assert_eq!(pitch_name(73), "C#5");
        assert_eq!(pitch_name(69), "A4");
    }

    #[test]
    fn batches_shift_by_one_token_and_mask_the_padding() {
        let task = tiny();
        let b = task
            .batch(Split::Train, &[0, 1], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, 3, VOCAB]);
        assert_eq!(b.target.dims(), &[2, 3]);
        assert_eq!(b.target.dtype(), DType::U32);
        assert_eq!(b.lengths, vec![3, 2]);
        let mask: Vec<Vec<f32>> = b.mask.unwrap().to_vec2().unwrap();
        assert_eq!(mask, vec![vec![1.0, 1.0, 1.0], vec![1.0, 1.0, 0.0]]);
        let y: Vec<Vec<u32>> = b.target.to_vec2().unwrap();
        assert_eq!(y, vec![vec![HOLD, REST, note(62)], vec![HOLD, HOLD, 0]]);
        let x: Vec<Vec<Vec<f32>>> = b.x.to_vec3().unwrap();
        let hot = |v: &[f32]| -> Vec<u32> {
            (0..VOCAB as u32)
                .filter(|&k| v[k as usize] == 1.0)
                .collect()
        };
        assert_eq!(hot(&x[0][0]), vec![note(60)]);
        assert_eq!(hot(&x[0][1]), vec![HOLD]);
        assert_eq!(hot(&x[0][2]), vec![REST]);
        assert_eq!(hot(&x[1][0]), vec![note(64)]);
        assert!(hot(&x[1][2]).is_empty(), "padding is all zeros");
    }

    #[test]
    fn nll_and_accuracy_of_a_known_predictor() {
        // Logit 1 on HOLD, 0 elsewhere: p(HOLD) = e / (e + 31).
        let task = tiny();
        let mut predict = |b: &Batch| -> Result<Tensor> {
            let (n, t, _) = b.x.dims3()?;
            let mut z = vec![0f32; n * t * VOCAB];
            for s in 0..n * t {
                z[s * VOCAB + HOLD as usize] = 1.0;
            }
            Ok(Tensor::from_vec(z, (n, t, VOCAB), &Device::Cpu)?)
        };
        let e = task
            .evaluate(1, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        let denom = 1f64.exp() + 31.0;
        let hold = -(1f64.exp() / denom).ln();
        let other = denom.ln();
        // Train targets: HOLD REST n62 | HOLD HOLD: 3 holds, 2 others over 5 steps.
        assert!((e.values["train_nll"] - (3.0 * hold + 2.0 * other) / 5.0).abs() < 1e-9);
        // Test target: REST (a miss); valid: HOLD (a hit).
        assert!((e.values["test_nll"] - other).abs() < 1e-9);
        assert!((e.values["valid_nll"] - hold).abs() < 1e-9);
        assert_eq!(e.values["test_accuracy"], 0.0);
        assert_eq!(e.values["valid_accuracy"], 1.0);
        assert_eq!(e.metric, -e.values["test_nll"]);
        assert_eq!(e.values["test_steps"], 1.0);
    }

    #[test]
    fn a_nan_predictor_scores_infinite_nll_and_no_hits() {
        let task = tiny();
        let mut predict = |b: &Batch| -> Result<Tensor> {
            let (n, t, _) = b.x.dims3()?;
            Ok(Tensor::full(f32::NAN, (n, t, VOCAB), &Device::Cpu)?)
        };
        let e = task
            .evaluate(4, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        assert_eq!(e.metric, f64::NEG_INFINITY);
        assert_eq!(e.values["test_nll"], f64::INFINITY);
        assert_eq!(e.values["test_accuracy"], 0.0);
        assert_eq!(e.values["valid_accuracy"], 0.0);
        assert!(e.summary.contains("infinite"), "{}", e.summary);
    }

    #[test]
    fn baselines_match_hand_values() {
        let d = parse(TINY, "tiny.json").unwrap();
        // Training targets: HOLD REST n62 HOLD HOLD; add-one over 32 tokens: total 37.
        let p = unigram_probabilities(&d.train);
        assert!((p[HOLD as usize] - 4.0 / 37.0).abs() < 1e-15);
        assert!((p[note(81) as usize] - 1.0 / 37.0).abs() < 1e-15);
        let u = unigram_baseline(&d.train, &d.test);
        assert!((u.nll() + (2.0f64 / 37.0).ln()).abs() < 1e-12);
        assert_eq!(
            u.accuracy(),
            0.0,
            "the most frequent token is HOLD, the target REST"
        );
        // Transitions from n60: one (to HOLD): P(HOLD | n60) = 2/33, P(REST | n60) = 1/33.
        let m = markov_probabilities(&d.train);
        assert!((m[note(60) as usize][HOLD as usize] - 2.0 / 33.0).abs() < 1e-15);
        let mk = markov_baseline(&d.train, &d.test);
        assert!((mk.nll() + (1.0f64 / 33.0).ln()).abs() < 1e-12);
        assert_eq!(mk.accuracy(), 0.0);
    }

    #[test]
    fn bad_inputs_are_refused_with_their_place() {
        let e = err(r#"{"train": [[[60, 1, 1, 1], [90, 1, 1, 1]]], "valid": [], "test": []}"#);
        assert!(
            e.contains("bad.json")
                && e.contains("train chorale 0, step 1")
                && e.contains("soprano pitch 90")
                && e.contains("55..=84"),
            "{e}"
        );
        let e = err(r#"{"train": [], "valid": [[[60, 1, 1, 1], [54, 1, 1, 1]]], "test": []}"#);
        assert!(
            e.contains("valid chorale 0, step 1") && e.contains("54"),
            "{e}"
        );
        let e = err(r#"{"train": [], "valid": [], "test": [[[60, 1, 1, 1], [60.5, 1, 1, 1]]]}"#);
        assert!(
            e.contains("test chorale 0, step 1") && e.contains("60.5"),
            "{e}"
        );
        let e = err(r#"{"train": [], "valid": [], "test": [[[60, 1, 1, 1], [60, 1, 1]]]}"#);
        assert!(
            e.contains("test chorale 0, step 1") && e.contains("3 voices"),
            "{e}"
        );
        let e = err(r#"{"train": [[[60, 1, 1, 1], [60, 1, 1, 1]], []], "valid": [], "test": []}"#);
        assert!(
            e.contains("bad.json") && e.contains("train chorale 1") && e.contains("empty chorale"),
            "{e}"
        );
        let e = err(r#"{"train": [], "valid": [], "test": [[[60, 1, 1, 1]]]}"#);
        assert!(e.contains("test chorale 0") && e.contains("1 step;"), "{e}");
        let e = err("{\"train\": [[[60, 1, 1, 1],\n [61");
        assert!(e.contains("bad.json") && e.contains("line 2 column"), "{e}");
        let e = err(r#"{"train": [], "valid": []}"#);
        assert!(e.contains("bad.json") && e.contains("test"), "{e}");
        let e = SopranoTask::new(Path::new("/nonexistent-folder"), 0, 0, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Jsb16thSeparated.json") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn the_real_soprano_lines_fit_the_vocabulary() {
        let Some(dir) = crate::datasets::shared_for_tests("datasets/jsb_chorales") else {
            return;
        };
        let task = SopranoTask::new(&dir, 0, 0, false).unwrap();
        let moved = SopranoTask::new(&dir, 0, 0, true).unwrap();
        assert_eq!(moved.data().train.len(), task.data().train.len());
        let d = task.data();
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (229, 76, 77));
        let steps = |s: &[Vec<u32>]| s.iter().map(|c| c.len()).sum::<usize>();
        assert_eq!(
            (steps(&d.train), steps(&d.valid), steps(&d.test)),
            (55_228, 18_408, 18_900)
        );
        let all = || d.train.iter().chain(&d.valid).chain(&d.test);
        assert_eq!(all().map(|c| c.len() - 1).max().unwrap(), MAX_STEPS);
        let notes: Vec<u32> = all().flatten().copied().filter(|&t| t > HOLD).collect();
        assert_eq!(*notes.iter().min().unwrap(), note(60));
        assert_eq!(*notes.iter().max().unwrap(), note(81));
        let u = unigram_baseline(&d.train, &d.test);
        let m = markov_baseline(&d.train, &d.test);
        println!(
            "bach-soprano test NLL per 16th step: unigram baseline {:.4} (accuracy {:.3}), \
             Markov baseline {:.4} (accuracy {:.3}); {} test steps",
            u.nll(),
            u.accuracy(),
            m.nll(),
            m.accuracy(),
            u.steps
        );
        assert!(m.nll() < u.nll() && u.nll() < (VOCAB as f64).ln());
        assert_eq!(u.steps, 18_900 - 77);
    }
}
