//! `remanence reverse-engineer` options of the large-network protocol (docs/results.md, "Large
//! networks"): `--variants` chooses the second-order candidates (and is written to
//! `reverse.json`), the full list is the default, a bad name is refused naming the flag, and
//! `--threads 2` gives the estimate of one thread bit for bit (the line searches and the solves
//! run in parallel without changing the result).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remanence"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-cli-large-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Runs the every-unit-observed protocol at N = 6 (T = 4N, DMAX = N + 2) on `threads` threads
/// with `extra` and returns its `reverse.json`.
fn protocol(root: &Path, name: &str, threads: &str, extra: &[&str]) -> serde_json::Value {
    let out = root.join(name);
    let out_s = out.to_str().unwrap();
    let mut args = vec![
        "--threads",
        threads,
        "reverse-engineer",
        "--units-count",
        "6",
        "--observe",
        "6",
        "--samples",
        "24",
        "--dmax",
        "8",
        "--max-iterations",
        "6",
        "--seed",
        "3",
        "--out",
        out_s,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(
        o.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    json(&out.join("reverse.json"))
}

fn second_order_variants(report: &serde_json::Value) -> Vec<String> {
    report["trace"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["candidate"].get("SecondOrder"))
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn variants_choose_the_second_order_candidates_and_threads_do_not_change_the_estimate() {
    let root = tmp("variants");
    let all = protocol(&root, "all", "1", &[]);
    assert_eq!(
        all["settings"]["variants"],
        serde_json::json!(["Plain", "Weighted", "NoAdjoint"])
    );
    let listed = protocol(
        &root,
        "listed",
        "1",
        &["--variants", "plain,weighted,no-adjoint"],
    );
    assert_eq!(listed["estimated_weights"], all["estimated_weights"]);
    assert_eq!(listed["trace"]["records"], all["trace"]["records"]);
    let plain = protocol(&root, "plain", "1", &["--variants", "plain"]);
    assert_eq!(plain["settings"]["variants"], serde_json::json!(["Plain"]));
    assert!(
        second_order_variants(&plain).iter().all(|v| v == "Plain"),
        "{:?}",
        second_order_variants(&plain)
    );
    assert!(plain["ratio"].as_f64().unwrap() < 1.0);
    // Fewer candidates: fewer forward passes in the first iteration's line searches (the same
    // start, so the same plain and momentum searches, without the weighted one).
    let first = |r: &serde_json::Value| r["trace"]["records"][0]["evaluations"].as_u64().unwrap();
    assert!(
        first(&plain) < first(&all),
        "{} vs {}",
        first(&plain),
        first(&all)
    );
    // Two threads: the same estimate, bit for bit (serde_json writes floats round-trip exact).
    let two = protocol(&root, "two", "2", &[]);
    assert_eq!(two["settings"]["threads"], 2);
    assert_eq!(two["estimated_weights"], all["estimated_weights"]);
    assert_eq!(two["trace"]["records"], all["trace"]["records"]);
    // A bad name is refused, naming the flag and the choices.
    let o = run(&[
        "reverse-engineer",
        "--variants",
        "plain,newton",
        "--out",
        root.join("bad").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--variants") && err.contains("newton") && err.contains("no-adjoint"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
