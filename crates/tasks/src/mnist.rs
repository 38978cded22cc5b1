//! Sequential MNIST: each 28×28 digit is read as a sequence and classified from the last step.
//!
//! - `mnist-rows`: 28 steps of 28 pixels (one row per step), the LTC paper's setting;
//! - `mnist-pixels`: 784 steps of one pixel, in reading order;
//! - `mnist-pixels-permuted`: 784 steps of one pixel in one fixed random order drawn from the
//!   data seed (Le et al. 2015).
//!
//! Pixels are scaled to [0, 1]. The files are the original IDX `.gz` files, looked up in the
//! given folder (see [`MNIST_FILES`]).
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TaskError};
use crate::idx;
use crate::task::{Batch, Evaluation, Objective, Predict, SequenceTask, Split};

/// The four files, with the sizes their headers must announce.
pub const MNIST_FILES: [(&str, usize); 4] = [
    ("train-images-idx3-ubyte.gz", 60_000),
    ("train-labels-idx1-ubyte.gz", 60_000),
    ("t10k-images-idx3-ubyte.gz", 10_000),
    ("t10k-labels-idx1-ubyte.gz", 10_000),
];

/// How a digit becomes a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistView {
    Rows,
    Pixels,
    PermutedPixels,
}

/// Images (n·784 bytes) and labels of one split.
#[derive(Debug, Clone)]
pub struct MnistSplit {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl MnistSplit {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads and checks the training and test splits from `dir`.
pub fn load(dir: &Path) -> Result<(MnistSplit, MnistSplit)> {
    let missing: Vec<&str> = MNIST_FILES
        .iter()
        .map(|f| f.0)
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(TaskError::Data(format!(
            "MNIST: {} lacks {}; place the four original IDX files ({}) there",
            dir.display(),
            missing.join(", "),
            MNIST_FILES.map(|f| f.0).join(", ")
        )));
    }
    let split = |imgs: (&str, usize), labs: (&str, usize)| -> Result<MnistSplit> {
        let ip = dir.join(imgs.0);
        let lp = dir.join(labs.0);
        let i = idx::read_u8(&ip, 3)?;
        let l = idx::read_u8(&lp, 1)?;
        if i.dims != [imgs.1, 28, 28] {
            return Err(TaskError::Data(format!(
                "{}: images of shape {:?}, expected [{}, 28, 28]",
                ip.display(),
                i.dims,
                imgs.1
            )));
        }
        if l.dims != [labs.1] {
            return Err(TaskError::Data(format!(
                "{}: {:?} labels, expected [{}]",
                lp.display(),
                l.dims,
                labs.1
            )));
        }
        if let Some(bad) = l.data.iter().find(|&&v| v > 9) {
            return Err(TaskError::Data(format!(
                "{}: label {bad} outside 0..=9",
                lp.display()
            )));
        }
        Ok(MnistSplit {
            images: i.data,
            labels: l.data,
        })
    };
    Ok((
        split(MNIST_FILES[0], MNIST_FILES[1])?,
        split(MNIST_FILES[2], MNIST_FILES[3])?,
    ))
}

pub struct MnistTask {
    name: &'static str,
    view: MnistView,
    train: MnistSplit,
    test: MnistSplit,
    /// Pixel order for the permuted view.
    order: Vec<usize>,
}

impl MnistTask {
    /// Uses the first `train_size`/`test_size` digits of each split (0 = all).
    pub fn new(
        view: MnistView,
        dir: &Path,
        train_size: usize,
        test_size: usize,
        seed: u64,
    ) -> Result<Self> {
        let (mut train, mut test) = load(dir)?;
        for (s, n) in [(&mut train, train_size), (&mut test, test_size)] {
            if n > 0 && n < s.len() {
                s.labels.truncate(n);
                s.images.truncate(n * 784);
            }
        }
        let mut order: Vec<usize> = (0..784).collect();
        if view == MnistView::PermutedPixels {
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x4d4e_4953_5450));
        }
        let name = match view {
            MnistView::Rows => "mnist-rows",
            MnistView::Pixels => "mnist-pixels",
            MnistView::PermutedPixels => "mnist-pixels-permuted",
        };
        Ok(Self {
            name,
            view,
            train,
            test,
            order,
        })
    }

    fn split(&self, split: Split) -> &MnistSplit {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    fn steps_features(&self) -> (usize, usize) {
        match self.view {
            MnistView::Rows => (28, 28),
            _ => (784, 1),
        }
    }
}

/// The class of the largest logit; `None` when a logit is not finite (never a right answer).
pub fn predicted_class(logits: &[f32]) -> Option<usize> {
    if logits.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut best = 0;
    for (k, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = k;
        }
    }
    Some(best)
}

impl SequenceTask for MnistTask {
    fn name(&self) -> &str {
        self.name
    }
    fn input_size(&self) -> usize {
        self.steps_features().1
    }
    fn output_size(&self) -> usize {
        10
    }
    fn objective(&self) -> Objective {
        Objective::ClassLastStep
    }
    fn label(&self, split: Split, index: usize) -> Option<usize> {
        self.split(split).labels.get(index).map(|&l| l as usize)
    }
    fn len(&self, split: Split) -> usize {
        self.split(split).len()
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let split = self.split(split);
        let (t, f) = self.steps_features();
        let mut x = Vec::with_capacity(indices.len() * 784);
        for &i in indices {
            let img = &split.images[i * 784..(i + 1) * 784];
            x.extend(self.order.iter().map(|&p| img[p] as f32 / 255.0));
        }
        let labels: Vec<u32> = indices.iter().map(|&i| split.labels[i] as u32).collect();
        let b = indices.len();
        Ok(Batch {
            x: Tensor::from_vec(x, (b, t, f), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(labels, b, device)?,
            mask: None,
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![t; b],
        })
    }
    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        let order: Vec<usize> = (0..self.test.len()).collect();
        let mut right = 0usize;
        for chunk in order.chunks(batch_size.max(1)) {
            let batch = self.batch(Split::Test, chunk, dtype, device)?;
            let y = predict(&batch)?;
            let t = y.dim(1)?;
            let logits: Vec<Vec<f32>> = y
                .narrow(1, t - 1, 1)?
                .squeeze(1)?
                .to_dtype(DType::F32)?
                .to_vec2()?;
            right += chunk
                .iter()
                .zip(&logits)
                .filter(|(&i, l)| predicted_class(l) == Some(self.test.labels[i] as usize))
                .count();
        }
        let acc = right as f64 / self.test.len() as f64;
        Ok(Evaluation {
            metric_name: "test_accuracy".into(),
            metric: acc,
            solved: None,
            values: BTreeMap::from([("test_accuracy".to_string(), acc)]),
            summary: format!(
                "test accuracy {:.2}% ({right}/{} digits), classified from the last step",
                100.0 * acc,
                self.test.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::predicted_class;

    #[test]
    fn a_non_finite_logit_is_never_a_prediction() {
        assert_eq!(predicted_class(&[0.1, 2.0, -1.0]), Some(1));
        assert_eq!(predicted_class(&[f32::NAN, f32::NAN, f32::NAN]), None);
        assert_eq!(predicted_class(&[0.1, f32::INFINITY, -1.0]), None);
    }
}
