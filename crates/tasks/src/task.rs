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
    /// Softmax cross-entropy on the read-out of the last step against a class index
    /// target (batch,) stored as u32.
    ClassLastStep,
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
