//! Sequence-list learning, after the set-up of Ans, Rousset, French & Musca (2004): a network
//! learns several lists of short sequences of items one list after another, predicting at each
//! step the next item of the sequence, and is then asked to recall the earlier lists.
//!
//! [`SequenceLists`] is the synthetic task behind the scenario `lists:L:S:N:V`, drawn entirely from
//! the scenario's seed (no data files):
//!
//! - a vocabulary of `V` items, item `i` presented as a fixed random binary vector of `V` bits
//!   (each bit 1 with probability ½), the `V` vectors distinct and none all zeros;
//! - `L` lists of `S` sequences of `N` items each; every sequence starts with an item that no
//!   other sequence of any list starts with (so `L·S ≤ V`), and its other `N − 1` items are drawn
//!   uniformly from the whole vocabulary, repeats allowed. The first item thus tells the sequences
//!   apart, and the rest of a sequence is determined by its context (what came before), as in
//!   the original experiments; items are shared between lists, which is where they interfere;
//! - at step `t` the input is item `s_t`'s vector and the target is the index of the next item
//!   `s_{t+1}` ([`Objective::ClassPerStep`] over `V` classes); the last step has no next item, so
//!   its weight in the mask is 0 (its target is written as 0 and never counts).
//!
//! The task is recall: its test split *is* its training split (the same `L·S` sequences, list
//! after list: sequence `k` of list `l` has index `l·S + k`). The score is the fraction of next
//! items predicted right (argmax over the `V` items) over the steps that count, and, beside it,
//! the fraction of sequences recalled perfectly (every step right).
use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remanence_tasks::mnist::predicted_class;
use remanence_tasks::task::Predict;
use remanence_tasks::{Batch, Evaluation, Objective, SequenceTask, Split, TaskError};

use crate::error::{ContinualError, Result};

/// Next-item predictions counted over batches of a per-step classification task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recall {
    /// Steps predicted right (argmax of the read-out = target; a non-finite read-out never is).
    pub right: usize,
    /// Steps that count: weight > 0 in the batch's mask, or, without a mask, the real steps.
    pub steps: usize,
    /// Sequences scored.
    pub sequences: usize,
    /// Sequences with every counted step right.
    pub perfect: usize,
}

impl Recall {
    /// Adds the predictions `y` (B, T, classes) on `batch` (targets (B, T) as u32).
    pub fn add(&mut self, y: &Tensor, batch: &Batch) -> Result<()> {
        let (b, t, _) = y.dims3()?;
        let (tb, tt) = batch.target.dims2()?;
        if (tb, tt) != (b, t) || batch.lengths.len() != b {
            return Err(ContinualError::Config(format!(
                "a per-step read-out of {b}×{t} steps for targets of {tb}×{tt} steps and {} \
                 sequences",
                batch.lengths.len()
            )));
        }
        let logits: Vec<Vec<Vec<f32>>> = y.to_dtype(DType::F32)?.to_vec3()?;
        let targets: Vec<Vec<u32>> = batch.target.to_dtype(DType::U32)?.to_vec2()?;
        let weights: Option<Vec<Vec<f32>>> = match &batch.mask {
            Some(m) => Some(m.to_dtype(DType::F32)?.to_vec2()?),
            None => None,
        };
        for r in 0..b {
            let mut all_right = true;
            for s in 0..t {
                let counts = match &weights {
                    Some(w) => w[r][s] > 0.0,
                    None => s < batch.lengths[r],
                };
                if !counts {
                    continue;
                }
                self.steps += 1;
                if predicted_class(&logits[r][s]) == Some(targets[r][s] as usize) {
                    self.right += 1;
                } else {
                    all_right = false;
                }
            }
            self.sequences += 1;
            self.perfect += all_right as usize;
        }
        Ok(())
    }

    /// Fraction of counted steps right (0 without any).
    pub fn item_accuracy(&self) -> f64 {
        self.right as f64 / self.steps.max(1) as f64
    }

    /// Fraction of sequences recalled perfectly (0 without any).
    pub fn perfect_fraction(&self) -> f64 {
        self.perfect as f64 / self.sequences.max(1) as f64
    }
}

/// The lists of sequences of a `lists:L:S:N:V` scenario (see the module documentation).
#[derive(Debug, Clone)]
pub struct SequenceLists {
    lists: usize,
    per_list: usize,
    length: usize,
    /// `codes[i]`: item i's binary vector (V values, 0 or 1).
    codes: Vec<Vec<u8>>,
    /// `L·S` sequences of `N` item indices, list after list.
    sequences: Vec<Vec<u32>>,
}

impl SequenceLists {
    /// Why `lists:L:S:N:V` cannot be built, if it cannot: every number ≥ 1, a sequence of at
    /// least two items (one next item to predict), a vocabulary of at least two items, and a
    /// first item of its own for each of the `L·S` sequences.
    pub fn check(
        lists: usize,
        per_list: usize,
        length: usize,
        vocabulary: usize,
    ) -> std::result::Result<(), String> {
        if lists == 0 || per_list == 0 {
            return Err("the scenario needs at least one list of at least one sequence".into());
        }
        if length < 2 {
            return Err(format!(
                "sequences of {length} item have no next item to predict; use N ≥ 2"
            ));
        }
        if vocabulary < 2 {
            return Err(format!(
                "a vocabulary of {vocabulary} item leaves nothing to predict; use V ≥ 2"
            ));
        }
        match lists.checked_mul(per_list) {
            Some(n) if n <= vocabulary => Ok(()),
            _ => Err(format!(
                "{lists} lists × {per_list} sequences need {} distinct first items (each sequence \
                 starts with an item no other starts with), more than the vocabulary of \
                 {vocabulary}; use L·S ≤ V",
                lists.saturating_mul(per_list)
            )),
        }
    }

    /// `lists` lists of `per_list` sequences of `length` items over a vocabulary of `vocabulary`
    /// items, drawn from `seed`: the same seed gives the same item vectors and sequences.
    pub fn new(
        lists: usize,
        per_list: usize,
        length: usize,
        vocabulary: usize,
        seed: u64,
    ) -> Result<Self> {
        Self::check(lists, per_list, length, vocabulary).map_err(|why| {
            ContinualError::Config(format!(
                "--scenario lists:{lists}:{per_list}:{length}:{vocabulary}: {why}"
            ))
        })?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x11_57_5E_0A);
        let mut codes: Vec<Vec<u8>> = Vec::with_capacity(vocabulary);
        // 2^V − 1 ≥ V non-zero vectors exist, so the draw ends; for V ≥ 8 it rarely repeats.
        while codes.len() < vocabulary {
            let code: Vec<u8> = (0..vocabulary)
                .map(|_| rng.random_bool(0.5) as u8)
                .collect();
            if code.contains(&1) && !codes.contains(&code) {
                codes.push(code);
            }
        }
        let mut firsts: Vec<u32> = (0..vocabulary as u32).collect();
        firsts.shuffle(&mut rng);
        let sequences = firsts[..lists * per_list]
            .iter()
            .map(|&first| {
                std::iter::once(first)
                    .chain((1..length).map(|_| rng.random_range(0..vocabulary as u32)))
                    .collect()
            })
            .collect();
        Ok(Self {
            lists,
            per_list,
            length,
            codes,
            sequences,
        })
    }

    /// Number of lists `L`.
    pub fn lists(&self) -> usize {
        self.lists
    }

    /// Sequences per list `S`.
    pub fn per_list(&self) -> usize {
        self.per_list
    }

    /// Items per sequence `N` (= steps per sequence).
    pub fn length(&self) -> usize {
        self.length
    }

    /// Items in the vocabulary `V` (= input features = classes).
    pub fn vocabulary(&self) -> usize {
        self.codes.len()
    }

    /// Item `item`'s binary vector (`V` values, 0 or 1).
    pub fn code(&self, item: usize) -> &[u8] {
        &self.codes[item]
    }

    /// Every sequence as item indices, list after list (sequence `k` of list `l` at `l·S + k`).
    pub fn sequences(&self) -> &[Vec<u32>] {
        &self.sequences
    }

    /// The list sequence `index` belongs to.
    pub fn list_of(&self, index: usize) -> usize {
        index / self.per_list
    }

    /// The sequence indices of list `list`.
    pub fn list(&self, list: usize) -> std::ops::Range<usize> {
        list * self.per_list..(list + 1) * self.per_list
    }
}

impl SequenceTask for SequenceLists {
    fn name(&self) -> &str {
        "lists"
    }
    fn input_size(&self) -> usize {
        self.vocabulary()
    }
    fn output_size(&self) -> usize {
        self.vocabulary()
    }
    fn objective(&self) -> Objective {
        Objective::ClassPerStep
    }
    /// Every sequence, in both splits (recall: the test split is the training split).
    fn len(&self, _split: Split) -> usize {
        self.sequences.len()
    }
    /// `x` (B, N, V): the items' vectors; `target` (B, N) u32: the next item's index (0 at the
    /// last step); `mask` (B, N): 1, and 0 at the last step; every length N.
    fn batch(
        &self,
        _split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let (b, n, v) = (indices.len(), self.length, self.vocabulary());
        let mut x = Vec::with_capacity(b * n * v);
        let mut target = Vec::with_capacity(b * n);
        let mut mask = Vec::with_capacity(b * n);
        for &i in indices {
            let seq = self.sequences.get(i).ok_or_else(|| {
                TaskError::Data(format!(
                    "sequence {i} of {} lists of {} sequences",
                    self.lists, self.per_list
                ))
            })?;
            for s in 0..n {
                x.extend(self.codes[seq[s] as usize].iter().map(|&bit| bit as f32));
                let next = seq.get(s + 1);
                target.push(next.copied().unwrap_or(0));
                mask.push(if next.is_some() { 1f32 } else { 0.0 });
            }
        }
        Ok(Batch {
            x: Tensor::from_vec(x, (b, n, v), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(target, (b, n), device)?,
            mask: Some(Tensor::from_vec(mask, (b, n), device)?.to_dtype(dtype)?),
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![n; b],
        })
    }
    /// Next-item accuracy and perfectly recalled sequences over every list.
    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        let mut recall = Recall::default();
        let all: Vec<usize> = (0..self.sequences.len()).collect();
        for chunk in all.chunks(batch_size.max(1)) {
            let batch = self.batch(Split::Test, chunk, dtype, device)?;
            let y = predict(&batch)?;
            recall
                .add(&y, &batch)
                .map_err(|e| TaskError::Data(e.to_string()))?;
        }
        let (acc, perfect) = (recall.item_accuracy(), recall.perfect_fraction());
        Ok(Evaluation {
            metric_name: "test_accuracy".into(),
            metric: acc,
            solved: Some(recall.perfect == recall.sequences),
            values: BTreeMap::from([
                ("test_accuracy".to_string(), acc),
                ("sequences_recalled".to_string(), perfect),
            ]),
            summary: format!(
                "{} lists of {} sequences of {} items over {}: next item right on {:.2}% of {} \
                 steps, {:.2}% of the sequences recalled perfectly",
                self.lists,
                self.per_list,
                self.length,
                self.vocabulary(),
                100.0 * acc,
                recall.steps,
                100.0 * perfect
            ),
        })
    }
}
