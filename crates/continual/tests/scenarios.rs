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
                reservoir: Default::default(),
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
            ridge: None,
            backtune: None,
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

// ---- Task-incremental splits ----

/// The toy task without class labels (its objective still classifies sequences).
struct Unlabelled(Toy);

impl SequenceTask for Unlabelled {
    fn name(&self) -> &str {
        "unlabelled"
    }
    fn input_size(&self) -> usize {
        self.0.input_size()
    }
    fn output_size(&self) -> usize {
        self.0.output_size()
    }
    fn objective(&self) -> Objective {
        self.0.objective()
    }
    fn len(&self, split: Split) -> usize {
        self.0.len(split)
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> remanence_tasks::Result<Batch> {
        self.0.batch(split, indices, dtype, device)
    }
    fn evaluate(
        &self,
        b: usize,
        d: DType,
        dev: &Device,
        p: &mut Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        self.0.evaluate(b, d, dev, p)
    }
}

#[test]
fn the_new_scenario_kinds_parse_and_print_back() {
    let t: ScenarioSpec = "split-task:mnist-rows:2".parse().unwrap();
    assert_eq!(
        t,
        ScenarioSpec::SplitTask {
            task: TaskKind::MnistRows,
            per_experience: 2
        }
    );
    assert_eq!(t.to_string(), "split-task:mnist-rows:2");
    assert_eq!(t.task(), Some(TaskKind::MnistRows));
    assert!(t.is_task_incremental() && !split2().is_task_incremental());
    let l: ScenarioSpec = "lists:4:5:6:20".parse().unwrap();
    assert_eq!(
        l,
        ScenarioSpec::Lists {
            lists: 4,
            per_list: 5,
            length: 6,
            items: 20
        }
    );
    assert_eq!(l.to_string(), "lists:4:5:6:20");
    assert_eq!(l.task(), None);
    let err = |spec: &str| spec.parse::<ScenarioSpec>().unwrap_err().to_string();
    let e = err("lists:4:5:6");
    assert!(e.contains("five parts"), "{e}");
    // The error lists every valid form.
    for form in [
        "split:TASK",
        "split-task:TASK",
        "permuted:TASK",
        "lists:LISTS",
    ] {
        assert!(e.contains(form), "{form}: {e}");
    }
    assert!(err("split-task:mnist-rows").contains("three parts"));
    assert!(err("lists:4:0:6:20").contains("≥ 1"));
    assert!(err("lists:4:5:1:20").contains("N ≥ 2"));
    assert!(err("lists:4:5:6:1").contains("V ≥ 2"));
    let e = err("lists:4:5:6:12");
    assert!(
        e.contains("20 distinct first items") && e.contains("L·S ≤ V"),
        "{e}"
    );
    assert!(err("split-task:mnist-foo:2").contains("unknown task"));
}

#[test]
fn task_incremental_settings_that_make_no_sense_are_named() {
    let build = |spec: &str, task: Arc<dyn SequenceTask>| {
        Scenario::new(spec.parse().unwrap(), task, 0)
            .err()
            .unwrap()
            .to_string()
    };
    let e = build("split-task:mnist-rows:1", toy());
    assert!(
        e.contains("split-task:mnist-rows:1") && e.contains("trivial"),
        "{e}"
    );
    assert!(build("split-task:mnist-rows:3", toy()).contains("groups of 3"));
    assert!(build("split-task:mnist-rows:4", toy()).contains("at least two groups"));
    let e = build(
        "split-task:mnist-rows:2",
        Arc::new(Unlabelled(Toy { n: [8, 4] })),
    );
    assert!(
        e.contains("split-task:mnist-rows:2") && e.contains("no class label"),
        "{e}"
    );
    // Lists read no task; split scenarios need one.
    assert!(build("lists:2:2:3:4", toy()).contains("Scenario::synthetic"));
    let e = Scenario::synthetic(split2(), 0).err().unwrap().to_string();
    assert!(e.contains("Scenario::new"), "{e}");
}

#[test]
fn split_task_has_the_groups_of_split_and_masks_every_experience() {
    let class_il = Scenario::new(split2(), toy(), 3).unwrap();
    let spec: ScenarioSpec = "split-task:mnist-rows:2".parse().unwrap();
    let s = Scenario::new(spec, toy(), 3).unwrap();
    assert!(s.is_task_incremental() && !class_il.is_task_incremental());
    assert_eq!(s.class_order, class_il.class_order);
    for (a, b) in s.experiences.iter().zip(&class_il.experiences) {
        assert_eq!(
            (&a.classes, &a.train, &a.test),
            (&b.classes, &b.train, &b.test)
        );
        assert!(b.task_mask().is_none());
        let mask = a.task_mask().unwrap();
        assert_eq!((mask.classes(), mask.groups()), (4, 2));
        for &c in &a.classes {
            assert_eq!(mask.group_classes(c), {
                let mut g = a.classes.clone();
                g.sort();
                g
            });
        }
    }
    let joint = s.cumulative(1);
    assert!(joint.task_mask().is_some());
    assert_eq!((joint.train.len(), joint.classes.len()), (80, 4));
}

fn logits_2x3x4() -> Tensor {
    Tensor::new(
        &[
            [
                [0.5f32, 3.0, 1.0, 2.0],
                [1.0, 0.0, -1.0, 4.0],
                [2.0, 9.0, 1.5, 7.0],
            ],
            [
                [0.0, 1.0, 2.0, 3.0],
                [5.0, -2.0, 0.0, 1.0],
                [8.0, 0.5, 6.0, -1.0],
            ],
        ],
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn the_mask_keeps_each_sequences_group_and_pushes_the_rest_out_of_the_softmax() {
    use remanence_continual::task_il::{masked_logit, TaskMask};
    let mask = TaskMask::new(&[vec![0, 2], vec![1, 3]], 4).unwrap();
    assert_eq!(
        (mask.group_of(2), mask.group_of(3), mask.group_of(9)),
        (Some(0), Some(1), None)
    );
    assert!(TaskMask::new(&[vec![0, 1], vec![1]], 3)
        .unwrap_err()
        .to_string()
        .contains("class 1 is in group 0 and group 1"));
    assert!(TaskMask::new(&[vec![0, 5]], 3).is_err());
    for dtype in [DType::F32, DType::F64] {
        let y = logits_2x3x4().to_dtype(dtype).unwrap();
        // Sequence 0 has class 2 (group {0, 2}), sequence 1 class 3 (group {1, 3}).
        let masked = mask.apply_labels(&[2, 3], &y).unwrap();
        let raw: Vec<Vec<Vec<f64>>> = y.to_dtype(DType::F64).unwrap().to_vec3().unwrap();
        let got: Vec<Vec<Vec<f64>>> = masked.to_dtype(DType::F64).unwrap().to_vec3().unwrap();
        let groups = [[0usize, 2], [1, 3]];
        for b in 0..2 {
            for t in 0..3 {
                for c in 0..4 {
                    if groups[b].contains(&c) {
                        assert_eq!(got[b][t][c], raw[b][t][c]);
                    } else {
                        assert_eq!(got[b][t][c], masked_logit(dtype));
                    }
                }
                // The argmax of the masked logits is exactly the argmax within the group, even
                // where another group's class has the largest raw logit.
                let argmax = |v: &[f64]| (0..4).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
                let best_in_group = *groups[b]
                    .iter()
                    .max_by(|&&i, &&j| raw[b][t][i].total_cmp(&raw[b][t][j]))
                    .unwrap();
                assert_eq!(argmax(&got[b][t]), best_in_group);
            }
        }
        // Softmax: exactly 0 outside the group, no NaN.
        let p: Vec<Vec<Vec<f64>>> = candle_nn::ops::softmax_last_dim(&masked)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec3()
            .unwrap();
        for (b, rows) in p.iter().enumerate() {
            for row in rows {
                for (c, &v) in row.iter().enumerate() {
                    assert!(v.is_finite());
                    if !groups[b].contains(&c) {
                        assert_eq!(v, 0.0, "{dtype:?} {b} {c}");
                    }
                }
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6);
            }
        }
        // Gradients through the masked read-out: finite, and 0 for the masked logits.
        let var = candle_core::Var::from_tensor(&y).unwrap();
        let batch = Batch {
            x: Tensor::zeros((2, 3, 1), dtype, &Device::Cpu).unwrap(),
            target: Tensor::new(&[2u32, 3], &Device::Cpu).unwrap(),
            mask: None,
            dt: None,
            indices: vec![0, 1],
            lengths: vec![3, 3],
        };
        for objective in [Objective::ClassLastStep, Objective::ClassMeanOverTime] {
            let out = mask.apply(&batch, objective, var.as_tensor()).unwrap();
            let l = remanence_train::loss::loss(objective, &out, &batch).unwrap();
            assert!(l
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                .is_finite());
            let g = l.backward().unwrap();
            let g: Vec<Vec<Vec<f64>>> = g
                .get(var.as_tensor())
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec3()
                .unwrap();
            for (b, rows) in g.iter().enumerate() {
                for (c, &v) in rows.iter().flatten().enumerate() {
                    assert!(v.is_finite());
                    if !groups[b].contains(&(c % 4)) {
                        assert_eq!(v, 0.0);
                    }
                }
            }
        }
        let e = mask
            .apply(&batch, Objective::ClassPerStep, &y)
            .unwrap_err()
            .to_string();
        assert!(e.contains("one class per sequence"), "{e}");
        let e = mask.apply_labels(&[2, 7], &y).unwrap_err().to_string();
        assert!(e.contains("label 7 belongs to no group"), "{e}");
    }
}

#[test]
fn a_task_incremental_experience_scores_the_argmax_within_the_group() {
    let class_il = Scenario::new(split2(), toy(), 3).unwrap();
    let s = Scenario::new("split-task:mnist-rows:2".parse().unwrap(), toy(), 3).unwrap();
    let other_group = |class: usize| -> usize {
        *s.experiences
            .iter()
            .find(|e| !e.classes.contains(&class))
            .unwrap()
            .classes
            .first()
            .unwrap()
    };
    // Every sequence: its own class gets 1, a class of the other group 5, the rest 0.
    let mut predict = |b: &Batch| -> remanence_tasks::Result<Tensor> {
        let targets: Vec<u32> = b.target.to_vec1()?;
        let (n, t) = (targets.len(), b.x.dim(1)?);
        let mut y = vec![0f32; n * t * 4];
        for (r, &c) in targets.iter().enumerate() {
            for s in 0..t {
                y[(r * t + s) * 4 + c as usize] = 1.0;
                y[(r * t + s) * 4 + other_group(c as usize)] = 5.0;
            }
        }
        Ok(Tensor::from_vec(y, (n, t, 4), &Device::Cpu)?)
    };
    for k in 0..2 {
        let task_il = s.experiences[k]
            .accuracy(7, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        let one_head = class_il.experiences[k]
            .accuracy(7, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        assert_eq!((task_il, one_head), (1.0, 0.0));
        let eval = s.experiences[k]
            .evaluate(7, DType::F32, &Device::Cpu, &mut predict)
            .unwrap();
        assert_eq!(eval.metric, 1.0);
        assert!(
            eval.summary.contains("task-incremental"),
            "{}",
            eval.summary
        );
    }
    // The joint experience masks each sequence to its own group too.
    let joint = s.cumulative(1);
    assert_eq!(
        joint
            .accuracy(16, DType::F32, &Device::Cpu, &mut predict)
            .unwrap(),
        1.0
    );
}

/// Records the read-out that `extra_loss` sees.
struct Spy(Arc<std::sync::Mutex<Option<Tensor>>>);

impl remanence_train::Plugin for Spy {
    fn extra_loss(
        &mut self,
        _ctx: &remanence_train::StepContext,
        _batch: &Batch,
        output: &Tensor,
    ) -> remanence_train::Result<Option<Tensor>> {
        *self.0.lock().unwrap() = Some(output.detach());
        Ok(None)
    }
}

#[test]
fn the_task_il_plugin_masks_the_read_out_before_the_loss_and_the_other_plugins() {
    use remanence_continual::task_il::{masked_logit, TaskIlPlugin};
    use remanence_train::{GradientLearner, Learner, StepContext};
    let s = Scenario::new("split-task:mnist-rows:2".parse().unwrap(), toy(), 3).unwrap();
    let exp = &s.experiences[0];
    let cfg = config(1);
    let (model, store) =
        remanence_cells::SequenceModel::init(&cfg.model, 0, DType::F32, &Device::Cpu).unwrap();
    let vars = store.vars();
    let seen = Arc::new(std::sync::Mutex::new(None));
    let mut learner = GradientLearner::new(cfg.train.optimizer.build(), None)
        .with_plugin(Box::new(TaskIlPlugin::new(exp.task_mask().unwrap())))
        .with_plugin(Box::new(Spy(seen.clone())));
    let batch = exp
        .batch(Split::Train, &[0, 1, 2, 3], DType::F32, &Device::Cpu)
        .unwrap();
    let ctx = StepContext {
        model: &model,
        store: &store,
        vars: &vars,
        objective: Objective::ClassLastStep,
        lr: 0.01,
        epoch: 0,
        batch: 0,
    };
    let report = learner.step(&ctx, &batch).unwrap();
    assert!(report.loss.is_finite() && report.grad_norm.is_finite());
    let y: Vec<Vec<Vec<f32>>> = seen.lock().unwrap().take().unwrap().to_vec3().unwrap();
    let out: Vec<usize> = (0..4).filter(|c| !exp.classes.contains(c)).collect();
    for row in y.iter().flatten() {
        for c in 0..4 {
            assert_eq!(
                row[c] == masked_logit(DType::F32) as f32,
                out.contains(&c),
                "{row:?}"
            );
        }
    }
}

// ---- Sequence lists ----

#[test]
fn sequence_lists_are_drawn_from_the_seed_with_their_own_first_items() {
    use remanence_continual::lists::SequenceLists;
    let a = SequenceLists::new(3, 4, 5, 16, 7).unwrap();
    let b = SequenceLists::new(3, 4, 5, 16, 7).unwrap();
    let c = SequenceLists::new(3, 4, 5, 16, 8).unwrap();
    assert_eq!(a.sequences(), b.sequences());
    assert!((0..16).all(|i| a.code(i) == b.code(i)));
    assert_ne!(a.sequences(), c.sequences());
    assert_eq!(
        (a.lists(), a.per_list(), a.length(), a.vocabulary()),
        (3, 4, 5, 16)
    );
    assert_eq!(a.sequences().len(), 12);
    assert!(a
        .sequences()
        .iter()
        .all(|s| s.len() == 5 && s.iter().all(|&i| i < 16)));
    // Distinct first items across every list.
    let mut firsts: Vec<u32> = a.sequences().iter().map(|s| s[0]).collect();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 12);
    // Items: distinct binary vectors of V bits, none all zeros.
    for i in 0..16 {
        assert_eq!(a.code(i).len(), 16);
        assert!(a.code(i).iter().all(|&v| v <= 1) && a.code(i).contains(&1));
        assert!((0..i).all(|j| a.code(j) != a.code(i)));
    }
    assert_eq!((a.list_of(5), a.list(2)), (1, 8..12));
    // The batch: inputs are the items' vectors, targets the next items, the last step weighs 0.
    let batch = a
        .batch(Split::Train, &[6, 1], DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(batch.x.dims(), &[2, 5, 16]);
    assert_eq!(batch.lengths, vec![5, 5]);
    let x: Vec<Vec<Vec<f32>>> = batch.x.to_vec3().unwrap();
    let t: Vec<Vec<u32>> = batch.target.to_vec2().unwrap();
    let m: Vec<Vec<f32>> = batch.mask.unwrap().to_vec2().unwrap();
    for (r, &i) in [6usize, 1].iter().enumerate() {
        let seq = &a.sequences()[i];
        for s in 0..5 {
            let code: Vec<f32> = a.code(seq[s] as usize).iter().map(|&v| v as f32).collect();
            assert_eq!(x[r][s], code);
            if s < 4 {
                assert_eq!((t[r][s], m[r][s]), (seq[s + 1], 1.0));
            } else {
                assert_eq!(m[r][s], 0.0);
            }
        }
    }
    assert_eq!(a.objective(), Objective::ClassPerStep);
    assert_eq!((a.input_size(), a.output_size()), (16, 16));
    let e = SequenceLists::new(4, 5, 6, 19, 0).unwrap_err().to_string();
    assert!(e.contains("lists:4:5:6:19") && e.contains("L·S ≤ V"), "{e}");
    assert!(SequenceLists::new(4, 5, 6, 20, 0).is_ok());
}

#[test]
fn a_lists_scenario_has_one_experience_a_list_and_scores_next_items() {
    let spec: ScenarioSpec = "lists:3:4:5:12".parse().unwrap();
    let s = Scenario::synthetic(spec.clone(), 5).unwrap();
    let again = Scenario::synthetic(spec, 5).unwrap();
    assert!(!s.is_task_incremental());
    assert_eq!(s.experiences.len(), 3);
    assert_eq!(s.class_order, (0..12).collect::<Vec<_>>());
    for (l, e) in s.experiences.iter().enumerate() {
        assert_eq!(e.train, e.test);
        assert_eq!(
            e.train.iter().map(|i| i.index).collect::<Vec<_>>(),
            (4 * l..4 * l + 4).collect::<Vec<_>>()
        );
        assert_eq!(e.classes, (0..12).collect::<Vec<_>>());
        assert!(e.task_mask().is_none());
        assert_eq!(e.objective(), Objective::ClassPerStep);
    }
    let dev = Device::Cpu;
    let batch = |sc: &Scenario| {
        sc.experiences[2]
            .batch(Split::Test, &[0, 3], DType::F32, &dev)
            .unwrap()
    };
    assert_eq!(
        batch(&s).target.to_vec2::<u32>().unwrap(),
        batch(&again).target.to_vec2::<u32>().unwrap()
    );
    let joint = s.cumulative(1);
    assert_eq!((joint.train.len(), joint.classes.len()), (8, 12));
    assert_eq!(s.cumulative(2).train.len(), 12);
    // An oracle that predicts the next item at every step but one wrong on the first sequence.
    let mut predict = |b: &Batch| -> remanence_tasks::Result<Tensor> {
        let t: Vec<Vec<u32>> = b.target.to_vec2()?;
        let (n, steps) = (t.len(), t[0].len());
        let mut y = vec![0f32; n * steps * 12];
        for r in 0..n {
            for s in 0..steps {
                let wrong = b.indices[r] == 0 && s == 1;
                let k = if wrong { (t[r][s] + 1) % 12 } else { t[r][s] };
                y[(r * steps + s) * 12 + k as usize] = 1.0;
            }
        }
        Ok(Tensor::from_vec(y, (n, steps, 12), &Device::Cpu)?)
    };
    // (An experience's batches index their sequences from 0, so one batch of 4: only its first
    // sequence is index 0.)
    let e = &s.experiences[1];
    let score = e.score(4, DType::F32, &dev, &mut predict).unwrap();
    // 4 sequences × 4 counted steps; one step and so one sequence wrong.
    assert_eq!(score.accuracy, 15.0 / 16.0);
    assert_eq!(score.sequences_recalled, Some(0.75));
    let eval = e.evaluate(4, DType::F32, &dev, &mut predict).unwrap();
    assert_eq!(eval.values["sequences_recalled"], 0.75);
    assert_eq!(eval.metric, 15.0 / 16.0);
    let base = s.base.evaluate(5, DType::F32, &dev, &mut predict).unwrap();
    assert_eq!(base.metric, 47.0 / 48.0);
    assert_eq!(base.solved, Some(false));
}

// ---- Task-incremental masks in every method ----

/// The largest absolute difference between two gradient lists (missing entries read as 0), and
/// the largest absolute entry of `a`.
fn grad_gap(a: &[Option<Tensor>], b: &[Option<Tensor>]) -> (f64, f64) {
    let flat = |g: &Option<Tensor>| -> Vec<f64> {
        g.as_ref()
            .map(|t| {
                t.to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .unwrap_or_default()
    };
    let (mut gap, mut top) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (flat(x), flat(y));
        let n = x.len().max(y.len());
        for i in 0..n {
            let (u, v) = (
                x.get(i).copied().unwrap_or(0.0),
                y.get(i).copied().unwrap_or(0.0),
            );
            gap = gap.max((u - v).abs());
            top = top.max(u.abs());
        }
    }
    (gap, top)
}

/// The gradient of the task loss of `model` on `batch`, its read-out masked by `mask` if given.
fn loss_gradient(
    model: &remanence_cells::SequenceModel,
    store: &remanence_cells::ParamStore,
    batch: &Batch,
    mask: Option<&remanence_continual::task_il::TaskMask>,
) -> Vec<Option<Tensor>> {
    let (mut y, _) = model.forward(&batch.x, None, None).unwrap();
    if let Some(m) = mask {
        y = m.apply(batch, Objective::ClassLastStep, &y).unwrap();
    }
    let g = remanence_train::loss::loss(Objective::ClassLastStep, &y, batch)
        .unwrap()
        .backward()
        .unwrap();
    store
        .vars()
        .iter()
        .map(|(_, v)| g.get(v.as_tensor()).cloned())
        .collect()
}

#[test]
fn lwf_distils_within_the_group_under_split_task() {
    use remanence_continual::regularizers::{frozen_copy, LwfPlugin};
    let s = Scenario::new("split-task:mnist-rows:2".parse().unwrap(), toy(), 3).unwrap();
    let exp = &s.experiences[1];
    let mask = exp.task_mask().unwrap();
    let cfg = config(1);
    let dev = Device::Cpu;
    let (student, _) =
        remanence_cells::SequenceModel::init(&cfg.model, 0, DType::F32, &dev).unwrap();
    let (_, other) = remanence_cells::SequenceModel::init(&cfg.model, 1, DType::F32, &dev).unwrap();
    let teacher = Arc::new(std::sync::Mutex::new(
        frozen_copy(&cfg.model, &other, DType::F32, &dev).unwrap(),
    ));
    let batch = exp
        .batch(Split::Train, &[0, 1, 2, 3, 4, 5], DType::F32, &dev)
        .unwrap();
    // The learner's read-out, masked as TaskIlPlugin masks it in training.
    let y = mask
        .apply(
            &batch,
            Objective::ClassLastStep,
            &student.forward(&batch.x, None, None).unwrap().0,
        )
        .unwrap();
    let term_with = |mask, old_groups: Vec<usize>| {
        LwfPlugin {
            teacher: teacher.clone(),
            alpha: 1.0,
            temperature: 1.5,
            mask,
            old_groups,
        }
        .term(&student, &batch, &y, Objective::ClassLastStep)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
    };
    let term = |mask| term_with(mask, Vec::new());
    // An unmasked teacher puts probability where the masked student's logits are −10⁹.
    let unmasked = term(None);
    assert!(unmasked > 1e6, "{unmasked}");
    // With an old head (group 0), the old head's classes are distilled on the unmasked read-outs.
    let old_head = term_with(Some(mask.clone()), vec![0]);
    let group0: Vec<u32> = {
        let mut g: Vec<u32> = s.experiences[0].classes.iter().map(|&c| c as u32).collect();
        g.sort();
        g
    };
    let idx0 = Tensor::new(group0.as_slice(), &dev).unwrap();
    let last0 = |t: &Tensor| {
        t.narrow(1, 2, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .contiguous()
            .unwrap()
            .index_select(&idx0, 1)
            .unwrap()
    };
    let y_full = student.forward(&batch.x, None, None).unwrap().0;
    let y_teacher = teacher
        .lock()
        .unwrap()
        .forward(&batch.x, None, None)
        .unwrap()
        .0;
    let want0 = remanence_continual::regularizers::distillation(
        &last0(&y_teacher),
        &last0(&y_full),
        1.0,
        1.5,
    )
    .unwrap()
    .to_scalar::<f32>()
    .unwrap() as f64;
    assert!((old_head - want0).abs() < 1e-5, "{old_head} {want0}");
    let within = term(Some(mask.clone()));
    assert!(
        within.is_finite() && (0.0..10.0).contains(&within),
        "{within}"
    );
    // Within the group it is the distillation of the two classes' logits alone.
    let keep: Vec<usize> = {
        let mut g = exp.classes.clone();
        g.sort();
        g
    };
    let idx = Tensor::new(
        keep.iter()
            .map(|&c| c as u32)
            .collect::<Vec<_>>()
            .as_slice(),
        &dev,
    )
    .unwrap();
    let last = |t: &Tensor| {
        t.narrow(1, 2, 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .contiguous()
            .unwrap()
            .index_select(&idx, 1)
            .unwrap()
    };
    let y_old = teacher
        .lock()
        .unwrap()
        .forward(&batch.x, None, None)
        .unwrap()
        .0;
    let want = remanence_continual::regularizers::distillation(&last(&y_old), &last(&y), 1.0, 1.5)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    assert!((within - want).abs() < 1e-5, "{within} {want}");
}

#[test]
fn lwf_keeps_a_small_loss_on_a_whole_split_task_run() {
    remanence_train::stack::with_deep_stack(|| {
        let root =
            std::env::temp_dir().join(format!("remanence-cl-lwf-til-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = Scenario::new("split-task:mnist-rows:2".parse().unwrap(), toy(), 3).unwrap();
        let method = Method::parse("lwf", &MethodOptions::default()).unwrap();
        let run = RunDir::create_new(&root, "lwf").unwrap();
        let m = runner::run(
            &config(3),
            &s,
            method,
            &run,
            &Device::Cpu,
            &mut Silent,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(m.rows.len(), 2);
        let text = std::fs::read_to_string(run.file("exp-01/metrics.jsonl")).unwrap();
        for line in text.lines() {
            let loss = serde_json::from_str::<serde_json::Value>(line).unwrap()["loss"]
                .as_f64()
                .unwrap();
            assert!(loss.is_finite() && loss < 10.0, "{loss}");
        }
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn agem_takes_its_reference_gradient_on_the_masked_loss_under_split_task() {
    use remanence_continual::agem::AgemPlugin;
    let s = Scenario::new("split-task:mnist-rows:2".parse().unwrap(), toy(), 3).unwrap();
    let mask = s.experiences[0].task_mask().unwrap();
    let mut cfg = config(1);
    cfg.dtype = "f64".into();
    let dev = Device::Cpu;
    let (model, store) =
        remanence_cells::SequenceModel::init(&cfg.model, 0, DType::F64, &dev).unwrap();
    let vars = store.vars();
    let ctx = remanence_train::StepContext {
        model: &model,
        store: &store,
        vars: &vars,
        objective: Objective::ClassLastStep,
        lr: 0.01,
        epoch: 0,
        batch: 0,
    };
    let buffer = Arc::new(std::sync::Mutex::new(ReplayBuffer::new(5, 0)));
    buffer.lock().unwrap().add_experience(&s.experiences[0]);
    let items: Vec<_> = buffer
        .lock()
        .unwrap()
        .items()
        .iter()
        .map(|(_, i)| *i)
        .collect();
    assert_eq!(items.len(), 10);
    // A reference batch larger than the memory takes all of it (in some order).
    let mut plugin = AgemPlugin::new(buffer, 64).with_mask(Some(mask.clone()));
    let got = plugin.reference_gradient(&ctx).unwrap().unwrap();
    let all = s.experiences[0]
        .batch_of(Split::Train, &items, DType::F64, &dev)
        .unwrap();
    let masked = loss_gradient(&model, &store, &all, Some(&mask));
    let unmasked = loss_gradient(&model, &store, &all, None);
    let (gap, top) = grad_gap(&got, &masked);
    assert!(gap <= 1e-9 * top.max(1.0), "{gap} of {top}");
    let (differ, _) = grad_gap(&got, &unmasked);
    assert!(differ > 1e-4, "{differ}");
}

#[test]
fn ewc_takes_its_fisher_on_the_masked_loss_under_split_task() {
    use remanence_continual::regularizers::empirical_fisher;
    let s = Scenario::new("split-task:mnist-rows:2".parse().unwrap(), toy(), 3).unwrap();
    let exp = &s.experiences[1];
    let mask = exp.task_mask().unwrap();
    let dev = Device::Cpu;
    let cfg = config(1);
    let (model, store) =
        remanence_cells::SequenceModel::init(&cfg.model, 0, DType::F64, &dev).unwrap();
    let n = exp.len(Split::Train);
    // One batch of every training sequence: the Fisher is its gradient squared.
    let fisher = empirical_fisher(&model, &store, exp, n, DType::F64, &dev, Some(&mask)).unwrap();
    let plain = empirical_fisher(&model, &store, exp, n, DType::F64, &dev, None).unwrap();
    let all: Vec<usize> = (0..n).collect();
    let batch = exp.batch(Split::Train, &all, DType::F64, &dev).unwrap();
    let g = loss_gradient(&model, &store, &batch, Some(&mask));
    let want: Vec<Option<Tensor>> = g
        .iter()
        .map(|g| g.as_ref().map(|g| g.sqr().unwrap()))
        .collect();
    let as_list = |f: &BTreeMap<String, Tensor>| -> Vec<Option<Tensor>> {
        store
            .vars()
            .iter()
            .map(|(n, _)| f.get(n).cloned())
            .collect()
    };
    let (gap, top) = grad_gap(&as_list(&fisher), &want);
    assert!(gap <= 1e-12 * top.max(1.0), "{gap} of {top}");
    let (differ, _) = grad_gap(&as_list(&fisher), &as_list(&plain));
    assert!(differ > 1e-8, "{differ}");
}

#[test]
fn dual_net_takes_task_incremental_scenarios_and_lwf_refuses_sequence_lists() {
    let o = MethodOptions::default();
    let mut small = o;
    (small.dual.transfer_size, small.dual.transfer_epochs) = (64, 1);
    let dual = Method::parse("dual-net", &small).unwrap();
    let til: ScenarioSpec = "split-task:mnist-rows:2".parse().unwrap();
    assert!(dual.check_scenario(&til).is_ok());
    assert!(dual.check_scenario(&split2()).is_ok());
    let lists: ScenarioSpec = "lists:2:3:4:8".parse().unwrap();
    let e = Method::parse("lwf", &o)
        .unwrap()
        .check_scenario(&lists)
        .unwrap_err()
        .to_string();
    assert!(e.contains("lwf") && e.contains("lists:2:3:4:8"), "{e}");
    for name in ["naive", "joint", "replay", "ewc", "si", "agem", "dual-net"] {
        assert!(
            Method::parse(name, &o)
                .unwrap()
                .check_scenario(&lists)
                .is_ok(),
            "{name}"
        );
    }
    // The dual network runs a task-incremental scenario: real data masked, pseudo-patterns
    // distilled on the whole read-out.
    remanence_train::stack::with_deep_stack(move || {
        let root =
            std::env::temp_dir().join(format!("remanence-cl-til-dual-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = Scenario::new(til, toy(), 3).unwrap();
        let run = RunDir::create_new(&root, "dual").unwrap();
        let m = runner::run(
            &config(1),
            &s,
            dual,
            &run,
            &Device::Cpu,
            &mut Silent,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(m.rows.len(), s.experiences.len());
        assert!(run.file("net2-matrix.json").exists());
        let _ = std::fs::remove_dir_all(&root);
    });
}

// ---- Sequence lists with every method ----

fn lists_config(spec: &Scenario, epochs: usize) -> RunConfig {
    let mut cfg = config(epochs);
    cfg.model.rnn.input_size = spec.base.input_size();
    cfg.model.output_size = spec.base.output_size();
    cfg
}

#[test]
fn the_memory_keeps_each_list_whole_and_replay_learns_lists() {
    let s = Scenario::synthetic("lists:3:4:5:12".parse().unwrap(), 2).unwrap();
    // No labels: up to per_class × 12 sequences of each list, so all 4 of each.
    let mut buf = ReplayBuffer::new(1, 0);
    for e in &s.experiences {
        buf.add_experience(e);
    }
    assert_eq!(buf.len(), 12);
    assert!(buf.counts().is_empty());
    let mut held: Vec<usize> = buf
        .items()
        .iter()
        .map(|(c, i)| {
            assert!(c.is_none());
            i.index
        })
        .collect();
    held.sort();
    assert_eq!(held, (0..12).collect::<Vec<_>>());
    remanence_train::stack::with_deep_stack(move || {
        let root = std::env::temp_dir().join(format!("remanence-cl-lists-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for name in ["replay", "agem", "ewc"] {
            let method = Method::parse(
                name,
                &MethodOptions {
                    per_class: 1,
                    per_batch: 4,
                    ..MethodOptions::default()
                },
            )
            .unwrap();
            let run = RunDir::create_new(&root, name).unwrap();
            let m = runner::run(
                &lists_config(&s, 3),
                &s,
                method,
                &run,
                &Device::Cpu,
                &mut Silent,
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(m.rows.len(), 3, "{name}");
            let info: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run.file("continual.json")).unwrap())
                    .unwrap();
            assert_eq!(info["scenario"], "lists:3:4:5:12");
            assert_eq!(info["method_settings"]["name"], name);
        }
        let _ = std::fs::remove_dir_all(&root);
    });
}
