//! Replays every input kept in `fuzz/regressions/<target>/` (crashes the fuzzers once found) and
//! the fuzzers' seeds in `fuzz/seeds/<target>/` through the functions the fuzz targets run.
use std::path::PathBuf;

use remanence_train::fuzzing::{self, Reached};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = root.join(kind).join(target);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{} is missing: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n != ".gitkeep") {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Replays a target's inputs (none may panic) and checks that every seed reaches `deepest`,
/// so the fuzzer starts from inputs that exercise the whole loader.
fn replay(target: &str, run: fn(&[u8]) -> Reached, deepest: Reached) {
    let inputs = inputs(target);
    let seeds = inputs
        .iter()
        .filter(|(p, _)| p.to_string_lossy().contains("seeds"))
        .count();
    assert!(seeds > 0, "no seeds for {target}");
    for (path, bytes) in &inputs {
        let reached = run(bytes);
        if path.to_string_lossy().contains("seeds") {
            assert_eq!(reached, deepest, "seed {} stops early", path.display());
        }
    }
}

#[test]
fn idx_file_inputs_do_not_crash() {
    replay("idx_file", fuzzing::idx_file, Reached::Loaded);
}

#[test]
fn run_folder_inputs_do_not_crash() {
    replay("run_folder", fuzzing::run_folder, Reached::Ran);
}

#[test]
fn wav_file_inputs_do_not_crash() {
    replay("wav_file", fuzzing::wav_file, Reached::Loaded);
}

#[test]
fn series_csv_inputs_do_not_crash() {
    replay("series_csv", fuzzing::series_csv, Reached::Loaded);
}

#[test]
fn chorale_json_inputs_do_not_crash() {
    replay("chorale_json", fuzzing::chorale_json, Reached::Loaded);
}

#[test]
fn npy_file_inputs_do_not_crash() {
    replay("npy_file", fuzzing::npy_file, Reached::Loaded);
}
