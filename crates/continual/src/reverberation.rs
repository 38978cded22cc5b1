//! Reverberated pseudo-patterns (Ans & Rousset 1997, 2000; Ans, Rousset, French & Musca 2004).
//!
//! A generator is a [`SequenceModel`] with an auto-associative head ([`AutoAssoc`]): beside its
//! read-out `y = W_y h + b_y` it reconstructs, from the same `h`, what it was given,
//! `r = W_r h + b_r`. A pseudo-pattern starts from a seed (noise matched to the data, or a real
//! sequence from a tiny buffer: Solinas et al. 2021's combined replay), is fed back through the
//! reconstruction `R` times, and is recorded with the generator's *whole* output `(y, r)` as a
//! soft target. `R = 0` is Robins's (1995) pseudo-rehearsal: one pass from the seed.
//!
//! Three kinds, all for every cell (equations in `docs/algorithms.md`):
//!
//! - [`PseudoKind::Sequence`]: the pattern is a whole input sequence `X` (P, T, F). Each
//!   reverberation runs the generator over `X` and replaces every step by its reconstruction,
//!   `x_t ← clamp(r_t)`; the targets are the per-step read-outs and reconstructions.
//! - [`PseudoKind::ClosedLoop`]: temporal reverberation. The first input is reverberated `R`
//!   times from the zero state, then the generator runs closed-loop, its reconstruction of step
//!   t fed back as the input of step t+1, for T steps; the targets are again the per-step
//!   outputs.
//! - [`PseudoKind::Transition`]: the 2004 paper's static transition patterns. The pattern is
//!   one (input item, recurrent state) pair `(x, s)`; the head reconstructs both, `r = [x̂, ŝ]`,
//!   and reverberation iterates `(x, s) ← (clamp(x̂), ŝ)`. The target is the transition's read-out
//!   and reconstruction. The state is the flattened state of every layer (h, and c for the
//!   LSTM), so the generalisation to LSTM, GRU, LTC and CfC is direct; the starting state is the
//!   one the generator reaches after a random number of steps of its seed sequence.
//!
//! Reconstructed inputs are clamped to the per-feature range of the data seen so far (the
//! original networks had sigmoid units, bounded by construction; a linear head fed back on
//! itself could otherwise diverge). Nothing here is differentiated: every result is detached.
use candle_core::{DType, Device, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use remanence_cells::{AutoAssoc, RnnState, SequenceModel};
use remanence_tasks::{Batch, Objective, SequenceTask, Split};
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};

/// What a pseudo-pattern is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PseudoKind {
    Sequence,
    ClosedLoop,
    Transition,
}

impl PseudoKind {
    pub const NAMES: [&'static str; 3] = ["sequence", "closed-loop", "transition"];

    /// What the generator's head must reconstruct for this kind.
    pub fn autoassoc(self) -> AutoAssoc {
        match self {
            Self::Transition => AutoAssoc::InputAndState,
            _ => AutoAssoc::Input,
        }
    }
}

impl std::str::FromStr for PseudoKind {
    type Err = ContinualError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sequence" => Ok(Self::Sequence),
            "closed-loop" => Ok(Self::ClosedLoop),
            "transition" => Ok(Self::Transition),
            _ => Err(ContinualError::Config(format!(
                "--pseudo `{s}`: valid: {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// The distribution of noise seeds, matched per feature to the data seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Noise {
    /// Uniform between the feature's minimum and maximum.
    Uniform,
    /// Gaussian with the feature's mean and standard deviation.
    Gaussian,
    /// The feature's minimum or maximum, each with probability ½.
    Binary,
}

impl std::str::FromStr for Noise {
    type Err = ContinualError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "uniform" => Ok(Self::Uniform),
            "gaussian" => Ok(Self::Gaussian),
            "binary" => Ok(Self::Binary),
            _ => Err(ContinualError::Config(format!(
                "--noise `{s}`: valid: uniform, gaussian, binary"
            ))),
        }
    }
}

/// Per-feature statistics of the inputs seen so far (the noise's range and the clamp).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InputRange {
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    sum: Vec<f64>,
    sum_sq: Vec<f64>,
    count: f64,
    /// Steps per sequence (the longest seen): the length of sequence pseudo-patterns.
    pub steps: usize,
}

impl InputRange {
    /// Adds the real steps of up to `limit` training sequences of `task`.
    pub fn observe(&mut self, task: &dyn SequenceTask, limit: usize) -> Result<()> {
        let n = task.len(Split::Train).min(limit);
        let f = task.input_size();
        if self.min.is_empty() {
            self.min = vec![f64::INFINITY; f];
            self.max = vec![f64::NEG_INFINITY; f];
            self.sum = vec![0.0; f];
            self.sum_sq = vec![0.0; f];
        }
        let idx: Vec<usize> = (0..n).collect();
        for chunk in idx.chunks(256) {
            let b = task.batch(Split::Train, chunk, DType::F64, &Device::Cpu)?;
            let (_, t, _) = b.x.dims3()?;
            self.steps = self.steps.max(t);
            let x: Vec<Vec<Vec<f64>>> = b.x.to_vec3()?;
            for (seq, &len) in x.iter().zip(&b.lengths) {
                for step in seq.iter().take(len) {
                    for (j, &v) in step.iter().enumerate() {
                        self.min[j] = self.min[j].min(v);
                        self.max[j] = self.max[j].max(v);
                        self.sum[j] += v;
                        self.sum_sq[j] += v * v;
                    }
                    self.count += 1.0;
                }
            }
        }
        Ok(())
    }

    pub fn mean_std(&self, j: usize) -> (f64, f64) {
        let m = self.sum[j] / self.count.max(1.0);
        let v = (self.sum_sq[j] / self.count.max(1.0) - m * m).max(0.0);
        (m, v.sqrt())
    }

    /// Noise of `shape` (…, features) drawn from `noise`.
    pub fn sample(
        &self,
        noise: Noise,
        shape: &[usize],
        rng: &mut ChaCha8Rng,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let f = self.min.len();
        if f == 0 || shape.last() != Some(&f) {
            return Err(ContinualError::Config(
                "pseudo-patterns need the data's range first (no training data seen)".into(),
            ));
        }
        let total: usize = shape.iter().product();
        let mut v = Vec::with_capacity(total);
        for k in 0..total {
            let j = k % f;
            let (lo, hi) = (self.min[j], self.max[j]);
            v.push(match noise {
                Noise::Uniform => rng.random_range(0.0..=1.0) * (hi - lo) + lo,
                Noise::Gaussian => {
                    let (m, s) = self.mean_std(j);
                    // Box–Muller.
                    let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    m + s * z
                }
                Noise::Binary => {
                    if rng.random_bool(0.5) {
                        hi
                    } else {
                        lo
                    }
                }
            });
        }
        Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
    }

    /// `x` (…, features) clamped to each feature's range.
    pub fn clamp(&self, x: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let lo = Tensor::new(self.min.as_slice(), dev)?.to_dtype(x.dtype())?;
        let hi = Tensor::new(self.max.as_slice(), dev)?.to_dtype(x.dtype())?;
        Ok(x.broadcast_maximum(&lo)?.broadcast_minimum(&hi)?)
    }
}

/// How pseudo-patterns are made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reverb {
    pub kind: PseudoKind,
    /// Reverberations `R` (0: one pass from the seed, Robins's pseudo-rehearsal).
    pub rounds: usize,
    pub noise: Noise,
    /// σ of the denoising head (0: none). When the head was trained to denoise, each
    /// reverberation first corrupts its input the same way, `x ← clamp(r(x + σ·std·ε))`: the
    /// sampling chain of a denoising auto-encoder (Bengio et al. 2013), which moves seeds toward
    /// the data instead of letting them all fall into one attractor.
    #[serde(default)]
    pub denoise: f64,
}

/// A batch of pseudo-patterns and their soft targets.
#[derive(Debug, Clone)]
pub struct Pseudo {
    /// Inputs: (P, T, F) sequences, or (P, F) items for transitions.
    pub x: Tensor,
    /// Transitions: the starting states (P, state).
    pub state: Option<Tensor>,
    /// Transitions: the generator's state after the step (P, state), a target too, so that the
    /// learner's transition map is learned in the generator's coordinates and its own states
    /// follow the generator's when it runs over a sequence.
    pub next_state: Option<Tensor>,
    /// The generator's read-out: (P, T, outputs) or (P, outputs).
    pub y: Tensor,
    /// The generator's reconstruction: (P, T, F) or (P, F + state).
    pub recon: Tensor,
}

/// `n` pseudo-patterns of `gen`. `seeds`: real sequences to start from (combined replay);
/// `None`: noise from `range`.
pub fn generate(
    gen: &SequenceModel,
    reverb: &Reverb,
    range: &InputRange,
    n: usize,
    seeds: Option<&Batch>,
    rng: &mut ChaCha8Rng,
    dtype: DType,
    device: &Device,
) -> Result<Pseudo> {
    let f = gen.config().input_size();
    let want = reverb.kind.autoassoc();
    if gen.autoassoc() != Some(want) {
        return Err(ContinualError::Config(format!(
            "{:?} pseudo-patterns need a generator whose head reconstructs {want:?}",
            reverb.kind
        )));
    }
    let seed_seq = match seeds {
        Some(b) => b.x.to_dtype(dtype)?.to_device(device)?,
        None => range.sample(
            reverb.noise,
            &[n, range.steps.max(1), f],
            rng,
            dtype,
            device,
        )?,
    };
    let n = seed_seq.dim(0)?;
    let t = seed_seq.dim(1)?;
    let p = generate_unchecked(gen, reverb, range, seed_seq, n, t, f, rng, dtype, device)?;
    for (what, v) in [
        ("read-out", Some(&p.y)),
        ("reconstruction", Some(&p.recon)),
        ("next state", p.next_state.as_ref()),
    ] {
        if let Some(v) = v {
            let s = v
                .abs()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            if !s.is_finite() {
                return Err(ContinualError::Config(format!(
                    "the generator's pseudo-pattern {what} is not finite ({s}): its weights have diverged"
                )));
            }
        }
    }
    Ok(p)
}

#[allow(clippy::too_many_arguments)]
fn generate_unchecked(
    gen: &SequenceModel,
    reverb: &Reverb,
    range: &InputRange,
    seed_seq: Tensor,
    n: usize,
    t: usize,
    f: usize,
    rng: &mut ChaCha8Rng,
    dtype: DType,
    device: &Device,
) -> Result<Pseudo> {
    let input_part = |r: &Tensor| -> Result<Tensor> { Ok(r.narrow(D::Minus1, 0, f)?) };
    let corrupt = |x: &Tensor, rng: &mut ChaCha8Rng| -> Result<Tensor> {
        if reverb.denoise > 0.0 {
            Ok((x + corruption(range, reverb.denoise, x, rng)?)?)
        } else {
            Ok(x.clone())
        }
    };
    match reverb.kind {
        PseudoKind::Sequence => {
            let mut x = seed_seq;
            for _ in 0..reverb.rounds {
                let xin = corrupt(&x, rng)?;
                let (_, hs, _) = gen.forward_full(&xin, None, None)?;
                x = range.clamp(&input_part(&gen.reconstruct(&hs)?)?)?.detach();
            }
            let (y, hs, _) = gen.forward_full(&x, None, None)?;
            let recon = gen.reconstruct(&hs)?;
            Ok(Pseudo {
                x,
                state: None,
                next_state: None,
                y: y.detach(),
                recon: recon.detach(),
            })
        }
        PseudoKind::ClosedLoop => {
            let zero = gen.rnn_zero_state(n, dtype, device)?;
            let mut x = seed_seq.narrow(1, 0, 1)?.squeeze(1)?;
            for _ in 0..reverb.rounds {
                let (_, r, _) = gen.step_autoassoc(&corrupt(&x, rng)?, &zero)?;
                x = range.clamp(&input_part(&r)?)?.detach();
            }
            let (mut xs, mut ys, mut rs) = (Vec::new(), Vec::new(), Vec::new());
            let mut state = zero;
            for _ in 0..t {
                let (y, r, s) = gen.step_autoassoc(&x, &state)?;
                xs.push(x.clone());
                ys.push(y.detach());
                let next = range.clamp(&input_part(&r)?)?.detach();
                rs.push(r.detach());
                state = RnnState {
                    h: s.h.detach(),
                    c: s.c.map(|c| c.detach()),
                };
                x = next;
            }
            Ok(Pseudo {
                x: Tensor::stack(&xs, 1)?,
                state: None,
                next_state: None,
                y: Tensor::stack(&ys, 1)?,
                recon: Tensor::stack(&rs, 1)?,
            })
        }
        PseudoKind::Transition => {
            // The state after a random prefix (0..t steps) of the seed sequence.
            let k = rng.random_range(0..t);
            let state = if k == 0 {
                gen.rnn_zero_state(n, dtype, device)?
            } else {
                gen.forward(&seed_seq.narrow(1, 0, k)?, None, None)?.1
            };
            let mut x = seed_seq.narrow(1, k, 1)?.squeeze(1)?;
            let mut s = state.flatten()?.detach();
            let rc = gen.rnn().config();
            let has_c = state.c.is_some();
            for _ in 0..reverb.rounds {
                let st = RnnState::unflatten(&s, rc.num_layers, rc.hidden_size, has_c)?;
                let (_, r, _) = gen.step_autoassoc(&corrupt(&x, rng)?, &st)?;
                x = range.clamp(&input_part(&r)?)?.detach();
                s = r.narrow(1, f, s.dim(1)?)?.detach();
            }
            let st = RnnState::unflatten(&s, rc.num_layers, rc.hidden_size, has_c)?;
            let (y, recon, next) = gen.step_autoassoc(&x, &st)?;
            Ok(Pseudo {
                x,
                state: Some(s),
                next_state: Some(next.flatten()?.detach()),
                y: y.detach(),
                recon: recon.detach(),
            })
        }
    }
}

/// The learner's loss on pseudo-patterns: the hetero-associative part against the generator's
/// read-out (soft: cross-entropy with the generator's class probabilities, which is the KL
/// divergence up to a constant; hard: with its arg-max class; sigmoid targets for multi-label
/// read-outs, squared error for regression), plus `recon_weight` × the mean squared error of the
/// reconstruction, plus for transitions the mean squared error of the state after the step.
/// Sequence patterns read the class at the last step for
/// [`Objective::ClassLastStep`], the mean over time for [`Objective::ClassMeanOverTime`], every
/// step otherwise; transitions read their one step.
pub fn distill_loss(
    learner: &SequenceModel,
    p: &Pseudo,
    objective: Objective,
    soft: bool,
    recon_weight: f64,
) -> Result<Tensor> {
    let (y, recon, state_err) = match &p.state {
        Some(s) => {
            let rc = learner.rnn().config();
            let has_c = rc.cell == remanence_cells::CellKind::Lstm;
            let st = RnnState::unflatten(s, rc.num_layers, rc.hidden_size, has_c)?;
            let (y, r, next) = learner.step_autoassoc(&p.x, &st)?;
            let err = match &p.next_state {
                Some(target) => Some((next.flatten()? - target)?.sqr()?.mean_all()?),
                None => None,
            };
            (y, r, err)
        }
        None => {
            let (y, hs, _) = learner.forward_full(&p.x, None, None)?;
            let r = learner.reconstruct(&hs)?;
            (y, r, None)
        }
    };
    let view = |y: &Tensor| -> Result<Tensor> {
        if y.rank() == 2 {
            return Ok(y.clone());
        }
        let (b, t, c) = y.dims3()?;
        Ok(match objective {
            Objective::ClassLastStep => y.narrow(1, t - 1, 1)?.squeeze(1)?,
            Objective::ClassMeanOverTime => y.mean(1)?,
            _ => y.reshape((b * t, c))?,
        })
    };
    let (z, zt) = (view(&y)?, view(&p.y)?);
    let hetero = match objective {
        Objective::MultiLabelPerStep => {
            let target = candle_nn::ops::sigmoid(&zt)?;
            let target = if soft {
                target
            } else {
                target.ge(0.5)?.to_dtype(z.dtype())?
            };
            remanence_train::loss::masked_bce_with_logits(&z, &target, None)?
        }
        Objective::RegressionPerStep => (z - zt)?.sqr()?.sum(D::Minus1)?.mean_all()?,
        _ => {
            let log_p = candle_nn::ops::log_softmax(&z, D::Minus1)?;
            if soft {
                let q = candle_nn::ops::softmax(&zt, D::Minus1)?;
                (q * log_p)?.sum(D::Minus1)?.neg()?.mean_all()?
            } else {
                let hard = zt.argmax_keepdim(D::Minus1)?;
                log_p.gather(&hard, D::Minus1)?.neg()?.mean_all()?
            }
        }
    };
    let rec = (recon - &p.recon)?.sqr()?.mean_all()?;
    let l = (hetero + (rec * recon_weight)?)?;
    Ok(match state_err {
        Some(e) => (l + e)?,
        None => l,
    })
}

/// The reconstruction targets of real sequences for `model`'s head, (B, T, size): each step's
/// input, and for transitions the state the step started from (computed step by step, detached).
pub fn recon_targets(model: &SequenceModel, batch: &Batch) -> Result<Tensor> {
    match model.autoassoc() {
        None => Err(ContinualError::Config(
            "the model has no auto-associative head".into(),
        )),
        Some(AutoAssoc::Input) => Ok(batch.x.clone()),
        Some(AutoAssoc::InputAndState) => {
            let (b, t, _) = batch.x.dims3()?;
            let mut state = model.rnn_zero_state(b, batch.x.dtype(), batch.x.device())?;
            let mut rows = Vec::with_capacity(t);
            for k in 0..t {
                let xk = batch.x.narrow(1, k, 1)?;
                rows.push(Tensor::cat(
                    &[&xk.squeeze(1)?, &state.flatten()?.detach()],
                    1,
                )?);
                // One step of the sequence pass, with the batch's elapsed time for that step.
                let dt = batch.dt.as_ref().map(|d| d.narrow(1, k, 1)).transpose()?;
                let (_, _, s) = model.forward_full(&xk, Some(&state), dt.as_ref())?;
                state = RnnState {
                    h: s.h.detach(),
                    c: s.c.map(|c| c.detach()),
                };
            }
            Ok(Tensor::stack(&rows, 1)?)
        }
    }
}

/// Gaussian noise of `x`'s shape (…, features), each feature's scaled by `sigma` × its standard
/// deviation in the data seen.
pub fn corruption(
    range: &InputRange,
    sigma: f64,
    x: &Tensor,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let f = range.min.len();
    let total = x.elem_count();
    let v: Vec<f64> = (0..total)
        .map(|k| {
            let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            sigma * range.mean_std(k % f).1 * z
        })
        .collect();
    Ok(Tensor::from_vec(v, x.dims(), x.device())?.to_dtype(x.dtype())?)
}

/// Mean squared reconstruction error of real sequences over their real steps, from the
/// recurrent outputs `hs` (B, T, hidden) of the forward pass. With `denoise` = (range, σ, rng)
/// the head reconstructs the clean input from a forward pass over a corrupted copy
/// `x + σ·std·ε` (a denoising auto-encoder, whose iteration drifts toward the data: Bengio et al.
/// 2013), at the cost of a second forward pass.
pub fn recon_loss(
    model: &SequenceModel,
    batch: &Batch,
    hs: &Tensor,
    denoise: Option<(&InputRange, f64, &mut ChaCha8Rng)>,
) -> Result<Tensor> {
    let r = match denoise {
        Some((range, sigma, rng)) if sigma > 0.0 => {
            let noisy = (&batch.x + corruption(range, sigma, &batch.x, rng)?)?;
            let (_, hn, _) = model.forward_full(&noisy, None, batch.dt.as_ref())?;
            model.reconstruct(&hn)?
        }
        _ => model.reconstruct(hs)?,
    };
    let target = recon_targets(model, batch)?;
    let se = (r - target)?.sqr()?.mean(D::Minus1)?;
    let (b, t) = se.dims2()?;
    let w = match &batch.mask {
        Some(m) => m.gt(0.0)?.to_dtype(se.dtype())?,
        None if batch.lengths.iter().all(|&l| l >= t) => return Ok(se.mean_all()?),
        None => {
            let v: Vec<f32> = (0..b * t)
                .map(|k| (k % t < batch.lengths[k / t]) as u8 as f32)
                .collect();
            Tensor::from_vec(v, (b, t), se.device())?.to_dtype(se.dtype())?
        }
    };
    Ok((se * &w)?.sum_all()?.broadcast_div(&w.sum_all()?)?)
}
