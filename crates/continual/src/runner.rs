//! One scenario run, end to end, into a run folder:
//!
//! | file | content |
//! |---|---|
//! | `config.json` | the run configuration (model, base task, training settings per experience) |
//! | `continual.json` | scenario, method, class order and the experiences' classes |
//! | `exp-NN/` | the ordinary run folder of experience NN (its config, checkpoint, epoch metrics) |
//! | `metrics.jsonl` | one record per experience: the accuracy on every experience after it, time |
//! | `matrix.json`, `summary.json` | the accuracy matrix, with the row before any training; ACC, BWT, FWT, forgetting |
//! | `heatmap.png`, `acc.png` (+ `.md` beside each) | the matrix as a heatmap; mean accuracy over seen experiences after each |
//! | `model.safetensors` | the model after the last experience (dual-net: NET1) |
//! | `net2.safetensors`, `net2-matrix.json` | dual-net: NET2 after the last transfer, and its accuracy matrix |
//!
//! Before any training the untrained model is scored on every experience (the row that forward
//! transfer is measured against); after experience i it is scored on all of them (row i).
use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use remanence_cells::{io, SequenceModel};
use remanence_train::trainer::Observer;
use remanence_train::{RunConfig, RunDir, Trainer};
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};
use crate::matrix::AccuracyMatrix;
use crate::plots;
use crate::scenario::Scenario;
use crate::strategy::{Method, MethodState};
use crate::task_il::TaskIlPlugin;
use remanence_train::Plugin;

/// What `continual.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContinualInfo {
    pub scenario: String,
    pub method: String,
    pub class_order: Vec<usize>,
    pub experience_classes: Vec<Vec<usize>>,
}

/// One line of the scenario's `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperienceRecord {
    /// 0-based experience just learned.
    pub experience: usize,
    /// Accuracy on every experience's test set after it (row `experience` of the matrix).
    pub accuracies: Vec<f64>,
    /// Mean accuracy over the experiences seen so far.
    pub acc_seen: f64,
    pub train_sequences: usize,
    pub seconds: f64,
    /// Peak resident memory of the process during the experience, MiB (Linux; `None` elsewhere).
    #[serde(default)]
    pub peak_rss_mib: Option<f64>,
    /// dual-net: NET2's accuracy on every experience after the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net2_accuracies: Option<Vec<f64>>,
    /// dual-net: the transfer's loss per epoch, patterns and time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<crate::dual::TransferReport>,
}

/// Starts a new peak-memory window (Linux: resets the process's VmHWM).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory since the last reset, MiB.
fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Scores `model` on every experience of `scenario`.
pub fn score_all(
    model: &SequenceModel,
    scenario: &Scenario,
    cfg: &RunConfig,
    device: &Device,
) -> Result<Vec<f64>> {
    let dtype = cfg.dtype()?;
    scenario
        .experiences
        .iter()
        .map(|e| {
            e.accuracy(cfg.train.eval_batch_size, dtype, device, &mut |b| {
                model
                    .forward(&b.x, None, b.dt.as_ref())
                    .map(|(y, _)| y)
                    .map_err(|e| remanence_tasks::TaskError::Data(e.to_string()))
            })
        })
        .collect()
}

/// Runs `method` over `scenario` in the run folder `run` (already created), `cfg.train.epochs`
/// epochs per experience; `report` hears about each experience as it ends.
pub fn run(
    cfg: &RunConfig,
    scenario: &Scenario,
    method: Method,
    run: &RunDir,
    device: &Device,
    observer: &mut dyn Observer,
    report: &mut dyn FnMut(&ExperienceRecord),
) -> Result<AccuracyMatrix> {
    let mut cfg = cfg.clone();
    if let Method::DualNet(o) = method {
        // Both networks carry the auto-associative head their pseudo-patterns need.
        cfg.model.autoassoc = Some(o.kind.autoassoc());
    }
    let cfg = &cfg;
    let dtype = cfg.dtype()?;
    let info = ContinualInfo {
        scenario: scenario.spec.to_string(),
        method: method.name().into(),
        class_order: scenario.class_order.clone(),
        experience_classes: scenario
            .experiences
            .iter()
            .map(|e| e.classes.clone())
            .collect(),
    };
    write_json(&run.file("continual.json"), &info)?;
    run.write_config(cfg)?;
    let (mut model, mut store) = SequenceModel::init(&cfg.model, cfg.train.seed, dtype, device)?;
    let n = scenario.experiences.len();
    let initial = score_all(&model, scenario, cfg, device)?;
    let mut matrix = AccuracyMatrix {
        experiences: n,
        initial: initial.into_iter().map(Some).collect(),
        rows: Vec::new(),
    };
    write_json(&run.file("matrix.json"), &matrix)?;
    let mut state = MethodState::new(method, cfg, device)?;
    let mut net2_matrix = state.dual.is_some().then(|| matrix.clone());
    for k in 0..n {
        let start = Instant::now();
        reset_peak_memory();
        if let Some(d) = &state.dual {
            if d.options.reset && k > 0 {
                (model, store) = SequenceModel::init(
                    &cfg.model,
                    cfg.train.seed + 1000 * k as u64,
                    dtype,
                    device,
                )?;
            }
        }
        let exp = match method {
            Method::Joint => scenario.cumulative(k),
            _ => scenario.experiences[k].clone(),
        };
        let sub = RunDir::create_new(run.path(), &format!("exp-{k:02}"))?;
        let mask = exp
            .task_mask()
            .map(|m| Box::new(TaskIlPlugin::new(m)) as Box<dyn Plugin>);
        let learner = state.learner(cfg, k, &scenario.experiences[k], mask)?;
        let trainer = Trainer::from_model(cfg.clone(), &exp, sub, device.clone(), model, store)?
            .with_learner(learner);
        let mut trainer = trainer;
        trainer.run(observer)?;
        (model, store, _) = trainer.into_parts();
        state.after_experience(&scenario.experiences[k], &model, &store, cfg, device)?;
        let row = score_all(&model, scenario, cfg, device)?;
        let net2_row = match &state.dual {
            Some(d) => {
                let net2 = d.net2.lock().expect("NET2");
                Some(score_all(&net2, scenario, cfg, device)?)
            }
            None => None,
        };
        let record = ExperienceRecord {
            experience: k,
            acc_seen: row[..=k].iter().sum::<f64>() / (k + 1) as f64,
            accuracies: row.clone(),
            train_sequences: remanence_tasks::SequenceTask::train_len(&exp),
            seconds: start.elapsed().as_secs_f64(),
            peak_rss_mib: peak_memory_mib(),
            net2_accuracies: net2_row.clone(),
            transfer: state.last_transfer.take(),
        };
        if let (Some(t), Some(d)) = (&record.transfer, &state.dual) {
            if let Some(x) = &t.sample {
                let png = run.file(&format!("exp-{k:02}/pseudo-patterns.png"));
                pseudo_png(x, &d.range, &png)?;
            }
        }
        matrix.push_row(row)?;
        if let (Some(m), Some(r), Some(d)) = (&mut net2_matrix, net2_row, &state.dual) {
            m.push_row(r)?;
            write_json(&run.file("net2-matrix.json"), m)?;
            run.write_weights("net2.safetensors", &d.net2_store, cfg)?;
        }
        run.append_metrics(&record)?;
        write_json(&run.file("matrix.json"), &matrix)?;
        write_json(&run.file("summary.json"), &matrix.summary())?;
        plots::heatmap_png(&matrix, &run.file("heatmap.png"))?;
        plots::acc_curve_png(
            &[(method.name().to_string(), matrix.acc_seen_curve())],
            &run.file("acc.png"),
        )?;
        run.write_model(&store, cfg)?;
        report(&record);
    }
    Ok(matrix)
}

/// Draws pseudo-patterns (P, T, F) or transitions (P, F) as grey tiles over the data's range.
fn pseudo_png(
    x: &candle_core::Tensor,
    range: &crate::reverberation::InputRange,
    path: &Path,
) -> Result<()> {
    let x = match x.rank() {
        2 => x.unsqueeze(1)?,
        _ => x.clone(),
    };
    let (_, t, f) = x.dims3()?;
    let rows: Vec<Vec<f32>> = x
        .to_dtype(candle_core::DType::F32)?
        .reshape((x.dim(0)?, t * f))?
        .to_vec2()?;
    let lo = range.min.iter().cloned().fold(f64::INFINITY, f64::min) as f32;
    let hi = range.max.iter().cloned().fold(f64::NEG_INFINITY, f64::max) as f32;
    plots::patterns_png(&rows, t, f, (lo, hi), path)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialises");
    io::write_atomic(path, format!("{text}\n").as_bytes()).map_err(|e| ContinualError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}
