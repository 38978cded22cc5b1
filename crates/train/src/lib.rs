//! Training for Remanence: optimizers, losses, gradient clipping, learning-rate schedules, the
//! run folder and the epoch loop.
//!
//! - [`optim`]: the [`Optimizer`] trait and Adam/AdamW, SGD with momentum, RMSProp, each with a
//!   state that is saved in checkpoints for exact resumption.
//! - [`loss`]: one loss per task [`Objective`](remanence_tasks::Objective).
//! - [`clip`]: gradient clipping by global norm.
//! - [`schedule`]: learning-rate schedules.
//! - [`run_dir`]: the run folder (`config.json`, `model.safetensors`, `checkpoint.safetensors`,
//!   `metrics.jsonl`), every file written atomically.
//! - [`learner`]: one step (`batch → loss → gradients → update`) behind the [`Learner`] trait,
//!   with [`GradientLearner`] (backpropagation through time) and its [`Plugin`] hooks.
//! - [`ridge`]: the read-out fitted in closed form by ridge regression ([`RidgeLearner`], the
//!   echo-state network's rule).
//! - [`trainer`]: epochs, evaluation, checkpoints and resume around a learner, with early
//!   stopping and a NaN guard.
//! - [`stack`]: runs a closure on a thread with a deep stack (Candle's backward recurses).

pub mod clip;
pub mod config;
pub mod error;
pub mod fuzzing;
pub mod learner;
pub mod loss;
pub mod optim;
pub mod ridge;
pub mod run_dir;
pub mod schedule;
pub mod stack;
pub mod trainer;

pub use config::{RunConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use learner::{GradientLearner, Learner, Plugin, StepContext, StepReport};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use ridge::{RidgeConfig, RidgeLearner};
pub use run_dir::RunDir;
pub use schedule::Schedule;
pub use trainer::{EpochRecord, Observer, TrainOutcome, Trainer};
