//! The fused CPU layer kernels: one Candle op runs a whole layer over a whole sequence.
//!
//! - [`runner`]: [`RowKernel`] (how a cell runs its recurrence forward and backward for a range
//!   of batch rows) and [`Fused`], which makes a Candle op of it: batch shards per thread for the
//!   whole sequence, f32/f64 dispatch, an AVX2+FMA build chosen at run time, saved values kept
//!   inside the op;
//! - `lanes`: element-wise passes in vectorizable blocks; `gemm`: the products (the scalar
//!   functions are in [`crate::kernels::math`], shared with the CUDA host build);
//! - one file per cell: [`srn`] (also the echo-state reservoir, with its leak), [`lstm`], [`gru`],
//!   [`ltc`], [`cfc`], [`ctrnn`] (Euler, Heun and RK4; Dormand–Prince stays on the reference),
//!   [`odernn`] (the same fixed-step solvers),
//!   each tested against its reference cell in `crates/cells/tests`.
pub mod cfc;
pub mod ctrnn;
pub(crate) mod gemm;
pub mod gru;
pub(crate) mod lanes;
pub mod lstm;
pub mod ltc;
pub mod odernn;
pub(crate) mod pack;
pub mod runner;
pub(crate) mod scratch;
pub mod srn;

pub use super::math::{sigmoid, tanh, KernelFloat};
pub use cfc::CfcKernel;
pub use ctrnn::CtRnnKernel;
pub use gru::GruKernel;
pub(crate) use lanes::{lane_blocks, lane_sum, lanes, LANES};
pub use lstm::LstmKernel;
pub use ltc::{LtcKernel, Synapses};
pub use odernn::OdeRnnKernel;
pub use runner::{Fused, Parts, RowKernel};
pub use srn::SrnKernel;
