//! One scenario run, end to end, into a run folder:
//!
//! | file | content |
//! |---|---|
//! | `config.json` | the run configuration (model, base task, training settings per experience; for sequence lists, whose sequences come from no task of the registry, the task is a stand-in and `continual.json` says what was learned) |
//! | `continual.json` | scenario, its seed, method with all its settings, class order and the experiences' classes |
//! | `exp-NN/` | the ordinary run folder of experience NN (its config, checkpoint, epoch metrics), the method's state after it (`method-state.json`, `method-state.safetensors`) and its row of the matrix, exactly (`scores.json`) |
//! | `metrics.jsonl` | one record per experience: the accuracy on every experience after it, time |
//! | `matrix.json`, `summary.json` | the accuracy matrix, with the row before any training; ACC, BWT, FWT, forgetting |
//! | `heatmap.png`, `acc.png` (+ `.md` beside each) | the matrix as a heatmap; mean accuracy over seen experiences after each |
//! | `model.safetensors` | the model after the last experience (dual-net: NET1) |
//! | `net2.safetensors`, `net2-matrix.json` | dual-net: NET2 after the last transfer, and its accuracy matrix |
//!
//! Before any training the untrained model is scored on every experience (the row that forward
//! transfer is measured against); after experience i it is scored on all of them (row i).
//! assoc-memory ([`crate::assoc`]) trains only its first experience (the later ones run no
//! trainer: their `exp-NN/` holds the configuration and the unchanged weights) and its rows are
//! its memory's predictions ([`MethodState::score_all`]).
//!
//! **Stopping and resuming.** Every file is written to a temporary name and renamed. After
//! experience i, everything it leaves (the method's state, the model and the exact scores in
//! `exp-NN/`, NET2, the metrics line, `model.safetensors`) is written before row i of
//! `matrix.json`, which commits the experience: a run stopped at any point ([`run_limited`] stops on purpose) is continued by
//! [`resume`] at the first experience without a row, from the model and method state of the
//! experience before it; the folder of the interrupted experience and any metrics line after the
//! last row are discarded. Since each experience's random streams start from (seed, experience)
//! ([`MethodState::begin_experience`]) and the trainer's batch order from (seed, epoch), the
//! resumed run gives the same numbers as an uninterrupted one.
//!
//! **Data-parallel runs** ([`run_limited_on`], [`resume_on`] with a [`Parallel`]:
//! `remanence continual --distributed mpi`). Every rank of the job runs this same runner, in a
//! run folder of its own: rank 0 in the run folder, the others in scratch folders that the caller
//! removes afterwards. Each experience's gradient steps are data-parallel
//! (`remanence_distributed::AllReducePlugin`, placed among the method's plugins as
//! [`crate::strategy`] explains), everything else runs replicated: the scoring, the method's
//! state between experiences, the files (written alike in each folder). The matrix and the final
//! weights are therefore those of one process (to floating-point summation order). The ranks
//! check, before anything is written, that they run the same configuration and scenario and that
//! every batch of every experience can give each of them a sequence ([`check_parallel`]); before
//! the first experience they run and after each one that their parameters and scores agree; a
//! method whose data-parallel training would differ (the dual network) is refused. To resume,
//! rank 0 sends every other rank the files of the stopped run that [`resume`] reads
//! ([`send_stopped`], [`receive_stopped`]); the other ranks need not see rank 0's folder (no
//! shared filesystem).
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use remanence_cells::{io, ParamStore, SequenceModel};
use remanence_train::trainer::Observer;
use remanence_train::{RunConfig, RunDir, Trainer};
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};
use crate::matrix::AccuracyMatrix;
use crate::plots;
use crate::scenario::{Scenario, ScenarioSpec};
use crate::strategy::{Method, MethodState};
use crate::task_il::TaskIlPlugin;
use remanence_distributed::setup::{check_same, hash64};
use remanence_distributed::{
    check_same_config, check_world, AllReducePlugin, Collective, DistError,
};
use remanence_train::Plugin;

/// How the experiences of a scenario run are trained across the processes of a job: a maker of
/// handles on the job's [`Collective`] (one for the all-reduce plugin of each experience, one for
/// the runner's own checks). Every rank of the job must run the same scenario run with its own
/// `Parallel`; with a world of one process ([`remanence_distributed::Local`]) the run is the
/// single-process one.
#[derive(Clone)]
pub struct Parallel {
    make: Arc<dyn Fn() -> Box<dyn Collective> + Send + Sync>,
}

impl Parallel {
    /// The job whose collective `make` hands out (an MPI world's clones, for instance).
    pub fn new(make: impl Fn() -> Box<dyn Collective> + Send + Sync + 'static) -> Self {
        Self {
            make: Arc::new(make),
        }
    }

    /// A new handle on the job's collective.
    pub fn collective(&self) -> Box<dyn Collective> {
        (self.make)()
    }
}

impl std::fmt::Debug for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.collective();
        write!(f, "Parallel {{ rank: {}, size: {} }}", c.rank(), c.size())
    }
}

/// A distributed-training error as this crate's: a candle or training error stays what it was,
/// the others (mismatch across ranks, a world too large) keep their message.
fn dist(e: DistError) -> ContinualError {
    match e {
        DistError::Train(t) => ContinualError::Train(t),
        DistError::Candle(c) => ContinualError::Candle(c),
        e => ContinualError::Config(e.to_string()),
    }
}

/// Checks, without communicating, that `method` over `scenario` can be trained data-parallel
/// across `size` processes: the method gives the single-process result
/// ([`Method::check_distributed`]) and every batch of every experience (joint: of the union
/// learned at each experience) has at least `size` sequences.
pub fn check_parallel(
    cfg: &RunConfig,
    scenario: &Scenario,
    method: Method,
    size: usize,
) -> Result<()> {
    method.check_distributed()?;
    for k in 0..scenario.experiences.len() {
        let len = match method {
            Method::Joint => remanence_tasks::SequenceTask::train_len(&scenario.cumulative(k)),
            _ => remanence_tasks::SequenceTask::train_len(&scenario.experiences[k]),
        };
        check_world(size, cfg.train.batch_size, len)
            .map_err(|e| ContinualError::Config(format!("experience {}: {}", k + 1, dist(e))))?;
    }
    Ok(())
}

/// The collective checks before a data-parallel run writes anything: the world fits
/// ([`check_parallel`]) and every rank runs the same configuration, scenario and method.
fn check_job(
    c: &dyn Collective,
    cfg: &RunConfig,
    scenario: &Scenario,
    method: Method,
) -> Result<()> {
    check_parallel(cfg, scenario, method, c.size())?;
    let what = serde_json::to_string(&(cfg, ContinualInfo::new(scenario, method)))
        .expect("a configuration serialises");
    check_same_config(c, &what).map_err(dist)
}

/// A hash of `store`'s parameters (names and values) and of `scores`' bits.
fn state_hash(store: &ParamStore, scores: &[f64]) -> Result<u64> {
    let mut bytes = Vec::new();
    for (name, v) in store.vars() {
        bytes.extend(name.as_bytes());
        let values = v
            .as_tensor()
            .flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?;
        for x in values {
            bytes.extend(x.to_le_bytes());
        }
    }
    for x in scores {
        bytes.extend(x.to_bits().to_le_bytes());
    }
    Ok(hash64(&bytes))
}

/// The files of the stopped run `stopped` (read from `run`) that [`Stopped::read`] and
/// [`resume`] read, relative to the run folder, those that exist: the records of the run, the
/// exact scores of each finished experience, and the model and method state of the last one.
fn resume_files(run: &RunDir, stopped: &Stopped) -> Vec<String> {
    let mut files: Vec<String> = [
        CONTINUAL,
        remanence_train::run_dir::CONFIG,
        MATRIX,
        NET2_MATRIX,
        METRICS,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..stopped.next {
        files.push(format!("{}/{SCORES}", experience_dir(i)));
    }
    if stopped.next > 0 {
        let last = experience_dir(stopped.next - 1);
        for f in [
            remanence_train::run_dir::MODEL,
            crate::saved::STATE_JSON,
            crate::saved::STATE_TENSORS,
        ] {
            files.push(format!("{last}/{f}"));
        }
    }
    files.retain(|f| run.file(f).is_file());
    files
}

/// `files` (relative path, content) as one buffer: for each, the path's length (u64, little
/// endian), the path, the content's length, the content.
fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        out.extend((name.len() as u64).to_le_bytes());
        out.extend(name.as_bytes());
        out.extend((bytes.len() as u64).to_le_bytes());
        out.extend(bytes);
    }
    out
}

/// The inverse of [`pack`]; refuses a truncated buffer and a path that is not a plain relative
/// one (no `..`, no root).
fn unpack(mut buf: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |m: &str| ContinualError::Config(format!("the run's files as rank 0 sent them: {m}"));
    let take = |buf: &mut &[u8]| -> Result<Vec<u8>> {
        if buf.len() < 8 {
            return Err(bad("truncated"));
        }
        let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
        if buf.len() - 8 < n {
            return Err(bad("truncated"));
        }
        let v = buf[8..8 + n].to_vec();
        *buf = &buf[8 + n..];
        Ok(v)
    };
    let mut files = Vec::new();
    while !buf.is_empty() {
        let name = String::from_utf8(take(&mut buf)?).map_err(|_| bad("a path is not UTF-8"))?;
        let plain = !name.is_empty()
            && Path::new(&name)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !plain {
            return Err(bad(&format!("`{name}` is not a path inside a run folder")));
        }
        let bytes = take(&mut buf)?;
        files.push((name, bytes));
    }
    Ok(files)
}

/// For a data-parallel `--resume`, on rank 0: sends the files of the stopped run `stopped`
/// (read from `run`) that [`resume`] reads ([`resume_files`]) to every other rank, which
/// receives them with [`receive_stopped`] (every rank must make the call).
pub fn send_stopped(c: &dyn Collective, run: &RunDir, stopped: &Stopped) -> Result<()> {
    if c.rank() != 0 {
        return Err(ContinualError::Config(format!(
            "rank {} sends a stopped run; only rank 0 reads it (the others receive it)",
            c.rank()
        )));
    }
    let mut files = Vec::new();
    for name in resume_files(run, stopped) {
        let p = run.file(&name);
        let bytes = std::fs::read(&p).map_err(|e| file_err(&p, format!("cannot read: {e}")))?;
        files.push((name, bytes));
    }
    let mut buf = pack(&files);
    c.broadcast_bytes(&mut buf, 0).map_err(dist)
}

/// The files of a stopped run as rank 0 sent them ([`send_stopped`]), to write into a run
/// folder of this rank's own ([`StoppedFiles::write_into`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoppedFiles(Vec<(String, Vec<u8>)>);

/// For a data-parallel `--resume`, on a rank other than 0: the files [`send_stopped`] sends.
/// Nothing is written yet: a rank that is aborted while waiting here leaves nothing behind.
pub fn receive_stopped(c: &dyn Collective) -> Result<StoppedFiles> {
    if c.rank() == 0 {
        return Err(ContinualError::Config(
            "rank 0 receives a stopped run; it reads its own (and sends it)".into(),
        ));
    }
    let mut buf = Vec::new();
    c.broadcast_bytes(&mut buf, 0).map_err(dist)?;
    Ok(StoppedFiles(unpack(&buf)?))
}

impl StoppedFiles {
    /// Writes the files into `run` (an empty scratch folder), which [`Stopped::read`] can then
    /// read and [`resume_on`] continue.
    pub fn write_into(&self, run: &RunDir) -> Result<()> {
        for (name, bytes) in &self.0 {
            let p = run.file(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| file_err(parent, format!("cannot create: {e}")))?;
            }
            io::write_atomic(&p, bytes)?;
        }
        Ok(())
    }

    /// The files' paths inside the run folder.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// The scenario's record in a run folder ([`ContinualInfo`]).
pub const CONTINUAL: &str = "continual.json";
/// The accuracy matrix ([`AccuracyMatrix`]); its rows commit the experiences.
pub const MATRIX: &str = "matrix.json";
/// dual-net: NET2's accuracy matrix.
pub const NET2_MATRIX: &str = "net2-matrix.json";
/// One [`ExperienceRecord`] per line.
pub const METRICS: &str = "metrics.jsonl";
/// In an experience's folder: its row of the matrix, exactly ([`SavedScores`]).
pub const SCORES: &str = "scores.json";

/// What `exp-NN/scores.json` records: row NN of the accuracy matrix (and of NET2's), each
/// accuracy written as the 16 hexadecimal digits of its f64's bits, so that a resumed run writes
/// back exactly the numbers it measured (a JSON reader may round a 17-digit decimal to a
/// neighbouring f64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedScores {
    /// 0-based experience.
    pub experience: usize,
    /// The accuracy on every experience after it.
    pub row: Vec<String>,
    /// dual-net: NET2's accuracy on every experience after the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net2_row: Option<Vec<String>>,
}

fn to_bits(v: &[f64]) -> Vec<String> {
    v.iter().map(|x| format!("{:016x}", x.to_bits())).collect()
}

fn from_bits(v: &[String], path: &Path) -> Result<Vec<f64>> {
    v.iter()
        .map(|s| {
            u64::from_str_radix(s, 16)
                .map(f64::from_bits)
                .map_err(|e| file_err(path, format!("`{s}` is not the bits of an f64: {e}")))
        })
        .collect()
}

/// Row `k` of the matrix (and of NET2's when `net2`) from `exp-NN/scores.json`, `experiences`
/// accuracies each.
fn read_scores(
    run: &RunDir,
    k: usize,
    experiences: usize,
    net2: bool,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let p = run.file(&format!("{}/{SCORES}", experience_dir(k)));
    let s: SavedScores = read_json(&p, "not a record of scores")?;
    let row = from_bits(&s.row, &p)?;
    let net2_row = match (&s.net2_row, net2) {
        (Some(r), true) => Some(from_bits(r, &p)?),
        (None, true) => return Err(file_err(&p, "records no scores of NET2")),
        _ => None,
    };
    let lengths_fit =
        row.len() == experiences && net2_row.as_ref().is_none_or(|r| r.len() == experiences);
    if s.experience != k || !lengths_fit {
        return Err(file_err(
            &p,
            format!(
                "holds the scores of experience {} over {} experiences, not of experience {k} \
                 over {experiences}",
                s.experience,
                row.len()
            ),
        ));
    }
    Ok((row, net2_row))
}

/// What `continual.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContinualInfo {
    /// The scenario as written on the command line (`split:mnist-rows:2`, `lists:4:5:6:24`).
    pub scenario: String,
    /// The method's name ([`Method::name`]).
    pub method: String,
    /// The method with every setting ([`Method`]'s serialised form); `None` in folders written
    /// before runs could be resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_settings: Option<Method>,
    /// The seed the scenario was drawn from ([`Scenario::seed`]); `None` in older folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_seed: Option<u64>,
    pub class_order: Vec<usize>,
    pub experience_classes: Vec<Vec<usize>>,
}

impl ContinualInfo {
    /// The record of `scenario` learned with `method`.
    pub fn new(scenario: &Scenario, method: Method) -> Self {
        Self {
            scenario: scenario.spec.to_string(),
            method: method.name().into(),
            method_settings: Some(method),
            scenario_seed: Some(scenario.seed),
            class_order: scenario.class_order.clone(),
            experience_classes: scenario
                .experiences
                .iter()
                .map(|e| e.classes.clone())
                .collect(),
        }
    }
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
    /// assoc-memory: the classes stored, the sequences stored, the edges' density.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<crate::assoc::AssocReport>,
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
    score_all_with(scenario, cfg, device, &mut |b| {
        model
            .forward(&b.x, None, b.dt.as_ref())
            .map(|(y, _)| y)
            .map_err(|e| remanence_tasks::TaskError::Data(e.to_string()))
    })
}

/// Scores the read-out `predict` gives (batch, time, outputs) on every experience of
/// `scenario` ([`score_all`] with a model's; assoc-memory's comes from its memory).
pub fn score_all_with(
    scenario: &Scenario,
    cfg: &RunConfig,
    device: &Device,
    predict: &mut remanence_tasks::task::Predict<'_>,
) -> Result<Vec<f64>> {
    let dtype = cfg.dtype()?;
    scenario
        .experiences
        .iter()
        .map(|e| e.accuracy(cfg.train.eval_batch_size, dtype, device, predict))
        .collect()
}

/// The folder name of experience `k`.
pub fn experience_dir(k: usize) -> String {
    format!("exp-{k:02}")
}

/// `cfg` as `method` runs it: the dual network's models carry the auto-associative head their
/// pseudo-patterns need.
fn method_config(cfg: &RunConfig, method: Method) -> RunConfig {
    let mut cfg = cfg.clone();
    if let Method::DualNet(o) = method {
        cfg.model.autoassoc = Some(o.kind.autoassoc());
    }
    cfg
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
    run_limited(cfg, scenario, method, run, device, observer, report, None)
}

/// [`run`], stopping after `max_experiences` experiences when given (the matrix then has that
/// many rows; [`resume`] continues the run).
#[allow(clippy::too_many_arguments)]
pub fn run_limited(
    cfg: &RunConfig,
    scenario: &Scenario,
    method: Method,
    run: &RunDir,
    device: &Device,
    observer: &mut dyn Observer,
    report: &mut dyn FnMut(&ExperienceRecord),
    max_experiences: Option<usize>,
) -> Result<AccuracyMatrix> {
    run_limited_on(
        cfg,
        scenario,
        method,
        run,
        device,
        observer,
        report,
        max_experiences,
        None,
    )
}

/// [`run_limited`], data-parallel across the processes of `parallel` when given (see the
/// module's notes): every rank calls it, each with its own run folder `run` (rank 0's is the
/// run's; the others' are scratch).
#[allow(clippy::too_many_arguments)]
pub fn run_limited_on(
    cfg: &RunConfig,
    scenario: &Scenario,
    method: Method,
    run: &RunDir,
    device: &Device,
    observer: &mut dyn Observer,
    report: &mut dyn FnMut(&ExperienceRecord),
    max_experiences: Option<usize>,
    parallel: Option<&Parallel>,
) -> Result<AccuracyMatrix> {
    method.check_scenario(&scenario.spec)?;
    method.check_memory(scenario)?;
    let cfg = &method_config(cfg, method);
    if let Method::AssocMemory {
        segments,
        anchors,
        per_class,
    } = method
    {
        // Before anything is written: the quantiser must fit the features and experience 1.
        crate::assoc::AssocState::new(segments, anchors, per_class, cfg.train.seed)?
            .check(scenario, cfg)?;
    }
    if let Some(p) = parallel {
        check_job(p.collective().as_ref(), cfg, scenario, method)?;
    }
    let dtype = cfg.dtype()?;
    write_json(&run.file(CONTINUAL), &ContinualInfo::new(scenario, method))?;
    run.write_config(cfg)?;
    let (model, store) = SequenceModel::init(&cfg.model, cfg.train.seed, dtype, device)?;
    let matrix = initial_matrix(&model, scenario, cfg, device)?;
    write_json(&run.file(MATRIX), &matrix)?;
    let state = MethodState::new(method, cfg, device)?;
    let net2_matrix = state.dual.is_some().then(|| matrix.clone());
    drive(
        cfg,
        scenario,
        method,
        run,
        device,
        observer,
        report,
        Progress {
            model,
            store,
            state,
            matrix,
            net2_matrix,
        },
        max_experiences,
        parallel,
    )
}

/// The matrix of `scenario` with `model`'s scores before any training and no row.
fn initial_matrix(
    model: &SequenceModel,
    scenario: &Scenario,
    cfg: &RunConfig,
    device: &Device,
) -> Result<AccuracyMatrix> {
    let initial = score_all(model, scenario, cfg, device)?;
    Ok(AccuracyMatrix {
        experiences: scenario.experiences.len(),
        initial: initial.into_iter().map(Some).collect(),
        rows: Vec::new(),
    })
}

/// A stopped scenario run, read back from its folder by [`Stopped::read`]: everything
/// [`resume`] needs beside the scenario itself (which the caller builds from `spec`, `seed` and,
/// for scenarios cut from a registry task, `cfg.task`).
#[derive(Debug, Clone)]
pub struct Stopped {
    /// `config.json`. Settings of the machine rather than the run (kernel threads) are not
    /// stored; set them before resuming.
    pub cfg: RunConfig,
    pub info: ContinualInfo,
    pub spec: ScenarioSpec,
    pub method: Method,
    /// The seed the scenario was drawn from.
    pub seed: u64,
    /// Experiences in the stream.
    pub experiences: usize,
    /// Experiences finished (rows of `matrix.json`): the first experience to learn.
    pub next: usize,
}

impl Stopped {
    /// Reads the run folder `run` and checks it can be resumed; writes nothing. Refuses a
    /// folder without `continual.json` (not a scenario run), one whose `continual.json` predates
    /// resuming, and a finished run (every row in `matrix.json`); a file that cannot be read
    /// or parsed is named in the error.
    pub fn read(run: &RunDir) -> Result<Self> {
        let p = run.file(CONTINUAL);
        if !p.is_file() {
            return Err(ContinualError::Config(format!(
                "{}: not a continual-learning run folder (it has no {CONTINUAL}); `--resume` \
                 continues runs of `remanence continual`",
                run.path().display()
            )));
        }
        let info: ContinualInfo = read_json(&p, "not a continual-learning record")?;
        let spec: ScenarioSpec = info
            .scenario
            .parse()
            .map_err(|e| file_err(&p, format!("bad scenario: {e}")))?;
        let method = info.method_settings.ok_or_else(|| {
            file_err(
                &p,
                "records no method settings (the run was written before runs could be \
                 resumed), so it cannot be resumed",
            )
        })?;
        if method.name() != info.method {
            return Err(file_err(
                &p,
                format!(
                    "names the method {} and holds the settings of {}",
                    info.method,
                    method.name()
                ),
            ));
        }
        let cfg = run.read_config()?;
        let seed = info.scenario_seed.unwrap_or(cfg.task.data_seed);
        let experiences = info.experience_classes.len();
        let next = match read_matrix(run, experiences)? {
            Some(m) if m.is_complete() => {
                return Err(ContinualError::Config(format!(
                    "{}: the run is finished ({MATRIX} has a row for each of its {experiences} \
                     experiences); there is nothing to resume",
                    run.path().display()
                )))
            }
            Some(m) => m.rows.len(),
            None => 0,
        };
        Ok(Self {
            cfg,
            info,
            spec,
            method,
            seed,
            experiences,
            next,
        })
    }
}

/// `matrix.json` of `run`, checked to be a matrix of `experiences` experiences; `None` when the
/// run stopped before writing it.
fn read_matrix(run: &RunDir, experiences: usize) -> Result<Option<AccuracyMatrix>> {
    let p = run.file(MATRIX);
    if !p.exists() {
        return Ok(None);
    }
    let m = AccuracyMatrix::load_json(&p)?;
    if m.experiences != experiences {
        return Err(file_err(
            &p,
            format!(
                "is a matrix of {} experiences, and {CONTINUAL} lists {experiences}",
                m.experiences
            ),
        ));
    }
    Ok(Some(m))
}

/// Continues the stopped run `stopped` (read from `run` by [`Stopped::read`]) over `scenario`,
/// which must be the scenario the run began (same spec, seed, class order and experiences): at
/// experience `stopped.next`, from the model and method state saved after the experience before
/// it. The folders of experiences from `stopped.next` on (an interrupted experience) and the
/// metrics lines after the last row are discarded first. Stops after `max_experiences` more
/// experiences when given. Gives the numbers an uninterrupted run gives.
#[allow(clippy::too_many_arguments)]
pub fn resume(
    stopped: &Stopped,
    scenario: &Scenario,
    run: &RunDir,
    device: &Device,
    observer: &mut dyn Observer,
    report: &mut dyn FnMut(&ExperienceRecord),
    max_experiences: Option<usize>,
) -> Result<AccuracyMatrix> {
    resume_on(
        stopped,
        scenario,
        run,
        device,
        observer,
        report,
        max_experiences,
        None,
    )
}

/// [`resume`], data-parallel across the processes of `parallel` when given: every rank calls
/// it, rank 0 on the stopped run's folder, the others on scratch folders into which
/// [`receive_stopped`] wrote what it needs.
#[allow(clippy::too_many_arguments)]
pub fn resume_on(
    stopped: &Stopped,
    scenario: &Scenario,
    run: &RunDir,
    device: &Device,
    observer: &mut dyn Observer,
    report: &mut dyn FnMut(&ExperienceRecord),
    max_experiences: Option<usize>,
    parallel: Option<&Parallel>,
) -> Result<AccuracyMatrix> {
    let method = stopped.method;
    method.check_scenario(&scenario.spec)?;
    let now = ContinualInfo::new(scenario, method);
    let p = run.file(CONTINUAL);
    let mismatch = |what: &str, was: String, is: String| {
        Err(file_err(
            &p,
            format!("the run learned {what} {was}, and the scenario given has {is}"),
        ))
    };
    let was = &stopped.info;
    if was.scenario != now.scenario {
        return mismatch("the scenario", was.scenario.clone(), now.scenario);
    }
    if stopped.seed != scenario.seed {
        return mismatch(
            "a scenario drawn from seed",
            stopped.seed.to_string(),
            scenario.seed.to_string(),
        );
    }
    if was.class_order != now.class_order || was.experience_classes != now.experience_classes {
        return mismatch(
            "the classes",
            format!("{:?}", was.experience_classes),
            format!("{:?}", now.experience_classes),
        );
    }
    let cfg = &method_config(&stopped.cfg, method);
    if let Some(p) = parallel {
        check_job(p.collective().as_ref(), cfg, scenario, method)?;
    }
    let dtype = cfg.dtype()?;
    let k0 = stopped.next;
    let matrix_read = read_matrix(run, stopped.experiences)?;
    if matrix_read.as_ref().map_or(0, |m| m.rows.len()) != k0
        || matrix_read
            .as_ref()
            .is_some_and(AccuracyMatrix::is_complete)
    {
        return Err(ContinualError::Config(format!(
            "{}: {MATRIX} changed since the run was read; read it again",
            run.path().display()
        )));
    }
    // The scores before any training again, and the rows of the finished experiences from their
    // exact records (the decimals of matrix.json may read back as a neighbouring f64).
    let (init_model, init_store) = SequenceModel::init(&cfg.model, cfg.train.seed, dtype, device)?;
    let mut matrix = initial_matrix(&init_model, scenario, cfg, device)?;
    let with_net2 = matches!(method, Method::DualNet(_));
    let mut net2_matrix = with_net2.then(|| matrix.clone());
    for i in 0..k0 {
        let (row, net2_row) = read_scores(run, i, stopped.experiences, with_net2)?;
        let listed = matrix_read.as_ref().and_then(|m| m.rows.get(i));
        let agrees = listed.is_some_and(|l| l.iter().zip(&row).all(|(a, b)| (a - b).abs() <= 1e-9));
        if !agrees {
            return Err(file_err(
                &run.file(MATRIX),
                format!("row {i} disagrees with {}/{SCORES}", experience_dir(i)),
            ));
        }
        matrix.push_row(row)?;
        if let (Some(m), Some(r)) = (&mut net2_matrix, net2_row) {
            m.push_row(r)?;
        }
    }
    let (model, store, state) = if k0 == 0 {
        (
            init_model,
            init_store,
            MethodState::new(method, cfg, device)?,
        )
    } else {
        let last = experience_dir(k0 - 1);
        let (model, store) = run.load_weights(
            &format!("{last}/{}", remanence_train::run_dir::MODEL),
            cfg,
            device,
        )?;
        let state = MethodState::load(
            method,
            cfg,
            device,
            &run.file(&last),
            k0,
            &scenario.experiences[k0 - 1],
            &store,
        )?;
        (model, store, state)
    };
    // Nothing was changed before this point: every file needed has been read.
    discard_from(run, k0)?;
    truncate_records(run, k0)?;
    write_json(&run.file(MATRIX), &matrix)?;
    if let Some(m) = &net2_matrix {
        write_json(&run.file(NET2_MATRIX), m)?;
    }
    drive(
        cfg,
        scenario,
        method,
        run,
        device,
        observer,
        report,
        Progress {
            model,
            store,
            state,
            matrix,
            net2_matrix,
        },
        max_experiences,
        parallel,
    )
}

/// Removes the folders of experiences `k0` and after (`exp-NN`, and `exp-NN-2`… that a second
/// creation of the same folder would make).
fn discard_from(run: &RunDir, k0: usize) -> Result<()> {
    let entries = std::fs::read_dir(run.path()).map_err(|e| file_err(run.path(), e.to_string()))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("exp-") else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let tail = &rest[digits.len()..];
        let own = tail.is_empty()
            || tail
                .strip_prefix('-')
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        let Ok(k) = digits.parse::<usize>() else {
            continue;
        };
        if own && k >= k0 && e.path().is_dir() {
            std::fs::remove_dir_all(e.path())
                .map_err(|err| file_err(&e.path(), format!("cannot remove: {err}")))?;
        }
    }
    Ok(())
}

/// Keeps the lines of `metrics.jsonl` of experiences before `k0` (unreadable lines go too).
fn truncate_records(run: &RunDir, k0: usize) -> Result<()> {
    let p = run.file(METRICS);
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<ExperienceRecord>(l).is_ok_and(|r| r.experience < k0))
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    io::write_atomic(&p, out.as_bytes())?;
    Ok(())
}

/// Where a run stands between experiences.
struct Progress {
    model: SequenceModel,
    store: ParamStore,
    state: MethodState,
    /// Its rows: the experiences finished.
    matrix: AccuracyMatrix,
    net2_matrix: Option<AccuracyMatrix>,
}

/// Learns the experiences from the first without a row in `p.matrix`, at most
/// `max_experiences` of them.
#[allow(clippy::too_many_arguments)]
fn drive(
    cfg: &RunConfig,
    scenario: &Scenario,
    method: Method,
    run: &RunDir,
    device: &Device,
    observer: &mut dyn Observer,
    report: &mut dyn FnMut(&ExperienceRecord),
    p: Progress,
    max_experiences: Option<usize>,
    parallel: Option<&Parallel>,
) -> Result<AccuracyMatrix> {
    let dtype = cfg.dtype()?;
    // The runner's own checks (the all-reduce plugin of each experience has its own handle).
    let checks = parallel.map(Parallel::collective);
    let Progress {
        mut model,
        mut store,
        mut state,
        mut matrix,
        mut net2_matrix,
    } = p;
    let n = scenario.experiences.len();
    let first = matrix.rows.len();
    let last = max_experiences.map_or(n, |m| (first + m).min(n));
    if let Some(c) = &checks {
        // Same seed, same initial model (or, resumed, the same files): a mismatch here means a
        // rank computes differently, and its run would not be the single-process one.
        let h = state_hash(&store, &[])?;
        check_same(
            c.as_ref(),
            &format!("model before experience {}", first + 1),
            h,
        )
        .map_err(dist)?;
    }
    for k in first..last {
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
        let sub = RunDir::create_new(run.path(), &experience_dir(k))?;
        if state.trains(k) {
            let mask = exp
                .task_mask()
                .map(|m| Box::new(TaskIlPlugin::new(m)) as Box<dyn Plugin>);
            let all_reduce =
                parallel.map(|p| Box::new(AllReducePlugin::new(p.collective())) as Box<dyn Plugin>);
            let learner =
                state.learner_parallel(cfg, k, &scenario.experiences[k], mask, all_reduce)?;
            let trainer =
                Trainer::from_model(cfg.clone(), &exp, sub.clone(), device.clone(), model, store)?
                    .with_learner(learner);
            let mut trainer = trainer;
            trainer.run(observer)?;
            (model, store, _) = trainer.into_parts();
        } else {
            // A frozen model (assoc-memory after its first experience): no trainer, no epoch,
            // no gradient step. The experience's folder holds the configuration and the
            // unchanged weights, which a resumed run starts from.
            state.begin_experience(k);
            sub.write_config(cfg)?;
            sub.write_model(&store, cfg)?;
        }
        state.after_experience(&scenario.experiences[k], &model, &store, cfg, device)?;
        let row = state.score_all(&model, scenario, cfg, device)?;
        let net2_row = match &state.dual {
            Some(d) => {
                let net2 = d.net2.lock().expect("NET2");
                Some(score_all(&net2, scenario, cfg, device)?)
            }
            None => None,
        };
        if let Some(c) = &checks {
            let h = state_hash(&store, &row)?;
            check_same(
                c.as_ref(),
                &format!("model and scores after experience {}", k + 1),
                h,
            )
            .map_err(dist)?;
        }
        // What the experience leaves, before the row of the matrix that commits it.
        state.save(k + 1, sub.path())?;
        let scores = SavedScores {
            experience: k,
            row: to_bits(&row),
            net2_row: net2_row.as_deref().map(to_bits),
        };
        write_json(&sub.file(SCORES), &scores)?;
        let record = ExperienceRecord {
            experience: k,
            acc_seen: row[..=k].iter().sum::<f64>() / (k + 1) as f64,
            accuracies: row.clone(),
            train_sequences: remanence_tasks::SequenceTask::train_len(&exp),
            seconds: start.elapsed().as_secs_f64(),
            peak_rss_mib: peak_memory_mib(),
            net2_accuracies: net2_row.clone(),
            transfer: state.last_transfer.take(),
            memory: state.last_assoc.take(),
        };
        if let (Some(t), Some(d)) = (&record.transfer, &state.dual) {
            if let Some(x) = &t.sample {
                let png = sub.file("pseudo-patterns.png");
                pseudo_png(x, &d.range, &png)?;
            }
        }
        if let (Some(m), Some(r), Some(d)) = (&mut net2_matrix, net2_row, &state.dual) {
            m.push_row(r)?;
            write_json(&run.file(NET2_MATRIX), m)?;
            run.write_weights("net2.safetensors", &d.net2_store, cfg)?;
        }
        run.write_model(&store, cfg)?;
        run.append_metrics(&record)?;
        matrix.push_row(row)?;
        write_json(&run.file(MATRIX), &matrix)?;
        write_json(&run.file("summary.json"), &matrix.summary())?;
        plots::heatmap_png(&matrix, &run.file("heatmap.png"))?;
        plots::acc_curve_png(
            &[(method.name().to_string(), matrix.acc_seen_curve())],
            &run.file("acc.png"),
        )?;
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

fn file_err(path: &Path, msg: impl Into<String>) -> ContinualError {
    ContinualError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Reads the JSON file `path` as a `T`; `what` says what it is not when it does not parse.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| file_err(path, format!("{what}: {e}")))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serialises");
    io::write_atomic(path, format!("{text}\n").as_bytes()).map_err(|e| ContinualError::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use remanence_distributed::Local;

    #[test]
    fn packed_files_unpack_as_they_were_and_bad_paths_are_refused() {
        let files = vec![
            ("continual.json".to_string(), b"{}".to_vec()),
            ("exp-00/scores.json".to_string(), vec![0, 1, 2, 255]),
            ("empty".to_string(), Vec::new()),
        ];
        assert_eq!(unpack(&pack(&files)).unwrap(), files);
        assert!(unpack(&[]).unwrap().is_empty());
        let packed = pack(&files);
        let err = unpack(&packed[..packed.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        for bad in ["../x", "/etc/x", "a/../../b", ""] {
            let err = unpack(&pack(&[(bad.to_string(), vec![1])]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("not a path inside a run folder"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn received_files_are_written_into_the_rank_s_own_folder() {
        let root =
            std::env::temp_dir().join(format!("remanence-runner-recv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let run = RunDir::create_new(&root, "run").unwrap();
        let files = StoppedFiles(vec![
            (CONTINUAL.to_string(), b"{}".to_vec()),
            ("exp-00/scores.json".to_string(), b"[1]".to_vec()),
        ]);
        assert_eq!(files.names(), [CONTINUAL, "exp-00/scores.json"]);
        files.write_into(&run).unwrap();
        assert_eq!(std::fs::read(run.file(CONTINUAL)).unwrap(), b"{}");
        assert_eq!(
            std::fs::read(run.file("exp-00/scores.json")).unwrap(),
            b"[1]"
        );
        // Rank 0 of a world of one neither receives nor has anyone to send to but itself.
        assert!(receive_stopped(&Local).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A small run of `method` over sequence lists, f64, into `root/name`; `parallel`: through
    /// the data-parallel path.
    fn lists_run(
        root: &Path,
        name: &str,
        method: Method,
        parallel: Option<&Parallel>,
    ) -> (AccuracyMatrix, Vec<f64>) {
        use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig};
        use remanence_tasks::{TaskConfig, TaskKind};
        use remanence_train::{OptimizerConfig, OptimizerKind, Schedule, TrainConfig};
        let scenario = Scenario::synthetic("lists:2:2:4:8".parse().unwrap(), 3).unwrap();
        let cfg = RunConfig {
            model: ModelConfig::new(
                RnnConfig {
                    cell: CellKind::Gru,
                    input_size: scenario.base.input_size(),
                    hidden_size: 6,
                    num_layers: 1,
                    activation: Activation::Tanh,
                    ct: Default::default(),
                    reservoir: Default::default(),
                    threads: None,
                    kernel: Kernel::Auto,
                },
                scenario.base.output_size(),
            ),
            task: TaskConfig {
                kind: TaskKind::MnistPixels,
                train_size: 0,
                test_size: 0,
                data_seed: 3,
                data_dir: None,
                options: Default::default(),
            },
            train: TrainConfig {
                epochs: 2,
                batch_size: 16,
                optimizer: OptimizerConfig::new(OptimizerKind::Adam, 0.05),
                schedule: Schedule::Constant,
                clip_norm: Some(1.0),
                seed: 5,
                early_stop: false,
                target: None,
                eval_batch_size: 64,
                ridge: None,
                backtune: None,
            },
            dtype: "f64".into(),
            device: "cpu".into(),
        };
        let run = RunDir::create_new(root, name).unwrap();
        let m = run_limited_on(
            &cfg,
            &scenario,
            method,
            &run,
            &Device::Cpu,
            &mut remanence_train::trainer::Silent,
            &mut |_| {},
            None,
            parallel,
        )
        .unwrap();
        let (_, store) = run.load_model(&cfg, &Device::Cpu).unwrap();
        let mut w = Vec::new();
        for (_, v) in store.vars() {
            w.extend(
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
            );
        }
        (m, w)
    }

    /// With a world of one process the data-parallel path (the all-reduce plugin among the
    /// method's plugins, the checks between experiences) learns what the plain run learns.
    #[test]
    fn a_world_of_one_learns_what_one_process_learns() {
        let root =
            std::env::temp_dir().join(format!("remanence-runner-one-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let local = Parallel::new(|| Box::new(Local) as Box<dyn Collective>);
        for method in [
            Method::Replay {
                per_class: 1,
                per_batch: 2,
            },
            Method::Agem {
                per_class: 1,
                batch: 4,
            },
            Method::Si { c: 1.0, xi: 0.1 },
        ] {
            let name = method.name();
            let (ma, wa) = lists_run(&root, &format!("{name}-plain"), method, None);
            let (mb, wb) = lists_run(&root, &format!("{name}-local"), method, Some(&local));
            assert_eq!(ma.rows.len(), 2);
            assert_eq!(ma.initial, mb.initial);
            for (ra, rb) in ma.rows.iter().zip(&mb.rows) {
                for (a, b) in ra.iter().zip(rb) {
                    assert!((a - b).abs() <= 1e-12, "{name}: {a} vs {b}");
                }
            }
            assert_eq!(wa.len(), wb.len());
            let d = wa
                .iter()
                .zip(&wb)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(d <= 1e-12, "{name}: weights differ by {d}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_parallel_handle_gives_its_collective() {
        let p = Parallel::new(|| Box::new(Local) as Box<dyn Collective>);
        let c = p.clone().collective();
        assert_eq!((c.rank(), c.size()), (0, 1));
        assert_eq!(format!("{p:?}"), "Parallel { rank: 0, size: 1 }");
    }

    #[test]
    fn the_dual_network_is_refused_data_parallel_and_the_others_are_not() {
        use crate::dual::DualOptions;
        assert!(Method::DualNet(DualOptions::default())
            .check_distributed()
            .unwrap_err()
            .to_string()
            .contains("dual-net cannot be trained with --distributed"));
        for m in [
            Method::Naive,
            Method::Joint,
            Method::Replay {
                per_class: 1,
                per_batch: 1,
            },
            Method::Ewc {
                lambda: 1.0,
                decay: 1.0,
            },
            Method::Si { c: 1.0, xi: 0.1 },
            Method::Lwf {
                alpha: 1.0,
                temperature: 2.0,
            },
            Method::Agem {
                per_class: 1,
                batch: 4,
            },
        ] {
            m.check_distributed().unwrap();
        }
    }
}
