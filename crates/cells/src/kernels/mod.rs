//! The fast paths, each beside the reference it is tested against (the cells in [`crate::cells`]).
//!
//! - [`cpu`]: fused whole-layer kernels for SRN, LSTM, GRU and LTC;
//! - [`cuda`]: per-step CUDA kernels for the same cells and their host build.
//!
//! Which path runs is decided in one place, [`crate::route::Route::select`]. These modules are
//! public for the tests and benchmarks that drive the kernels directly; a model never needs them.
pub mod cpu;
pub mod cuda;
