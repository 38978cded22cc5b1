//! `remanence memory classify`: the feature bridge of issue #13. A trained run's recurrent
//! network is a fixed feature extractor; a product quantiser turns its features into codes of P
//! segments × K anchors, and a binary bipartite memory learns the classes one at a time by
//! OR-ing edges (no retraining), beside three comparisons on the raw features.
//!
//! 1. The run's model and task are loaded (`--data` replaces the stored data folder, as in
//!    `remanence eval`); only tasks that classify whole sequences (objectives `class-last-step`
//!    and `class-mean-over-time`) are accepted.
//! 2. Per sequence, one feature vector (no gradient), respecting each sequence's real length
//!    (`Batch::lengths`, padding after the end): `final-state` (the state of every layer after
//!    the last real step, [`remanence_cells::RnnState::flatten`]: h of every layer, then c of
//!    every layer for the LSTM), `final-output` (the top layer's output at the last real step,
//!    what the read-out head sees), `mean-output` (that output averaged over the real steps) or
//!    `layer:K` (h of layer K, counted from 1 at the bottom, after the last real step).
//!    The states at each sequence's own last step come from running each batch in pieces that
//!    end at its distinct lengths, each piece starting from the state the previous one ended in.
//! 3. Product quantisation (`--segments` P, `--anchors` K, k-means or sampled anchors) fitted
//!    on the training features of every class, then every training and test vector encoded.
//! 4. Classes are added one at a time (`--order natural|shuffled`). After each addition, every
//!    test sequence of the classes added so far is classified by (a) the bipartite memory
//!    (the new class's training codes OR-ed in; nothing else changes), (b) the nearest class
//!    mean on the raw features, (c) a softmax read-out fine-tuned by gradient steps on the new
//!    class's training features only (the naive incremental baseline, which forgets), and
//!    (d) a softmax read-out trained from scratch on the training features of every class
//!    added so far (joint training, the reference). The read-outs see the features
//!    standardised with the training set's per-coordinate mean and deviation.
//!    The read-outs of step k (k classes added) draw their minibatch order from seed + k.
//! 5. A table on standard output; `classify.json` (settings, accuracies per step, timings),
//!    `classify.png` (accuracy against classes added) and `classify.md` (what the picture
//!    shows, with the numbers) in a new folder `--out`, built under a temporary name beside it
//!    and renamed into place.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use clap::{Args, ValueEnum};
use plotters::prelude::*;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_cells::{CellKind, Recurrent, SequenceModel};
use remanence_memory::bipartite::BipartiteMemory;
use remanence_memory::ncm::NearestClassMean;
use remanence_memory::quantize::{AnchorMethod, PqSettings, ProductQuantizer};
use remanence_memory::readout::{SgdSettings, SoftmaxReadout};
use remanence_memory::MemoryError;
use remanence_tasks::{build_task, Objective, SequenceTask, Split};
use serde::Serialize;

/// What one sequence's feature vector is, and its extraction at each sequence's real length:
/// shared with the continual-learning method `assoc-memory` (crates/continual/src/assoc.rs).
pub use remanence_continual::assoc::{batch_features, FeatureKind};

fn parse_features(s: &str) -> std::result::Result<FeatureKind, String> {
    match s.trim() {
        "final-state" => Ok(FeatureKind::FinalState),
        "final-output" => Ok(FeatureKind::FinalOutput),
        "mean-output" => Ok(FeatureKind::MeanOutput),
        t => match t.strip_prefix("layer:") {
            Some(k) => match k.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(FeatureKind::Layer(k)),
                _ => Err(format!(
                    "`{t}`: layer:K needs a layer number K ≥ 1 (1 is the bottom layer)"
                )),
            },
            None => Err(format!(
                "`{t}` is not a feature; choose final-state, final-output, mean-output or \
                 layer:K (K from 1)"
            )),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum AnchorsFrom {
    /// Per-segment k-means (k-means++ seeding, then Lloyd iterations).
    Kmeans,
    /// K training sub-vectors drawn per segment ("product random sampling").
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Order {
    /// Ascending class index.
    Natural,
    /// An order drawn from --seed.
    Shuffled,
}

#[derive(Args)]
pub struct ClassifyArgs {
    /// The run folder whose recurrent network extracts the features.
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Folder of the data set, replacing the one stored in the run (a run moved elsewhere).
    #[arg(long, visible_alias = "task-data", value_name = "DIR")]
    data: Option<PathBuf>,
    /// The feature of each sequence: final-state (every layer's state after the last real
    /// step), final-output (the top layer's output there), mean-output (averaged over the real
    /// steps) or layer:K (h of layer K, from 1 at the bottom).
    #[arg(long, default_value = "final-state", value_parser = parse_features)]
    features: FeatureKind,
    /// P, the segments the features are split into.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true, value_parser = super::positive)]
    segments: usize,
    /// K, the anchors of each segment.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = super::positive)]
    anchors: usize,
    /// How the anchors are learnt.
    #[arg(long, value_enum, default_value = "kmeans")]
    anchors_from: AnchorsFrom,
    /// Lloyd iterations of the k-means (at most).
    #[arg(long, default_value_t = 25, allow_negative_numbers = true, value_parser = super::positive)]
    kmeans_iterations: usize,
    /// The order in which classes are added.
    #[arg(long, value_enum, default_value = "natural")]
    order: Order,
    /// Training sequences per class (the first N of each class in the split; default: all).
    #[arg(long, allow_negative_numbers = true, value_parser = super::positive)]
    train_per_class: Option<usize>,
    /// Test sequences per class (the first N of each class in the split; default: all).
    #[arg(long, allow_negative_numbers = true, value_parser = super::positive)]
    test_per_class: Option<usize>,
    /// Seed of the anchors, the class order and the read-outs' minibatches.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::seed)]
    seed: u64,
    /// Epochs of the read-out fine-tuned on each new class's training features.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = super::positive)]
    fine_tune_epochs: usize,
    /// Epochs of the read-out trained jointly on every class added so far (from scratch at
    /// each step).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = super::positive)]
    joint_epochs: usize,
    /// Learning rate of the softmax read-outs (plain gradient steps).
    #[arg(long, default_value_t = 0.05)]
    readout_lr: f64,
    /// Examples per gradient step of the softmax read-outs.
    #[arg(long, default_value_t = 32, allow_negative_numbers = true, value_parser = super::positive)]
    readout_batch_size: usize,
    /// Sequences per batch of the feature extraction (default: the run's evaluation batch).
    #[arg(long, allow_negative_numbers = true, value_parser = super::positive)]
    batch_size: Option<usize>,
    /// The folder to create (it must not exist, or be empty); default:
    /// RUN_DIR/classify-FEATURES-pP-kK-ANCHORS-sSEED.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

const JSON: &str = "classify.json";
const PNG: &str = "classify.png";

/// One feature vector per sequence, row-major, with the sequences' classes.
struct Features {
    dim: usize,
    rows: Vec<f64>,
    labels: Vec<usize>,
}

impl Features {
    fn row(&self, i: usize) -> &[f64] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows of class `c`, row-major.
    fn of_class(&self, c: usize) -> Vec<f64> {
        (0..self.labels.len())
            .filter(|&i| self.labels[i] == c)
            .flat_map(|i| self.row(i).iter().copied())
            .collect()
    }
}

/// `f` standardised with the per-coordinate mean and deviation of `by` (a coordinate that
/// does not vary is only centred).
fn standardised(f: &Features, by: &Features) -> Features {
    let d = by.dim;
    let n = by.labels.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for row in by.rows.chunks_exact(d) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / n;
        }
    }
    let mut sd = vec![0.0; d];
    for row in by.rows.chunks_exact(d) {
        for ((s, v), m) in sd.iter_mut().zip(row).zip(&mean) {
            *s += (v - m) * (v - m) / n;
        }
    }
    let sd: Vec<f64> = sd
        .into_iter()
        .map(|v| if v.sqrt() > 1e-12 { v.sqrt() } else { 1.0 })
        .collect();
    Features {
        dim: d,
        rows: f
            .rows
            .chunks_exact(d)
            .flat_map(|row| {
                row.iter()
                    .zip(&mean)
                    .zip(&sd)
                    .map(|((v, m), s)| (v - m) / s)
                    .collect::<Vec<_>>()
            })
            .collect(),
        labels: f.labels.clone(),
    }
}

/// The class of every sequence of `split`: the task's labels, else the batches' targets.
fn split_labels(
    task: &dyn SequenceTask,
    split: Split,
    batch_size: usize,
    dtype: DType,
    device: &Device,
) -> Result<Vec<usize>> {
    let n = task.len(split);
    if let Some(labels) = (0..n)
        .map(|i| task.label(split, i))
        .collect::<Option<Vec<_>>>()
    {
        return Ok(labels);
    }
    let idx: Vec<usize> = (0..n).collect();
    let mut labels = Vec::with_capacity(n);
    for chunk in idx.chunks(batch_size) {
        let b = task.batch(split, chunk, dtype, device)?;
        let y: Vec<u32> = b.target.to_dtype(DType::U32)?.to_vec1()?;
        labels.extend(y.into_iter().map(|v| v as usize));
    }
    Ok(labels)
}

/// The first `per_class` indices of each class, in split order (all when `None`).
fn select(labels: &[usize], per_class: Option<usize>) -> Vec<usize> {
    let mut seen = std::collections::BTreeMap::<usize, usize>::new();
    (0..labels.len())
        .filter(|&i| {
            let n = seen.entry(labels[i]).or_insert(0);
            *n += 1;
            per_class.is_none_or(|p| *n <= p)
        })
        .collect()
}

/// The features of the sequences `indices` of `split`, in batches of `batch_size`.
#[allow(clippy::too_many_arguments)]
fn extract(
    model: &SequenceModel,
    task: &dyn SequenceTask,
    split: Split,
    indices: &[usize],
    kind: FeatureKind,
    batch_size: usize,
    dtype: DType,
    device: &Device,
) -> Result<Features> {
    let mut rows = Vec::new();
    let mut labels = Vec::with_capacity(indices.len());
    let mut dim = 0;
    for chunk in indices.chunks(batch_size) {
        let b = task.batch(split, chunk, dtype, device)?;
        let y: Vec<u32> = b.target.to_dtype(DType::U32)?.to_vec1()?;
        if y.len() != chunk.len() {
            bail!(
                "the task's batch has {} targets for {} sequences (not one class per sequence)",
                y.len(),
                chunk.len()
            );
        }
        labels.extend(y.into_iter().map(|v| v as usize));
        for r in batch_features(model, &b.x, b.dt.as_ref(), &b.lengths, kind)? {
            dim = r.len();
            rows.extend(r);
        }
    }
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        bail!(
            "the model gives a non-finite feature ({}) for {:?} sequence {} of those selected",
            rows[i],
            split,
            i / dim.max(1)
        );
    }
    Ok(Features { dim, rows, labels })
}

#[derive(Serialize)]
struct Settings {
    features: String,
    segments: usize,
    anchors: usize,
    anchors_from: AnchorsFrom,
    kmeans_iterations: Option<usize>,
    order: Order,
    train_per_class: Option<usize>,
    test_per_class: Option<usize>,
    seed: u64,
    fine_tune: SgdSettings,
    joint: SgdSettings,
    /// The read-outs see the features standardised with the per-coordinate mean and deviation
    /// of the training features (the set the quantiser is fitted on); NCM sees them raw.
    readout_inputs: &'static str,
    batch_size: usize,
    threads: Option<usize>,
}

#[derive(Serialize)]
struct ModelInfo {
    run: PathBuf,
    task: String,
    objective: Objective,
    cell: CellKind,
    hidden_size: usize,
    num_layers: usize,
    dtype: String,
}

#[derive(Serialize)]
struct Step {
    classes_added: usize,
    /// The class added at this step.
    class: usize,
    train_sequences: usize,
    /// Test sequences of the classes added so far (what the accuracies are measured on).
    test_sequences: usize,
    /// `None` when there is no test sequence to score.
    memory_accuracy: Option<f64>,
    ncm_accuracy: Option<f64>,
    fine_tune_accuracy: Option<f64>,
    joint_accuracy: Option<f64>,
    /// Edges from the new class's neuron, and their share of the P·K input neurons.
    memory_edges: u32,
    memory_edge_density: f64,
    memory_store_s: f64,
    fine_tune_s: f64,
    joint_s: f64,
    /// Scoring the test sequences by all four methods.
    score_s: f64,
}

#[derive(Serialize)]
struct Timings {
    feature_extraction_train_s: f64,
    feature_extraction_test_s: f64,
    pq_fit_s: f64,
    pq_encode_s: f64,
    memory_store_s_per_class: Vec<f64>,
    memory_store_total_s: f64,
    total_s: f64,
}

#[derive(Serialize)]
struct Report {
    model: ModelInfo,
    settings: Settings,
    feature_dim: usize,
    train_sequences: usize,
    test_sequences: usize,
    /// Classes in the order they were added.
    class_order: Vec<usize>,
    /// Mean squared quantisation error of the training features (per coordinate).
    pq_train_mse: f64,
    steps: Vec<Step>,
    timings: Timings,
    warnings: Vec<String>,
}

/// `--out`, or the default folder inside the run.
fn out_folder(a: &ClassifyArgs) -> PathBuf {
    a.out.clone().unwrap_or_else(|| {
        let f = a.features.name().replace(':', "");
        let m = match a.anchors_from {
            AnchorsFrom::Kmeans => "kmeans",
            AnchorsFrom::Sample => "sample",
        };
        a.run.join(format!(
            "classify-{f}-p{}-k{}-{m}-s{}",
            a.segments, a.anchors, a.seed
        ))
    })
}

/// Refuses an existing `out` that is not an empty folder.
fn check_out(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .with_context(|| format!("cannot read {}", out.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not an empty folder; nothing was overwritten (choose \
                 another --out)",
                out.display()
            );
        }
    }
    Ok(())
}

fn accuracy(right: usize, total: usize) -> Option<f64> {
    (total > 0).then(|| right as f64 / total as f64)
}

fn seconds(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

pub fn run(a: ClassifyArgs) -> Result<()> {
    remanence_train::stack::with_deep_stack(move || classify(a))
}

fn classify(a: ClassifyArgs) -> Result<()> {
    let started = Instant::now();
    if !(a.readout_lr.is_finite() && a.readout_lr > 0.0) {
        bail!(
            "--readout-lr must be a positive number, got {}",
            a.readout_lr
        );
    }
    let out = out_folder(&a);
    check_out(&out)?;
    let r = crate::commands::load_run_with_data(&a.run, a.data.as_deref())?;
    let rc = &r.cfg.model.rnn;
    let dim = match a.features {
        FeatureKind::Layer(k) if k > rc.num_layers => bail!(
            "--features layer:{k}: the model of {} has {} layer{} (layer:1 to layer:{})",
            a.run.display(),
            rc.num_layers,
            if rc.num_layers == 1 { "" } else { "s" },
            rc.num_layers
        ),
        FeatureKind::Layer(_) => rc.hidden_size,
        FeatureKind::FinalState => r.cfg.model.state_size(),
        FeatureKind::FinalOutput | FeatureKind::MeanOutput => r.model.rnn().output_size(),
    };
    let task = build_task(&r.cfg.task).context("building the run's task")?;
    let objective = task.objective();
    if !matches!(
        objective,
        Objective::ClassLastStep | Objective::ClassMeanOverTime
    ) {
        bail!(
            "the run {} learnt task {} (objective {}): memory classify needs a task that \
             classifies whole sequences (objective class-last-step or class-mean-over-time)",
            a.run.display(),
            r.cfg.task.kind,
            serde_json::to_value(objective)?
                .as_str()
                .unwrap_or("unknown")
        );
    }
    if a.segments > dim {
        return Err(MemoryError::TooManySegments {
            segments: a.segments,
            dim,
        })
        .with_context(|| {
            format!(
                "--segments {} with --features {}",
                a.segments,
                a.features.name()
            )
        });
    }
    let mut warnings = task.warnings();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let task_warnings = warnings.len();
    crate::commands::check_task_statistics(
        &remanence_train::RunDir::open(&a.run)?,
        &task.fitted_statistics(),
    )?;
    let dtype = r.cfg.dtype()?;
    let batch_size = a.batch_size.unwrap_or(r.cfg.train.eval_batch_size).max(1);

    let train_labels = split_labels(task.as_ref(), Split::Train, batch_size, dtype, &r.device)?;
    let test_labels = split_labels(task.as_ref(), Split::Test, batch_size, dtype, &r.device)?;
    let train_idx = select(&train_labels, a.train_per_class);
    let test_idx = select(&test_labels, a.test_per_class);
    if train_idx.is_empty() {
        bail!("the run's task has no training sequences");
    }
    // Checked before the features are extracted (the quantiser would refuse it after).
    if a.anchors > train_idx.len() {
        return Err(MemoryError::TooFewVectors {
            anchors: a.anchors,
            vectors: train_idx.len(),
        })
        .context("--anchors is larger than the training set (lower --anchors)");
    }

    let t = Instant::now();
    let train = extract(
        &r.model,
        task.as_ref(),
        Split::Train,
        &train_idx,
        a.features,
        batch_size,
        dtype,
        &r.device,
    )
    .context("extracting the training features")?;
    let extract_train_s = seconds(t);
    let t = Instant::now();
    let test = extract(
        &r.model,
        task.as_ref(),
        Split::Test,
        &test_idx,
        a.features,
        batch_size,
        dtype,
        &r.device,
    )
    .context("extracting the test features")?;
    let extract_test_s = seconds(t);
    if train.dim != dim || (!test.labels.is_empty() && test.dim != dim) {
        bail!(
            "the model gave features of {} values, expected {dim}",
            train.dim
        );
    }

    let method = match a.anchors_from {
        AnchorsFrom::Kmeans => AnchorMethod::KMeans {
            iterations: a.kmeans_iterations,
        },
        AnchorsFrom::Sample => AnchorMethod::Sampled,
    };
    let pq_settings = PqSettings {
        segments: a.segments,
        anchors: a.anchors,
        method,
        seed: a.seed,
    };
    let t = Instant::now();
    let pq = ProductQuantizer::fit(&train.rows, dim, &pq_settings)
        .context("fitting the product quantiser (--segments, --anchors)")?;
    let pq_fit_s = seconds(t);
    let t = Instant::now();
    let train_codes = pq.encode_rows(&train.rows)?;
    let test_codes = if test.labels.is_empty() {
        Vec::new()
    } else {
        pq.encode_rows(&test.rows)?
    };
    let pq_encode_s = seconds(t);
    let mut sq = 0.0;
    for (i, code) in train_codes.iter().enumerate() {
        let rec = pq.reconstruct(code)?;
        sq += rec
            .iter()
            .zip(train.row(i))
            .map(|(q, v)| (q - v) * (q - v))
            .sum::<f64>();
    }
    let pq_train_mse = sq / train.rows.len() as f64;

    let mut classes: Vec<usize> = train.labels.clone();
    classes.sort_unstable();
    classes.dedup();
    if a.order == Order::Shuffled {
        classes.shuffle(&mut ChaCha8Rng::seed_from_u64(a.seed));
    }
    for c in &classes {
        if !test.labels.contains(c) {
            warnings.push(format!(
                "class {c} has training sequences but no test sequence"
            ));
        }
    }
    let mut untaught: Vec<usize> = test
        .labels
        .iter()
        .copied()
        .filter(|c| !classes.contains(c))
        .collect();
    untaught.sort_unstable();
    untaught.dedup();
    if !untaught.is_empty() {
        warnings.push(format!(
            "classes {untaught:?} have test sequences but no training sequence: they are never \
             added, and their test sequences are not scored"
        ));
    }
    for w in &warnings[task_warnings..] {
        eprintln!("warning: {w}");
    }

    let fine_tune = SgdSettings {
        epochs: a.fine_tune_epochs,
        lr: a.readout_lr,
        batch_size: a.readout_batch_size,
        seed: a.seed,
    };
    let joint_settings = SgdSettings {
        epochs: a.joint_epochs,
        ..fine_tune
    };
    let train_z = standardised(&train, &train);
    let test_z = standardised(&test, &train);
    let mut memory = BipartiteMemory::new(a.segments, a.anchors)?;
    let mut ncm = NearestClassMean::new(dim)?;
    let mut tuned = SoftmaxReadout::new(dim)?;
    let mut steps: Vec<Step> = Vec::new();
    println!(
        "{} · {} features ({dim} values) · P = {} segments × K = {} anchors ({}) · {} train, {} \
         test sequences",
        crate::commands::describe(&r.cfg, r.store.num_parameters()),
        a.features.name(),
        a.segments,
        a.anchors,
        match a.anchors_from {
            AnchorsFrom::Kmeans => "k-means",
            AnchorsFrom::Sample => "sampled",
        },
        train.labels.len(),
        test.labels.len()
    );
    println!(
        "{:>7} {:>6} {:>7} {:>9} {:>9} {:>10} {:>9}",
        "classes", "class", "tests", "memory", "NCM", "fine-tune", "joint"
    );
    let fmt = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.4}"));
    for (k, &c) in classes.iter().enumerate() {
        let train_of: Vec<usize> = (0..train.labels.len())
            .filter(|&i| train.labels[i] == c)
            .collect();
        let codes: Vec<Vec<u32>> = train_of.iter().map(|&i| train_codes[i].clone()).collect();
        let t = Instant::now();
        memory.add_class(c, &codes)?;
        let memory_store_s = seconds(t);
        ncm.add_class(c, &train.of_class(c))?;

        let t = Instant::now();
        tuned.add_class(c);
        let step_seed = a.seed.wrapping_add(k as u64 + 1);
        let settings = SgdSettings {
            seed: step_seed,
            ..fine_tune
        };
        tuned.train(&train_z.of_class(c), &vec![c; train_of.len()], &settings)?;
        let fine_tune_s = seconds(t);

        let t = Instant::now();
        let seen = &classes[..=k];
        let mut joint = SoftmaxReadout::new(dim)?;
        let mut jx = Vec::new();
        let mut jy = Vec::new();
        for (i, &y) in train.labels.iter().enumerate() {
            if seen.contains(&y) {
                jx.extend_from_slice(train_z.row(i));
                jy.push(y);
            }
        }
        for &y in seen {
            joint.add_class(y);
        }
        let settings = SgdSettings {
            seed: step_seed,
            ..joint_settings
        };
        joint.train(&jx, &jy, &settings)?;
        let joint_s = seconds(t);

        let t = Instant::now();
        let (mut total, mut r_mem, mut r_ncm, mut r_ft, mut r_joint) = (0, 0, 0, 0, 0);
        for (i, &y) in test.labels.iter().enumerate() {
            if !seen.contains(&y) {
                continue;
            }
            total += 1;
            r_mem += usize::from(memory.classify(&test_codes[i])? == Some(y));
            r_ncm += usize::from(ncm.classify(test.row(i))? == Some(y));
            let z = test_z.row(i);
            r_ft += usize::from(tuned.classify(z)? == Some(y));
            r_joint += usize::from(joint.classify(z)? == Some(y));
        }
        let score_s = seconds(t);
        let edges = memory.edges_of(c);
        let step = Step {
            classes_added: k + 1,
            class: c,
            train_sequences: train_of.len(),
            test_sequences: total,
            memory_accuracy: accuracy(r_mem, total),
            ncm_accuracy: accuracy(r_ncm, total),
            fine_tune_accuracy: accuracy(r_ft, total),
            joint_accuracy: accuracy(r_joint, total),
            memory_edges: edges,
            memory_edge_density: edges as f64 / (a.segments * a.anchors) as f64,
            memory_store_s,
            fine_tune_s,
            joint_s,
            score_s,
        };
        println!(
            "{:>7} {:>6} {:>7} {:>9} {:>9} {:>10} {:>9}",
            step.classes_added,
            c,
            total,
            fmt(step.memory_accuracy),
            fmt(step.ncm_accuracy),
            fmt(step.fine_tune_accuracy),
            fmt(step.joint_accuracy)
        );
        steps.push(step);
    }

    let per_class: Vec<f64> = steps.iter().map(|s| s.memory_store_s).collect();
    let report = Report {
        model: ModelInfo {
            run: crate::settings::absolute(&a.run)?,
            task: r.cfg.task.kind.to_string(),
            objective,
            cell: rc.cell,
            hidden_size: rc.hidden_size,
            num_layers: rc.num_layers,
            dtype: r.cfg.dtype.clone(),
        },
        settings: Settings {
            features: a.features.name(),
            segments: a.segments,
            anchors: a.anchors,
            anchors_from: a.anchors_from,
            kmeans_iterations: (a.anchors_from == AnchorsFrom::Kmeans)
                .then_some(a.kmeans_iterations),
            order: a.order,
            train_per_class: a.train_per_class,
            test_per_class: a.test_per_class,
            seed: a.seed,
            fine_tune,
            joint: joint_settings,
            readout_inputs: "standardised",
            batch_size,
            threads: crate::kernel_threads(),
        },
        feature_dim: dim,
        train_sequences: train.labels.len(),
        test_sequences: test.labels.len(),
        class_order: classes.clone(),
        pq_train_mse,
        timings: Timings {
            feature_extraction_train_s: extract_train_s,
            feature_extraction_test_s: extract_test_s,
            pq_fit_s,
            pq_encode_s,
            memory_store_total_s: per_class.iter().sum(),
            memory_store_s_per_class: per_class,
            total_s: seconds(started),
        },
        steps,
        warnings,
    };
    write_folder(&out, &report)?;
    println!(
        "features {:.2} s (train) + {:.2} s (test), PQ fit {:.2} s, encode {:.2} s, memory store \
         {:.4} s in all ({:.2} ms per class)",
        report.timings.feature_extraction_train_s,
        report.timings.feature_extraction_test_s,
        report.timings.pq_fit_s,
        report.timings.pq_encode_s,
        report.timings.memory_store_total_s,
        1e3 * report.timings.memory_store_total_s / report.steps.len().max(1) as f64
    );
    println!(
        "wrote {}, {} and {}",
        out.join(JSON).display(),
        out.join(PNG).display(),
        out.join(PNG).with_extension("md").display()
    );
    Ok(())
}

/// Writes the report, the picture and its description to a folder built under a temporary
/// name beside `out`, then renamed into place.
fn write_folder(out: &Path, report: &Report) -> Result<()> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no folder name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| -> Result<()> {
        std::fs::create_dir(&tmp)
            .with_context(|| format!("cannot create the folder {}", tmp.display()))?;
        let json = serde_json::to_string_pretty(report)?;
        write(&tmp.join(JSON), format!("{json}\n").as_bytes())?;
        let curves = curves(report);
        plot_png(&curves, &tmp.join(PNG))?;
        write(
            &tmp.join(PNG).with_extension("md"),
            sidecar(report, &curves).as_bytes(),
        )?;
        // The folder may have appeared (or filled) while the features were extracted.
        check_out(out)?;
        std::fs::rename(&tmp, out)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    remanence_cells::io::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The picture.

/// One curve: its name, colour, marker and values (NaN where nothing was scored).
struct Curve {
    name: &'static str,
    colour: RGBColor,
    marker: Marker,
    values: Vec<f64>,
}

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    None,
}

impl Marker {
    fn name(self) -> &'static str {
        match self {
            Marker::Circle => "filled circles",
            Marker::Square => "filled squares",
            Marker::Triangle => "filled triangles",
            Marker::Diamond => "filled diamonds",
            Marker::None => "no marker, dashed",
        }
    }
}

const CHANCE: RGBColor = RGBColor(150, 150, 150);

fn curves(report: &Report) -> Vec<Curve> {
    let v = |f: &dyn Fn(&Step) -> Option<f64>| -> Vec<f64> {
        report
            .steps
            .iter()
            .map(|s| f(s).unwrap_or(f64::NAN))
            .collect()
    };
    vec![
        Curve {
            name: "memory",
            colour: RGBColor(31, 119, 180),
            marker: Marker::Circle,
            values: v(&|s| s.memory_accuracy),
        },
        Curve {
            name: "NCM",
            colour: RGBColor(44, 160, 44),
            marker: Marker::Square,
            values: v(&|s| s.ncm_accuracy),
        },
        Curve {
            name: "fine-tune",
            colour: RGBColor(214, 39, 40),
            marker: Marker::Triangle,
            values: v(&|s| s.fine_tune_accuracy),
        },
        Curve {
            name: "joint",
            colour: RGBColor(255, 127, 14),
            marker: Marker::Diamond,
            values: v(&|s| s.joint_accuracy),
        },
        Curve {
            name: "chance",
            colour: CHANCE,
            marker: Marker::None,
            values: report
                .steps
                .iter()
                .map(|s| 1.0 / s.classes_added as f64)
                .collect(),
        },
    ]
}

/// Picture size and layout, in pixels.
const SIZE: (u32, u32) = (860, 460);
const PLOT: (i32, i32, i32, i32) = (56, 660, 34, 404); // left, right, top, bottom
const LEGEND_X: i32 = 684;
const FRAME: RGBColor = RGBColor(110, 110, 110);
const GRID: RGBColor = RGBColor(225, 225, 225);
const INK: RGBColor = RGBColor(40, 40, 40);

/// A 5 × 7 bitmap glyph per character the picture writes (rows top to bottom, bit 4 the left
/// column): the plotters build here carries no font, so labels are drawn as pixels.
fn glyph(ch: char) -> [u8; 7] {
    match ch {
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        '-' => [0, 0, 0, 14, 0, 0, 0],
        'a' => [0, 0, 14, 1, 15, 17, 15],
        'c' => [0, 0, 14, 16, 16, 17, 14],
        'd' => [1, 1, 13, 19, 17, 17, 15],
        'e' => [0, 0, 14, 17, 31, 16, 14],
        'f' => [6, 9, 8, 28, 8, 8, 8],
        'h' => [16, 16, 22, 25, 17, 17, 17],
        'i' => [4, 0, 12, 4, 4, 4, 14],
        'j' => [2, 0, 6, 2, 2, 18, 12],
        'l' => [12, 4, 4, 4, 4, 4, 14],
        'm' => [0, 0, 26, 21, 21, 17, 17],
        'n' => [0, 0, 22, 25, 17, 17, 17],
        'o' => [0, 0, 14, 17, 17, 17, 14],
        'r' => [0, 0, 22, 25, 16, 16, 16],
        's' => [0, 0, 14, 16, 14, 1, 30],
        't' => [8, 8, 28, 8, 8, 9, 6],
        'u' => [0, 0, 17, 17, 17, 19, 13],
        'y' => [0, 0, 17, 17, 15, 1, 14],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        _ => [0; 7],
    }
}

/// Scale of the bitmap font: each glyph pixel is a 2 × 2 square; 12 pixels per character.
const FONT_SCALE: i32 = 2;
const ADVANCE: i32 = 6 * FONT_SCALE;

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Writes `text` with its top-left corner at `(x, y)`.
fn text(root: &Area, text: &str, x: i32, y: i32, colour: RGBColor) -> DrawResult {
    for (i, ch) in text.chars().enumerate() {
        let g = glyph(ch);
        let x0 = x + i as i32 * ADVANCE;
        for (r, bits) in g.iter().enumerate() {
            for c in 0..5 {
                if bits & (16 >> c) != 0 {
                    let (px, py) = (x0 + c * FONT_SCALE, y + r as i32 * FONT_SCALE);
                    root.draw(&Rectangle::new(
                        [(px, py), (px + FONT_SCALE - 1, py + FONT_SCALE - 1)],
                        colour.filled(),
                    ))?;
                }
            }
        }
    }
    Ok(())
}

fn text_width(text: &str) -> i32 {
    text.chars().count() as i32 * ADVANCE - FONT_SCALE
}

fn marker(root: &Area, m: Marker, (x, y): (i32, i32), colour: RGBColor) -> DrawResult {
    let s = colour.filled();
    match m {
        Marker::Circle => root.draw(&Circle::new((x, y), 5, s))?,
        Marker::Square => root.draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], s))?,
        Marker::Triangle => root.draw(&Polygon::new(
            vec![(x, y - 6), (x - 6, y + 4), (x + 6, y + 4)],
            s,
        ))?,
        Marker::Diamond => root.draw(&Polygon::new(
            vec![(x, y - 6), (x + 6, y), (x, y + 6), (x - 6, y)],
            s,
        ))?,
        Marker::None => {}
    }
    Ok(())
}

/// A polyline, dashed when `dashed` (8 pixels on, 6 off along each segment).
fn polyline(root: &Area, pts: &[(i32, i32)], style: ShapeStyle, dashed: bool) -> DrawResult {
    if pts.len() < 2 {
        return Ok(());
    }
    if !dashed {
        root.draw(&PathElement::new(pts.to_vec(), style))?;
        return Ok(());
    }
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = (((b.0 - a.0).pow(2) + (b.1 - a.1).pow(2)) as f64).sqrt();
        let mut s = 0.0;
        while s < len {
            let e = (s + 8.0).min(len);
            let at = |t: f64| {
                (
                    a.0 + ((b.0 - a.0) as f64 * t / len).round() as i32,
                    a.1 + ((b.1 - a.1) as f64 * t / len).round() as i32,
                )
            };
            root.draw(&PathElement::new(vec![at(s), at(e)], style))?;
            s += 14.0;
        }
    }
    Ok(())
}

/// Draws the accuracy curves to the PNG file `path` (through a temporary file beside it).
fn plot_png(curves: &[Curve], path: &Path) -> Result<()> {
    let n = curves.iter().map(|c| c.values.len()).max().unwrap_or(0);
    let (left, right, top, bottom) = PLOT;
    let px = |i: usize| -> i32 {
        if n <= 1 {
            (left + right) / 2
        } else {
            left + 14 + ((right - left - 28) as f64 * i as f64 / (n - 1) as f64).round() as i32
        }
    };
    let py = |v: f64| bottom - ((bottom - top) as f64 * v.clamp(0.0, 1.0)).round() as i32;
    let draw = |tmp: &Path| -> DrawResult {
        let root = BitMapBackend::new(tmp, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        // Grid every 0.1 (stronger every 0.2), labelled every 0.2.
        for k in 0..=10 {
            let y = py(k as f64 / 10.0);
            let c = if k % 2 == 0 {
                RGBColor(200, 200, 200)
            } else {
                GRID
            };
            root.draw(&PathElement::new(vec![(left, y), (right, y)], c))?;
            if k % 2 == 0 {
                let label = match k {
                    0 => "0".to_string(),
                    10 => "1".to_string(),
                    _ => format!("0.{k}"),
                };
                text(&root, &label, left - 8 - text_width(&label), y - 7, INK)?;
            }
        }
        for i in 0..n {
            let x = px(i);
            root.draw(&PathElement::new(vec![(x, top), (x, bottom)], GRID))?;
            let label = (i + 1).to_string();
            text(&root, &label, x - text_width(&label) / 2, bottom + 8, INK)?;
        }
        root.draw(&Rectangle::new([(left, top), (right, bottom)], FRAME))?;
        text(&root, "accuracy", 8, top - 28, INK)?;
        let xl = "classes added";
        text(
            &root,
            xl,
            (left + right) / 2 - text_width(xl) / 2,
            bottom + 30,
            INK,
        )?;
        // The first curve (the memory) drawn last, on top.
        for c in curves.iter().rev() {
            let dashed = matches!(c.marker, Marker::None);
            let style = c.colour.stroke_width(2);
            let mut seg: Vec<(i32, i32)> = Vec::new();
            for (i, &v) in c.values.iter().enumerate() {
                if v.is_finite() {
                    seg.push((px(i), py(v)));
                } else {
                    polyline(&root, &std::mem::take(&mut seg), style, dashed)?;
                }
            }
            polyline(&root, &seg, style, dashed)?;
            for (i, &v) in c.values.iter().enumerate() {
                if v.is_finite() {
                    marker(&root, c.marker, (px(i), py(v)), c.colour)?;
                }
            }
        }
        // The legend, right of the plot: a line with the marker, then the name.
        let mut y = top + 10;
        for c in curves {
            let style = c.colour.stroke_width(2);
            let dashed = matches!(c.marker, Marker::None);
            polyline(
                &root,
                &[(LEGEND_X, y + 7), (LEGEND_X + 36, y + 7)],
                style,
                dashed,
            )?;
            marker(&root, c.marker, (LEGEND_X + 18, y + 7), c.colour)?;
            text(&root, c.name, LEGEND_X + 46, y, INK)?;
            y += 28;
        }
        root.present()?;
        Ok(())
    };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{stem}.tmp-{}.png", std::process::id()));
    let res = draw(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The markdown description written beside the picture.
fn sidecar(report: &Report, curves: &[Curve]) -> String {
    let s = &report.settings;
    let mut md = format!(
        "# Incremental classes on recurrent features: {PNG}\n\n\
         Run `{}` ({} · {} of {} unit{}, {} layer{}); features `{}` ({} values) of {} training \
         and {} test sequences; product quantisation P = {} segments × K = {} anchors ({}), \
         seed {}.\n\n\
         Accuracy on the test sequences of every class added so far (y, 0 at the bottom to 1 at \
         the top, grid every 0.1, labelled every 0.2) against the number of classes added (x, \
         1 at the left to {} at the right, one grid line per class; classes added in the order \
         {:?}). One line per method, with the legend right of the plot (a line, its marker and \
         the method's name):\n\n\
         | method | colour | marker | what |\n|---|---|---|---|\n",
        report.model.run.display(),
        report.model.task,
        report.model.cell,
        report.model.hidden_size,
        if report.model.hidden_size == 1 {
            ""
        } else {
            "s"
        },
        report.model.num_layers,
        if report.model.num_layers == 1 {
            ""
        } else {
            "s"
        },
        s.features,
        report.feature_dim,
        report.train_sequences,
        report.test_sequences,
        s.segments,
        s.anchors,
        match s.anchors_from {
            AnchorsFrom::Kmeans => "k-means",
            AnchorsFrom::Sample => "sampled training sub-vectors",
        },
        s.seed,
        report.steps.len(),
        report.class_order,
    );
    let what = [
        "binary bipartite memory over the PQ codes (classes OR-ed in one at a time)",
        "nearest class mean on the raw features",
        "softmax read-out fine-tuned on each new class's training features only (forgets)",
        "softmax read-out trained on every class seen so far (the reference)",
        "1 / classes added (guessing)",
    ];
    for (c, w) in curves.iter().zip(what) {
        let RGBColor(r, g, b) = c.colour;
        md.push_str(&format!(
            "| {} | #{r:02x}{g:02x}{b:02x} | {} | {w} |\n",
            c.name,
            c.marker.name()
        ));
    }
    md.push_str("\n| classes added | class |");
    for c in curves {
        md.push_str(&format!(" {} |", c.name));
    }
    md.push_str("\n|---:|---:|");
    md.push_str(&"---:|".repeat(curves.len()));
    md.push('\n');
    for (i, st) in report.steps.iter().enumerate() {
        md.push_str(&format!("| {} | {} |", st.classes_added, st.class));
        for c in curves {
            match c.values.get(i) {
                Some(v) if v.is_finite() => md.push_str(&format!(" {v:.4} |")),
                _ => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;
    use rand::Rng;
    use remanence_cells::{Activation, CtOptions, ModelConfig, RnnConfig};

    fn model(cell: CellKind, layers: usize) -> SequenceModel {
        let cfg = ModelConfig::new(
            RnnConfig {
                cell,
                input_size: 3,
                hidden_size: 5,
                num_layers: layers,
                activation: Activation::Tanh,
                ct: CtOptions::default(),
                reservoir: Default::default(),
                kernel: Default::default(),
                threads: Some(1),
            },
            4,
        );
        SequenceModel::init(&cfg, 7, DType::F64, &Device::Cpu)
            .unwrap()
            .0
    }

    /// A padded batch of 4 sequences of 6 steps whose real lengths differ: every feature
    /// equals the one computed from the sequence alone, cut to its real length.
    #[test]
    fn features_respect_each_sequences_real_length() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (b, t, f) = (4, 6, 3);
        let lengths = [6, 2, 4, 2];
        let v: Vec<f64> = (0..b * t * f)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let x = Tensor::from_vec(v, (b, t, f), &Device::Cpu).unwrap();
        for (cell, layers) in [(CellKind::Lstm, 2), (CellKind::Gru, 2), (CellKind::Srn, 1)] {
            let m = model(cell, layers);
            let kinds = [
                FeatureKind::FinalState,
                FeatureKind::FinalOutput,
                FeatureKind::MeanOutput,
                FeatureKind::Layer(1),
                FeatureKind::Layer(layers),
            ];
            for kind in kinds {
                let got = batch_features(&m, &x, None, &lengths, kind).unwrap();
                for (i, &len) in lengths.iter().enumerate() {
                    let xi = x.narrow(0, i, 1).unwrap().narrow(1, 0, len).unwrap();
                    let (_, hs, st) = m.forward_full(&xi, None, None).unwrap();
                    let want: Vec<f64> = match kind {
                        FeatureKind::FinalState => {
                            st.flatten().unwrap().to_vec2().unwrap()[0].clone()
                        }
                        FeatureKind::Layer(k) => {
                            st.h.get(k - 1).unwrap().to_vec2().unwrap()[0].clone()
                        }
                        FeatureKind::FinalOutput => {
                            hs.to_vec3::<f64>().unwrap()[0][len - 1].clone()
                        }
                        FeatureKind::MeanOutput => {
                            let h = hs.to_vec3::<f64>().unwrap();
                            let mut mean = vec![0.0; h[0][0].len()];
                            for s in &h[0] {
                                for (a, v) in mean.iter_mut().zip(s) {
                                    *a += v / len as f64;
                                }
                            }
                            mean
                        }
                    };
                    assert_eq!(got[i].len(), want.len(), "{cell} {kind:?}");
                    for (g, w) in got[i].iter().zip(&want) {
                        assert!((g - w).abs() < 1e-12, "{cell} {kind:?} seq {i}: {g} vs {w}");
                    }
                }
            }
            // The state features of a sequence cut short differ from its padded run's final state
            // (the padding would change them): the cut matters.
            let (_, _, padded) = m.forward_full(&x, None, None).unwrap();
            let padded = padded.flatten().unwrap().to_vec2::<f64>().unwrap();
            let got = batch_features(&m, &x, None, &lengths, FeatureKind::FinalState).unwrap();
            assert!(got[1]
                .iter()
                .zip(&padded[1])
                .any(|(a, b)| (a - b).abs() > 1e-6));
            // The longest sequence has no padding: its feature is the padded run's state.
            assert!(got[0]
                .iter()
                .zip(&padded[0])
                .all(|(a, b)| (a - b).abs() < 1e-12));
        }
    }

    #[test]
    fn feature_names_parse() {
        assert_eq!(parse_features("final-state"), Ok(FeatureKind::FinalState));
        assert_eq!(parse_features("layer:2"), Ok(FeatureKind::Layer(2)));
        assert!(parse_features("layer:0").unwrap_err().contains("K ≥ 1"));
        assert!(parse_features("last").unwrap_err().contains("final-state"));
        for k in [
            FeatureKind::FinalState,
            FeatureKind::FinalOutput,
            FeatureKind::MeanOutput,
            FeatureKind::Layer(3),
        ] {
            assert_eq!(parse_features(&k.name()), Ok(k));
        }
    }

    #[test]
    fn selection_keeps_the_first_of_each_class() {
        let labels = [1, 0, 1, 1, 2, 0, 1];
        assert_eq!(select(&labels, Some(2)), vec![0, 1, 2, 4, 5]);
        assert_eq!(select(&labels, None), (0..7).collect::<Vec<_>>());
    }
}
