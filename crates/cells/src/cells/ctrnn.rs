//! Continuous-time RNN (the LTC paper's CT-RNN baseline):
//! `dh/dt = −h/τ + tanh(x W_ihᵀ + h W_hhᵀ + b)`, τ = softplus(tau) > 0 per unit, the input held
//! constant over the step, solved over the step's elapsed time (default 1) by any [`Solver`]
//! with `ode_unfolds` steps. Names for layer k: `weight_ih_l{k}` (H, I), `weight_hh_l{k}` (H, H),
//! `bias_l{k}` (H), `tau_l{k}` (H, initialised so that τ = 1).
//!
//! With a fixed-step solver the CPU runs a layer as one fused op ([`CtRnnKernel`]); the
//! adaptive Dormand–Prince solver always runs this reference step.
use candle_core::{DType, Tensor};
use candle_nn::{Init, VarBuilder};

use super::torch_layer::{pack, torch_uniform};
use crate::cell::RecurrentCell;
use crate::config::CtOptions;
use crate::error::Result;
use crate::kernels::cpu::ctrnn::FixedStep;
use crate::kernels::cpu::{CtRnnKernel, Fused};
use crate::ode::{integrate, Solver};
use crate::ops::softplus;
use crate::route::Route;
use crate::state::CellState;

pub struct CtRnn {
    w_ih: Tensor,
    w_hh: Tensor,
    w_ih_t: Tensor,
    w_hh_t: Tensor,
    bias: Tensor,
    tau: Tensor,
    solver: Solver,
    unfolds: usize,
    inputs: usize,
    units: usize,
}

impl CtRnn {
    pub fn new(
        input_size: usize,
        units: usize,
        layer: usize,
        opts: &CtOptions,
        vb: VarBuilder,
    ) -> Result<Self> {
        let init = torch_uniform(units);
        let w_ih = vb.get_with_hints((units, input_size), &format!("weight_ih_l{layer}"), init)?;
        let w_hh = vb.get_with_hints((units, units), &format!("weight_hh_l{layer}"), init)?;
        let bias = vb.get_with_hints(units, &format!("bias_l{layer}"), init)?;
        // softplus(ln(e − 1)) = 1.
        let tau = vb.get_with_hints(
            units,
            &format!("tau_l{layer}"),
            Init::Const((std::f64::consts::E - 1.0).ln()),
        )?;
        Ok(Self {
            w_ih_t: w_ih.t()?,
            w_hh_t: w_hh.t()?,
            w_ih,
            w_hh,
            bias,
            tau,
            solver: Solver::new(opts.solver, opts.rtol, opts.atol, opts.max_steps)?,
            unfolds: opts.ode_unfolds,
            inputs: input_size,
            units,
        })
    }
}

/// Per-sample (B, 1) elapsed time, 1 when absent, and start time 0.
pub(crate) fn spans(dt: Option<&Tensor>, like: &Tensor) -> Result<(Tensor, Tensor)> {
    let b = like.dim(0)?;
    let span = match dt {
        Some(d) => d.reshape((b, 1))?,
        None => Tensor::ones((b, 1), like.dtype(), like.device())?,
    };
    Ok((span.zeros_like()?, span))
}

impl RecurrentCell for CtRnn {
    fn input_size(&self) -> usize {
        self.inputs
    }
    fn hidden_size(&self) -> usize {
        self.units
    }
    fn step(&self, x: &Tensor, dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let drive = x.matmul(&self.w_ih_t)?.broadcast_add(&self.bias)?;
        let inv_tau = softplus(&self.tau)?.recip()?;
        let f = |_: &Tensor, h: &Tensor| -> Result<Tensor> {
            let act = (&drive + h.matmul(&self.w_hh_t)?)?.tanh()?;
            Ok((act - h.broadcast_mul(&inv_tau)?)?)
        };
        let (t0, span) = spans(dt, &state.h)?;
        let h = integrate(&f, &state.h, &t0, &span, self.solver, self.unfolds)?;
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
        let Some(solver) = FixedStep::of(self.solver) else {
            return Ok(None);
        };
        let steps = x.dim(1)?;
        let kernel = CtRnnKernel {
            input: self.inputs,
            hidden: self.units,
            solver,
            unfolds: self.unfolds,
            dt: dt
                .map(|d| d.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>())
                .transpose()?,
        };
        // Effective weights: autograd carries κ's gradient on to tau.
        let inv_tau = softplus(&self.tau)?.recip()?;
        let w = pack(&[&self.w_ih, &self.w_hh, &self.bias, &inv_tau])?;
        let (hs, _) = Fused::new(kernel, threads).apply(x, &w, &state.h)?;
        let h_n = hs.narrow(1, steps - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}
