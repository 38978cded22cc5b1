//! Elman simple recurrent network, `torch.nn.RNN` semantics:
//! `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)` with `act` tanh or the logistic function.
use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::cell::RecurrentCell;
use crate::config::Activation;
use crate::device_steps::SrnStep;
use crate::error::Result;
use crate::fused::{cpu_threads, Fused};
use crate::srn_fused::SrnKernel;
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

/// PyTorch's initialisation of every recurrent parameter: U(-1/√H, 1/√H).
pub(crate) fn torch_uniform(hidden: usize) -> candle_nn::Init {
    let b = 1.0 / (hidden as f64).sqrt();
    candle_nn::Init::Uniform { lo: -b, up: b }
}

/// Fetches the four PyTorch-named tensors of layer `layer` with `gates` rows per unit.
pub(crate) fn torch_layer_params(
    vb: &VarBuilder,
    layer: usize,
    gates: usize,
    input: usize,
    hidden: usize,
) -> Result<[Tensor; 4]> {
    let init = torch_uniform(hidden);
    let g = gates * hidden;
    Ok([
        vb.get_with_hints((g, input), &format!("weight_ih_l{layer}"), init)?,
        vb.get_with_hints((g, hidden), &format!("weight_hh_l{layer}"), init)?,
        vb.get_with_hints(g, &format!("bias_ih_l{layer}"), init)?,
        vb.get_with_hints(g, &format!("bias_hh_l{layer}"), init)?,
    ])
}

/// The input projection of every step in one product: `x` (B, T, I) → `x W_ihᵀ + bias`
/// (B, T, rows of W_ih), ready for a fused recurrence kernel.
/// Weight tensors flattened and concatenated in order: the packed weights of a fused layer.
pub(crate) fn pack(parts: &[&Tensor]) -> Result<Tensor> {
    let flat = parts
        .iter()
        .map(|t| t.flatten_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&flat, 0)?)
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
    /// per step one recurrent product and one [`SrnStep`] (CUDA kernel on a GPU, its host build
    /// here).
    pub fn device_sequence(&self, x: &Tensor, state: &CellState) -> Result<(Tensor, CellState)> {
        let (b, t, i) = x.dims3()?;
        let h = self.hidden_size;
        let bias = (&self.b_ih + &self.b_hh)?;
        let xp = x
            .reshape((b * t, i))?
            .matmul(&self.w_ih_t)?
            .broadcast_add(&bias)?
            .reshape((b, t, h))?;
        let op = SrnStep {
            logistic: self.activation == Activation::Sigmoid,
        };
        let mut hs = state.h.clone();
        let mut ys = Vec::with_capacity(t);
        for s in 0..t {
            let pre = (xp.narrow(1, s, 1)?.squeeze(1)? + hs.matmul(&self.w_hh_t)?)?;
            hs = pre.contiguous()?.apply_op1(op)?;
            ys.push(hs.clone());
        }
        Ok((Tensor::stack(&ys, 1)?, CellState { h: hs, c: None }))
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
    ) -> Result<Option<(Tensor, CellState)>> {
        if x.device().is_cuda() {
            return self.device_sequence(x, state).map(Some);
        }
        if !x.device().is_cpu() {
            return Ok(None);
        }
        let t = x.dim(1)?;
        let h = self.hidden_size;
        let kernel = SrnKernel {
            input: x.dim(2)?,
            hidden: h,
            logistic: self.activation == Activation::Sigmoid,
        };
        let w = pack(&[&self.w_ih, &self.w_hh, &(&self.b_ih + &self.b_hh)?])?;
        let (hs, _) = Fused::new(kernel, cpu_threads()).apply(x, &w, &state.h)?;
        let h_n = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok(Some((hs, CellState { h: h_n, c: None })))
    }
}
