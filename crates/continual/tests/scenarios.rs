//! Scenarios, the replay buffer and a whole run on a small made-up classification task.
use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig};
use remanence_continual::runner;
use remanence_continual::scenario::{Scenario, ScenarioSpec};
use remanence_continual::strategy::{concat, Method, MethodOptions, ReplayBuffer};
use remanence_tasks::task::Predict;
use remanence_tasks::{Batch, Evaluation, Objective, SequenceTask, Split, TaskConfig, TaskKind};
use remanence_train::trainer::Silent;
use remanence_train::{OptimizerConfig, OptimizerKind, RunConfig, RunDir, Schedule, TrainConfig};

/// 4 classes; sequence i has class i % 4 and reads 3 steps of 2 features that announce it.
struct Toy {
    n: [usize; 2],
}

impl Toy {
    fn value(i: usize, s: usize, f: usize) -> f32 {
        let class = (i % 4) as f32;
        (class - 1.5) * if f == 0 { 1.0 } else { -0.5 } + 0.01 * ((i * 7 + s * 3 + f) % 5) as f32
    }
}

impl SequenceTask for Toy {
    fn name(&self) -> &str {
        "toy"
    }
    fn input_size(&self) -> usize {
        2
    }
    fn output_size(&self) -> usize {
        4
    }
    fn objective(&self) -> Objective {
        Objective::ClassLastStep
    }
    fn len(&self, split: Split) -> usize {
        self.n[(split == Split::Test) as usize]
    }
    fn batch(
        &self,
        _split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let x: Vec<f32> = indices
            .iter()
            .flat_map(|&i| (0..3).flat_map(move |s| (0..2).map(move |f| Toy::value(i, s, f))))
            .collect();
        let y: Vec<u32> = indices.iter().map(|&i| (i % 4) as u32).collect();
        let b = indices.len();
        Ok(Batch {
            x: Tensor::from_vec(x, (b, 3, 2), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(y, b, device)?,
            mask: None,
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![3; b],
        })
    }
    fn evaluate(
        &self,
        _: usize,
        _: DType,
        _: &Device,
        _: &mut Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        unreachable!("scenarios score experiences themselves")
    }
    fn label(&self, _split: Split, index: usize) -> Option<usize> {
        Some(index % 4)
    }
}

fn toy() -> Arc<dyn SequenceTask> {
    Arc::new(Toy { n: [80, 40] })
}

fn split2() -> ScenarioSpec {
    "split:mnist-rows:2".parse().unwrap()
}

#[test]
fn a_split_partitions_the_classes_in_a_seeded_order() {
    let s = Scenario::new(split2(), toy(), 3).unwrap();
    assert_eq!(s.experiences.len(), 2);
    let mut seen: Vec<usize> = s
        .experiences
        .iter()
        .flat_map(|e| e.classes.clone())
        .collect();
    seen.sort();
    assert_eq!(seen, vec![0, 1, 2, 3]);
    for e in &s.experiences {
        assert_eq!((e.train.len(), e.test.len()), (40, 20));
        for i in 0..e.len(Split::Train) {
            assert!(e.classes.contains(&e.label(Split::Train, i).unwrap()));
        }
    }
    let again = Scenario::new(split2(), toy(), 3).unwrap();
    assert_eq!(again.class_order, s.class_order);
    let joint = s.cumulative(1);
    assert_eq!((joint.train.len(), joint.classes.len()), (80, 4));
}

#[test]
fn settings_that_make_no_sense_are_named() {
    let err = |spec: &str| {
        spec.parse::<ScenarioSpec>()
            .and_then(|s| Scenario::new(s, toy(), 0))
            .err()
            .unwrap()
            .to_string()
    };
    assert!(err("split:mnist-rows:3").contains("groups of 3"));
    assert!(err("split:mnist-rows:4").contains("at least two groups"));
    assert!(err("split:mnist-rows:0").contains("≥ 1"));
    assert!(err("shuffled:mnist-rows:2").contains("unknown scenario kind"));
    assert!(err("split:mnist-foo:2").contains("unknown task"));
    let reber = remanence_tasks::build_task(&TaskConfig {
        kind: TaskKind::Reber,
        train_size: 8,
        test_size: 8,
        data_seed: 0,
        data_dir: None,
        options: Default::default(),
    })
    .unwrap();
    let e = Scenario::new(split2(), reber.into(), 0)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a sequence classification task"), "{e}");
    let o = MethodOptions::default();
    let parse_err = |name: &str, o: MethodOptions| Method::parse(name, &o).unwrap_err().to_string();
    assert!(parse_err("replay", MethodOptions { per_class: 0, ..o }).contains("--buffer-per-class"));
    assert!(parse_err("ewc-", o).contains("naive, joint, replay, ewc, si, lwf"));
    assert!(parse_err(
        "ewc",
        MethodOptions {
            ewc_decay: 1.5,
            ..o
        }
    )
    .contains("--ewc-decay"));
    assert!(parse_err(
        "lwf",
        MethodOptions {
            lwf_temperature: 0.0,
            ..o
        }
    )
    .contains("--lwf-temperature"));
    assert!(parse_err("agem", MethodOptions { agem_batch: 0, ..o }).contains("--agem-batch"));
    assert!(parse_err("agem", MethodOptions { per_class: 0, ..o }).contains("--buffer-per-class"));
    assert_eq!(
        Method::parse("agem", &o).unwrap(),
        Method::Agem {
            per_class: 50,
            batch: 256
        }
    );
    assert_eq!(
        Method::parse("lwf", &o).unwrap(),
        Method::Lwf {
            alpha: 1.0,
            temperature: 1.5
        }
    );
}

#[test]
fn a_permutation_reorders_each_sequence_and_the_first_experience_is_the_task() {
    let spec: ScenarioSpec = "permuted:mnist-rows:3".parse().unwrap();
    let s = Scenario::new(spec, toy(), 1).unwrap();
    assert_eq!(s.experiences.len(), 3);
    let dev = Device::Cpu;
    let base = toy()
        .batch(Split::Train, &[5, 6], DType::F32, &dev)
        .unwrap();
    let e0 = s.experiences[0]
        .batch(Split::Train, &[5, 6], DType::F32, &dev)
        .unwrap();
    assert_eq!(
        e0.x.to_vec3::<f32>().unwrap(),
        base.x.to_vec3::<f32>().unwrap()
    );
    let e1 = s.experiences[1]
        .batch(Split::Train, &[5, 6], DType::F32, &dev)
        .unwrap();
    let sorted = |t: &Tensor, r: usize| {
        let mut v = t
            .get(r)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        v.sort_by(f32::total_cmp);
        v
    };
    assert_ne!(
        e1.x.to_vec3::<f32>().unwrap(),
        base.x.to_vec3::<f32>().unwrap()
    );
    for r in 0..2 {
        assert_eq!(sorted(&e1.x, r), sorted(&base.x, r));
    }
    assert_eq!(e1.target.to_vec1::<u32>().unwrap(), vec![1, 2]);
}

#[test]
fn the_replay_buffer_is_class_balanced_and_batches_concatenate() {
    let s = Scenario::new(split2(), toy(), 3).unwrap();
    let mut buf = ReplayBuffer::new(3, 0);
    for e in &s.experiences {
        buf.add_experience(e);
    }
    assert_eq!(
        buf.counts(),
        BTreeMap::from([(0, 3), (1, 3), (2, 3), (3, 3)])
    );
    // Batches of different lengths: padded with zeros, a mask marks the real steps.
    let dev = Device::Cpu;
    let a = toy()
        .batch(Split::Train, &[0, 1], DType::F32, &dev)
        .unwrap();
    let mut b = toy().batch(Split::Train, &[2], DType::F32, &dev).unwrap();
    b.x = b.x.narrow(1, 0, 2).unwrap();
    b.lengths = vec![2];
    let c = concat(&a, &b).unwrap();
    assert_eq!(c.x.dims(), &[3, 3, 2]);
    assert_eq!(c.lengths, vec![3, 3, 2]);
    assert_eq!(
        c.mask.unwrap().to_vec2::<f32>().unwrap(),
        vec![
            vec![1.0, 1.0, 1.0],
            vec![1.0, 1.0, 1.0],
            vec![1.0, 1.0, 0.0]
        ]
    );
    assert_eq!(c.target.to_vec1::<u32>().unwrap(), vec![0, 1, 2]);
}

fn config(epochs: usize) -> RunConfig {
    RunConfig {
        model: ModelConfig::new(
            RnnConfig {
                cell: CellKind::Gru,
                input_size: 2,
                hidden_size: 8,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: Default::default(),
                threads: None,
                kernel: Kernel::Auto,
            },
            4,
        ),
        task: TaskConfig {
            kind: TaskKind::MnistRows,
            train_size: 0,
            test_size: 0,
            data_seed: 0,
            data_dir: None,
            options: Default::default(),
        },
        train: TrainConfig {
            epochs,
            batch_size: 8,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam, 0.05),
            schedule: Schedule::Constant,
            clip_norm: Some(1.0),
            seed: 0,
            early_stop: false,
            target: None,
            eval_batch_size: 64,
        },
        dtype: "f32".into(),
        device: "cpu".into(),
    }
}

#[test]
fn naive_forgets_and_joint_remembers_on_a_whole_run() {
    remanence_train::stack::with_deep_stack(|| {
        let root = std::env::temp_dir().join(format!("remanence-cl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = Scenario::new(split2(), toy(), 3).unwrap();
        let mut acc = BTreeMap::new();
        for method in [Method::Naive, Method::Joint] {
            let run = RunDir::create_new(&root, method.name()).unwrap();
            let m = runner::run(
                &config(15),
                &s,
                method,
                &run,
                &Device::Cpu,
                &mut Silent,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(m.rows.len(), 2);
            assert_eq!(m.initial.len(), 2);
            for f in [
                "continual.json",
                "matrix.json",
                "metrics.jsonl",
                "model.safetensors",
                "exp-00/config.json",
                "exp-01/model.safetensors",
                "summary.json",
                "heatmap.png",
                "acc.png",
            ] {
                assert!(run.file(f).exists(), "{f}");
            }
            // The new experience is learned either way.
            assert!(m.rows[1][1] > 0.9, "{method:?}: {:?}", m.rows);
            acc.insert(method.name(), m.rows[1][0]);
        }
        // One head trained only on the second pair of classes forgets the first; joint does not.
        assert!(acc["naive"] < 0.5 && acc["joint"] > 0.9, "{acc:?}");
    });
}

#[test]
fn ewc_si_and_lwf_runs_complete_with_a_matrix() {
    remanence_train::stack::with_deep_stack(|| {
        let root = std::env::temp_dir().join(format!("remanence-cl-reg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = Scenario::new(split2(), toy(), 3).unwrap();
        let run_one = |name: &str, folder: &str, o: MethodOptions| {
            let method = Method::parse(name, &o).unwrap();
            let run = RunDir::create_new(&root, folder).unwrap();
            let m = runner::run(
                &config(6),
                &s,
                method,
                &run,
                &Device::Cpu,
                &mut Silent,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(m.rows.len(), 2, "{folder}");
            assert!(run.file("summary.json").exists(), "{folder}");
            for row in &m.rows {
                assert!(
                    row.iter().all(|a| (0.0..=1.0).contains(a)),
                    "{folder}: {row:?}"
                );
            }
            m
        };
        let o = MethodOptions::default();
        for name in ["ewc", "si", "lwf"] {
            run_one(name, name, o);
        }
        // Without their terms the methods are naive fine-tuning, step for step.
        let naive = run_one("naive", "naive", o);
        let lwf0 = run_one(
            "lwf",
            "lwf0",
            MethodOptions {
                lwf_alpha: 0.0,
                ..o
            },
        );
        let ewc0 = run_one(
            "ewc",
            "ewc0",
            MethodOptions {
                ewc_lambda: 0.0,
                ..o
            },
        );
        assert_eq!(lwf0.rows, naive.rows);
        assert_eq!(ewc0.rows, naive.rows);
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn an_agem_run_completes_with_a_full_matrix() {
    remanence_train::stack::with_deep_stack(|| {
        let root = std::env::temp_dir().join(format!("remanence-cl-agem-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = Scenario::new(split2(), toy(), 3).unwrap();
        // A reference batch larger than the memory (2 classes × 10) takes all of it.
        let method = Method::parse(
            "agem",
            &MethodOptions {
                per_class: 10,
                agem_batch: 64,
                ..MethodOptions::default()
            },
        )
        .unwrap();
        assert_eq!(method.name(), "agem");
        let run_one = |method: Method| {
            let run = RunDir::create_new(&root, method.name()).unwrap();
            let m = runner::run(
                &config(6),
                &s,
                method,
                &run,
                &Device::Cpu,
                &mut Silent,
                &mut |_| {},
            )
            .unwrap();
            (m, run)
        };
        let (m, run) = run_one(method);
        let (naive, _) = run_one(Method::Naive);
        assert_eq!(m.rows.len(), 2);
        assert_eq!(m.initial.len(), 2);
        for row in &m.rows {
            assert_eq!(row.len(), 2, "{:?}", m.rows);
            assert!(row.iter().all(|a| (0.0..=1.0).contains(a)), "{row:?}");
        }
        for f in ["matrix.json", "summary.json", "exp-01/model.safetensors"] {
            assert!(run.file(f).exists(), "{f}");
        }
        // The first experience has no memory yet: it is learned step for step as naive
        // fine-tuning learns it; afterwards the projection changes the steps.
        assert_eq!(m.rows[0], naive.rows[0]);
        assert_ne!(m.rows, naive.rows);
        let _ = std::fs::remove_dir_all(&root);
    });
}
