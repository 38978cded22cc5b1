//! The LTC paper's time-series tasks (Hasani et al., AAAI 2021): fixed-length windows cut from
//! one long multivariate series, with a target at every step.
//!
//! - `occupancy`: is the office occupied? 5 sensor readings a minute, windows of 16 steps, a class
//!   per step, scored by accuracy ([`TimeSeriesTask::occupancy`], [`occupancy`]);
//! - `traffic`: hourly traffic volume on the I-94 from weather, holiday and time of day, windows of
//!   32 steps, a standardised volume per step, scored by mean squared error
//!   ([`TimeSeriesTask::traffic`], [`traffic`]);
//! - `ozone`: is a day an ozone day? 72 daily readings, windows of 32 days, a class per step with
//!   class-weighted cross-entropy, scored by the F1 of ozone days ([`TimeSeriesTask::ozone`],
//!   [`ozone`]).
//!
//! Windows overlap (the paper's strides are 1, 4 or 8 steps) and every window has its full length,
//! so batches have no padding. A series of n rows gives ⌊(n − steps)/stride⌋ + 1 windows (the
//! paper's loop stops one window short when the stride divides n − steps). Features are
//! standardised with statistics of training rows only.
//!
//! As in the paper, each task holds a validation part drawn by the data seed: 10 % of the
//! training file's windows (occupancy) or of all windows (traffic, ozone, whose test part is
//! another 15 %). [`SequenceTask::batch`] cannot reach it (there is no validation [`Split`]), but
//! [`SequenceTask::evaluate`] scores it and reports it as `valid_*` values. Where windows of one
//! series are split at random (traffic, ozone), neighbouring training and test windows share
//! rows, so test scores are not those of unseen stretches of time; the paper's numbers share this.
pub mod occupancy;
pub mod ozone;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TaskError};
use crate::mnist::predicted_class;
use crate::task::{Batch, Evaluation, Objective, Predict, Selection, SequenceTask, Split};

/// Share of the windows held out for validation (the paper's `int(0.1 * n)`).
pub const VALID_FRACTION: f64 = 0.10;
/// Share of the windows held out for testing where a data set has no test file (traffic, ozone).
pub const TEST_FRACTION: f64 = 0.15;

/// The rows of one file: `width` values per row (row-major in `x`, NaN where a value is missing)
/// and one target per row (a class index 0/1 as a float, or a regression target).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub width: usize,
    pub x: Vec<f32>,
    pub y: Vec<f32>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.width..(i + 1) * self.width]
    }
}

/// The start of every full window of `steps` rows taken every `stride` rows from a series of
/// `rows` rows: ⌊(rows − steps)/stride⌋ + 1 windows, none when the series is shorter.
pub fn window_starts(rows: usize, steps: usize, stride: usize) -> Vec<usize> {
    if rows < steps || steps == 0 {
        return Vec::new();
    }
    (0..=rows - steps).step_by(stride.max(1)).collect()
}

/// Per-column mean and (population) standard deviation, from chosen rows, ignoring missing
/// (NaN) values.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Standardizer {
    /// The statistics as `feature_mean` and `feature_std`.
    pub fn named(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            ("feature_mean".into(), self.mean.clone()),
            ("feature_std".into(), self.std.clone()),
        ]
    }

    /// Fits on the rows of `rows` for which `use_row` is true. A column with no spread (or no
    /// value) keeps a standard deviation of 1, so it is only centred.
    pub fn fit(rows: &Rows, use_row: impl Fn(usize) -> bool) -> Self {
        let w = rows.width;
        let (mut n, mut sum, mut sq) = (vec![0usize; w], vec![0f64; w], vec![0f64; w]);
        for i in (0..rows.len()).filter(|&i| use_row(i)) {
            for (j, &v) in rows.row(i).iter().enumerate() {
                if !v.is_nan() {
                    n[j] += 1;
                    sum[j] += v as f64;
                }
            }
        }
        let mean: Vec<f64> = (0..w)
            .map(|j| if n[j] > 0 { sum[j] / n[j] as f64 } else { 0.0 })
            .collect();
        for i in (0..rows.len()).filter(|&i| use_row(i)) {
            for (j, &v) in rows.row(i).iter().enumerate() {
                if !v.is_nan() {
                    sq[j] += (v as f64 - mean[j]).powi(2);
                }
            }
        }
        let std = (0..w)
            .map(|j| {
                let s = if n[j] > 0 {
                    (sq[j] / n[j] as f64).sqrt()
                } else {
                    0.0
                };
                if s > 1e-12 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Self { mean, std }
    }

    /// Standardises every value of `rows` in place; a missing value becomes 0 (the training mean).
    pub fn apply(&self, rows: &mut Rows) {
        let w = rows.width;
        for (k, v) in rows.x.iter_mut().enumerate() {
            let j = k % w;
            *v = if v.is_nan() {
                0.0
            } else {
                ((*v as f64 - self.mean[j]) / self.std[j]) as f32
            };
        }
    }
}

/// Cuts `n` window indices, shuffled by `seed`, into (train, valid, test): the first
/// ⌊valid·n⌋ shuffled indices validate, the next ⌊test·n⌋ test, the rest train (the paper's order).
pub fn split_indices(
    n: usize,
    valid: f64,
    test: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x7473_5f73_706c_6974));
    let nv = (valid * n as f64) as usize;
    let nt = (test * n as f64) as usize;
    let train = order[nv + nt..].to_vec();
    let test = order[nv..nv + nt].to_vec();
    order.truncate(nv);
    (train, order, test)
}

/// The windows of one series split at random into (train, valid, test), and which rows the
/// training windows cover (the rows training statistics come from).
type SeriesSplit = (Vec<Window>, Vec<Window>, Vec<Window>, Vec<bool>);

/// Cuts one series of `rows` rows into windows of `steps` every `stride` rows and splits them by
/// `seed` with [`split_indices`] ([`VALID_FRACTION`], [`TEST_FRACTION`]).
fn split_series(
    name: &str,
    rows: usize,
    steps: usize,
    stride: usize,
    seed: u64,
) -> Result<SeriesSplit> {
    let starts = window_starts(rows, steps, stride);
    if starts.len() < 10 {
        return Err(TaskError::Data(format!(
            "{name}: {rows} rows give {} windows of {steps}; too few to split",
            starts.len()
        )));
    }
    let (tr, va, te) = split_indices(starts.len(), VALID_FRACTION, TEST_FRACTION, seed);
    let pick = |ix: &[usize]| -> Vec<Window> {
        ix.iter()
            .map(|&i| Window {
                series: 0,
                start: starts[i],
            })
            .collect()
    };
    let train = pick(&tr);
    let mut covered = vec![false; rows];
    for w in &train {
        covered[w.start..w.start + steps].fill(true);
    }
    Ok((train, pick(&va), pick(&te), covered))
}

/// Reads `file` of data set `set` from `dir`, naming both when it is missing.
pub(crate) fn read_text(dir: &Path, file: &str, set: &str) -> Result<(String, String)> {
    let path = dir.join(file);
    let shown = path.display().to_string();
    if !path.is_file() {
        return Err(TaskError::Data(format!(
            "{set}: {} lacks {file} (expected {shown})",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| TaskError::Data(format!("{set}: cannot read {shown}: {e}")))?;
    Ok((text, shown))
}

/// The comma-separated fields of a line, trimmed of spaces and surrounding double quotes.
pub(crate) fn fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| {
            let f = f.trim();
            f.strip_prefix('"')
                .and_then(|g| g.strip_suffix('"'))
                .unwrap_or(f)
        })
        .collect()
}

/// A malformed row: the file, the 1-based line and what is wrong.
pub(crate) fn bad_row(source: &str, line: usize, what: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("{source}: line {line}: {what}"))
}

/// `field` as a number, or an error naming the file, the line and the column.
pub(crate) fn number(field: &str, source: &str, line: usize, column: &str) -> Result<f32> {
    match field.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(bad_row(
            source,
            line,
            format!("{column} `{field}` is not a finite number"),
        )),
    }
}

/// `field` as a class 0 or 1 (`0`, `1`, `0.0`, `1.0`).
pub(crate) fn binary_class(field: &str, source: &str, line: usize, column: &str) -> Result<f32> {
    match field.parse::<f32>() {
        Ok(v) if v == 0.0 || v == 1.0 => Ok(v),
        _ => Err(bad_row(
            source,
            line,
            format!("{column} `{field}` is not 0 or 1"),
        )),
    }
}

/// One window: a series and the first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    series: usize,
    start: usize,
}

/// How a task scores its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scoring {
    /// Two classes, accuracy over all steps.
    Accuracy,
    /// Two classes, F1 of class 1 over all steps (accuracy too).
    F1,
    /// One output, mean squared error over all steps.
    Mse,
}

/// The windows a task holds besides its splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Train,
    Valid,
    Test,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Valid => "valid",
            Part::Test => "test",
        }
    }
}

/// One of the LTC paper's time-series tasks: standardised series cut into windows, split into
/// training, validation and test windows. Built by [`TimeSeriesTask::occupancy`],
/// [`TimeSeriesTask::traffic`] or [`TimeSeriesTask::ozone`] (from files) or their `*_from_rows`
/// forms (from parsed [`Rows`]).
pub struct TimeSeriesTask {
    name: &'static str,
    steps: usize,
    width: usize,
    scoring: Scoring,
    /// Per-class loss weights put in `Batch::mask` (ozone).
    class_weights: Option<[f32; 2]>,
    /// Standardised series; targets as read (regression targets standardised too).
    series: Vec<Rows>,
    train: Vec<Window>,
    valid: Vec<Window>,
    test: Vec<Window>,
    /// What the test windows are, for the summary.
    test_note: String,
    /// The statistics fitted on training rows, by name (see `fitted_statistics`).
    fitted: Vec<(String, Vec<f64>)>,
}

impl TimeSeriesTask {
    /// Keeps the first `train_size` training and `test_size` test windows (0 = all), as the
    /// registry's sizes ask. The validation windows are kept whole.
    pub fn with_sizes(mut self, train_size: usize, test_size: usize) -> Self {
        if train_size > 0 {
            self.train.truncate(train_size);
        }
        if test_size > 0 {
            self.test.truncate(test_size);
        }
        self
    }

    /// Steps per window.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Number of validation windows (scored by `evaluate` as `valid_*`).
    pub fn valid_len(&self) -> usize {
        self.valid.len()
    }

    /// The loss weight of each class, where the task weights its classes.
    pub fn class_weights(&self) -> Option<[f32; 2]> {
        self.class_weights
    }

    fn windows(&self, part: Part) -> &[Window] {
        match part {
            Part::Train => &self.train,
            Part::Valid => &self.valid,
            Part::Test => &self.test,
        }
    }

    fn part_batch(
        &self,
        part: Part,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let windows = self.windows(part);
        let (b, t, f) = (indices.len(), self.steps, self.width);
        let mut x = Vec::with_capacity(b * t * f);
        let mut y = Vec::with_capacity(b * t);
        for &i in indices {
            let w = windows.get(i).ok_or_else(|| {
                TaskError::Config(format!(
                    "{}: window {i} of the {} part does not exist ({} windows)",
                    self.name,
                    part.name(),
                    windows.len()
                ))
            })?;
            let s = &self.series[w.series];
            x.extend_from_slice(&s.x[w.start * f..(w.start + t) * f]);
            y.extend_from_slice(&s.y[w.start..w.start + t]);
        }
        let x = Tensor::from_vec(x, (b, t, f), device)?.to_dtype(dtype)?;
        let (target, mask) = match self.scoring {
            Scoring::Mse => (
                Tensor::from_vec(y, (b, t, 1), device)?.to_dtype(dtype)?,
                None,
            ),
            Scoring::Accuracy | Scoring::F1 => {
                let mask = match self.class_weights {
                    Some(cw) => {
                        let m: Vec<f32> = y.iter().map(|&c| cw[c as usize]).collect();
                        Some(Tensor::from_vec(m, (b, t), device)?.to_dtype(dtype)?)
                    }
                    None => None,
                };
                let classes: Vec<u32> = y.iter().map(|&c| c as u32).collect();
                (Tensor::from_vec(classes, (b, t), device)?, mask)
            }
        };
        Ok(Batch {
            x,
            target,
            mask,
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![t; b],
        })
    }

    /// Runs `predict` over every window of `part` and counts what it got right.
    fn score(
        &self,
        part: Part,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Tally> {
        let windows = self.windows(part);
        let outputs = self.output_size();
        let order: Vec<usize> = (0..windows.len()).collect();
        let mut tally = Tally::default();
        for chunk in order.chunks(batch_size.max(1)) {
            let batch = self.part_batch(part, chunk, dtype, device)?;
            let out = predict(&batch)?;
            if out.dims() != [chunk.len(), self.steps, outputs] {
                return Err(TaskError::Model(
                    format!(
                        "{}: the model's read-out has shape {:?}, expected {:?}",
                        self.name,
                        out.dims(),
                        [chunk.len(), self.steps, outputs]
                    )
                    .into(),
                ));
            }
            let out: Vec<Vec<Vec<f32>>> = out.to_dtype(DType::F32)?.to_vec3()?;
            for (&i, rows) in chunk.iter().zip(&out) {
                let w = windows[i];
                let targets = &self.series[w.series].y[w.start..w.start + self.steps];
                for (o, &t) in rows.iter().zip(targets) {
                    tally.add(self.scoring, o, t);
                }
            }
        }
        Ok(tally)
    }
}

/// Counts over the steps of a part.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tally {
    steps: usize,
    right: usize,
    tp: usize,
    fp: usize,
    fn_: usize,
    non_finite: usize,
    sse: f64,
    sae: f64,
}

impl Tally {
    /// One step: output `o` against target `t`. A non-finite output is never right: for classes
    /// it counts as the wrong class, for regression it makes the error infinite.
    fn add(&mut self, scoring: Scoring, o: &[f32], t: f32) {
        self.steps += 1;
        if o.iter().any(|v| !v.is_finite()) {
            self.non_finite += 1;
        }
        match scoring {
            Scoring::Mse => {
                let d = (o[0] - t) as f64;
                if d.is_finite() {
                    self.sse += d * d;
                    self.sae += d.abs();
                }
            }
            Scoring::Accuracy | Scoring::F1 => {
                let label = t as usize;
                let pred = predicted_class(o);
                if pred == Some(label) {
                    self.right += 1;
                }
                // A step without a prediction counts as the other class.
                let said_positive = pred.map_or(label == 0, |p| p == 1);
                match (said_positive, label == 1) {
                    (true, true) => self.tp += 1,
                    (true, false) => self.fp += 1,
                    (false, true) => self.fn_ += 1,
                    (false, false) => {}
                }
            }
        }
    }

    fn accuracy(&self) -> f64 {
        self.right as f64 / self.steps.max(1) as f64
    }
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// F1 of class 1: 2tp / (2tp + fp + fn), 0 when there is neither a positive step nor a
    /// positive prediction.
    fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    /// Infinite as soon as one output is not finite.
    fn mse(&self) -> f64 {
        if self.non_finite > 0 {
            f64::INFINITY
        } else {
            self.sse / self.steps.max(1) as f64
        }
    }
    fn mae(&self) -> f64 {
        if self.non_finite > 0 {
            f64::INFINITY
        } else {
            self.sae / self.steps.max(1) as f64
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// "; 3 steps had non-finite outputs (never right)" or nothing.
fn non_finite_note(t: &Tally) -> String {
    if t.non_finite == 0 {
        String::new()
    } else {
        format!(
            "; {} of {} steps had non-finite outputs, counted as wrong",
            t.non_finite, t.steps
        )
    }
}

impl SequenceTask for TimeSeriesTask {
    fn name(&self) -> &str {
        self.name
    }
    fn input_size(&self) -> usize {
        self.width
    }
    fn output_size(&self) -> usize {
        match self.scoring {
            Scoring::Mse => 1,
            Scoring::Accuracy | Scoring::F1 => 2,
        }
    }
    fn objective(&self) -> Objective {
        match self.scoring {
            Scoring::Mse => Objective::RegressionPerStep,
            Scoring::Accuracy | Scoring::F1 => Objective::ClassPerStep,
        }
    }
    /// The paper tests the checkpoint of the best validation score: accuracy, MSE or F1.
    fn selection(&self) -> Option<Selection> {
        if self.valid.is_empty() {
            return None;
        }
        Some(match self.scoring {
            Scoring::Accuracy => Selection {
                value: "valid_accuracy",
                higher_is_better: true,
            },
            Scoring::Mse => Selection {
                value: "valid_mse",
                higher_is_better: false,
            },
            Scoring::F1 => Selection {
                value: "valid_f1",
                higher_is_better: true,
            },
        })
    }
    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train.len(),
            Split::Test => self.test.len(),
        }
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let part = match split {
            Split::Train => Part::Train,
            Split::Test => Part::Test,
        };
        self.part_batch(part, indices, dtype, device)
    }

    fn fitted_statistics(&self) -> Vec<(String, Vec<f64>)> {
        self.fitted.clone()
    }

    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        let test = self.score(Part::Test, batch_size, dtype, device, predict)?;
        let valid = if self.valid.is_empty() {
            None
        } else {
            Some(self.score(Part::Valid, batch_size, dtype, device, predict)?)
        };
        let mut values = BTreeMap::new();
        let mut put = |part: &str, t: &Tally| match self.scoring {
            Scoring::Accuracy => {
                values.insert(format!("{part}_accuracy"), t.accuracy());
            }
            Scoring::F1 => {
                values.insert(format!("{part}_f1"), t.f1());
                values.insert(format!("{part}_accuracy"), t.accuracy());
                values.insert(format!("{part}_precision"), t.precision());
                values.insert(format!("{part}_recall"), t.recall());
            }
            Scoring::Mse => {
                values.insert(format!("{part}_mse"), t.mse());
                values.insert(format!("{part}_mae"), t.mae());
            }
        };
        put("test", &test);
        if let Some(v) = &valid {
            put("valid", v);
        }
        let windows = format!(
            "{} steps of {} {}-step windows ({})",
            test.steps,
            self.test.len(),
            self.steps,
            self.test_note
        );
        let (metric_name, metric, summary) = match self.scoring {
            Scoring::Accuracy => (
                "test_accuracy",
                test.accuracy(),
                format!(
                    "test accuracy {:.2}% over {windows}{}{}",
                    100.0 * test.accuracy(),
                    valid.as_ref().map_or(String::new(), |v| format!(
                        "; validation accuracy {:.2}%",
                        100.0 * v.accuracy()
                    )),
                    non_finite_note(&test)
                ),
            ),
            Scoring::F1 => (
                "test_f1",
                test.f1(),
                format!(
                    "test F1 of the positive class {:.3} (precision {:.3}, recall {:.3}; {} \
                     positive steps), accuracy {:.2}% over {windows}{}{}",
                    test.f1(),
                    test.precision(),
                    test.recall(),
                    test.tp + test.fn_,
                    100.0 * test.accuracy(),
                    valid
                        .as_ref()
                        .map_or(String::new(), |v| format!("; validation F1 {:.3}", v.f1())),
                    non_finite_note(&test)
                ),
            ),
            Scoring::Mse => {
                let mse = test.mse();
                values.insert("neg_test_mse".into(), -mse);
                let head = if mse.is_finite() {
                    format!("test MSE {mse:.4} (MAE {:.4})", test.mae())
                } else {
                    format!(
                        "test MSE infinite: the model gave non-finite outputs on {} of {} steps",
                        test.non_finite, test.steps
                    )
                };
                (
                    "neg_test_mse",
                    -mse,
                    format!(
                        "{head} on the standardised target over {windows}; lower is better, so \
                         the headline metric neg_test_mse is its negative{}",
                        valid.as_ref().map_or(String::new(), |v| format!(
                            "; validation MSE {:.4}",
                            v.mse()
                        ))
                    ),
                )
            }
        };
        Ok(Evaluation {
            metric_name: metric_name.into(),
            metric,
            solved: None,
            values,
            summary,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A predictor that returns, for every step of the batch, `f(target)`.
    pub(crate) fn oracle(
        task: &TimeSeriesTask,
        wrong: bool,
        poison: bool,
    ) -> impl FnMut(&Batch) -> Result<Tensor> + '_ {
        move |b: &Batch| {
            let (n, t) = (b.indices.len(), task.steps);
            let out: Vec<f32> = match task.scoring {
                Scoring::Mse => {
                    let y: Vec<f32> = b.target.flatten_all()?.to_vec1()?;
                    y.iter()
                        .map(|&v| {
                            if poison {
                                f32::NAN
                            } else if wrong {
                                v + 1.0
                            } else {
                                v
                            }
                        })
                        .collect()
                }
                _ => {
                    let y: Vec<u32> = b.target.flatten_all()?.to_vec1()?;
                    y.iter()
                        .flat_map(|&c| {
                            let c = if wrong { 1 - c } else { c };
                            if poison {
                                [f32::NAN, f32::NAN]
                            } else if c == 1 {
                                [-1.0, 1.0]
                            } else {
                                [1.0, -1.0]
                            }
                        })
                        .collect()
                }
            };
            let o = task.output_size();
            Ok(Tensor::from_vec(out, (n, t, o), &Device::Cpu)?)
        }
    }

    /// `../shared/datasets/<set>` beside the repository (or `$REMANENCE_SHARED/datasets/<set>`);
    /// `None` (with a skip message) when missing, a failure when `CI` is set.
    pub(crate) fn shared_dataset(set: &str) -> Option<std::path::PathBuf> {
        let root = std::env::var_os("REMANENCE_SHARED")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
            });
        let d = root.join("datasets").join(set);
        if d.is_dir() {
            return Some(d);
        }
        if std::env::var_os("CI").is_some() {
            panic!(
                "{} is missing: CI must provide ../shared/datasets/{set}",
                d.display()
            );
        }
        eprintln!("skipping: {} not found", d.display());
        None
    }

    #[test]
    fn window_counts_follow_the_formula() {
        assert_eq!(window_starts(100, 16, 8).len(), (100 - 16) / 8 + 1);
        assert_eq!(window_starts(2665, 16, 8).len(), 332);
        assert_eq!(window_starts(16, 16, 8), vec![0]);
        assert!(window_starts(15, 16, 1).is_empty());
        assert_eq!(window_starts(20, 16, 1), vec![0, 1, 2, 3, 4]);
        // The last start leaves a full window.
        let s = window_starts(2534, 32, 4);
        assert_eq!(s.len(), 626);
        assert!(s.last().unwrap() + 32 <= 2534);
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let (tr, va, te) = split_indices(1000, 0.1, 0.15, 7);
        assert_eq!((tr.len(), va.len(), te.len()), (750, 100, 150));
        let mut all: Vec<usize> = tr.iter().chain(&va).chain(&te).copied().collect();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(split_indices(1000, 0.1, 0.15, 7).1, va);
        assert_ne!(split_indices(1000, 0.1, 0.15, 8).1, va);
    }

    #[test]
    fn standardizer_ignores_missing_values_and_unused_rows() {
        let rows = Rows {
            width: 2,
            x: vec![1.0, 5.0, 3.0, f32::NAN, 100.0, 7.0],
            y: vec![0.0; 3],
        };
        let s = Standardizer::fit(&rows, |i| i < 2);
        assert_eq!(s.mean, vec![2.0, 5.0]);
        assert_eq!(s.std, vec![1.0, 1.0]); // column 2 has one value: no spread, std kept at 1
        let mut r = rows.clone();
        s.apply(&mut r);
        assert_eq!(r.x, vec![-1.0, 0.0, 1.0, 0.0, 98.0, 2.0]);
    }

    #[test]
    fn fields_trim_quotes_and_spaces() {
        assert_eq!(
            fields("\"1\",\"2015-02-04 17:51:00\", 23.18 ,1\r"),
            vec!["1", "2015-02-04 17:51:00", "23.18", "1"]
        );
    }
}
