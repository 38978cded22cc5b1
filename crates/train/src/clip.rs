use candle_core::Tensor;

use crate::error::Result;

/// Global L2 norm of all gradients.
pub fn global_norm(grads: &[Option<Tensor>]) -> Result<f64> {
    let mut sq = 0.0f64;
    for g in grads.iter().flatten() {
        sq += g
            .sqr()?
            .sum_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_scalar::<f64>()?;
    }
    Ok(sq.sqrt())
}

/// Scales every gradient so the global norm is at most `max_norm` (as PyTorch's
/// `clip_grad_norm_`, with its 1e-6 guard). Returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for g in grads.iter_mut().flatten() {
            *g = g.affine(scale, 0.0)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn clips_to_max_norm_and_leaves_small_gradients() {
        let a = Tensor::new(&[3.0f64, 0.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[4.0f64], &Device::Cpu).unwrap();
        let mut g = vec![Some(a.clone()), None, Some(b.clone())];
        let n = clip_global_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-12);
        assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-6);
        let mut g = vec![Some(a), Some(b)];
        clip_global_norm(&mut g, 10.0).unwrap();
        assert!((global_norm(&g).unwrap() - 5.0).abs() < 1e-12);
    }
}
