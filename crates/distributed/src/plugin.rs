//! Data-parallel gradient learning as a [`Plugin`] of `GradientLearner`.
//!
//! Every rank runs the same trainer: same seed, same batch order, the same global batch loaded
//! at each step. The plugin then
//!
//! 1. `prepare`: replaces the batch by this rank's shard ([`crate::shard`]) and records its
//!    loss weight `w_r` (the shard's loss normaliser);
//! 2. `transform_gradients`: one all-reduce of `[w_r·g_r (every gradient, flattened), present_r,
//!    w_r]`, then `g ← Σ_r w_r·g_r / Σ_r w_r` — the gradient of the global batch's loss — on
//!    every rank, so every rank's optimizer makes the same update (clipping, which comes after,
//!    sees the global gradient);
//! 3. `report`: one all-reduce of `[w_r·loss_r, w_r, sequences_r]`: the step reports the
//!    global batch's loss `Σ w_r·loss_r / Σ w_r` and its number of sequences, so the trainer's
//!    epoch loss and `sequences_seen` are those of a single-process run, on every rank.
//!
//! Extra loss terms of other plugins that are the same on every rank (EWC's penalty on the
//! parameters) pass through unchanged: `Σ w_r (l_r + e) / Σ w_r = l + e`. Plugins that change
//! the batch (replay) must come before this one, so that the mixed batch is what is sharded.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::{DType, Tensor};
use remanence_tasks::Batch;
use remanence_train::{Plugin, Result as TrainResult, StepContext, StepReport};

use crate::collective::Collective;
use crate::error::DistError;
use crate::setup::{check_same, hash64};
use crate::shard::{loss_weight, shard};

/// Splits each batch across the ranks of a [`Collective`] and averages the gradients and the
/// reported loss back into the whole batch's.
pub struct AllReducePlugin {
    collective: Box<dyn Collective>,
    /// This step's shard: its loss weight and its sequences (set by `prepare`).
    step: Option<(f64, usize)>,
    /// Sequences this rank has trained on (the sum of its shards).
    local_sequences: Arc<AtomicU64>,
}

impl AllReducePlugin {
    pub fn new(collective: Box<dyn Collective>) -> Self {
        Self {
            collective,
            step: None,
            local_sequences: Arc::default(),
        }
    }

    /// A handle on the number of sequences this rank has trained on so far (its shards; the
    /// reported `sequences` are the whole batches'), readable after the plugin has moved into
    /// a learner: per-rank throughput, or a check that the batches really were split.
    pub fn local_sequences(&self) -> Arc<AtomicU64> {
        self.local_sequences.clone()
    }

    pub fn collective(&self) -> &dyn Collective {
        self.collective.as_ref()
    }

    fn current(&self, hook: &str) -> Result<(f64, usize), DistError> {
        self.step.ok_or_else(|| {
            DistError::Collective(format!(
                "the all-reduce plugin's {hook} ran without a prepared shard (was the batch \
                 prepared by another learner?)"
            ))
        })
    }
}

/// `g` (any float dtype) flattened and scaled by `w`, appended to `buf`.
fn push_scaled(buf: &mut Vec<f64>, g: &Tensor, w: f64) -> candle_core::Result<()> {
    let v = g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    buf.extend(v.into_iter().map(|x| x * w));
    Ok(())
}

/// A hash of every trainable parameter's values.
fn parameters_hash(ctx: &StepContext) -> candle_core::Result<u64> {
    let mut bytes = Vec::new();
    for (name, v) in ctx.vars {
        bytes.extend(name.as_bytes());
        for x in v
            .as_tensor()
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?
        {
            bytes.extend(x.to_le_bytes());
        }
    }
    Ok(hash64(&bytes))
}

impl Plugin for AllReducePlugin {
    fn prepare(&mut self, ctx: &StepContext, batch: &Batch) -> TrainResult<Option<Batch>> {
        let (rank, size) = (self.collective.rank(), self.collective.size());
        let s = shard(batch, rank, size).map_err(|e| {
            DistError::Shard(format!(
                "epoch {}, batch {}: {e}",
                ctx.epoch + 1,
                ctx.batch + 1
            ))
        })?;
        let w = loss_weight(ctx.objective, &s)?;
        if !(w > 0.0 && w.is_finite()) {
            // Its loss would be 0/0; the other ranks wait in the all-reduce until the job is
            // aborted (a failing rank must abort the job).
            return Err(DistError::Shard(format!(
                "epoch {}, batch {}: rank {rank}'s shard has a loss weight of {w} (every step \
                 masked out), so its loss is undefined; use fewer processes or larger batches",
                ctx.epoch + 1,
                ctx.batch + 1
            ))
            .into());
        }
        self.step = Some((w, s.x.dim(0)?));
        Ok(Some(s))
    }

    fn transform_gradients(
        &mut self,
        ctx: &StepContext,
        grads: &mut [Option<Tensor>],
    ) -> TrainResult<()> {
        let (w, _) = self.current("transform_gradients")?;
        if grads.len() != ctx.vars.len() {
            return Err(DistError::Collective(format!(
                "{} gradients for {} parameters",
                grads.len(),
                ctx.vars.len()
            ))
            .into());
        }
        // A missing gradient counts as zeros; it stays missing only where no rank has one.
        let sizes: Vec<usize> = ctx.vars.iter().map(|(_, v)| v.elem_count()).collect();
        let total: usize = sizes.iter().sum();
        let mut buf = Vec::with_capacity(total + grads.len() + 1);
        for (g, &n) in grads.iter().zip(&sizes) {
            match g {
                Some(g) => {
                    if g.elem_count() != n {
                        return Err(DistError::Collective(format!(
                            "a gradient of {} values for a parameter of {n}",
                            g.elem_count()
                        ))
                        .into());
                    }
                    push_scaled(&mut buf, g, w)?
                }
                None => buf.extend(std::iter::repeat_n(0.0, n)),
            }
        }
        buf.extend(grads.iter().map(|g| if g.is_some() { 1.0 } else { 0.0 }));
        buf.push(w);
        self.collective.all_reduce_sum_f64(&mut buf)?;
        let sum_w = buf[total + grads.len()];
        let mut offset = 0;
        for (i, (g, &n)) in grads.iter_mut().zip(&sizes).enumerate() {
            let present = buf[total + i] > 0.0;
            let values: Vec<f64> = buf[offset..offset + n].iter().map(|x| x / sum_w).collect();
            offset += n;
            if !present {
                continue;
            }
            let var = ctx.vars[i].1.as_tensor();
            // Restore the gradient's dtype, shape and device (the parameter's where this rank
            // had none).
            let (dtype, shape, device) = match g.as_ref() {
                Some(t) => (t.dtype(), t.shape().clone(), t.device().clone()),
                None => (var.dtype(), var.shape().clone(), var.device().clone()),
            };
            let t = Tensor::from_vec(values, shape, &candle_core::Device::Cpu)?
                .to_dtype(dtype)?
                .to_device(&device)?;
            *g = Some(t);
        }
        Ok(())
    }

    fn report(&mut self, ctx: &StepContext, report: StepReport) -> TrainResult<StepReport> {
        let (w, sequences) = self.current("report")?;
        if ctx.batch == 0 {
            // Once an epoch: the ranks' parameters must still be the same (an all-reduce that
            // gave ranks different sums would make them drift apart, and their evaluations and
            // early-stop decisions with them).
            check_same(
                self.collective.as_ref(),
                &format!(
                    "state of the parameters after the first step of epoch {}",
                    ctx.epoch + 1
                ),
                parameters_hash(ctx)?,
            )?;
        }
        self.step = None;
        self.local_sequences
            .fetch_add(sequences as u64, Ordering::Relaxed);
        let mut buf = [w * report.loss, w, sequences as f64];
        self.collective.all_reduce_sum_f64(&mut buf)?;
        Ok(StepReport {
            loss: buf[0] / buf[1],
            // The gradient, hence its norm, is already the global one on every rank.
            grad_norm: report.grad_norm,
            sequences: buf[2].round() as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{Device, Var};
    use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig, SequenceModel};
    use remanence_tasks::{build_task, Objective, Split, TaskConfig, TaskKind};
    use remanence_train::{
        GradientLearner, Learner, OptimizerConfig, OptimizerKind, Result as TrainResult,
    };

    use super::*;
    use crate::collective::Local;

    use crate::simulated::Simulated;

    fn model() -> (SequenceModel, remanence_cells::ParamStore) {
        model_seeded(3)
    }

    fn model_seeded(seed: u64) -> (SequenceModel, remanence_cells::ParamStore) {
        let cfg = ModelConfig::new(
            RnnConfig {
                cell: CellKind::Lstm,
                input_size: 7,
                hidden_size: 5,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: Default::default(),
                reservoir: Default::default(),
                threads: None,
                kernel: Kernel::Auto,
            },
            7,
        );
        SequenceModel::init(&cfg, seed, DType::F64, &Device::Cpu).unwrap()
    }

    fn reber_batch(n: usize) -> Batch {
        let task = build_task(&TaskConfig {
            kind: TaskKind::Reber,
            train_size: 32,
            test_size: 8,
            data_seed: 4,
            data_dir: None,
            options: Default::default(),
        })
        .unwrap();
        let idx: Vec<usize> = (0..n).collect();
        task.batch(Split::Train, &idx, DType::F64, &Device::Cpu)
            .unwrap()
    }

    fn ctx<'a>(
        model: &'a SequenceModel,
        store: &'a remanence_cells::ParamStore,
        vars: &'a [(String, Var)],
    ) -> StepContext<'a> {
        StepContext {
            model,
            store,
            vars,
            objective: Objective::MultiLabelPerStep,
            lr: 0.01,
            epoch: 0,
            batch: 0,
        }
    }

    fn flat(vars: &[(String, Var)]) -> Vec<f64> {
        vars.iter()
            .flat_map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap()
            })
            .collect()
    }

    /// With one process the plugin changes nothing: a step with it equals a step without it.
    #[test]
    fn one_rank_all_reduce_is_the_plain_step() {
        let batch = reber_batch(9);
        let mut results = Vec::new();
        for with_plugin in [false, true] {
            let (m, store) = model();
            let vars = store.vars();
            let mut l = GradientLearner::new(
                OptimizerConfig::new(OptimizerKind::Adam, 0.05).build(),
                Some(1.0),
            );
            if with_plugin {
                l = l.with_plugin(Box::new(AllReducePlugin::new(Box::new(Local))));
            }
            let r = l.step(&ctx(&m, &store, &vars), &batch).unwrap();
            results.push((r, flat(&vars)));
        }
        let ((a, wa), (b, wb)) = (&results[0], &results[1]);
        assert_eq!(a.sequences, 9);
        assert_eq!(b.sequences, 9);
        assert!((a.loss - b.loss).abs() < 1e-14, "{} vs {}", a.loss, b.loss);
        assert!((a.grad_norm - b.grad_norm).abs() < 1e-12);
        assert_eq!(wa.len(), wb.len());
        let diff = wa
            .iter()
            .zip(wb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-14, "max weight difference {diff}");
        assert_ne!(wa, &flat(&model().1.vars()), "the step changed nothing");
    }

    /// Three simulated ranks on threads, with uneven shards of a masked batch: every rank ends
    /// the step with the single-process weights, loss and sequence count.
    #[test]
    fn three_ranks_step_like_one_process() {
        let batch = reber_batch(11); // shards of 4, 4, 3
        assert!(batch.mask.is_some(), "the test wants a masked batch");
        let step = |plugin: Option<AllReducePlugin>,
                    batch: Batch|
         -> TrainResult<(StepReport, Vec<f64>)> {
            let (m, store) = model();
            let vars = store.vars();
            let mut l = GradientLearner::new(
                OptimizerConfig::new(OptimizerKind::Adam, 0.05).build(),
                None,
            );
            if let Some(p) = plugin {
                l = l.with_plugin(Box::new(p));
            }
            let r = l.step(&ctx(&m, &store, &vars), &batch)?;
            Ok((r, flat(&vars)))
        };
        let (single, w_single) = step(None, batch.clone()).unwrap();
        let handles: Vec<_> = Simulated::world(3)
            .into_iter()
            .map(|c| {
                let b = batch.clone();
                let p = AllReducePlugin::new(Box::new(c));
                let trained = p.local_sequences();
                let h = std::thread::Builder::new()
                    .stack_size(256 << 20)
                    .spawn(move || step(Some(p), b).unwrap())
                    .unwrap();
                (h, trained)
            })
            .collect();
        let outcomes: HashMap<usize, _> = handles
            .into_iter()
            .enumerate()
            .map(|(r, (h, trained))| {
                let out = h.join().unwrap();
                // Each rank trained on its own shard: 4, 4 and 3 sequences.
                assert_eq!(
                    trained.load(Ordering::Relaxed),
                    [4, 4, 3][r],
                    "rank {r}'s shard"
                );
                (r, out)
            })
            .collect();
        for (rank, (rep, w)) in &outcomes {
            assert_eq!(rep.sequences, 11, "rank {rank}");
            assert!(
                (rep.loss - single.loss).abs() < 1e-12,
                "rank {rank}: loss {} vs {}",
                rep.loss,
                single.loss
            );
            assert!((rep.grad_norm - single.grad_norm).abs() < 1e-12);
            let diff = w
                .iter()
                .zip(&w_single)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-12, "rank {rank}: max weight difference {diff}");
        }
    }

    #[test]
    fn a_batch_smaller_than_the_world_is_a_clear_error() {
        let (m, store) = model();
        let vars = store.vars();
        let c = Simulated::world(3).swap_remove(0);
        let mut p = AllReducePlugin::new(Box::new(c));
        let err = p
            .prepare(&ctx(&m, &store, &vars), &reber_batch(2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch 1") && err.contains("2 sequences") && err.contains("3 processes"),
            "{err}"
        );
    }

    /// Ranks whose parameters differ (here from the start) fail together at the first step of
    /// an epoch, naming which ranks hold which parameters.
    #[test]
    fn ranks_whose_parameters_drift_apart_fail_together() {
        let batch = reber_batch(6);
        let handles: Vec<_> = Simulated::world(2)
            .into_iter()
            .enumerate()
            .map(|(rank, c)| {
                let b = batch.clone();
                std::thread::Builder::new()
                    .stack_size(256 << 20)
                    .spawn(move || {
                        let (m, store) = model_seeded(3 + rank as u64);
                        let vars = store.vars();
                        let mut l = GradientLearner::new(
                            OptimizerConfig::new(OptimizerKind::Sgd, 0.05).build(),
                            None,
                        )
                        .with_plugin(Box::new(AllReducePlugin::new(Box::new(c))));
                        l.step(&ctx(&m, &store, &vars), &b)
                            .map(|_| ())
                            .map_err(|e| e.to_string())
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            let err = h.join().unwrap().unwrap_err();
            assert!(
                err.contains("state of the parameters after the first step of epoch 1 differs")
                    && err.contains("rank 0 has hash")
                    && err.contains("rank 1 has hash"),
                "{err}"
            );
        }
    }
}
