//! `remanence reverse-engineer --mpi` under a real `mpirun` (Open MPI; the binary built with
//! `--features mpi`): the per-unit solves shared among 2 or 3 ranks give the single process's
//! estimate (weights and criteria to 1e-12), rank 0 alone prints and writes the output folder,
//! and a rank that fails ends the job. Without the feature the flag is refused with how to get
//! it. Run with
//! `cargo test --release -p remanence-cli --features mpi --test reverse_mpi -- --test-threads 1`.
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_remanence");

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "remanence-reverse-mpi-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `cmd` in `cwd`, killed (and the test failed) after `secs` seconds: a rank left waiting
/// for a peer must not hang the test suite.
fn run_within(mut cmd: Command, cwd: &Path, secs: u64) -> Output {
    let log_out = cwd.join(".stdout");
    let log_err = cwd.join(".stderr");
    let mut child = cmd
        .current_dir(cwd)
        .stdout(Stdio::from(std::fs::File::create(&log_out).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log_err).unwrap()))
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "still running after {secs} s:\n{}{}",
                std::fs::read_to_string(&log_out).unwrap_or_default(),
                std::fs::read_to_string(&log_err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = Output {
        status,
        stdout: std::fs::read(&log_out).unwrap(),
        stderr: std::fs::read(&log_err).unwrap(),
    };
    let _ = std::fs::remove_file(log_out);
    let _ = std::fs::remove_file(log_err);
    o
}

/// A small experiment: 6 LNL units (8 weights each, DMAX 8: second-order steps), 15 iterations.
fn reverse_args(extra: &[&str]) -> Vec<String> {
    [
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "6",
        "--dmax",
        "8",
        "--max-iterations",
        "15",
        "--seed",
        "4",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

#[cfg(not(feature = "mpi"))]
#[test]
fn without_the_feature_the_flag_says_how_to_get_it() {
    let dir = tmp("no-mpi");
    let out = dir.join("out");
    let args = reverse_args(&["--mpi", "--out", out.to_str().unwrap()]);
    let mut cmd = Command::new(BIN);
    cmd.args(&args);
    let o = run_within(cmd, &dir, 60);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("--mpi: this remanence was built without MPI support")
            && t.contains("--features mpi"),
        "{t}"
    );
    assert!(!out.exists(), "nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "mpi")]
mod with_mpi {
    use super::*;
    use serde_json::Value;

    fn mpirun(np: usize) -> Command {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(np.to_string())
            .arg(BIN);
        c
    }

    fn report(dir: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("reverse.json")).unwrap()).unwrap()
    }

    fn numbers(v: &Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    /// The fields of the two reports that the estimate decides agree to 1e-12.
    fn same_estimate(single: &Value, shared: &Value, what: &str) {
        for key in ["initial", "last", "ratio", "held_out_ratio"] {
            let (a, b) = (shared[key].as_f64().unwrap(), single[key].as_f64().unwrap());
            assert!(close(a, b), "{what}: {key} {a} vs {b}");
        }
        let (a, b) = (
            numbers(&shared["estimated_weights"]),
            numbers(&single["estimated_weights"]),
        );
        assert_eq!(a.len(), b.len());
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(diff <= 1e-12, "{what}: max weight difference {diff}");
        assert_eq!(
            shared["fresh_weights"], single["fresh_weights"],
            "{what}: same start"
        );
        // The per-iteration criteria and winners.
        let (ra, rb) = (
            shared["trace"]["records"].as_array().unwrap(),
            single["trace"]["records"].as_array().unwrap(),
        );
        assert_eq!(ra.len(), rb.len(), "{what}: iterations");
        for (x, y) in ra.iter().zip(rb) {
            assert!(close(
                x["criterion"].as_f64().unwrap(),
                y["criterion"].as_f64().unwrap()
            ));
            assert_eq!(x["candidate"], y["candidate"], "{what}");
        }
    }

    #[test]
    fn two_ranks_give_the_single_process_estimate_and_rank_0_alone_writes() {
        let dir = tmp("two");
        let single = dir.join("single");
        let mut cmd = Command::new(BIN);
        cmd.args(reverse_args(&["--out", single.to_str().unwrap()]));
        let o = run_within(cmd, &dir, 300);
        assert!(o.status.success(), "{}", text(&o));
        // Under mpirun without --out: the default folder runs/reverse/lnl-n6-s4 in the working
        // folder, which a second writer would have turned into lnl-n6-s4-2.
        let mut cmd = mpirun(2);
        cmd.args(reverse_args(&["--mpi"]));
        let o = run_within(cmd, &dir, 300);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        let made: Vec<String> = std::fs::read_dir(dir.join("runs/reverse"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(made, ["lnl-n6-s4"], "{t}");
        // One rank prints: the header and the summary once.
        assert_eq!(
            t.matches("reverse engineering a LNL network").count(),
            1,
            "{t}"
        );
        assert_eq!(t.matches("L/L0 = ").count(), 1, "{t}");
        assert!(t.contains("shared among 2 MPI ranks"), "{t}");
        assert!(
            t.contains("time per iteration (") && t.contains(" iterations, 2 ranks): "),
            "{t}"
        );
        let (a, b) = (report(&single), report(&dir.join("runs/reverse/lnl-n6-s4")));
        assert_eq!(b["settings"]["ranks"], 2);
        assert_eq!(b["trace"]["ranks"], 2);
        assert_eq!(a["trace"]["ranks"], 1);
        // Second-order steps won (the shared solves were used) and the estimate moved.
        assert!(a["trace"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["candidate"].get("SecondOrder").is_some()));
        assert!(a["ratio"].as_f64().unwrap() < 1e-2);
        same_estimate(&a, &b, "2 ranks");
        // The time split is recorded per iteration, with the gather across ranks.
        let timings = b["trace"]["timings"].as_array().unwrap();
        assert_eq!(
            timings.len(),
            b["trace"]["records"].as_array().unwrap().len()
        );
        assert!(timings
            .iter()
            .all(|t| t["gather"].as_f64().unwrap() > 0.0 && t["solves"].as_f64().unwrap() > 0.0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn three_ranks_share_the_sparse_estimation_too() {
        let dir = tmp("three-sparse");
        let (single, shared) = (dir.join("single"), dir.join("shared"));
        let extra = ["--sparse", "0.01"];
        let mut args = reverse_args(&extra);
        args.extend(["--out".into(), single.to_str().unwrap().into()]);
        let mut cmd = Command::new(BIN);
        cmd.args(&args);
        let o = run_within(cmd, &dir, 300);
        assert!(o.status.success(), "{}", text(&o));
        let mut args = reverse_args(&extra);
        args.extend([
            "--mpi".into(),
            "--out".into(),
            shared.to_str().unwrap().into(),
        ]);
        let mut cmd = mpirun(3);
        cmd.args(&args);
        let o = run_within(cmd, &dir, 300);
        assert!(o.status.success(), "{}", text(&o));
        let (a, b) = (report(&single), report(&shared));
        same_estimate(&a, &b, "3 ranks, --sparse");
        assert_eq!(b["sparse"]["learned"], a["sparse"]["learned"]);
        assert_eq!(b["sparse"]["refit"]["ranks"], 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rank_that_fails_ends_the_job() {
        // Rank 0 refuses a non-empty --out; rank 1, which writes nothing, has gone on to the
        // estimator and waits there for rank 0: the abort must end it.
        let dir = tmp("fail");
        let out = dir.join("taken");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join("keep.txt"), "mine").unwrap();
        let mut cmd = mpirun(2);
        cmd.args(reverse_args(&["--mpi", "--out", out.to_str().unwrap()]));
        let o = run_within(cmd, &dir, 120);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        assert!(
            t.contains("error on rank 0 of 2") && t.contains("not empty"),
            "{t}"
        );
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert_eq!(left.len(), 1, "{t}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
