pub mod bench;
pub mod continual;
pub mod data;
pub mod eval;
pub mod infer;
pub mod memory;
pub mod probe;
pub mod reverse;
pub mod sample;
pub mod train;
pub mod world;

mod footprint;

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use remanence_cells::{device::parse_device, ParamStore, SequenceModel};
use remanence_train::{RunConfig, RunDir};

/// A saved run, loaded for use.
pub struct LoadedRun {
    pub cfg: RunConfig,
    pub device: Device,
    pub model: SequenceModel,
    pub store: ParamStore,
}

pub fn load_run(path: &Path) -> Result<LoadedRun> {
    load_run_with_data(path, None)
}

/// Loads a run; `data` replaces the folder of its data set (a run moved to another machine).
pub fn load_run_with_data(path: &Path, data: Option<&Path>) -> Result<LoadedRun> {
    load_run_weights(path, data, remanence_train::run_dir::MODEL)
}

/// Loads a run with the weights of the file `weights` in its folder (`model.safetensors`, or
/// `best.safetensors` for the best-validation epoch).
pub fn load_run_weights(path: &Path, data: Option<&Path>, weights: &str) -> Result<LoadedRun> {
    let dir = RunDir::open(path)?;
    let mut cfg = dir.read_config()?;
    if let Some(d) = data {
        cfg.task.data_dir = Some(crate::settings::data_dir_for(cfg.task.kind, d)?);
    }
    cfg.model.rnn.threads = crate::kernel_threads();
    let device =
        parse_device(&cfg.device).with_context(|| format!("device of run {}", path.display()))?;
    check_memory(&cfg)?;
    if !dir.file(weights).exists() {
        bail!(
            "{}: no such file{}",
            dir.file(weights).display(),
            if weights == remanence_train::run_dir::BEST {
                " (only tasks with a validation part keep the best-validation weights)"
            } else {
                ""
            }
        );
    }
    let (model, store) = dir.load_weights(weights, &cfg, &device)?;
    Ok(LoadedRun {
        cfg,
        device,
        model,
        store,
    })
}

/// Refuses a configuration whose model and training batch would not fit in this machine's
/// available memory, with the estimate (before anything is allocated: an allocation that fails
/// aborts the process).
pub fn check_memory(cfg: &RunConfig) -> Result<()> {
    let need = footprint::training_bytes(cfg);
    if let Some(avail) = footprint::available_bytes() {
        if need > avail {
            bail!(
                "the model ({} parameters) and a training batch need about {} of memory, and this \
                 machine has {} available; choose a smaller --hidden, --layers or --batch-size",
                footprint::parameters(&cfg.model),
                footprint::human(need),
                footprint::human(avail)
            );
        }
    }
    Ok(())
}
/// One line describing a model.
pub fn describe(cfg: &RunConfig, params: usize) -> String {
    let r = &cfg.model.rnn;
    format!(
        "{} · {} (hidden {}, {} layer{}, {} parameters, {}) · seed {}",
        cfg.task.kind,
        r.cell,
        r.hidden_size,
        r.num_layers,
        if r.num_layers == 1 { "" } else { "s" },
        params,
        cfg.dtype,
        cfg.train.seed
    )
}

/// Compares the statistics a task fitted now with those the run stored when it began (its data
/// changed if they differ: the model was trained on other inputs). Runs from before `task.json`
/// existed have none to compare.
pub fn check_task_statistics(dir: &RunDir, now: &[(String, Vec<f64>)]) -> Result<()> {
    let Some(stored) = dir.read_task_statistics()? else {
        return Ok(());
    };
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-9 * (1.0 + y.abs()))
    };
    let same = stored.len() == now.len()
        && stored
            .iter()
            .zip(now)
            .all(|((ka, a), (kb, b))| ka == kb && close(a, b));
    if !same {
        bail!(
            "{}: the task's data gives other normalisation statistics than when the run began; \
             the data set changed (check it with `remanence data verify`)",
            dir.file(remanence_train::run_dir::TASK_STATISTICS)
                .display()
        );
    }
    Ok(())
}
