//! Sparse estimation: learning the architecture (RR-9100, §3, "sparse estimation"). The report
//! describes this regulariser; the reference code never implemented it.
//!
//! `R(W) = Σ_nd ν_nd · W_nd² / (ε + |Ŵ_nd|)` (iteratively reweighted L1: at `W = Ŵ` it is
//! `≈ Σ ν|W|`), or `Σ ν_nd · W_nd² / (ε + Ŵ_nd²)` (the L0 analogue: `≈ ν` per non-zero weight),
//! with `Ŵ` the weights at the start of each iteration. Writing `c_nd = ν_nd/(ε + |Ŵ_nd|)`,
//! `R = Σ c W²` is quadratic for a fixed `Ŵ`, so it enters
//!
//! - the criterion, `L + Σ c W²`, and the gradient, `+ 2cW`;
//! - each unit's normal equations as a diagonal: `(A_n + 2C_n) W_n = b_n` (the Gauss–Newton
//!   model of `L` plus `R`, see [`super::solve`]).
//!
//! Small weights get a large `c` and are driven towards 0. After convergence, the weights with
//! `|W| < threshold` (among the penalised ones) are set to 0 and become the *mask* (the learned
//! zero set, `false` = no connection); optionally the kept weights are re-fitted without the
//! penalty (removing its shrinkage) with the mask fixed. `ν_nd = 0` leaves a weight free (here,
//! by default, only the weights whose kernel reads a node, the recurrent architecture, are
//! penalised; biases and input weights are not).
use remanence_distributed::{Collective, DistError};
use serde::{Deserialize, Serialize};

use super::estimator::{estimate_across, EstimatorConfig, Trace};
use super::network::{Data, Network, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SparseKind {
    /// `ν W²/(ε + |Ŵ|)`.
    L1,
    /// `ν W²/(ε + Ŵ²)`.
    L0,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparsePenalty {
    /// `ν_nd`, laid out as [`Network::weights`] (0: not penalised).
    pub nu: Vec<f64>,
    pub eps: f64,
    pub kind: SparseKind,
}

impl SparsePenalty {
    /// `ν` on every weight whose kernel reads a node (the connections between nodes), 0 on the
    /// others.
    pub fn on_connections(net: &Network, nu: f64, eps: f64, kind: SparseKind) -> Self {
        let mut v = Vec::with_capacity(net.n_weights());
        for node in net.nodes() {
            for term in &node.kernels {
                v.push(if matches!(term.source, Source::Node(_)) {
                    nu
                } else {
                    0.0
                });
            }
        }
        Self { nu: v, eps, kind }
    }

    /// `c_nd = ν_nd/(ε + |Ŵ_nd|)` (L1) or `ν_nd/(ε + Ŵ_nd²)` (L0).
    pub fn coefficients(&self, w_hat: &[f64]) -> Vec<f64> {
        self.nu
            .iter()
            .zip(w_hat)
            .map(|(nu, w)| match self.kind {
                SparseKind::L1 => nu / (self.eps + w.abs()),
                SparseKind::L0 => nu / (self.eps + w * w),
            })
            .collect()
    }

    /// `Σ c W²`.
    pub fn value(c: &[f64], w: &[f64]) -> f64 {
        c.iter().zip(w).map(|(c, w)| c * w * w).sum()
    }
}

/// The outcome of a sparse estimation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SparseResult {
    /// `true` = connection kept, laid out as [`Network::weights`].
    pub mask: Vec<bool>,
    /// Penalised weights kept, per node.
    pub kept_per_node: Vec<usize>,
    /// Penalised weights per node (the dense count).
    pub penalised_per_node: Vec<usize>,
    pub trace: Trace,
    /// The re-fit with the mask and without the penalty, if asked for.
    pub refit: Option<Trace>,
}

/// The mask as an `N × D_n` boolean array.
pub fn mask_rows(net: &Network, mask: &[bool]) -> Vec<Vec<bool>> {
    (0..net.n_nodes())
        .map(|n| mask[net.offset(n)..net.offset(n) + net.dim(n)].to_vec())
        .collect()
}

/// Estimates `net` with the penalty, zeroes the penalised weights below `threshold` into the
/// mask, and (with `refit`) re-estimates the kept weights without the penalty.
pub fn sparse_estimate(
    net: &mut Network,
    data: &Data,
    cfg: &EstimatorConfig,
    penalty: &SparsePenalty,
    threshold: f64,
    refit: bool,
) -> SparseResult {
    match sparse_estimate_across(net, data, cfg, penalty, threshold, refit, None) {
        Ok(res) => res,
        // One process makes no collective call: the only error is the configuration's.
        Err(e) => panic!("{e}"),
    }
}

/// [`sparse_estimate`] with the per-unit solves of both estimations shared among the ranks of
/// `world` ([`estimate_across`]; `None`: all here).
pub fn sparse_estimate_across(
    net: &mut Network,
    data: &Data,
    cfg: &EstimatorConfig,
    penalty: &SparsePenalty,
    threshold: f64,
    refit: bool,
    world: Option<&dyn Collective>,
) -> Result<SparseResult, DistError> {
    let trace = estimate_across(net, data, cfg, Some(penalty), None, world)?;
    let mask: Vec<bool> = net
        .weights
        .iter()
        .zip(&penalty.nu)
        .map(|(w, nu)| *nu == 0.0 || w.abs() >= threshold)
        .collect();
    for (w, &keep) in net.weights.iter_mut().zip(&mask) {
        if !keep {
            *w = 0.0;
        }
    }
    let count = |pick: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..net.n_nodes())
            .map(|n| {
                (net.offset(n)..net.offset(n) + net.dim(n))
                    .filter(|&i| pick(i))
                    .count()
            })
            .collect()
    };
    let kept_per_node = count(&|i| penalty.nu[i] != 0.0 && mask[i]);
    let penalised_per_node = count(&|i| penalty.nu[i] != 0.0);
    let refit = match refit {
        true => Some(estimate_across(net, data, cfg, None, Some(&mask), world)?),
        false => None,
    };
    Ok(SparseResult {
        mask,
        kept_per_node,
        penalised_per_node,
        trace,
        refit,
    })
}

#[cfg(test)]
mod tests {
    use super::super::estimator::estimate_with;
    use super::super::network::{Node, Sequence, Term};
    use super::super::reverse::{setup, ReverseSpec};
    use super::super::transfer::Transfer;
    use super::super::units::{normal, randomize};
    use super::*;
    use rand::seq::index::sample;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use remanence_distributed::simulated::Simulated;

    /// `U` tanh units, unit `n` reading all units at delay 1, a bias and its own noise input
    /// `i_n(t−1)`: output nodes `0..U`, pre-activation nodes `U..2U` with weights
    /// `[α, W_n0..W_nU, Win_n]`.
    fn dense_net(u: usize) -> Network {
        let mut nodes: Vec<Node> = (0..u)
            .map(|n| Node {
                fixed: vec![(
                    1.0,
                    Term::node(u + n, 0).through(Transfer::Zeta { a: -1.0, b: 1.0 }),
                )],
                kernels: vec![],
            })
            .collect();
        for n in 0..u {
            let mut kernels = vec![Term::constant()];
            kernels.extend((0..u).map(|k| Term::node(k, 1)));
            kernels.push(Term::input(n, 1));
            nodes.push(Node {
                fixed: vec![],
                kernels,
            });
        }
        Network::new(nodes, u).unwrap()
    }

    #[test]
    fn penalty_coefficients_and_gradient() {
        let p = SparsePenalty {
            nu: vec![1.0, 0.0, 2.0],
            eps: 0.1,
            kind: SparseKind::L1,
        };
        let c = p.coefficients(&[0.9, 5.0, -0.4]);
        assert!((c[0] - 1.0).abs() < 1e-15 && c[1] == 0.0 && (c[2] - 4.0).abs() < 1e-15);
        // At W = Ŵ the reweighted L1 is ν|W|·|W|/(ε+|W|) ≈ ν|W|.
        assert!((SparsePenalty::value(&c, &[0.9, 5.0, -0.4]) - (0.81 + 0.64)).abs() < 1e-12);
        let p0 = SparsePenalty {
            kind: SparseKind::L0,
            ..p
        };
        assert!((p0.coefficients(&[0.9, 0.0, -0.4])[0] - 1.0 / 0.91).abs() < 1e-12);
    }

    #[test]
    fn sparse_estimation_recovers_the_true_zero_set() {
        let (u, steps) = (8, 300);
        let mut rng = ChaCha8Rng::seed_from_u64(2017);
        let mut root = dense_net(u);
        let mut truth = vec![false; root.n_weights()];
        for n in 0..u {
            let off = root.offset(u + n);
            root.weights[off] = 0.1 * normal(&mut rng);
            root.weights[off + 1 + u] = 1.0;
            for k in sample(&mut rng, u, 2).into_vec() {
                let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                root.weights[off + 1 + k] = sign * rng.random_range(0.4..0.9);
                truth[off + 1 + k] = true;
            }
        }
        let inputs: Vec<f64> = (0..u * steps)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let probe = Data::single(inputs.clone(), vec![], vec![], steps);
        let x = root.forward(&probe);
        // All units observed, with a little observation noise.
        let targets: Vec<f64> = (0..u)
            .flat_map(|n| (0..steps).map(move |t| (n, t)))
            .map(|(n, t)| x.get(n, t) + 0.01 * normal(&mut rng))
            .collect();
        let seq = Sequence {
            len: steps,
            inputs,
            targets,
        };
        let data = Data::concat(&[seq], u, (0..u).collect(), 0, false);

        let cfg = EstimatorConfig {
            max_iterations: 40,
            ..Default::default()
        };
        let penalty = SparsePenalty::on_connections(&root, 0.05, 1e-3, SparseKind::L1);
        let mut net = root.clone();
        randomize(&mut net, 0.1, &mut rng);
        let res = sparse_estimate(&mut net, &data, &cfg, &penalty, 0.05, true);

        let score = |mask: &[bool]| {
            let (mut tp, mut fp, mut fneg) = (0, 0, 0);
            for i in 0..mask.len() {
                if penalty.nu[i] == 0.0 {
                    continue;
                }
                match (mask[i], truth[i]) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fneg += 1,
                    _ => {}
                }
            }
            (
                tp as f64 / (tp + fp).max(1) as f64,
                tp as f64 / (tp + fneg) as f64,
            )
        };
        let (precision, recall) = score(&res.mask);
        // The same estimation without the penalty, thresholded the same way.
        let mut plain = root.clone();
        randomize(&mut plain, 0.1, &mut ChaCha8Rng::seed_from_u64(6));
        let tr = estimate_with(&mut plain, &data, &cfg, None, None);
        let plain_mask: Vec<bool> = plain
            .weights
            .iter()
            .zip(&penalty.nu)
            .map(|(w, nu)| *nu == 0.0 || w.abs() >= 0.05)
            .collect();
        let (p_plain, r_plain) = score(&plain_mask);
        println!(
            "sparse: precision {precision:.3} recall {recall:.3}, kept per unit {:?} of {:?}, \
             L {:.3e} -> {:.3e} ({} iterations), refit -> {:.3e}; unpenalised: precision \
             {p_plain:.3} recall {r_plain:.3}, L -> {:.3e}",
            &res.kept_per_node[u..],
            &res.penalised_per_node[u..],
            res.trace.initial,
            res.trace.last,
            res.trace.iterations(),
            res.refit.as_ref().map_or(f64::NAN, |t| t.last),
            tr.last,
        );
        assert!(
            precision >= 0.9 && recall >= 0.9,
            "precision {precision}, recall {recall}"
        );
        assert_eq!(mask_rows(&net, &res.mask).len(), 2 * u);
        // The refit with the learned mask explains the data down to the observation noise:
        // Σ e²/2 over U·T observations of variance 1e-4 is about 0.12.
        let refit = res.refit.unwrap();
        assert!(refit.last < 0.3, "refit criterion {}", refit.last);
    }

    #[test]
    fn sparse_estimation_across_ranks_is_the_single_process_one() {
        let (_, data, fresh) = setup(&ReverseSpec::lnl(4, 5)).unwrap();
        let cfg = EstimatorConfig {
            max_iterations: 5,
            ..Default::default()
        };
        let penalty = SparsePenalty::on_connections(&fresh, 0.01, 1e-3, SparseKind::L1);
        let mut single = fresh.clone();
        let one = sparse_estimate(&mut single, &data, &cfg, &penalty, 0.05, true);
        assert!(one.mask.iter().any(|k| !k), "the threshold cut something");
        let out: Vec<(Network, SparseResult)> = std::thread::scope(|s| {
            let handles: Vec<_> = Simulated::world(2)
                .into_iter()
                .map(|c| {
                    let (data, cfg, penalty, fresh) = (&data, &cfg, &penalty, &fresh);
                    s.spawn(move || {
                        let mut net = fresh.clone();
                        let c: &dyn Collective = &c;
                        let r = sparse_estimate_across(
                            &mut net,
                            data,
                            cfg,
                            penalty,
                            0.05,
                            true,
                            Some(c),
                        )
                        .unwrap();
                        (net, r)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, (net, res)) in out.iter().enumerate() {
            assert_eq!(net.weights, single.weights, "rank {rank}");
            assert_eq!(res.mask, one.mask, "rank {rank}");
            assert_eq!(res.trace.records, one.trace.records, "rank {rank}");
            let (a, b) = (res.refit.as_ref().unwrap(), one.refit.as_ref().unwrap());
            assert_eq!((a.records.clone(), a.ranks), (b.records.clone(), 2));
        }
    }
}
