//! The shared machinery of the fused CPU sequence kernels.
//!
//! A kernel ([`RowKernel`]) says how to run its recurrence forward and backward for a contiguous
//! range of batch rows; [`Fused`] turns it into a Candle `CustomOp3` over
//! `(inputs (B, T, W_in), weights, state0 (B, W_state)) → saved (B, T, W_saved)`: it splits the
//! batch over threads for the whole sequence, dispatches f32/f64, sums the per-thread weight
//! gradients and hands Candle's autograd the gradients of all three inputs.
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
    /// Values saved per (sample, step); the user-visible outputs are a slice of them.
    fn saved_width(&self) -> usize;

    /// Forward of rows `b0..b0 + n`; `x` and `s0` are whole, `out` holds those rows only.
    fn forward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        steps: usize,
        b0: usize,
        out: &mut [T],
    );

    /// Backward of the same rows: `saved` holds their rows, `grad` is whole. Writes their rows of
    /// `dx` and `ds0` and returns this range's weight gradient.
    #[allow(clippy::too_many_arguments)]
    fn backward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        saved: &[T],
        grad: &[T],
        steps: usize,
        b0: usize,
        dx: &mut [T],
        ds0: &mut [T],
    ) -> Vec<T>;
}

/// A [`RowKernel`] as a Candle op, with `threads` batch shards.
#[derive(Debug, Clone)]
pub struct Fused<K> {
    pub kernel: K,
    pub threads: usize,
}

impl<K: RowKernel> Fused<K> {
    fn per_thread(&self, batch: usize) -> usize {
        batch.div_ceil(self.threads.clamp(1, batch.max(1)))
    }

    fn forward<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        batch: usize,
        steps: usize,
    ) -> Vec<T> {
        let row = steps * self.kernel.saved_width();
        let mut out = vec![T::zero(); batch * row];
        let per = self.per_thread(batch);
        let k = &self.kernel;
        std::thread::scope(|sc| {
            for (i, part) in out.chunks_mut(per * row).enumerate() {
                sc.spawn(move || forward_dispatch(k, x, w, s0, steps, i * per, part));
            }
        });
        out
    }

    #[allow(clippy::type_complexity)]
    fn backward<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        saved: &[T],
        grad: &[T],
        batch: usize,
        steps: usize,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let k = &self.kernel;
        let (xw, sw, row) = (k.input_width(), k.state_width(), steps * k.saved_width());
        let (mut dx, mut ds0) = (
            vec![T::zero(); batch * steps * xw],
            vec![T::zero(); batch * sw],
        );
        let per = self.per_thread(batch);
        let partials: Vec<Vec<T>> = std::thread::scope(|sc| {
            let handles: Vec<_> = dx
                .chunks_mut(per * steps * xw)
                .zip(ds0.chunks_mut(per * sw))
                .zip(saved.chunks(per * row))
                .enumerate()
                .map(|(i, ((dxp, dsp), sv))| {
                    sc.spawn(move || {
                        backward_dispatch(k, x, w, s0, sv, grad, steps, i * per, dxp, dsp)
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
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports the features the wrapper is compiled for.
        return unsafe { forward_avx2(k, x, w, s0, steps, b0, out) };
    }
    k.forward_rows(x, w, s0, steps, b0, out)
}

#[allow(clippy::too_many_arguments)]
fn backward_dispatch<K: RowKernel, T: KernelFloat>(
    k: &K,
    x: &[T],
    w: &[T],
    s0: &[T],
    saved: &[T],
    grad: &[T],
    steps: usize,
    b0: usize,
    dx: &mut [T],
    ds0: &mut [T],
) -> Vec<T> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: as above.
        return unsafe { backward_avx2(k, x, w, s0, saved, grad, steps, b0, dx, ds0) };
    }
    k.backward_rows(x, w, s0, saved, grad, steps, b0, dx, ds0)
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
    out: &mut [T],
) {
    k.forward_rows(x, w, s0, steps, b0, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_avx2<K: RowKernel, T: KernelFloat>(
    k: &K,
    x: &[T],
    w: &[T],
    s0: &[T],
    saved: &[T],
    grad: &[T],
    steps: usize,
    b0: usize,
    dx: &mut [T],
    ds0: &mut [T],
) -> Vec<T> {
    k.backward_rows(x, w, s0, saved, grad, steps, b0, dx, ds0)
}

fn slice<'a, T: candle_core::WithDType>(
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
        let shape = Shape::from((batch, steps, k.saved_width()));
        let n = K::NAME;
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(self.forward(
                slice::<f32>(s1, l1, n)?,
                slice(s2, l2, n)?,
                slice(s3, l3, n)?,
                batch,
                steps,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(self.forward(
                slice::<f64>(s1, l1, n)?,
                slice(s2, l2, n)?,
                slice(s3, l3, n)?,
                batch,
                steps,
            )),
            _ => candle_core::bail!("{n}: only f32 and f64 are supported"),
        };
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
        macro_rules! run {
            ($t:ty) => {{
                let v = |t: &Tensor| -> candle_core::Result<Vec<$t>> {
                    t.flatten_all()?.to_vec1::<$t>()
                };
                let (dx, dw, ds0) =
                    self.backward::<$t>(&v(x)?, &v(w)?, &v(s0)?, &v(res)?, &v(grad)?, batch, steps);
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
