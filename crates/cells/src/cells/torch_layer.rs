//! What the PyTorch-style layers (SRN, LSTM, GRU, and the CT-RNN and ODE-RNN built like them)
//! share: PyTorch's initialisation, the four parameters of a layer under PyTorch's names, and the
//! packed weights the fused kernels read.
use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::error::Result;

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

/// Weight tensors flattened and concatenated in order: the packed weights of a fused layer.
pub(crate) fn pack(parts: &[&Tensor]) -> Result<Tensor> {
    let flat = parts
        .iter()
        .map(|t| t.flatten_all())
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok(Tensor::cat(&flat, 0)?)
}
