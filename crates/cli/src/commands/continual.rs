//! `remanence continual`: a continual-learning scenario run with one method; the accuracy matrix,
//! its summary and the per-experience runs land in the run folder.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::device::parse_device;
use remanence_continual::runner;
use remanence_continual::scenario::{Scenario, ScenarioSpec};
use remanence_continual::strategy::{Method, MethodOptions};
use remanence_tasks::build_task;
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::Silent;
use remanence_train::RunDir;

use crate::settings::Settings;

#[derive(Args)]
pub struct ContinualArgs {
    /// The stream of experiences: split:TASK:CLASSES_PER_EXPERIENCE (class-incremental) or
    /// permuted:TASK:EXPERIENCES (domain-incremental), e.g. split:mnist-rows:2.
    #[arg(long)]
    scenario: String,
    /// naive, joint (cumulative training, the upper bound), replay, ewc (online EWC), si
    /// (synaptic intelligence), lwf (learning without forgetting) or agem (averaged gradient
    /// episodic memory).
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

pub fn run(args: ContinualArgs) -> Result<()> {
    let spec: ScenarioSpec = args.scenario.parse()?;
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
        },
    )?;
    if args.settings.task.task.is_some_and(|t| t != spec.task()) {
        bail!("--task and --scenario name different tasks; the scenario's task is used, remove --task");
    }
    let mut given = Settings::default();
    if let Some(r) = &args.recipe {
        given = given.overlay(Settings::from_recipe(r)?);
    }
    given = given.overlay(args.settings.clone());
    given.task.task = Some(spec.task());
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
    with_deep_stack(move || {
        let base = build_task(&cfg.task).context("building the task")?;
        super::check_memory(&cfg)?;
        let scenario = Scenario::new(spec, base.into(), cfg.task.data_seed)?;
        let run = RunDir::create_new(&args.runs_dir, &name)?;
        let _lock = run.lock()?;
        let r = &cfg.model.rnn;
        println!(
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
        );
        let matrix = runner::run(
            &cfg,
            &scenario,
            method,
            &run,
            &device,
            &mut Silent,
            &mut |r| {
                println!(
                    "experience {}: accuracy on each {:?}, mean over seen {:.4} ({:.1} s)",
                    r.experience + 1,
                    r.accuracies
                        .iter()
                        .map(|a| (a * 1000.0).round() / 1000.0)
                        .collect::<Vec<_>>(),
                    r.acc_seen,
                    r.seconds
                )
            },
        )?;
        println!("{}", matrix.to_markdown());
        println!("run folder: {}", run.path().display());
        Ok(())
    })
}
