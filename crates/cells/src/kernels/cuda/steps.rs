//! One time step's element-wise work as Candle ops. The CUDA route runs a whole-sequence op per
//! layer instead ([`super::sequence`]; the LTC's reuses [`LtcStep`]'s launches); these ops stay
//! for tests and benchmarks that compose a layer step by step (per step a recurrent product and
//! one step op: Candle's backward of that composition pads each step's slice of the projected
//! inputs to the whole sequence, O(T²)). Each op launches the CUDA kernels
//! of this folder (`cuda` feature); its backward pass is a second op that recomputes the step's
//! activations from its inputs (nothing is stored between the passes) and launches the backward
//! kernel.
//!
//! On the CPU the same ops run the host build of the kernels ([`super::host`]),
//! so the GPU path (composition, autograd, kernel formulas and indexing) is tested against the
//! reference here; only the launch calls differ on a GPU.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use num_traits::Zero;

use super::contiguous;
use super::host;
use super::DeviceFloat;
use crate::cells::ltc::PackedLayout;
use crate::kernels::slice;

type Res<T> = candle_core::Result<T>;

// ----------------------------------------------------------------------------------------------
// LSTM

/// `(gates (B, 4H), c_prev (B, H)) → (2, B, H)`: `[h; c]`.
#[derive(Debug, Clone, Copy)]
pub struct LstmStep;

/// `(gates, c_prev, grad (2, B, H)) → [dgates (B·4H) | dc_prev (B·H)]`.
#[derive(Debug, Clone, Copy)]
struct LstmStepGrad;

fn lstm_dims(l1: &Layout, l2: &Layout) -> Res<(usize, usize)> {
    let (b, g4) = l1.shape().dims2()?;
    let h = g4 / 4;
    if g4 % 4 != 0 || l2.shape().dims() != [b, h] {
        candle_core::bail!("lstm-step: gates {:?}, c_prev {:?}", l1.shape(), l2.shape());
    }
    contiguous("lstm-step", l1)?;
    contiguous("lstm-step", l2)?;
    Ok((b, h))
}

fn lstm_forward_host<T: DeviceFloat>(b: usize, h: usize, gates: &[T], c: &[T]) -> (Vec<T>, Vec<T>) {
    let n = b * h;
    let mut hc = vec![T::zero(); 2 * n];
    let mut saved = vec![T::zero(); 5 * n];
    let (hs, cs) = hc.split_at_mut(n);
    host::lstm_step_forward(b, h, gates, c, hs, cs, &mut saved);
    (hc, saved)
}

impl CustomOp2 for LstmStep {
    fn name(&self) -> &'static str {
        "lstm-step"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let (b, h) = lstm_dims(l1, l2)?;
        let out = per_float!(s1, "lstm-step", T => {
            lstm_forward_host::<T>(b, h, slice(s1, l1, "lstm-step")?, slice(s2, l2, "lstm-step")?).0
        });
        Ok((out, Shape::from((2, b, h))))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let (b, h) = lstm_dims(l1, l2)?;
        let out = gpu::lstm_forward(s1, l1, s2, l2, b, h)?;
        Ok((out, Shape::from((2, b, h))))
    }
    fn bwd(
        &self,
        gates: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>)> {
        let (b, g4) = gates.dims2()?;
        let h = g4 / 4;
        let flat = gates.contiguous()?.apply_op3_no_bwd(
            &c.contiguous()?,
            &grad.contiguous()?,
            &LstmStepGrad,
        )?;
        let dgates = flat.narrow(0, 0, b * g4)?.reshape((b, g4))?;
        let dc = flat.narrow(0, b * g4, b * h)?.reshape((b, h))?;
        Ok((Some(dgates), Some(dc)))
    }
}

impl CustomOp3 for LstmStepGrad {
    fn name(&self) -> &'static str {
        "lstm-step-grad"
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
        let (b, h) = lstm_dims(l1, l2)?;
        contiguous("lstm-step-grad", l3)?;
        let n = b * h;
        let name = "lstm-step-grad";
        let out = per_float!(s1, name, T => {
            let (gates, c, grad) = (slice::<T>(s1, l1, name)?, slice::<T>(s2, l2, name)?, slice::<T>(s3, l3, name)?);
            let (_, saved) = lstm_forward_host(b, h, gates, c);
            let mut out = vec![T::zero(); 5 * n];
            let (dgates, dc) = out.split_at_mut(4 * n);
            dc.copy_from_slice(&grad[n..2 * n]);
            host::lstm_step_backward(b, h, &saved, c, &grad[..n], dc, dgates);
            out
        });
        Ok((out, Shape::from(5 * n)))
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
        let (b, h) = lstm_dims(l1, l2)?;
        contiguous("lstm-step-grad", l3)?;
        let out = gpu::lstm_backward(s1, l1, s2, l2, s3, l3, b, h)?;
        Ok((out, Shape::from(5 * b * h)))
    }
}

// ----------------------------------------------------------------------------------------------
// GRU

/// `(xp (B, 3H) with b_ih, ghb (B, 3H) = h W_hhᵀ + b_hh, h_prev (B, H)) → h (B, H)`.
#[derive(Debug, Clone, Copy)]
pub struct GruStep;

/// `(xp, ghb, [h_prev; grad] (2B, H)) → [dxp (B·3H) | dghb (B·3H) | direct (B·H)]`.
#[derive(Debug, Clone, Copy)]
struct GruStepGrad;

fn gru_dims(l1: &Layout, l2: &Layout, l3: &Layout, rows3: usize) -> Res<(usize, usize)> {
    let (b, g3) = l1.shape().dims2()?;
    let h = g3 / 3;
    if g3 % 3 != 0 || l2.shape().dims() != [b, g3] || l3.shape().dims() != [rows3 * b, h] {
        candle_core::bail!(
            "gru-step: shapes {:?} {:?} {:?}",
            l1.shape(),
            l2.shape(),
            l3.shape()
        );
    }
    for l in [l1, l2, l3] {
        contiguous("gru-step", l)?;
    }
    Ok((b, h))
}

fn gru_forward_host<T: DeviceFloat>(
    b: usize,
    h: usize,
    xp: &[T],
    ghb: &[T],
    hp: &[T],
) -> (Vec<T>, Vec<T>) {
    let (mut hn, mut saved) = (vec![T::zero(); b * h], vec![T::zero(); 4 * b * h]);
    // The recurrent bias already sits in `ghb`.
    host::gru_step_forward(
        b,
        h,
        xp,
        ghb,
        &vec![T::zero(); 3 * h],
        hp,
        &mut hn,
        &mut saved,
    );
    (hn, saved)
}

impl CustomOp3 for GruStep {
    fn name(&self) -> &'static str {
        "gru-step"
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
        let (b, h) = gru_dims(l1, l2, l3, 1)?;
        let n = "gru-step";
        let out = per_float!(s1, n, T => {
            gru_forward_host::<T>(b, h, slice(s1, l1, n)?, slice(s2, l2, n)?, slice(s3, l3, n)?).0
        });
        Ok((out, Shape::from((b, h))))
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
        let (b, h) = gru_dims(l1, l2, l3, 1)?;
        Ok((
            gpu::gru_forward(s1, l1, s2, l2, s3, l3, b, h)?,
            Shape::from((b, h)),
        ))
    }
    fn bwd(
        &self,
        xp: &Tensor,
        ghb: &Tensor,
        hp: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, g3) = xp.dims2()?;
        let h = g3 / 3;
        let hg = Tensor::cat(&[hp, grad], 0)?;
        let flat = xp.contiguous()?.apply_op3_no_bwd(
            &ghb.contiguous()?,
            &hg.contiguous()?,
            &GruStepGrad,
        )?;
        let dxp = flat.narrow(0, 0, b * g3)?.reshape((b, g3))?;
        let dghb = flat.narrow(0, b * g3, b * g3)?.reshape((b, g3))?;
        let direct = flat.narrow(0, 2 * b * g3, b * h)?.reshape((b, h))?;
        Ok((Some(dxp), Some(dghb), Some(direct)))
    }
}

impl CustomOp3 for GruStepGrad {
    fn name(&self) -> &'static str {
        "gru-step-grad"
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
        let (b, h) = gru_dims(l1, l2, l3, 2)?;
        let n = b * h;
        let name = "gru-step-grad";
        let out = per_float!(s1, name, T => {
            let (xp, ghb, hg) = (slice::<T>(s1, l1, name)?, slice::<T>(s2, l2, name)?, slice::<T>(s3, l3, name)?);
            let (hp, grad) = hg.split_at(n);
            let (_, saved) = gru_forward_host(b, h, xp, ghb, hp);
            let mut out = vec![T::zero(); 7 * n];
            let (dxp, rest) = out.split_at_mut(3 * n);
            let (dgh, direct) = rest.split_at_mut(3 * n);
            host::gru_step_backward(b, h, &saved, hp, grad, dxp, dgh, direct);
            out
        });
        Ok((out, Shape::from(7 * n)))
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
        let (b, h) = gru_dims(l1, l2, l3, 2)?;
        Ok((
            gpu::gru_backward(s1, l1, s2, l2, s3, l3, b, h)?,
            Shape::from(7 * b * h),
        ))
    }
}

// ----------------------------------------------------------------------------------------------
// SRN

/// `pre (B, H) → h = f(pre)`, f = σ (logistic) or tanh.
#[derive(Debug, Clone, Copy)]
pub struct SrnStep {
    pub logistic: bool,
}

/// `(h, grad) → dpre`.
#[derive(Debug, Clone, Copy)]
struct SrnStepGrad {
    logistic: bool,
}

impl CustomOp1 for SrnStep {
    fn name(&self) -> &'static str {
        "srn-step"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Res<(CpuStorage, Shape)> {
        contiguous("srn-step", l)?;
        let out = per_float!(s, "srn-step", T => {
            let pre = slice::<T>(s, l, "srn-step")?;
            let mut h = vec![T::zero(); pre.len()];
            host::srn_step_forward(self.logistic, pre, &mut h);
            h
        });
        Ok((out, l.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        contiguous("srn-step", l)?;
        Ok((gpu::srn_forward(s, l, self.logistic)?, l.shape().clone()))
    }
    fn bwd(&self, _pre: &Tensor, res: &Tensor, grad: &Tensor) -> Res<Option<Tensor>> {
        let g = res.contiguous()?.apply_op2_no_bwd(
            &grad.contiguous()?,
            &SrnStepGrad {
                logistic: self.logistic,
            },
        )?;
        Ok(Some(g))
    }
}

impl CustomOp2 for SrnStepGrad {
    fn name(&self) -> &'static str {
        "srn-step-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        contiguous("srn-step-grad", l1)?;
        contiguous("srn-step-grad", l2)?;
        let out = per_float!(s1, "srn-step-grad", T => {
            let (h, g) = (slice::<T>(s1, l1, "srn-step-grad")?, slice::<T>(s2, l2, "srn-step-grad")?);
            let mut d = vec![T::zero(); h.len()];
            host::srn_step_backward(self.logistic, h, g, &mut d);
            d
        });
        Ok((out, l1.shape().clone()))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        contiguous("srn-step-grad", l1)?;
        contiguous("srn-step-grad", l2)?;
        Ok((
            gpu::srn_backward(s1, l1, s2, l2, self.logistic)?,
            l1.shape().clone(),
        ))
    }
}

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
