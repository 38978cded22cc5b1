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
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_cells::{io, ParamStore, SequenceModel};
use remanence_tasks::{Batch, Split};
use remanence_train::learner::{GradientLearner, Plugin, StepContext};
use remanence_train::{Learner, RunConfig};
use serde::{Deserialize, Serialize};

use crate::agem::AgemPlugin;
use crate::dual::{DualOptions, DualState, TransferReport};
use crate::error::{ContinualError, Result};
use crate::regularizers::{
    empirical_fisher, frozen_copy, snapshot, Ewc, EwcPlugin, LwfPlugin, Named, Si, SiPlugin,
};
use crate::reverberation::InputRange;
use crate::scenario::{Experience, Item, ScenarioSpec};

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
}

impl Default for MethodOptions {
    /// replay 50 a class and 20 a batch (Cossu et al. 2021); LwF T = 1.5 (Cossu et al.), α = 1;
    /// SI c = 1, ξ = 10⁻³; EWC λ = 1000, decay 1 (plain EWC); A-GEM reference batch 256 (Cossu et
    /// al.). λ, c and α are not tuned.
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
    pub const NAMES: [&'static str; 8] = [
        "naive", "joint", "replay", "ewc", "si", "lwf", "agem", "dual-net",
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
            m => Err(ContinualError::Config(format!(
                "unknown method `{m}`; methods: {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// Refuses a method that cannot learn the scenario `spec`, saying why:
    /// - lwf on `lists`: it distils one class read-out per sequence, and sequence lists predict
    ///   an item at every step.
    pub fn check_scenario(&self, spec: &ScenarioSpec) -> Result<()> {
        match (self, spec) {
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
        }
    }
}

/// The replay memory: sequences of past experiences, at most `per_class` a class (of
/// sequences without a class label: at most `per_class × classes` of each experience).
pub struct ReplayBuffer {
    per_class: usize,
    /// Each buffered sequence with its class (`None`: the task gives it no label).
    items: Vec<(Option<usize>, Item)>,
    /// Reads buffered items (all experiences share the base task and permutations).
    reader: Option<Experience>,
    rng: ChaCha8Rng,
}

impl ReplayBuffer {
    pub fn new(per_class: usize, seed: u64) -> Self {
        Self {
            per_class,
            items: Vec::new(),
            reader: None,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_BEEF),
        }
    }

    /// Restarts the buffer's random stream (what it draws and which sequences it keeps) from
    /// `seed`, as [`ReplayBuffer::new`] starts it.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_BEEF);
    }

    /// Adds training sequences of `exp` drawn at random: up to `per_class` of each class, and
    /// of the sequences the task gives no class label (sequence lists), up to
    /// `per_class × exp.classes.len()` (at least `per_class`).
    pub fn add_experience(&mut self, exp: &Experience) {
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..exp.train.len()).collect();
        order.shuffle(&mut self.rng);
        let mut taken = std::collections::BTreeMap::<usize, usize>::new();
        let unlabelled_cap = self.per_class.saturating_mul(exp.classes.len().max(1));
        let mut unlabelled = 0usize;
        for i in order {
            match remanence_tasks::SequenceTask::label(exp, Split::Train, i) {
                Some(class) => {
                    let n = taken.entry(class).or_default();
                    if *n < self.per_class {
                        *n += 1;
                        self.items.push((Some(class), exp.train[i]));
                    }
                }
                None => {
                    if unlabelled < unlabelled_cap {
                        unlabelled += 1;
                        self.items.push((None, exp.train[i]));
                    }
                }
            }
        }
        self.reader = Some(exp.clone());
    }

    /// The buffered sequences, each with its class (`None`: no label), in the order they were
    /// added.
    pub fn items(&self) -> &[(Option<usize>, Item)] {
        &self.items
    }

    /// Replaces the buffered sequences by `items` (as [`ReplayBuffer::items`] gave them), read
    /// through `reader` (any experience of the scenario: they share the base task and the
    /// permutations). Fails on an item that names no training sequence of the scenario.
    pub fn restore(
        &mut self,
        items: Vec<(Option<usize>, Item)>,
        reader: &Experience,
    ) -> Result<()> {
        if let Some((_, bad)) = items.iter().find(|(_, i)| !reader.reads_train_item(i)) {
            return Err(ContinualError::Config(format!(
                "a stored memory item names sequence {} (permutation {:?}), which the scenario's \
                 training split does not hold",
                bad.index, bad.permutation
            )));
        }
        self.items = items;
        self.reader = Some(reader.clone());
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sequences per class held (sequences without a label are not counted).
    pub fn counts(&self) -> std::collections::BTreeMap<usize, usize> {
        let mut c = std::collections::BTreeMap::new();
        for (class, _) in &self.items {
            if let Some(class) = class {
                *c.entry(*class).or_default() += 1;
            }
        }
        c
    }

    /// A batch of `n` sequences drawn (with replacement across calls) from the buffer.
    fn sample(&mut self, n: usize, like: &Batch) -> Result<Option<Batch>> {
        self.draw(n, like.x.dtype(), like.x.device())
    }

    /// A batch of `min(n, len)` distinct buffered sequences drawn at random (independently at
    /// each call), in `dtype` on `device`; `None` while the buffer is empty.
    pub fn draw(&mut self, n: usize, dtype: DType, device: &Device) -> Result<Option<Batch>> {
        let Some(reader) = &self.reader else {
            return Ok(None);
        };
        let picked: Vec<Item> = self
            .items
            .choose_multiple(&mut self.rng, n.min(self.items.len()))
            .map(|(_, item)| *item)
            .collect();
        if picked.is_empty() {
            return Ok(None);
        }
        let b = reader.batch_of(Split::Train, &picked, dtype, device)?;
        Ok(Some(b))
    }
}

/// Appends `per_batch` buffered sequences to every training batch.
pub struct ReplayPlugin {
    buffer: Arc<Mutex<ReplayBuffer>>,
    per_batch: usize,
}

impl Plugin for ReplayPlugin {
    fn prepare(
        &mut self,
        _ctx: &StepContext,
        batch: &Batch,
    ) -> remanence_train::Result<Option<Batch>> {
        let replayed = self
            .buffer
            .lock()
            .expect("replay buffer")
            .sample(self.per_batch, batch)
            .map_err(|e| remanence_train::TrainError::Config(e.to_string()))?;
        match replayed {
            None => Ok(None),
            Some(r) => Ok(Some(concat(batch, &r)?)),
        }
    }
}

/// Two batches as one: sequences padded with zeros to the longer length, masks marking the real
/// steps, targets and lengths appended.
pub fn concat(a: &Batch, b: &Batch) -> candle_core::Result<Batch> {
    if a.dt.is_some() || b.dt.is_some() {
        candle_core::bail!("replay does not combine batches with elapsed times yet");
    }
    let (ta, tb) = (a.x.dim(1)?, b.x.dim(1)?);
    let t = ta.max(tb);
    let pad = |x: &Tensor, len: usize| -> candle_core::Result<Tensor> {
        if len == t {
            Ok(x.clone())
        } else {
            x.pad_with_zeros(1, 0, t - len)
        }
    };
    let mask = |batch: &Batch, len: usize| -> candle_core::Result<Tensor> {
        let m = match &batch.mask {
            Some(m) => m.clone(),
            None => Tensor::ones((batch.x.dim(0)?, len), batch.x.dtype(), batch.x.device())?,
        };
        pad(&m, len)
    };
    let needs_mask = a.mask.is_some() || b.mask.is_some() || ta != tb;
    let target = if a.target.rank() >= 2 {
        Tensor::cat(&[&pad(&a.target, ta)?, &pad(&b.target, tb)?], 0)?
    } else {
        Tensor::cat(&[&a.target, &b.target.to_dtype(a.target.dtype())?], 0)?
    };
    let n = a.indices.len() + b.indices.len();
    Ok(Batch {
        x: Tensor::cat(&[&pad(&a.x, ta)?, &pad(&b.x, tb)?], 0)?,
        target,
        mask: if needs_mask {
            Some(Tensor::cat(&[&mask(a, ta)?, &mask(b, tb)?], 0)?)
        } else {
            None
        },
        dt: None,
        indices: (0..n).collect(),
        lengths: a.lengths.iter().chain(&b.lengths).copied().collect(),
    })
}

/// The file, in an experience's folder, that holds a method's tensors after the experience
/// (safetensors): `ewc.fisher.<param>`, `ewc.anchor.<param>`, `si.omega.<param>`,
/// `si.anchor.<param>`, and `net2.<param>` (the dual network's NET2).
pub const STATE_TENSORS: &str = "method-state.safetensors";
/// The file, in an experience's folder, that holds the rest of a method's state after the
/// experience ([`SavedState`], JSON).
pub const STATE_JSON: &str = "method-state.json";

/// The seed of experience `k`'s random streams in a run of seed `seed`: every method's streams
/// restart from it when the experience begins, whatever came before.
pub fn experience_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

/// One buffered sequence as `method-state.json` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedItem {
    /// Its class; `None` for a sequence without a label.
    pub class: Option<usize>,
    /// Index into the base task's training split.
    pub index: usize,
    /// Input permutation of the scenario it is read through; `None`: none.
    pub permutation: Option<usize>,
}

impl SavedItem {
    fn from_buffer(b: &ReplayBuffer) -> Vec<Self> {
        b.items()
            .iter()
            .map(|(class, i)| SavedItem {
                class: *class,
                index: i.index,
                permutation: i.permutation,
            })
            .collect()
    }

    fn to_buffer(items: &[Self]) -> Vec<(Option<usize>, Item)> {
        items
            .iter()
            .map(|s| {
                (
                    s.class,
                    Item {
                        index: s.index,
                        permutation: s.permutation,
                    },
                )
            })
            .collect()
    }
}

/// The dual network's state beside NET2's weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedDual {
    /// Whether NET2 has learned anything yet.
    pub trained: bool,
    /// The data's per-feature range ([`InputRange`]), every floating-point number written as
    /// the hexadecimal bits of its f64 (`"f64:3ff0000000000000"` for 1.0), so it reads back
    /// exactly.
    pub range: serde_json::Value,
    /// The reverberation seeds' buffer (`None`: noise seeds only).
    pub seeds: Option<Vec<SavedItem>>,
}

/// What `method-state.json` records after an experience: everything a method keeps that is not
/// a tensor (the tensors are in [`STATE_TENSORS`]; LwF's teacher is the model the experience
/// ended with, saved as the experience's `model.safetensors`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedState {
    /// Experiences learned when the state was saved (k + 1 after experience k).
    pub experiences: usize,
    pub method: Method,
    /// replay, agem: the memory's sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<Vec<SavedItem>>,
    /// dual-net: NET2's companions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual: Option<SavedDual>,
}

/// `value` with every floating-point number replaced by the string `f64:<16 hex digits>` of its
/// bits (JSON readers round some decimals to a neighbouring f64).
fn floats_to_bits(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            Value::String(format!("f64:{:016x}", n.as_f64().unwrap_or(0.0).to_bits()))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(floats_to_bits).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, floats_to_bits(v))).collect())
        }
        v => v,
    }
}

/// The inverse of [`floats_to_bits`]; fails on bits that are no finite number.
fn floats_from_bits(value: serde_json::Value) -> std::result::Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        Value::String(s) if s.starts_with("f64:") => {
            let bits = u64::from_str_radix(&s[4..], 16).map_err(|e| format!("`{s}`: {e}"))?;
            let n = serde_json::Number::from_f64(f64::from_bits(bits))
                .ok_or_else(|| format!("`{s}` is not a finite number"))?;
            Value::Number(n)
        }
        Value::Array(a) => Value::Array(
            a.into_iter()
                .map(floats_from_bits)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| Ok((k, floats_from_bits(v)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
        v => v,
    })
}

fn file_err(path: &Path, msg: impl Into<String>) -> ContinualError {
    ContinualError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Takes every tensor `prefix<param>` out of `tensors`, each of which must name a parameter of
/// `params` and have its shape; `path` names the file in errors.
fn take_named(
    tensors: &mut HashMap<String, Tensor>,
    prefix: &str,
    params: &[(String, candle_core::Var)],
    path: &Path,
) -> Result<Named> {
    let keys: Vec<String> = tensors
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    let mut out = Named::new();
    for key in keys {
        let t = tensors.remove(&key).expect("listed above");
        let name = &key[prefix.len()..];
        let Some((_, v)) = params.iter().find(|(n, _)| n == name) else {
            return Err(file_err(
                path,
                format!("tensor `{key}` belongs to no parameter of the model"),
            ));
        };
        if t.dims() != v.dims() {
            return Err(file_err(
                path,
                format!(
                    "tensor `{key}` has shape {:?}, and the parameter {:?}",
                    t.dims(),
                    v.dims()
                ),
            ));
        }
        out.insert(name.to_string(), t);
    }
    if out.is_empty() && !params.is_empty() {
        return Err(file_err(path, format!("has no tensor `{prefix}…`")));
    }
    Ok(out)
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
        Ok(Self {
            method,
            seed,
            buffer,
            ewc,
            si,
            teacher: None,
            dual,
            last_transfer: None,
        })
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
        Ok(())
    }

    /// Writes the state after `experiences` experiences into the folder `dir` (an experience's
    /// folder): [`STATE_TENSORS`], then [`STATE_JSON`], each through a temporary file and a
    /// rename. Call it between experiences (SI's running path integral is empty then).
    pub fn save(&self, experiences: usize, dir: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut add = |prefix: &str, named: &Named| {
            for (name, t) in named {
                tensors.push((format!("{prefix}{name}"), t.clone()));
            }
        };
        if let Some(e) = &self.ewc {
            add("ewc.fisher.", &e.fisher);
            add("ewc.anchor.", &e.anchor);
        }
        if let Some(si) = &self.si {
            let si = si.lock().expect("si state");
            add("si.omega.", &si.omega);
            add("si.anchor.", &si.anchor);
        }
        if let Some(d) = &self.dual {
            for (name, t) in d.net2_store.tensors() {
                tensors.push((format!("net2.{name}"), t));
            }
        }
        io::write(&dir.join(STATE_TENSORS), &tensors, None)?;
        let dual = match &self.dual {
            Some(d) => Some(SavedDual {
                trained: d.trained,
                range: floats_to_bits(serde_json::to_value(&d.range).map_err(|e| {
                    file_err(
                        &dir.join(STATE_JSON),
                        format!("cannot record the range: {e}"),
                    )
                })?),
                seeds: d
                    .buffer
                    .as_ref()
                    .map(|b| SavedItem::from_buffer(&b.lock().expect("seed buffer"))),
            }),
            None => None,
        };
        let saved = SavedState {
            experiences,
            method: self.method,
            buffer: self
                .buffer
                .as_ref()
                .map(|b| SavedItem::from_buffer(&b.lock().expect("replay buffer"))),
            dual,
        };
        let text = serde_json::to_string_pretty(&saved).expect("a method state serialises");
        let path = dir.join(STATE_JSON);
        io::write_atomic(&path, format!("{text}\n").as_bytes())?;
        Ok(())
    }

    /// The state of `method` after `experiences` experiences, read from the folder `dir` that
    /// [`MethodState::save`] wrote: `net1` is the store of the model those experiences ended
    /// with (LwF's teacher is a frozen copy of it, and EWC's and SI's tensors must match its
    /// parameters), `reader` any experience of the scenario (it reads the memory's sequences).
    /// Errors name the file that is missing, unreadable or does not fit.
    pub fn load(
        method: Method,
        cfg: &RunConfig,
        device: &Device,
        dir: &Path,
        experiences: usize,
        reader: &Experience,
        net1: &ParamStore,
    ) -> Result<Self> {
        let mut state = Self::new(method, cfg, device)?;
        let jp = dir.join(STATE_JSON);
        let text = std::fs::read_to_string(&jp).map_err(|e| {
            file_err(
                &jp,
                format!("cannot read the method's state after the last finished experience: {e}"),
            )
        })?;
        let saved: SavedState = serde_json::from_str(&text)
            .map_err(|e| file_err(&jp, format!("not a method state: {e}")))?;
        if saved.experiences != experiences {
            return Err(file_err(
                &jp,
                format!(
                    "holds the state after {} experiences, and the run has finished {experiences}",
                    saved.experiences
                ),
            ));
        }
        if saved.method != method {
            return Err(file_err(
                &jp,
                format!(
                    "holds the state of {:?}, and the run's method is {method:?}",
                    saved.method
                ),
            ));
        }
        let tp = dir.join(STATE_TENSORS);
        let dtype = cfg.dtype()?;
        let (tensors, _) = io::read(&tp, device)?;
        let mut tensors = io::cast_all(tensors, dtype)?;
        let params = net1.vars();
        if let Some(e) = &mut state.ewc {
            e.fisher = take_named(&mut tensors, "ewc.fisher.", &params, &tp)?;
            e.anchor = take_named(&mut tensors, "ewc.anchor.", &params, &tp)?;
        }
        if let Some(si) = &state.si {
            let mut si = si.lock().expect("si state");
            si.omega = take_named(&mut tensors, "si.omega.", &params, &tp)?;
            si.anchor = take_named(&mut tensors, "si.anchor.", &params, &tp)?;
        }
        if let Method::Lwf { .. } = method {
            let teacher = frozen_copy(&cfg.model, net1, dtype, device)?;
            state.teacher = Some(Arc::new(Mutex::new(teacher)));
        }
        let missing = |what: &str| file_err(&jp, format!("records no {what}"));
        if let Some(b) = &state.buffer {
            let items = saved.buffer.as_deref().ok_or_else(|| missing("memory"))?;
            b.lock()
                .expect("replay buffer")
                .restore(SavedItem::to_buffer(items), reader)
                .map_err(|e| file_err(&jp, e.to_string()))?;
        }
        if let Some(d) = &mut state.dual {
            let sd = saved
                .dual
                .as_ref()
                .ok_or_else(|| missing("dual-network state"))?;
            let net2: Vec<(String, Tensor)> = d
                .net2_store
                .vars()
                .iter()
                .map(|(name, _)| {
                    let key = format!("net2.{name}");
                    tensors
                        .remove(&key)
                        .map(|t| (name.clone(), t))
                        .ok_or_else(|| file_err(&tp, format!("has no tensor `{key}`")))
                })
                .collect::<Result<_>>()?;
            let store = ParamStore::from_tensors(net2, &tp)?;
            let model = SequenceModel::from_store(&cfg.model, &store, dtype, device)?;
            d.net2 = Arc::new(Mutex::new(model));
            d.net2_store = store;
            let range = floats_from_bits(sd.range.clone())
                .map_err(|e| file_err(&jp, format!("bad data range: {e}")))?;
            d.range = serde_json::from_value::<InputRange>(range)
                .map_err(|e| file_err(&jp, format!("bad data range: {e}")))?;
            d.trained = sd.trained;
            match (&d.buffer, &sd.seeds) {
                (Some(b), Some(items)) => b
                    .lock()
                    .expect("seed buffer")
                    .restore(SavedItem::to_buffer(items), reader)
                    .map_err(|e| file_err(&jp, e.to_string()))?,
                (Some(_), None) => return Err(missing("reverberation seeds")),
                _ => {}
            }
        }
        Ok(state)
    }
}
