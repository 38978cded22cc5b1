//! The `remanence` binary end to end: the user steps of the foundation issue and every bad input
//! it names (clear message naming the file, non-zero exit, nothing overwritten).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use remanence_cells::io;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_remanence"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
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
    let d = std::env::temp_dir().join(format!("remanence-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Trains a small SRN on the plain Reber grammar into `root/reber` for `epochs`; returns the run folder.
fn small_run(root: &Path, epochs: &str) -> PathBuf {
    let runs = root.to_str().unwrap();
    let args = [
        "train",
        "--task",
        "reber",
        "--cell",
        "srn",
        "--hidden",
        "8",
        "--epochs",
        epochs,
        "--train-size",
        "64",
        "--test-size",
        "32",
        "--runs-dir",
        runs,
        "--name",
        "reber",
        "--early-stop",
        "false",
    ];
    let out = ok(&args);
    assert!(out.contains("run folder:"), "{out}");
    root.join("reber")
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

#[test]
fn train_eval_sample_infer_and_resume() {
    let root = tmp("flow");
    let run_dir = small_run(&root, "3");
    for f in [
        "config.json",
        "model.safetensors",
        "checkpoint.safetensors",
        "metrics.jsonl",
    ] {
        assert!(run_dir.join(f).is_file(), "{f}");
    }
    let rd = run_dir.to_str().unwrap();
    // The weights carry PyTorch's names.
    let (w, _) = io::read(&run_dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<_> = w.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "head.bias",
            "head.weight",
            "rnn.bias_hh_l0",
            "rnn.bias_ih_l0",
            "rnn.weight_hh_l0",
            "rnn.weight_ih_l0"
        ]
    );

    let out = ok(&["eval", "--run", rd, "--json"]);
    let ev: serde_json::Value = serde_json::from_str(&out).unwrap();
    let last = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(
        ev["metric"], last["metric"],
        "eval reproduces the last epoch's evaluation"
    );

    let out = ok(&["sample", "--run", rd, "--temperature", "0.7", "-n", "5"]);
    assert_eq!(out.lines().count(), 6, "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("/5 strings are grammatical"),
        "{out}"
    );

    // infer: outputs equal the library's forward pass on the same weights.
    let x = Tensor::randn(0f32, 1., (2, 5, 7), &Device::Cpu).unwrap();
    let input = root.join("x.safetensors");
    let output = root.join("y.safetensors");
    io::write(&input, &[("x".into(), x.clone())], None).unwrap();
    ok(&[
        "infer",
        "--run",
        rd,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let (y, _) = io::read(&output, &Device::Cpu).unwrap();
    assert_eq!(y["y"].dims(), &[2, 5, 7]);
    assert_eq!(y["hidden"].dims(), &[2, 5, 8]);
    assert_eq!(y["h_n"].dims(), &[1, 2, 8]);
    let dir = remanence_train::RunDir::open(&run_dir).unwrap();
    let cfg = dir.read_config().unwrap();
    let (model, _) = dir.load_model(&cfg, &Device::Cpu).unwrap();
    let (want, _) = model.forward(&x, None, None).unwrap();
    let diff = (want - &y["y"])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-6, "{diff}");

    // Resume: raise the budget; metrics continue from epoch 4.
    let out = ok(&["train", "--resume", rd, "--epochs", "5"]);
    assert!(
        out.contains("resuming") && out.contains("after epoch 3"),
        "{out}"
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let epochs: Vec<u64> = lines.iter().map(|l| l["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [1, 2, 3, 4, 5]);
    // A run that spent its budget with early stopping on (the default) also continues.
    let runs = root.to_str().unwrap();
    ok(&[
        "train",
        "--task",
        "reber",
        "--cell",
        "gru",
        "--hidden",
        "4",
        "--epochs",
        "1",
        "--train-size",
        "16",
        "--test-size",
        "16",
        "--runs-dir",
        runs,
        "--name",
        "budget",
    ]);
    let out = ok(&[
        "train",
        "--resume",
        root.join("budget").to_str().unwrap(),
        "--epochs",
        "2",
    ]);
    assert!(
        out.contains("2 epochs run") || out.contains("solved"),
        "{out}"
    );
    let n = std::fs::read_to_string(root.join("budget/metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert!(n == 2 || out.contains("solved"), "{n} epochs");
    let err = fails(&["train", "--resume", rd, "--hidden", "9"]);
    assert!(err.contains("only --epochs"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn recipe_is_used_and_flags_override_it() {
    let root = tmp("recipe");
    let recipe = root.join("r.toml");
    std::fs::write(&recipe, "task = \"reber\"\ncell = \"gru\"\nhidden = 6\nepochs = 1\ntrain-size = 16\ntest-size = 16\n").unwrap();
    let runs = root.to_str().unwrap();
    ok(&[
        "train",
        "--recipe",
        recipe.to_str().unwrap(),
        "--hidden",
        "5",
        "--runs-dir",
        runs,
        "--name",
        "r",
    ]);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("r/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["model"]["rnn"]["cell"], "gru");
    assert_eq!(cfg["model"]["rnn"]["hidden_size"], 5);
    std::fs::write(&recipe, "cell = \"gru\"\nhiden = 6\n").unwrap();
    let err = fails(&[
        "train",
        "--recipe",
        recipe.to_str().unwrap(),
        "--runs-dir",
        runs,
    ]);
    assert!(err.contains("r.toml") && err.contains("hiden"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_choices_list_the_valid_ones() {
    let root = tmp("choices");
    let runs = root.to_str().unwrap();
    for (flag, val, valid) in [
        ("--task", "mnist-foo", "reber, embedded-reber, mnist-rows"),
        ("--cell", "tcn", "srn, lstm, gru"),
        ("--optimizer", "lion", "adam, adamw, sgd, rmsprop"),
        ("--device", "tpu", "cpu, cuda, metal"),
        ("--dtype", "f16", "f32, f64"),
        ("--schedule", "linear", "constant, cosine"),
    ] {
        let err = fails(&["train", flag, val, "--runs-dir", runs]);
        assert!(err.contains(valid), "{flag}: {err}");
    }
    let err = fails(&["train", "--hiden", "3"]);
    assert!(err.contains("--hidden"), "{err}");
    if !candle_core::utils::cuda_is_available() {
        let err = fails(&["train", "--device", "cuda", "--runs-dir", runs]);
        assert!(err.contains("--features cuda"), "{err}");
    }
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "no run folder is left behind"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn broken_run_folders_are_reported_and_left_untouched() {
    let root = tmp("broken");
    let err = fails(&["eval", "--run", root.join("missing").to_str().unwrap()]);
    assert!(
        err.contains("missing") && err.contains("no such run folder"),
        "{err}"
    );

    let run_dir = small_run(&root, "1");
    let rd = run_dir.to_str().unwrap();
    let model = run_dir.join("model.safetensors");
    let config = run_dir.join("config.json");

    // Truncated weights.
    let good = bytes(&model);
    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    let err = fails(&["eval", "--run", rd]);
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
    std::fs::write(&model, &good).unwrap();

    // A configuration that does not match the weights.
    let cfg = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        cfg.replace("\"hidden_size\": 8", "\"hidden_size\": 9"),
    )
    .unwrap();
    let err = fails(&["eval", "--run", rd]);
    assert!(
        err.contains("model.safetensors") && err.contains("[9, 7]") && err.contains("[8, 7]"),
        "{err}"
    );
    std::fs::write(&config, &cfg).unwrap();

    // A corrupt configuration.
    std::fs::write(&config, "{ not json").unwrap();
    let err = fails(&["sample", "--run", rd]);
    assert!(
        err.contains("config.json") && err.contains("invalid run configuration"),
        "{err}"
    );
    std::fs::write(&config, &cfg).unwrap();

    // infer: an input of the wrong shape, and one without `x`; the output is never written.
    let input = root.join("x.safetensors");
    let output = root.join("y.safetensors");
    let x = Tensor::zeros((2, 5, 3), DType::F32, &Device::Cpu)
        .unwrap()
        .affine(1.0, 0.5)
        .unwrap();
    io::write(&input, &[("x".into(), x.clone())], None).unwrap();
    let args = [
        "infer",
        "--run",
        rd,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    let err = fails(&args);
    assert!(
        err.contains("x.safetensors")
            && err.contains("[2, 5, 3]")
            && err.contains("(batch, time, 7)"),
        "{err}"
    );
    io::write(&input, &[("u".into(), x)], None).unwrap();
    let err = fails(&args);
    assert!(
        err.contains("x.safetensors") && err.contains("no tensor `x`"),
        "{err}"
    );
    assert!(!output.exists());

    // A corrupt checkpoint: resume refuses and leaves every file as it was.
    let ckpt = run_dir.join("checkpoint.safetensors");
    std::fs::write(&ckpt, b"garbage").unwrap();
    let before: Vec<_> = ["model.safetensors", "metrics.jsonl", "config.json"]
        .iter()
        .map(|f| bytes(&run_dir.join(f)))
        .collect();
    let err = fails(&["train", "--resume", rd, "--epochs", "3"]);
    assert!(err.contains("checkpoint.safetensors"), "{err}");
    let after: Vec<_> = ["model.safetensors", "metrics.jsonl", "config.json"]
        .iter()
        .map(|f| bytes(&run_dir.join(f)))
        .collect();
    assert_eq!(before, after);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Killing training at arbitrary moments never leaves a half-written checkpoint, and the run
/// resumes from the last one.
#[test]
fn killed_training_leaves_a_readable_checkpoint_and_resumes() {
    let root = tmp("kill");
    let runs = root.to_str().unwrap();
    let run_dir = root.join("k");
    let ckpt = run_dir.join("checkpoint.safetensors");
    let mut kills = 0;
    for delay_ms in [40u64, 90, 150] {
        let mut child = if kills == 0 {
            bin()
                .args([
                    "train", "--task", "reber", "--cell", "lstm", "--hidden", "8", "--epochs",
                    "100000",
                ])
                .args([
                    "--train-size",
                    "32",
                    "--test-size",
                    "32",
                    "--early-stop",
                    "false",
                    "--runs-dir",
                    runs,
                    "--name",
                    "k",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        } else {
            bin()
                .args(["train", "--resume", run_dir.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let start = std::time::Instant::now();
        while !ckpt.exists() && start.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        let dir = remanence_train::RunDir::open(&run_dir).unwrap();
        let ck = dir
            .read_checkpoint(DType::F32, &Device::Cpu)
            .unwrap()
            .expect("a checkpoint");
        assert!(ck.state.epochs_completed >= 1);
        let cfg = dir.read_config().unwrap();
        dir.load_model(&cfg, &Device::Cpu).unwrap();
    }
    assert_eq!(kills, 3);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn continuous_time_cells_train_from_the_cli() {
    let root = tmp("ct");
    let runs = root.to_str().unwrap();
    for (name, args) in [
        (
            "ltc",
            vec![
                "--cell",
                "ltc",
                "--units",
                "8",
                "--wiring",
                "auto-ncp:3",
                "--ode-unfolds",
                "2",
            ],
        ),
        (
            "ltc-clip",
            vec!["--cell", "ltc", "--units", "6", "--constraint", "clip"],
        ),
        (
            "cfc",
            vec![
                "--cell",
                "cfc",
                "--units",
                "8",
                "--mode",
                "no-gate",
                "--backbone-units",
                "8",
            ],
        ),
        (
            "ctrnn",
            vec![
                "--cell",
                "ctrnn",
                "--hidden",
                "8",
                "--solver",
                "rk4",
                "--ode-unfolds",
                "2",
            ],
        ),
        (
            "odernn",
            vec![
                "--cell",
                "odernn",
                "--hidden",
                "8",
                "--solver",
                "dopri5",
                "--backbone-units",
                "8",
            ],
        ),
    ] {
        let mut a = vec![
            "train",
            "--task",
            "reber",
            "--epochs",
            "1",
            "--train-size",
            "16",
            "--test-size",
            "16",
        ];
        a.extend(args);
        a.extend(["--runs-dir", runs, "--name", name]);
        let out = ok(&a);
        assert!(out.contains("run folder:"), "{out}");
        ok(&["eval", "--run", root.join(name).to_str().unwrap()]);
    }
    // ncps names on disk.
    let (w, _) = io::read(&root.join("ltc/model.safetensors"), &Device::Cpu).unwrap();
    assert!(w.contains_key("rnn.rnn_cell.sparsity_mask") && w.contains_key("rnn.rnn_cell.gleak"));
    assert_eq!(
        w["head.weight"].dims(),
        &[7, 3],
        "the head reads the 3 motor neurons"
    );
    // Clip mode keeps the constrained parameters non-negative.
    let (w, _) = io::read(&root.join("ltc-clip/model.safetensors"), &Device::Cpu).unwrap();
    for p in ["gleak", "cm", "w", "sensory_w"] {
        let min = w[&format!("rnn.rnn_cell.{p}")]
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(min >= 0.0, "{p}: {min}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_continuous_time_settings_are_explained() {
    let root = tmp("ctbad");
    let runs = root.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--cell", "ltc", "--units", "8", "--wiring", "mesh"],
            "fully-connected[:OUT]",
        ),
        (
            vec!["--cell", "ltc", "--units", "8", "--wiring", "auto-ncp:8"],
            "below units",
        ),
        (
            vec![
                "--cell",
                "ltc",
                "--units",
                "8",
                "--wiring",
                "fully-connected:9",
            ],
            "between 1 and the 8 units",
        ),
        (
            vec!["--cell", "cfc", "--mode", "fast"],
            "default, no-gate, pure",
        ),
        (
            vec!["--cell", "ctrnn", "--solver", "rk45"],
            "euler, heun, rk4, dopri5",
        ),
        (
            vec!["--cell", "ltc", "--constraint", "abs"],
            "softplus, clip",
        ),
        (vec!["--cell", "ltc", "--layers", "2"], "one layer"),
    ] {
        let mut a = vec!["train", "--task", "reber", "--runs-dir", runs];
        a.extend(args.iter().copied());
        let err = fails(&a);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "no run folder is left behind"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Every cell trains on row-MNIST from the shared data through the CLI (small subsets).
#[test]
fn every_cell_trains_on_row_mnist_from_the_shared_data() {
    let Some(data) = remanence_tasks::datasets::shared_for_tests("datasets/mnist") else {
        return;
    };
    let root = tmp("mnist");
    let runs = root.to_str().unwrap();
    for cell in ["ltc", "cfc", "ctrnn", "odernn", "lstm", "gru", "srn"] {
        // A backbone only where the cell has one: other cells refuse settings they would ignore.
        let backbone: &[&str] = match cell {
            "cfc" | "odernn" => &["--backbone-units", "8"],
            _ => &[],
        };
        let mut args = vec![
            "train",
            "--task",
            "mnist-rows",
            "--cell",
            cell,
            "--units",
            "8",
            "--data",
            data.to_str().unwrap(),
            "--train-size",
            "64",
            "--test-size",
            "32",
            "--epochs",
            "1",
            "--runs-dir",
            runs,
            "--name",
            cell,
        ];
        args.extend_from_slice(backbone);
        let out = ok(&args);
        assert!(
            out.contains("test accuracy") && out.contains("/32 digits"),
            "{cell}: {out}"
        );
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(root.join(cell).join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["task"]["kind"], "mnist-rows");
        assert_eq!(cfg["model"]["rnn"]["input_size"], 28);
    }
    std::fs::remove_dir_all(&root).unwrap();
}
