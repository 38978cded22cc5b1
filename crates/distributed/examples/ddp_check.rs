//! Trains a tiny LSTM on the Reber grammar, data-parallel on MPI or in one process, so that a
//! test can compare the two (built as the `ddp_check` binary, feature `mpi`).
//!
//! ```text
//! mpirun --allow-run-as-root --oversubscribe -np 2 ddp_check --out ROOT   # data-parallel
//! ddp_check --single --out ROOT                                           # one process
//! ```
//!
//! Either way the run folder is `ROOT/run` (`config.json`, `metrics.jsonl`, `model.safetensors`,
//! `checkpoint.safetensors`), written by rank 0 only: the other ranks train in a scratch folder
//! under the system's temporary directory, removed at the end. Options: `--epochs N`
//! (default 3), `--train-size N` (50), `--batch-size N` (15: uneven shards and a short last
//! batch), `--hidden N` (8), `--resume` (continue the run in `ROOT/run` up to `--epochs`,
//! data-parallel only), `--skew-config` (rank 1 uses another seed: the configuration check
//! must stop every rank).
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig};
use remanence_distributed::{
    broadcast_parameters, check_same_config, check_world, replicate_checkpoint, AllReducePlugin,
    Collective, Mpi,
};
use remanence_tasks::{build_task, TaskConfig, TaskKind};
use remanence_train::trainer::Silent;
use remanence_train::{
    GradientLearner, Learner, OptimizerConfig, OptimizerKind, RunConfig, RunDir, Schedule,
    TrainConfig, Trainer,
};

struct Args {
    single: bool,
    out: PathBuf,
    epochs: usize,
    train_size: usize,
    batch_size: usize,
    hidden: usize,
    skew_config: bool,
    resume: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        single: false,
        out: PathBuf::new(),
        epochs: 3,
        train_size: 50,
        batch_size: 15,
        hidden: 8,
        skew_config: false,
        resume: false,
    };
    let mut out = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match flag.as_str() {
            "--single" => a.single = true,
            "--skew-config" => a.skew_config = true,
            "--resume" => a.resume = true,
            "--epochs" => a.epochs = num("--epochs")?,
            "--train-size" => a.train_size = num("--train-size")?,
            "--batch-size" => a.batch_size = num("--batch-size")?,
            "--hidden" => a.hidden = num("--hidden")?,
            "--out" => out = it.next().map(PathBuf::from),
            f => return Err(format!("unknown argument `{f}`")),
        }
    }
    a.out = out.ok_or("--out ROOT is required")?;
    Ok(a)
}

fn config(a: &Args, seed: u64) -> RunConfig {
    RunConfig {
        model: ModelConfig::new(
            RnnConfig {
                cell: CellKind::Lstm,
                input_size: 7,
                hidden_size: a.hidden,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: Default::default(),
                reservoir: Default::default(),
                threads: None,
                kernel: Kernel::Auto,
            },
            7,
        ),
        task: TaskConfig {
            kind: TaskKind::Reber,
            train_size: a.train_size,
            test_size: 16,
            data_seed: 11,
            data_dir: None,
            options: Default::default(),
        },
        train: TrainConfig {
            epochs: a.epochs,
            batch_size: a.batch_size,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam, 0.02),
            schedule: Schedule::Constant,
            clip_norm: Some(1.0),
            seed,
            early_stop: false,
            target: None,
            eval_batch_size: 64,
            ridge: None,
            backtune: None,
        },
        dtype: "f64".into(),
        device: "cpu".into(),
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What a training run prints.
struct Trained {
    seconds: f64,
    hash: String,
    /// Sequences this rank trained on (data-parallel only).
    local_sequences: Option<u64>,
}

/// Trains in `dir`, a new run or (`resume`) the continuation of the one in it; with a
/// collective, data-parallel. These are the calls a command line makes.
fn train(cfg: RunConfig, dir: RunDir, collective: Option<Mpi>, resume: bool) -> Res<Trained> {
    let task = build_task(&cfg.task)?;
    let device = Device::Cpu;
    if let Some(c) = &collective {
        if resume {
            // Rank 0's checkpoint into the other ranks' scratch folders.
            replicate_checkpoint(c, &dir)?;
        }
    }
    let mut trainer = if resume {
        Trainer::resume(cfg.clone(), task.as_ref(), dir.clone(), device.clone())?
    } else {
        Trainer::new(cfg.clone(), task.as_ref(), dir.clone(), device.clone())?
    };
    let mut local_sequences = None;
    if let Some(c) = collective {
        broadcast_parameters(&c, trainer.store())?;
        let plugin = AllReducePlugin::new(Box::new(c));
        local_sequences = Some(plugin.local_sequences());
        let mut learner = GradientLearner::new(cfg.train.optimizer.build(), cfg.train.clip_norm)
            .with_plugin(Box::new(plugin));
        // `with_learner` drops the resumed learner's state: load it into this one.
        if let Some(ck) = dir.read_checkpoint(cfg.dtype()?, &device)? {
            learner.load_state(ck.optimizer, ck.state.optimizer_steps)?;
        }
        trainer = trainer.with_learner(Box::new(learner));
    }
    let start = Instant::now();
    trainer.run(&mut Silent)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut bytes = Vec::new();
    for (name, t) in trainer.store().tensors() {
        bytes.extend(name.as_bytes());
        for v in t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()? {
            bytes.extend(v.to_le_bytes());
        }
    }
    let hash = remanence_distributed::setup::hash64(&bytes);
    Ok(Trained {
        seconds,
        hash: format!("{hash:016x}"),
        local_sequences: local_sequences.map(|n| n.load(std::sync::atomic::Ordering::Relaxed)),
    })
}

/// Runs `f` on a thread with a deep stack (Candle's backward recurses), turning a panic into
/// an error.
fn on_deep_stack<T: Send + 'static>(f: impl FnOnce() -> Res<T> + Send + 'static) -> Res<T> {
    std::thread::Builder::new()
        .name("ddp-train".into())
        .stack_size(remanence_train::stack::TRAIN_STACK_BYTES)
        .spawn(f)?
        .join()
        .unwrap_or_else(|_| Err("the training thread panicked".into()))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ddp_check: {e}");
            std::process::exit(2);
        }
    };
    if args.single {
        let cfg = config(&args, 7);
        let run = || -> Res<Trained> {
            let dir = RunDir::create_new(&args.out, "run")?;
            on_deep_stack(move || train(cfg, dir, None, false))
        };
        match run() {
            Ok(t) => println!(
                "single process: trained in {:.3} s; weights hash {}",
                t.seconds, t.hash
            ),
            Err(e) => {
                eprintln!("ddp_check --single: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let mpi = match Mpi::init() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ddp_check: {e}");
            std::process::exit(1);
        }
    };
    let (rank, size) = (mpi.rank(), mpi.size());
    println!("rank {rank} of {size}, pid {}", std::process::id());
    let scratch =
        std::env::temp_dir().join(format!("remanence-ddp-scratch-{}", std::process::id()));
    let result = (|| -> Res<Trained> {
        let seed = if args.skew_config && rank == 1 { 8 } else { 7 };
        let cfg = config(&args, seed);
        check_world(size, cfg.train.batch_size, cfg.task.train_size)?;
        check_same_config(&mpi, &serde_json::to_string(&cfg)?)?;
        let dir = if rank == 0 && args.resume {
            RunDir::open(&args.out.join("run"))?
        } else if rank == 0 {
            RunDir::create_new(&args.out, "run")?
        } else {
            println!("rank {rank}: scratch folder {}", scratch.display());
            RunDir::create_new(&scratch, "run")?
        };
        let c = mpi.clone();
        let resume = args.resume;
        on_deep_stack(move || train(cfg, dir, Some(c), resume))
    })();
    if rank != 0 {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    match result {
        Ok(t) => {
            println!(
                "rank {rank} of {size}: trained in {:.3} s on {} sequences; weights hash {}",
                t.seconds,
                t.local_sequences.unwrap_or(0),
                t.hash
            );
            // Every rank finishes before any finalises.
            if let Err(e) = mpi.barrier() {
                eprintln!("rank {rank}: {e}");
                mpi.abort(1);
            }
        }
        Err(e) => {
            // The other ranks may be waiting in a collective call: end the whole job.
            eprintln!("ddp_check: rank {rank} of {size} failed: {e}");
            mpi.abort(1);
        }
    }
    // `mpi` (the last handle) is dropped here: MPI_Finalize.
}
