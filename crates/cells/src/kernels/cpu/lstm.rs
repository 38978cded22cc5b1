//! The fused LSTM layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence. The input projection of every step, `x W_ihᵀ`, is
//! one matrix product before the recurrence; then each step is one product `h W_hhᵀ` added in
//! place and one fused element-wise pass that adds `b = b_ih + b_hh` and forms the gates i, f, g,
//! o, the cell and the hidden state. The op returns the hidden states (B, T, H) and the last cell state
//! (B, H), and keeps per step `c` and the gate activations `i, f, g, o` (5H) for the backward
//! pass. Backward walks the steps in reverse with one product `dgates · W_hh` per step, then
//! forms `dW_ih`, `dW_hh`, `db` and `dx` as single products over all steps. The batch is split
//! over threads for the whole sequence.

use super::gemm::{matmul, project, project_backward, sample_major, time_major, transpose, View};
use super::{lane_blocks, lanes, sigmoid, tanh, KernelFloat, Parts, RowKernel, LANES};

/// Inputs `x` (B, T, I), weights `[W_ih (4H×I) | W_hh (4H×H) | b (4H)]`, state `[h0 | c0]`
/// (B, 2H) → `h` per step and the last `c`.
#[derive(Debug, Clone)]
pub struct LstmKernel {
    pub input: usize,
    pub hidden: usize,
}

impl LstmKernel {
    fn split<'a, T>(&self, w: &'a [T]) -> (&'a [T], &'a [T], &'a [T]) {
        let (g4, i, h) = (4 * self.hidden, self.input, self.hidden);
        let (w_ih, rest) = w.split_at(g4 * i);
        let (w_hh, b) = rest.split_at(g4 * h);
        (w_ih, w_hh, b)
    }
}

impl RowKernel for LstmKernel {
    const NAME: &'static str = "lstm-layer";
    fn input_width(&self) -> usize {
        self.input
    }
    fn state_width(&self) -> usize {
        2 * self.hidden
    }
    fn weights_len(&self) -> usize {
        4 * self.hidden * (self.input + self.hidden + 1)
    }
    fn output_width(&self) -> usize {
        self.hidden
    }
    fn final_width(&self) -> usize {
        self.hidden
    }
    fn saved_width(&self) -> usize {
        5 * self.hidden
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
        let g4 = 4 * h;
        let (w_ih, w_hh, bias) = self.split(w);
        let w_t = transpose(w_hh, g4, h); // (H, g4)
        let Parts { out, fin, saved } = res;
        let n = fin.len() / h;
        let mut hp: Vec<T> = (0..n)
            .flat_map(|r| s0[(b0 + r) * 2 * h..(b0 + r) * 2 * h + h].to_vec())
            .collect();
        let cp = fin;
        for r in 0..n {
            cp[r * h..(r + 1) * h].copy_from_slice(&s0[(b0 + r) * 2 * h + h..(b0 + r + 1) * 2 * h]);
        }
        // Pre-activations of every step of these rows, step-major: one product.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut gates = vec![T::zero(); n * steps * g4];
        project(n * steps, i, g4, &xt, w_ih, &mut gates);
        for t in 0..steps {
            let gt = &mut gates[t * n * g4..(t + 1) * n * g4];
            matmul(
                n,
                g4,
                h,
                gt,
                g4,
                true,
                View::rows(&hp, h),
                View::rows(&w_t, g4),
            );
            for r in 0..n {
                let q = r * steps + t;
                let gr = &gt[r * g4..(r + 1) * g4];
                let oh = &mut out[q * h..(q + 1) * h];
                let sv = &mut saved[q * 5 * h..(q + 1) * 5 * h];
                let (oc, rest) = sv.split_at_mut(h);
                let (oi, rest) = rest.split_at_mut(h);
                let (of, rest) = rest.split_at_mut(h);
                let (og, oo) = rest.split_at_mut(h);
                let (gi, gf, gg, go) = (&gr[..h], &gr[h..2 * h], &gr[2 * h..3 * h], &gr[3 * h..]);
                let (cr, hr) = (&mut cp[r * h..(r + 1) * h], &mut hp[r * h..(r + 1) * h]);
                let bs = [
                    &bias[..h],
                    &bias[h..2 * h],
                    &bias[2 * h..3 * h],
                    &bias[3 * h..],
                ];
                cell_forward([gi, gf, gg, go], bs, [oh, oc, oi, of, og, oo], cr, hr);
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
        let g4 = 4 * h;
        let (w_ih, w_hh, _) = self.split(w);
        let n = ds0.len() / (2 * h);
        let mut dh = vec![T::zero(); n * h];
        // The last cell state is visible: its gradient starts the recursion.
        let mut dc = grad.fin[b0 * h..(b0 + n) * h].to_vec();
        let mut dh_prev = vec![T::zero(); n * h];
        // Gate gradients and previous hidden states of every (step, row), step-major.
        let mut dg = vec![T::zero(); n * steps * g4];
        let mut hprev = vec![T::zero(); n * steps * h];
        for t in (0..steps).rev() {
            for r in 0..n {
                let (b, q) = (b0 + r, r * steps + t);
                let sv = &fwd.saved[q * 5 * h..(q + 1) * 5 * h];
                let gq = b * steps + t;
                let gh = &grad.out[gq * h..(gq + 1) * h];
                let (prev_h, prev_c): (&[T], &[T]) = if t == 0 {
                    (
                        &s0[b * 2 * h..b * 2 * h + h],
                        &s0[b * 2 * h + h..(b + 1) * 2 * h],
                    )
                } else {
                    (
                        &fwd.out[(q - 1) * h..q * h],
                        &fwd.saved[(q - 1) * 5 * h..(q - 1) * 5 * h + h],
                    )
                };
                let p = t * n + r;
                hprev[p * h..(p + 1) * h].copy_from_slice(prev_h);
                let dgq = &mut dg[p * g4..(p + 1) * g4];
                let (dhr, dcr) = (&dh[r * h..(r + 1) * h], &mut dc[r * h..(r + 1) * h]);
                cell_backward(sv, gh, prev_c, dhr, dcr, dgq);
            }
            // dh_{t-1} = dgates_t · W_hh for every row at once.
            matmul(
                n,
                h,
                g4,
                &mut dh_prev,
                h,
                false,
                View::rows(&dg[t * n * g4..(t + 1) * n * g4], g4),
                View::rows(w_hh, h),
            );
            std::mem::swap(&mut dh, &mut dh_prev);
        }
        for r in 0..n {
            ds0[r * 2 * h..r * 2 * h + h].copy_from_slice(&dh[r * h..(r + 1) * h]);
            ds0[r * 2 * h + h..(r + 1) * 2 * h].copy_from_slice(&dc[r * h..(r + 1) * h]);
        }
        let mut dw = vec![T::zero(); self.weights_len()];
        let (dw_ih, rest) = dw.split_at_mut(g4 * i);
        let (dw_hh, db) = rest.split_at_mut(g4 * h);
        matmul(
            g4,
            h,
            n * steps,
            dw_hh,
            h,
            false,
            View::transposed(&dg, g4),
            View::rows(&hprev, h),
        );
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut dxt = vec![T::zero(); n * steps * i];
        project_backward(n * steps, i, g4, &xt, w_ih, &dg, dw_ih, db, Some(&mut dxt));
        sample_major(&dxt, n, steps, i, dx);
        dw
    }
}

/// The element-wise LSTM step for one row: gate pre-activations and their biases in,
/// `[h | c | i | f | g | o]` out, and the running `c` and `h` updated.
#[inline(always)]
fn cell_forward<T: KernelFloat>(
    g: [&[T]; 4],
    b: [&[T]; 4],
    o: [&mut [T]; 6],
    c: &mut [T],
    hs: &mut [T],
) {
    let [oh, oc, oi, of, og, oo] = o;
    let ([gi, gf, gg, go], [bi, bf, bg, bo]) = (g, b);
    lane_blocks(
        [gi, gf, gg, go, bi, bf, bg, bo],
        [c, hs, oh, oc, oi, of, og, oo],
        #[inline(always)]
        |x, y| {
            for l in 0..LANES {
                let i = sigmoid(x[0][l] + x[4][l]);
                let f = sigmoid(x[1][l] + x[5][l]);
                let g = tanh(x[2][l] + x[6][l]);
                let o = sigmoid(x[3][l] + x[7][l]);
                let c = f * y[0][l] + i * g;
                let h = o * tanh(c);
                y[0][l] = c;
                y[1][l] = h;
                y[2][l] = h;
                y[3][l] = c;
                y[4][l] = i;
                y[5][l] = f;
                y[6][l] = g;
                y[7][l] = o;
            }
        },
    );
}

/// The element-wise LSTM backward for one row and step: from the saved `[c | i | f | g | o]`,
/// the gradient of this step's output `h`, the previous cell state and the
/// gradients flowing back from step t + 1, writes the gate pre-activation gradients and updates
/// `dc` in place.
#[inline(always)]
fn cell_backward<T: KernelFloat>(
    saved: &[T],
    gh: &[T],
    c_prev: &[T],
    dh: &[T],
    dc: &mut [T],
    dg: &mut [T],
) {
    let h = dc.len();
    let (c, i, f, g, og) = (
        &saved[..h],
        &saved[h..2 * h],
        &saved[2 * h..3 * h],
        &saved[3 * h..4 * h],
        &saved[4 * h..5 * h],
    );
    let (di, rest) = dg[..4 * h].split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dgg, do_) = rest.split_at_mut(h);
    let one = T::one();
    lanes(
        [c, i, f, g, og, gh, c_prev, dh],
        [dc, di, df, dgg, do_],
        #[inline(always)]
        |[c, i, f, g, o, gh, c_prev, dh], y| {
            let dh = dh + gh;
            let tc = tanh(c);
            let dc = y[0] + dh * o * (one - tc * tc);
            *y = [
                dc * f,
                dc * g * i * (one - i),
                dc * c_prev * f * (one - f),
                dc * i * (one - g * g),
                dh * tc * o * (one - o),
            ];
        },
    );
}
