//! [`Nccl`]: the [`Collective`] on NVIDIA's NCCL, one process (rank) per GPU (cargo feature
//! `nccl`).
//!
//! **Compiled and type-checked in CI, never run on a GPU.** Nothing in this file has been
//! executed: the first run on real GPUs is its first test.
//!
//! NCCL comes through `cudarc` as Candle re-exports it (`candle_core::cuda_backend::cudarc`,
//! enabled by candle-core's own `nccl` feature), so it is the very cudarc Candle's CUDA backend
//! uses, and the communicator runs on the stream of the Candle device the model trains on
//! ([`candle_core::CudaDevice::cuda_stream`]: for a device from `Device::new_cuda`, the CUDA
//! per-thread default stream of the calling thread, so the collective's copies and NCCL kernels
//! are ordered after the kernels the trainer has queued on that thread).
//!
//! **The buffers go through the host.** The plugin ([`crate::AllReducePlugin`]) hands the
//! collective `f64` host buffers (the gradients flattened and weighted on the host), so every
//! call here copies the buffer to the GPU, runs the NCCL operation on the device's stream,
//! copies the result back and waits for the stream. This keeps the [`Collective`] trait and the
//! plugin unchanged and exactly the MPI path's arithmetic (sums in f64). A device-resident
//! version would all-reduce the gradient tensors' own CUDA buffers in place (in their dtype,
//! grouped with `ncclGroupStart/End` or packed into one buffer on the device), needing a
//! tensor-level entry in the trait and a plugin that does its weighting on the device; it would
//! save two PCIe copies and a host sync per step.
//!
//! Failure: NCCL has no error handler that ends the job. A rank that fails calls
//! [`Collective::abort`]: `ncclCommAbort`, then `MPI_Abort` when the id came over MPI (which
//! ends every rank) or `exit` otherwise — then the launcher (mpirun, srun) must end the others,
//! which would otherwise wait in their next NCCL call.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use candle_core::cuda_backend::cudarc::driver::{CudaStream, DeviceRepr, DriverError};
use candle_core::cuda_backend::cudarc::nccl::result::NcclError;
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, NcclType, ReduceOp};
use candle_core::Device;

use crate::bootstrap::{publish_id, remove_id, wait_for_id, ID_BYTES};
use crate::collective::{check_root, Collective};
use crate::error::{DistError, Result};

/// How rank 0's NCCL unique id reaches the other ranks.
pub enum IdExchange {
    /// Broadcast over MPI, which also gives the rank and size. The handle is kept by the
    /// [`Nccl`] world: MPI stays initialised as long as it, and [`Collective::abort`] uses
    /// `MPI_Abort`.
    #[cfg(feature = "mpi")]
    Mpi(crate::Mpi),
    /// Through a file every rank can read: rank 0 writes it atomically
    /// ([`crate::bootstrap::publish_id`]; a file already there is refused), the others poll for
    /// it for at most `timeout`, and rank 0 removes it once its communicator exists (or failed).
    File {
        path: PathBuf,
        rank: usize,
        size: usize,
        timeout: Duration,
    },
}

/// The NCCL communicator, sendable: NCCL allows a communicator to be used from any thread,
/// one call at a time (the [`Mutex`] around it sees to that). cudarc's `Comm` holds a raw
/// pointer and so is neither `Send` nor `Sync`.
struct SendComm(Comm);
// SAFETY: see above; every use goes through `Inner::comm`'s mutex.
unsafe impl Send for SendComm {}

struct Inner {
    /// `None` once aborted. Dropping the `Comm` calls `ncclCommAbort` (cudarc's `Drop`); it is
    /// declared first so that it goes before the device and MPI.
    comm: Mutex<Option<SendComm>>,
    device: Device,
    #[cfg(feature = "mpi")]
    mpi: Option<crate::Mpi>,
}

/// The ranks of an NCCL job, one GPU each: [`Nccl::init`] once per process, then clone the
/// handle (clones share the communicator, which is aborted when the last one is dropped).
#[derive(Clone)]
pub struct Nccl {
    inner: Arc<Inner>,
    rank: usize,
    size: usize,
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Nccl {{ rank: {}, size: {}, device: {:?} }}",
            self.rank,
            self.size,
            self.inner.device.location()
        )
    }
}

fn nccl_err(e: NcclError) -> String {
    format!("{:?}", e.0)
}

fn driver_err(e: DriverError) -> String {
    format!("{e:?}")
}

impl Nccl {
    /// Joins the job on `device`, the CUDA device this rank trains on (one GPU per rank; give
    /// the model this same `Device`): rank 0 creates the unique id, `exchange` brings it to the
    /// others, and every rank creates its communicator (`ncclCommInitRank`, which returns once
    /// all `size` ranks have called it).
    pub fn init(exchange: IdExchange, device: &Device) -> Result<Self> {
        let stream = device
            .as_cuda_device()
            .map_err(|_| {
                DistError::Collective(format!(
                    "NCCL runs on a CUDA device, not {:?}",
                    device.location()
                ))
            })?
            .cuda_stream();
        // ncclCommInitRank takes the GPU from the thread's current context.
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| DistError::Collective(format!("binding the CUDA context: {e:?}")))?;
        let new_id = || {
            Id::new()
                .map_err(|e| DistError::Collective(format!("ncclGetUniqueId: {}", nccl_err(e))))
        };
        let from_bytes = |bytes: &[u8]| {
            let mut internal = [0 as std::ffi::c_char; ID_BYTES];
            for (i, b) in internal.iter_mut().zip(bytes) {
                *i = *b as std::ffi::c_char;
            }
            Id::uninit(internal)
        };
        let to_bytes = |id: &Id| id.internal().iter().map(|&c| c as u8).collect::<Vec<u8>>();
        let (rank, size, id, file) = match &exchange {
            #[cfg(feature = "mpi")]
            IdExchange::Mpi(mpi) => {
                let (rank, size) = (mpi.rank(), mpi.size());
                let mut bytes = match rank {
                    0 => to_bytes(&new_id()?),
                    _ => Vec::new(),
                };
                mpi.broadcast_bytes(&mut bytes, 0)?;
                if bytes.len() != ID_BYTES {
                    return Err(DistError::Collective(format!(
                        "rank 0 sent an NCCL id of {} bytes",
                        bytes.len()
                    )));
                }
                (rank, size, from_bytes(&bytes), None)
            }
            IdExchange::File {
                path,
                rank,
                size,
                timeout,
            } => {
                let id = if *rank == 0 {
                    let id = new_id()?;
                    publish_id(path, &to_bytes(&id))?;
                    id
                } else {
                    from_bytes(&wait_for_id(path, ID_BYTES, *timeout)?)
                };
                (*rank, *size, id, Some(path))
            }
        };
        let comm = Comm::from_rank(stream, rank, size, id);
        if let (0, Some(path)) = (rank, file) {
            // Every rank has read the id once the communicator exists; if it failed, no later
            // job may read this one's id either.
            remove_id(path)?;
        }
        let comm = comm.map_err(|e| {
            DistError::Collective(format!(
                "ncclCommInitRank (rank {rank} of {size}): {}",
                nccl_err(e)
            ))
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                comm: Mutex::new(Some(SendComm(comm))),
                device: device.clone(),
                #[cfg(feature = "mpi")]
                mpi: match exchange {
                    IdExchange::Mpi(m) => Some(m),
                    IdExchange::File { .. } => None,
                },
            }),
            rank,
            size,
        })
    }

    /// The CUDA device this rank runs on.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// Runs `f` with the communicator and its stream (the context bound to this thread), then
    /// waits for the stream: every call is blocking, like the other collectives.
    fn with_comm<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Comm, &Arc<CudaStream>) -> std::result::Result<T, String>,
    ) -> Result<T> {
        let guard = self
            .inner
            .comm
            .lock()
            .map_err(|_| DistError::Collective("the NCCL communicator is poisoned".into()))?;
        let comm = &guard
            .as_ref()
            .ok_or_else(|| DistError::Collective("the NCCL communicator was aborted".into()))?
            .0;
        let stream = comm.stream();
        let run = || {
            stream.context().bind_to_thread().map_err(driver_err)?;
            let out = f(comm, &stream)?;
            stream.synchronize().map_err(driver_err)?;
            Ok(out)
        };
        run().map_err(|e: String| DistError::Collective(format!("NCCL {what}: {e}")))
    }

    /// Broadcast of a host buffer through the device.
    fn broadcast<T: NcclType + DeviceRepr>(&self, buf: &mut [T], root: usize) -> Result<()> {
        check_root(root, self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.with_comm("broadcast", |comm, s| {
            let mut d = s.clone_htod(&*buf).map_err(driver_err)?;
            comm.broadcast_in_place(&mut d, root as i32)
                .map_err(nccl_err)?;
            s.memcpy_dtoh(&d, buf).map_err(driver_err)
        })
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
        self.broadcast(buf, root)
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.broadcast(buf, root)
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        let mut len = [buf.len() as u64];
        self.broadcast(&mut len, root)?;
        buf.resize(len[0] as usize, 0);
        self.broadcast(&mut buf[..], root)
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.with_comm("all-reduce", |comm, s| {
            let mut d = s.clone_htod(&*buf).map_err(driver_err)?;
            comm.all_reduce_in_place(&mut d, &ReduceOp::Sum)
                .map_err(nccl_err)?;
            s.memcpy_dtoh(&d, buf).map_err(driver_err)
        })
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        self.with_comm("all-gather", |comm, s| {
            let send = s.clone_htod(&[value][..]).map_err(driver_err)?;
            let mut recv = s.alloc_zeros::<u64>(self.size).map_err(driver_err)?;
            comm.all_gather(&send, &mut recv).map_err(nccl_err)?;
            s.clone_dtoh(&recv).map_err(driver_err)
        })
    }
    fn barrier(&self) -> Result<()> {
        // NCCL has no barrier: an all-reduce returns on a rank only once every rank joined it.
        self.all_reduce_sum_f64(&mut [0.0])
    }
    fn abort(&self, code: i32) -> ! {
        // A call in flight on another thread holds the lock: leave the communicator to the
        // process's exit rather than wait for that call.
        if let Ok(mut g) = self.inner.comm.try_lock() {
            // cudarc's Drop calls ncclCommAbort (and panics if it fails: ignore that here).
            let comm = g.take();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(comm)));
        }
        #[cfg(feature = "mpi")]
        if let Some(mpi) = &self.inner.mpi {
            mpi.abort(code)
        }
        std::process::exit(code)
    }
}
