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
    fn forward_rows<T: Float + 'static>(
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
    fn backward_rows<T: Float + 'static>(
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

    fn forward<T: Float + Send + Sync + 'static>(
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
                sc.spawn(move || k.forward_rows(x, w, s0, steps, i * per, part));
            }
        });
        out
    }

    #[allow(clippy::type_complexity)]
    fn backward<T: Float + Send + Sync + 'static>(
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
                    sc.spawn(move || k.backward_rows(x, w, s0, sv, grad, steps, i * per, dxp, dsp))
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

/// Threads for the CPU kernels: `RAYON_NUM_THREADS` if set (the CLI's `--threads`), else the
/// machine's parallelism.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

#[inline]
pub fn sigmoid<T: Float>(z: T) -> T {
    T::one() / (T::one() + (-z).exp())
}
