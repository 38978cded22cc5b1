use std::path::PathBuf;

/// Errors of the cells crate.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("input: {0}")]
    Input(String),
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
    #[error("{}: parameter `{name}` has shape {found:?}, the configuration expects {expected:?}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{}: missing parameter(s) {names:?} that the configuration needs", path.display())]
    Missing { path: PathBuf, names: Vec<String> },
    #[error("{}: unexpected parameter(s) {names:?} that the configuration does not use", path.display())]
    Unexpected { path: PathBuf, names: Vec<String> },
    #[error(transparent)]
    Linalg(#[from] crate::linalg::LinalgError),
    #[error("device `{0}`: {1}")]
    Device(String, String),
}

pub type Result<T> = std::result::Result<T, CellError>;
