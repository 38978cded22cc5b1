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

use crate::kernels::math::KernelFloat;
use crate::kernels::slice;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

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
