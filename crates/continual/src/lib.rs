//! Continual learning: a model learns a stream of *experiences* one after another and is scored on
//! all of them after each.
//!
//! - [`scenario`]: experiences cut from any classification task of the registry (class splits,
//!   input permutations), each itself a [`SequenceTask`](remanence_tasks::SequenceTask).
//! - [`matrix`]: the accuracy matrix R[i][j] and ACC, BWT, FWT and forgetting derived from it.
//! - [`strategy`]: how the learner treats each experience (naive fine-tuning, joint training,
//!   replay, EWC, SI, LwF, A-GEM), plugged into the trainer's [`Learner`](remanence_train::Learner) seam.
//! - [`regularizers`]: the penalties of EWC, SI and LwF as trainer plugins.
//! - [`agem`]: A-GEM's gradient projection against a reference batch from the memory.
//! - [`plots`]: the accuracy matrix as a heatmap and ACC curves, as PNG pictures.
//! - [`runner`]: one scenario run end to end, into a run folder.
pub mod agem;
pub mod error;
pub mod matrix;
pub mod plots;
pub mod regularizers;
pub mod runner;
pub mod scenario;
pub mod strategy;

pub use error::{ContinualError, Result};
