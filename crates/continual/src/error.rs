//! Errors of the continual-learning crate.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ContinualError {
    /// A setting that makes no sense for the scenario or method, naming the setting.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Task(#[from] remanence_tasks::TaskError),
    #[error(transparent)]
    Train(#[from] remanence_train::TrainError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Cells(#[from] remanence_cells::CellError),
    #[error("{path}: {msg}")]
    File {
        path: std::path::PathBuf,
        msg: String,
    },
}

pub type Result<T> = std::result::Result<T, ContinualError>;
