//! Backward tuning from the command line: `remanence reverse-engineer` (a random network's weights
//! estimated from one unit's output; the run folder it writes; the inputs it refuses) and
//! `remanence train --trainer backward-tuning` (the Elman SRN on the Reber grammar: the loss goes
//! down, a resumed run continues with the same learner; other cells are refused); the reinject
//! option, the statistical criterion and the learned integrate-and-fire sharpness, and the
//! option combinations refused.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remanence"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail with one of `codes`; returns its stderr.
fn fails(args: &[&str], codes: &[i32]) -> String {
    let o = run(args);
    let code = o.status.code();
    assert!(
        code.is_some_and(|c| codes.contains(&c)),
        "{args:?} should exit with one of {codes:?}, got {code:?}"
    );
    String::from_utf8(o.stderr).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-cli-bt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn is_png(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.len() > 100 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn reverse_engineering_four_units_reaches_a_thousandth_of_the_initial_criterion() {
    let root = tmp("n4");
    let out = root.join("run");
    let stdout = ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "4",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    // One line per iteration, then the summary.
    assert!(stdout.contains("iteration   1  L/L0"), "{stdout}");
    let r = json(&out.join("reverse.json"));
    assert_eq!(r["settings"]["n"], 4);
    assert_eq!(r["steps"], 2 * 4 * 5, "T = 2N(N+1)");
    assert_eq!(r["weights"], 4 * (4 + 2));
    let ratio = r["ratio"].as_f64().unwrap();
    assert!(ratio < 1e-3, "L/L0 = {ratio}");
    let records = r["trace"]["records"].as_array().unwrap();
    assert!(!records.is_empty());
    let criteria: Vec<f64> = records
        .iter()
        .map(|x| x["criterion"].as_f64().unwrap())
        .collect();
    assert!(criteria.windows(2).all(|w| w[1] <= w[0]), "{criteria:?}");
    assert_eq!(
        r["estimated_weights"].as_array().unwrap().len(),
        r["root_weights"].as_array().unwrap().len()
    );
    // The estimate explains a held-out input of the root too.
    assert!(r["held_out_ratio"].as_f64().unwrap() < 1e-2, "{r}");
    assert!(is_png(&out.join("criterion.png")));
    let md = std::fs::read_to_string(out.join("criterion.md")).unwrap();
    assert!(
        md.contains("criterion / L0") && md.contains("| 0 |"),
        "{md}"
    );
    assert!(!out.join("adjacency.png").exists());
    // No temporary file is left behind.
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left over: {name}");
    }
}

#[test]
fn sparse_estimation_writes_the_masks_and_their_picture() {
    let root = tmp("sparse");
    let out = root.join("run");
    let stdout = ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "6",
        "--observe",
        "6",
        "--sparse",
        "0.05",
        "--max-iterations",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("kept connections per unit"), "{stdout}");
    let r = json(&out.join("reverse.json"));
    let s = &r["sparse"];
    let kept: Vec<u64> = s["kept_per_unit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(kept.len(), 6);
    // The root keeps max(2, ⌊√6⌋) = 2 connections per unit.
    let truth = s["truth"].as_array().unwrap();
    for row in truth {
        let n = row
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v == &&true)
            .count();
        assert_eq!(n, 2);
    }
    let learned_total: usize = s["learned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .filter(|v| v == &&true)
                .count()
        })
        .sum();
    assert_eq!(learned_total as u64, kept.iter().sum::<u64>());
    let recall = s["recall"].as_f64().unwrap();
    assert!(recall >= 0.75, "recall {recall}: {s}");
    assert!(is_png(&out.join("adjacency.png")));
    assert!(is_png(&out.join("criterion.png")));
    let md = std::fs::read_to_string(out.join("adjacency.md")).unwrap();
    assert!(md.contains("Precision") && md.contains("Root:"), "{md}");
}

#[test]
fn the_distributed_estimator_only_keeps_improvements() {
    let root = tmp("distributed");
    let out = root.join("run");
    ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "3",
        "--distributed",
        "--updates",
        "120",
        "--out",
        out.to_str().unwrap(),
    ]);
    let r = json(&out.join("reverse.json"));
    let d = &r["distributed"];
    let c: Vec<f64> = d["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(c.len(), 120);
    assert!(c.windows(2).all(|w| w[1] <= w[0]));
    assert!(r["ratio"].as_f64().unwrap() < 0.1, "{}", r["ratio"]);
    assert!(d["accepted"].as_u64().unwrap() > 0);
    assert!(r["trace"].is_null());
}

#[test]
fn bad_inputs_are_refused_naming_the_flag() {
    let root = tmp("bad");
    let out = root.join("x");
    let o = out.to_str().unwrap();
    let e = fails(
        &["reverse-engineer", "--units-count", "0", "--out", o],
        &[1, 2],
    );
    assert!(e.contains("--units-count"), "{e}");
    let e = fails(
        &[
            "reverse-engineer",
            "--units-count",
            "4",
            "--observe",
            "5",
            "--out",
            o,
        ],
        &[1, 2],
    );
    assert!(e.contains("--observe"), "{e}");
    let e = fails(&["reverse-engineer", "--dmax", "0", "--out", o], &[1, 2]);
    assert!(e.contains("--dmax"), "{e}");
    let e = fails(&["reverse-engineer", "--sparse", "-1", "--out", o], &[1, 2]);
    assert!(e.contains("--sparse"), "{e}");
    assert!(!out.exists(), "a refused run leaves no folder");
    // An existing non-empty folder is refused and left as it was.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = fails(&["reverse-engineer", "--out", o], &[1, 2]);
    assert!(e.contains("--out") && e.contains("not empty"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // An existing empty one is used.
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&[
        "reverse-engineer",
        "--units-count",
        "2",
        "--max-iterations",
        "3",
        "--out",
        empty.to_str().unwrap(),
    ]);
    assert!(empty.join("reverse.json").is_file());
}

fn losses(run: &Path) -> Vec<(f64, serde_json::Value)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["loss"].as_f64().unwrap(), v)
        })
        .collect()
}

fn train_args<'a>(root: &'a str, name: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "--threads",
        "1",
        "train",
        "--trainer",
        "backward-tuning",
        "--cell",
        "srn",
        "--task",
        "reber",
        "--hidden",
        "8",
        "--epochs",
        epochs,
        "--early-stop",
        "false",
        "--runs-dir",
        root,
        "--name",
        name,
    ]
}

#[test]
fn backward_tuning_trains_the_srn_on_reber_and_resumes_with_the_same_learner() {
    let root = tmp("train");
    let r = root.to_str().unwrap();
    ok(&train_args(r, "whole", "4"));
    let whole = losses(&root.join("whole"));
    assert_eq!(whole.len(), 4);
    let l: Vec<f64> = whole.iter().map(|(l, _)| *l).collect();
    assert!(l[3] < l[0], "loss over epochs: {l:?}");
    assert!(l.iter().all(|v| v.is_finite()));
    for (_, rec) in &whole {
        let v = &rec["values"];
        assert!(v["bt_moves"].as_f64().unwrap() >= 1.0, "{rec}");
        assert!(v["bt_ratio"].as_f64().unwrap() < 1.0, "{rec}");
        assert_eq!(rec["grad_norm"].as_f64().unwrap(), 0.0);
    }
    // The least-squares criterion the estimator minimises goes down as well.
    let bt: Vec<f64> = whole
        .iter()
        .map(|(_, rec)| rec["values"]["bt_l2"].as_f64().unwrap())
        .collect();
    assert!(bt[3] < bt[0], "{bt:?}");
    let cfg = json(&root.join("whole/config.json"));
    assert_eq!(cfg["train"]["backtune"]["iterations"], 3);
    // Two epochs, then resumed to four: the same numbers as the uninterrupted run (the learner is
    // rebuilt from config.json; a gradient step would differ).
    ok(&train_args(r, "part", "2"));
    ok(&[
        "--threads",
        "1",
        "train",
        "--resume",
        root.join("part").to_str().unwrap(),
        "--epochs",
        "4",
    ]);
    let part = losses(&root.join("part"));
    assert_eq!(part.len(), 4);
    for ((a, _), (b, _)) in whole.iter().zip(&part) {
        assert_eq!(a, b);
    }
}

#[test]
fn backward_tuning_refuses_other_cells_and_gradient_settings() {
    let root = tmp("refuse");
    let r = root.to_str().unwrap();
    let mut args = train_args(r, "lstm", "1");
    args[6] = "lstm";
    let e = fails(&args, &[1]);
    assert!(e.contains("--cell srn") && e.contains("lstm"), "{e}");
    let mut args = train_args(r, "lr", "1");
    args.extend(["--lr", "0.1"]);
    let e = fails(&args, &[1]);
    assert!(e.contains("--lr"), "{e}");
    let mut args = train_args(r, "two", "1");
    args.extend(["--layers", "2"]);
    let e = fails(&args, &[1]);
    assert!(e.contains("--layers 1"), "{e}");
    let e = fails(
        &[
            "train",
            "--cell",
            "srn",
            "--task",
            "reber",
            "--bt-iterations",
            "2",
            "--runs-dir",
            r,
        ],
        &[1],
    );
    assert!(e.contains("--bt-iterations"), "{e}");
    // The estimator's options: with another trainer, a margin on a multi-label task, a ν the
    // criterion has no use for, a malformed regulariser, an unknown criterion.
    let e = fails(
        &[
            "train",
            "--cell",
            "srn",
            "--task",
            "reber",
            "--bt-criterion",
            "l1",
            "--runs-dir",
            r,
        ],
        &[1],
    );
    assert!(e.contains("--bt-criterion"), "{e}");
    let refused: [(&[&str], &str); 4] = [
        (&["--bt-criterion", "margin"], "class objectives"),
        (&["--bt-nu", "0.1"], "ν applies"),
        (&["--bt-soft-bound", "0.1:2"], "KAPPA:K:B"),
        (&["--bt-criterion", "l3"], "not a criterion"),
    ];
    for (extra, says) in refused {
        let mut args = train_args(r, "opt", "1");
        args.extend(extra);
        let e = fails(&args, &[1, 2]);
        assert!(e.contains(says), "{extra:?}: {e}");
    }
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "a refused run leaves no folder"
    );
}

#[test]
fn backward_tuning_trains_with_the_estimator_s_options() {
    // Each option of the estimator, from the command line, on two epochs of Reber: recorded in
    // config.json, and every batch's estimation lowers its own criterion.
    let root = tmp("options");
    let r = root.to_str().unwrap();
    let runs: [(&str, &[&str]); 4] = [
        ("l1", &["--bt-criterion", "l1", "--bt-nu", "0.01"]),
        ("huber", &["--bt-criterion", "huber", "--bt-scale", "0.5"]),
        ("reinject", &["--bt-reinject", "fixed-point"]),
        (
            "regularisers",
            &[
                "--bt-sparse-activity",
                "0.001",
                "--bt-orthogonality",
                "1e-4",
                "--bt-soft-bound",
                "0.01:10:0.9",
                "--bt-soft-bound",
                "0.01:-10:-0.9",
            ],
        ),
    ];
    for (name, extra) in runs {
        let mut args = train_args(r, name, "2");
        args.extend(extra);
        ok(&args);
        let cfg = json(&root.join(name).join("config.json"));
        let bt = &cfg["train"]["backtune"];
        for rec in losses(&root.join(name)).iter().map(|(_, rec)| rec) {
            let v = &rec["values"];
            assert!(v["bt_ratio"].as_f64().unwrap() < 1.0, "{name}: {rec}");
            assert!(v["bt_moves"].as_f64().unwrap() >= 1.0, "{name}: {rec}");
        }
        match name {
            "l1" => assert!(bt["criterion"] == "l1" && bt["nu"] == 0.01, "{bt}"),
            "huber" => assert!(bt["criterion"] == "huber" && bt["scale"] == 0.5, "{bt}"),
            "reinject" => assert_eq!(bt["reinject"], "fixed-point"),
            _ => {
                assert_eq!(bt["sparse_activity"][0], 0.001);
                assert_eq!(bt["orthogonality"], 1e-4);
                assert_eq!(bt["soft_bound"].as_array().unwrap().len(), 2);
            }
        }
    }
}

#[test]
fn observation_noise_outliers_and_root_connections_are_seeded_and_reported() {
    let root = tmp("noise");
    let (clean, noisy) = (root.join("clean"), root.join("noisy"));
    let base = [
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "3",
        "--seed",
        "5",
        "--max-iterations",
        "10",
    ];
    let mut a = base.to_vec();
    a.extend(["--out", clean.to_str().unwrap()]);
    ok(&a);
    let mut a = base.to_vec();
    a.extend([
        "--obs-noise",
        "0.1",
        "--outliers",
        "0.05:10",
        "--out",
        noisy.to_str().unwrap(),
    ]);
    let stdout = ok(&a);
    assert!(stdout.contains("against the clean targets"), "{stdout}");
    let (c, r) = (
        json(&clean.join("reverse.json")),
        json(&noisy.join("reverse.json")),
    );
    // The noise has a stream of its own: same root and fresh network as without it.
    assert_eq!(c["root_weights"], r["root_weights"]);
    assert_eq!(c["fresh_weights"], r["fresh_weights"]);
    assert!(c["clean_ratio"].is_null());
    assert_eq!(r["settings"]["obs_noise"], 0.1);
    assert_eq!(r["settings"]["outliers"]["fraction"], 0.05);
    assert_eq!(r["settings"]["outliers"]["factor"], 10.0);
    let (ci, cl) = (
        r["clean_initial"].as_f64().unwrap(),
        r["clean_last"].as_f64().unwrap(),
    );
    assert!(ci > 0.0 && cl.is_finite());
    assert!((r["clean_ratio"].as_f64().unwrap() - cl / ci).abs() <= 1e-12 * (cl / ci).abs());
    // The fitted (noisy) targets differ from the clean ones: the fresh criteria differ.
    assert_ne!(c["initial"], r["initial"]);

    // --root-connections K with the plain baseline (--sparse 0).
    let sp = root.join("sparse0");
    ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "5",
        "--observe",
        "5",
        "--sparse",
        "0",
        "--root-connections",
        "1",
        "--max-iterations",
        "10",
        "--out",
        sp.to_str().unwrap(),
    ]);
    let s = json(&sp.join("reverse.json"));
    assert_eq!(s["settings"]["root_connections"], 1);
    assert_eq!(s["sparse"]["root_connections"], 1);
    for row in s["sparse"]["truth"].as_array().unwrap() {
        let k = row
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v == &&true)
            .count();
        assert_eq!(k, 1);
    }
    assert!(s["sparse"]["refit"].is_object());

    let out = root.join("bad");
    let o = out.to_str().unwrap();
    for (flag, value) in [
        ("--outliers", "0.05"),
        ("--outliers", "2:10"),
        ("--root-connections", "0"),
    ] {
        let e = fails(
            &[
                "reverse-engineer",
                "--sparse",
                "0.1",
                flag,
                value,
                "--out",
                o,
            ],
            &[2],
        );
        assert!(e.contains(flag), "{flag} {value}: {e}");
    }
    let e = fails(
        &["reverse-engineer", "--obs-noise", "-1", "--out", o],
        &[1, 2],
    );
    assert!(e.contains("--obs-noise"), "{e}");
    let e = fails(
        &[
            "reverse-engineer",
            "--criterion",
            "margin",
            "--obs-noise",
            "0.1",
            "--out",
            o,
        ],
        &[1, 2],
    );
    assert!(e.contains("--obs-noise"), "{e}");
}

#[test]
fn reinject_clamps_the_outputs_and_records_its_desired_values() {
    let root = tmp("reinject");
    let out = root.join("run");
    let stdout = ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "4",
        "--seed",
        "3",
        "--reinject",
        "--max-iterations",
        "10",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("reinject (GaussNewton)"), "{stdout}");
    assert!(stdout.contains("reinject: misfit"), "{stdout}");
    let r = json(&out.join("reverse.json"));
    assert_eq!(r["settings"]["reinject"]["solver"], "GaussNewton");
    let records = r["trace"]["records"].as_array().unwrap();
    assert!(!records.is_empty());
    for rec in records {
        let st = &rec["reinject"];
        let (a, b) = (
            st["misfit_initial"].as_f64().unwrap(),
            st["misfit_final"].as_f64().unwrap(),
        );
        assert!(b <= a && st["steps"].as_u64().unwrap() >= 1, "{rec}");
    }
    assert!(r["ratio"].as_f64().unwrap() < 1e-2, "{}", r["ratio"]);
    // The literal recurrence of the report, through its flag.
    let fp = root.join("fp");
    ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "3",
        "--reinject",
        "--reinject-solver",
        "fixed-point",
        "--max-iterations",
        "3",
        "--out",
        fp.to_str().unwrap(),
    ]);
    let r = json(&fp.join("reverse.json"));
    assert_eq!(r["settings"]["reinject"]["solver"], "FixedPoint");
    assert_eq!(r["settings"]["reinject"]["max_steps"], 20);
}

#[test]
fn the_statistical_criterion_fits_observables_to_better_than_a_thousandth() {
    let root = tmp("stat");
    let out = root.join("run");
    let stdout = ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "3",
        "--seed",
        "4",
        "--criterion",
        "stat",
        "--max-iterations",
        "40",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stdout.contains("largest gap"), "{stdout}");
    let r = json(&out.join("reverse.json"));
    assert_eq!(r["settings"]["criterion"], "stat");
    assert_eq!(r["settings"]["observable_step"], true);
    let obs: Vec<String> = r["settings"]["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(obs, ["mean@0", "ac:0@0", "ac:1@0", "ac:2@0"]);
    let s = &r["statistical"];
    let list = s["observables"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    for o in list {
        let (d, e, g) = (
            o["desired"].as_f64().unwrap(),
            o["estimate"].as_f64().unwrap(),
            o["gap"].as_f64().unwrap(),
        );
        assert!(((d - e).abs() - g).abs() <= 1e-12 && g < 1e-3, "{o}");
        // The fresh network was off.
        assert!((o["fresh"].as_f64().unwrap() - d).abs() > 1e-3, "{o}");
    }
    assert!(s["max_gap"].as_f64().unwrap() < 1e-3, "{s}");
    assert!(r["ratio"].as_f64().unwrap() < 1e-3);
    // Chosen observables and weights; the report's candidates only.
    let two = root.join("two");
    ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "3",
        "--observe",
        "2",
        "--criterion",
        "stat",
        "--observables",
        "mean@1,ac:1",
        "--stat-weights",
        "2,1,0.5",
        "--no-observable-step",
        "--max-iterations",
        "5",
        "--out",
        two.to_str().unwrap(),
    ]);
    let r = json(&two.join("reverse.json"));
    assert_eq!(r["settings"]["observable_step"], false);
    let list = r["statistical"]["observables"].as_array().unwrap();
    let names: Vec<(u64, &str, f64)> = list
        .iter()
        .map(|o| {
            (
                o["unit"].as_u64().unwrap(),
                o["observable"].as_str().unwrap(),
                o["lambda"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [(1, "mean", 2.0), (0, "ac:1", 1.0), (1, "ac:1", 0.5)]
    );
    let records = r["trace"]["records"].as_array().unwrap();
    assert!(records.iter().all(|rec| rec["candidate"] != "Observables"));
}

#[test]
fn integrate_and_fire_units_learn_their_sharpness_from_the_fixed_experiment_s_draws() {
    let root = tmp("sharp");
    let (fixed, learned) = (root.join("fixed"), root.join("learned"));
    let base = [
        "--threads",
        "1",
        "reverse-engineer",
        "--units",
        "aif",
        "--units-count",
        "2",
        "--seed",
        "0",
    ];
    let mut a = base.to_vec();
    a.extend(["--out", fixed.to_str().unwrap()]);
    ok(&a);
    let mut a = base.to_vec();
    a.extend([
        "--learn-sharpness",
        "--start-sharpness",
        "5",
        "--out",
        learned.to_str().unwrap(),
    ]);
    let stdout = ok(&a);
    assert!(stdout.contains("sharpness 1/ε per unit"), "{stdout}");
    let (f, l) = (
        json(&fixed.join("reverse.json")),
        json(&learned.join("reverse.json")),
    );
    // Two nodes per unit: the unit weights first, drawn as in the fixed experiment, then one
    // sharpness per unit.
    let (fw, lw) = (
        f["root_weights"].as_array().unwrap(),
        l["root_weights"].as_array().unwrap(),
    );
    assert_eq!(lw.len(), fw.len() + 2);
    assert_eq!(&lw[..fw.len()], &fw[..]);
    assert_eq!(&lw[fw.len()..], [10.0, 10.0]);
    assert_eq!(
        &l["fresh_weights"].as_array().unwrap()[..fw.len()],
        &f["fresh_weights"].as_array().unwrap()[..]
    );
    let sh = &l["sharpness"];
    assert_eq!(sh["learned"], true);
    assert_eq!(sh["fresh"], serde_json::json!([5.0, 5.0]));
    let est: Vec<f64> = sh["estimate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(est.iter().all(|v| (0.0..=100.0).contains(v)) && est != [5.0, 5.0]);
    let ew = l["estimated_weights"].as_array().unwrap();
    let learned_s: Vec<f64> = ew[fw.len()..].iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(learned_s, est, "the sharpnesses are the last weights");
    assert!(l["ratio"].as_f64().unwrap() < 1e-3, "{}", l["ratio"]);
    assert_eq!(f["sharpness"]["learned"], false);
    assert_eq!(f["sharpness"]["root"], serde_json::json!([10.0, 10.0]));
}

#[test]
fn option_combinations_that_make_no_sense_are_refused() {
    let root = tmp("combos");
    let out = root.join("x");
    let o = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--reinject", "--criterion", "margin"],
            "--criterion margin",
        ),
        (&["--reinject", "--criterion", "stat"], "--criterion stat"),
        (&["--reinject", "--distributed"], "--distributed"),
        (&["--reinject-solver", "fixed-point"], "--reinject"),
        (
            &["--criterion", "stat", "--observables", "mean@1"],
            "unit 1 is not observed",
        ),
        (&["--observables", "mean"], "--criterion stat only"),
        (
            &["--criterion", "stat", "--observables", "median"],
            "--observables",
        ),
        (
            &["--criterion", "stat", "--observables", "ac:x"],
            "--observables",
        ),
        (
            &["--criterion", "stat", "--stat-weights", "1,2"],
            "2 weights for 4 observables",
        ),
        (
            &["--criterion", "stat", "--observables", "ac:40"],
            "shorter than the 40",
        ),
        (
            &["--criterion", "stat", "--distributed"],
            "full estimator only",
        ),
        (&["--criterion", "stat", "--nu", "0.1"], "--nu"),
        (&["--no-observable-step"], "--criterion stat only"),
        (&["--learn-sharpness"], "--units aif only"),
        (&["--sharpness", "5"], "--units aif only"),
        (&["--units", "aif", "--sharpness", "0"], "--sharpness"),
        (
            &["--units", "aif", "--start-sharpness", "5"],
            "--learn-sharpness",
        ),
        (
            &["--units", "aif", "--learn-sharpness", "--sparse", "0.1"],
            "--learn-sharpness and --sparse",
        ),
    ];
    for (flags, what) in cases {
        let mut args = vec!["reverse-engineer", "--units-count", "4", "--out", o];
        args.extend_from_slice(flags);
        let e = fails(&args, &[1, 2]);
        assert!(e.contains(what), "{flags:?}: {e}");
        assert!(!out.exists(), "{flags:?}: a refused run leaves no folder");
    }
}

#[test]
fn unsupervised_regularisers_act_on_the_hidden_units_and_are_reported() {
    let root = tmp("regularisers");
    let out = root.join("run");
    let stdout = ok(&[
        "--threads",
        "1",
        "reverse-engineer",
        "--units-count",
        "4",
        "--seed",
        "2",
        "--sparse-activity",
        "1e-3:1e-2",
        "--orthogonality",
        "1e-4",
        "--soft-bound",
        "1e-3:10:0.8",
        "--soft-bound",
        "1e-3:-10:-0.8",
        "--max-iterations",
        "30",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("hidden units (root / fresh / estimate)"),
        "{stdout}"
    );
    let r = json(&out.join("reverse.json"));
    let reg = &r["settings"]["regularisers"];
    assert_eq!(
        reg["nodes"],
        serde_json::json!([1, 2, 3]),
        "the unobserved units"
    );
    let terms = reg["terms"].as_array().unwrap();
    assert_eq!(terms.len(), 4);
    assert_eq!(terms[0]["SparseActivity"]["eps"], 1e-2);
    assert_eq!(terms[3]["SoftBound"]["k"], -10.0);
    let act = &r["activity"];
    for who in ["root", "fresh", "estimate"] {
        let s = &act[who];
        assert!(s["mean_abs"].as_f64().unwrap() >= 0.0, "{act}");
        assert!(s["max"].as_f64().unwrap() >= s["min"].as_f64().unwrap());
        let c = s["mean_abs_cosine"].as_f64().unwrap();
        assert!((0.0..=1.0 + 1e-12).contains(&c), "{act}");
    }
    // The fit alone (without the regularisers) is reported beside the regularised criterion.
    let (fi, fl) = (
        act["fit_initial"].as_f64().unwrap(),
        act["fit_last"].as_f64().unwrap(),
    );
    assert!(fl < fi && (act["fit_ratio"].as_f64().unwrap() - fl / fi).abs() < 1e-12);
    assert!(r["ratio"].as_f64().unwrap() < 1.0);

    let bad = root.join("bad");
    let o = bad.to_str().unwrap();
    for (flags, what) in [
        (
            vec!["--observe", "4", "--orthogonality", "1"],
            "leaves none",
        ),
        (vec!["--sparse-activity", "1:0"], "--sparse-activity"),
        (vec!["--sparse-activity", "-1"], "--sparse-activity"),
        (vec!["--soft-bound", "1:2"], "--soft-bound"),
        (vec!["--orthogonality", "-1"], "--orthogonality"),
        (
            vec!["--distributed", "--orthogonality", "1"],
            "--distributed",
        ),
    ] {
        let mut args = vec!["reverse-engineer", "--units-count", "4", "--out", o];
        args.extend(flags.iter().copied());
        let e = fails(&args, &[1, 2]);
        assert!(e.contains(what), "{flags:?}: {e}");
        assert!(!bad.exists());
    }
}
