//! Backward tuning (Viéville, Hinaut, Drumond & Alexandre, "Recurrent neural network weight
//! estimation through backward tuning", Inria RR-9100, 2017): weight estimation for recurrent
//! networks whose units are *linear in their own weights*, `x_n(t) = φ_n0(t) + Σ_d W_nd φ_nd(t)`
//! with kernels `φ` fixed functions of past values, same-step higher-index nodes and inputs
//! (non-linear units are split into intermediate nodes so that every weight enters linearly).
//!
//! The criterion `L = ρ(x) + Σ_nt ε_nt (x̃_n(t) − x_n(t)) + R(W)` (the `ε` are Lagrange
//! multipliers of the network equations) gives three steps:
//!
//! 1. **forward pass** (`∂L/∂ε = 0`): simulate, `O(NDT)` time, `O(NT)` memory;
//! 2. **backward tuning** (`∂L/∂x = 0`), from `t = T−1` down to 0:
//!    `ε_n't' = ρ'_n't' + g(Σ_{efferent nt} β^{n't'}_{nt} ε_nt)`, `β = ∂x̃_n(t)/∂x_n'(t')`;
//! 3. **weights** (`∂L/∂W = 0`): the gradient `Σ_t φ_ndt ε_nt + ∂R/∂W`, and, per unit, a linear
//!    least-squares fit of the weights to the *desired values* `x̂ = x − ε`.
//!
//! Differences from back-propagation through time: without the guard the adjoint `ε` *is* the
//! BPTT gradient with respect to the node values (LeCun 1988, "up to a change of variable"; the
//! tests check it against finite differences and a direct BPTT); what is new is (a) the backward
//! guard `g`, which keeps the sign of the back-propagated error and bounds its magnitude away
//! from 0 and from infinity, and (b) the use of `ε` as desired values for a per-unit
//! second-order (Gauss–Newton-like) solve, tried alongside first-order momentum steps, each
//! line-searched, the best kept if it lowers `L`.
//!
//! - [`network`]: nodes linear in their weights (terms of one source, or gated: a product of
//!   two), bounded weights, data (sequences, reset gaps, static option), forward pass;
//!   [`transfer`]: the fixed scalar transfers (ζ, ReLU, Υ, shift).
//! - [`units`]: linear, LNL, sparse ReLU and integrate-and-fire units (fixed or learned
//!   sharpness) as networks; the Elman SRN of `remanence-cells` as LNL units.
//! - [`criteria`]: L2, reweighted L1/L0, Huber-like, biweight, Boolean margin, with `ρ'`; the
//!   statistical (observable-matching) criterion; the unsupervised regularisers on node values
//!   (sparse activity, orthogonality, soft bound).
//! - [`reinject`]: the report's "reinject" option, desired values with the outputs clamped to
//!   their targets and the hidden values fitted to the network equations.
//! - [`guard`]: the report's smooth guard and the reference code's cruder one.
//! - [`adjoint`]: the backward pass and the gradient.
//! - [`linalg`]: symmetric Jacobi eigen-decomposition, pseudo-inverse, minimum-distance solve.
//! - [`solve`]: the per-unit least squares (three variants, `D ≤ 16`), in parallel over threads
//!   and, through a [`Collective`](remanence_distributed::Collective) (MPI), across processes.
//! - [`line_search`]: Brent's method.
//! - [`plan`]: the forward pass lowered once per estimation (plain node reads as gathers), bit
//!   for bit [`network::Network::forward_with`], used by the estimator's line searches.
//! - [`estimator`]: the full loop (3 second-order + 8 first-order candidates) and its trace
//!   (with the time of each step); [`estimator::estimate_across`] shares the solves among the
//!   ranks of an MPI job.
//! - [`sparse`]: the reweighted L1/L0 regulariser that learns the architecture (described in the
//!   report, never implemented in its code), the learned mask.
//! - [`reverse`]: the reverse-engineering experiment and the distributed estimator.
//! - [`learner`]: backward tuning as a trainer's learner for the one-layer tanh SRN and its
//!   read-out (`remanence train --trainer backward-tuning`).
pub mod adjoint;
pub mod criteria;
pub mod estimator;
pub mod guard;
pub mod learner;
pub mod linalg;
pub mod line_search;
pub mod network;
pub mod plan;
pub mod reinject;
pub mod reverse;
pub mod solve;
pub mod sparse;
pub mod transfer;
pub mod units;
