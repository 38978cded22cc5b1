//! Task-incremental learning: the model keeps one read-out over every class, but the task
//! identity of each sequence (the group of classes it was learned in) is known at training and at
//! test time, so only the logits of its own group compete.
//!
//! A [`TaskMask`] maps each class to its group. For a batch of sequence-level class targets it
//! replaces the read-out of every class outside a sequence's own group by a large negative finite
//! value ([`masked_logit`]): the softmax then gives those classes a probability of exactly 0, the
//! argmax falls inside the group, and their read-outs get no gradient (the replacement does not
//! depend on them). Replayed sequences of earlier groups mixed into a batch are masked to their own
//! group, as is each sequence of a joint (cumulative) experience.
//!
//! [`TaskIlPlugin`] applies the mask in the trainer's step through
//! [`Plugin::transform_output`], before the loss and every other plugin's `extra_loss`;
//! [`Experience::accuracy`](crate::scenario::Experience::accuracy) applies the same mask before
//! its argmax.
use std::sync::Arc;

use candle_core::{DType, Tensor};
use remanence_tasks::{Batch, Objective};
use remanence_train::learner::{Plugin, StepContext};

use crate::error::{ContinualError, Result};

/// What replaces the logits of the classes outside a sequence's group in `dtype`: −10⁹, or −3·10⁴
/// in f16 (whose range ends at ±65504). Finite, so no NaN reaches the loss or its gradient, and far
/// enough below any trained logit that `exp(masked − max)` underflows to exactly 0.
pub fn masked_logit(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => -3.0e4,
        _ => -1.0e9,
    }
}

/// Which group of classes each class belongs to (the experiences of a task-incremental split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMask {
    /// `group[c]`: the group of class `c`, `None` for a class in no group.
    group: Vec<Option<usize>>,
    groups: usize,
}

impl TaskMask {
    /// The mask of `groups` (group `g` holds the classes `groups[g]`) over a read-out of `classes`
    /// classes. A class may sit in at most one group and must be below `classes`.
    pub fn new(groups: &[Vec<usize>], classes: usize) -> Result<Self> {
        let mut group = vec![None; classes];
        for (g, members) in groups.iter().enumerate() {
            for &c in members {
                let slot = group.get_mut(c).ok_or_else(|| {
                    ContinualError::Config(format!(
                        "task mask: class {c} of group {g} is outside the read-out of {classes} \
                         classes"
                    ))
                })?;
                if let Some(other) = slot.replace(g) {
                    return Err(ContinualError::Config(format!(
                        "task mask: class {c} is in group {other} and group {g}"
                    )));
                }
            }
        }
        Ok(Self {
            group,
            groups: groups.len(),
        })
    }

    /// Size of the read-out the mask applies to.
    pub fn classes(&self) -> usize {
        self.group.len()
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The group of `class`; `None` outside every group.
    pub fn group_of(&self, class: usize) -> Option<usize> {
        self.group.get(class).copied().flatten()
    }

    /// The classes of `class`'s group, ascending (those that compete for a sequence of `class`).
    pub fn group_classes(&self, class: usize) -> Vec<usize> {
        let Some(g) = self.group_of(class) else {
            return Vec::new();
        };
        (0..self.classes())
            .filter(|&c| self.group[c] == Some(g))
            .collect()
    }

    /// The classes of group `g`, ascending.
    pub fn classes_of_group(&self, g: usize) -> Vec<usize> {
        (0..self.classes())
            .filter(|&c| self.group[c] == Some(g))
            .collect()
    }

    /// Row-major (labels.len(), classes): 1 where the class is in the label's group.
    fn keep(&self, labels: &[u32]) -> Result<Vec<u8>> {
        let c = self.classes();
        let mut keep = vec![0u8; labels.len() * c];
        for (row, &label) in labels.iter().enumerate() {
            let g = self.group_of(label as usize).ok_or_else(|| {
                ContinualError::Config(format!(
                    "task-incremental mask: label {label} belongs to no group of the split \
                     ({} classes in {} groups)",
                    c, self.groups
                ))
            })?;
            for (k, slot) in keep[row * c..(row + 1) * c].iter_mut().enumerate() {
                *slot = (self.group[k] == Some(g)) as u8;
            }
        }
        Ok(keep)
    }

    /// `output` (B, T, classes) with, in row b, every step's logits of the classes outside the
    /// group of sequence b's label replaced by [`masked_logit`]; the logits of its own group are
    /// untouched. `labels`: the class of each of the B sequences.
    pub fn apply_labels(&self, labels: &[u32], output: &Tensor) -> Result<Tensor> {
        let (b, t, c) = output.dims3()?;
        if b != labels.len() || c != self.classes() {
            return Err(ContinualError::Config(format!(
                "task-incremental mask: a read-out of {b}×{t}×{c} for {} labels over {} classes",
                labels.len(),
                self.classes()
            )));
        }
        let keep = Tensor::from_vec(self.keep(labels)?, (b, 1, c), output.device())?
            .broadcast_as((b, t, c))?;
        let fill = Tensor::new(masked_logit(output.dtype()), output.device())?
            .to_dtype(output.dtype())?
            .broadcast_as((b, t, c))?;
        Ok(keep.where_cond(output, &fill)?)
    }

    /// The masked read-out of `batch` (see [`TaskMask::apply_labels`]): `batch.target` holds the
    /// class index (B,) of each sequence, as the sequence-level `objective`
    /// ([`Objective::ClassLastStep`] or [`Objective::ClassMeanOverTime`]) says; `output` is the
    /// model's read-out (B, T, classes).
    pub fn apply(&self, batch: &Batch, objective: Objective, output: &Tensor) -> Result<Tensor> {
        if !matches!(
            objective,
            Objective::ClassLastStep | Objective::ClassMeanOverTime
        ) {
            return Err(ContinualError::Config(format!(
                "task-incremental masking needs one class per sequence, and the objective is \
                 {objective:?}"
            )));
        }
        let labels: Vec<u32> = batch.target.to_dtype(DType::U32)?.to_vec1()?;
        self.apply_labels(&labels, output)
    }
}

/// Masks the read-out of every training step to each sequence's group (task-incremental
/// training); add it to the learner of every experience of a task-incremental scenario.
pub struct TaskIlPlugin {
    mask: Arc<TaskMask>,
}

impl TaskIlPlugin {
    pub fn new(mask: Arc<TaskMask>) -> Self {
        Self { mask }
    }
}

impl Plugin for TaskIlPlugin {
    fn transform_output(
        &mut self,
        ctx: &StepContext,
        batch: &Batch,
        output: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        self.mask
            .apply(batch, ctx.objective, output)
            .map(Some)
            .map_err(|e| match e {
                ContinualError::Candle(e) => remanence_train::TrainError::Candle(e),
                e => remanence_train::TrainError::Config(e.to_string()),
            })
    }
}
