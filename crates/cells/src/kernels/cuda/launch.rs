//! The CUDA launches of the step ops: the PTX of this folder (compiled by `build.rs`) loaded
//! through Candle's CUDA device and launched on its stream with the same arguments the host
//! build receives in `super::host`.
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};

use super::steps::LtcStep;
use super::{grid, ptx, DeviceFloat, BLOCK};

/// Floats with both a CUDA storage and kernels.
trait GpuFloat: DeviceFloat + CudaDType + DeviceRepr + ValidAsZeroBits {}
impl GpuFloat for f32 {}
impl GpuFloat for f64 {}

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

fn lstm_forward_into<T: GpuFloat>(
    dev: &CudaDevice,
    gates: &CudaView<'_, T>,
    c: &CudaView<'_, T>,
    hc: &CudaSlice<T>,
    saved: &CudaSlice<T>,
    b: usize,
    h: usize,
) -> Result<()> {
    let n = b * h;
    let (hv, cv) = (hc.slice(0..n), hc.slice(n..2 * n));
    let (bi, hi) = (int(b), int(h));
    launch!(
        dev,
        "remanence_lstm",
        ptx::LSTM,
        "lstm_step_forward",
        T,
        n,
        [&bi, &hi, gates, c, &hv, &cv, saved]
    );
    Ok(())
}

pub(crate) fn lstm_forward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    b: usize,
    h: usize,
) -> Result<CudaStorage> {
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (gates, c) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?);
        // SAFETY: every value is written by the kernel before it is read.
        let hc = unsafe { dev.alloc::<T>(2 * b * h)? };
        let saved = unsafe { dev.alloc::<T>(5 * b * h)? };
        lstm_forward_into(dev, &gates, &c, &hc, &saved, b, h)?;
        hc
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_backward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    b: usize,
    h: usize,
) -> Result<CudaStorage> {
    let n = b * h;
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (gates, c, grad) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        // SAFETY: written by the kernels before being read.
        let hc = unsafe { dev.alloc::<T>(2 * n)? };
        let saved = unsafe { dev.alloc::<T>(5 * n)? };
        lstm_forward_into(dev, &gates, &c, &hc, &saved, b, h)?;
        let mut out = unsafe { dev.alloc::<T>(5 * n)? };
        {
            let mut dc = out.slice_mut(4 * n..5 * n);
            dev.memcpy_dtod(&grad.slice(n..2 * n), &mut dc)?;
        }
        let (dgates, dc) = (out.slice(0..4 * n), out.slice(4 * n..5 * n));
        let dh = grad.slice(0..n);
        let (bi, hi) = (int(b), int(h));
        launch!(dev, "remanence_lstm", ptx::LSTM, "lstm_step_backward", T, n, [&bi, &hi, &saved, &c, &dh, &dc, &dgates]);
        drop((dgates, dc));
        out
    }))
}

#[allow(clippy::too_many_arguments)]
fn gru_forward_into<T: GpuFloat>(
    dev: &CudaDevice,
    xp: &CudaView<'_, T>,
    ghb: &CudaView<'_, T>,
    hp: &CudaView<'_, T>,
    hn: &CudaSlice<T>,
    saved: &CudaSlice<T>,
    b: usize,
    h: usize,
) -> Result<()> {
    // The recurrent bias already sits in `ghb`.
    let zeros = dev.alloc_zeros::<T>(3 * h)?;
    let (bi, hi) = (int(b), int(h));
    launch!(
        dev,
        "remanence_gru",
        ptx::GRU,
        "gru_step_forward",
        T,
        b * h,
        [&bi, &hi, xp, ghb, &zeros, hp, hn, saved]
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gru_forward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    b: usize,
    h: usize,
) -> Result<CudaStorage> {
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (xp, ghb, hp) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        // SAFETY: written by the kernel before being read.
        let hn = unsafe { dev.alloc::<T>(b * h)? };
        let saved = unsafe { dev.alloc::<T>(4 * b * h)? };
        gru_forward_into(dev, &xp, &ghb, &hp, &hn, &saved, b, h)?;
        hn
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn gru_backward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
    b: usize,
    h: usize,
) -> Result<CudaStorage> {
    let n = b * h;
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (xp, ghb, hg) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let (hp, grad) = (hg.slice(0..n), hg.slice(n..2 * n));
        // SAFETY: written by the kernels before being read.
        let hn = unsafe { dev.alloc::<T>(n)? };
        let saved = unsafe { dev.alloc::<T>(4 * n)? };
        gru_forward_into(dev, &xp, &ghb, &hp, &hn, &saved, b, h)?;
        let out = unsafe { dev.alloc::<T>(7 * n)? };
        let (dxp, dgh, direct) = (out.slice(0..3 * n), out.slice(3 * n..6 * n), out.slice(6 * n..7 * n));
        let (bi, hi) = (int(b), int(h));
        launch!(dev, "remanence_gru", ptx::GRU, "gru_step_backward", T, n, [&bi, &hi, &saved, &hp, &grad, &dxp, &dgh, &direct]);
        drop((dxp, dgh, direct));
        out
    }))
}

pub(crate) fn srn_forward(s: &CudaStorage, l: &Layout, logistic: bool) -> Result<CudaStorage> {
    let n = l.shape().elem_count();
    Ok(per_float!(s, T => {
        let dev = &s.device;
        let pre = view::<T>(s, l)?;
        // SAFETY: written by the kernel before being read.
        let out = unsafe { dev.alloc::<T>(n)? };
        let (nl, lg) = (n as i64, logistic as i32);
        launch!(dev, "remanence_srn", ptx::SRN, "srn_step_forward", T, n, [&nl, &lg, &pre, &out]);
        out
    }))
}

pub(crate) fn srn_backward(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    logistic: bool,
) -> Result<CudaStorage> {
    let n = l1.shape().elem_count();
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (hs, g) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?);
        // SAFETY: written by the kernel before being read.
        let out = unsafe { dev.alloc::<T>(n)? };
        let (nl, lg) = (n as i64, logistic as i32);
        launch!(dev, "remanence_srn", ptx::SRN, "srn_step_backward", T, n, [&nl, &lg, &hs, &g, &out]);
        out
    }))
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
    let (h, d, l) = (st.layout.h, st.layout.d, st.unfolds);
    let (bh, np) = (b * h, st.layout.len());
    Ok(per_float!(s1, T => {
        let dev = &s1.device;
        let (x, p, vg) = (view::<T>(s1, l1)?, view::<T>(s2, l2)?, view::<T>(s3, l3)?);
        let (v0, grad) = (vg.slice(0..bh), vg.slice(bh..2 * bh));
        let scale = ltc_scale::<T>(dev, st, b)?;
        let (ns, ds) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
        let states = ltc_states(dev, st, &x, &p, &v0, &scale, &ns, &ds, b)?;
        let o = ltc_offsets(st);
        let part = |k: usize| p.slice(o[k].clone());
        let (sigma, mu, w, erev) = (part(0), part(1), part(2), part(3));
        let (ssig, smu, sw, serev) = (part(4), part(5), part(6), part(7));
        let (cm, gleak, vleak) = (part(8), part(9), part(10));
        // [dx | dparams | dv]; the parameter kernels add into zeros.
        let out = dev.alloc_zeros::<T>(b * d + np + bh)?;
        let dp = |k: usize| out.slice(b * d + o[k].start..b * d + o[k].end);
        let (dsig, dmu, dw, de) = (dp(0), dp(1), dp(2), dp(3));
        let (dssig, dsmu, dsw, dserev) = (dp(4), dp(5), dp(6), dp(7));
        let (dcm, dgl, dvl) = (dp(8), dp(9), dp(10));
        let dx = out.slice(0..b * d);
        let (dns, dds) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
        let (dnum, dden) = (dev.alloc_zeros::<T>(bh)?, dev.alloc_zeros::<T>(bh)?);
        // The gradient of the state after unfold u + 1, then of the state before it.
        let mut g = dev.alloc_zeros::<T>(bh)?;
        dev.memcpy_dtod(&grad, &mut g)?;
        let (bi, di, hi) = (int(b), int(d), int(h));
        let eps = <T as num_traits::NumCast>::from(st.epsilon).expect("epsilon");
        let m = ("remanence_ltc", ptx::LTC);
        for u in (0..l).rev() {
            let (v, vn) = (states.slice(u * bh..(u + 1) * bh), states.slice((u + 1) * bh..(u + 2) * bh));
            let g_prev = dev.alloc_zeros::<T>(bh)?;
            launch!(dev, m.0, m.1, "ltc_unfold_backward_neurons", T, bh, [&bi, &hi, &eps, &v, &vn, &g, &sigma, &mu, &w, &cm, &gleak, &ds, &scale, &dnum, &dden, &dns, &dds]);
            launch!(dev, m.0, m.1, "ltc_unfold_backward_inputs", T, bh, [&bi, &hi, &v, &sigma, &mu, &w, &erev, &cm, &scale, &dnum, &dden, &g_prev]);
            launch!(dev, m.0, m.1, "ltc_unfold_backward_synapses", T, h * h, [&bi, &hi, &v, &sigma, &mu, &w, &erev, &dnum, &dden, &dsig, &dmu, &dw, &de]);
            launch!(dev, m.0, m.1, "ltc_unfold_backward_leak", T, h, [&bi, &hi, &v, &gleak, &vleak, &scale, &dnum, &dden, &dcm, &dgl, &dvl]);
            g = g_prev;
        }
        launch!(dev, m.0, m.1, "ltc_sensory_backward_synapses", T, d * h, [&bi, &di, &hi, &x, &ssig, &smu, &sw, &serev, &dns, &dds, &dssig, &dsmu, &dsw, &dserev]);
        launch!(dev, m.0, m.1, "ltc_sensory_backward_inputs", T, b * d, [&bi, &di, &hi, &x, &ssig, &smu, &sw, &serev, &dns, &dds, &dx]);
        let mut out = out;
        dev.memcpy_dtod(&g, &mut out.slice_mut(b * d + np..b * d + np + bh))?;
        out
    }))
}
