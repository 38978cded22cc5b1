//! The fused CT-RNN layer on the CPU, with its own backward pass.
//!
//! The cell is `dy/dt = f(y) = tanh(D + y W_hhᵀ) − κ⊙y` with the drive `D = x W_ihᵀ + b`
//! held constant over a step and `κ = 1/softplus(tau)` per unit. A step of elapsed time Δ
//! (1, or the sample's `dt`) takes `L` sub-steps of size `h = Δ·(1/L)`, exactly those of
//! [`crate::ode::integrate`]. Each sub-step is an explicit Runge–Kutta step with stages
//! `y_s = y + c_s k_{s−1}` (`y_1 = y`), `k_s = f(y_s)` and `y' = y + Σ_s w_s k_s`:
//!
//! ```text
//! Euler  y' = y + h k1                                      c = (0),             w = (h)
//! Heun   k2 = f(y + h k1),  y' = y + (h/2)(k1 + k2)         c = (0, h),          w = (h/2, h/2)
//! RK4    k2 = f(y + (h/2) k1), k3 = f(y + (h/2) k2),
//!        k4 = f(y + h k3),  y' = y + (h/6)(k1 + 2k2 + 2k3 + k4)
//!                                                           c = (0, h/2, h/2, h), w = (h/6, h/3, h/3, h/6)
//! ```
//!
//! Forward: `D` of every step as one product before the recurrence (it is constant over the
//! step's sub-steps), then per stage one product `y_s W_hhᵀ` over all rows of the shard and one
//! element-wise pass forming `a_s = tanh(D + y_s W_hhᵀ)`, `k_s = a_s − κ⊙y_s` and the running
//! `Σ w_s k_s`.
//!
//! Backward of one sub-step, from `g = ∂y'` (stages in reverse, `∂y_{S+1} = 0`):
//!
//! ```text
//! ∂k_s = w_s g + c_{s+1} ∂y_{s+1}
//! ∂p_s = ∂k_s ⊙ (1 − a_s²)                      (p_s the pre-activation)
//! ∂y_s = ∂p_s W_hh − κ⊙∂k_s
//! ∂y   = g + Σ_s ∂y_s
//! ∂D  += Σ_s ∂p_s,   ∂W_hh += Σ_s ∂p_sᵀ y_s,   ∂κ −= Σ_s ∂k_s ⊙ y_s
//! ```
//!
//! one product `∂p_s W_hh` per stage; then `∂W_ih = ∂Dᵀ x`, `∂b = Σ ∂D` and `∂x = ∂D W_ih` as
//! single products over every step, and `∂W_hh` as products over blocks of at most
//! [`BLOCK_ROWS`] (sample, stage) rows: a few large products, while the rows they gather take
//! at most `2·BLOCK_ROWS·H` values however long the sequence. The elapsed times are data: they
//! get no gradient.
//!
//! What is saved: the activations `a_s` of every stage (`L·S·H` values per sample and step) and
//! the state before each sub-step but the first (`(L − 1)·H`; the first is the previous step's
//! output). Recomputing the activations instead would cost one more `H×H` product per stage in
//! the backward pass (a third more recurrent products per training step: S forward, 2S
//! backward counting `∂W_hh`, per sub-step), while the stage states `y_s` are rebuilt
//! from the sub-step's start and the saved activations by an `O(H)` element-wise pass, bit for
//! bit as the forward pass formed them, so saving them (another `L·S·H` per step) would buy
//! nothing.
//!
//! Weights enter packed as `[W_ih (H×I) | W_hh (H×H) | b (H) | κ (H)]`, κ already formed by
//! Candle ops so that autograd carries its gradient on to `tau`.

use super::gemm::{matmul, project, project_backward, sample_major, time_major, transpose, View};
use super::{lanes, tanh, KernelFloat, Parts, RowKernel};
use crate::ode::Solver;

/// (sample, stage) rows of each block of the `∂W_hh` product.
pub const BLOCK_ROWS: usize = 8192;

/// The fixed-step solvers the kernel runs (Dormand–Prince stays on the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedStep {
    Euler,
    Heun,
    Rk4,
}

impl FixedStep {
    /// The fixed-step solver of `solver`; `None` for the adaptive one.
    pub fn of(solver: Solver) -> Option<Self> {
        match solver {
            Solver::Euler => Some(FixedStep::Euler),
            Solver::Heun => Some(FixedStep::Heun),
            Solver::Rk4 => Some(FixedStep::Rk4),
            Solver::Dopri5 { .. } => None,
        }
    }

    /// Stages per sub-step.
    pub fn stages(self) -> usize {
        match self {
            FixedStep::Euler => 1,
            FixedStep::Heun => 2,
            FixedStep::Rk4 => 4,
        }
    }
}

/// Stage offsets `c` (c[0] unused) and weights `w` of one sample's sub-step.
#[derive(Clone, Copy)]
pub(super) struct Tableau<T> {
    pub(super) c: [T; 4],
    pub(super) w: [T; 4],
}

impl<T: KernelFloat> Tableau<T> {
    /// The tableau of `solver` over an elapsed time `span` in `unfolds` sub-steps, the sub-step
    /// `h = Δ·(1/L)` rounded as the references round it.
    pub(super) fn new(solver: FixedStep, span: T, unfolds: usize) -> Self {
        let cast = |v: f64| T::from(v).expect("a value in the float type");
        let h = span * cast(1.0 / unfolds.max(1) as f64);
        let half = h * cast(0.5);
        let z = T::zero();
        match solver {
            FixedStep::Euler => Tableau {
                c: [z; 4],
                w: [h, z, z, z],
            },
            FixedStep::Heun => Tableau {
                c: [z, h, z, z],
                w: [half, half, z, z],
            },
            FixedStep::Rk4 => {
                let sixth = h * cast(1.0 / 6.0);
                let third = sixth + sixth;
                Tableau {
                    c: [z, half, half, h],
                    w: [sixth, third, third, sixth],
                }
            }
        }
    }
}

/// Inputs `x` (B, T, I), weights `[W_ih | W_hh | b | κ]`, state `h0` (B, H) → `h` after each
/// step.
#[derive(Debug, Clone)]
pub struct CtRnnKernel {
    pub input: usize,
    pub hidden: usize,
    pub solver: FixedStep,
    /// Sub-steps per input step.
    pub unfolds: usize,
    /// Elapsed time per (sample, step), row-major; `None`: 1 everywhere.
    pub dt: Option<Vec<f64>>,
}

impl CtRnnKernel {
    fn split<'a, T>(&self, w: &'a [T]) -> (&'a [T], &'a [T], &'a [T], &'a [T]) {
        let (i, h) = (self.input, self.hidden);
        let (w_ih, rest) = w.split_at(h * i);
        let (w_hh, rest) = rest.split_at(h * h);
        let (b, kappa) = rest.split_at(h);
        (w_ih, w_hh, b, kappa)
    }

    /// The tableau of sample `b` at step `t`, with the sub-step `h = Δ·(1/L)` rounded as the
    /// reference rounds it.
    fn tableau<T: KernelFloat>(&self, b: usize, t: usize, steps: usize) -> Tableau<T> {
        let span = self.dt.as_ref().map(|d| d[b * steps + t]).unwrap_or(1.0);
        Tableau::new(
            self.solver,
            T::from(span).expect("a value in the float type"),
            self.unfolds,
        )
    }

    /// Offset in a saved row of the state before sub-step `u ≥ 1`.
    fn state_at(&self, u: usize) -> usize {
        (self.unfolds * self.solver.stages() + u - 1) * self.hidden
    }
}

impl RowKernel for CtRnnKernel {
    const NAME: &'static str = "ctrnn-layer";
    fn input_width(&self) -> usize {
        self.input
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        self.hidden * (self.input + self.hidden + 2)
    }
    fn output_width(&self) -> usize {
        self.hidden
    }
    fn saved_width(&self) -> usize {
        let l = self.unfolds;
        (l * self.solver.stages() + l.saturating_sub(1)) * self.hidden
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
        let (h, i, l, ns) = (self.hidden, self.input, self.unfolds, self.solver.stages());
        let sw = self.saved_width();
        let (w_ih, w_hh, bias, kappa) = self.split(w);
        let w_t = transpose(w_hh, h, h);
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        // The drive x W_ihᵀ + b of every step, step-major: one product.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut drive = vec![T::zero(); n * steps * h];
        project(n * steps, i, h, &xt, w_ih, &mut drive);
        for row in drive.chunks_exact_mut(h) {
            lanes(
                [bias],
                [row],
                #[inline(always)]
                |[b], y| y[0] = y[0] + b,
            );
        }
        let mut y: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        let mut ys = vec![T::zero(); n * h];
        let mut pre = vec![T::zero(); n * h];
        let mut k = vec![T::zero(); n * h];
        let mut acc = vec![T::zero(); n * h];
        let mut tabs: Vec<Tableau<T>> = Vec::with_capacity(n);
        for t in 0..steps {
            tabs.clear();
            tabs.extend((0..n).map(|r| self.tableau(b0 + r, t, steps)));
            let dt_ = &drive[t * n * h..(t + 1) * n * h];
            for u in 0..l {
                if u > 0 {
                    for r in 0..n {
                        let o = (r * steps + t) * sw + self.state_at(u);
                        saved[o..o + h].copy_from_slice(&y[r * h..(r + 1) * h]);
                    }
                }
                for s in 0..ns {
                    if s > 0 {
                        // y_s = y + c_s k_{s−1}
                        for (r, tab) in tabs.iter().enumerate() {
                            let c = tab.c[s];
                            let rr = r * h..(r + 1) * h;
                            lanes(
                                [&y[rr.clone()], &k[rr.clone()]],
                                [&mut ys[rr]],
                                #[inline(always)]
                                |[yv, kv], o| o[0] = yv + c * kv,
                            );
                        }
                    }
                    let src: &[T] = if s == 0 { &y } else { &ys };
                    pre.copy_from_slice(dt_);
                    matmul(
                        n,
                        h,
                        h,
                        &mut pre,
                        h,
                        true,
                        View::rows(src, h),
                        View::rows(&w_t, h),
                    );
                    for (r, tab) in tabs.iter().enumerate() {
                        let rr = r * h..(r + 1) * h;
                        let o = (r * steps + t) * sw + (u * ns + s) * h;
                        stage_forward(
                            tab.w[s],
                            s == 0,
                            [&pre[rr.clone()], &src[rr.clone()], kappa],
                            [&mut saved[o..o + h], &mut k[rr.clone()], &mut acc[rr]],
                        );
                    }
                }
                lanes(
                    [&acc],
                    [&mut y],
                    #[inline(always)]
                    |[a], o| o[0] = o[0] + a,
                );
            }
            for r in 0..n {
                let q = r * steps + t;
                out[q * h..(q + 1) * h].copy_from_slice(&y[r * h..(r + 1) * h]);
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
        let (h, i, l, ns) = (self.hidden, self.input, self.unfolds, self.solver.stages());
        let sw = self.saved_width();
        let (w_ih, w_hh, _, kappa) = self.split(w);
        let n = ds0.len() / h.max(1);
        let mut dw = vec![T::zero(); self.weights_len()];
        // Gradient of the state after the sub-step being differentiated, and of the one before.
        let mut g = vec![T::zero(); n * h];
        let mut g_prev = vec![T::zero(); n * h];
        let mut dk = vec![T::zero(); n * h];
        let mut dys = vec![T::zero(); n * h];
        let mut dkappa = vec![T::zero(); h];
        // ∂D of every step, step-major.
        let mut ddrive = vec![T::zero(); n * steps * h];
        // Blocks of (∂p_s, y_s) rows for ∂W_hh: one group of `ns·n` rows per sub-step.
        let group = ns * n * h;
        let cap = (BLOCK_ROWS / (ns * n).max(1)).clamp(1, (steps * l).max(1));
        let mut bp = vec![T::zero(); cap * group];
        let mut by = vec![T::zero(); cap * group];
        let mut filled = 0;
        let mut tabs: Vec<Tableau<T>> = Vec::with_capacity(n);
        {
            let dw_hh = &mut dw[h * i..h * (i + h)];
            let mut flush = |bp: &[T], by: &[T], groups: usize| {
                matmul(
                    h,
                    h,
                    groups * ns * n,
                    dw_hh,
                    h,
                    true,
                    View::transposed(&bp[..groups * group], h),
                    View::rows(&by[..groups * group], h),
                );
            };
            for t in (0..steps).rev() {
                for r in 0..n {
                    let gq = ((b0 + r) * steps + t) * h;
                    let rr = r * h..(r + 1) * h;
                    lanes(
                        [&grad.out[gq..gq + h]],
                        [&mut g[rr]],
                        #[inline(always)]
                        |[a], o| o[0] = o[0] + a,
                    );
                }
                tabs.clear();
                tabs.extend((0..n).map(|r| self.tableau(b0 + r, t, steps)));
                let dd = &mut ddrive[t * n * h..(t + 1) * n * h];
                for u in (0..l).rev() {
                    let (gp, gy) = (
                        &mut bp[filled * group..(filled + 1) * group],
                        &mut by[filled * group..(filled + 1) * group],
                    );
                    // Rebuild the stage states y_s of this sub-step into the block.
                    for (r, tab) in tabs.iter().enumerate() {
                        let q = r * steps + t;
                        let start: &[T] = if u > 0 {
                            let o = q * sw + self.state_at(u);
                            &fwd.saved[o..o + h]
                        } else if t > 0 {
                            &fwd.out[(q - 1) * h..q * h]
                        } else {
                            &s0[(b0 + r) * h..(b0 + r + 1) * h]
                        };
                        gy[r * h..(r + 1) * h].copy_from_slice(start);
                        for s in 1..ns {
                            let o = q * sw + (u * ns + s - 1) * h;
                            let (before, now) = gy.split_at_mut(s * n * h);
                            let prev =
                                &before[(s - 1) * n * h + r * h..(s - 1) * n * h + (r + 1) * h];
                            let c = tab.c[s];
                            lanes(
                                [start, &fwd.saved[o..o + h], prev, kappa],
                                [&mut now[r * h..(r + 1) * h]],
                                #[inline(always)]
                                |[y0, a, yv, kap], o| {
                                    let kv = a - yv * kap;
                                    o[0] = y0 + c * kv;
                                },
                            );
                        }
                    }
                    g_prev.copy_from_slice(&g);
                    dys.fill(T::zero());
                    for s in (0..ns).rev() {
                        let st = s * n * h..(s + 1) * n * h;
                        let (dpre, ystage) = (&mut gp[st.clone()], &gy[st]);
                        for (r, tab) in tabs.iter().enumerate() {
                            let rr = r * h..(r + 1) * h;
                            let o = (r * steps + t) * sw + (u * ns + s) * h;
                            let cn = if s + 1 < ns { tab.c[s + 1] } else { T::zero() };
                            stage_backward(
                                tab.w[s],
                                cn,
                                [
                                    &g[rr.clone()],
                                    &dys[rr.clone()],
                                    &fwd.saved[o..o + h],
                                    &ystage[rr.clone()],
                                ],
                                [
                                    &mut dpre[rr.clone()],
                                    &mut dk[rr.clone()],
                                    &mut dd[rr],
                                    &mut dkappa,
                                ],
                            );
                        }
                        // ∂y_s = ∂p_s W_hh − κ⊙∂k_s, added to the start's gradient.
                        matmul(
                            n,
                            h,
                            h,
                            &mut dys,
                            h,
                            false,
                            View::rows(dpre, h),
                            View::rows(w_hh, h),
                        );
                        for r in 0..n {
                            let rr = r * h..(r + 1) * h;
                            lanes(
                                [&dk[rr.clone()], kappa],
                                [&mut dys[rr.clone()], &mut g_prev[rr]],
                                #[inline(always)]
                                |[d, kap], o| {
                                    let v = o[0] - kap * d;
                                    o[0] = v;
                                    o[1] = o[1] + v;
                                },
                            );
                        }
                    }
                    std::mem::swap(&mut g, &mut g_prev);
                    filled += 1;
                    if filled == cap {
                        flush(&bp, &by, filled);
                        filled = 0;
                    }
                }
            }
            if filled > 0 {
                flush(&bp, &by, filled);
            }
        }
        ds0.copy_from_slice(&g);
        let (dw_ih, rest) = dw.split_at_mut(h * i);
        let (_, rest) = rest.split_at_mut(h * h);
        let (db, dk_out) = rest.split_at_mut(h);
        dk_out.copy_from_slice(&dkappa);
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut dxt = vec![T::zero(); n * steps * i];
        project_backward(
            n * steps,
            i,
            h,
            &xt,
            w_ih,
            &ddrive,
            dw_ih,
            db,
            Some(&mut dxt),
        );
        sample_major(&dxt, n, steps, i, dx);
        dw
    }
}

/// One stage of one row: `a = tanh(p)` (saved), `k = a − κ⊙y_s`, and the running sum
/// `acc (=|+=) w·k`.
#[inline(always)]
fn stage_forward<T: KernelFloat>(w: T, first: bool, src: [&[T]; 3], dst: [&mut [T]; 3]) {
    if first {
        lanes(
            src,
            dst,
            #[inline(always)]
            |[p, yv, kap], o| {
                let a = tanh(p);
                let kv = a - yv * kap;
                *o = [a, kv, w * kv];
            },
        );
    } else {
        lanes(
            src,
            dst,
            #[inline(always)]
            |[p, yv, kap], o| {
                let a = tanh(p);
                let kv = a - yv * kap;
                *o = [a, kv, o[2] + w * kv];
            },
        );
    }
}

/// The backward of one stage of one row, from `[g, ∂y_{s+1}, a_s, y_s]`: writes `∂p_s` and
/// `∂k_s`, adds `∂p_s` to the step's `∂D` and `−∂k_s⊙y_s` to `∂κ`.
#[inline(always)]
fn stage_backward<T: KernelFloat>(w: T, c_next: T, src: [&[T]; 4], dst: [&mut [T]; 4]) {
    let one = T::one();
    lanes(
        src,
        dst,
        #[inline(always)]
        |[g, dyn_, a, yv], o| {
            let dk = w * g + c_next * dyn_;
            let dp = dk * (one - a * a);
            *o = [dp, dk, o[2] + dp, o[3] - dk * yv];
        },
    );
}
