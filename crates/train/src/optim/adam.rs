//! Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), as `torch.optim.Adam/AdamW`:
//! `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `p ← p − lr·m̂/(√v̂ + ε)` with
//! `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`. Adam's weight decay adds `λp` to `g`; AdamW first shrinks
//! `p ← p(1 − lr·λ)`.
use std::collections::HashMap;

use candle_core::{Tensor, Var};

use super::{Buffers, Optimizer, OptimizerConfig};
use crate::error::Result;

pub struct Adam {
    cfg: OptimizerConfig,
    decoupled: bool,
    t: u64,
    buf: Buffers,
}

impl Adam {
    pub fn new(cfg: OptimizerConfig, decoupled: bool) -> Self {
        Self {
            cfg,
            decoupled,
            t: 0,
            buf: Buffers::default(),
        }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.t += 1;
        let (b1, b2, eps, wd) = (
            self.cfg.beta1,
            self.cfg.beta2,
            self.cfg.eps,
            self.cfg.weight_decay,
        );
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for ((name, var), g) in vars.iter().zip(grads) {
            let Some(g) = g else { continue };
            let p = &var.as_tensor().detach(); // detached: optimizer arithmetic builds no graph
            let mut g = g.clone();
            if wd != 0.0 && !self.decoupled {
                g = (g + p.affine(wd, 0.0)?)?;
            }
            let m = self.buf.get_or_zeros("exp_avg", name, p)?;
            let v = self.buf.get_or_zeros("exp_avg_sq", name, p)?;
            let m = (m.affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
            let v = (v.affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
            let denom = v.affine(1.0 / bc2, 0.0)?.sqrt()?.affine(1.0, eps)?;
            let update = (m.affine(lr / bc1, 0.0)? / denom)?;
            let base = if wd != 0.0 && self.decoupled {
                p.affine(1.0 - lr * wd, 0.0)?
            } else {
                p.clone()
            };
            var.set(&(base - update)?)?;
            self.buf.set("exp_avg", name, m);
            self.buf.set("exp_avg_sq", name, v);
        }
        Ok(())
    }
    fn steps(&self) -> u64 {
        self.t
    }
    fn state(&self) -> Vec<(String, Tensor)> {
        self.buf.sorted()
    }
    fn load_state(&mut self, state: HashMap<String, Tensor>, steps: u64) -> Result<()> {
        self.buf.load(state, &["exp_avg", "exp_avg_sq"])?;
        self.t = steps;
        Ok(())
    }
}
