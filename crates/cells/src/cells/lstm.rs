//! Long short-term memory, `torch.nn.LSTM` semantics. Gate rows are stacked i, f, g, o:
//! `i = σ(·)`, `f = σ(·)`, `g = tanh(·)`, `o = σ(·)`, `c' = f⊙c + i⊙g`, `h' = o⊙tanh(c')`,
//! each pre-activation being `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh` for its block of rows.
use candle_core::Tensor;
use candle_nn::ops::sigmoid;
use candle_nn::VarBuilder;

use super::torch_layer::{pack, torch_layer_params};
use crate::cell::RecurrentCell;
use crate::error::{CellError, Result};
use crate::kernels::cpu::{Fused, LstmKernel};
use crate::kernels::cuda::sequence;
use crate::route::Route;
use crate::state::CellState;

/// One LSTM layer. Parameters for layer `k`: `weight_ih_l{k}` (4H, I), `weight_hh_l{k}` (4H, H),
/// `bias_ih_l{k}` (4H), `bias_hh_l{k}` (4H).
pub struct Lstm {
    w_ih: Tensor,
    w_hh: Tensor,
    w_ih_t: Tensor,
    w_hh_t: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    input_size: usize,
    hidden_size: usize,
}

impl Lstm {
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        layer: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let [w_ih, w_hh, b_ih, b_hh] = torch_layer_params(&vb, layer, 4, input_size, hidden_size)?;
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

impl Lstm {
    /// `[W_ih | W_hh | b_ih + b_hh]` for the fused layer.
    fn packed_weights(&self) -> Result<Tensor> {
        pack(&[&self.w_ih, &self.w_hh, &(&self.b_ih + &self.b_hh)?])
    }
}

impl Lstm {
    /// The sequence as the GPU runs it: the input projection of every step in one product, then
    /// one [`LstmSequence`](crate::kernels::cuda::LstmSequence) op for the whole time loop (per step one cuBLAS product and the
    /// cell's CUDA kernel on a GPU; the host build of the same kernel and a plain product on the
    /// CPU, where the tests check this path). Autograd sees a constant number of nodes per layer.
    pub fn device_sequence(&self, x: &Tensor, state: &CellState) -> Result<(Tensor, CellState)> {
        let c0 = state
            .c
            .as_ref()
            .ok_or_else(|| CellError::Input("LSTM state needs a cell state c".into()))?;
        let bias = (&self.b_ih + &self.b_hh)?;
        let xp = sequence::time_major_projection(x, &self.w_ih_t, &bias)?;
        let (ys, h, c) = sequence::lstm_sequence(&xp, &self.w_hh, &state.h, c0)?;
        Ok((ys, CellState { h, c: Some(c) }))
    }
}

impl RecurrentCell for Lstm {
    fn input_size(&self) -> usize {
        self.input_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    fn has_cell_state(&self) -> bool {
        true
    }
    fn step(&self, x: &Tensor, _dt: Option<&Tensor>, state: &CellState) -> Result<CellState> {
        let c = state
            .c
            .as_ref()
            .ok_or_else(|| CellError::Input("LSTM state needs a cell state c".into()))?;
        let gates = (x.matmul(&self.w_ih_t)?.broadcast_add(&self.b_ih)?
            + state.h.matmul(&self.w_hh_t)?.broadcast_add(&self.b_hh)?)?;
        let h = self.hidden_size;
        // One logistic pass over the contiguous block (Candle's element-wise kernels are much
        // slower on strided views); the g rows take tanh instead.
        let s = sigmoid(&gates)?;
        let i = s.narrow(1, 0, h)?;
        let f = s.narrow(1, h, h)?;
        let g = gates.narrow(1, 2 * h, h)?.tanh()?;
        let o = s.narrow(1, 3 * h, h)?;
        let c_new = ((f * c)? + (i * g)?)?;
        let h_new = (o * c_new.tanh()?)?;
        Ok(CellState {
            h: h_new,
            c: Some(c_new),
        })
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
        let c = state
            .c
            .as_ref()
            .ok_or_else(|| CellError::Input("LSTM state needs a cell state c".into()))?;
        let t = x.dim(1)?;
        let h = self.hidden_size;
        let s0 = Tensor::cat(&[&state.h, c], 1)?;
        let op = Fused::new(
            LstmKernel {
                input: x.dim(2)?,
                hidden: h,
            },
            threads,
        );
        let (hs, c_n) = op.apply(x, &self.packed_weights()?, &s0)?;
        let h_n = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(Some((
            hs,
            CellState {
                h: h_n,
                c: Some(c_n),
            },
        )))
    }
}
