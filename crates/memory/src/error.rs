//! Errors of the memory crate. Every argument that cannot give a result (a symbol outside its
//! cluster, a message of the wrong length, more erasures than clusters, more anchors than
//! training vectors, a size of zero, a NaN) is refused before anything is stored or computed,
//! with a message naming the value.

/// Errors of the associative memories and of the quantisation bridge.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemoryError {
    /// A size that must be at least 1 (clusters, fanals, units, segments, anchors, threads…).
    #[error("{what} must be at least 1, got 0")]
    ZeroSize { what: &'static str },
    /// A message symbol (or cue symbol) outside its cluster's `0..fanals`.
    #[error("symbol {symbol} in cluster {cluster} is out of range: a cluster has {fanals} fanals (symbols 0..{fanals})")]
    SymbolOutOfRange {
        cluster: usize,
        symbol: u32,
        fanals: usize,
    },
    /// A message, cue, vector or code of the wrong length.
    #[error("{what} has length {got}, expected {expected}")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A cue that erases more clusters than the message occupies.
    #[error("cannot erase {erased} clusters of a message that occupies {clusters}")]
    TooManyErased { erased: usize, clusters: usize },
    /// A sparse message (or guide) that does not occupy exactly the network's number of active
    /// clusters.
    #[error("a message must occupy exactly {expected} clusters, this one occupies {got}")]
    WrongActiveCount { expected: usize, got: usize },
    /// An index (a unit, a cluster, a class, an anchor) beyond its range.
    #[error("{what} {index} is out of range (there are {size})")]
    IndexOutOfRange {
        what: &'static str,
        index: usize,
        size: usize,
    },
    /// The same cluster named twice in a sparse message or a guide.
    #[error("cluster {cluster} appears twice in {what}")]
    DuplicateCluster { what: &'static str, cluster: usize },
    /// More anchors per segment than training vectors to learn them from.
    #[error(
        "K = {anchors} anchors per segment need at least {anchors} training vectors, got {vectors}"
    )]
    TooFewVectors { anchors: usize, vectors: usize },
    /// More segments than vector coordinates.
    #[error("cannot split vectors of dimension {dim} into {segments} segments (at most {dim})")]
    TooManySegments { segments: usize, dim: usize },
    /// An input with no vectors, no pattern or no messages where some are needed.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// NaN or ±inf in an input vector.
    #[error("non-finite value {value} at row {row}, column {col}")]
    NonFinite { row: usize, col: usize, value: f64 },
    /// A setting or an argument that makes no sense, naming it.
    #[error("{0}")]
    Invalid(String),
    /// Bytes that are not a network written by [`crate::gb::GbNetwork::to_bytes`].
    #[error("not a stored network: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, MemoryError>;

/// A [`MemoryError::Invalid`] from a formatted message.
pub(crate) fn invalid(msg: impl Into<String>) -> MemoryError {
    MemoryError::Invalid(msg.into())
}

/// `Err(ZeroSize)` when `value` is 0.
pub(crate) fn nonzero(what: &'static str, value: usize) -> Result<usize> {
    if value == 0 {
        Err(MemoryError::ZeroSize { what })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_values() {
        let e = MemoryError::SymbolOutOfRange {
            cluster: 3,
            symbol: 300,
            fanals: 256,
        };
        let s = e.to_string();
        assert!(
            s.contains("300") && s.contains("cluster 3") && s.contains("256"),
            "{s}"
        );
        let s = MemoryError::TooFewVectors {
            anchors: 16,
            vectors: 10,
        }
        .to_string();
        assert!(s.contains("16") && s.contains("10"), "{s}");
        assert_eq!(
            nonzero("fanals", 0),
            Err(MemoryError::ZeroSize { what: "fanals" })
        );
        assert_eq!(nonzero("fanals", 4), Ok(4));
    }
}
