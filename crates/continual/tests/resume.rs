//! A scenario run stopped after some experiences and resumed gives the numbers of an
//! uninterrupted run, for every method; folders that cannot be resumed are refused, the file
//! at fault named.
use std::path::{Path, PathBuf};

use candle_core::Device;
use remanence_continual::matrix::AccuracyMatrix;
use remanence_continual::runner::{self, Stopped};
use remanence_continual::scenario::Scenario;
use remanence_continual::strategy::{Method, MethodOptions};
use remanence_train::trainer::Silent;
use remanence_train::RunDir;

mod common;
use common::{config, scenario};

fn root(name: &str) -> PathBuf {
    let r = std::env::temp_dir().join(format!("remanence-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r);
    r
}

/// The run of `method` over `s` into `root/name`, stopped after `limit` experiences if given.
fn start(
    root: &Path,
    name: &str,
    s: &Scenario,
    method: Method,
    limit: Option<usize>,
) -> (RunDir, AccuracyMatrix) {
    let run = RunDir::create_new(root, name).unwrap();
    let m = runner::run_limited(
        &config(),
        s,
        method,
        &run,
        &Device::Cpu,
        &mut Silent,
        &mut |_| {},
        limit,
    )
    .unwrap();
    (run, m)
}

/// Resumes the run in `run` over `s`, for `limit` experiences if given.
fn resume(
    run: &RunDir,
    s: &Scenario,
    limit: Option<usize>,
) -> remanence_continual::Result<AccuracyMatrix> {
    let stopped = Stopped::read(run)?;
    runner::resume(
        &stopped,
        s,
        run,
        &Device::Cpu,
        &mut Silent,
        &mut |_| {},
        limit,
    )
}

fn methods() -> Vec<(&'static str, Method)> {
    let o = MethodOptions {
        per_class: 3,
        per_batch: 4,
        agem_batch: 8,
        ..MethodOptions::default()
    };
    let mut dual = o;
    dual.dual.transfer_size = 64;
    dual.dual.transfer_epochs = 1;
    let mut seeded = dual;
    seeded.dual.seeds_per_class = 2;
    let mut v: Vec<(&'static str, Method)> =
        ["naive", "joint", "replay", "agem", "ewc", "si", "lwf"]
            .into_iter()
            .map(|n| (n, Method::parse(n, &o).unwrap()))
            .collect();
    v.push(("dual-net", Method::parse("dual-net", &dual).unwrap()));
    v.push((
        "dual-net-seeds",
        Method::parse("dual-net", &seeded).unwrap(),
    ));
    v
}

fn metrics_experiences(run: &RunDir) -> Vec<u64> {
    std::fs::read_to_string(run.file("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["experience"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn every_method_resumed_after_one_experience_gives_the_uninterrupted_matrix() {
    remanence_train::stack::with_deep_stack(|| {
        let r = root("all");
        let s = scenario("split:mnist-rows:2");
        assert_eq!(s.experiences.len(), 3);
        for (name, method) in methods() {
            let (_, whole) = start(&r, &format!("{name}-whole"), &s, method, None);
            assert_eq!(whole.rows.len(), 3, "{name}");
            let (run, first) = start(&r, &format!("{name}-split"), &s, method, Some(1));
            assert_eq!(first.rows.len(), 1, "{name}");
            assert_eq!(first.rows[0], whole.rows[0], "{name}");
            let stopped = Stopped::read(&run).unwrap();
            assert_eq!(
                (stopped.next, stopped.experiences, stopped.method),
                (1, 3, method)
            );
            let resumed = resume(&run, &s, None).unwrap();
            // Exactly the same numbers, every row.
            assert_eq!(resumed, whole, "{name}");
            assert_eq!(
                AccuracyMatrix::load_json(&run.file("matrix.json")).unwrap(),
                whole,
                "{name}"
            );
            assert_eq!(metrics_experiences(&run), vec![0, 1, 2], "{name}");
            // The weights too, bit for bit (the matrix's accuracies are coarse).
            let bytes = |d: &str, f: &str| std::fs::read(r.join(d).join(f)).unwrap();
            let files: &[&str] = if name.starts_with("dual") {
                &["model.safetensors", "net2.safetensors"]
            } else {
                &["model.safetensors"]
            };
            for f in files {
                assert!(
                    bytes(&format!("{name}-split"), f) == bytes(&format!("{name}-whole"), f),
                    "{name}: {f}"
                );
            }
            if name.starts_with("dual") {
                let net2 = |d: &str| {
                    AccuracyMatrix::load_json(&r.join(d).join("net2-matrix.json")).unwrap()
                };
                assert_eq!(
                    net2(&format!("{name}-split")),
                    net2(&format!("{name}-whole")),
                    "{name}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&r);
    });
}

#[test]
fn an_interrupted_experience_starts_over_and_resuming_goes_one_experience_at_a_time() {
    remanence_train::stack::with_deep_stack(|| {
        let r = root("steps");
        // Task-incremental too: the masks travel with the scenario, the memory with the state.
        let s = scenario("split-task:mnist-rows:2");
        let method = Method::parse(
            "replay",
            &MethodOptions {
                per_class: 3,
                per_batch: 4,
                ..MethodOptions::default()
            },
        )
        .unwrap();
        let (_, whole) = start(&r, "whole", &s, method, None);
        let (run, _) = start(&r, "split", &s, method, Some(1));
        // What a process killed half-way through experience 1 leaves: its folder, partly
        // written, and (killed after the metrics line) a record of it.
        std::fs::create_dir_all(run.file("exp-01")).unwrap();
        std::fs::write(run.file("exp-01/model.safetensors"), b"half a file").unwrap();
        std::fs::create_dir_all(run.file("exp-01-2")).unwrap();
        let mut lines = std::fs::read_to_string(run.file("metrics.jsonl")).unwrap();
        lines.push_str(
            &lines
                .clone()
                .replace("\"experience\":0", "\"experience\":1"),
        );
        std::fs::write(run.file("metrics.jsonl"), lines).unwrap();
        // matrix.json's decimals may read back one ULP off: the resumed run takes its rows
        // from each experience's exact record, and refuses a row that really differs.
        let path = run.file("matrix.json");
        let good = std::fs::read_to_string(&path).unwrap();
        let mut m = AccuracyMatrix::load_json(&path).unwrap();
        m.rows[0] = m.rows[0]
            .iter()
            .map(|a| if *a < 1.0 { a.next_up() } else { a.next_down() })
            .collect();
        m.save_json(&path).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), good);
        let mut off = m.clone();
        off.rows[0][0] = if off.rows[0][0] < 0.5 { 0.75 } else { 0.25 };
        off.save_json(&path).unwrap();
        let e = resume(&run, &s, Some(1)).unwrap_err().to_string();
        assert!(e.contains("row 0 disagrees with exp-00/scores.json"), "{e}");
        m.save_json(&path).unwrap();
        let two = resume(&run, &s, Some(1)).unwrap();
        assert_eq!(two.rows, whole.rows[..2].to_vec());
        assert!(!run.file("exp-01-2").exists() && !run.file("exp-02").exists());
        assert_eq!(metrics_experiences(&run), vec![0, 1]);
        let three = resume(&run, &s, Some(5)).unwrap();
        assert_eq!(three, whole);
        assert_eq!(metrics_experiences(&run), vec![0, 1, 2]);
        // A run stopped before its first experience starts it from the seed.
        let (early, none) = start(&r, "none", &s, method, Some(0));
        assert!(none.rows.is_empty());
        assert_eq!(resume(&early, &s, None).unwrap(), whole);
        let _ = std::fs::remove_dir_all(&r);
    });
}

/// Every file under `dir` with its bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn folders_that_cannot_be_resumed_are_refused_naming_the_file() {
    remanence_train::stack::with_deep_stack(|| {
        let r = root("bad");
        let s = scenario("split:mnist-rows:2");
        let err = |run: &RunDir| resume(run, &s, None).unwrap_err().to_string();
        // Not a scenario run: an ordinary run folder.
        let plain = RunDir::create_new(&r, "plain").unwrap();
        plain.write_config(&config()).unwrap();
        let e = err(&plain);
        assert!(e.contains("not a continual-learning run folder"), "{e}");
        // A finished run: refused, and nothing in its folder changes.
        let ewc = Method::parse("ewc", &MethodOptions::default()).unwrap();
        let (done, _) = start(&r, "done", &s, ewc, None);
        let before = snapshot(done.path());
        let e = err(&done);
        assert!(
            e.contains("finished") && e.contains("nothing to resume"),
            "{e}"
        );
        assert!(snapshot(done.path()) == before);
        // A corrupt tensor file of the method's state.
        let (cut, _) = start(&r, "cut", &s, ewc, Some(1));
        let tensors = cut.file("exp-00/method-state.safetensors");
        let bytes = std::fs::read(&tensors).unwrap();
        std::fs::write(&tensors, &bytes[..bytes.len() / 2]).unwrap();
        let before = snapshot(cut.path());
        let e = err(&cut);
        assert!(e.contains("exp-00/method-state.safetensors"), "{e}");
        // Refused before anything in the folder changes.
        assert!(snapshot(cut.path()) == before);
        std::fs::write(&tensors, &bytes).unwrap();
        // A corrupt or missing record of it.
        let json = cut.file("exp-00/method-state.json");
        let text = std::fs::read_to_string(&json).unwrap();
        std::fs::write(&json, &text[..text.len() / 2]).unwrap();
        let e = err(&cut);
        assert!(
            e.contains("exp-00/method-state.json") && e.contains("not a method state"),
            "{e}"
        );
        std::fs::remove_file(&json).unwrap();
        let e = err(&cut);
        assert!(e.contains("exp-00/method-state.json"), "{e}");
        std::fs::write(&json, &text).unwrap();
        // A corrupt matrix.
        let matrix = cut.file("matrix.json");
        let m = std::fs::read_to_string(&matrix).unwrap();
        std::fs::write(&matrix, "{\"experiences\": 3, \"rows\": [[2.0, 0, 0]]}").unwrap();
        let e = err(&cut);
        assert!(e.contains("matrix.json"), "{e}");
        std::fs::write(&matrix, &m).unwrap();
        // Another scenario than the run's.
        let e = resume(&cut, &scenario("permuted:mnist-rows:3"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("continual.json") && e.contains("split:mnist-rows:2"),
            "{e}"
        );
        // A record without the method's settings (written before runs could be resumed).
        let info = cut.file("continual.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&info).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("method_settings");
        std::fs::write(&info, v.to_string()).unwrap();
        let e = err(&cut);
        assert!(
            e.contains("continual.json") && e.contains("cannot be resumed"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&r);
    });
}

#[test]
fn the_method_and_its_settings_read_back_from_continual_json() {
    for (_, method) in methods() {
        let text = serde_json::to_string(&method).unwrap();
        assert_eq!(
            serde_json::from_str::<Method>(&text).unwrap(),
            method,
            "{text}"
        );
        assert!(
            text.contains(&format!("\"name\":\"{}\"", method.name())),
            "{text}"
        );
    }
}
