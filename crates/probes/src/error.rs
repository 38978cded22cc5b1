//! Errors of the probes crate.
use std::path::PathBuf;

/// Errors of a probe. Settings that cannot give a measurement (a length or width of zero, a
/// delay the series cannot hold) are refused before anything runs, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A setting or an argument that makes no sense, naming it.
    #[error("{0}")]
    Invalid(String),
    /// A singular ridge system, a non-finite matrix, shapes that do not fit.
    #[error(transparent)]
    Linalg(#[from] remanence_cells::linalg::LinalgError),
    /// A model whose parameters lack the recurrent matrix its cell is built from.
    #[error(
        "no recurrent matrix for the {cell} cell: looked for {looked_for:?}; the parameters are \
         {available:?}"
    )]
    NoRecurrentMatrix {
        cell: String,
        looked_for: Vec<String>,
        available: Vec<String>,
    },
    /// NaN or ±inf where numbers are needed (a diverging model, a broken checkpoint).
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// An adaptive ODE solve that could not finish (non-finite state, a step too small, too
    /// many steps), with where it stopped.
    #[error("{0}")]
    Solver(String),
    #[error(transparent)]
    Cells(#[from] remanence_cells::CellError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{}: {msg}", path.display())]
    File { path: PathBuf, msg: String },
}

pub type Result<T> = std::result::Result<T, ProbeError>;

/// A [`ProbeError::Invalid`] from a formatted message.
pub(crate) fn invalid(msg: impl Into<String>) -> ProbeError {
    ProbeError::Invalid(msg.into())
}
