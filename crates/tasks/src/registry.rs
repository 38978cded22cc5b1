//! Task names and configuration: the one place that maps a name to a task.
use serde::{Deserialize, Serialize};

use crate::error::{Result, TaskError};
use std::path::PathBuf;

use crate::grammar::Grammar;
use crate::mnist::{MnistTask, MnistView};
use crate::reber::ReberTask;
use crate::task::SequenceTask;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Reber,
    EmbeddedReber,
    MnistRows,
    MnistPixels,
    MnistPixelsPermuted,
}

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Reber,
        TaskKind::EmbeddedReber,
        TaskKind::MnistRows,
        TaskKind::MnistPixels,
        TaskKind::MnistPixelsPermuted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Reber => "reber",
            TaskKind::EmbeddedReber => "embedded-reber",
            TaskKind::MnistRows => "mnist-rows",
            TaskKind::MnistPixels => "mnist-pixels",
            TaskKind::MnistPixelsPermuted => "mnist-pixels-permuted",
        }
    }

    /// Input features per step and outputs, known without reading any data.
    pub fn sizes(self) -> (usize, usize) {
        match self {
            TaskKind::Reber | TaskKind::EmbeddedReber => (7, 7),
            TaskKind::MnistRows => (28, 10),
            TaskKind::MnistPixels | TaskKind::MnistPixelsPermuted => (1, 10),
        }
    }

    /// A bound on the steps of one sequence, known without reading any data (for memory
    /// estimates): 784 pixels, 28 rows, and the grammars' strings, which are rarely above 64.
    pub fn max_steps(self) -> usize {
        match self {
            TaskKind::Reber | TaskKind::EmbeddedReber => 64,
            TaskKind::MnistRows => 28,
            TaskKind::MnistPixels | TaskKind::MnistPixelsPermuted => 784,
        }
    }

    /// Default (train, test) sizes; 0 means the whole split.
    pub fn default_sizes(self) -> (usize, usize) {
        match self {
            TaskKind::Reber | TaskKind::EmbeddedReber => (256, 256),
            _ => (0, 0),
        }
    }

    /// The data set a task reads from disk (a name of [`crate::datasets::DATASETS`]); `None`
    /// for tasks that generate their data.
    pub fn dataset(self) -> Option<&'static str> {
        match self {
            TaskKind::MnistRows | TaskKind::MnistPixels | TaskKind::MnistPixelsPermuted => {
                Some("mnist")
            }
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
}
