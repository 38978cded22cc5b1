//! `--distributed mpi`: the processes of an MPI job (`mpirun -np N remanence train … --distributed
//! mpi`) train one model data-parallel (`crates/distributed`): the same initial weights on every
//! rank (broadcast from rank 0), a contiguous shard of each global batch per rank, the gradients
//! all-reduced and weighted by each shard's share of the loss before the optimizer step, the
//! loss and sequence counts reduced, and only rank 0 writing the run folder (the others train
//! in a scratch folder under the system's temporary directory, removed at the end). A binary
//! built without the `mpi` feature refuses the flag.
use anyhow::Result;
use clap::ValueEnum;

/// How training is spread over processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distributed {
    /// The ranks of an MPI job (Open MPI through the `mpi` crate); launch with `mpirun -np N`.
    Mpi,
}

/// The processes of the job.
#[cfg(feature = "mpi")]
pub type World = remanence_distributed::Mpi;
/// The processes of the job (a binary without MPI never has more than one).
#[cfg(not(feature = "mpi"))]
pub type World = remanence_distributed::Local;

/// Joins the job `kind` names (once per process).
pub fn init(kind: Distributed) -> Result<World> {
    match kind {
        #[cfg(feature = "mpi")]
        Distributed::Mpi => Ok(remanence_distributed::Mpi::init()?),
        #[cfg(not(feature = "mpi"))]
        Distributed::Mpi => anyhow::bail!(
            "--distributed mpi: this remanence was built without MPI support; build it with \
             `cargo build --release --features mpi` (Open MPI and libclang installed: Debian's \
             openmpi-bin, libopenmpi-dev, libclang-dev) and launch it with `mpirun -np N`"
        ),
    }
}

/// A scratch folder for the run of a rank other than 0, unique to the process.
pub fn scratch_root(rank: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("remanence-rank{rank}-{}", std::process::id()))
}
