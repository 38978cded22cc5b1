//! The read-out fitted in closed form by ridge regression: the echo-state network's learning
//! rule (Jaeger 2001), a [`Learner`] with no gradient step.
//!
//! The recurrent network is left as it is; on the features φ (the recurrent outputs the head
//! reads, with a constant 1 appended for the bias) and targets y, the head `W̃ = [W b]` minimises
//!
//! ```text
//! Σ_n w_n ‖W̃ φ_n − y_n‖² + λ ‖W̃‖²_F        ⇒   W̃ᵀ = (Σ w φφᵀ + λI)⁻¹ Σ w φ yᵀ
//! ```
//!
//! (ReservoirPy's `Ridge` node: `W_out = Y Xᵀ (X Xᵀ + λI)⁻¹`, the bias a row of X, penalised
//! alike). The rows n and targets follow the task's [`Objective`], so the fitted head is scored
//! exactly as the loss reads it:
//!
//! | objective | φ_n | y_n | w_n |
//! |---|---|---|---|
//! | class, last step | h at the sequence's last real step | one-hot class | 1 |
//! | class, mean over time | h averaged over the real steps | one-hot class | 1 |
//! | class per step | h_t | one-hot class of step t | mask_t |
//! | multi-label per step | h_t | 2·target − 1 (logit sign) | mask_t |
//! | regression per step | h_t | target_t | mask_t |
//!
//! For the per-step objectives the first `washout` steps of every sequence get weight 0 (the
//! reservoir's initial transient). The sums Σ wφφᵀ and Σ wφyᵀ are accumulated in f64 over the
//! batches of an epoch and the head is re-solved after each batch, so it is at every moment the
//! exact ridge solution on the data seen so far in this epoch; each epoch starts the sums
//! afresh, and an epoch over a fixed training set gives the same head as the one before. A
//! singular system (λ = 0 with collinear features) raises λ as [`ridge_solve`] does, and the λ
//! used is reported in the epoch's metrics (`ridge_lambda`).
use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use remanence_cells::linalg::{ridge_solve, Mat};
use remanence_tasks::task::class_readout;
use remanence_tasks::{Batch, Objective};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::learner::{non_finite, Learner, StepContext, StepReport};
use crate::loss::loss;

/// Settings of the closed-form read-out fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RidgeConfig {
    /// λ ≥ 0.
    pub lambda: f64,
    /// Leading steps of every sequence left out of per-step fits.
    #[serde(default)]
    pub washout: usize,
}

impl Default for RidgeConfig {
    fn default() -> Self {
        Self {
            lambda: 1e-6,
            washout: 0,
        }
    }
}

impl RidgeConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(TrainError::Config(format!(
                "the ridge λ must be finite and ≥ 0, got {}",
                self.lambda
            )));
        }
        Ok(())
    }
}

/// Fits the head by ridge regression on the recurrent outputs; see the module doc.
pub struct RidgeLearner {
    cfg: RidgeConfig,
    /// Σ w φφᵀ (F+1, F+1) and Σ w φyᵀ (F+1, O) of the current epoch.
    gram: Option<Tensor>,
    rhs: Option<Tensor>,
    epoch: Option<usize>,
    fits: u64,
    lambda_used: f64,
}

impl RidgeLearner {
    pub fn new(cfg: RidgeConfig) -> Self {
        let lambda_used = cfg.lambda;
        Self {
            cfg,
            gram: None,
            rhs: None,
            epoch: None,
            fits: 0,
            lambda_used,
        }
    }
}

/// One-hot rows (n, classes) of u32 class indices (n,).
fn one_hot(classes: &Tensor, n_classes: usize) -> Result<Tensor> {
    let idx: Vec<u32> = classes.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
    let mut v = vec![0.0f64; idx.len() * n_classes];
    for (r, &c) in idx.iter().enumerate() {
        if c as usize >= n_classes {
            return Err(TrainError::Config(format!(
                "class {c} in a batch of a task with {n_classes} outputs"
            )));
        }
        v[r * n_classes + c as usize] = 1.0;
    }
    Ok(Tensor::from_vec(v, (idx.len(), n_classes), &Device::Cpu)?)
}

/// The rows of the fit for a batch: features φ (n, F), targets (n, O) and weights (n, 1), f64 on
/// the CPU.
pub fn design(
    objective: Objective,
    hidden: &Tensor,
    batch: &Batch,
    outputs: usize,
    washout: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let hidden = hidden
        .detach()
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?;
    let (b, t, f) = hidden.dims3()?;
    match objective {
        Objective::ClassLastStep | Objective::ClassMeanOverTime => {
            let phi = class_readout(&hidden, &batch.lengths, objective)?;
            let y = one_hot(&batch.target, outputs)?;
            let w = Tensor::ones((b, 1), DType::F64, &Device::Cpu)?;
            Ok((phi, y, w))
        }
        _ => {
            let phi = hidden.reshape((b * t, f))?;
            let y = match objective {
                Objective::ClassPerStep => one_hot(&batch.target, outputs)?,
                Objective::MultiLabelPerStep => batch
                    .target
                    .to_dtype(DType::F64)?
                    .to_device(&Device::Cpu)?
                    .reshape((b * t, outputs))?
                    .affine(2.0, -1.0)?,
                _ => batch
                    .target
                    .to_dtype(DType::F64)?
                    .to_device(&Device::Cpu)?
                    .reshape((b * t, outputs))?,
            };
            let mut w: Vec<f64> = match &batch.mask {
                Some(m) => m
                    .to_dtype(DType::F64)?
                    .to_device(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1()?,
                None => vec![1.0; b * t],
            };
            for s in 0..b {
                for step in 0..washout.min(t) {
                    w[s * t + step] = 0.0;
                }
            }
            Ok((phi, y, Tensor::from_vec(w, (b * t, 1), &Device::Cpu)?))
        }
    }
}

fn to_mat(t: &Tensor) -> Result<Mat> {
    let (r, c) = t.dims2()?;
    Ok(Mat::from_vec(r, c, t.flatten_all()?.to_vec1()?)
        .map_err(remanence_cells::CellError::from)?)
}

impl Learner for RidgeLearner {
    fn step(&mut self, ctx: &StepContext, batch: &Batch) -> Result<StepReport> {
        if self.epoch != Some(ctx.epoch) {
            self.epoch = Some(ctx.epoch);
            self.gram = None;
            self.rhs = None;
        }
        let (_, hidden, _) = ctx.model.forward_full(&batch.x, None, batch.dt.as_ref())?;
        let outputs = ctx.model.config().output_size;
        let (phi, y, w) = design(ctx.objective, &hidden, batch, outputs, self.cfg.washout)?;
        let ones = Tensor::ones((phi.dim(0)?, 1), DType::F64, &Device::Cpu)?;
        let phi = Tensor::cat(&[&phi, &ones], 1)?;
        let weighted = phi.broadcast_mul(&w)?;
        let gram = weighted.t()?.matmul(&phi)?;
        let rhs = weighted.t()?.matmul(&y)?;
        let gram = match self.gram.take() {
            Some(g) => (g + gram)?,
            None => gram,
        };
        let rhs = match self.rhs.take() {
            Some(r) => (r + rhs)?,
            None => rhs,
        };
        if w.sum_all()?.to_scalar::<f64>()? > 0.0 {
            let solution = ridge_solve(&to_mat(&gram)?, &to_mat(&rhs)?, self.cfg.lambda)
                .map_err(remanence_cells::CellError::from)?;
            self.lambda_used = solution.lambda;
            let f = gram.dim(0)? - 1;
            let wt = solution.weights; // (F+1, O)
            let o = wt.cols();
            let mut weight = vec![0.0; o * f];
            let mut bias = vec![0.0; o];
            for j in 0..o {
                for i in 0..f {
                    weight[j * f + i] = wt[(i, j)];
                }
                bias[j] = wt[(f, j)];
            }
            if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
                return Err(non_finite("ridge read-out", f64::NAN));
            }
            for (name, values, shape) in [
                ("head.weight", weight, vec![o, f]),
                ("head.bias", bias, vec![o]),
            ] {
                let var = ctx.store.get(name).ok_or_else(|| {
                    TrainError::Config(format!("the model has no `{name}` to fit"))
                })?;
                let t = Tensor::from_vec(values, shape, &Device::Cpu)?
                    .to_dtype(var.dtype())?
                    .to_device(var.device())?;
                var.set(&t)?;
            }
            self.fits += 1;
        }
        self.gram = Some(gram);
        self.rhs = Some(rhs);
        // The batch's loss under the head just fitted, from the outputs already computed.
        let head = |name: &str| -> Result<Tensor> {
            Ok(ctx
                .store
                .get(name)
                .ok_or_else(|| TrainError::Config(format!("the model has no `{name}` to fit")))?
                .as_tensor()
                .detach())
        };
        let y = hidden
            .detach()
            .broadcast_matmul(&head("head.weight")?.t()?)?
            .broadcast_add(&head("head.bias")?)?;
        let lv = loss(ctx.objective, &y, batch)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        if !lv.is_finite() {
            return Err(non_finite("loss", lv));
        }
        Ok(StepReport {
            loss: lv,
            grad_norm: 0.0,
            sequences: batch.indices.len(),
        })
    }

    fn steps(&self) -> u64 {
        self.fits
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn load_state(&mut self, _state: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        self.fits = steps;
        Ok(())
    }

    fn metrics(&self) -> Vec<(String, f64)> {
        vec![("ridge_lambda".into(), self.lambda_used)]
    }
}
