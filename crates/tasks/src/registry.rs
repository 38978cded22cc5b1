//! Task names and configuration: the one place that maps a name to a task.
use serde::{Deserialize, Serialize};

use crate::error::{Result, TaskError};
use crate::grammar::Grammar;
use crate::reber::ReberTask;
use crate::task::SequenceTask;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    Reber,
    EmbeddedReber,
}

impl TaskKind {
    pub const ALL: [TaskKind; 2] = [TaskKind::Reber, TaskKind::EmbeddedReber];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Reber => "reber",
            TaskKind::EmbeddedReber => "embedded-reber",
        }
    }

    /// The grammar behind a grammar task.
    pub fn grammar(self) -> Option<Grammar> {
        match self {
            TaskKind::Reber => Some(Grammar::Reber),
            TaskKind::EmbeddedReber => Some(Grammar::Embedded),
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
    /// Seed of the data draw.
    pub data_seed: u64,
}

pub fn build_task(cfg: &TaskConfig) -> Result<Box<dyn SequenceTask>> {
    Ok(match cfg.kind {
        TaskKind::Reber | TaskKind::EmbeddedReber => Box::new(ReberTask::new(
            cfg.kind.grammar().expect("grammar task"),
            cfg.train_size,
            cfg.test_size,
            cfg.data_seed,
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_task_lists_valid_ones() {
        let err = "mnist-foo".parse::<TaskKind>().unwrap_err().to_string();
        assert!(err.contains("reber, embedded-reber"), "{err}");
        assert_eq!(
            "embedded-reber".parse::<TaskKind>().unwrap(),
            TaskKind::EmbeddedReber
        );
    }
}
