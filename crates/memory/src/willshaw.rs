//! The Willshaw network (Willshaw, Buneman & Longuet-Higgins 1969, Nature 222:960–962; the
//! reference sheet §2), bit-packed.
//!
//! Patterns are binary vectors given by their active units (sorted or not; repeats ignored).
//! - **Storage**: the OR of outer products, W = ⋁_μ y^μ (x^μ)ᵀ (hetero-associative, x → y, W is
//!   n_y × n_x), or W = ⋁_μ x^μ (x^μ)ᵀ (auto-associative, n × n, diagonal included).
//! - **Retrieval**: from a cue x̃ with |x̃| active units, the input sum of unit j is
//!   s_j = Σ_i W(j, i) x̃_i, and j fires iff s_j ≥ |x̃| (it is connected to every active cue
//!   unit). A cue that is a subset of a stored x therefore always retrieves a superset of its
//!   y; spurious units appear as the matrix fills (density `1 − (1 − a_x a_y/(n_x n_y))^M`,
//!   [`crate::density::willshaw_density`]); capacity ln 2 ≈ 0.69 bit per synapse with O(log n)
//!   active units (hetero), about half of it auto-associative.
//! - The auto-associative network may iterate: the output becomes the next cue, with the
//!   threshold set again to its number of active units, until it no longer changes or the
//!   iteration count is reached.
//!
//! Each s_j is popcount(W_j ∧ x̃) over the packed row j of W.
use crate::bits::{self, BitMatrix};
use crate::error::{nonzero, MemoryError, Result};

fn check_pattern(what: &'static str, units: &[usize], size: usize) -> Result<()> {
    if let Some(&u) = units.iter().find(|&&u| u >= size) {
        return Err(MemoryError::IndexOutOfRange {
            what,
            index: u,
            size,
        });
    }
    Ok(())
}

fn pack(units: &[usize], size: usize) -> Vec<u64> {
    let mut v = vec![0u64; bits::words_for(size)];
    for &u in units {
        bits::set_bit(&mut v, u);
    }
    v
}

/// Units j of `w` with popcount(W_j ∧ cue) ≥ |cue|, ascending.
fn threshold(w: &BitMatrix, cue: &[u64]) -> Vec<usize> {
    let t = bits::count_ones(cue);
    (0..w.rows())
        .filter(|&j| w.and_count(j, cue) >= t)
        .collect()
}

/// A hetero-associative Willshaw network x (n_x units) → y (n_y units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillshawHetero {
    w: BitMatrix,
    stored: u64,
}

impl WillshawHetero {
    pub fn new(inputs: usize, outputs: usize) -> Result<Self> {
        nonzero("input units", inputs)?;
        nonzero("output units", outputs)?;
        Ok(Self {
            w: BitMatrix::new(outputs, inputs),
            stored: 0,
        })
    }

    pub fn inputs(&self) -> usize {
        self.w.cols()
    }

    pub fn outputs(&self) -> usize {
        self.w.rows()
    }

    pub fn stored(&self) -> u64 {
        self.stored
    }

    /// The n_y × n_x matrix.
    pub fn matrix(&self) -> &BitMatrix {
        &self.w
    }

    /// Stores the pair x → y: W ← W ∨ y xᵀ. Neither pattern may be empty.
    pub fn store(&mut self, x: &[usize], y: &[usize]) -> Result<()> {
        if x.is_empty() {
            return Err(MemoryError::Empty("the input pattern"));
        }
        if y.is_empty() {
            return Err(MemoryError::Empty("the output pattern"));
        }
        check_pattern("input unit", x, self.inputs())?;
        check_pattern("output unit", y, self.outputs())?;
        self.w.or_outer(y, x)?;
        self.stored += 1;
        Ok(())
    }

    /// The output units whose input sum reaches |cue|, ascending.
    pub fn recall(&self, cue: &[usize]) -> Result<Vec<usize>> {
        if cue.is_empty() {
            return Err(MemoryError::Empty("the cue"));
        }
        check_pattern("input unit", cue, self.inputs())?;
        Ok(threshold(&self.w, &pack(cue, self.inputs())))
    }

    /// Fraction of ones of W.
    pub fn density(&self) -> f64 {
        self.w.count_ones() as f64 / (self.w.rows() * self.w.cols()) as f64
    }
}

/// An auto-associative Willshaw network of n units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WillshawAuto {
    w: BitMatrix,
    stored: u64,
}

impl WillshawAuto {
    pub fn new(units: usize) -> Result<Self> {
        nonzero("units", units)?;
        Ok(Self {
            w: BitMatrix::new(units, units),
            stored: 0,
        })
    }

    pub fn units(&self) -> usize {
        self.w.rows()
    }

    pub fn stored(&self) -> u64 {
        self.stored
    }

    pub fn matrix(&self) -> &BitMatrix {
        &self.w
    }

    /// Stores x: W ← W ∨ x xᵀ.
    pub fn store(&mut self, x: &[usize]) -> Result<()> {
        if x.is_empty() {
            return Err(MemoryError::Empty("the pattern"));
        }
        check_pattern("unit", x, self.units())?;
        self.w.or_outer(x, x)?;
        self.stored += 1;
        Ok(())
    }

    /// Threshold retrieval from `cue`, repeated up to `iterations` times (at least 1) or until
    /// the output equals its cue; the active units, ascending (empty if nothing reaches the
    /// threshold).
    pub fn recall(&self, cue: &[usize], iterations: usize) -> Result<Vec<usize>> {
        if cue.is_empty() {
            return Err(MemoryError::Empty("the cue"));
        }
        nonzero("iterations", iterations)?;
        check_pattern("unit", cue, self.units())?;
        let mut v = pack(cue, self.units());
        let mut out = Vec::new();
        for _ in 0..iterations {
            out = threshold(&self.w, &v);
            let next = pack(&out, self.units());
            if next == v || out.is_empty() {
                break;
            }
            v = next;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::index::sample;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn random_pattern(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut v = sample(rng, n, k).into_vec();
        v.sort_unstable();
        v
    }

    /// n_x = n_y = 512, 8 active units a pattern, 200 pairs: the density formula predicts
    /// p₁ ≈ 0.039, and a spurious output unit needs all 8 cue connections (p₁⁸ ≈ 6·10⁻¹²), so
    /// every pair is recalled exactly.
    #[test]
    fn hetero_recall_is_perfect_at_low_load() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = WillshawHetero::new(512, 512).unwrap();
        let pairs: Vec<(Vec<usize>, Vec<usize>)> = (0..200)
            .map(|_| {
                (
                    random_pattern(512, 8, &mut rng),
                    random_pattern(512, 8, &mut rng),
                )
            })
            .collect();
        for (x, y) in &pairs {
            net.store(x, y).unwrap();
        }
        let predicted = crate::density::willshaw_density(512, 8, 512, 8, 200);
        assert!(
            (net.density() - predicted).abs() < 0.005,
            "{} vs {predicted}",
            net.density()
        );
        for (x, y) in &pairs {
            assert_eq!(&net.recall(x).unwrap(), y);
        }
        // Half a cue still gives a superset of y.
        let (x, y) = &pairs[0];
        let out = net.recall(&x[..4]).unwrap();
        assert!(y.iter().all(|u| out.contains(u)));
    }

    /// Overloaded: retrieval still returns a superset of y (no false negatives), with spurious
    /// units.
    #[test]
    fn hetero_overload_gives_supersets() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut net = WillshawHetero::new(64, 64).unwrap();
        let pairs: Vec<_> = (0..300)
            .map(|_| {
                (
                    random_pattern(64, 4, &mut rng),
                    random_pattern(64, 4, &mut rng),
                )
            })
            .collect();
        for (x, y) in &pairs {
            net.store(x, y).unwrap();
        }
        let mut spurious = 0;
        for (x, y) in &pairs {
            let out = net.recall(x).unwrap();
            assert!(y.iter().all(|u| out.contains(u)));
            spurious += out.len() - y.len();
        }
        assert!(spurious > 0);
    }

    #[test]
    fn auto_completes_a_partial_cue() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut net = WillshawAuto::new(400).unwrap();
        let pats: Vec<Vec<usize>> = (0..100)
            .map(|_| random_pattern(400, 10, &mut rng))
            .collect();
        for p in &pats {
            net.store(p).unwrap();
        }
        for p in &pats {
            assert_eq!(&net.recall(&p[..6], 3).unwrap(), p);
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        let mut h = WillshawHetero::new(10, 5).unwrap();
        assert_eq!(
            h.store(&[10], &[0]),
            Err(MemoryError::IndexOutOfRange {
                what: "input unit",
                index: 10,
                size: 10
            })
        );
        assert!(matches!(
            h.store(&[1], &[5]),
            Err(MemoryError::IndexOutOfRange { index: 5, .. })
        ));
        assert_eq!(
            h.store(&[], &[1]),
            Err(MemoryError::Empty("the input pattern"))
        );
        assert_eq!(h.recall(&[]), Err(MemoryError::Empty("the cue")));
        assert_eq!(
            WillshawHetero::new(0, 3),
            Err(MemoryError::ZeroSize {
                what: "input units"
            })
        );
        let a = WillshawAuto::new(4).unwrap();
        assert_eq!(
            a.recall(&[1], 0),
            Err(MemoryError::ZeroSize { what: "iterations" })
        );
        assert!(a.recall(&[4], 1).is_err());
        assert_eq!(h.stored(), 0);
    }
}
