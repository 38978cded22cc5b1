//! The fused Elman layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence: `x W_ihᵀ` for every step as one product, then per
//! step one product `h W_hhᵀ` added in place and one pass adding `b = b_ih + b_hh` and applying
//! the activation,
//! returning `h'` per step. Backward: one product `dpre · W_hh` per step, then `dW_ih`, `dW_hh`,
//! `db` and `dx` as single products over all steps.
//!
//! With a leak rate a < 1 (the echo-state reservoir's leaky units) the step is
//! `h' = (1 − a)h + a·f(pre)`: the activations f(pre) are saved per step for the backward pass,
//! where `dpre = a·f'(pre)·G` and `dh = dpre·W_hh + (1 − a)G`, G the gradient reaching h'.

use super::gemm::{matmul, project, project_backward, sample_major, time_major, transpose, View};
use super::{lanes, sigmoid, tanh, KernelFloat, Parts, RowKernel};

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
        let w_t = transpose(w_hh, h, h); // (H, h)
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        let mut hp: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        // Pre-activations of every step, step-major: one product.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut pre = vec![T::zero(); n * steps * h];
        let mut act = vec![T::zero(); h];
        project(n * steps, i, h, &xt, w_ih, &mut pre);
        for t in 0..steps {
            let pt = &mut pre[t * n * h..(t + 1) * n * h];
            matmul(
                n,
                h,
                h,
                pt,
                h,
                true,
                View::rows(&hp, h),
                View::rows(&w_t, h),
            );
            match self.leak {
                None => {
                    for (o, s) in pt.chunks_exact_mut(h).zip(hp.chunks_exact_mut(h)) {
                        activate(self.logistic, bias, o, s);
                    }
                }
                Some(a) => {
                    let a = T::from(a).expect("a leak rate in the float type");
                    let rows = pt.chunks_exact_mut(h).zip(hp.chunks_exact_mut(h));
                    for (r, (o, s)) in rows.enumerate() {
                        // o: pre-activation → activation, saved; s: h → (1 − a)h + a·f.
                        activate(self.logistic, bias, o, &mut act);
                        let q = (r * steps + t) * h;
                        saved[q..q + h].copy_from_slice(&act);
                        leaky(a, &act, s);
                        o.copy_from_slice(s);
                    }
                }
            }
        }
        sample_major(&pre, n, steps, h, out);
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
        let n = ds0.len() / h;
        let mut dh = vec![T::zero(); n * h];
        let mut dpre = vec![T::zero(); n * steps * h];
        let mut hprev = vec![T::zero(); n * steps * h];
        for t in (0..steps).rev() {
            for r in 0..n {
                let b = b0 + r;
                let q = (r * steps + t) * h;
                let prev: &[T] = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &fwd.out[q - h..q]
                };
                let p = (t * n + r) * h;
                hprev[p..p + h].copy_from_slice(prev);
                let gq = (b * steps + t) * h;
                match self.leak {
                    None => slope(
                        self.logistic,
                        [
                            &fwd.out[q..q + h],
                            &dh[r * h..(r + 1) * h],
                            &grad.out[gq..gq + h],
                        ],
                        &mut dpre[p..p + h],
                    ),
                    Some(a) => {
                        let a = T::from(a).expect("a leak rate in the float type");
                        // G = dh + g; dpre = a·f'·G; dh ← (1 − a)G, the product added below.
                        let dhr = &mut dh[r * h..(r + 1) * h];
                        for (d, g) in dhr.iter_mut().zip(&grad.out[gq..gq + h]) {
                            *d = *d + *g;
                        }
                        let zero = vec![T::zero(); h];
                        slope(
                            self.logistic,
                            [&fwd.saved[q..q + h], &*dhr, &zero],
                            &mut dpre[p..p + h],
                        );
                        for (dp, d) in dpre[p..p + h].iter_mut().zip(dhr.iter_mut()) {
                            *dp = *dp * a;
                            *d = *d * (T::one() - a);
                        }
                    }
                }
            }
            matmul(
                n,
                h,
                h,
                &mut dh,
                h,
                self.leak.is_some(),
                View::rows(&dpre[t * n * h..(t + 1) * n * h], h),
                View::rows(w_hh, h),
            );
        }
        ds0.copy_from_slice(&dh);
        let mut dw = vec![T::zero(); self.weights_len()];
        let (dw_ih, rest) = dw.split_at_mut(h * i);
        let (dw_hh, db) = rest.split_at_mut(h * h);
        matmul(
            h,
            h,
            n * steps,
            dw_hh,
            h,
            false,
            View::transposed(&dpre, h),
            View::rows(&hprev, h),
        );
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut dxt = vec![T::zero(); n * steps * i];
        project_backward(n * steps, i, h, &xt, w_ih, &dpre, dw_ih, db, Some(&mut dxt));
        sample_major(&dxt, n, steps, i, dx);
        dw
    }
}

/// `o = s = f(o + b)` element-wise (pre-activations in, activations out), f = σ or tanh.
#[inline(always)]
fn activate<T: KernelFloat>(logistic: bool, b: &[T], o: &mut [T], s: &mut [T]) {
    if logistic {
        lanes(
            [b],
            [o, s],
            #[inline(always)]
            |[b], y| {
                let a = sigmoid(y[0] + b);
                *y = [a, a];
            },
        );
    } else {
        lanes(
            [b],
            [o, s],
            #[inline(always)]
            |[b], y| {
                let a = tanh(y[0] + b);
                *y = [a, a];
            },
        );
    }
}

/// `s = (1 − a)s + a·f` element-wise: the leaky update of the state.
#[inline(always)]
fn leaky<T: KernelFloat>(a: T, f: &[T], s: &mut [T]) {
    let keep = T::one() - a;
    lanes(
        [f],
        [s],
        #[inline(always)]
        |[f], y| y[0] = keep * y[0] + a * f,
    );
}

/// `dpre = (dh + g) f'(pre)`, with f' from the activation `a`.
#[inline(always)]
fn slope<T: KernelFloat>(logistic: bool, src: [&[T]; 3], dpre: &mut [T]) {
    let one = T::one();
    if logistic {
        lanes(
            src,
            [dpre],
            #[inline(always)]
            |[a, dh, g], y| y[0] = (dh + g) * a * (one - a),
        );
    } else {
        lanes(
            src,
            [dpre],
            #[inline(always)]
            |[a, dh, g], y| y[0] = (dh + g) * (one - a * a),
        );
    }
}
