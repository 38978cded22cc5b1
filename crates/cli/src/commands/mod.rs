pub mod bench;
pub mod eval;
pub mod infer;
pub mod sample;
pub mod train;

use std::path::Path;

use anyhow::{Context, Result};
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
    let dir = RunDir::open(path)?;
    let cfg = dir.read_config()?;
    let device =
        parse_device(&cfg.device).with_context(|| format!("device of run {}", path.display()))?;
    let (model, store) = dir.load_model(&cfg, &device)?;
    Ok(LoadedRun {
        cfg,
        device,
        model,
        store,
    })
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
