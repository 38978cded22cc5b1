//! The fused ODE-RNN layer on the CPU, with its own backward pass.
//!
//! Per step the state first follows `dy/dt = f(y)` over the step's elapsed time Δ (1, or the
//! sample's `dt`), `f` the ODE network: `m = backbone_layers` hidden layers
//! `a_j = tanh(a_{j−1} V_jᵀ + c_j)` (`a_0 = y`) and a linear output `f(y) = a_m V_outᵀ + c_out`.
//! The solver takes `L` sub-steps of size `h = Δ·(1/L)`, those of [`crate::ode::integrate`]:
//! each an explicit Runge–Kutta step with stages `y_s = y + c_s k_{s−1}` (`y_1 = y`),
//! `k_s = f(y_s)` and `y' = y + Σ_s w_s k_s`, where `c_s = β_s h`, `w_s = α_s h`:
//!
//! ```text
//! Euler  α = (1),                  β = (0)
//! Heun   α = (1/2, 1/2),           β = (0, 1)
//! RK4    α = (1/6, 1/3, 1/3, 1/6), β = (0, 1/2, 1/2, 1)
//! ```
//!
//! Then the GRU (gates r, z, n, `torch.nn.GRU` semantics) takes the evolved state `e` and the
//! input: `r = σ(x_r + e_r)`, `z = σ(x_z + e_z)`, `n = tanh(x_n + r⊙e_n)`, `h' = n + z⊙(e − n)`
//! with `x_* = x W_ihᵀ + b_ih`, `e_* = e W_hhᵀ + b_hh`.
//!
//! Forward: `x W_ihᵀ + b_ih` of every step as one product before the recurrence; per stage one
//! product per layer of the ODE network over all rows of the shard; per step one product
//! `e W_hhᵀ` and the GRU's element-wise pass. The per-stage and per-step products run on the
//! packed-weight tiles of `pack.rs` (each right operand packed once per sequence and pass).
//!
//! Backward of one step, from `g = ∂h'`:
//!
//! ```text
//! ∂n = g⊙(1 − z)⊙(1 − n²),  ∂z = g⊙(e − n)⊙z⊙(1 − z),  ∂r = ∂n⊙e_n⊙r⊙(1 − r)
//! ∂x_* = (∂r, ∂z, ∂n),  ∂e_* = (∂r, ∂z, ∂n⊙r)
//! ∂e = g⊙z + ∂e_* W_hh,   ∂W_hh += ∂e_*ᵀ e,   ∂b_hh += Σ ∂e_*
//! ```
//!
//! then each sub-step in reverse from `g = ∂y'` (stages in reverse, `∂y_{S+1} = 0`):
//!
//! ```text
//! ∂k_s = w_s g + c_{s+1} ∂y_{s+1}
//! δ_out = ∂k_s,   ∂V_out += δ_outᵀ a_m,   ∂c_out += Σ δ_out,   ∂a_m = δ_out V_out
//! δ_j = ∂a_j ⊙ (1 − a_j²),   ∂V_j += δ_jᵀ a_{j−1},   ∂c_j += Σ δ_j,   ∂a_{j−1} = δ_j V_j
//! ∂y_s = ∂a_0,   ∂y = g + Σ_s ∂y_s
//! ∂h += Σ_s k_s · (α_s g + β_{s+1} ∂y_{s+1})
//! ```
//!
//! and `∂Δ = ∂h·(1/L)` summed over the step's sub-steps. The products `∂V_j += δ_jᵀ a_{j−1}` run
//! over blocks of at most [`BLOCK_ROWS`] (sample, stage) rows, not per stage. After the whole sequence `∂W_ih = ∂x_*ᵀ x`,
//! `∂b_ih = Σ ∂x_*` and `∂x = ∂x_* W_ih` as single products over every step.
//!
//! The elapsed times enter as one more input column (the last), so that the gradient of Δ
//! reaches them through the input's gradient.
//!
//! What is saved per (sample, step), when a gradient is to come: for every sub-step and stage the
//! stage state `y_s`, the hidden activations `a_j` and the slope `k_s`; the evolved state `e`;
//! the GRU's `[r | z | n | e_n]`. Every saved value is written, so the buffer is not zeroed
//! first.
//!
//! Weights enter packed as `[W_ih (3H×I) | W_hh (3H×H) | b_ih (3H) | b_hh (3H) | V_1 | c_1 | … |
//! V_out | c_out]`, each `V` row-major (out × in).

use super::ctrnn::{FixedStep, Tableau};
use super::gemm::{matmul, time_major, View};
use super::pack::{Lhs, Packed, Start};
use super::{sigmoid, tanh, KernelFloat, Parts, RowKernel};

/// (sample, stage) rows of each block of the ODE network's weight-gradient products.
pub const BLOCK_ROWS: usize = 2048;

/// Inputs `x` (B, T, I) or `[x | Δ]` (B, T, I + 1), the packed weights, state `h0` (B, H) →
/// `h` after each step.
#[derive(Debug, Clone)]
pub struct OdeRnnKernel {
    pub input: usize,
    pub hidden: usize,
    /// Hidden layers of the ODE network and their width.
    pub backbone_layers: usize,
    pub backbone_units: usize,
    pub solver: FixedStep,
    /// Sub-steps per input step.
    pub unfolds: usize,
    /// Whether the inputs carry each step's elapsed time as one more, last, column.
    pub with_dt: bool,
}

/// One layer of the ODE network: weight at `at` (out × inp), bias after it.
#[derive(Clone, Copy)]
struct Layer {
    at: usize,
    out: usize,
    inp: usize,
}

impl OdeRnnKernel {
    fn width(&self) -> usize {
        self.input + usize::from(self.with_dt)
    }

    fn gru_len(&self) -> usize {
        3 * self.hidden * (self.input + self.hidden + 2)
    }

    fn gru<'a, T>(&self, w: &'a [T]) -> [&'a [T]; 4] {
        let (g3, i, h) = (3 * self.hidden, self.input, self.hidden);
        let (w_ih, rest) = w.split_at(g3 * i);
        let (w_hh, rest) = rest.split_at(g3 * h);
        let (b_ih, rest) = rest.split_at(g3);
        [w_ih, w_hh, b_ih, &rest[..g3]]
    }

    fn layers(&self) -> Vec<Layer> {
        let mut at = self.gru_len();
        let mut inp = self.hidden;
        (0..=self.backbone_layers)
            .map(|k| {
                let out = if k == self.backbone_layers {
                    self.hidden
                } else {
                    self.backbone_units
                };
                let l = Layer { at, out, inp };
                at += out * (inp + 1);
                inp = out;
                l
            })
            .collect()
    }

    /// Saved values per stage: `[y_s | a_1 … a_m | k_s]`.
    fn stage_width(&self) -> usize {
        2 * self.hidden + self.backbone_layers * self.backbone_units
    }

    /// Offset in a saved row of the evolved state (the GRU's `[r | z | n | e_n]` follow it).
    fn evolved_at(&self) -> usize {
        self.unfolds * self.solver.stages() * self.stage_width()
    }

    /// `α` and `β` of the solver.
    fn ratios(&self) -> ([f64; 4], [f64; 4]) {
        match self.solver {
            FixedStep::Euler => ([1.0, 0.0, 0.0, 0.0], [0.0; 4]),
            FixedStep::Heun => ([0.5, 0.5, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]),
            FixedStep::Rk4 => (
                [1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
                [0.0, 0.5, 0.5, 1.0],
            ),
        }
    }

    /// The elapsed time of sample `b` at step `t` (1 without `dt`).
    fn span<T: KernelFloat>(&self, x: &[T], b: usize, t: usize, steps: usize) -> T {
        if self.with_dt {
            x[(b * steps + t) * self.width() + self.input]
        } else {
            T::one()
        }
    }

    /// The tableau for elapsed time `span`, the sub-step `h = Δ·(1/L)` rounded as the
    /// reference rounds it.
    fn tableau<T: KernelFloat>(&self, span: T) -> Tableau<T> {
        Tableau::new(self.solver, span, self.unfolds)
    }
}

/// Adds to the ODE network's weight and bias gradients those of the first `rows` rows of a
/// block: `∂V_j += δ_jᵀ a_{j−1}`, `∂c_j += Σ δ_j`, one product per layer.
fn network_gradients<T: KernelFloat>(
    dw: &mut [T],
    layers: &[Layer],
    ins: &[Vec<T>],
    deltas: &[Vec<T>],
    rows: usize,
) {
    for ((ly, a), d) in layers.iter().zip(ins).zip(deltas) {
        let (dwj, dbj) = dw[ly.at..ly.at + ly.out * (ly.inp + 1)].split_at_mut(ly.out * ly.inp);
        let d = &d[..rows * ly.out];
        matmul(
            ly.out,
            ly.inp,
            rows,
            dwj,
            ly.inp,
            true,
            View::transposed(d, ly.out),
            View::rows(&a[..rows * ly.inp], ly.inp),
        );
        add_rows(dbj, d);
    }
}

/// Every row of `dst` (rows of `bias.len()` values) set to `bias`.
fn fill_rows<T: Copy>(dst: &mut [T], bias: &[T]) {
    for row in dst.chunks_exact_mut(bias.len().max(1)) {
        row.copy_from_slice(bias);
    }
}

/// `db += Σ_rows src` (rows of `db.len()` values).
fn add_rows<T: KernelFloat>(db: &mut [T], src: &[T]) {
    for row in src.chunks_exact(db.len().max(1)) {
        for (a, &v) in db.iter_mut().zip(row) {
            *a = *a + v;
        }
    }
}

impl RowKernel for OdeRnnKernel {
    const NAME: &'static str = "odernn-layer";
    fn input_width(&self) -> usize {
        self.width()
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        let last = self.layers()[self.backbone_layers];
        last.at + last.out * (last.inp + 1)
    }
    fn output_width(&self) -> usize {
        self.hidden
    }
    fn saved_width(&self) -> usize {
        self.evolved_at() + 5 * self.hidden
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
        let (h, i, iw) = (self.hidden, self.input, self.width());
        let (l, ns, g3) = (self.unfolds, self.solver.stages(), 3 * self.hidden);
        let (sw, stw, eo) = (self.saved_width(), self.stage_width(), self.evolved_at());
        let (m, units) = (self.backbone_layers, self.backbone_units);
        let [w_ih, w_hh, b_ih, b_hh] = self.gru(w);
        let layers = self.layers();
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        // Without a gradient to come, nothing is saved.
        let keep = !saved.is_empty();
        // x W_ihᵀ + b_ih of every step, step-major: one product.
        let xt = time_major(&x[b0 * steps * iw..(b0 + n) * steps * iw], n, steps, iw);
        let mut gx = vec![T::zero(); steps * n * g3];
        fill_rows(&mut gx, b_ih);
        matmul(
            steps * n,
            g3,
            i,
            &mut gx,
            g3,
            true,
            View {
                data: &xt,
                rs: iw as isize,
                cs: 1,
            },
            View::transposed(w_ih, i),
        );
        // The per-stage and per-step right operands, packed once: each layer's `V_jᵀ` with its
        // bias, and `W_hhᵀ` with `b_hh`.
        let packed: Vec<Packed<T>> = layers
            .iter()
            .map(|ly| {
                let wj = &w[ly.at..ly.at + ly.out * ly.inp];
                let bj = &w[ly.at + ly.out * ly.inp..ly.at + ly.out * (ly.inp + 1)];
                Packed::dense(ly.inp, ly.out, |kk, c| wj[c * ly.inp + kk], Some(bj))
            })
            .collect();
        let hh_t = Packed::dense(h, g3, |kk, c| w_hh[c * h + kk], Some(b_hh));
        let mut y: Vec<T> = s0[b0 * h..(b0 + n) * h].to_vec();
        let mut ys = vec![T::zero(); n * h];
        let mut acc = vec![T::zero(); n * h];
        // The outputs of every layer of the ODE network (the last is the slope k).
        let mut bufs: Vec<Vec<T>> = layers
            .iter()
            .map(|ly| vec![T::zero(); n * ly.out])
            .collect();
        let mut gh = vec![T::zero(); n * g3];
        let mut tabs: Vec<Tableau<T>> = Vec::with_capacity(n);
        for t in 0..steps {
            tabs.clear();
            tabs.extend((0..n).map(|r| self.tableau(self.span(x, b0 + r, t, steps))));
            for u in 0..l {
                for s in 0..ns {
                    if s == 0 {
                        ys.copy_from_slice(&y);
                    } else {
                        // y_s = y + c_s k_{s−1}
                        let k = &bufs[m];
                        for (r, tab) in tabs.iter().enumerate() {
                            let c = tab.c[s];
                            let rr = r * h..(r + 1) * h;
                            for ((o, &yv), &kv) in
                                ys[rr.clone()].iter_mut().zip(&y[rr.clone()]).zip(&k[rr])
                            {
                                *o = yv + c * kv;
                            }
                        }
                    }
                    for (j, ly) in layers.iter().enumerate() {
                        let (before, rest) = bufs.split_at_mut(j);
                        let src: &[T] = if j == 0 { &ys } else { &before[j - 1] };
                        let dst = &mut rest[0];
                        packed[j].product(n, Lhs::one(src, ly.inp), Start::Bias, dst, ly.out);
                        if j < m {
                            for v in dst.iter_mut() {
                                *v = tanh(*v);
                            }
                        }
                    }
                    let k = &bufs[m];
                    for (r, tab) in tabs.iter().enumerate() {
                        let rr = r * h..(r + 1) * h;
                        if keep {
                            let o = (r * steps + t) * sw + (u * ns + s) * stw;
                            let sv = &mut saved[o..o + stw];
                            sv[..h].copy_from_slice(&ys[rr.clone()]);
                            for j in 0..m {
                                sv[h + j * units..h + (j + 1) * units]
                                    .copy_from_slice(&bufs[j][r * units..(r + 1) * units]);
                            }
                            sv[h + m * units..].copy_from_slice(&k[rr.clone()]);
                        }
                        let wv = tab.w[s];
                        if s == 0 {
                            for (a, &kv) in acc[rr.clone()].iter_mut().zip(&k[rr]) {
                                *a = wv * kv;
                            }
                        } else {
                            for (a, &kv) in acc[rr.clone()].iter_mut().zip(&k[rr]) {
                                *a = *a + wv * kv;
                            }
                        }
                    }
                }
                for (o, &a) in y.iter_mut().zip(&acc) {
                    *o = *o + a;
                }
            }
            // The GRU on the evolved state.
            hh_t.product(n, Lhs::one(&y, h), Start::Bias, &mut gh, g3);
            for r in 0..n {
                let q = r * steps + t;
                let mut none: [T; 0] = [];
                let sv: &mut [T] = if keep {
                    &mut saved[q * sw + eo..(q + 1) * sw]
                } else {
                    &mut none
                };
                let gxr = &gx[(t * n + r) * g3..(t * n + r + 1) * g3];
                let ghr = &gh[r * g3..(r + 1) * g3];
                let yr = &mut y[r * h..(r + 1) * h];
                let or = &mut out[q * h..(q + 1) * h];
                for j in 0..h {
                    let e = yr[j];
                    let rg = sigmoid(gxr[j] + ghr[j]);
                    let zg = sigmoid(gxr[h + j] + ghr[h + j]);
                    let gn = ghr[2 * h + j];
                    let nn = tanh(gxr[2 * h + j] + rg * gn);
                    let hn = nn + zg * (e - nn);
                    if keep {
                        sv[j] = e;
                        sv[h + j] = rg;
                        sv[2 * h + j] = zg;
                        sv[3 * h + j] = nn;
                        sv[4 * h + j] = gn;
                    }
                    or[j] = hn;
                    yr[j] = hn;
                }
            }
        }
    }

    #[inline(always)]
    fn backward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        _s0: &[T],
        fwd: Parts<&[T]>,
        grad: Parts<&[T]>,
        steps: usize,
        b0: usize,
        dx: &mut [T],
        ds0: &mut [T],
    ) -> Vec<T> {
        let (h, i, iw) = (self.hidden, self.input, self.width());
        let (l, ns, g3) = (self.unfolds, self.solver.stages(), 3 * self.hidden);
        let (sw, stw, eo) = (self.saved_width(), self.stage_width(), self.evolved_at());
        let (m, units) = (self.backbone_layers, self.backbone_units);
        let [w_ih, w_hh, _, _] = self.gru(w);
        let layers = self.layers();
        let (alpha, beta) = self.ratios();
        let cast = |v: f64| T::from(v).expect("a value in the float type");
        let (alpha, beta) = (alpha.map(cast), beta.map(cast));
        let inv_l = cast(1.0 / l.max(1) as f64);
        let n = ds0.len() / h.max(1);
        let mut dw = vec![T::zero(); self.weights_len()];
        // Gradient of the state after the step (sub-step) being differentiated.
        let mut g = vec![T::zero(); n * h];
        let mut g_prev = vec![T::zero(); n * h];
        // ∂x_* = [∂r | ∂z | ∂n] of every step, step-major.
        let mut gi = vec![T::zero(); steps * n * g3];
        // ∂e_* = [∂r | ∂z | ∂n⊙r] of one step.
        let mut ge = vec![T::zero(); n * g3];
        let mut ev = vec![T::zero(); n * h];
        // ∂y_{s+1} and the gradient of each layer's output.
        let mut dys = vec![T::zero(); n * h];
        // Each layer's input (`y_s`, then the activations) and the gradient of its
        // pre-activation, for blocks of `cap` stages of `n` rows: the weight gradients are summed
        // one block at a time.
        let cap = (BLOCK_ROWS / n.max(1)).clamp(1, (steps * l * ns).max(1));
        let mut ins: Vec<Vec<T>> = layers
            .iter()
            .map(|ly| vec![T::zero(); cap * n * ly.inp])
            .collect();
        let mut deltas: Vec<Vec<T>> = layers
            .iter()
            .map(|ly| vec![T::zero(); cap * n * ly.out])
            .collect();
        let mut filled = 0;
        let mut kb = vec![T::zero(); n * h];
        let mut dspan = vec![T::zero(); n];
        let mut tabs: Vec<Tableau<T>> = Vec::with_capacity(n);
        // The per-stage and per-step right operands, packed once: each layer's `V_j` and `W_hh`.
        let packed: Vec<Packed<T>> = layers
            .iter()
            .map(|ly| {
                let wj = &w[ly.at..ly.at + ly.out * ly.inp];
                Packed::dense(ly.out, ly.inp, |kk, c| wj[kk * ly.inp + c], None)
            })
            .collect();
        let hh = Packed::dense(g3, h, |kk, c| w_hh[kk * h + c], None);
        for t in (0..steps).rev() {
            for r in 0..n {
                let gq = ((b0 + r) * steps + t) * h;
                for (o, &a) in g[r * h..(r + 1) * h].iter_mut().zip(&grad.out[gq..gq + h]) {
                    *o = *o + a;
                }
            }
            tabs.clear();
            tabs.extend((0..n).map(|r| self.tableau(self.span(x, b0 + r, t, steps))));
            // The GRU.
            for r in 0..n {
                let q = r * steps + t;
                let sv = &fwd.saved[q * sw + eo..(q + 1) * sw];
                let gir = &mut gi[(t * n + r) * g3..(t * n + r + 1) * g3];
                let ger = &mut ge[r * g3..(r + 1) * g3];
                let gr = &mut g[r * h..(r + 1) * h];
                ev[r * h..(r + 1) * h].copy_from_slice(&sv[..h]);
                for j in 0..h {
                    let (e, rg, zg, nn, gn) = (
                        sv[j],
                        sv[h + j],
                        sv[2 * h + j],
                        sv[3 * h + j],
                        sv[4 * h + j],
                    );
                    let d = gr[j];
                    let one = T::one();
                    let dn = d * (one - zg) * (one - nn * nn);
                    let dz = d * (e - nn) * zg * (one - zg);
                    let dr = dn * gn * rg * (one - rg);
                    gir[j] = dr;
                    gir[h + j] = dz;
                    gir[2 * h + j] = dn;
                    ger[j] = dr;
                    ger[h + j] = dz;
                    ger[2 * h + j] = dn * rg;
                    gr[j] = d * zg;
                }
            }
            // ∂e = g⊙z + ∂e_* W_hh
            hh.product(n, Lhs::one(&ge, g3), Start::Dst, &mut g, h);
            {
                let (_, rest) = dw.split_at_mut(g3 * i);
                let (dw_hh, rest) = rest.split_at_mut(g3 * h);
                matmul(
                    g3,
                    h,
                    n,
                    dw_hh,
                    h,
                    true,
                    View::transposed(&ge, g3),
                    View::rows(&ev, h),
                );
                add_rows(&mut rest[g3..2 * g3], &ge);
            }
            // The sub-steps in reverse.
            dspan.fill(T::zero());
            for u in (0..l).rev() {
                g_prev.copy_from_slice(&g);
                dys.fill(T::zero());
                for s in (0..ns).rev() {
                    let f = filled;
                    for r in 0..n {
                        let o = (r * steps + t) * sw + (u * ns + s) * stw;
                        let sv = &fwd.saved[o..o + stw];
                        let at = (f * n + r) * h;
                        ins[0][at..at + h].copy_from_slice(&sv[..h]);
                        for j in 0..m {
                            let at = (f * n + r) * units;
                            ins[j + 1][at..at + units]
                                .copy_from_slice(&sv[h + j * units..h + (j + 1) * units]);
                        }
                        kb[r * h..(r + 1) * h].copy_from_slice(&sv[h + m * units..]);
                    }
                    // ∂k_s and the sub-step's share of ∂h.
                    let (cn, bn) = if s + 1 < ns {
                        (true, beta[s + 1])
                    } else {
                        (false, T::zero())
                    };
                    let dk = &mut deltas[m][f * n * h..(f + 1) * n * h];
                    for (r, tab) in tabs.iter().enumerate() {
                        let c_next = if cn { tab.c[s + 1] } else { T::zero() };
                        let wv = tab.w[s];
                        let rr = r * h..(r + 1) * h;
                        let mut sum = T::zero();
                        for j in rr {
                            let (gv, dv, kv) = (g[j], dys[j], kb[j]);
                            dk[j] = wv * gv + c_next * dv;
                            sum = sum + kv * (alpha[s] * gv + bn * dv);
                        }
                        dspan[r] = dspan[r] + sum;
                    }
                    // Through the ODE network.
                    for j in (0..=m).rev() {
                        let ly = layers[j];
                        let (before, rest) = deltas.split_at_mut(j);
                        let dst: &mut [T] = if j == 0 {
                            &mut dys
                        } else {
                            &mut before[j - 1][f * n * ly.inp..(f + 1) * n * ly.inp]
                        };
                        packed[j].product(
                            n,
                            Lhs::one(&rest[0][f * n * ly.out..(f + 1) * n * ly.out], ly.out),
                            Start::Zero,
                            dst,
                            ly.inp,
                        );
                        if j > 0 {
                            let a = &ins[j][f * n * ly.inp..(f + 1) * n * ly.inp];
                            for (d, &a) in dst.iter_mut().zip(a) {
                                *d = *d * (T::one() - a * a);
                            }
                        }
                    }
                    for (o, &d) in g_prev.iter_mut().zip(&dys) {
                        *o = *o + d;
                    }
                    filled += 1;
                    if filled == cap {
                        network_gradients(&mut dw, &layers, &ins, &deltas, filled * n);
                        filled = 0;
                    }
                }
                std::mem::swap(&mut g, &mut g_prev);
            }
            if self.with_dt {
                for (r, &d) in dspan.iter().enumerate() {
                    dx[(r * steps + t) * iw + i] = d * inv_l;
                }
            }
        }
        if filled > 0 {
            network_gradients(&mut dw, &layers, &ins, &deltas, filled * n);
        }
        ds0.copy_from_slice(&g);
        // ∂W_ih = ∂x_*ᵀ x, ∂b_ih = Σ ∂x_*, ∂x = ∂x_* W_ih over every step at once.
        let xt = time_major(&x[b0 * steps * iw..(b0 + n) * steps * iw], n, steps, iw);
        let (dw_ih, rest) = dw.split_at_mut(g3 * i);
        matmul(
            g3,
            i,
            steps * n,
            dw_ih,
            i,
            false,
            View::transposed(&gi, g3),
            View {
                data: &xt,
                rs: iw as isize,
                cs: 1,
            },
        );
        add_rows(&mut rest[g3 * h..g3 * h + g3], &gi);
        let mut dxt = vec![T::zero(); steps * n * i];
        matmul(
            steps * n,
            i,
            g3,
            &mut dxt,
            i,
            false,
            View::rows(&gi, g3),
            View::rows(w_ih, i),
        );
        for t in 0..steps {
            for r in 0..n {
                let q = r * steps + t;
                dx[q * iw..q * iw + i].copy_from_slice(&dxt[(t * n + r) * i..(t * n + r + 1) * i]);
            }
        }
        dw
    }
}
