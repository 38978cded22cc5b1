use serde::{Deserialize, Serialize};

use remanence_cells::ModelConfig;
use remanence_tasks::TaskConfig;

use crate::optim::OptimizerConfig;
use crate::ridge::RidgeConfig;
use crate::schedule::Schedule;

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: Schedule,
    /// Clip gradients to this global L2 norm.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Seed of initialisation and batch order.
    pub seed: u64,
    /// Stop as soon as the task counts as solved, or the headline metric reaches `target`.
    #[serde(default = "yes")]
    pub early_stop: bool,
    #[serde(default)]
    pub target: Option<f64>,
    /// Batch size for evaluation.
    #[serde(default = "eval_batch")]
    pub eval_batch_size: usize,
    /// Fit the read-out in closed form by ridge regression instead of gradient steps (the
    /// echo-state network's rule; [`crate::ridge`]). The optimizer settings are then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ridge: Option<RidgeConfig>,
}

fn yes() -> bool {
    true
}
fn eval_batch() -> usize {
    256
}

impl TrainConfig {
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::TrainError::Config(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch sizes must be at least 1".into());
        }
        if !(self.optimizer.lr.is_finite() && self.optimizer.lr > 0.0) {
            return bad(format!(
                "learning rate must be positive, got {}",
                self.optimizer.lr
            ));
        }
        if let Some(c) = self.clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return bad(format!("clip norm must be positive, got {c}"));
            }
        }
        let o = &self.optimizer;
        // `!(in range)` so that NaN fails every check.
        let checks: [(&str, f64, bool, &str); 6] = [
            (
                "momentum",
                o.momentum,
                (0.0..1.0).contains(&o.momentum),
                "in [0, 1)",
            ),
            (
                "weight decay",
                o.weight_decay,
                o.weight_decay >= 0.0 && o.weight_decay.is_finite(),
                "finite and ≥ 0",
            ),
            ("beta1", o.beta1, (0.0..1.0).contains(&o.beta1), "in [0, 1)"),
            ("beta2", o.beta2, (0.0..1.0).contains(&o.beta2), "in [0, 1)"),
            ("alpha", o.alpha, (0.0..1.0).contains(&o.alpha), "in [0, 1)"),
            (
                "eps",
                o.eps,
                o.eps > 0.0 && o.eps.is_finite(),
                "finite and > 0",
            ),
        ];
        for (name, value, ok, range) in checks {
            if !ok {
                return bad(format!("{name} must be {range}, got {value}"));
            }
        }
        if let Some(r) = &self.ridge {
            r.validate()?;
        }
        if let Some(t) = self.target {
            if !t.is_finite() {
                return bad(format!("target must be a finite number, got {t}"));
            }
        }
        self.schedule.validate()
    }
}

/// Everything needed to rebuild a run: written as `config.json` in the run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub task: TaskConfig,
    pub train: TrainConfig,
    /// `f32` or `f64`.
    pub dtype: String,
    /// `cpu`, `cuda[:N]` or `metal[:N]`.
    pub device: String,
}

impl RunConfig {
    pub fn dtype(&self) -> crate::Result<candle_core::DType> {
        match self.dtype.as_str() {
            "f32" => Ok(candle_core::DType::F32),
            "f64" => Ok(candle_core::DType::F64),
            d => Err(crate::TrainError::Config(format!(
                "unknown dtype `{d}`; valid dtypes: f32, f64"
            ))),
        }
    }
}
