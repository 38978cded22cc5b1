//! The nearest-class-mean classifier on raw features (Mensink et al. 2013, IEEE TPAMI 35(11)),
//! the comparison for [`crate::bipartite`]: each class keeps the sum and count of its examples
//! (incremental, like the bipartite memory), μ_y = sum_y / n_y, and a vector x goes to
//! argmin_y ‖x − μ_y‖² over the classes learnt so far, ties to the lowest class index.
use crate::error::{nonzero, MemoryError, Result};

/// Per-class running means.
#[derive(Debug, Clone, PartialEq)]
pub struct NearestClassMean {
    dim: usize,
    sums: Vec<Vec<f64>>,
    counts: Vec<usize>,
}

impl NearestClassMean {
    pub fn new(dim: usize) -> Result<Self> {
        nonzero("the dimension", dim)?;
        Ok(Self {
            dim,
            sums: Vec::new(),
            counts: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn check<T: Copy + Into<f64>>(&self, data: &[T], what: &'static str) -> Result<Vec<f64>> {
        if data.is_empty() {
            return Err(MemoryError::Empty(what));
        }
        if !data.len().is_multiple_of(self.dim) {
            return Err(MemoryError::WrongLength {
                what,
                expected: data.len().div_ceil(self.dim) * self.dim,
                got: data.len(),
            });
        }
        let x: Vec<f64> = data.iter().map(|&v| v.into()).collect();
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(MemoryError::NonFinite {
                row: i / self.dim,
                col: i % self.dim,
                value: x[i],
            });
        }
        Ok(x)
    }

    /// Adds the examples `data` (row-major, `dim` values each) to class `class`.
    pub fn add_class<T: Copy + Into<f64>>(&mut self, class: usize, data: &[T]) -> Result<()> {
        let x = self.check(data, "the class's examples")?;
        if class >= self.sums.len() {
            self.sums.resize(class + 1, vec![0.0; self.dim]);
            self.counts.resize(class + 1, 0);
        }
        for row in x.chunks_exact(self.dim) {
            for (s, v) in self.sums[class].iter_mut().zip(row) {
                *s += v;
            }
            self.counts[class] += 1;
        }
        Ok(())
    }

    /// The mean of a learnt class.
    pub fn mean(&self, class: usize) -> Option<Vec<f64>> {
        let n = *self.counts.get(class)?;
        (n > 0).then(|| self.sums[class].iter().map(|s| s / n as f64).collect())
    }

    /// The class of the nearest mean; `None` before any class.
    pub fn classify<T: Copy + Into<f64>>(&self, row: &[T]) -> Result<Option<usize>> {
        if row.len() != self.dim {
            return Err(MemoryError::WrongLength {
                what: "the vector",
                expected: self.dim,
                got: row.len(),
            });
        }
        let x = self.check(row, "the vector")?;
        let mut best: Option<(usize, f64)> = None;
        for y in 0..self.counts.len() {
            if let Some(mu) = self.mean(y) {
                let d: f64 = mu.iter().zip(&x).map(|(m, v)| (m - v) * (m - v)).sum();
                if best.is_none_or(|(_, b)| d < b) {
                    best = Some((y, d));
                }
            }
        }
        Ok(best.map(|(y, _)| y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_mean_with_ties_to_the_lowest_class() {
        let mut m = NearestClassMean::new(2).unwrap();
        assert_eq!(m.classify(&[0.0f64, 0.0]).unwrap(), None);
        m.add_class(1, &[0.0f64, 0.0, 2.0, 0.0]).unwrap();
        m.add_class(3, &[10.0f32, 0.0]).unwrap();
        assert_eq!(m.mean(1), Some(vec![1.0, 0.0]));
        assert_eq!(m.mean(0), None);
        assert_eq!(m.classify(&[2.0f64, 1.0]).unwrap(), Some(1));
        assert_eq!(m.classify(&[9.0f64, 1.0]).unwrap(), Some(3));
        // Equidistant from 1.0 and 10.0 → the lower class, 1.
        assert_eq!(m.classify(&[5.5f64, 0.0]).unwrap(), Some(1));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let mut m = NearestClassMean::new(3).unwrap();
        assert!(matches!(
            m.add_class(0, &[1.0f64; 4]),
            Err(MemoryError::WrongLength { got: 4, .. })
        ));
        assert_eq!(
            m.add_class::<f64>(0, &[]),
            Err(MemoryError::Empty("the class's examples"))
        );
        assert!(matches!(
            m.add_class(0, &[0.0, f64::NAN, 0.0]),
            Err(MemoryError::NonFinite { row: 0, col: 1, .. })
        ));
        assert!(matches!(
            m.classify(&[0.0f64; 2]),
            Err(MemoryError::WrongLength { .. })
        ));
        assert_eq!(
            NearestClassMean::new(0),
            Err(MemoryError::ZeroSize {
                what: "the dimension"
            })
        );
    }
}
