//! Closed-form continuous-time cell with ncps's semantics (`ncps.torch.CfCCell`).
//!
//! ```text
//! z    = act(Linear([x, h]))  repeated `backbone_layers` times (LeCun tanh by default)
//! ff1  = W1 z + b1,  ff2 = W2 z + b2,  t_a = Wa z + ba,  t_b = Wb z + bb
//! default:  gate = σ(t_a·Δt + t_b);  h' = tanh(ff1)·(1 − gate) + gate·tanh(ff2)
//! no-gate:  h' = tanh(ff1) + gate·tanh(ff2)
//! pure:     h' = −A·exp(−Δt·(|w_τ| + |ff1|))·ff1 + A
//! ```
//! Names (ncps): `backbone.{0,2,4,…}.weight/bias`, `ff1`, `ff2`, `time_a`, `time_b` (`.weight`,
//! `.bias`), `A` and `w_tau` (1, H) in pure mode. Initialisation as ncps: Xavier-uniform on every
//! matrix (A and w_tau included), PyTorch's `nn.Linear` default on the biases.
//!
//! On the CPU the whole layer runs as one fused op ([`crate::kernels::cpu::CfcKernel`]) that
//! reads the parameters packed by `Cfc::packed_weights`; `step` is the reference it is tested
//! against.
use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use super::torch_layer::pack;
use crate::cell::RecurrentCell;
use crate::config::{BackboneActivation, CfcMode, CtOptions};
use crate::error::{CellError, Result};
use crate::kernels::cpu::{CfcKernel, Fused};
use crate::ops::lecun_tanh;
use crate::route::Route;
use crate::state::CellState;

impl BackboneActivation {
    pub fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::LecunTanh => lecun_tanh(x),
            Self::Tanh => x.tanh(),
            Self::Relu => x.relu(),
            Self::Gelu => x.gelu_erf(),
            Self::Silu => x.silu(),
        }
    }
}

/// Xavier-uniform bound for a (fan_out, fan_in) matrix.
pub(crate) fn xavier(fan_out: usize, fan_in: usize) -> Init {
    let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

/// A `torch.nn.Linear` with Xavier-uniform weights and PyTorch's default bias.
pub(crate) fn xavier_linear(fan_in: usize, fan_out: usize, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((fan_out, fan_in), "weight", xavier(fan_out, fan_in))?;
    let bb = 1.0 / (fan_in as f64).sqrt();
    let b = vb.get_with_hints(fan_out, "bias", Init::Uniform { lo: -bb, up: bb })?;
    Ok(Linear::new(w, Some(b)))
}

pub struct Cfc {
    backbone: Vec<Linear>,
    activation: BackboneActivation,
    ff1: Linear,
    ff2: Option<Linear>,
    time_a: Option<Linear>,
    time_b: Option<Linear>,
    a: Option<Tensor>,
    w_tau: Option<Tensor>,
    mode: CfcMode,
    backbone_units: usize,
    inputs: usize,
    units: usize,
}

impl Cfc {
    pub fn new(input_size: usize, units: usize, opts: &CtOptions, vb: VarBuilder) -> Result<Self> {
        let (mode, activation) = (opts.mode, opts.backbone_activation);
        let mut backbone = Vec::new();
        let mut width = input_size + units;
        for k in 0..opts.backbone_layers {
            backbone.push(xavier_linear(
                width,
                opts.backbone_units,
                vb.pp(format!("backbone.{}", 2 * k)),
            )?);
            width = opts.backbone_units;
        }
        let ff1 = xavier_linear(width, units, vb.pp("ff1"))?;
        let (ff2, time_a, time_b, a, w_tau) = if mode == CfcMode::Pure {
            let a = vb.get_with_hints((1, units), "A", xavier(1, units))?;
            let w_tau = vb.get_with_hints((1, units), "w_tau", xavier(1, units))?;
            (None, None, None, Some(a), Some(w_tau))
        } else {
            (
                Some(xavier_linear(width, units, vb.pp("ff2"))?),
                Some(xavier_linear(width, units, vb.pp("time_a"))?),
                Some(xavier_linear(width, units, vb.pp("time_b"))?),
                None,
                None,
            )
        };
        Ok(Self {
            backbone,
            activation,
            ff1,
            ff2,
            time_a,
            time_b,
            a,
            w_tau,
            mode,
            backbone_units: opts.backbone_units,
            inputs: input_size,
            units,
        })
    }

    /// The parameters as the fused kernel reads them (see [`CfcKernel`]): each backbone layer's
    /// weight and bias; the heads' weights stacked (ff1, ff2, time_a, time_b; ff1 alone in pure
    /// mode), then their biases in the same order; in pure mode `A` and `w_tau`. Built with
    /// Candle ops, so autograd carries the kernel's gradients on to the parameters.
    fn packed_weights(&self) -> Result<Tensor> {
        let bias = |l: &Linear| -> Result<Tensor> {
            l.bias()
                .cloned()
                .ok_or_else(|| CellError::Config("CfC layers have biases".into()))
        };
        let heads: Vec<&Linear> = [
            Some(&self.ff1),
            self.ff2.as_ref(),
            self.time_a.as_ref(),
            self.time_b.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut parts: Vec<Tensor> = Vec::new();
        for l in &self.backbone {
            parts.push(l.weight().clone());
            parts.push(bias(l)?);
        }
        for l in &heads {
            parts.push(l.weight().clone());
        }
        for l in &heads {
            parts.push(bias(l)?);
        }
        if let (Some(a), Some(w_tau)) = (&self.a, &self.w_tau) {
            parts.push(a.clone());
            parts.push(w_tau.clone());
        }
        pack(&parts.iter().collect::<Vec<_>>())
    }
}

impl RecurrentCell for Cfc {
    fn input_size(&self) -> usize {
        self.inputs
    }
    fn hidden_size(&self) -> usize {
        self.units
    }
    fn step(&self, x: &Tensor, dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let mut z = Tensor::cat(&[x, &state.h], 1)?;
        for l in &self.backbone {
            z = self.activation.apply(&l.forward(&z)?)?;
        }
        let ff1 = self.ff1.forward(&z)?;
        // Δt as (B, 1), or the scalar 1.
        let ts = dt.map(|d| d.unsqueeze(1)).transpose()?;
        let h = match self.mode {
            CfcMode::Pure => {
                let (a, w_tau) = (self.a.as_ref().unwrap(), self.w_tau.as_ref().unwrap());
                let rate = ff1.abs()?.broadcast_add(&w_tau.abs()?)?;
                let rate = match &ts {
                    Some(t) => rate.broadcast_mul(t)?,
                    None => rate,
                };
                rate.neg()?
                    .exp()?
                    .mul(&ff1)?
                    .broadcast_mul(a)?
                    .neg()?
                    .broadcast_add(a)?
            }
            _ => {
                let ff2 = self.ff2.as_ref().unwrap().forward(&z)?.tanh()?;
                let ff1 = ff1.tanh()?;
                let ta = self.time_a.as_ref().unwrap().forward(&z)?;
                let tb = self.time_b.as_ref().unwrap().forward(&z)?;
                let ta = match &ts {
                    Some(t) => ta.broadcast_mul(t)?,
                    None => ta,
                };
                let gate = candle_nn::ops::sigmoid(&(ta + tb)?)?;
                if self.mode == CfcMode::NoGate {
                    (ff1 + (gate * ff2)?)?
                } else {
                    // ff1 (1 − gate) + gate ff2
                    ((&ff1 - (&ff1 * &gate)?)? + (gate * ff2)?)?
                }
            }
        };
        Ok(CellState { h, c: None })
    }

    fn forward_sequence(
        &self,
        x: &Tensor,
        dt: Option<&Tensor>,
        state: &CellState,
        route: Route,
    ) -> Result<Option<(Tensor, CellState)>> {
        let threads = match route {
            Route::CpuFused { threads } => threads,
            Route::CudaSteps | Route::Reference => return Ok(None),
        };
        let steps = x.dim(1)?;
        let kernel = CfcKernel {
            input: self.inputs,
            hidden: self.units,
            backbone_units: self.backbone_units,
            backbone_layers: self.backbone.len(),
            mode: self.mode,
            activation: self.activation,
            dt: dt
                .map(|d| d.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>())
                .transpose()?,
        };
        let (hs, _) = Fused::new(kernel, threads).apply(x, &self.packed_weights()?, &state.h)?;
        let h_n = hs.narrow(1, steps - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}
