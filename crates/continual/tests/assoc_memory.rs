//! `assoc-memory` on the toy task: the model learns experience 1 by gradient and never changes
//! after it; the accuracy matrix is what a bipartite memory built independently from the frozen
//! model's features predicts; a stopped run resumes to the same matrix; the scenarios and the
//! data-parallel training it cannot do are refused.
use std::path::PathBuf;

use candle_core::{DType, Device};
use remanence_continual::assoc::{batch_features, AssocState, FeatureKind, KMEANS_ITERATIONS};
use remanence_continual::matrix::AccuracyMatrix;
use remanence_continual::runner::{self, Stopped};
use remanence_continual::scenario::{Experience, Scenario};
use remanence_continual::strategy::{Method, MethodOptions};
use remanence_memory::bipartite::BipartiteMemory;
use remanence_memory::quantize::{AnchorMethod, PqSettings, ProductQuantizer};
use remanence_tasks::Split;
use remanence_train::trainer::Silent;
use remanence_train::RunDir;

mod common;
use common::{config, scenario};

fn root(name: &str) -> PathBuf {
    let r = std::env::temp_dir().join(format!("remanence-assoc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r);
    r
}

/// 3 segments of 4 anchors over the GRU's 6 state values; `per_class` sequences stored.
fn method(per_class: Option<usize>) -> Method {
    Method::parse(
        "assoc-memory",
        &MethodOptions {
            segments: 3,
            anchors: 4,
            store_per_class: per_class,
            ..MethodOptions::default()
        },
    )
    .unwrap()
}

fn start(
    root: &std::path::Path,
    name: &str,
    s: &Scenario,
    m: Method,
    limit: Option<usize>,
) -> (RunDir, AccuracyMatrix) {
    let run = RunDir::create_new(root, name).unwrap();
    let matrix = runner::run_limited(
        &config(),
        s,
        m,
        &run,
        &Device::Cpu,
        &mut Silent,
        &mut |_| {},
        limit,
    )
    .unwrap();
    (run, matrix)
}

/// The final-state features of `exp`'s sequences of `split` under `model`, with their classes.
fn features(
    model: &remanence_cells::SequenceModel,
    exp: &Experience,
    split: Split,
) -> (Vec<Vec<f64>>, Vec<usize>) {
    let items = match split {
        Split::Train => &exp.train,
        Split::Test => &exp.test,
    };
    let b = exp
        .batch_of(split, items, DType::F32, &Device::Cpu)
        .unwrap();
    let rows = batch_features(
        model,
        &b.x,
        b.dt.as_ref(),
        &b.lengths,
        FeatureKind::FinalState,
    )
    .unwrap();
    let y: Vec<u32> = b.target.to_vec1().unwrap();
    (rows, y.into_iter().map(|v| v as usize).collect())
}

fn weights(run: &RunDir, file: &str) -> Vec<f32> {
    let (_, store) = run.load_weights(file, &config(), &Device::Cpu).unwrap();
    let mut w = Vec::new();
    for (_, v) in store.vars() {
        w.extend(
            v.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
        );
    }
    w
}

fn memory_lines(run: &RunDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.file("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["memory"].clone())
        .collect()
}

#[test]
fn the_extractor_is_frozen_after_experience_one_and_the_memory_gives_the_matrix() {
    remanence_train::stack::with_deep_stack(|| {
        let r = root("frozen");
        let s = scenario("split:mnist-rows:2");
        let (run, m) = start(&r, "all", &s, method(None), None);
        assert_eq!(m.rows.len(), 3);
        // The model learnt experience 1 (its weights moved from the seed's) and none after.
        let (_, init) =
            remanence_cells::SequenceModel::init(&config().model, 7, DType::F32, &Device::Cpu)
                .unwrap();
        let w_init: Vec<f32> = init
            .vars()
            .iter()
            .flat_map(|(_, v)| {
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect();
        let w0 = weights(&run, "exp-00/model.safetensors");
        assert_ne!(w0, w_init, "experience 1 trains the extractor");
        for f in [
            "exp-01/model.safetensors",
            "exp-02/model.safetensors",
            "model.safetensors",
        ] {
            assert_eq!(weights(&run, f), w0, "{f}: the extractor changed");
        }
        // Experience 1 ran the trainer (its epochs' records), the later ones did not.
        assert!(run.file("exp-00/metrics.jsonl").is_file());
        assert!(!run.file("exp-01/metrics.jsonl").exists());

        // The memory, rebuilt from the frozen model: quantiser fitted on experience 1's training
        // features, each experience's classes OR-ed in after it; its predictions give row i.
        let (model, _) = run
            .load_weights("exp-00/model.safetensors", &config(), &Device::Cpu)
            .unwrap();
        let (fit_rows, _) = features(&model, &s.experiences[0], Split::Train);
        let flat: Vec<f64> = fit_rows.concat();
        let seed = AssocState::new(3, 4, None, 7).unwrap().seed;
        let pq = ProductQuantizer::fit(
            &flat,
            6,
            &PqSettings {
                segments: 3,
                anchors: 4,
                method: AnchorMethod::KMeans {
                    iterations: KMEANS_ITERATIONS,
                },
                seed,
            },
        )
        .unwrap();
        let mut mem = BipartiteMemory::new(3, 4).unwrap();
        let lines = memory_lines(&run);
        for (i, exp) in s.experiences.iter().enumerate() {
            let (rows, labels) = features(&model, exp, Split::Train);
            for &c in &exp.classes {
                let codes: Vec<Vec<u32>> = rows
                    .iter()
                    .zip(&labels)
                    .filter(|(_, &y)| y == c)
                    .map(|(r, _)| pq.encode(r).unwrap())
                    .collect();
                mem.add_class(c, &codes).unwrap();
            }
            assert_eq!(lines[i]["stored"], exp.train.len(), "experience {i}");
            assert_eq!(lines[i]["quantizer_fitted"], i == 0);
            for (j, test_exp) in s.experiences.iter().enumerate() {
                let (rows, labels) = features(&model, test_exp, Split::Test);
                let right = rows
                    .iter()
                    .zip(&labels)
                    .filter(|(r, &y)| mem.classify(&pq.encode(r).unwrap()).unwrap() == Some(y))
                    .count();
                let acc = right as f64 / rows.len() as f64;
                assert_eq!(m.rows[i][j], acc, "row {i}, experience {j}");
                if j > i {
                    // The memory never answers a class it has not learnt.
                    assert_eq!(acc, 0.0, "row {i}, experience {j}");
                }
            }
        }
        // The memory separates the classes it learnt better than chance among them.
        assert!(
            m.rows[2].iter().sum::<f64>() / 3.0 > 1.0 / 6.0,
            "{:?}",
            m.rows
        );
        let _ = std::fs::remove_dir_all(&r);
    });
}

#[test]
fn per_class_stores_the_first_n_of_each_class() {
    remanence_train::stack::with_deep_stack(|| {
        let r = root("per-class");
        let s = scenario("split:mnist-rows:2");
        let (run, m) = start(&r, "two", &s, method(Some(2)), None);
        assert_eq!(m.rows.len(), 3);
        for (i, line) in memory_lines(&run).iter().enumerate() {
            // Two classes an experience, two sequences each.
            assert_eq!(line["stored"], 4, "experience {i}");
            let classes: Vec<u64> = line["classes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            let mut want: Vec<u64> = s.experiences[i].classes.iter().map(|&c| c as u64).collect();
            want.sort_unstable();
            assert_eq!(classes, want);
        }
        let _ = std::fs::remove_dir_all(&r);
    });
}

#[test]
fn a_stopped_run_resumes_to_the_uninterrupted_matrix() {
    remanence_train::stack::with_deep_stack(|| {
        let r = root("resume");
        let s = scenario("split:mnist-rows:2");
        let m = method(Some(3));
        let (_, whole) = start(&r, "whole", &s, m, None);
        for stop in [1, 2] {
            let (run, first) = start(&r, &format!("stop{stop}"), &s, m, Some(stop));
            assert_eq!(first.rows, whole.rows[..stop].to_vec());
            let saved: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(
                    run.file(&format!("exp-{:02}/method-state.json", stop - 1)),
                )
                .unwrap(),
            )
            .unwrap();
            // The state holds the bit matrix and the quantiser's anchors (floats as their bits).
            assert!(saved["assoc"]["edges"].is_object(), "{saved}");
            assert!(
                saved["assoc"]["quantizer"].to_string().contains("f64:"),
                "{saved}"
            );
            let stopped = Stopped::read(&run).unwrap();
            assert_eq!((stopped.next, stopped.method), (stop, m));
            let resumed = runner::resume(
                &stopped,
                &s,
                &run,
                &Device::Cpu,
                &mut Silent,
                &mut |_| {},
                None,
            )
            .unwrap();
            assert_eq!(resumed, whole, "stopped after {stop}");
            let bytes = |d: &str| std::fs::read(r.join(d).join("model.safetensors")).unwrap();
            assert!(bytes(&format!("stop{stop}")) == bytes("whole"));
            let last = |d: &str| {
                std::fs::read_to_string(r.join(d).join("exp-02/method-state.json")).unwrap()
            };
            assert_eq!(last(&format!("stop{stop}")), last("whole"));
        }
        let _ = std::fs::remove_dir_all(&r);
    });
}

#[test]
fn what_assoc_memory_refuses() {
    let m = method(None);
    assert_eq!(
        Method::parse("memory", &MethodOptions::default()).unwrap(),
        Method::parse("assoc-memory", &MethodOptions::default()).unwrap()
    );
    assert_eq!(m.name(), "assoc-memory");
    assert!(Method::NAMES.contains(&"assoc-memory"));
    let e = m
        .check_scenario(&"split-task:mnist-rows:2".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("task-incremental") && e.contains("split:TASK:N"),
        "{e}"
    );
    let e = m
        .check_scenario(&"lists:2:2:4:8".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("next item"), "{e}");
    m.check_scenario(&"split:mnist-rows:2".parse().unwrap())
        .unwrap();
    let e = m.check_distributed().unwrap_err().to_string();
    assert!(e.contains("--distributed"), "{e}");
    let s = scenario("split:mnist-rows:2");
    let e = runner::check_parallel(&config(), &s, m, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("assoc-memory"), "{e}");
    for (flag, o) in [
        (
            "segments",
            MethodOptions {
                segments: 0,
                ..MethodOptions::default()
            },
        ),
        (
            "per-class",
            MethodOptions {
                store_per_class: Some(0),
                ..MethodOptions::default()
            },
        ),
    ] {
        let e = Method::parse("assoc-memory", &o).unwrap_err().to_string();
        assert!(e.contains(&format!("--{flag}")), "{e}");
    }
    // Settings the quantiser cannot fit are refused before anything is written: more segments
    // than the 6 state values, more anchors than experience 1's 16 training sequences.
    let r = root("refused");
    for (name, segments, anchors, what) in [
        ("segments", 7, 4, "--segments 7"),
        ("anchors", 3, 17, "--anchors 17"),
    ] {
        let o = MethodOptions {
            segments,
            anchors,
            ..MethodOptions::default()
        };
        let run = RunDir::create_new(&r, name).unwrap();
        let e = runner::run(
            &config(),
            &s,
            Method::parse("assoc-memory", &o).unwrap(),
            &run,
            &Device::Cpu,
            &mut Silent,
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(what), "{e}");
        assert!(!run.file("continual.json").exists());
    }
    let _ = std::fs::remove_dir_all(&r);
}
