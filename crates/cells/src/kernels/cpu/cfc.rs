//! The fused CfC layer on the CPU, with its own backward pass.
//!
//! One op runs a whole layer over a sequence, with the math of the reference step in
//! [`crate::cells::cfc`]. With `L` backbone layers of `U` units, `H` units and elapsed time `Δ`
//! (the sample's `dt`, or 1):
//!
//! ```text
//! z_0 = [x, h]
//! p_k = W_k z_k + b_k,  z_{k+1} = act(p_k)                       k = 0 … L−1
//! f1, f2, a, b = W_heads z_L + b_heads       (ff1 | ff2 | time_a | time_b stacked; ff1 alone in pure mode)
//! default:  s = σ(a·Δ + b),  h' = tanh(f1)(1 − s) + s·tanh(f2)
//! no-gate:  s = σ(a·Δ + b),  h' = tanh(f1) + s·tanh(f2)
//! pure:     e = exp(−Δ(|f1| + |w_τ|)),  h' = A − A·e·f1
//! ```
//!
//! The first product (backbone layer 0, or the heads when `L = 0`) is split into its `x` part,
//! one product over every step before the recurrence, and its `h` part, one product per step;
//! then per step one product per further backbone layer and one for the stacked heads, each
//! followed by one element-wise pass (bias, activation; the heads' equations).
//!
//! Backward, with `g = ∂h'` (this step's output gradient plus what step t + 1 sends back) and
//! `u_i = tanh(f_i)`:
//!
//! ```text
//! default:  ∂f1 = g(1 − s)(1 − u1²),  ∂f2 = g·s(1 − u2²),  ∂s = g(u2 − u1)
//! no-gate:  ∂f1 = g(1 − u1²),         ∂f2 = g·s(1 − u2²),  ∂s = g·u2
//!           ∂b = ∂s·s(1 − s),  ∂a = ∂b·Δ
//! pure:     ∂f1 = −g·A·e(1 − Δ·f1·sgn f1),  ∂A += g(1 − e·f1),  ∂w_τ += g·A·f1·e·Δ·sgn w_τ
//! ∂z_L = W_headsᵀ ∂heads;  ∂p_k = ∂z_{k+1} ⊙ act'(p_k);  ∂z_k = W_kᵀ ∂p_k;  ∂h ← ∂z_0[I:]
//! act': LeCun tanh 0.666·1.7159(1 − (z/1.7159)²), tanh 1 − z², ReLU [p ≥ 0] (read as z > 0),
//!       GELU ½ + 0.398942·p·e^{−p²/2} + ½erf(p/√2) (Candle's derivative, with its constant;
//!       1/√(2π) = 0.39894228…), SiLU σ(p)(1 − z) + z
//! ```
//!
//! The per-step products run the register-blocked tiles of [`super::pack`], their weights packed
//! once per sequence (forward and backward each pack their own, transposed or not).
//! Backward walks the steps in reverse with one product per layer per step; the weight
//! gradients, the biases and `∂x` are single products over all steps after the loop. `sgn` is
//! +1 at 0, as Candle's `abs` takes it.
//!
//! Saved per (sample, step): the backbone activations `z_1 … z_L` (L·U; the pre-activations
//! too, for GELU and SiLU), and the heads' `[u1 | u2 | s]` (3H) or, in pure mode, `[f1 | e]`
//! (2H). Only this kernel reads its saved values, so a shard keeps them in blocks, step-major:
//! each layer's activations of one step then form the contiguous matrix the next product reads,
//! forward and backward, with no copies.

use candle_core::cpu::erf::erf_f64;

use super::gemm::{matmul, project_backward, sample_major, time_major, View};
use super::pack::{Lhs, Packed, Start};
use super::scratch::Scratch;
use super::{lanes, sigmoid, tanh, KernelFloat, Parts, RowKernel};
use crate::config::{BackboneActivation, CfcMode};

/// Inputs `x` (B, T, I), packed weights (see [`CfcKernel::weights_len`]), state `h0` (B, H) →
/// `h` per step.
///
/// Weights, in order: per backbone layer `W_k` (U × in_k, in_0 = I + H, else U) and `b_k` (U);
/// the stacked head matrix (G × in_heads: ff1, ff2, time_a, time_b rows, G = 4H; ff1 alone,
/// G = H, in pure mode; in_heads = U, or I + H without backbone) and its biases (G); in pure
/// mode `A` (H) and `w_tau` (H).
#[derive(Debug, Clone)]
pub struct CfcKernel {
    pub input: usize,
    pub hidden: usize,
    pub backbone_units: usize,
    pub backbone_layers: usize,
    pub mode: CfcMode,
    pub activation: BackboneActivation,
    /// Elapsed time per (sample, step), row-major; `None`: 1 everywhere.
    pub dt: Option<Vec<f64>>,
}

/// Offsets of the packed weights.
struct Offsets {
    /// (weight, bias) of each backbone layer.
    backbone: Vec<(usize, usize)>,
    heads: usize,
    heads_b: usize,
    a: usize,
    w_tau: usize,
    len: usize,
}

/// The packed weights as slices.
struct Weights<'a, T> {
    /// (W_k, b_k) of each backbone layer.
    backbone: Vec<(&'a [T], &'a [T])>,
    heads: &'a [T],
    heads_b: &'a [T],
    a: &'a [T],
    w_tau: &'a [T],
}

impl CfcKernel {
    fn pure(&self) -> bool {
        self.mode == CfcMode::Pure
    }
    /// Rows of the stacked heads.
    fn heads(&self) -> usize {
        if self.pure() {
            self.hidden
        } else {
            4 * self.hidden
        }
    }
    fn layer_input(&self, k: usize) -> usize {
        if k == 0 {
            self.input + self.hidden
        } else {
            self.backbone_units
        }
    }
    /// Input width of the heads.
    fn head_input(&self) -> usize {
        self.layer_input(self.backbone_layers)
    }
    /// Rows of the first product (the one that reads `[x, h]`).
    fn first_rows(&self) -> usize {
        if self.backbone_layers > 0 {
            self.backbone_units
        } else {
            self.heads()
        }
    }
    /// Saved head values per (sample, step).
    fn head_saved(&self) -> usize {
        if self.pure() {
            2 * self.hidden
        } else {
            3 * self.hidden
        }
    }
    /// Whether the activation's derivative needs the pre-activation (not only its value).
    fn keeps_pre(&self) -> bool {
        matches!(
            self.activation,
            BackboneActivation::Gelu | BackboneActivation::Silu
        )
    }
    fn dt(&self, b: usize, t: usize, steps: usize) -> f64 {
        self.dt.as_ref().map(|d| d[b * steps + t]).unwrap_or(1.0)
    }

    fn offsets(&self) -> Offsets {
        let (u, h) = (self.backbone_units, self.hidden);
        let mut o = 0;
        let mut backbone = Vec::with_capacity(self.backbone_layers);
        for k in 0..self.backbone_layers {
            let wl = u * self.layer_input(k);
            backbone.push((o, o + wl));
            o += wl + u;
        }
        let heads = o;
        o += self.heads() * self.head_input();
        let heads_b = o;
        o += self.heads();
        let (a, w_tau) = (o, o + h);
        if self.pure() {
            o += 2 * h;
        }
        Offsets {
            backbone,
            heads,
            heads_b,
            a,
            w_tau,
            len: o,
        }
    }

    fn split<'a, T>(&self, w: &'a [T]) -> Weights<'a, T> {
        let (u, h, g) = (self.backbone_units, self.hidden, self.heads());
        let o = self.offsets();
        let backbone = (0..self.backbone_layers)
            .map(|k| {
                let (wo, bo) = o.backbone[k];
                (&w[wo..bo], &w[bo..bo + u])
            })
            .collect();
        let (a, w_tau): (&[T], &[T]) = if self.pure() {
            (&w[o.a..o.a + h], &w[o.w_tau..o.w_tau + h])
        } else {
            (&[], &[])
        };
        Weights {
            backbone,
            heads: &w[o.heads..o.heads_b],
            heads_b: &w[o.heads_b..o.heads_b + g],
            a,
            w_tau,
        }
    }

    /// The heads' element-wise pass for one row: pre-activations (G, biases not yet added) in,
    /// the new state into `out` and `hp`, the values backward needs into `sv`.
    #[inline(always)]
    fn heads_forward<T: KernelFloat>(
        &self,
        pre: &[T],
        w: &Weights<T>,
        dt: T,
        out: &mut [T],
        hp: &mut [T],
        sv: &mut [T],
    ) {
        let h = self.hidden;
        match self.mode {
            CfcMode::Pure => {
                let (f1s, es) = sv.split_at_mut(h);
                lanes(
                    [&pre[..h], &w.heads_b[..h], w.a, w.w_tau],
                    [out, hp, f1s, es],
                    #[inline(always)]
                    |[p, b, a, wtau], o| {
                        let f1 = p + b;
                        let e = (-(dt * (f1.abs() + wtau.abs()))).exp_k();
                        let v = a - a * (e * f1);
                        *o = [v, v, f1, e];
                    },
                );
            }
            CfcMode::Default => gated_forward::<T, true>(pre, w.heads_b, dt, out, hp, sv),
            CfcMode::NoGate => gated_forward::<T, false>(pre, w.heads_b, dt, out, hp, sv),
        }
    }

    /// The heads' backward pass for one row: from the saved values, this step's output
    /// gradient `gout` and the gradient `dh` sent back by the next step, the gradients of the
    /// head pre-activations into `dheads`; pure mode accumulates `∂A` and `∂w_τ`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn heads_backward<T: KernelFloat>(
        &self,
        sv: &[T],
        gout: &[T],
        dh: &[T],
        dt: T,
        w: &Weights<T>,
        dheads: &mut [T],
        da: &mut [T],
        dwt: &mut [T],
    ) {
        let h = self.hidden;
        let (zero, one) = (T::zero(), T::one());
        match self.mode {
            CfcMode::Pure => {
                let (f1s, es) = sv.split_at(h);
                lanes(
                    [f1s, es, gout, dh, w.a, w.w_tau],
                    [dheads, da, dwt],
                    #[inline(always)]
                    |[f1, e, go, dn, a, wtau], o| {
                        let g = go + dn;
                        let s1 = if f1 >= zero { one } else { -one };
                        let sw = if wtau >= zero { one } else { -one };
                        let gae = g * a * e;
                        o[0] = -gae * (one - dt * f1 * s1);
                        o[1] = o[1] + g * (one - e * f1);
                        o[2] = o[2] + gae * f1 * dt * sw;
                    },
                );
            }
            CfcMode::Default => gated_backward::<T, true>(sv, gout, dh, dt, dheads),
            CfcMode::NoGate => gated_backward::<T, false>(sv, gout, dh, dt, dheads),
        }
    }
}

/// The heads of the default (`GATED`) and no-gate modes for one row.
#[inline(always)]
fn gated_forward<T: KernelFloat, const GATED: bool>(
    pre: &[T],
    bias: &[T],
    dt: T,
    out: &mut [T],
    hp: &mut [T],
    sv: &mut [T],
) {
    let h = out.len();
    let (u1s, rest) = sv.split_at_mut(h);
    let (u2s, ss) = rest.split_at_mut(h);
    lanes(
        [
            &pre[..h],
            &pre[h..2 * h],
            &pre[2 * h..3 * h],
            &pre[3 * h..4 * h],
            &bias[..h],
            &bias[h..2 * h],
            &bias[2 * h..3 * h],
            &bias[3 * h..4 * h],
        ],
        [out, hp, u1s, u2s, ss],
        #[inline(always)]
        |[p1, p2, pa, pb, b1, b2, ba, bb], o| {
            let u1 = tanh(p1 + b1);
            let u2 = tanh(p2 + b2);
            let s = sigmoid((pa + ba) * dt + (pb + bb));
            let v = if GATED {
                u1 - u1 * s + s * u2
            } else {
                u1 + s * u2
            };
            *o = [v, v, u1, u2, s];
        },
    );
}

#[inline(always)]
fn gated_backward<T: KernelFloat, const GATED: bool>(
    sv: &[T],
    gout: &[T],
    dh: &[T],
    dt: T,
    dheads: &mut [T],
) {
    let h = gout.len();
    let one = T::one();
    let (u1s, rest) = sv.split_at(h);
    let (u2s, ss) = rest.split_at(h);
    let (d1, rest) = dheads.split_at_mut(h);
    let (d2, rest) = rest.split_at_mut(h);
    let (dta, dtb) = rest.split_at_mut(h);
    lanes(
        [u1s, u2s, ss, gout, dh],
        [d1, d2, dta, dtb],
        #[inline(always)]
        |[u1, u2, s, go, dn], o| {
            let g = go + dn;
            let (df1, ds) = if GATED {
                (g * (one - s), g * (u2 - u1))
            } else {
                (g, g * u2)
            };
            let dq = ds * s * (one - s);
            *o = [df1 * (one - u1 * u1), g * s * (one - u2 * u2), dq * dt, dq];
        },
    );
}

const LECUN_OUT: f64 = 1.7159;
const LECUN_IN: f64 = 0.666;
/// The constant of Candle's GELU derivative (1/√(2π) rounded), kept so that the kernel's
/// gradients equal those of the reference.
const GELU_PDF: f64 = 0.398942;

fn erf<T: KernelFloat>(x: T) -> T {
    T::from(erf_f64(x.to_f64().unwrap_or(f64::NAN))).unwrap()
}

/// Bias and activation of one backbone layer over `rows` rows: `y = act(pre + b)`, and the
/// pre-activation into `p` where the derivative needs it.
#[inline(always)]
fn activate<T: KernelFloat>(
    act: BackboneActivation,
    pre: &[T],
    bias: &[T],
    y: &mut [T],
    p: Option<&mut [T]>,
) {
    let u = bias.len();
    let (zero, one, half) = (T::zero(), T::one(), T::from(0.5).unwrap());
    let (c_out, c_in) = (T::from(LECUN_OUT).unwrap(), T::from(LECUN_IN).unwrap());
    let rsqrt2 = T::from(std::f64::consts::FRAC_1_SQRT_2).unwrap();
    let rows = y.chunks_exact_mut(u).zip(pre.chunks_exact(u));
    match (act, p) {
        (BackboneActivation::Gelu, Some(p)) => {
            for ((yr, xr), pr) in rows.zip(p.chunks_exact_mut(u)) {
                lanes(
                    [xr, bias],
                    [yr, pr],
                    #[inline(always)]
                    |[x, b], o| {
                        let v = x + b;
                        *o = [(erf(v * rsqrt2) + one) * half * v, v];
                    },
                );
            }
        }
        (BackboneActivation::Silu, Some(p)) => {
            for ((yr, xr), pr) in rows.zip(p.chunks_exact_mut(u)) {
                lanes(
                    [xr, bias],
                    [yr, pr],
                    #[inline(always)]
                    |[x, b], o| {
                        let v = x + b;
                        *o = [v / (one + (-v).exp_k()), v];
                    },
                );
            }
        }
        (BackboneActivation::LecunTanh, _) => {
            for (yr, xr) in rows {
                lanes(
                    [xr, bias],
                    [yr],
                    #[inline(always)]
                    |[x, b], o| o[0] = c_out * tanh(c_in * (x + b)),
                );
            }
        }
        (BackboneActivation::Tanh, _) => {
            for (yr, xr) in rows {
                lanes(
                    [xr, bias],
                    [yr],
                    #[inline(always)]
                    |[x, b], o| o[0] = tanh(x + b),
                );
            }
        }
        (BackboneActivation::Relu, _) => {
            for (yr, xr) in rows {
                lanes(
                    [xr, bias],
                    [yr],
                    #[inline(always)]
                    |[x, b], o| {
                        let v = x + b;
                        o[0] = if v > zero { v } else { zero };
                    },
                );
            }
        }
        (BackboneActivation::Gelu | BackboneActivation::Silu, None) => {
            unreachable!("GELU and SiLU keep their pre-activations")
        }
    }
}

/// `dp = dz ⊙ act'` from the layer's output `y` (and pre-activation `p` for GELU and SiLU).
#[inline(always)]
fn activation_backward<T: KernelFloat>(
    act: BackboneActivation,
    dz: &[T],
    y: &[T],
    p: Option<&[T]>,
    dp: &mut [T],
) {
    let (zero, one, half) = (T::zero(), T::one(), T::from(0.5).unwrap());
    let (c_out, c_in) = (T::from(LECUN_OUT).unwrap(), T::from(LECUN_IN).unwrap());
    let pdf = T::from(GELU_PDF).unwrap();
    let rsqrt2 = T::from(std::f64::consts::FRAC_1_SQRT_2).unwrap();
    match (act, p) {
        (BackboneActivation::Gelu, Some(p)) => lanes(
            [dz, p],
            [dp],
            #[inline(always)]
            |[d, v], o| {
                let grad = half + pdf * (-(v * v) * half).exp_k() * v + half * erf(v * rsqrt2);
                o[0] = d * grad;
            },
        ),
        (BackboneActivation::Silu, Some(p)) => lanes(
            [dz, y, p],
            [dp],
            #[inline(always)]
            |[d, z, v], o| {
                let s = sigmoid(v);
                o[0] = d * (s * (one - z) + z);
            },
        ),
        (BackboneActivation::LecunTanh, _) => lanes(
            [dz, y],
            [dp],
            #[inline(always)]
            |[d, z], o| {
                let t = z / c_out;
                o[0] = d * c_out * (one - t * t) * c_in;
            },
        ),
        (BackboneActivation::Tanh, _) => lanes(
            [dz, y],
            [dp],
            #[inline(always)]
            |[d, z], o| o[0] = d * (one - z * z),
        ),
        (BackboneActivation::Relu, _) => lanes(
            [dz, y],
            [dp],
            #[inline(always)]
            |[d, z], o| o[0] = if z > zero { d } else { zero },
        ),
        (BackboneActivation::Gelu | BackboneActivation::Silu, None) => {
            unreachable!("GELU and SiLU keep their pre-activations")
        }
    }
}

/// Column sums of a (rows × cols) row-major matrix into `dst` (cols).
fn column_sums<T: KernelFloat>(a: &[T], cols: usize, dst: &mut [T]) {
    dst.fill(T::zero());
    for row in a.chunks_exact(cols) {
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = *d + v;
        }
    }
}

impl RowKernel for CfcKernel {
    const NAME: &'static str = "cfc-layer";
    fn input_width(&self) -> usize {
        self.input
    }
    fn state_width(&self) -> usize {
        self.hidden
    }
    fn weights_len(&self) -> usize {
        self.offsets().len
    }
    fn output_width(&self) -> usize {
        self.hidden
    }
    fn saved_width(&self) -> usize {
        let per_layer = if self.keeps_pre() { 2 } else { 1 };
        self.backbone_layers * self.backbone_units * per_layer + self.head_saved()
    }
    /// Every output, every backbone activation (and pre-activation where kept) and every
    /// head value of every (row, step) is written by the forward pass.
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
        let (i, h, u, l) = (
            self.input,
            self.hidden,
            self.backbone_units,
            self.backbone_layers,
        );
        let (g, iw, r0, hw) = (self.heads(), i + h, self.first_rows(), self.head_saved());
        let Parts { out, saved, .. } = res;
        let n = out.len() / (steps * h).max(1);
        let m = n * steps;
        if m == 0 {
            return;
        }
        let wt = self.split(w);
        let first_w = if l > 0 { wt.backbone[0].0 } else { wt.heads };
        // The per-step products' right operands, packed once for the tiles of `pack`: the h
        // part of the first product transposed (H × r0), the further layers' and the heads'
        // matrices transposed.
        let first_ht = Packed::dense(h, r0, |kk, c| first_w[c * iw + i + kk], None);
        let mid_t: Vec<Packed<T>> = (1..l)
            .map(|k| Packed::dense(u, u, |kk, c| wt.backbone[k].0[c * u + kk], None))
            .collect();
        let heads_t = (l > 0).then(|| Packed::dense(u, g, |kk, c| wt.heads[c * u + kk], None));
        let (ys, rest) = saved.split_at_mut(l * m * u);
        let (ps, hsv) = rest.split_at_mut(if self.keeps_pre() { l * m * u } else { 0 });
        // The x part of the first product for every step of these rows, step-major: one product.
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        let mut first = vec![T::zero(); m * r0];
        matmul(
            m,
            r0,
            i,
            &mut first,
            r0,
            false,
            View::rows(&xt, i),
            View {
                data: &first_w[..r0 * iw],
                rs: 1,
                cs: iw as isize,
            },
        );
        let mut hp = s0[b0 * h..(b0 + n) * h].to_vec();
        let mut buf = vec![T::zero(); n * u.max(g)];
        for t in 0..steps {
            let ft = &mut first[t * n * r0..(t + 1) * n * r0];
            first_ht.product(n, Lhs::one(&hp, h), Start::Dst, ft, r0);
            if l > 0 {
                for k in 0..l {
                    let (done, cur) = ys.split_at_mut(k * m * u);
                    let yk = &mut cur[t * n * u..(t + 1) * n * u];
                    let pre: &[T] = if k == 0 {
                        &*ft
                    } else {
                        let prev = &done[(k - 1) * m * u + t * n * u..][..n * u];
                        mid_t[k - 1].product(n, Lhs::one(prev, u), Start::Zero, &mut buf, u);
                        &buf[..n * u]
                    };
                    let pk = if self.keeps_pre() {
                        Some(&mut ps[k * m * u + t * n * u..][..n * u])
                    } else {
                        None
                    };
                    activate(self.activation, pre, wt.backbone[k].1, yk, pk);
                }
                let last = &ys[(l - 1) * m * u + t * n * u..][..n * u];
                if let Some(heads_t) = &heads_t {
                    heads_t.product(n, Lhs::one(last, u), Start::Zero, &mut buf, g);
                }
            }
            let pre: &[T] = if l > 0 { &buf[..n * g] } else { &*ft };
            let hs = &mut hsv[t * n * hw..(t + 1) * n * hw];
            for r in 0..n {
                let q = r * steps + t;
                let dt = T::from(self.dt(b0 + r, t, steps)).unwrap();
                self.heads_forward(
                    &pre[r * g..(r + 1) * g],
                    &wt,
                    dt,
                    &mut out[q * h..(q + 1) * h],
                    &mut hp[r * h..(r + 1) * h],
                    &mut hs[r * hw..(r + 1) * hw],
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
        let (i, h, u, l) = (
            self.input,
            self.hidden,
            self.backbone_units,
            self.backbone_layers,
        );
        let (g, iw, r0, hw) = (self.heads(), i + h, self.first_rows(), self.head_saved());
        let n = ds0.len() / h;
        let m = n * steps;
        let off = self.offsets();
        let mut dw = vec![T::zero(); off.len];
        if m == 0 {
            return dw;
        }
        let wt = self.split(w);
        let first_w = if l > 0 { wt.backbone[0].0 } else { wt.heads };
        // The per-step products' right operands, packed once: the h columns of the first
        // matrix (r0 × H), the further layers' matrices and the heads' (g × U).
        let first_h = Packed::dense(r0, h, |kk, c| first_w[kk * iw + i + c], None);
        let mid: Vec<Packed<T>> = (1..l)
            .map(|k| Packed::dense(u, u, |kk, c| wt.backbone[k].0[kk * u + c], None))
            .collect();
        let heads = (l > 0).then(|| Packed::dense(g, u, |kk, c| wt.heads[kk * u + c], None));
        let keeps = self.keeps_pre();
        let (ys, rest) = fwd.saved.split_at(l * m * u);
        let (ps, hsv) = rest.split_at(if keeps { l * m * u } else { 0 });
        // Gradients of the head and backbone pre-activations and the previous states of every
        // (step, row), step-major.
        // Every value of these is written before it is read: pooled, not zeroed.
        let mut dheads = Scratch::<T>::new(m * g);
        let mut dps = Scratch::<T>::new(l * m * u);
        let mut hprev = Scratch::<T>::new(m * h);
        let mut dh = vec![T::zero(); n * h];
        let mut dz = vec![T::zero(); n * u];
        let (mut da, mut dwt) = (vec![T::zero(); h], vec![T::zero(); h]);
        for t in (0..steps).rev() {
            for r in 0..n {
                let (b, q, p) = (b0 + r, r * steps + t, t * n + r);
                let prev = if t == 0 {
                    &s0[b * h..(b + 1) * h]
                } else {
                    &fwd.out[(q - 1) * h..q * h]
                };
                hprev[p * h..(p + 1) * h].copy_from_slice(prev);
                let gq = b * steps + t;
                let dt = T::from(self.dt(b, t, steps)).unwrap();
                self.heads_backward(
                    &hsv[p * hw..(p + 1) * hw],
                    &grad.out[gq * h..(gq + 1) * h],
                    &dh[r * h..(r + 1) * h],
                    dt,
                    &wt,
                    &mut dheads[p * g..(p + 1) * g],
                    &mut da,
                    &mut dwt,
                );
            }
            let dht = &dheads[t * n * g..(t + 1) * n * g];
            if let Some(heads) = &heads {
                heads.product(n, Lhs::one(dht, g), Start::Zero, &mut dz, u);
                for k in (0..l).rev() {
                    let at = k * m * u + t * n * u;
                    let dpk = &mut dps[at..at + n * u];
                    let pk = keeps.then(|| &ps[at..at + n * u]);
                    activation_backward(self.activation, &dz, &ys[at..at + n * u], pk, dpk);
                    if k > 0 {
                        mid[k - 1].product(n, Lhs::one(dpk, u), Start::Zero, &mut dz, u);
                    } else {
                        first_h.product(n, Lhs::one(dpk, u), Start::Zero, &mut dh, h);
                    }
                }
            } else {
                first_h.product(n, Lhs::one(dht, g), Start::Zero, &mut dh, h);
            }
        }
        ds0.copy_from_slice(&dh);

        // The first product: its weight gradient (x and h columns), its bias and ∂x, each one
        // product over every step.
        let dfirst: &[T] = if l > 0 { &dps[..m * u] } else { &dheads };
        let (fw_at, fb_at) = if l > 0 {
            off.backbone[0]
        } else {
            (off.heads, off.heads_b)
        };
        let xt = time_major(&x[b0 * steps * i..(b0 + n) * steps * i], n, steps, i);
        {
            let dwf = &mut dw[fw_at..fw_at + r0 * iw];
            matmul(
                r0,
                i,
                m,
                dwf,
                iw,
                false,
                View::transposed(dfirst, r0),
                View::rows(&xt, i),
            );
            matmul(
                r0,
                h,
                m,
                &mut dwf[i..],
                iw,
                false,
                View::transposed(dfirst, r0),
                View::rows(&hprev, h),
            );
        }
        column_sums(dfirst, r0, &mut dw[fb_at..fb_at + r0]);
        let mut dxt = vec![T::zero(); m * i];
        matmul(
            m,
            i,
            r0,
            &mut dxt,
            i,
            false,
            View::rows(dfirst, r0),
            View {
                data: &first_w[..r0 * iw],
                rs: iw as isize,
                cs: 1,
            },
        );
        sample_major(&dxt, n, steps, i, dx);
        // The further backbone layers and the heads read the saved activations.
        for k in 1..l {
            let (wo, bo) = off.backbone[k];
            let (dwk, rest) = dw[wo..].split_at_mut(bo - wo);
            project_backward(
                m,
                u,
                u,
                &ys[(k - 1) * m * u..k * m * u],
                wt.backbone[k].0,
                &dps[k * m * u..(k + 1) * m * u],
                dwk,
                &mut rest[..u],
                None,
            );
        }
        if l > 0 {
            let (dwh, rest) = dw[off.heads..].split_at_mut(off.heads_b - off.heads);
            project_backward(
                m,
                u,
                g,
                &ys[(l - 1) * m * u..l * m * u],
                wt.heads,
                &dheads,
                dwh,
                &mut rest[..g],
                None,
            );
        }
        if self.pure() {
            dw[off.a..off.a + h].copy_from_slice(&da);
            dw[off.w_tau..off.w_tau + h].copy_from_slice(&dwt);
        }
        dw
    }
}
