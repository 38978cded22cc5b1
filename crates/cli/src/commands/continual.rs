//! `remanence continual`: a continual-learning scenario run with one method; the accuracy matrix,
//! its summary and the per-experience runs land in the run folder. `--resume RUN_DIR` continues a
//! run that stopped (interrupted, or `--max-experiences` spent) at its first unfinished
//! experience, with the numbers an uninterrupted run gives.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::device::parse_device;
use remanence_cells::encoder::EncoderConfig;
use remanence_continual::dual::DualOptions;
use remanence_continual::runner::{self, ExperienceRecord};
use remanence_continual::scenario::{Scenario, ScenarioSpec};
use remanence_continual::strategy::{Method, MethodOptions};
use remanence_tasks::{build_task, TaskKind};
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::Silent;
use remanence_train::{RunConfig, RunDir};

use crate::settings::Settings;

/// The task that settings resolve with for a scenario that reads no registry task (sequence
/// lists); the model's sizes are then set from the scenario. Its single input feature can never
/// match a lists model (V ≥ 2 inputs), so no command can mistake the run folder's model for a
/// model of this task; `continual.json` records the scenario.
const STAND_IN_TASK: TaskKind = TaskKind::MnistPixels;

#[derive(Args)]
pub struct ContinualArgs {
    /// The stream of experiences: split:TASK:CLASSES_PER_EXPERIENCE (class-incremental),
    /// split-task:TASK:CLASSES_PER_EXPERIENCE (task-incremental: each sequence's read-out masked
    /// to its own group), permuted:TASK:EXPERIENCES (domain-incremental) or
    /// lists:LISTS:SEQUENCES_PER_LIST:ITEMS_PER_SEQUENCE:VOCABULARY (sequence lists made up from
    /// the seed, learned list after list by next-item prediction; no data set), e.g.
    /// split:mnist-rows:2, lists:4:5:6:24.
    #[arg(long, required_unless_present = "resume")]
    scenario: Option<String>,
    /// Continue the stopped run in RUN_DIR at its first experience without a row in
    /// matrix.json (an interrupted experience starts over), with the run's own scenario, method
    /// and settings.
    #[arg(
        long,
        value_name = "RUN_DIR",
        conflicts_with_all = [
            "scenario", "method", "buffer_per_class", "replay_batch", "ewc_lambda", "ewc_decay",
            "si_c", "si_xi", "lwf_alpha", "lwf_temperature", "agem_batch", "pseudo",
            "reverberations", "noise", "pseudo_per_example", "transfer_size", "transfer_epochs",
            "hard_targets", "reset_net1", "seeds_per_class", "recon_weight", "denoise", "recipe",
            "runs_dir", "name",
        ]
    )]
    resume: Option<PathBuf>,
    /// Learn at most this many experiences in this call, then stop (`--resume` continues).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_experiences: Option<usize>,
    /// naive, joint (cumulative training, the upper bound), replay, ewc (online EWC), si
    /// (synaptic intelligence), lwf (learning without forgetting), agem (averaged gradient
    /// episodic memory) or dual-net (Ans & Rousset's two networks with reverberated
    /// pseudo-patterns: no real data kept).
    #[arg(long, default_value = "naive")]
    method: String,
    /// replay, agem: sequences kept per class in the memory.
    #[arg(long, default_value_t = 50)]
    buffer_per_class: usize,
    /// replay: buffered sequences added to each training batch.
    #[arg(long, default_value_t = 20)]
    replay_batch: usize,
    /// ewc: strength λ of the penalty (λ/2) Σ F (θ − θ*)², F the mean squared batch gradient.
    #[arg(long, default_value_t = MethodOptions::default().ewc_lambda)]
    ewc_lambda: f64,
    /// ewc: F ← decay·F + F_new after each experience (1: plain EWC, < 1: online EWC).
    #[arg(long, default_value_t = MethodOptions::default().ewc_decay)]
    ewc_decay: f64,
    /// si: strength c of the penalty c Σ Ω (θ − θ*)².
    #[arg(long, default_value_t = MethodOptions::default().si_c)]
    si_c: f64,
    /// si: damping ξ of Ω += ω / (Δθ² + ξ).
    #[arg(long, default_value_t = MethodOptions::default().si_xi)]
    si_xi: f64,
    /// lwf: weight α of the distillation term α·T²·KL(old ‖ new).
    #[arg(long, default_value_t = MethodOptions::default().lwf_alpha)]
    lwf_alpha: f64,
    /// lwf: softmax temperature T (1.5 in Cossu et al. 2021).
    #[arg(long, default_value_t = MethodOptions::default().lwf_temperature)]
    lwf_temperature: f64,
    /// agem: memory sequences in each step's reference batch (all of them when fewer).
    #[arg(long, default_value_t = MethodOptions::default().agem_batch)]
    agem_batch: usize,
    /// dual-net: what a pseudo-pattern is: sequence (a whole input sequence reverberated through
    /// the auto-associative head), closed-loop (the generator fed its own reconstruction step
    /// after step) or transition (one (item, state) pair, Ans et al. 2004).
    #[arg(long, default_value = "sequence")]
    pseudo: String,
    /// dual-net: reverberations R (0: one pass from the seed, Robins's pseudo-rehearsal).
    #[arg(long, default_value_t = DualOptions::default().rounds, allow_negative_numbers = true)]
    reverberations: usize,
    /// dual-net: noise seeds: uniform, gaussian or binary, matched per feature to the data.
    #[arg(long, default_value = "uniform")]
    noise: String,
    /// dual-net: pseudo-patterns of NET2 per real sequence in each of NET1's batches.
    #[arg(long, default_value_t = DualOptions::default().per_example)]
    pseudo_per_example: f64,
    /// dual-net: pseudo-patterns of NET1 per transfer epoch.
    #[arg(long, default_value_t = DualOptions::default().transfer_size)]
    transfer_size: usize,
    /// dual-net: transfer epochs (NET2 learns NET1's pseudo-patterns after each experience).
    #[arg(long, default_value_t = DualOptions::default().transfer_epochs)]
    transfer_epochs: usize,
    /// dual-net: hard targets (the generator's arg-max class) instead of its probabilities.
    #[arg(long)]
    hard_targets: bool,
    /// dual-net: re-initialise NET1 before each experience after the first.
    #[arg(long)]
    reset_net1: bool,
    /// dual-net: real sequences kept per class as reverberation seeds instead of noise
    /// (Solinas et al.'s combined replay; 0: noise only).
    #[arg(long, default_value_t = 0)]
    seeds_per_class: usize,
    /// dual-net: weight of the reconstruction error beside the task loss.
    #[arg(long, default_value_t = DualOptions::default().recon_weight)]
    recon_weight: f64,
    /// dual-net: train the reconstruction as a denoising auto-encoder, inputs corrupted by
    /// Gaussian noise of this many standard deviations per feature (0: plain).
    #[arg(long, default_value_t = DualOptions::default().denoise)]
    denoise: f64,
    /// A TOML recipe (see models/); flags given here override its keys.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Folder that holds run folders.
    #[arg(long, default_value_os_t = crate::default_runs_dir())]
    runs_dir: PathBuf,
    /// Run folder name (default: continual-<scenario>-<method>-<cell>-s<seed>).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    settings: Settings,
}

/// A whole number ≥ 1.
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number ≥ 1")),
    }
}

pub fn run(args: ContinualArgs) -> Result<()> {
    match args.resume.clone() {
        Some(dir) => resume(args, dir),
        None => fresh(args),
    }
}

/// Prints one experience's line (and NET2's, for the dual network).
fn print_record(r: &ExperienceRecord) {
    let round = |v: &[f64]| {
        v.iter()
            .map(|a| (a * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    };
    println!(
        "experience {}: accuracy on each {:?}, mean over seen {:.4} ({:.1} s)",
        r.experience + 1,
        round(&r.accuracies),
        r.acc_seen,
        r.seconds
    );
    if let Some(a) = &r.net2_accuracies {
        println!("  NET2 after the transfer: {:?}", round(a));
    }
}

/// The line that opens a run.
fn headline(scenario: &Scenario, method: Method, cfg: &RunConfig) -> String {
    let r = &cfg.model.rnn;
    format!(
        "{} · {} · {} experiences of {} epochs · {} (hidden {}, {} layer{}, {}) · seed {}",
        scenario.spec,
        method.name(),
        scenario.experiences.len(),
        cfg.train.epochs,
        r.cell,
        r.hidden_size,
        r.num_layers,
        if r.num_layers == 1 { "" } else { "s" },
        cfg.dtype,
        cfg.train.seed
    )
}

/// The settings of the task group that a scenario without a registry task cannot use: every
/// one but --data-seed (which draws the lists).
fn task_settings_given(s: &Settings) -> Result<Vec<String>> {
    let table = toml::Table::try_from(&s.task).context("listing the task settings")?;
    Ok(table
        .keys()
        .filter(|k| k.as_str() != "data-seed")
        .map(|k| format!("--{k}"))
        .collect())
}

/// `cfg` (resolved for [`STAND_IN_TASK`]) with the model's input and output sizes those of
/// `scenario`'s made-up sequences.
fn fit_to_scenario(cfg: &mut RunConfig, scenario: &Scenario) -> Result<()> {
    let (input, output) = (scenario.base.input_size(), scenario.base.output_size());
    match &cfg.model.encoder {
        None => cfg.model.rnn.input_size = input,
        Some(EncoderConfig::Dense { .. }) => cfg.model.encoder_input = Some(input),
        Some(_) => bail!(
            "--encoder conv reads square video frames, and the scenario {} presents items as \
             binary vectors; use a dense encoder or none",
            scenario.spec
        ),
    }
    cfg.model.output_size = output;
    cfg.model.validate()?;
    Ok(())
}

fn fresh(args: ContinualArgs) -> Result<()> {
    let text = args
        .scenario
        .as_deref()
        .context("--scenario is required (or --resume RUN_DIR)")?;
    let spec: ScenarioSpec = text.parse()?;
    let method = Method::parse(
        &args.method,
        &MethodOptions {
            per_class: args.buffer_per_class,
            per_batch: args.replay_batch,
            ewc_lambda: args.ewc_lambda,
            ewc_decay: args.ewc_decay,
            si_c: args.si_c,
            si_xi: args.si_xi,
            lwf_alpha: args.lwf_alpha,
            lwf_temperature: args.lwf_temperature,
            agem_batch: args.agem_batch,
            dual: DualOptions {
                kind: args.pseudo.parse()?,
                rounds: args.reverberations,
                noise: args.noise.parse()?,
                per_example: args.pseudo_per_example,
                transfer_size: args.transfer_size,
                transfer_epochs: args.transfer_epochs,
                soft: !args.hard_targets,
                reset: args.reset_net1,
                seeds_per_class: args.seeds_per_class,
                recon_weight: args.recon_weight,
                denoise: args.denoise,
            },
        },
    )?;
    method.check_scenario(&spec)?;
    let mut given = Settings::default();
    if let Some(r) = &args.recipe {
        given = given.overlay(Settings::from_recipe(r)?);
    }
    match spec.task() {
        Some(task) => {
            if args.settings.task.task.is_some_and(|t| t != task) {
                bail!(
                    "--task and --scenario name different tasks; the scenario's task is used, \
                     remove --task"
                );
            }
        }
        None => {
            // A recipe's task is replaced by the scenario's, as for the other scenarios.
            let mut from_user = given.clone().overlay(args.settings.clone());
            if args.settings.task.task.is_none() {
                from_user.task.task = None;
            }
            let refused = task_settings_given(&from_user)?;
            if !refused.is_empty() {
                bail!(
                    "--scenario {spec} makes up its own sequences from the seed and reads no \
                     task or data; remove {} (--data-seed draws other lists)",
                    refused.join(", ")
                );
            }
        }
    }
    given = given.overlay(args.settings.clone());
    given.task.task = Some(spec.task().unwrap_or(STAND_IN_TASK));
    let s = Settings::defaults().overlay(given.clone());
    s.check_applicable(&given.given())?;
    let mut cfg = s.resolve()?;
    cfg.train.early_stop = false;
    cfg.model.rnn.threads = crate::kernel_threads();
    let device = parse_device(&cfg.device).context("--device")?;
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "continual-{}-{}-{}-s{}",
            spec.to_string().replace(':', "-"),
            method.name(),
            cfg.model.rnn.cell,
            cfg.train.seed
        )
    });
    let max = args.max_experiences;
    with_deep_stack(move || {
        let scenario = match spec.task() {
            Some(_) => {
                let base = build_task(&cfg.task).context("building the task")?;
                Scenario::new(spec, base.into(), cfg.task.data_seed)?
            }
            None => {
                let s = Scenario::synthetic(spec, cfg.task.data_seed)?;
                fit_to_scenario(&mut cfg, &s)?;
                s
            }
        };
        method.check_memory(&scenario)?;
        super::check_memory(&cfg)?;
        let run = RunDir::create_new(&args.runs_dir, &name)?;
        let _lock = run.lock()?;
        println!("{}", headline(&scenario, method, &cfg));
        let matrix = runner::run_limited(
            &cfg,
            &scenario,
            method,
            &run,
            &device,
            &mut Silent,
            &mut print_record,
            max,
        )?;
        finish(&matrix, &run);
        Ok(())
    })
}

/// Prints the matrix and where the run is, and how to go on when it is not complete.
fn finish(matrix: &remanence_continual::matrix::AccuracyMatrix, run: &RunDir) {
    println!("{}", matrix.to_markdown());
    println!("run folder: {}", run.path().display());
    if !matrix.is_complete() {
        println!(
            "stopped after {} of {} experiences; continue with: remanence continual --resume {}",
            matrix.rows.len(),
            matrix.experiences,
            run.path().display()
        );
    }
}

fn resume(args: ContinualArgs, dir: PathBuf) -> Result<()> {
    let given = args.settings.given();
    if !given.is_empty() {
        bail!(
            "--resume continues the run with its own settings (its config.json); remove --{}",
            given.join(", --")
        );
    }
    let run = RunDir::open(&dir)?;
    let mut stopped = runner::Stopped::read(&run)?;
    stopped.cfg.model.rnn.threads = crate::kernel_threads();
    let device = parse_device(&stopped.cfg.device)
        .with_context(|| format!("device of run {}", dir.display()))?;
    let max = args.max_experiences;
    with_deep_stack(move || {
        let cfg = &stopped.cfg;
        super::check_memory(cfg)?;
        let scenario = match stopped.spec.task() {
            Some(task) => {
                if cfg.task.kind != task {
                    bail!(
                        "{}: config.json has the task {}, and the scenario {} reads {task}",
                        dir.display(),
                        cfg.task.kind,
                        stopped.spec
                    );
                }
                let base = build_task(&cfg.task).context("building the task")?;
                Scenario::new(stopped.spec.clone(), base.into(), stopped.seed)?
            }
            None => Scenario::synthetic(stopped.spec.clone(), stopped.seed)?,
        };
        let _lock = run.lock()?;
        println!("{}", headline(&scenario, stopped.method, cfg));
        println!(
            "resuming at experience {} of {}",
            stopped.next + 1,
            stopped.experiences
        );
        let matrix = runner::resume(
            &stopped,
            &scenario,
            &run,
            &device,
            &mut Silent,
            &mut print_record,
            max,
        )?;
        finish(&matrix, &run);
        Ok(())
    })
}
