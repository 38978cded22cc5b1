//! `remanence train --distributed mpi` under a real `mpirun` (Open MPI; the binary built with
//! `--features mpi`): two ranks give the single-process result and resume exactly, ranks that
//! disagree or outnumber a batch are refused on every rank, a killed rank ends the job within
//! seconds. Without the feature the flag is refused with how to get it. Run with
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
}
