//! The fused LSTM layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence. Per step, one product gives the pre-activations of
//! the four gates, `b + [x_t | h] [W_ih | W_hh]ᵀ` (the weights packed once per call, the bias as
//! the product's start; see `pack`), then two element-wise passes form the gates i, f, g, o and
//! the cell and hidden state. The op returns the hidden states (B, T, H) and the last cell state
//! (B, H), and keeps per step `c` and the gate activations `i, f, g, o` (5H) for the backward
//! pass, unless no input needs a gradient (then nothing is kept). Backward walks the steps in
//! reverse: one element-wise pass gives the gate gradients, one product
//! `dgates · [W_hh | W_ih]` gives both `dh_{t-1}` and `dx_t`, and `dW_ih`, `dW_hh`, `db` are summed
//! a few steps at a time as `dgatesᵀ [x | h_prev | 1]`. The batch is split over threads for the
//! whole sequence.

use super::gemm::time_major;
use super::lane_blocks;
use super::lanes::{wide_lanes, WIDE};
use super::pack::{Lhs, Packed, Start, StepGradients};
use super::scratch::Scratch;
use super::{sigmoid, tanh, KernelFloat, Parts, RowKernel};

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
    const AVX512: bool = true;
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
        let g4 = 4 * h;
        let (w_ih, w_hh, bias) = self.split(w);
        // [W_ih | W_hh]ᵀ ((I + H) × 4H) packed once, with the bias as the products' start.
        let wt = Packed::dense(
            i + h,
            g4,
            |kk, c| {
                if kk < i {
                    w_ih[c * i + kk]
                } else {
                    w_hh[c * h + kk - i]
                }
            },
            Some(bias),
        );
        let Parts { out, fin, saved } = res;
        let n = fin.len() / h.max(1);
        let keep = !saved.is_empty();
        let mut hp: Vec<T> = (0..n)
            .flat_map(|r| s0[(b0 + r) * 2 * h..(b0 + r) * 2 * h + h].iter().copied())
            .collect();
        let cp = fin;
        for r in 0..n {
            cp[r * h..(r + 1) * h].copy_from_slice(&s0[(b0 + r) * 2 * h + h..(b0 + r + 1) * 2 * h]);
        }
        // The inputs step-major: a step's rows sit together.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut gt = Scratch::new(n * g4);
        for t in 0..steps {
            // Pre-activations of this step: b + x_t W_ihᵀ + h W_hhᵀ, one pass.
            wt.product(
                n,
                Lhs::two(&xt[t * n * i..], i, &hp, h, i),
                Start::Bias,
                &mut gt,
                g4,
            );
            for r in 0..n {
                let q = r * steps + t;
                let gr = &mut gt[r * g4..(r + 1) * g4];
                let oh = &mut out[q * h..(q + 1) * h];
                let (cr, hr) = (&mut cp[r * h..(r + 1) * h], &mut hp[r * h..(r + 1) * h]);
                // The gates first, then the cell: in one pass the long chain of the cell's tanh
                // came after the gates' in every block and left the CPU waiting on it.
                if keep {
                    let sv = &mut saved[q * 5 * h..(q + 1) * 5 * h];
                    let (oc, acts) = sv.split_at_mut(h);
                    gates(gr, acts);
                    cell(acts, [cr, hr, oh], Some(oc));
                } else {
                    gates_in_place(gr);
                    cell(gr, [cr, hr, oh], None);
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
        let (g4, hi) = (4 * h, h + i);
        let (w_ih, w_hh, _) = self.split(w);
        let n = ds0.len() / (2 * h).max(1);
        // [W_hh | W_ih] (4H × (H + I)) packed once: per step one product gives dh_{t-1} and dx_t.
        let wp = Packed::dense(
            g4,
            hi,
            |kk, c| {
                if c < h {
                    w_hh[kk * h + c]
                } else {
                    w_ih[kk * i + c - h]
                }
            },
            None,
        );
        let mut dh = vec![T::zero(); n * h];
        // The last cell state is visible: its gradient starts the recursion.
        let mut dc = grad.fin[b0 * h..(b0 + n) * h].to_vec();
        let mut prod = Scratch::new(n * hi);
        // The gate gradients and `[x | h_prev]` of each step, summed into the weight gradients a
        // few steps at a time.
        let mut sums = StepGradients::new(n, g4, i + h, steps);
        for t in (0..steps).rev() {
            let (dg, xh) = sums.step();
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
                let xr = &mut xh[r * hi..(r + 1) * hi];
                xr[..i].copy_from_slice(&x[gq * i..(gq + 1) * i]);
                xr[i..].copy_from_slice(prev_h);
                let dgq = &mut dg[r * g4..(r + 1) * g4];
                let (dhr, dcr) = (&dh[r * h..(r + 1) * h], &mut dc[r * h..(r + 1) * h]);
                cell_backward(sv, gh, prev_c, dhr, dcr, dgq);
            }
            // [dh_{t-1} | dx_t] = dgates_t · [W_hh | W_ih] for every row at once.
            wp.product(n, Lhs::one(sums.last(), g4), Start::Zero, &mut prod, hi);
            sums.done();
            for r in 0..n {
                let pr = &prod[r * hi..(r + 1) * hi];
                dh[r * h..(r + 1) * h].copy_from_slice(&pr[..h]);
                let q = r * steps + t;
                dx[q * i..(q + 1) * i].copy_from_slice(&pr[h..]);
            }
        }
        for r in 0..n {
            ds0[r * 2 * h..r * 2 * h + h].copy_from_slice(&dh[r * h..(r + 1) * h]);
            ds0[r * 2 * h + h..(r + 1) * 2 * h].copy_from_slice(&dc[r * h..(r + 1) * h]);
        }
        // [dW_ih | dW_hh | db] = Σ dgatesᵀ [x | h_prev | 1] over every (step, row).
        let wc = sums.finish();
        let mut dw = vec![T::zero(); self.weights_len()];
        let (dw_ih, rest) = dw.split_at_mut(g4 * i);
        let (dw_hh, db) = rest.split_at_mut(g4 * h);
        for (row, src) in wc.chunks_exact(hi + 1).enumerate() {
            dw_ih[row * i..(row + 1) * i].copy_from_slice(&src[..i]);
            dw_hh[row * h..(row + 1) * h].copy_from_slice(&src[i..hi]);
            db[row] = src[hi];
        }
        dw
    }
}

/// The gate activations of one row: `[i | f | g | o]` = σ, σ, tanh, σ of the pre-activations
/// `pre` (biases included), into `acts`.
#[inline(always)]
fn gates<T: KernelFloat>(pre: &[T], acts: &mut [T]) {
    let h = pre.len() / 4;
    let (ai, rest) = acts.split_at_mut(h);
    let (af, rest) = rest.split_at_mut(h);
    let (ag, ao) = rest.split_at_mut(h);
    let p = [
        &pre[..h],
        &pre[h..2 * h],
        &pre[2 * h..3 * h],
        &pre[3 * h..4 * h],
    ];
    wide_lanes(
        p,
        [ai, af, ag, ao],
        #[inline(always)]
        |[i, f, g, o], y| *y = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)],
    );
}

/// [`gates`] in place.
#[inline(always)]
fn gates_in_place<T: KernelFloat>(g: &mut [T]) {
    let h = g.len() / 4;
    let (gi, rest) = g.split_at_mut(h);
    let (gf, rest) = rest.split_at_mut(h);
    let (gg, go) = rest.split_at_mut(h);
    wide_lanes(
        [],
        [gi, gf, gg, &mut go[..h]],
        #[inline(always)]
        |[], y| *y = [sigmoid(y[0]), sigmoid(y[1]), tanh(y[2]), sigmoid(y[3])],
    );
}

/// The cell of one row from its gates `[i | f | g | o]`: `c ← f·c + i·g`, `h = o·tanh(c)` into
/// the state `c`, `h` and the output, and `c` into `saved_c` when given.
#[inline(always)]
fn cell<T: KernelFloat>(acts: &[T], state: [&mut [T]; 3], saved_c: Option<&mut [T]>) {
    let h = state[0].len();
    let a = [
        &acts[..h],
        &acts[h..2 * h],
        &acts[2 * h..3 * h],
        &acts[3 * h..4 * h],
    ];
    let [c, hs, oh] = state;
    match saved_c {
        Some(sc) => lane_blocks(
            a,
            [c, hs, oh, sc],
            #[inline(always)]
            |x: &[[T; WIDE]; 4], y: &mut [[T; WIDE]; 4]| {
                for l in 0..WIDE {
                    let c = x[1][l] * y[0][l] + x[0][l] * x[2][l];
                    let h = x[3][l] * tanh(c);
                    (y[0][l], y[1][l], y[2][l], y[3][l]) = (c, h, h, c);
                }
            },
        ),
        None => lane_blocks(
            a,
            [c, hs, oh],
            #[inline(always)]
            |x: &[[T; WIDE]; 4], y: &mut [[T; WIDE]; 3]| {
                for l in 0..WIDE {
                    let c = x[1][l] * y[0][l] + x[0][l] * x[2][l];
                    let h = x[3][l] * tanh(c);
                    (y[0][l], y[1][l], y[2][l]) = (c, h, h);
                }
            },
        ),
    }
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
    wide_lanes(
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
