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
//! | `model.safetensors` | the model after the last experience |
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
    let mut state = MethodState::new(method, cfg.train.seed);
    for k in 0..n {
        let start = Instant::now();
        let exp = match method {
            Method::Joint => scenario.cumulative(k),
            _ => scenario.experiences[k].clone(),
        };
        let sub = RunDir::create_new(run.path(), &format!("exp-{k:02}"))?;
        let trainer = Trainer::from_model(cfg.clone(), &exp, sub, device.clone(), model, store)?
            .with_learner(state.learner(cfg));
        let mut trainer = trainer;
        trainer.run(observer)?;
        (model, store, _) = trainer.into_parts();
        state.after_experience(&scenario.experiences[k], &model, &store, cfg, device)?;
        let row = score_all(&model, scenario, cfg, device)?;
        let record = ExperienceRecord {
            experience: k,
            acc_seen: row[..=k].iter().sum::<f64>() / (k + 1) as f64,
            accuracies: row.clone(),
            train_sequences: remanence_tasks::SequenceTask::train_len(&exp),
            seconds: start.elapsed().as_secs_f64(),
        };
        matrix.push_row(row)?;
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

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialises");
    io::write_atomic(path, format!("{text}\n").as_bytes()).map_err(|e| ContinualError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}
