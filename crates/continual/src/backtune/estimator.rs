//! The full backward-tuning estimator (RR-9100, §3; the reference code's `run_once` loop).
//!
//! Each iteration:
//! 1. forward pass and criterion `L` (plus the regulariser `R`, [`super::sparse`]); backward
//!    tuning ([`super::adjoint`]) with the guard, and the gradient `∇ = Σ_t φ ε + ∂R/∂W`;
//! 2. candidates, each line-searched with Brent's method ([`super::line_search`], relative
//!    precision `1e−2`):
//!    - 3 second-order ones, one per solve variant ([`super::solve`]): `W + u(W_v − W)`,
//!      `u ∈ [0, 1]` (searched because the solve "tends to overestimate the local minimum"; `u = 1`
//!      is also tried as such);
//!    - 8 first-order ones: momentum-filtered gradients `g_k ← (1 − r_k) g_k + r_k ∇`,
//!      `r_k = 2^−k`, `k = 0..7`, stepped `W − α υ_k g_k` with `α ∈ [0, 1]`, then
//!      `υ_k ← 2·α*·υ_k` (the factor floored at `1e−2` so that one failed search does not zero
//!      the step; `υ_k` starts at `1/‖∇‖`);
//! 3. the best candidate is kept if it lowers `L`; otherwise the estimation stops.
//!
//! It also stops when `L < 1e−6·L_0` (`rel_stop`) or after 100 iterations. For the reweighted
//! criteria the previous error estimate `ê` (and the regulariser's `Ŵ`) are refreshed at the
//! start of each iteration and held while its candidates are compared; the trace records the
//! criterion of each iteration at its own `ê`, so only the L2 trace is non-increasing by
//! construction. Multiple sequences, reset gaps and the "static" option are in the
//! [`Data`](super::network::Data) (`κ = 0` in the gaps).
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::adjoint::{backward, gradient};
use super::criteria::{errors, loss, output_errors, Criterion};
use super::guard::Guard;
use super::line_search::brent;
use super::network::{Data, Network};
use super::solve::{solve_units, Extras, Variant, DMAX};
use super::sparse::SparsePenalty;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EstimatorConfig {
    pub criterion: Criterion,
    pub guard: Guard,
    pub max_iterations: usize,
    /// Stop when `L < rel_stop · L_0` (1e−6; the report uses 1e−4 for big networks).
    pub rel_stop: f64,
    /// The second-order solve variants tried (all three by default; empty: first order only).
    pub variants: Vec<Variant>,
    /// The number of momentum filters (8).
    pub first_order: usize,
    pub dmax: usize,
    /// Threads of the per-unit solves.
    pub threads: usize,
    /// Brent's relative precision (1e−2) and its evaluation budget per search.
    pub line_rel: f64,
    pub line_evals: usize,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self {
            criterion: Criterion::L2,
            guard: Guard::Code,
            max_iterations: 100,
            rel_stop: 1e-6,
            variants: Variant::ALL.to_vec(),
            first_order: 8,
            dmax: DMAX,
            threads: 1,
            line_rel: 1e-2,
            line_evals: 30,
        }
    }
}

/// Which candidate won an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Candidate {
    SecondOrder(Variant),
    /// The momentum filter of rate `2^−k`.
    FirstOrder(usize),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    pub iteration: usize,
    /// `L` (with `R`) at the start of the iteration.
    pub criterion: f64,
    /// `L` after the winning candidate (`None`: no candidate lowered it).
    pub after: Option<f64>,
    pub candidate: Option<Candidate>,
    /// The winner's step (`u` or `α`).
    pub step: Option<f64>,
    /// Criterion evaluations (forward passes) this iteration.
    pub evaluations: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// `L < rel_stop · L_0`.
    Converged,
    /// No candidate lowered `L`.
    NoDescent,
    MaxIterations,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub initial: f64,
    pub last: f64,
    pub records: Vec<IterationRecord>,
    pub stop: StopReason,
    pub seconds: f64,
}

impl Trace {
    /// Iterations that moved the weights.
    pub fn iterations(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.candidate.is_some())
            .count()
    }
    /// `L_last / L_0`.
    pub fn ratio(&self) -> f64 {
        self.last / self.initial
    }
}

/// Estimates `net`'s weights from `data` in place; see the module doc.
pub fn estimate(net: &mut Network, data: &Data, cfg: &EstimatorConfig) -> Trace {
    estimate_with(net, data, cfg, None, None)
}

/// [`estimate`] with an optional sparse regulariser and an optional mask (`false`: weight fixed
/// at 0).
pub fn estimate_with(
    net: &mut Network,
    data: &Data,
    cfg: &EstimatorConfig,
    penalty: Option<&SparsePenalty>,
    mask: Option<&[bool]>,
) -> Trace {
    let start = Instant::now();
    let nw = net.n_weights();
    if let Some(m) = mask {
        for (w, &keep) in net.weights.iter_mut().zip(m) {
            if !keep {
                *w = 0.0;
            }
        }
    }
    let mut filters = vec![vec![0.0; nw]; cfg.first_order];
    let mut upsilon = vec![0.0; cfg.first_order];
    let mut records = Vec::new();
    let mut initial = f64::NAN;
    let mut last = f64::NAN;
    let mut stop = StopReason::MaxIterations;
    for iteration in 0..cfg.max_iterations {
        let traj = net.forward(data);
        let e_hat = if cfg.criterion.reweighted() {
            errors(&traj, data)
        } else {
            Vec::new()
        };
        let coef = penalty.map(|p| p.coefficients(&net.weights));
        let objective = |w: &[f64]| -> f64 {
            let l = loss(cfg.criterion, &net.forward_with(w, data), data, &e_hat);
            let r = coef.as_ref().map_or(0.0, |c| SparsePenalty::value(c, w));
            l + r
        };
        let l = loss(cfg.criterion, &traj, data, &e_hat)
            + coef
                .as_ref()
                .map_or(0.0, |c| SparsePenalty::value(c, &net.weights));
        if iteration == 0 {
            initial = l;
        }
        last = l;
        if l.is_nan() || l < cfg.rel_stop * initial {
            stop = StopReason::Converged;
            break;
        }
        let rp = output_errors(cfg.criterion, &traj, data, &e_hat);
        let eps = backward(net, &net.weights, &traj, data, &rp, cfg.guard);
        let mut grad = gradient(net, &traj, data, &eps);
        if let Some(c) = &coef {
            for (g, (ci, w)) in grad.iter_mut().zip(c.iter().zip(&net.weights)) {
                *g += 2.0 * ci * w;
            }
        }
        if let Some(m) = mask {
            for (g, &keep) in grad.iter_mut().zip(m) {
                if !keep {
                    *g = 0.0;
                }
            }
        }
        let mut best = None;
        let mut evaluations = 0;
        type Best = Option<(f64, Vec<f64>, Candidate, f64)>;
        let consider = |f: f64, w: Vec<f64>, c: Candidate, s: f64, best: &mut Best| {
            if f < l && best.as_ref().is_none_or(|(bf, ..)| f < *bf) {
                *best = Some((f, w, c, s));
            }
        };
        // Second-order candidates.
        let diag: Option<Vec<f64>> = coef.as_ref().map(|c| c.iter().map(|v| 2.0 * v).collect());
        let extras = Extras {
            diag: diag.as_deref(),
            mask,
        };
        for &variant in &cfg.variants {
            let target = solve_units(
                net,
                &traj,
                data,
                &eps,
                variant,
                cfg.dmax,
                cfg.threads,
                extras,
            );
            let dir: Vec<f64> = target
                .iter()
                .zip(&net.weights)
                .map(|(a, b)| a - b)
                .collect();
            if dir.iter().all(|d| *d == 0.0) {
                continue;
            }
            let at = |u: f64| -> Vec<f64> {
                net.weights
                    .iter()
                    .zip(&dir)
                    .map(|(w, d)| w + u * d)
                    .collect()
            };
            let m = brent(
                |u| objective(&at(u)),
                0.0,
                1.0,
                cfg.line_rel,
                1e-4,
                cfg.line_evals,
            );
            let f1 = objective(&target);
            evaluations += m.evals + 1;
            let (u, f) = if f1 <= m.f { (1.0, f1) } else { (m.x, m.f) };
            consider(f, at(u), Candidate::SecondOrder(variant), u, &mut best);
        }
        // First-order candidates.
        let gnorm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        if gnorm > 0.0 && gnorm.is_finite() {
            for k in 0..cfg.first_order {
                let r = 0.5f64.powi(k as i32);
                for (f, g) in filters[k].iter_mut().zip(&grad) {
                    *f = (1.0 - r) * *f + r * g;
                }
                if upsilon[k] == 0.0 {
                    upsilon[k] = 1.0 / gnorm;
                }
                let dir: Vec<f64> = filters[k].iter().map(|g| -upsilon[k] * g).collect();
                let at = |a: f64| -> Vec<f64> {
                    net.weights
                        .iter()
                        .zip(&dir)
                        .map(|(w, d)| w + a * d)
                        .collect()
                };
                let m = brent(
                    |a| objective(&at(a)),
                    0.0,
                    1.0,
                    cfg.line_rel,
                    1e-4,
                    cfg.line_evals,
                );
                evaluations += m.evals;
                upsilon[k] *= (2.0 * m.x).max(1e-2);
                consider(m.f, at(m.x), Candidate::FirstOrder(k), m.x, &mut best);
            }
        }
        match best {
            Some((f, w, c, s)) => {
                net.weights = w;
                records.push(IterationRecord {
                    iteration,
                    criterion: l,
                    after: Some(f),
                    candidate: Some(c),
                    step: Some(s),
                    evaluations,
                });
                last = f;
            }
            None => {
                records.push(IterationRecord {
                    iteration,
                    criterion: l,
                    after: None,
                    candidate: None,
                    step: None,
                    evaluations,
                });
                stop = StopReason::NoDescent;
                break;
            }
        }
    }
    // `last` is the criterion of the final weights at the last iteration's `ê`; refresh it at the
    // final weights' own `ê` for the reweighted criteria.
    if cfg.criterion.reweighted() || penalty.is_some() {
        let traj = net.forward(data);
        let e_hat = if cfg.criterion.reweighted() {
            errors(&traj, data)
        } else {
            Vec::new()
        };
        last = loss(cfg.criterion, &traj, data, &e_hat)
            + penalty.map_or(0.0, |p| {
                SparsePenalty::value(&p.coefficients(&net.weights), &net.weights)
            });
    }
    Trace {
        initial,
        last,
        records,
        stop,
        seconds: start.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::network::Sequence;
    use super::super::reverse::{setup, ReverseSpec};
    use super::super::units::{lnl, normal, Leak, LnlSpec};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A root LNL network of 3 units with a fixed leak; `k` sequences of length `len` of its
    /// unit-0 output, concatenated with a reset gap of 1 step; and a fresh network.
    fn sequences(k: usize, len: usize, static_only: bool) -> (Data, Network) {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let spec = LnlSpec {
            units: 3,
            inputs: 1,
            a: -1.0,
            b: 1.0,
            leak: Leak::Fixed(0.3),
            input_delay: 1,
        };
        let mut root = lnl(&spec).unwrap().network;
        for w in root.weights.iter_mut() {
            *w = 0.6 * normal(&mut rng);
        }
        let seqs: Vec<Sequence> = (0..k)
            .map(|_| {
                let inputs: Vec<f64> = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
                let x = root.forward(&Data::single(inputs.clone(), vec![], vec![], len));
                Sequence {
                    len,
                    inputs,
                    targets: (0..len).map(|t| x.get(0, t)).collect(),
                }
            })
            .collect();
        let data = Data::concat(&seqs, 1, vec![0], 1, static_only);
        let mut fresh = root.clone();
        for w in fresh.weights.iter_mut() {
            *w = 0.6 * normal(&mut rng);
        }
        (data, fresh)
    }

    #[test]
    fn estimates_from_concatenated_and_static_sequences() {
        let (data, mut net) = sequences(6, 12, false);
        let cfg = EstimatorConfig {
            max_iterations: 30,
            ..Default::default()
        };
        let tr = estimate(&mut net, &data, &cfg);
        assert!(tr.ratio() < 1e-2, "sequences: L/L0 = {}", tr.ratio());
        assert!(tr
            .records
            .windows(2)
            .all(|w| w[1].criterion <= w[0].criterion));
        // Static: only each sequence's last step is a target.
        let (data, mut net) = sequences(12, 6, true);
        assert_eq!(data.targets.iter().filter(|v| !v.is_nan()).count(), 12);
        let tr = estimate(&mut net, &data, &cfg);
        assert!(tr.ratio() < 0.1, "static: L/L0 = {}", tr.ratio());
        // The trace serialises and reads back.
        let json = serde_json::to_string(&tr).unwrap();
        let back: Trace = serde_json::from_str(&json).unwrap();
        assert_eq!(back.records.len(), tr.records.len());
        assert_eq!(back.stop, tr.stop);
    }

    #[test]
    fn estimation_does_not_depend_on_the_thread_count() {
        let (_, data, fresh) = setup(&ReverseSpec::lnl(5, 3)).unwrap();
        let run = |threads| {
            let mut net = fresh.clone();
            let cfg = EstimatorConfig {
                max_iterations: 5,
                threads,
                ..Default::default()
            };
            let tr = estimate(&mut net, &data, &cfg);
            (net.weights, tr.records)
        };
        let one = run(1);
        assert_eq!(one, run(4));
    }

    #[test]
    fn reweighted_l1_fits_through_outliers_better_than_least_squares() {
        // One target in 17 is shifted by +3. Fitted with each criterion, the network is then
        // scored by its L2 error to the clean targets.
        let (mut data, net0) = sequences(4, 20, false);
        let clean = data.clone();
        for (i, v) in data.targets.iter_mut().enumerate() {
            if !v.is_nan() && i % 17 == 3 {
                *v += 3.0;
            }
        }
        let fit = |criterion| {
            let mut net = net0.clone();
            let cfg = EstimatorConfig {
                criterion,
                max_iterations: 40,
                ..Default::default()
            };
            estimate(&mut net, &data, &cfg);
            loss(Criterion::L2, &net.forward(&clean), &clean, &[])
        };
        let (l1, l2) = (
            fit(Criterion::ReweightedL1 { nu: 1e-3 }),
            fit(Criterion::L2),
        );
        println!("clean-target L2 error: reweighted L1 fit {l1:.3e}, least-squares fit {l2:.3e}");
        assert!(l1 < 0.5 * l2, "reweighted L1 {l1}, least squares {l2}");
    }
}
