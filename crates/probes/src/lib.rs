//! Probes: measurements of what a recurrent network's state holds and how it behaves as a
//! driven dynamical system, for any cell, trained or untrained.
//!
//! Layout, one concept per file; a new probe is one more file of the same shape (settings, a
//! `run(&Subject, …)` returning a serialisable report, and its picture in [`plots`]):
//! - [`subject`]: the model probed ([`Subject`]: an untrained model or a run's weights, in f64),
//!   how a scalar series drives it ([`Drive`]) and which values read-outs see ([`Features`]).
//! - [`dynamics`]: the model as s_t = F(s_{t−1}, x_t): state trajectories, the Jacobian of a
//!   step at any state, the rest state under zero input.
//! - [`memory`]: memory capacity (Jaeger 2002).
//! - [`esp`]: the echo-state property: σ_max and ρ of the recurrent matrix and of the step's
//!   Jacobian, the sufficient and necessary conditions, and the convergence of runs from
//!   different initial states (Jaeger 2001; Yildiz, Jaeger & Kiebel 2012).
//! - [`linalg`] (re-exported from the cells crate): a small dense matrix, the ridge solve (Cholesky, with λ raised on a singular
//!   system), spectral radius and largest singular value.
//! - [`signal`]: the seeded input series and initial states; [`plots`]: PNG pictures and
//!   atomic writing of every output file.
//! - [`distinguish`]: distinguishability D(l, k) of two words that differ in their first
//!   symbol, over random weight draws of every cell (the cell's own or N(0, 1) initialisation)
//!   or of a run's model; [`plain_cell`]: one layer of each cell in plain f64, for its millions of
//!   short runs.
//! - [`trajectory`]: trajectory length and computational depth of random Neural ODEs, CT-RNNs
//!   and LTCs (Hasani et al. 2021, after Raghu et al. 2017), on [`adaptive`] (Dormand–Prince
//!   5(4) in f64 with step counts and dense output) and [`pca`] (principal components by Jacobi
//!   rotations, arc length); [`figures`]: their pictures.
//!
//! Everything runs in f64 and is seeded: the same seed gives the same numbers.

pub mod adaptive;
pub mod distinguish;
pub mod dynamics;
pub mod error;
pub mod esp;
pub mod figures;
pub use remanence_cells::linalg;
pub mod memory;
pub mod pca;
pub mod plain_cell;
pub mod plots;
pub mod signal;
pub mod subject;
pub mod trajectory;

pub use error::{ProbeError, Result};
pub use esp::{EspReport, EspSettings};
pub use linalg::Mat;
pub use memory::{McEstimate, McRun, McSettings, McSummary};
pub use subject::{Drive, Features, Source, Subject};
