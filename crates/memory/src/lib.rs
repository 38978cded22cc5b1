//! Binary associative memories, with no tensor library: everything is bits and plain loops.
//!
//! Layout, one concept per file:
//! - [`bits`]: a bit-packed binary matrix (u64 words), OR of outer products, and the word-wide
//!   AND/popcount operations retrieval is made of.
//! - [`gb`]: the Gripon–Berrou clique network (Gripon & Berrou 2011), dense and sparse
//!   (Aliabadi et al. 2014): storage as binary cliques, retrieval by sum-of-sum (memory effect γ)
//!   or sum-of-max with winner-take-all per cluster, cues with erased or noisy clusters, guided
//!   recall, many cues at once over threads.
//! - [`dense`]: the same network with one byte per connection and nested loops, the exactness
//!   reference and the throughput baseline of [`gb`].
//! - [`willshaw`]: the Willshaw network, hetero- and auto-associative, threshold retrieval.
//! - [`density`]: density after M messages (dense, sparse, Willshaw), the one-iteration error
//!   estimate and bits per connection.
//! - [`quantize`]: product quantisation of f32/f64 vectors (per-segment k-means++ / Lloyd, or
//!   sampled anchors): the bridge from features to a cluster code.
//! - [`bipartite`]: a binary bipartite memory from (segment, anchor) neurons to class neurons,
//!   learnt incrementally by OR-ing edges; [`ncm`]: the nearest-class-mean classifier on raw
//!   features, for comparison.
//! - [`experiments`]: the reference sheet's sweep (c = 8, l = 256, 4 erased clusters), the
//!   sparse setting, and a throughput measurement, as serialisable results.
//! - [`error`]: the error type, [`MemoryError`].
//!
//! Everything random takes a seed (ChaCha8): the same seed gives the same numbers, whatever the
//! thread count.

pub mod bipartite;
pub mod bits;
pub mod cuda;
pub mod dense;
pub mod density;
pub mod error;
pub mod experiments;
pub mod gb;
pub mod ncm;
pub mod quantize;
pub mod readout;
pub mod willshaw;

pub use bits::BitMatrix;
pub use error::{MemoryError, Result};
pub use gb::{Cue, ErasedStart, GbNetwork, MessageSet, RecallSettings, Rule, State};
