//! `remanence reverse-engineer`: the reverse-engineering experiment of backward tuning
//! (Viéville, Hinaut, Drumond & Alexandre, Inria RR-9100, 2017; `remanence_continual::backtune`).
//!
//! A random *root* network of `N` units (LNL `x = tanh(α + W x(t−1) + Win i(t−1))`,
//! integrate-and-fire, or sparse ReLU units) is driven by one uniform random input on [−1, 1];
//! units `0..K` are observed for `T` steps (default `T = 2N(N+1)`, about twice the weights of an
//! LNL network); a fresh network of the same structure, its weights drawn from the same law, is
//! estimated from the observed output alone. Root and fresh weights are normal with standard
//! deviation `0.5/√N` (the report's code), drawn from `--seed` in the order root weights, input,
//! fresh weights (so `--observe 1` gives the data of the library's `reverse::setup`).
//!
//! - the full estimator (per-unit second-order solves and momentum steps, line-searched), or
//!   with `--distributed` the report's random-unit / random-window estimator;
//! - with `--sparse NU`, the reweighted-L1 penalty on the connections (the architecture learned
//!   as the set of weights above `--threshold`, then a re-fit of the kept ones); the root then
//!   keeps `max(2, ⌊√N⌋)` (or `--root-connections K`) random recurrent connections per unit
//!   (the others 0) so that there is an architecture to recover; `--sparse 0` is the baseline,
//!   a plain fit thresholded and re-fitted the same way;
//! - with `--obs-noise SIGMA` and/or `--outliers FRACTION:FACTOR`, the observed targets (not the
//!   held-out ones) are corrupted from a stream of their own of `--seed` (the report's
//!   robustness experiment: σ = 0.1, 5 % of the samples ×10); `reverse.json` then also gives the
//!   L2 criterion of the fresh network and of the estimate against the clean targets.
//!
//! With `--mpi` (a binary built with `--features mpi`, launched as `mpirun -np P remanence
//! reverse-engineer … --mpi`) the full estimator's per-unit solves are shared among the `P`
//! ranks (`backtune::estimator::estimate_across`): every rank builds the same root, data and
//! fresh network from `--seed`, runs the forward and adjoint passes, solves its contiguous share
//! of the units and line-searches its contiguous share of the candidates; the solved rows and
//! the searches' results (criterion, step) are broadcast to every rank, every rank keeps the
//! same winner, so the estimate is exactly the single process's (every rank checks the same starting point and the
//! same final weights by hash). Only rank 0 prints and writes the output folder; a rank that
//! fails ends the job (`MPI_Abort`). The trace records each iteration's time split (forward,
//! adjoint, solves, gather, line searches), printed after the iterations.
//!
//! Options of the full estimator: `--reinject` (the report's option: the per-unit solves run on a
//! desired trajectory with the observed outputs clamped to their targets and the hidden values
//! fitted to the network equations, `backtune::reinject`); `--criterion stat` (the statistical
//! criterion `Σ_k |λ_k|·|Ω̄_k − Ω_k|` on observables of the observed units, `--observables`,
//! their desired values measured on the observed output; `reverse.json` then lists each
//! observable's desired, fresh and estimated value); `--learn-sharpness` with `--units aif` (the
//! sharpness `1/ε` of each integrate-and-fire unit is a weight of an intermediate node, learned
//! from `--start-sharpness`, the root's being `--sharpness`); `--sparse-activity`,
//! `--orthogonality`, `--soft-bound` (the report's unsupervised regularisers on the hidden,
//! unobserved units' values; `reverse.json` then gives the hidden units' activity and the fit
//! without them).
//!
//! The run folder holds `reverse.json` (settings, the per-iteration trace, the final criterion
//! relative to `L_0`, the criterion on a held-out input, seconds, the root and estimated
//! weights), `criterion.png` (criterion/L_0 against iteration, log scale) and, with `--sparse`,
//! `adjacency.png` (learned connection mask beside the true one); every picture has a `.md`
//! description beside it (the build has no font). Every file is written to a temporary name and
//! renamed.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remanence_continual::backtune::criteria::{
    loss, ActivityPenalty, Criterion, ObservableKind, Regulariser, Statistical,
};
use remanence_continual::backtune::estimator::{
    estimate_across, Candidate, EstimatorConfig, IterationRecord, Trace,
};
use remanence_continual::backtune::network::{Data, Network, Sequence, Source};
use remanence_continual::backtune::reinject::ReinjectConfig;
use remanence_continual::backtune::reverse::{distributed_estimate, DistributedConfig};
use remanence_continual::backtune::solve::Variant;
use remanence_continual::backtune::sparse::{
    sparse_estimate_across, SparseKind, SparsePenalty, SparseResult,
};
use remanence_continual::backtune::units::{
    aif, aif_learned, lnl, normal, sharpness_of, sparse_relu, Leak, LnlSpec,
};
use remanence_distributed::Collective;
use remanence_probes::plots::{write_atomic, write_json};
use serde::Serialize;

use super::world::{self, Distributed, World};
use crate::settings::{kappa_eps, soft_bound};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitArg {
    /// Linear–non-linear: x = tanh(α + W x(t−1) + Win i(t−1)) (two nodes per unit).
    Lnl,
    /// Integrate-and-fire: leak γ = 0.9, spike sharpness 1/ε = --sharpness (10; one node per
    /// unit, or two with --learn-sharpness).
    Aif,
    /// ReLU (saturated at 1e6) with a fixed leak 0.5 and a fixed random connectivity of
    /// max(2, ⌊√N⌋) sources per unit.
    SparseRelu,
}

/// A second-order solve variant (`backtune::solve::Variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariantArg {
    /// κ = 1, with the adjoint errors (the per-unit Gauss–Newton step).
    Plain,
    /// κ = 1/(1 + |x − φ₀|), with the adjoint errors.
    Weighted,
    /// κ = 1, without the adjoint errors (moves only with --reinject).
    NoAdjoint,
}

impl VariantArg {
    fn variant(self) -> Variant {
        match self {
            VariantArg::Plain => Variant::Plain,
            VariantArg::Weighted => Variant::Weighted,
            VariantArg::NoAdjoint => Variant::NoAdjoint,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CriterionArg {
    /// Least squares e²/2.
    L2,
    /// Reweighted L1 e²/(2(ν + |ê|)).
    L1,
    /// Reweighted L0 e²/(2(ν + ê²)).
    L0,
    /// Pseudo-Huber with δ = --scale.
    Huber,
    /// Tukey's biweight with c = --scale.
    Biweight,
    /// Boolean margin with ν = --nu; the targets are then Boolean: 1 where the root's output
    /// is above its median over the T steps, else 0 (the output must be at least ν beyond ½ on
    /// the target's side).
    Margin,
    /// The statistical criterion Σ_k |λ_k|·|Ω̄_k − Ω_k|: only the observables of
    /// --observables (mean, autocorrelations) of the observed units are matched, their desired
    /// values Ω̄ measured on the root's output.
    Stat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReinjectSolverArg {
    /// Gauss–Newton steps, each solved by conjugate gradients (the default).
    GaussNewton,
    /// The report's recurrence x̂ ← Φ(x̂) + Σβ(x̂ − Φ(x̂)) as the reference code iterates it (20
    /// times at most).
    FixedPoint,
}

/// One `--observables` item: an observable of one observed unit, or of every one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct ObservableArg {
    kind: ObservableKind,
    /// `None`: every observed unit.
    unit: Option<usize>,
}

/// `mean`, `ac:LAG`, each optionally `@UNIT`.
fn observable(s: &str) -> std::result::Result<ObservableArg, String> {
    let s = s.trim();
    let (what, unit) = match s.split_once('@') {
        Some((w, u)) => {
            let u: usize = u
                .trim()
                .parse()
                .map_err(|_| format!("`{u}` in `{s}` is not a unit number"))?;
            (w.trim(), Some(u))
        }
        None => (s, None),
    };
    let kind = if what == "mean" {
        ObservableKind::Mean
    } else if let Some(lag) = what.strip_prefix("ac:") {
        let lag: usize = lag
            .trim()
            .parse()
            .map_err(|_| format!("`{lag}` in `{s}` is not a lag (a whole number ≥ 0)"))?;
        ObservableKind::Autocorrelation { lag }
    } else {
        return Err(format!(
            "`{s}` is not an observable: mean or ac:LAG (autocorrelation at lag LAG), each \
             optionally @UNIT"
        ));
    };
    Ok(ObservableArg { kind, unit })
}

#[derive(Args)]
pub struct ReverseArgs {
    /// Unit type of the root and estimated networks.
    #[arg(long, value_enum, default_value_t = UnitArg::Lnl)]
    units: UnitArg,
    /// N, the number of units.
    #[arg(long = "units-count", visible_alias = "hidden", value_name = "N",
          default_value_t = 4, allow_negative_numbers = true, value_parser = positive)]
    units_count: usize,
    /// Observed units (units 0..K).
    #[arg(long, value_name = "K", default_value_t = 1, allow_negative_numbers = true,
          value_parser = positive)]
    observe: usize,
    /// T, the observed steps (default 2N(N+1)).
    #[arg(long, value_name = "T", allow_negative_numbers = true, value_parser = positive)]
    samples: Option<usize>,
    /// The criterion fitted.
    #[arg(long, value_enum, default_value_t = CriterionArg::L2)]
    criterion: CriterionArg,
    /// ν of the l1 and l0 criteria (default 1e-3) and of the margin (default 0.1).
    #[arg(long, allow_negative_numbers = true)]
    nu: Option<f64>,
    /// δ of huber, c of biweight (default 1).
    #[arg(long, allow_negative_numbers = true)]
    scale: Option<f64>,
    /// With --criterion stat: the observables, comma-separated: `mean` (of the unit's values)
    /// and `ac:LAG` (the uncentred autocorrelation mean_t x(t)·x(t−LAG); ac:0 is the second
    /// moment), each of every observed unit or of unit U with `@U` (e.g. mean@0,ac:1@0).
    /// Default: mean,ac:0,ac:1,ac:2.
    #[arg(long, value_delimiter = ',', value_parser = observable)]
    observables: Option<Vec<ObservableArg>>,
    /// With --criterion stat: the weights |λ_k| of the observables, one per observable after
    /// expanding the ones of every observed unit (default 1 each).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    stat_weights: Option<Vec<f64>>,
    /// With --criterion stat: leave out the Gauss–Newton step on the observables (ours, not the
    /// report's): the report's candidates only.
    #[arg(long)]
    no_observable_step: bool,
    /// The report's "reinject" option: the per-unit second-order solves run on a desired
    /// trajectory in which the observed outputs are clamped to their targets and every other
    /// value minimises the misfit of the network equations (instead of the simulation and its
    /// adjoint errors).
    #[arg(long, conflicts_with = "distributed")]
    reinject: bool,
    /// With --reinject: how the hidden desired values are computed.
    #[arg(long, value_enum, requires = "reinject", default_value_t = ReinjectSolverArg::GaussNewton)]
    reinject_solver: ReinjectSolverArg,
    /// Integrate-and-fire units (--units aif): the root's spike sharpness 1/ε.
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    sharpness: Option<f64>,
    /// With --units aif: learn each unit's sharpness 1/ε (a weight of an intermediate node,
    /// kept in [0, 100]) instead of fixing it.
    #[arg(long)]
    learn_sharpness: bool,
    /// Unsupervised regulariser on the hidden (unobserved) units' values: sparse activity
    /// κ·x²/(ε + |x̂|), x̂ the values at the start of each iteration (ε default 1e-3).
    #[arg(long, value_name = "KAPPA[:EPS]", value_parser = kappa_eps, allow_negative_numbers = true)]
    sparse_activity: Option<(f64, f64)>,
    /// Unsupervised regulariser on the hidden units: orthogonality κ·Σ_{n≠n'}(Σ_t x_n x̂_n')².
    #[arg(long, value_name = "KAPPA", allow_negative_numbers = true)]
    orthogonality: Option<f64>,
    /// Unsupervised regulariser on the hidden units: soft bound κ·e^{k(x − b)} (k > 0 keeps x
    /// below b, k < 0 above it); repeat it for both sides.
    #[arg(long, value_name = "KAPPA:K:B", value_parser = soft_bound, allow_negative_numbers = true)]
    soft_bound: Vec<(f64, f64, f64)>,
    /// With --learn-sharpness: the sharpness the estimate starts from (default: the root's).
    #[arg(
        long,
        value_name = "S",
        requires = "learn_sharpness",
        allow_negative_numbers = true
    )]
    start_sharpness: Option<f64>,
    /// DMAX: units with more weights than this get first-order steps only. An LNL unit has
    /// N + 2 weights, so N ≥ 15 needs a larger DMAX (e.g. 64) for the second-order steps.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = positive)]
    dmax: usize,
    /// The second-order candidates tried, comma-separated (default: all three). Each solves
    /// every unit with at most --dmax weights and is line-searched; `weighted` forms and
    /// decomposes one matrix per unit, while `plain` and `no-adjoint` form one for all the units
    /// that read the same kernels (every LNL unit), so at large N `weighted` dominates the
    /// solves' time.
    #[arg(long, value_enum, value_delimiter = ',')]
    variants: Option<Vec<VariantArg>>,
    /// Estimator iterations at most (each a forward pass, an adjoint pass, 3 per-unit solves and
    /// 8 momentum candidates, each line-searched).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = positive)]
    max_iterations: usize,
    /// Stop once the criterion is below this fraction of its initial value.
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    rel_stop: f64,
    /// Seed of the root network, the input and the fresh network.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = seed)]
    seed: u64,
    /// Sparse estimation: the reweighted-L1 penalty ν·W²/(ε + |Ŵ|) on every connection, the
    /// weights below --threshold then cut (the learned architecture) and the kept ones re-fitted.
    /// The root keeps max(2, ⌊√N⌋) (or --root-connections) random recurrent connections per
    /// unit. NU = 0: the baseline, a plain fit thresholded and re-fitted the same way.
    #[arg(long, value_name = "NU", allow_negative_numbers = true)]
    sparse: Option<f64>,
    /// With --sparse: connections with |W| below this are cut.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    threshold: f64,
    /// With --sparse: the root's random recurrent connections per unit (default max(2, ⌊√N⌋)).
    #[arg(long, value_name = "K", requires = "sparse", allow_negative_numbers = true,
          value_parser = positive)]
    root_connections: Option<usize>,
    /// Observation noise: N(0, SIGMA²) added to every observed target (the held-out targets stay
    /// clean). Drawn from a stream of its own of --seed, so the root, input and fresh network are
    /// those of the run without it. reverse.json then also gives the L2 criterion against the
    /// clean targets (`clean_*`).
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    obs_noise: Option<f64>,
    /// Outliers: a random FRACTION of the observed targets (chosen after any --obs-noise, from
    /// the same stream) multiplied by FACTOR, e.g. 0.05:10 (5 % of the samples ×10).
    #[arg(long, value_name = "FRACTION:FACTOR", value_parser = outliers)]
    outliers: Option<Outliers>,
    /// The distributed estimator: repeatedly one random unit re-fitted on a random window of
    /// steps from the desired values of a full backward pass, line-searched, kept if it lowers
    /// the criterion.
    #[arg(long, conflicts_with = "sparse")]
    distributed: bool,
    /// With --distributed: unit updates tried (default: --max-iterations × the units with
    /// weights).
    #[arg(long, requires = "distributed", allow_negative_numbers = true, value_parser = positive)]
    updates: Option<usize>,
    /// Share the full estimator's per-unit solves among the ranks of an MPI job: `mpirun -np P
    /// remanence reverse-engineer … --mpi` (a binary built with `--features mpi`). The result is
    /// the single process's; rank 0 prints and writes the output folder.
    #[arg(long, conflicts_with = "distributed")]
    mpi: bool,
    /// Output folder, which must not exist or be empty (default: a fresh folder
    /// runs/reverse/<units>-n<N>-s<seed>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be a positive whole number, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// `--outliers FRACTION:FACTOR`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct Outliers {
    fraction: f64,
    factor: f64,
}

fn outliers(s: &str) -> std::result::Result<Outliers, String> {
    let (f, k) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not FRACTION:FACTOR (e.g. 0.05:10)"))?;
    let fraction: f64 = f
        .trim()
        .parse()
        .map_err(|_| format!("`{f}` is not a number"))?;
    let factor: f64 = k
        .trim()
        .parse()
        .map_err(|_| format!("`{k}` is not a number"))?;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(format!("FRACTION must be in [0, 1], got {fraction}"));
    }
    if !factor.is_finite() {
        return Err(format!("FACTOR must be finite, got {factor}"));
    }
    Ok(Outliers { fraction, factor })
}

/// Adds `N(0, sigma²)` to every observed target, then multiplies a random `fraction` of them by
/// `factor`; both drawn from stream 1 of `seed` (the run's other draws use stream 0).
fn corrupt(data: &mut Data, sigma: Option<f64>, out: Option<Outliers>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    let idx: Vec<usize> = (0..data.targets.len())
        .filter(|&i| !data.targets[i].is_nan())
        .collect();
    if let Some(sigma) = sigma {
        for &i in &idx {
            data.targets[i] += sigma * normal(&mut rng);
        }
    }
    if let Some(o) = out {
        let k = ((o.fraction * idx.len() as f64).round() as usize).min(idx.len());
        for j in sample(&mut rng, idx.len(), k).into_vec() {
            data.targets[idx[j]] *= o.factor;
        }
    }
}

fn seed(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (0..=i64::MAX as i128).contains(&n) => Ok(n as u64),
        Ok(n) => Err(format!("must be between 0 and 2^63 - 1, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// The settings as resolved, written in `reverse.json`.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    units: UnitArg,
    n: usize,
    observe: usize,
    samples: usize,
    /// The supervised criterion, or "stat".
    criterion: CriterionOut,
    /// With --criterion stat: the observables fitted (desired values in `statistical`), and
    /// whether the Gauss–Newton step on them is among the candidates.
    observables: Option<Vec<String>>,
    observable_step: Option<bool>,
    /// `--reinject`, with its settings.
    reinject: Option<ReinjectConfig>,
    /// The unsupervised regularisers on the hidden units.
    regularisers: Option<ActivityPenalty>,
    /// Integrate-and-fire units: the root's sharpness, whether it is learned, and where the
    /// estimate starts.
    sharpness: Option<f64>,
    learn_sharpness: bool,
    start_sharpness: Option<f64>,
    dmax: usize,
    /// The second-order variants tried.
    variants: Vec<Variant>,
    max_iterations: usize,
    rel_stop: f64,
    seed: u64,
    threads: usize,
    /// `0.5/√N`.
    weight_std: f64,
    sparse: Option<f64>,
    threshold: Option<f64>,
    /// With --sparse: the root's recurrent connections per unit.
    root_connections: Option<usize>,
    /// σ of the observation noise (`--obs-noise`).
    obs_noise: Option<f64>,
    /// `--outliers`.
    outliers: Option<Outliers>,
    distributed: bool,
    updates: Option<usize>,
    /// The processes sharing the per-unit solves (`--mpi`; 1 otherwise).
    ranks: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
enum CriterionOut {
    Supervised(Criterion),
    Statistical(&'static str),
}

/// How the integrate-and-fire units' sharpness is set: fixed at `root`, or (`learned`) a weight,
/// the root's at `root` (the estimate's start is set after the draws).
#[derive(Debug, Clone, Copy)]
struct Sharpness {
    root: f64,
    learned: bool,
}

/// The structure of a network of `n` units of `kind`, one input; the connectivity of sparse
/// ReLU units is drawn from `rng`.
fn structure(kind: UnitArg, n: usize, sharp: Sharpness, rng: &mut ChaCha8Rng) -> Result<Network> {
    Ok(match kind {
        UnitArg::Lnl => {
            lnl(&LnlSpec {
                units: n,
                inputs: 1,
                a: -1.0,
                b: 1.0,
                leak: Leak::None,
                input_delay: 1,
            })?
            .network
        }
        UnitArg::Aif if sharp.learned => aif_learned(n, 1, 0.9, sharp.root)?,
        UnitArg::Aif => aif(n, 1, 0.9, 1.0 / sharp.root)?,
        UnitArg::SparseRelu => sparse_relu(n, 1, 0.5, rng)?.0,
    })
}

/// The unit a node belongs to (LNL and sparse ReLU: nodes `n` and `N + n`; AIF: node `n`).
fn unit_of(node: usize, n: usize) -> usize {
    node % n
}

/// `adj[u][k]`: whether unit `u` has a weight reading unit `k` that `keep` keeps.
fn adjacency(net: &Network, n: usize, keep: &dyn Fn(usize) -> bool) -> Vec<Vec<bool>> {
    let mut adj = vec![vec![false; n]; n];
    for (node, nd) in net.nodes().iter().enumerate() {
        for (d, term) in nd.kernels.iter().enumerate() {
            if let Source::Node(k) = term.source {
                if k < n && keep(net.offset(node) + d) {
                    adj[unit_of(node, n)][k] = true;
                }
            }
        }
    }
    adj
}

/// Draws the root's sparse connectivity: unit `u` keeps `k` (default `max(2, ⌊√N⌋)`) of its
/// connections from units, at ±U(0.4, 0.9), the others 0.
fn sparsify(root: &mut Network, n: usize, k: Option<usize>, rng: &mut ChaCha8Rng) {
    let d = k
        .unwrap_or(((n as f64).sqrt().floor() as usize).max(2))
        .min(n);
    let mut keep = vec![vec![false; n]; n];
    for row in keep.iter_mut() {
        for k in sample(rng, n, d).into_vec() {
            row[k] = true;
        }
    }
    let nodes = root.nodes().to_vec();
    for (node, nd) in nodes.iter().enumerate() {
        for (d, term) in nd.kernels.iter().enumerate() {
            if let Source::Node(k) = term.source {
                if k < n {
                    let i = root.offset(node) + d;
                    root.weights[i] = if keep[unit_of(node, n)][k] {
                        let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                        sign * rng.random_range(0.4..0.9)
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// The input sequence of `steps` steps and the observed units' output of `net` on it (with
/// `split = Some(m)`, 1 where it is above `m[o]`, else 0); and the median of each observed
/// output.
fn observe(
    net: &Network,
    inputs: Vec<f64>,
    observed: usize,
    split: Option<&[f64]>,
) -> (Data, Vec<f64>) {
    let steps = inputs.len();
    let probe = Data::single(inputs.clone(), vec![], vec![], steps);
    let x = net.forward(&probe);
    let medians: Vec<f64> = (0..observed)
        .map(|o| {
            let mut v: Vec<f64> = (0..steps).map(|t| x.get(o, t)).collect();
            v.sort_by(f64::total_cmp);
            v[steps / 2]
        })
        .collect();
    let targets: Vec<f64> = (0..observed)
        .flat_map(|o| (0..steps).map(move |t| (o, t)))
        .map(|(o, t)| match split {
            Some(m) => f64::from(u8::from(x.get(o, t) > m[o])),
            None => x.get(o, t),
        })
        .collect();
    let data = Data::concat(
        &[Sequence {
            len: steps,
            inputs,
            targets,
        }],
        1,
        (0..observed).collect(),
        0,
        false,
    );
    (data, medians)
}

#[derive(Serialize)]
struct SparseOut {
    nu: f64,
    threshold: f64,
    /// Kept connections (from units) per unit in `learned`, of `dense` each.
    kept_per_unit: Vec<usize>,
    dense: usize,
    /// `[u][k]`: unit u reads unit k: the connections whose weight is at least the threshold
    /// after the re-fit (the penalised estimation's mask, less the weights the re-fit brought
    /// below the threshold).
    learned: Vec<Vec<bool>>,
    /// The penalised estimation's mask (before the re-fit).
    penalised: Vec<Vec<bool>>,
    truth: Vec<Vec<bool>>,
    /// Of `learned` against `truth`.
    precision: f64,
    recall: f64,
    /// Of `penalised` against `truth`.
    penalised_precision: f64,
    penalised_recall: f64,
    /// The root's connections per unit.
    root_connections: usize,
    /// The re-fit of the kept weights without the penalty.
    refit: Option<Trace>,
}

#[derive(Serialize)]
struct DistributedOut {
    updates: usize,
    accepted: usize,
    /// The criterion after each update (accepted or reverted).
    criteria: Vec<f64>,
}

/// One observable of --criterion stat: its desired value (on the observed output), its value on
/// the fresh network and on the estimate, and the estimate's gap `|Ω̄ − Ω|`; the same on the
/// held-out input.
#[derive(Serialize)]
struct ObservableOut {
    unit: usize,
    observable: String,
    lambda: f64,
    desired: f64,
    fresh: f64,
    estimate: f64,
    gap: f64,
    held_out_desired: f64,
    held_out_estimate: f64,
    held_out_gap: f64,
}

#[derive(Serialize)]
struct StatisticalOut {
    observables: Vec<ObservableOut>,
    /// The largest gap on the fitted input (the precision of the fit) and on the held-out one.
    max_gap: f64,
    held_out_max_gap: f64,
}

/// The hidden units' activity on the fitted input (with a regulariser): mean |x|, max x, min x,
/// and the mean |cosine| between two hidden units' trajectories; and the supervised criterion
/// alone (without the regularisers) of the fresh network and the estimate.
#[derive(Serialize)]
struct ActivityOut {
    root: ActivityStats,
    fresh: ActivityStats,
    estimate: ActivityStats,
    fit_initial: f64,
    fit_last: f64,
    fit_ratio: f64,
}

#[derive(Serialize)]
struct ActivityStats {
    mean_abs: f64,
    max: f64,
    min: f64,
    mean_abs_cosine: f64,
}

fn activity_stats(net: &Network, data: &Data, units: &[usize]) -> ActivityStats {
    let x = net.forward(data);
    let traj: Vec<Vec<f64>> = units
        .iter()
        .map(|&u| (0..data.steps).map(|t| x.get(u, t)).collect())
        .collect();
    let all = traj.iter().flatten();
    let count = (units.len() * data.steps).max(1) as f64;
    let (mut cos, mut pairs) = (0.0, 0usize);
    for i in 0..traj.len() {
        for j in 0..i {
            let dot: f64 = traj[i].iter().zip(&traj[j]).map(|(a, b)| a * b).sum();
            let na = traj[i].iter().map(|v| v * v).sum::<f64>().sqrt();
            let nb = traj[j].iter().map(|v| v * v).sum::<f64>().sqrt();
            if na > 0.0 && nb > 0.0 {
                cos += (dot / (na * nb)).abs();
                pairs += 1;
            }
        }
    }
    ActivityStats {
        mean_abs: all.clone().map(|v| v.abs()).sum::<f64>() / count,
        max: all.clone().copied().fold(f64::NEG_INFINITY, f64::max),
        min: all.copied().fold(f64::INFINITY, f64::min),
        mean_abs_cosine: if pairs > 0 { cos / pairs as f64 } else { 0.0 },
    }
}

/// With --units aif: each unit's sharpness 1/ε in the root, the fresh network and the estimate.
#[derive(Serialize)]
struct SharpnessOut {
    learned: bool,
    root: Vec<f64>,
    fresh: Vec<f64>,
    estimate: Vec<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    command: &'static str,
    settings: &'a Settings,
    steps: usize,
    weights: usize,
    /// Criterion of the fresh network (`L_0`), at the end, and their ratio.
    initial: f64,
    last: f64,
    ratio: f64,
    /// The criterion (least squares for l1 and l0) on a held-out input of the same length,
    /// relative to that of the fresh network: how far the estimate generalises.
    held_out_ratio: f64,
    /// With --obs-noise or --outliers: the L2 criterion against the clean targets (the root's
    /// output before the noise) of the fresh network and of the estimate, and their ratio.
    clean_initial: Option<f64>,
    clean_last: Option<f64>,
    clean_ratio: Option<f64>,
    seconds: f64,
    /// The full estimator's trace (absent with --distributed).
    trace: Option<&'a Trace>,
    distributed: Option<DistributedOut>,
    sparse: Option<SparseOut>,
    /// With --criterion stat: the observables fitted.
    statistical: Option<StatisticalOut>,
    /// With --units aif: the sharpness of every unit.
    sharpness: Option<SharpnessOut>,
    /// With a regulariser: the hidden units' activity, and the fit without the regularisers.
    activity: Option<ActivityOut>,
    root_weights: &'a [f64],
    fresh_weights: &'a [f64],
    estimated_weights: &'a [f64],
}

pub fn run(a: ReverseArgs) -> Result<()> {
    if !a.mpi {
        return run_on(a, None);
    }
    // world::init's message, for this command's flag (`--distributed` means something else here).
    let world = world::init(Distributed::Mpi).map_err(|e| {
        let msg = e.to_string();
        anyhow::anyhow!(
            "--mpi: {}",
            msg.strip_prefix("--distributed mpi: ").unwrap_or(&msg)
        )
    })?;
    // A rank that fails must end the job: the others would wait for it in their next
    // collective call.
    let result = run_on(a, Some(&world));
    if let Err(e) = &result {
        eprintln!("error on rank {} of {}: {e:#}", world.rank(), world.size());
        world.abort(1);
    }
    result
}

fn run_on(a: ReverseArgs, world: Option<&World>) -> Result<()> {
    let lead = world.is_none_or(|w| w.rank() == 0);
    let collective = world.map(|w| w as &dyn Collective);
    let n = a.units_count;
    if a.observe > n {
        bail!(
            "--observe {} is more than the {n} units (--units-count)",
            a.observe
        );
    }
    let criterion = match a.criterion {
        CriterionArg::L2 => Criterion::L2,
        CriterionArg::L1 => Criterion::ReweightedL1 {
            nu: a.nu.unwrap_or(1e-3),
        },
        CriterionArg::L0 => Criterion::ReweightedL0 {
            nu: a.nu.unwrap_or(1e-3),
        },
        CriterionArg::Huber => Criterion::Huber {
            delta: a.scale.unwrap_or(1.0),
        },
        CriterionArg::Biweight => Criterion::Biweight {
            scale: a.scale.unwrap_or(1.0),
        },
        CriterionArg::Margin => Criterion::Margin {
            nu: a.nu.unwrap_or(0.1),
        },
        // The statistical criterion replaces it (see `statistical` below).
        CriterionArg::Stat => Criterion::L2,
    };
    let stat = a.criterion == CriterionArg::Stat;
    let checks: [(&str, Option<f64>, bool, &str); 8] = [
        (
            "nu",
            a.nu,
            a.nu.is_none_or(|v| v > 0.0 && v.is_finite()),
            "a finite number > 0",
        ),
        (
            "scale",
            a.scale,
            a.scale.is_none_or(|v| v > 0.0 && v.is_finite()),
            "a finite number > 0",
        ),
        (
            "rel-stop",
            Some(a.rel_stop),
            a.rel_stop >= 0.0 && a.rel_stop < 1.0,
            "in [0, 1)",
        ),
        (
            "sparse",
            a.sparse,
            a.sparse.is_none_or(|v| v >= 0.0 && v.is_finite()),
            "a finite number ≥ 0",
        ),
        (
            "obs-noise",
            a.obs_noise,
            a.obs_noise.is_none_or(|v| v >= 0.0 && v.is_finite()),
            "a finite number ≥ 0",
        ),
        (
            "threshold",
            Some(a.threshold),
            a.threshold >= 0.0 && a.threshold.is_finite(),
            "a finite number ≥ 0",
        ),
        (
            "sharpness",
            a.sharpness,
            a.sharpness.is_none_or(|v| v > 0.0 && v <= 100.0),
            "in (0, 100]",
        ),
        (
            "start-sharpness",
            a.start_sharpness,
            a.start_sharpness.is_none_or(|v| v > 0.0 && v <= 100.0),
            "in (0, 100]",
        ),
    ];
    for (flag, value, ok, what) in checks {
        if !ok {
            bail!("--{flag} must be {what}, got {}", value.unwrap_or(f64::NAN));
        }
    }
    if a.nu.is_some()
        && matches!(
            a.criterion,
            CriterionArg::L2 | CriterionArg::Huber | CriterionArg::Biweight | CriterionArg::Stat
        )
    {
        bail!("--nu applies to --criterion l1, l0 and margin only");
    }
    if a.scale.is_some() && !matches!(a.criterion, CriterionArg::Huber | CriterionArg::Biweight) {
        bail!("--scale applies to --criterion huber and biweight only");
    }
    let noisy = a.obs_noise.is_some() || a.outliers.is_some();
    if noisy && a.criterion == CriterionArg::Margin {
        bail!("--obs-noise and --outliers apply to real-valued targets, not --criterion margin");
    }
    let samples = a.samples.unwrap_or(2 * n * (n + 1));
    // --criterion stat: the observables, expanded over the observed units.
    let observables: Vec<(usize, ObservableKind)> = if stat {
        let given = match &a.observables {
            Some(v) => v.clone(),
            None => "mean,ac:0,ac:1,ac:2"
                .split(',')
                .map(|s| observable(s).expect("a valid default"))
                .collect(),
        };
        let mut v = Vec::new();
        for o in &given {
            match o.unit {
                Some(u) if u >= a.observe => bail!(
                    "--observables {}@{u}: unit {u} is not observed (--observe {} observes units \
                     0..{}); the statistical criterion measures its desired values on the \
                     observed output",
                    o.kind,
                    a.observe,
                    a.observe
                ),
                Some(u) => v.push((u, o.kind)),
                None => v.extend((0..a.observe).map(|u| (u, o.kind))),
            }
        }
        for (u, k) in &v {
            if let ObservableKind::Autocorrelation { lag } = k {
                if *lag >= samples {
                    bail!(
                        "--observables ac:{lag}@{u}: the lag must be shorter than the {samples} \
                         observed steps (--samples)"
                    );
                }
            }
        }
        v
    } else {
        if a.observables.is_some() {
            bail!("--observables applies to --criterion stat only");
        }
        Vec::new()
    };
    if a.stat_weights.is_some() && !stat {
        bail!("--stat-weights applies to --criterion stat only");
    }
    if a.no_observable_step && !stat {
        bail!("--no-observable-step applies to --criterion stat only");
    }
    if let Some(w) = &a.stat_weights {
        if w.len() != observables.len() {
            bail!(
                "--stat-weights: {} weights for {} observables ({})",
                w.len(),
                observables.len(),
                observables
                    .iter()
                    .map(|(u, k)| format!("{k}@{u}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        if w.iter().any(|v| !v.is_finite()) {
            bail!("--stat-weights must be finite numbers");
        }
    }
    if stat && (a.distributed || a.sparse.is_some()) {
        bail!(
            "--criterion stat works with the full estimator only (not with --distributed or \
             --sparse)"
        );
    }
    if a.reinject {
        match a.criterion {
            CriterionArg::Margin => bail!(
                "--reinject clamps the outputs to their targets; --criterion margin's targets \
                 are classes (0/1), not values to clamp to"
            ),
            CriterionArg::Stat => bail!(
                "--reinject clamps the outputs to their targets step by step; --criterion stat \
                 matches observables, not values"
            ),
            _ => {}
        }
    }
    if (a.sharpness.is_some() || a.learn_sharpness) && a.units != UnitArg::Aif {
        bail!("--sharpness and --learn-sharpness apply to --units aif only");
    }
    if a.learn_sharpness && a.sparse.is_some() {
        bail!(
            "--learn-sharpness and --sparse: the sharpness nodes read the units, so the \
             connection penalty and the adjacency would count them; not supported together"
        );
    }
    if let Some(k) = a.orthogonality {
        if !(k >= 0.0 && k.is_finite()) {
            bail!("--orthogonality must be a finite number ≥ 0, got {k}");
        }
    }
    let mut reg_terms = Vec::new();
    if let Some((kappa, eps)) = a.sparse_activity {
        reg_terms.push(Regulariser::SparseActivity { kappa, eps });
    }
    if let Some(kappa) = a.orthogonality {
        reg_terms.push(Regulariser::Orthogonality { kappa });
    }
    for &(kappa, k, b) in &a.soft_bound {
        reg_terms.push(Regulariser::SoftBound { kappa, k, b });
    }
    if !reg_terms.is_empty() {
        if a.observe >= n {
            bail!(
                "--sparse-activity, --orthogonality and --soft-bound act on the hidden units; \
                 --observe {} leaves none of the {n}",
                a.observe
            );
        }
        if a.distributed {
            bail!("the regularisers work with the full estimator only (not with --distributed)");
        }
    }
    let regularisers = (!reg_terms.is_empty()).then(|| ActivityPenalty {
        nodes: (a.observe..n).collect(),
        terms: reg_terms,
    });
    let sharp = Sharpness {
        root: a.sharpness.unwrap_or(10.0),
        learned: a.learn_sharpness,
    };
    let start_sharpness = a
        .learn_sharpness
        .then(|| a.start_sharpness.unwrap_or(sharp.root));
    let reinject = a.reinject.then(|| match a.reinject_solver {
        ReinjectSolverArg::GaussNewton => ReinjectConfig::default(),
        ReinjectSolverArg::FixedPoint => ReinjectConfig::fixed_point(),
    });
    let threads = crate::kernel_threads().unwrap_or(1);
    let variants: Vec<Variant> = a.variants.as_ref().map_or_else(
        || Variant::ALL.to_vec(),
        |v| v.iter().map(|x| x.variant()).collect(),
    );
    let weight_std = 0.5 / (n as f64).sqrt();
    let settings = Settings {
        units: a.units,
        n,
        observe: a.observe,
        samples,
        criterion: if stat {
            CriterionOut::Statistical("stat")
        } else {
            CriterionOut::Supervised(criterion)
        },
        observables: stat.then(|| {
            observables
                .iter()
                .map(|(u, k)| format!("{k}@{u}"))
                .collect()
        }),
        observable_step: stat.then_some(!a.no_observable_step),
        regularisers: regularisers.clone(),
        reinject,
        sharpness: (a.units == UnitArg::Aif).then_some(sharp.root),
        learn_sharpness: a.learn_sharpness,
        start_sharpness,
        dmax: a.dmax,
        variants: variants.clone(),
        max_iterations: a.max_iterations,
        rel_stop: a.rel_stop,
        seed: a.seed,
        threads,
        weight_std,
        sparse: a.sparse,
        threshold: a.sparse.map(|_| a.threshold),
        root_connections: a.sparse.map(|_| {
            a.root_connections
                .unwrap_or(((n as f64).sqrt().floor() as usize).max(2))
                .min(n)
        }),
        obs_noise: a.obs_noise,
        outliers: a.outliers,
        distributed: a.distributed,
        updates: None,
        ranks: world.map_or(1, |w| w.size()),
    };
    // The output folder, before any work: a bad --out costs nothing. Rank 0's only.
    let dir = if lead {
        out_dir(a.out.as_deref(), &settings)?
    } else {
        PathBuf::new()
    };

    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut root = structure(a.units, n, sharp, &mut rng)?;
    // A learned sharpness is set, not drawn: the other weights are drawn in the same order as
    // with a fixed one, so root, input and fresh network are those of the fixed experiment.
    let drawn = if sharp.learned {
        root.offset(n)
    } else {
        root.n_weights()
    };
    for w in root.weights[..drawn].iter_mut() {
        *w = weight_std * normal(&mut rng);
    }
    if a.sparse.is_some() {
        sparsify(&mut root, n, a.root_connections, &mut rng);
    }
    let inputs: Vec<f64> = (0..samples).map(|_| rng.random_range(-1.0..1.0)).collect();
    let (mut data, medians) = observe(&root, inputs.clone(), a.observe, None);
    let boolean = a.criterion == CriterionArg::Margin;
    if boolean {
        data = observe(&root, inputs, a.observe, Some(&medians)).0;
    }
    let clean = noisy.then(|| data.clone());
    if noisy {
        corrupt(&mut data, a.obs_noise, a.outliers, a.seed);
    }
    let mut net = root.clone();
    for w in net.weights[..drawn].iter_mut() {
        *w = weight_std * normal(&mut rng);
    }
    if let Some(s0) = start_sharpness {
        for k in 0..n {
            let i = net.offset(n + k);
            net.weights[i] = s0;
        }
    }
    let fresh = net.clone();
    let held_out_inputs: Vec<f64> = (0..samples).map(|_| rng.random_range(-1.0..1.0)).collect();
    let held_out = observe(
        &root,
        held_out_inputs,
        a.observe,
        boolean.then_some(&medians[..]),
    )
    .0;

    let statistical = if stat {
        let specs: Vec<(usize, ObservableKind, f64)> = observables
            .iter()
            .enumerate()
            .map(|(i, &(u, k))| (u, k, a.stat_weights.as_ref().map_or(1.0, |w| w[i])))
            .collect();
        Some(Statistical::from_targets(&specs, &data)?)
    } else {
        None
    };
    let what = format!(
        "{} network of {n} units ({} weights), {} observed, T = {samples}, criterion {}{}, seed {}",
        match (a.units, sharp.learned) {
            (UnitArg::Lnl, _) => "LNL".to_string(),
            (UnitArg::Aif, false) => format!("integrate-and-fire (sharpness {})", sharp.root),
            (UnitArg::Aif, true) => format!(
                "integrate-and-fire (learned sharpness: root {}, start {})",
                sharp.root,
                start_sharpness.unwrap_or(sharp.root)
            ),
            (UnitArg::SparseRelu, _) => "sparse ReLU".to_string(),
        },
        net.n_weights(),
        if a.observe == 1 {
            "unit 0".to_string()
        } else {
            format!("units 0..{}", a.observe)
        },
        if stat {
            format!(
                "stat ({})",
                observables
                    .iter()
                    .map(|(u, k)| format!("{k}@{u}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        } else {
            format!("{criterion:?}")
        },
        match &reinject {
            Some(r) => format!(", reinject ({:?})", r.solver),
            None => String::new(),
        },
        a.seed
    );
    if lead {
        println!("reverse engineering a {what}");
        if let Some(w) = world {
            println!(
                "per-unit solves and line searches shared among {} MPI ranks, {threads} thread{} each",
                w.size(),
                if threads == 1 { "" } else { "s" }
            );
        }
    }
    if lead && a.units == UnitArg::Lnl && n + 2 > a.dmax {
        eprintln!(
            "note: an LNL unit has {} weights, more than --dmax {}: no second-order steps (give \
             --dmax {} or more)",
            n + 2,
            a.dmax,
            n + 2
        );
    }
    let cfg = EstimatorConfig {
        criterion,
        max_iterations: a.max_iterations,
        rel_stop: a.rel_stop,
        dmax: a.dmax,
        variants: variants.clone(),
        threads,
        reinject,
        statistical: statistical.clone(),
        observable_step: !a.no_observable_step,
        regularisers: regularisers.clone(),
        ..Default::default()
    };
    cfg.check(&net, &data)?;
    let spinner = if lead { spinner() } else { None };
    let started = Instant::now();
    let mut settings = settings;
    let (trace, distributed, sparse, curve) = if a.distributed {
        let units = (0..net.n_nodes()).filter(|&k| net.dim(k) > 0).count();
        let updates = a.updates.unwrap_or(a.max_iterations * units);
        settings.updates = Some(updates);
        let dcfg = DistributedConfig {
            criterion,
            updates,
            seed: a.seed,
            ..Default::default()
        };
        let tr = distributed_estimate(&mut net, &data, &dcfg);
        let curve: Vec<f64> = std::iter::once(tr.initial)
            .chain(tr.criteria.iter().copied())
            .collect();
        let d = DistributedOut {
            updates,
            accepted: tr.accepted,
            criteria: tr.criteria,
        };
        (None, Some(d), None, curve)
    } else if let Some(nu) = a.sparse {
        // The connections between units (the penalised weights when ν > 0).
        let conn: Vec<bool> = SparsePenalty::on_connections(&net, 1.0, 1e-3, SparseKind::L1)
            .nu
            .iter()
            .map(|&v| v != 0.0)
            .collect();
        let res = if nu > 0.0 {
            let penalty = SparsePenalty::on_connections(&net, nu, 1e-3, SparseKind::L1);
            sparse_estimate_across(
                &mut net,
                &data,
                &cfg,
                &penalty,
                a.threshold,
                true,
                collective,
            )?
        } else {
            plain_threshold(&mut net, &data, &cfg, &conn, a.threshold, collective)?
        };
        let penalised = adjacency(&net, n, &|i| conn[i] && res.mask[i]);
        let learned = adjacency(&net, n, &|i| {
            conn[i] && res.mask[i] && net.weights[i].abs() >= a.threshold
        });
        let truth = adjacency(&root, n, &|i| root.weights[i] != 0.0);
        let root_connections = truth
            .first()
            .map_or(0, |r| r.iter().filter(|&&v| v).count());
        let score = |m: &[Vec<bool>]| {
            let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
            for (l, t) in m.iter().flatten().zip(truth.iter().flatten()) {
                match (*l, *t) {
                    (true, true) => tp += 1,
                    (true, false) => fp += 1,
                    (false, true) => fneg += 1,
                    _ => {}
                }
            }
            (
                tp as f64 / (tp + fp).max(1) as f64,
                tp as f64 / (tp + fneg).max(1) as f64,
            )
        };
        let (precision, recall) = score(&learned);
        let (penalised_precision, penalised_recall) = score(&penalised);
        let kept_per_unit: Vec<usize> = learned
            .iter()
            .map(|r| r.iter().filter(|&&v| v).count())
            .collect();
        let dense = adjacency(&net, n, &|i| conn[i])
            .first()
            .map_or(0, |r| r.iter().filter(|&&v| v).count());
        let mut curve: Vec<f64> = curve_of(&res.trace);
        if let Some(r) = &res.refit {
            curve.extend(curve_of(r).into_iter().skip(1));
        }
        let s = SparseOut {
            nu,
            threshold: a.threshold,
            kept_per_unit,
            dense,
            learned,
            penalised,
            truth,
            precision,
            recall,
            penalised_precision,
            penalised_recall,
            root_connections,
            refit: res.refit,
        };
        (Some(res.trace), None, Some(s), curve)
    } else {
        let tr = estimate_across(&mut net, &data, &cfg, None, None, collective)?;
        let curve = curve_of(&tr);
        (Some(tr), None, None, curve)
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    if !lead {
        // The same estimate as rank 0's (checked by hash); rank 0 reports it.
        return Ok(());
    }

    // The criterion of the final weights, recomputed (the L2 criterion for the held-out ratio).
    let initial = curve[0];
    let last = match (&sparse, &trace) {
        (Some(s), _) if s.refit.is_some() => s.refit.as_ref().map_or(f64::NAN, |r| r.last),
        (_, Some(t)) => t.last,
        _ => *curve.last().unwrap_or(&f64::NAN),
    };
    // On the held-out input: the criterion fitted (least squares for the reweighted ones, whose
    // value depends on the error estimate).
    let scored = if criterion.reweighted() {
        Criterion::L2
    } else {
        criterion
    };
    // --criterion stat: the observables' desired values on the held-out input are the root's
    // there.
    let held_out_stat = match &statistical {
        Some(st) => {
            let specs: Vec<(usize, ObservableKind, f64)> = st
                .observables
                .iter()
                .map(|o| (o.node, o.kind, o.lambda))
                .collect();
            Some(Statistical::from_targets(&specs, &held_out)?)
        }
        None => None,
    };
    let score = |w: &Network| match &held_out_stat {
        Some(st) => st.loss(&w.forward(&held_out), &held_out),
        None => loss(scored, &w.forward(&held_out), &held_out, &[]),
    };
    let held_out_ratio = score(&net) / score(&fresh);
    let statistical_out = statistical
        .as_ref()
        .zip(held_out_stat.as_ref())
        .map(|(st, sh)| {
            let (vf, ve) = (
                st.values(&fresh.forward(&data), &data),
                st.values(&net.forward(&data), &data),
            );
            let vh = sh.values(&net.forward(&held_out), &held_out);
            let observables: Vec<ObservableOut> = st
                .observables
                .iter()
                .zip(&sh.observables)
                .enumerate()
                .map(|(k, (o, h))| ObservableOut {
                    unit: o.node,
                    observable: o.kind.to_string(),
                    lambda: o.lambda,
                    desired: o.target,
                    fresh: vf[k],
                    estimate: ve[k],
                    gap: (o.target - ve[k]).abs(),
                    held_out_desired: h.target,
                    held_out_estimate: vh[k],
                    held_out_gap: (h.target - vh[k]).abs(),
                })
                .collect();
            let max =
                |f: &dyn Fn(&ObservableOut) -> f64| observables.iter().map(f).fold(0.0, f64::max);
            StatisticalOut {
                max_gap: max(&|o| o.gap),
                held_out_max_gap: max(&|o| o.held_out_gap),
                observables,
            }
        });
    let activity_out = regularisers.as_ref().map(|r| {
        let fit = |w: &Network| match &statistical {
            Some(st) => st.loss(&w.forward(&data), &data),
            None => {
                let t = w.forward(&data);
                let e_hat = if criterion.reweighted() {
                    remanence_continual::backtune::criteria::errors(&t, &data)
                } else {
                    Vec::new()
                };
                loss(criterion, &t, &data, &e_hat)
            }
        };
        let (fi, fl) = (fit(&fresh), fit(&net));
        ActivityOut {
            root: activity_stats(&root, &data, &r.nodes),
            fresh: activity_stats(&fresh, &data, &r.nodes),
            estimate: activity_stats(&net, &data, &r.nodes),
            fit_initial: fi,
            fit_last: fl,
            fit_ratio: fl / fi,
        }
    });
    let sharpness_out = (a.units == UnitArg::Aif).then(|| {
        let of = |w: &Network| {
            if sharp.learned {
                sharpness_of(w, n)
            } else {
                vec![sharp.root; n]
            }
        };
        SharpnessOut {
            learned: sharp.learned,
            root: of(&root),
            fresh: of(&fresh),
            estimate: of(&net),
        }
    });
    let clean_l2 = |w: &Network, d: &Data| loss(Criterion::L2, &w.forward(d), d, &[]);
    let (clean_initial, clean_last) = match &clean {
        Some(c) => (Some(clean_l2(&fresh, c)), Some(clean_l2(&net, c))),
        None => (None, None),
    };
    let clean_ratio = clean_initial.zip(clean_last).map(|(i, l)| l / i);
    if !(initial > 0.0) {
        eprintln!(
            "warning: the fresh network's criterion is already {initial:e}: there is nothing to \
             estimate (silent units, or an output on the right side of every margin); try \
             another --seed"
        );
    }

    // One line per iteration.
    if let Some(t) = &trace {
        print_trace("", t);
    }
    if let Some(r) = sparse.as_ref().and_then(|s| s.refit.as_ref()) {
        println!("re-fit of the kept connections without the penalty:");
        print_trace("refit ", r);
    }
    if let Some(d) = &distributed {
        let stride = (d.criteria.len() / 40).max(1);
        for (k, c) in d.criteria.iter().enumerate() {
            if k % stride == 0 || k + 1 == d.criteria.len() {
                println!("update {:5}  L/L0 {:.3e}", k + 1, c / initial);
            }
        }
        println!("{} of {} updates accepted", d.accepted, d.updates);
    }
    if let Some(s) = &sparse {
        println!(
            "kept connections per unit (of {}): {:?}; precision {:.3}, recall {:.3} against the \
             root's {} connections (the penalised estimation's mask before the re-fit: \
             precision {:.3}, recall {:.3})",
            s.dense,
            s.kept_per_unit,
            s.precision,
            s.recall,
            s.truth.iter().flatten().filter(|&&v| v).count(),
            s.penalised_precision,
            s.penalised_recall
        );
    }
    if let Some(st) = &statistical_out {
        println!("observable      λ          desired       fresh         estimate      |gap|      held-out |gap|");
        for o in &st.observables {
            println!(
                "{:<14}  {:<9.3}  {:<+12.5e}  {:<+12.5e}  {:<+12.5e}  {:.2e}   {:.2e}",
                format!("{}@{}", o.observable, o.unit),
                o.lambda,
                o.desired,
                o.fresh,
                o.estimate,
                o.gap,
                o.held_out_gap
            );
        }
        println!(
            "largest gap {:.2e} (held-out input {:.2e})",
            st.max_gap, st.held_out_max_gap
        );
    }
    if let Some(act) = &activity_out {
        println!(
            "hidden units (root / fresh / estimate): mean |x| {:.3e} / {:.3e} / {:.3e}, max x \
             {:.3} / {:.3} / {:.3}, mean |cosine| {:.3} / {:.3} / {:.3}; the criterion without \
             the regularisers: L/L0 = {:.3e}",
            act.root.mean_abs,
            act.fresh.mean_abs,
            act.estimate.mean_abs,
            act.root.max,
            act.fresh.max,
            act.estimate.max,
            act.root.mean_abs_cosine,
            act.fresh.mean_abs_cosine,
            act.estimate.mean_abs_cosine,
            act.fit_ratio
        );
    }
    if let Some(sh) = sharpness_out.as_ref().filter(|s| s.learned) {
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "sharpness 1/ε per unit: root {}; fresh {}; estimate {}",
            fmt(&sh.root),
            fmt(&sh.fresh),
            fmt(&sh.estimate)
        );
    }
    let label = if stat || scored != Criterion::L2 {
        "L"
    } else {
        "L2"
    };
    println!(
        "L0 {initial:.4e} -> {last:.4e}: L/L0 = {:.3e} in {seconds:.2} s; held-out input: \
         {label}/{label}(fresh) = {held_out_ratio:.3e}",
        last / initial,
    );
    if let (Some(i), Some(l)) = (clean_initial, clean_last) {
        println!(
            "against the clean targets (before --obs-noise/--outliers): L2 {i:.4e} (fresh) -> \
             {l:.4e}, ratio {:.3e}",
            l / i
        );
    }

    let report = Report {
        command: "reverse-engineer",
        settings: &settings,
        steps: data.steps,
        weights: net.n_weights(),
        initial,
        last,
        ratio: last / initial,
        held_out_ratio,
        clean_initial,
        clean_last,
        clean_ratio,
        seconds,
        trace: trace.as_ref(),
        distributed,
        sparse,
        statistical: statistical_out,
        sharpness: sharpness_out,
        activity: activity_out,
        root_weights: &root.weights,
        fresh_weights: &fresh.weights,
        estimated_weights: &net.weights,
    };
    let json = dir.join("reverse.json");
    write_json(&json, &report)?;
    let png = dir.join("criterion.png");
    let note = if report.sparse.is_some() {
        "With --sparse the line is the penalised estimation (criterion plus penalty), then the \
         re-fit of the kept connections without the penalty (the criterion alone), both relative \
         to the penalised L0."
    } else {
        ""
    };
    criterion_png(&curve, &png, &what, a.distributed, note)?;
    let mut wrote = vec![json, png];
    if let Some(s) = &report.sparse {
        let adj = dir.join("adjacency.png");
        adjacency_png(s, &adj)?;
        wrote.push(adj);
    }
    let names: Vec<String> = wrote.iter().map(|p| p.display().to_string()).collect();
    println!(
        "wrote {} (pictures described in .md files beside them)",
        names.join(", ")
    );
    Ok(())
}

/// `--sparse 0`: the plain estimate (no penalty), the connections (`conn`) below `threshold`
/// then cut and the kept weights re-fitted, as the penalised estimation does; the baseline of
/// the sparse estimation.
fn plain_threshold(
    net: &mut Network,
    data: &Data,
    cfg: &EstimatorConfig,
    conn: &[bool],
    threshold: f64,
    collective: Option<&dyn Collective>,
) -> Result<SparseResult> {
    let trace = estimate_across(net, data, cfg, None, None, collective)?;
    let mask: Vec<bool> = net
        .weights
        .iter()
        .zip(conn)
        .map(|(w, &c)| !c || w.abs() >= threshold)
        .collect();
    for (w, &keep) in net.weights.iter_mut().zip(&mask) {
        if !keep {
            *w = 0.0;
        }
    }
    let count = |pick: &dyn Fn(usize) -> bool| -> Vec<usize> {
        (0..net.n_nodes())
            .map(|k| {
                (net.offset(k)..net.offset(k) + net.dim(k))
                    .filter(|&i| pick(i))
                    .count()
            })
            .collect()
    };
    let kept_per_node = count(&|i| conn[i] && mask[i]);
    let penalised_per_node = count(&|i| conn[i]);
    let refit = Some(estimate_across(
        net,
        data,
        cfg,
        None,
        Some(&mask),
        collective,
    )?);
    Ok(SparseResult {
        mask,
        kept_per_node,
        penalised_per_node,
        trace,
        refit,
    })
}

fn curve_of(t: &Trace) -> Vec<f64> {
    let mut c: Vec<f64> = t.records.iter().map(|r| r.criterion).collect();
    match t.records.last() {
        Some(IterationRecord { after: Some(f), .. }) => c.push(*f),
        Some(_) => {}
        None => c.push(t.initial),
    }
    c
}

fn print_trace(prefix: &str, t: &Trace) {
    for r in &t.records {
        let cand = match r.candidate {
            Some(Candidate::SecondOrder(v)) => format!("second order {v:?}"),
            Some(Candidate::FirstOrder(k)) => format!("momentum 2^-{k}"),
            Some(Candidate::Observables) => "Gauss-Newton on the observables".into(),
            None => "no candidate lowers L".into(),
        };
        println!(
            "{prefix}iteration {:3}  L/L0 {:.3e}{}  {cand}{}  ({} evaluations){}",
            r.iteration + 1,
            r.criterion / t.initial,
            r.after
                .map_or(String::new(), |f| format!(" -> {:.3e}", f / t.initial)),
            r.step.map_or(String::new(), |s| format!(", step {s:.3}")),
            r.evaluations,
            r.reinject.map_or(String::new(), |s| format!(
                "  reinject: misfit {:.2e} -> {:.2e} in {} steps",
                s.misfit_initial, s.misfit_final, s.steps
            ))
        );
    }
    println!(
        "{prefix}stop: {:?} after {} iterations that moved the weights, {:.2} s",
        t.stop,
        t.iterations(),
        t.seconds
    );
    let (sum, k) = t.timing_sum();
    if k > 0 {
        let per = |v: f64| v / k as f64;
        println!(
            "{prefix}time per iteration ({k} iterations{}): {:.4} s = forward {:.4} + adjoint \
             {:.4} + reinject {:.4} + solves {:.4} + gather {:.4} + line searches {:.4}",
            if t.ranks > 1 {
                format!(", {} ranks", t.ranks)
            } else {
                String::new()
            },
            per(sum.total),
            per(sum.forward),
            per(sum.adjoint),
            per(sum.reinject),
            per(sum.solves),
            per(sum.gather),
            per(sum.line_searches)
        );
    }
}

fn spinner() -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new_spinner();
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}")
                .expect("valid template"),
        );
        b.set_message("estimating");
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    })
}

/// `--out` (refused if it holds anything), else a fresh folder under runs/reverse/.
fn out_dir(out: Option<&Path>, s: &Settings) -> Result<PathBuf> {
    match out {
        Some(d) => {
            if d.exists() {
                if !d.is_dir() {
                    bail!("--out {}: exists and is not a folder", d.display());
                }
                let mut entries = std::fs::read_dir(d)
                    .with_context(|| format!("--out {}: cannot read it", d.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "--out {}: the folder exists and is not empty; give a new or empty one",
                        d.display()
                    );
                }
            }
            std::fs::create_dir_all(d)
                .with_context(|| format!("--out {}: cannot create it", d.display()))?;
            Ok(d.to_path_buf())
        }
        None => {
            let kind = match s.units {
                UnitArg::Lnl => "lnl",
                UnitArg::Aif => "aif",
                UnitArg::SparseRelu => "sparse-relu",
            };
            let name = format!("{kind}-n{}-s{}", s.n, s.seed);
            Ok(remanence_train::RunDir::create_new(
                &crate::default_runs_dir().join("reverse"),
                &name,
            )?
            .path()
            .to_path_buf())
        }
    }
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws into a temporary `.png` beside `path`, then renames it onto `path`.
fn write_png(path: &Path, draw: impl FnOnce(&Path) -> DrawResult) -> Result<()> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{stem}.tmp-{}.png", std::process::id()));
    let res = draw(&tmp)
        .map_err(|e| anyhow::anyhow!("{}: cannot draw: {e}", path.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("{}: cannot rename {}", path.display(), tmp.display()))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

const FRAME: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(225, 225, 225);
const GRID_STRONG: RGBColor = RGBColor(175, 175, 175);
const LINE: RGBColor = RGBColor(8, 81, 156);
const STOP_LINE: RGBColor = RGBColor(203, 24, 29);

/// criterion/L0 against iteration, log₁₀ scale (see the `.md` beside it).
fn criterion_png(
    curve: &[f64],
    path: &Path,
    what: &str,
    distributed: bool,
    note: &str,
) -> Result<()> {
    let (w, h) = (720i32, 460i32);
    let (left, right, top, bottom) = (40, w - 24, 24, h - 40);
    let initial = curve[0];
    let ratios: Vec<f64> = curve.iter().map(|c| c / initial).collect();
    let logs: Vec<f64> = ratios
        .iter()
        .map(|r| if *r > 0.0 { r.log10() } else { f64::NAN })
        .collect();
    let finite = logs.iter().copied().filter(|v| v.is_finite());
    let lo = finite.clone().fold(0.0f64, f64::min).floor().min(-1.0);
    let hi = finite.fold(0.0f64, f64::max).ceil().max(0.0);
    let x_max = (curve.len().max(2) - 1) as f64;
    let px = |x: f64| left + ((right - left) as f64 * x / x_max).round() as i32;
    let py = |y: f64| {
        let f = ((y - lo) / (hi - lo)).clamp(0.0, 1.0);
        bottom - ((bottom - top) as f64 * f).round() as i32
    };
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut dec = lo as i32;
        while dec <= hi as i32 {
            let c = if dec % 3 == 0 { GRID_STRONG } else { GRID };
            root.draw(&PathElement::new(
                vec![(left, py(dec as f64)), (right, py(dec as f64))],
                c,
            ))?;
            dec += 1;
        }
        // A tick every 10 iterations (every 10 % of the updates with --distributed).
        let step = if distributed {
            (x_max / 10.0).ceil().max(1.0)
        } else {
            10.0
        };
        let mut x = 0.0;
        while x <= x_max {
            root.draw(&PathElement::new(
                vec![(px(x), bottom), (px(x), bottom + 6)],
                FRAME,
            ))?;
            x += step;
        }
        // The 1e-3 and 1e-6 levels, dashed.
        for level in [-3.0f64, -6.0] {
            if level >= lo && level <= hi {
                let y = py(level);
                let mut x = left;
                while x < right {
                    root.draw(&PathElement::new(
                        vec![(x, y), ((x + 8).min(right), y)],
                        STOP_LINE.stroke_width(1),
                    ))?;
                    x += 14;
                }
            }
        }
        root.draw(&Rectangle::new([(left, top), (right, bottom)], FRAME))?;
        let pts: Vec<(i32, i32)> = logs
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| (px(i as f64), py(*v)))
            .collect();
        root.draw(&PathElement::new(pts.clone(), LINE.stroke_width(2)))?;
        if !distributed || pts.len() <= 200 {
            for p in &pts {
                root.draw(&Circle::new(*p, 3, LINE.filled()))?;
            }
        }
        root.present()?;
        Ok(())
    })?;
    let unit = if distributed { "update" } else { "iteration" };
    let mut md = format!(
        "# criterion.png\n\nReverse engineering of a {what}.\n\n\
         - x axis: {unit}, 0 (the fresh network) to {}; a tick every {} {unit}s.\n\
         - y axis: criterion / L0 on a log10 scale, from 1e{} (bottom) to 1e{} (top); a light \
         grey line at every decade, a darker one at every third (1e0, 1e-3, 1e-6, …).\n\
         - blue line{}: the criterion relative to its initial value L0 = {initial:.4e}.\n\
         - dashed red lines: the levels 1e-3 and 1e-6 (the estimator stops below 1e-6).\n\n\
         {note}\n\n| {unit} | criterion | criterion / L0 |\n|---|---|---|\n",
        curve.len() - 1,
        if distributed {
            ((x_max / 10.0).ceil().max(1.0)) as usize
        } else {
            10
        },
        lo as i32,
        hi as i32,
        if distributed && curve.len() > 201 {
            ""
        } else {
            " and dots"
        },
    );
    let stride = if curve.len() > 200 {
        curve.len() / 100
    } else {
        1
    };
    for (i, c) in curve.iter().enumerate() {
        if i % stride == 0 || i + 1 == curve.len() {
            md.push_str(&format!("| {i} | {c:.4e} | {:.3e} |\n", c / initial));
        }
    }
    write_atomic(&path.with_extension("md"), md.as_bytes())?;
    Ok(())
}

const KEPT: RGBColor = RGBColor(8, 81, 156);
const FALSE_POS: RGBColor = RGBColor(230, 85, 13);
const MISSED: RGBColor = RGBColor(253, 208, 162);

/// The learned connection mask (left) beside the true one (right); see the `.md` beside it.
fn adjacency_png(s: &SparseOut, path: &Path) -> Result<()> {
    let n = s.truth.len();
    let cell = ((360 / n.max(1)) as i32).clamp(6, 40);
    let side = cell * n as i32;
    let (margin, gap) = (24i32, 40i32);
    let (w, h) = (2 * side + gap + 2 * margin, side + 2 * margin);
    write_png(path, |tmp| {
        let root = BitMapBackend::new(tmp, (w as u32, h as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        for (panel, x0) in [(0, margin), (1, margin + side + gap)] {
            for u in 0..n {
                for k in 0..n {
                    let (l, t) = (s.learned[u][k], s.truth[u][k]);
                    let colour = if panel == 1 {
                        t.then_some(KEPT)
                    } else {
                        match (l, t) {
                            (true, true) => Some(KEPT),
                            (true, false) => Some(FALSE_POS),
                            (false, true) => Some(MISSED),
                            (false, false) => None,
                        }
                    };
                    let (cx, cy) = (x0 + k as i32 * cell, margin + u as i32 * cell);
                    if let Some(c) = colour {
                        root.draw(&Rectangle::new(
                            [(cx, cy), (cx + cell, cy + cell)],
                            c.filled(),
                        ))?;
                    }
                    root.draw(&Rectangle::new([(cx, cy), (cx + cell, cy + cell)], GRID))?;
                }
            }
            root.draw(&Rectangle::new(
                [(x0, margin), (x0 + side, margin + side)],
                FRAME,
            ))?;
        }
        root.present()?;
        Ok(())
    })?;
    let grid = |m: &[Vec<bool>]| -> String {
        m.iter()
            .map(|r| {
                let row: String = r.iter().map(|&v| if v { '#' } else { '.' }).collect();
                format!("    {row}\n")
            })
            .collect()
    };
    let md = format!(
        "# adjacency.png\n\nThe connections between the {n} units: row u, column k is unit u \
         reading unit k (at delay 1). Left: the connections sparse estimation kept (ν = {}; \
         |W| ≥ {} after the penalised estimation and again after the re-fit): dark blue where the root has the connection too, orange where it does not \
         (false positive), pale orange where the root's connection was cut (missed); white: \
         neither. Right: the root's connections (dark blue).\n\nPrecision {:.3}, recall {:.3}; \
         kept per unit {:?} of {} each. The penalised estimation's mask alone (before the \
         re-fit): precision {:.3}, recall {:.3}.\n\nLearned (# kept):\n\n{}\nPenalised \
         estimation's mask:\n\n{}\nRoot:\n\n{}",
        s.nu,
        s.threshold,
        s.precision,
        s.recall,
        s.kept_per_unit,
        s.dense,
        s.penalised_precision,
        s.penalised_recall,
        grid(&s.learned),
        grid(&s.penalised),
        grid(&s.truth)
    );
    write_atomic(&path.with_extension("md"), md.as_bytes())?;
    Ok(())
}
