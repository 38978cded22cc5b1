//! `remanence continual` end to end on sequence lists (made up from the seed, so no data set is
//! needed): a run, a run stopped with --max-experiences and continued with --resume (the same
//! matrix), and the inputs it refuses (message on stderr, non-zero exit, nothing changed).
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
    let e = fails(&[
        "continual",
        "--scenario",
        "split-task:mnist-rows:2",
        "--method",
        "dual-net",
        "--runs-dir",
        r,
    ]);
    assert!(e.contains("task-incremental"), "{e}");
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
