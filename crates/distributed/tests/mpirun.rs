//! Data-parallel training under a real `mpirun` (Open MPI): two ranks train like one process,
//! a configuration mismatch stops every rank, a rank killed mid-run fails the job within
//! seconds. Run with
//! `cargo test --release -p remanence-distributed --features mpi -- --test-threads 1`.
#![cfg(feature = "mpi")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};

const BIN: &str = env!("CARGO_BIN_EXE_ddp_check");

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-mpirun-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn mpirun(np: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
        .arg(np.to_string())
        .arg(BIN);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn weights(run: &Path) -> HashMap<String, Vec<f64>> {
    let (t, _) = remanence_cells::io::read(&run.join("model.safetensors"), &Device::Cpu).unwrap();
    t.into_iter()
        .map(|(k, v)| {
            assert_eq!(v.dtype(), DType::F64, "{k}");
            (k, v.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        })
        .collect()
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no `{key}` in {v}"))
}

/// The two run folders hold the same weights (to 1e-10) and metrics (loss and gradient norm
/// to 1e-10, the same sequence counts) after `epochs` epochs.
fn same_training(a: &Path, b: &Path, epochs: usize) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(
        wa.keys().collect::<std::collections::BTreeSet<_>>(),
        wb.keys().collect()
    );
    let mut max_diff = 0.0f64;
    let mut moved = 0.0f64;
    for (k, va) in &wa {
        let vb = &wb[k];
        assert_eq!(va.len(), vb.len(), "{k}");
        for (x, y) in va.iter().zip(vb) {
            max_diff = max_diff.max((x - y).abs());
            moved = moved.max(x.abs());
        }
    }
    println!("max |w_single - w_2ranks| = {max_diff:e}");
    assert!(max_diff <= 1e-10, "weights differ by {max_diff}");
    assert!(moved > 0.0);

    let (ma, mb) = (metrics(a), metrics(b));
    assert_eq!(ma.len(), epochs);
    assert_eq!(mb.len(), epochs);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x["epoch"], y["epoch"]);
        assert_eq!(x["sequences_seen"], y["sequences_seen"], "{x} vs {y}");
        for key in ["loss", "grad_norm"] {
            let (p, q) = (num(x, key), num(y, key));
            assert!(
                (p - q).abs() <= 1e-10,
                "epoch {}: {key} {p} vs {q}",
                x["epoch"]
            );
        }
        assert!(
            (num(x, "metric") - num(y, "metric")).abs() <= 1e-9,
            "{x} vs {y}"
        );
    }
    assert_eq!(num(&mb[epochs - 1], "sequences_seen"), 50.0 * epochs as f64);
    // The model learned something (the comparison is not between two untrained models).
    assert!(num(&mb[epochs - 1], "loss") < num(&mb[0], "loss"), "{mb:?}");
}

#[test]
fn two_ranks_train_like_one_process() {
    let root = tmp("equal");
    // 50 sequences in batches of 15: shards of 8 and 7, and a last batch of 5 (3 and 2).
    let common = ["--epochs", "3", "--train-size", "50", "--batch-size", "15"];
    let single = Command::new(BIN)
        .args(common)
        .arg("--single")
        .arg("--out")
        .arg(root.join("single"))
        .output()
        .unwrap();
    assert!(single.status.success(), "{}", text(&single));
    let two = mpirun(2)
        .args(common)
        .arg("--out")
        .arg(root.join("mpi"))
        .output()
        .unwrap();
    let out = text(&two);
    assert!(two.status.success(), "{out}");
    assert!(
        out.contains("rank 0 of 2") && out.contains("rank 1 of 2"),
        "{out}"
    );
    println!("{}{out}", text(&single));

    // Only rank 0 wrote a run folder; rank 1's scratch folder is gone.
    let (a, b) = (root.join("single/run"), root.join("mpi/run"));
    assert!(!root.join("mpi/run-2").exists());
    let scratch = out
        .lines()
        .find_map(|l| l.strip_prefix("rank 1: scratch folder "))
        .unwrap_or_else(|| panic!("rank 1 names no scratch folder:\n{out}"));
    assert!(!Path::new(scratch.trim()).exists(), "{scratch} was left");

    // Each rank trained on its own shards: per epoch 8+8+8+3 and 7+7+7+2 sequences.
    for (rank, n) in [(0, 81), (1, 69)] {
        let line = format!("rank {rank} of 2: trained in");
        let l = out.lines().find(|l| l.starts_with(&line)).unwrap();
        assert!(l.contains(&format!(" on {n} sequences;")), "{l}");
    }
    same_training(&a, &b, 3);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Two epochs on two ranks, then `--resume` to three: the same as three epochs in one process
/// (rank 0's checkpoint, optimizer state included, reaches rank 1).
#[test]
fn a_resumed_two_rank_run_continues_exactly() {
    let root = tmp("resume");
    let single = Command::new(BIN)
        .args(["--single", "--epochs", "3", "--out"])
        .arg(root.join("single"))
        .output()
        .unwrap();
    assert!(single.status.success(), "{}", text(&single));
    for extra in [&["--epochs", "2"][..], &["--epochs", "3", "--resume"]] {
        let o = mpirun(2)
            .args(extra)
            .arg("--out")
            .arg(root.join("mpi"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        if extra.len() == 2 {
            assert_eq!(metrics(&root.join("mpi/run")).len(), 2);
        }
    }
    same_training(&root.join("single/run"), &root.join("mpi/run"), 3);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_configuration_mismatch_stops_every_rank() {
    let root = tmp("skew");
    let started = Instant::now();
    let o = mpirun(2)
        .args(["--skew-config", "--out"])
        .arg(&root)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("run configuration differs") && out.contains("rank 0 has hash"),
        "{out}"
    );
    assert!(out.contains("rank 1 has hash"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // Nothing was trained.
    assert!(!root.join("run/metrics.jsonl").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn more_ranks_than_sequences_in_a_batch_is_a_clear_error() {
    let root = tmp("world");
    let o = mpirun(2)
        .args(["--train-size", "9", "--batch-size", "4", "--out"])
        .arg(&root)
        .output()
        .unwrap();
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("2 processes") && out.contains("last batch of each epoch has 1 sequence ("),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// The pid of the process running the binary as MPI rank `rank` with `marker` in its command
/// line.
fn rank_pid(rank: usize, marker: &str) -> Option<u32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains(marker) || !cmdline.contains("ddp_check") {
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
fn a_rank_killed_mid_run_fails_the_job_within_seconds() {
    let root = tmp("kill");
    std::fs::create_dir_all(&root).unwrap();
    let log = root.join("mpirun.log");
    let f = std::fs::File::create(&log).unwrap();
    let out_root = root.join("out");
    let mut job = mpirun(2)
        .args(["--epochs", "100000", "--out"])
        .arg(&out_root)
        .stdout(Stdio::from(f.try_clone().unwrap()))
        .stderr(Stdio::from(f))
        .spawn()
        .unwrap();
    // Training: rank 0 has written its first epoch's metrics.
    let metrics = out_root.join("run/metrics.jsonl");
    let t0 = Instant::now();
    while !std::fs::read_to_string(&metrics).is_ok_and(|s| s.lines().count() >= 1) {
        if let Some(st) = job.try_wait().unwrap() {
            panic!(
                "the job ended ({st}) before training:\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no epoch in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let marker = out_root.to_string_lossy().to_string();
    let pid = rank_pid(1, &marker).expect("rank 1's process");
    assert!(rank_pid(0, &marker).is_some(), "rank 0's process");
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t1 = Instant::now();
    let status = loop {
        if let Some(st) = job.try_wait().unwrap() {
            break Some(st);
        }
        if t1.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = t1.elapsed();
    let Some(status) = status else {
        job.kill().unwrap();
        job.wait().unwrap();
        panic!("mpirun still running 20 s after rank 1 was killed");
    };
    let out = std::fs::read_to_string(&log).unwrap();
    println!("mpirun exited ({status}) {elapsed:?} after the kill:\n{out}");
    assert!(!status.success(), "{out}");
    // Open MPI names the dead rank and how it died.
    assert!(
        out.contains("process rank 1") && out.contains("signal 9"),
        "{out}"
    );
    // The survivor is gone too.
    std::thread::sleep(Duration::from_millis(200));
    assert!(rank_pid(0, &marker).is_none(), "rank 0 outlived the job");
    let _ =
        std::fs::remove_dir_all(std::env::temp_dir().join(format!("remanence-ddp-scratch-{pid}")));
    std::fs::remove_dir_all(&root).unwrap();
}
