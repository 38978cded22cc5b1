//! The training loop: epochs, evaluation, checkpoints and resume around a [`Learner`], which
//! does each batch's step.
//!
//! Each epoch draws its batch order from a generator seeded by (seed, epoch), so a run resumed
//! from the checkpoint of epoch k continues with exactly the batches an uninterrupted run sees.
//! After every epoch: evaluation, one line in `metrics.jsonl`, then the checkpoint and
//! `model.safetensors`. A non-finite loss stops the run before anything is written.
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_cells::{ParamStore, SequenceModel};
use remanence_tasks::{Evaluation, SequenceTask, Split, TaskError};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::learner::{GradientLearner, Learner, StepContext};
use crate::ridge::RidgeLearner;
use crate::run_dir::{BestEpoch, RunDir, TrainerState, BEST};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    /// Mean global gradient norm before clipping.
    pub grad_norm: f64,
    pub sequences_seen: u64,
    pub seconds: f64,
    pub metric_name: String,
    pub metric: f64,
    pub solved: Option<bool>,
    pub values: BTreeMap<String, f64>,
}

/// Progress callbacks (a progress bar, a logger, nothing).
pub trait Observer {
    fn epoch_start(&mut self, _epoch: usize, _epochs: usize, _batches: usize) {}
    fn batch_end(&mut self, _loss: f64, _sequences: usize) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub state: TrainerState,
    /// The record of the last epoch run in this call (`None` if none ran).
    pub last: Option<EpochRecord>,
    /// The model's evaluation after the last epoch run, or of the model as it stands when no
    /// epoch ran (a finished run resumed).
    pub evaluation: Evaluation,
}

pub struct Trainer<'t> {
    cfg: RunConfig,
    task: &'t dyn SequenceTask,
    model: SequenceModel,
    store: ParamStore,
    learner: Box<dyn Learner>,
    /// Whether [`Trainer::with_learner`] installed the learner (a configuration whose learner
    /// this crate cannot build, backward tuning, must not run with the default one).
    learner_given: bool,
    state: TrainerState,
    run: RunDir,
    device: Device,
}

/// Runs the model on every batch of the task's evaluation. A prediction with a non-finite value
/// is never right (every task's metric says so); how many sequences gave one is reported as
/// `non_finite_sequences`, the task is then not solved, and the summary says so.
pub fn evaluate(
    model: &SequenceModel,
    task: &dyn SequenceTask,
    batch_size: usize,
    device: &Device,
    dtype: candle_core::DType,
) -> Result<Evaluation> {
    let mut non_finite = 0usize;
    let mut predict = |b: &remanence_tasks::Batch| -> remanence_tasks::Result<Tensor> {
        let (y, _) = model
            .forward(&b.x, None, b.dt.as_ref())
            .map_err(|e| TaskError::Model(Box::new(e)))?;
        let y = y.detach();
        non_finite += count_non_finite_rows(&y)?;
        Ok(y)
    };
    let mut eval = task.evaluate(batch_size, dtype, device, &mut predict)?;
    if non_finite > 0 {
        eval.values
            .insert("non_finite_sequences".into(), non_finite as f64);
        if eval.solved.is_some() {
            eval.solved = Some(false);
        }
        eval.summary = format!(
            "WARNING: the model produced non-finite outputs (NaN or ±inf) on {non_finite} \
             evaluated sequences; none of them counts as right. {}",
            eval.summary
        );
    }
    Ok(eval)
}

/// Rows (sequences) of `y` (batch, …) holding a NaN or an infinity. A finite sum proves there
/// are none, so the rows are only read back when something is wrong.
pub fn count_non_finite_rows(y: &Tensor) -> candle_core::Result<usize> {
    let total = y
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    if total.is_finite() {
        return Ok(0);
    }
    let b = y.dim(0)?;
    let rows: Vec<Vec<f64>> = y
        .reshape((b, ()))?
        .to_dtype(candle_core::DType::F64)?
        .to_vec2()?;
    Ok(rows
        .iter()
        .filter(|r| r.iter().any(|v| !v.is_finite()))
        .count())
}

fn check_task_fits(cfg: &RunConfig, task: &dyn SequenceTask) -> Result<()> {
    let m = &cfg.model;
    if m.input_size() != task.input_size() || m.output_size != task.output_size() {
        return Err(TrainError::Config(format!(
            "the model maps {} inputs to {} outputs but task {} has {} and {}",
            m.input_size(),
            m.output_size,
            task.name(),
            task.input_size(),
            task.output_size()
        )));
    }
    Ok(())
}

/// The learner a configuration asks for: the closed-form ridge read-out when `train.ridge` is
/// set, else gradient descent with its optimizer and clipping.
pub fn default_learner(cfg: &RunConfig) -> Box<dyn Learner> {
    match &cfg.train.ridge {
        Some(r) => Box::new(RidgeLearner::new(r.clone())),
        None => Box::new(GradientLearner::new(
            cfg.train.optimizer.build(),
            cfg.train.clip_norm,
        )),
    }
}

impl<'t> Trainer<'t> {
    /// A fresh run: initialises the model from the seed and writes `config.json`.
    pub fn new(
        cfg: RunConfig,
        task: &'t dyn SequenceTask,
        run: RunDir,
        device: Device,
    ) -> Result<Self> {
        let (model, store) =
            SequenceModel::init(&cfg.model, cfg.train.seed, cfg.dtype()?, &device)?;
        Self::from_model(cfg, task, run, device, model, store)
    }

    /// A fresh run from a given model and its parameters (built by the caller, for instance
    /// before the run folder existed, or trained on an earlier task); writes `config.json`.
    pub fn from_model(
        cfg: RunConfig,
        task: &'t dyn SequenceTask,
        run: RunDir,
        device: Device,
        model: SequenceModel,
        store: ParamStore,
    ) -> Result<Self> {
        cfg.train.validate()?;
        check_task_fits(&cfg, task)?;
        let learner = default_learner(&cfg);
        run.write_config(&cfg)?;
        Ok(Self {
            cfg,
            task,
            model,
            store,
            learner,
            learner_given: false,
            state: TrainerState::default(),
            run,
            device,
        })
    }

    /// Continues a run from its checkpoint (or from scratch if it never finished an epoch).
    /// `cfg` may raise the epoch budget; everything else must match the folder's configuration.
    pub fn resume(
        cfg: RunConfig,
        task: &'t dyn SequenceTask,
        run: RunDir,
        device: Device,
    ) -> Result<Self> {
        cfg.train.validate()?;
        check_task_fits(&cfg, task)?;
        let dtype = cfg.dtype()?;
        let Some(ck) = run.read_checkpoint(dtype, &device)? else {
            run.truncate_metrics(0)?;
            return Self::new(cfg, task, run, device);
        };
        let ckpt_path = run.file(crate::run_dir::CHECKPOINT);
        let store = ParamStore::from_tensors(ck.params, &ckpt_path)?;
        let model = SequenceModel::from_store(&cfg.model, &store, dtype, &device)?;
        let mut learner = default_learner(&cfg);
        learner.load_state(ck.optimizer, ck.state.optimizer_steps)?;
        let mut state = ck.state;
        // A run that spent its epoch budget continues when the budget is raised; one that met
        // its early-stop criterion stays finished.
        state.finished = state.stopped_early || state.epochs_completed >= cfg.train.epochs;
        run.truncate_metrics(state.epochs_completed)?;
        run.write_config(&cfg)?;
        Ok(Self {
            cfg,
            task,
            model,
            store,
            learner,
            learner_given: false,
            state,
            run,
            device,
        })
    }

    /// Replaces the learner (a continual-learning method, backward tuning, a distributed
    /// wrapper). Call it before [`Trainer::run`]; a resumed run's learner state is not carried
    /// over to the new one.
    pub fn with_learner(mut self, learner: Box<dyn Learner>) -> Self {
        self.learner = learner;
        self.learner_given = true;
        self
    }

    /// The model, its parameters and the learner (with its optimizer state and plugins), to
    /// carry on to the next experience of a continual-learning scenario.
    pub fn into_parts(self) -> (SequenceModel, ParamStore, Box<dyn Learner>) {
        (self.model, self.store, self.learner)
    }

    pub fn model(&self) -> &SequenceModel {
        &self.model
    }
    pub fn store(&self) -> &ParamStore {
        &self.store
    }
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// Trains until the epoch budget is spent or the early-stop criterion holds.
    pub fn run(&mut self, observer: &mut dyn Observer) -> Result<TrainOutcome> {
        let tc = self.cfg.train.clone();
        if tc.backtune.is_some() && !self.learner_given {
            return Err(TrainError::Config(
                "the configuration asks for backward tuning, whose learner is built outside this \
                 crate (remanence_continual::backtune::learner); install it with \
                 Trainer::with_learner before running"
                    .into(),
            ));
        }
        let dtype = self.cfg.dtype()?;
        let vars = self.store.vars();
        let mut last = None;
        let mut evaluation = None;
        while !self.state.finished && self.state.epochs_completed < tc.epochs {
            let epoch = self.state.epochs_completed; // 0-based
            let start = Instant::now();
            let lr = tc.schedule.lr(tc.optimizer.lr, epoch, tc.epochs);
            let mut rng = ChaCha8Rng::seed_from_u64(
                tc.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64,
            );
            let order = self.task.epoch_order(tc.batch_size, &mut rng);
            observer.epoch_start(epoch + 1, tc.epochs, order.len());
            let (mut loss_sum, mut norm_sum, mut seqs) = (0.0, 0.0, 0u64);
            for (bi, indices) in order.iter().enumerate() {
                let batch = self
                    .task
                    .batch(Split::Train, indices, dtype, &self.device)?;
                let ctx = StepContext {
                    model: &self.model,
                    store: &self.store,
                    vars: &vars,
                    objective: self.task.objective(),
                    lr,
                    epoch,
                    batch: bi,
                };
                let report = self.learner.step(&ctx, &batch).map_err(|e| match e {
                    TrainError::NonFinite { what, value } => TrainError::NonFiniteLoss {
                        what,
                        epoch: epoch + 1,
                        batch: bi + 1,
                        value,
                        last_good: self.state.epochs_completed,
                    },
                    e => e,
                })?;
                let n = report.sequences;
                loss_sum += report.loss * n as f64;
                norm_sum += report.grad_norm;
                seqs += n as u64;
                observer.batch_end(report.loss, n);
            }
            let eval = evaluate(
                &self.model,
                self.task,
                tc.eval_batch_size,
                &self.device,
                dtype,
            )?;
            self.state.epochs_completed = epoch + 1;
            self.state.sequences_seen += seqs;
            self.state.optimizer_steps = self.learner.steps();
            let solved = eval.solved == Some(true);
            if solved && self.state.solved_at_sequences.is_none() {
                self.state.solved_at_sequences = Some(self.state.sequences_seen);
            }
            let hit_target = tc.target.is_some_and(|t| eval.metric >= t);
            if tc.early_stop && (solved || hit_target) {
                self.state.stopped_early = true;
            }
            self.state.finished =
                self.state.stopped_early || self.state.epochs_completed >= tc.epochs;
            if let Some(sel) = self.task.selection() {
                let value = eval.values.get(sel.value).copied().ok_or_else(|| {
                    TrainError::Config(format!(
                        "task {} selects on `{}`, which its evaluation does not report",
                        self.task.name(),
                        sel.value
                    ))
                })?;
                if sel.improves(value, self.state.best.as_ref().map(|b| b.value)) {
                    self.run.write_weights(BEST, &self.store, &self.cfg)?;
                    self.state.best = Some(BestEpoch {
                        epoch: epoch + 1,
                        selected_by: sel.value.to_string(),
                        value,
                        metric_name: eval.metric_name.clone(),
                        metric: eval.metric,
                    });
                }
            }
            let record = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seqs.max(1) as f64,
                lr,
                grad_norm: norm_sum / order.len().max(1) as f64,
                sequences_seen: self.state.sequences_seen,
                seconds: start.elapsed().as_secs_f64(),
                metric_name: eval.metric_name.clone(),
                metric: eval.metric,
                solved: eval.solved,
                values: eval
                    .values
                    .clone()
                    .into_iter()
                    .chain(self.learner.metrics())
                    .collect(),
            };
            self.run.append_metrics(&record)?;
            self.run
                .write_checkpoint(&self.store, self.learner.as_ref(), &self.state)?;
            self.run.write_model(&self.store, &self.cfg)?;
            observer.epoch_end(&record);
            last = Some(record);
            evaluation = Some(eval);
        }
        let evaluation = match evaluation {
            Some(e) => e,
            None => evaluate(
                &self.model,
                self.task,
                tc.eval_batch_size,
                &self.device,
                dtype,
            )?,
        };
        Ok(TrainOutcome {
            state: self.state.clone(),
            last,
            evaluation,
        })
    }
}
