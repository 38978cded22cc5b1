//! Sequence tasks for Remanence.
//!
//! A task owns its data (generated or read from disk), cuts it into padded [`Batch`]es, says which
//! objective the trainer should minimise ([`Objective`]) and scores a model's outputs in the terms
//! of its field ([`Evaluation`]). It never sees the model: evaluation takes a `predict` callback.
//!
//! - [`task`]: the [`SequenceTask`] trait, batches, objectives and evaluations.
//! - [`grammar`]: finite automata (Reber, embedded Reber) that generate and accept strings.
//! - [`reber`]: the next-symbol prediction task on those grammars.
//! - [`registry`]: task names and configuration.

pub mod audio;
pub mod datasets;
pub mod error;
pub mod frames;
pub mod fsdd;
pub mod grammar;
pub mod idx;
pub mod jsb;
pub mod mnist;
pub mod moving_mnist;
pub mod npy;
pub mod reber;
pub mod registry;
pub mod soprano;
pub mod task;
pub mod timeseries;

pub use error::{Result, TaskError};
pub use registry::{build_task, TaskConfig, TaskKind};
pub use task::{Batch, Evaluation, Objective, Selection, SequenceTask, Split};
