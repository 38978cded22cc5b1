use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Cell(#[from] remanence_cells::CellError),
    #[error(transparent)]
    Task(#[from] remanence_tasks::TaskError),
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("{}: {msg}", path.display())]
    Run { path: PathBuf, msg: String },
    /// A non-finite loss or gradient norm during training, with where it happened and what the
    /// run folder still holds.
    #[error(
        "the {what} became {value} at epoch {epoch}, batch {batch}; training stopped. {}",
        kept_after(*.last_good)
    )]
    NonFiniteLoss {
        what: &'static str,
        epoch: usize,
        batch: usize,
        value: f64,
        /// Epochs completed (and checkpointed) before it.
        last_good: usize,
    },
    /// A non-finite loss or gradient norm, as a learner reports it.
    #[error("the {what} became {value}")]
    NonFinite { what: &'static str, value: f64 },
}

pub type Result<T> = std::result::Result<T, TrainError>;

/// What a run folder holds after a failure in the epoch after `epochs_completed` completed ones.
pub fn kept_after(epochs_completed: usize) -> String {
    if epochs_completed == 0 {
        "No epoch had completed, so the run folder holds only config.json (no checkpoint or \
         model was written)."
            .into()
    } else {
        format!(
            "The checkpoint and model of epoch {epochs_completed} are kept unchanged; \
             `--resume` continues from them."
        )
    }
}
