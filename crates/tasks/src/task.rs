use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What the trainer minimises for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Independent sigmoid outputs per step: binary cross-entropy against a multi-hot target
    /// (batch, time, outputs), averaged over the steps where `mask` is 1.
    MultiLabelPerStep,
    /// Softmax cross-entropy on the read-out of each sequence's last real step
    /// (`Batch::lengths`) against a class index target (batch,) stored as u32.
    ClassLastStep,
    /// Softmax cross-entropy on the read-out averaged over each sequence's real steps (the
    /// class of the mean state, the head being linear) against a class index target (batch,).
    ClassMeanOverTime,
    /// Softmax cross-entropy at every step against class indices (batch, time) stored as u32,
    /// averaged over the steps with the weights of `mask` (next-token prediction, labels per step).
    ClassPerStep,
    /// Squared error summed over outputs against a target (batch, time, outputs), averaged over
    /// the steps with the weights of `mask`.
    RegressionPerStep,
}

/// A padded batch of sequences.
#[derive(Debug, Clone)]
pub struct Batch {
    /// (batch, time, features).
    pub x: Tensor,
    /// Shape depends on the [`Objective`].
    pub target: Tensor,
    /// (batch, time): the weight of each step in the loss: 0 on padding, 1 on real steps, or a
    /// class weight where a task weights its classes. The loss is Σ mask·loss / Σ mask (PyTorch's
    /// weighted mean). `None` when every step of every sequence counts once.
    pub mask: Option<Tensor>,
    /// (batch, time) elapsed time per step, for continuous-time cells. `None`: one unit per step.
    pub dt: Option<Tensor>,
    /// Index of each sequence in its split.
    pub indices: Vec<usize>,
    /// Real length of each sequence.
    pub lengths: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    Train,
    Test,
}

/// A task's verdict on a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The headline metric's name (higher is better), e.g. `test_string_accuracy`.
    pub metric_name: String,
    pub metric: f64,
    /// Whether the task counts as solved by its field's criterion, where it has one.
    pub solved: Option<bool>,
    /// Every number computed, by name (the headline metric included).
    pub values: BTreeMap<String, f64>,
    /// One or two sentences in the terms of the task's field.
    #[serde(default)]
    pub summary: String,
}

/// How a task's validation value ranks epochs ([`SequenceTask::selection`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// A key of [`Evaluation::values`], e.g. `valid_accuracy`.
    pub value: &'static str,
    pub higher_is_better: bool,
}

impl Selection {
    /// Whether `new` beats `old` (a non-finite value never does).
    pub fn improves(&self, new: f64, old: Option<f64>) -> bool {
        new.is_finite()
            && match old {
                None => true,
                Some(o) if self.higher_is_better => new > o,
                Some(o) => new < o,
            }
    }
}

/// The indices `0..n` in an order drawn from `rng`, cut into chunks of at most `batch_size`: the
/// batch order of one training epoch.
pub fn shuffled_chunks(n: usize, batch_size: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    use rand::seq::SliceRandom;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(rng);
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}

/// The read-out a sequence-level class is read from: (batch, time, outputs) → (batch, outputs),
/// at each sequence's last real step (`lengths`) or averaged over its real steps. Used by the
/// loss and by the tasks' metrics, so both read the same step.
pub fn class_readout(y: &Tensor, lengths: &[usize], objective: Objective) -> Result<Tensor> {
    let (b, t, o) = y.dims3()?;
    if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > t) {
        return Err(crate::TaskError::Data(format!(
            "sequence lengths {lengths:?} do not fit a read-out of {t} steps for {b} sequences"
        )));
    }
    match objective {
        Objective::ClassMeanOverTime => {
            let mask: Vec<f64> = lengths
                .iter()
                .flat_map(|&l| (0..t).map(move |s| if s < l { 1.0 / l as f64 } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (b, t, 1), y.device())?.to_dtype(y.dtype())?;
            Ok(y.broadcast_mul(&mask)?.sum(1)?)
        }
        _ if lengths.iter().all(|&l| l == t) => Ok(y.narrow(1, t - 1, 1)?.squeeze(1)?),
        _ => {
            let idx: Vec<u32> = lengths
                .iter()
                .flat_map(|&l| std::iter::repeat_n(l as u32 - 1, o))
                .collect();
            let idx = Tensor::from_vec(idx, (b, 1, o), y.device())?;
            Ok(y.gather(&idx, 1)?.squeeze(1)?)
        }
    }
}

/// The model's read-out for a batch: (batch, time, outputs).
pub type Predict<'a> = dyn FnMut(&Batch) -> Result<Tensor> + 'a;

/// A sequence task: its data, cut into batches by index, its objective and its metric.
pub trait SequenceTask: Send + Sync {
    fn name(&self) -> &str;
    /// Features per step of `Batch::x`.
    fn input_size(&self) -> usize;
    /// Read-out size the objective expects.
    fn output_size(&self) -> usize;
    fn objective(&self) -> Objective;
    /// Number of sequences in `split`.
    fn len(&self, split: Split) -> usize;
    /// The padded batch of the sequences at `indices` of `split` (each below `len(split)`), in
    /// that order: `x` (B, T, input_size), the target and mask as the [`Objective`] says.
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch>;
    /// Scores the model on the task's splits.
    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation>;

    /// The value of [`Evaluation::values`] that picks the model to test, for tasks with a
    /// validation part (the protocol "test on the best-validation checkpoint"): the trainer keeps
    /// the weights of the epoch where it was best as `best.safetensors`, with that epoch's test
    /// metric. `None`: no validation part.
    fn selection(&self) -> Option<Selection> {
        None
    }

    /// The class of sequence `index` of `split`, for tasks that classify whole sequences (what
    /// continual-learning scenarios split by); `None` for other tasks.
    fn label(&self, _split: Split, _index: usize) -> Option<usize> {
        None
    }

    /// What the user should know about the data as loaded (files skipped at their request…).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Numbers the task fitted on its training split (normalisation statistics), by name; the
    /// run folder keeps them (`task.json`) beside the model they belong to.
    fn fitted_statistics(&self) -> Vec<(String, Vec<f64>)> {
        Vec::new()
    }

    /// Number of training sequences (an epoch).
    fn train_len(&self) -> usize {
        self.len(Split::Train)
    }

    /// The batch order of one training epoch: the training indices in an order drawn from
    /// `rng`, cut into chunks of at most `batch_size`.
    fn epoch_order(&self, batch_size: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
        shuffled_chunks(self.train_len(), batch_size, rng)
    }

    /// The training split in batches of at most `batch_size`, in an order drawn from `rng`.
    fn train_batches(
        &self,
        batch_size: usize,
        rng: &mut ChaCha8Rng,
        dtype: DType,
        device: &Device,
    ) -> Result<Vec<Batch>> {
        self.epoch_order(batch_size, rng)
            .iter()
            .map(|c| self.batch(Split::Train, c, dtype, device))
            .collect()
    }
}
