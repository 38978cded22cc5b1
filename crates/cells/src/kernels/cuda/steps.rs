//! One LTC time step as a Candle op: the sensory synapses and every ODE unfold, forward, and a
//! second op for its backward pass that recomputes the step's unfolds from its inputs (nothing is
//! stored between the passes). [`super::sequence::LtcSequence`] runs these launches step by step
//! inside one op per layer. On a GPU they launch the kernels of `ltc.cu` (`cuda` feature); on the
//! CPU the same sources' host build ([`super::host`]), so the indexing and formulas are tested
//! against the reference here.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::contiguous;
use super::host;
use super::DeviceFloat;
use crate::cells::ltc::PackedLayout;
use crate::kernels::slice;

type Res<T> = candle_core::Result<T>;

// ----------------------------------------------------------------------------------------------
// LTC

/// `(x_t (B, D) mapped, packed effective parameters, v (B, H)) → v' (B, H)`: the sensory synapses
/// and every ODE unfold of one step.
#[derive(Debug, Clone)]
pub struct LtcStep {
    pub layout: PackedLayout,
    pub unfolds: usize,
    pub epsilon: f64,
    /// Elapsed time of each sample at this step; `None`: 1.
    pub dt: Option<Vec<f64>>,
}

/// `(x_t, params, [v; grad] (2B, H)) → [dx (B·D) | dparams | dv (B·H)]`.
#[derive(Debug, Clone)]
struct LtcStepGrad(LtcStep);

impl LtcStep {
    fn dims(&self, l1: &Layout, l2: &Layout, l3: &Layout, rows3: usize) -> Res<usize> {
        let (b, d) = l1.shape().dims2()?;
        if d != self.layout.d
            || l2.shape().elem_count() != self.layout.len()
            || l3.shape().dims() != [rows3 * b, self.layout.h]
        {
            candle_core::bail!(
                "ltc-step: shapes {:?} {:?} {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        for l in [l1, l2, l3] {
            contiguous("ltc-step", l)?;
        }
        Ok(b)
    }

    fn dt<T: DeviceFloat>(&self) -> Option<Vec<T>> {
        self.dt.as_ref().map(|d| {
            d.iter()
                .map(|&v| <T as num_traits::NumCast>::from(v).expect("dt"))
                .collect()
        })
    }
}

impl CustomOp3 for LtcStep {
    fn name(&self) -> &'static str {
        "ltc-step"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let b = self.dims(l1, l2, l3, 1)?;
        let n = "ltc-step";
        let out = per_float!(s1, n, T => {
            let dt = self.dt::<T>();
            host::ltc_sequence_forward::<T>(
                self.layout,
                self.unfolds,
                <T as num_traits::NumCast>::from(self.epsilon).expect("epsilon"),
                slice(s1, l1, n)?,
                slice(s2, l2, n)?,
                slice(s3, l3, n)?,
                dt.as_deref(),
                b,
                1,
            )
            .1
        });
        Ok((out, Shape::from((b, self.layout.h))))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let b = self.dims(l1, l2, l3, 1)?;
        Ok((
            gpu::ltc_forward(self, s1, l1, s2, l2, s3, l3, b)?,
            Shape::from((b, self.layout.h)),
        ))
    }
    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, d) = x.dims2()?;
        let (h, np) = (self.layout.h, self.layout.len());
        let vg = Tensor::cat(&[v, grad], 0)?;
        let flat = x.contiguous()?.apply_op3_no_bwd(
            &p.contiguous()?,
            &vg.contiguous()?,
            &LtcStepGrad(self.clone()),
        )?;
        let dx = flat.narrow(0, 0, b * d)?.reshape((b, d))?;
        let dp = flat.narrow(0, b * d, np)?.reshape(p.shape())?;
        let dv = flat.narrow(0, b * d + np, b * h)?.reshape((b, h))?;
        Ok((Some(dx), Some(dp), Some(dv)))
    }
}

impl CustomOp3 for LtcStepGrad {
    fn name(&self) -> &'static str {
        "ltc-step-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let st = &self.0;
        let b = st.dims(l1, l2, l3, 2)?;
        let (h, np) = (st.layout.h, st.layout.len());
        let name = "ltc-step-grad";
        let out = per_float!(s1, name, T => {
            let (x, p, vg) = (slice::<T>(s1, l1, name)?, slice::<T>(s2, l2, name)?, slice::<T>(s3, l3, name)?);
            let (v, grad) = vg.split_at(b * h);
            let dt = st.dt::<T>();
            let eps = <T as num_traits::NumCast>::from(st.epsilon).expect("epsilon");
            let (saved, out) = host::ltc_sequence_forward(st.layout, st.unfolds, eps, x, p, v, dt.as_deref(), b, 1);
            let (dx, dp, dv) = host::ltc_sequence_backward(
                st.layout, st.unfolds, eps, x, p, dt.as_deref(), b, 1, &saved, &out, grad,
            );
            let mut all = dx;
            all.extend(dp);
            all.extend(dv);
            all
        });
        Ok((out, Shape::from(b * st.layout.d + np + b * h)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let st = &self.0;
        let b = st.dims(l1, l2, l3, 2)?;
        let len = b * st.layout.d + st.layout.len() + b * st.layout.h;
        Ok((
            gpu::ltc_backward(st, s1, l1, s2, l2, s3, l3, b)?,
            Shape::from(len),
        ))
    }
}

#[cfg(feature = "cuda")]
use super::launch as gpu;
