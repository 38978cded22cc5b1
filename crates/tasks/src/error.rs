/// Errors of the tasks crate.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("invalid task configuration: {0}")]
    Config(String),
    #[error("data: {0}")]
    Data(String),
    /// An error raised by the model while a task evaluated it.
    #[error("model: {0}")]
    Model(Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T> = std::result::Result<T, TaskError>;
