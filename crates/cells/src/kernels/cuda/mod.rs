//! The CUDA path: per-step kernels (`*.cu` in this folder) for SRN, LSTM, GRU and LTC.
//!
//! On a GPU each time step of a layer is one recurrent product (cuBLAS, through Candle) plus one
//! launch of the cell's element-wise kernel (`lstm_step_forward`, …); the LTC runs its sensory
//! kernel once per step and its unfold kernel `ode_unfolds` times, and recomputes the synapse
//! activations in its backward kernels, which sum over the batch inside one thread per parameter
//! (deterministic, no atomics).
//!
//! - [`steps`]: the step ops (`LstmStep`, `GruStep`, `SrnStep`, `LtcStep`), Candle custom ops
//!   whose CUDA side launches the PTX and whose CPU side runs the host build;
//! - [`host`]: the same `.cu` sources compiled for the host under `host_emulation.h` (grid and
//!   block indices become loops), so the GPU code's index arithmetic and formulas are tested
//!   against the reference on machines without a GPU;
//! - [`ptx`]: the PTX nvcc made of them (`build.rs`, `cuda` feature) and the launch geometry;
//! - `launch` (`cuda` feature): the launches through Candle's CUDA device.
use super::math::KernelFloat;

pub mod host;
#[cfg(feature = "cuda")]
mod launch;
pub mod ptx;
pub mod steps;

pub use ptx::{grid, BLOCK};
pub use steps::{GruStep, LstmStep, LtcStep, SrnStep};

/// Floats the kernels exist for: their entry points end in `_f32` or `_f64`.
pub trait DeviceFloat: KernelFloat {
    const SUFFIX: &'static str;
}
impl DeviceFloat for f32 {
    const SUFFIX: &'static str = "f32";
}
impl DeviceFloat for f64 {
    const SUFFIX: &'static str = "f64";
}
