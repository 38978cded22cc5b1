//! Recurrent cells on Candle tensors.
//!
//! Every cell has a plain *reference* path written with Candle tensor ops, so Candle's autograd
//! differentiates it. Parameter names, shapes and gate orders follow the reference library of each
//! cell (PyTorch for SRN/LSTM/GRU, ncps for LTC/CfC), so checkpoints move between Remanence and
//! that library unchanged. Fast paths live apart, each tested against its reference.
//!
//! Layout of the crate, one concept per file:
//! - [`cell`]: the [`RecurrentCell`] trait (one layer, one time step) and the [`Recurrent`] trait
//!   (a whole recurrent network run over a sequence); [`state`]: their states.
//! - [`cells`]: one file per cell (SRN, LSTM, GRU, LTC, CfC, CT-RNN, ODE-RNN, echo-state
//!   reservoir).
//! - [`config`]: cell kinds and every setting of a model, as typed enums.
//! - [`route`]: the one decision of which implementation runs (reference, fused CPU, CUDA).
//! - [`kernels`]: the fused CPU kernels and the CUDA kernels (for tests and benchmarks).
//! - [`ode`]: the ODE solvers; [`wiring`]: the LTC's wirings.
//! - [`stack`]: stacked layers of one cell kind over a sequence; [`model`]: a stack plus a
//!   linear read-out, with an optional encoder in front ([`encoder`]).
//! - [`params`]: a seeded parameter store behind Candle's `VarBuilder`; [`io`]: safetensors
//!   reading and atomic writing with clear errors; [`device`]: `--device` parsing.
//! - [`linalg`]: small dense f64 linear algebra (ridge solves, spectral radius, σ_max).
//! - [`ops`]: element-wise functions Candle lacks (softplus, LeCun's tanh) with their gradients.

pub mod cell;
pub mod cells;
pub mod config;
pub mod device;
pub mod encoder;
pub mod error;
pub mod io;
pub mod kernels;
pub mod linalg;
pub mod model;
pub mod ode;
pub mod ops;
pub mod params;
pub mod route;
pub mod stack;
pub mod state;
pub mod wiring;

pub use cell::{Recurrent, RecurrentCell};
pub use config::{
    Activation, AutoAssoc, BackboneActivation, CellKind, CfcMode, Constraint, CtOptions, Kernel,
    Mapping, ModelConfig, ReservoirOptions, RnnConfig, SolverKind,
};
pub use encoder::Encoder;
pub use error::{CellError, Result};
pub use model::SequenceModel;
pub use params::ParamStore;
pub use route::Route;
pub use stack::StackedRnn;
pub use state::{CellState, RnnState};
pub use wiring::WiringSpec;
