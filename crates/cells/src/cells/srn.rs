//! Elman simple recurrent network, `torch.nn.RNN` semantics:
//! `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)` with `act` tanh or the logistic function.
use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::torch_layer::{pack, torch_layer_params};
use crate::cell::RecurrentCell;
use crate::config::Activation;
use crate::error::Result;
use crate::kernels::cpu::{Fused, SrnKernel};
use crate::kernels::cuda::sequence;
use crate::route::Route;
use crate::state::CellState;

/// One SRN layer. Parameters (PyTorch names, for layer `k`): `weight_ih_l{k}` (H, I),
/// `weight_hh_l{k}` (H, H), `bias_ih_l{k}` (H), `bias_hh_l{k}` (H).
pub struct Srn {
    w_ih: Tensor,
    w_ih_t: Tensor,
    w_hh: Tensor,
    w_hh_t: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    activation: Activation,
    input_size: usize,
    hidden_size: usize,
}

impl Srn {
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        layer: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        let [w_ih, w_hh, b_ih, b_hh] = torch_layer_params(&vb, layer, 1, input_size, hidden_size)?;
        Ok(Self {
            w_ih_t: w_ih.t()?,
            w_ih,
            w_hh_t: w_hh.t()?,
            w_hh,
            b_ih,
            b_hh,
            activation,
            input_size,
            hidden_size,
        })
    }
}

impl Srn {
    /// The sequence as the GPU runs it: the input projection of every step in one product, then
    /// one [`SrnSequence`](crate::kernels::cuda::SrnSequence) op for the whole time loop (per step one cuBLAS product and the
    /// activation kernel on a GPU; their host build here). Autograd sees a constant number of
    /// nodes per layer.
    pub fn device_sequence(&self, x: &Tensor, state: &CellState) -> Result<(Tensor, CellState)> {
        let bias = (&self.b_ih + &self.b_hh)?;
        let xp = sequence::time_major_projection(x, &self.w_ih_t, &bias)?;
        let logistic = self.activation == Activation::Sigmoid;
        let (ys, h) = sequence::srn_sequence(&xp, &self.w_hh, &state.h, logistic)?;
        Ok((ys, CellState { h, c: None }))
    }
}

impl RecurrentCell for Srn {
    fn input_size(&self) -> usize {
        self.input_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    fn step(&self, x: &Tensor, _dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let pre = (x.matmul(&self.w_ih_t)?.broadcast_add(&self.b_ih)?
            + state.h.matmul(&self.w_hh_t)?.broadcast_add(&self.b_hh)?)?;
        let h = match self.activation {
            Activation::Tanh => pre.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(&pre)?,
        };
        Ok(CellState { h, c: None })
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
        let kernel = SrnKernel {
            input: x.dim(2)?,
            hidden: h,
            logistic: self.activation == Activation::Sigmoid,
            leak: None,
        };
        let w = pack(&[&self.w_ih, &self.w_hh, &(&self.b_ih + &self.b_hh)?])?;
        let (hs, _) = Fused::new(kernel, threads).apply(x, &w, &state.h)?;
        let h_n = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}
