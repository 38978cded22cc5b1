//! Seeded random numbers of the probes: i.i.d. input series and initial states.
//!
//! Every draw comes from a ChaCha8 generator seeded with the probe's seed and set to a stream of
//! its own, so the input series never repeats the draws that initialised the model from the same
//! seed ([`remanence_cells::ParamStore::seeded`] uses stream 0).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{invalid, Result};

/// ChaCha8 streams, one per use.
pub mod stream {
    /// The input series of the memory-capacity probe.
    pub const MC_INPUT: u64 = 1;
    /// The input series of the echo-state convergence check.
    pub const ESP_INPUT: u64 = 2;
    /// The initial states of the echo-state convergence check.
    pub const ESP_STATES: u64 = 3;
}

/// A generator for `seed` on `stream`.
pub fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// `len` values drawn i.i.d. uniform on [−amplitude, amplitude].
pub fn uniform_series(len: usize, amplitude: f64, rng: &mut ChaCha8Rng) -> Result<Vec<f64>> {
    if !(amplitude > 0.0 && amplitude.is_finite()) {
        return Err(invalid(format!(
            "the input amplitude must be finite and > 0, got {amplitude}"
        )));
    }
    Ok((0..len)
        .map(|_| amplitude * (2.0 * rng.random::<f64>() - 1.0))
        .collect())
}
