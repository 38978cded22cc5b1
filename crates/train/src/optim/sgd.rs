//! SGD with heavy-ball momentum, as `torch.optim.SGD`: `g ← g + λp`; `b ← μb + g` (`b = g` on the
//! first step); `p ← p − lr·b`.
use std::collections::HashMap;

use candle_core::{Tensor, Var};

use super::{Buffers, Optimizer, OptimizerConfig};
use crate::error::Result;

pub struct Sgd {
    cfg: OptimizerConfig,
    t: u64,
    buf: Buffers,
}

impl Sgd {
    pub fn new(cfg: OptimizerConfig) -> Self {
        Self {
            cfg,
            t: 0,
            buf: Buffers::default(),
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, vars: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        self.t += 1;
        for ((name, var), g) in vars.iter().zip(grads) {
            let Some(g) = g else { continue };
            let p = &var.as_tensor().detach(); // detached: optimizer arithmetic builds no graph
            let mut d = g.clone();
            if self.cfg.weight_decay != 0.0 {
                d = (d + p.affine(self.cfg.weight_decay, 0.0)?)?;
            }
            if self.cfg.momentum != 0.0 {
                let key = Buffers::key("momentum_buffer", name);
                d = match self.buf.0.get(&key) {
                    Some(b) => (b.affine(self.cfg.momentum, 0.0)? + d)?,
                    None => d,
                };
                self.buf.set("momentum_buffer", name, d.clone());
            }
            var.set(&(p - d.affine(lr, 0.0)?)?)?;
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
        self.buf.load(state, &["momentum_buffer"])?;
        self.t = steps;
        Ok(())
    }
}
