//! The CUDA path: the kernels (`*.cu` in this folder) of SRN, LSTM, GRU and LTC.
//!
//! On a GPU every layer runs one whole-sequence op per pass ([`sequence`]). For SRN, LSTM and
//! GRU the caller projects the inputs of every step in one product, and the op's time loop runs
//! per step one recurrent product (cuBLAS, Candle's handle) and one launch of the cell's
//! element-wise kernel (`lstm_step_forward`, …); its backward op recomputes the activations from
//! the hidden states (one product for all steps), runs the reverse loop (backward kernel, one
//! product per step) and forms `dW_hh` as one product over all steps. The LTC's op runs per step
//! its sensory kernel and its unfold kernel `ode_unfolds` times; its backward op recomputes each
//! step's unfolds from the state before it, and its backward kernels sum the parameter gradients
//! over the batch inside one thread per parameter (deterministic, no atomics). Autograd sees a
//! constant number of nodes per layer, so backpropagation through time is O(T).
//!
//! - [`sequence`]: the whole-sequence ops (`SrnSequence`, `LstmSequence`, `GruSequence`,
//!   `LtcSequence`) and the GEMM plans both of their sides run (cuBLAS on a GPU, plain
//!   column-major loops on the host);
//! - [`steps`]: `LtcStep`, one LTC step as a Candle custom op (CUDA launches, host build); the
//!   LTC's sequence op runs its launches step by step;
//! - [`host`]: the same `.cu` sources compiled for the host under `host_emulation.h` (grid and
//!   block indices become loops), so the GPU code's index arithmetic and formulas are tested
//!   against the reference on machines without a GPU;
//! - [`ptx`]: the PTX nvcc made of them (`build.rs`, `cuda` feature) and the launch geometry;
//! - `launch` (`cuda` feature): the launches and cuBLAS calls through Candle's CUDA device.
use super::math::KernelFloat;

/// Runs `$body` with `$t` bound to the CPU storage's float type (f32 or f64) and wraps the
/// returned `Vec<$t>` as a CPU storage: the host side of the step and sequence ops.
macro_rules! per_float {
    ($s:expr, $name:expr, $t:ident => $body:expr) => {
        match $s {
            CpuStorage::F32(_) => {
                type $t = f32;
                CpuStorage::F32($body)
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: only f32 and f64 are supported", $name),
        }
    };
}

/// Refuses a non-contiguous input of the op `name`.
fn contiguous(name: &str, l: &candle_core::Layout) -> candle_core::Result<()> {
    if l.is_contiguous() {
        Ok(())
    } else {
        candle_core::bail!("{name}: non-contiguous input")
    }
}

pub mod host;
#[cfg(feature = "cuda")]
mod launch;
pub mod ptx;
pub mod sequence;
pub mod steps;

pub use ptx::{grid, BLOCK};
pub use sequence::{GruSequence, LstmSequence, LtcSequence, SrnSequence};
pub use steps::LtcStep;

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
