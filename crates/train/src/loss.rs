//! Losses for each task objective.
use candle_core::{DType, Tensor, D};
use remanence_tasks::task::class_readout;
use remanence_tasks::{Batch, Objective};

use crate::error::Result;

/// The loss of a batch given the model's read-out `y` (batch, time, outputs).
pub fn loss(objective: Objective, y: &Tensor, batch: &Batch) -> Result<Tensor> {
    match objective {
        Objective::MultiLabelPerStep => {
            masked_bce_with_logits(y, &batch.target, batch.mask.as_ref())
        }
        Objective::ClassLastStep | Objective::ClassMeanOverTime => {
            let logits = class_readout(y, &batch.lengths, objective)?;
            Ok(candle_nn::loss::cross_entropy(
                &logits,
                &batch.target.to_dtype(DType::U32)?,
            )?)
        }
        Objective::ClassPerStep => {
            let log_p = candle_nn::ops::log_softmax(y, D::Minus1)?;
            let target = batch.target.to_dtype(DType::U32)?.unsqueeze(D::Minus1)?;
            let nll = log_p
                .gather(&target, D::Minus1)?
                .squeeze(D::Minus1)?
                .neg()?;
            weighted_mean(&nll, batch.mask.as_ref())
        }
        Objective::RegressionPerStep => {
            let se = (y - &batch.target)?.sqr()?.sum(D::Minus1)?;
            weighted_mean(&se, batch.mask.as_ref())
        }
    }
}

/// Σ w·l / Σ w over (batch, time), or the plain mean without weights.
fn weighted_mean(per_step: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    Ok(match weights {
        Some(w) => (per_step * w)?.sum_all()?.broadcast_div(&w.sum_all()?)?,
        None => per_step.mean_all()?,
    })
}

/// Binary cross-entropy with logits, summed over outputs and averaged over the real steps:
/// `max(z,0) − y·z + log(1 + e^{−|z|})` (the stable form).
pub fn masked_bce_with_logits(z: &Tensor, y: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let per = ((z.relu()? - (y * z)?)? + z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    weighted_mean(&per.sum(D::Minus1)?, mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn batch(target: Tensor, mask: Option<Tensor>) -> Batch {
        Batch {
            x: Tensor::zeros((1, 1, 1), DType::F64, &Device::Cpu).unwrap(),
            target,
            mask,
            dt: None,
            indices: vec![],
            lengths: vec![],
        }
    }

    #[test]
    fn class_per_step_is_the_weighted_mean_of_the_step_nlls() {
        // Two sequences of two steps, three classes; weights as PyTorch's
        // cross_entropy(weight=w[class]) with mean reduction would apply them.
        let y = Tensor::new(
            &[
                [[1.0f64, 2.0, 0.5], [0.0, -1.0, 3.0]],
                [[2.0, 2.0, 2.0], [-2.0, 0.0, 1.0]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let target = Tensor::new(&[[1u32, 2], [0, 1]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1.0f64, 0.5], [2.0, 0.0]], &Device::Cpu).unwrap();
        let nll = |z: &[f64], k: usize| z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[k];
        let l = [
            nll(&[1.0, 2.0, 0.5], 1),
            nll(&[0.0, -1.0, 3.0], 2),
            nll(&[2.0, 2.0, 2.0], 0),
            nll(&[-2.0, 0.0, 1.0], 1),
        ];
        let got = loss(Objective::ClassPerStep, &y, &batch(target.clone(), None))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - l.iter().sum::<f64>() / 4.0).abs() < 1e-12);
        let got = loss(Objective::ClassPerStep, &y, &batch(target, Some(w)))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want = (l[0] + 0.5 * l[1] + 2.0 * l[2]) / 3.5;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn class_objectives_read_each_sequence_at_its_own_length() {
        // Sequence 0 has 1 real step of 3, sequence 1 all 3.
        let y = Tensor::new(
            &[
                [[1.0f64, 0.0], [9.0, -9.0], [9.0, -9.0]],
                [[0.0, 1.0], [0.0, 3.0], [2.0, 0.0]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mut b = batch(Tensor::new(&[0u32, 1], &Device::Cpu).unwrap(), None);
        b.lengths = vec![1, 3];
        let nll = |z: [f64; 2], k: usize| z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[k];
        let got = loss(Objective::ClassLastStep, &y, &b)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want = (nll([1.0, 0.0], 0) + nll([2.0, 0.0], 1)) / 2.0;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let got = loss(Objective::ClassMeanOverTime, &y, &b)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let want = (nll([1.0, 0.0], 0) + nll([2.0 / 3.0, 4.0 / 3.0], 1)) / 2.0;
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn regression_per_step_sums_outputs_and_averages_steps() {
        let y = Tensor::new(&[[[1.0f64, 2.0], [0.0, 0.0]]], &Device::Cpu).unwrap();
        let t = Tensor::new(&[[[0.0f64, 0.0], [1.0, 3.0]]], &Device::Cpu).unwrap();
        let got = loss(Objective::RegressionPerStep, &y, &batch(t.clone(), None))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - (5.0 + 10.0) / 2.0).abs() < 1e-12);
        let m = Tensor::new(&[[1.0f64, 0.0]], &Device::Cpu).unwrap();
        let got = loss(Objective::RegressionPerStep, &y, &batch(t, Some(m)))
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((got - 5.0).abs() < 1e-12);
    }

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
