//! How the processes of an NCCL job find each other, in plain Rust (compiled and tested without
//! CUDA): their rank, size and local rank from the launcher's environment, and the exchange of
//! rank 0's NCCL unique id through a file every rank can read.
//!
//! NCCL itself has no launcher: every rank must call `ncclCommInitRank` with the same 128-byte
//! unique id, which rank 0 creates. The `Nccl` collective (cargo feature `nccl`) sends it either
//! over MPI (feature `mpi`) or through the file written by [`publish_id`] and read by
//! [`wait_for_id`].
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{DistError, Result};

/// The bytes of an NCCL unique id (`NCCL_UNIQUE_ID_BYTES`).
pub const ID_BYTES: usize = 128;

/// A process's place in a job, as its launcher set it in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub size: usize,
    /// The rank among the processes of this node: the GPU the process uses.
    pub local_rank: usize,
}

/// Rank and size variables, by launcher: Open MPI's `mpirun`, MPICH/Hydra (PMI), Slurm's
/// `srun`, and the `RANK`/`WORLD_SIZE` of torchrun-style launchers.
const RANK_SIZE: [(&str, &str); 4] = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("RANK", "WORLD_SIZE"),
];

/// Local-rank variables, in the same order.
const LOCAL_RANK: [&str; 4] = [
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "SLURM_LOCALID",
    "LOCAL_RANK",
];

impl LaunchEnv {
    /// Reads the process's rank, size and local rank from the environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`LaunchEnv::from_env`] with the variables `var` gives.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let (rank, size) = RANK_SIZE
            .iter()
            .find_map(|(r, s)| {
                let (r, s) = (number(&var, r)?, number(&var, s)?);
                Some(r.and_then(|r| Ok((r, s?))))
            })
            .transpose()?
            .ok_or_else(|| {
                DistError::World(
                    "no rank and size in the environment: launch with mpirun, srun or a \
                     launcher that sets RANK and WORLD_SIZE"
                        .into(),
                )
            })?;
        if size == 0 || rank >= size {
            return Err(DistError::World(format!(
                "the environment gives rank {rank} of {size} processes"
            )));
        }
        let local_rank = match local_rank_from_vars(&var)? {
            Some(l) => l,
            None if size == 1 => 0,
            None => return Err(no_local_rank()),
        };
        Ok(Self {
            rank,
            size,
            local_rank,
        })
    }
}

/// The process's rank among those of its node, if the launcher set it (see [`LaunchEnv`]).
pub fn local_rank_from_env() -> Result<Option<usize>> {
    local_rank_from_vars(&|k| std::env::var(k).ok())
}

fn local_rank_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<Option<usize>> {
    LOCAL_RANK.iter().find_map(|k| number(var, k)).transpose()
}

/// The error for a job of several processes whose local rank is unknown.
pub fn no_local_rank() -> DistError {
    DistError::World(format!(
        "cannot tell which GPU this process should use: none of {} is set",
        LOCAL_RANK.join(", ")
    ))
}

/// `Some(parsed)` when `key` is set, `None` when it is not.
fn number(var: &impl Fn(&str) -> Option<String>, key: &str) -> Option<Result<usize>> {
    let v = var(key)?;
    Some(
        v.trim()
            .parse()
            .map_err(|_| DistError::World(format!("{key}={v} is not a whole number"))),
    )
}

fn io(path: &Path, what: &str, e: std::io::Error) -> DistError {
    DistError::Io {
        path: path.to_path_buf(),
        msg: format!("{what}: {e}"),
    }
}

/// Rank 0: writes `id` to `path` atomically (a temporary file beside it, synced, then renamed),
/// so that a rank polling the path never reads half an id. A file already at `path` is refused:
/// it is a previous job's (rank 0 removes it once the communicator exists, see
/// [`remove_id`]), and a rank that read it would wait for a job that no longer exists.
pub fn publish_id(path: &Path, id: &[u8]) -> Result<()> {
    if path.exists() {
        return Err(DistError::Io {
            path: path.to_path_buf(),
            msg: "an NCCL id file is already there (left by an earlier job?); remove it or \
                  give another --nccl-id-file"
                .into(),
        });
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, "writing the NCCL id", e)
    })
}

/// The other ranks: waits until `path` holds an id of `len` bytes, polling every 50 ms, for at
/// most `timeout`.
pub fn wait_for_id(path: &Path, len: usize, timeout: Duration) -> Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        match std::fs::read(path) {
            Ok(bytes) if bytes.len() == len => return Ok(bytes),
            Ok(bytes) => {
                return Err(DistError::Io {
                    path: path.to_path_buf(),
                    msg: format!("holds {} bytes, not an NCCL id of {len} bytes", bytes.len()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(path, "reading the NCCL id", e)),
        }
        if start.elapsed() >= timeout {
            return Err(DistError::Io {
                path: path.to_path_buf(),
                msg: format!(
                    "rank 0 did not write the NCCL id within {} s: did rank 0 start, and does \
                     this path lie on a filesystem every rank sees?",
                    timeout.as_secs_f64()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rank 0, once the communicator exists (every rank has read the id): removes the file, so
/// that the next job can use the same path.
pub fn remove_id(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| io(path, "removing the NCCL id", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_launchers_variables_give_rank_size_and_local_rank() {
        let e = env(&[
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("RANK", "0"),
        ]);
        let l = LaunchEnv::from_vars(e).unwrap();
        assert_eq!((l.rank, l.size, l.local_rank), (3, 4, 1));
        let l = LaunchEnv::from_vars(env(&[("RANK", "0"), ("WORLD_SIZE", "1")])).unwrap();
        assert_eq!((l.rank, l.size, l.local_rank), (0, 1, 0));
        let err = LaunchEnv::from_vars(env(&[("RANK", "0"), ("WORLD_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOCAL_RANK"), "{err}");
        let err = LaunchEnv::from_vars(env(&[("RANK", "2"), ("WORLD_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rank 2 of 2"), "{err}");
        let err = LaunchEnv::from_vars(env(&[])).unwrap_err().to_string();
        assert!(err.contains("mpirun"), "{err}");
        let err = LaunchEnv::from_vars(env(&[("PMI_RANK", "x"), ("PMI_SIZE", "2")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PMI_RANK=x"), "{err}");
    }

    #[test]
    fn the_id_goes_through_the_file_once() {
        let dir = std::env::temp_dir().join(format!("remanence-nccl-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("id");
        let id: Vec<u8> = (0..ID_BYTES as u8).collect();
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || wait_for_id(&path, ID_BYTES, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(120));
        publish_id(&path, &id).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), id);
        // A second job must not read this one's id.
        let err = publish_id(&path, &id).unwrap_err().to_string();
        assert!(err.contains("already there"), "{err}");
        remove_id(&path).unwrap();
        // Nobody writes: the wait ends with the reason.
        let err = wait_for_id(&path, ID_BYTES, Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not write the NCCL id"), "{err}");
        std::fs::write(&path, b"short").unwrap();
        let err = wait_for_id(&path, ID_BYTES, Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(err.contains("5 bytes"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
