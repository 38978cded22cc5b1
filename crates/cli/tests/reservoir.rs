//! The echo-state reservoir from the command line: `train --cell esn` fits its read-out by ridge
//! regression into an ordinary run folder (evaluated, resumed and probed like any other), and its
//! settings are checked with messages that name the flag.
use std::path::PathBuf;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remanence"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-esn-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn train_fits_a_reservoir_into_a_run_folder_that_eval_and_probe_read() {
    let root = tmp("train");
    let runs = root.to_str().unwrap();
    let o = run(&[
        "--threads",
        "1",
        "train",
        "--task",
        "reber",
        "--cell",
        "esn",
        "--hidden",
        "80",
        "--input-connectivity",
        "0.5",
        "--spectral-radius",
        "0.8",
        "--leak-rate",
        "0.7",
        "--ridge",
        "1e-4",
        "--early-stop",
        "false",
        "--runs-dir",
        runs,
        "--name",
        "esn",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let dir = root.join("esn");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"]["rnn"]["cell"], "esn");
    assert_eq!(cfg["model"]["rnn"]["reservoir"]["leak_rate"], 0.7);
    assert_eq!(cfg["train"]["ridge"]["lambda"], 1e-4);
    // One epoch by default: a second would refit the same head.
    assert_eq!(cfg["train"]["epochs"], 1);
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1);
    let line: serde_json::Value = serde_json::from_str(metrics.trim()).unwrap();
    let step = line["values"]["test_step_accuracy"].as_f64().unwrap();
    assert!(step > 0.9, "test step accuracy {step}");

    let e = run(&[
        "--threads",
        "1",
        "eval",
        "--run",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(e.status.success(), "{}", text(&e));
    assert!(text(&e).contains("test_step_accuracy"), "{}", text(&e));

    // A larger budget resumes from the checkpoint: the same fit again.
    let r = run(&[
        "--threads",
        "1",
        "train",
        "--resume",
        dir.to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["metric"], lines[1]["metric"]);

    let p = run(&[
        "--threads",
        "1",
        "probe",
        "esp",
        "--run",
        dir.to_str().unwrap(),
        "--out",
        root.join("esp").to_str().unwrap(),
    ]);
    assert!(p.status.success(), "{}", text(&p));
    // The probe reads the reservoir's recurrent matrix, scaled to ρ = 0.8.
    let report = std::fs::read_to_string(root.join("esp/esp.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let block = &report["weight_blocks"][0];
    assert_eq!(block["name"], "rnn.weight_hh_l0");
    let rho = block["spectral_radius"].as_f64().unwrap();
    assert!((rho - 0.8).abs() < 1e-6, "ρ = {rho}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_reservoir_and_trainer_settings_are_refused_by_name() {
    let root = tmp("bad");
    let runs = root.to_str().unwrap();
    let base = [
        "train",
        "--task",
        "reber",
        "--hidden",
        "20",
        "--runs-dir",
        runs,
    ];
    let cases: [(&[&str], &str); 9] = [
        (
            &["--cell", "esn", "--leak-rate", "0"],
            "--leak-rate must be in (0, 1]",
        ),
        (
            &["--cell", "esn", "--spectral-radius", "nan"],
            "--spectral-radius",
        ),
        (
            &["--cell", "esn", "--connectivity", "1.5"],
            "--connectivity must be in (0, 1]",
        ),
        (
            &["--cell", "esn", "--ridge", "-1"],
            "--ridge must be a finite number ≥ 0",
        ),
        (
            &["--cell", "esn", "--lr", "0.1"],
            "--lr is a setting of gradient training",
        ),
        (
            &["--cell", "lstm", "--ridge", "0.1"],
            "--ridge applies to --trainer ridge only",
        ),
        (
            &["--cell", "lstm", "--spectral-radius", "0.9"],
            "--spectral-radius applies to esn only",
        ),
        (&["--cell", "esn", "--washout", "-2"], "--washout"),
        (&["--cell", "esn", "--trainer", "newton"], "newton"),
    ];
    for (extra, words) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let o = run(&args);
        assert_eq!(
            o.status.code(),
            Some(if extra.contains(&"newton") || extra.contains(&"-2") {
                2
            } else {
                1
            }),
            "{extra:?}: {}",
            text(&o)
        );
        assert!(text(&o).contains(words), "{extra:?}: {}", text(&o));
    }
    // Nothing was written.
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    let c = run(&[
        "continual",
        "--scenario",
        "lists:2:2:4:8",
        "--method",
        "naive",
        "--cell",
        "esn",
        "--hidden",
        "10",
        "--runs-dir",
        runs,
    ]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c));
    assert!(text(&c).contains("learn by gradient"), "{}", text(&c));
    let _ = std::fs::remove_dir_all(&root);
}
