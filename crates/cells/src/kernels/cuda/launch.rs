//! The CUDA launches of the LTC step op and of the whole-sequence ops: the PTX of this folder
//! (compiled by `build.rs`) loaded through Candle's CUDA device and launched on its stream with
//! the same arguments the host build receives in `super::host`; the sequence ops' products go
//! to cuBLAS (Candle's handle, on the same stream) with the [`GemmPlan`]s the host build runs.
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::{
    sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig,
};
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, CudaViewMut, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};

use super::sequence::{GemmPlan, LtcSequence};
use super::steps::LtcStep;
use super::{grid, ptx, DeviceFloat, BLOCK};

/// Floats with both a CUDA storage and kernels, and their cuBLAS GEMM.
trait GpuFloat: DeviceFloat + CudaDType + DeviceRepr + ValidAsZeroBits {
    /// `cublas{S,D}gemm` with `cfg`.
    ///
    /// # Safety
    /// The operands must hold what `cfg` reads and writes (checked by [`gemm`]).
    unsafe fn blas_gemm(
        blas: &CudaBlas,
        cfg: GemmConfig<Self>,
        a: &CudaView<'_, Self>,
        b: &CudaView<'_, Self>,
        c: &mut CudaViewMut<'_, Self>,
    ) -> Result<()>;
}
impl GpuFloat for f32 {
    unsafe fn blas_gemm(
        blas: &CudaBlas,
        cfg: GemmConfig<f32>,
        a: &CudaView<'_, f32>,
        b: &CudaView<'_, f32>,
        c: &mut CudaViewMut<'_, f32>,
    ) -> Result<()> {
        Gemm::<f32>::gemm(blas, cfg, a, b, c).w()
    }
}
impl GpuFloat for f64 {
    unsafe fn blas_gemm(
        blas: &CudaBlas,
        cfg: GemmConfig<f64>,
        a: &CudaView<'_, f64>,
        b: &CudaView<'_, f64>,
        c: &mut CudaViewMut<'_, f64>,
    ) -> Result<()> {
        Gemm::<f64>::gemm(blas, cfg, a, b, c).w()
    }
}

/// Runs `plan` through cuBLAS: A = `a`, B = `b`, C = `c`, exactly the operands the host build
/// gives [`GemmPlan::host`] (column-major; see [`GemmPlan`] for the row-major reading).
fn gemm<T: GpuFloat>(
    blas: &CudaBlas,
    plan: GemmPlan,
    a: &CudaView<'_, T>,
    b: &CudaView<'_, T>,
    c: &mut CudaViewMut<'_, T>,
) -> Result<()> {
    plan.check(a.len(), b.len(), c.len());
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    let cfg = GemmConfig {
        transa: op(plan.trans_a),
        transb: op(plan.trans_b),
        m: int(plan.m),
        n: int(plan.n),
        k: int(plan.k),
        alpha: T::one(),
        lda: int(plan.lda),
        ldb: int(plan.ldb),
        beta: if plan.accumulate { T::one() } else { T::zero() },
        ldc: int(plan.ldc),
    };
    // SAFETY: `check` verified cuBLAS's dimension rules and that every operand holds what the
    // plan reads or writes.
    unsafe { T::blas_gemm(blas, cfg, a, b, c) }
}

fn config(threads: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid(threads).max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn view<'a, T: GpuFloat>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("step kernel: non-contiguous input".into()))?;
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

/// Loads `{name}_{f32|f64}` from the module of `ptx` and launches it over `threads` threads with
/// the given arguments.
macro_rules! launch {
    ($dev:expr, $module:expr, $ptx:expr, $name:expr, $t:ty, $threads:expr, [$($arg:expr),* $(,)?]) => {{
        let threads: usize = $threads;
        if threads > 0 {
            let name = format!("{}_{}", $name, <$t as DeviceFloat>::SUFFIX);
            let func = $dev.get_or_load_custom_func(&name, $module, $ptx)?;
            let mut b = func.builder();
            $( b.arg($arg); )*
            // SAFETY: the arguments match the kernel's parameters (the same list the host build
            // is tested with) and every buffer holds what the kernel touches.
            unsafe { b.launch(config(threads)) }.w()?;
        }
    }};
}

fn int(v: usize) -> i32 {
    i32::try_from(v).expect("size fits the kernels' int")
}

/// Runs `$body` with `$t` bound to the storage's float type and wraps the resulting slice.
macro_rules! per_float {
    ($s:expr, $t:ident => $body:expr) => {{
        let dev = $s.device().clone();
        match $s.dtype() {
            DType::F32 => {
                type $t = f32;
                let out: CudaSlice<f32> = $body;
                CudaStorage::wrap_cuda_slice(out, dev)
            }
            DType::F64 => {
                type $t = f64;
                let out: CudaSlice<f64> = $body;
                CudaStorage::wrap_cuda_slice(out, dev)
            }
            dt => candle_core::bail!("step kernels: unsupported dtype {dt:?}"),
        }
    }};
}

/// The eleven parts of the packed LTC parameters (or of their gradients) as offsets.
fn ltc_offsets(st: &LtcStep) -> [std::ops::Range<usize>; 11] {
    let (hh, dh, h) = (
        st.layout.h * st.layout.h,
        st.layout.d * st.layout.h,
        st.layout.h,
    );
    let sizes = [hh, hh, hh, hh, dh, dh, dh, dh, h, h, h];
    let mut start = 0;
    sizes.map(|s| {
        let r = start..start + s;
        start += s;
        r
    })
}

/// The per-sample `L / Δt` of this step on the device.
fn ltc_scale<T: GpuFloat>(dev: &CudaDevice, st: &LtcStep, b: usize) -> Result<CudaSlice<T>> {
    let l = st.unfolds as f64;
    let host: Vec<T> = (0..b)
        .map(|i| {
            <T as num_traits::NumCast>::from(l / st.dt.as_ref().map(|d| d[i]).unwrap_or(1.0))
                .expect("scale")
        })
        .collect();
    let mut s = unsafe { dev.alloc::<T>(b)? };
    dev.memcpy_htod(&host, &mut s)?;
    Ok(s)
}

/// Sensory drive and every unfold of one step; returns the state before each unfold and after
/// the last, (L + 1)·B·H values.
#[allow(clippy::too_many_arguments)]
fn ltc_states<T: GpuFloat>(
    dev: &CudaDevice,
    st: &LtcStep,
    x: &CudaView<'_, T>,
    p: &CudaView<'_, T>,
    v0: &CudaView<'_, T>,
    scale: &CudaSlice<T>,
    ns: &CudaSlice<T>,
    ds: &CudaSlice<T>,
    b: usize,
) -> Result<CudaSlice<T>> {
    let (h, d, l) = (st.layout.h, st.layout.d, st.unfolds);
    let bh = b * h;
    let o = ltc_offsets(st);
    let part = |k: usize| p.slice(o[k].clone());
    let (sigma, mu, w, erev) = (part(0), part(1), part(2), part(3));
    let (ssig, smu, sw, serev) = (part(4), part(5), part(6), part(7));
    let (cm, gleak, vleak) = (part(8), part(9), part(10));
    let (bi, di, hi) = (int(b), int(d), int(h));
    let eps = <T as num_traits::NumCast>::from(st.epsilon).expect("epsilon");
    launch!(
        dev,
        "remanence_ltc",
        ptx::LTC,
        "ltc_sensory",
        T,
        bh,
        [&bi, &di, &hi, x, &ssig, &smu, &sw, &serev, ns, ds]
    );
    let mut states = unsafe { dev.alloc::<T>((l + 1) * bh)? };
    {
        let mut first = states.slice_mut(0..bh);
        dev.memcpy_dtod(v0, &mut first)?;
    }
    for u in 0..l {
        let (v, vn) = (
            states.slice(u * bh..(u + 1) * bh),
            states.slice((u + 1) * bh..(u + 2) * bh),
        );
        launch!(
            dev,
            "remanence_ltc",
            ptx::LTC,
            "ltc_unfold",
            T,
            bh,
            [&bi, &hi, &eps, &v, &sigma, &mu, &w, &erev, &cm, &gleak, &vleak, ns, ds, scale, &vn]
        );
    }
    Ok(states)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ltc_forward(
    st: &LtcStep,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    b: usize,
) -> Result<CudaStorage> {
    let bh = b * st.layout.h;
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (x, p, v) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let scale = ltc_scale::<T>(dev, st, b)?;
        let (ns, ds) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
        let states = ltc_states(dev, st, &x, &p, &v, &scale, &ns, &ds, b)?;
        let mut out = unsafe { dev.alloc::<T>(bh)? };
        dev.memcpy_dtod(&states.slice(st.unfolds * bh..(st.unfolds + 1) * bh), &mut out)?;
        out
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn ltc_backward(
    st: &LtcStep,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    b: usize,
) -> Result<CudaStorage> {
    let (h, d) = (st.layout.h, st.layout.d);
    let (bh, np) = (b * h, st.layout.len());
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (x, p, vg) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let (v0, grad) = (vg.slice(0..bh), vg.slice(bh..2 * bh));
        // [dx | dparams | dv]; the parameter kernels add into zeros.
        let mut out = dev.alloc_zeros::<T>(b * d + np + bh)?;
        let mut g = dev.alloc_zeros::<T>(bh)?;
        dev.memcpy_dtod(&grad, &mut g)?;
        let g = ltc_step_backward(dev, st, &x, &p, &v0, g, &out.slice(b * d..b * d + np), &out.slice(0..b * d), b)?;
        dev.memcpy_dtod(&g, &mut out.slice_mut(b * d + np..b * d + np + bh))?;
        out
    }))
}

/// The backward pass of one LTC step (`x` (B, D), state before it `v0` (B, H)) from `g`, the
/// gradient of the state after it: adds the gradients of the packed parameters into `dp` (the
/// parameter kernels add), writes the gradient of `x` into `dx` and returns the gradient of `v0`.
#[allow(clippy::too_many_arguments)]
fn ltc_step_backward<T: GpuFloat>(
    dev: &CudaDevice,
    st: &LtcStep,
    x: &CudaView<'_, T>,
    p: &CudaView<'_, T>,
    v0: &CudaView<'_, T>,
    mut g: CudaSlice<T>,
    dp_all: &CudaView<'_, T>,
    dx: &CudaView<'_, T>,
    b: usize,
) -> Result<CudaSlice<T>> {
    let (h, d, l) = (st.layout.h, st.layout.d, st.unfolds);
    let bh = b * h;
    let scale = ltc_scale::<T>(dev, st, b)?;
    let (ns, ds) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
    let states = ltc_states(dev, st, x, p, v0, &scale, &ns, &ds, b)?;
    let o = ltc_offsets(st);
    let part = |k: usize| p.slice(o[k].clone());
    let (sigma, mu, w, erev) = (part(0), part(1), part(2), part(3));
    let (ssig, smu, sw, serev) = (part(4), part(5), part(6), part(7));
    let (cm, gleak, vleak) = (part(8), part(9), part(10));
    let dp = |k: usize| dp_all.slice(o[k].clone());
    let (dsig, dmu, dw, de) = (dp(0), dp(1), dp(2), dp(3));
    let (dssig, dsmu, dsw, dserev) = (dp(4), dp(5), dp(6), dp(7));
    let (dcm, dgl, dvl) = (dp(8), dp(9), dp(10));
    let (dns, dds) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
    let (dnum, dden) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
    let (bi, di, hi) = (int(b), int(d), int(h));
    let eps = <T as num_traits::NumCast>::from(st.epsilon).expect("epsilon");
    let m = ("remanence_ltc", ptx::LTC);
    // The gradient of the state after unfold u + 1, then of the state before it.
    for u in (0..l).rev() {
        let (v, vn) = (
            states.slice(u * bh..(u + 1) * bh),
            states.slice((u + 1) * bh..(u + 2) * bh),
        );
        let g_prev = dev.alloc_zeros::<T>(bh)?;
        launch!(
            dev,
            m.0,
            m.1,
            "ltc_unfold_backward_neurons",
            T,
            bh,
            [
                &bi, &hi, &eps, &v, &vn, &g, &sigma, &mu, &w, &cm, &gleak, &ds, &scale, &dnum,
                &dden, &dns, &dds
            ]
        );
        launch!(
            dev,
            m.0,
            m.1,
            "ltc_unfold_backward_inputs",
            T,
            bh,
            [&bi, &hi, &v, &sigma, &mu, &w, &erev, &cm, &scale, &dnum, &dden, &g_prev]
        );
        launch!(
            dev,
            m.0,
            m.1,
            "ltc_unfold_backward_synapses",
            T,
            h * h,
            [&bi, &hi, &v, &sigma, &mu, &w, &erev, &dnum, &dden, &dsig, &dmu, &dw, &de]
        );
        launch!(
            dev,
            m.0,
            m.1,
            "ltc_unfold_backward_leak",
            T,
            h,
            [&bi, &hi, &v, &gleak, &vleak, &scale, &dnum, &dden, &dcm, &dgl, &dvl]
        );
        g = g_prev;
    }
    launch!(
        dev,
        m.0,
        m.1,
        "ltc_sensory_backward_synapses",
        T,
        d * h,
        [&bi, &di, &hi, x, &ssig, &smu, &sw, &serev, &dns, &dds, &dssig, &dsmu, &dsw, &dserev]
    );
    launch!(
        dev,
        m.0,
        m.1,
        "ltc_sensory_backward_inputs",
        T,
        b * d,
        [&bi, &di, &hi, x, &ssig, &smu, &sw, &serev, &dns, &dds, dx]
    );
    Ok(g)
}

/// [`super::sequence::LtcSequence`] forward: per step the kernels of one step op, from the
/// previous step's state in the output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ltc_sequence_forward(
    op: &LtcSequence,
    (t, b): (usize, usize),
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let (h, d, l) = (op.layout.h, op.layout.d, op.unfolds);
    let (bh, bd) = (b * h, b * d);
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (x, p, v0) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        // SAFETY: every step's state is written before the next step reads it.
        let mut out = unsafe { dev.alloc::<T>(t * bh)? };
        let (ns, ds) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
        for s in 0..t {
            let st = op.step(s, b, t);
            let scale = ltc_scale::<T>(dev, &st, b)?;
            let xs = x.slice(s * bd..(s + 1) * bd);
            let states = {
                let vp = if s == 0 { v0.slice(0..bh) } else { out.slice((s - 1) * bh..s * bh) };
                ltc_states(dev, &st, &xs, &p, &vp, &scale, &ns, &ds, b)?
            };
            dev.memcpy_dtod(&states.slice(l * bh..(l + 1) * bh), &mut out.slice_mut(s * bh..(s + 1) * bh))?;
        }
        out
    }))
}

/// [`super::sequence::LtcSequence`] backward: the steps in reverse, each recomputing its
/// unfolds from the state before it (`z` = [v0; v_1..v_T; grad]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn ltc_sequence_backward(
    op: &LtcSequence,
    (t, b): (usize, usize),
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let (h, d) = (op.layout.h, op.layout.d);
    let (bh, bd, np) = (b * h, b * d, op.layout.len());
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (x, p, z) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        // [dx (T, B, D) | dparams | dv0]; the parameter kernels add into zeros.
        let mut out = dev.alloc_zeros::<T>(t * bd + np + bh)?;
        // The gradient of the state after step s: its output's plus what step s + 1 sent back.
        let mut g = dev.alloc_zeros::<T>(bh)?;
        let nl = bh as i64;
        for s in (0..t).rev() {
            let gs = z.slice((t + 1 + s) * bh..(t + 2 + s) * bh);
            launch!(dev, "remanence_gru", ptx::GRU, "gru_accumulate", T, bh, [&nl, &gs, &g]);
            let st = op.step(s, b, t);
            // Row s of z: the state before step s (v0 for the first).
            let vp = z.slice(s * bh..(s + 1) * bh);
            let xs = x.slice(s * bd..(s + 1) * bd);
            g = ltc_step_backward(dev, &st, &xs, &p, &vp, g, &out.slice(t * bd..t * bd + np), &out.slice(s * bd..(s + 1) * bd), b)?;
        }
        dev.memcpy_dtod(&g, &mut out.slice_mut(t * bd + np..t * bd + np + bh))?;
        out
    }))
}

// ----------------------------------------------------------------------------------------------
// Whole-sequence ops (`super::sequence`): the time loop of a layer with one cuBLAS product and
// one element-wise launch per step; each function mirrors its host build in `sequence.rs`
// line by line (same plans, same operands, same offsets).

type Dims = (usize, usize, usize);

#[allow(clippy::too_many_arguments)]
pub(crate) fn srn_sequence_forward(
    logistic: bool,
    (t, b, h): Dims,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let bh = b * h;
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let blas = dev.cublas_handle();
        let (xp, w, h0) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        // SAFETY: every value is written (copy, kernel) before it is read.
        let mut pre = unsafe { dev.alloc::<T>(t * bh)? };
        dev.memcpy_dtod(&xp, &mut pre)?;
        let out = unsafe { dev.alloc::<T>(t * bh)? };
        let plan = GemmPlan::x_yt(b, h, h, true);
        let (nl, lg) = (bh as i64, logistic as i32);
        for s in 0..t {
            let hp = if s == 0 { h0.slice(0..bh) } else { out.slice((s - 1) * bh..s * bh) };
            gemm(&blas, plan, &w, &hp, &mut pre.slice_mut(s * bh..(s + 1) * bh))?;
            let (p, hn) = (pre.slice(s * bh..(s + 1) * bh), out.slice(s * bh..(s + 1) * bh));
            launch!(dev, "remanence_srn", ptx::SRN, "srn_step_forward", T, bh, [&nl, &lg, &p, &hn]);
        }
        out
    }))
}

pub(crate) fn srn_sequence_backward(
    logistic: bool,
    (t, b, h): Dims,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> Result<CudaStorage> {
    let bh = b * h;
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let blas = dev.cublas_handle();
        let (w, z) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?);
        let hprev = z.slice(0..t * bh);
        let hs = z.slice(bh..(t + 1) * bh);
        // SAFETY: written (copy, kernels, products with β = 0) before being read.
        let mut g = unsafe { dev.alloc::<T>(t * bh)? };
        dev.memcpy_dtod(&z.slice((t + 1) * bh..(2 * t + 1) * bh), &mut g)?;
        let mut out = unsafe { dev.alloc::<T>(t * bh + h * h + bh)? };
        {
            let (dpre, mut rest) = out.split_at_mut(t * bh);
            let (mut dw, mut dh0) = rest.split_at_mut(h * h);
            let (nl, lg) = (bh as i64, logistic as i32);
            for s in (0..t).rev() {
                let r = s * bh..(s + 1) * bh;
                {
                    let (hv, gv, dv) = (hs.slice(r.clone()), g.slice(r.clone()), dpre.slice(r.clone()));
                    launch!(dev, "remanence_srn", ptx::SRN, "srn_step_backward", T, bh, [&nl, &lg, &hv, &gv, &dv]);
                }
                let dv = dpre.slice(r);
                if s > 0 {
                    gemm(&blas, GemmPlan::x_y(b, h, h, true), &w, &dv, &mut g.slice_mut((s - 1) * bh..s * bh))?;
                } else {
                    gemm(&blas, GemmPlan::x_y(b, h, h, false), &w, &dv, &mut dh0.slice_mut(0..bh))?;
                }
            }
            gemm(&blas, GemmPlan::xt_y(h, t * b, h, false), &hprev, &dpre.slice(0..t * bh), &mut dw.slice_mut(0..h * h))?;
        }
        out
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_sequence_forward(
    (t, b, h): Dims,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let (bh, g4) = (b * h, 4 * b * h);
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let blas = dev.cublas_handle();
        let (xp, w, s0) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let (h0, c0) = (s0.slice(0..bh), s0.slice(bh..2 * bh));
        // SAFETY: written (copy, kernels) before being read.
        let mut gates = unsafe { dev.alloc::<T>(t * g4)? };
        dev.memcpy_dtod(&xp, &mut gates)?;
        let mut out = unsafe { dev.alloc::<T>((t + 1) * bh)? };
        // The cell states alternate between two halves (the kernel's c_prev and c are
        // restrict pointers, so they must differ).
        let cbuf = unsafe { dev.alloc::<T>(2 * bh)? };
        let saved = unsafe { dev.alloc::<T>(5 * bh)? };
        let plan = GemmPlan::x_yt(b, h, 4 * h, true);
        let (bi, hi) = (int(b), int(h));
        let half = |k: usize| (k % 2) * bh..(k % 2 + 1) * bh;
        for s in 0..t {
            let hp = if s == 0 { h0.slice(0..bh) } else { out.slice((s - 1) * bh..s * bh) };
            gemm(&blas, plan, &w, &hp, &mut gates.slice_mut(s * g4..(s + 1) * g4))?;
            let gs = gates.slice(s * g4..(s + 1) * g4);
            let cp = if s == 0 { c0.slice(0..bh) } else { cbuf.slice(half(s - 1)) };
            let cn = cbuf.slice(half(s));
            let hn = out.slice(s * bh..(s + 1) * bh);
            launch!(dev, "remanence_lstm", ptx::LSTM, "lstm_step_forward", T, bh, [&bi, &hi, &gs, &cp, &hn, &cn, &saved]);
        }
        dev.memcpy_dtod(&cbuf.slice(half(t - 1)), &mut out.slice_mut(t * bh..(t + 1) * bh))?;
        out
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_sequence_backward(
    (t, b, h): Dims,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let (bh, g4, s5) = (b * h, 4 * b * h, 5 * b * h);
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let blas = dev.cublas_handle();
        let (xp, w, z) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let hprev = z.slice(0..t * bh);
        let (bi, hi) = (int(b), int(h));
        // SAFETY: every buffer below is written (copies, kernels, products with β = 0) before
        // it is read.
        // The activations of every step: one product for the pre-activations, then the cell
        // states' recurrence, element-wise.
        let mut gates = unsafe { dev.alloc::<T>(t * g4)? };
        dev.memcpy_dtod(&xp, &mut gates)?;
        gemm(&blas, GemmPlan::x_yt(t * b, h, 4 * h, true), &w, &hprev, &mut gates.slice_mut(0..t * g4))?;
        let mut cs = unsafe { dev.alloc::<T>((t + 1) * bh)? };
        dev.memcpy_dtod(&z.slice((t + 2) * bh..(t + 3) * bh), &mut cs.slice_mut(0..bh))?;
        let saved = unsafe { dev.alloc::<T>(t * s5)? };
        let h_scratch = unsafe { dev.alloc::<T>(bh)? };
        for s in 0..t {
            let gs = gates.slice(s * g4..(s + 1) * g4);
            let (cp, cn) = (cs.slice(s * bh..(s + 1) * bh), cs.slice((s + 1) * bh..(s + 2) * bh));
            let sv = saved.slice(s * s5..(s + 1) * s5);
            launch!(dev, "remanence_lstm", ptx::LSTM, "lstm_step_forward", T, bh, [&bi, &hi, &gs, &cp, &h_scratch, &cn, &sv]);
        }
        let mut g = unsafe { dev.alloc::<T>(t * bh)? };
        dev.memcpy_dtod(&z.slice((t + 3) * bh..(2 * t + 3) * bh), &mut g)?;
        let mut dc = unsafe { dev.alloc::<T>(bh)? };
        dev.memcpy_dtod(&z.slice((2 * t + 3) * bh..(2 * t + 4) * bh), &mut dc)?;
        let mut out = unsafe { dev.alloc::<T>(t * g4 + 4 * h * h + 2 * bh)? };
        {
            let (dxp, mut rest) = out.split_at_mut(t * g4);
            let (mut dw, mut ds0) = rest.split_at_mut(4 * h * h);
            for s in (0..t).rev() {
                {
                    let sv = saved.slice(s * s5..(s + 1) * s5);
                    let cp = cs.slice(s * bh..(s + 1) * bh);
                    let dh = g.slice(s * bh..(s + 1) * bh);
                    let dg = dxp.slice(s * g4..(s + 1) * g4);
                    launch!(dev, "remanence_lstm", ptx::LSTM, "lstm_step_backward", T, bh, [&bi, &hi, &sv, &cp, &dh, &dc, &dg]);
                }
                let dg = dxp.slice(s * g4..(s + 1) * g4);
                if s > 0 {
                    gemm(&blas, GemmPlan::x_y(b, 4 * h, h, true), &w, &dg, &mut g.slice_mut((s - 1) * bh..s * bh))?;
                } else {
                    gemm(&blas, GemmPlan::x_y(b, 4 * h, h, false), &w, &dg, &mut ds0.slice_mut(0..bh))?;
                }
            }
            gemm(&blas, GemmPlan::xt_y(4 * h, t * b, h, false), &hprev, &dxp.slice(0..t * g4), &mut dw.slice_mut(0..4 * h * h))?;
            dev.memcpy_dtod(&dc, &mut ds0.slice_mut(bh..2 * bh))?;
        }
        out
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gru_sequence_forward(
    (t, b, h): Dims,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let (bh, g3) = (b * h, 3 * b * h);
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let blas = dev.cublas_handle();
        let (xp, wb, h0) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let (w, b_hh) = (wb.slice(0..3 * h * h), wb.slice(3 * h * h..3 * h * h + 3 * h));
        // SAFETY: written (products with β = 0, kernels) before being read.
        let mut gh = unsafe { dev.alloc::<T>(g3)? };
        let saved = unsafe { dev.alloc::<T>(4 * bh)? };
        let out = unsafe { dev.alloc::<T>(t * bh)? };
        let plan = GemmPlan::x_yt(b, h, 3 * h, false);
        let (bi, hi) = (int(b), int(h));
        for s in 0..t {
            let hp = if s == 0 { h0.slice(0..bh) } else { out.slice((s - 1) * bh..s * bh) };
            gemm(&blas, plan, &w, &hp, &mut gh.slice_mut(0..g3))?;
            let (xs, ghv) = (xp.slice(s * g3..(s + 1) * g3), gh.slice(0..g3));
            let hn = out.slice(s * bh..(s + 1) * bh);
            launch!(dev, "remanence_gru", ptx::GRU, "gru_step_forward", T, bh, [&bi, &hi, &xs, &ghv, &b_hh, &hp, &hn, &saved]);
        }
        out
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gru_sequence_backward(
    (t, b, h): Dims,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> Result<CudaStorage> {
    let (bh, g3, s4) = (b * h, 3 * b * h, 4 * b * h);
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let blas = dev.cublas_handle();
        let (xp, wb, z) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let (w, b_hh) = (wb.slice(0..3 * h * h), wb.slice(3 * h * h..3 * h * h + 3 * h));
        let hprev = z.slice(0..t * bh);
        let (bi, hi) = (int(b), int(h));
        // SAFETY: every buffer below is written (copies, kernels, products with β = 0) before
        // it is read.
        // The activations of every step at once: h_{t-1} is known for every step.
        let mut gh = unsafe { dev.alloc::<T>(t * g3)? };
        gemm(&blas, GemmPlan::x_yt(t * b, h, 3 * h, false), &w, &hprev, &mut gh.slice_mut(0..t * g3))?;
        let saved = unsafe { dev.alloc::<T>(t * s4)? };
        let h_scratch = unsafe { dev.alloc::<T>(t * bh)? };
        let tbi = int(t * b);
        launch!(dev, "remanence_gru", ptx::GRU, "gru_step_forward", T, t * bh, [&tbi, &hi, &xp, &gh, &b_hh, &hprev, &h_scratch, &saved]);
        let mut g = unsafe { dev.alloc::<T>(t * bh)? };
        dev.memcpy_dtod(&z.slice((t + 1) * bh..(2 * t + 1) * bh), &mut g)?;
        let dgh = unsafe { dev.alloc::<T>(t * g3)? };
        let direct = unsafe { dev.alloc::<T>(bh)? };
        let mut out = unsafe { dev.alloc::<T>(t * g3 + 3 * h * h + 3 * h + bh)? };
        {
            let (dxp, mut rest) = out.split_at_mut(t * g3);
            let (mut dwb, mut dh0) = rest.split_at_mut(3 * h * h + 3 * h);
            let nl = bh as i64;
            for s in (0..t).rev() {
                {
                    let sv = saved.slice(s * s4..(s + 1) * s4);
                    let hp = hprev.slice(s * bh..(s + 1) * bh);
                    let dh = g.slice(s * bh..(s + 1) * bh);
                    let dx = dxp.slice(s * g3..(s + 1) * g3);
                    let dg = dgh.slice(s * g3..(s + 1) * g3);
                    // At the first step the direct part lands in dh0, which the product then
                    // adds to.
                    let dir = if s == 0 { dh0.slice(0..bh) } else { direct.slice(0..bh) };
                    launch!(dev, "remanence_gru", ptx::GRU, "gru_step_backward", T, bh, [&bi, &hi, &sv, &hp, &dh, &dx, &dg, &dir]);
                }
                let dg = dgh.slice(s * g3..(s + 1) * g3);
                if s > 0 {
                    gemm(&blas, GemmPlan::x_y(b, 3 * h, h, true), &w, &dg, &mut g.slice_mut((s - 1) * bh..s * bh))?;
                    let (dir, gp) = (direct.slice(0..bh), g.slice((s - 1) * bh..s * bh));
                    launch!(dev, "remanence_gru", ptx::GRU, "gru_accumulate", T, bh, [&nl, &dir, &gp]);
                } else {
                    gemm(&blas, GemmPlan::x_y(b, 3 * h, h, true), &w, &dg, &mut dh0.slice_mut(0..bh))?;
                }
            }
            let all = dgh.slice(0..t * g3);
            gemm(&blas, GemmPlan::xt_y(3 * h, t * b, h, false), &hprev, &all, &mut dwb.slice_mut(0..3 * h * h))?;
            let ones_host = vec![<T as num_traits::One>::one(); t * b];
            let mut ones = unsafe { dev.alloc::<T>(t * b)? };
            dev.memcpy_htod(&ones_host, &mut ones)?;
            gemm(&blas, GemmPlan::xt_y(1, t * b, 3 * h, false), &all, &ones.slice(0..t * b), &mut dwb.slice_mut(3 * h * h..3 * h * h + 3 * h))?;
        }
        out
    }))
}
