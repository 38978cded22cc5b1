//! The Gripon–Berrou retrieval as a CUDA kernel (`src/kernels/gb.cu`), built twice by `build.rs`
//! as crates/cells builds its kernels:
//! - always for the host, under `src/kernels/host_emulation.h` (grid and block indices become
//!   loops): [`recall_batch_host`] runs the kernel's own code on the CPU, launch after launch as
//!   the GPU path does, and the tests (`tests/cuda_host.rs`) check its final states bit for bit
//!   against [`GbNetwork::recall`];
//! - with the `cuda` feature, to PTX by nvcc, embedded here ([`GB_PTX`]) and launched on Candle's
//!   CUDA device by [`CudaGbNetwork`] (the only use of Candle in this crate, and only under the
//!   feature).
//!
//! One iteration is two launches: `gb_scores`, one thread per (fanal, query), the score of every
//! fanal (sum-of-sum with γ, or sum-of-max) from a row of W and the query's packed state; then
//! `gb_winners`, one thread per (word of the new state, query), winner-take-all per cluster keeping
//! ties with the zero-score guard. Cues are prepared on the host exactly as [`GbNetwork::recall`]
//! prepares them ([`KernelBatch`]: the initial packed state, the guide as allowed clusters).
//!
//! Every requested iteration is run: [`GbNetwork::recall`] stops early at a fixed point, which
//! changes nothing since an iteration is a function of the state alone, so the final states are
//! the same.
//!
//! Results are packed states, `⌈n/64⌉` words per cue (fanal k·l + f at bit k·l + f, as
//! [`State::words`](crate::gb::State::words)); [`message_words`] packs a message the same way, so
//! a retrieval succeeded exactly when its words equal the message's.
use std::ffi::{c_char, c_void, CString};

use crate::bits;
use crate::error::{invalid, Result};
use crate::gb::{Cue, ErasedStart, GbNetwork, Message, RecallSettings, Rule};

/// Threads per block of every launch.
pub const BLOCK: u32 = 128;

/// Whether this build can launch the kernel on a GPU (the `cuda` feature).
pub const CUDA_ENABLED: bool = cfg!(feature = "cuda");

/// The grid size that covers `threads` threads with blocks of [`BLOCK`].
fn grid(threads: usize) -> Result<u32> {
    u32::try_from(threads.div_ceil(BLOCK as usize)).map_err(|_| {
        invalid(format!(
            "{threads} threads do not fit one grid: split the batch"
        ))
    })
}

fn int(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| invalid(format!("{what} = {v} does not fit the kernel's int")))
}

/// A batch of cues laid out as the kernels read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBatch {
    /// Cues in the batch.
    pub batch: usize,
    /// χ.
    pub clusters: usize,
    /// l.
    pub fanals: usize,
    /// ⌈χ·l / 64⌉, words per state and per row of W.
    pub words: usize,
    /// 0: sum-of-sum, 1: sum-of-max.
    pub rule: i32,
    /// γ of sum-of-sum (0 for sum-of-max).
    pub gamma: u32,
    /// The initial states, `batch × words`.
    pub states: Vec<u64>,
    /// Per cue and cluster, 1 when the guide allows the cluster active fanals, `batch × χ`.
    pub allowed: Vec<u8>,
}

impl KernelBatch {
    /// Checks every cue against `net` and lays out their initial states as
    /// [`GbNetwork::recall`] starts them: the known symbols of allowed clusters active, and with
    /// [`ErasedStart::AllActive`] every fanal of an allowed erased cluster.
    pub fn new(net: &GbNetwork, cues: &[Cue], settings: &RecallSettings) -> Result<Self> {
        let (chi, l) = (net.clusters(), net.fanals());
        let n = net.neurons();
        let words = bits::words_for(n);
        let batch = cues.len();
        // The kernels' index arithmetic: every size in an int, every grid in a u32.
        int("the batch", batch)?;
        grid(
            batch
                .checked_mul(n)
                .ok_or_else(|| invalid("batch too large"))?,
        )?;
        let mut states = vec![0u64; batch * words];
        let mut allowed = vec![0u8; batch * chi];
        for (q, cue) in cues.iter().enumerate() {
            net.check_cue(cue)?;
            let ok = &mut allowed[q * chi..(q + 1) * chi];
            match &cue.guide {
                Some(g) => g.iter().for_each(|&k| ok[k] = 1),
                None => ok.fill(1),
            }
            let v = &mut states[q * words..(q + 1) * words];
            for &(k, s) in &cue.known {
                if ok[k] == 1 {
                    bits::set_bit(v, k * l + s as usize);
                }
            }
            if settings.erased == ErasedStart::AllActive {
                for &k in &cue.erased {
                    if ok[k] == 1 {
                        bits::set_range(v, k * l, (k + 1) * l);
                    }
                }
            }
        }
        let (rule, gamma) = match settings.rule {
            Rule::SumOfSum { gamma } => (0, gamma),
            Rule::SumOfMax => (1, 0),
        };
        Ok(Self {
            batch,
            clusters: chi,
            fanals: l,
            words,
            rule,
            gamma,
            states,
            allowed,
        })
    }

    /// n = χ·l.
    pub fn neurons(&self) -> usize {
        self.clusters * self.fanals
    }

    /// Threads of `gb_scores`: one per (fanal, query).
    pub fn score_threads(&self) -> usize {
        self.batch * self.neurons()
    }

    /// Threads of `gb_winners`: one per (word, query).
    pub fn winner_threads(&self) -> usize {
        self.batch * self.words
    }

    /// Cuts `batch × words` packed words into one state per cue.
    fn split(&self, words: Vec<u64>) -> Vec<Vec<u64>> {
        // words ≥ 1: a network has n ≥ 1 fanals.
        words
            .chunks_exact(self.words)
            .map(<[u64]>::to_vec)
            .collect()
    }
}

/// The packed state that is exactly `message` (its fanal alone in each of its clusters, nothing
/// elsewhere): a final state is a success exactly when it equals this.
pub fn message_words(net: &GbNetwork, message: &Message) -> Result<Vec<u64>> {
    net.check_message(message)?;
    let mut v = vec![0u64; bits::words_for(net.neurons())];
    for &(k, s) in message {
        bits::set_bit(&mut v, k * net.fanals() + s as usize);
    }
    Ok(v)
}

extern "C" {
    fn remanence_memory_host_launch(
        name: *const c_char,
        grid: u32,
        block: u32,
        args: *mut *mut c_void,
    ) -> i32;
}

/// Runs kernel `name` of the host build over `threads` threads.
///
/// # Safety
/// `args` must point to the kernel's arguments, in order and of its types, and every buffer
/// must hold what the kernel touches for that many threads.
unsafe fn host_launch(name: &str, threads: usize, args: &mut [*mut c_void]) -> Result<()> {
    if threads == 0 {
        return Ok(());
    }
    let grid = grid(threads)?;
    let name_c = CString::new(name).expect("kernel name");
    let rc = remanence_memory_host_launch(name_c.as_ptr(), grid, BLOCK, args.as_mut_ptr());
    assert_eq!(rc, 0, "no host kernel {name}");
    Ok(())
}

/// A pointer to one argument's value, as CUDA's `kernelParams` holds it.
fn arg<T>(v: &T) -> *mut c_void {
    v as *const T as *mut c_void
}

/// One iteration on the host build: `state` → `next` (both `batch × words`), through `scores`
/// (`n × batch`, fanal-major).
fn host_iteration(
    kb: &KernelBatch,
    w: &[u64],
    state: &[u64],
    scores: &mut [u32],
    next: &mut [u64],
) -> Result<()> {
    assert_eq!(w.len(), kb.neurons() * kb.words, "W");
    assert_eq!(state.len(), kb.batch * kb.words, "state");
    assert_eq!(next.len(), kb.batch * kb.words, "next state");
    assert_eq!(scores.len(), kb.batch * kb.neurons(), "scores");
    assert_eq!(kb.allowed.len(), kb.batch * kb.clusters, "allowed clusters");
    let (b, x, l, wd) = (
        int("batch", kb.batch)?,
        int("clusters", kb.clusters)?,
        int("fanals", kb.fanals)?,
        int("words", kb.words)?,
    );
    let (rule, gamma) = (kb.rule, kb.gamma);
    let (wp, sp, ap, op) = (
        w.as_ptr(),
        state.as_ptr(),
        kb.allowed.as_ptr(),
        scores.as_mut_ptr(),
    );
    // SAFETY: gb_scores(int batch, int clusters, int fanals, int words, int rule, unsigned
    // gamma, const u64* w, const u64* state, const u8* allowed, unsigned* scores), every buffer's
    // length checked above.
    unsafe {
        host_launch(
            "gb_scores",
            kb.score_threads(),
            &mut [
                arg(&b),
                arg(&x),
                arg(&l),
                arg(&wd),
                arg(&rule),
                arg(&gamma),
                arg(&wp),
                arg(&sp),
                arg(&ap),
                arg(&op),
            ],
        )?;
    }
    let (sp, np) = (scores.as_ptr(), next.as_mut_ptr());
    // SAFETY: gb_winners(int batch, int clusters, int fanals, int words, const unsigned* scores,
    // u64* next), lengths checked above.
    unsafe {
        host_launch(
            "gb_winners",
            kb.winner_threads(),
            &mut [arg(&b), arg(&x), arg(&l), arg(&wd), arg(&sp), arg(&np)],
        )
    }
}

/// Retrieval from many cues on the host build of the kernel: `settings.iterations` iterations
/// (two launches each) from the cues' initial states; one packed state per cue, in order. The
/// same states as [`GbNetwork::recall`] (`tests/cuda_host.rs`).
pub fn recall_batch_host(
    net: &GbNetwork,
    cues: &[Cue],
    settings: &RecallSettings,
) -> Result<Vec<Vec<u64>>> {
    let kb = KernelBatch::new(net, cues, settings)?;
    let w = net.matrix().words();
    let mut state = kb.states.clone();
    let mut next = vec![0u64; state.len()];
    let mut scores = vec![0u32; kb.score_threads()];
    for _ in 0..settings.iterations {
        host_iteration(&kb, w, &state, &mut scores, &mut next)?;
        std::mem::swap(&mut state, &mut next);
    }
    Ok(kb.split(state))
}

#[cfg(feature = "cuda")]
pub use device::{recall_batch_cuda, CudaGbNetwork, GB_PTX};

#[cfg(feature = "cuda")]
mod device {
    use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaDevice, WrapErr};

    use super::{grid, int, KernelBatch, BLOCK};
    use crate::gb::{Cue, GbNetwork, RecallSettings};

    /// `src/kernels/gb.cu` compiled to PTX by nvcc (`build.rs`).
    pub const GB_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gb.ptx"));

    /// The module name under which Candle's device caches the PTX.
    const MODULE: &str = "remanence_memory_gb";

    fn err(e: crate::MemoryError) -> candle_core::Error {
        candle_core::Error::wrap(e)
    }

    fn config(threads: usize) -> candle_core::Result<LaunchConfig> {
        Ok(LaunchConfig {
            grid_dim: (grid(threads).map_err(err)?.max(1), 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        })
    }

    /// A network whose connection matrix sits on a CUDA device, for many batches of cues.
    pub struct CudaGbNetwork<'a> {
        net: &'a GbNetwork,
        dev: CudaDevice,
        w: CudaSlice<u64>,
    }

    impl<'a> CudaGbNetwork<'a> {
        /// Copies W (n × ⌈n/64⌉ words) to `dev`.
        pub fn new(dev: &CudaDevice, net: &'a GbNetwork) -> candle_core::Result<Self> {
            let w = dev.clone_htod(net.matrix().words())?;
            Ok(Self {
                net,
                dev: dev.clone(),
                w,
            })
        }

        /// Retrieval from many cues on the device: the cues prepared as
        /// [`super::recall_batch_host`] prepares them, `settings.iterations` iterations of the
        /// two kernels on the device's stream, the final packed states copied back, one per cue.
        pub fn recall_batch(
            &self,
            cues: &[Cue],
            settings: &RecallSettings,
        ) -> candle_core::Result<Vec<Vec<u64>>> {
            let kb = KernelBatch::new(self.net, cues, settings).map_err(err)?;
            if kb.batch == 0 {
                return Ok(Vec::new());
            }
            let dev = &self.dev;
            let (b, x, l, wd) = (
                int("batch", kb.batch).map_err(err)?,
                int("clusters", kb.clusters).map_err(err)?,
                int("fanals", kb.fanals).map_err(err)?,
                int("words", kb.words).map_err(err)?,
            );
            let (rule, gamma) = (kb.rule, kb.gamma);
            let allowed = dev.clone_htod(&kb.allowed)?;
            let mut state = dev.clone_htod(&kb.states)?;
            let mut next = dev.alloc_zeros::<u64>(kb.states.len())?;
            let mut scores = dev.alloc_zeros::<u32>(kb.score_threads())?;
            let scores_fn = dev.get_or_load_custom_func("gb_scores", MODULE, GB_PTX)?;
            let winners_fn = dev.get_or_load_custom_func("gb_winners", MODULE, GB_PTX)?;
            let (score_cfg, winner_cfg) =
                (config(kb.score_threads())?, config(kb.winner_threads())?);
            for _ in 0..settings.iterations {
                {
                    let mut a = scores_fn.builder();
                    a.arg(&b)
                        .arg(&x)
                        .arg(&l)
                        .arg(&wd)
                        .arg(&rule)
                        .arg(&gamma)
                        .arg(&self.w)
                        .arg(&state)
                        .arg(&allowed)
                        .arg(&mut scores);
                    // SAFETY: the arguments of gb_scores in order and type (the list the host
                    // build is tested with); W holds n × words, the state batch × words, allowed
                    // batch × χ, scores n × batch values.
                    unsafe { a.launch(score_cfg) }.w()?;
                }
                {
                    let mut a = winners_fn.builder();
                    a.arg(&b)
                        .arg(&x)
                        .arg(&l)
                        .arg(&wd)
                        .arg(&scores)
                        .arg(&mut next);
                    // SAFETY: the arguments of gb_winners; scores n × batch, next batch × words.
                    unsafe { a.launch(winner_cfg) }.w()?;
                }
                std::mem::swap(&mut state, &mut next);
            }
            let words = dev.clone_dtoh(&state)?;
            Ok(kb.split(words))
        }
    }

    /// [`CudaGbNetwork::new`] then [`CudaGbNetwork::recall_batch`]: W copied for this one batch.
    pub fn recall_batch_cuda(
        dev: &CudaDevice,
        net: &GbNetwork,
        cues: &[Cue],
        settings: &RecallSettings,
    ) -> candle_core::Result<Vec<Vec<u64>>> {
        CudaGbNetwork::new(dev, net)?.recall_batch(cues, settings)
    }
}
