//! Data-parallel training of Remanence models across processes, on MPI.
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
//! - [`shard`]: a rank's shard of a batch and its loss weight.
//! - [`plugin`]: the all-reduce plugin, [`AllReducePlugin`].
//! - [`setup`]: checks before training (same configuration, same parameters, a world that fits
//!   the batches) and the copy of rank 0's checkpoint for `--resume`.
//!
//! What is not split: evaluation runs in full on every rank (its result is the same
//! everywhere), and every rank loads the whole batch before cutting its shard.
pub mod collective;
pub mod error;
pub mod plugin;
pub mod setup;
pub mod shard;

#[cfg(feature = "mpi")]
pub use collective::Mpi;
pub use collective::{Collective, Local};
pub use error::{DistError, Result};
pub use plugin::AllReducePlugin;
pub use setup::{broadcast_parameters, check_same_config, check_world, replicate_checkpoint};
pub use shard::{loss_weight, shard, shard_range};
