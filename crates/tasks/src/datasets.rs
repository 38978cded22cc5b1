//! The data sets Remanence reads from disk: what each holds, where it is looked for, and the
//! checksums the project ships for it (`datasets/checksums/<folder>.sha256`, `sha256sum` format).
//!
//! A data set's folder is found in this order: the folder given (`--data DIR`), then
//! `$REMANENCE_DATA/<folder>`, then `datasets/<folder>` under the working folder. A folder counts
//! only when every required file is in it; otherwise the error names the files and the places
//! looked in.
use std::path::{Path, PathBuf};

use crate::error::{Result, TaskError};

/// The environment variable naming a folder that holds data sets, one sub-folder each.
pub const DATA_ENV: &str = "REMANENCE_DATA";

/// A data set read from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dataset {
    /// The name `remanence data` takes.
    pub name: &'static str,
    /// Its folder under `datasets/` or `$REMANENCE_DATA`.
    pub folder: &'static str,
    pub what: &'static str,
    /// Paths (relative to the folder) that must exist: files, or folders ending in `/`.
    pub required: &'static [&'static str],
    /// The tasks that read it.
    pub tasks: &'static [&'static str],
    /// The checksums shipped with the project, `sha256  relative/path` per line.
    pub checksums: &'static str,
    /// Where the Hugging Face Hub serves the original files (`remanence data fetch`), if it does.
    pub hub: Option<HubSource>,
}

/// The kind of Hugging Face Hub repository a data set's files are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubRepoType {
    Dataset,
    Model,
    Space,
}

/// A Hugging Face Hub repository serving a data set's original files (the shipped checksums
/// decide whether the bytes match): listed only where the files were seen there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSource {
    /// `owner/name`.
    pub repo: &'static str,
    pub repo_type: HubRepoType,
    /// The commit the files were seen at (`None`: `main`).
    pub revision: Option<&'static str>,
    /// (path in the repository, path under the data set's folder).
    pub files: &'static [(&'static str, &'static str)],
}

const MNIST_FILES: &[&str] = &[
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// MNIST's four IDX .gz files in the `chrisjay/mnist-adversarial` Space (torchvision's
/// `MNIST/raw` folder, the original sizes: 9,912,422, 28,881, 1,648,877 and 4,542 bytes).
const MNIST_HUB: HubSource = HubSource {
    repo: "chrisjay/mnist-adversarial",
    repo_type: HubRepoType::Space,
    revision: Some("46eef9fd6de341ecb5d31167d4a0fa02cd6b01bb"),
    files: &[
        (
            "files/MNIST/raw/train-images-idx3-ubyte.gz",
            "train-images-idx3-ubyte.gz",
        ),
        (
            "files/MNIST/raw/train-labels-idx1-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
        ),
        (
            "files/MNIST/raw/t10k-images-idx3-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
        ),
        (
            "files/MNIST/raw/t10k-labels-idx1-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        ),
    ],
};

/// UCI's `eighthr.data` in the `mstz/ozone` data set, at the commit that uploaded it (later
/// commits replace it with CSV splits).
const OZONE_HUB: HubSource = HubSource {
    repo: "mstz/ozone",
    repo_type: HubRepoType::Dataset,
    revision: Some("93d8088b7a67655213a5f6d15aae635d4aabb468"),
    files: &[("eighthr.data", "eighthr.data")],
};

/// Every data set, in the order `remanence data list` prints them.
pub const DATASETS: &[Dataset] = &[
    Dataset {
        name: "mnist",
        folder: "mnist",
        what: "MNIST handwritten digits, the original IDX .gz files",
        required: MNIST_FILES,
        tasks: &[
            "mnist-rows",
            "mnist-pixels",
            "mnist-pixels-permuted",
            "moving-mnist",
            "moving-mnist-digits",
        ],
        checksums: include_str!("../../../datasets/checksums/mnist.sha256"),
        hub: Some(MNIST_HUB),
    },
    Dataset {
        name: "fashion-mnist",
        folder: "fashion_mnist",
        what: "Fashion-MNIST, the original IDX .gz files",
        required: MNIST_FILES,
        tasks: &[],
        checksums: include_str!("../../../datasets/checksums/fashion_mnist.sha256"),
        hub: None,
    },
    Dataset {
        name: "fsdd",
        folder: "fsdd",
        what: "Free Spoken Digit Dataset v1.0.10: 3,000 WAV files, 8 kHz mono",
        required: &["recordings/"],
        tasks: &["fsdd"],
        checksums: include_str!("../../../datasets/checksums/fsdd.sha256"),
        hub: None,
    },
    Dataset {
        name: "jsb-chorales",
        folder: "jsb_chorales",
        what: "JSB chorales, Boulanger-Lewandowski split, Coconet JSON encoding",
        required: &["jsb-chorales-quarter.json"],
        tasks: &["jsb-chorales", "bach-soprano"],
        checksums: include_str!("../../../datasets/checksums/jsb_chorales.sha256"),
        hub: None,
    },
    Dataset {
        name: "occupancy",
        folder: "occupancy",
        what: "UCI Occupancy Detection (LTC paper)",
        required: &["datatraining.txt", "datatest.txt", "datatest2.txt"],
        tasks: &["occupancy"],
        checksums: include_str!("../../../datasets/checksums/occupancy.sha256"),
        hub: None,
    },
    Dataset {
        name: "traffic",
        folder: "traffic",
        what: "UCI Metro Interstate Traffic Volume (LTC paper)",
        required: &["Metro_Interstate_Traffic_Volume.csv"],
        tasks: &["traffic"],
        checksums: include_str!("../../../datasets/checksums/traffic.sha256"),
        hub: None,
    },
    Dataset {
        name: "ozone",
        folder: "ozone",
        what: "UCI Ozone Level Detection, 8-hour set (LTC paper)",
        required: &["eighthr.data"],
        tasks: &["ozone"],
        checksums: include_str!("../../../datasets/checksums/ozone.sha256"),
        hub: Some(OZONE_HUB),
    },
];

/// The data set called `name` (or stored in the folder `name`).
pub fn find(name: &str) -> Result<&'static Dataset> {
    DATASETS
        .iter()
        .find(|d| d.name == name || d.folder == name)
        .ok_or_else(|| {
            let names: Vec<_> = DATASETS.iter().map(|d| d.name).collect();
            TaskError::Config(format!(
                "unknown data set `{name}`; data sets: {}",
                names.join(", ")
            ))
        })
}

impl Dataset {
    /// The places looked in, in order, with where each comes from.
    pub fn candidates(&self, data_dir: Option<&Path>) -> Vec<(PathBuf, &'static str)> {
        if let Some(d) = data_dir {
            return vec![(d.to_path_buf(), "--data")];
        }
        let mut out = Vec::new();
        if let Some(root) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
            out.push((PathBuf::from(root).join(self.folder), "$REMANENCE_DATA"));
        }
        out.push((Path::new("datasets").join(self.folder), "default"));
        out
    }

    /// The required paths missing from `dir`.
    pub fn missing(&self, dir: &Path) -> Vec<&'static str> {
        self.required
            .iter()
            .copied()
            .filter(|r| {
                let p = dir.join(r.trim_end_matches('/'));
                if r.ends_with('/') {
                    !p.is_dir()
                } else {
                    !p.is_file()
                }
            })
            .collect()
    }

    /// The first candidate folder that holds every required file.
    pub fn locate(&self, data_dir: Option<&Path>) -> Result<PathBuf> {
        let candidates = self.candidates(data_dir);
        for (dir, _) in &candidates {
            if self.missing(dir).is_empty() {
                return Ok(dir.clone());
            }
        }
        let looked: Vec<String> = candidates
            .iter()
            .map(|(d, _)| {
                let missing = self.missing(d);
                if d.is_dir() {
                    format!("{} (lacks {})", d.display(), missing.join(", "))
                } else {
                    format!("{} (no such folder)", d.display())
                }
            })
            .collect();
        let fetch = if self.hub.is_some() {
            format!(
                "; online, `remanence data fetch {}` downloads them",
                self.name
            )
        } else {
            String::new()
        };
        Err(TaskError::Data(format!(
            "data set {} not found: it needs {} in one folder; looked in {}. Pass --data DIR, \
             set ${DATA_ENV} to a folder holding {}/, or place the files in {} \
             (datasets/README.md says where each set comes from{fetch})",
            self.name,
            self.required.join(", "),
            looked.join("; "),
            self.folder,
            Path::new("datasets").join(self.folder).display(),
        )))
    }

    /// The shipped checksums as (relative path, sha256 hex).
    pub fn checksum_list(&self) -> Vec<(&'static str, &'static str)> {
        self.checksums
            .lines()
            .filter_map(|l| {
                let (hash, path) = l.split_once(char::is_whitespace)?;
                Some((path.trim_start().trim_start_matches('*'), hash))
            })
            .collect()
    }

    /// Checks every file of the shipped checksum list in `dir`.
    pub fn verify(&self, dir: &Path) -> Verification {
        use sha2::{Digest, Sha256};
        let mut v = Verification::default();
        for (rel, want) in self.checksum_list() {
            let path = dir.join(rel);
            match std::fs::read(&path) {
                Err(_) => v.missing.push(rel.to_string()),
                Ok(bytes) => {
                    v.bytes += bytes.len() as u64;
                    let got = Sha256::digest(&bytes);
                    let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
                    if hex == want {
                        v.ok += 1;
                    } else {
                        v.mismatched.push(rel.to_string());
                    }
                }
            }
        }
        v
    }
}

/// What [`Dataset::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verification {
    pub ok: usize,
    pub missing: Vec<String>,
    pub mismatched: Vec<String>,
    pub bytes: u64,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }
}

/// The folder of data set `name` (see the module doc for the search order).
pub fn locate(name: &str, data_dir: Option<&Path>) -> Result<PathBuf> {
    find(name)?.locate(data_dir)
}

/// `../shared/<sub>` beside the repository (or `$REMANENCE_SHARED/<sub>`), where the project's
/// machines and CI keep the data sets and golden fixtures, for tests. With `$CI` set a missing
/// folder panics; elsewhere the test is told to skip (`None`, with a message).
#[doc(hidden)]
pub fn shared_for_tests(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os("REMANENCE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = root.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: CI must provide ../shared/{sub}",
        dir.display()
    );
    eprintln!(
        "skipping: {} not found (set REMANENCE_SHARED)",
        dir.display()
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("remanence-ds-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn every_set_ships_checksums_for_its_required_files() {
        for d in DATASETS {
            let listed: Vec<_> = d.checksum_list().into_iter().map(|(p, _)| p).collect();
            assert!(!listed.is_empty(), "{}", d.name);
            for r in d.required {
                assert!(
                    listed.iter().any(|p| p.starts_with(r)),
                    "{}: {r} has no checksum",
                    d.name
                );
            }
        }
        let fsdd = find("fsdd").unwrap().checksum_list();
        assert_eq!(
            fsdd.iter().filter(|(p, _)| p.ends_with(".wav")).count(),
            3000
        );
    }

    #[test]
    fn hub_sources_place_exactly_the_checksummed_files() {
        for d in DATASETS {
            let Some(hub) = d.hub else { continue };
            let listed: Vec<_> = d.checksum_list().into_iter().map(|(p, _)| p).collect();
            let placed: Vec<_> = hub.files.iter().map(|(_, local)| *local).collect();
            for p in &placed {
                assert!(listed.contains(p), "{}: {p} has no checksum", d.name);
            }
            for r in d.required {
                assert!(placed.contains(r), "{}: the hub source lacks {r}", d.name);
            }
            if let Some(rev) = hub.revision {
                assert!(rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }

    #[test]
    fn locate_names_the_missing_files_and_the_places_looked_in() {
        let dir = scratch("locate");
        std::fs::write(dir.join("datatraining.txt"), "x").unwrap();
        let err = locate("occupancy", Some(&dir)).unwrap_err().to_string();
        assert!(err.contains("lacks datatest.txt, datatest2.txt"), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        std::fs::write(dir.join("datatest.txt"), "x").unwrap();
        std::fs::write(dir.join("datatest2.txt"), "x").unwrap();
        assert_eq!(locate("occupancy", Some(&dir)).unwrap(), dir);
        let err = locate("no-such-set", None).unwrap_err().to_string();
        assert!(err.contains("fsdd") && err.contains("occupancy"), "{err}");
    }

    #[test]
    fn verify_reports_missing_and_changed_files() {
        let dir = scratch("verify");
        let ozone = find("ozone").unwrap();
        let v = ozone.verify(&dir);
        assert_eq!(v.missing, vec!["eighthr.data".to_string()]);
        std::fs::write(dir.join("eighthr.data"), "1/1/1998,0.0\r\n").unwrap();
        let v = ozone.verify(&dir);
        assert_eq!(v.mismatched, vec!["eighthr.data".to_string()]);
        assert!(!v.passed());
    }
}
