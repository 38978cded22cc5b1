//! Replay's memory: a class-balanced buffer of real sequences of past experiences, drawn from
//! at random, and the plugin that appends buffered sequences to every training batch (Rebuffi
//! et al. 2017's class-balanced memory; Chaudhry et al. 2019's experience replay). A-GEM reads
//! the same memory as a constraint, and the dual network keeps a tiny one as reverberation seeds.
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_tasks::{Batch, Split};
use remanence_train::learner::{Plugin, StepContext};

use crate::error::{ContinualError, Result};
use crate::scenario::{Experience, Item};

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
    pub buffer: Arc<Mutex<ReplayBuffer>>,
    /// Buffered sequences appended to each batch.
    pub per_batch: usize,
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
