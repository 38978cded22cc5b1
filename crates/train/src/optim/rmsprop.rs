//! RMSProp, as `torch.optim.RMSprop`: `g ← g + λp`; `v ← αv + (1−α)g²`; with momentum μ,
//! `b ← μb + g/(√v + ε)` and `p ← p − lr·b`, otherwise `p ← p − lr·g/(√v + ε)`.
use std::collections::HashMap;

use candle_core::{Tensor, Var};

use super::{Buffers, Optimizer, OptimizerConfig};
use crate::error::Result;

pub struct RmsProp {
    cfg: OptimizerConfig,
    t: u64,
    buf: Buffers,
}

impl RmsProp {
    pub fn new(cfg: OptimizerConfig) -> Self {
        Self {
            cfg,
            t: 0,
            buf: Buffers::default(),
        }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.t += 1;
        let (a, eps, mu) = (self.cfg.alpha, self.cfg.eps, self.cfg.momentum);
        for ((name, var), g) in vars.iter().zip(grads) {
            let Some(g) = g else { continue };
            let p = &var.as_tensor().detach(); // detached: optimizer arithmetic builds no graph
            let mut g = g.clone();
            if self.cfg.weight_decay != 0.0 {
                g = (g + p.affine(self.cfg.weight_decay, 0.0)?)?;
            }
            let v = self.buf.get_or_zeros("square_avg", name, p)?;
            let v = (v.affine(a, 0.0)? + g.sqr()?.affine(1.0 - a, 0.0)?)?;
            let mut d = (g / v.sqrt()?.affine(1.0, eps)?)?;
            if mu != 0.0 {
                let b = self.buf.get_or_zeros("momentum_buffer", name, p)?;
                d = (b.affine(mu, 0.0)? + d)?;
                self.buf.set("momentum_buffer", name, d.clone());
            }
            var.set(&(p - d.affine(lr, 0.0)?)?)?;
            self.buf.set("square_avg", name, v);
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
        self.buf.load(state, &["square_avg", "momentum_buffer"])?;
        self.t = steps;
        Ok(())
    }
}
