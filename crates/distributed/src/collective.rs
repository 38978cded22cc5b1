//! The few collective operations data-parallel training needs, behind a small trait.
//!
//! [`Local`] is the world of one process (every operation leaves its buffer as it is); it is
//! always compiled, so the plugin and the set-up code are tested without MPI. [`Mpi`] (cargo
//! feature `mpi`) runs them on the world communicator of an MPI library (Open MPI through rsmpi):
//! the engine does the communication, its error handler (`MPI_ERRORS_ARE_FATAL`) ends the whole
//! job when a process dies or a call fails, and `mpirun` reports which rank.
//!
//! With the cargo feature `nccl`, `Nccl` (module `nccl`) runs them with NCCL, one GPU per rank.
//!
//! Every process must make the same collective calls in the same order (MPI's rule): the
//! trainer's loop gives each rank the same batches, so the plugin's one all-reduce per hook and
//! step lines up on every rank.
use crate::error::{DistError, Result};

/// Collective operations across the processes of one training job.
///
/// All of them are blocking and must be called by every rank, in the same order. They take
/// `&self`: a collective is used by one thread at a time (it is `Send`, not `Sync`).
pub trait Collective: Send {
    /// This process's rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// The number of processes.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank by `buf` of rank `root` (same length on every rank).
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()>;
    /// [`Collective::broadcast_f64`] for `f32`.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;
    /// Replaces `buf` on every rank by `buf` of rank `root`, whatever its length elsewhere
    /// (the length is broadcast first).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()>;
    /// Element-wise sum over the ranks, in place: afterwards every rank holds the same sums.
    /// The buffers must have the same length on every rank.
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Every rank's `value`, indexed by rank, on every rank (configuration hash checks).
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>>;
    /// Waits until every rank has reached it.
    fn barrier(&self) -> Result<()>;
    /// Ends every process of the job with `code` (`MPI_Abort`); a single process just exits.
    /// A rank that fails must call this rather than return: its peers would otherwise wait in
    /// their next collective call for a partner that never comes.
    fn abort(&self, code: i32) -> !;
}

pub(crate) fn check_root(root: usize, size: usize) -> Result<()> {
    if root >= size {
        return Err(DistError::Collective(format!(
            "root rank {root} does not exist in a world of {size} processes"
        )));
    }
    Ok(())
}

/// The world of a single process: rank 0 of 1; broadcasts and reductions leave their buffers
/// as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn broadcast_f64(&self, _buf: &mut [f64], root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn broadcast_f32(&self, _buf: &mut [f32], root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, 1)
    }
    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        Ok(vec![value])
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

#[cfg(feature = "mpi")]
pub use self::mpi_impl::Mpi;

#[cfg(feature = "mpi")]
mod mpi_impl {
    use std::sync::Arc;

    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::environment::{Threading, Universe};
    use mpi::topology::{Communicator, SimpleCommunicator};

    use super::{check_root, Collective};
    use crate::error::{DistError, Result};

    /// The world communicator of MPI (Open MPI through rsmpi).
    ///
    /// [`Mpi::init`] calls `MPI_Init_thread` — once per process: MPI cannot be initialised
    /// twice, nor again after it was finalised, so a second `init` is an error; clone the
    /// handle instead. The handle shares the MPI universe: `MPI_Finalize` runs when the last
    /// clone is dropped. Keep one clone in `main` for the life of the process (the trainer
    /// runs on another thread and drops the plugin's clone when it ends), and drop it last:
    /// a process that exits without finalising makes `mpirun` report the job as failed.
    ///
    /// MPI is initialised with `MPI_THREAD_SERIALIZED`: the calls may come from any thread
    /// (training runs on a deep-stack thread), one at a time.
    #[derive(Clone)]
    pub struct Mpi {
        universe: Arc<Universe>,
        rank: usize,
        size: usize,
    }

    impl std::fmt::Debug for Mpi {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Mpi {{ rank: {}, size: {} }}", self.rank, self.size)
        }
    }

    impl Mpi {
        /// Initialises MPI (`MPI_Init_thread`) and takes its world communicator.
        pub fn init() -> Result<Self> {
            let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
                .ok_or_else(|| {
                    DistError::Collective(
                        "MPI is already initialised in this process (MPI_Init happens once; \
                         clone the existing Mpi handle)"
                            .into(),
                    )
                })?;
            if threading < Threading::Serialized {
                return Err(DistError::Collective(format!(
                    "the MPI library gives thread support {threading:?}; training calls MPI \
                     from its own thread and needs at least Serialized"
                )));
            }
            let world = universe.world();
            let (rank, size) = (world.rank() as usize, world.size() as usize);
            Ok(Self {
                universe: Arc::new(universe),
                rank,
                size,
            })
        }

        fn world(&self) -> SimpleCommunicator {
            self.universe.world()
        }
    }

    impl Collective for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
            check_root(root, self.size)?;
            self.world()
                .process_at_rank(root as i32)
                .broadcast_into(buf);
            Ok(())
        }
        fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
            check_root(root, self.size)?;
            self.world()
                .process_at_rank(root as i32)
                .broadcast_into(buf);
            Ok(())
        }
        fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
            check_root(root, self.size)?;
            let world = self.world();
            let root = world.process_at_rank(root as i32);
            let mut len = buf.len() as u64;
            root.broadcast_into(&mut len);
            buf.resize(len as usize, 0);
            root.broadcast_into(&mut buf[..]);
            Ok(())
        }
        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
            let send = buf.to_vec();
            self.world()
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
            Ok(())
        }
        fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
            let mut all = vec![0u64; self.size];
            self.world().all_gather_into(&value, &mut all[..]);
            Ok(all)
        }
        fn barrier(&self) -> Result<()> {
            self.world().barrier();
            Ok(())
        }
        fn abort(&self, code: i32) -> ! {
            self.world().abort(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_world_is_one_process_that_changes_nothing() {
        let c = Local;
        assert_eq!((c.rank(), c.size()), (0, 1));
        let mut a = vec![1.5f64, -2.0, 3.25];
        c.all_reduce_sum_f64(&mut a).unwrap();
        assert_eq!(a, [1.5, -2.0, 3.25]);
        c.broadcast_f64(&mut a, 0).unwrap();
        assert_eq!(a, [1.5, -2.0, 3.25]);
        let mut b = vec![7u8, 8];
        c.broadcast_bytes(&mut b, 0).unwrap();
        assert_eq!(b, [7, 8]);
        assert_eq!(c.all_gather_u64(42).unwrap(), [42]);
        let err = c.broadcast_f32(&mut [1.0f32], 1).unwrap_err().to_string();
        assert!(err.contains("root rank 1"), "{err}");
    }
}
