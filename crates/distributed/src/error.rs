use std::path::PathBuf;

use remanence_train::TrainError;

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error(transparent)]
    Train(#[from] TrainError),
    /// A collective call that cannot be made (a rank that does not exist, MPI set-up).
    #[error("distributed training: {0}")]
    Collective(String),
    /// A batch that cannot be cut into one shard per rank.
    #[error("distributed training: {0}")]
    Shard(String),
    /// The ranks disagree (configuration, parameter names or shapes).
    #[error("distributed training: {0}")]
    Mismatch(String),
    /// A world that does not fit the run (more processes than sequences in a batch).
    #[error("distributed training: {0}")]
    World(String),
    #[error("{}: {msg}", path.display())]
    Io { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, DistError>;

/// The plugin's hooks return the trainer's error type: a candle or training error stays what it
/// was, the others are wrapped (their message unchanged).
impl From<DistError> for TrainError {
    fn from(e: DistError) -> Self {
        match e {
            DistError::Train(t) => t,
            DistError::Candle(c) => TrainError::Candle(c),
            e => TrainError::Candle(candle_core::Error::wrap(e)),
        }
    }
}
