//! Continual learning: a model learns a stream of *experiences* one after another and is scored on
//! all of them after each.
//!
//! - [`scenario`]: experiences cut from any classification task of the registry (class splits,
//!   input permutations), each itself a [`SequenceTask`](remanence_tasks::SequenceTask).
//! - [`task_il`]: task-incremental masking: each sequence's read-out restricted to its own group
//!   of classes, in training (a trainer plugin) and in scoring.
//! - [`lists`]: sequence-list learning (Ans, Rousset, French & Musca 2004): lists of sequences of
//!   random binary items made up from the seed, learned list after list by next-item prediction.
//! - [`matrix`]: the accuracy matrix R[i][j] and ACC, BWT, FWT and forgetting derived from it.
//! - [`strategy`]: how the learner treats each experience (naive fine-tuning, joint training,
//!   replay, EWC, SI, LwF, A-GEM, the dual network), plugged into the trainer's
//!   [`Learner`](remanence_train::Learner) seam.
//! - [`reverberation`]: pseudo-patterns reverberated through a model's auto-associative head
//!   (whole sequences, closed loop, or single transitions), and the distillation loss on them.
//! - [`dual`]: Ans & Rousset's dual network: NET1 learns with NET2's pseudo-patterns, NET2 learns
//!   only NET1's.
//! - [`replay`]: the class-balanced memory of real sequences and the plugin that replays it.
//! - [`regularizers`]: the penalties of EWC, SI and LwF as trainer plugins.
//! - [`agem`]: A-GEM's gradient projection against a reference batch from the memory.
//! - [`assoc`]: the `assoc-memory` method: a binary bipartite class memory over product-quantised
//!   features of the model trained on the first experience, then frozen; classes are added
//!   without any gradient step.
//! - [`plots`]: the accuracy matrix as a heatmap and ACC curves, as PNG pictures.
//! - [`runner`]: one scenario run end to end, into a run folder; a stopped run resumes at the
//!   experience where it stopped, with the numbers an uninterrupted run gives, from the method
//!   state [`saved`] after each experience.
//! - [`backtune`]: backward tuning (Viéville et al. 2017): weight estimation for recurrent
//!   networks whose units are linear in their weights, by an adjoint pass and per-unit solves.
pub mod agem;
pub mod assoc;
pub mod backtune;
pub mod dual;
pub mod error;
pub mod lists;
pub mod matrix;
pub mod plots;
pub mod regularizers;
pub mod replay;
pub mod reverberation;
pub mod runner;
pub mod saved;
pub mod scenario;
pub mod strategy;
pub mod task_il;

pub use error::{ContinualError, Result};
