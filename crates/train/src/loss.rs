//! Losses for each task objective.
use candle_core::{DType, Tensor, D};
use remanence_tasks::{Batch, Objective};

use crate::error::Result;

/// The loss of a batch given the model's read-out `y` (batch, time, outputs).
pub fn loss(objective: Objective, y: &Tensor, batch: &Batch) -> Result<Tensor> {
    match objective {
        Objective::MultiLabelPerStep => {
            masked_bce_with_logits(y, &batch.target, batch.mask.as_ref())
        }
        Objective::ClassLastStep => {
            let t = y.dim(1)?;
            let last = y.narrow(1, t - 1, 1)?.squeeze(1)?;
            Ok(candle_nn::loss::cross_entropy(
                &last,
                &batch.target.to_dtype(DType::U32)?,
            )?)
        }
    }
}

/// Binary cross-entropy with logits, summed over outputs and averaged over the real steps:
/// `max(z,0) − y·z + log(1 + e^{−|z|})` (the stable form).
pub fn masked_bce_with_logits(z: &Tensor, y: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let per = ((z.relu()? - (y * z)?)? + z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    let per_step = per.sum(D::Minus1)?; // (batch, time)
    Ok(match mask {
        Some(m) => {
            let total = (per_step * m)?.sum_all()?;
            let count = m.sum_all()?;
            total.broadcast_div(&count)?
        }
        None => per_step.mean_all()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bce_matches_the_formula_and_ignores_padding() {
        let z = Tensor::new(&[[[2.0f64, -1.0]], [[0.5, 30.0]]], &Device::Cpu).unwrap(); // (2,1,2)
        let y = Tensor::new(&[[[1.0f64, 0.0]], [[0.0, 1.0]]], &Device::Cpu).unwrap();
        let bce = |z: f64, y: f64| {
            -(y * (1.0 / (1.0 + (-z).exp())).ln()
                + (1.0 - y) * (1.0 - 1.0 / (1.0 + (-z).exp())).ln())
        };
        let want = ((bce(2.0, 1.0) + bce(-1.0, 0.0)) + (bce(0.5, 0.0) + bce(30.0, 1.0))) / 2.0;
        let got = masked_bce_with_logits(&z, &y, None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let m = Tensor::new(&[[1.0f64], [0.0]], &Device::Cpu).unwrap();
        let got = masked_bce_with_logits(&z, &y, Some(&m))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - (bce(2.0, 1.0) + bce(-1.0, 0.0))).abs() < 1e-12);
    }
}
