//! How the learner meets each experience. Every method is the trainer's ordinary gradient step
//! ([`GradientLearner`]) with plugins, so no method has a training loop of its own:
//!
//! - **naive**: fine-tune on each experience in turn (the lower bound: catastrophic forgetting).
//! - **joint**: train on the union of the experiences seen so far (cumulative training; the
//!   upper bound a method without stored data tries to reach).
//! - **replay**: a class-balanced buffer of at most `per_class` real sequences of each class
//!   seen, filled at the end of each experience with sequences drawn from the seed; every
//!   training batch of later experiences gets `per_batch` sequences drawn from it (Rebuffi et
//!   al. 2017's class-balanced memory; Chaudhry et al. 2019's experience replay).
//! - **agem**: the same class-balanced memory, used as a constraint instead of as data: each
//!   step's gradient is projected so that it does not increase the loss on a reference batch
//!   drawn from the memory (averaged gradient episodic memory, Chaudhry et al. 2019); see
//!   [`crate::agem`].
//!
//! - **ewc**, **si**, **lwf**: a penalty on the loss that holds on to earlier experiences (online
//!   elastic weight consolidation, synaptic intelligence, learning without forgetting); see
//!   [`crate::regularizers`].
//!
//! - **dual-net**: Ans & Rousset's two networks coupled by reverberated pseudo-patterns; NET1
//!   learns each experience with NET2's pseudo-patterns, then NET2 learns NET1's (never real
//!   data); see [`crate::dual`] and [`crate::reverberation`].
//!
//! - **assoc-memory** (alias `memory`): the model learns the first experience by gradient (as
//!   naive), then is a frozen feature extractor: later experiences run no trainer at all
//!   ([`MethodState::trains`]). After each experience the codes of its training sequences'
//!   features (product quantisation fitted on the first experience's) are OR-ed into a binary
//!   bipartite class memory, which predicts every test sequence over the classes learnt so far
//!   ([`MethodState::score_all`]); see [`crate::assoc`]. Class-incremental (and permuted)
//!   scenarios only, in one process.
//!
//! The optimizer starts afresh at each experience (its moments belong to the last data).
//!
//! **Task-incremental scenarios** (`split-task`): the learner masks each sequence's read-out to
//! its group ([`crate::task_il`]); A-GEM's reference loss, EWC's Fisher and LwF's teacher read-out
//! are masked alike. The dual network masks its real data alike but distils its unlabelled
//! pseudo-patterns on the whole read-out: they belong to no group, and keeping every logit
//! keeps the order within each group that the masked arg-max reads.
//!
//! **Sequences without class labels** (sequence lists): the memory of replay and A-GEM keeps, of
//! each experience, up to `per_class × (classes of the experience)` sequences drawn at random
//! instead of `per_class` of each class. LwF, which distils one class read-out per sequence,
//! refuses them.
//!
//! **Random streams and resuming.** Every random stream of a method (the memory's draws, the
//! dual network's noise and transfers) is reseeded from (run seed, experience) when the
//! experience begins ([`MethodState::learner`]), so what an experience draws does not depend on
//! how the run got there: a run stopped after experience k and resumed from the state saved
//! then ([`MethodState::save`], [`MethodState::load`]) learns exactly what the uninterrupted run
//! learns.
//!
//! **Data-parallel training** (`remanence continual --distributed mpi`, [`crate::runner::Parallel`]).
//! Every rank runs the same scenario with the same seeds; at each step of an experience
//! `remanence_distributed::AllReducePlugin` cuts the global batch into one contiguous shard per
//! rank and all-reduces the shards' gradients weighted by their loss normalisers `w_r`, so the
//! update is that of the whole batch. Where it sits among the method's plugins
//! ([`MethodState::learner_parallel`]) decides what it sees:
//!
//! ```text
//! task-IL mask → dual-net → replay → ALL-REDUCE → A-GEM → EWC → SI → LwF
//! ```
//!
//! - *After every plugin that changes the batch in `prepare`*: replay appends its draw from the
//!   memory to the global batch, and it is that mixed batch that is sharded (the draw comes from
//!   the memory's stream, identical on every rank). The task-incremental mask and the dual
//!   network change no batch in `prepare` (the mask acts on each sequence's own read-out, the
//!   dual network adds its pseudo-patterns as a loss term), so their place does not matter.
//! - *Before every plugin whose `transform_gradients` needs the global gradient*: A-GEM projects
//!   the averaged gradient against its reference gradient (drawn from the memory and computed
//!   in full on every rank: the same on each), and SI integrates `−g·Δθ` with the gradient the
//!   optimizer applies.
//! - *Penalties of the parameters alone* (EWC, SI) are the same term `e` on every rank:
//!   `Σ_r w_r (l_r + e) / Σ_r w_r = l + e`, so averaging keeps them (and SI's own gradient,
//!   which it takes off the averaged one, is that of the global step).
//! - *Losses on the batch* must be normalised like the task loss for the weighted average to be
//!   the global loss. LwF's distillation is a mean over the batch's sequences, and LwF learns
//!   only class objectives, whose normaliser is the number of sequences: exact (with
//!   task-incremental heads, a mean over old groups of such means: exact too). The dual
//!   network's terms are not: its pseudo-patterns are `⌈ρ·B⌉` for a batch of `B`, generated per
//!   step from its own random stream, so a rank would generate for its shard neither the
//!   patterns nor the number of patterns of the single-process step (and the denoising
//!   reconstruction draws its noise per batch alike). `dual-net` is refused under
//!   `--distributed` ([`Method::check_distributed`]).
//!
//! Everything else runs replicated on every rank, deterministically from the same seeds: the
//! memory's draws and its filling, EWC's Fisher (on the whole training set), SI's and LwF's
//! consolidation, the scoring. The all-reduce plugin checks once an epoch that the ranks'
//! parameters still agree; the runner checks again after each experience.
use std::sync::{Arc, Mutex};

use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_cells::{ParamStore, SequenceModel};
use remanence_tasks::Split;
use remanence_train::learner::{GradientLearner, Plugin};
use remanence_train::{Learner, RunConfig};
use serde::{Deserialize, Serialize};

use crate::agem::AgemPlugin;
use crate::assoc::{AssocReport, AssocState};
use crate::dual::{DualOptions, DualState, TransferReport};
use crate::error::{ContinualError, Result};
use crate::regularizers::{
    empirical_fisher, frozen_copy, snapshot, Ewc, EwcPlugin, LwfPlugin, Si, SiPlugin,
};
use crate::scenario::{Experience, ScenarioSpec};

pub use crate::replay::{concat, ReplayBuffer, ReplayPlugin};
pub use crate::saved::{SavedDual, SavedItem, SavedState, STATE_JSON, STATE_TENSORS};

/// A continual-learning method and its settings. Serialised (in a run's `continual.json`) as an
/// object whose `name` is [`Method::name`] beside the settings, e.g.
/// `{"name": "ewc", "lambda": 1000.0, "decay": 1.0}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Method {
    Naive,
    Joint,
    Replay {
        per_class: usize,
        per_batch: usize,
    },
    /// Online EWC: penalty `(λ/2) Σ F (θ − θ*)²`, Fisher `F ← decay·F + F_new`.
    Ewc {
        lambda: f64,
        decay: f64,
    },
    /// Synaptic intelligence: penalty `c Σ Ω (θ − θ*)²`, damping `ξ`.
    Si {
        c: f64,
        xi: f64,
    },
    /// Learning without forgetting: `α·T²·KL(old ‖ new)` on softened class read-outs.
    Lwf {
        alpha: f64,
        temperature: f64,
    },
    /// A-GEM: a memory of `per_class` sequences a class; each step's gradient `g` is projected
    /// to `g − (gᵀg_ref / g_refᵀg_ref)·g_ref` when `gᵀg_ref < 0`, `g_ref` the loss gradient on
    /// `batch` sequences drawn from the memory.
    Agem {
        per_class: usize,
        batch: usize,
    },
    /// Ans & Rousset's dual network (see [`crate::dual`]).
    DualNet(DualOptions),
    /// A binary bipartite memory over the frozen features of the model trained on the first
    /// experience: `segments` × `anchors` product-quantisation neurons, `per_class` training
    /// sequences stored per class (the first of the experience; `None`: all). See
    /// [`crate::assoc`].
    AssocMemory {
        segments: usize,
        anchors: usize,
        per_class: Option<usize>,
    },
}

/// The settings of every method; [`Method::parse`] takes those of the method named.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MethodOptions {
    /// replay: sequences kept per class.
    pub per_class: usize,
    /// replay: buffered sequences added to each batch.
    pub per_batch: usize,
    pub ewc_lambda: f64,
    pub ewc_decay: f64,
    pub si_c: f64,
    pub si_xi: f64,
    pub lwf_alpha: f64,
    pub lwf_temperature: f64,
    /// agem: memory sequences in each step's reference batch (all of them when fewer).
    pub agem_batch: usize,
    /// dual-net: its settings.
    pub dual: DualOptions,
    /// assoc-memory: P, the segments of the product quantiser.
    #[serde(default = "default_segments")]
    pub segments: usize,
    /// assoc-memory: K, the anchors of each segment.
    #[serde(default = "default_anchors")]
    pub anchors: usize,
    /// assoc-memory: training sequences stored per class (`None`: all).
    #[serde(default)]
    pub store_per_class: Option<usize>,
}

fn default_segments() -> usize {
    16
}

fn default_anchors() -> usize {
    64
}

impl Default for MethodOptions {
    /// replay 50 a class and 20 a batch (Cossu et al. 2021); LwF T = 1.5 (Cossu et al.), α = 1;
    /// SI c = 1, ξ = 10⁻³; EWC λ = 1000, decay 1 (plain EWC); A-GEM reference batch 256 (Cossu et
    /// al.). λ, c and α are not tuned. assoc-memory: 16 segments of 64 anchors (as `remanence
    /// memory classify`), every training sequence stored.
    fn default() -> Self {
        Self {
            per_class: 50,
            per_batch: 20,
            ewc_lambda: 1000.0,
            ewc_decay: 1.0,
            si_c: 1.0,
            si_xi: 1e-3,
            lwf_alpha: 1.0,
            lwf_temperature: 1.5,
            agem_batch: 256,
            dual: DualOptions::default(),
            segments: default_segments(),
            anchors: default_anchors(),
            store_per_class: None,
        }
    }
}

fn check(ok: bool, what: &str, value: f64) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(ContinualError::Config(format!("{what} (got {value})")))
    }
}

impl Method {
    pub const NAMES: [&'static str; 9] = [
        "naive",
        "joint",
        "replay",
        "ewc",
        "si",
        "lwf",
        "agem",
        "dual-net",
        "assoc-memory",
    ];

    /// The method called `name`, with its settings from `o` (the others' are ignored).
    pub fn parse(name: &str, o: &MethodOptions) -> Result<Self> {
        let (per_class, per_batch) = (o.per_class, o.per_batch);
        match name {
            "ewc" => {
                check(
                    o.ewc_lambda >= 0.0,
                    "--ewc-lambda must be ≥ 0",
                    o.ewc_lambda,
                )?;
                check(
                    (0.0..=1.0).contains(&o.ewc_decay),
                    "--ewc-decay must lie in [0, 1]",
                    o.ewc_decay,
                )?;
                Ok(Self::Ewc {
                    lambda: o.ewc_lambda,
                    decay: o.ewc_decay,
                })
            }
            "si" => {
                check(o.si_c >= 0.0, "--si-c must be ≥ 0", o.si_c)?;
                check(o.si_xi > 0.0, "--si-xi must be > 0", o.si_xi)?;
                Ok(Self::Si {
                    c: o.si_c,
                    xi: o.si_xi,
                })
            }
            "lwf" => {
                check(o.lwf_alpha >= 0.0, "--lwf-alpha must be ≥ 0", o.lwf_alpha)?;
                check(
                    o.lwf_temperature > 0.0,
                    "--lwf-temperature must be > 0",
                    o.lwf_temperature,
                )?;
                Ok(Self::Lwf {
                    alpha: o.lwf_alpha,
                    temperature: o.lwf_temperature,
                })
            }
            "dual-net" => {
                o.dual.validate()?;
                Ok(Self::DualNet(o.dual))
            }
            "naive" => Ok(Self::Naive),
            "joint" | "cumulative" => Ok(Self::Joint),
            "replay" => {
                if per_class == 0 || per_batch == 0 {
                    return Err(ContinualError::Config(format!(
                        "--method replay needs --buffer-per-class and --replay-batch ≥ 1 (got {per_class}, {per_batch})"
                    )));
                }
                Ok(Self::Replay {
                    per_class,
                    per_batch,
                })
            }
            "agem" => {
                if per_class == 0 || o.agem_batch == 0 {
                    return Err(ContinualError::Config(format!(
                        "--method agem needs --buffer-per-class and --agem-batch ≥ 1 (got {per_class}, {})",
                        o.agem_batch
                    )));
                }
                Ok(Self::Agem {
                    per_class,
                    batch: o.agem_batch,
                })
            }
            "assoc-memory" | "memory" => {
                if o.segments == 0 || o.anchors == 0 || o.store_per_class == Some(0) {
                    return Err(ContinualError::Config(format!(
                        "--method assoc-memory needs --segments, --anchors and --per-class ≥ 1 \
                         (got {}, {}, {})",
                        o.segments,
                        o.anchors,
                        o.store_per_class
                            .map_or("all".to_string(), |n| n.to_string())
                    )));
                }
                Ok(Self::AssocMemory {
                    segments: o.segments,
                    anchors: o.anchors,
                    per_class: o.store_per_class,
                })
            }
            m => Err(ContinualError::Config(format!(
                "unknown method `{m}`; methods: {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// Refuses a method that cannot learn the scenario `spec`, saying why:
    /// - lwf on `lists`: it distils one class read-out per sequence, and sequence lists predict
    ///   an item at every step.
    /// - assoc-memory on `lists` (the memory learns one class per sequence) and on `split-task`
    ///   (it answers over every class learnt, knowing no task identity).
    pub fn check_scenario(&self, spec: &ScenarioSpec) -> Result<()> {
        match (self, spec) {
            (Self::AssocMemory { .. }, ScenarioSpec::SplitTask { .. }) => {
                Err(ContinualError::Config(format!(
                    "--method assoc-memory is a class-incremental method: its memory predicts \
                     over every class learnt so far and knows no task identity, and the \
                     scenario {spec} is task-incremental (each sequence's read-out masked to its \
                     group); use split:TASK:N"
                )))
            }
            (Self::AssocMemory { .. }, ScenarioSpec::Lists { .. }) => {
                Err(ContinualError::Config(format!(
                    "--method assoc-memory cannot learn the scenario {spec}: its memory learns \
                     one class per sequence (from the features after the sequence's last step), \
                     and sequence lists predict the next item at every step; use split:TASK:N"
                )))
            }
            (Self::Lwf { .. }, ScenarioSpec::Lists { .. }) => Err(ContinualError::Config(format!(
                "--method lwf cannot learn the scenario {spec}: it distils one class read-out \
                 per sequence, and sequence lists predict the next item at every step; use \
                 naive, joint, replay, ewc, si, agem or dual-net"
            ))),
            _ => Ok(()),
        }
    }

    /// Refuses a class-balanced memory that would keep every training sequence of some class of
    /// an experience: it would be the data, not a memory (use joint training for that).
    pub fn check_memory(&self, scenario: &crate::scenario::Scenario) -> Result<()> {
        let (per_class, flag) = match self {
            Self::Replay { per_class, .. } | Self::Agem { per_class, .. } => {
                (*per_class, "--buffer-per-class")
            }
            Self::DualNet(o) if o.seeds_per_class > 0 => (o.seeds_per_class, "--seeds-per-class"),
            _ => return Ok(()),
        };
        for (k, e) in scenario.experiences.iter().enumerate() {
            let mut counts = std::collections::BTreeMap::<usize, usize>::new();
            for i in 0..e.train.len() {
                if let Some(c) = remanence_tasks::SequenceTask::label(e, Split::Train, i) {
                    *counts.entry(c).or_default() += 1;
                }
            }
            if let Some((class, n)) = counts.iter().min_by_key(|(_, n)| **n) {
                if per_class >= *n {
                    return Err(ContinualError::Config(format!(
                        "{flag} {per_class} keeps every training sequence of class {class} of experience {k} ({n} of them): the memory would be the data; use a smaller memory, or --method joint"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuses a method whose data-parallel training would not give the single-process result
    /// (see the module's notes): the dual network, whose pseudo-patterns and denoising noise are
    /// drawn per step for the batch at hand, so a rank's shard would get neither those of the
    /// single-process step nor their number.
    pub fn check_distributed(&self) -> Result<()> {
        match self {
            Self::AssocMemory { .. } => Err(ContinualError::Config(
                "--method assoc-memory cannot run with --distributed: after the first experience \
                 it takes no gradient step to share among ranks, and its memory (feature \
                 extraction, the quantiser's k-means, the bit matrix) is built in one process; \
                 run it in one process"
                    .into(),
            )),
            Self::DualNet(_) => Err(ContinualError::Config(
                "--method dual-net cannot be trained with --distributed: NET1's pseudo-patterns \
                 (⌈ρ·B⌉ of them for a batch of B) and its denoising noise are drawn at each step \
                 for the batch at hand, so the ranks' shards would not learn the patterns of the \
                 single-process step and the result would differ; run dual-net in one process \
                 (naive, joint, replay, ewc, si, lwf and agem train data-parallel exactly)"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Naive => "naive",
            Self::Joint => "joint",
            Self::Replay { .. } => "replay",
            Self::Ewc { .. } => "ewc",
            Self::Si { .. } => "si",
            Self::Lwf { .. } => "lwf",
            Self::Agem { .. } => "agem",
            Self::DualNet(_) => "dual-net",
            Self::AssocMemory { .. } => "assoc-memory",
        }
    }
}

/// The seed of experience `k`'s random streams in a run of seed `seed`: every method's streams
/// restart from it when the experience begins, whatever came before.
pub fn experience_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// What a method keeps from one experience to the next.
pub struct MethodState {
    pub method: Method,
    /// The run's seed; experience k's random streams start from [`experience_seed`]`(seed, k)`.
    pub seed: u64,
    pub buffer: Option<Arc<Mutex<ReplayBuffer>>>,
    /// ewc: the accumulated Fisher and the anchor.
    pub ewc: Option<Ewc>,
    /// si: importances, anchor and the running path integral.
    pub si: Option<Arc<Mutex<Si>>>,
    /// lwf: the model as it was after the last experience.
    pub teacher: Option<Arc<Mutex<SequenceModel>>>,
    /// dual-net: NET2, the data's range and the seed buffer.
    pub dual: Option<DualState>,
    /// dual-net: how the last transfer went.
    pub last_transfer: Option<TransferReport>,
    /// assoc-memory: the quantiser and the bipartite memory.
    pub assoc: Option<AssocState>,
    /// assoc-memory: what the memory did after the last experience.
    pub last_assoc: Option<AssocReport>,
}

impl MethodState {
    /// The state of `method` before the first experience; `cfg` and `device` build the dual
    /// network's NET2.
    pub fn new(method: Method, cfg: &RunConfig, device: &Device) -> Result<Self> {
        let seed = cfg.train.seed;
        let buffer = match method {
            Method::Replay { per_class, .. } | Method::Agem { per_class, .. } => {
                Some(Arc::new(Mutex::new(ReplayBuffer::new(per_class, seed))))
            }
            _ => None,
        };
        let ewc = match method {
            Method::Ewc { lambda, decay } => Some(Ewc::new(lambda, decay)),
            _ => None,
        };
        let si = match method {
            Method::Si { c, xi } => Some(Arc::new(Mutex::new(Si::new(c, xi)))),
            _ => None,
        };
        let dual = match method {
            Method::DualNet(o) => Some(DualState::new(o, cfg, device)?),
            _ => None,
        };
        let assoc = match method {
            Method::AssocMemory {
                segments,
                anchors,
                per_class,
            } => Some(AssocState::new(segments, anchors, per_class, seed)?),
            _ => None,
        };
        Ok(Self {
            method,
            seed,
            buffer,
            ewc,
            si,
            teacher: None,
            dual,
            last_transfer: None,
            assoc,
            last_assoc: None,
        })
    }

    /// Whether the model learns experience `k` by gradient: always, but for assoc-memory after
    /// its first experience (its feature extractor is frozen: the runner runs no trainer).
    pub fn trains(&self, k: usize) -> bool {
        !matches!(self.method, Method::AssocMemory { .. }) || k == 0
    }

    /// The accuracy on every experience of `scenario` after an experience, `model` the model it
    /// ended with: the model's read-out ([`crate::runner::score_all`]), or for assoc-memory the
    /// memory's predictions over the classes learnt so far ([`AssocState::score_all`]).
    pub fn score_all(
        &self,
        model: &SequenceModel,
        scenario: &crate::scenario::Scenario,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<Vec<f64>> {
        match &self.assoc {
            Some(a) => a.score_all(model, scenario, cfg, device),
            None => crate::runner::score_all(model, scenario, cfg, device),
        }
    }

    /// Restarts every random stream of the method for experience `k` from
    /// [`experience_seed`]`(seed, k)`: the memory's, and the dual network's noise, transfer and
    /// seed draws.
    pub fn begin_experience(&mut self, k: usize) {
        let s = experience_seed(self.seed, k);
        if let Some(b) = &self.buffer {
            b.lock().expect("replay buffer").reseed(s);
        }
        if let Some(d) = &mut self.dual {
            d.rng = ChaCha8Rng::seed_from_u64(s ^ 0xD0A1_0E7);
            if let Some(b) = &d.buffer {
                b.lock().expect("seed buffer").reseed(s ^ 0xD0A1_5EED);
            }
        }
    }

    /// The learner for experience `k`, `exp`: a fresh optimizer, the method's plugins and
    /// `extra` (task-incremental masking) first. Restarts the method's random streams for `k`
    /// ([`MethodState::begin_experience`]); with a task-incremental `exp`
    /// ([`Experience::task_mask`]) A-GEM's reference loss and LwF's teacher are masked too.
    pub fn learner(
        &mut self,
        cfg: &RunConfig,
        k: usize,
        exp: &Experience,
        extra: Option<Box<dyn Plugin>>,
    ) -> Result<Box<dyn Learner>> {
        self.learner_parallel(cfg, k, exp, extra, None)
    }

    /// [`MethodState::learner`] with `all_reduce`, the plugin of data-parallel training
    /// (`remanence_distributed::AllReducePlugin`), placed after the plugins that change the
    /// batch (replay) and before those that read the gradient (A-GEM, SI) and the penalties:
    /// `extra → dual-net → replay → all_reduce → A-GEM → EWC → SI → LwF` (see the module's
    /// notes). Refuses a method that [`Method::check_distributed`] refuses when `all_reduce` is
    /// given.
    pub fn learner_parallel(
        &mut self,
        cfg: &RunConfig,
        k: usize,
        exp: &Experience,
        extra: Option<Box<dyn Plugin>>,
        all_reduce: Option<Box<dyn Plugin>>,
    ) -> Result<Box<dyn Learner>> {
        if all_reduce.is_some() {
            self.method.check_distributed()?;
        }
        self.begin_experience(k);
        let mask = exp.task_mask();
        let mut l = GradientLearner::new(cfg.train.optimizer.build(), cfg.train.clip_norm);
        if let Some(p) = extra {
            l = l.with_plugin(p);
        }
        if let Some(d) = &mut self.dual {
            d.range.observe(exp, 4096)?;
            l = l.with_plugin(Box::new(d.plugin(k)));
        }
        if let (Method::Replay { per_batch, .. }, Some(buffer)) = (self.method, &self.buffer) {
            l = l.with_plugin(Box::new(ReplayPlugin {
                buffer: buffer.clone(),
                per_batch,
            }));
        }
        // Shards the batch as replay left it; every plugin after it sees the rank's shard and,
        // in `transform_gradients`, the global gradient.
        if let Some(p) = all_reduce {
            l = l.with_plugin(p);
        }
        if let (Method::Agem { batch, .. }, Some(buffer)) = (self.method, &self.buffer) {
            l = l.with_plugin(Box::new(
                AgemPlugin::new(buffer.clone(), batch).with_mask(mask.clone()),
            ));
        }
        if let Some(ewc) = &self.ewc {
            l = l.with_plugin(Box::new(EwcPlugin { ewc: ewc.clone() }));
        }
        if let Some(si) = &self.si {
            l = l.with_plugin(Box::new(SiPlugin { si: si.clone() }));
        }
        if let (Method::Lwf { alpha, temperature }, Some(teacher)) = (self.method, &self.teacher) {
            l = l.with_plugin(Box::new(LwfPlugin {
                teacher: teacher.clone(),
                alpha,
                temperature,
                mask: mask.clone(),
                old_groups: (0..k).collect(),
            }));
        }
        Ok(Box::new(l))
    }

    /// After experience `exp` was learned, `model` over `store` the weights it ended with. With
    /// a task-incremental `exp` EWC's Fisher is that of the masked loss.
    pub fn after_experience(
        &mut self,
        exp: &Experience,
        model: &SequenceModel,
        store: &ParamStore,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<()> {
        if let Some(b) = &self.buffer {
            b.lock().expect("replay buffer").add_experience(exp);
        }
        let dtype = cfg.dtype()?;
        if let Some(ewc) = &mut self.ewc {
            let mask = exp.task_mask();
            let fisher = empirical_fisher(
                model,
                store,
                exp,
                cfg.train.batch_size,
                dtype,
                device,
                mask.as_deref(),
            )?;
            ewc.consolidate(fisher, snapshot(&store.vars())?)?;
        }
        if let Some(si) = &self.si {
            si.lock().expect("si state").consolidate(&store.vars())?;
        }
        if let Method::Lwf { .. } = self.method {
            let teacher = frozen_copy(&cfg.model, store, dtype, device)?;
            self.teacher = Some(Arc::new(Mutex::new(teacher)));
        }
        if let Some(d) = &mut self.dual {
            if let Some(b) = &d.buffer {
                b.lock().expect("seed buffer").add_experience(exp);
            }
            let net2 = d.net2.lock().expect("NET2");
            let report = crate::dual::transfer(
                model,
                &net2,
                &d.net2_store,
                cfg,
                remanence_tasks::SequenceTask::objective(exp),
                &d.options,
                &d.range,
                d.buffer.as_ref(),
                &mut d.rng,
                device,
            )?;
            drop(net2);
            d.trained = true;
            self.last_transfer = Some(report);
        }
        if let Some(a) = &mut self.assoc {
            self.last_assoc = Some(a.learn(exp, model, cfg, device)?);
        }
        Ok(())
    }
}
