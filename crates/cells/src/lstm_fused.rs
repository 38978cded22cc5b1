//! The fused LSTM recurrence on the CPU, with its own backward pass.
//!
//! The input projection of every step, `xp = x W_ihᵀ + b_ih + b_hh` (B, T, 4H), is one matrix
//! product done by Candle before this op (so autograd handles `W_ih` and the biases). The op then
//! runs the recurrence: per step one product `h W_hhᵀ` and one fused element-wise pass
//! (gates i, f, g, o, cell and hidden state). It returns (B, T, 6H): per step `h`, `c` and the
//! gate activations `i, f, g, o`, which the backward pass reuses. Backward walks the steps in
//! reverse with one product `dgates · W_hh` per step, and accumulates `dW_hh` after the loop as a
//! single product over all steps. The batch is split over threads for the whole sequence.

use crate::cpu_gemm::{matmul, View};
use crate::fused::{sigmoid, tanh, KernelFloat, RowKernel};

/// Inputs `xp` (B, T, 4H), weights `W_hh` (4H, H), state `[h0 | c0]` (B, 2H) → per step
/// `[h | c | i | f | g | o]` (6H).
#[derive(Debug, Clone)]
pub struct LstmKernel {
    pub hidden: usize,
}

impl RowKernel for LstmKernel {
    const NAME: &'static str = "lstm-sequence";
    fn input_width(&self) -> usize {
        4 * self.hidden
    }
    fn state_width(&self) -> usize {
        2 * self.hidden
    }
    fn weights_len(&self) -> usize {
        4 * self.hidden * self.hidden
    }
    fn saved_width(&self) -> usize {
        6 * self.hidden
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
        let g4 = 4 * h;
        let n = out.len() / (steps * 6 * h);
        let mut hp: Vec<T> = (0..n)
            .flat_map(|r| s0[(b0 + r) * 2 * h..(b0 + r) * 2 * h + h].to_vec())
            .collect();
        let mut cp: Vec<T> = (0..n)
            .flat_map(|r| s0[(b0 + r) * 2 * h + h..(b0 + r + 1) * 2 * h].to_vec())
            .collect();
        let mut gates = vec![T::zero(); n * g4];
        for t in 0..steps {
            for r in 0..n {
                let src = ((b0 + r) * steps + t) * g4;
                gates[r * g4..(r + 1) * g4].copy_from_slice(&xp[src..src + g4]);
            }
            matmul(
                n,
                g4,
                h,
                &mut gates,
                g4,
                true,
                View::rows(&hp, h),
                View::transposed(w, h),
            );
            for r in 0..n {
                let gr = &gates[r * g4..(r + 1) * g4];
                let o = &mut out[(r * steps + t) * 6 * h..(r * steps + t + 1) * 6 * h];
                let (oh, rest) = o.split_at_mut(h);
                let (oc, rest) = rest.split_at_mut(h);
                let (oi, rest) = rest.split_at_mut(h);
                let (of, rest) = rest.split_at_mut(h);
                let (og, oo) = rest.split_at_mut(h);
                let (gi, gf, gg, go) = (&gr[..h], &gr[h..2 * h], &gr[2 * h..3 * h], &gr[3 * h..]);
                let (cr, hr) = (&mut cp[r * h..(r + 1) * h], &mut hp[r * h..(r + 1) * h]);
                // Equal lengths let the compiler drop bounds checks and vectorize the loop.
                assert!(
                    gi.len() == h
                        && gf.len() == h
                        && gg.len() == h
                        && go.len() == h
                        && oo.len() == h
                );
                assert!(
                    oh.len() == h
                        && oc.len() == h
                        && oi.len() == h
                        && of.len() == h
                        && og.len() == h
                );
                assert!(cr.len() == h && hr.len() == h);
                for j in 0..h {
                    let i = sigmoid(gi[j]);
                    let f = sigmoid(gf[j]);
                    let g = tanh(gg[j]);
                    let o_ = sigmoid(go[j]);
                    let c = f * cr[j] + i * g;
                    let hn = o_ * tanh(c);
                    oh[j] = hn;
                    oc[j] = c;
                    oi[j] = i;
                    of[j] = f;
                    og[j] = g;
                    oo[j] = o_;
                    cr[j] = c;
                    hr[j] = hn;
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
        dxp: &mut [T],
        ds0: &mut [T],
    ) -> Vec<T> {
        let h = self.hidden;
        let g4 = 4 * h;
        let n = ds0.len() / (2 * h);
        let (mut dh, mut dc) = (vec![T::zero(); n * h], vec![T::zero(); n * h]);
        let mut dh_prev = vec![T::zero(); n * h];
        // Previous hidden state of every (row, step), for dW_hh = Σ dgatesᵀ h_prev.
        let mut hprev = vec![T::zero(); n * steps * h];
        for t in (0..steps).rev() {
            for r in 0..n {
                let b = b0 + r;
                let o = &saved[(r * steps + t) * 6 * h..(r * steps + t + 1) * 6 * h];
                let gsrc = &grad[(b * steps + t) * 6 * h..(b * steps + t + 1) * 6 * h];
                let (prev_h, prev_c): (&[T], &[T]) = if t == 0 {
                    (
                        &s0[b * 2 * h..b * 2 * h + h],
                        &s0[b * 2 * h + h..(b + 1) * 2 * h],
                    )
                } else {
                    let p = &saved[(r * steps + t - 1) * 6 * h..(r * steps + t) * 6 * h];
                    (&p[..h], &p[h..2 * h])
                };
                hprev[(r * steps + t) * h..(r * steps + t + 1) * h].copy_from_slice(prev_h);
                let dg = &mut dxp[(r * steps + t) * g4..(r * steps + t + 1) * g4];
                for j in 0..h {
                    let k = r * h + j;
                    let (c, i, f, g, og) = (
                        o[h + j],
                        o[2 * h + j],
                        o[3 * h + j],
                        o[4 * h + j],
                        o[5 * h + j],
                    );
                    let dhj = dh[k] + gsrc[j];
                    let tc = tanh(c);
                    let dcj = dc[k] + gsrc[h + j] + dhj * og * (T::one() - tc * tc);
                    dg[j] = dcj * g * i * (T::one() - i);
                    dg[h + j] = dcj * prev_c[j] * f * (T::one() - f);
                    dg[2 * h + j] = dcj * i * (T::one() - g * g);
                    dg[3 * h + j] = dhj * tc * og * (T::one() - og);
                    dc[k] = dcj * f;
                }
            }
            // dh_{t-1} = dgates_t · W_hh for every row at once.
            let dg_t = &dxp[t * g4..];
            matmul(
                n,
                h,
                g4,
                &mut dh_prev,
                h,
                false,
                View {
                    data: dg_t,
                    rs: (steps * g4) as isize,
                    cs: 1,
                },
                View::rows(w, h),
            );
            std::mem::swap(&mut dh, &mut dh_prev);
        }
        for r in 0..n {
            ds0[r * 2 * h..r * 2 * h + h].copy_from_slice(&dh[r * h..(r + 1) * h]);
            ds0[r * 2 * h + h..(r + 1) * 2 * h].copy_from_slice(&dc[r * h..(r + 1) * h]);
        }
        let mut dw = vec![T::zero(); g4 * h];
        matmul(
            g4,
            h,
            n * steps,
            &mut dw,
            h,
            false,
            View::transposed(dxp, g4),
            View::rows(&hprev, h),
        );
        dw
    }
}
