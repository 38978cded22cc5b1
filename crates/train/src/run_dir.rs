//! The run folder:
//!
//! | file | content |
//! |---|---|
//! | `config.json` | the resolved [`RunConfig`]: everything needed to rebuild model and task |
//! | `model.safetensors` | the weights after the last completed epoch: `rnn.*` with PyTorch names, `head.weight`, `head.bias` |
//! | `checkpoint.safetensors` | weights (`model.*`), optimizer state (`optim.*`) and trainer state (metadata), in one file |
//! | `best.safetensors` | for tasks with a validation part: the weights of the epoch with the best validation value (the checkpoint's trainer state says which) |
//! | `metrics.jsonl` | one JSON object per completed epoch |
//! | `task.json` | what the task fitted on its training split (feature means and deviations), for tasks that fit any |
//! | `run.lock` | the pid of the process training in the folder, which holds an advisory lock on it |
//!
//! Every file is written to a temporary name and renamed; the checkpoint is a single file, so the
//! weights and the optimizer state it holds always belong to the same epoch. One process at a time
//! trains in a folder ([`RunDir::lock`]).
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use remanence_cells::{io, ParamStore, SequenceModel};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::learner::Learner;

pub const CONFIG: &str = "config.json";
pub const MODEL: &str = "model.safetensors";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const METRICS: &str = "metrics.jsonl";
/// The weights of the epoch with the best validation value (tasks with a validation part).
pub const BEST: &str = "best.safetensors";
/// Numbers the task fitted on its training split (normalisation statistics), by name.
pub const TASK_STATISTICS: &str = "task.json";
/// The advisory lock a training process holds on its run folder.
pub const LOCK: &str = "run.lock";

/// The lock on a run folder, held while one process trains in it; released when dropped or when
/// the process dies (an advisory `flock`, so a killed process never leaves a stale lock).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// Where a run stands; stored in the checkpoint's metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub epochs_completed: usize,
    pub sequences_seen: u64,
    pub optimizer_steps: u64,
    /// Training sequences seen when the task first counted as solved.
    pub solved_at_sequences: Option<u64>,
    /// No more epochs to run (epoch budget spent or stopped early).
    pub finished: bool,
    /// The early-stop criterion ended the run (raising the epoch budget does not restart it).
    #[serde(default)]
    pub stopped_early: bool,
    /// The epoch with the best validation value so far, for tasks that select on one
    /// (its weights are `best.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestEpoch>,
}

/// The epoch a task's validation value picked, and its test metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    pub epoch: usize,
    /// The selecting value's name and value, e.g. `valid_accuracy` 0.98.
    pub selected_by: String,
    pub value: f64,
    /// The task's headline metric at that epoch.
    pub metric_name: String,
    pub metric: f64,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    pub params: HashMap<String, Tensor>,
    pub optimizer: HashMap<String, Tensor>,
    pub state: TrainerState,
}

#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

/// Parses and checks the text of a `config.json` (`path` only names it in errors).
pub fn parse_config(text: &str, path: &Path) -> Result<RunConfig> {
    let cfg: RunConfig = serde_json::from_str(text)
        .map_err(|e| run_err(path, format!("invalid run configuration: {e}")))?;
    cfg.model
        .validate()
        .map_err(|e| run_err(path, e.to_string()))?;
    cfg.dtype().map_err(|e| run_err(path, e.to_string()))?;
    Ok(cfg)
}

/// Builds the model of `cfg` from loaded tensors, which must match it exactly (`path` names
/// their file in errors).
pub fn model_from_tensors(
    cfg: &RunConfig,
    tensors: HashMap<String, Tensor>,
    path: &Path,
    device: &Device,
) -> Result<(SequenceModel, ParamStore)> {
    let dtype = cfg.dtype()?;
    let store = ParamStore::from_tensors(io::cast_all(tensors, dtype)?, path)?;
    let model = SequenceModel::from_store(&cfg.model, &store, dtype, device)?;
    Ok((model, store))
}

/// Decodes the bytes of a `checkpoint.safetensors` (`path` only names it in errors).
pub fn decode_checkpoint(
    bytes: &[u8],
    path: &Path,
    dtype: DType,
    device: &Device,
) -> Result<Checkpoint> {
    let p = path;
    let (tensors, meta) = io::decode(bytes, p, device)?;
    let state: TrainerState = meta
        .get("trainer_state")
        .ok_or_else(|| run_err(&p, "checkpoint has no trainer_state metadata"))
        .and_then(|s| {
            serde_json::from_str(s).map_err(|e| run_err(&p, format!("bad trainer_state: {e}")))
        })?;
    let (mut params, mut optimizer) = (HashMap::new(), HashMap::new());
    for (k, v) in io::cast_all(tensors, dtype)? {
        if let Some(n) = k.strip_prefix("model.") {
            params.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("optim.") {
            optimizer.insert(n.to_string(), v);
        } else {
            return Err(run_err(
                &p,
                format!("unexpected tensor `{k}` in checkpoint"),
            ));
        }
    }
    Ok(Checkpoint {
        params,
        optimizer,
        state,
    })
}

fn run_err(path: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Run {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

impl RunDir {
    /// Creates `root/name`, or `root/name-2`, `root/name-3`, … if taken.
    pub fn create_new(root: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| run_err(root, format!("cannot create: {e}")))?;
        for k in 1.. {
            let candidate = if k == 1 {
                root.join(name)
            } else {
                root.join(format!("{name}-{k}"))
            };
            match std::fs::create_dir(&candidate) {
                Ok(()) => return Ok(Self { path: candidate }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(run_err(&candidate, format!("cannot create: {e}"))),
            }
        }
        unreachable!()
    }

    /// Opens an existing run folder (it must hold `config.json`).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.is_dir() {
            return Err(run_err(path, "no such run folder"));
        }
        if !path.join(CONFIG).is_file() {
            return Err(run_err(
                path,
                format!("not a run folder: it has no {CONFIG}"),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the folder's lock, or says which process holds it. Then removes the temporary
    /// files (`*.tmp`) of writers that died mid-write: with the lock held, no other writer is
    /// alive.
    pub fn lock(&self) -> Result<RunLock> {
        let p = self.file(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(|e| run_err(&p, format!("cannot open the lock file: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&p).unwrap_or_default();
                let holder = holder.trim();
                return Err(run_err(
                    &self.path,
                    format!(
                        "another process is training in this run folder (pid {}); wait for \
                         it to finish or stop it",
                        if holder.is_empty() { "unknown" } else { holder }
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(run_err(&p, format!("cannot lock: {e}")))
            }
        }
        use std::io::{Seek, SeekFrom};
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| run_err(&p, format!("cannot write the lock file: {e}")))?;
        self.remove_stale_temporaries()?;
        Ok(RunLock { _file: file })
    }

    /// Removes `*.tmp` files left by writers killed mid-write. Call it with the lock held.
    fn remove_stale_temporaries(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| run_err(&self.path, format!("cannot list: {e}")))?;
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".tmp") {
                std::fs::remove_file(e.path()).map_err(|err| {
                    run_err(
                        &e.path(),
                        format!("cannot remove a stale temporary file: {err}"),
                    )
                })?;
            }
        }
        Ok(())
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_config(&self, cfg: &RunConfig) -> Result<()> {
        let json = serde_json::to_string_pretty(cfg).expect("config serialises");
        io::write_atomic(&self.file(CONFIG), format!("{json}\n").as_bytes())?;
        Ok(())
    }

    pub fn read_config(&self) -> Result<RunConfig> {
        let p = self.file(CONFIG);
        let text =
            std::fs::read_to_string(&p).map_err(|e| run_err(&p, format!("cannot read: {e}")))?;
        parse_config(&text, &p)
    }

    /// Writes `model.safetensors` with the run configuration in its metadata.
    pub fn write_model(&self, store: &ParamStore, cfg: &RunConfig) -> Result<()> {
        self.write_weights(MODEL, store, cfg)
    }

    /// Writes the weights as `name` (`model.safetensors`, `best.safetensors`), with the run
    /// configuration in the metadata.
    pub fn write_weights(&self, name: &str, store: &ParamStore, cfg: &RunConfig) -> Result<()> {
        let meta = HashMap::from([(
            "remanence_config".to_string(),
            serde_json::to_string(cfg).expect("config serialises"),
        )]);
        io::write(&self.file(name), &store.tensors(), Some(meta))?;
        Ok(())
    }

    /// Loads the model of this run from `model.safetensors` (weights must match the configuration).
    pub fn load_model(
        &self,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<(SequenceModel, ParamStore)> {
        self.load_weights(MODEL, cfg, device)
    }

    /// Loads the model from the weights file `name` of this run (`model.safetensors`,
    /// `best.safetensors`).
    pub fn load_weights(
        &self,
        name: &str,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<(SequenceModel, ParamStore)> {
        let p = self.file(name);
        let (tensors, _) = io::read(&p, device)?;
        model_from_tensors(cfg, tensors, &p, device)
    }

    pub fn write_checkpoint(
        &self,
        store: &ParamStore,
        learner: &dyn Learner,
        state: &TrainerState,
    ) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = store
            .tensors()
            .into_iter()
            .map(|(k, v)| (format!("model.{k}"), v))
            .collect();
        tensors.extend(
            learner
                .state()
                .into_iter()
                .map(|(k, v)| (format!("optim.{k}"), v)),
        );
        let meta = HashMap::from([(
            "trainer_state".to_string(),
            serde_json::to_string(state).expect("state serialises"),
        )]);
        io::write(&self.file(CHECKPOINT), &tensors, Some(meta))?;
        Ok(())
    }

    /// Reads the checkpoint, or `None` if the run has none yet.
    pub fn read_checkpoint(&self, dtype: DType, device: &Device) -> Result<Option<Checkpoint>> {
        let p = self.file(CHECKPOINT);
        if !p.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&p).map_err(|e| run_err(&p, format!("cannot read: {e}")))?;
        decode_checkpoint(&bytes, &p, dtype, device).map(Some)
    }

    /// Writes `task.json`: the statistics the task fitted on its training split.
    pub fn write_task_statistics(&self, stats: &[(String, Vec<f64>)]) -> Result<()> {
        let map: std::collections::BTreeMap<&str, &Vec<f64>> =
            stats.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let json = serde_json::to_string_pretty(&map).expect("statistics serialise");
        io::write_atomic(&self.file(TASK_STATISTICS), format!("{json}\n").as_bytes())?;
        Ok(())
    }

    /// Reads `task.json`, or `None` when the run has none.
    pub fn read_task_statistics(&self) -> Result<Option<Vec<(String, Vec<f64>)>>> {
        let p = self.file(TASK_STATISTICS);
        if !p.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(&p).map_err(|e| run_err(&p, format!("cannot read: {e}")))?;
        let map: std::collections::BTreeMap<String, Vec<f64>> =
            serde_json::from_str(&text).map_err(|e| run_err(&p, format!("not valid: {e}")))?;
        Ok(Some(map.into_iter().collect()))
    }

    /// Appends one JSON line to `metrics.jsonl`.
    pub fn append_metrics<T: Serialize>(&self, record: &T) -> Result<()> {
        let p = self.file(METRICS);
        let line = serde_json::to_string(record).expect("record serialises");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(|e| run_err(&p, format!("cannot open: {e}")))?;
        writeln!(f, "{line}")
            .and_then(|_| f.sync_data())
            .map_err(|e| run_err(&p, format!("cannot write: {e}")))
    }

    /// Keeps only the metric lines of epochs ≤ `epochs` (after a resume from an earlier checkpoint,
    /// or a crash between the metrics line and the checkpoint). Unparsable lines are dropped.
    pub fn truncate_metrics(&self, epochs: usize) -> Result<()> {
        let p = self.file(METRICS);
        let Ok(text) = std::fs::read_to_string(&p) else {
            return Ok(());
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("epoch").and_then(|e| e.as_u64()))
                    .is_some_and(|e| e as usize <= epochs)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        io::write_atomic(&p, out.as_bytes())?;
        Ok(())
    }
}
