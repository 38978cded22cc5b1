//! Gated recurrent unit, `torch.nn.GRU` semantics. Gate rows are stacked r, z, n:
//! `r = σ(x_r + h_r)`, `z = σ(x_z + h_z)`, `n = tanh(x_n + r⊙h_n)`, `h' = (1−z)⊙n + z⊙h`,
//! where `x_* = x W_ihᵀ + b_ih` and `h_* = h W_hhᵀ + b_hh` (so `b_hn` stays inside `r⊙(·)`).
use candle_core::Tensor;
use candle_nn::ops::sigmoid;
use candle_nn::VarBuilder;

use super::torch_layer::{pack, torch_layer_params};
use crate::cell::RecurrentCell;
use crate::error::Result;
use crate::kernels::cpu::{Fused, GruKernel};
use crate::kernels::cuda::sequence;
use crate::route::Route;
use crate::state::CellState;

/// One GRU layer. Parameters for layer `k`: `weight_ih_l{k}` (3H, I), `weight_hh_l{k}` (3H, H),
/// `bias_ih_l{k}` (3H), `bias_hh_l{k}` (3H).
pub struct Gru {
    w_ih: Tensor,
    w_ih_t: Tensor,
    w_hh: Tensor,
    w_hh_t: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    input_size: usize,
    hidden_size: usize,
}

impl Gru {
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        layer: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let [w_ih, w_hh, b_ih, b_hh] = torch_layer_params(&vb, layer, 3, input_size, hidden_size)?;
        Ok(Self {
            w_ih_t: w_ih.t()?,
            w_ih,
            w_hh_t: w_hh.t()?,
            w_hh,
            b_ih,
            b_hh,
            input_size,
            hidden_size,
        })
    }
}

impl Gru {
    /// The sequence as the GPU runs it: `x W_ihᵀ + b_ih` of every step in one product, then one
    /// [`GruSequence`](crate::kernels::cuda::GruSequence) op for the whole time loop (per step `h W_hhᵀ` by cuBLAS and the cell's
    /// CUDA kernel, which adds `b_hh`, on a GPU; their host build here). Autograd sees a constant
    /// number of nodes per layer.
    pub fn device_sequence(&self, x: &Tensor, state: &CellState) -> Result<(Tensor, CellState)> {
        let xp = sequence::time_major_projection(x, &self.w_ih_t, &self.b_ih)?;
        let (ys, h) = sequence::gru_sequence(&xp, &self.w_hh, &self.b_hh, &state.h)?;
        Ok((ys, CellState { h, c: None }))
    }
}

impl RecurrentCell for Gru {
    fn input_size(&self) -> usize {
        self.input_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    fn step(&self, x: &Tensor, _dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let h = self.hidden_size;
        let gx = x.matmul(&self.w_ih_t)?.broadcast_add(&self.b_ih)?;
        let gh = state.h.matmul(&self.w_hh_t)?.broadcast_add(&self.b_hh)?;
        let r = sigmoid(&(gx.narrow(1, 0, h)? + gh.narrow(1, 0, h)?)?)?;
        let z = sigmoid(&(gx.narrow(1, h, h)? + gh.narrow(1, h, h)?)?)?;
        let n = (gx.narrow(1, 2 * h, h)? + (r * gh.narrow(1, 2 * h, h)?)?)?.tanh()?;
        // (1 - z) n + z h = n + z (h - n)
        let h_new = (&n + (z * (&state.h - &n)?)?)?;
        Ok(CellState { h: h_new, c: None })
    }

    fn forward_sequence(
        &self,
        x: &Tensor,
        _dt: Option<&Tensor>,
        state: &CellState,
        route: Route,
    ) -> Result<Option<(Tensor, CellState)>> {
        let threads = match route {
            Route::CpuFused { threads } => threads,
            Route::CudaSteps => return self.device_sequence(x, state).map(Some),
            Route::Reference => return Ok(None),
        };
        let t = x.dim(1)?;
        let h = self.hidden_size;
        let kernel = GruKernel {
            input: x.dim(2)?,
            hidden: h,
        };
        let w = pack(&[&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh])?;
        let (hs, _) = Fused::new(kernel, threads).apply(x, &w, &state.h)?;
        let h_n = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}
