//! Optimizers. Each keeps its per-parameter state as named tensors so a checkpoint can store it
//! and a resumed run continues exactly where it stopped.
//!
//! Update rules follow PyTorch's `torch.optim` defaults (see each file).
mod adam;
mod rmsprop;
mod sgd;

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

pub use adam::Adam;
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam; `weight_decay` adds an L2 term to the gradient.
    Adam,
    /// AdamW: decoupled weight decay.
    Adamw,
    /// SGD with (heavy-ball) momentum.
    Sgd,
    #[serde(alias = "rmsprop")]
    RmsProp,
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Adam,
        OptimizerKind::Adamw,
        OptimizerKind::Sgd,
        OptimizerKind::RmsProp,
    ];
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adamw => "adamw",
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::RmsProp => "rmsprop",
        }
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        OptimizerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let v: Vec<_> = OptimizerKind::ALL.iter().map(|k| k.name()).collect();
                TrainError::Config(format!(
                    "unknown optimizer `{s}`; valid optimizers: {}",
                    v.join(", ")
                ))
            })
    }
}

/// Optimizer hyper-parameters. Fields an optimizer does not use are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// SGD and RMSProp momentum.
    #[serde(default)]
    pub momentum: f64,
    #[serde(default = "beta1")]
    pub beta1: f64,
    #[serde(default = "beta2")]
    pub beta2: f64,
    /// RMSProp smoothing constant.
    #[serde(default = "alpha")]
    pub alpha: f64,
    #[serde(default = "eps")]
    pub eps: f64,
}

fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn alpha() -> f64 {
    0.99
}
fn eps() -> f64 {
    1e-8
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        Self {
            kind,
            lr,
            weight_decay: 0.0,
            momentum: 0.0,
            beta1: beta1(),
            beta2: beta2(),
            alpha: alpha(),
            eps: eps(),
        }
    }

    pub fn build(&self) -> Box<dyn Optimizer> {
        match self.kind {
            OptimizerKind::Adam => Box::new(Adam::new(self.clone(), false)),
            OptimizerKind::Adamw => Box::new(Adam::new(self.clone(), true)),
            OptimizerKind::Sgd => Box::new(Sgd::new(self.clone())),
            OptimizerKind::RmsProp => Box::new(RmsProp::new(self.clone())),
        }
    }
}

pub trait Optimizer: Send {
    /// Updates every parameter that has a gradient; `grads[i]` belongs to `vars[i]`.
    fn step(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()>;
    /// Number of steps taken.
    fn steps(&self) -> u64;
    /// The state as named tensors (names are `<buffer>.<parameter>`).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores a state saved by [`Optimizer::state`] after `steps` steps.
    fn load_state(&mut self, state: HashMap<String, Tensor>, steps: u64) -> Result<()>;
}

/// Per-parameter buffers keyed by `<buffer>.<parameter>`.
#[derive(Default)]
pub(crate) struct Buffers(pub HashMap<String, Tensor>);

impl Buffers {
    pub fn key(buffer: &str, param: &str) -> String {
        format!("{buffer}.{param}")
    }
    pub fn get_or_zeros(&self, buffer: &str, param: &str, like: &Tensor) -> Result<Tensor> {
        match self.0.get(&Self::key(buffer, param)) {
            Some(t) => Ok(t.clone()),
            None => Ok(like.zeros_like()?),
        }
    }
    pub fn set(&mut self, buffer: &str, param: &str, t: Tensor) {
        self.0.insert(Self::key(buffer, param), t);
    }
    pub fn sorted(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<_> = self.0.iter().map(|(k, t)| (k.clone(), t.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    pub fn load(&mut self, state: HashMap<String, Tensor>, allowed: &[&str]) -> Result<()> {
        for k in state.keys() {
            if !allowed.iter().any(|b| k.starts_with(&format!("{b}."))) {
                return Err(TrainError::Config(format!(
                    "optimizer state has an unknown buffer `{k}`"
                )));
            }
        }
        self.0 = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Minimises f(p) = Σ (p − 3)² from p = 0; every optimizer must get close.
    fn converges(cfg: OptimizerConfig, steps: usize) {
        let p = Var::from_tensor(&Tensor::zeros(4, DType::F64, &Device::Cpu).unwrap()).unwrap();
        let vars = vec![("p".to_string(), p.clone())];
        let mut opt = cfg.build();
        for _ in 0..steps {
            let loss = (p.as_tensor() - 3.0)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            let g = loss.backward().unwrap();
            opt.step(&vars, &[g.get(p.as_tensor()).cloned()], cfg.lr)
                .unwrap();
        }
        let v: Vec<f64> = p.as_tensor().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| (x - 3.0).abs() < 0.05),
            "{:?}: {v:?}",
            cfg.kind
        );
        assert_eq!(opt.steps(), steps as u64);
    }

    #[test]
    fn all_optimizers_minimise_a_quadratic() {
        converges(OptimizerConfig::new(OptimizerKind::Adam, 0.1), 300);
        converges(
            OptimizerConfig {
                weight_decay: 1e-4,
                ..OptimizerConfig::new(OptimizerKind::Adamw, 0.1)
            },
            300,
        );
        converges(
            OptimizerConfig {
                momentum: 0.9,
                ..OptimizerConfig::new(OptimizerKind::Sgd, 0.01)
            },
            300,
        );
        converges(OptimizerConfig::new(OptimizerKind::RmsProp, 0.01), 600);
    }

    /// Adam's first step moves every coordinate by lr·sign(g) (bias correction makes m̂/√v̂ = ±1).
    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let p = Var::from_tensor(&Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap()).unwrap();
        let g = Tensor::new(&[0.3f64, -7.0], &Device::Cpu).unwrap();
        let mut opt = OptimizerConfig::new(OptimizerKind::Adam, 0.01).build();
        opt.step(&[("p".into(), p.clone())], &[Some(g)], 0.01)
            .unwrap();
        let v: Vec<f64> = p.as_tensor().to_vec1().unwrap();
        assert!(
            (v[0] - 0.99).abs() < 1e-9 && (v[1] + 1.99).abs() < 1e-9,
            "{v:?}"
        );
    }

    /// Stopping after k steps, saving the state and resuming gives the same parameters as an
    /// uninterrupted run.
    #[test]
    fn state_roundtrip_resumes_exactly() {
        for kind in OptimizerKind::ALL {
            let cfg = OptimizerConfig {
                momentum: 0.5,
                ..OptimizerConfig::new(kind, 0.05)
            };
            let run = |split: Option<usize>| -> Vec<f64> {
                let p = Var::from_tensor(&Tensor::new(&[0.5f64, -1.0, 2.0], &Device::Cpu).unwrap())
                    .unwrap();
                let vars = vec![("p".to_string(), p.clone())];
                let mut opt = cfg.build();
                for i in 0..10 {
                    if Some(i) == split {
                        let st: HashMap<String, Tensor> = opt.state().into_iter().collect();
                        let steps = opt.steps();
                        opt = cfg.build();
                        opt.load_state(st, steps).unwrap();
                    }
                    let loss = (p.as_tensor().powf(4.0).unwrap() - p.as_tensor())
                        .unwrap()
                        .sum_all()
                        .unwrap();
                    let g = loss.backward().unwrap();
                    opt.step(&vars, &[g.get(p.as_tensor()).cloned()], cfg.lr)
                        .unwrap();
                }
                p.as_tensor().to_vec1().unwrap()
            };
            assert_eq!(run(None), run(Some(4)), "{kind:?}");
        }
    }
}
