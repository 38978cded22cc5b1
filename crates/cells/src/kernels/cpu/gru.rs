//! The fused GRU layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence: `x W_ihᵀ` for every step as one product before the
//! recurrence (`b_ih` is added in the element-wise pass); per step one product `h W_hhᵀ` and one
//! fused pass
//! `r = σ(x_r + g_r)`, `z = σ(x_z + g_z)`, `n = tanh(x_n + r ⊙ g_n)`, `h' = n + z ⊙ (h − n)`
//! (the `g` include `b_hh`, which must stay inside `r ⊙ (·)`), returning `h'` and keeping
//! `[r | z | n | g_n]` (4H) per step. Backward: one product `dg · W_hh` per step, then `dW_ih`,
//! `dW_hh`, both biases and `dx` as single products over all steps.

use super::gemm::{matmul, project, project_backward, sample_major, time_major, transpose, View};
use super::{lanes, sigmoid, tanh, KernelFloat, Parts, RowKernel};

/// Inputs `x` (B, T, I), weights `[W_ih (3H×I) | W_hh (3H×H) | b_ih (3H) | b_hh (3H)]`, state
/// `h0` (B, H) → `h` per step.
#[derive(Debug, Clone)]
pub struct GruKernel {
    pub input: usize,
    pub hidden: usize,
}

impl GruKernel {
    fn split<'a, T>(&self, w: &'a [T]) -> [&'a [T]; 4] {
        let (g3, i, h) = (3 * self.hidden, self.input, self.hidden);
        let (w_ih, rest) = w.split_at(g3 * i);
        let (w_hh, rest) = rest.split_at(g3 * h);
        let (b_ih, b_hh) = rest.split_at(g3);
        [w_ih, w_hh, b_ih, b_hh]
    }
}

impl RowKernel for GruKernel {
    const NAME: &'static str = "gru-layer";
    fn input_width(&self) -> usize {
        self.input
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        3 * self.hidden * (self.input + self.hidden + 2)
    }
    fn output_width(&self) -> usize {
        self.hidden
    }
    fn saved_width(&self) -> usize {
        4 * self.hidden
    }

    #[inline(always)]
    fn forward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        steps: usize,
        b0: usize,
        res: Parts<&mut [T]>,
    ) {
        let (h, i) = (self.hidden, self.input);
        let g3 = 3 * h;
        let [w_ih, w_hh, b_ih, bias] = self.split(w);
        let w_t = transpose(w_hh, g3, h); // (H, g3)
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        let mut hp: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        // Input projections of every step, step-major: one product.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut xp = vec![T::zero(); n * steps * g3];
        project(n * steps, i, g3, &xt, w_ih, &mut xp);
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
                View::rows(&w_t, g3),
            );
            for r in 0..n {
                let q = r * steps + t;
                let x = &xp[(t * n + r) * g3..(t * n + r + 1) * g3];
                let g = &gh[r * g3..(r + 1) * g3];
                let sv = &mut saved[q * 4 * h..(q + 1) * 4 * h];
                let (sr, rest) = sv.split_at_mut(h);
                let (sz, rest) = rest.split_at_mut(h);
                let (sn, sg) = rest.split_at_mut(h);
                cell_forward(
                    [
                        &x[..h],
                        &x[h..2 * h],
                        &x[2 * h..],
                        &g[..h],
                        &g[h..2 * h],
                        &g[2 * h..],
                        &bias[..h],
                        &bias[h..2 * h],
                        &bias[2 * h..],
                        &b_ih[..h],
                        &b_ih[h..2 * h],
                        &b_ih[2 * h..],
                    ],
                    [&mut out[q * h..(q + 1) * h], sr, sz, sn, sg],
                    &mut hp[r * h..(r + 1) * h],
                );
            }
        }
    }

    #[inline(always)]
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
    ) -> Vec<T> {
        let (h, i) = (self.hidden, self.input);
        let g3 = 3 * h;
        let [w_ih, w_hh, _, _] = self.split(w);
        let n = ds0.len() / h;
        let mut dh = vec![T::zero(); n * h];
        // Gradients of the input projections and of `h W_hhᵀ + b_hh`, and the previous states,
        // every (step, row), step-major.
        let mut dgx = vec![T::zero(); n * steps * g3];
        let mut dgh = vec![T::zero(); n * steps * g3];
        let mut hprev = vec![T::zero(); n * steps * h];
        let mut direct = vec![T::zero(); n * h];
        for t in (0..steps).rev() {
            for r in 0..n {
                let (b, q) = (b0 + r, r * steps + t);
                let sv = &fwd.saved[q * 4 * h..(q + 1) * 4 * h];
                let gsrc = &grad.out[(b * steps + t) * h..(b * steps + t + 1) * h];
                let prev: &[T] = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &fwd.out[(q - 1) * h..q * h]
                };
                let p = t * n + r;
                hprev[p * h..(p + 1) * h].copy_from_slice(prev);
                let (dxa, rest) = dgx[p * g3..(p + 1) * g3].split_at_mut(h);
                let (dxb, dxc) = rest.split_at_mut(h);
                let (dga, rest) = dgh[p * g3..(p + 1) * g3].split_at_mut(h);
                let (dgb, dgc) = rest.split_at_mut(h);
                cell_backward(
                    [
                        &sv[..h],
                        &sv[h..2 * h],
                        &sv[2 * h..3 * h],
                        &sv[3 * h..],
                        prev,
                        &dh[r * h..(r + 1) * h],
                        gsrc,
                    ],
                    [
                        dxa,
                        dxb,
                        dxc,
                        dga,
                        dgb,
                        dgc,
                        &mut direct[r * h..(r + 1) * h],
                    ],
                );
            }
            // dh_{t-1} = direct + dg_t · W_hh
            matmul(
                n,
                h,
                g3,
                &mut direct,
                h,
                true,
                View::rows(&dgh[t * n * g3..(t + 1) * n * g3], g3),
                View::rows(w_hh, h),
            );
            std::mem::swap(&mut dh, &mut direct);
        }
        ds0.copy_from_slice(&dh);
        let mut dw = vec![T::zero(); self.weights_len()];
        let (dw_ih, rest) = dw.split_at_mut(g3 * i);
        let (dw_hh, rest) = rest.split_at_mut(g3 * h);
        let (db_ih, db_hh) = rest.split_at_mut(g3);
        // dW_hh and db_hh: the projection's gradient with the previous states as its inputs.
        project_backward(n * steps, h, g3, &hprev, w_hh, &dgh, dw_hh, db_hh, None);
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut dxt = vec![T::zero(); n * steps * i];
        project_backward(
            n * steps,
            i,
            g3,
            &xt,
            w_ih,
            &dgx,
            dw_ih,
            db_ih,
            Some(&mut dxt),
        );
        sample_major(&dxt, n, steps, i, dx);
        dw
    }
}

/// The element-wise GRU step for one row: from `x_r, x_z, x_n` (without `b_ih`), `g_r, g_z, g_n`
/// (without `b_hh`), `b_hh` and `b_ih` in three parts each, writes `h'`, `r`, `z`, `n`, `g_n + b_hn` and updates the
/// state.
#[inline(always)]
fn cell_forward<T: KernelFloat>(src: [&[T]; 12], dst: [&mut [T]; 5], hs: &mut [T]) {
    let [oh, or, oz, on, og] = dst;
    lanes(
        src,
        [hs, oh, or, oz, on, og],
        #[inline(always)]
        |[xr, xz, xn, gr, gz, gn, br, bz, bn, cr, cz, cn], y| {
            let r = sigmoid(xr + cr + gr + br);
            let z = sigmoid(xz + cz + gz + bz);
            let g = gn + bn;
            let n = tanh(xn + cn + r * g);
            let h = n + z * (y[0] - n);
            *y = [h, h, r, z, n, g];
        },
    );
}

/// The element-wise GRU backward for one row and step: from the saved `r, z, n, g_n`, the
/// previous state, the gradient from step t + 1 and this step's output gradient, writes the
/// input-projection gradients, the gradients of `h W_hhᵀ + b_hh` and the direct part of the
/// previous state's gradient.
#[inline(always)]
fn cell_backward<T: KernelFloat>(src: [&[T]; 7], dst: [&mut [T]; 7]) {
    let one = T::one();
    lanes(
        src,
        dst,
        #[inline(always)]
        |[r, z, n, gn, prev, dh, gout], y| {
            let d = dh + gout;
            let dn = d * (one - z) * (one - n * n);
            let dz = d * (prev - n) * z * (one - z);
            let dr = dn * gn * r * (one - r);
            *y = [dr, dz, dn, dr, dz, dn * r, d * z];
        },
    );
}
