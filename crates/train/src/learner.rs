//! One training step behind a small trait: `batch → loss → gradients → update`.
//!
//! The [`Trainer`](crate::Trainer) owns epochs, evaluation, checkpoints and resume; a [`Learner`]
//! owns what happens to one batch. [`GradientLearner`] is backpropagation through time with an
//! [`Optimizer`]:
//!
//! ```text
//! batch  ← plugins' prepare (mix in replayed or pseudo-patterns)
//! y      ← plugins' transform_output(model(batch.x))                      (task-incremental masks)
//! L      = task loss(y, batch) + Σ plugins' extra_loss and hidden_loss   (EWC, SI, LwF, dual net)
//! g      = ∂L/∂θ, then every plugin's transform_gradients in turn        (A-GEM, all-reduce)
//! g      ← g·min(1, c/‖g‖₂) when clipping at c
//! θ      ← optimizer(θ, g, lr); then the model's constraints (the LTC's clamp in clip mode)
//! report ← plugins' report(loss, ‖g‖, sequences)                         (the global loss)
//! ```
//!
//! A method that replaces backward and update altogether implements [`Learner`] itself: the
//! closed-form ridge read-out of echo-state networks ([`crate::ridge`]), backward tuning (the
//! recurrent weights estimated from desired states). Methods that learn a sequence of
//! experiences get [`Learner::before_experience`] and [`Learner::after_experience`].
use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use remanence_cells::{ParamStore, SequenceModel};
use remanence_tasks::{Batch, Objective};

use crate::clip::{clip_global_norm, global_norm};
use crate::error::{Result, TrainError};
use crate::loss::loss;
use crate::optim::Optimizer;

/// What a step may read: the model, its parameters and the step's place in the run.
pub struct StepContext<'a> {
    pub model: &'a SequenceModel,
    pub store: &'a ParamStore,
    /// The trainable parameters, in the order gradients are given.
    pub vars: &'a [(String, Var)],
    pub objective: Objective,
    /// Learning rate of this epoch.
    pub lr: f64,
    /// 0-based epoch and batch.
    pub epoch: usize,
    pub batch: usize,
}

/// What a step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The loss minimised, averaged over the batch's sequences.
    pub loss: f64,
    /// Global L2 norm of the gradient before clipping (0 for methods without gradients).
    pub grad_norm: f64,
    /// Sequences this step learned from.
    pub sequences: usize,
}

/// Where a learner stands between experiences (continual learning).
pub struct ExperienceContext<'a> {
    pub model: &'a SequenceModel,
    pub store: &'a ParamStore,
    /// 0-based index of the experience.
    pub experience: usize,
}

/// Learns from one batch at a time.
pub trait Learner: Send {
    /// One step on `batch`: forward, loss, and whatever update the method makes.
    fn step(&mut self, ctx: &StepContext, batch: &Batch) -> Result<StepReport>;
    /// Before the first batch of an experience.
    fn before_experience(&mut self, _ctx: &ExperienceContext) -> Result<()> {
        Ok(())
    }
    /// After the last batch of an experience.
    fn after_experience(&mut self, _ctx: &ExperienceContext) -> Result<()> {
        Ok(())
    }
    /// Updates made so far (stored in checkpoints).
    fn steps(&self) -> u64;
    /// The learner's state as named tensors, saved in checkpoints under `optim.`.
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores a state saved by [`Learner::state`] after `steps` updates.
    fn load_state(&mut self, state: HashMap<String, Tensor>, steps: u64) -> Result<()>;
    /// Values the learner reports at the end of each epoch (added to the epoch's line of
    /// `metrics.jsonl`): the ridge fit's λ, for instance.
    fn metrics(&self) -> Vec<(String, f64)> {
        Vec::new()
    }
}

/// An addition to gradient learning: every hook defaults to doing nothing.
pub trait Plugin: Send {
    /// Replaces the batch before the forward pass (replay mixes stored sequences into it).
    fn prepare(&mut self, _ctx: &StepContext, _batch: &Batch) -> Result<Option<Batch>> {
        Ok(None)
    }
    /// Replaces the model's read-out (B, T, outputs) on the batch before the loss and every
    /// plugin's `extra_loss` see it (task-incremental masking); plugins run in order, each on the
    /// read-out the previous ones left. `None`: the read-out as it is.
    fn transform_output(
        &mut self,
        _ctx: &StepContext,
        _batch: &Batch,
        _output: &Tensor,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// A term added to the task loss from the recurrent outputs `hidden` (B, T, hidden) of the
    /// forward pass (the dual network's reconstruction of its input through a second head).
    fn hidden_loss(
        &mut self,
        _ctx: &StepContext,
        _batch: &Batch,
        _hidden: &Tensor,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// A term added to the task loss; `output` is the model's read-out (B, T, outputs) on the
    /// batch.
    fn extra_loss(
        &mut self,
        _ctx: &StepContext,
        _batch: &Batch,
        _output: &Tensor,
    ) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Changes the gradients (`grads[i]` of `ctx.vars[i]`) before clipping and the update:
    /// projection (A-GEM), an all-reduce across processes.
    fn transform_gradients(
        &mut self,
        _ctx: &StepContext,
        _grads: &mut [Option<Tensor>],
    ) -> Result<()> {
        Ok(())
    }
    /// Changes what the step reports, after the update (plugins in order, each on the report
    /// the previous ones left): a data-parallel plugin that trained on its process's shard of
    /// the batch reports the loss and the number of sequences of the whole batch. The trainer
    /// averages `loss` weighted by `sequences` and adds `sequences` to `sequences_seen`.
    fn report(&mut self, _ctx: &StepContext, report: StepReport) -> Result<StepReport> {
        Ok(report)
    }
    fn before_experience(&mut self, _ctx: &ExperienceContext) -> Result<()> {
        Ok(())
    }
    fn after_experience(&mut self, _ctx: &ExperienceContext) -> Result<()> {
        Ok(())
    }
}

/// Backpropagation through time with an optimizer, gradient clipping and plugins.
pub struct GradientLearner {
    optimizer: Box<dyn Optimizer>,
    clip_norm: Option<f64>,
    plugins: Vec<Box<dyn Plugin>>,
}

impl GradientLearner {
    pub fn new(optimizer: Box<dyn Optimizer>, clip_norm: Option<f64>) -> Self {
        Self {
            optimizer,
            clip_norm,
            plugins: Vec::new(),
        }
    }

    /// Adds a plugin; plugins run in the order they were added.
    pub fn with_plugin(mut self, plugin: Box<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }
}

/// The error for a non-finite loss or gradient norm; the trainer adds where it happened.
pub fn non_finite(what: &'static str, value: f64) -> TrainError {
    TrainError::NonFinite { what, value }
}

impl Learner for GradientLearner {
    fn step(&mut self, ctx: &StepContext, batch: &Batch) -> Result<StepReport> {
        let mut prepared = None;
        for p in &mut self.plugins {
            if let Some(b) = p.prepare(ctx, prepared.as_ref().unwrap_or(batch))? {
                prepared = Some(b);
            }
        }
        let batch = prepared.as_ref().unwrap_or(batch);
        let (mut y, hidden, _) = ctx.model.forward_full(&batch.x, None, batch.dt.as_ref())?;
        for p in &mut self.plugins {
            if let Some(t) = p.transform_output(ctx, batch, &y)? {
                y = t;
            }
        }
        let mut l = loss(ctx.objective, &y, batch)?;
        for p in &mut self.plugins {
            if let Some(extra) = p.extra_loss(ctx, batch, &y)? {
                l = (l + extra)?;
            }
            if let Some(extra) = p.hidden_loss(ctx, batch, &hidden)? {
                l = (l + extra)?;
            }
        }
        let lv = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Err(non_finite("loss", lv));
        }
        let grads = l.backward()?;
        let mut g: Vec<Option<Tensor>> = ctx
            .vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        for p in &mut self.plugins {
            p.transform_gradients(ctx, &mut g)?;
        }
        let norm = match self.clip_norm {
            Some(c) => clip_global_norm(&mut g, c)?,
            None => global_norm(&g)?,
        };
        // A finite loss can still give infinite or NaN gradients.
        if !norm.is_finite() {
            return Err(non_finite("gradient norm", norm));
        }
        self.optimizer.step(ctx.vars, &g, ctx.lr)?;
        ctx.model.apply_constraints(ctx.store)?;
        let mut report = StepReport {
            loss: lv,
            grad_norm: norm,
            sequences: batch.indices.len(),
        };
        for p in &mut self.plugins {
            report = p.report(ctx, report)?;
        }
        Ok(report)
    }

    fn before_experience(&mut self, ctx: &ExperienceContext) -> Result<()> {
        self.plugins
            .iter_mut()
            .try_for_each(|p| p.before_experience(ctx))
    }

    fn after_experience(&mut self, ctx: &ExperienceContext) -> Result<()> {
        self.plugins
            .iter_mut()
            .try_for_each(|p| p.after_experience(ctx))
    }

    fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.optimizer.state()
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        self.optimizer.load_state(state, steps)
    }
}
