//! Data-parallel training of Remanence models across processes, on MPI (or NCCL, see below).
//!
//! Every process (rank) runs the same [`Trainer`](remanence_train::Trainer) with the same
//! configuration and seed, so it draws the same batch order and loads the same global batches.
//! [`AllReducePlugin`], a plugin of [`GradientLearner`](remanence_train::GradientLearner), then
//! trains each rank on its contiguous shard of every batch and all-reduces the gradients
//! weighted by each shard's loss normaliser: every rank makes the update a single process makes
//! on the whole batch (to floating-point summation order), and reports the whole batch's loss
//! and sequence count, so every rank's `metrics.jsonl` is the single-process one. Only rank 0
//! needs to keep its run folder; the others write into scratch folders.
//!
//! - [`collective`]: the [`Collective`] trait, [`Local`] (one process) and, with the cargo
//!   feature `mpi`, `Mpi` (Open MPI through the `mpi` crate, rsmpi).
//! - `nccl` (cargo feature `nccl`): `Nccl`, the same operations with NCCL, one GPU per rank, on
//!   the stream of the model's Candle CUDA device; rank 0's unique id reaches the others over
//!   MPI (feature `mpi` too) or through a file ([`bootstrap`]: the file exchange and the
//!   launcher's rank variables, plain Rust tested without a GPU). The buffers still travel
//!   through the host (the plugin's gradients are f64 host buffers): a copy to the GPU, the NCCL
//!   operation, a copy back. **The NCCL path is compiled and type-checked in CI but has never
//!   run on a GPU**: its first multi-GPU run is its first test.
//! - [`shard`]: a rank's shard of a batch and its loss weight.
//! - [`plugin`]: the all-reduce plugin, [`AllReducePlugin`].
//! - [`setup`]: checks before training (same configuration, same parameters, a world that fits
//!   the batches) and the copy of rank 0's checkpoint for `--resume`.
//!
//! What is not split: evaluation runs in full on every rank (its result is the same
//! everywhere), and every rank loads the whole batch before cutting its shard.
pub mod bootstrap;
pub mod collective;
pub mod error;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod plugin;
pub mod setup;
pub mod shard;
pub mod simulated;

#[cfg(feature = "mpi")]
pub use collective::Mpi;
pub use collective::{Collective, Local};
pub use error::{DistError, Result};
#[cfg(feature = "nccl")]
pub use nccl::{IdExchange, Nccl};
pub use plugin::AllReducePlugin;
pub use setup::{broadcast_parameters, check_same_config, check_world, replicate_checkpoint};
pub use shard::{loss_weight, shard, shard_range};
