use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::device::parse_device;
use remanence_tasks::build_task;
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::evaluate;
use remanence_train::{RunConfig, RunDir, Trainer};

use crate::progress::Progress;
use crate::settings::{run_name, Settings};

#[derive(Args)]
pub struct TrainArgs {
    /// A TOML recipe (see models/); flags given here override its keys.
    #[arg(long)]
    recipe: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint (only --epochs may change).
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
    let (cfg, target) = match &args.resume {
        Some(path) => {
            if args.recipe.is_some() || args.name.is_some() {
                bail!("--resume continues a run with its own configuration; --recipe and --name cannot be given");
            }
            let changed: Vec<_> = args
                .settings
                .given()
                .into_iter()
                .filter(|s| *s != "epochs")
                .collect();
            if !changed.is_empty() {
                bail!(
                    "--resume keeps the run's configuration; only --epochs may be given (got --{})",
                    changed.join(", --").replace('_', "-")
                );
            }
            let dir = RunDir::open(path)?;
            let mut cfg = dir.read_config()?;
            if let Some(e) = args.settings.epochs {
                cfg.train.epochs = e;
            }
            (cfg, Target::Resume(dir))
        }
        None => {
            let mut s = Settings::defaults();
            if let Some(r) = &args.recipe {
                s = s.overlay(Settings::from_recipe(r)?);
            }
            let cfg = s.overlay(args.settings.clone()).resolve()?;
            parse_device(&cfg.device).context("--device")?;
            let name = args.name.clone().unwrap_or_else(|| run_name(&cfg));
            (cfg, Target::New(args.runs_dir.clone(), name))
        }
    };
    with_deep_stack(move || train(cfg, target))
}

/// Where the run goes: a new folder (created once the task's data is known to be good) or an
/// existing one.
enum Target {
    New(PathBuf, String),
    Resume(RunDir),
}

fn train(cfg: RunConfig, target: Target) -> Result<()> {
    let device = parse_device(&cfg.device)?;
    let task = build_task(&cfg.task).context("building the task")?;
    let (dir, resuming) = match target {
        Target::New(root, name) => (RunDir::create_new(&root, &name)?, false),
        Target::Resume(dir) => (dir, true),
    };
    let path = dir.path().to_path_buf();
    let mut trainer = if resuming {
        Trainer::resume(cfg.clone(), task.as_ref(), dir, device.clone())?
    } else {
        Trainer::new(cfg.clone(), task.as_ref(), dir, device.clone())?
    };
    println!(
        "{}",
        super::describe(&cfg, trainer.store().num_parameters())
    );
    if resuming {
        println!(
            "resuming {} after epoch {}",
            path.display(),
            trainer.state().epochs_completed
        );
    }
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
    let eval = evaluate(
        trainer.model(),
        task.as_ref(),
        cfg.train.eval_batch_size,
        &device,
        cfg.dtype()?,
    )?;
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
    println!("{}", eval.summary);
    println!("run folder: {}", path.display());
    Ok(())
}
