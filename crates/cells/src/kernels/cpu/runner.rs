//! The shared machinery of the fused CPU sequence kernels.
//!
//! A kernel ([`RowKernel`]) says how to run its recurrence forward and backward for a contiguous
//! range of batch rows; [`Fused`] turns it into a Candle `CustomOp3` over
//! `(inputs (B, T, W_in), weights, state0 (B, W_state))`. Its result holds only what the caller
//! sees: the output of every step (B, T, W_out) followed by a final part per sample (B, W_fin),
//! such as the LSTM's last cell state. What the backward pass needs besides (gate activations,
//! unfold states) stays inside the op instance, like PyTorch's `ctx.save_for_backward`: Candle
//! then never pads, zero-fills or accumulates gradients of it. When no input needs a gradient,
//! kernels that can ([`RowKernel::can_skip_saved`]) save nothing at all. The saved values live in
//! a pooled buffer (`scratch`), not zeroed first for kernels that overwrite them all. The op splits
//! the batch over threads for the whole sequence, dispatches f32/f64 and the instruction set
//! ([`simd`]), sums the per-thread weight gradients and hands Candle's autograd the gradients of
//! all three inputs.
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::scratch::Scratch;
use crate::kernels::math::KernelFloat;
use crate::kernels::slice;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

/// A recurrence over a batch, row range by row range.
pub trait RowKernel: Send + Sync {
    const NAME: &'static str;
    /// Whether the kernel also runs in an AVX-512 build on CPUs that have it (its element-wise
    /// passes then use 16-lane vectors; every lane does the same operations, so the results are
    /// those of the AVX2 build).
    const AVX512: bool = false;
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
    /// Whether [`RowKernel::forward_rows`] accepts an empty `saved` part (and then saves
    /// nothing): the op passes one when no input needs a gradient.
    fn can_skip_saved(&self) -> bool {
        false
    }
    /// Whether [`RowKernel::forward_rows`] writes every value of its `out`, `fin` and `saved`
    /// parts, so that they need not be zeroed first.
    fn overwrites_result(&self) -> bool {
        false
    }

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

/// The values a forward pass keeps for the backward pass, in a pooled buffer (back to the pool
/// when the op, and with it the graph, is dropped).
#[derive(Debug)]
enum Saved {
    F32(Scratch<f32>),
    F64(Scratch<f64>),
}

/// A buffer for the forward pass to fill: pooled as it is when the kernel overwrites it all,
/// zeroed otherwise.
fn buffer<T: KernelFloat>(len: usize, overwritten: bool) -> Scratch<T> {
    if overwritten {
        Scratch::new(len)
    } else {
        Scratch::zeroed(len)
    }
}

/// A [`RowKernel`] as a Candle op, with `threads` batch shards. Build one per call (its saved
/// values belong to that call's graph).
#[derive(Debug, Clone)]
pub struct Fused<K> {
    kernel: K,
    threads: usize,
    /// Whether the forward pass keeps the saved values (false when [`Fused::apply`] finds that
    /// no input needs a gradient and the kernel can skip them).
    keep: bool,
    saved: Arc<Mutex<Option<Saved>>>,
}

impl<K: RowKernel + 'static> Fused<K> {
    pub fn new(kernel: K, threads: usize) -> Self {
        Self {
            kernel,
            threads,
            keep: true,
            saved: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs the op: the outputs (B, T, output_width) and the final values (B, final_width),
    /// both contiguous views of the op's one result (the outputs feed the next layer without a
    /// copy). When no input needs a gradient (inference: no backward pass will run), kernels
    /// that can ([`RowKernel::can_skip_saved`]) save nothing.
    pub fn apply(
        mut self,
        x: &Tensor,
        w: &Tensor,
        s0: &Tensor,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        self.keep = x.track_op() || w.track_op() || s0.track_op() || !self.kernel.can_skip_saved();
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
    ) -> (Vec<T>, Scratch<T>) {
        let k = &self.kernel;
        let sw = if self.keep {
            steps * k.saved_width()
        } else {
            0
        };
        let (ow, fw) = (steps * k.output_width(), k.final_width());
        let mut all = vec![T::zero(); batch * (ow + fw)];
        let mut saved = buffer::<T>(batch * sw, k.overwrites_result());
        let (out, fin) = all.split_at_mut(batch * ow);
        let (per, parts) = (self.per_thread(batch), self.threads_for(batch));
        std::thread::scope(|sc| {
            let shards = pieces(out, per * ow, parts)
                .into_iter()
                .zip(pieces(fin, per * fw, parts))
                .zip(pieces(&mut saved[..], per * sw, parts));
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
        let mut partials = partials.into_iter();
        let mut dw = partials
            .next()
            .unwrap_or_else(|| vec![T::zero(); k.weights_len()]);
        for p in partials {
            for (a, b) in dw.iter_mut().zip(p) {
                *a = *a + b;
            }
        }
        (dx, dw, ds0)
    }
}

// The kernels are compiled for the baseline target and, on x86-64 machines that have them, with
// AVX2 and FMA (8-wide vectors) and, for the kernels that ask for it ([`RowKernel::AVX512`]),
// with AVX-512 (16-wide), chosen at run time as the gemm crate does. The row functions are
// `#[inline(always)]` so that their bodies are generated inside the wrappers.

/// The instruction sets the fused kernels are built for, from the baseline up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// The baseline target (on x86-64, SSE2; multiply and add apart).
    Baseline = 0,
    /// AVX2 and FMA.
    Avx2 = 1,
    /// AVX-512F (with AVX2 and FMA).
    Avx512 = 2,
}

/// The highest [`Simd`] the kernels may use (`u8::MAX`: no limit).
static SIMD_LIMIT: AtomicU8 = AtomicU8::new(u8::MAX);

/// Caps the instruction sets the fused CPU kernels use, for the whole process (`None`: the best
/// this CPU has, the default). For tests and measurements: the AVX2 and AVX-512 builds give the
/// same bits, the baseline build rounds each product separately.
pub fn limit_simd(max: Option<Simd>) {
    SIMD_LIMIT.store(max.map_or(u8::MAX, |m| m as u8), Ordering::Relaxed);
}

/// The instruction set the fused CPU kernels use now: the best this CPU has (checked once, then
/// cached by std), within [`limit_simd`].
pub fn simd() -> Simd {
    #[allow(unused_mut)]
    let mut best = Simd::Baseline;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            best = if has!("avx512f") {
                Simd::Avx512
            } else {
                Simd::Avx2
            };
        }
    }
    match SIMD_LIMIT.load(Ordering::Relaxed) {
        0 => Simd::Baseline,
        1 => best.min(Simd::Avx2),
        _ => best,
    }
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
    match simd() {
        // SAFETY (both): the CPU supports the features the wrapper is compiled for.
        Simd::Avx512 if K::AVX512 => return unsafe { forward_avx512(k, x, w, s0, steps, b0, res) },
        Simd::Avx512 | Simd::Avx2 => return unsafe { forward_avx2(k, x, w, s0, steps, b0, res) },
        Simd::Baseline => {}
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
    match simd() {
        // SAFETY (both): as above.
        Simd::Avx512 if K::AVX512 => {
            return unsafe { backward_avx512(k, x, w, s0, fwd, grad, steps, b0, dx, ds0) }
        }
        Simd::Avx512 | Simd::Avx2 => {
            return unsafe { backward_avx2(k, x, w, s0, fwd, grad, steps, b0, dx, ds0) }
        }
        Simd::Baseline => {}
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn forward_avx512<K: RowKernel, T: KernelFloat>(
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
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_avx512<K: RowKernel, T: KernelFloat>(
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
                (CpuStorage::F32(a), Saved::F32(s))
            }
            CpuStorage::F64(_) => {
                let (a, s) = self.forward(
                    slice::<f64>(s1, l1, n)?,
                    slice(s2, l2, n)?,
                    slice(s3, l3, n)?,
                    batch,
                    steps,
                );
                (CpuStorage::F64(a), Saved::F64(s))
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
        if !self.keep {
            candle_core::bail!("{}: backward of a pass that saved nothing", K::NAME);
        }
        let saved = self.saved.lock().expect("saved values");
        macro_rules! run {
            ($t:ty, $v:ident) => {{
                let mut v: Vec<&[$t]> = Vec::with_capacity(5);
                for (g, l) in &guards {
                    match &**g {
                        candle_core::Storage::Cpu(c) => v.push(slice::<$t>(c, l, K::NAME)?),
                        _ => candle_core::bail!("{}: the fused kernel runs on the CPU", K::NAME),
                    }
                }
                let sv: &[$t] = match saved.as_ref() {
                    Some(Saved::$v(s)) => s,
                    Some(_) => candle_core::bail!("{}: saved values of another dtype", K::NAME),
                    None => candle_core::bail!("{}: backward before forward", K::NAME),
                };
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
            DType::F32 => run!(f32, F32),
            DType::F64 => run!(f64, F64),
            dt => candle_core::bail!("{}: unsupported dtype {dt:?}", K::NAME),
        };
        drop(guards);
        Ok((Some(dx), Some(dw), Some(ds0)))
    }
}
