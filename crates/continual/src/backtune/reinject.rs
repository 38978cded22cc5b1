//! The report's "reinject" option (RR-9100, the footnote on improving the estimate of the state
//! value; `TransformSupervisedCriterion` with `reinject` in the reference code): the desired
//! values of the per-unit solves are not `x − ε` on the simulated trajectory but a trajectory
//! `x̂` in which
//!
//! - the observed outputs are **clamped** to their targets, `x̂_o(t) = ō(t)` wherever there is a
//!   target (which also makes the kernel values `φ` that read them "closer to the ideal value",
//!   in the report's words), and
//! - every other node value (hidden nodes, and outputs at steps without a target) is the
//!   minimiser of the network equations' misfit
//!
//!   `M(x̂) = ½ Σ_nt r_nt²`,  `r_nt = x̂_n(t) − Φ_nt(x̂)`
//!
//!   with `Φ_nt` node `n`'s right-hand side at step `t` (current weights) evaluated on `x̂`,
//!   starting from the simulation: the hidden trajectory most consistent with the network given
//!   the clamped outputs. The sum runs over every node, outputs included: with a split unit
//!   whose output node has no weight (LNL), the misfit of the output equation
//!   `ō − ζ(p̂)` is what carries the target into the pre-activation's desired values.
//!
//! `∂M/∂x̂_j = r_j − Σ_{nt} β_{nt,j} r_nt` with `β_{nt,j} = ∂Φ_nt/∂x_j` (the backward pass's `β`),
//! so at a minimum `x̂ = Φ(x̂) + Σ β (x̂ − Φ(x̂))` on the free entries: the report's recurrence
//! `x̂ ← Φ(x̂) − Σβ(x̂ − Φ(x̂))` with the sign that the normal equations of its own `M` give (the
//! minus sign of the report's text does not zero `∂M`; the tests check that our fixed point
//! does, against finite differences of `M`).
//!
//! Two solvers ([`ReinjectSolver`]):
//! - [`ReinjectSolver::GaussNewton`] (the default), damped (Levenberg–Marquardt): `r` is
//!   linearised, `r(x̂ + δ) ≈ r + Jδ` with `J = (I − B)` restricted to the free columns (`B` the
//!   matrix of the `β`), and `(JᵀJ + μ·diag(JᵀJ)) δ = −Jᵀr` is solved exactly; `μ` is divided by
//!   10 after a step that lowers `M` and multiplied by 10 (the step retried) otherwise. In the
//!   time-major order of the values (`t·N + n`) a residual reads values at most `R` steps
//!   apart, so `JᵀJ` is banded with half-width at most `(R + 1)·N`: a banded Cholesky
//!   factorisation costs `O(NT·((R+1)N)²)` per step and `O(NT·(R+1)N)` memory (every network
//!   here has `R = 1`). `I − B` is unit triangular in the causal order (a node reads past steps
//!   and higher-index nodes of the same step), so its columns, and `J`'s, are independent:
//!   `JᵀJ` is positive definite and the minimiser is unique near the simulation. The damping
//!   matters where the linearised dynamics expand (`J` is then ill-conditioned in `T`). It
//!   stops when a step lowers `M` by less than `tol` of its value, or after `max_steps` steps.
//! - [`ReinjectSolver::FixedPoint`]: the recurrence itself, `x̂ ← x̂ − ∂M/∂x̂` on the free entries
//!   (a unit gradient step on `M`), as the reference code iterates it (20 times at most, until
//!   the rms change is below `1e−6`); the iterate with the smallest `M` is kept. It converges
//!   only when the spectrum of `JᵀJ` lies in `(0, 2)`, which a split unit defeats: a
//!   pre-activation `p` appears in its own equation (coefficient 1) and in its output node's
//!   (`−ζ'(p)`, close to −1 for small `p`), so `(JᵀJ)_pp ≈ 2` and the recurrence oscillates on
//!   it (measured in docs/results.md).
//!
//! The estimator ([`super::estimator`]) then runs the per-unit solves of its second-order
//! candidates on `x̂` in place of the simulated trajectory: each node's kernel values
//! `φ_nd(x̂)` and its residual `x̂_n − φ_n0(x̂)` (the `NoAdjoint` variant then fits each node's
//! equation along the desired trajectory; `Plain` and `Weighted` still subtract `ε`, as the
//! reference code does). The adjoint, the first-order candidates and the criterion are
//! unchanged.
use serde::{Deserialize, Serialize};

use super::network::{Data, Network, Trajectory};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReinjectSolver {
    GaussNewton,
    FixedPoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReinjectConfig {
    pub solver: ReinjectSolver,
    /// Gauss–Newton steps (accepted or not), or fixed-point iterations.
    pub max_steps: usize,
    /// Gauss–Newton: stop when a step lowers `M` by less than `tol·M`; fixed point: when the
    /// rms change is below `tol`.
    pub tol: f64,
}

impl Default for ReinjectConfig {
    fn default() -> Self {
        Self {
            solver: ReinjectSolver::GaussNewton,
            max_steps: 12,
            tol: 1e-8,
        }
    }
}

impl ReinjectConfig {
    /// The reference code's setting: the plain recurrence, 20 iterations, rms change `1e−6`.
    pub fn fixed_point() -> Self {
        Self {
            solver: ReinjectSolver::FixedPoint,
            max_steps: 20,
            tol: 1e-6,
        }
    }
}

/// What one computation of the desired values did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReinjectStats {
    /// `M` on the simulation with the outputs clamped, and at the end.
    pub misfit_initial: f64,
    pub misfit_final: f64,
    /// Gauss–Newton steps (accepted or rejected), or fixed-point iterations.
    pub steps: usize,
    /// `max |∂M/∂x̂|` at the end (0 at a stationary point).
    pub gradient: f64,
}

/// `true` where a node value is clamped to its target (laid out as [`Trajectory::x`]).
pub fn clamped(n_nodes: usize, data: &Data) -> Vec<bool> {
    let mut c = vec![false; n_nodes * data.steps];
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            if !data.target(o, t).is_nan() {
                c[t * n_nodes + n] = true;
            }
        }
    }
    c
}

/// `r = x̂ − Φ(x̂)` for every node and step (weights `w`).
pub fn residuals(net: &Network, w: &[f64], xh: &[f64], data: &Data) -> Vec<f64> {
    let n_nodes = net.n_nodes();
    let mut r = vec![0.0; xh.len()];
    for t in 0..data.steps {
        for n in 0..n_nodes {
            let i = t * n_nodes + n;
            r[i] = xh[i] - net.rhs(w, xh, data, n, t);
        }
    }
    r
}

/// `M = ½ Σ r²`.
pub fn misfit(r: &[f64]) -> f64 {
    0.5 * r.iter().map(|v| v * v).sum::<f64>()
}

/// `J v = (I − B) v` (`v` zero on the clamped entries).
pub fn apply_j(net: &Network, w: &[f64], xh: &[f64], data: &Data, v: &[f64]) -> Vec<f64> {
    let n_nodes = net.n_nodes();
    let mut out = v.to_vec();
    for t in 0..data.steps {
        for n in 0..n_nodes {
            let mut acc = 0.0;
            net.for_each_beta(w, xh, data, n, t, |j, beta| acc += beta * v[j]);
            out[t * n_nodes + n] -= acc;
        }
    }
    out
}

/// `Jᵀ u = (I − Bᵀ) u`, zeroed on the clamped entries.
pub fn apply_jt(
    net: &Network,
    w: &[f64],
    xh: &[f64],
    data: &Data,
    clamp: &[bool],
    u: &[f64],
) -> Vec<f64> {
    let n_nodes = net.n_nodes();
    let mut out = u.to_vec();
    for t in 0..data.steps {
        for n in 0..n_nodes {
            let ui = u[t * n_nodes + n];
            if ui != 0.0 {
                net.for_each_beta(w, xh, data, n, t, |j, beta| out[j] -= beta * ui);
            }
        }
    }
    for (o, &c) in out.iter_mut().zip(clamp) {
        if c {
            *o = 0.0;
        }
    }
    out
}

/// `∂M/∂x̂` on the free entries (0 on the clamped ones): `Jᵀ r`.
pub fn misfit_gradient(net: &Network, w: &[f64], xh: &[f64], data: &Data) -> Vec<f64> {
    let clamp = clamped(net.n_nodes(), data);
    let r = residuals(net, w, xh, data);
    apply_jt(net, w, xh, data, &clamp, &r)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `JᵀJ` over the free values (`free[i]`: the free index of value `i`), in lower band storage:
/// `band[k·(b+1) + j] = (JᵀJ)[k][k − j]`, `j ≤ b`; returns it and `b`.
fn normal_band(
    net: &Network,
    w: &[f64],
    xh: &[f64],
    data: &Data,
    free: &[Option<usize>],
    m: usize,
) -> (Vec<f64>, usize) {
    let n_nodes = net.n_nodes();
    // The free values each residual row reads, with their coefficients: ∂r_nt/∂x_j.
    let mut rows: Vec<Vec<(usize, f64)>> = Vec::with_capacity(xh.len());
    let mut b = 0;
    for t in 0..data.steps {
        for n in 0..n_nodes {
            let i = t * n_nodes + n;
            let mut row: Vec<(usize, f64)> = Vec::new();
            if let Some(k) = free[i] {
                row.push((k, 1.0));
            }
            net.for_each_beta(w, xh, data, n, t, |j, beta| {
                if let Some(k) = free[j] {
                    row.push((k, -beta));
                }
            });
            // Merge repeated values (a node read by several terms).
            row.sort_by_key(|e| e.0);
            row.dedup_by(|a, b| {
                if a.0 == b.0 {
                    b.1 += a.1;
                    true
                } else {
                    false
                }
            });
            if let (Some(lo), Some(hi)) = (row.first(), row.last()) {
                b = b.max(hi.0 - lo.0);
            }
            rows.push(row);
        }
    }
    let width = b + 1;
    let mut band = vec![0.0; m * width];
    for row in &rows {
        for (a, &(ka, va)) in row.iter().enumerate() {
            for &(kb, vb) in &row[..=a] {
                // ka ≥ kb (sorted).
                band[ka * width + (ka - kb)] += va * vb;
            }
        }
    }
    (band, b)
}

/// Solves `(H + μ·diag(H)) δ = g` for the banded symmetric `H` (as [`normal_band`]); `None` if
/// the damped matrix is not numerically positive definite.
fn solve_band(band: &[f64], b: usize, m: usize, mu: f64, g: &[f64]) -> Option<Vec<f64>> {
    let width = b + 1;
    let mut l = band.to_vec();
    for k in 0..m {
        l[k * width] *= 1.0 + mu;
    }
    // Banded Cholesky: L[k][k−j] at l[k·width + j].
    for k in 0..m {
        let lo = k.saturating_sub(b);
        for j in lo..k {
            let mut v = l[k * width + (k - j)];
            let lo2 = lo.max(j.saturating_sub(b));
            for i in lo2..j {
                v -= l[k * width + (k - i)] * l[j * width + (j - i)];
            }
            l[k * width + (k - j)] = v / l[j * width];
        }
        let mut d = l[k * width];
        for i in lo..k {
            let v = l[k * width + (k - i)];
            d -= v * v;
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        l[k * width] = d.sqrt();
    }
    // L y = g, then Lᵀ δ = y.
    let mut y = g.to_vec();
    for k in 0..m {
        let mut v = y[k];
        for i in k.saturating_sub(b)..k {
            v -= l[k * width + (k - i)] * y[i];
        }
        y[k] = v / l[k * width];
    }
    for k in (0..m).rev() {
        let mut v = y[k];
        for i in k + 1..(k + b + 1).min(m) {
            v -= l[i * width + (i - k)] * y[i];
        }
        y[k] = v / l[k * width];
    }
    Some(y)
}

/// The desired values `x̂` for weights `w`, from the simulation `traj` of those weights (see
/// the module doc).
pub fn desired_values(
    net: &Network,
    w: &[f64],
    traj: &Trajectory,
    data: &Data,
    cfg: &ReinjectConfig,
) -> (Trajectory, ReinjectStats) {
    let n_nodes = net.n_nodes();
    let clamp = clamped(n_nodes, data);
    let mut xh = traj.x.clone();
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let v = data.target(o, t);
            if !v.is_nan() {
                xh[t * n_nodes + n] = v;
            }
        }
    }
    let mut r = residuals(net, w, &xh, data);
    let m0 = misfit(&r);
    let mut m = m0;
    let mut steps = 0;
    match cfg.solver {
        ReinjectSolver::GaussNewton => {
            let mut free = vec![None; xh.len()];
            let mut m_free = 0;
            for (f, &c) in free.iter_mut().zip(&clamp) {
                if !c {
                    *f = Some(m_free);
                    m_free += 1;
                }
            }
            let mut mu = 1e-12;
            while steps < cfg.max_steps && m > 0.0 && m_free > 0 {
                steps += 1;
                let g = apply_jt(net, w, &xh, data, &clamp, &r);
                let rhs: Vec<f64> = (0..xh.len())
                    .filter(|&i| !clamp[i])
                    .map(|i| -g[i])
                    .collect();
                let (band, b) = normal_band(net, w, &xh, data, &free, m_free);
                let mut improved = false;
                for _ in 0..12 {
                    if let Some(delta) = solve_band(&band, b, m_free, mu, &rhs) {
                        let mut trial = xh.clone();
                        for (i, f) in free.iter().enumerate() {
                            if let Some(k) = f {
                                trial[i] += delta[*k];
                            }
                        }
                        let rt = residuals(net, w, &trial, data);
                        let mt = misfit(&rt);
                        if mt < m {
                            let decrease = (m - mt) / m;
                            (xh, r, m) = (trial, rt, mt);
                            mu = (mu * 0.1).max(1e-15);
                            improved = decrease >= cfg.tol;
                            break;
                        }
                    }
                    mu *= 10.0;
                }
                if !improved {
                    break;
                }
            }
        }
        ReinjectSolver::FixedPoint => {
            let mut best = (m, xh.clone());
            let count = clamp.iter().filter(|c| !**c).count().max(1) as f64;
            while steps < cfg.max_steps {
                let g = apply_jt(net, w, &xh, data, &clamp, &r);
                for (x, gi) in xh.iter_mut().zip(&g) {
                    *x -= gi;
                }
                steps += 1;
                r = residuals(net, w, &xh, data);
                m = misfit(&r);
                if !m.is_finite() {
                    break;
                }
                if m < best.0 {
                    best = (m, xh.clone());
                }
                let rms = (dot(&g, &g) / count).sqrt();
                if rms < cfg.tol {
                    break;
                }
            }
            (m, xh) = best;
            r = residuals(net, w, &xh, data);
        }
    }
    let gradient = apply_jt(net, w, &xh, data, &clamp, &r)
        .iter()
        .fold(0.0f64, |a, v| a.max(v.abs()));
    (
        Trajectory {
            nodes: n_nodes,
            steps: data.steps,
            x: xh,
        },
        ReinjectStats {
            misfit_initial: m0,
            misfit_final: m,
            steps,
            gradient,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::network::Sequence;
    use super::super::reverse::{setup, ReverseSpec};
    use super::super::units::{aif_learned, linear, lnl, normal, randomize, Leak, LnlSpec};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random LNL network of `u` units with weights of scale `scale`, and the output of unit
    /// 0 of *another* random network of the same shape as its targets (so that the clamped
    /// outputs disagree with the simulation).
    fn lnl_case(u: usize, steps: usize, scale: f64, seed: u64) -> (Network, Data) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spec = LnlSpec {
            units: u,
            inputs: 1,
            a: -1.0,
            b: 1.0,
            leak: Leak::Fixed(0.3),
            input_delay: 1,
        };
        let mut root = lnl(&spec).unwrap().network;
        randomize(&mut root, scale, &mut rng);
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let x = root.forward(&Data::single(inputs.clone(), vec![], vec![], steps));
        let targets = (0..steps).map(|t| x.get(0, t)).collect();
        let data = Data::concat(
            &[Sequence {
                len: steps,
                inputs,
                targets,
            }],
            1,
            vec![0],
            0,
            false,
        );
        let mut net = root.clone();
        randomize(&mut net, scale, &mut rng);
        (net, data)
    }

    #[test]
    fn j_and_its_transpose_match_finite_differences_and_each_other() {
        // A gated network too (the integrate-and-fire unit with a learned sharpness).
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut aif = aif_learned(3, 1, 0.9, 4.0).unwrap();
        let unit_weights = aif.offset(3);
        for w in aif.weights[..unit_weights].iter_mut() {
            *w = 0.8 * normal(&mut rng);
        }
        let steps = 15;
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let targets: Vec<f64> = (0..steps).map(|_| rng.random_range(0.0..1.0)).collect();
        let aif_data = Data::single(inputs, vec![0], targets, steps);
        for (net, data) in [lnl_case(3, 20, 0.9, 1), (aif, aif_data)] {
            let w = &net.weights;
            let traj = net.forward(&data);
            let clamp = clamped(net.n_nodes(), &data);
            // A point off the simulation: the clamped start, perturbed on the free entries.
            let mut xh = traj.x.clone();
            for (i, x) in xh.iter_mut().enumerate() {
                if !clamp[i] {
                    *x += 0.1 * normal(&mut rng);
                }
            }
            let v: Vec<f64> = clamp
                .iter()
                .map(|&c| if c { 0.0 } else { normal(&mut rng) })
                .collect();
            let u: Vec<f64> = (0..xh.len()).map(|_| normal(&mut rng)).collect();
            let jv = apply_j(&net, w, &xh, &data, &v);
            // J v against central differences of r along v.
            let h = 1e-6;
            let along = |s: f64| -> Vec<f64> {
                let p: Vec<f64> = xh.iter().zip(&v).map(|(x, d)| x + s * d).collect();
                residuals(&net, w, &p, &data)
            };
            let (rp, rm) = (along(h), along(-h));
            for i in 0..jv.len() {
                let fd = (rp[i] - rm[i]) / (2.0 * h);
                assert!(
                    (fd - jv[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "Jv[{i}]: {} vs {fd}",
                    jv[i]
                );
            }
            // ⟨u, J v⟩ = ⟨Jᵀ u, v⟩.
            let jtu = apply_jt(&net, w, &xh, &data, &clamp, &u);
            let (a, b) = (dot(&u, &jv), dot(&jtu, &v));
            assert!((a - b).abs() < 1e-10 * (1.0 + a.abs()), "{a} vs {b}");
            // ∂M/∂x̂ against central differences of M, entry by entry.
            let g = misfit_gradient(&net, w, &xh, &data);
            for i in (0..xh.len()).step_by(3) {
                let mut p = xh.clone();
                let mut m = xh.clone();
                p[i] += h;
                m[i] -= h;
                let fd = (misfit(&residuals(&net, w, &p, &data))
                    - misfit(&residuals(&net, w, &m, &data)))
                    / (2.0 * h);
                let want = if clamp[i] { 0.0 } else { fd };
                assert!(
                    (want - g[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "∂M[{i}]: {} vs {fd}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn gauss_newton_reaches_a_stationary_point_of_the_misfit_with_the_outputs_clamped() {
        // Weights of scale 0.8 on 4 units: the linearised dynamics expand, J is ill-conditioned
        // in T (conjugate gradients stalled here); the damped banded solve converges.
        for (scale, seed) in [(0.8, 3), (0.3, 4)] {
            let (net, data) = lnl_case(4, 40, scale, seed);
            let traj = net.forward(&data);
            let tight = ReinjectConfig {
                max_steps: 60,
                tol: 1e-15,
                ..Default::default()
            };
            let (xh, st) = desired_values(&net, &net.weights, &traj, &data, &tight);
            println!("reinject (Gauss–Newton), weight scale {scale}: {st:?}");
            assert!(st.misfit_final < st.misfit_initial, "{st:?}");
            // Clamped to the targets.
            for t in 0..data.steps {
                assert_eq!(xh.get(0, t), data.target(0, t));
            }
            // The fixed point of the report's recurrence, with the sign of ∂M = 0:
            // x̂ = Φ(x̂) + Σβ(x̂ − Φ(x̂)) on the free entries.
            let g = misfit_gradient(&net, &net.weights, &xh.x, &data);
            let gmax = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let g0 = misfit_gradient(&net, &net.weights, &clamped_start(&traj, &data), &data)
                .iter()
                .fold(0.0f64, |a, v| a.max(v.abs()));
            assert!(gmax < 1e-6 * g0, "|∂M| = {gmax} (at the start {g0})");
            assert!((st.gradient - gmax).abs() <= 1e-12 * g0);
            // The minus sign of the report's text moves the other way: from x̂, one step of
            // x̂ ← Φ(x̂) − Σβ(x̂ − Φ(x̂)) raises M, while x̂ is a fixed point of the + form.
            let r = residuals(&net, &net.weights, &xh.x, &data);
            let clamp = clamped(net.n_nodes(), &data);
            let jt = apply_jt(&net, &net.weights, &xh.x, &data, &clamp, &r);
            let step = |sign: f64| -> Vec<f64> {
                (0..r.len())
                    .map(|i| {
                        if clamp[i] {
                            xh.x[i]
                        } else {
                            // Φ(x̂) ± Σβ r, with Σβ r = r − Jᵀr on the free entries.
                            (xh.x[i] - r[i]) + sign * (r[i] - jt[i])
                        }
                    })
                    .collect()
            };
            let m = |x: &[f64]| misfit(&residuals(&net, &net.weights, x, &data));
            assert!(
                m(&step(-1.0)) > m(&xh.x),
                "{} vs {}",
                m(&step(-1.0)),
                m(&xh.x)
            );
            let moved = step(1.0)
                .iter()
                .zip(&xh.x)
                .fold(0.0f64, |a, (p, x)| a.max((p - x).abs()));
            assert!(moved <= gmax * (1.0 + 1e-9) + 1e-15, "moved {moved}");
        }
    }

    /// `x` with the targets in place of the observed values.
    fn clamped_start(traj: &Trajectory, data: &Data) -> Vec<f64> {
        let mut x = traj.x.clone();
        for (o, &n) in data.observed.iter().enumerate() {
            for t in 0..data.steps {
                let v = data.target(o, t);
                if !v.is_nan() {
                    x[t * traj.nodes + n] = v;
                }
            }
        }
        x
    }

    #[test]
    fn the_fixed_point_recurrence_agrees_with_gauss_newton_where_it_converges_only() {
        // A linear network with small weights: JᵀJ is close to the identity and the plain
        // recurrence converges, to the Gauss–Newton solution.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut net = linear(3, 1, 1).unwrap();
        randomize(&mut net, 0.1, &mut rng);
        let steps = 30;
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let targets: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let data = Data::single(inputs, vec![0], targets, steps);
        let traj = net.forward(&data);
        let gn = ReinjectConfig {
            tol: 1e-14,
            ..Default::default()
        };
        let (a, sa) = desired_values(&net, &net.weights, &traj, &data, &gn);
        let fp = ReinjectConfig {
            max_steps: 2000,
            tol: 1e-13,
            ..ReinjectConfig::fixed_point()
        };
        let (b, sb) = desired_values(&net, &net.weights, &traj, &data, &fp);
        println!("linear: Gauss–Newton {sa:?}; fixed point {sb:?}");
        let diff =
            a.x.iter()
                .zip(&b.x)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff < 1e-9, "max |x̂_GN − x̂_FP| = {diff}");
        // A split (LNL) unit: the pre-activation column of J holds 1 and −ζ'(p) ≈ −1, so JᵀJ
        // has an eigenvalue near 2 and the recurrence does not settle; Gauss–Newton does.
        let (net, data) = lnl_case(3, 30, 0.2, 5);
        let traj = net.forward(&data);
        let (_, sa) = desired_values(&net, &net.weights, &traj, &data, &gn);
        let (_, sb) = desired_values(&net, &net.weights, &traj, &data, &fp);
        println!("LNL: Gauss–Newton {sa:?}; fixed point {sb:?}");
        assert!(sa.gradient < 1e-6 * sb.gradient, "{sa:?} {sb:?}");
        assert!(
            sb.misfit_final > sa.misfit_final * (1.0 + 1e-6),
            "{sa:?} {sb:?}"
        );
    }

    #[test]
    fn a_linear_network_is_solved_in_one_step_and_the_root_is_its_own_desired_trajectory() {
        // Linear: M is quadratic, one Gauss–Newton step (exact CGLS) is the minimum.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let mut net = linear(3, 1, 1).unwrap();
        randomize(&mut net, 0.4, &mut rng);
        let steps = 12;
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let targets: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let data = Data::single(inputs, vec![0], targets, steps);
        let traj = net.forward(&data);
        let cfg = ReinjectConfig {
            max_steps: 1,
            ..Default::default()
        };
        let (xh, st) = desired_values(&net, &net.weights, &traj, &data, &cfg);
        assert_eq!(st.steps, 1);
        let g = misfit_gradient(&net, &net.weights, &xh.x, &data);
        assert!(g.iter().all(|v| v.abs() < 1e-10), "{g:?}");
        // The root network observed on its own output: the simulation is consistent, M = 0,
        // and the desired trajectory is the simulation.
        let (root, data, _) = setup(&ReverseSpec::lnl(4, 2)).unwrap();
        let traj = root.forward(&data);
        let (xh, st) = desired_values(
            &root,
            &root.weights,
            &traj,
            &data,
            &ReinjectConfig::default(),
        );
        assert_eq!(st.misfit_initial, 0.0);
        assert_eq!((st.steps, xh.x), (0, traj.x));
    }
}
