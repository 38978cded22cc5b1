//! Before training: every rank must run the same configuration on the same parameters, and
//! the world must fit the batches.
//!
//! A new run, on every rank:
//!
//! ```text
//! check_world(size, batch_size, train_len)     (before anything is written)
//! check_same_config(c, &config_json)
//! trainer ← Trainer::from_model(…) in the rank's folder (rank 0: the run folder; others: scratch)
//! broadcast_parameters(c, trainer.store())     (rank 0's initial weights everywhere)
//! ```
//!
//! A resumed run: [`replicate_checkpoint`] first (rank 0's checkpoint copied into the other
//! ranks' scratch folders), then `Trainer::resume` in each rank's folder and the same checks.
use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use remanence_cells::ParamStore;
use remanence_train::run_dir::CHECKPOINT;
use remanence_train::RunDir;
use sha2::{Digest, Sha256};

use crate::collective::Collective;
use crate::error::{DistError, Result};

/// The first 8 bytes of the SHA-256 of `bytes`, as a number.
pub fn hash64(bytes: &[u8]) -> u64 {
    let d = Sha256::digest(bytes);
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Fails on every rank, naming the ranks of each value, unless every rank gave the same
/// `hash` of `what`.
pub fn check_same(c: &dyn Collective, what: &str, hash: u64) -> Result<()> {
    let all = c.all_gather_u64(hash)?;
    if all.iter().all(|&h| h == all[0]) {
        return Ok(());
    }
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (rank, &h) in all.iter().enumerate() {
        groups.entry(h).or_default().push(rank);
    }
    let mut groups: Vec<(u64, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_by_key(|(_, ranks)| ranks[0]);
    let parts: Vec<String> = groups
        .iter()
        .map(|(h, ranks)| {
            let list: Vec<String> = ranks.iter().map(|r| r.to_string()).collect();
            let (noun, verb) = if ranks.len() == 1 {
                ("rank", "has")
            } else {
                ("ranks", "have")
            };
            format!("{noun} {} {verb} hash {h:016x}", list.join(", "))
        })
        .collect();
    Err(DistError::Mismatch(format!(
        "the {what} differs across the {} processes (rank {} sees it): {}",
        all.len(),
        c.rank(),
        parts.join("; ")
    )))
}

/// Checks that every rank runs the same configuration (the text of the resolved run
/// configuration, e.g. `serde_json::to_string(&cfg)`): on a mismatch every rank returns an
/// error naming which ranks have which hash.
pub fn check_same_config(c: &dyn Collective, config_json: &str) -> Result<()> {
    check_same(c, "run configuration", hash64(config_json.as_bytes()))
}

/// The parameters' names, shapes and dtypes, in name order, as text.
fn signature(store: &ParamStore) -> String {
    store
        .vars()
        .iter()
        .map(|(name, v)| format!("{name}:{:?}:{:?}\n", v.dims(), v.dtype()))
        .collect()
}

/// Makes every rank's parameters rank 0's: first checks (by hash) that every rank has the same
/// names, shapes and dtypes, then broadcasts each parameter in name order.
pub fn broadcast_parameters(c: &dyn Collective, store: &ParamStore) -> Result<()> {
    check_same(
        c,
        "set of parameter names and shapes",
        hash64(signature(store).as_bytes()),
    )?;
    for (_, var) in store.vars() {
        let t = var.as_tensor();
        let (shape, dtype, device) = (t.shape().clone(), t.dtype(), t.device().clone());
        let new = if dtype == DType::F32 {
            let mut v = t.flatten_all()?.to_vec1::<f32>()?;
            c.broadcast_f32(&mut v, 0)?;
            Tensor::from_vec(v, shape, &device)?
        } else {
            // f64, or a half type (exactly representable in f64).
            let mut v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            c.broadcast_f64(&mut v, 0)?;
            Tensor::from_vec(v, shape, &device)?.to_dtype(dtype)?
        };
        if c.rank() != 0 {
            var.set(&new)?;
        }
    }
    Ok(())
}

/// Checks that every batch of an epoch can give each of `size` processes at least one
/// sequence: the batches hold `batch_size` sequences, the last one `train_len % batch_size`
/// when that is not 0. (A task whose own epoch order makes smaller batches fails at that batch
/// instead, with the same advice.)
pub fn check_world(size: usize, batch_size: usize, train_len: usize) -> Result<()> {
    if size == 0 {
        return Err(DistError::World("a world of 0 processes".into()));
    }
    let smallest = match train_len % batch_size.max(1) {
        0 => batch_size.min(train_len),
        r => r,
    };
    if size > smallest {
        let why = if smallest == batch_size {
            format!("a batch has {}", plural(batch_size, "sequence"))
        } else if smallest == train_len {
            format!(
                "the training set has only {}",
                plural(train_len, "sequence")
            )
        } else {
            format!(
                "the last batch of each epoch has {} ({train_len} training sequences in \
                 batches of {batch_size})",
                plural(smallest, "sequence")
            )
        };
        return Err(DistError::World(format!(
            "{size} processes, but {why}: every process needs at least one sequence of every \
             batch; use at most {}, or change the batch size",
            plural(smallest, "process")
        )));
    }
    Ok(())
}

fn plural(n: usize, noun: &str) -> String {
    match (n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "process") => format!("{n} processes"),
        _ => format!("{n} {noun}s"),
    }
}

/// For `--resume`: copies rank 0's `checkpoint.safetensors` (from `run`, its run folder) into
/// `run` of every other rank (their scratch folders), or removes theirs when rank 0 has none,
/// so that `Trainer::resume` on every rank starts from the same epoch, weights and optimizer
/// state. Returns whether there was a checkpoint.
pub fn replicate_checkpoint(c: &dyn Collective, run: &RunDir) -> Result<bool> {
    let path = run.file(CHECKPOINT);
    let io = |e: std::io::Error| DistError::Io {
        path: path.clone(),
        msg: e.to_string(),
    };
    // One flag byte (1: a checkpoint follows), then the file.
    let mut buf = Vec::new();
    if c.rank() == 0 {
        match std::fs::read(&path) {
            Ok(bytes) => {
                buf.push(1);
                buf.extend(bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => buf.push(0),
            Err(e) => return Err(io(e)),
        }
    }
    c.broadcast_bytes(&mut buf, 0)?;
    let present = buf.first() == Some(&1);
    if c.rank() != 0 {
        if present {
            let tmp = path.with_extension("safetensors.tmp");
            std::fs::write(&tmp, &buf[1..]).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
        } else if path.exists() {
            std::fs::remove_file(&path).map_err(io)?;
        }
    }
    Ok(present)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collective::Local;

    /// A rank of a world whose all-gather answers with given values (what the others sent).
    struct Gathered(usize, Vec<u64>);
    impl Collective for Gathered {
        fn rank(&self) -> usize {
            self.0
        }
        fn size(&self) -> usize {
            self.1.len()
        }
        fn broadcast_f64(&self, _: &mut [f64], _: usize) -> Result<()> {
            Ok(())
        }
        fn broadcast_f32(&self, _: &mut [f32], _: usize) -> Result<()> {
            Ok(())
        }
        fn broadcast_bytes(&self, _: &mut Vec<u8>, _: usize) -> Result<()> {
            Ok(())
        }
        fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
            Ok(())
        }
        fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
            assert_eq!(self.1[self.0], value, "the rank's own value is in its slot");
            Ok(self.1.clone())
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            std::process::exit(code)
        }
    }

    #[test]
    fn the_same_configuration_passes() {
        check_same_config(&Local, "{\"a\":1}").unwrap();
        let h = hash64(b"{\"a\":1}");
        check_same_config(&Gathered(1, vec![h, h, h]), "{\"a\":1}").unwrap();
    }

    #[test]
    fn a_configuration_mismatch_names_the_ranks_of_each_hash() {
        let (a, b) = (hash64(b"cfg-a"), hash64(b"cfg-b"));
        assert_ne!(a, b);
        for rank in [0, 2] {
            let err = check_same_config(&Gathered(rank, vec![a, b, a]), "cfg-a")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("ranks 0, 2 have hash {a:016x}")),
                "{err}"
            );
            assert!(err.contains(&format!("rank 1 has hash {b:016x}")), "{err}");
            assert!(err.contains("run configuration"), "{err}");
        }
    }

    #[test]
    fn the_world_must_fit_every_batch() {
        check_world(2, 16, 64).unwrap();
        check_world(4, 15, 49).unwrap(); // last batch of 4
        check_world(16, 16, 64).unwrap();
        let err = check_world(17, 16, 64).unwrap_err().to_string();
        assert!(
            err.contains("17 processes") && err.contains("16 sequences"),
            "{err}"
        );
        let err = check_world(5, 15, 49).unwrap_err().to_string();
        assert!(
            err.contains("last batch") && err.contains("4 sequences"),
            "{err}"
        );
        let err = check_world(2, 4, 9).unwrap_err().to_string();
        assert!(
            err.contains("has 1 sequence (") && err.contains("at most 1 process,"),
            "{err}"
        );
        let err = check_world(4, 16, 3).unwrap_err().to_string();
        assert!(err.contains("only 3"), "{err}");
        assert!(check_world(0, 16, 64).is_err());
    }

    #[test]
    fn one_rank_broadcast_keeps_the_parameters_and_checks_their_signature() {
        use candle_core::Device;
        let t = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let store = ParamStore::from_tensors([("w".to_string(), t)], "test").unwrap();
        broadcast_parameters(&Local, &store).unwrap();
        let v = store
            .get("w")
            .unwrap()
            .as_tensor()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(v, [[1.0, 2.0], [3.0, 4.0]]);
        let sig = hash64(signature(&store).as_bytes());
        let err = broadcast_parameters(&Gathered(0, vec![sig, sig ^ 1]), &store)
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameter names and shapes"), "{err}");
    }

    #[test]
    fn one_rank_replication_keeps_the_checkpoint() {
        let dir = std::env::temp_dir().join(format!("remanence-dist-repl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let run = RunDir::create_new(&dir, "run").unwrap();
        assert!(!replicate_checkpoint(&Local, &run).unwrap());
        std::fs::write(run.file(CHECKPOINT), b"bytes").unwrap();
        assert!(replicate_checkpoint(&Local, &run).unwrap());
        assert_eq!(std::fs::read(run.file(CHECKPOINT)).unwrap(), b"bytes");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
