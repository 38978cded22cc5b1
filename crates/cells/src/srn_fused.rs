//! The fused Elman recurrence on the CPU, with its own backward pass.
//!
//! Inputs `xp = x W_ihᵀ + b_ih + b_hh` (B, T, H) come from one Candle product over all steps;
//! per step one product `h W_hhᵀ` and the activation, saving `h'` (H) per step. Backward: one
//! product `dpre · W_hh` per step and `dW_hh` once after the time loop.

use crate::cpu_gemm::{matmul, View};
use crate::fused::{sigmoid, tanh, KernelFloat, RowKernel};

#[derive(Debug, Clone)]
pub struct SrnKernel {
    pub hidden: usize,
    /// Logistic activation instead of tanh.
    pub logistic: bool,
}

impl RowKernel for SrnKernel {
    const NAME: &'static str = "srn-sequence";
    fn input_width(&self) -> usize {
        self.hidden
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        self.hidden * self.hidden
    }
    fn saved_width(&self) -> usize {
        self.hidden
    }

    #[inline(always)]
    fn forward_rows<T: KernelFloat>(
        &self,
        xp: &[T],
        w: &[T],
        s0: &[T],
        steps: usize,
        b0: usize,
        out: &mut [T],
    ) {
        let h = self.hidden;
        let n = out.len() / (steps * h);
        let mut hp: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        let mut pre = vec![T::zero(); n * h];
        for t in 0..steps {
            for r in 0..n {
                let src = ((b0 + r) * steps + t) * h;
                pre[r * h..(r + 1) * h].copy_from_slice(&xp[src..src + h]);
            }
            matmul(
                n,
                h,
                h,
                &mut pre,
                h,
                true,
                View::rows(&hp, h),
                View::transposed(w, h),
            );
            for r in 0..n {
                for j in 0..h {
                    let v = pre[r * h + j];
                    let a = if self.logistic { sigmoid(v) } else { tanh(v) };
                    out[(r * steps + t) * h + j] = a;
                    hp[r * h + j] = a;
                }
            }
        }
    }

    #[inline(always)]
    fn backward_rows<T: KernelFloat>(
        &self,
        _x: &[T],
        w: &[T],
        s0: &[T],
        saved: &[T],
        grad: &[T],
        steps: usize,
        b0: usize,
        dx: &mut [T],
        ds0: &mut [T],
    ) -> Vec<T> {
        let h = self.hidden;
        let n = ds0.len() / h;
        let mut dh = vec![T::zero(); n * h];
        let mut hprev = vec![T::zero(); n * steps * h];
        for t in (0..steps).rev() {
            for r in 0..n {
                let b = b0 + r;
                let q = (r * steps + t) * h;
                let prev: &[T] = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &saved[q - h..q]
                };
                hprev[q..q + h].copy_from_slice(prev);
                for j in 0..h {
                    let a = saved[q + j];
                    let d = dh[r * h + j] + grad[(b * steps + t) * h + j];
                    let slope = if self.logistic {
                        a * (T::one() - a)
                    } else {
                        T::one() - a * a
                    };
                    dx[q + j] = d * slope;
                }
            }
            matmul(
                n,
                h,
                h,
                &mut dh,
                h,
                false,
                View {
                    data: &dx[t * h..],
                    rs: (steps * h) as isize,
                    cs: 1,
                },
                View::rows(w, h),
            );
        }
        ds0.copy_from_slice(&dh);
        let mut dw = vec![T::zero(); h * h];
        matmul(
            h,
            h,
            n * steps,
            &mut dw,
            h,
            false,
            View::transposed(dx, h),
            View::rows(&hprev, h),
        );
        dw
    }
}
