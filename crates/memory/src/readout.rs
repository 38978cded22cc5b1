//! A softmax linear read-out on raw features, trained by plain minibatch gradient steps in f64:
//! the trained baselines beside [`crate::bipartite`] and [`crate::ncm`] when classes arrive one
//! at a time.
//!
//! Model: logits z = W x + b over the classes added so far (one row of W and one bias per
//! class, in the order they were added), p = softmax(z), loss = −ln p_y averaged over a
//! minibatch. Gradient: ∂loss/∂W_c = (p_c − [c = y]) x, ∂loss/∂b_c = p_c − [c = y]; each step
//! moves W and b by −lr × that average (no momentum, no weight decay). A new class starts with
//! a zero row and a zero bias; the rows already there are kept.
//!
//! - **Fine-tuning** ([`SoftmaxReadout::train`] on the new class's examples only) is the naive
//!   incremental baseline: every step pushes the new class's logit up and the others down, so
//!   the read-out forgets the classes it learnt before ("catastrophic forgetting").
//! - **Joint training** (a fresh read-out trained on the examples of every class seen so far)
//!   is the reference the incremental methods are compared with.
//!
//! The minibatch order of each epoch is drawn from a ChaCha8 stream of `seed`: the same seed
//! gives the same weights. Classification is argmax_c z_c, ties to the class added first.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{invalid, nonzero, MemoryError, Result};

/// Settings of the gradient steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdSettings {
    /// Passes over the training examples.
    pub epochs: usize,
    /// Learning rate (fixed).
    pub lr: f64,
    /// Examples per gradient step (the last one of an epoch may be smaller).
    pub batch_size: usize,
    /// Seed of the minibatch order.
    pub seed: u64,
}

/// A softmax linear classifier over the classes added so far.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxReadout {
    dim: usize,
    /// Class index of each output row, in the order the classes were added.
    classes: Vec<usize>,
    /// classes × dim, row-major.
    w: Vec<f64>,
    b: Vec<f64>,
}

impl SoftmaxReadout {
    /// A read-out of `dim` inputs and no class yet.
    pub fn new(dim: usize) -> Result<Self> {
        nonzero("the dimension", dim)?;
        Ok(Self {
            dim,
            classes: Vec::new(),
            w: Vec::new(),
            b: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The classes, in the order they were added (the order of the output rows).
    pub fn classes(&self) -> &[usize] {
        &self.classes
    }

    /// Adds an output for class `class` (a zero row and bias); nothing if it is already there.
    pub fn add_class(&mut self, class: usize) {
        if !self.classes.contains(&class) {
            self.classes.push(class);
            self.w.extend(std::iter::repeat_n(0.0, self.dim));
            self.b.push(0.0);
        }
    }

    /// The weights of class `class`'s row and its bias, if it was added.
    pub fn row(&self, class: usize) -> Option<(&[f64], f64)> {
        let r = self.classes.iter().position(|&c| c == class)?;
        Some((&self.w[r * self.dim..(r + 1) * self.dim], self.b[r]))
    }

    fn check_row(&self, row: &[f64], i: usize) -> Result<()> {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(MemoryError::NonFinite {
                row: i,
                col: j,
                value: row[j],
            });
        }
        Ok(())
    }

    /// The logits of one vector, one per class in [`Self::classes`] order.
    pub fn logits(&self, row: &[f64]) -> Result<Vec<f64>> {
        if row.len() != self.dim {
            return Err(MemoryError::WrongLength {
                what: "the vector",
                expected: self.dim,
                got: row.len(),
            });
        }
        self.check_row(row, 0)?;
        Ok(self.logits_unchecked(row))
    }

    fn logits_unchecked(&self, row: &[f64]) -> Vec<f64> {
        self.w
            .chunks_exact(self.dim)
            .zip(&self.b)
            .map(|(w, b)| b + w.iter().zip(row).map(|(a, x)| a * x).sum::<f64>())
            .collect()
    }

    /// argmax of the logits (ties to the class added first); `None` before any class.
    pub fn classify(&self, row: &[f64]) -> Result<Option<usize>> {
        let z = self.logits(row)?;
        let mut best: Option<(usize, f64)> = None;
        for (r, &v) in z.iter().enumerate() {
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((r, v));
            }
        }
        Ok(best.map(|(r, _)| self.classes[r]))
    }

    /// Trains on `data` (row-major, `dim` values per example) with class `labels`, each one of
    /// the classes added; returns the mean cross-entropy of the last epoch (measured on its
    /// minibatches before each step).
    pub fn train(&mut self, data: &[f64], labels: &[usize], s: &SgdSettings) -> Result<f64> {
        nonzero("epochs", s.epochs)?;
        nonzero("the batch size", s.batch_size)?;
        if !(s.lr.is_finite() && s.lr > 0.0) {
            return Err(invalid(format!(
                "the learning rate must be a positive number, got {}",
                s.lr
            )));
        }
        if labels.is_empty() {
            return Err(MemoryError::Empty("the training examples"));
        }
        if data.len() != labels.len() * self.dim {
            return Err(MemoryError::WrongLength {
                what: "the training examples",
                expected: labels.len() * self.dim,
                got: data.len(),
            });
        }
        let mut targets = Vec::with_capacity(labels.len());
        for (i, &y) in labels.iter().enumerate() {
            match self.classes.iter().position(|&c| c == y) {
                Some(r) => targets.push(r),
                None => {
                    return Err(invalid(format!(
                        "example {i} has class {y}, which the read-out has no output for (add it \
                         first)"
                    )))
                }
            }
            self.check_row(&data[i * self.dim..(i + 1) * self.dim], i)?;
        }
        let (k, d) = (self.classes.len(), self.dim);
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
        let mut order: Vec<usize> = (0..labels.len()).collect();
        let mut gw = vec![0.0; k * d];
        let mut gb = vec![0.0; k];
        let mut last_loss = 0.0;
        for _ in 0..s.epochs {
            order.shuffle(&mut rng);
            let mut loss = 0.0;
            for chunk in order.chunks(s.batch_size) {
                gw.iter_mut().for_each(|g| *g = 0.0);
                gb.iter_mut().for_each(|g| *g = 0.0);
                for &i in chunk {
                    let x = &data[i * d..(i + 1) * d];
                    let mut p = self.logits_unchecked(x);
                    let m = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mut total = 0.0;
                    for v in p.iter_mut() {
                        *v = (*v - m).exp();
                        total += *v;
                    }
                    let t = targets[i];
                    loss -= (p[t] / total).ln();
                    for (c, v) in p.iter_mut().enumerate() {
                        *v /= total;
                        if c == t {
                            *v -= 1.0;
                        }
                        gb[c] += *v;
                        for (g, xv) in gw[c * d..(c + 1) * d].iter_mut().zip(x) {
                            *g += *v * xv;
                        }
                    }
                }
                let step = s.lr / chunk.len() as f64;
                for (w, g) in self.w.iter_mut().zip(&gw) {
                    *w -= step * g;
                }
                for (b, g) in self.b.iter_mut().zip(&gb) {
                    *b -= step * g;
                }
            }
            last_loss = loss / labels.len() as f64;
        }
        Ok(last_loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// `per` points of each class around the class's centre (±`noise` uniform).
    fn blobs(centres: &[[f64; 2]], per: usize, noise: f64, seed: u64) -> (Vec<f64>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (c, m) in centres.iter().enumerate() {
            for _ in 0..per {
                for v in m {
                    x.push(v + noise * (2.0 * rng.random::<f64>() - 1.0));
                }
                y.push(c);
            }
        }
        (x, y)
    }

    fn accuracy(r: &SoftmaxReadout, x: &[f64], y: &[usize]) -> f64 {
        let right = x
            .chunks_exact(2)
            .zip(y)
            .filter(|(row, &t)| r.classify(row).unwrap() == Some(t))
            .count();
        right as f64 / y.len() as f64
    }

    const CENTRES: [[f64; 2]; 3] = [[2.0, 0.0], [-2.0, 2.0], [-2.0, -2.0]];

    fn settings(epochs: usize, seed: u64) -> SgdSettings {
        SgdSettings {
            epochs,
            lr: 0.2,
            batch_size: 8,
            seed,
        }
    }

    /// One gradient step of one example by hand: two classes, zero weights, so p = (½, ½) and
    /// the step is lr·(½ x, ½) towards the true class and away from the other.
    #[test]
    fn one_step_matches_the_gradient_by_hand() {
        let mut r = SoftmaxReadout::new(2).unwrap();
        r.add_class(4);
        r.add_class(1);
        let s = SgdSettings {
            epochs: 1,
            lr: 0.5,
            batch_size: 1,
            seed: 0,
        };
        let loss = r.train(&[2.0, -1.0], &[1], &s).unwrap();
        assert!((loss - 2f64.ln()).abs() < 1e-12, "{loss}");
        let (w1, b1) = r.row(1).unwrap();
        assert_eq!((w1, b1), (&[0.5, -0.25][..], 0.25));
        let (w4, b4) = r.row(4).unwrap();
        assert_eq!((w4, b4), (&[-0.5, 0.25][..], -0.25));
        assert_eq!(r.classify(&[1.0, 0.0]).unwrap(), Some(1));
    }

    /// Joint training separates three blobs; fine-tuning on the last class alone then forgets
    /// the first two (the read-out answers the new class nearly everywhere). The blobs share
    /// an offset, as non-negative features do: the new class's gradient raises its logit
    /// along the direction every example has.
    #[test]
    fn joint_training_learns_and_fine_tuning_forgets() {
        let shifted = CENTRES.map(|[a, b]| [a + 4.0, b + 4.0]);
        let (x, y) = blobs(&shifted, 40, 0.8, 1);
        let (tx, ty) = blobs(&shifted, 40, 0.8, 2);
        let mut joint = SoftmaxReadout::new(2).unwrap();
        assert_eq!(joint.classify(&[0.0, 0.0]).unwrap(), None);
        for c in 0..3 {
            joint.add_class(c);
        }
        joint.train(&x, &y, &settings(30, 3)).unwrap();
        let acc = accuracy(&joint, &tx, &ty);
        assert!(acc > 0.95, "joint accuracy {acc}");

        let mut tuned = joint.clone();
        let last: Vec<usize> = (0..y.len()).filter(|&i| y[i] == 2).collect();
        let lx: Vec<f64> = last
            .iter()
            .flat_map(|&i| x[2 * i..2 * i + 2].to_vec())
            .collect();
        tuned
            .train(&lx, &vec![2; last.len()], &settings(30, 4))
            .unwrap();
        let old: Vec<usize> = (0..ty.len()).filter(|&i| ty[i] < 2).collect();
        let forgotten = old
            .iter()
            .filter(|&&i| tuned.classify(&tx[2 * i..2 * i + 2]).unwrap() == Some(2))
            .count();
        assert!(
            forgotten as f64 > 0.8 * old.len() as f64,
            "{forgotten} of {} old examples now class 2",
            old.len()
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let (x, y) = blobs(&CENTRES, 10, 1.0, 5);
        let train = |seed| {
            let mut r = SoftmaxReadout::new(2).unwrap();
            (0..3).for_each(|c| r.add_class(c));
            r.train(&x, &y, &settings(3, seed)).unwrap();
            r
        };
        assert_eq!(train(7), train(7));
        assert_ne!(train(7), train(8));
    }

    #[test]
    fn bad_inputs_are_refused() {
        let mut r = SoftmaxReadout::new(2).unwrap();
        r.add_class(0);
        let s = settings(1, 0);
        assert!(matches!(
            r.train(&[1.0, 2.0], &[3], &s),
            Err(MemoryError::Invalid(m)) if m.contains("class 3")
        ));
        assert!(matches!(
            r.train(&[1.0, 2.0, 3.0], &[0], &s),
            Err(MemoryError::WrongLength { .. })
        ));
        assert!(matches!(
            r.train(&[1.0, f64::NAN], &[0], &s),
            Err(MemoryError::NonFinite { row: 0, col: 1, .. })
        ));
        assert_eq!(
            r.train(&[], &[], &s),
            Err(MemoryError::Empty("the training examples"))
        );
        let bad_lr = SgdSettings { lr: 0.0, ..s };
        assert!(r.train(&[1.0, 2.0], &[0], &bad_lr).is_err());
        assert!(r.classify(&[1.0]).is_err());
        assert_eq!(
            SoftmaxReadout::new(0),
            Err(MemoryError::ZeroSize {
                what: "the dimension"
            })
        );
    }
}
