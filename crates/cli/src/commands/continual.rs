//! `remanence continual`: a continual-learning scenario run with one method; the accuracy matrix,
//! its summary and the per-experience runs land in the run folder.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::device::parse_device;
use remanence_continual::dual::DualOptions;
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
    #[arg(long, default_value_t = DualOptions::default().rounds)]
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
    let Some(task) = spec.task() else {
        bail!("--scenario {spec}: sequence lists are not wired to the command line yet");
    };
    if args.settings.task.task.is_some_and(|t| t != task) {
        bail!("--task and --scenario name different tasks; the scenario's task is used, remove --task");
    }
    let mut given = Settings::default();
    if let Some(r) = &args.recipe {
        given = given.overlay(Settings::from_recipe(r)?);
    }
    given = given.overlay(args.settings.clone());
    given.task.task = Some(task);
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
                );
                if let Some(a) = &r.net2_accuracies {
                    println!(
                        "  NET2 after the transfer: {:?}",
                        a.iter()
                            .map(|a| (a * 1000.0).round() / 1000.0)
                            .collect::<Vec<_>>()
                    );
                }
            },
        )?;
        println!("{}", matrix.to_markdown());
        println!("run folder: {}", run.path().display());
        Ok(())
    })
}
