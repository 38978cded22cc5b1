//! Ans & Rousset's dual network with a self-refreshing memory (1997, 2000; recurrent: Ans,
//! Rousset, French & Musca 2004).
//!
//! Two ordinary models of the same configuration, each with an auto-associative head:
//!
//! ```text
//! experience k:
//!   NET1 learns D_k with the trainer:  L = L_task(D_k) + w_r·L_rec(D_k)
//!                                        + ρ·L_pseudo(NET1; pseudo-patterns of NET2)   (k > 0)
//!   transfer: NET2 learns only NET1's pseudo-patterns, E_t epochs of N_t:  L = L_pseudo(NET2; NET1)
//! ```
//!
//! `L_rec` is the mean squared reconstruction error of the head on real data (its input, and for
//! transitions the state each step started from), `L_pseudo` the distillation loss of
//! [`reverberation::distill_loss`] on pseudo-patterns made by [`reverberation::generate`], and
//! `ρ` the number of pseudo-patterns per real sequence in each batch (`ρB` patterns a batch of
//! `B`, so real and pseudo examples weigh alike, as when they are interleaved). NET2 never sees
//! a real example. With seeds from a tiny class-balanced buffer instead of noise it is Solinas et
//! al.'s combined replay; with `R = 0` Robins's pseudo-rehearsal; NET1 may be re-initialised
//! before each experience (`reset`), in which case only NET2's pseudo-patterns carry the past.
use std::sync::{Arc, Mutex};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_cells::{ParamStore, SequenceModel};
use remanence_tasks::{Batch, Objective};
use remanence_train::clip::{clip_global_norm, global_norm};
use remanence_train::learner::{non_finite, Plugin, StepContext};
use remanence_train::RunConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};
use crate::replay::ReplayBuffer;
use crate::reverberation::{
    distill_loss, generate, recon_loss, InputRange, Noise, PseudoKind, Reverb,
};

/// The dual network's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DualOptions {
    /// What a pseudo-pattern is (whole sequence, closed loop, or one transition).
    pub kind: PseudoKind,
    /// Reverberations R (0: Robins's pseudo-rehearsal).
    pub rounds: usize,
    /// Noise seeds' distribution (matched per feature to the data).
    pub noise: Noise,
    /// Pseudo-patterns per real sequence in each of NET1's batches (ρ).
    pub per_example: f64,
    /// Pseudo-patterns per transfer epoch (N_t) and transfer epochs (E_t).
    pub transfer_size: usize,
    pub transfer_epochs: usize,
    /// Soft targets (the generator's class probabilities) or hard ones (its arg-max class).
    pub soft: bool,
    /// Re-initialise NET1 before each experience after the first.
    pub reset: bool,
    /// Real sequences kept per class as reverberation seeds (0: noise seeds only).
    pub seeds_per_class: usize,
    /// Weight w_r of the reconstruction error beside the task loss.
    pub recon_weight: f64,
    /// Corruption σ (in units of each feature's standard deviation) of the denoising
    /// reconstruction on real data; 0: plain reconstruction.
    pub denoise: f64,
}

impl Default for DualOptions {
    /// R = 5 whole-sequence reverberations from uniform noise, one pseudo-pattern per real
    /// sequence, a transfer of 3 epochs of 10 000 patterns, soft targets, NET1 kept, no buffer,
    /// reconstruction weight 1. None of these is tuned.
    fn default() -> Self {
        Self {
            kind: PseudoKind::Sequence,
            rounds: 5,
            noise: Noise::Uniform,
            per_example: 1.0,
            transfer_size: 10_000,
            transfer_epochs: 3,
            soft: true,
            reset: false,
            seeds_per_class: 0,
            recon_weight: 1.0,
            denoise: 0.0,
        }
    }
}

impl DualOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ContinualError::Config(m));
        if !(self.per_example.is_finite() && self.per_example >= 0.0) {
            return bad(format!(
                "--pseudo-per-example must be ≥ 0 (got {})",
                self.per_example
            ));
        }
        if !(self.recon_weight.is_finite() && self.recon_weight >= 0.0) {
            return bad(format!(
                "--recon-weight must be ≥ 0 (got {})",
                self.recon_weight
            ));
        }
        if !(self.denoise.is_finite() && self.denoise >= 0.0) {
            return bad(format!("--denoise must be ≥ 0 (got {})", self.denoise));
        }
        if self.transfer_size == 0 || self.transfer_epochs == 0 {
            return bad(format!(
                "--transfer-size and --transfer-epochs must be ≥ 1 (got {}, {}): NET2 learns only \
                 through the transfer",
                self.transfer_size, self.transfer_epochs
            ));
        }
        Ok(())
    }

    pub fn reverb(&self) -> Reverb {
        Reverb {
            kind: self.kind,
            rounds: self.rounds,
            noise: self.noise,
            denoise: self.denoise,
        }
    }
}

/// Draws the seeds of a batch of pseudo-patterns: buffered real sequences when there is a
/// buffer (as many as asked, with repetition across calls), else `None` (noise).
fn seeds(
    buffer: Option<&Arc<Mutex<ReplayBuffer>>>,
    n: usize,
    dtype: DType,
    device: &Device,
) -> Result<Option<Batch>> {
    let Some(b) = buffer else { return Ok(None) };
    let mut b = b.lock().expect("seed buffer");
    let mut parts: Vec<Batch> = Vec::new();
    let mut have = 0;
    while have < n {
        match b.draw(n - have, dtype, device)? {
            Some(p) => {
                have += p.indices.len();
                parts.push(p);
            }
            None => return Ok(None),
        }
    }
    let mut it = parts.into_iter();
    let first = it.next().expect("at least one part");
    it.try_fold(first, |acc, p| crate::replay::concat(&acc, &p))
        .map(Some)
        .map_err(Into::into)
}

fn train_err(e: ContinualError) -> remanence_train::TrainError {
    remanence_train::TrainError::Config(e.to_string())
}

/// NET1's additions to gradient learning: the reconstruction term on real data and, once NET2
/// holds something, the distillation term on NET2's pseudo-patterns.
pub struct DualPlugin {
    pub generator: Option<Arc<Mutex<SequenceModel>>>,
    pub range: Arc<InputRange>,
    pub options: DualOptions,
    pub buffer: Option<Arc<Mutex<ReplayBuffer>>>,
    pub rng: ChaCha8Rng,
}

impl Plugin for DualPlugin {
    fn hidden_loss(
        &mut self,
        ctx: &StepContext,
        batch: &Batch,
        hidden: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        if self.options.recon_weight == 0.0 {
            return Ok(None);
        }
        let denoise = Some((&*self.range, self.options.denoise, &mut self.rng));
        let l = recon_loss(ctx.model, batch, hidden, denoise).map_err(train_err)?;
        Ok(Some((l * self.options.recon_weight)?))
    }

    fn extra_loss(
        &mut self,
        ctx: &StepContext,
        batch: &Batch,
        _output: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        let Some(gen) = &self.generator else {
            return Ok(None);
        };
        let n = (self.options.per_example * batch.indices.len() as f64).ceil() as usize;
        if n == 0 {
            return Ok(None);
        }
        let (dtype, device) = (batch.x.dtype(), batch.x.device());
        let gen = gen.lock().expect("generator");
        let seeds = seeds(self.buffer.as_ref(), n, dtype, device).map_err(train_err)?;
        let p = generate(
            &gen,
            &self.options.reverb(),
            &self.range,
            n,
            seeds.as_ref(),
            &mut self.rng,
            dtype,
            device,
        )
        .map_err(|e| {
            train_err(ContinualError::Config(format!(
                "NET2's pseudo-patterns: {e}"
            )))
        })?;
        let l = distill_loss(
            ctx.model,
            &p,
            ctx.objective,
            self.options.soft,
            self.options.recon_weight,
        )
        .map_err(train_err)?;
        Ok(Some((l * self.options.per_example)?))
    }
}

/// How a transfer went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferReport {
    /// Mean distillation loss of each transfer epoch.
    pub epoch_loss: Vec<f64>,
    pub patterns: usize,
    pub seconds: f64,
    /// Class objectives: how many pseudo-patterns the generator gave each class (arg-max of its
    /// read-out, as the distillation reads it).
    #[serde(default)]
    pub class_counts: Vec<usize>,
    /// The first pseudo-patterns of the transfer (up to 16), for pictures.
    #[serde(skip)]
    pub sample: Option<Tensor>,
}

/// NET2 (`to` over `store`) learns `options.transfer_epochs` epochs of
/// `options.transfer_size` pseudo-patterns of NET1 (`from`), with a fresh optimizer of the run's
/// kind and learning rate, batches of the run's size, and its gradient clipping.
#[allow(clippy::too_many_arguments)]
pub fn transfer(
    from: &SequenceModel,
    to: &SequenceModel,
    store: &ParamStore,
    cfg: &RunConfig,
    objective: Objective,
    options: &DualOptions,
    range: &InputRange,
    buffer: Option<&Arc<Mutex<ReplayBuffer>>>,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<TransferReport> {
    let start = Instant::now();
    let dtype = cfg.dtype()?;
    let vars = store.vars();
    let mut optimizer = cfg.train.optimizer.build();
    let lr = cfg.train.optimizer.lr;
    let bs = cfg.train.batch_size.max(1);
    let mut epoch_loss = Vec::new();
    let mut class_counts = Vec::new();
    let mut sample = None;
    for _ in 0..options.transfer_epochs {
        let (mut sum, mut batches) = (0.0, 0usize);
        let mut left = options.transfer_size;
        while left > 0 {
            let n = left.min(bs);
            left -= n;
            let seeds = seeds(buffer, n, dtype, device)?;
            let p = generate(
                from,
                &options.reverb(),
                range,
                n,
                seeds.as_ref(),
                rng,
                dtype,
                device,
            )
            .map_err(|e| ContinualError::Config(format!("transfer from NET1 to NET2: {e}")))?;
            count_classes(&p, objective, &mut class_counts)?;
            if sample.is_none() {
                sample = Some(p.x.narrow(0, 0, p.x.dim(0)?.min(16))?);
            }
            let l = distill_loss(to, &p, objective, options.soft, options.recon_weight)?;
            let lv = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !lv.is_finite() {
                return Err(non_finite("transfer loss", lv).into());
            }
            let grads = l.backward()?;
            let mut g: Vec<Option<Tensor>> = vars
                .iter()
                .map(|(_, v)| grads.get(v.as_tensor()).cloned())
                .collect();
            let norm = match cfg.train.clip_norm {
                Some(c) => clip_global_norm(&mut g, c)?,
                None => global_norm(&g)?,
            };
            if !norm.is_finite() {
                return Err(non_finite("transfer gradient norm", norm).into());
            }
            optimizer.step(&vars, &g, lr)?;
            to.apply_constraints(store)?;
            sum += lv;
            batches += 1;
        }
        epoch_loss.push(sum / batches.max(1) as f64);
    }
    Ok(TransferReport {
        epoch_loss,
        patterns: options.transfer_size * options.transfer_epochs,
        seconds: start.elapsed().as_secs_f64(),
        class_counts,
        sample,
    })
}

/// Adds the arg-max classes of `p`'s read-out (class objectives only) to `counts`.
fn count_classes(
    p: &crate::reverberation::Pseudo,
    objective: Objective,
    counts: &mut Vec<usize>,
) -> Result<()> {
    let z = match (objective, p.y.rank()) {
        (Objective::ClassLastStep, 3) => {
            let t = p.y.dim(1)?;
            p.y.narrow(1, t - 1, 1)?.squeeze(1)?
        }
        (Objective::ClassMeanOverTime, 3) => p.y.mean(1)?,
        (Objective::ClassLastStep | Objective::ClassMeanOverTime, _) => p.y.clone(),
        _ => return Ok(()),
    };
    let c = z.dim(1)?;
    counts.resize(c, 0);
    let idx: Vec<u32> = z.argmax(1)?.to_vec1()?;
    for i in idx {
        counts[i as usize] += 1;
    }
    Ok(())
}

/// What the dual network keeps between experiences: NET2, the data's range, the seed buffer.
pub struct DualState {
    pub options: DualOptions,
    pub net2: Arc<Mutex<SequenceModel>>,
    pub net2_store: ParamStore,
    pub range: InputRange,
    pub buffer: Option<Arc<Mutex<ReplayBuffer>>>,
    /// Whether NET2 has learned anything yet (it has after the first transfer).
    pub trained: bool,
    pub rng: ChaCha8Rng,
}

impl DualState {
    /// NET2 initialised from `seed + 1` (NET1 from `seed`, as every other method's model).
    pub fn new(options: DualOptions, cfg: &RunConfig, device: &Device) -> Result<Self> {
        options.validate()?;
        let (net2, net2_store) =
            SequenceModel::init(&cfg.model, cfg.train.seed + 1, cfg.dtype()?, device)?;
        Ok(Self {
            options,
            net2: Arc::new(Mutex::new(net2)),
            net2_store,
            range: InputRange::default(),
            buffer: (options.seeds_per_class > 0).then(|| {
                Arc::new(Mutex::new(ReplayBuffer::new(
                    options.seeds_per_class,
                    cfg.train.seed,
                )))
            }),
            trained: false,
            rng: ChaCha8Rng::seed_from_u64(cfg.train.seed ^ 0xD0A1_0E7),
        })
    }

    /// NET1's plugin for experience `k`.
    pub fn plugin(&mut self, k: usize) -> DualPlugin {
        use rand::Rng;
        DualPlugin {
            generator: self.trained.then(|| self.net2.clone()),
            range: Arc::new(self.range.clone()),
            options: self.options,
            buffer: self.buffer.clone(),
            rng: ChaCha8Rng::seed_from_u64(self.rng.random::<u64>() ^ k as u64),
        }
    }
}
