//! A binary bipartite memory from product-quantisation codes to classes (the reference sheet's
//! reconstruction of Hacene, Gripon et al. 2017/2019, not checked against the papers).
//!
//! The input side has P·K neurons, one per (segment p, anchor k), neuron p·K + k; a code
//! (k₁, …, k_P) activates one neuron per segment. The output side has one neuron per class.
//! - **Learning** (incremental, no retraining): each example of class y ORs the edges from its
//!   P active neurons to y: W(y, p·K + k_p) ← 1. Adding a class touches its row only, so the
//!   classes learnt before keep their edges.
//! - **Classification**: s(y) = Σ_p W(y, p·K + k_p), the number of the code's active neurons
//!   connected to y (popcount of row y ∧ the code), and the class is argmax_y s(y) over the
//!   classes learnt so far, **ties broken by the lowest class index**; `None` before any class.
use crate::bits::{self, BitMatrix};
use crate::error::{nonzero, MemoryError, Result};

/// P·K input neurons linked to class neurons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BipartiteMemory {
    segments: usize,
    anchors: usize,
    /// classes × P·K.
    w: BitMatrix,
    /// Which classes have been learnt.
    learnt: Vec<bool>,
}

impl BipartiteMemory {
    /// P segments of K anchors, no class yet.
    pub fn new(segments: usize, anchors: usize) -> Result<Self> {
        nonzero("segments", segments)?;
        nonzero("anchors per segment", anchors)?;
        let inputs = segments.checked_mul(anchors).ok_or_else(|| {
            crate::error::invalid(format!("{segments} segments of {anchors} anchors overflow"))
        })?;
        Ok(Self {
            segments,
            anchors,
            w: BitMatrix::new(0, inputs),
            learnt: Vec::new(),
        })
    }

    pub fn segments(&self) -> usize {
        self.segments
    }

    pub fn anchors(&self) -> usize {
        self.anchors
    }

    /// One more than the largest class index learnt (rows of the matrix).
    pub fn classes(&self) -> usize {
        self.learnt.len()
    }

    /// The classes learnt so far, ascending.
    pub fn learnt(&self) -> Vec<usize> {
        (0..self.learnt.len()).filter(|&c| self.learnt[c]).collect()
    }

    /// Edges from class `class` (0 for a class never learnt).
    pub fn edges_of(&self, class: usize) -> u32 {
        if class < self.w.rows() {
            self.w.row_count(class)
        } else {
            0
        }
    }

    fn packed(&self, code: &[u32]) -> Result<Vec<u64>> {
        if code.len() != self.segments {
            return Err(MemoryError::WrongLength {
                what: "the code",
                expected: self.segments,
                got: code.len(),
            });
        }
        let mut v = vec![0u64; self.w.words_per_row()];
        for (p, &k) in code.iter().enumerate() {
            if k as usize >= self.anchors {
                return Err(MemoryError::IndexOutOfRange {
                    what: "anchor",
                    index: k as usize,
                    size: self.anchors,
                });
            }
            bits::set_bit(&mut v, p * self.anchors + k as usize);
        }
        Ok(v)
    }

    /// Learns the examples `codes` of `class` (it may be learnt already: more edges are ORed).
    /// All codes are checked before any edge is added.
    pub fn add_class(&mut self, class: usize, codes: &[Vec<u32>]) -> Result<()> {
        if codes.is_empty() {
            return Err(MemoryError::Empty("the class's examples"));
        }
        let packed = codes
            .iter()
            .map(|c| self.packed(c))
            .collect::<Result<Vec<_>>>()?;
        if class >= self.w.rows() {
            self.w.push_rows(class + 1 - self.w.rows());
            self.learnt.resize(class + 1, false);
        }
        for p in &packed {
            self.w.or_row(class, p);
        }
        self.learnt[class] = true;
        Ok(())
    }

    /// s(y) for every class index (0 for classes never learnt).
    pub fn scores(&self, code: &[u32]) -> Result<Vec<u32>> {
        let v = self.packed(code)?;
        Ok((0..self.w.rows())
            .map(|y| self.w.and_count(y, &v))
            .collect())
    }

    /// argmax over the learnt classes of s(y), ties to the lowest index; `None` before any
    /// class is learnt.
    pub fn classify(&self, code: &[u32]) -> Result<Option<usize>> {
        let s = self.scores(code)?;
        let mut best: Option<(usize, u32)> = None;
        for y in self.learnt() {
            if best.is_none_or(|(_, b)| s[y] > b) {
                best = Some((y, s[y]));
            }
        }
        Ok(best.map(|(y, _)| y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ncm::NearestClassMean;
    use crate::quantize::{AnchorMethod, PqSettings, ProductQuantizer};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A standard normal draw (Box–Muller).
    fn normal(rng: &mut ChaCha8Rng) -> f64 {
        let u: f64 = 1.0 - rng.random::<f64>();
        let v: f64 = rng.random::<f64>();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    #[test]
    fn scores_ties_and_incremental_edges() {
        let mut m = BipartiteMemory::new(3, 4).unwrap();
        assert_eq!(m.classify(&[0, 0, 0]).unwrap(), None);
        m.add_class(2, &[vec![0, 1, 2]]).unwrap();
        assert_eq!(m.classes(), 3);
        assert_eq!(m.learnt(), vec![2]);
        // Class 2 is the only one learnt: it wins even with a score of 0.
        assert_eq!(m.classify(&[3, 3, 3]).unwrap(), Some(2));
        m.add_class(0, &[vec![0, 1, 3]]).unwrap();
        assert_eq!(m.scores(&[0, 1, 2]).unwrap(), vec![2, 0, 3]);
        assert_eq!(m.classify(&[0, 1, 2]).unwrap(), Some(2));
        // A tie (2 and 2) goes to the lowest index.
        assert_eq!(m.scores(&[0, 1, 0]).unwrap(), vec![2, 0, 2]);
        assert_eq!(m.classify(&[0, 1, 0]).unwrap(), Some(0));
        // Adding a class leaves the others' edges alone.
        let before = m.edges_of(2);
        m.add_class(1, &[vec![3, 3, 3], vec![2, 2, 2]]).unwrap();
        assert_eq!(m.edges_of(2), before);
        assert_eq!(m.edges_of(1), 6);
    }

    #[test]
    fn bad_codes_are_refused_and_nothing_is_added() {
        let mut m = BipartiteMemory::new(2, 3).unwrap();
        assert_eq!(
            m.add_class(0, &[vec![0, 1], vec![0, 3]]),
            Err(MemoryError::IndexOutOfRange {
                what: "anchor",
                index: 3,
                size: 3
            })
        );
        assert_eq!(m.classes(), 0);
        assert!(matches!(
            m.add_class(0, &[vec![0]]),
            Err(MemoryError::WrongLength { got: 1, .. })
        ));
        assert_eq!(
            m.add_class(0, &[]),
            Err(MemoryError::Empty("the class's examples"))
        );
        assert!(m.classify(&[0, 0, 0]).is_err());
        assert_eq!(
            BipartiteMemory::new(0, 3),
            Err(MemoryError::ZeroSize { what: "segments" })
        );
    }

    /// Six Gaussian classes in 16 dimensions (means N(0, 3²) per coordinate, unit noise), a
    /// PQ of 8 segments × 16 anchors fitted on the first two classes only; classes are then
    /// added one at a time and the accuracy on held-out examples of the classes learnt so far
    /// is measured after each, beside the nearest-class-mean classifier's.
    #[test]
    fn incremental_classification_of_gaussian_classes() {
        let (dim, classes, train, test) = (16, 6, 60, 60);
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let means: Vec<Vec<f64>> = (0..classes)
            .map(|_| (0..dim).map(|_| 3.0 * normal(&mut rng)).collect())
            .collect();
        let draw = |rng: &mut ChaCha8Rng, y: usize, n: usize| -> Vec<f32> {
            (0..n * dim)
                .map(|i| (means[y][i % dim] + normal(rng)) as f32)
                .collect()
        };
        let train_x: Vec<Vec<f32>> = (0..classes).map(|y| draw(&mut rng, y, train)).collect();
        let test_x: Vec<Vec<f32>> = (0..classes).map(|y| draw(&mut rng, y, test)).collect();
        let first: Vec<f32> = train_x[..2].concat();
        let pq = ProductQuantizer::fit(
            &first,
            dim,
            &PqSettings {
                segments: 8,
                anchors: 16,
                method: AnchorMethod::KMeans { iterations: 30 },
                seed: 1,
            },
        )
        .unwrap();
        let mut mem = BipartiteMemory::new(8, 16).unwrap();
        let mut ncm = NearestClassMean::new(dim).unwrap();
        let mut accuracies = Vec::new();
        for y in 0..classes {
            mem.add_class(y, &pq.encode_rows(&train_x[y]).unwrap())
                .unwrap();
            ncm.add_class(y, &train_x[y]).unwrap();
            let (mut right, mut right_ncm, mut total) = (0, 0, 0);
            for (t, xs) in test_x[..=y].iter().enumerate() {
                for row in xs.chunks_exact(dim) {
                    let code = pq.encode(row).unwrap();
                    right += usize::from(mem.classify(&code).unwrap() == Some(t));
                    right_ncm += usize::from(ncm.classify(row).unwrap() == Some(t));
                    total += 1;
                }
            }
            let (acc, acc_ncm) = (right as f64 / total as f64, right_ncm as f64 / total as f64);
            accuracies.push((acc, acc_ncm));
        }
        for (y, &(acc, acc_ncm)) in accuracies.iter().enumerate() {
            assert!(
                acc >= 0.9,
                "after class {y}: accuracy {acc} ({accuracies:?})"
            );
            assert!(acc_ncm >= 0.95, "after class {y}: NCM accuracy {acc_ncm}");
        }
        assert_eq!(accuracies[0].0, 1.0);
    }
}
