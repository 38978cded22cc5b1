//! `remanence continual`: a continual-learning scenario run with one method; the accuracy matrix,
//! its summary and the per-experience runs land in the run folder. `--resume RUN_DIR` continues a
//! run that stopped (interrupted, or `--max-experiences` spent) at its first unfinished
//! experience, with the numbers an uninterrupted run gives.
//!
//! `--recipe FILE.toml` takes, beside the training settings' keys, `scenario`, `method` and each
//! method setting's flag name (dashes or underscores) at the top level (models/continual-*.toml);
//! flags override the recipe, which overrides the defaults. `--check` (hidden) prints what the
//! command line resolves to and stops.
//!
//! `--distributed mpi` (`mpirun -np N remanence continual … --distributed mpi`, a binary built
//! with `--features mpi`) trains each experience data-parallel across the ranks of the job, with
//! the accuracy matrix and final weights of one process: every rank runs the scenario
//! ([`runner::run_limited_on`]), rank 0 in the run folder and the others in scratch folders
//! ([`world::scratch_root`]) removed at the end; only rank 0 prints. To resume, rank 0 reads the
//! stopped run and sends the other ranks the files they need ([`runner::send_stopped`]),
//! so the ranks need no shared filesystem. A method whose data-parallel training would give
//! another result (dual-net, assoc-memory) is refused, as is a world larger than some
//! experience's batches.
//! A rank that fails ends the job.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use remanence_cells::encoder::EncoderConfig;
use remanence_continual::dual::DualOptions;
use remanence_continual::reverberation::{Noise, PseudoKind};
use remanence_continual::runner::{self, ExperienceRecord};
use remanence_continual::scenario::{Scenario, ScenarioSpec};
use remanence_continual::strategy::{Method, MethodOptions};
use remanence_tasks::{build_task, TaskKind};
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::Silent;
use remanence_train::{RunConfig, RunDir};
use serde::{Deserialize, Serialize};

use remanence_distributed::Collective;

use super::world::{self, Distributed, World};
use crate::settings::Settings;

/// The task that settings resolve with for a scenario that reads no registry task (sequence
/// lists); the model's sizes are then set from the scenario. Its single input feature can never
/// match a lists model (V ≥ 2 inputs), so no command can mistake the run folder's model for a
/// model of this task; `continual.json` records the scenario.
const STAND_IN_TASK: TaskKind = TaskKind::MnistPixels;

#[derive(Args)]
pub struct ContinualArgs {
    #[command(flatten)]
    choice: Choice,
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
            "hard_targets", "reset_net1", "seeds_per_class", "recon_weight", "denoise", "segments",
            "anchors", "per_class", "recipe", "runs_dir", "name", "check",
        ]
    )]
    resume: Option<PathBuf>,
    /// Learn at most this many experiences in this call, then stop (`--resume` continues).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_experiences: Option<usize>,
    /// A TOML recipe (see models/continual-*.toml): the training settings' keys and those of
    /// the flags above (scenario, method and the method settings); flags given here override
    /// its keys.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Resolve the scenario, method and settings (recipe, flags, defaults), print them and stop:
    /// nothing is trained, read or written.
    #[arg(long, hide = true)]
    check: bool,
    /// Folder that holds run folders.
    #[arg(long, default_value_os_t = crate::default_runs_dir())]
    runs_dir: PathBuf,
    /// Run folder name (default: continual-<scenario>-<method>-<cell>-s<seed>).
    #[arg(long)]
    name: Option<String>,
    /// Train each experience data-parallel across the processes of an MPI job: `mpirun -np N
    /// remanence continual … --distributed mpi` (a binary built with `--features mpi`); the
    /// same accuracy matrix and weights as one process, rank 0 writing the run folder. Also
    /// with --resume. Not for dual-net.
    #[arg(long, value_enum)]
    distributed: Option<Distributed>,
    /// With `--distributed nccl`: the ranks meet through this file (rank 0 writes NCCL's id
    /// there, the others wait for it; a new path every rank can read), not over MPI.
    #[arg(long, value_name = "PATH", requires = "distributed")]
    nccl_id_file: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

/// The method when neither a flag nor the recipe names one.
const DEFAULT_METHOD: &str = "naive";

/// `text` with the default `value` the way clap shows one.
fn with_default(text: &str, value: impl std::fmt::Display) -> String {
    format!("{} [default: {value}]", text.trim_end_matches('.'))
}

/// The name a setting of an enumeration has in recipes and on the command line (its serde
/// name: `closed-loop`).
fn serde_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

fn method_defaults() -> MethodOptions {
    MethodOptions::default()
}

fn dual_defaults() -> DualOptions {
    DualOptions::default()
}

/// The scenario, the method and its settings: flags of `remanence continual` and keys of its
/// recipe with the same names (dashes or underscores); `None`: not given there. Precedence:
/// defaults ([`MethodOptions::default`], whose values the help shows) < recipe < flags.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Choice {
    /// The stream of experiences: split:TASK:CLASSES_PER_EXPERIENCE (class-incremental),
    /// split-task:TASK:CLASSES_PER_EXPERIENCE (task-incremental: each sequence's read-out masked
    /// to its own group), permuted:TASK:EXPERIENCES (domain-incremental) or
    /// lists:LISTS:SEQUENCES_PER_LIST:ITEMS_PER_SEQUENCE:VOCABULARY (sequence lists made up from
    /// the seed, learned list after list by next-item prediction; no data set), e.g.
    /// split:mnist-rows:2, lists:4:5:6:24. Required, here or in the recipe (unless --resume).
    #[arg(long)]
    scenario: Option<String>,
    #[arg(
        long,
        help = with_default(
            "naive, joint (cumulative training, the upper bound), replay, ewc (online EWC), si \
             (synaptic intelligence), lwf (learning without forgetting), agem (averaged gradient \
             episodic memory), dual-net (Ans & Rousset's two networks with reverberated \
             pseudo-patterns: no real data kept) or assoc-memory (alias memory: the model \
             trained on the first experience only, then frozen; a binary bipartite memory of \
             its product-quantised features learns every class without gradient steps; \
             class-incremental split scenarios, one process).",
            DEFAULT_METHOD,
        )
    )]
    method: Option<String>,
    #[arg(long, help = with_default(
        "replay, agem: sequences kept per class in the memory.",
        method_defaults().per_class,
    ))]
    buffer_per_class: Option<usize>,
    #[arg(long, help = with_default(
        "replay: buffered sequences added to each training batch.",
        method_defaults().per_batch,
    ))]
    replay_batch: Option<usize>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "ewc: strength λ of the penalty (λ/2) Σ F (θ − θ*)², F the mean squared batch gradient.",
        method_defaults().ewc_lambda,
    ))]
    ewc_lambda: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "ewc: F ← decay·F + F_new after each experience (1: plain EWC, < 1: online EWC).",
        method_defaults().ewc_decay,
    ))]
    ewc_decay: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "si: strength c of the penalty c Σ Ω (θ − θ*)².",
        method_defaults().si_c,
    ))]
    si_c: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "si: damping ξ of Ω += ω / (Δθ² + ξ).",
        method_defaults().si_xi,
    ))]
    si_xi: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "lwf: weight α of the distillation term α·T²·KL(old ‖ new).",
        method_defaults().lwf_alpha,
    ))]
    lwf_alpha: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "lwf: softmax temperature T (1.5 in Cossu et al. 2021).",
        method_defaults().lwf_temperature,
    ))]
    lwf_temperature: Option<f64>,
    #[arg(long, help = with_default(
        "agem: memory sequences in each step's reference batch (all of them when fewer).",
        method_defaults().agem_batch,
    ))]
    agem_batch: Option<usize>,
    #[arg(long, help = with_default(
        "dual-net: what a pseudo-pattern is: sequence (a whole input sequence reverberated \
         through the auto-associative head), closed-loop (the generator fed its own \
         reconstruction step after step) or transition (one (item, state) pair, Ans et al. 2004).",
        serde_name(dual_defaults().kind),
    ))]
    pseudo: Option<String>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "dual-net: reverberations R (0: one pass from the seed, Robins's pseudo-rehearsal).",
        dual_defaults().rounds,
    ))]
    reverberations: Option<usize>,
    #[arg(long, help = with_default(
        "dual-net: noise seeds: uniform, gaussian or binary, matched per feature to the data.",
        serde_name(dual_defaults().noise),
    ))]
    noise: Option<String>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "dual-net: pseudo-patterns of NET2 per real sequence in each of NET1's batches.",
        dual_defaults().per_example,
    ))]
    pseudo_per_example: Option<f64>,
    #[arg(long, help = with_default(
        "dual-net: pseudo-patterns of NET1 per transfer epoch.",
        dual_defaults().transfer_size,
    ))]
    transfer_size: Option<usize>,
    #[arg(long, help = with_default(
        "dual-net: transfer epochs (NET2 learns NET1's pseudo-patterns after each experience).",
        dual_defaults().transfer_epochs,
    ))]
    transfer_epochs: Option<usize>,
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "true|false",
        help = with_default(
            "dual-net: hard targets (the generator's arg-max class) instead of its probabilities.",
            !dual_defaults().soft,
        )
    )]
    hard_targets: Option<bool>,
    #[arg(
        long,
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "true|false",
        help = with_default(
            "dual-net: re-initialise NET1 before each experience after the first.",
            dual_defaults().reset,
        )
    )]
    reset_net1: Option<bool>,
    #[arg(long, help = with_default(
        "dual-net: real sequences kept per class as reverberation seeds instead of noise \
         (Solinas et al.'s combined replay; 0: noise only).",
        dual_defaults().seeds_per_class,
    ))]
    seeds_per_class: Option<usize>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "dual-net: weight of the reconstruction error beside the task loss.",
        dual_defaults().recon_weight,
    ))]
    recon_weight: Option<f64>,
    #[arg(long, allow_negative_numbers = true, help = with_default(
        "dual-net: train the reconstruction as a denoising auto-encoder, inputs corrupted by \
         Gaussian noise of this many standard deviations per feature (0: plain).",
        dual_defaults().denoise,
    ))]
    denoise: Option<f64>,
    #[arg(long, help = with_default(
        "assoc-memory: P, the segments of the product quantiser of the features (the final state \
         of every layer).",
        method_defaults().segments,
    ))]
    segments: Option<usize>,
    #[arg(long, help = with_default(
        "assoc-memory: K, the anchors of each segment (per-segment k-means on the first \
         experience's training features).",
        method_defaults().anchors,
    ))]
    anchors: Option<usize>,
    /// assoc-memory: training sequences of each class stored in the memory (the first N of the
    /// class in its experience) [default: all].
    #[arg(long)]
    per_class: Option<usize>,
}

impl Choice {
    /// Every recipe key of this group, which is also its flag's name (read from the flags).
    fn keys() -> Vec<String> {
        <Choice as Args>::augment_args(clap::Command::new("continual"))
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    }

    fn to_table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("continual settings serialise to a table")
    }

    /// `top` wins where it gives a value.
    fn overlay(self, top: Choice) -> Choice {
        let mut base = self.to_table();
        base.extend(top.to_table());
        base.try_into()
            .expect("an overlay of valid continual settings is valid")
    }

    /// Reads the continual keys (with dashes) of the recipe `path`, each value checked against
    /// its flag's type; a wrong one is refused naming the key, the file and what it takes.
    fn from_recipe_table(table: toml::Table, path: &Path) -> Result<Choice> {
        let mut out = Choice::default();
        for (key, value) in table {
            let one = |v: toml::Value| -> std::result::Result<Choice, toml::de::Error> {
                toml::Table::from_iter([(key.clone(), v)]).try_into()
            };
            let read = one(value.clone()).map_err(|_| {
                // What the key takes, found by trying a value of each kind.
                let takes = if one(toml::Value::Boolean(true)).is_ok() {
                    "true or false"
                } else if one(toml::Value::Float(0.5)).is_ok() {
                    "a number"
                } else if one(toml::Value::Integer(1)).is_ok() {
                    "a whole number ≥ 0"
                } else {
                    "a text in quotes"
                };
                anyhow!(
                    "invalid recipe {}: `{key}` takes {takes}, got `{value}`",
                    path.display()
                )
            })?;
            out = out.overlay(read);
        }
        // The values that name something, checked here so that the message names the file.
        let invalid = |key: &str| format!("invalid recipe {}: `{key}`", path.display());
        if let Some(s) = &out.scenario {
            s.parse::<ScenarioSpec>()
                .with_context(|| invalid("scenario"))?;
        }
        if let Some(m) = &out.method {
            Method::parse(m, &MethodOptions::default()).with_context(|| invalid("method"))?;
        }
        if let Some(p) = &out.pseudo {
            p.parse::<PseudoKind>().with_context(|| invalid("pseudo"))?;
        }
        if let Some(n) = &out.noise {
            n.parse::<Noise>().with_context(|| invalid("noise"))?;
        }
        Ok(out)
    }

    /// The method settings: those given here, the defaults for the rest.
    fn options(&self) -> Result<MethodOptions> {
        let m = MethodOptions::default();
        let d = m.dual;
        Ok(MethodOptions {
            per_class: self.buffer_per_class.unwrap_or(m.per_class),
            per_batch: self.replay_batch.unwrap_or(m.per_batch),
            ewc_lambda: self.ewc_lambda.unwrap_or(m.ewc_lambda),
            ewc_decay: self.ewc_decay.unwrap_or(m.ewc_decay),
            si_c: self.si_c.unwrap_or(m.si_c),
            si_xi: self.si_xi.unwrap_or(m.si_xi),
            lwf_alpha: self.lwf_alpha.unwrap_or(m.lwf_alpha),
            lwf_temperature: self.lwf_temperature.unwrap_or(m.lwf_temperature),
            agem_batch: self.agem_batch.unwrap_or(m.agem_batch),
            dual: DualOptions {
                kind: match &self.pseudo {
                    Some(p) => p.parse()?,
                    None => d.kind,
                },
                rounds: self.reverberations.unwrap_or(d.rounds),
                noise: match &self.noise {
                    Some(n) => n.parse()?,
                    None => d.noise,
                },
                per_example: self.pseudo_per_example.unwrap_or(d.per_example),
                transfer_size: self.transfer_size.unwrap_or(d.transfer_size),
                transfer_epochs: self.transfer_epochs.unwrap_or(d.transfer_epochs),
                soft: self.hard_targets.map_or(d.soft, |hard| !hard),
                reset: self.reset_net1.unwrap_or(d.reset),
                seeds_per_class: self.seeds_per_class.unwrap_or(d.seeds_per_class),
                recon_weight: self.recon_weight.unwrap_or(d.recon_weight),
                denoise: self.denoise.unwrap_or(d.denoise),
            },
            segments: self.segments.unwrap_or(m.segments),
            anchors: self.anchors.unwrap_or(m.anchors),
            store_per_class: self.per_class.or(m.store_per_class),
        })
    }
}

/// A whole number ≥ 1.
fn at_least_one(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("`{s}` is not a whole number ≥ 1")),
    }
}

pub fn run(args: ContinualArgs) -> Result<()> {
    let world = match args.distributed {
        Some(kind) => world::init_with(kind, args.nccl_id_file.as_deref())?,
        None => return run_on(args, None),
    };
    // A rank that fails must end the job: the others would wait for it in their next
    // collective call.
    let result = run_on(args, Some(world.clone()));
    if world.rank() != 0 {
        let _ = std::fs::remove_dir_all(world::scratch_root(world.rank()));
    }
    if let Err(e) = &result {
        eprintln!("error on rank {} of {}: {e:#}", world.rank(), world.size());
        world.abort(1);
    }
    result
}

fn run_on(args: ContinualArgs, world: Option<World>) -> Result<()> {
    match args.resume.clone() {
        Some(dir) => resume(args, dir, world),
        None => fresh(args, world),
    }
}

/// The job's collective for the runner, with `world`.
fn parallel(world: &Option<World>) -> Option<runner::Parallel> {
    world.as_ref().map(|w| {
        let w = w.clone();
        runner::Parallel::new(move || Box::new(w.clone()) as Box<dyn Collective>)
    })
}

/// A run folder of its own for a rank other than 0 (emptied first).
fn scratch_run(rank: usize) -> Result<RunDir> {
    let root = world::scratch_root(rank);
    let _ = std::fs::remove_dir_all(&root);
    Ok(RunDir::create_new(&root, "run")?)
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

fn fresh(args: ContinualArgs, world: Option<World>) -> Result<()> {
    let rank = world.as_ref().map_or(0, |w| w.rank());
    let (recipe, from_recipe) = match &args.recipe {
        Some(r) => {
            let (settings, own) = Settings::from_recipe_with(r, &Choice::keys())?;
            (settings, Choice::from_recipe_table(own, r)?)
        }
        None => (Settings::default(), Choice::default()),
    };
    let choice = from_recipe.overlay(args.choice.clone());
    let text = choice.scenario.as_deref().with_context(|| {
        format!(
            "no scenario: give --scenario (e.g. split:mnist-rows:2, lists:4:5:6:24){}, or \
             --resume RUN_DIR",
            match &args.recipe {
                Some(r) => format!(" or `scenario = \"…\"` in {}", r.display()),
                None => " or a recipe (--recipe) with `scenario = \"…\"`".into(),
            }
        )
    })?;
    let spec: ScenarioSpec = text.parse()?;
    let method = Method::parse(
        choice.method.as_deref().unwrap_or(DEFAULT_METHOD),
        &choice.options()?,
    );
    let method = match &args.recipe {
        Some(r) => method
            .with_context(|| format!("the method settings of {} and the flags", r.display()))?,
        None => method?,
    };
    method.check_scenario(&spec)?;
    if world.is_some() {
        method.check_distributed()?;
    }
    let mut given = recipe;
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
    if cfg.train.ridge.is_some() {
        bail!(
            "the continual-learning methods learn by gradient, and {} asks for a ridge read-out;              give --trainer gradient (the reservoir's weights then learn too) or another --cell",
            if cfg.model.rnn.cell == remanence_cells::CellKind::Esn {
                "--cell esn"
            } else {
                "--trainer ridge"
            }
        );
    }
    cfg.train.early_stop = false;
    cfg.model.rnn.threads = crate::kernel_threads();
    let device = world::device(&cfg.device, world.as_ref()).context("--device")?;
    let name = args.name.clone().unwrap_or_else(|| {
        format!(
            "continual-{}-{}-{}-s{}",
            spec.to_string().replace(':', "-"),
            method.name(),
            cfg.model.rnn.cell,
            cfg.train.seed
        )
    });
    if args.check {
        if rank != 0 {
            // Rank 0 prints what the job would do.
            return Ok(());
        }
        return check(&spec, method, cfg, &args.runs_dir.join(&name));
    }
    let max = args.max_experiences;
    with_deep_stack(move || {
        let parallel = parallel(&world);
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
        if let Some(w) = &world {
            // Before any folder exists.
            runner::check_parallel(&cfg, &scenario, method, w.size())?;
        }
        let run = match rank {
            0 => RunDir::create_new(&args.runs_dir, &name)?,
            r => scratch_run(r)?,
        };
        let _lock = run.lock()?;
        if rank == 0 {
            println!("{}", headline(&scenario, method, &cfg));
            if let Some(w) = &world {
                println!("data-parallel over {} MPI ranks", w.size());
            }
        }
        let matrix = runner::run_limited_on(
            &cfg,
            &scenario,
            method,
            &run,
            &device,
            &mut Silent,
            &mut |r| {
                if rank == 0 {
                    print_record(r)
                }
            },
            max,
            parallel.as_ref(),
        )?;
        if let Some(w) = &world {
            w.barrier()?;
        }
        if rank == 0 {
            finish(&matrix, &run);
        }
        Ok(())
    })
}

/// `--check`: prints what a run would learn, with which method and settings and where, and
/// stops before reading any data (sequence lists, made up from the seed, are drawn to size the
/// model).
fn check(spec: &ScenarioSpec, method: Method, mut cfg: RunConfig, dir: &Path) -> Result<()> {
    if spec.task().is_none() {
        let scenario = Scenario::synthetic(spec.clone(), cfg.task.data_seed)?;
        fit_to_scenario(&mut cfg, &scenario)?;
        method.check_memory(&scenario)?;
    }
    println!("scenario: {spec}");
    println!("method: {}", serde_json::to_string(&method)?);
    println!("run folder: {}", dir.display());
    if dir.exists() {
        println!("  (it exists: a run there would be refused; give another --name)");
    }
    println!("settings: {}", serde_json::to_string_pretty(&cfg)?);
    println!("checked: nothing was trained or written");
    Ok(())
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

fn resume(args: ContinualArgs, dir: PathBuf, world: Option<World>) -> Result<()> {
    let given = args.settings.given();
    if !given.is_empty() {
        bail!(
            "--resume continues the run with its own settings (its config.json); remove --{}",
            given.join(", --")
        );
    }
    let rank = world.as_ref().map_or(0, |w| w.rank());
    let max = args.max_experiences;
    with_deep_stack(move || {
        // Rank 0 reads the stopped run; the other ranks (perhaps on nodes that cannot see its
        // folder) get the files they need from rank 0, into scratch folders, and read it there.
        let (run, mut stopped) = match (rank, &world) {
            (0, _) => {
                let run = RunDir::open(&dir)?;
                let stopped = runner::Stopped::read(&run)?;
                if let Some(w) = &world {
                    // Refused before anything reaches the others (a rank waiting for the
                    // files has written nothing when the job is aborted).
                    stopped.method.check_distributed()?;
                    runner::send_stopped(w, &run, &stopped)?;
                }
                (run, stopped)
            }
            (r, Some(w)) => {
                let files = runner::receive_stopped(w)?;
                let run = scratch_run(r)?;
                files.write_into(&run)?;
                let stopped =
                    runner::Stopped::read(&run).context("the stopped run as rank 0 sent it")?;
                (run, stopped)
            }
            (_, None) => bail!("a rank other than 0 without a job"),
        };
        stopped.cfg.model.rnn.threads = crate::kernel_threads();
        let device = world::device(&stopped.cfg.device, world.as_ref())
            .with_context(|| format!("device of run {}", dir.display()))?;
        let parallel = parallel(&world);
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
        if rank == 0 {
            println!("{}", headline(&scenario, stopped.method, cfg));
            if let Some(w) = &world {
                println!("data-parallel over {} MPI ranks", w.size());
            }
            println!(
                "resuming at experience {} of {}",
                stopped.next + 1,
                stopped.experiences
            );
        }
        let matrix = runner::resume_on(
            &stopped,
            &scenario,
            &run,
            &device,
            &mut Silent,
            &mut |r| {
                if rank == 0 {
                    print_record(r)
                }
            },
            max,
            parallel.as_ref(),
        )?;
        if let Some(w) = &world {
            w.barrier()?;
        }
        if rank == 0 {
            finish(&matrix, &run);
        }
        Ok(())
    })
}
