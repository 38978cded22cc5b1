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
//!   solution is `Ŵ` itself (no move); it differs only where `x` is not the network's own output:
//!   with the report's "reinject" option ([`super::reinject`]) the solves run on a desired
//!   trajectory, the outputs clamped to their targets.
//!
//! A step weight `κ_t = 0` (reset gaps, [`super::network::Data::kappa`]) removes the row. An
//! optional diagonal `2c_d` (the sparse regulariser `Σ c_d W_d²`, [`super::sparse`]) is added to
//! `A_n`, and an optional mask fixes masked weights at 0 (their columns are dropped). Only nodes
//! with `1 ≤ D_n ≤ DMAX` (`DMAX = 16` as in the code) are solved; the others keep their weights.
//! Cost `O(N(DT + D³))`.
//!
//! **Shared matrices.** For `Plain` and `NoAdjoint`, `κ` does not depend on the node, so nodes
//! with the same kernel terms (and the same mask and extra diagonal) have the same `A_n`: it and
//! its pseudo-inverse are formed once for the group and each node forms only its `b_n`
//! (`O(DT)`), with the same bits as its own solve. Every LNL pre-activation node reads
//! `(1, x(t−1), i(t−1))`, so one `A` of size `N + 2` and one eigen-decomposition serve all `N`
//! units; `Weighted` still forms and decomposes one per node.
//!
//! The nodes are independent: they are solved in parallel over `threads` threads
//! (`std::thread::scope`, contiguous blocks of nodes of about equal estimated cost,
//! [`balanced_blocks`]), and the result does not depend on the thread count (each node's
//! arithmetic is the same, in the same order).
//!
//! **Across processes** ([`solve_units_across`]): with a [`Collective`] of `P` ranks, every rank
//! solves only its contiguous share of the nodes (the same cost-balanced cut, into `P` blocks,
//! each then spread over the rank's threads), and the solved rows are gathered to every rank:
//! rank `r` broadcasts the span of weights from its first to its last node (the nodes in between
//! that are not solved keep their current weights, the same on every rank). The broadcasts copy
//! the bits, so every rank ends with exactly the weights a single process computes. The caller
//! must give every rank the same network, trajectory, adjoint and settings (MPI's rule: the same
//! collective calls, in the same order, on every rank).
use std::ops::Range;

use remanence_distributed::{Collective, DistError};
use serde::{Deserialize, Serialize};

use super::linalg::{mat_vec, min_distance_solve, sym_pinv};
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
    accumulate(net, traj, data, eps, n, idx, variant, Parts::Both)
}

/// Which of `A_n` and `b_n` [`accumulate`] forms (the other is returned empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    Both,
    /// `A_n` alone (its `κ` must not depend on the node: not [`Variant::Weighted`]).
    Gram,
    Rhs,
}

/// `A_n` and/or `b_n`: each entry is the same sum, in the same order, whichever parts are formed.
#[allow(clippy::too_many_arguments)]
fn accumulate(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    n: usize,
    idx: &[usize],
    variant: Variant,
    parts: Parts,
) -> (Vec<f64>, Vec<f64>) {
    let d = idx.len();
    let dn = net.dim(n);
    let want_a = parts != Parts::Rhs;
    let want_b = parts != Parts::Gram;
    debug_assert!(want_b || variant != Variant::Weighted);
    let mut a = if want_a { vec![0.0; d * d] } else { Vec::new() };
    let mut b = if want_b { vec![0.0; d] } else { Vec::new() };
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
        let kappa = if want_b || variant == Variant::Weighted {
            let r = traj.get(n, t) - net.fixed_part(&traj.x, data, n, t);
            let e = eps[t * traj.nodes + n];
            let (kappa, e) = match variant {
                Variant::Plain => (gap, gap * e),
                Variant::Weighted => (gap / (1.0 + r.abs()), gap * e),
                Variant::NoAdjoint => (gap, 0.0),
            };
            if want_b {
                let rhs = kappa * r - e;
                for i in 0..d {
                    b[i] += phi[i] * rhs;
                }
            }
            kappa
        } else {
            gap
        };
        if want_a {
            for i in 0..d {
                let ki = kappa * phi[i];
                for j in 0..=i {
                    a[i * d + j] += ki * phi[j];
                }
            }
        }
    }
    if want_a {
        for i in 0..d {
            for j in 0..i {
                a[j * d + i] = a[i * d + j];
            }
        }
    }
    (a, b)
}

/// The active weights of node `n` (offsets inside the node).
fn active(net: &Network, n: usize, extras: Extras) -> Vec<usize> {
    let off = net.offset(n);
    (0..net.dim(n))
        .filter(|&d| extras.mask.is_none_or(|m| m[off + d]))
        .collect()
}

/// A matrix `A` (with the extras' diagonal) shared by several nodes, and its pseudo-inverse.
struct SharedGram {
    a: Vec<f64>,
    pinv: Vec<f64>,
}

/// `w = ŵ + A†(b − Aŵ)` with `A†` given: [`min_distance_solve`] bit for bit (the same
/// products, in the same order).
fn min_distance_with(a: &[f64], pinv: &[f64], b: &[f64], w_hat: &[f64]) -> Vec<f64> {
    let r: Vec<f64> = b
        .iter()
        .zip(mat_vec(a, w_hat))
        .map(|(bi, ai)| bi - ai)
        .collect();
    let step = mat_vec(pinv, &r);
    w_hat.iter().zip(step).map(|(w, s)| w + s).collect()
}

/// For each of `units`, the group of nodes whose `A` is the same matrix (`None`: alone), and
/// each group's `A` and `A†`, formed once. Nodes share `A` when `κ` does not depend on the node
/// (not [`Variant::Weighted`]) and they have the same kernel terms, active weights and extra
/// diagonal: every entry of `A` is then the same sum of the same products (the LNL units'
/// pre-activation nodes all read `(1, x(t−1), i(t−1))`, so one `A` and one eigen-decomposition
/// serve all of them).
fn shared_grams(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    units: &[usize],
    variant: Variant,
    extras: Extras,
) -> (Vec<Option<usize>>, Vec<SharedGram>) {
    let mut group = vec![None; units.len()];
    if variant == Variant::Weighted {
        return (group, Vec::new());
    }
    let diag_of = |n: usize, idx: &[usize]| -> Vec<u64> {
        let off = net.offset(n);
        extras.diag.map_or_else(Vec::new, |dg| {
            idx.iter().map(|&d| dg[off + d].to_bits()).collect()
        })
    };
    // (representative node, its active weights, its diagonal bits, members)
    let mut reps: Vec<(usize, Vec<usize>, Vec<u64>, usize)> = Vec::new();
    let mut rep_of = vec![usize::MAX; units.len()];
    for (u, &n) in units.iter().enumerate() {
        let idx = active(net, n, extras);
        if idx.is_empty() {
            continue;
        }
        let diag = diag_of(n, &idx);
        let kernels = &net.nodes()[n].kernels;
        let found = reps.iter().position(|(r, ri, rd, _)| {
            ri == &idx && rd == &diag && &net.nodes()[*r].kernels == kernels
        });
        let g = match found {
            Some(g) => g,
            None => {
                reps.push((n, idx, diag, 0));
                reps.len() - 1
            }
        };
        reps[g].3 += 1;
        rep_of[u] = g;
    }
    // Only groups of two or more are worth forming ahead.
    let mut grams = Vec::new();
    let mut gram_of = vec![usize::MAX; reps.len()];
    for (g, (n, idx, _, members)) in reps.iter().enumerate() {
        if *members < 2 {
            continue;
        }
        let (mut a, _) = accumulate(net, traj, data, eps, *n, idx, variant, Parts::Gram);
        let k = idx.len();
        if let Some(diag) = extras.diag {
            let off = net.offset(*n);
            for (i, &d) in idx.iter().enumerate() {
                a[i * k + i] += diag[off + d];
            }
        }
        let pinv = sym_pinv(&a, k);
        gram_of[g] = grams.len();
        grams.push(SharedGram { a, pinv });
    }
    for (u, g) in group.iter_mut().enumerate() {
        if rep_of[u] != usize::MAX && gram_of[rep_of[u]] != usize::MAX {
            *g = Some(gram_of[rep_of[u]]);
        }
    }
    (group, grams)
}

/// Node `n`'s new weights (all `D_n` of them; masked ones 0); with `shared`, its `A` (and
/// `A†`) formed once for its group ([`shared_grams`]), the same bits as its own.
#[allow(clippy::too_many_arguments)]
fn solve_node(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    n: usize,
    variant: Variant,
    extras: Extras,
    shared: Option<&SharedGram>,
) -> Vec<f64> {
    let off = net.offset(n);
    let current = net.node_weights(n);
    let idx = active(net, n, extras);
    let mut out = vec![0.0; net.dim(n)];
    if idx.is_empty() {
        return out;
    }
    let w_hat: Vec<f64> = idx.iter().map(|&d| current[d]).collect();
    let w = match shared {
        Some(g) => {
            let (_, b) = accumulate(net, traj, data, eps, n, &idx, variant, Parts::Rhs);
            min_distance_with(&g.a, &g.pinv, &b, &w_hat)
        }
        None => {
            let (mut a, b) = normal_equations(net, traj, data, eps, n, &idx, variant);
            let k = idx.len();
            if let Some(diag) = extras.diag {
                for (i, &d) in idx.iter().enumerate() {
                    a[i * k + i] += diag[off + d];
                }
            }
            min_distance_solve(&a, &b, &w_hat)
        }
    };
    for (&d, v) in idx.iter().zip(w) {
        out[d] = v;
    }
    out
}

/// The nodes given a second-order solve: `1 ≤ D_n ≤ dmax`, in node order.
pub fn solved_units(net: &Network, dmax: usize) -> Vec<usize> {
    (0..net.n_nodes())
        .filter(|&n| net.dim(n) >= 1 && net.dim(n) <= dmax)
        .collect()
}

/// The estimated cost of solving node `n`: `D_n² + D_n` per step for the normal equations (the
/// `D³` of the eigen-decomposition is smaller whenever `T > D`).
fn cost(net: &Network, n: usize) -> usize {
    let d = net.dim(n);
    d * d + d
}

/// `units` (nodes, in order) cut into `parts` contiguous blocks of about equal estimated cost:
/// node `k` goes to the block in which the midpoint of its cumulative cost falls. Returns one
/// range of indices into `units` per block (some may be empty when there are more blocks than
/// nodes); the blocks cover `units` in order.
pub fn balanced_blocks(net: &Network, units: &[usize], parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let total: usize = units.iter().map(|&n| cost(net, n)).sum();
    let mut owner = Vec::with_capacity(units.len());
    let mut before = 0usize;
    for &n in units {
        let c = cost(net, n);
        // The midpoint `before + c/2`, in units of `total / parts`, times 2 to stay whole.
        let mid2 = 2 * before + c;
        let p = if total == 0 {
            0
        } else {
            (mid2 * parts / (2 * total)).min(parts - 1)
        };
        owner.push(p);
        before += c;
    }
    let mut blocks = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 0..parts {
        let end = start + owner[start..].iter().take_while(|&&o| o == p).count();
        blocks.push(start..end);
        start = end;
    }
    debug_assert_eq!(start, units.len());
    blocks
}

/// Solves `units` on `threads` threads (cost-balanced contiguous blocks) and writes their rows
/// into `w`.
#[allow(clippy::too_many_arguments)]
fn solve_into(
    w: &mut [f64],
    units: &[usize],
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    variant: Variant,
    threads: usize,
    extras: Extras,
) {
    let threads = threads.max(1).min(units.len().max(1));
    let (group, grams) = shared_grams(net, traj, data, eps, units, variant, extras);
    let (group, grams) = (&group, &grams);
    let one = |u: usize| {
        let n = units[u];
        let shared = group[u].map(|g| &grams[g]);
        (
            n,
            solve_node(net, traj, data, eps, n, variant, extras, shared),
        )
    };
    let solved: Vec<(usize, Vec<f64>)> = if threads == 1 {
        (0..units.len()).map(one).collect()
    } else {
        let blocks = balanced_blocks(net, units, threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = blocks
                .into_iter()
                .filter(|b| !b.is_empty())
                .map(|b| {
                    let one = &one;
                    s.spawn(move || b.map(one).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("solve thread"))
                .collect()
        })
    };
    for (n, wn) in solved {
        let off = net.offset(n);
        w[off..off + wn.len()].copy_from_slice(&wn);
    }
}

/// The current weights with the masked ones set to 0: the rows of the nodes that are not solved.
fn starting_weights(net: &Network, extras: Extras) -> Vec<f64> {
    let mut w = net.weights.clone();
    if let Some(mask) = extras.mask {
        for (wi, &m) in w.iter_mut().zip(mask) {
            if !m {
                *wi = 0.0;
            }
        }
    }
    w
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
    let units = solved_units(net, dmax);
    let mut w = starting_weights(net, extras);
    solve_into(
        &mut w, &units, net, traj, data, eps, variant, threads, extras,
    );
    w
}

/// Rank `rank`'s share of the solved nodes in a world of `size` ranks (node indices, contiguous
/// and in order; empty when there are fewer nodes than ranks, or `rank ≥ size`).
pub fn rank_share(net: &Network, dmax: usize, rank: usize, size: usize) -> Vec<usize> {
    let units = solved_units(net, dmax);
    let blocks = balanced_blocks(net, &units, size);
    blocks
        .get(rank)
        .map_or_else(Vec::new, |b| units[b.clone()].to_vec())
}

/// The weights after the solves of rank `rank`'s share of the nodes in a world of `size`
/// ranks ([`rank_share`]), on `threads` threads; the other nodes' rows are the current weights
/// (masked ones 0). With `size = 1`: [`solve_units`].
#[allow(clippy::too_many_arguments)]
pub fn solve_share(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    variant: Variant,
    dmax: usize,
    threads: usize,
    extras: Extras,
    rank: usize,
    size: usize,
) -> Vec<f64> {
    let mine = rank_share(net, dmax, rank, size.max(1));
    let mut w = starting_weights(net, extras);
    solve_into(
        &mut w, &mine, net, traj, data, eps, variant, threads, extras,
    );
    w
}

/// Gives every rank of `world` every rank's solved rows: rank `r` broadcasts the weights from
/// its share's first node's row to its last node's ([`rank_share`]; a rank without nodes sends
/// nothing). `w` is each rank's [`solve_share`] with the same `dmax`.
pub fn gather_rows(
    w: &mut [f64],
    net: &Network,
    dmax: usize,
    world: &dyn Collective,
) -> Result<(), DistError> {
    let (rank, size) = (world.rank(), world.size());
    if rank >= size || w.len() != net.n_weights() {
        return Err(DistError::Collective(format!(
            "rank {rank} of {size} gathers {} weights of a network of {}",
            w.len(),
            net.n_weights()
        )));
    }
    let units = solved_units(net, dmax);
    for (r, b) in balanced_blocks(net, &units, size).into_iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let (first, last) = (units[b.start], units[b.end - 1]);
        let span = net.offset(first)..net.offset(last) + net.dim(last);
        world.broadcast_f64(&mut w[span], r)?;
    }
    Ok(())
}

/// [`solve_units`] with the nodes shared among the ranks of `world` (see the module doc):
/// [`solve_share`] then [`gather_rows`]; `None` (or a world of one) solves every node here.
/// Every rank must call it with the same arguments; every rank gets the same weights, exactly
/// those of [`solve_units`]. The errors are the collective's.
#[allow(clippy::too_many_arguments)]
pub fn solve_units_across(
    net: &Network,
    traj: &Trajectory,
    data: &Data,
    eps: &[f64],
    variant: Variant,
    dmax: usize,
    threads: usize,
    extras: Extras,
    world: Option<&dyn Collective>,
) -> Result<Vec<f64>, DistError> {
    let Some(world) = world.filter(|c| c.size() > 1) else {
        return Ok(solve_units(
            net, traj, data, eps, variant, dmax, threads, extras,
        ));
    };
    let mut w = solve_share(
        net,
        traj,
        data,
        eps,
        variant,
        dmax,
        threads,
        extras,
        world.rank(),
        world.size(),
    );
    gather_rows(&mut w, net, dmax, world)?;
    Ok(w)
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
    use remanence_distributed::simulated::Simulated;

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
        let (net, data, traj, eps) = fixture(11, 6, Leak::Fixed(0.3), 60);
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

    /// A random LNL network of `units` units with 2 inputs, one random sequence of `steps`
    /// observed on unit 0, its trajectory and adjoint.
    fn fixture(
        seed: u64,
        units: usize,
        leak: Leak,
        steps: usize,
    ) -> (Network, Data, Trajectory, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spec = LnlSpec {
            units,
            inputs: 2,
            a: -1.0,
            b: 1.0,
            leak,
            input_delay: 1,
        };
        let mut net = lnl(&spec).unwrap().network;
        randomize(&mut net, 0.5, &mut rng);
        let seq = Sequence {
            len: steps,
            inputs: (0..2 * steps)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
            targets: (0..steps).map(|_| rng.random_range(-0.5..0.5)).collect(),
        };
        let data = Data::concat(&[seq], 2, vec![0], 0, false);
        let (traj, eps) = adjoint(&net, &data);
        (net, data, traj, eps)
    }

    /// An LNL network of 7 units with an adjustable leak (output nodes `D = 1`, pre-activation
    /// nodes `D = 10`: uneven costs), its data, trajectory and adjoint.
    fn uneven() -> (Network, Data, Trajectory, Vec<f64>) {
        fixture(23, 7, Leak::Adjustable(0.3), 70)
    }

    #[test]
    fn a_gram_shared_by_several_nodes_gives_their_own_solutions_bit_for_bit() {
        // LNL: every pre-activation node reads (1, x(t−1), i(t−1)), the output nodes their own
        // x(t−1) (adjustable leak): one group of 7 and 7 singletons; with a mask that cuts
        // some nodes' weights, and a diagonal that differs on one node, the groups split.
        let (net, data, traj, eps) = uneven();
        let units = solved_units(&net, DMAX);
        let nw = net.n_weights();
        let mask: Vec<bool> = (0..nw).map(|i| i % 11 != 4).collect();
        let diag: Vec<f64> = (0..nw).map(|i| 0.01 * (i % 3) as f64).collect();
        let mut uniform = vec![0.02; nw];
        uniform[net.offset(9)] = 0.5;
        for extras in [
            Extras::default(),
            Extras {
                diag: None,
                mask: Some(&mask),
            },
            Extras {
                diag: Some(&uniform),
                mask: None,
            },
            Extras {
                diag: Some(&diag),
                mask: Some(&mask),
            },
        ] {
            for variant in Variant::ALL {
                let (group, grams) =
                    shared_grams(&net, &traj, &data, &eps, &units, variant, extras);
                if variant != Variant::Weighted && extras.mask.is_none() && extras.diag.is_none() {
                    assert_eq!(grams.len(), 1, "one group: the pre-activation nodes");
                    assert_eq!(group.iter().filter(|g| g.is_some()).count(), 7);
                }
                if extras.diag == Some(&uniform[..]) && variant != Variant::Weighted {
                    assert_eq!(group.iter().filter(|g| g.is_some()).count(), 6);
                }
                for (u, &n) in units.iter().enumerate() {
                    let alone = solve_node(&net, &traj, &data, &eps, n, variant, extras, None);
                    let shared = group[u].map(|g| &grams[g]);
                    let with = solve_node(&net, &traj, &data, &eps, n, variant, extras, shared);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&with), bits(&alone), "{variant:?} node {n}");
                }
            }
        }
        // The pseudo-inverse given: the library's minimum-distance solve, bit for bit.
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1e-3];
        let (b, w) = (vec![0.3, -1.0, 2.0], vec![0.1, 0.2, -0.3]);
        assert_eq!(
            min_distance_with(&a, &sym_pinv(&a, 3), &b, &w),
            min_distance_solve(&a, &b, &w)
        );
    }

    #[test]
    fn balanced_blocks_cut_the_units_in_order_by_cost() {
        let (net, ..) = uneven();
        let units = solved_units(&net, DMAX);
        let dims: Vec<usize> = units.iter().map(|&n| net.dim(n)).collect();
        assert!(dims.contains(&1) && dims.contains(&10), "{dims:?}");
        for parts in 1..=20 {
            let blocks = balanced_blocks(&net, &units, parts);
            assert_eq!(blocks.len(), parts);
            // Contiguous, in order, covering every unit once.
            let mut next = 0;
            for b in &blocks {
                assert_eq!(b.start, next, "{parts} parts: {blocks:?}");
                next = b.end;
            }
            assert_eq!(next, units.len());
            // Balanced: no block costs more than its fair share plus one unit's cost.
            let cost_of = |b: &Range<usize>| -> usize {
                units[b.clone()].iter().map(|&n| cost(&net, n)).sum()
            };
            let total: usize = units.iter().map(|&n| cost(&net, n)).sum();
            let biggest = units.iter().map(|&n| cost(&net, n)).max().unwrap();
            for b in &blocks {
                assert!(
                    cost_of(b) <= total.div_ceil(parts) + biggest,
                    "{parts} parts: {blocks:?}"
                );
            }
        }
        // Two parts: the 7 cheap output nodes and 3 of the 7 expensive ones against 4, rather
        // than 7 nodes against 7 (all the cheap ones on one side).
        let two = balanced_blocks(&net, &units, 2);
        let costs: Vec<usize> = two
            .iter()
            .map(|b| units[b.clone()].iter().map(|&n| cost(&net, n)).sum())
            .collect();
        assert!(
            costs[0].abs_diff(costs[1]) <= 110,
            "{two:?}: costs {costs:?}"
        );
    }

    #[test]
    fn partitioned_solves_give_exactly_the_local_weights() {
        let (net, data, traj, eps) = uneven();
        let diag: Vec<f64> = (0..net.n_weights())
            .map(|i| 0.01 * (i % 4) as f64)
            .collect();
        let mask: Vec<bool> = (0..net.n_weights()).map(|i| i % 7 != 3).collect();
        let settings = [
            (Extras::default(), DMAX),
            (
                Extras {
                    diag: Some(&diag),
                    mask: Some(&mask),
                },
                DMAX,
            ),
            // DMAX 5: only the output nodes are solved, the others keep their weights.
            (Extras::default(), 5),
        ];
        for (extras, dmax) in settings {
            for variant in Variant::ALL {
                let local = solve_units(&net, &traj, &data, &eps, variant, dmax, 1, extras);
                // No collective, and the world of one process: the local solve.
                let none =
                    solve_units_across(&net, &traj, &data, &eps, variant, dmax, 2, extras, None)
                        .unwrap();
                assert_eq!(none, local);
                let one = remanence_distributed::Local;
                let with_local = solve_units_across(
                    &net,
                    &traj,
                    &data,
                    &eps,
                    variant,
                    dmax,
                    1,
                    extras,
                    Some(&one),
                )
                .unwrap();
                assert_eq!(with_local, local);
                // Three ranks as threads (each with 2 solve threads of its own).
                let world = Simulated::world(3);
                let results: Vec<(usize, Vec<f64>, Vec<f64>)> = std::thread::scope(|s| {
                    let handles: Vec<_> = world
                        .into_iter()
                        .map(|c| {
                            let (net, traj, data, eps) = (&net, &traj, &data, &eps);
                            s.spawn(move || {
                                let share = solve_share(
                                    net,
                                    traj,
                                    data,
                                    eps,
                                    variant,
                                    dmax,
                                    2,
                                    extras,
                                    c.rank(),
                                    3,
                                );
                                let c: &dyn Collective = &c;
                                let w = solve_units_across(
                                    net,
                                    traj,
                                    data,
                                    eps,
                                    variant,
                                    dmax,
                                    2,
                                    extras,
                                    Some(c),
                                )
                                .unwrap();
                                (c.rank(), share, w)
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                let before = starting_weights(&net, extras);
                let mut covered = vec![false; net.n_nodes()];
                for (rank, share, w) in &results {
                    // Every rank ends with exactly the local weights, bit for bit.
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(w),
                        bits(&local),
                        "{variant:?}, dmax {dmax}, rank {rank}"
                    );
                    // Each rank solved its own share only: its rows are the local solve's, the
                    // other solved nodes' rows are still the starting weights.
                    let mine = rank_share(&net, dmax, *rank, 3);
                    for n in solved_units(&net, dmax) {
                        let rows = net.offset(n)..net.offset(n) + net.dim(n);
                        if mine.contains(&n) {
                            assert_eq!(&share[rows.clone()], &local[rows], "rank {rank} node {n}");
                            covered[n] = true;
                        } else {
                            assert_eq!(&share[rows.clone()], &before[rows], "rank {rank} node {n}");
                        }
                    }
                }
                for n in solved_units(&net, dmax) {
                    assert!(covered[n], "node {n} solved by no rank");
                }
                // The rows the solve changes are moved by it (not a no-op).
                if variant == Variant::Plain {
                    assert_ne!(local, before, "{variant:?}, dmax {dmax}");
                }
            }
        }
    }
}
