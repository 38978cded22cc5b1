//! Element-wise operations Candle lacks, with exact gradients.
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// softplus(x) = ln(1 + eˣ), as `torch.nn.functional.softplus` (x itself above 20); gradient σ(x).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() {
        x.apply_op1(Softplus)
    } else {
        // Same function composed from Candle ops for other devices.
        x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?
    }
}

/// LeCun's scaled tanh, 1.7159·tanh(0.666·x) (the CfC backbone's default activation).
pub fn lecun_tanh(x: &Tensor) -> Result<Tensor> {
    x.affine(0.666, 0.0)?.tanh()?.affine(1.7159, 0.0)
}

struct Softplus;

fn sp64(x: f64) -> f64 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}
fn sp32(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

impl CustomOp1 for Softplus {
    fn name(&self) -> &'static str {
        "softplus"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(candle_core::cpu_backend::unary_map(v, l, sp32)),
            CpuStorage::F64(v) => CpuStorage::F64(candle_core::cpu_backend::unary_map(v, l, sp64)),
            _ => candle_core::bail!("softplus: only f32 and f64 are supported, got another dtype"),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((grad * candle_nn::ops::sigmoid(&arg.detach())?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn softplus_values_and_gradient() {
        let x = Var::new(&[-30.0f64, -1.0, 0.0, 2.0, 25.0], &Device::Cpu).unwrap();
        let y = softplus(x.as_tensor()).unwrap();
        let v: Vec<f64> = y.to_vec1().unwrap();
        let want = [
            (-30f64).exp().ln_1p(),
            (-1f64).exp().ln_1p(),
            2f64.ln(),
            2f64.exp().ln_1p(),
            25.0,
        ];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{a} {b}");
        }
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f64> = g.get(x.as_tensor()).unwrap().to_vec1().unwrap();
        for (gi, xi) in g.iter().zip([-30.0f64, -1.0, 0.0, 2.0, 25.0]) {
            assert!((gi - 1.0 / (1.0 + (-xi).exp())).abs() < 1e-15);
        }
    }
}
