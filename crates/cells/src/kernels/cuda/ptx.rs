//! The kernels as the GPU loads them: the `.cu` sources of this folder compiled to PTX by nvcc
//! (`build.rs`, `cuda` feature), one module per cell, and the launch geometry every launch uses.

/// Threads per block of every launch.
pub const BLOCK: u32 = 128;

/// The grid size that covers `threads` threads with blocks of [`BLOCK`].
pub fn grid(threads: usize) -> u32 {
    u32::try_from(threads.div_ceil(BLOCK as usize)).expect("launch too large for one grid")
}

#[cfg(feature = "cuda")]
pub const LSTM: &str = include_str!(concat!(env!("OUT_DIR"), "/lstm.ptx"));
#[cfg(feature = "cuda")]
pub const GRU: &str = include_str!(concat!(env!("OUT_DIR"), "/gru.ptx"));
#[cfg(feature = "cuda")]
pub const SRN: &str = include_str!(concat!(env!("OUT_DIR"), "/srn.ptx"));
#[cfg(feature = "cuda")]
pub const LTC: &str = include_str!(concat!(env!("OUT_DIR"), "/ltc.ptx"));
