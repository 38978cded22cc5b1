//! `remanence train --distributed mpi` under a real `mpirun` (Open MPI; the binary built with
//! `--features mpi`): two ranks give the single-process result and resume exactly, ranks that
//! disagree or outnumber a batch are refused on every rank, a killed rank ends the job within
//! seconds; `remanence continual --distributed mpi` gives the single-process accuracy matrix and
//! weights (replay, EWC, A-GEM, SI), resumes exactly, and refuses dual-net and worlds larger than a
//! batch. Without the feature the flag is refused with how to get it. Run with
//! `cargo test --release -p remanence-cli --features mpi --test distributed -- --test-threads 1`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_remanence");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-cli-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small run: uneven shards (15 = 8 + 7) and a short last batch (50 = 3·15 + 5).
fn train_args(runs: &Path, name: &str) -> Vec<String> {
    [
        "--threads",
        "1",
        "train",
        "--task",
        "reber",
        "--cell",
        "lstm",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "15",
        "--train-size",
        "50",
        "--test-size",
        "32",
        "--dtype",
        "f64",
        "--early-stop",
        "false",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Replaces the value that follows `flag`.
#[cfg(feature = "mpi")]
fn set(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .expect("the flag is there");
    args[i + 1] = value.to_string();
}

#[cfg(not(feature = "mpi"))]
#[test]
fn without_the_feature_the_flag_says_how_to_get_it() {
    let runs = tmp("no-mpi");
    let mut args = train_args(&runs, "x");
    args.extend(["--distributed".into(), "mpi".into()]);
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--features mpi"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&runs);
}

#[cfg(not(feature = "nccl"))]
#[test]
fn without_the_nccl_feature_the_flag_says_how_to_get_it() {
    let runs = tmp("no-nccl");
    let mut args = train_args(&runs, "x");
    args.extend(["--distributed", "nccl", "--device", "cuda"].map(String::from));
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--features nccl"), "{}", text(&o));
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&runs);
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;
    use std::collections::HashMap;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use candle_core::Device;

    fn mpirun(np: usize) -> Command {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(np.to_string())
            .arg(BIN);
        c
    }

    fn weights(run: &Path) -> HashMap<String, Vec<f64>> {
        let (t, _) =
            remanence_cells::io::read(&run.join("model.safetensors"), &Device::Cpu).unwrap();
        t.into_iter()
            .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f64>().unwrap()))
            .collect()
    }

    fn metrics(run: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn same_run(a: &Path, b: &Path) {
        let (wa, wb) = (weights(a), weights(b));
        assert_eq!(wa.len(), wb.len());
        for (k, va) in &wa {
            let d = va
                .iter()
                .zip(&wb[k])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(d <= 1e-10, "{k}: weights differ by {d}");
        }
        let (ma, mb) = (metrics(a), metrics(b));
        assert_eq!(ma.len(), mb.len());
        for (x, y) in ma.iter().zip(&mb) {
            let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
            assert!((lx - ly).abs() <= 1e-10, "loss {lx} vs {ly}");
            assert_eq!(x["sequences_seen"], y["sequences_seen"]);
            assert_eq!(x["metric"], y["metric"]);
        }
    }

    #[test]
    fn two_ranks_train_and_resume_like_one_process() {
        let runs = tmp("two");
        let o = Command::new(BIN)
            .args(train_args(&runs, "one"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let mut args = train_args(&runs, "two");
        args.extend(["--distributed".into(), "mpi".into()]);
        let o = mpirun(2).args(&args).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("data-parallel over 2 MPI ranks"),
            "{}",
            text(&o)
        );
        same_run(&runs.join("one"), &runs.join("two"));
        // Only rank 0 wrote a run folder.
        let mut names: Vec<_> = std::fs::read_dir(&runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["one", "two"]);
        // Two more epochs, resumed: one process and two ranks again agree.
        let o = Command::new(BIN)
            .args(["--threads", "1", "train", "--resume"])
            .arg(runs.join("one"))
            .args(["--epochs", "4"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let o = mpirun(2)
            .args(["--threads", "1", "train", "--resume"])
            .arg(runs.join("two"))
            .args(["--epochs", "4", "--distributed", "mpi"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(metrics(&runs.join("two")).len(), 4);
        same_run(&runs.join("one"), &runs.join("two"));
        let _ = std::fs::remove_dir_all(&runs);
    }

    #[test]
    fn bad_jobs_are_refused_on_every_rank() {
        let runs = tmp("bad");
        // Ranks launched with different settings (MPMD: one command per rank).
        let (mut a, mut b) = (train_args(&runs, "mix"), train_args(&runs, "mix"));
        a.extend(["--distributed".into(), "mpi".into()]);
        b.extend([
            "--distributed".into(),
            "mpi".into(),
            "--seed".into(),
            "9".into(),
        ]);
        let o = Command::new("mpirun")
            .args(["--allow-run-as-root", "--oversubscribe", "-np", "1", BIN])
            .args(&a)
            .args([":", "-np", "1", BIN])
            .args(&b)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("hash"), "{}", text(&o));
        // More ranks than sequences in a batch.
        let mut c = train_args(&runs, "wide");
        set(&mut c, "--batch-size", "1");
        c.extend(["--distributed", "mpi"].map(String::from));
        let o = mpirun(2).args(&c).output().unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("batch"), "{}", text(&o));
        // A trainer without gradients.
        let mut d = train_args(&runs, "ridge");
        d.extend(["--distributed", "mpi", "--trainer", "ridge"].map(String::from));
        let o = mpirun(2).args(&d).output().unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("no") && text(&o).contains("gradient"),
            "{}",
            text(&o)
        );
        let _ = std::fs::remove_dir_all(&runs);
    }

    /// The pid of rank `rank` of a job whose command line holds `marker`.
    fn rank_pid(rank: usize, marker: &str) -> Option<u32> {
        let want = format!("OMPI_COMM_WORLD_RANK={rank}");
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if !String::from_utf8_lossy(&cmdline).contains(marker) {
                continue;
            }
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            if env.split(|&b| b == 0).any(|kv| kv == want.as_bytes()) {
                return Some(pid);
            }
        }
        None
    }

    #[test]
    fn a_killed_rank_ends_the_job_within_seconds() {
        let runs = tmp("kill");
        let mut args = train_args(&runs, "long");
        set(&mut args, "--epochs", "100000");
        args.extend(["--distributed", "mpi"].map(String::from));
        let log = runs.join("mpirun.log");
        let f = std::fs::File::create(&log).unwrap();
        let mut job = mpirun(2)
            .args(&args)
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap();
        let first = runs.join("long/metrics.jsonl");
        let t0 = Instant::now();
        while !std::fs::read_to_string(&first).is_ok_and(|s| !s.is_empty()) {
            assert!(
                job.try_wait().unwrap().is_none(),
                "the job ended before training"
            );
            assert!(t0.elapsed() < Duration::from_secs(120), "no epoch in 120 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let marker = runs.to_string_lossy().to_string();
        let pid = rank_pid(1, &marker).expect("rank 1's process");
        assert!(Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let t1 = Instant::now();
        let status = loop {
            if let Some(st) = job.try_wait().unwrap() {
                break st;
            }
            if t1.elapsed() > Duration::from_secs(20) {
                job.kill().unwrap();
                panic!("mpirun still running 20 s after rank 1 was killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(&log).unwrap();
        assert!(!status.success(), "{out}");
        assert!(out.contains("rank 1"), "{out}");
        // The run folder keeps its last complete epoch.
        assert!(!metrics(&runs.join("long")).is_empty());
        let _ = std::fs::remove_dir_all(&runs);
    }

    // `remanence continual --distributed mpi`: the scenario's matrix and weights are those of
    // one process, resume included; methods that would differ, and worlds too large, are refused.

    /// A small sequence-list run (2 lists of 2 sequences, f64) of `method` into `runs/name`.
    fn continual_args(runs: &Path, name: &str, method: &str) -> Vec<String> {
        [
            "--threads",
            "1",
            "continual",
            "--scenario",
            "lists:2:2:4:8",
            "--method",
            method,
            "--cell",
            "lstm",
            "--hidden",
            "8",
            "--epochs",
            "3",
            "--dtype",
            "f64",
            "--buffer-per-class",
            "1",
            "--replay-batch",
            "2",
            "--agem-batch",
            "4",
            "--ewc-lambda",
            "50",
            "--transfer-size",
            "8",
            "--transfer-epochs",
            "1",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--name",
            name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn json(p: &Path) -> serde_json::Value {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Every number of `a` and `b` (same shape) within 1e-10; `what` names them in failures.
    fn close(a: &serde_json::Value, b: &serde_json::Value, what: &str) {
        use serde_json::Value;
        match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{what}: {a} vs {b}");
                for (x, y) in x.iter().zip(y) {
                    close(x, y, what);
                }
            }
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                assert!((x - y).abs() <= 1e-10, "{what}: {x} vs {y}");
            }
            _ => assert_eq!(a, b, "{what}"),
        }
    }

    /// Row `k` of the accuracy matrix as `exp-NN/scores.json` records it (the bits of each f64).
    fn scores(run: &Path, k: usize) -> Vec<f64> {
        let s = json(&run.join(format!("exp-{k:02}/scores.json")));
        assert_eq!(s["experience"], k);
        s["row"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| f64::from_bits(u64::from_str_radix(h.as_str().unwrap(), 16).unwrap()))
            .collect()
    }

    /// Two scenario runs with the same matrix (`matrix.json`, each experience's exact scores and
    /// the per-experience records' accuracies), the same final weights, and the same training in
    /// each experience (its weights and epoch losses), to 1e-10.
    fn same_scenario(a: &Path, b: &Path) {
        let (ma, mb) = (json(&a.join("matrix.json")), json(&b.join("matrix.json")));
        let rows = ma["rows"].as_array().unwrap().len();
        assert_eq!(rows, 2, "{ma}");
        close(&ma["initial"], &mb["initial"], "initial accuracies");
        close(&ma["rows"], &mb["rows"], "accuracy matrix");
        for k in 0..rows {
            let (sa, sb) = (scores(a, k), scores(b, k));
            assert_eq!(sa.len(), sb.len());
            for (x, y) in sa.iter().zip(&sb) {
                assert!(
                    (x - y).abs() <= 1e-10,
                    "scores of experience {k}: {x} vs {y}"
                );
            }
            same_run(
                &a.join(format!("exp-{k:02}")),
                &b.join(format!("exp-{k:02}")),
            );
        }
        let (ra, rb) = (metrics(a), metrics(b));
        assert_eq!(ra.len(), rows);
        assert_eq!(rb.len(), rows);
        for (x, y) in ra.iter().zip(&rb) {
            assert_eq!(x["experience"], y["experience"]);
            close(
                &x["accuracies"],
                &y["accuracies"],
                "accuracies in metrics.jsonl",
            );
        }
        // The model after the last experience.
        let (wa, wb) = (weights(a), weights(b));
        assert_eq!(wa.len(), wb.len());
        assert!(!wa.is_empty());
        for (k, va) in &wa {
            let d = va
                .iter()
                .zip(&wb[k])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(d <= 1e-10, "{k}: final weights differ by {d}");
        }
    }

    fn folders(runs: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn continual_on_two_ranks_gives_the_single_process_matrix_and_weights() {
        for method in ["replay", "ewc", "agem", "si"] {
            let runs = tmp(&format!("cl-{method}"));
            let o = Command::new(BIN)
                .args(continual_args(&runs, "one", method))
                .output()
                .unwrap();
            assert!(o.status.success(), "{method}: {}", text(&o));
            let mut args = continual_args(&runs, "two", method);
            args.extend(["--distributed", "mpi"].map(String::from));
            let o = mpirun(2).args(&args).output().unwrap();
            assert!(o.status.success(), "{method}: {}", text(&o));
            let out = text(&o);
            assert!(out.contains("data-parallel over 2 MPI ranks"), "{out}");
            // Rank 0 alone prints the experiences' lines.
            assert_eq!(out.matches("experience 2: accuracy").count(), 1, "{out}");
            same_scenario(&runs.join("one"), &runs.join("two"));
            let info = json(&runs.join("two/continual.json"));
            assert_eq!(info["method"], method);
            // Only rank 0 wrote a run folder.
            assert_eq!(folders(&runs), ["one", "two"], "{method}");
            let _ = std::fs::remove_dir_all(&runs);
        }
    }

    #[test]
    fn continual_stopped_and_resumed_on_two_ranks_gives_the_uninterrupted_run() {
        for method in ["replay", "ewc"] {
            let runs = tmp(&format!("cl-resume-{method}"));
            let o = Command::new(BIN)
                .args(continual_args(&runs, "whole", method))
                .output()
                .unwrap();
            assert!(o.status.success(), "{method}: {}", text(&o));
            let mut args = continual_args(&runs, "part", method);
            args.extend(["--distributed", "mpi", "--max-experiences", "1"].map(String::from));
            let o = mpirun(2).args(&args).output().unwrap();
            assert!(o.status.success(), "{method}: {}", text(&o));
            assert!(
                text(&o).contains("stopped after 1 of 2 experiences"),
                "{}",
                text(&o)
            );
            let part = runs.join("part");
            assert_eq!(
                json(&part.join("matrix.json"))["rows"]
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
            // The other rank's scratch folder is gone: the state of experience 1 (the memory,
            // EWC's Fisher) reaches it from rank 0.
            let o = mpirun(2)
                .args(["--threads", "1", "continual", "--resume"])
                .arg(&part)
                .args(["--distributed", "mpi"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{method}: {}", text(&o));
            assert!(
                text(&o).contains("resuming at experience 2 of 2"),
                "{}",
                text(&o)
            );
            same_scenario(&runs.join("whole"), &part);
            assert_eq!(folders(&runs), ["part", "whole"], "{method}");
            let _ = std::fs::remove_dir_all(&runs);
        }
    }

    #[test]
    fn continual_methods_and_worlds_that_would_differ_are_refused() {
        let runs = tmp("cl-refused");
        let mut args = continual_args(&runs, "dual", "dual-net");
        args.extend(["--distributed", "mpi"].map(String::from));
        let o = mpirun(2).args(&args).output().unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("--method dual-net cannot be trained with --distributed")
                && text(&o).contains("one process"),
            "{}",
            text(&o)
        );
        // Each experience has 2 training sequences: 3 ranks cannot share a batch.
        let mut args = continual_args(&runs, "wide", "replay");
        args.extend(["--distributed", "mpi"].map(String::from));
        let o = mpirun(3).args(&args).output().unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("experience 1") && text(&o).contains("3 processes"),
            "{}",
            text(&o)
        );
        // Nothing was written.
        assert!(folders(&runs).is_empty(), "{:?}", folders(&runs));
        // A dual-net run stopped in one process cannot be resumed data-parallel either.
        let mut args = continual_args(&runs, "dual", "dual-net");
        args.extend(["--max-experiences", "1"].map(String::from));
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let before = std::fs::read_to_string(runs.join("dual/matrix.json")).unwrap();
        let o = mpirun(2)
            .args(["--threads", "1", "continual", "--resume"])
            .arg(runs.join("dual"))
            .args(["--distributed", "mpi"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            text(&o).contains("dual-net cannot be trained with --distributed"),
            "{}",
            text(&o)
        );
        assert_eq!(
            std::fs::read_to_string(runs.join("dual/matrix.json")).unwrap(),
            before
        );
        let _ = std::fs::remove_dir_all(&runs);
    }
}
