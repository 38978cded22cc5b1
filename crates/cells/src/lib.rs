//! Recurrent cells on Candle tensors.
//!
//! Every cell has a plain *reference* path written with Candle tensor ops, so Candle's autograd
//! differentiates it. Parameter names, shapes and gate orders follow the reference library of each
//! cell (PyTorch for SRN/LSTM/GRU), so checkpoints move between Remanence and that library unchanged.
//!
//! Layout of the crate, one concept per file:
//! - [`cell`]: the [`RecurrentCell`] trait (one layer, one time step) and the [`Recurrent`] trait
//!   (a whole recurrent network run over a sequence).
//! - [`srn`], [`lstm`], [`gru`]: the discrete-time cells (PyTorch semantics).
//! - [`ltc`], [`cfc`]: ncps's liquid time-constant and closed-form cells; [`wiring`]: their wirings.
//! - [`ctrnn`], [`odernn`]: the CT-RNN and ODE-RNN; [`solvers`]: the ODE solvers they use.
//! - [`stack`]: stacked layers of one cell kind, run time-major over a sequence.
//! - [`model`]: a recurrent network plus a linear read-out head.
//! - [`params`]: a seeded parameter store behind Candle's `VarBuilder`.
//! - [`tensor_file`]: safetensors reading and atomic writing with clear errors.

pub mod cell;
pub mod cfc;
pub mod config;
pub mod cpu_gemm;
pub mod ctrnn;
pub mod cuda_kernels;
pub mod device;
pub mod device_steps;
pub mod error;
pub mod fused;
pub mod gru;
pub mod gru_fused;
pub mod lstm;
pub mod lstm_fused;
pub mod ltc;
pub mod ltc_fused;
pub mod model;
pub mod odernn;
pub mod ops;
pub mod params;
pub mod solvers;
pub mod srn;
pub mod srn_fused;
pub mod stack;
pub mod state;
pub mod tensor_file;
pub mod wiring;

pub use cell::{Recurrent, RecurrentCell};
pub use config::{Activation, CellKind, CtOptions, Kernel, ModelConfig, RnnConfig};
pub use error::{CellError, Result};
pub use model::SequenceModel;
pub use params::ParamStore;
pub use stack::StackedRnn;
pub use state::{CellState, RnnState};
