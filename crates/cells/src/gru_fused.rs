//! The fused GRU recurrence on the CPU, with its own backward pass.
//!
//! Inputs `xp = x W_ihᵀ + b_ih` (B, T, 3H) come from one Candle product over all steps. The
//! recurrent weights enter as `[W_hh | b_hh]` (3H, H+1): `b_hn` must stay inside `r ⊙ (·)`, so it
//! cannot be folded into `xp`. Per step: one product `h W_hhᵀ` and one fused pass
//! `r = σ(x_r + g_r)`, `z = σ(x_z + g_z)`, `n = tanh(x_n + r ⊙ g_n)`, `h' = n + z ⊙ (h − n)`,
//! saving `[h' | r | z | n | g_n]` (5H) per step. Backward: one product `dg · W_hh` per step, and
//! `dW_hh`, `db_hh` accumulated once after the time loop.

use crate::cpu_gemm::{matmul, View};
use crate::fused::{sigmoid, tanh, KernelFloat, RowKernel};

#[derive(Debug, Clone)]
pub struct GruKernel {
    pub hidden: usize,
}

impl RowKernel for GruKernel {
    const NAME: &'static str = "gru-sequence";
    fn input_width(&self) -> usize {
        3 * self.hidden
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        3 * self.hidden * (self.hidden + 1)
    }
    fn saved_width(&self) -> usize {
        5 * self.hidden
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
        let (g3, wr) = (3 * h, h + 1);
        let n = out.len() / (steps * 5 * h);
        let mut hp: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        let mut gh = vec![T::zero(); n * g3];
        for t in 0..steps {
            matmul(
                n,
                g3,
                h,
                &mut gh,
                g3,
                false,
                View::rows(&hp, h),
                View {
                    data: w,
                    rs: 1,
                    cs: wr as isize,
                },
            );
            for r in 0..n {
                let x = &xp[((b0 + r) * steps + t) * g3..((b0 + r) * steps + t + 1) * g3];
                let g = &gh[r * g3..(r + 1) * g3];
                let o = &mut out[(r * steps + t) * 5 * h..(r * steps + t + 1) * 5 * h];
                for j in 0..h {
                    let bias = |row: usize| w[row * wr + h];
                    let rr = sigmoid(x[j] + g[j] + bias(j));
                    let z = sigmoid(x[h + j] + g[h + j] + bias(h + j));
                    let gn = g[2 * h + j] + bias(2 * h + j);
                    let nn = tanh(x[2 * h + j] + rr * gn);
                    let hn = nn + z * (hp[r * h + j] - nn);
                    o[j] = hn;
                    o[h + j] = rr;
                    o[2 * h + j] = z;
                    o[3 * h + j] = nn;
                    o[4 * h + j] = gn;
                    hp[r * h + j] = hn;
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
        let (g3, wr) = (3 * h, h + 1);
        let n = ds0.len() / h;
        let mut dh = vec![T::zero(); n * h];
        let mut dgh = vec![T::zero(); n * steps * g3];
        let mut hprev = vec![T::zero(); n * steps * h];
        for t in (0..steps).rev() {
            let mut direct = vec![T::zero(); n * h];
            for r in 0..n {
                let b = b0 + r;
                let o = &saved[(r * steps + t) * 5 * h..(r * steps + t + 1) * 5 * h];
                let gsrc = &grad[(b * steps + t) * 5 * h..];
                let prev: &[T] = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &saved[(r * steps + t - 1) * 5 * h..][..h]
                };
                hprev[(r * steps + t) * h..(r * steps + t + 1) * h].copy_from_slice(prev);
                let q = (r * steps + t) * g3;
                for j in 0..h {
                    let (rr, z, nn, gn) = (o[h + j], o[2 * h + j], o[3 * h + j], o[4 * h + j]);
                    let d = dh[r * h + j] + gsrc[j];
                    let dn = d * (T::one() - z) * (T::one() - nn * nn);
                    let dz = d * (prev[j] - nn) * z * (T::one() - z);
                    let dr = dn * gn * rr * (T::one() - rr);
                    dx[q + j] = dr;
                    dx[q + h + j] = dz;
                    dx[q + 2 * h + j] = dn;
                    dgh[q + j] = dr;
                    dgh[q + h + j] = dz;
                    dgh[q + 2 * h + j] = dn * rr;
                    direct[r * h + j] = d * z;
                }
            }
            // dh_{t-1} = direct + dg_t · W_hh
            matmul(
                n,
                h,
                g3,
                &mut direct,
                h,
                true,
                View {
                    data: &dgh[t * g3..],
                    rs: (steps * g3) as isize,
                    cs: 1,
                },
                View {
                    data: w,
                    rs: wr as isize,
                    cs: 1,
                },
            );
            dh = direct;
        }
        ds0.copy_from_slice(&dh);
        let mut dw = vec![T::zero(); g3 * wr];
        matmul(
            g3,
            h,
            n * steps,
            &mut dw,
            wr,
            false,
            View::transposed(&dgh, g3),
            View::rows(&hprev, h),
        );
        for q in 0..n * steps {
            for j in 0..g3 {
                dw[j * wr + h] = dw[j * wr + h] + dgh[q * g3 + j];
            }
        }
        dw
    }
}
