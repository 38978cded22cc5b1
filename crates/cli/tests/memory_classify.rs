//! `remanence memory classify`: a trained run's recurrent features, product quantised, feed a
//! binary bipartite memory that learns the classes one at a time; the command writes one step
//! per class added (memory, nearest class mean, fine-tuned and joint read-outs), a picture and
//! its description, and refuses runs and settings it cannot use with a message naming them.
use std::path::{Path, PathBuf};
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
    let d = std::env::temp_dir().join(format!("remanence-mc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Trains a small model on `task` from the shared data set `data` into `root/name`.
fn train(root: &Path, name: &str, task: &str, data: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "--threads",
        "1",
        "train",
        "--task",
        task,
        "--cell",
        "gru",
        "--epochs",
        "1",
        "--data",
        data.to_str().unwrap(),
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

/// Runs `memory classify` expecting failure with exit code 1; returns stderr.
fn fails(args: &[&str]) -> String {
    let mut a = vec!["--threads", "1", "memory", "classify"];
    a.extend_from_slice(args);
    let o = run(&a);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn accuracy(step: &serde_json::Value, key: &str) -> f64 {
    let v = step[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {step}"));
    assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    v
}

#[test]
fn classes_added_one_at_a_time_on_row_mnist_features() {
    let Some(mnist) = remanence_tasks::datasets::shared_for_tests("datasets/mnist") else {
        return;
    };
    let root = tmp("mnist");
    let dir = train(
        &root,
        "m",
        "mnist-rows",
        &mnist,
        &[
            "--hidden",
            "16",
            "--train-size",
            "500",
            "--test-size",
            "200",
        ],
    );
    let d = dir.to_str().unwrap();
    let out = root.join("classify");
    let o = run(&[
        "--threads",
        "1",
        "memory",
        "classify",
        "--run",
        d,
        "--data",
        mnist.to_str().unwrap(),
        "--segments",
        "4",
        "--anchors",
        "8",
        "--test-per-class",
        "15",
        "--order",
        "shuffled",
        "--seed",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("memory") && stdout.contains("fine-tune") && stdout.contains("joint"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("classify.json")).unwrap()).unwrap();
    // The run's training set: 500 sequences; final state of one GRU layer of 16 units.
    assert_eq!(report["train_sequences"], 500);
    assert_eq!(report["feature_dim"], 16);
    assert_eq!(report["settings"]["features"], "final-state");
    assert_eq!(report["settings"]["segments"], 4);
    assert_eq!(report["settings"]["anchors"], 8);
    let order: Vec<u64> = report["class_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    // 500 MNIST digits hold every class; shuffled by the seed, so not in natural order.
    assert_eq!(sorted, (0..10).collect::<Vec<u64>>());
    assert_ne!(order, sorted, "--order shuffled");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 10, "one entry per class added");
    let mut tests = 0;
    for (k, s) in steps.iter().enumerate() {
        assert_eq!(s["classes_added"], k as u64 + 1);
        assert_eq!(s["class"], order[k]);
        for key in [
            "memory_accuracy",
            "ncm_accuracy",
            "fine_tune_accuracy",
            "joint_accuracy",
        ] {
            accuracy(s, key);
        }
        // At most 15 test sequences per class, and more classes mean more of them.
        let n = s["test_sequences"].as_u64().unwrap();
        assert!(n > tests && n <= 15 * (k as u64 + 1), "{s}");
        tests = n;
        assert!(s["memory_store_s"].as_f64().unwrap() >= 0.0);
    }
    // One class learnt: every method can only answer it.
    for key in [
        "memory_accuracy",
        "ncm_accuracy",
        "fine_tune_accuracy",
        "joint_accuracy",
    ] {
        assert_eq!(accuracy(&steps[0], key), 1.0, "{key}");
    }
    let timings = &report["timings"];
    assert_eq!(
        timings["memory_store_s_per_class"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    for key in ["feature_extraction_train_s", "pq_fit_s", "total_s"] {
        assert!(timings[key].as_f64().unwrap() >= 0.0, "{key}");
    }
    // The picture is a PNG, described beside it; no temporary file is left.
    let png = std::fs::read(out.join("classify.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let md = std::fs::read_to_string(out.join("classify.md")).unwrap();
    assert!(md.contains("fine-tune") && md.contains("| 10 |"), "{md}");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["classify.json", "classify.md", "classify.png"]);
    assert_eq!(
        std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.'))
            .count(),
        0,
        "no temporary folder is left"
    );

    // The same settings give the same accuracies (everything is seeded).
    let again = root.join("again");
    let o = run(&[
        "--threads",
        "1",
        "memory",
        "classify",
        "--run",
        d,
        "--segments",
        "4",
        "--anchors",
        "8",
        "--test-per-class",
        "15",
        "--order",
        "shuffled",
        "--seed",
        "3",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(again.join("classify.json")).unwrap())
            .unwrap();
    for (a, b) in steps.iter().zip(second["steps"].as_array().unwrap()) {
        for key in [
            "memory_accuracy",
            "ncm_accuracy",
            "fine_tune_accuracy",
            "joint_accuracy",
        ] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }

    // Other features and sampled anchors; per-class caps on the training set.
    let out2 = root.join("mean");
    let o = run(&[
        "--threads",
        "1",
        "memory",
        "classify",
        "--run",
        d,
        "--features",
        "mean-output",
        "--segments",
        "16",
        "--anchors",
        "4",
        "--anchors-from",
        "sample",
        "--train-per-class",
        "20",
        "--test-per-class",
        "5",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("classify.json")).unwrap())
            .unwrap();
    assert_eq!(r2["train_sequences"], 200);
    assert_eq!(r2["test_sequences"], 50);
    assert_eq!(r2["settings"]["anchors_from"], "sample");
    let steps2 = r2["steps"].as_array().unwrap();
    assert_eq!(steps2.len(), 10);
    // Natural order.
    for (k, s) in steps2.iter().enumerate() {
        assert_eq!(s["class"], k as u64);
        assert_eq!(s["train_sequences"], 20);
    }
    assert_eq!(accuracy(&steps2[0], "memory_accuracy"), 1.0);

    // Refusals, each naming the problem.
    let e = fails(&["--run", d, "--out", out.to_str().unwrap()]);
    assert!(
        e.contains("already exists") && e.contains("not an empty folder"),
        "{e}"
    );
    let fresh = root.join("fresh");
    let f = fresh.to_str().unwrap();
    let e = fails(&["--run", d, "--anchors", "501", "--out", f]);
    assert!(e.contains("501") && e.contains("500"), "{e}");
    let e = fails(&[
        "--run",
        d,
        "--anchors",
        "30",
        "--train-per-class",
        "2",
        "--out",
        f,
    ]);
    assert!(e.contains("30 training vectors, got 20"), "{e}");
    let e = fails(&["--run", d, "--features", "layer:2", "--out", f]);
    assert!(e.contains("layer:2") && e.contains("1 layer"), "{e}");
    let e = fails(&["--run", d, "--segments", "17", "--out", f]);
    assert!(e.contains("17") && e.contains("dimension 16"), "{e}");
    let missing = root.join("no-such-run");
    let e = fails(&["--run", missing.to_str().unwrap(), "--out", f]);
    assert!(
        e.contains("no-such-run") && e.contains("no such run folder"),
        "{e}"
    );
    assert!(!fresh.exists(), "nothing is written on failure");
    std::fs::remove_dir_all(&root).unwrap();
}

/// A run of a regression task (traffic volume) has no classes to add.
#[test]
fn a_regression_run_is_refused() {
    let Some(traffic) = remanence_tasks::datasets::shared_for_tests("datasets/traffic") else {
        return;
    };
    let root = tmp("traffic");
    let dir = train(
        &root,
        "t",
        "traffic",
        &traffic,
        &["--hidden", "8", "--train-size", "64", "--test-size", "32"],
    );
    let out = root.join("c");
    // With the default settings (16 segments of 8 values would not fit either): the task is
    // what is named.
    let e = fails(&[
        "--run",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        e.contains("traffic") && e.contains("regression-per-step") && e.contains("classifies"),
        "{e}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&root).unwrap();
}
