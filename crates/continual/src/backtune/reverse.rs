//! The report's reverse-engineering experiment (RR-9100, §4; `tex/BackwardTuning/results/`): a
//! random *root* network is driven by one scalar random input; only its unit 0 is observed; a
//! fresh network of the same structure is estimated from that output alone.
//!
//! - Root: `N` LNL units (`γ = 0`, `ζ_[−1,1] = tanh`) or `N` integrate-and-fire units, every
//!   weight normal with standard deviation `0.5/√N` (the code's; the text says `≈ 1/N`); input
//!   `i(t)` uniform on `[−1, 1]`; `T = 2N(N+1)` samples (about twice the number of weights,
//!   `N(N+2)` for LNL).
//! - Estimate: a fresh network with weights from the same law (another seed), by
//!   [`estimate`](super::estimator::estimate); stop below `1e−6·L_0`, or after 100 iterations.
//!
//! The report's minimal criteria for LNL, `N = 2/4/8/16/32/64`: 9.3e−7 / 3.0e−6 / 1.0e−6 /
//! 1.6e−6 / 9.1e−6 / 4.5e−6 after 36 / 101 / 78 / 101 / 55 / 101 iterations (101 = cap).
//!
//! **The distributed estimator** (the code's `KernelDistributedEstimator`): repeatedly pick a
//! random node `n` (with weights) and a random window of `S ≥ D_n` steps `t0..t0+S`; fit
//! `A w = b`, `A = Σ_s φ φᵀ`, `b = Σ_s φ (x̂_n − φ_n0)` with the desired values `x̂ = x − ε` of a
//! full backward pass, by the minimum-distance solution from the node's weights `w0`; Brent on
//! `u ∈ [−10, 10]` along `w0 + u(w1 − w0)`; revert the node's weights if `L` did not decrease.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adjoint::backward;
use super::criteria::{loss, output_errors, Criterion};
use super::estimator::{estimate, EstimatorConfig, Trace};
use super::guard::Guard;
use super::linalg::min_distance_solve;
use super::line_search::brent;
use super::network::{Data, Network, Sequence};
use super::plan::ForwardPlan;
use super::units::{aif, aif_learned, lnl, normal, Leak, LnlSpec};
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum UnitKind {
    Lnl,
    /// Integrate-and-fire with leak `γ` and sharpness `1/ε`.
    Aif {
        gamma: f64,
        eps: f64,
    },
    /// Integrate-and-fire with leak `γ` and a learned sharpness per unit
    /// ([`super::units::aif_learned`]): the root's is `sharpness`, the fresh network's starts at
    /// `start`. The other weights are drawn as for [`UnitKind::Aif`], in the same order, so
    /// the root, input and fresh unit weights are those of `Aif { gamma, eps: 1/sharpness }`.
    AifLearned {
        gamma: f64,
        sharpness: f64,
        start: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReverseSpec {
    pub units: usize,
    pub kind: UnitKind,
    /// `T`; `None`: `2N(N+1)`.
    pub steps: Option<usize>,
    /// Draws the root, the input and the fresh network.
    pub seed: u64,
}

impl ReverseSpec {
    pub fn lnl(units: usize, seed: u64) -> Self {
        Self {
            units,
            kind: UnitKind::Lnl,
            steps: None,
            seed,
        }
    }
    pub fn steps(&self) -> usize {
        self.steps.unwrap_or(2 * self.units * (self.units + 1))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReverseResult {
    pub units: usize,
    pub steps: usize,
    pub weights: usize,
    pub trace: Trace,
}

fn structure(spec: &ReverseSpec) -> Result<Network> {
    Ok(match spec.kind {
        UnitKind::Lnl => {
            let s = LnlSpec {
                units: spec.units,
                inputs: 1,
                a: -1.0,
                b: 1.0,
                leak: Leak::None,
                input_delay: 1,
            };
            lnl(&s)?.network
        }
        UnitKind::Aif { gamma, eps } => aif(spec.units, 1, gamma, eps)?,
        UnitKind::AifLearned {
            gamma, sharpness, ..
        } => aif_learned(spec.units, 1, gamma, sharpness)?,
    })
}

/// The weights drawn at random: all of them, except an [`aif_learned`] network's sharpnesses
/// (set, not drawn).
pub fn drawn_weights(net: &Network, kind: UnitKind, units: usize) -> usize {
    match kind {
        UnitKind::AifLearned { .. } => net.offset(units),
        _ => net.n_weights(),
    }
}

/// The root network, its data (the output of unit 0) and a fresh network to estimate.
pub fn setup(spec: &ReverseSpec) -> Result<(Network, Data, Network)> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let std = 0.5 / (spec.units as f64).sqrt();
    let mut root = structure(spec)?;
    let drawn = drawn_weights(&root, spec.kind, spec.units);
    for w in root.weights[..drawn].iter_mut() {
        *w = std * normal(&mut rng);
    }
    let steps = spec.steps();
    let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
    let probe = Data::single(inputs.clone(), vec![], vec![], steps);
    let x = root.forward(&probe);
    let targets: Vec<f64> = (0..steps).map(|t| x.get(0, t)).collect();
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
    let mut fresh = structure(spec)?;
    for w in fresh.weights[..drawn].iter_mut() {
        *w = std * normal(&mut rng);
    }
    if let UnitKind::AifLearned { start, .. } = spec.kind {
        for n in 0..spec.units {
            let i = fresh.offset(spec.units + n);
            fresh.weights[i] = start;
        }
    }
    Ok((root, data, fresh))
}

/// Runs the experiment with the estimator configuration `cfg`.
pub fn reverse_engineer(spec: &ReverseSpec, cfg: &EstimatorConfig) -> Result<ReverseResult> {
    let (_, data, mut net) = setup(spec)?;
    let trace = estimate(&mut net, &data, cfg);
    Ok(ReverseResult {
        units: spec.units,
        steps: data.steps,
        weights: net.n_weights(),
        trace,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedConfig {
    pub criterion: Criterion,
    pub guard: Guard,
    /// Unit updates tried.
    pub updates: usize,
    /// `S = max(D_n, window_factor · D_n)`.
    pub window_factor: usize,
    pub line_rel: f64,
    pub line_evals: usize,
    pub seed: u64,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        Self {
            criterion: Criterion::L2,
            guard: Guard::Code,
            updates: 200,
            window_factor: 4,
            line_rel: 1e-2,
            line_evals: 30,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedTrace {
    pub initial: f64,
    /// `L` after each update (accepted or reverted).
    pub criteria: Vec<f64>,
    pub accepted: usize,
}

/// The distributed estimator; see the module doc.
pub fn distributed_estimate(
    net: &mut Network,
    data: &Data,
    cfg: &DistributedConfig,
) -> DistributedTrace {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let units: Vec<usize> = (0..net.n_nodes()).filter(|&n| net.dim(n) > 0).collect();
    // The forward pass lowered once (bit for bit `forward_with`).
    let plan = ForwardPlan::new(net);
    let l_of =
        |net: &Network, w: &[f64]| loss(cfg.criterion, &plan.forward_with(net, w, data), data, &[]);
    let initial = l_of(net, &net.weights);
    let mut l = initial;
    let (mut criteria, mut accepted) = (Vec::with_capacity(cfg.updates), 0);
    for _ in 0..cfg.updates {
        let traj = plan.forward_with(net, &net.weights, data);
        let rp = output_errors(cfg.criterion, &traj, data, &[]);
        let eps = backward(net, &net.weights, &traj, data, &rp, cfg.guard);
        let n = units[rng.random_range(0..units.len())];
        let d = net.dim(n);
        let s = (cfg.window_factor * d).max(d).min(data.steps);
        let t0 = rng.random_range(0..=data.steps - s);
        let (mut a, mut b) = (vec![0.0; d * d], vec![0.0; d]);
        let mut phi = vec![0.0; d];
        for t in t0..t0 + s {
            if data.kappa[t] == 0.0 {
                continue;
            }
            net.kernels_into(&traj.x, data, n, t, &mut phi);
            let target =
                traj.get(n, t) - eps[t * traj.nodes + n] - net.fixed_part(&traj.x, data, n, t);
            for i in 0..d {
                b[i] += phi[i] * target;
                for j in 0..d {
                    a[i * d + j] += phi[i] * phi[j];
                }
            }
        }
        let w0 = net.node_weights(n).to_vec();
        let w1 = min_distance_solve(&a, &b, &w0);
        let off = net.offset(n);
        let at = |u: f64| -> Vec<f64> {
            let mut w = net.weights.clone();
            for i in 0..d {
                w[off + i] = w0[i] + u * (w1[i] - w0[i]);
            }
            net.project(&mut w);
            w
        };
        let m = brent(
            |u| l_of(net, &at(u)),
            -10.0,
            10.0,
            cfg.line_rel,
            1e-4,
            cfg.line_evals,
        );
        if m.f < l {
            net.weights = at(m.x);
            l = m.f;
            accepted += 1;
        }
        criteria.push(l);
    }
    DistributedTrace {
        initial,
        criteria,
        accepted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &ReverseSpec) -> ReverseResult {
        let res = reverse_engineer(spec, &EstimatorConfig::default()).unwrap();
        let tr = &res.trace;
        println!(
            "N = {}: T = {}, L0 = {:.3e}, L/L0 = {:.3e} after {} iterations ({:?}), {:.2} s",
            spec.units,
            res.steps,
            tr.initial,
            tr.ratio(),
            tr.iterations(),
            tr.stop,
            tr.seconds
        );
        for w in tr.records.windows(2) {
            assert!(
                w[1].criterion <= w[0].criterion,
                "L2 trace is non-increasing"
            );
        }
        for r in &tr.records {
            if let Some(after) = r.after {
                assert!(after < r.criterion, "an accepted candidate lowers L");
            }
        }
        res
    }

    #[test]
    fn reverse_engineering_of_small_lnl_networks() {
        for n in [2, 4, 8] {
            let res = check(&ReverseSpec::lnl(n, 100 + n as u64));
            assert!(
                res.trace.ratio() < 1e-3,
                "N = {n}: L/L0 = {}",
                res.trace.ratio()
            );
        }
    }

    #[test]
    fn distributed_estimator_only_accepts_decreases() {
        let (_, data, mut net) = setup(&ReverseSpec::lnl(3, 7)).unwrap();
        let cfg = DistributedConfig {
            updates: 150,
            ..Default::default()
        };
        let tr = distributed_estimate(&mut net, &data, &cfg);
        let last = *tr.criteria.last().unwrap();
        println!(
            "distributed N = 3: L/L0 = {:.3e}, {} of {} accepted",
            last / tr.initial,
            tr.accepted,
            cfg.updates
        );
        assert!(tr.criteria.windows(2).all(|w| w[1] <= w[0]));
        assert!(tr.accepted > 0 && last < 0.5 * tr.initial);
    }
}
