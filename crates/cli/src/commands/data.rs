//! `remanence data`: which data sets exist, where each is looked for and whether it is there,
//! and a check of a folder against the checksums the project ships.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use remanence_tasks::datasets::{self, Dataset, DATASETS, DATA_ENV};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Every data set, where it is looked for, whether it is present and its size.
    List {
        /// Look in this folder (holding one sub-folder per data set) before $REMANENCE_DATA
        /// and datasets/.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Check a data set's files against the checksums the project ships.
    Verify {
        /// The data set (see `remanence data list`).
        name: String,
        /// Its folder (default: where `list` finds it).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::List { data } => list(data.as_deref()),
        DataCommand::Verify { name, data } => verify(&name, data.as_deref()),
    }
}

/// The folders `list` looks in for `set`: under `root` first when given.
fn candidates(set: &Dataset, root: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(r) = root {
        out.push((r.join(set.folder), "--data"));
    }
    out.extend(set.candidates(None));
    out
}

fn folder_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => folder_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn list(root: Option<&Path>) -> Result<()> {
    println!(
        "Data sets are looked for in --data DIR/<folder>, ${DATA_ENV}/<folder> ({}), then datasets/<folder>.",
        std::env::var(DATA_ENV).unwrap_or_else(|_| "unset".into())
    );
    for set in DATASETS {
        let tasks = if set.tasks.is_empty() {
            "no task yet".to_string()
        } else {
            format!("tasks: {}", set.tasks.join(", "))
        };
        println!("\n{} — {} ({tasks})", set.name, set.what);
        let mut found = false;
        for (dir, source) in candidates(set, root) {
            let missing = set.missing(&dir);
            let state = if !dir.is_dir() {
                "absent".to_string()
            } else if missing.is_empty() && !found {
                found = true;
                format!("present, {:.1} MB", folder_size(&dir) as f64 / 1e6)
            } else if missing.is_empty() {
                "present (not used: an earlier folder has it)".to_string()
            } else {
                format!("incomplete: lacks {}", missing.join(", "))
            };
            println!("  {:<16} {}  {state}", source, dir.display());
        }
        if !found {
            println!(
                "  not found: place {} in one of these folders",
                set.required.join(", ")
            );
        }
    }
    Ok(())
}

fn verify(name: &str, data: Option<&Path>) -> Result<()> {
    let set = datasets::find(name)?;
    let dir = set.locate(data)?;
    let v = set.verify(&dir);
    println!(
        "{}: {} of {} files match the shipped checksums ({:.1} MB read) in {}",
        set.name,
        v.ok,
        set.checksum_list().len(),
        v.bytes as f64 / 1e6,
        dir.display()
    );
    for m in &v.missing {
        println!("  missing: {m}");
    }
    for m in &v.mismatched {
        println!("  differs: {m}");
    }
    if !v.passed() {
        bail!(
            "{} in {} does not match: {} missing, {} different",
            set.name,
            dir.display(),
            v.missing.len(),
            v.mismatched.len()
        );
    }
    Ok(())
}
