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
//!
//! **Parallel form** ([`estimate_across`]): the per-unit solves are independent; with a
//! [`Collective`] of `P` ranks (an MPI job), every rank runs the forward and adjoint passes (the
//! same on every rank), solves its contiguous share of the units and gets the others' rows
//! ([`super::solve::solve_units_across`]); the line searches then run identically on every rank,
//! so every rank keeps the same network. It checks that every rank starts from the same weights,
//! data and settings (a hash of the initial weights, `L_0` and the configuration) and ends with the
//! same weights (a hash of their bits); the weights are exactly those of one process.
//!
//! The trace records the seconds of each iteration's steps ([`IterationTiming`]; on a rank, its
//! own).
use std::time::Instant;

use remanence_distributed::setup::{check_same, hash64};
use remanence_distributed::{Collective, DistError};
use serde::{Deserialize, Serialize};

use super::adjoint::{backward, gradient};
use super::criteria::{errors, loss, output_errors, Criterion};
use super::guard::Guard;
use super::line_search::brent;
use super::network::{Data, Network};
use super::solve::{gather_rows, solve_share, Extras, Variant, DMAX};
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

/// Where an iteration's time went, in seconds (wall clock, this process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IterationTiming {
    /// The forward pass and the criterion (with the error estimate and the regulariser).
    pub forward: f64,
    /// The backward pass (adjoint) and the gradient.
    pub adjoint: f64,
    /// The per-unit solves of the second-order variants (this rank's share).
    pub solves: f64,
    /// Across ranks: the gathering of the solved rows (with the wait for the slowest rank).
    pub gather: f64,
    /// The line searches of every candidate (forward passes of the criterion).
    pub line_searches: f64,
    /// The whole iteration.
    pub total: f64,
}

impl IterationTiming {
    fn add(&mut self, o: &IterationTiming) {
        self.forward += o.forward;
        self.adjoint += o.adjoint;
        self.solves += o.solves;
        self.gather += o.gather;
        self.line_searches += o.line_searches;
        self.total += o.total;
    }
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
    /// The seconds of each iteration's steps, one per iteration begun (the last, which stops
    /// on convergence, has only its forward pass).
    #[serde(default)]
    pub timings: Vec<IterationTiming>,
    /// The processes that shared the per-unit solves (1: this one alone).
    #[serde(default = "one")]
    pub ranks: usize,
}

fn one() -> usize {
    1
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
    /// The sum of [`Trace::timings`] over the iterations that ran candidates (those with
    /// `total > 0` beyond the forward pass), and their count: divide for the time per iteration.
    pub fn timing_sum(&self) -> (IterationTiming, usize) {
        let mut sum = IterationTiming::default();
        let mut k = 0;
        for t in self.timings.iter().take(self.records.len()) {
            sum.add(t);
            k += 1;
        }
        (sum, k)
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
    match estimate_across(net, data, cfg, penalty, mask, None) {
        Ok(trace) => trace,
        Err(e) => unreachable!("one process makes no collective call: {e}"),
    }
}

/// The hash of the bits of `values`.
fn bits_hash(values: &[f64]) -> u64 {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    hash64(&bytes)
}

/// [`estimate_with`] with the per-unit solves shared among the ranks of `world` (see the module
/// doc; `None`: every unit solved here, no collective call). Every rank must call it with the
/// same network, data and settings, and gets the same trace and weights; an error (ranks that
/// disagree, or a failed collective call) is returned on every rank, and a rank that fails on
/// its own must end the job (`Collective::abort`).
pub fn estimate_across(
    net: &mut Network,
    data: &Data,
    cfg: &EstimatorConfig,
    penalty: Option<&SparsePenalty>,
    mask: Option<&[bool]>,
    world: Option<&dyn Collective>,
) -> Result<Trace, DistError> {
    let world = world.filter(|c| c.size() > 1);
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
    let mut timings = Vec::new();
    for iteration in 0..cfg.max_iterations {
        let mut timing = IterationTiming::default();
        let t_iter = Instant::now();
        let mut clock = Instant::now();
        let mut lap = || {
            let s = clock.elapsed().as_secs_f64();
            clock = Instant::now();
            s
        };
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
        timing.forward = lap();
        if iteration == 0 {
            initial = l;
            if let Some(w) = world {
                // The same starting point everywhere: weights, data (through L0), settings.
                let settings = serde_json::to_string(cfg).unwrap_or_default();
                let mut key = net.weights.clone();
                key.push(l);
                key.extend(mask.into_iter().flatten().map(|&m| f64::from(u8::from(m))));
                key.extend(penalty.into_iter().flat_map(|p| p.nu.iter().copied()));
                let h = bits_hash(&key) ^ hash64(settings.as_bytes());
                check_same(w, "estimator's starting point (weights, data, settings)", h)?;
            }
        }
        last = l;
        if l.is_nan() || l < cfg.rel_stop * initial {
            stop = StopReason::Converged;
            timing.total = t_iter.elapsed().as_secs_f64();
            timings.push(timing);
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
        timing.adjoint = lap();
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
        let (rank, size) = world.map_or((0, 1), |w| (w.rank(), w.size()));
        for &variant in &cfg.variants {
            let t0 = Instant::now();
            let mut target = solve_share(
                net,
                &traj,
                data,
                &eps,
                variant,
                cfg.dmax,
                cfg.threads,
                extras,
                rank,
                size,
            );
            timing.solves += t0.elapsed().as_secs_f64();
            if let Some(w) = world {
                let t0 = Instant::now();
                gather_rows(&mut target, net, cfg.dmax, w)?;
                timing.gather += t0.elapsed().as_secs_f64();
            }
            let t0 = Instant::now();
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
            timing.line_searches += t0.elapsed().as_secs_f64();
        }
        // First-order candidates.
        let t0 = Instant::now();
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
        timing.line_searches += t0.elapsed().as_secs_f64();
        timing.total = t_iter.elapsed().as_secs_f64();
        timings.push(timing);
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
    if let Some(w) = world {
        check_same(w, "estimated weights", bits_hash(&net.weights))?;
    }
    Ok(Trace {
        initial,
        last,
        records,
        stop,
        seconds: start.elapsed().as_secs_f64(),
        timings,
        ranks: world.map_or(1, |w| w.size()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::network::Sequence;
    use super::super::reverse::{setup, ReverseSpec};
    use super::super::units::{lnl, normal, Leak, LnlSpec};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use remanence_distributed::simulated::Simulated;

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

    /// Runs `estimate_across` on the ranks of a simulated world of `size` (threads), rank `r`
    /// starting from `start(r)`.
    fn on_ranks(
        size: usize,
        data: &Data,
        cfg: &EstimatorConfig,
        start: impl Fn(usize) -> Network + Sync,
    ) -> Vec<(Network, std::result::Result<Trace, DistError>)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = Simulated::world(size)
                .into_iter()
                .map(|c| {
                    let start = &start;
                    s.spawn(move || {
                        let mut net = start(c.rank());
                        let c: &dyn Collective = &c;
                        let tr = estimate_across(&mut net, data, cfg, None, None, Some(c));
                        (net, tr)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn estimation_across_ranks_is_the_single_process_estimation() {
        let (_, data, fresh) = setup(&ReverseSpec::lnl(5, 3)).unwrap();
        let cfg = EstimatorConfig {
            max_iterations: 6,
            dmax: 64,
            ..Default::default()
        };
        let mut single = fresh.clone();
        let tr1 = estimate(&mut single, &data, &cfg);
        assert!(tr1.ratio() < 1.0 && tr1.ranks == 1);
        // A second-order candidate won at least once: the shared solves mattered.
        assert!(tr1
            .records
            .iter()
            .any(|r| matches!(r.candidate, Some(Candidate::SecondOrder(_)))));
        // The world of one process, through the trait: the same.
        let mut local = fresh.clone();
        let one = remanence_distributed::Local;
        let tr = estimate_across(&mut local, &data, &cfg, None, None, Some(&one)).unwrap();
        assert_eq!(
            (&local.weights, &tr.records),
            (&single.weights, &tr1.records)
        );
        for size in [2, 3] {
            for (rank, (net, tr)) in on_ranks(size, &data, &cfg, |_| fresh.clone())
                .into_iter()
                .enumerate()
            {
                let tr = tr.unwrap();
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&net.weights),
                    bits(&single.weights),
                    "{size} ranks, rank {rank}"
                );
                assert_eq!(tr.records, tr1.records, "{size} ranks, rank {rank}");
                assert_eq!(
                    (tr.initial, tr.last, tr.stop),
                    (tr1.initial, tr1.last, tr1.stop)
                );
                assert_eq!(tr.ranks, size);
                assert_eq!(tr.timings.len(), tr.records.len());
                assert!(tr.timings.iter().all(|t| t.gather >= 0.0 && t.solves > 0.0));
            }
        }
    }

    #[test]
    fn ranks_that_start_apart_fail_on_every_rank() {
        let (_, data, fresh) = setup(&ReverseSpec::lnl(4, 9)).unwrap();
        let cfg = EstimatorConfig {
            max_iterations: 3,
            ..Default::default()
        };
        let out = on_ranks(3, &data, &cfg, |rank| {
            let mut net = fresh.clone();
            if rank == 2 {
                net.weights[1] += 1e-9;
            }
            net
        });
        for (rank, (_, tr)) in out.into_iter().enumerate() {
            let err = tr.unwrap_err().to_string();
            assert!(
                err.contains("starting point") && err.contains("rank 2 has"),
                "rank {rank}: {err}"
            );
        }
    }

    #[test]
    fn the_trace_times_every_step() {
        let (_, data, mut net) = setup(&ReverseSpec::lnl(6, 4)).unwrap();
        let cfg = EstimatorConfig {
            max_iterations: 4,
            dmax: 64,
            ..Default::default()
        };
        let tr = estimate(&mut net, &data, &cfg);
        assert_eq!(tr.timings.len(), tr.records.len());
        for t in &tr.timings {
            let parts = t.forward + t.adjoint + t.solves + t.gather + t.line_searches;
            assert!(t.forward > 0.0 && t.adjoint > 0.0 && t.solves > 0.0);
            assert!(t.line_searches > 0.0 && t.gather == 0.0);
            assert!(
                parts <= t.total * (1.0 + 1e-9) && parts >= 0.9 * t.total,
                "{t:?}"
            );
        }
        let (sum, k) = tr.timing_sum();
        assert_eq!(k, tr.records.len());
        assert!(sum.total <= tr.seconds);
        let back: Trace = serde_json::from_str(&serde_json::to_string(&tr).unwrap()).unwrap();
        // (serde_json reads floats back to within an ulp or so.)
        assert_eq!(back.timings.len(), tr.timings.len());
        for (a, b) in back.timings.iter().zip(&tr.timings) {
            assert!((a.total - b.total).abs() <= 1e-12 * b.total);
            assert!((a.solves - b.solves).abs() <= 1e-12 * b.solves);
        }
        // Traces written before the timings existed still read.
        let mut old: serde_json::Value = serde_json::to_value(&tr).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("timings");
        obj.remove("ranks");
        let back: Trace = serde_json::from_value(old).unwrap();
        assert!(back.timings.is_empty() && back.ranks == 1);
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
