//! The per-unit second-order step of backward tuning (RR-9100, §3; the reference code's
//! `KernelExperimentalEstimator::backward_tuning`).
//!
//! The adjoint gives each node a *desired value* `x̂_n(t) = x_n(t) − ε_nt`. Each node's weights
//! are re-fitted by linear least squares so that its learnable part reproduces `x̂ − φ_n0`:
//!
//! `A_n[d,d'] = Σ_t κ_nt φ_ndt φ_nd't`,  `b_n[d] = Σ_t φ_ndt (κ_nt (x_n(t) − φ_n0t) − ε_nt)`,
//!
//! (the sign of the code: `ε` enters `b` unweighted), solved for the weights nearest the current
//! ones `Ŵ_n`: `W_n = Ŵ_n + A_n†(b_n − A_n Ŵ_n)` ([`super::linalg::min_distance_solve`]). Three
//! variants, as the code ([`Variant`]):
//!
//! - `Plain`: `κ = 1`, with `ε`. Since `x_n − φ_n0 = Σ_d Ŵ_nd φ_nd`, `b_n = A_n Ŵ_n − ∂L/∂W_n`, so
//!   this is the step `−A_n†·∇_n L`: a per-unit Gauss–Newton step in which the network's coupling
//!   (the `NT × NT` matrix of the `β`, whose inverse a full Newton step would need) is left out.
//! - `Weighted`: `κ = 1/(1 + |x − φ_0|)`, with `ε`.
//! - `NoAdjoint`: `κ = 1`, without `ε`. On the values of a forward pass, `b = A Ŵ` and the
//!   solution is `Ŵ` itself (no move); it differs only where `x` is not the network's own output
//!   (the report's "reinject" option, which clamps outputs to their targets; not provided here).
//!
//! A step weight `κ_t = 0` (reset gaps, [`super::network::Data::kappa`]) removes the row. An
//! optional diagonal `2c_d` (the sparse regulariser `Σ c_d W_d²`, [`super::sparse`]) is added to
//! `A_n`, and an optional mask fixes masked weights at 0 (their columns are dropped). Only nodes
//! with `1 ≤ D_n ≤ DMAX` (`DMAX = 16` as in the code) are solved; the others keep their weights.
//! Cost `O(N(DT + D³))`.
//!
//! The nodes are independent: they are solved in parallel over `threads` threads
//! (`std::thread::scope`, contiguous blocks of nodes), and the result does not depend on the
//! thread count (each node's arithmetic is the same, in the same order).
use serde::{Deserialize, Serialize};

use super::linalg::min_distance_solve;
use super::network::{Data, Network, Trajectory};

/// The code's `DMAX`: the largest kernel dimension given a second-order solve.
pub const DMAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Variant {
    Plain,
    Weighted,
    NoAdjoint,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Plain, Variant::Weighted, Variant::NoAdjoint];
}

/// What a solve adds to the plain least squares.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras<'a> {
    /// `2c_d` per weight (laid out as [`Network::weights`]), added to `A`'s diagonal.
    pub diag: Option<&'a [f64]>,
    /// `false` fixes that weight at 0.
    pub mask: Option<&'a [bool]>,
}

/// The normal equations `(A_n, b_n)` of node `n` over its active weights `idx` (offsets inside
/// the node).
fn normal_equations(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    n: usize,
    idx: &[usize],
    variant: Variant,
) -> (Vec<f64>, Vec<f64>) {
    let d = idx.len();
    let dn = net.dim(n);
    let (mut a, mut b) = (vec![0.0; d * d], vec![0.0; d]);
    let mut phi_all = vec![0.0; dn];
    let mut phi = vec![0.0; d];
    for t in 0..data.steps {
        let gap = data.kappa[t];
        if gap == 0.0 {
            continue;
        }
        net.kernels_into(&traj.x, data, n, t, &mut phi_all);
        for (p, &i) in phi.iter_mut().zip(idx) {
            *p = phi_all[i];
        }
        let r = traj.get(n, t) - net.fixed_part(&traj.x, data, n, t);
        let e = eps[t * traj.nodes + n];
        let (kappa, e) = match variant {
            Variant::Plain => (gap, gap * e),
            Variant::Weighted => (gap / (1.0 + r.abs()), gap * e),
            Variant::NoAdjoint => (gap, 0.0),
        };
        let rhs = kappa * r - e;
        for i in 0..d {
            b[i] += phi[i] * rhs;
            let ki = kappa * phi[i];
            for j in 0..=i {
                a[i * d + j] += ki * phi[j];
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            a[j * d + i] = a[i * d + j];
        }
    }
    (a, b)
}

/// Node `n`'s new weights (all `D_n` of them; masked ones 0).
fn solve_node(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    n: usize,
    variant: Variant,
    extras: Extras,
) -> Vec<f64> {
    let off = net.offset(n);
    let current = net.node_weights(n);
    let idx: Vec<usize> = (0..net.dim(n))
        .filter(|&d| extras.mask.is_none_or(|m| m[off + d]))
        .collect();
    let mut out = vec![0.0; net.dim(n)];
    if idx.is_empty() {
        return out;
    }
    let (mut a, b) = normal_equations(net, traj, data, eps, n, &idx, variant);
    let k = idx.len();
    if let Some(diag) = extras.diag {
        for (i, &d) in idx.iter().enumerate() {
            a[i * k + i] += diag[off + d];
        }
    }
    let w_hat: Vec<f64> = idx.iter().map(|&d| current[d]).collect();
    let w = min_distance_solve(&a, &b, &w_hat);
    for (&d, v) in idx.iter().zip(w) {
        out[d] = v;
    }
    out
}

/// The weight vector after the per-unit solves of `variant`, nodes solved on `threads` threads.
/// `net.weights` are the current weights `Ŵ`, `traj` their forward pass and `eps` its adjoint.
#[allow(clippy::too_many_arguments)]
pub fn solve_units(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    variant: Variant,
    dmax: usize,
    threads: usize,
    extras: Extras,
) -> Vec<f64> {
    let units: Vec<usize> = (0..net.n_nodes())
        .filter(|&n| net.dim(n) >= 1 && net.dim(n) <= dmax)
        .collect();
    let mut w = net.weights.clone();
    if let Some(mask) = extras.mask {
        for (wi, &m) in w.iter_mut().zip(mask) {
            if !m {
                *wi = 0.0;
            }
        }
    }
    let threads = threads.max(1).min(units.len().max(1));
    let block = units.len().div_ceil(threads).max(1);
    let solved: Vec<(usize, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = units
            .chunks(block)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&n| (n, solve_node(net, traj, data, eps, n, variant, extras)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("solve thread"))
            .collect()
    });
    for (n, wn) in solved {
        let off = net.offset(n);
        w[off..off + wn.len()].copy_from_slice(&wn);
    }
    w
}

#[cfg(test)]
mod tests {
    use super::super::adjoint::{backward, gradient};
    use super::super::criteria::{loss, output_errors, Criterion};
    use super::super::guard::Guard;
    use super::super::network::Sequence;
    use super::super::units::{linear, lnl, randomize, Leak, LnlSpec};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn adjoint(net: &Network, data: &Data) -> (Trajectory, Vec<f64>) {
        let traj = net.forward(data);
        let rp = output_errors(Criterion::L2, &traj, data, &[]);
        let eps = backward(net, &net.weights, &traj, data, &rp, Guard::Identity);
        (traj, eps)
    }

    #[test]
    fn plain_solve_recovers_a_linear_map_in_one_step_and_no_adjoint_does_not_move() {
        // One linear node fed by inputs only, observed: x = Σ w_m i_m(t−1) + α. Its least squares
        // is the whole problem, so the plain solve lands on the true weights at once.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let steps = 50;
        let mut root = linear(1, 3, 1).unwrap();
        randomize(&mut root, 1.0, &mut rng);
        root.weights[1] = 0.0; // no self-recurrence
        let inputs: Vec<f64> = (0..3 * steps)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let seq0 = Sequence {
            len: steps,
            inputs: inputs.clone(),
            targets: vec![0.0; steps],
        };
        let d0 = Data::concat(&[seq0], 3, vec![0], 0, false);
        let targets: Vec<f64> = (0..steps).map(|t| root.forward(&d0).get(0, t)).collect();
        let data = Data::concat(
            &[Sequence {
                len: steps,
                inputs,
                targets,
            }],
            3,
            vec![0],
            0,
            false,
        );
        // Estimate with the self-recurrence masked out (it is fixed at 0 in the root).
        let mut net = root.clone();
        randomize(&mut net, 1.0, &mut rng);
        net.weights[1] = 0.0;
        let mask: Vec<bool> = (0..net.n_weights()).map(|i| i != 1).collect();
        let (traj, eps) = adjoint(&net, &data);
        let ex = Extras {
            diag: None,
            mask: Some(&mask),
        };
        let w = solve_units(&net, &traj, &data, &eps, Variant::Plain, DMAX, 1, ex);
        for (a, b) in w.iter().zip(&root.weights) {
            assert!((a - b).abs() < 1e-10, "{w:?} vs {:?}", root.weights);
        }
        let w = solve_units(
            &net,
            &traj,
            &data,
            &eps,
            Variant::NoAdjoint,
            DMAX,
            1,
            Extras::default(),
        );
        for (a, b) in w.iter().zip(&net.weights) {
            assert!((a - b).abs() < 1e-9);
        }
        // The weighted variant solves A_κ(W − Ŵ) = −∇L: a descent direction, and a step along
        // it lowers the criterion.
        let w = solve_units(&net, &traj, &data, &eps, Variant::Weighted, DMAX, 1, ex);
        let g = gradient(&net, &traj, &data, &eps);
        let slope: f64 = (0..w.len()).map(|i| (w[i] - net.weights[i]) * g[i]).sum();
        assert!(slope < 0.0);
        let l = |w: &[f64]| loss(Criterion::L2, &net.forward_with(w, &data), &data, &[]);
        let half: Vec<f64> = (0..w.len())
            .map(|i| 0.5 * (w[i] + net.weights[i]))
            .collect();
        assert!(l(&half) < l(&net.weights));
    }

    #[test]
    fn plain_solve_is_the_per_unit_gauss_newton_step() {
        // b − AŴ = −∇L restricted to the unit: check A(W − Ŵ) = −∇L on every solved node.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let spec = LnlSpec {
            units: 3,
            inputs: 1,
            a: -1.0,
            b: 1.0,
            leak: Leak::Adjustable(0.2),
            input_delay: 1,
        };
        let mut net = lnl(&spec).unwrap().network;
        randomize(&mut net, 0.7, &mut rng);
        let steps = 40;
        let seq = Sequence {
            len: steps,
            inputs: (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect(),
            targets: (0..steps).map(|_| rng.random_range(-0.5..0.5)).collect(),
        };
        let data = Data::concat(&[seq], 1, vec![0], 0, false);
        let (traj, eps) = adjoint(&net, &data);
        let g = gradient(&net, &traj, &data, &eps);
        let w = solve_units(
            &net,
            &traj,
            &data,
            &eps,
            Variant::Plain,
            DMAX,
            2,
            Extras::default(),
        );
        for n in 0..net.n_nodes() {
            let (off, dn) = (net.offset(n), net.dim(n));
            let idx: Vec<usize> = (0..dn).collect();
            let (a, _) = normal_equations(&net, &traj, &data, &eps, n, &idx, Variant::Plain);
            for i in 0..dn {
                let aw: f64 = (0..dn)
                    .map(|j| a[i * dn + j] * (w[off + j] - net.weights[off + j]))
                    .sum();
                assert!(
                    (aw + g[off + i]).abs() < 1e-8 * (1.0 + g[off + i].abs()),
                    "node {n}"
                );
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let spec = LnlSpec {
            units: 6,
            inputs: 2,
            a: -1.0,
            b: 1.0,
            leak: Leak::Fixed(0.3),
            input_delay: 1,
        };
        let mut net = lnl(&spec).unwrap().network;
        randomize(&mut net, 0.5, &mut rng);
        let steps = 60;
        let seq = Sequence {
            len: steps,
            inputs: (0..2 * steps)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
            targets: (0..steps).map(|_| rng.random_range(-0.5..0.5)).collect(),
        };
        let data = Data::concat(&[seq], 2, vec![0], 0, false);
        let (traj, eps) = adjoint(&net, &data);
        let diag: Vec<f64> = (0..net.n_weights())
            .map(|i| 0.01 * (i % 3) as f64)
            .collect();
        for variant in Variant::ALL {
            let ex = Extras {
                diag: Some(&diag),
                mask: None,
            };
            let one = solve_units(&net, &traj, &data, &eps, variant, DMAX, 1, ex);
            for threads in [2, 3, 5, 16] {
                let many = solve_units(&net, &traj, &data, &eps, variant, DMAX, threads, ex);
                assert_eq!(one, many, "{variant:?} with {threads} threads");
            }
        }
        // Nodes above DMAX keep their weights.
        let small = solve_units(
            &net,
            &traj,
            &data,
            &eps,
            Variant::Plain,
            2,
            4,
            Extras::default(),
        );
        let pre = net.offset(6); // pre-activation nodes have D = 1 + 6 + 2 = 9 > 2
        assert_eq!(&small[pre..], &net.weights[pre..]);
    }
}
