//! The fused GRU layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence. Per step, one product gives the pre-activations
//! `[r | z | x_n | g_n]` (4H) from `[x_t | h]` (r and z from both, the candidate's input part
//! `x_n` from x_t only and its recurrent part `g_n` from h only; every bias as the product's
//! start), then the passes `r = σ(·)`, `z = σ(·)`, `n = tanh(x_n + r ⊙ g_n)`,
//! `h' = n + z ⊙ (h − n)` (`g_n` includes `b_hn`, which must stay inside `r ⊙ (·)`), returning
//! `h'` and keeping `[r | z | n | g_n]` (4H) per step when a gradient is needed. Backward: per step
//! the gradients `[d_n | d_r | d_z | d_n·r]` and one product giving `dh_{t-1}` and `dx_t`; the
//! weight and bias gradients are summed a few steps at a time.

use super::gemm::time_major;
use super::lanes::wide_lanes;
use super::pack::{Group, Lhs, Packed, Start, StepGradients};
use super::scratch::Scratch;
use super::{sigmoid, tanh, KernelFloat, Parts, RowKernel};

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
    const AVX512: bool = true;
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

    fn can_skip_saved(&self) -> bool {
        true
    }
    fn overwrites_result(&self) -> bool {
        true
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
        let (g3, g4) = (3 * h, 4 * h);
        let [w_ih, w_hh, b_ih, b_hh] = self.split(w);
        // One product per step gives four column blocks: r and z from `[x_t | h]` and both
        // weights, the candidate's input part `x_n` from x_t only and its recurrent part `g_n`
        // from h only (it is scaled by r). Their biases start the sums.
        let groups = [
            Group {
                col: 0,
                cols: 2 * h,
                k0: 0,
                k1: i + h,
            },
            Group {
                col: 2 * h,
                cols: h,
                k0: 0,
                k1: i,
            },
            Group {
                col: g3,
                cols: h,
                k0: i,
                k1: i + h,
            },
        ];
        let bias: Vec<T> = (0..g4)
            .map(|c| match c / h.max(1) {
                0 | 1 => b_ih[c] + b_hh[c],
                2 => b_ih[c],
                _ => b_hh[c - h],
            })
            .collect();
        let wt = Packed::new(
            i + h,
            g4,
            &groups,
            |kk, c| {
                if c >= g3 {
                    w_hh[(c - h) * h + kk - i]
                } else if kk < i {
                    w_ih[c * i + kk]
                } else {
                    w_hh[c * h + kk - i]
                }
            },
            Some(&bias),
        );
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        let keep = !saved.is_empty();
        let mut hp: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        // The inputs step-major: a step's rows sit together.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut gt = Scratch::new(n * g4);
        for t in 0..steps {
            wt.product(
                n,
                Lhs::two(&xt[t * n * i..], i, &hp, h, i),
                Start::Bias,
                &mut gt,
                g4,
            );
            for r in 0..n {
                let q = r * steps + t;
                let (rz, ng) = gt[r * g4..(r + 1) * g4].split_at_mut(2 * h);
                let (gr, gz) = rz.split_at_mut(h);
                let (xn, gn) = ng.split_at(h);
                let (oh, hr) = (&mut out[q * h..(q + 1) * h], &mut hp[r * h..(r + 1) * h]);
                // The gates r and z first, then the candidate and the state: the chain of the
                // candidate's tanh then no longer follows theirs in every block.
                if keep {
                    let sv = &mut saved[q * 4 * h..(q + 1) * 4 * h];
                    let (sr, rest) = sv.split_at_mut(h);
                    let (sz, rest) = rest.split_at_mut(h);
                    let (sn, sg) = rest.split_at_mut(h);
                    gates([gr, gz], [&mut *sr, &mut *sz]);
                    cell_forward([sr, sz, xn, gn], [oh, sn, sg], hr);
                } else {
                    gates_in_place([gr, gz]);
                    cell_step([gr, gz, xn, gn], oh, hr);
                }
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
        let (g3, g4, hi) = (3 * h, 4 * h, h + i);
        let [w_ih, w_hh, _, _] = self.split(w);
        let n = ds0.len() / h.max(1);
        // Per (step, row) the gradients `[d_n | d_r | d_z | d_n·r]` (4H): those of the input
        // projections are the first three, those of `h W_hhᵀ + b_hh` the last three. One product
        // per step gives dh_{t-1} (from the last three and W_hh) and dx_t (from the first three
        // and W_ih), from `[W_hh | W_ih]` packed once.
        let groups = [
            Group {
                col: 0,
                cols: h,
                k0: h,
                k1: g4,
            },
            Group {
                col: h,
                cols: i,
                k0: 0,
                k1: g3,
            },
        ];
        let wp = Packed::new(
            g4,
            hi,
            &groups,
            |kk, c| {
                if c < h {
                    w_hh[(kk - h) * h + c]
                } else {
                    // Rows of W_ih in the order n, r, z.
                    let row = if kk < h { 2 * h + kk } else { kk - h };
                    w_ih[row * i + c - h]
                }
            },
            None,
        );
        let mut dh = vec![T::zero(); n * h];
        let mut direct = vec![T::zero(); n * h];
        let mut prod = Scratch::new(n * hi);
        // The gradients and `[x | h_prev]` of each step, summed into the weight gradients a few
        // steps at a time.
        let mut sums = StepGradients::new(n, g4, i + h, steps);
        for t in (0..steps).rev() {
            let (dg, xh) = sums.step();
            for r in 0..n {
                let (b, q) = (b0 + r, r * steps + t);
                let sv = &fwd.saved[q * 4 * h..(q + 1) * 4 * h];
                let gsrc = &grad.out[(b * steps + t) * h..(b * steps + t + 1) * h];
                let prev: &[T] = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &fwd.out[(q - 1) * h..q * h]
                };
                let xr = &mut xh[r * (i + h)..(r + 1) * (i + h)];
                xr[..i].copy_from_slice(&x[(b * steps + t) * i..(b * steps + t + 1) * i]);
                xr[i..].copy_from_slice(prev);
                let (dn, rest) = dg[r * g4..(r + 1) * g4].split_at_mut(h);
                let (dr, rest) = rest.split_at_mut(h);
                let (dz, dnr) = rest.split_at_mut(h);
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
                    [dn, dr, dz, dnr, &mut direct[r * h..(r + 1) * h]],
                );
            }
            // [dh_{t-1} − direct | dx_t] for every row at once.
            wp.product(n, Lhs::one(sums.last(), g4), Start::Zero, &mut prod, hi);
            sums.done();
            for r in 0..n {
                let pr = &prod[r * hi..(r + 1) * hi];
                let (dhr, dir) = (&mut dh[r * h..(r + 1) * h], &direct[r * h..(r + 1) * h]);
                for ((d, &p), &e) in dhr.iter_mut().zip(&pr[..h]).zip(dir) {
                    *d = e + p;
                }
                let q = r * steps + t;
                dx[q * i..(q + 1) * i].copy_from_slice(&pr[h..]);
            }
        }
        ds0.copy_from_slice(&dh);
        // All four blocks against `[x | h_prev | 1]` in one product (the n rows' recurrent part
        // and the n·r rows' input part are not needed).
        let wc = sums.finish();
        let mut dw = vec![T::zero(); self.weights_len()];
        let (dw_ih, rest) = dw.split_at_mut(g3 * i);
        let (dw_hh, rest) = rest.split_at_mut(g3 * h);
        let (db_ih, db_hh) = rest.split_at_mut(g3);
        for (row, src) in wc.chunks_exact(hi + 1).enumerate() {
            // Row `row` of the block [d_n | d_r | d_z | d_n·r]; `j` its unit.
            let (block, j) = (row / h, row % h);
            let (wx, wh, b) = (&src[..i], &src[i..hi], src[hi]);
            // Gate rows of W_ih / W_hh: r, z, n.
            let gate = match block {
                0 => 2,
                1 => 0,
                2 => 1,
                _ => 2,
            };
            let at = gate * h + j;
            if block < 3 {
                dw_ih[at * i..(at + 1) * i].copy_from_slice(wx);
                db_ih[at] = b;
            }
            if block > 0 {
                dw_hh[at * h..(at + 1) * h].copy_from_slice(wh);
                db_hh[at] = b;
            }
        }
        dw
    }
}

/// The gates `r`, `z` of one row: σ of their pre-activations (both biases included).
#[inline(always)]
fn gates<T: KernelFloat>(pre: [&[T]; 2], acts: [&mut [T]; 2]) {
    wide_lanes(
        pre,
        acts,
        #[inline(always)]
        |[r, z], y| *y = [sigmoid(r), sigmoid(z)],
    );
}

/// [`gates`] in place.
#[inline(always)]
fn gates_in_place<T: KernelFloat>(g: [&mut [T]; 2]) {
    wide_lanes(
        [],
        g,
        #[inline(always)]
        |[], y| *y = [sigmoid(y[0]), sigmoid(y[1])],
    );
}

/// The rest of the GRU step for one row: from `r`, `z`, `x_n + b_in` and `g_n + b_hn`, writes
/// `h'`, `n`, `g_n + b_hn` and updates the state.
#[inline(always)]
fn cell_forward<T: KernelFloat>(src: [&[T]; 4], dst: [&mut [T]; 3], hs: &mut [T]) {
    let [oh, on, og] = dst;
    wide_lanes(
        src,
        [hs, oh, on, og],
        #[inline(always)]
        |[r, z, xn, g], y| {
            let n = tanh(xn + r * g);
            let h = n + z * (y[0] - n);
            *y = [h, h, n, g];
        },
    );
}

/// [`cell_forward`] when nothing is saved: `h'` out and the state updated, with the same
/// operations.
#[inline(always)]
fn cell_step<T: KernelFloat>(src: [&[T]; 4], oh: &mut [T], hs: &mut [T]) {
    wide_lanes(
        src,
        [hs, oh],
        #[inline(always)]
        |[r, z, xn, g], y| {
            let n = tanh(xn + r * g);
            let h = n + z * (y[0] - n);
            *y = [h, h];
        },
    );
}

/// The element-wise GRU backward for one row and step: from the saved `r, z, n, g_n`, the
/// previous state, the gradient from step t + 1 and this step's output gradient, writes the
/// pre-activation gradients `d_n`, `d_r`, `d_z`, `d_n·r` (that of `g_n`) and the direct part of
/// the previous state's gradient.
#[inline(always)]
fn cell_backward<T: KernelFloat>(src: [&[T]; 7], dst: [&mut [T]; 5]) {
    let one = T::one();
    wide_lanes(
        src,
        dst,
        #[inline(always)]
        |[r, z, n, gn, prev, dh, gout], y| {
            let d = dh + gout;
            let dn = d * (one - z) * (one - n * n);
            let dz = d * (prev - n) * z * (one - z);
            let dr = dn * gn * r * (one - r);
            *y = [dn, dr, dz, dn * r, d * z];
        },
    );
}
