use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::device::parse_device;
use remanence_cells::SequenceModel;
use remanence_continual::backtune::learner::BacktuneLearner;
use remanence_tasks::build_task;
use remanence_train::stack::with_deep_stack;
use remanence_train::{Learner, RunConfig, RunDir, Trainer};

use crate::progress::Progress;
use crate::settings::{data_dir_for, run_name, Settings};

#[derive(Args)]
pub struct TrainArgs {
    /// A TOML recipe (see models/); flags given here override its keys.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint (only --epochs and --data may
    /// change).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Folder that holds run folders.
    #[arg(long, default_value_os_t = crate::default_runs_dir())]
    runs_dir: PathBuf,
    /// Run folder name (default: <task>-<cell>-h<hidden>-s<seed>, suffixed -2, -3, … if taken).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    settings: Settings,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let threads = crate::kernel_threads();
    let (mut cfg, target) = match &args.resume {
        Some(path) => {
            if args.recipe.is_some() || args.name.is_some() {
                bail!("--resume continues a run with its own configuration; --recipe and --name cannot be given");
            }
            let changed: Vec<_> = args
                .settings
                .given()
                .into_iter()
                .filter(|s| s != "epochs" && s != "data")
                .collect();
            if !changed.is_empty() {
                bail!(
                    "--resume keeps the run's configuration; only --epochs and --data may be given (got --{})",
                    changed.join(", --")
                );
            }
            let dir = RunDir::open(path)?;
            let mut cfg = dir.read_config()?;
            if let Some(e) = args.settings.train.epochs {
                cfg.train.epochs = e;
            }
            if let Some(d) = &args.settings.task.data {
                cfg.task.data_dir = Some(data_dir_for(cfg.task.kind, d)?);
            }
            (cfg, Target::Resume(dir))
        }
        None => {
            let mut given = Settings::default();
            if let Some(r) = &args.recipe {
                given = given.overlay(Settings::from_recipe(r)?);
            }
            given = given.overlay(args.settings.clone());
            let s = Settings::defaults().overlay(given.clone());
            s.check_applicable(&given.given())?;
            let mut cfg = s.resolve()?;
            if cfg.train.ridge.is_some() && !given.given().iter().any(|g| g == "epochs") {
                // A closed-form fit over a fixed training set gives the same head every epoch.
                cfg.train.epochs = 1;
            }
            parse_device(&cfg.device).context("--device")?;
            let name = args.name.clone().unwrap_or_else(|| run_name(&cfg));
            (cfg, Target::New(args.runs_dir.clone(), name))
        }
    };
    cfg.model.rnn.threads = threads;
    with_deep_stack(move || train(cfg, target))
}

/// Where the run goes: a new folder (created once the task's data and the model are known to be
/// good) or an existing one.
enum Target {
    New(PathBuf, String),
    Resume(RunDir),
}

fn train(cfg: RunConfig, target: Target) -> Result<()> {
    let device = parse_device(&cfg.device)?;
    let task = build_task(&cfg.task).context("building the task")?;
    for w in task.warnings() {
        eprintln!("warning: {w}");
    }
    super::check_memory(&cfg)?;
    let stats = task.fitted_statistics();
    if cfg.train.backtune.is_some() {
        // Before the run folder exists: a model backward tuning cannot train leaves nothing.
        remanence_continual::backtune::learner::check_model(&cfg.model)
            .context("--trainer backward-tuning")?;
    }
    let (dir, _lock, mut trainer) = match target {
        Target::New(root, name) => {
            // The model is built once, before its folder exists, so a bad configuration leaves
            // nothing behind.
            let (model, store) =
                SequenceModel::init(&cfg.model, cfg.train.seed, cfg.dtype()?, &device)
                    .context("the model configuration")?;
            let dir = RunDir::create_new(&root, &name)?;
            let lock = dir.lock()?;
            if !stats.is_empty() {
                dir.write_task_statistics(&stats)?;
            }
            let t = Trainer::from_model(
                cfg.clone(),
                task.as_ref(),
                dir.clone(),
                device.clone(),
                model,
                store,
            )?;
            (dir, lock, t)
        }
        Target::Resume(dir) => {
            let lock = dir.lock()?;
            super::check_task_statistics(&dir, &stats)?;
            let t = Trainer::resume(cfg.clone(), task.as_ref(), dir.clone(), device.clone())?;
            println!(
                "resuming {} after epoch {}",
                dir.path().display(),
                t.state().epochs_completed
            );
            (dir, lock, t)
        }
    };
    if let Some(b) = &cfg.train.backtune {
        // The trainer's default learner is gradient descent (remanence-train cannot build this
        // one): replace it, for a new run and a resumed one alike. Backward tuning keeps no
        // state between batches but its count of updates.
        let threads = crate::kernel_threads().unwrap_or(1);
        let mut learner = BacktuneLearner::new(b.clone(), threads)?;
        learner.load_state(Default::default(), trainer.state().optimizer_steps)?;
        trainer = trainer.with_learner(Box::new(learner));
    }
    let path = dir.path().to_path_buf();
    println!(
        "{}",
        super::describe(&cfg, trainer.store().num_parameters())
    );
    let total = (cfg
        .train
        .epochs
        .saturating_sub(trainer.state().epochs_completed)
        * task.train_len()) as u64;
    let mut progress = Progress::new(total, cfg.train.epochs);
    let outcome = trainer.run(&mut progress);
    progress.finish();
    let outcome = outcome.with_context(|| format!("training run {}", path.display()))?;
    let st = &outcome.state;
    match st.solved_at_sequences {
        Some(n) => println!(
            "solved after {n} training sequences ({} epochs run)",
            st.epochs_completed
        ),
        None => println!(
            "{} epochs run, {} training sequences seen",
            st.epochs_completed, st.sequences_seen
        ),
    }
    println!("{}", outcome.evaluation.summary);
    if let Some(b) = &st.best {
        println!(
            "best validation: epoch {} ({} {:.6}), where {} was {:.6}; its weights are best.safetensors \
             (`eval --best`)",
            b.epoch, b.selected_by, b.value, b.metric_name, b.metric
        );
    }
    println!("run folder: {}", path.display());
    Ok(())
}
