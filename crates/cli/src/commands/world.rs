//! `--distributed mpi`: the processes of an MPI job (`mpirun -np N remanence train … --distributed
//! mpi`) train one model data-parallel (`crates/distributed`): the same initial weights on every
//! rank (broadcast from rank 0), a contiguous shard of each global batch per rank, the gradients
//! all-reduced and weighted by each shard's share of the loss before the optimizer step, the
//! loss and sequence counts reduced, and only rank 0 writing the run folder (the others train
//! in a scratch folder under the system's temporary directory, removed at the end). A binary
//! built without the `mpi` feature refuses the flag.
//!
//! `--distributed nccl` (feature `nccl`): the same with NCCL's collectives, one GPU per rank —
//! the GPU of the rank's local rank (`OMPI_COMM_WORLD_LOCAL_RANK`, `SLURM_LOCALID`, …), which the
//! model must train on (`--device cuda`). The ranks meet over MPI (a binary with `mpi` too) or,
//! with `--nccl-id-file PATH`, through a file. Compiled and type-checked in CI, never run on a
//! GPU. A binary built without the `nccl` feature refuses the flag.
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::Device;
use clap::ValueEnum;
use remanence_cells::device::parse_device;
use remanence_distributed::Collective;

/// How training is spread over processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distributed {
    /// The ranks of an MPI job (Open MPI through the `mpi` crate); launch with `mpirun -np N`.
    Mpi,
    /// The ranks of an NCCL job, one GPU each (`--device cuda`); launch with `mpirun -np N`
    /// (or, with --nccl-id-file, any launcher that sets the ranks in the environment).
    Nccl,
}

/// The processes of the job: a handle on its collective (MPI's or NCCL's). Clones share it; it
/// is released (MPI finalised, the NCCL communicator destroyed) when the last one is dropped.
#[derive(Clone)]
#[cfg_attr(not(any(feature = "mpi", feature = "nccl")), allow(dead_code))]
pub struct World {
    job: Arc<dyn Collective + Sync>,
    /// Under NCCL: this rank's GPU (its ordinal and device), which the model must train on.
    gpu: Option<(usize, Device)>,
}

impl Collective for World {
    fn rank(&self) -> usize {
        self.job.rank()
    }
    fn size(&self) -> usize {
        self.job.size()
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> remanence_distributed::Result<()> {
        self.job.broadcast_f64(buf, root)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> remanence_distributed::Result<()> {
        self.job.broadcast_f32(buf, root)
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> remanence_distributed::Result<()> {
        self.job.broadcast_bytes(buf, root)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> remanence_distributed::Result<()> {
        self.job.all_reduce_sum_f64(buf)
    }
    fn all_gather_u64(&self, value: u64) -> remanence_distributed::Result<Vec<u64>> {
        self.job.all_gather_u64(value)
    }
    fn barrier(&self) -> remanence_distributed::Result<()> {
        self.job.barrier()
    }
    fn abort(&self, code: i32) -> ! {
        self.job.abort(code)
    }
}

/// Joins the job `kind` names (once per process).
pub fn init(kind: Distributed) -> Result<World> {
    init_with(kind, None)
}

/// [`init`], the NCCL ranks meeting through `nccl_id_file` when it is given.
pub fn init_with(kind: Distributed, nccl_id_file: Option<&Path>) -> Result<World> {
    match kind {
        Distributed::Mpi if nccl_id_file.is_some() => {
            bail!("--nccl-id-file is for --distributed nccl (MPI's ranks find each other)")
        }
        Distributed::Mpi => mpi(),
        Distributed::Nccl => nccl(nccl_id_file),
    }
}

#[cfg(feature = "mpi")]
fn mpi() -> Result<World> {
    Ok(World {
        job: Arc::new(remanence_distributed::Mpi::init()?),
        gpu: None,
    })
}

#[cfg(not(feature = "mpi"))]
fn mpi() -> Result<World> {
    bail!(
        "--distributed mpi: this remanence was built without MPI support; build it with \
         `cargo build --release --features mpi` (Open MPI and libclang installed: Debian's \
         openmpi-bin, libopenmpi-dev, libclang-dev) and launch it with `mpirun -np N`"
    )
}

#[cfg(not(feature = "nccl"))]
fn nccl(_id_file: Option<&Path>) -> Result<World> {
    bail!(
        "--distributed nccl: this remanence was built without NCCL support; build it with \
         `cargo build --release --features nccl,mpi` (the CUDA toolkit and libnccl installed; \
         without `mpi`, the ranks meet through --nccl-id-file PATH) and launch it with \
         `mpirun -np N remanence … --distributed nccl --device cuda`, one rank per GPU"
    )
}

/// How long the ranks other than 0 wait for rank 0's id file.
#[cfg(feature = "nccl")]
const NCCL_ID_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

#[cfg(feature = "nccl")]
fn nccl(id_file: Option<&Path>) -> Result<World> {
    use anyhow::Context;
    use remanence_distributed::bootstrap::LaunchEnv;
    use remanence_distributed::{IdExchange, Nccl};

    let (exchange, local) = match id_file {
        Some(path) => {
            let env = LaunchEnv::from_env().context("--distributed nccl --nccl-id-file")?;
            let exchange = IdExchange::File {
                path: path.to_path_buf(),
                rank: env.rank,
                size: env.size,
                timeout: NCCL_ID_TIMEOUT,
            };
            (exchange, env.local_rank)
        }
        #[cfg(feature = "mpi")]
        None => {
            use remanence_distributed::bootstrap::{local_rank_from_env, no_local_rank};
            let mpi = remanence_distributed::Mpi::init()?;
            let local = match local_rank_from_env()? {
                Some(l) => l,
                None if mpi.size() == 1 => 0,
                None => {
                    eprintln!(
                        "error on rank {} of {}: {}",
                        mpi.rank(),
                        mpi.size(),
                        no_local_rank()
                    );
                    mpi.abort(1)
                }
            };
            (IdExchange::Mpi(mpi), local)
        }
        #[cfg(not(feature = "mpi"))]
        None => {
            bail!(
                "--distributed nccl: this remanence was built without MPI, so its ranks meet \
                 through a file: give --nccl-id-file PATH (a new path on a filesystem every \
                 rank sees), or build it with `--features nccl,mpi`"
            )
        }
    };
    // Past MPI's initialisation, a rank that fails must end the job (its peers wait for it).
    #[cfg(feature = "mpi")]
    let mpi = match &exchange {
        IdExchange::Mpi(m) => Some(m.clone()),
        IdExchange::File { .. } => None,
    };
    let joined = (|| -> Result<World> {
        let device = Device::new_cuda(local)
            .with_context(|| format!("--distributed nccl: opening this rank's GPU cuda:{local}"))?;
        let nccl = Nccl::init(exchange, &device).context("--distributed nccl")?;
        Ok(World {
            job: Arc::new(nccl),
            gpu: Some((local, device)),
        })
    })();
    #[cfg(feature = "mpi")]
    if let (Err(e), Some(m)) = (&joined, &mpi) {
        eprintln!("error on rank {} of {}: {e:#}", m.rank(), m.size());
        m.abort(1);
    }
    joined
}

/// The device the model trains on, named by `spec` (`--device`). Under `--distributed nccl` it
/// is this rank's GPU, which `cuda` names (as does `cuda:N`, N its ordinal); a CPU device, or
/// another GPU, is refused.
pub fn device(spec: &str, world: Option<&World>) -> Result<Device> {
    let Some((ordinal, gpu)) = world.and_then(|w| w.gpu.as_ref()) else {
        return Ok(parse_device(spec)?);
    };
    match spec.split_once(':') {
        None if spec == "cuda" => Ok(gpu.clone()),
        Some(("cuda", n)) if n.parse::<usize>().ok() == Some(*ordinal) => Ok(gpu.clone()),
        Some(("cuda", _)) => bail!(
            "--distributed nccl runs this rank on cuda:{ordinal} (its local rank) and `{spec}` \
             names another GPU; give --device cuda (CUDA_VISIBLE_DEVICES chooses the GPUs a \
             node's ranks see)"
        ),
        _ => bail!(
            "--distributed nccl all-reduces on the GPUs, one per rank: the model's device must \
             be CUDA (--device cuda, each rank on the GPU of its local rank), not `{spec}`"
        ),
    }
}

/// A scratch folder for the run of a rank other than 0, unique to the process.
pub fn scratch_root(rank: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("remanence-rank{rank}-{}", std::process::id()))
}
