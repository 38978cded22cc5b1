//! The supervised criteria of the report (its `TransformSupervisedCriterion`), each a sum over
//! the observed output nodes and the steps where they have a target, of `ρ(e)` with
//! `e = x − ō`, and its derivative `ρ'`, the output error that starts the backward pass:
//!
//! | name | `ρ` | `ρ'` (w.r.t. `x`) |
//! |---|---|---|
//! | `2` least squares | `e²/2` | `e` |
//! | `1` reweighted L1 | `e²/(2(ν+|ê|))` | `e/(ν+|ê|)` |
//! | `0` reweighted L0 | `e²/(2(ν+ê²))` | `e/(ν+ê²)` |
//! | `a` Huber-like (pseudo-Huber) | `δ²(√(1+(e/δ)²) − 1)` | `e/√(1+(e/δ)²)` |
//! | `b` biweight, `s = e/c` | `c²/6·(s⁶ − 3s⁴ + 3s²)` if `|s|<1`, else `c²/6` | `e(1−s²)²` if `|s|<1`, else 0 |
//! | `h` Boolean margin, `v = ν − sg(ō−½)(x−½)` | `H(v)v²/2` | `−sg(ō−½)·H(v)·v` |
//!
//! `ê` is the previous estimate of the error, held fixed while one iteration's candidates are
//! compared (iteratively reweighted least squares: at `ê = e` the reweighted L1 is `≈ |e|/2`
//! and the L0 one `≈ 1/2` per non-zero error). The biweight is the report's
//! `x⁶ − 3x⁴ + 3x² = 1 − (1−x²)³`, scaled by `c²/6` so that every criterion is `≈ e²/2` near 0.
//! The report leaves the Huber-like form open; the pseudo-Huber form is used here.
//!
//! **The statistical (observable-matching) criterion** ([`Statistical`], RR-9100, the section on
//! stochastic adjustment): instead of each output value, only expectations of *observables*
//! `ω_k(t)` of the outputs are matched,
//!
//! `ρ(x) = Σ_k |λ_k|·|Ω̄_k − Ω_k(x)|`,  `Ω_k(x) = (1/|S_k|) Σ_{t∈S_k} ω_k(t)`,
//!
//! with `ω_k(t) = x_n(t)` (the mean of node `n`) or `x_n(t)·x_n(t−τ)` (its uncentred
//! autocorrelation at lag `τ`, the report's monomials), `S_k` the steps `t` with `κ_t ≠ 0` whose
//! lagged step `t − τ` is in the same segment with `κ ≠ 0`, and `Ω̄_k` the same observable of the
//! targets ([`Statistical::from_targets`]). The weighted L1 form is the report's (its `λ_k` are
//! the parameters of a maximum-entropy model of the observed distribution; here they are given,
//! 1 by default: we do not fit that model). Its derivative, the output error of the backward
//! pass, is
//!
//! `ρ'_n(s) = Σ_k |λ_k|·sg(Ω_k − Ω̄_k)·∂Ω_k/∂x_n(s)`, with `∂Ω_k/∂x_n(s) = 1{s∈S_k}/|S_k|` for the
//! mean and `(x_n(s−τ)·1{s∈S_k} + x_n(s+τ)·1{s+τ∈S_k})/|S_k|` for the autocorrelation
//!
//! (`sg(0) = 0`: an observable matched exactly contributes nothing). It is not a sum over steps
//! of a function of one value, so it is not a [`Criterion`]; the estimator takes it in place of
//! one ([`super::estimator::EstimatorConfig::statistical`]).
//!
//! **Desired values** ([`Statistical::desired_output_errors`]). `ρ'` has the same size however
//! close the fit, so `x − ε` makes a poor target for the per-unit solves. The report's scheme
//! ("bootstrapping the network estimation") takes as desired output values the values nearest
//! the simulation whose observables equal `Ω̄`: with `G` the matrix of the gradients
//! `∂Ω_k/∂x`, `x̂ ← x̂ + G(GᵀG)†(Ω̄ − Ω(x̂))` from `x̂ = x` (a Gauss–Newton iteration on the
//! constraints, exact in one step for the mean; a few steps for the autocorrelations, which are
//! quadratic). `x − x̂` then plays the part of `ρ'` for the second-order candidates (the
//! least-squares analogue: `x − ō`); the first-order candidates and the line searches use the
//! criterion itself.
//!
//! **A Gauss–Newton step on the observables** (the estimator's `observable_step`, on by
//! default): the `K` observables are `K` smooth constraints `Ω_k(W) = Ω̄_k` on the weights. One
//! backward pass per observable (from `ρ' = ∂Ω_k/∂x`, no guard) gives the rows `∂Ω_k/∂W` of
//! their Jacobian `J` (`K × weights`), and the minimum-norm step `ΔW = Jᵀ(JJᵀ)†(Ω̄ − Ω)` is one
//! more line-searched candidate. The L1 criterion has a kink wherever an observable is matched
//! exactly; along the gradient the line searches then stall (measured in docs/results.md),
//! while along `ΔW` every gap shrinks together. This candidate is ours, not the report's.
//!
//! **Unsupervised regularisers** ([`ActivityPenalty`]: sparse activity, orthogonality, soft
//! bound, the report's appendix): terms on node values, hidden ones included, added to either
//! criterion; their `ρ'` joins the output errors of the backward pass.
use serde::{Deserialize, Serialize};

use super::network::{Data, Trajectory};
use crate::error::{ContinualError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Criterion {
    L2,
    ReweightedL1 { nu: f64 },
    ReweightedL0 { nu: f64 },
    Huber { delta: f64 },
    Biweight { scale: f64 },
    Margin { nu: f64 },
}

impl Criterion {
    /// `ρ` at node value `x`, target `o`, previous error estimate `e_hat`.
    pub fn rho(self, x: f64, o: f64, e_hat: f64) -> f64 {
        let e = x - o;
        match self {
            Criterion::L2 => 0.5 * e * e,
            Criterion::ReweightedL1 { nu } => e * e / (2.0 * (nu + e_hat.abs())),
            Criterion::ReweightedL0 { nu } => e * e / (2.0 * (nu + e_hat * e_hat)),
            Criterion::Huber { delta } => {
                delta * delta * ((1.0 + (e / delta).powi(2)).sqrt() - 1.0)
            }
            Criterion::Biweight { scale } => {
                let s2 = (e / scale).powi(2);
                let b = if s2 < 1.0 {
                    1.0 - (1.0 - s2).powi(3)
                } else {
                    1.0
                };
                scale * scale / 6.0 * b
            }
            Criterion::Margin { nu } => {
                let v = nu - sg(o - 0.5) * (x - 0.5);
                if v > 0.0 {
                    0.5 * v * v
                } else {
                    0.0
                }
            }
        }
    }

    /// `ρ' = ∂ρ/∂x`.
    pub fn drho(self, x: f64, o: f64, e_hat: f64) -> f64 {
        let e = x - o;
        match self {
            Criterion::L2 => e,
            Criterion::ReweightedL1 { nu } => e / (nu + e_hat.abs()),
            Criterion::ReweightedL0 { nu } => e / (nu + e_hat * e_hat),
            Criterion::Huber { delta } => e / (1.0 + (e / delta).powi(2)).sqrt(),
            Criterion::Biweight { scale } => {
                let s2 = (e / scale).powi(2);
                if s2 < 1.0 {
                    e * (1.0 - s2).powi(2)
                } else {
                    0.0
                }
            }
            Criterion::Margin { nu } => {
                let v = nu - sg(o - 0.5) * (x - 0.5);
                if v > 0.0 {
                    -sg(o - 0.5) * v
                } else {
                    0.0
                }
            }
        }
    }

    /// Whether `ρ` reads `ê` (the reweighted criteria).
    pub fn reweighted(self) -> bool {
        matches!(
            self,
            Criterion::ReweightedL1 { .. } | Criterion::ReweightedL0 { .. }
        )
    }
}

fn sg(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else {
        1.0
    }
}

/// `e = x − ō` for every observed node and step, laid out as [`Data::targets`] (NaN where
/// there is no target).
pub fn errors(traj: &Trajectory, data: &Data) -> Vec<f64> {
    let mut e = vec![f64::NAN; data.targets.len()];
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let target = data.target(o, t);
            if !target.is_nan() {
                e[o * data.steps + t] = traj.get(n, t) - target;
            }
        }
    }
    e
}

/// `Σ ρ` over the observed nodes and steps with a target. `e_hat` is laid out as
/// [`Data::targets`]; an empty slice means `ê = e`.
pub fn loss(crit: Criterion, traj: &Trajectory, data: &Data, e_hat: &[f64]) -> f64 {
    let mut l = 0.0;
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let target = data.target(o, t);
            if target.is_nan() {
                continue;
            }
            let x = traj.get(n, t);
            let eh = if e_hat.is_empty() {
                x - target
            } else {
                e_hat[o * data.steps + t]
            };
            l += crit.rho(x, target, eh);
        }
    }
    l
}

/// `ρ'_nt` for every node and step, laid out as [`Trajectory::x`] (`t·N + n`), 0 on nodes or
/// steps without a target.
pub fn output_errors(crit: Criterion, traj: &Trajectory, data: &Data, e_hat: &[f64]) -> Vec<f64> {
    let mut r = vec![0.0; traj.x.len()];
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let target = data.target(o, t);
            if target.is_nan() {
                continue;
            }
            let x = traj.get(n, t);
            let eh = if e_hat.is_empty() {
                x - target
            } else {
                e_hat[o * data.steps + t]
            };
            r[t * traj.nodes + n] = crit.drho(x, target, eh);
        }
    }
    r
}

/// What an observable measures on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObservableKind {
    /// `ω(t) = x_n(t)`.
    Mean,
    /// `ω(t) = x_n(t)·x_n(t − lag)` (uncentred; lag 0 is the second moment).
    Autocorrelation { lag: usize },
}

impl ObservableKind {
    fn lag(self) -> usize {
        match self {
            ObservableKind::Mean => 0,
            ObservableKind::Autocorrelation { lag } => lag,
        }
    }
}

impl std::fmt::Display for ObservableKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObservableKind::Mean => write!(f, "mean"),
            ObservableKind::Autocorrelation { lag } => write!(f, "ac:{lag}"),
        }
    }
}

/// One observable `Ω_k` of node `node`, its desired value `Ω̄_k` (`target`) and weight `λ_k`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Observable {
    pub node: usize,
    pub kind: ObservableKind,
    pub target: f64,
    pub lambda: f64,
}

/// The statistical criterion `Σ_k |λ_k|·|Ω̄_k − Ω_k(x)|` (see the module doc).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistical {
    pub observables: Vec<Observable>,
}

/// The steps of an observable's window: `κ_t ≠ 0` and `t − lag` in the same segment with
/// `κ ≠ 0`.
fn window(data: &Data, lag: usize) -> impl Iterator<Item = usize> + '_ {
    (0..data.steps).filter(move |&t| {
        data.kappa[t] != 0.0
            && t >= lag
            && t - lag >= data.seg_start[t]
            && data.kappa[t - lag] != 0.0
    })
}

impl Statistical {
    /// The observables `(node, kind, λ)` with their desired values `Ω̄` measured on the targets
    /// of `data`. Every node must be observed and have a target at every step of the
    /// observable's window (and the window must not be empty).
    pub fn from_targets(specs: &[(usize, ObservableKind, f64)], data: &Data) -> Result<Self> {
        if specs.is_empty() {
            return Err(cfg(
                "the statistical criterion needs at least one observable".into(),
            ));
        }
        let mut observables = Vec::with_capacity(specs.len());
        for &(node, kind, lambda) in specs {
            let o = data
                .observed
                .iter()
                .position(|&n| n == node)
                .ok_or_else(|| {
                    cfg(format!(
                    "observable {kind} of node {node}: the node is not observed (observed: {:?}); \
                     its desired value is measured on its targets",
                    data.observed
                ))
                })?;
            if !lambda.is_finite() {
                return Err(cfg(format!(
                    "observable {kind} of node {node}: λ = {lambda}"
                )));
            }
            let lag = kind.lag();
            let (mut sum, mut count) = (0.0, 0usize);
            for t in window(data, lag) {
                let (a, b) = (data.target(o, t), data.target(o, t - lag));
                if a.is_nan() || b.is_nan() {
                    return Err(cfg(format!(
                        "observable {kind} of node {node}: no target at step {} of its window \
                         (the statistical criterion needs the observed output at every step)",
                        if a.is_nan() { t } else { t - lag }
                    )));
                }
                sum += match kind {
                    ObservableKind::Mean => a,
                    ObservableKind::Autocorrelation { .. } => a * b,
                };
                count += 1;
            }
            if count == 0 {
                return Err(cfg(format!(
                    "observable {kind} of node {node}: no step in its window (lag {lag} of {} \
                     steps)",
                    data.steps
                )));
            }
            observables.push(Observable {
                node,
                kind,
                target: sum / count as f64,
                lambda,
            });
        }
        Ok(Self { observables })
    }

    /// Checks the observables against a network of `nodes` nodes and `data`.
    pub fn check(&self, nodes: usize, data: &Data) -> Result<()> {
        if self.observables.is_empty() {
            return Err(cfg(
                "the statistical criterion needs at least one observable".into(),
            ));
        }
        for ob in &self.observables {
            if ob.node >= nodes {
                return Err(cfg(format!(
                    "observable {} of node {}: the network has {nodes} nodes",
                    ob.kind, ob.node
                )));
            }
            if window(data, ob.kind.lag()).next().is_none() {
                return Err(cfg(format!(
                    "observable {} of node {}: no step in its window",
                    ob.kind, ob.node
                )));
            }
            if !ob.target.is_finite() || !ob.lambda.is_finite() {
                return Err(cfg(format!(
                    "observable {} of node {}: Ω̄ = {}, λ = {}",
                    ob.kind, ob.node, ob.target, ob.lambda
                )));
            }
        }
        Ok(())
    }

    /// `Ω_k(x)` for every observable.
    pub fn values(&self, traj: &Trajectory, data: &Data) -> Vec<f64> {
        self.observables
            .iter()
            .map(|ob| {
                let lag = ob.kind.lag();
                let (mut sum, mut count) = (0.0, 0usize);
                for t in window(data, lag) {
                    let a = traj.get(ob.node, t);
                    sum += match ob.kind {
                        ObservableKind::Mean => a,
                        ObservableKind::Autocorrelation { .. } => a * traj.get(ob.node, t - lag),
                    };
                    count += 1;
                }
                sum / count.max(1) as f64
            })
            .collect()
    }

    /// `Σ_k |λ_k|·|Ω̄_k − Ω_k(x)|`.
    pub fn loss(&self, traj: &Trajectory, data: &Data) -> f64 {
        self.observables
            .iter()
            .zip(self.values(traj, data))
            .map(|(ob, v)| ob.lambda.abs() * (ob.target - v).abs())
            .sum()
    }

    /// `∂Ω/∂x` of one observable as `(index into x, value)` entries (an index may repeat).
    fn gradient_of(ob: &Observable, traj: &Trajectory, data: &Data) -> Vec<(usize, f64)> {
        let lag = ob.kind.lag();
        let steps: Vec<usize> = window(data, lag).collect();
        let inv = 1.0 / steps.len().max(1) as f64;
        let (n, nodes) = (ob.node, traj.nodes);
        let mut g = Vec::with_capacity(2 * steps.len());
        for t in steps {
            match ob.kind {
                ObservableKind::Mean => g.push((t * nodes + n, inv)),
                ObservableKind::Autocorrelation { .. } => {
                    // ∂(x(t)·x(t−τ)) = x(t−τ)·dx(t) + x(t)·dx(t−τ).
                    g.push((t * nodes + n, inv * traj.get(n, t - lag)));
                    g.push(((t - lag) * nodes + n, inv * traj.get(n, t)));
                }
            }
        }
        g
    }

    /// `∂Ω_k/∂x` of observable `k`, laid out as [`Trajectory::x`].
    pub fn observable_gradient(&self, k: usize, traj: &Trajectory, data: &Data) -> Vec<f64> {
        let mut g = vec![0.0; traj.x.len()];
        for (i, v) in Self::gradient_of(&self.observables[k], traj, data) {
            g[i] += v;
        }
        g
    }

    /// `ρ'_nt` laid out as [`Trajectory::x`] (see the module doc).
    pub fn output_errors(&self, traj: &Trajectory, data: &Data) -> Vec<f64> {
        let mut r = vec![0.0; traj.x.len()];
        for (ob, v) in self.observables.iter().zip(self.values(traj, data)) {
            let d = v - ob.target;
            let sign = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            };
            if sign == 0.0 || ob.lambda == 0.0 {
                continue;
            }
            let scale = ob.lambda.abs() * sign;
            for (i, gi) in Self::gradient_of(ob, traj, data) {
                r[i] += scale * gi;
            }
        }
        r
    }

    /// `x − x̂`, with `x̂` the desired values of the module doc (12 Gauss–Newton steps at most),
    /// laid out as [`Trajectory::x`]: the output errors of the second-order candidates.
    pub fn desired_output_errors(&self, traj: &Trajectory, data: &Data) -> Vec<f64> {
        let k = self.observables.len();
        let mut xh = traj.clone();
        for _ in 0..12 {
            let gaps: Vec<f64> = self
                .observables
                .iter()
                .zip(self.values(&xh, data))
                .map(|(ob, v)| ob.target - v)
                .collect();
            if gaps.iter().all(|g| g.abs() <= 1e-15 * (1.0 + g.abs())) {
                break;
            }
            // The gradients as dense columns (only the observed nodes' entries are non-zero).
            let cols: Vec<Vec<(usize, f64)>> = self
                .observables
                .iter()
                .map(|ob| Self::gradient_of(ob, &xh, data))
                .collect();
            let dense: Vec<Vec<f64>> = cols
                .iter()
                .map(|c| {
                    let mut v = vec![0.0; xh.x.len()];
                    for &(i, g) in c {
                        v[i] += g;
                    }
                    v
                })
                .collect();
            let mut gtg = vec![0.0; k * k];
            for a in 0..k {
                for b in 0..=a {
                    let v: f64 = cols[a].iter().map(|&(i, g)| g * dense[b][i]).sum();
                    gtg[a * k + b] = v;
                    gtg[b * k + a] = v;
                }
            }
            let lambda = super::linalg::min_distance_solve(&gtg, &gaps, &vec![0.0; k]);
            for (col, l) in dense.iter().zip(&lambda) {
                for (x, g) in xh.x.iter_mut().zip(col) {
                    *x += l * g;
                }
            }
        }
        traj.x.iter().zip(&xh.x).map(|(x, h)| x - h).collect()
    }

    /// `|Ω̄_k − Ω_k(x)|` for every observable: the precision of the fit.
    pub fn gaps(&self, traj: &Trajectory, data: &Data) -> Vec<f64> {
        self.observables
            .iter()
            .zip(self.values(traj, data))
            .map(|(ob, v)| (ob.target - v).abs())
            .collect()
    }
}

fn cfg(msg: String) -> ContinualError {
    ContinualError::Config(msg)
}

/// One of the report's unsupervised regularisers on node values (its appendix on other uses of
/// the criterion), summed over the chosen nodes and the steps with `κ_t ≠ 0`; `x̂` is the
/// previous estimate of the values (the simulation at the start of the estimator's iteration,
/// held while its candidates are compared, as `ê` for the reweighted criteria):
///
/// | regulariser | `ρ` | `ρ'` (w.r.t. `x_n(t)`) |
/// |---|---|---|
/// | sparse activity | `κ x²/(ε + |x̂|)` | `2κ x/(ε + |x̂|)` |
/// | orthogonality | `κ Σ_{n'≠n} (Σ_t x_n(t) x̂_n'(t))²` (each ordered pair) | `2κ Σ_{n'≠n} c_nn' x̂_n'(t)`, `c_nn' = Σ_t x_n x̂_n'` |
/// | soft bound | `κ e^{k(x − b)}` | `κk e^{k(x − b)}` |
///
/// At `x = x̂` the sparse activity is `≈ κ|x|` (reweighted L1 on the activity, driving small
/// activities to 0), the orthogonality is `κ` times the squared cross-products of the nodes'
/// trajectories, and the soft bound keeps `x` below `b` (`k > 0`) or above it (`k < 0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Regulariser {
    SparseActivity { kappa: f64, eps: f64 },
    Orthogonality { kappa: f64 },
    SoftBound { kappa: f64, k: f64, b: f64 },
}

/// Regularisers on the values of `nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityPenalty {
    pub nodes: Vec<usize>,
    pub terms: Vec<Regulariser>,
}

impl ActivityPenalty {
    /// Checks the nodes against a network of `n_nodes` nodes and the parameters.
    pub fn check(&self, n_nodes: usize) -> Result<()> {
        if let Some(&n) = self.nodes.iter().find(|&&n| n >= n_nodes) {
            return Err(cfg(format!(
                "regularised node {n}, but the network has {n_nodes} nodes"
            )));
        }
        for t in &self.terms {
            let ok = match *t {
                Regulariser::SparseActivity { kappa, eps } => {
                    kappa >= 0.0 && kappa.is_finite() && eps > 0.0 && eps.is_finite()
                }
                Regulariser::Orthogonality { kappa } => kappa >= 0.0 && kappa.is_finite(),
                Regulariser::SoftBound { kappa, k, b } => {
                    kappa >= 0.0 && kappa.is_finite() && k.is_finite() && b.is_finite()
                }
            };
            if !ok {
                return Err(cfg(format!(
                    "regulariser {t:?}: κ must be ≥ 0, ε > 0, every parameter finite"
                )));
            }
        }
        Ok(())
    }

    fn steps(data: &Data) -> impl Iterator<Item = usize> + '_ {
        (0..data.steps).filter(|&t| data.kappa[t] != 0.0)
    }

    /// `c_nn' = Σ_t x_n(t) x̂_n'(t)` for the nodes `i, j` of `self.nodes`.
    fn cross(&self, traj: &Trajectory, x_hat: &Trajectory, data: &Data) -> Vec<f64> {
        let m = self.nodes.len();
        let mut c = vec![0.0; m * m];
        for t in Self::steps(data) {
            for (i, &n) in self.nodes.iter().enumerate() {
                let x = traj.get(n, t);
                for (j, &n2) in self.nodes.iter().enumerate() {
                    if i != j {
                        c[i * m + j] += x * x_hat.get(n2, t);
                    }
                }
            }
        }
        c
    }

    /// `R(x; x̂)`.
    pub fn value(&self, traj: &Trajectory, x_hat: &Trajectory, data: &Data) -> f64 {
        let mut r = 0.0;
        for term in &self.terms {
            match *term {
                Regulariser::SparseActivity { kappa, eps } => {
                    for t in Self::steps(data) {
                        for &n in &self.nodes {
                            let x = traj.get(n, t);
                            r += kappa * x * x / (eps + x_hat.get(n, t).abs());
                        }
                    }
                }
                Regulariser::Orthogonality { kappa } => {
                    r += kappa
                        * self
                            .cross(traj, x_hat, data)
                            .iter()
                            .map(|c| c * c)
                            .sum::<f64>();
                }
                Regulariser::SoftBound { kappa, k, b } => {
                    for t in Self::steps(data) {
                        for &n in &self.nodes {
                            r += kappa * (k * (traj.get(n, t) - b)).exp();
                        }
                    }
                }
            }
        }
        r
    }

    /// Adds `∂R/∂x_n(t)` (with `x̂` held) into `rho_prime`, laid out as [`Trajectory::x`].
    pub fn add_derivative(
        &self,
        traj: &Trajectory,
        x_hat: &Trajectory,
        data: &Data,
        rho_prime: &mut [f64],
    ) {
        let nodes = traj.nodes;
        for term in &self.terms {
            match *term {
                Regulariser::SparseActivity { kappa, eps } => {
                    for t in Self::steps(data) {
                        for &n in &self.nodes {
                            let x = traj.get(n, t);
                            rho_prime[t * nodes + n] +=
                                2.0 * kappa * x / (eps + x_hat.get(n, t).abs());
                        }
                    }
                }
                Regulariser::Orthogonality { kappa } => {
                    let m = self.nodes.len();
                    let c = self.cross(traj, x_hat, data);
                    for t in Self::steps(data) {
                        for (i, &n) in self.nodes.iter().enumerate() {
                            let mut v = 0.0;
                            for (j, &n2) in self.nodes.iter().enumerate() {
                                if i != j {
                                    v += c[i * m + j] * x_hat.get(n2, t);
                                }
                            }
                            rho_prime[t * nodes + n] += 2.0 * kappa * v;
                        }
                    }
                }
                Regulariser::SoftBound { kappa, k, b } => {
                    for t in Self::steps(data) {
                        for &n in &self.nodes {
                            rho_prime[t * nodes + n] +=
                                kappa * k * (k * (traj.get(n, t) - b)).exp();
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Criterion; 6] = [
        Criterion::L2,
        Criterion::ReweightedL1 { nu: 0.1 },
        Criterion::ReweightedL0 { nu: 0.1 },
        Criterion::Huber { delta: 0.5 },
        Criterion::Biweight { scale: 2.0 },
        Criterion::Margin { nu: 0.2 },
    ];

    #[test]
    fn derivatives_match_central_differences() {
        for c in ALL {
            for &(x, o) in &[(0.3, 0.0), (-0.4, 1.0), (1.7, 0.2), (0.45, 1.0), (0.8, 0.0)] {
                let h = 1e-6;
                let e_hat = 0.25;
                let fd = (c.rho(x + h, o, e_hat) - c.rho(x - h, o, e_hat)) / (2.0 * h);
                assert!((fd - c.drho(x, o, e_hat)).abs() < 1e-6, "{c:?} at {x}, {o}");
            }
        }
    }

    /// Two sequences of lengths 9 and 7 with a reset gap of 2, two observed nodes of four, the
    /// targets of node 2 a sine.
    fn two_segments() -> (Data, Trajectory) {
        use super::super::network::Sequence;
        let seq = |len: usize, phase: f64| Sequence {
            len,
            inputs: vec![0.0; len],
            targets: (0..len)
                .flat_map(|_| [0.0])
                .chain((0..len).map(|t| (0.7 * t as f64 + phase).sin()))
                .collect(),
        };
        let data = Data::concat(&[seq(9, 0.0), seq(7, 1.0)], 1, vec![1, 2], 2, false);
        let nodes = 4;
        let x: Vec<f64> = (0..nodes * data.steps)
            .map(|i| (0.37 * i as f64).cos() * 0.8 + 0.1)
            .collect();
        let traj = Trajectory {
            nodes,
            steps: data.steps,
            x,
        };
        (data, traj)
    }

    #[test]
    fn statistical_output_errors_are_the_derivative_of_its_loss() {
        let (data, traj) = two_segments();
        let specs = [
            (2, ObservableKind::Mean, 1.0),
            (2, ObservableKind::Autocorrelation { lag: 0 }, 0.5),
            (2, ObservableKind::Autocorrelation { lag: 1 }, 2.0),
            (2, ObservableKind::Autocorrelation { lag: 3 }, -1.5),
            (1, ObservableKind::Mean, 1.0),
        ];
        let st = Statistical::from_targets(&specs, &data).unwrap();
        // The desired values are measured on the targets, inside each segment only (the
        // lag-3 window of a 9- and a 7-step segment has 6 + 4 steps).
        let tgt = |t: usize| data.target(1, t);
        let mean: f64 = (0..9).chain(11..18).map(tgt).sum::<f64>() / 16.0;
        assert!((st.observables[0].target - mean).abs() < 1e-15);
        let ac3: f64 = (3..9)
            .chain(14..18)
            .map(|t| tgt(t) * tgt(t - 3))
            .sum::<f64>()
            / 10.0;
        assert!((st.observables[3].target - ac3).abs() < 1e-15);
        let r = st.output_errors(&traj, &data);
        let h = 1e-6;
        for i in 0..traj.x.len() {
            let mut p = traj.clone();
            let mut m = traj.clone();
            p.x[i] += h;
            m.x[i] -= h;
            let fd = (st.loss(&p, &data) - st.loss(&m, &data)) / (2.0 * h);
            assert!((fd - r[i]).abs() < 1e-8, "ρ'[{i}] = {} vs {fd}", r[i]);
        }
        assert!(r.iter().any(|v| *v != 0.0));
        // Nodes without an observable get no error; the gap steps none either.
        for t in 0..data.steps {
            assert_eq!(r[t * 4], 0.0);
            assert_eq!(r[t * 4 + 3], 0.0);
        }
        assert_eq!(r[9 * 4 + 2], 0.0);
        // On the targets themselves every observable is matched: zero loss, zero error.
        let mut on_targets = traj.clone();
        for (o, &n) in data.observed.iter().enumerate() {
            for t in 0..data.steps {
                let v = data.target(o, t);
                on_targets.x[t * 4 + n] = if v.is_nan() { 0.0 } else { v };
            }
        }
        assert!(st.loss(&on_targets, &data) < 1e-15);
        assert!(st.gaps(&on_targets, &data).iter().all(|g| *g < 1e-15));
    }

    #[test]
    fn statistical_desired_values_match_the_observables_and_stay_near_the_simulation() {
        let (data, traj) = two_segments();
        let st = Statistical::from_targets(
            &[
                (2, ObservableKind::Mean, 1.0),
                (2, ObservableKind::Autocorrelation { lag: 0 }, 1.0),
                (2, ObservableKind::Autocorrelation { lag: 2 }, 1.0),
                (1, ObservableKind::Mean, 1.0),
            ],
            &data,
        )
        .unwrap();
        let e = st.desired_output_errors(&traj, &data);
        let mut desired = traj.clone();
        for (x, d) in desired.x.iter_mut().zip(&e) {
            *x -= d;
        }
        let before = st.gaps(&traj, &data);
        let after = st.gaps(&desired, &data);
        println!("observable gaps {before:?} -> {after:?}");
        assert!(before.iter().all(|g| *g > 1e-3));
        assert!(after.iter().all(|g| *g < 1e-12), "{after:?}");
        // Only the observed nodes move, and only inside the windows.
        for t in 0..data.steps {
            assert_eq!(e[t * 4], 0.0);
            assert_eq!(e[t * 4 + 3], 0.0);
        }
        // The mean alone: the nearest trajectory with the desired mean moves every step of the
        // window by the same amount.
        let mean = Statistical::from_targets(&[(2, ObservableKind::Mean, 1.0)], &data).unwrap();
        let e = mean.desired_output_errors(&traj, &data);
        let gap = mean.values(&traj, &data)[0] - mean.observables[0].target;
        for t in (0..9).chain(11..18) {
            assert!(
                (e[t * 4 + 2] - gap).abs() < 1e-14,
                "step {t}: {} vs {gap}",
                e[t * 4 + 2]
            );
        }
    }

    #[test]
    fn regulariser_derivatives_match_central_differences_with_the_estimate_held() {
        let (data, traj) = two_segments();
        let mut x_hat = traj.clone();
        for (i, v) in x_hat.x.iter_mut().enumerate() {
            *v += 0.05 * (1.3 * i as f64).sin();
        }
        let pen = ActivityPenalty {
            nodes: vec![0, 2, 3],
            terms: vec![
                Regulariser::SparseActivity {
                    kappa: 0.3,
                    eps: 0.01,
                },
                Regulariser::Orthogonality { kappa: 0.7 },
                Regulariser::SoftBound {
                    kappa: 0.2,
                    k: 5.0,
                    b: 0.5,
                },
                Regulariser::SoftBound {
                    kappa: 0.1,
                    k: -3.0,
                    b: -0.5,
                },
            ],
        };
        pen.check(4).unwrap();
        let mut d = vec![0.0; traj.x.len()];
        pen.add_derivative(&traj, &x_hat, &data, &mut d);
        let h = 1e-6;
        for i in 0..traj.x.len() {
            let mut p = traj.clone();
            let mut m = traj.clone();
            p.x[i] += h;
            m.x[i] -= h;
            let fd = (pen.value(&p, &x_hat, &data) - pen.value(&m, &x_hat, &data)) / (2.0 * h);
            assert!(
                (fd - d[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "[{i}] {} vs {fd}",
                d[i]
            );
        }
        // Node 1 is not regularised, nor are the gap steps.
        for t in 0..data.steps {
            assert_eq!(d[t * 4 + 1], 0.0);
        }
        assert_eq!(d[9 * 4], 0.0);
        // At x = x̂ the sparse activity is ≈ κ|x| and the orthogonality vanishes for orthogonal
        // trajectories.
        let one = ActivityPenalty {
            nodes: vec![0],
            terms: vec![Regulariser::SparseActivity {
                kappa: 1.0,
                eps: 1e-12,
            }],
        };
        let l1: f64 = (0..data.steps)
            .filter(|&t| data.kappa[t] != 0.0)
            .map(|t| traj.get(0, t).abs())
            .sum();
        assert!((one.value(&traj, &traj, &data) - l1).abs() < 1e-9 * l1);
        let mut ortho = traj.clone();
        for t in 0..data.steps {
            ortho.x[t * 4] = if t % 2 == 0 { 1.0 } else { 0.0 };
            ortho.x[t * 4 + 2] = if t % 2 == 1 { 1.0 } else { 0.0 };
        }
        let orth = ActivityPenalty {
            nodes: vec![0, 2],
            terms: vec![Regulariser::Orthogonality { kappa: 1.0 }],
        };
        assert_eq!(orth.value(&ortho, &ortho, &data), 0.0);
        assert!(orth.check(2).unwrap_err().to_string().contains("node 2"));
        let bad = ActivityPenalty {
            nodes: vec![0],
            terms: vec![Regulariser::SparseActivity {
                kappa: 1.0,
                eps: 0.0,
            }],
        };
        assert!(bad.check(4).is_err());
    }

    #[test]
    fn statistical_criterion_refuses_unobserved_nodes_and_missing_targets() {
        let (data, _) = two_segments();
        let e = Statistical::from_targets(&[(3, ObservableKind::Mean, 1.0)], &data)
            .unwrap_err()
            .to_string();
        assert!(e.contains("node 3") && e.contains("not observed"), "{e}");
        let e = Statistical::from_targets(&[], &data)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least one observable"), "{e}");
        let e = Statistical::from_targets(
            &[(2, ObservableKind::Autocorrelation { lag: 40 }, 1.0)],
            &data,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no step in its window"), "{e}");
        // A missing target inside the window.
        let mut holey = data.clone();
        holey.targets[data.steps + 4] = f64::NAN;
        let e = Statistical::from_targets(&[(2, ObservableKind::Mean, 1.0)], &holey)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no target at step 4"), "{e}");
        let st = Statistical::from_targets(&[(2, ObservableKind::Mean, 1.0)], &data).unwrap();
        assert!(st
            .check(2, &data)
            .unwrap_err()
            .to_string()
            .contains("2 nodes"));
        assert!(st.check(4, &data).is_ok());
    }

    #[test]
    fn every_criterion_is_half_the_square_near_zero_and_non_negative() {
        for c in ALL
            .into_iter()
            .filter(|c| !matches!(c, Criterion::Margin { .. }))
        {
            let e = 1e-3;
            let scale = match c {
                Criterion::ReweightedL1 { nu } => 1.0 / nu,
                Criterion::ReweightedL0 { nu } => 1.0 / nu,
                _ => 1.0,
            };
            let r = c.rho(e, 0.0, 0.0);
            assert!((r / (0.5 * e * e * scale) - 1.0).abs() < 1e-5, "{c:?}");
            assert_eq!(c.rho(0.0, 0.0, 0.0), 0.0);
            assert!(c.rho(-3.0, 0.0, 1.0) > 0.0);
        }
        // The margin is zero beyond it on the right side, positive on the wrong side.
        let m = Criterion::Margin { nu: 0.2 };
        assert_eq!(m.rho(0.9, 1.0, 0.0), 0.0);
        assert_eq!(m.rho(0.1, 0.0, 0.0), 0.0);
        assert!(m.rho(0.6, 1.0, 0.0) > 0.0 && m.rho(0.4, 1.0, 0.0) > m.rho(0.6, 1.0, 0.0));
        // The biweight is bounded: an outlier costs c²/6 at most.
        let b = Criterion::Biweight { scale: 2.0 };
        assert_eq!(b.rho(100.0, 0.0, 0.0), 4.0 / 6.0);
    }
}
