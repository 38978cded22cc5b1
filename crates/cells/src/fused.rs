//! The shared machinery of the fused CPU sequence kernels.
//!
//! A kernel ([`RowKernel`]) says how to run its recurrence forward and backward for a contiguous
//! range of batch rows; [`Fused`] turns it into a Candle `CustomOp3` over
//! `(inputs (B, T, W_in), weights, state0 (B, W_state))`. Its result holds only what the caller
//! sees: the output of every step (B, T, W_out) followed by a final part per sample (B, W_fin),
//! such as the LSTM's last cell state. What the backward pass needs besides (gate activations,
//! unfold states) stays inside the op instance, like PyTorch's `ctx.save_for_backward`: Candle
//! then never pads, zero-fills or accumulates gradients of it. The op splits the batch over
//! threads for the whole sequence, dispatches f32/f64, sums the per-thread weight gradients and
//! hands Candle's autograd the gradients of all three inputs.
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use num_traits::Float;

/// A recurrence over a batch, row range by row range.
pub trait RowKernel: Send + Sync {
    const NAME: &'static str;
    /// Values per (sample, step) of the input tensor.
    fn input_width(&self) -> usize;
    /// Values per sample of the initial state.
    fn state_width(&self) -> usize;
    /// Number of weight values.
    fn weights_len(&self) -> usize;
    /// Values per (sample, step) of the visible output (the hidden state).
    fn output_width(&self) -> usize;
    /// Visible values per sample after the last step besides the outputs (the LSTM's cell state).
    fn final_width(&self) -> usize {
        0
    }
    /// Values per (sample, step) kept inside the op for the backward pass.
    fn saved_width(&self) -> usize;

    /// Forward of rows `b0..b0 + n`; `x` and `s0` are whole, the three parts of `res` hold
    /// those rows only, row-major.
    #[allow(clippy::too_many_arguments)]
    fn forward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        steps: usize,
        b0: usize,
        res: Parts<&mut [T]>,
    );

    /// Backward of the same rows: `fwd` holds their rows, `grad` (whose `saved` is empty) is
    /// whole. Writes their rows of `dx` and `ds0` and returns this range's weight gradient.
    #[allow(clippy::too_many_arguments)]
    fn backward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        fwd: Parts<&[T]>,
        grad: Parts<&[T]>,
        steps: usize,
        b0: usize,
        dx: &mut [T],
        ds0: &mut [T],
    ) -> Vec<T>;
}

/// The parts of a fused op's result (or of their gradients): outputs (rows, T, W_out), final
/// values (rows, W_fin) and saved values (rows, T, W_saved).
#[derive(Clone, Copy, Debug)]
pub struct Parts<S> {
    pub out: S,
    pub fin: S,
    pub saved: S,
}

/// Splits `buf` into consecutive pieces of `len` values (the last may be shorter); `parts`
/// pieces in all, empty ones when `len` is 0.
fn pieces<T>(mut buf: &mut [T], len: usize, parts: usize) -> Vec<&mut [T]> {
    let mut v = Vec::with_capacity(parts);
    for _ in 0..parts {
        let at = len.min(buf.len());
        let (a, b) = std::mem::take(&mut buf).split_at_mut(at);
        v.push(a);
        buf = b;
    }
    v
}

/// The piece `i` of `buf` cut as [`pieces`] cuts it.
fn piece<T>(buf: &[T], len: usize, i: usize) -> &[T] {
    &buf[(i * len).min(buf.len())..((i + 1) * len).min(buf.len())]
}

/// A [`RowKernel`] as a Candle op, with `threads` batch shards. Build one per call (its saved
/// values belong to that call's graph).
#[derive(Debug, Clone)]
pub struct Fused<K> {
    kernel: K,
    threads: usize,
    saved: Arc<Mutex<Option<CpuStorage>>>,
}

impl<K: RowKernel + 'static> Fused<K> {
    pub fn new(kernel: K, threads: usize) -> Self {
        Self {
            kernel,
            threads,
            saved: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs the op: the outputs (B, T, output_width) and the final values (B, final_width),
    /// both contiguous views of the op's one result (the outputs feed the next layer without a
    /// copy).
    pub fn apply(
        self,
        x: &Tensor,
        w: &Tensor,
        s0: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let (ow, fw) = (self.kernel.output_width(), self.kernel.final_width());
        let all = x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &s0.contiguous()?, self)?;
        let out = all.narrow(0, 0, b * t * ow)?.reshape((b, t, ow))?;
        let fin = all.narrow(0, b * t * ow, b * fw)?.reshape((b, fw))?;
        Ok((out, fin))
    }
}

impl<K: RowKernel> Fused<K> {
    fn per_thread(&self, batch: usize) -> usize {
        batch.div_ceil(self.threads.clamp(1, batch.max(1))).max(1)
    }

    fn threads_for(&self, batch: usize) -> usize {
        batch.div_ceil(self.per_thread(batch))
    }

    /// Returns the visible result `[outputs | finals]` and the saved values.
    fn forward<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        batch: usize,
        steps: usize,
    ) -> (Vec<T>, Vec<T>) {
        let k = &self.kernel;
        let (ow, fw, sw) = (
            steps * k.output_width(),
            k.final_width(),
            steps * k.saved_width(),
        );
        let mut all = vec![T::zero(); batch * (ow + fw)];
        let mut saved = vec![T::zero(); batch * sw];
        let (out, fin) = all.split_at_mut(batch * ow);
        let (per, parts) = (self.per_thread(batch), self.threads_for(batch));
        std::thread::scope(|sc| {
            let shards = pieces(out, per * ow, parts)
                .into_iter()
                .zip(pieces(fin, per * fw, parts))
                .zip(pieces(&mut saved, per * sw, parts));
            for (i, ((out, fin), saved)) in shards.enumerate() {
                let res = Parts { out, fin, saved };
                sc.spawn(move || forward_dispatch(k, x, w, s0, steps, i * per, res));
            }
        });
        (all, saved)
    }

    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn backward<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        res: &[T],
        saved: &[T],
        grad: &[T],
        batch: usize,
        steps: usize,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let k = &self.kernel;
        let (xw, stw) = (k.input_width(), k.state_width());
        let (ow, fw, sw) = (
            steps * k.output_width(),
            k.final_width(),
            steps * k.saved_width(),
        );
        let (mut dx, mut ds0) = (
            vec![T::zero(); batch * steps * xw],
            vec![T::zero(); batch * stw],
        );
        let (out, fin) = res.split_at(batch * ow);
        let (gout, gfin) = grad.split_at(batch * ow);
        let grad = Parts {
            out: gout,
            fin: gfin,
            saved: &[][..],
        };
        let (per, parts) = (self.per_thread(batch), self.threads_for(batch));
        let partials: Vec<Vec<T>> = std::thread::scope(|sc| {
            let handles: Vec<_> = pieces(&mut dx, per * steps * xw, parts)
                .into_iter()
                .zip(pieces(&mut ds0, per * stw, parts))
                .enumerate()
                .map(|(i, (dxp, dsp))| {
                    let fwd = Parts {
                        out: piece(out, per * ow, i),
                        fin: piece(fin, per * fw, i),
                        saved: piece(saved, per * sw, i),
                    };
                    sc.spawn(move || {
                        backward_dispatch(k, x, w, s0, fwd, grad, steps, i * per, dxp, dsp)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("kernel backward thread"))
                .collect()
        });
        let mut dw = vec![T::zero(); k.weights_len()];
        for p in partials {
            for (a, b) in dw.iter_mut().zip(p) {
                *a = *a + b;
            }
        }
        (dx, dw, ds0)
    }
}

// The kernels are compiled twice: for the baseline target and, on x86-64 machines that have
// them, with AVX2 and FMA (8-wide vectors), chosen at run time as the gemm crate does. The row
// functions are `#[inline(always)]` so that their bodies are generated inside the wrappers.

/// Whether this CPU can run the AVX2+FMA build of the kernels (checked once, then cached by std).
#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

fn forward_dispatch<K: RowKernel, T: KernelFloat>(
    k: &K,
    x: &[T],
    w: &[T],
    s0: &[T],
    steps: usize,
    b0: usize,
    res: Parts<&mut [T]>,
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the wrapper is compiled for.
        return unsafe { forward_avx2(k, x, w, s0, steps, b0, res) };
    }
    k.forward_rows(x, w, s0, steps, b0, res)
}

#[allow(clippy::too_many_arguments)]
fn backward_dispatch<K: RowKernel, T: KernelFloat>(
    k: &K,
    x: &[T],
    w: &[T],
    s0: &[T],
    fwd: Parts<&[T]>,
    grad: Parts<&[T]>,
    steps: usize,
    b0: usize,
    dx: &mut [T],
    ds0: &mut [T],
) -> Vec<T> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as above.
        return unsafe { backward_avx2(k, x, w, s0, fwd, grad, steps, b0, dx, ds0) };
    }
    k.backward_rows(x, w, s0, fwd, grad, steps, b0, dx, ds0)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<K: RowKernel, T: KernelFloat>(
    k: &K,
    x: &[T],
    w: &[T],
    s0: &[T],
    steps: usize,
    b0: usize,
    res: Parts<&mut [T]>,
) {
    k.forward_rows(x, w, s0, steps, b0, res)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_avx2<K: RowKernel, T: KernelFloat>(
    k: &K,
    x: &[T],
    w: &[T],
    s0: &[T],
    fwd: Parts<&[T]>,
    grad: Parts<&[T]>,
    steps: usize,
    b0: usize,
    dx: &mut [T],
    ds0: &mut [T],
) -> Vec<T> {
    k.backward_rows(x, w, s0, fwd, grad, steps, b0, dx, ds0)
}

pub(crate) fn slice<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    name: &str,
) -> candle_core::Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{name}: non-contiguous input")))?;
    Ok(&s.as_slice::<T>()?[a..b])
}

impl<K: RowKernel + 'static> CustomOp3 for Fused<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let k = &self.kernel;
        let (batch, steps, xw) = l1.shape().dims3()?;
        if xw != k.input_width()
            || l2.shape().elem_count() != k.weights_len()
            || l3.shape().dims() != [batch, k.state_width()]
        {
            candle_core::bail!(
                "{}: inconsistent shapes {:?} {:?} {:?}",
                K::NAME,
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let shape = Shape::from(batch * (steps * k.output_width() + k.final_width()));
        let n = K::NAME;
        let (out, saved) = match s1 {
            CpuStorage::F32(_) => {
                let (a, s) = self.forward(
                    slice::<f32>(s1, l1, n)?,
                    slice(s2, l2, n)?,
                    slice(s3, l3, n)?,
                    batch,
                    steps,
                );
                (CpuStorage::F32(a), CpuStorage::F32(s))
            }
            CpuStorage::F64(_) => {
                let (a, s) = self.forward(
                    slice::<f64>(s1, l1, n)?,
                    slice(s2, l2, n)?,
                    slice(s3, l3, n)?,
                    batch,
                    steps,
                );
                (CpuStorage::F64(a), CpuStorage::F64(s))
            }
            _ => candle_core::bail!("{n}: only f32 and f64 are supported"),
        };
        *self.saved.lock().expect("saved values") = Some(saved);
        Ok((out, shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        s0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (batch, steps, _) = x.dims3()?;
        let dev = x.device();
        // Read the five tensors in place (no copies).
        let ts = [
            x.contiguous()?,
            w.contiguous()?,
            s0.contiguous()?,
            res.contiguous()?,
            grad.contiguous()?,
        ];
        let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
        let saved = self.saved.lock().expect("saved values");
        macro_rules! run {
            ($t:ty) => {{
                let mut v: Vec<&[$t]> = Vec::with_capacity(5);
                for (g, l) in &guards {
                    match &**g {
                        candle_core::Storage::Cpu(c) => v.push(slice::<$t>(c, l, K::NAME)?),
                        _ => candle_core::bail!("{}: the fused kernel runs on the CPU", K::NAME),
                    }
                }
                let sv = saved
                    .as_ref()
                    .ok_or_else(|| {
                        candle_core::Error::Msg(format!("{}: backward before forward", K::NAME))
                    })?
                    .as_slice::<$t>()?;
                let (dx, dw, ds0) =
                    self.backward::<$t>(v[0], v[1], v[2], v[3], sv, v[4], batch, steps);
                (
                    Tensor::from_vec(dx, x.shape(), dev)?,
                    Tensor::from_vec(dw, w.shape(), dev)?,
                    Tensor::from_vec(ds0, s0.shape(), dev)?,
                )
            }};
        }
        let (dx, dw, ds0) = match x.dtype() {
            DType::F32 => run!(f32),
            DType::F64 => run!(f64),
            dt => candle_core::bail!("{}: unsupported dtype {dt:?}", K::NAME),
        };
        drop(guards);
        Ok((Some(dx), Some(dw), Some(ds0)))
    }
}

/// Threads for the fused CPU kernels: `REMANENCE_KERNEL_THREADS`, else `RAYON_NUM_THREADS`, else
/// every core. The kernels split the batch once per sequence (no spinning pool), so unlike
/// Candle's element-wise ops they gain from every core; the CLI sets `REMANENCE_KERNEL_THREADS`.
pub fn cpu_threads() -> usize {
    let var = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    var("REMANENCE_KERNEL_THREADS")
        .or_else(|| var("RAYON_NUM_THREADS"))
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// Lanes of the element-wise passes: 8 f32 fill an AVX2 register (f64 takes two).
pub const LANES: usize = 8;

/// An element-wise pass over `N` input and `M` in-out slices of one length (that of the first
/// in-out slice). Blocks of [`LANES`] values are copied through local arrays, so the compiler
/// vectorizes `f` without having to prove that the slices do not overlap. `f` gets one lane's
/// inputs and its in-out values (their current contents, to update in place or overwrite); give
/// it `#[inline(always)]`, or it is compiled apart from the AVX2 build of its caller.
#[inline(always)]
pub fn lanes<T: KernelFloat, const N: usize, const M: usize>(
    inputs: [&[T]; N],
    outputs: [&mut [T]; M],
    f: impl Fn([T; N], &mut [T; M]),
) {
    lane_blocks(
        inputs,
        outputs,
        #[inline(always)]
        |a, b| {
            for l in 0..LANES {
                let x: [T; N] = std::array::from_fn(|k| a[k][l]);
                let mut y: [T; M] = std::array::from_fn(|k| b[k][l]);
                f(x, &mut y);
                for k in 0..M {
                    b[k][l] = y[k];
                }
            }
        },
    );
}

/// One block of lanes as a value: a single vector load (slice copies of this size had become
/// calls to `memmove`).
#[inline(always)]
fn load<T: Copy>(s: &[T]) -> [T; LANES] {
    assert!(s.len() >= LANES);
    // SAFETY: `s` holds at least LANES values; unaligned reads are allowed.
    unsafe { std::ptr::read_unaligned(s.as_ptr() as *const [T; LANES]) }
}

#[inline(always)]
fn store<T: Copy>(d: &mut [T], v: [T; LANES]) {
    assert!(d.len() >= LANES);
    // SAFETY: `d` holds at least LANES values; unaligned writes are allowed.
    unsafe { std::ptr::write_unaligned(d.as_mut_ptr() as *mut [T; LANES], v) }
}

/// As [`lanes`], but `f` gets whole blocks: `x[k][l]` is input `k` at lane `l`, and it loops over
/// the lanes itself (a plain vertical loop, which the compiler vectorizes best).
#[inline(always)]
pub fn lane_blocks<T: KernelFloat, const N: usize, const M: usize>(
    inputs: [&[T]; N],
    mut outputs: [&mut [T]; M],
    f: impl Fn(&[[T; LANES]; N], &mut [[T; LANES]; M]),
) {
    let len = if M == 0 { 0 } else { outputs[0].len() };
    let mut j0 = 0;
    while j0 < len {
        let m = LANES.min(len - j0);
        let mut a = [[T::zero(); LANES]; N];
        let mut b = [[T::zero(); LANES]; M];
        if m == LANES {
            for (k, src) in inputs.iter().enumerate() {
                a[k] = load(&src[j0..j0 + LANES]);
            }
            for (k, src) in outputs.iter().enumerate() {
                b[k] = load(&src[j0..j0 + LANES]);
            }
        } else {
            for (k, src) in inputs.iter().enumerate() {
                a[k][..m].copy_from_slice(&src[j0..j0 + m]);
            }
            for (k, src) in outputs.iter().enumerate() {
                b[k][..m].copy_from_slice(&src[j0..j0 + m]);
            }
        }
        f(&a, &mut b);
        if m == LANES {
            for (k, dst) in outputs.iter_mut().enumerate() {
                store(&mut dst[j0..j0 + LANES], b[k]);
            }
        } else {
            for (k, dst) in outputs.iter_mut().enumerate() {
                dst[j0..j0 + m].copy_from_slice(&b[k][..m]);
            }
        }
        j0 += LANES;
    }
}

/// Σ x, accumulated in [`LANES`] independent sums (which vectorize) and added at the end.
#[inline(always)]
pub fn lane_sum<T: KernelFloat>(x: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = acc[l] + c[l];
        }
    }
    let mut s = chunks.remainder().iter().fold(T::zero(), |a, &b| a + b);
    for a in acc {
        s = s + a;
    }
    s
}

/// Floats the kernels run on, with the exponential they use.
pub trait KernelFloat: Float + Send + Sync + 'static {
    /// eˣ: a branch-free polynomial for f32 that the compiler vectorizes (relative error below
    /// 3e-7 on the range used), the C library's for f64.
    fn exp_k(self) -> Self;
}

impl KernelFloat for f64 {
    #[inline(always)]
    fn exp_k(self) -> f64 {
        self.exp()
    }
}

impl KernelFloat for f32 {
    #[inline(always)]
    fn exp_k(self) -> f32 {
        // eˣ = 2ⁿ·eʳ with n = round(x·log₂e) and |r| ≤ ln2/2; eʳ by a degree-6 Taylor polynomial.
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_145_75;
        const LN2_LO: f32 = 1.428_606_8e-6;
        const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer.
        let x = x_clamp(self);
        let shifted = x * LOG2E + ROUND;
        let n = shifted - ROUND;
        // The integer n sits in the low mantissa bits of `shifted`: 2ⁿ from integer operations
        // only (no float-to-int conversion, which would stop vectorization).
        let ni = shifted.to_bits().wrapping_sub(ROUND.to_bits());
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        p * f32::from_bits(ni.wrapping_add(127) << 23)
    }
}

/// Clamps to the range where 2ⁿ is a normal float, with plain selects (vectorizable).
#[inline(always)]
fn x_clamp(x: f32) -> f32 {
    let x = if x < -87.0 { -87.0 } else { x };
    if x > 88.0 {
        88.0
    } else {
        x
    }
}

/// σ(z) = 1/(1 + e^{−z}).
#[inline(always)]
pub fn sigmoid<T: KernelFloat>(z: T) -> T {
    T::one() / (T::one() + (-z).exp_k())
}

/// tanh(z) = sign(z)·(1 − e^{−2|z|})/(1 + e^{−2|z|}), from the kernel exponential (the C
/// library's tanhf costs five times its expf).
#[inline(always)]
pub fn tanh<T: KernelFloat>(z: T) -> T {
    let e = (-(z.abs() + z.abs())).exp_k();
    ((T::one() - e) / (T::one() + e)).copysign(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_functions_are_accurate() {
        let mut worst_exp: f64 = 0.0;
        let mut worst_abs: f64 = 0.0;
        for k in -20000..=20000 {
            let x = k as f32 * 4e-3; // [-80, 80]
            let e = x.exp_k() as f64;
            worst_exp = worst_exp.max(((e - (x as f64).exp()) / (x as f64).exp()).abs());
            worst_abs = worst_abs.max((tanh(x) as f64 - (x as f64).tanh()).abs());
            worst_abs =
                worst_abs.max((sigmoid(x) as f64 - 1.0 / (1.0 + (-(x as f64)).exp())).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp:e}");
        assert!(
            worst_abs < 2e-7,
            "tanh/sigmoid absolute error {worst_abs:e}"
        );
        for x in [-3.0f64, -0.3, 1e-3, 0.7, 5.0] {
            assert!((tanh(x) - x.tanh()).abs() < 1e-15, "f64 tanh({x})");
            assert!(
                (sigmoid(x) - 1.0 / (1.0 + (-x).exp())).abs() < 1e-16,
                "f64 sigmoid({x})"
            );
        }
    }
}
