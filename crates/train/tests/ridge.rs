//! The closed-form ridge read-out: it recovers a read-out that is exactly linear in the states,
//! accumulates batches as one fit, starts afresh each epoch, and trains an echo-state network
//! end to end through the trainer.
use candle_core::{DType, Device, Tensor};
use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, ReservoirOptions, RnnConfig};
use remanence_cells::{ParamStore, SequenceModel};
use remanence_tasks::{build_task, Batch, Objective, TaskConfig, TaskKind};
use remanence_train::trainer::Silent;
use remanence_train::{
    Learner, OptimizerConfig, OptimizerKind, RidgeConfig, RidgeLearner, RunConfig, RunDir,
    Schedule, StepContext, TrainConfig, Trainer,
};

const H: usize = 12;

fn esn(input: usize, output: usize) -> ModelConfig {
    ModelConfig::new(
        RnnConfig {
            cell: CellKind::Esn,
            input_size: input,
            hidden_size: H,
            num_layers: 1,
            activation: Activation::Tanh,
            ct: Default::default(),
            reservoir: ReservoirOptions {
                spectral_radius: 0.9,
                leak_rate: 0.5,
                connectivity: 0.5,
                input_connectivity: 1.0,
                bias_scaling: 0.2,
                ..Default::default()
            },
            kernel: Kernel::Auto,
            threads: None,
        },
        output,
    )
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            use rand::Rng;
            rng.random::<f64>() * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// A regression batch whose targets are `A h_t + c` on the model's own states.
fn linear_batch(model: &SequenceModel, a: &Tensor, c: &Tensor, seed: u64) -> Batch {
    let (b, t) = (4, 15);
    let x = randn(&[b, t, 2], seed);
    let (_, hs, _) = model.forward_full(&x, None, None).unwrap();
    let target = hs
        .broadcast_matmul(&a.t().unwrap())
        .unwrap()
        .broadcast_add(c)
        .unwrap();
    Batch {
        x,
        target,
        mask: None,
        dt: None,
        indices: (0..b).collect(),
        lengths: vec![t; b],
    }
}

fn ctx<'a>(
    model: &'a SequenceModel,
    store: &'a ParamStore,
    vars: &'a [(String, candle_core::Var)],
    epoch: usize,
) -> StepContext<'a> {
    StepContext {
        model,
        store,
        vars,
        objective: Objective::RegressionPerStep,
        lr: 0.0,
        epoch,
        batch: 0,
    }
}

fn head(store: &ParamStore) -> (Vec<Vec<f64>>, Vec<f64>) {
    (
        store
            .get("head.weight")
            .unwrap()
            .as_tensor()
            .to_vec2()
            .unwrap(),
        store
            .get("head.bias")
            .unwrap()
            .as_tensor()
            .to_vec1()
            .unwrap(),
    )
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn the_fit_recovers_a_read_out_linear_in_the_states() {
    let cfg = esn(2, 3);
    let (model, store) = SequenceModel::init(&cfg, 5, DType::F64, &Device::Cpu).unwrap();
    let vars = store.vars();
    let a = randn(&[3, H], 11);
    let c = Tensor::new(&[0.3f64, -0.7, 1.1], &Device::Cpu).unwrap();
    let batch = linear_batch(&model, &a, &c, 1);
    let mut learner = RidgeLearner::new(RidgeConfig {
        lambda: 1e-12,
        washout: 0,
    });
    let report = learner
        .step(&ctx(&model, &store, &vars, 0), &batch)
        .unwrap();
    let (w, b) = head(&store);
    let want: Vec<Vec<f64>> = a.to_vec2().unwrap();
    assert!(
        max_diff(&w, &want) < 1e-6,
        "weights off by {}",
        max_diff(&w, &want)
    );
    for (got, want) in b.iter().zip([0.3, -0.7, 1.1]) {
        assert!((got - want).abs() < 1e-6, "bias {got} vs {want}");
    }
    assert!(report.loss < 1e-12, "loss {}", report.loss);
    assert_eq!(report.grad_norm, 0.0);
    assert_eq!(learner.steps(), 1);
}

#[test]
fn batches_of_an_epoch_add_up_to_one_fit_and_each_epoch_starts_afresh() {
    let cfg = esn(2, 2);
    let (model, store) = SequenceModel::init(&cfg, 6, DType::F64, &Device::Cpu).unwrap();
    let vars = store.vars();
    // Noisy targets, so each batch alone has its own solution.
    let noisy = |seed: u64| {
        let mut b = linear_batch(
            &model,
            &randn(&[2, H], 20),
            &Tensor::new(&[0.1f64, 0.2], &Device::Cpu).unwrap(),
            seed,
        );
        let noise = randn(b.target.dims(), seed + 50).affine(0.3, 0.0).unwrap();
        b.target = (&b.target + noise).unwrap();
        b
    };
    let (b1, b2) = (noisy(1), noisy(2));
    let both = Batch {
        x: Tensor::cat(&[&b1.x, &b2.x], 0).unwrap(),
        target: Tensor::cat(&[&b1.target, &b2.target], 0).unwrap(),
        mask: None,
        dt: None,
        indices: (0..8).collect(),
        lengths: vec![15; 8],
    };
    let ridge = RidgeConfig {
        lambda: 1e-3,
        washout: 3,
    };
    let mut l = RidgeLearner::new(ridge.clone());
    l.step(&ctx(&model, &store, &vars, 0), &b1).unwrap();
    let after_b1 = head(&store);
    l.step(&ctx(&model, &store, &vars, 0), &b2).unwrap();
    let two_steps = head(&store);
    RidgeLearner::new(ridge.clone())
        .step(&ctx(&model, &store, &vars, 0), &both)
        .unwrap();
    let one_step = head(&store);
    assert!(max_diff(&two_steps.0, &one_step.0) < 1e-10);
    assert!(max_diff(&[two_steps.1.clone()], &[one_step.1.clone()]) < 1e-10);
    assert!(
        max_diff(&after_b1.0, &two_steps.0) > 1e-3,
        "b2 changed nothing"
    );
    // A new epoch forgets the sums of the last: b1 alone again.
    l.step(&ctx(&model, &store, &vars, 1), &b1).unwrap();
    assert!(max_diff(&head(&store).0, &after_b1.0) < 1e-10);
}

#[test]
fn the_washout_leaves_the_first_steps_out() {
    // Targets linear in the states except on the first 4 steps, which are garbage: with a
    // washout of 4 the read-out is exact again.
    let cfg = esn(2, 1);
    let (model, store) = SequenceModel::init(&cfg, 7, DType::F64, &Device::Cpu).unwrap();
    let vars = store.vars();
    let a = randn(&[1, H], 30);
    let c = Tensor::new(&[0.5f64], &Device::Cpu).unwrap();
    let mut batch = linear_batch(&model, &a, &c, 3);
    let mut t: Vec<Vec<Vec<f64>>> = batch.target.to_vec3().unwrap();
    for seq in &mut t {
        for step in seq.iter_mut().take(4) {
            step[0] = 100.0;
        }
    }
    batch.target = Tensor::new(t, &Device::Cpu).unwrap();
    for (washout, exact) in [(0, false), (4, true)] {
        RidgeLearner::new(RidgeConfig {
            lambda: 1e-12,
            washout,
        })
        .step(&ctx(&model, &store, &vars, 0), &batch)
        .unwrap();
        let d = max_diff(&head(&store).0, &a.to_vec2().unwrap());
        assert_eq!(d < 1e-6, exact, "washout {washout}: weights off by {d}");
    }
}

#[test]
fn an_echo_state_network_learns_the_reber_grammar_through_the_trainer() {
    let mut model = esn(7, 7);
    model.rnn.hidden_size = 100;
    model.rnn.reservoir.input_connectivity = 0.5;
    let cfg = RunConfig {
        model,
        task: TaskConfig {
            kind: TaskKind::Reber,
            train_size: 128,
            test_size: 128,
            data_seed: 1,
            data_dir: None,
            options: Default::default(),
        },
        train: TrainConfig {
            epochs: 1,
            batch_size: 32,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam, 0.01),
            schedule: Schedule::Constant,
            clip_norm: None,
            seed: 0,
            early_stop: false,
            target: None,
            eval_batch_size: 128,
            ridge: Some(RidgeConfig::default()),
            backtune: None,
        },
        dtype: "f32".into(),
        device: "cpu".into(),
    };
    let dir = std::env::temp_dir().join(format!("remanence-ridge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let task = build_task(&cfg.task).unwrap();
    let run = RunDir::create_new(&dir, "esn").unwrap();
    let mut t = Trainer::new(cfg.clone(), task.as_ref(), run, Device::Cpu).unwrap();
    let before =
        remanence_train::trainer::evaluate(t.model(), task.as_ref(), 128, &Device::Cpu, DType::F32)
            .unwrap();
    let reservoir = |t: &Trainer| -> Vec<Vec<f32>> {
        t.store()
            .get("rnn.weight_hh_l0")
            .unwrap()
            .as_tensor()
            .to_vec2()
            .unwrap()
    };
    let w0 = reservoir(&t);
    let out = t.run(&mut Silent).unwrap();
    assert_eq!(reservoir(&t), w0, "the fit changed the reservoir");
    // The Reber grammar needs only the last symbol or two: a reservoir of 100 units and a
    // linear read-out predict nearly every next-symbol set.
    let step = out.evaluation.values["test_step_accuracy"];
    assert!(step > 0.95, "test step accuracy {step}");
    assert!(step > before.values["test_step_accuracy"] + 0.3);
    let line = std::fs::read_to_string(dir.join("esn/metrics.jsonl")).unwrap();
    assert!(line.contains("\"ridge_lambda\":1e-6"), "{line}");
    // The run folder holds the configuration it ran.
    let saved = RunDir::open(&dir.join("esn"))
        .unwrap()
        .read_config()
        .unwrap();
    assert_eq!(saved, cfg);
    let _ = std::fs::remove_dir_all(&dir);
}
