//! Spoken digits: the Free Spoken Digit Dataset (Jackson et al.), 3,000 recordings
//! `recordings/{digit}_{speaker}_{index}.wav` of six speakers saying 0–9 fifty times, 8 kHz.
//!
//! Each recording becomes a sequence of feature frames (MFCC or log-mel, [`FeatureConfig`]),
//! standardised per feature with the mean and standard deviation of the training frames only,
//! and is classified from the read-out of its last frame (or the mean over its frames).
//!
//! Splits ([`FsddSplit`]): the official one (index 0–4 test, 5–49 train: every speaker in both)
//! or one speaker held out (`speaker:NAME`: that speaker's 500 recordings are the test set),
//! which measures generalisation to a new voice.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::audio::features::{self, FeatureConfig};
use crate::audio::wav;
use crate::error::{Result, TaskError};
use crate::mnist::predicted_class;
use crate::task::{class_readout, Batch, Evaluation, Objective, Predict, SequenceTask, Split};

/// The six speakers of FSDD v1.0.10.
pub const SPEAKERS: [&str; 6] = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"];

/// How the recordings are split into train and test.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FsddSplit {
    /// Index 0–4 test, 5–49 train (the dataset's own split).
    #[default]
    Official,
    /// Every recording of this speaker is test, the others train.
    Speaker(String),
}

impl std::str::FromStr for FsddSplit {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            None if s == "official" => Ok(Self::Official),
            Some(("speaker", name)) if !name.is_empty() => Ok(Self::Speaker(name.to_string())),
            _ => Err(format!(
                "unknown split `{s}`; valid: official, speaker:NAME (NAME one of {})",
                SPEAKERS.join(", ")
            )),
        }
    }
}

impl std::fmt::Display for FsddSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Official => f.write_str("official"),
            Self::Speaker(s) => write!(f, "speaker:{s}"),
        }
    }
}

impl Serialize for FsddSplit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FsddSplit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A recording's name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingName {
    pub digit: u8,
    pub speaker: String,
    pub index: u32,
}

/// Parses `{digit}_{speaker}_{index}.wav`.
pub fn parse_name(file: &str) -> std::result::Result<RecordingName, String> {
    let stem = file
        .strip_suffix(".wav")
        .ok_or_else(|| "not a .wav file".to_string())?;
    let mut parts = stem.splitn(3, '_');
    let (d, s, i) = (parts.next(), parts.next(), parts.next());
    let bad = || format!("name `{file}` is not DIGIT_SPEAKER_INDEX.wav");
    let digit: u8 = d
        .and_then(|d| d.parse().ok())
        .filter(|&d| d <= 9)
        .ok_or_else(bad)?;
    let speaker = s.filter(|s| !s.is_empty()).ok_or_else(bad)?.to_string();
    let index: u32 = i.and_then(|i| i.parse().ok()).ok_or_else(bad)?;
    Ok(RecordingName {
        digit,
        speaker,
        index,
    })
}

/// Options of the spoken-digit task.
#[derive(Debug, Clone, PartialEq)]
pub struct FsddOptions {
    pub split: FsddSplit,
    pub features: FeatureConfig,
    /// Classify from the mean read-out over the frames instead of the last frame.
    pub mean_over_time: bool,
    /// Resample recordings at another rate than `features.sample_rate` (refused otherwise).
    pub resample: bool,
    /// Skip unreadable recordings (reported by [`SequenceTask::warnings`]) instead of stopping.
    pub skip_bad: bool,
}

struct Recording {
    /// (frames, dim), standardised.
    features: Vec<f32>,
    frames: usize,
    digit: u8,
}

pub struct FsddTask {
    options: FsddOptions,
    train: Vec<Recording>,
    test: Vec<Recording>,
    /// Per-feature mean and standard deviation of the training frames.
    mean: Vec<f64>,
    std: Vec<f64>,
    skipped: Vec<String>,
}

fn file_err(path: &Path, msg: impl std::fmt::Display) -> TaskError {
    TaskError::Data(format!("{}: {msg}", path.display()))
}

impl FsddTask {
    /// Reads every recording under `dir/recordings`. `train_size`/`test_size` keep the first
    /// recordings of each split in name order (0 = all).
    pub fn new(
        dir: &Path,
        options: FsddOptions,
        train_size: usize,
        test_size: usize,
    ) -> Result<Self> {
        let cfg = &options.features;
        cfg.validate().map_err(TaskError::Config)?;
        if let FsddSplit::Speaker(s) = &options.split {
            if !SPEAKERS.contains(&s.as_str()) {
                return Err(TaskError::Config(format!(
                    "split speaker:{s}: no such speaker; FSDD's speakers are {}",
                    SPEAKERS.join(", ")
                )));
            }
        }
        let folder = dir.join("recordings");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|e| file_err(&folder, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wav"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(file_err(&folder, "holds no .wav recordings"));
        }
        let mut skipped = Vec::new();
        let mut raw: Vec<(RecordingName, features::Matrix)> = Vec::with_capacity(files.len());
        for path in &files {
            match Self::read(path, &options) {
                Ok(r) => raw.push(r),
                Err(e) if options.skip_bad => skipped.push(e.to_string()),
                Err(e) => {
                    return Err(TaskError::Data(format!(
                        "{e} (pass --skip-bad to skip unreadable recordings)"
                    )))
                }
            }
        }
        let is_test = |n: &RecordingName| match &options.split {
            FsddSplit::Official => n.index < 5,
            FsddSplit::Speaker(s) => &n.speaker == s,
        };
        let (mut test, mut train): (Vec<_>, Vec<_>) =
            raw.into_iter().partition(|(n, _)| is_test(n));
        if train_size > 0 {
            train.truncate(train_size);
        }
        if test_size > 0 {
            test.truncate(test_size);
        }
        if train.is_empty() || test.is_empty() {
            return Err(TaskError::Data(format!(
                "{}: the {} split leaves {} training and {} test recordings",
                folder.display(),
                options.split,
                train.len(),
                test.len()
            )));
        }
        let dim = cfg.dim();
        let (mut sum, mut sq, mut n) = (vec![0.0; dim], vec![0.0; dim], 0usize);
        for (_, m) in &train {
            for t in 0..m.rows {
                for (k, v) in m.row(t).iter().enumerate() {
                    sum[k] += v;
                    sq[k] += v * v;
                }
            }
            n += m.rows;
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let std: Vec<f64> = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| (q / n as f64 - m * m).max(0.0).sqrt().max(1e-8))
            .collect();
        let standardise = |list: Vec<(RecordingName, features::Matrix)>| -> Vec<Recording> {
            list.into_iter()
                .map(|(name, m)| Recording {
                    features: m
                        .data
                        .iter()
                        .enumerate()
                        .map(|(i, v)| ((v - mean[i % dim]) / std[i % dim]) as f32)
                        .collect(),
                    frames: m.rows,
                    digit: name.digit,
                })
                .collect()
        };
        let (train, test) = (standardise(train), standardise(test));
        Ok(Self {
            options,
            train,
            test,
            mean,
            std,
            skipped,
        })
    }

    fn read(path: &Path, options: &FsddOptions) -> Result<(RecordingName, features::Matrix)> {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let name = parse_name(file).map_err(|e| file_err(path, e))?;
        let bytes = std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
        let audio = wav::decode(&bytes).map_err(|e| file_err(path, e))?;
        let rate = options.features.sample_rate;
        let samples = if audio.sample_rate == rate {
            audio.samples
        } else if options.resample {
            wav::resample(&audio.samples, audio.sample_rate, rate).map_err(|e| file_err(path, e))?
        } else {
            return Err(file_err(
                path,
                format!(
                    "recorded at {} Hz, the features expect {rate} Hz; pass --resample to convert",
                    audio.sample_rate
                ),
            ));
        };
        Ok((name, features::extract(&samples, &options.features)))
    }

    fn split(&self, split: Split) -> &[Recording] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }
}

impl SequenceTask for FsddTask {
    fn name(&self) -> &str {
        "fsdd"
    }
    fn input_size(&self) -> usize {
        self.options.features.dim()
    }
    fn output_size(&self) -> usize {
        10
    }
    fn objective(&self) -> Objective {
        if self.options.mean_over_time {
            Objective::ClassMeanOverTime
        } else {
            Objective::ClassLastStep
        }
    }
    fn len(&self, split: Split) -> usize {
        self.split(split).len()
    }
    fn label(&self, split: Split, index: usize) -> Option<usize> {
        self.split(split).get(index).map(|r| r.digit as usize)
    }

    /// Sequences padded with zeros after their end to the longest of the batch; the mask marks
    /// the real frames and the class is read at each sequence's own last frame.
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let recs = self.split(split);
        let dim = self.input_size();
        let lengths: Vec<usize> = indices.iter().map(|&i| recs[i].frames).collect();
        let t = lengths.iter().copied().max().unwrap_or(1);
        let b = indices.len();
        let mut x = vec![0f32; b * t * dim];
        let mut mask = vec![0f32; b * t];
        for (row, &i) in indices.iter().enumerate() {
            let r = &recs[i];
            x[row * t * dim..row * t * dim + r.features.len()].copy_from_slice(&r.features);
            mask[row * t..row * t + r.frames].fill(1.0);
        }
        let labels: Vec<u32> = indices.iter().map(|&i| recs[i].digit as u32).collect();
        let full = lengths.iter().all(|&l| l == t);
        Ok(Batch {
            x: Tensor::from_vec(x, (b, t, dim), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(labels, b, device)?,
            mask: if full {
                None
            } else {
                Some(Tensor::from_vec(mask, (b, t), device)?.to_dtype(dtype)?)
            },
            dt: None,
            indices: indices.to_vec(),
            lengths,
        })
    }

    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        let mut values = BTreeMap::new();
        let mut summary = Vec::new();
        for (split, name) in [(Split::Test, "test"), (Split::Train, "train")] {
            let n = self.len(split);
            let order: Vec<usize> = (0..n).collect();
            let mut right = 0usize;
            let mut per_digit = [(0usize, 0usize); 10];
            for chunk in order.chunks(batch_size.max(1)) {
                let batch = self.batch(split, chunk, dtype, device)?;
                let y = predict(&batch)?;
                let logits: Vec<Vec<f32>> = class_readout(&y, &batch.lengths, self.objective())?
                    .to_dtype(DType::F32)?
                    .to_vec2()?;
                for (&i, l) in chunk.iter().zip(&logits) {
                    let digit = self.split(split)[i].digit as usize;
                    per_digit[digit].1 += 1;
                    if predicted_class(l) == Some(digit) {
                        right += 1;
                        per_digit[digit].0 += 1;
                    }
                }
            }
            let acc = right as f64 / n as f64;
            values.insert(format!("{name}_accuracy"), acc);
            if split == Split::Test {
                for (d, (r, total)) in per_digit.iter().enumerate() {
                    if *total > 0 {
                        values.insert(
                            format!("test_accuracy_digit_{d}"),
                            *r as f64 / *total as f64,
                        );
                    }
                }
            }
            summary.push(format!("{name} accuracy {:.2}% ({right}/{n})", 100.0 * acc));
        }
        let acc = values["test_accuracy"];
        Ok(Evaluation {
            metric_name: "test_accuracy".into(),
            metric: acc,
            solved: None,
            values,
            summary: format!(
                "{}; split {}, {} {} per frame, classified from the {}",
                summary.join(", "),
                self.options.split,
                self.options.features.dim(),
                self.options.features.kind,
                if self.options.mean_over_time {
                    "mean over the frames"
                } else {
                    "last frame"
                }
            ),
        })
    }

    fn warnings(&self) -> Vec<String> {
        self.skipped
            .iter()
            .map(|s| format!("skipped a bad recording: {s}"))
            .collect()
    }

    fn fitted_statistics(&self) -> Vec<(String, Vec<f64>)> {
        vec![
            ("feature_mean".into(), self.mean.clone()),
            ("feature_std".into(), self.std.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_splits_parse() {
        assert_eq!(
            parse_name("7_jackson_32.wav").unwrap(),
            RecordingName {
                digit: 7,
                speaker: "jackson".into(),
                index: 32
            }
        );
        for bad in [
            "x_jackson_1.wav",
            "7__1.wav",
            "7_jackson.wav",
            "12_theo_1.wav",
            "7_theo_1.mp3",
        ] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            "official".parse::<FsddSplit>().unwrap(),
            FsddSplit::Official
        );
        assert_eq!(
            "speaker:theo".parse::<FsddSplit>().unwrap(),
            FsddSplit::Speaker("theo".into())
        );
        assert!("speaker:".parse::<FsddSplit>().is_err());
        assert!("random"
            .parse::<FsddSplit>()
            .unwrap_err()
            .contains("jackson"));
    }
}
