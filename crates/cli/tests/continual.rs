//! `remanence continual` end to end on sequence lists (made up from the seed, so no data set is
//! needed): a run, a run stopped with --max-experiences and continued with --resume (the same
//! matrix), and the inputs it refuses (message on stderr, non-zero exit, nothing changed); recipes
//! that give the scenario, the method and its settings, and every shipped models/continual-*.toml.
//! `--method assoc-memory` on a reduced split row-MNIST (../shared/datasets/mnist): a run, the
//! same run stopped and resumed, the scenarios it refuses.
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

/// Runs a command that must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let o = run(args);
    assert!(!o.status.success(), "{args:?} should fail");
    String::from_utf8(o.stderr).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-cli-cl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small sequence-list run of `method` into `root/name`, with `extra` flags.
fn lists(root: &Path, name: &str, method: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "continual",
        "--scenario",
        "lists:3:2:4:8",
        "--method",
        method,
        "--cell",
        "srn",
        "--hidden",
        "8",
        "--epochs",
        "4",
        "--transfer-size",
        "32",
        "--transfer-epochs",
        "1",
        "--runs-dir",
        root.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_lists_run_stopped_and_resumed_gives_the_uninterrupted_matrix() {
    let root = tmp("resume");
    for method in ["replay", "dual-net"] {
        let whole = lists(&root, &format!("{method}-whole"), method, &[]);
        assert!(whole.contains("| after exp 2 |"), "{whole}");
        let part = lists(
            &root,
            &format!("{method}-part"),
            method,
            &["--max-experiences", "1"],
        );
        assert!(
            part.contains("stopped after 1 of 3 experiences") && part.contains("--resume"),
            "{part}"
        );
        let dir = root.join(format!("{method}-part"));
        let d = dir.to_str().unwrap();
        let more = ok(&["continual", "--resume", d, "--max-experiences", "1"]);
        assert!(more.contains("resuming at experience 2 of 3"), "{more}");
        let rest = ok(&["continual", "--resume", d]);
        assert!(rest.contains("resuming at experience 3 of 3"), "{rest}");
        assert_eq!(
            read(dir.join("matrix.json")),
            read(root.join(format!("{method}-whole/matrix.json"))),
            "{method}"
        );
        let info = read(dir.join("continual.json"));
        assert!(
            info.contains("lists:3:2:4:8") && info.contains("method_settings"),
            "{info}"
        );
        // A finished run is refused and left as it was.
        let before = read(dir.join("matrix.json"));
        let e = fails(&["continual", "--resume", d]);
        assert!(e.contains("finished"), "{e}");
        assert_eq!(read(dir.join("matrix.json")), before);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn what_lists_and_resume_refuse() {
    let root = tmp("refuse");
    let r = root.to_str().unwrap();
    let e = fails(&[
        "continual",
        "--scenario",
        "lists:3:2:4:8",
        "--method",
        "lwf",
        "--runs-dir",
        r,
    ]);
    assert!(e.contains("lwf") && e.contains("next item"), "{e}");
    let e = fails(&[
        "continual",
        "--scenario",
        "lists:3:2:4:8",
        "--train-size",
        "4",
        "--runs-dir",
        r,
    ]);
    assert!(
        e.contains("--train-size") && e.contains("makes up its own sequences"),
        "{e}"
    );
    lists(&root, "a", "naive", &["--max-experiences", "1"]);
    let a = root.join("a");
    let e = fails(&[
        "continual",
        "--resume",
        a.to_str().unwrap(),
        "--epochs",
        "9",
    ]);
    assert!(e.contains("--epochs"), "{e}");
    let e = fails(&[
        "continual",
        "--resume",
        a.to_str().unwrap(),
        "--method",
        "ewc",
    ]);
    assert!(e.contains("--method"), "{e}");
    // An experience's own folder is an ordinary run, not a scenario run.
    let e = fails(&["continual", "--resume", a.join("exp-00").to_str().unwrap()]);
    assert!(e.contains("not a continual-learning run folder"), "{e}");
    let e = fails(&[
        "continual",
        "--resume",
        root.join("nothing").to_str().unwrap(),
    ]);
    assert!(e.contains("no such run folder"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// Writes `text` as the recipe `root/name`.
fn recipe(root: &Path, name: &str, text: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A dual-network recipe on a small sequence-list scenario (keys with dashes and underscores).
const DUAL_RECIPE: &str = r#"scenario = "lists:2:2:4:8"
method = "dual-net"
reverberations = 2
noise = "binary"
pseudo_per_example = 0.5
transfer-size = 32
transfer_epochs = 1
hard-targets = true
recon-weight = 0.25
cell = "srn"
hidden = 8
epochs = 2
"#;

fn json(p: PathBuf) -> serde_json::Value {
    serde_json::from_str(&read(p)).unwrap()
}

#[test]
fn a_recipe_gives_the_scenario_the_method_and_its_settings() {
    let root = tmp("recipe");
    let r = recipe(&root, "dual.toml", DUAL_RECIPE);
    let runs = root.join("runs");
    let out = ok(&[
        "continual",
        "--recipe",
        r.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--name",
        "dual",
    ]);
    assert!(
        out.contains("lists:2:2:4:8 · dual-net") && out.contains("hidden 8"),
        "{out}"
    );
    let info = json(runs.join("dual/continual.json"));
    assert_eq!(info["scenario"], "lists:2:2:4:8");
    let m = &info["method_settings"];
    assert_eq!(m["name"], "dual-net", "{info}");
    assert_eq!(m["rounds"], 2, "{info}");
    assert_eq!(m["noise"], "binary", "{info}");
    assert_eq!(m["per_example"], 0.5, "{info}");
    assert_eq!(m["transfer_size"], 32, "{info}");
    assert_eq!(m["transfer_epochs"], 1, "{info}");
    assert_eq!(m["soft"], false, "{info}");
    assert_eq!(m["recon_weight"], 0.25, "{info}");
    // Keys the recipe leaves out keep their defaults.
    assert_eq!(m["kind"], "sequence", "{info}");
    assert_eq!(m["denoise"], 0.0, "{info}");
    let cfg = json(runs.join("dual/config.json"));
    assert_eq!(cfg["model"]["rnn"]["cell"], "srn");
    assert_eq!(cfg["train"]["epochs"], 2);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn flags_override_the_recipe_and_check_writes_nothing() {
    let root = tmp("override");
    let r = recipe(&root, "dual.toml", DUAL_RECIPE);
    let runs = root.join("runs");
    let check = |extra: &[&str]| {
        let mut a = vec![
            "continual",
            "--recipe",
            r.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--check",
        ];
        a.extend_from_slice(extra);
        ok(&a)
    };
    let plain = check(&[]);
    assert!(
        plain.contains(r#""rounds":2"#) && plain.contains(r#""soft":false"#),
        "{plain}"
    );
    let over = check(&[
        "--reverberations",
        "3",
        "--hard-targets",
        "false",
        "--noise",
        "gaussian",
        "--hidden",
        "6",
        "--seed",
        "4",
    ]);
    assert!(
        over.contains(r#""rounds":3"#)
            && over.contains(r#""soft":true"#)
            && over.contains(r#""noise":"gaussian""#)
            && over.contains(r#""per_example":0.5"#)
            && over.contains(r#""hidden_size": 6"#)
            && over.contains("continual-lists-2-2-4-8-dual-net-srn-s4"),
        "{over}"
    );
    let other = check(&[
        "--method",
        "ewc",
        "--ewc-lambda",
        "7",
        "--scenario",
        "lists:3:2:4:8",
    ]);
    assert!(
        other.contains("scenario: lists:3:2:4:8")
            && other.contains(r#"{"name":"ewc","lambda":7.0,"decay":1.0}"#),
        "{other}"
    );
    assert!(!runs.exists(), "--check wrote {}", runs.display());
    // --resume with --recipe stays refused.
    let e = fails(&[
        "continual",
        "--resume",
        root.join("x").to_str().unwrap(),
        "--recipe",
        r.to_str().unwrap(),
    ]);
    assert!(e.contains("--recipe"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_recipes_are_refused_naming_the_key_and_the_file() {
    let root = tmp("bad-recipe");
    let runs = root.join("runs");
    let refused = |name: &str, text: &str| -> String {
        let r = recipe(&root, name, text);
        let e = fails(&[
            "continual",
            "--recipe",
            r.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ]);
        assert!(e.contains(name), "the file is not named: {e}");
        e
    };
    let lists = "scenario = \"lists:2:2:4:8\"\n";
    // Unknown keys: the closest of the continual and the training keys.
    let e = refused("a.toml", &format!("{lists}reverbations = 3\n"));
    assert!(
        e.contains("`reverbations`") && e.contains("`reverberations`"),
        "{e}"
    );
    let e = refused("b.toml", &format!("{lists}buffer_per_clas = 3\n"));
    assert!(e.contains("`buffer-per-class`"), "{e}");
    let e = refused("c.toml", &format!("{lists}hiden = 3\n"));
    assert!(e.contains("did you mean `hidden`"), "{e}");
    // Values of the wrong type.
    for (text, key, takes) in [
        (
            "reverberations = \"five\"",
            "`reverberations`",
            "whole number",
        ),
        ("reverberations = -1", "`reverberations`", "whole number"),
        ("hard-targets = 3", "`hard-targets`", "true or false"),
        ("ewc_lambda = \"big\"", "`ewc-lambda`", "a number"),
        ("method = 2", "`method`", "text"),
    ] {
        let e = refused("d.toml", &format!("{lists}{text}\n"));
        assert!(e.contains(key) && e.contains(takes), "{text}: {e}");
    }
    let e = refused("e.toml", &format!("{lists}hidden = \"big\"\n"));
    assert!(e.contains("hidden"), "{e}");
    // A setting given twice, and a bad value of a setting's own kind.
    let e = refused("f.toml", &format!("{lists}si_c = 1\nsi-c = 2\n"));
    assert!(e.contains("twice"), "{e}");
    let e = refused(
        "g.toml",
        &format!("{lists}method = \"dual-net\"\npseudo = \"dream\"\n"),
    );
    assert!(e.contains("--pseudo") && e.contains("transition"), "{e}");
    // No scenario anywhere.
    let e = refused("h.toml", "method = \"replay\"\nhidden = 8\n");
    assert!(e.contains("no scenario") && e.contains("--scenario"), "{e}");
    let e = fails(&["continual", "--runs-dir", runs.to_str().unwrap()]);
    assert!(e.contains("no scenario") && e.contains("--scenario"), "{e}");
    assert!(!runs.exists(), "a refused recipe wrote {}", runs.display());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn every_shipped_continual_recipe_resolves() {
    let root = tmp("shipped");
    let runs = root.join("runs");
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    let mut n = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let p = entry.unwrap().path();
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        if !(file.starts_with("continual-") && file.ends_with(".toml")) {
            continue;
        }
        let text = read(p.clone());
        assert!(
            text.starts_with('#')
                && text.contains(&format!("remanence continual --recipe models/{file}")),
            "{file}: the opening comment should say what it reproduces and how to run it"
        );
        let out = ok(&[
            "continual",
            "--recipe",
            p.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--check",
        ]);
        let method = file
            .trim_end_matches(".toml")
            .rsplit('-')
            .next()
            .unwrap()
            .replace("net", "dual-net");
        assert!(
            out.contains(&format!(r#"{{"name":"{method}""#)),
            "{file}: {out}"
        );
        if file.contains("mnist-rows") {
            assert!(
                out.contains(r#""hidden_size": 128"#)
                    && out.contains(r#""batch_size": 64"#)
                    && out.contains(r#""clip_norm": 5.0"#)
                    && out.contains(r#""epochs": 3"#),
                "{file}: {out}"
            );
        }
        if file == "continual-split-mnist-rows-dual-net.toml" {
            assert!(
                out.contains(r#""rounds":10"#) && out.contains(r#""denoise":2.0"#),
                "{out}"
            );
        }
        n += 1;
    }
    assert!(n >= 11, "{n} continual recipes");
    assert!(!runs.exists(), "--check wrote {}", runs.display());
    // The help shows each continual setting's default.
    let help = ok(&["continual", "--help"]);
    for default in [
        "[default: 1000]",
        "[default: 5]",
        "[default: uniform]",
        "[default: naive]",
    ] {
        assert!(help.contains(default), "{default} missing in: {help}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `remanence continual --method assoc-memory` on split row-MNIST cut to 500 training and 200
/// test digits: the matrix is written, the model does not change after experience 1, the memory
/// stores 20 digits of each class, and the run stopped after 2 experiences resumes to the same
/// matrix; task-incremental scenarios and sequence lists are refused.
#[test]
fn assoc_memory_on_reduced_split_mnist_rows() {
    let Some(mnist) = remanence_tasks::datasets::shared_for_tests("datasets/mnist") else {
        return;
    };
    let root = tmp("assoc");
    let r = root.to_str().unwrap();
    let data = mnist.to_str().unwrap();
    let args = |name: &'static str, extra: &[&'static str]| {
        let mut a = vec![
            "--threads",
            "1",
            "continual",
            "--scenario",
            "split:mnist-rows:2",
            "--method",
            "assoc-memory",
            "--cell",
            "lstm",
            "--hidden",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--train-size",
            "500",
            "--test-size",
            "200",
            "--segments",
            "4",
            "--anchors",
            "8",
            "--per-class",
            "20",
            "--data",
            data,
            "--runs-dir",
            r,
            "--name",
            name,
        ];
        a.extend_from_slice(extra);
        a
    };
    let out = ok(&args("whole", &[]));
    assert!(
        out.contains("assoc-memory") && out.contains("| after exp 4 |"),
        "{out}"
    );
    let dir = root.join("whole");
    let matrix = json(dir.join("matrix.json"));
    let rows = matrix["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        for (j, a) in row.as_array().unwrap().iter().enumerate() {
            let a = a.as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "row {i}: {a}");
            if j > i {
                // The memory answers only over the classes it has learnt.
                assert_eq!(a, 0.0, "row {i}, experience {j}");
            }
        }
    }
    assert!(dir.join("summary.json").is_file() && dir.join("heatmap.png").is_file());
    let info = json(dir.join("continual.json"));
    assert_eq!(info["method_settings"]["name"], "assoc-memory");
    assert_eq!(info["method_settings"]["segments"], 4);
    assert_eq!(info["method_settings"]["per_class"], 20);
    // The extractor is frozen after experience 1: the same weights in every experience's folder.
    let weights =
        |k: usize| std::fs::read(dir.join(format!("exp-{k:02}/model.safetensors"))).unwrap();
    for k in 1..5 {
        assert!(weights(k) == weights(0), "experience {k} changed the model");
    }
    for (k, line) in read(dir.join("metrics.jsonl")).lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            v["memory"]["stored"], 40,
            "experience {k}: 20 digits of 2 classes"
        );
        assert_eq!(v["memory"]["quantizer_fitted"], k == 0);
    }
    // Stopped after 2 experiences and resumed: the same matrix.
    let part = ok(&args("part", &["--max-experiences", "2"]));
    assert!(part.contains("stopped after 2 of 5 experiences"), "{part}");
    let p = root.join("part");
    let rest = ok(&[
        "--threads",
        "1",
        "continual",
        "--resume",
        p.to_str().unwrap(),
    ]);
    assert!(rest.contains("resuming at experience 3 of 5"), "{rest}");
    assert_eq!(read(p.join("matrix.json")), read(dir.join("matrix.json")));
    // What it cannot learn.
    let e = fails(&[
        "continual",
        "--scenario",
        "split-task:mnist-rows:2",
        "--method",
        "assoc-memory",
        "--data",
        data,
        "--runs-dir",
        r,
    ]);
    assert!(e.contains("task-incremental"), "{e}");
    let e = fails(&[
        "continual",
        "--scenario",
        "lists:3:2:4:8",
        "--method",
        "memory",
        "--runs-dir",
        r,
    ]);
    assert!(e.contains("assoc-memory") && e.contains("next item"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}
