//! The training loop.
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
use remanence_tasks::{Evaluation, SequenceTask, TaskError};
use serde::{Deserialize, Serialize};

use crate::clip::{clip_global_norm, global_norm};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::loss::loss;
use crate::optim::Optimizer;
use crate::run_dir::{RunDir, TrainerState};

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
    pub last: Option<EpochRecord>,
}

pub struct Trainer<'t> {
    cfg: RunConfig,
    task: &'t dyn SequenceTask,
    model: SequenceModel,
    store: ParamStore,
    optimizer: Box<dyn Optimizer>,
    state: TrainerState,
    run: RunDir,
    device: Device,
}

/// Runs the model on every batch of the task's evaluation.
pub fn evaluate(
    model: &SequenceModel,
    task: &dyn SequenceTask,
    batch_size: usize,
    device: &Device,
    dtype: candle_core::DType,
) -> Result<Evaluation> {
    let mut predict = |b: &remanence_tasks::Batch| -> remanence_tasks::Result<Tensor> {
        let (y, _) = model
            .forward(&b.x, None, b.dt.as_ref())
            .map_err(|e| TaskError::Model(Box::new(e)))?;
        Ok(y.detach())
    };
    Ok(task.evaluate(batch_size, dtype, device, &mut predict)?)
}

fn check_task_fits(cfg: &RunConfig, task: &dyn SequenceTask) -> Result<()> {
    if cfg.model.rnn.input_size != task.input_size() || cfg.model.output_size != task.output_size()
    {
        return Err(TrainError::Config(format!(
            "the model maps {} inputs to {} outputs but task {} has {} and {}",
            cfg.model.rnn.input_size,
            cfg.model.output_size,
            task.name(),
            task.input_size(),
            task.output_size()
        )));
    }
    Ok(())
}

impl<'t> Trainer<'t> {
    /// A fresh run: initialises the model from the seed and writes `config.json`.
    pub fn new(
        cfg: RunConfig,
        task: &'t dyn SequenceTask,
        run: RunDir,
        device: Device,
    ) -> Result<Self> {
        cfg.train.validate()?;
        check_task_fits(&cfg, task)?;
        let (model, store) =
            SequenceModel::init(&cfg.model, cfg.train.seed, cfg.dtype()?, &device)?;
        let optimizer = cfg.train.optimizer.build();
        run.write_config(&cfg)?;
        Ok(Self {
            cfg,
            task,
            model,
            store,
            optimizer,
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
        let mut optimizer = cfg.train.optimizer.build();
        optimizer.load_state(ck.optimizer, ck.state.optimizer_steps)?;
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
            optimizer,
            state,
            run,
            device,
        })
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
        let dtype = self.cfg.dtype()?;
        let vars = self.store.vars();
        // LTC in clip mode: these parameters are projected to ≥ 0 after every update.
        let nonnegative = self.model.nonnegative_parameters();
        let mut last = None;
        while !self.state.finished && self.state.epochs_completed < tc.epochs {
            let epoch = self.state.epochs_completed; // 0-based
            let start = Instant::now();
            let lr = tc.schedule.lr(tc.optimizer.lr, epoch, tc.epochs);
            let mut rng = ChaCha8Rng::seed_from_u64(
                tc.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64,
            );
            let batches = self
                .task
                .train_batches(tc.batch_size, &mut rng, dtype, &self.device)?;
            observer.epoch_start(epoch + 1, tc.epochs, batches.len());
            let (mut loss_sum, mut norm_sum, mut seqs) = (0.0, 0.0, 0u64);
            for (bi, batch) in batches.iter().enumerate() {
                let (y, _) = self.model.forward(&batch.x, None, batch.dt.as_ref())?;
                let l = loss(self.task.objective(), &y, batch)?;
                let lv = l.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                let last_good = self.state.epochs_completed;
                let non_finite = |value: f64| TrainError::NonFiniteLoss {
                    epoch: epoch + 1,
                    batch: bi + 1,
                    value,
                    last_good,
                };
                if !lv.is_finite() {
                    return Err(non_finite(lv));
                }
                let grads = l.backward()?;
                let mut g: Vec<Option<Tensor>> = vars
                    .iter()
                    .map(|(_, v)| grads.get(v.as_tensor()).cloned())
                    .collect();
                let norm = match tc.clip_norm {
                    Some(c) => clip_global_norm(&mut g, c)?,
                    None => global_norm(&g)?,
                };
                // A finite loss can still give infinite or NaN gradients.
                if !norm.is_finite() {
                    return Err(non_finite(norm));
                }
                self.optimizer.step(&vars, &g, lr)?;
                if !nonnegative.is_empty() {
                    self.store.clamp_nonnegative(&nonnegative)?;
                }
                let n = batch.indices.len();
                loss_sum += lv * n as f64;
                norm_sum += norm;
                seqs += n as u64;
                observer.batch_end(lv, n);
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
            self.state.optimizer_steps = self.optimizer.steps();
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
            let record = EpochRecord {
                epoch: epoch + 1,
                loss: loss_sum / seqs.max(1) as f64,
                lr,
                grad_norm: norm_sum / batches.len().max(1) as f64,
                sequences_seen: self.state.sequences_seen,
                seconds: start.elapsed().as_secs_f64(),
                metric_name: eval.metric_name.clone(),
                metric: eval.metric,
                solved: eval.solved,
                values: eval.values.clone(),
            };
            self.run.append_metrics(&record)?;
            self.run
                .write_checkpoint(&self.store, self.optimizer.as_ref(), &self.state)?;
            self.run.write_model(&self.store, &self.cfg)?;
            observer.epoch_end(&record);
            last = Some(record);
        }
        Ok(TrainOutcome {
            state: self.state.clone(),
            last,
        })
    }
}
