//! The training loop end to end on small runs: learning happens, runs are reproducible, resuming
//! is exact, a non-finite loss keeps the last good checkpoint, and long sequences train.
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{DType, Device, Tensor};
use rand_chacha::ChaCha8Rng;
use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig};
use remanence_tasks::{
    build_task, Batch, Evaluation, Objective, SequenceTask, Split, TaskConfig, TaskKind,
};
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::Silent;
use remanence_train::{
    OptimizerConfig, OptimizerKind, RunConfig, RunDir, Schedule, TrainConfig, TrainError, Trainer,
};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(cell: CellKind, hidden: usize, epochs: usize, seed: u64) -> RunConfig {
    RunConfig {
        model: ModelConfig::new(
            RnnConfig {
                cell,
                input_size: 7,
                hidden_size: hidden,
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
            train_size: 64,
            test_size: 64,
            data_seed: 1,
            data_dir: None,
            options: Default::default(),
        },
        train: TrainConfig {
            epochs,
            batch_size: 16,
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
        dtype: "f32".into(),
        device: "cpu".into(),
    }
}

fn train(cfg: &RunConfig, dir: &std::path::Path) -> remanence_train::TrainOutcome {
    let task = build_task(&cfg.task).unwrap();
    let run = RunDir::create_new(dir, "run").unwrap();
    let mut t = Trainer::new(cfg.clone(), task.as_ref(), run, Device::Cpu).unwrap();
    t.run(&mut Silent).unwrap()
}

fn metrics(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn weights(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let (t, _) = remanence_cells::io::read(&path.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut v: Vec<_> = t
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn srn_learns_reber_and_same_seed_gives_same_numbers() {
    let root = tmp("determinism");
    let cfg = config(CellKind::Srn, 12, 6, 3);
    let a = train(&cfg, &root);
    let b = train(&cfg, &root);
    let (ma, mb) = (metrics(&root.join("run")), metrics(&root.join("run-2")));
    assert_eq!(ma.len(), 6);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x["loss"], y["loss"]);
        assert_eq!(x["metric"], y["metric"]);
    }
    assert_eq!(weights(&root.join("run")), weights(&root.join("run-2")));
    let first = ma[0]["loss"].as_f64().unwrap();
    let lastl = ma[5]["loss"].as_f64().unwrap();
    assert!(lastl < 0.8 * first, "loss {first} -> {lastl}");
    assert_eq!(a.state.epochs_completed, 6);
    assert_eq!(b.state.sequences_seen, 6 * 64);
    // A different seed gives a different model.
    let c = config(CellKind::Srn, 12, 1, 4);
    train(&c, &root);
    assert_ne!(weights(&root.join("run")), weights(&root.join("run-3")));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn resume_continues_exactly() {
    let root = tmp("resume");
    let full = config(CellKind::Lstm, 8, 4, 5);
    train(&full, &root);
    // Two epochs, then resume with the budget raised to four.
    let half = config(CellKind::Lstm, 8, 2, 5);
    train(&half, &root);
    let run = RunDir::open(&root.join("run-2")).unwrap();
    let task = build_task(&full.task).unwrap();
    let mut t = Trainer::resume(full.clone(), task.as_ref(), run, Device::Cpu).unwrap();
    assert_eq!(t.state().epochs_completed, 2);
    let out = t.run(&mut Silent).unwrap();
    assert_eq!(out.state.epochs_completed, 4);
    assert_eq!(weights(&root.join("run")), weights(&root.join("run-2")));
    let (ma, mb) = (metrics(&root.join("run")), metrics(&root.join("run-2")));
    assert_eq!(mb.len(), 4);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x["loss"], y["loss"]);
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// Wraps a task and poisons the inputs of the second batch of each epoch with NaN from the
/// given epoch on.
struct Poisoned {
    inner: Box<dyn SequenceTask>,
    epochs: AtomicUsize,
    batches: AtomicUsize,
    from_epoch: usize,
}

impl Poisoned {
    fn new(inner: Box<dyn SequenceTask>, from_epoch: usize) -> Self {
        Self {
            inner,
            epochs: AtomicUsize::new(0),
            batches: AtomicUsize::new(0),
            from_epoch,
        }
    }
}

impl SequenceTask for Poisoned {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn output_size(&self) -> usize {
        self.inner.output_size()
    }
    fn objective(&self) -> Objective {
        self.inner.objective()
    }
    fn len(&self, split: Split) -> usize {
        self.inner.len(split)
    }
    fn epoch_order(&self, bs: usize, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
        self.epochs.fetch_add(1, Ordering::SeqCst);
        self.batches.store(0, Ordering::SeqCst);
        self.inner.epoch_order(bs, rng)
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dt: DType,
        dev: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let mut b = self.inner.batch(split, indices, dt, dev)?;
        let nth = self.batches.fetch_add(1, Ordering::SeqCst) + 1;
        if self.epochs.load(Ordering::SeqCst) >= self.from_epoch && nth == 2 {
            b.x = (b.x.clone() * f64::NAN)?;
        }
        Ok(b)
    }
    fn evaluate(
        &self,
        bs: usize,
        dt: DType,
        dev: &Device,
        p: &mut remanence_tasks::task::Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        self.inner.evaluate(bs, dt, dev, p)
    }
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let root = tmp("nan");
    let cfg = config(CellKind::Gru, 8, 5, 6);
    let task = Poisoned::new(build_task(&cfg.task).unwrap(), 3);
    let run = RunDir::create_new(&root, "run").unwrap();
    let mut t = Trainer::new(cfg.clone(), &task, run, Device::Cpu).unwrap();
    let err = t.run(&mut Silent).unwrap_err();
    match &err {
        TrainError::NonFiniteLoss {
            epoch: 3,
            batch: 2,
            last_good: 2,
            ..
        } => {}
        e => panic!("unexpected error {e}"),
    }
    assert!(
        err.to_string()
            .contains("checkpoint and model of epoch 2 are kept unchanged"),
        "{err}"
    );
    let dir = RunDir::open(&root.join("run")).unwrap();
    let ck = dir
        .read_checkpoint(DType::F32, &Device::Cpu)
        .unwrap()
        .unwrap();
    assert_eq!(ck.state.epochs_completed, 2);
    assert_eq!(metrics(dir.path()).len(), 2);
    assert!(weights(dir.path())
        .iter()
        .all(|(_, v)| v.iter().all(|x| x.is_finite())));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn nan_loss_in_the_first_epoch_says_that_only_the_configuration_exists() {
    // Before the fix the message promised "the last good checkpoint (epoch 0)", which the
    // folder never held.
    let root = tmp("nan-first");
    let cfg = config(CellKind::Gru, 8, 5, 6);
    let task = Poisoned::new(build_task(&cfg.task).unwrap(), 1);
    let run = RunDir::create_new(&root, "run").unwrap();
    let mut t = Trainer::new(cfg, &task, run, Device::Cpu).unwrap();
    let err = t.run(&mut Silent).unwrap_err().to_string();
    assert!(err.contains("holds only config.json"), "{err}");
    assert!(!err.contains("epoch 0"), "{err}");
    let names: Vec<_> = std::fs::read_dir(root.join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["config.json"]);
    std::fs::remove_dir_all(&root).unwrap();
}

/// One long sequence per sample: the target at each step is the sign of the input three steps back.
struct LongTask {
    len: usize,
}

impl SequenceTask for LongTask {
    fn name(&self) -> &str {
        "long"
    }
    fn input_size(&self) -> usize {
        7
    }
    fn output_size(&self) -> usize {
        7
    }
    fn objective(&self) -> Objective {
        Objective::MultiLabelPerStep
    }
    fn len(&self, _: Split) -> usize {
        2
    }
    fn batch(
        &self,
        _: Split,
        indices: &[usize],
        dt: DType,
        dev: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let rows = indices.len();
        let x: Vec<f32> = indices
            .iter()
            .flat_map(|&r| r * self.len * 7..(r + 1) * self.len * 7)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let x = Tensor::from_vec(x, (rows, self.len, 7), dev)?.to_dtype(dt)?;
        let target = x.ge(0.0)?.to_dtype(dt)?;
        Ok(Batch {
            x,
            target,
            mask: None,
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![self.len; rows],
        })
    }
    fn evaluate(
        &self,
        _: usize,
        dt: DType,
        dev: &Device,
        p: &mut remanence_tasks::task::Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        let b = self.batch(Split::Train, &[0, 1], dt, dev)?;
        let y = p(&b)?;
        assert_eq!(y.dims(), &[2, self.len, 7]);
        Ok(Evaluation {
            metric_name: "none".into(),
            metric: 0.0,
            solved: None,
            values: Default::default(),
            summary: String::new(),
        })
    }
}

#[test]
fn thousands_of_steps_train_without_stack_overflow() {
    let root = tmp("long");
    let mut cfg = config(CellKind::Lstm, 4, 1, 7);
    cfg.task.train_size = 2;
    with_deep_stack(move || {
        let task = LongTask { len: 3000 };
        let run = RunDir::create_new(&root, "run").unwrap();
        let mut t = Trainer::new(cfg, &task, run, Device::Cpu).unwrap();
        let out = t.run(&mut Silent).unwrap();
        assert_eq!(out.state.epochs_completed, 1);
        assert!(out.last.unwrap().loss.is_finite());
        std::fs::remove_dir_all(&root).unwrap();
    });
}

#[test]
fn early_stopped_runs_stay_finished_and_spent_budgets_continue() {
    let root = tmp("stop");
    // Plain Reber with a target the first evaluation already meets: stops early after epoch 1.
    let mut cfg = config(CellKind::Gru, 8, 1, 9);
    cfg.train.early_stop = true;
    cfg.train.target = Some(0.0);
    cfg.train.epochs = 3;
    let out = train(&cfg, &root);
    assert!(out.state.stopped_early && out.state.finished);
    assert_eq!(out.state.epochs_completed, 1);
    let task = build_task(&cfg.task).unwrap();
    let mut more = cfg.clone();
    more.train.epochs = 5;
    let mut t = Trainer::resume(
        more,
        task.as_ref(),
        RunDir::open(&root.join("run")).unwrap(),
        Device::Cpu,
    )
    .unwrap();
    assert_eq!(
        t.run(&mut Silent).unwrap().state.epochs_completed,
        1,
        "an early-stopped run stays stopped"
    );
    // Budget spent without meeting the criterion: raising the budget continues.
    let mut spent = config(CellKind::Gru, 8, 1, 9);
    spent.train.early_stop = true;
    train(&spent, &root);
    let mut more = spent.clone();
    more.train.epochs = 3;
    let mut t = Trainer::resume(
        more,
        task.as_ref(),
        RunDir::open(&root.join("run-2")).unwrap(),
        Device::Cpu,
    )
    .unwrap();
    let st = t.run(&mut Silent).unwrap().state;
    assert!(st.epochs_completed == 3 || st.stopped_early, "{st:?}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Reber with a scripted validation value per epoch, selected on (higher is better).
struct Validated {
    inner: Box<dyn SequenceTask>,
    script: Vec<f64>,
    evals: AtomicUsize,
}

impl SequenceTask for Validated {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn input_size(&self) -> usize {
        self.inner.input_size()
    }
    fn output_size(&self) -> usize {
        self.inner.output_size()
    }
    fn objective(&self) -> Objective {
        self.inner.objective()
    }
    fn len(&self, split: Split) -> usize {
        self.inner.len(split)
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dt: DType,
        dev: &Device,
    ) -> remanence_tasks::Result<Batch> {
        self.inner.batch(split, indices, dt, dev)
    }
    fn evaluate(
        &self,
        bs: usize,
        dt: DType,
        dev: &Device,
        p: &mut remanence_tasks::task::Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        let mut e = self.inner.evaluate(bs, dt, dev, p)?;
        let k = self.evals.fetch_add(1, Ordering::SeqCst);
        e.values.insert("valid_score".into(), self.script[k]);
        Ok(e)
    }
    fn selection(&self) -> Option<remanence_tasks::Selection> {
        Some(remanence_tasks::Selection {
            value: "valid_score",
            higher_is_better: true,
        })
    }
}

#[test]
fn the_best_validation_epoch_keeps_its_weights_and_test_metric() {
    with_deep_stack(|| {
        let dir = tmp("best");
        let cfg = config(CellKind::Lstm, 8, 4, 5);
        // Epoch 2 is best; epoch 4's NaN never counts as better.
        let task = Validated {
            inner: build_task(&cfg.task).unwrap(),
            script: vec![0.5, 0.9, 0.7, f64::NAN],
            evals: AtomicUsize::new(0),
        };
        let run = RunDir::create_new(&dir, "run").unwrap();
        let path = run.path().to_path_buf();
        let mut t = Trainer::new(cfg.clone(), &task, run, Device::Cpu).unwrap();
        let out = t.run(&mut Silent).unwrap();
        let best = out.state.best.clone().unwrap();
        assert_eq!((best.epoch, best.value), (2, 0.9));
        assert_eq!(best.selected_by, "valid_score");
        let m = metrics(&path);
        assert_eq!(best.metric, m[1]["metric"].as_f64().unwrap());
        // The best weights are those after epoch 2: a 2-epoch run of the same seed ends there.
        let short = tmp("best-short");
        let two = train(&config(CellKind::Lstm, 8, 2, 5), &short);
        assert_eq!(two.state.epochs_completed, 2);
        let read = |p: std::path::PathBuf| {
            let (t, _) = remanence_cells::io::read(&p, &Device::Cpu).unwrap();
            let mut v: Vec<_> = t
                .into_iter()
                .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(
            read(path.join("best.safetensors")),
            read(short.join("run/model.safetensors"))
        );
        assert_ne!(
            read(path.join("best.safetensors")),
            read(path.join("model.safetensors"))
        );
        // The checkpoint carries the choice, so a resumed run keeps it.
        let ck = RunDir::open(&path)
            .unwrap()
            .read_checkpoint(DType::F32, &Device::Cpu)
            .unwrap()
            .unwrap();
        assert_eq!(ck.state.best, Some(best));
    });
}

#[test]
fn a_backward_tuning_configuration_never_trains_by_gradient_unannounced() {
    // The learner lives in the continual crate; without it the run refuses to start.
    let mut cfg = config(CellKind::Srn, 8, 1, 0);
    cfg.train.backtune = Some(remanence_train::config::BacktuneConfig::default());
    let dir = tmp("backtune-guard");
    let task = build_task(&cfg.task).unwrap();
    let run = RunDir::create_new(&dir, "run").unwrap();
    let mut t = Trainer::new(cfg, task.as_ref(), run, Device::Cpu).unwrap();
    let e = t.run(&mut Silent).unwrap_err().to_string();
    assert!(e.contains("with_learner"), "{e}");
    assert!(
        !dir.join("run/metrics.jsonl").exists()
            || std::fs::read_to_string(dir.join("run/metrics.jsonl"))
                .unwrap()
                .is_empty()
    );
}
