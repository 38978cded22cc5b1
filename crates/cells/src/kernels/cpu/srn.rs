//! The fused Elman layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence: per step one product
//! `b + [x_t | h] [W_ih | W_hh]ᵀ` (the bias as its start) and one pass applying the activation,
//! returning `h'` per step. Backward: per step one product `dpre · [W_hh | W_ih]` giving
//! `dh_{t-1}` and `dx_t`; `dW_ih`, `dW_hh` and `db` summed a few steps at a time.
//!
//! With a leak rate a < 1 (the echo-state reservoir's leaky units) the step is
//! `h' = (1 − a)h + a·f(pre)`: the activations f(pre) are saved per step for the backward pass
//! (unless no input needs a gradient),
//! where `dpre = a·f'(pre)·G` and `dh = dpre·W_hh + (1 − a)G`, G the gradient reaching h'.

use super::gemm::time_major;
use super::lanes::wide_lanes;
use super::pack::{Lhs, Packed, Start, StepGradients};
use super::scratch::Scratch;
use super::{sigmoid, tanh, KernelFloat, Parts, RowKernel};

/// Inputs `x` (B, T, I), weights `[W_ih (H×I) | W_hh (H×H) | b (H)]`, state `h0` (B, H) →
/// `h` per step.
#[derive(Debug, Clone)]
pub struct SrnKernel {
    pub input: usize,
    pub hidden: usize,
    /// Logistic activation instead of tanh.
    pub logistic: bool,
    /// Leak rate a ∈ (0, 1): `h' = (1 − a)h + a·f(pre)`; `None` is a = 1 (the plain SRN).
    pub leak: Option<f64>,
}

impl SrnKernel {
    fn split<'a, T>(&self, w: &'a [T]) -> (&'a [T], &'a [T], &'a [T]) {
        let (i, h) = (self.input, self.hidden);
        let (w_ih, rest) = w.split_at(h * i);
        let (w_hh, b) = rest.split_at(h * h);
        (w_ih, w_hh, b)
    }
}

impl RowKernel for SrnKernel {
    const NAME: &'static str = "srn-layer";
    const AVX512: bool = true;
    fn input_width(&self) -> usize {
        self.input
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        self.hidden * (self.input + self.hidden + 1)
    }
    fn output_width(&self) -> usize {
        self.hidden
    }
    fn saved_width(&self) -> usize {
        if self.leak.is_some() {
            self.hidden
        } else {
            0
        }
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
        let (w_ih, w_hh, bias) = self.split(w);
        // [W_ih | W_hh]ᵀ ((I + H) × H) packed once, with the bias as the products' start.
        let wt = Packed::dense(
            i + h,
            h,
            |kk, c| {
                if kk < i {
                    w_ih[c * i + kk]
                } else {
                    w_hh[c * h + kk - i]
                }
            },
            Some(bias),
        );
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        let keep = !saved.is_empty();
        let mut hp: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        // The inputs step-major: a step's rows sit together.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut pt = Scratch::new(n * h);
        for t in 0..steps {
            // Pre-activations of this step: b + x_t W_ihᵀ + h W_hhᵀ, one pass.
            wt.product(
                n,
                Lhs::two(&xt[t * n * i..], i, &hp, h, i),
                Start::Bias,
                &mut pt,
                h,
            );
            let rows = pt
                .chunks_exact_mut(h.max(1))
                .zip(hp.chunks_exact_mut(h.max(1)));
            for (r, (p, s)) in rows.enumerate().take(n) {
                let q = (r * steps + t) * h;
                match self.leak {
                    // p: pre-activation → activation; s and the output: the new state.
                    None => activate(self.logistic, p, s, &mut out[q..q + h]),
                    Some(a) => {
                        let a = T::from(a).expect("a leak rate in the float type");
                        // p: pre-activation → activation, saved; s: h → (1 − a)h + a·f.
                        activate_only(self.logistic, p);
                        if keep {
                            saved[q..q + h].copy_from_slice(p);
                        }
                        leaky(a, p, s, &mut out[q..q + h]);
                    }
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
        let (w_ih, w_hh, _) = self.split(w);
        let n = ds0.len() / h.max(1);
        let hi = h + i;
        // [W_hh | W_ih] (H × (H + I)) packed once: per step one product gives the recurrent
        // part of dh_{t-1} and dx_t.
        let wp = Packed::dense(
            h,
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
        let mut prod = Scratch::new(n * hi);
        let mut dh = vec![T::zero(); n * h];
        // The pre-activation gradients and `[x | h_prev]` of each step, summed into the weight
        // gradients a few steps at a time.
        let mut sums = StepGradients::new(n, h, i + h, steps);
        let zero = vec![T::zero(); h];
        for t in (0..steps).rev() {
            let (dpre, xh) = sums.step();
            for r in 0..n {
                let b = b0 + r;
                let q = (r * steps + t) * h;
                let prev: &[T] = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &fwd.out[q - h..q]
                };
                let xr = &mut xh[r * hi..(r + 1) * hi];
                xr[..i].copy_from_slice(&x[(b * steps + t) * i..(b * steps + t + 1) * i]);
                xr[i..].copy_from_slice(prev);
                let pd = r * h;
                let gq = (b * steps + t) * h;
                match self.leak {
                    None => slope(
                        self.logistic,
                        [
                            &fwd.out[q..q + h],
                            &dh[r * h..(r + 1) * h],
                            &grad.out[gq..gq + h],
                        ],
                        &mut dpre[pd..pd + h],
                    ),
                    Some(a) => {
                        let a = T::from(a).expect("a leak rate in the float type");
                        // G = dh + g; dpre = a·f'·G; dh ← (1 − a)G, the product added below.
                        let dhr = &mut dh[r * h..(r + 1) * h];
                        for (d, g) in dhr.iter_mut().zip(&grad.out[gq..gq + h]) {
                            *d = *d + *g;
                        }
                        slope(
                            self.logistic,
                            [&fwd.saved[q..q + h], &*dhr, &zero],
                            &mut dpre[pd..pd + h],
                        );
                        for (dp, d) in dpre[pd..pd + h].iter_mut().zip(dhr.iter_mut()) {
                            *dp = *dp * a;
                            *d = *d * (T::one() - a);
                        }
                    }
                }
            }
            // [dh_{t-1} (recurrent part) | dx_t] = dpre_t · [W_hh | W_ih], every row at once.
            wp.product(n, Lhs::one(sums.last(), h), Start::Zero, &mut prod, hi);
            sums.done();
            for r in 0..n {
                let pr = &prod[r * hi..(r + 1) * hi];
                let dhr = &mut dh[r * h..(r + 1) * h];
                if self.leak.is_some() {
                    // dh holds (1 − a)G.
                    for (d, &p) in dhr.iter_mut().zip(&pr[..h]) {
                        *d = *d + p;
                    }
                } else {
                    dhr.copy_from_slice(&pr[..h]);
                }
                let q = r * steps + t;
                dx[q * i..(q + 1) * i].copy_from_slice(&pr[h..]);
            }
        }
        ds0.copy_from_slice(&dh);
        // [dW_ih | dW_hh | db] = Σ dpreᵀ [x | h_prev | 1] over every (step, row).
        let wc = sums.finish();
        let mut dw = vec![T::zero(); self.weights_len()];
        let (dw_ih, rest) = dw.split_at_mut(h * i);
        let (dw_hh, db) = rest.split_at_mut(h * h);
        for (row, src) in wc.chunks_exact(hi + 1).enumerate() {
            dw_ih[row * i..(row + 1) * i].copy_from_slice(&src[..i]);
            dw_hh[row * h..(row + 1) * h].copy_from_slice(&src[i..hi]);
            db[row] = src[hi];
        }
        dw
    }
}

/// `s = o = f(p)` element-wise (pre-activations in), f = σ or tanh.
#[inline(always)]
fn activate<T: KernelFloat>(logistic: bool, p: &[T], s: &mut [T], o: &mut [T]) {
    if logistic {
        wide_lanes(
            [p],
            [s, o],
            #[inline(always)]
            |[p], y| {
                let a = sigmoid(p);
                *y = [a, a];
            },
        );
    } else {
        wide_lanes(
            [p],
            [s, o],
            #[inline(always)]
            |[p], y| {
                let a = tanh(p);
                *y = [a, a];
            },
        );
    }
}

/// `p = f(p)` element-wise.
#[inline(always)]
fn activate_only<T: KernelFloat>(logistic: bool, p: &mut [T]) {
    if logistic {
        wide_lanes(
            [],
            [p],
            #[inline(always)]
            |[], y| y[0] = sigmoid(y[0]),
        );
    } else {
        wide_lanes(
            [],
            [p],
            #[inline(always)]
            |[], y| y[0] = tanh(y[0]),
        );
    }
}

/// `s = o = (1 − a)s + a·f` element-wise: the leaky update of the state.
#[inline(always)]
fn leaky<T: KernelFloat>(a: T, f: &[T], s: &mut [T], o: &mut [T]) {
    let keep = T::one() - a;
    wide_lanes(
        [f],
        [s, o],
        #[inline(always)]
        |[f], y| {
            let v = keep * y[0] + a * f;
            *y = [v, v];
        },
    );
}

/// `dpre = (dh + g) f'(pre)`, with f' from the activation `a`.
#[inline(always)]
fn slope<T: KernelFloat>(logistic: bool, src: [&[T]; 3], dpre: &mut [T]) {
    let one = T::one();
    if logistic {
        wide_lanes(
            src,
            [dpre],
            #[inline(always)]
            |[a, dh, g], y| y[0] = (dh + g) * a * (one - a),
        );
    } else {
        wide_lanes(
            src,
            [dpre],
            #[inline(always)]
            |[a, dh, g], y| y[0] = (dh + g) * (one - a * a),
        );
    }
}
