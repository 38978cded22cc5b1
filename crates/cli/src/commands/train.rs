use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::SequenceModel;
use remanence_continual::backtune::learner::BacktuneLearner;
use remanence_distributed::{
    broadcast_parameters, check_same_config, check_world, replicate_checkpoint, AllReducePlugin,
    Collective,
};
use remanence_tasks::build_task;
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::{Observer, Silent};
use remanence_train::{GradientLearner, Learner, RunConfig, RunDir, Trainer};

use super::world::{self, Distributed, World};
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
    /// Train data-parallel across the processes of an MPI job: `mpirun -np N remanence train …
    /// --distributed mpi` (a binary built with `--features mpi`); the same result as one
    /// process with the same global batch, rank 0 writing the run folder.
    #[arg(long, value_enum)]
    distributed: Option<Distributed>,
    /// With `--distributed nccl`: the ranks meet through this file (rank 0 writes NCCL's id
    /// there, the others wait for it; a new path every rank can read), not over MPI.
    #[arg(long, value_name = "PATH", requires = "distributed")]
    nccl_id_file: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let world = match args.distributed {
        Some(kind) => Some(world::init_with(kind, args.nccl_id_file.as_deref())?),
        None => return run_on(&args, None),
    };
    // A rank that fails must end the job: the others would wait for it in their next
    // collective call.
    let result = run_on(&args, world.clone());
    if let (Err(e), Some(w)) = (&result, &world) {
        eprintln!("error on rank {} of {}: {e:#}", w.rank(), w.size());
        w.abort(1);
    }
    if let Some(w) = &world {
        if w.rank() != 0 {
            let _ = std::fs::remove_dir_all(world::scratch_root(w.rank()));
        }
    }
    result
}

fn run_on(args: &TrainArgs, world: Option<World>) -> Result<()> {
    let threads = crate::kernel_threads();
    let rank = world.as_ref().map_or(0, |w| w.rank());
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
            // Rank 0 reads the run folder; the other ranks (perhaps on nodes that cannot see
            // it) get its configuration from rank 0 and resume in scratch folders.
            let dir = if rank == 0 {
                Some(RunDir::open(path)?)
            } else {
                None
            };
            let mut cfg: RunConfig = match &world {
                None => dir.as_ref().context("no run folder")?.read_config()?,
                Some(w) => {
                    let mut bytes = match &dir {
                        Some(d) => serde_json::to_vec(&d.read_config()?)?,
                        None => Vec::new(),
                    };
                    w.broadcast_bytes(&mut bytes, 0)?;
                    serde_json::from_slice(&bytes)
                        .context("the run's configuration as rank 0 sent it")?
                }
            };
            if let Some(e) = args.settings.train.epochs {
                cfg.train.epochs = e;
            }
            if let Some(d) = &args.settings.task.data {
                cfg.task.data_dir = Some(data_dir_for(cfg.task.kind, d)?);
            }
            match dir {
                Some(d) => (cfg, Target::Resume(d)),
                None => (cfg, Target::Scratch(world::scratch_root(rank), true)),
            }
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
            world::device(&cfg.device, world.as_ref()).context("--device")?;
            let name = args.name.clone().unwrap_or_else(|| run_name(&cfg));
            if rank == 0 {
                (cfg, Target::New(args.runs_dir.clone(), name))
            } else {
                (cfg, Target::Scratch(world::scratch_root(rank), false))
            }
        }
    };
    cfg.model.rnn.threads = threads;
    with_deep_stack(move || train(cfg, target, world))
}

/// Where the run goes: a new folder (created once the task's data and the model are known to be
/// good) or an existing one.
enum Target {
    New(PathBuf, String),
    Resume(RunDir),
    /// A rank other than 0 of a data-parallel job: a run folder of its own under this root,
    /// a new run or (true) the continuation of rank 0's.
    Scratch(PathBuf, bool),
}

fn train(cfg: RunConfig, target: Target, world: Option<World>) -> Result<()> {
    let rank = world.as_ref().map_or(0, |w| w.rank());
    let device = world::device(&cfg.device, world.as_ref())?;
    let task = build_task(&cfg.task).context("building the task")?;
    if rank == 0 {
        for w in task.warnings() {
            eprintln!("warning: {w}");
        }
    }
    super::check_memory(&cfg)?;
    let stats = task.fitted_statistics();
    if let Some(w) = &world {
        if cfg.train.ridge.is_some() || cfg.train.backtune.is_some() {
            bail!(
                "--distributed mpi all-reduces gradients, and this run's trainer ({}) takes no \
                 gradient steps; train it in one process",
                if cfg.train.ridge.is_some() {
                    "ridge"
                } else {
                    "backward-tuning"
                }
            );
        }
        check_world(w.size(), cfg.train.batch_size, task.train_len())?;
        check_same_config(w, &serde_json::to_string(&cfg)?)?;
    }
    if let Some(b) = &cfg.train.backtune {
        // Before the run folder exists: a model or settings backward tuning cannot train leave
        // nothing.
        use remanence_continual::backtune::learner::{check_model, check_settings};
        check_model(&cfg.model).context("--trainer backward-tuning")?;
        check_settings(b, task.objective()).context("--trainer backward-tuning")?;
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
            if let Some(w) = &world {
                replicate_checkpoint(w, &dir)?;
            }
            let t = Trainer::resume(cfg.clone(), task.as_ref(), dir.clone(), device.clone())?;
            println!(
                "resuming {} after epoch {}",
                dir.path().display(),
                t.state().epochs_completed
            );
            (dir, lock, t)
        }
        Target::Scratch(root, resume) => {
            let w = world
                .as_ref()
                .context("a scratch run folder without a job")?;
            let _ = std::fs::remove_dir_all(&root);
            let dir = RunDir::create_new(&root, "run")?;
            let lock = dir.lock()?;
            let t = if resume {
                replicate_checkpoint(w, &dir)?;
                Trainer::resume(cfg.clone(), task.as_ref(), dir.clone(), device.clone())?
            } else {
                let (model, store) =
                    SequenceModel::init(&cfg.model, cfg.train.seed, cfg.dtype()?, &device)
                        .context("the model configuration")?;
                Trainer::from_model(
                    cfg.clone(),
                    task.as_ref(),
                    dir.clone(),
                    device.clone(),
                    model,
                    store,
                )?
            };
            (dir, lock, t)
        }
    };
    if let Some(w) = &world {
        // Every rank starts from rank 0's weights (and, resumed, its optimizer state, which
        // `with_learner` would otherwise drop).
        broadcast_parameters(w, trainer.store())?;
        let mut learner = GradientLearner::new(cfg.train.optimizer.build(), cfg.train.clip_norm)
            .with_plugin(Box::new(AllReducePlugin::new(Box::new(w.clone()))));
        if let Some(ck) = dir.read_checkpoint(cfg.dtype()?, &device)? {
            learner.load_state(ck.optimizer, ck.state.optimizer_steps)?;
        }
        trainer = trainer.with_learner(Box::new(learner));
    }
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
    if rank != 0 {
        // Only rank 0 reports; the others train in step with it.
        let outcome = trainer.run(&mut Silent);
        outcome.with_context(|| format!("training on rank {rank}"))?;
        if let Some(w) = &world {
            w.barrier()?;
        }
        return Ok(());
    }
    match &world {
        Some(w) => println!(
            "{} · data-parallel over {} MPI ranks",
            super::describe(&cfg, trainer.store().num_parameters()),
            w.size()
        ),
        None => println!(
            "{}",
            super::describe(&cfg, trainer.store().num_parameters())
        ),
    }
    let total = (cfg
        .train
        .epochs
        .saturating_sub(trainer.state().epochs_completed)
        * task.train_len()) as u64;
    let mut progress = Progress::new(total, cfg.train.epochs);
    let outcome = trainer.run(&mut progress as &mut dyn Observer);
    progress.finish();
    let outcome = outcome.with_context(|| format!("training run {}", path.display()))?;
    if let Some(w) = &world {
        w.barrier()?;
    }
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
