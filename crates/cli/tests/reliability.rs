//! What a demanding user tried and found broken, each with a test that failed before its fix,
//! plus the run folders written by earlier versions, which must keep loading, and a catalogue of
//! bad inputs per command (input, exit code, words of the message).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};
use remanence_cells::io;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_remanence"))
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-rel-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/run-folders-v1")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn small_run(root: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "train",
        "--task",
        "reber",
        "--cell",
        "srn",
        "--hidden",
        "6",
        "--epochs",
        "1",
        "--train-size",
        "16",
        "--test-size",
        "16",
        "--batch-size",
        "8",
        "--early-stop",
        "false",
        "--runs-dir",
        root.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    root.join(name)
}

/// Run folders written by the code before the restructuring (LSTM; LTC with an NCP wiring and
/// the clip constraint; CfC in no-gate mode) evaluate to the same numbers, infer the same
/// outputs and resume.
#[test]
fn run_folders_of_the_previous_layout_still_load() {
    let root = tmp("v1");
    for name in ["lstm-v1", "ltc-v1", "cfc-v1"] {
        let dir = root.join(name);
        copy_dir(&data(name), &dir);
        let d = dir.to_str().unwrap();
        let o = run(&["eval", "--run", d, "--json"]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let now: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let then: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(data(&format!("{name}.eval.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(now, then, "{name}");

        let y_path = root.join(format!("{name}.y.safetensors"));
        let o = run(&[
            "--threads",
            "1",
            "infer",
            "--run",
            d,
            "--input",
            data("x.safetensors").to_str().unwrap(),
            "--output",
            y_path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let (now, _) = io::read(&y_path, &Device::Cpu).unwrap();
        let (then, _) = io::read(&data(&format!("{name}.y.safetensors")), &Device::Cpu).unwrap();
        assert_eq!(now.len(), then.len());
        for (k, t) in &then {
            let diff: f32 = (&now[k] - t)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(diff < 1e-6, "{name} {k}: {diff}");
        }

        let epochs = if name == "lstm-v1" { "3" } else { "2" };
        let o = run(&["train", "--resume", d, "--epochs", epochs]);
        assert!(o.status.success(), "{name}: {}", text(&o));
        let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count().to_string(), epochs, "{name}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// A model whose weights are NaN is never reported as solved; eval and infer fail and say why.
#[test]
fn a_broken_model_is_never_reported_as_solved() {
    let root = tmp("nan-model");
    let dir = small_run(&root, "r", &[]);
    let model = dir.join("model.safetensors");
    let (mut t, meta) = io::read(&model, &Device::Cpu).unwrap();
    let w = t["rnn.weight_hh_l0"].clone();
    t.insert(
        "rnn.weight_hh_l0".into(),
        (w.ones_like().unwrap() * f64::NAN).unwrap(),
    );
    let mut named: Vec<(String, Tensor)> = t.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    io::write(&model, &named, Some(meta)).unwrap();

    let d = dir.to_str().unwrap();
    let o = run(&["eval", "--run", d]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("non-finite"), "{out}");
    assert!(!out.contains("; solved ("), "{out}");
    assert!(out.contains("0/16 test strings"), "{out}");

    let x = Tensor::ones((2, 3, 7), candle_core::DType::F32, &Device::Cpu).unwrap();
    let xin = root.join("x.safetensors");
    io::write(&xin, &[("x".to_string(), x)], None).unwrap();
    let yout = root.join("y.safetensors");
    let o = run(&[
        "infer",
        "--run",
        d,
        "--input",
        xin.to_str().unwrap(),
        "--output",
        yout.to_str().unwrap(),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("non-finite"), "{}", text(&o));
    assert!(!yout.exists(), "nothing is written");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A relative `--data` is stored resolved, so `eval` and `--resume` work from anywhere, and both
/// take `--data` to point a moved run at its data.
#[test]
fn relative_data_paths_are_stored_resolved_and_can_be_overridden() {
    let Some(mnist) = shared_mnist() else { return };
    let root = tmp("data-path");
    let parent = mnist.parent().unwrap();
    let runs = root.to_str().unwrap();
    let o = run_in(
        parent,
        &[
            "train",
            "--task",
            "mnist-rows",
            "--cell",
            "srn",
            "--hidden",
            "4",
            "--epochs",
            "1",
            "--train-size",
            "32",
            "--test-size",
            "32",
            "--data",
            mnist.file_name().unwrap().to_str().unwrap(),
            "--runs-dir",
            runs,
            "--name",
            "m",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = root.join("m");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let stored = PathBuf::from(cfg["task"]["data_dir"].as_str().unwrap());
    assert!(stored.is_absolute(), "{stored:?}");
    let d = dir.to_str().unwrap();
    let o = run_in(&root, &["eval", "--run", d]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["eval", "--run", d, "--data", root.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains(runs), "{}", text(&o));
    let o = run(&[
        "train",
        "--resume",
        d,
        "--epochs",
        "2",
        "--data",
        mnist.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&root).unwrap();
}

fn shared_mnist() -> Option<PathBuf> {
    let p = remanence_tasks::datasets::shared_for_tests("datasets/mnist")?;
    Some(p.canonicalize().unwrap())
}

/// One process trains in a run folder at a time; the lock names the holder and dies with it;
/// temporary files of dead writers are removed.
#[test]
fn one_writer_per_run_folder_and_no_litter() {
    let root = tmp("lock");
    let dir = small_run(&root, "r", &[]);
    let d = dir.to_str().unwrap();
    // A writer killed mid-write left this behind.
    let litter = dir.join("checkpoint.safetensors.999999.tmp");
    std::fs::write(&litter, b"partial").unwrap();
    // Hold the lock from this process, as a second trainer would.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("run.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let o = run(&["train", "--resume", d, "--epochs", "2"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("another process is training"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    drop(lock);
    let o = run(&["train", "--resume", d, "--epochs", "2"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !litter.exists(),
        "the dead writer's temporary file is removed"
    );
    let pid = std::fs::read_to_string(dir.join("run.lock")).unwrap();
    assert!(pid.trim().parse::<u32>().is_ok(), "{pid}");
    std::fs::remove_dir_all(&root).unwrap();
}

/// The catalogue: for each command, bad inputs with the exit code and the words the message
/// must hold. Every case also leaves no run folder behind.
#[test]
fn catalogue_of_bad_inputs() {
    let root = tmp("catalogue");
    let runs = root.join("runs");
    let r = runs.to_str().unwrap();
    let good = small_run(&root, "good", &[]);
    let g = good.to_str().unwrap();
    let missing = root.join("missing.safetensors");
    let m = missing.to_str().unwrap();
    let train = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--task", "reber", "--runs-dir", r]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let changed = root.join("ozone-changed");
    std::fs::create_dir_all(&changed).unwrap();
    std::fs::write(changed.join("eighthr.data"), "1/1/1998,0.0\r\n").unwrap();
    let owned = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
    // Moving MNIST videos as frame folders (read before the MNIST digits are looked for): one
    // sequence of 20 frames whose first is a PNG of the wrong size, one whose first is not an
    // image, one of 19 frames.
    let video = |name: &str, frames: usize, first: &[u8]| -> String {
        let seq = root.join(name).join("seq0");
        std::fs::create_dir_all(&seq).unwrap();
        for f in 0..frames {
            std::fs::write(seq.join(format!("{f:02}.png")), first).unwrap();
        }
        root.join(name).to_str().unwrap().to_string()
    };
    let strip =
        remanence_tasks::moving_mnist::strip_png_bytes(&[0.0; 40960], &[0.0; 40960]).unwrap();
    let wrong_size = video("video-size", 20, &strip);
    let corrupt = video("video-corrupt", 20, b"not a picture");
    let short = video("video-short", 19, &strip);
    let mm = |v: &str, extra: &[&str]| -> Vec<String> {
        let mut a = owned(&[
            "train",
            "--task",
            "moving-mnist",
            "--video",
            v,
            "--runs-dir",
            r,
        ]);
        a.extend(owned(extra));
        a
    };
    let cont = |extra: &[&str]| -> Vec<String> {
        let mut a = owned(&["continual", "--runs-dir", r]);
        a.extend(owned(extra));
        a
    };
    // memory: a small stored network for the recall rows.
    let mem = root.join("memory-net");
    let o = run(&[
        "memory",
        "store",
        "--clusters",
        "4",
        "--fanals",
        "16",
        "--messages",
        "50",
        "--out",
        mem.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mem_dir = mem.to_str().unwrap();
    let mem_out = runs.join("memory-out");
    let mo = mem_out.to_str().unwrap();
    let cases: Vec<(Vec<String>, i32, Vec<&str>)> = vec![
        // Data sets: unknown names, missing folders and changed files.
        (
            owned(&["data", "verify", "mnist-foo"]),
            1,
            vec!["unknown data set", "fsdd"],
        ),
        (
            owned(&[
                "data",
                "verify",
                "ozone",
                "--data",
                changed.to_str().unwrap(),
            ]),
            1,
            vec!["differs: eighthr.data", "does not match"],
        ),
        (
            owned(&["data", "verify", "ozone", "--data", "/nowhere"]),
            1,
            vec!["/nowhere (no such folder)", "eighthr.data"],
        ),
        // Fetching: unknown names, and sets the Hugging Face Hub does not serve.
        (
            owned(&["data", "fetch", "no-such-set"]),
            1,
            vec!["unknown data set", "fsdd"],
        ),
        (
            owned(&["data", "fetch", "fsdd", "--data", "/nowhere/fsdd"]),
            1,
            vec![
                "not served",
                "recordings/",
                "/nowhere/fsdd",
                "datasets/README.md",
            ],
        ),
        (
            owned(&[
                "train",
                "--task",
                "mnist-rows",
                "--data",
                "/nowhere",
                "--runs-dir",
                r,
            ]),
            1,
            vec![
                "mnist",
                "/nowhere (no such folder)",
                "train-images-idx3-ubyte.gz",
            ],
        ),
        // Spoken digits: options checked before any file is read, refused on other tasks.
        (
            owned(&[
                "train",
                "--task",
                "fsdd",
                "--data",
                "/nowhere",
                "--runs-dir",
                r,
            ]),
            1,
            vec!["fsdd", "/nowhere (no such folder)", "recordings/"],
        ),
        (
            owned(&["train", "--task", "fsdd", "--n-mfcc", "50", "--runs-dir", r]),
            1,
            vec!["n_mfcc"],
        ),
        (
            owned(&[
                "train",
                "--task",
                "fsdd",
                "--split",
                "random",
                "--runs-dir",
                r,
            ]),
            2,
            vec!["official, speaker:NAME"],
        ),
        (
            train(&["--features", "log-mel"]),
            1,
            vec!["--features", "fsdd"],
        ),
        // Moving MNIST frame folders: the bad frame or sequence is named.
        (
            mm(&wrong_size, &[]),
            1,
            vec![
                "seq0/00.png",
                "frame of 658×130 pixels, expected 64×64",
                "--skip-bad",
            ],
        ),
        (
            mm(&corrupt, &[]),
            1,
            vec!["seq0/00.png", "not a readable PNG or JPEG image"],
        ),
        (
            mm(&short, &["--skip-bad"]),
            1,
            vec![
                "seq0",
                "all 1 of its sequences are bad",
                "holds 19 of 20 frames",
            ],
        ),
        (
            train(&["--skip-bad"]),
            1,
            vec!["--skip-bad", "fsdd, moving-mnist"],
        ),
        // Numbers: finiteness and range, naming the flag.
        (
            train(&["--weight-decay", "nan"]),
            1,
            vec!["--weight-decay", "NaN"],
        ),
        (train(&["--momentum", "nan"]), 1, vec!["--momentum"]),
        (
            train(&["--momentum", "1.5"]),
            1,
            vec!["--momentum", "[0, 1)"],
        ),
        (train(&["--lr", "-0.1"]), 1, vec!["--lr"]),
        (train(&["--clip", "inf"]), 1, vec!["--clip"]),
        (train(&["--target", "nan"]), 1, vec!["--target"]),
        (train(&["--hidden", "-4"]), 2, vec!["--hidden", "positive"]),
        (train(&["--epochs", "0"]), 2, vec!["--epochs", "positive"]),
        (train(&["--batch-size", "-1"]), 2, vec!["positive"]),
        (train(&["--seed", "-3"]), 2, vec!["--seed"]),
        // Sizes that would not fit.
        (
            train(&["--hidden", "100000"]),
            1,
            vec!["need about", "available", "--hidden"],
        ),
        // Settings the chosen cell or task would ignore.
        (
            train(&["--cell", "lstm", "--activation", "sigmoid"]),
            1,
            vec!["--activation", "srn"],
        ),
        (
            train(&["--cell", "gru", "--wiring", "auto-ncp:2"]),
            1,
            vec!["--wiring", "ltc"],
        ),
        (
            train(&["--cell", "lstm", "--solver", "rk4"]),
            1,
            vec!["--solver", "ctrnn"],
        ),
        (
            train(&["--data", "/nowhere"]),
            1,
            vec!["--data", "generates"],
        ),
        // Unknown choices and flags.
        (train(&["--cell", "tcn"]), 2, vec!["srn, lstm, gru"]),
        (
            train(&["--kernel", "turbo"]),
            2,
            vec!["auto, fused, reference"],
        ),
        (train(&["--hiden", "3"]), 2, vec!["--hidden"]),
        // Resume: only --epochs and --data may change.
        (
            vec![
                "train".into(),
                "--resume".into(),
                g.into(),
                "--lr".into(),
                "0.1".into(),
            ],
            1,
            vec!["--lr", "only --epochs"],
        ),
        // Eval and infer.
        (
            vec![
                "eval".into(),
                "--run".into(),
                root.join("nope").to_str().unwrap().into(),
            ],
            1,
            vec!["no such run folder"],
        ),
        (
            vec![
                "eval".into(),
                "--run".into(),
                g.into(),
                "--data".into(),
                "/nowhere".into(),
            ],
            1,
            vec!["--data", "generates"],
        ),
        (
            vec![
                "infer".into(),
                "--run".into(),
                g.into(),
                "--input".into(),
                m.into(),
                "--output".into(),
                root.join("y.safetensors").to_str().unwrap().into(),
            ],
            1,
            vec!["missing.safetensors"],
        ),
        // continual: scenarios and methods that make no sense.
        (
            cont(&["--scenario", "split:reber:2"]),
            1,
            vec!["split:reber:2", "not a sequence classification"],
        ),
        (cont(&["--scenario", "lists:4:5:6:10"]), 1, vec!["L·S ≤ V"]),
        (
            cont(&["--scenario", "wrong:x"]),
            1,
            vec!["unknown scenario kind", "split-task"],
        ),
        (
            cont(&[
                "--scenario",
                "lists:2:2:4:8",
                "--method",
                "dual-net",
                "--transfer-size",
                "0",
            ]),
            1,
            vec!["--transfer-size"],
        ),
        (
            cont(&[
                "--scenario",
                "lists:2:2:4:8",
                "--method",
                "dual-net",
                "--reverberations",
                "-1",
            ]),
            2,
            vec!["--reverberations"],
        ),
        (
            cont(&[
                "--scenario",
                "lists:2:2:4:8",
                "--method",
                "dual-net",
                "--pseudo",
                "dream",
            ]),
            1,
            vec!["--pseudo", "transition"],
        ),
        (
            cont(&[
                "--scenario",
                "lists:2:2:4:8",
                "--method",
                "dual-net",
                "--pseudo-per-example",
                "nan",
            ]),
            1,
            vec!["--pseudo-per-example"],
        ),
        (
            cont(&["--scenario", "lists:2:2:4:8", "--method", "lwf"]),
            1,
            vec!["lwf", "next item"],
        ),
        (
            cont(&["--scenario", "lists:2:2:4:8", "--method", "magic"]),
            1,
            vec!["unknown method", "dual-net"],
        ),
        (owned(&["continual", "--resume", g]), 1, vec!["continual"]),
        // probe: settings a probe cannot honour; nothing is written.
        (
            owned(&[
                "probe",
                "memory-capacity",
                "--cell",
                "lstm",
                "--k-max",
                "300",
                "--washout",
                "100",
                "--out",
                r,
            ]),
            1,
            vec!["k_max = 300", "washout"],
        ),
        (
            owned(&["probe", "esp", "--out", r]),
            1,
            vec!["--cell", "--run"],
        ),
        (
            owned(&["probe", "memory-capacity", "--run", m, "--out", r]),
            1,
            vec!["missing.safetensors"],
        ),
        (
            owned(&[
                "probe",
                "distinguishability",
                "--cell",
                "lstm",
                "--widths",
                "0",
                "--out",
                r,
            ]),
            2,
            vec!["--widths"],
        ),
        (
            owned(&["probe", "trajectory-length", "--width", "0", "--out", r]),
            2,
            vec!["--width"],
        ),
        // memory: sizes, shapes and folders that cannot be used; nothing is overwritten.
        (
            owned(&["memory", "store", "--fanals", "0", "--out", mo]),
            2,
            vec!["--fanals", "positive"],
        ),
        (
            owned(&[
                "memory",
                "store",
                "--clusters",
                "4",
                "--active",
                "5",
                "--out",
                mo,
            ]),
            1,
            vec!["--active", "5 clusters", "network of 4"],
        ),
        (
            owned(&["memory", "store", "--messages", "10", "--out", g]),
            1,
            vec!["already exists", "nothing was overwritten"],
        ),
        (
            owned(&[
                "memory", "recall", "--net", mem_dir, "--erase", "5", "--out", mo,
            ]),
            1,
            vec!["--erase 5", "occupies 4"],
        ),
        (
            owned(&["memory", "recall", "--net", "/nowhere", "--out", mo]),
            1,
            vec!["/nowhere", "no such folder"],
        ),
        (
            owned(&["memory", "recall", "--net", g, "--out", mo]),
            1,
            vec!["store.json", "remanence memory store"],
        ),
        (
            owned(&["memory", "bench", "--messages", "20,10", "--out", mo]),
            1,
            vec!["--messages", "ascending"],
        ),
        // bench: a device the binary cannot use, before any measurement.
        (
            owned(&["bench", "--device", "cuda", "--cells", "lstm"]),
            1,
            vec!["--device", "--features cuda"],
        ),
        // bench --against pytorch: a Python without torch, and a GPU device, refused up front.
        (
            owned(&[
                "bench",
                "--cells",
                "lstm",
                "--against",
                "pytorch",
                "--python",
                "/nonexistent/python3",
            ]),
            1,
            vec!["--against pytorch", "/nonexistent/python3"],
        ),
        (
            owned(&[
                "bench",
                "--cells",
                "lstm",
                "--against",
                "pytorch",
                "--wiring",
                "random:0.5",
                "--cells",
                "ltc",
            ]),
            1,
            vec!["fully connected"],
        ),
    ];
    for (args, code, words) in cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&a);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(code), "{a:?}: {out}");
        for w in words {
            assert!(out.contains(w), "{a:?}: `{w}` missing in: {out}");
        }
        assert!(
            !runs.exists() || std::fs::read_dir(&runs).unwrap().count() == 0,
            "{a:?} left a run folder"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

/// `remanence data fetch` offline ($HF_HUB_OFFLINE=1): with an empty hub cache the message names
/// the set, every file and the folder to put them in, and nothing is written; with the files in
/// the cache they are placed (an existing different file is never overwritten) and checked.
#[test]
fn data_fetch_offline_uses_only_the_hub_cache() {
    let root = tmp("fetch-offline");
    let hf_home = root.join("hf");
    std::fs::create_dir_all(&hf_home).unwrap();
    let target = root.join("mnist");
    let fetch = |set: &str, dir: &Path| {
        bin()
            .args(["data", "fetch", set, "--data", dir.to_str().unwrap()])
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", &hf_home)
            .output()
            .expect("the binary runs")
    };
    let o = fetch("mnist", &target);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for w in [
        "mnist",
        "HF_HUB_OFFLINE",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        target.to_str().unwrap(),
    ] {
        assert!(out.contains(w), "`{w}` missing in: {out}");
    }
    assert!(
        !target.exists(),
        "an offline fetch created {}",
        target.display()
    );
    assert_eq!(
        std::fs::read_dir(&hf_home).unwrap().count(),
        0,
        "the cache was written"
    );

    // A hub cache holding ozone's file (not UCI's bytes) at the pinned revision.
    let commit = "93d8088b7a67655213a5f6d15aae635d4aabb468";
    let repo = hf_home.join("hub/datasets--mstz--ozone");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join(commit), commit).unwrap();
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::write(snapshot.join("eighthr.data"), "cached\r\n").unwrap();

    let ozone = root.join("ozone");
    std::fs::create_dir_all(&ozone).unwrap();
    std::fs::write(ozone.join("eighthr.data"), "mine\r\n").unwrap();
    let o = fetch("ozone", &ozone);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("not overwritten"), "{out}");
    assert_eq!(
        std::fs::read(ozone.join("eighthr.data")).unwrap(),
        b"mine\r\n"
    );

    std::fs::remove_file(ozone.join("eighthr.data")).unwrap();
    let o = fetch("ozone", &ozone);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("eighthr.data: placed"), "{out}");
    assert!(out.contains("differs: eighthr.data"), "{out}");
    assert_eq!(
        std::fs::read(ozone.join("eighthr.data")).unwrap(),
        b"cached\r\n"
    );
    let litter: Vec<_> = std::fs::read_dir(&ozone).unwrap().flatten().collect();
    assert_eq!(litter.len(), 1, "{litter:?}");
    std::fs::remove_dir_all(&root).unwrap();
}
