//! `remanence probe`: measurements of a model's state and dynamics (crates/probes), for an
//! untrained model built from the usual model flags (`--cell …`, input size 1) or the weights of
//! a run folder (`--run RUN_DIR`, loaded in f64 on the CPU). Each probe writes its JSON report and
//! its PNG picture (with a `.md` description beside it) to `--out DIR`, by default a fresh folder
//! under runs/probes/.
//!
//! - `memory-capacity`: Jaeger's memory capacity over `--repeats` seeds.
//! - `esp`: the echo-state property: σ_max and ρ of the recurrent matrices and of the step's
//!   Jacobian, the sufficient and necessary conditions, and the convergence of runs from
//!   different initial states.
//! - `distinguishability`: D(l, k), the distance between the final hidden states of two words
//!   that differ in their first symbol, over random draws of one-layer networks (a heatmap over
//!   l and k), or of a run's model.
//! - `trajectory-length`: the arc length of a circle's image through random Neural ODEs, CT-RNNs
//!   and LTCs (each layer projected on two principal components) and their computational depth.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use remanence_cells::ModelConfig;
use remanence_probes::distinguish::{self, DistReport, DistSettings, Init};
use remanence_probes::esp::{self, EspReport, EspSettings};
use remanence_probes::figures;
use remanence_probes::memory::{self, McRun, McSettings, McSummary};
use remanence_probes::plots;
use remanence_probes::subject::SubjectInfo;
use remanence_probes::trajectory::{self, Act, OdeModel, TrajSettings};
use remanence_probes::{Features, Source, Subject};
use remanence_train::{run_dir, RunDir};
use serde::Serialize;

use crate::settings::{
    CtSettings, DeviceSettings, ModelSettings, ReservoirSettings, Settings, TrainSettings,
};

#[derive(Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    probe: Probe,
}

#[derive(Subcommand)]
enum Probe {
    /// Memory capacity (Jaeger 2002): MC_k, the squared correlation of a ridge read-out of the
    /// state with the input k steps back on held-out steps, and MC = Σ MC_k, over several seeds.
    MemoryCapacity(McArgs),
    /// Echo-state property: σ_max and spectral radius of the recurrent matrices and of the
    /// step's Jacobian, the sufficient (σ_max < 1) and necessary (ρ < 1 at zero input)
    /// conditions, and whether runs from different initial states on the same input converge.
    Esp(EspArgs),
    /// Distinguishability D(l, k): ‖h_u − h_v‖ after two words of length l that differ in their
    /// first symbol only (u = 1 0 0 …, v = 0 0 0 …), the mean over random draws of one-layer
    /// networks of k units (the cell's own or N(0, 1) initialisation), or of a run's model; a
    /// heatmap over l (log axis) and k.
    Distinguishability(DistArgs),
    /// Trajectory length (Hasani et al. 2021, after Raghu et al. 2017): a circle through random
    /// Neural ODEs, CT-RNNs and LTCs solved by adaptive Dormand–Prince; each layer's trajectory
    /// on its first two principal components, its arc length, and the computational depth
    /// (accepted solver steps per input sample); or through a run's model (--run).
    TrajectoryLength(TrajArgs),
}

#[derive(Args)]
struct SubjectArgs {
    /// Probe the weights of this run folder (loaded in f64) instead of an untrained --cell.
    #[arg(long, value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// With --run: the weights of the best-validation epoch (best.safetensors).
    #[arg(long, requires = "run")]
    best: bool,
    /// Seed of the input series and initial states, and of an untrained model's initialisation.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = seed)]
    seed: u64,
    /// Output folder (default: a fresh folder runs/probes/<probe>-<cell>-h<hidden>-s<seed>, or
    /// runs/probes/<probe>-<run folder name>-s<seed> with --run).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
    #[command(flatten, next_help_heading = "Untrained model (instead of --run)")]
    model: ModelSettings,
    #[command(
        flatten,
        next_help_heading = "Continuous-time cells (LTC, CfC, CT-RNN, ODE-RNN)"
    )]
    ct: CtSettings,
    #[command(flatten, next_help_heading = "Echo-state reservoir (esn)")]
    reservoir: ReservoirSettings,
}

#[derive(Args)]
struct McArgs {
    /// Seeds measured: seed, seed + 1, …; an untrained model is initialised anew from each, a
    /// run's model reads one input series per seed.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = positive)]
    repeats: usize,
    /// Largest delay k (default 2N, N the features per step).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    k_max: Option<usize>,
    /// Steps discarded before the training steps (default max(200, k-max)); k-max ≤ washout + 1.
    #[arg(long)]
    washout: Option<usize>,
    /// Steps the read-outs are fitted on.
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true, value_parser = positive)]
    train_steps: usize,
    /// Held-out steps MC_k is measured on (at least 3).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = at_least_three)]
    test_steps: usize,
    /// Ridge coefficient, relative to the mean feature variance (0: least squares; a singular
    /// system is then regularised and reported).
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    ridge: f64,
    /// The input is i.i.d. uniform on [−amplitude, amplitude].
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    amplitude: f64,
    /// What the read-outs see: state (h of every layer, and c for the LSTM) or output (the top
    /// layer's output, what the model's head sees).
    #[arg(long, default_value = "state")]
    features: Features,
    #[command(flatten)]
    subject: SubjectArgs,
}

#[derive(Args)]
struct EspArgs {
    /// Pairs of runs from different random initial states.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = positive)]
    pairs: usize,
    /// Steps of each run.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true, value_parser = positive)]
    steps: usize,
    /// The input is i.i.d. uniform on [−amplitude, amplitude] (the same series for both runs
    /// of every pair).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    amplitude: f64,
    /// Initial state values are drawn uniform on [−init-scale, init-scale].
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    init_scale: f64,
    /// A pair has converged when its distance fell to this fraction of its initial distance.
    #[arg(long, default_value_t = 1e-6, allow_negative_numbers = true)]
    tolerance: f64,
    /// Most steps of the search for the rest state under zero input.
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true, value_parser = positive)]
    rest_steps: usize,
    #[command(flatten)]
    subject: SubjectArgs,
}

#[derive(Args)]
struct DistArgs {
    /// Largest word length L: D is measured for every l ≤ L (reported at every l ≤ 20, then 25,
    /// 30, 35, 40, 50, …, 100, 125, 150, 175, 200, 250, … (14 per decade), and L).
    #[arg(long, default_value_t = distinguish::DEFAULT_MAX_LENGTH, allow_negative_numbers = true, value_parser = positive_length)]
    max_length: usize,
    /// Widths k (hidden units), comma-separated (default 1,2,4,8,16,30,64; --hidden N alone
    /// gives the one width N). Not with --run (the run's model has its own).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, value_parser = positive_width)]
    widths: Vec<usize>,
    /// Independent weight draws per width (default 2000). Not with --run.
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    draws: Option<usize>,
    /// Initialisation of each draw: default (the cell's own) or normal (i.i.d. N(0, 1) weights
    /// and zero biases, the study's). Not with --run.
    #[arg(long)]
    init: Option<Init>,
    #[command(flatten)]
    subject: SubjectArgs,
}

#[derive(Args)]
struct TrajArgs {
    /// Units per layer k.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = positive_width)]
    width: usize,
    /// Layers of the stack (each layer's trajectory is measured: the depth sweep).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = positive)]
    layers: usize,
    /// σ_w, comma-separated for a sweep: weights N(0, σ_w²/k).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "2",
        allow_negative_numbers = true
    )]
    sigma_w: Vec<f64>,
    /// σ_b: biases N(0, σ_b²).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    sigma_b: f64,
    /// Activations of f, comma-separated: tanh, sigmoid, relu, hard-tanh.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tanh,sigmoid,relu,hard-tanh"
    )]
    activations: Vec<Act>,
    /// Models, comma-separated: neural-ode, ctrnn, ltc.
    #[arg(long, value_delimiter = ',', default_value = "neural-ode,ctrnn,ltc")]
    models: Vec<OdeModel>,
    /// Independent networks per setting.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = positive)]
    draws: usize,
    /// Trajectory samples over [0, t-end] (both ends included).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = at_least_three)]
    samples: usize,
    /// End of the circle's time, t in [0, t-end] (default 2π).
    #[arg(long, allow_negative_numbers = true)]
    t_end: Option<f64>,
    /// Input-sample spacing of the computational depth (accepted steps × Δt / t-end).
    #[arg(long, default_value_t = 0.01, allow_negative_numbers = true)]
    depth_dt: f64,
    /// Dormand–Prince relative tolerance (the cells' default).
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    rtol: f64,
    /// Dormand–Prince absolute tolerance (the cells' default).
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    atol: f64,
    /// Most attempted solver steps of one solve.
    #[arg(long, default_value_t = 1_000_000, allow_negative_numbers = true, value_parser = positive)]
    max_steps: usize,
    /// Seed of the networks' draws.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = seed)]
    seed: u64,
    /// Measure the trained model of this run folder instead of random networks: the circle
    /// sampled at --samples points drives input features 0 and 1, one step per sample (the
    /// model's own step); each layer's h is measured. The network and solver flags do not apply.
    #[arg(long, value_name = "RUN_DIR")]
    run: Option<PathBuf>,
    /// With --run: the weights of the best-validation epoch (best.safetensors).
    #[arg(long, requires = "run")]
    best: bool,
    /// Output folder (default: a fresh folder runs/probes/trajectory-length-w<width>-s<seed>, or
    /// runs/probes/trajectory-length-<run folder name> with --run).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

/// A word length: a whole number ≥ 1.
fn positive_length(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(0) => Err("a word length of zero has no final state: give at least 1".into()),
        _ => positive(s),
    }
}

/// A width: a whole number ≥ 1.
fn positive_width(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(0) => Err("a width of zero hidden units has no state: give at least 1".into()),
        _ => positive(s),
    }
}

/// A whole number ≥ 1, with an error that says so (also for negative numbers).
fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be a positive whole number, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A seed: a whole number from 0 to 2⁶³ − 1 (what the settings' TOML tables hold).
fn seed(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (0..=i64::MAX as i128).contains(&n) => Ok(n as u64),
        Ok(n) => Err(format!("must be between 0 and 2^63 - 1, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A whole number ≥ 3 (a correlation needs a few points).
fn at_least_three(s: &str) -> std::result::Result<usize, String> {
    match positive(s)? {
        n if n >= 3 => Ok(n),
        n => Err(format!("must be at least 3, got {n}")),
    }
}

pub fn run(args: ProbeArgs) -> Result<()> {
    match args.probe {
        Probe::MemoryCapacity(a) => memory_capacity(a),
        Probe::Esp(a) => echo_state(a),
        Probe::Distinguishability(a) => distinguishability(a),
        Probe::TrajectoryLength(a) => trajectory_length(a),
    }
}

/// What is probed: an untrained model's configuration (input size 1), or a loaded run.
enum Target {
    Untrained(ModelConfig),
    Run(Subject),
}

impl Target {
    fn from_args(a: &SubjectArgs) -> Result<Self> {
        let given = Settings {
            model: a.model.clone(),
            ct: a.ct.clone(),
            reservoir: a.reservoir.clone(),
            ..Default::default()
        }
        .given();
        if let Some(path) = &a.run {
            if !given.is_empty() {
                bail!(
                    "--{} describe{} an untrained model, and --run probes the run's own model; \
                     remove {} or --run",
                    given.join(", --"),
                    if given.len() == 1 { "s" } else { "" },
                    if given.len() == 1 { "it" } else { "them" }
                );
            }
            return Ok(Target::Run(load_run(path, a.best)?));
        }
        if a.model.cell.is_none() {
            bail!("give --cell CELL (an untrained model) or --run RUN_DIR (a trained one)");
        }
        let settings = Settings::defaults().overlay(Settings {
            model: a.model.clone(),
            ct: a.ct.clone(),
            reservoir: a.reservoir.clone(),
            train: TrainSettings {
                seed: Some(a.seed),
                ..Default::default()
            },
            device: DeviceSettings {
                dtype: Some("f64".into()),
                device: Some("cpu".into()),
            },
            ..Default::default()
        });
        settings.check_applicable(&given)?;
        let mut cfg = settings.resolve()?.model;
        if cfg.encoder.is_some() {
            bail!(
                "--encoder: the probes drive the recurrent stack with one number per step, so an \
                 untrained model has no encoder; remove --encoder (a run with an encoder is \
                 probed with --run)"
            );
        }
        cfg.rnn.input_size = 1;
        cfg.output_size = 1;
        cfg.rnn.threads = crate::kernel_threads();
        cfg.validate()?;
        Ok(Target::Untrained(cfg))
    }

    /// The default output folder name: `<probe>-<cell>-h<hidden>-s<seed>`, or
    /// `<probe>-<run folder name>-s<seed>`.
    fn name(&self, probe: &str, seed: u64) -> String {
        match self {
            Target::Untrained(cfg) => {
                format!("{probe}-{}-h{}-s{seed}", cfg.rnn.cell, cfg.rnn.hidden_size)
            }
            Target::Run(s) => {
                let run = match s.source() {
                    Source::Run { path } => path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "run".into()),
                    _ => "run".into(),
                };
                format!("{probe}-{run}-s{seed}")
            }
        }
    }
}

/// An untrained model of `cfg` initialised from `seed` (its wiring too).
fn untrained(cfg: &ModelConfig, seed: u64) -> Result<Subject> {
    let mut cfg = cfg.clone();
    cfg.rnn.ct.wiring_seed = seed;
    Ok(Subject::untrained(&cfg, seed)?)
}

/// The run's model in f64 on the CPU (the probes compare numbers far below f32's precision).
fn load_run(path: &Path, best: bool) -> Result<Subject> {
    let dir = RunDir::open(path)?;
    let mut cfg = dir.read_config()?;
    cfg.dtype = "f64".into();
    cfg.model.rnn.threads = crate::kernel_threads();
    let weights = if best { run_dir::BEST } else { run_dir::MODEL };
    if !dir.file(weights).exists() {
        bail!(
            "{}: no such file{}",
            dir.file(weights).display(),
            if best {
                " (only tasks with a validation part keep the best-validation weights)"
            } else {
                ""
            }
        );
    }
    let (model, store) = dir
        .load_weights(weights, &cfg, &Device::Cpu)
        .with_context(|| format!("cannot load the model of run {}", path.display()))?;
    let source = Source::Run {
        path: crate::settings::absolute(path)?,
    };
    Ok(Subject::new(model, store, Device::Cpu, source)?)
}

/// The output folder: `--out` (created if missing), else a fresh one under runs/probes/.
fn out_dir(a: &SubjectArgs, name: &str) -> Result<PathBuf> {
    match &a.out {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create the output folder {}", d.display()))?;
            Ok(d.clone())
        }
        None => Ok(
            RunDir::create_new(&crate::default_runs_dir().join("probes"), name)?
                .path()
                .to_path_buf(),
        ),
    }
}

/// A progress bar of `total` steps on a terminal; nothing otherwise.
fn bar(total: u64, what: &str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    })
}

#[derive(Serialize)]
struct McReport<'a> {
    probe: &'static str,
    /// The model (for untrained models: the first seed's; each run names its own seed).
    subject: SubjectInfo,
    settings: &'a McSettings,
    summary: &'a McSummary,
    /// One measurement per seed: for untrained models the seed of the model and of the input
    /// series, for a run the seed of the input series.
    runs: &'a [McRun],
}

fn memory_capacity(a: McArgs) -> Result<()> {
    let s = &a.subject;
    let target = Target::from_args(s)?;
    let seeds: Vec<u64> = (0..a.repeats as u64)
        .map(|r| {
            s.seed
                .checked_add(r)
                .context("--seed + --repeats overflows")
        })
        .collect::<Result<_>>()?;
    let name = target.name("memory-capacity", s.seed);
    let (first, untrained_cfg) = match target {
        Target::Untrained(cfg) => (untrained(&cfg, seeds[0])?, Some(cfg)),
        Target::Run(sub) => (sub, None),
    };
    let n = first.feature_size(a.features);
    let defaults = McSettings::for_features(n);
    let k_max = a.k_max.unwrap_or(defaults.k_max);
    let settings = McSettings {
        washout: a
            .washout
            .unwrap_or_else(|| memory::DEFAULT_WASHOUT.max(k_max)),
        train: a.train_steps,
        test: a.test_steps,
        k_max,
        ridge: a.ridge,
        amplitude: a.amplitude,
        features: a.features,
    };
    settings
        .validate()
        .context("--k-max, --washout, --ridge or --amplitude")?;

    let total = (settings.steps() * seeds.len()) as u64;
    let pb = bar(total, "memory capacity");
    let mut tick = |k: usize| {
        if let Some(b) = &pb {
            b.inc(k as u64);
        }
    };
    let runs: Vec<McRun> = match &untrained_cfg {
        // One model per seed.
        Some(cfg) => {
            let mut runs = memory::run(&first, &settings, &seeds[..1], &mut tick)?;
            for &seed in &seeds[1..] {
                let sub = untrained(cfg, seed)?;
                runs.extend(memory::run(&sub, &settings, &[seed], &mut tick)?);
            }
            runs
        }
        // One model, every input series in one batch.
        None => memory::run(&first, &settings, &seeds, &mut tick)?,
    };
    if let Some(b) = &pb {
        b.finish_and_clear();
    }
    let summary = McSummary::of(&runs, &settings)?;

    let dir = out_dir(s, &name)?;
    let report = McReport {
        probe: "memory-capacity",
        subject: first.info(),
        settings: &settings,
        summary: &summary,
        runs: &runs,
    };
    let json_path = dir.join("memory-capacity.json");
    plots::write_json(&json_path, &report)?;
    let png = dir.join("memory-capacity.png");
    plots::memory_capacity_png(&runs, &summary, &png)?;

    for r in &runs {
        for w in &r.estimate.warnings {
            eprintln!("warning: seed {}: {w}", r.seed);
        }
    }
    if let Some(note) = first.drive().note() {
        eprintln!("note: {note}");
    }
    if s.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let m = &summary.mc;
        let seeds_text = if seeds.len() == 1 {
            format!("seed {}", seeds[0])
        } else {
            format!("seeds {}–{}", seeds[0], seeds[seeds.len() - 1])
        };
        let what = match first.source() {
            Source::Untrained { .. } => {
                format!("{}, untrained (a model per seed)", first.describe_model())
            }
            _ => first.describe(),
        };
        println!(
            "memory capacity of {what} · {} features · {seeds_text}",
            settings.features
        );
        println!(
            "  MC = {:.3} ± {:.3} over {} seed{} (min {:.3}, max {:.3}) of at most N = {n}; \
             MC ≤ N + {:.3} (noise): {}",
            m.mean,
            m.std,
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            m.min,
            m.max,
            summary.bound.margin,
            if summary.bound.holds {
                "holds"
            } else {
                "FAILS"
            }
        );
        let mean: Vec<f64> = summary.per_delay.iter().map(|p| p.mean).collect();
        let half = mean.iter().position(|&v| v < 0.5).map_or(
            format!("none below 0.5 up to k = {}", settings.k_max),
            |k| format!("first below 0.5 at k = {}", k + 1),
        );
        let shown: Vec<String> = mean
            .iter()
            .take(8)
            .enumerate()
            .map(|(k, v)| format!("{}:{v:.3}", k + 1))
            .collect();
        println!("  MC_k (mean) {} …; {half}", shown.join(" "));
        println!(
            "  k_max {}, washout {}, {} train + {} test steps, ridge {:e}, noise floor {:.3}",
            settings.k_max,
            settings.washout,
            settings.train,
            settings.test,
            settings.ridge,
            summary.noise_floor
        );
        println!(
            "wrote {} and {} (described in {})",
            json_path.display(),
            png.display(),
            plots::sidecar_path(&png).display()
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct EspOutput<'a> {
    probe: &'static str,
    #[serde(flatten)]
    report: &'a EspReport,
}

fn echo_state(a: EspArgs) -> Result<()> {
    let s = &a.subject;
    let target = Target::from_args(s)?;
    let name = target.name("esp", s.seed);
    let subject = match target {
        Target::Untrained(cfg) => untrained(&cfg, s.seed)?,
        Target::Run(sub) => sub,
    };
    let settings = EspSettings {
        pairs: a.pairs,
        steps: a.steps,
        amplitude: a.amplitude,
        init_scale: a.init_scale,
        tolerance: a.tolerance,
        rest_steps: a.rest_steps,
        ..EspSettings::default()
    };
    settings
        .validate()
        .context("--amplitude, --init-scale or --tolerance")?;
    let pb = bar(settings.steps as u64, "echo-state pairs");
    let report = esp::run(&subject, &settings, s.seed, &mut |k| {
        if let Some(b) = &pb {
            b.inc(k as u64);
        }
    })?;
    if let Some(b) = &pb {
        b.finish_and_clear();
    }

    let dir = out_dir(s, &name)?;
    let json_path = dir.join("esp.json");
    let output = EspOutput {
        probe: "esp",
        report: &report,
    };
    plots::write_json(&json_path, &output)?;
    let png = dir.join("esp-distance.png");
    plots::esp_png(&report.convergence, settings.tolerance, &png)?;

    if let Some(note) = subject.drive().note() {
        eprintln!("note: {note}");
    }
    if s.json {
        println!("{}", serde_json::to_string_pretty(&output)?);
        return Ok(());
    }
    match subject.source() {
        Source::Untrained { .. } => println!("echo-state property of {}", subject.describe()),
        _ => println!(
            "echo-state property of {} · seed {}",
            subject.describe(),
            s.seed
        ),
    }
    if report.weight_blocks.is_empty() {
        println!(
            "  recurrent weights: none ({} has no linear recurrent matrix; the Jacobian stands \
             for it)",
            report.subject.cell
        );
    }
    let mut layer = None;
    let mut line = String::new();
    for b in &report.weight_blocks {
        if layer != Some(b.layer) {
            if !line.is_empty() {
                println!("{line}");
            }
            line = format!("  {}:", b.name);
            layer = Some(b.layer);
        }
        let label = if b.block == "all" {
            String::new()
        } else {
            format!(" {}", b.block)
        };
        line.push_str(&format!(
            "{label} σ_max {:.4} ρ {:.4};",
            b.spectrum.sigma_max, b.spectrum.spectral_radius
        ));
    }
    if !line.is_empty() {
        println!("{}", line.trim_end_matches(';'));
    }
    let j = &report.jacobian_at_zero.spectrum;
    println!(
        "  Jacobian at the zero state, zero input ({}×{}): σ_max {:.4}, ρ {:.4}",
        subject.state_size(),
        subject.state_size(),
        j.sigma_max,
        j.spectral_radius
    );
    let r = &report.rest_state;
    match &report.jacobian_at_rest {
        Some(jr) => println!(
            "  rest state under zero input: reached in {} steps (max |s| {:.4}); Jacobian there: \
             σ_max {:.4}, ρ {:.4}",
            r.steps, r.max_abs, jr.spectrum.sigma_max, jr.spectrum.spectral_radius
        ),
        None => println!(
            "  rest state under zero input: none reached in {} steps (last move {:.3e})",
            r.steps, r.residual
        ),
    }
    for (kind, c) in [
        ("sufficient", &report.sufficient),
        ("necessary", &report.necessary),
    ] {
        println!(
            "  {kind} ({}): {}: {:.4} → {}",
            c.scope,
            c.statement,
            c.value,
            if c.borderline {
                "borderline (within 1e-6 of 1: the measurement cannot decide)"
            } else if c.holds {
                "holds"
            } else {
                "does not hold"
            }
        );
    }
    let c = &report.convergence;
    println!(
        "  empirical: {} pairs over {} steps {} (largest d(T)/d(0) {:.3e}); tolerance {:e} {}; \
         contraction per step {}",
        c.pairs,
        c.steps,
        if c.converged {
            "converge"
        } else {
            "do NOT converge"
        },
        c.max_final_ratio,
        settings.tolerance,
        c.steps_to_tolerance
            .map_or("never reached".into(), |t| format!("reached at step {t}")),
        c.rate.map_or("–".into(), |r| format!("{r:.4}"))
    );
    println!(
        "wrote {} and {} (described in {})",
        json_path.display(),
        png.display(),
        plots::sidecar_path(&png).display()
    );
    Ok(())
}

/// A progress bar of `total` `unit` on a terminal; nothing otherwise.
fn bar_of(total: u64, unit: &str, what: &str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} (eta {{eta}}) {{msg}}"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    })
}

/// Threads of the probes' own parallel loops: `--threads`, else 1.
fn probe_threads() -> usize {
    crate::kernel_threads().unwrap_or(1).max(1)
}

fn distinguishability(a: DistArgs) -> Result<()> {
    let s = &a.subject;
    let target = Target::from_args(s)?;
    let started = std::time::Instant::now();
    let run_name = target.name("distinguishability", s.seed);
    let (report, name): (DistReport, String) = match target {
        Target::Run(subject) => {
            let given: Vec<&str> = [
                (!a.widths.is_empty(), "--widths"),
                (a.draws.is_some(), "--draws"),
                (a.init.is_some(), "--init"),
            ]
            .into_iter()
            .filter_map(|(g, n)| g.then_some(n))
            .collect();
            if !given.is_empty() {
                bail!(
                    "{} describe{} random draws, and --run probes the run's one trained model; \
                     remove {} or --run",
                    given.join(", "),
                    if given.len() == 1 { "s" } else { "" },
                    if given.len() == 1 { "it" } else { "them" }
                );
            }
            let pb = bar_of(a.max_length as u64, "steps", "two words");
            let rep = distinguish::of_subject(&subject, a.max_length, &mut |k| {
                if let Some(b) = &pb {
                    b.inc(k as u64);
                }
            })?;
            if let Some(b) = &pb {
                b.finish_and_clear();
            }
            (rep, run_name)
        }
        Target::Untrained(cfg) => {
            let widths = if !a.widths.is_empty() {
                a.widths.clone()
            } else if let Some(h) = s.model.hidden {
                vec![h]
            } else {
                distinguish::DEFAULT_WIDTHS.to_vec()
            };
            let settings = DistSettings {
                max_length: a.max_length,
                widths,
                draws: a.draws.unwrap_or(distinguish::DEFAULT_DRAWS),
                init: a.init.unwrap_or_default(),
                threads: probe_threads(),
            };
            settings.validate()?;
            let name = format!(
                "distinguishability-{}-{}-s{}",
                cfg.rnn.cell, settings.init, s.seed
            );
            let total = (settings.widths.len() * settings.draws) as u64;
            let pb = bar_of(
                total,
                "draws",
                &format!("{} words of ≤ {}", cfg.rnn.cell, settings.max_length),
            );
            let rep = distinguish::heatmap(&cfg.rnn, &settings, s.seed, &mut |k| {
                if let Some(b) = &pb {
                    b.inc(k as u64);
                }
            })?;
            if let Some(b) = &pb {
                b.finish_and_clear();
            }
            (rep, name)
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let dir = out_dir(s, &name)?;
    let json_path = dir.join("distinguishability.json");
    plots::write_json(&json_path, &report)?;
    let png = dir.join("distinguishability.png");
    figures::distinguish_png(&report, &png)?;
    if s.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "distinguishability of {} · {} initialisation · {} draw{} per width · {:.1} s",
        report.cell,
        report.init,
        report.rows[0].draws,
        if report.rows[0].draws == 1 { "" } else { "s" },
        seconds
    );
    println!("  {}", report.init_note);
    println!("  state: {}", report.state);
    let shown: Vec<usize> = [1, 2, 5, 10, 20, 100, 1000, report.max_length]
        .into_iter()
        .filter(|&l| l <= report.max_length)
        .fold(Vec::new(), |mut v, l| {
            if !v.contains(&l) {
                v.push(l);
            }
            v
        });
    let mut head = format!("  {:>5}", "k");
    for l in &shown {
        head.push_str(&format!(" {:>9}", format!("D({l})")));
    }
    head.push_str("  D(L)>1e-3");
    println!("{head}");
    for r in &report.rows {
        let mut line = format!("  {:>5}", r.width);
        for &l in &shown {
            line.push_str(&format!(
                " {:>9.4}",
                report.mean_at(r.width, l).unwrap_or(f64::NAN)
            ));
        }
        line.push_str(&format!("  {:>9.1}%", 100.0 * r.remembering_at_max));
        println!("{line}");
    }
    println!(
        "wrote {} and {} (described in {})",
        json_path.display(),
        png.display(),
        plots::sidecar_path(&png).display()
    );
    Ok(())
}

/// `--run` for trajectory-length: the run's model on the sampled circle.
fn trajectory_of_run(a: &TrajArgs, path: &Path) -> Result<()> {
    let defaults = [
        (a.width != 100, "--width"),
        (a.layers != 1, "--layers"),
        (a.sigma_w != [2.0], "--sigma-w"),
        (a.sigma_b != 1.0, "--sigma-b"),
        (a.activations != Act::ALL, "--activations"),
        (a.models != OdeModel::ALL, "--models"),
        (a.draws != 1, "--draws"),
        (a.depth_dt != 0.01, "--depth-dt"),
        (a.rtol != 1e-3, "--rtol"),
        (a.atol != 1e-4, "--atol"),
        (a.max_steps != 1_000_000, "--max-steps"),
        (a.seed != 0, "--seed"),
    ];
    let given: Vec<&str> = defaults
        .iter()
        .filter_map(|(g, n)| g.then_some(*n))
        .collect();
    if !given.is_empty() {
        bail!(
            "{} describe{} random networks, and --run measures the run's trained model; remove {} \
             or --run",
            given.join(", "),
            if given.len() == 1 { "s" } else { "" },
            if given.len() == 1 { "it" } else { "them" }
        );
    }
    let subject = load_run(path, a.best)?;
    let t_end = a.t_end.unwrap_or(2.0 * std::f64::consts::PI);
    let pb = bar_of(a.samples as u64, "steps", "circle");
    let t = trajectory::of_subject(&subject, a.samples, t_end, &mut |k| {
        if let Some(b) = &pb {
            b.inc(k as u64);
        }
    })?;
    if let Some(b) = &pb {
        b.finish_and_clear();
    }
    let dir = match &a.out {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create the output folder {}", d.display()))?;
            d.clone()
        }
        None => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            RunDir::create_new(
                &crate::default_runs_dir().join("probes"),
                &format!("trajectory-length-{name}"),
            )?
            .path()
            .to_path_buf()
        }
    };
    let json_path = dir.join("trajectory-length.json");
    plots::write_json(&json_path, &t)?;
    let png = dir.join("trajectory-pca.png");
    figures::subject_pca_png(&t, &png)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    println!(
        "trajectory length of {} on the circle · {} samples over [0, {:.4}]",
        subject.describe(),
        t.samples,
        t.t_end
    );
    println!("  {}", t.note);
    for (l, x) in t.layers.iter().enumerate() {
        println!(
            "  layer {}: PCA arc length {:.4} ({:.1}% of the variance on 2 components), full-space \
             arc length {:.4}",
            l + 1,
            x.pca_length,
            100.0 * x.explained,
            x.full_length
        );
    }
    println!(
        "wrote {} and {} (described in {})",
        json_path.display(),
        png.display(),
        plots::sidecar_path(&png).display()
    );
    Ok(())
}

fn trajectory_length(a: TrajArgs) -> Result<()> {
    if let Some(path) = a.run.clone() {
        return trajectory_of_run(&a, &path);
    }
    let settings = TrajSettings {
        width: a.width,
        layers: a.layers,
        sigma_w: a.sigma_w.clone(),
        sigma_b: a.sigma_b,
        activations: a.activations.clone(),
        models: a.models.clone(),
        draws: a.draws,
        samples: a.samples,
        t_end: a.t_end.unwrap_or(2.0 * std::f64::consts::PI),
        depth_dt: a.depth_dt,
        solver: remanence_probes::adaptive::Dp5Settings {
            rtol: a.rtol,
            atol: a.atol,
            max_steps: a.max_steps,
        },
        threads: probe_threads(),
    };
    settings.validate()?;
    let started = std::time::Instant::now();
    let total = settings.sigma_w.len()
        * settings.activations.len()
        * settings.models.len()
        * settings.draws;
    let pb = bar_of(total as u64, "solves", "trajectory length");
    let report = trajectory::run(&settings, a.seed, &mut |k| {
        if let Some(b) = &pb {
            b.inc(k as u64);
        }
    })?;
    if let Some(b) = &pb {
        b.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let dir = match &a.out {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create the output folder {}", d.display()))?;
            d.clone()
        }
        None => RunDir::create_new(
            &crate::default_runs_dir().join("probes"),
            &format!("trajectory-length-w{}-s{}", a.width, a.seed),
        )?
        .path()
        .to_path_buf(),
    };
    let json_path = dir.join("trajectory-length.json");
    plots::write_json(&json_path, &report)?;
    let png = dir.join("trajectory-length.png");
    figures::trajectory_length_png(&report, &png)?;
    let mut pcas = Vec::new();
    for &act in &settings.activations {
        let p = dir.join(format!("trajectory-pca-{act}.png"));
        figures::trajectory_pca_png(&report, act, settings.sigma_w[0], &p)?;
        pcas.push(p);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "trajectory length · width {} · {} layer{} · σ_b {} · {} draw{} · rtol {:e}, atol {:e} · {:.1} s",
        settings.width,
        settings.layers,
        if settings.layers == 1 { "" } else { "s" },
        settings.sigma_b,
        settings.draws,
        if settings.draws == 1 { "" } else { "s" },
        settings.solver.rtol,
        settings.solver.atol,
        seconds
    );
    println!(
        "  input circle: arc length {:.4} over {} samples",
        report.input_length, settings.samples
    );
    println!(
        "  {:<10} {:>5} {:<10} {:>14} {:>8}  PCA arc length per layer (1 → {})",
        "activation", "σ_w", "model", "depth", "paper", settings.layers
    );
    for x in &report.summaries {
        println!(
            "  {:<10} {:>5} {:<10} {:>7.2} ± {:<4.2} {:>8} {}",
            x.activation.name(),
            x.sigma_w,
            x.model.name(),
            x.depth.mean,
            x.depth.std,
            x.paper_depth,
            x.pca_length
                .iter()
                .map(|p| format!("{:.3}", p.mean))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    for o in &report.orderings {
        println!(
            "  {} σ_w {}: LTC > CT-RNN > Neural ODE in length (last layer) {}, in depth {}",
            o.activation,
            o.sigma_w,
            if o.length_holds {
                "holds"
            } else {
                "does NOT hold"
            },
            if o.depth_holds {
                "holds"
            } else {
                "does NOT hold"
            }
        );
    }
    println!(
        "wrote {}, {} and {} (each described in a .md beside it)",
        json_path.display(),
        png.display(),
        pcas.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
