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
    /// Estimate the recurrent weights and the read-out by backward tuning (Viéville et al.
    /// 2017) instead of gradient steps. The learner lives in `remanence-continual`
    /// (`backtune::learner::BacktuneLearner`); the command line builds it, since
    /// [`crate::trainer::default_learner`] cannot. The optimizer settings are then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtune: Option<BacktuneConfig>,
}

/// Settings of backward tuning as a trainer (`remanence train --trainer backward-tuning`).
/// The estimator's options mirror `remanence reverse-engineer`'s; the learner
/// (`remanence_continual::backtune::learner`) turns them into its estimator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BacktuneConfig {
    /// Estimator iterations (forward, adjoint, per-unit solves, line searches) per batch.
    pub iterations: usize,
    /// The largest kernel dimension given a per-unit second-order solve (`DMAX`, 16 in the
    /// report's code); units with more weights get first-order steps only.
    #[serde(default = "backtune_dmax")]
    pub dmax: usize,
    /// The criterion fitted on the read-out's targets.
    #[serde(default)]
    pub criterion: BacktuneCriterion,
    /// ν of the reweighted L1 / L0 criteria (default 0.1 / 1) and of the Boolean margin (0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nu: Option<f64>,
    /// The scale of the Huber-like (default 1) and biweight (default 3) criteria.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// The report's "reinject" option: the per-unit solves run on a desired trajectory (outputs
    /// clamped to their targets, hidden values from the network equations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reinject: Option<BacktuneReinject>,
    /// Unsupervised regularisers on the hidden units' values (the report's appendix): sparse
    /// activity `(κ, ε)`, orthogonality `κ`, soft bounds `(κ, k, b)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_activity: Option<(f64, f64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orthogonality: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub soft_bound: Vec<(f64, f64, f64)>,
}

/// The criteria of backward tuning as a trainer (RR-9100 §2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BacktuneCriterion {
    /// Least squares.
    #[default]
    L2,
    /// Reweighted L1 (robust to outliers).
    L1,
    /// Reweighted L0.
    L0,
    /// Huber-like.
    Huber,
    /// Tukey's biweight.
    Biweight,
    /// The Boolean margin: each output on the right side of ½ by ν (class objectives only).
    Margin,
}

/// How reinject computes the hidden units' desired values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BacktuneReinject {
    /// A damped Gauss–Newton fit of the network equations.
    GaussNewton,
    /// The report's literal fixed-point recurrence.
    FixedPoint,
}

impl std::str::FromStr for BacktuneCriterion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "l2" => Self::L2,
            "l1" => Self::L1,
            "l0" => Self::L0,
            "huber" => Self::Huber,
            "biweight" => Self::Biweight,
            "margin" => Self::Margin,
            _ => {
                return Err(format!(
                    "`{s}` is not a criterion: l2, l1, l0, huber, biweight or margin"
                ))
            }
        })
    }
}

impl std::str::FromStr for BacktuneReinject {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "gauss-newton" => Ok(Self::GaussNewton),
            "fixed-point" => Ok(Self::FixedPoint),
            _ => Err(format!(
                "`{s}` is not a reinject solver: gauss-newton or fixed-point"
            )),
        }
    }
}

fn backtune_dmax() -> usize {
    16
}

impl Default for BacktuneConfig {
    fn default() -> Self {
        Self {
            iterations: 3,
            dmax: backtune_dmax(),
            criterion: BacktuneCriterion::L2,
            nu: None,
            scale: None,
            reinject: None,
            sparse_activity: None,
            orthogonality: None,
            soft_bound: Vec::new(),
        }
    }
}

impl BacktuneConfig {
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::TrainError::Config(m));
        if self.iterations == 0 {
            return bad("backward tuning needs at least 1 iteration per batch".into());
        }
        if self.dmax == 0 {
            return bad("backward tuning's DMAX must be at least 1".into());
        }
        use BacktuneCriterion as C;
        if let Some(nu) = self.nu {
            if !(nu > 0.0 && nu.is_finite()) {
                return bad(format!(
                    "backward tuning's ν must be a finite number > 0, got {nu}"
                ));
            }
            if !matches!(self.criterion, C::L1 | C::L0 | C::Margin) {
                return bad("ν applies to the l1, l0 and margin criteria only".into());
            }
        }
        if let Some(s) = self.scale {
            if !(s > 0.0 && s.is_finite()) {
                return bad(format!(
                    "backward tuning's scale must be a finite number > 0, got {s}"
                ));
            }
            if !matches!(self.criterion, C::Huber | C::Biweight) {
                return bad("the scale applies to the huber and biweight criteria only".into());
            }
        }
        if let Some((k, e)) = self.sparse_activity {
            if !(k >= 0.0 && k.is_finite() && e > 0.0 && e.is_finite()) {
                return bad(format!(
                    "sparse activity needs κ ≥ 0 and ε > 0, got {k}:{e}"
                ));
            }
        }
        if let Some(k) = self.orthogonality {
            if !(k >= 0.0 && k.is_finite()) {
                return bad(format!("orthogonality needs κ ≥ 0, got {k}"));
            }
        }
        if let Some(b) = self
            .soft_bound
            .iter()
            .find(|(k, s, b)| !(*k >= 0.0 && k.is_finite() && s.is_finite() && b.is_finite()))
        {
            return bad(format!(
                "a soft bound needs κ ≥ 0 and finite k, b, got {b:?}"
            ));
        }
        Ok(())
    }
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
        if let Some(b) = &self.backtune {
            if self.ridge.is_some() {
                return bad("ridge and backward tuning are two trainers; give one".into());
            }
            b.validate()?;
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
