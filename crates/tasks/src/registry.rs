//! Task names and configuration: the one place that maps a name to a task.
use serde::{Deserialize, Serialize};

use crate::error::{Result, TaskError};
use std::path::PathBuf;

use crate::audio::FeatureConfig;
use crate::fsdd::{FsddOptions, FsddSplit, FsddTask};
use crate::grammar::Grammar;
use crate::jsb::{JsbResolution, JsbTask};
use crate::mnist::{MnistTask, MnistView};
use crate::moving_mnist::{Mode as MovingMnistMode, MovingMnistTask};
use crate::reber::ReberTask;
use crate::soprano::SopranoTask;
use crate::task::SequenceTask;
use crate::timeseries::TimeSeriesTask;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Reber,
    EmbeddedReber,
    MnistRows,
    MnistPixels,
    MnistPixelsPermuted,
    Occupancy,
    Traffic,
    Ozone,
    Fsdd,
    JsbChorales,
    BachSoprano,
    MovingMnist,
    MovingMnistDigits,
}

impl TaskKind {
    pub const ALL: [TaskKind; 13] = [
        TaskKind::Reber,
        TaskKind::EmbeddedReber,
        TaskKind::MnistRows,
        TaskKind::MnistPixels,
        TaskKind::MnistPixelsPermuted,
        TaskKind::Occupancy,
        TaskKind::Traffic,
        TaskKind::Ozone,
        TaskKind::Fsdd,
        TaskKind::JsbChorales,
        TaskKind::BachSoprano,
        TaskKind::MovingMnist,
        TaskKind::MovingMnistDigits,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Reber => "reber",
            TaskKind::EmbeddedReber => "embedded-reber",
            TaskKind::MnistRows => "mnist-rows",
            TaskKind::MnistPixels => "mnist-pixels",
            TaskKind::MnistPixelsPermuted => "mnist-pixels-permuted",
            TaskKind::Occupancy => "occupancy",
            TaskKind::Traffic => "traffic",
            TaskKind::Ozone => "ozone",
            TaskKind::Fsdd => "fsdd",
            TaskKind::JsbChorales => "jsb-chorales",
            TaskKind::BachSoprano => "bach-soprano",
            TaskKind::MovingMnist => "moving-mnist",
            TaskKind::MovingMnistDigits => "moving-mnist-digits",
        }
    }

    /// Input features per step and outputs, known without reading any data.
    pub fn sizes(self) -> (usize, usize) {
        match self {
            TaskKind::Reber | TaskKind::EmbeddedReber => (7, 7),
            TaskKind::MnistRows => (28, 10),
            TaskKind::MnistPixels | TaskKind::MnistPixelsPermuted => (1, 10),
            TaskKind::Occupancy => (5, 2),
            TaskKind::Traffic => (7, 1),
            TaskKind::Ozone => (72, 2),
            // With the default features (13 MFCCs); see `TaskConfig::sizes`.
            TaskKind::Fsdd => (13, 10),
            // An 88-key piano roll in, one logit per key out.
            TaskKind::JsbChorales => (88, 88),
            // A fixed vocabulary (rest, hold, one onset per pitch of 55..=84), one-hot in,
            // one logit per token out.
            TaskKind::BachSoprano => (crate::soprano::VOCAB, crate::soprano::VOCAB),
            // A 64×64 frame in, one logit per pixel of the next frame out.
            TaskKind::MovingMnist => (crate::moving_mnist::PIXELS, crate::moving_mnist::PIXELS),
            // The same frames in, one logit per digit class out.
            TaskKind::MovingMnistDigits => {
                (crate::moving_mnist::PIXELS, crate::moving_mnist::CLASSES)
            }
        }
    }

    /// A bound on the steps of one sequence, known without reading any data (for memory
    /// estimates): 784 pixels, 28 rows, and the grammars' strings, which are rarely above 64.
    pub fn max_steps(self) -> usize {
        match self {
            TaskKind::Reber | TaskKind::EmbeddedReber => 64,
            TaskKind::MnistRows => 28,
            TaskKind::MnistPixels | TaskKind::MnistPixelsPermuted => 784,
            TaskKind::Occupancy => crate::timeseries::occupancy::STEPS,
            TaskKind::Traffic => crate::timeseries::traffic::STEPS,
            TaskKind::Ozone => crate::timeseries::ozone::STEPS,
            // The longest recording is 2.28 s: 229 frames at the default 10 ms hop.
            TaskKind::Fsdd => 240,
            // The longest chorale at the finest resolution (16th notes): 640 frames; see
            // `TaskConfig::max_steps` for the bound of the chosen resolution.
            TaskKind::JsbChorales => JsbResolution::Sixteenth.max_steps(),
            TaskKind::BachSoprano => crate::soprano::MAX_STEPS,
            // 20 frames: 19 transitions (the batches' steps).
            TaskKind::MovingMnist => crate::moving_mnist::FRAMES,
            // All 20 frames, one a step.
            TaskKind::MovingMnistDigits => crate::moving_mnist::FRAMES,
        }
    }

    /// Default (train, test) sizes; 0 means the whole split.
    pub fn default_sizes(self) -> (usize, usize) {
        match self {
            TaskKind::Reber | TaskKind::EmbeddedReber => (256, 256),
            // Generated on demand: there is no whole split.
            TaskKind::MovingMnist | TaskKind::MovingMnistDigits => {
                crate::moving_mnist::DEFAULT_SIZES
            }
            _ => (0, 0),
        }
    }

    /// The data set a task reads from disk (a name of [`crate::datasets::DATASETS`]); `None`
    /// for tasks that generate their data.
    pub fn dataset(self) -> Option<&'static str> {
        match self {
            TaskKind::MnistRows
            | TaskKind::MnistPixels
            | TaskKind::MnistPixelsPermuted
            | TaskKind::MovingMnist
            | TaskKind::MovingMnistDigits => Some("mnist"),
            TaskKind::Occupancy => Some("occupancy"),
            TaskKind::Traffic => Some("traffic"),
            TaskKind::Ozone => Some("ozone"),
            TaskKind::Fsdd => Some("fsdd"),
            TaskKind::JsbChorales | TaskKind::BachSoprano => Some("jsb-chorales"),
            _ => None,
        }
    }

    /// The MNIST view of an MNIST task.
    pub fn mnist_view(self) -> Option<MnistView> {
        match self {
            TaskKind::MnistRows => Some(MnistView::Rows),
            TaskKind::MnistPixels => Some(MnistView::Pixels),
            TaskKind::MnistPixelsPermuted => Some(MnistView::PermutedPixels),
            _ => None,
        }
    }

    /// The grammar behind a grammar task.
    pub fn grammar(self) -> Option<Grammar> {
        match self {
            TaskKind::Reber => Some(Grammar::Reber),
            TaskKind::EmbeddedReber => Some(Grammar::Embedded),
            _ => None,
        }
    }
}

impl std::str::FromStr for TaskKind {
    type Err = TaskError;
    fn from_str(s: &str) -> Result<Self> {
        TaskKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let valid: Vec<_> = TaskKind::ALL.iter().map(|k| k.name()).collect();
                TaskError::Config(format!(
                    "unknown task `{s}`; valid tasks: {}",
                    valid.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything needed to rebuild a task's data exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskConfig {
    pub kind: TaskKind,
    pub train_size: usize,
    pub test_size: usize,
    /// Seed of the data draw (and of the MNIST pixel permutation).
    pub data_seed: u64,
    /// Folder of a data set read from disk (MNIST); `None`: the default location.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Settings of the tasks that have any (absent from older configurations: the defaults).
    #[serde(default)]
    pub options: TaskOptions,
}

/// Settings some tasks take; each says which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TaskOptions {
    /// fsdd: `official` or `speaker:NAME`.
    pub split: FsddSplit,
    /// fsdd: the features of each frame.
    pub features: FeatureConfig,
    /// fsdd: classify from the mean read-out over time instead of the last step.
    pub mean_over_time: bool,
    /// fsdd: resample recordings at another rate instead of refusing them.
    pub resample: bool,
    /// fsdd, moving-mnist: skip unreadable files (fsdd recordings) or bad sequences of a
    /// `--video` frame folder (each reported) instead of stopping.
    pub skip_bad: bool,
    /// jsb-chorales: one frame per quarter (default), 8th or 16th note.
    pub jsb_resolution: JsbResolution,
    /// bach-soprano: transpose every chorale so its soprano ends on a C.
    pub transpose: bool,
    /// moving-mnist: a `(20, N, 64, 64)` uint8 `.npy` file, or a folder of frame folders
    /// (`DIR/<sequence>/<frame>.png|.jpg|.jpeg`), whose sequences replace the generated test
    /// set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<PathBuf>,
}

impl TaskConfig {
    /// Input features per step and outputs, with the task's options.
    pub fn sizes(&self) -> (usize, usize) {
        match self.kind {
            TaskKind::Fsdd => (self.options.features.dim(), 10),
            k => k.sizes(),
        }
    }

    /// A bound on the steps of one sequence, with the task's options.
    pub fn max_steps(&self) -> usize {
        match self.kind {
            TaskKind::Fsdd => {
                let f = &self.options.features;
                f.frames((2.3 * f.sample_rate as f64) as usize)
            }
            TaskKind::JsbChorales => self.options.jsb_resolution.max_steps(),
            k => k.max_steps(),
        }
    }
}

pub fn build_task(cfg: &TaskConfig) -> Result<Box<dyn SequenceTask>> {
    Ok(match cfg.kind {
        TaskKind::Reber | TaskKind::EmbeddedReber => Box::new(ReberTask::new(
            cfg.kind.grammar().expect("grammar task"),
            cfg.train_size,
            cfg.test_size,
            cfg.data_seed,
        )?),
        TaskKind::MnistRows | TaskKind::MnistPixels | TaskKind::MnistPixelsPermuted => {
            let dir = crate::datasets::locate("mnist", cfg.data_dir.as_deref())?;
            Box::new(MnistTask::new(
                cfg.kind.mnist_view().expect("mnist task"),
                &dir,
                cfg.train_size,
                cfg.test_size,
                cfg.data_seed,
            )?)
        }
        TaskKind::Fsdd => {
            let dir = crate::datasets::locate("fsdd", cfg.data_dir.as_deref())?;
            let o = &cfg.options;
            Box::new(FsddTask::new(
                &dir,
                FsddOptions {
                    split: o.split.clone(),
                    features: o.features.clone(),
                    mean_over_time: o.mean_over_time,
                    resample: o.resample,
                    skip_bad: o.skip_bad,
                },
                cfg.train_size,
                cfg.test_size,
            )?)
        }
        TaskKind::JsbChorales => {
            let dir = crate::datasets::locate("jsb-chorales", cfg.data_dir.as_deref())?;
            Box::new(JsbTask::new(
                &dir,
                cfg.options.jsb_resolution,
                cfg.train_size,
                cfg.test_size,
            )?)
        }
        TaskKind::BachSoprano => {
            let dir = crate::datasets::locate("jsb-chorales", cfg.data_dir.as_deref())?;
            Box::new(SopranoTask::new(
                &dir,
                cfg.train_size,
                cfg.test_size,
                cfg.options.transpose,
            )?)
        }
        TaskKind::MovingMnist => {
            // The user's video first: its errors come before any about the MNIST digits.
            let o = &cfg.options;
            let video = match o.video.as_deref() {
                Some(file) => Some((
                    crate::moving_mnist::load_video(file, cfg.test_size, o.skip_bad)?,
                    file,
                )),
                None => None,
            };
            let dir = crate::datasets::locate("mnist", cfg.data_dir.as_deref())?;
            let task = MovingMnistTask::new(
                &dir,
                cfg.train_size,
                cfg.test_size,
                cfg.data_seed,
                None,
                false,
            )?;
            Box::new(match video {
                Some((v, file)) => task.with_loaded_video(v, file)?,
                None => task,
            })
        }
        TaskKind::MovingMnistDigits => {
            // Refused before any data is read: a video has no digit labels.
            if let Some(file) = cfg.options.video.as_deref() {
                return Err(TaskError::Config(format!(
                    "moving-mnist-digits cannot take the video {}: a video carries no digit \
                     labels; drop it, or use moving-mnist to forecast its frames",
                    file.display()
                )));
            }
            let dir = crate::datasets::locate("mnist", cfg.data_dir.as_deref())?;
            Box::new(
                MovingMnistTask::new(
                    &dir,
                    cfg.train_size,
                    cfg.test_size,
                    cfg.data_seed,
                    None,
                    false,
                )?
                .with_mode(MovingMnistMode::Digits)?,
            )
        }
        TaskKind::Occupancy | TaskKind::Traffic | TaskKind::Ozone => {
            let set = cfg.kind.dataset().expect("time-series task");
            let dir = crate::datasets::locate(set, cfg.data_dir.as_deref())?;
            let task = match cfg.kind {
                TaskKind::Occupancy => TimeSeriesTask::occupancy(&dir, cfg.data_seed)?,
                TaskKind::Traffic => TimeSeriesTask::traffic(&dir, cfg.data_seed)?,
                _ => TimeSeriesTask::ozone(&dir, cfg.data_seed)?,
            };
            Box::new(task.with_sizes(cfg.train_size, cfg.test_size))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_task_lists_valid_ones() {
        let err = "mnist-foo".parse::<TaskKind>().unwrap_err().to_string();
        assert!(err.contains("reber, embedded-reber, mnist-rows"), "{err}");
        assert_eq!(
            "embedded-reber".parse::<TaskKind>().unwrap(),
            TaskKind::EmbeddedReber
        );
    }

    #[test]
    fn bach_soprano_has_data_independent_sizes() {
        let k: TaskKind = "bach-soprano".parse().unwrap();
        assert_eq!(k, TaskKind::BachSoprano);
        assert_eq!(k.sizes(), (32, 32));
        assert_eq!(k.dataset(), Some("jsb-chorales"));
        assert_eq!(k.max_steps(), 639);
        let set = crate::datasets::find("jsb-chorales").unwrap();
        assert!(set.tasks.contains(&"bach-soprano"));
    }

    #[test]
    fn moving_mnist_digits_is_registered_and_refuses_a_video() {
        let k: TaskKind = "moving-mnist-digits".parse().unwrap();
        assert_eq!(k, TaskKind::MovingMnistDigits);
        assert_eq!(k.sizes(), (4096, 10));
        assert_eq!(k.max_steps(), 20);
        assert_eq!(k.dataset(), Some("mnist"));
        assert_eq!(k.default_sizes(), (10_000, 1_000));
        let set = crate::datasets::find("mnist").unwrap();
        assert!(set.tasks.contains(&"moving-mnist-digits"));
        let cfg = TaskConfig {
            kind: k,
            train_size: 4,
            test_size: 4,
            data_seed: 0,
            data_dir: Some(PathBuf::from("/nonexistent-remanence-mnist")),
            options: TaskOptions {
                video: Some(PathBuf::from("/tmp/test.npy")),
                ..TaskOptions::default()
            },
        };
        let err = build_task(&cfg).err().unwrap().to_string();
        assert!(
            err.contains("no digit labels") && err.contains("test.npy"),
            "{err}"
        );
        let Some(dir) = crate::datasets::shared_for_tests("datasets/mnist") else {
            return;
        };
        let cfg = TaskConfig {
            data_dir: Some(dir),
            options: TaskOptions::default(),
            ..cfg
        };
        let task = build_task(&cfg).unwrap();
        assert_eq!(task.name(), "moving-mnist-digits");
        assert_eq!((task.input_size(), task.output_size()), (4096, 10));
    }
}
