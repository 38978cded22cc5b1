//! The one place that decides which implementation runs a layer over a sequence.
//!
//! | device | cell | `--kernel` | route |
//! |---|---|---|---|
//! | any | any | reference | [`Route::Reference`] |
//! | CPU | SRN, LSTM, GRU, LTC, ESN, CfC, CT-RNN, ODE-RNN | auto, fused | [`Route::CpuFused`] (`kernels::cpu`) |
//! | CUDA | SRN, LSTM, GRU, LTC | auto, fused | [`Route::CudaSteps`] (`kernels::cuda`: one whole-sequence op per layer and pass) |
//! | otherwise (Metal; CfC, CT-RNN, ODE-RNN and the ESN on CUDA) | | | [`Route::Reference`] |
//!
//! A cell may still decline its fused route for a setting its kernel does not cover (the CT-RNN
//! and the ODE-RNN with the adaptive Dormand–Prince solver): its `forward_sequence` returns `None` and the
//! reference runs.
//!
//! The reference is the plain composition of Candle ops, step by step, that every kernel is
//! tested against; the cells carry it as their `step`.
use std::sync::OnceLock;

use candle_core::Device;

use crate::config::{CellKind, Kernel};

/// How a layer runs a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The cell's `step`, once per time step, differentiated by Candle's autograd.
    Reference,
    /// The cell's fused whole-layer CPU kernel, the batch split over `threads` threads.
    CpuFused { threads: usize },
    /// The CUDA kernels (their host build on a CPU device, where the tests run them): one
    /// whole-sequence op per layer and pass, whose time loop runs per step one cuBLAS product and
    /// one element-wise kernel (SRN, LSTM, GRU) or the LTC's sensory and unfold kernels.
    CudaSteps,
}

impl Route {
    /// The route for `cell` on `device` under `kernel`; `threads` (fused CPU kernels) defaults to
    /// every core.
    pub fn select(
        device: &Device,
        cell: CellKind,
        kernel: Kernel,
        threads: Option<usize>,
    ) -> Route {
        if kernel == Kernel::Reference {
            return Route::Reference;
        }
        if device.is_cpu() && cell.has_fused_cpu() {
            Route::CpuFused {
                threads: threads.filter(|&t| t > 0).unwrap_or_else(default_threads),
            }
        } else if device.is_cuda() && cell.has_cuda_kernels() {
            Route::CudaSteps
        } else {
            Route::Reference
        }
    }
}

/// Every core of this machine (read once). The fused kernels split the batch once per sequence
/// (no spinning pool), so unlike Candle's element-wise ops they gain from every core.
pub fn default_threads() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_decides_every_route() {
        let cpu = Device::Cpu;
        for cell in CellKind::ALL {
            let fused = Route::select(&cpu, cell, Kernel::Auto, Some(3));
            if cell.has_fused_cpu() {
                assert_eq!(fused, Route::CpuFused { threads: 3 }, "{cell}");
            } else {
                assert_eq!(fused, Route::Reference, "{cell}");
            }
            assert_eq!(
                Route::select(&cpu, cell, Kernel::Fused, Some(3)),
                fused,
                "{cell}"
            );
            assert_eq!(
                Route::select(&cpu, cell, Kernel::Reference, Some(3)),
                Route::Reference
            );
        }
        assert_eq!(
            Route::select(&cpu, CellKind::Lstm, Kernel::Auto, None),
            Route::CpuFused {
                threads: default_threads()
            }
        );
        assert_eq!(
            Route::select(&cpu, CellKind::Lstm, Kernel::Auto, Some(0)),
            Route::CpuFused {
                threads: default_threads()
            }
        );
    }
}
