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
    #[error("the loss became {value} at epoch {epoch}, batch {batch}; training stopped and the last good checkpoint (epoch {last_good}) is kept")]
    NonFiniteLoss {
        epoch: usize,
        batch: usize,
        value: f64,
        last_good: usize,
    },
}

pub type Result<T> = std::result::Result<T, TrainError>;
