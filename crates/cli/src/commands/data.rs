//! `remanence data`: which data sets exist, where each is looked for and whether it is there,
//! a check of a folder against the checksums the project ships, and the download of the sets
//! the Hugging Face Hub serves (through hf-hub's blocking client, into the hub cache).
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use remanence_tasks::datasets::{self, Dataset, HubRepoType, HubSource, DATASETS, DATA_ENV};

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
    /// Download a data set from the Hugging Face Hub (into the hub cache, $HF_HOME), place its
    /// files in its folder and check them. Offline ($HF_HUB_OFFLINE=1) only the cache is used.
    Fetch {
        /// The data set (see `remanence data list`).
        name: String,
        /// The folder to place the files in (default: datasets/<folder>).
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::List { data } => list(data.as_deref()),
        DataCommand::Verify { name, data } => verify(&name, data.as_deref()),
        DataCommand::Fetch { name, data } => fetch(&name, data),
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

/// Whether $HF_HUB_OFFLINE asks for no network (the values huggingface_hub accepts).
fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "on" | "yes" | "true"
        )
    })
}

fn hub_repo(hub: &HubSource) -> hf_hub::Repo {
    let kind = match hub.repo_type {
        HubRepoType::Dataset => hf_hub::RepoType::Dataset,
        HubRepoType::Model => hf_hub::RepoType::Model,
        HubRepoType::Space => hf_hub::RepoType::Space,
    };
    let revision = hub.revision.unwrap_or("main").to_string();
    hf_hub::Repo::with_revision(hub.repo.to_string(), kind, revision)
}

/// The hub cache's copy of `remote`, downloading it unless offline.
fn hub_file(repo: &hf_hub::Repo, remote: &str, offline: bool) -> Result<PathBuf> {
    if offline {
        return hf_hub::Cache::from_env()
            .repo(repo.clone())
            .get(remote)
            .ok_or_else(|| anyhow::anyhow!("HF_HUB_OFFLINE is set and the hub cache lacks it"));
    }
    use std::io::IsTerminal;
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(std::io::stderr().is_terminal())
        .build()?;
    Ok(api.repo(repo.clone()).get(remote)?)
}

/// Copies `from` to `to` through a temporary name; an existing `to` is kept when it holds the
/// same bytes and refused when it differs.
fn place(from: &Path, to: &Path) -> Result<&'static str> {
    if to.exists() {
        if std::fs::read(to)? == std::fs::read(from)? {
            return Ok("already there");
        }
        bail!(
            "{} exists and differs from the Hub's copy ({}): not overwritten; move it away and \
             run again",
            to.display(),
            from.display()
        );
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let tmp = to.with_file_name(format!(".{name}.part-{}", std::process::id()));
    let copied = std::fs::copy(from, &tmp).and_then(|_| std::fs::rename(&tmp, to));
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        bail!("cannot write {}: {e}", to.display());
    }
    Ok("placed")
}

fn fetch(name: &str, data: Option<PathBuf>) -> Result<()> {
    let set = datasets::find(name)?;
    let dir = data.unwrap_or_else(|| Path::new("datasets").join(set.folder));
    let Some(hub) = set.hub else {
        bail!(
            "data set {} is not served on the Hugging Face Hub, so `remanence data fetch` cannot \
             download it: get {} from where datasets/README.md says and place it in {}",
            set.name,
            set.required.join(", "),
            dir.display()
        );
    };
    let offline = hub_offline();
    let repo = hub_repo(&hub);
    let place_by_hand = |cause: String| {
        let lacking: Vec<&str> = hub
            .files
            .iter()
            .map(|(_, local)| *local)
            .filter(|local| !dir.join(local).is_file())
            .collect();
        anyhow::anyhow!(
            "cannot fetch data set {} from the Hugging Face Hub ({} `{}`): {cause}. Place {} in \
             {} by hand (datasets/README.md says where each set comes from), or run again online",
            set.name,
            match hub.repo_type {
                HubRepoType::Dataset => "data set",
                HubRepoType::Model => "model",
                HubRepoType::Space => "Space",
            },
            hub.repo,
            lacking.join(", "),
            dir.display()
        )
    };
    for (remote, local) in hub.files {
        let cached = hub_file(&repo, remote, offline)
            .map_err(|e| place_by_hand(format!("{remote}: {e}")))?;
        let state = place(&cached, &dir.join(local))?;
        println!("{local}: {state} in {}", dir.display());
    }
    verify(set.name, Some(&dir))
}
