//! The fast paths, each beside the reference it is tested against (the cells in [`crate::cells`]).
//!
//! - [`cpu`]: fused whole-layer kernels for SRN (and the reservoir), LSTM, GRU, LTC, CfC and CT-RNN;
//! - [`cuda`]: per-step CUDA kernels for the same cells and their host build;
//! - [`math`]: what both share: the kernel floats and their exponential, logistic and tanh.
//!
//! Which path runs is decided in one place, [`crate::route::Route::select`]. These modules are
//! public for the tests and benchmarks that drive the kernels directly; a model never needs them.
pub mod cpu;
pub mod cuda;
pub mod math;

use candle_core::{CpuStorage, Layout};

/// The contiguous values of a CPU tensor's storage, or an error naming the op (both paths'
/// custom ops read their CPU inputs through it).
pub(crate) fn slice<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    name: &str,
) -> candle_core::Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{name}: non-contiguous input")))?;
    Ok(&s.as_slice::<T>()?[a..b])
}
