//! Scenarios: a stream of experiences cut from one classification task of the registry.
//!
//! - `split:TASK:N` (class-incremental): the classes, in an order drawn from the seed, in groups
//!   of N; experience k trains and tests on the sequences of its group, and the model keeps one
//!   read-out over every class (a single head), so it must tell old classes from new ones.
//! - `permuted:TASK:E` (domain-incremental): E experiences over all classes, each reading its
//!   input through its own fixed permutation of the (time × feature) values of a sequence; the
//!   first experience is the task itself (the identity), as in Goodfellow et al. 2013 and
//!   Kirkpatrick et al. 2017.
//!
//! Each experience is a [`SequenceTask`] over the base task's data (nothing is copied), so the
//! trainer runs it like any task. A joint (cumulative) experience is the union of several.
use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_tasks::mnist::predicted_class;
use remanence_tasks::task::{class_readout, Predict};
use remanence_tasks::{Batch, Evaluation, Objective, SequenceTask, Split, TaskKind};

use crate::error::{ContinualError, Result};

/// What a scenario is made of, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioSpec {
    /// Class-incremental: groups of `per_experience` classes.
    Split {
        task: TaskKind,
        per_experience: usize,
    },
    /// Domain-incremental: `experiences` input permutations over all classes.
    Permuted { task: TaskKind, experiences: usize },
}

impl ScenarioSpec {
    pub fn task(&self) -> TaskKind {
        match self {
            Self::Split { task, .. } | Self::Permuted { task, .. } => *task,
        }
    }
}

impl std::str::FromStr for ScenarioSpec {
    type Err = ContinualError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| {
            ContinualError::Config(format!(
                "--scenario `{s}`: {why}; valid: split:TASK:CLASSES_PER_EXPERIENCE, \
                 permuted:TASK:EXPERIENCES (e.g. split:mnist-rows:2, permuted:mnist-rows:10)"
            ))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let [kind, task, n] = parts.as_slice() else {
            return Err(bad("expected three parts".into()));
        };
        let task: TaskKind = task.parse().map_err(|e| bad(format!("{e}")))?;
        let n: usize = n
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(format!("`{n}` is not a whole number ≥ 1")))?;
        match *kind {
            "split" => Ok(Self::Split {
                task,
                per_experience: n,
            }),
            "permuted" => Ok(Self::Permuted {
                task,
                experiences: n,
            }),
            k => Err(bad(format!("unknown scenario kind `{k}`"))),
        }
    }
}

impl std::fmt::Display for ScenarioSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Split {
                task,
                per_experience,
            } => write!(f, "split:{task}:{per_experience}"),
            Self::Permuted { task, experiences } => write!(f, "permuted:{task}:{experiences}"),
        }
    }
}

/// One sequence of the base task, read through one of the scenario's input permutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub index: usize,
    /// Index into [`Scenario::permutations`]; `None`: the input as it is.
    pub permutation: Option<usize>,
}

/// An experience: the training and test sequences of one step of the stream.
#[derive(Clone)]
pub struct Experience {
    name: String,
    base: Arc<dyn SequenceTask>,
    permutations: Arc<Vec<Vec<u32>>>,
    /// The classes this experience holds (every class for permutations).
    pub classes: Vec<usize>,
    pub train: Vec<Item>,
    pub test: Vec<Item>,
}

/// A stream of experiences over one base task.
pub struct Scenario {
    pub spec: ScenarioSpec,
    pub base: Arc<dyn SequenceTask>,
    /// Class order of a split scenario (drawn from the seed).
    pub class_order: Vec<usize>,
    pub permutations: Arc<Vec<Vec<u32>>>,
    pub experiences: Vec<Experience>,
}

fn labels(task: &dyn SequenceTask, split: Split) -> Result<Vec<usize>> {
    (0..task.len(split))
        .map(|i| {
            task.label(split, i).ok_or_else(|| {
                ContinualError::Config(format!(
                    "task {} does not classify whole sequences, so it cannot be split into \
                     experiences by class; scenarios take mnist-rows, mnist-pixels, \
                     mnist-pixels-permuted or fsdd",
                    task.name()
                ))
            })
        })
        .collect()
}

impl Scenario {
    /// Cuts `base` into the experiences of `spec`; `seed` draws the class order and the
    /// permutations.
    pub fn new(spec: ScenarioSpec, base: Arc<dyn SequenceTask>, seed: u64) -> Result<Self> {
        if !matches!(
            base.objective(),
            Objective::ClassLastStep | Objective::ClassMeanOverTime
        ) {
            return Err(ContinualError::Config(format!(
                "--scenario {spec}: task {} is not a sequence classification task",
                base.name()
            )));
        }
        let (train_labels, test_labels) =
            (labels(&*base, Split::Train)?, labels(&*base, Split::Test)?);
        let classes = base.output_size();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xC0_17_1A_0E);
        let items = |labels: &[usize], keep: &dyn Fn(usize) -> bool, perm: Option<usize>| {
            labels
                .iter()
                .enumerate()
                .filter(|(_, &l)| keep(l))
                .map(|(index, _)| Item {
                    index,
                    permutation: perm,
                })
                .collect::<Vec<_>>()
        };
        let empty = Arc::new(Vec::new());
        let (class_order, permutations, experiences) = match &spec {
            ScenarioSpec::Split { per_experience, .. } => {
                let n = *per_experience;
                if classes % n != 0 || n >= classes {
                    return Err(ContinualError::Config(format!(
                        "--scenario {spec}: {classes} classes cannot be split into groups of {n} \
                         (the group size must divide the classes and leave at least two groups)"
                    )));
                }
                let mut order: Vec<usize> = (0..classes).collect();
                order.shuffle(&mut rng);
                let experiences = order
                    .chunks(n)
                    .enumerate()
                    .map(|(k, group)| {
                        let keep = |l: usize| group.contains(&l);
                        Experience {
                            name: format!("{}-exp{k}", base.name()),
                            base: base.clone(),
                            permutations: empty.clone(),
                            classes: group.to_vec(),
                            train: items(&train_labels, &keep, None),
                            test: items(&test_labels, &keep, None),
                        }
                    })
                    .collect();
                (order, empty.clone(), experiences)
            }
            ScenarioSpec::Permuted { experiences, .. } => {
                let e = *experiences;
                let probe = base.batch(Split::Train, &[0], DType::F32, &Device::Cpu)?;
                let (_, t, f) = probe.x.dims3()?;
                if base.len(Split::Train) > 1 {
                    let other = base.batch(Split::Train, &[1], DType::F32, &Device::Cpu)?;
                    if other.x.dim(1)? != t {
                        return Err(ContinualError::Config(format!(
                            "--scenario {spec}: task {} has sequences of different lengths, and a \
                             permutation needs one length",
                            base.name()
                        )));
                    }
                }
                let perms: Vec<Vec<u32>> = (1..e)
                    .map(|_| {
                        let mut p: Vec<u32> = (0..(t * f) as u32).collect();
                        p.shuffle(&mut rng);
                        p
                    })
                    .collect();
                let all = |_: usize| true;
                let experiences = (0..e)
                    .map(|k| {
                        let perm = (k > 0).then_some(k - 1);
                        Experience {
                            name: format!("{}-perm{k}", base.name()),
                            base: base.clone(),
                            permutations: empty.clone(),
                            classes: (0..classes).collect(),
                            train: items(&train_labels, &all, perm),
                            test: items(&test_labels, &all, perm),
                        }
                    })
                    .collect::<Vec<_>>();
                let perms = Arc::new(perms);
                let experiences = experiences
                    .into_iter()
                    .map(|mut x| {
                        x.permutations = perms.clone();
                        x
                    })
                    .collect();
                ((0..classes).collect(), perms, experiences)
            }
        };
        Ok(Self {
            spec,
            base,
            class_order,
            permutations,
            experiences,
        })
    }

    /// The union of experiences `0..=k` (joint, cumulative training: the upper bound).
    pub fn cumulative(&self, k: usize) -> Experience {
        let mut e = self.experiences[k].clone();
        e.name = format!("{}-joint0-{k}", self.base.name());
        e.train = self.experiences[..=k]
            .iter()
            .flat_map(|x| x.train.iter().copied())
            .collect();
        let mut classes: Vec<usize> = self.experiences[..=k]
            .iter()
            .flat_map(|x| x.classes.iter().copied())
            .collect();
        classes.sort_unstable();
        classes.dedup();
        e.classes = classes;
        e
    }
}

impl Experience {
    fn items(&self, split: Split) -> &[Item] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// The batch of `items` (of the base task's `split`), each read through its permutation.
    pub fn batch_of(
        &self,
        split: Split,
        items: &[Item],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let indices: Vec<usize> = items.iter().map(|i| i.index).collect();
        let mut b = self.base.batch(split, &indices, dtype, device)?;
        if items.iter().any(|i| i.permutation.is_some()) {
            let (n, t, f) = b.x.dims3()?;
            let flat = b.x.reshape((n, t * f))?;
            let rows = items
                .iter()
                .enumerate()
                .map(|(r, item)| {
                    let row = flat.narrow(0, r, 1)?;
                    match item.permutation {
                        None => Ok(row),
                        Some(p) => {
                            let idx = Tensor::new(self.permutations[p].as_slice(), device)?;
                            row.index_select(&idx, 1)
                        }
                    }
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            b.x = Tensor::cat(&rows, 0)?.reshape((n, t, f))?;
        }
        b.indices = (0..items.len()).collect();
        Ok(b)
    }

    /// Accuracy on this experience's test sequences (argmax over every class: one head).
    pub fn accuracy(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<f64> {
        let mut right = 0usize;
        for chunk in self.test.chunks(batch_size.max(1)) {
            let batch = self.batch_of(Split::Test, chunk, dtype, device)?;
            let y = predict(&batch)?;
            let logits: Vec<Vec<f32>> = class_readout(&y, &batch.lengths, self.base.objective())?
                .to_dtype(DType::F32)?
                .to_vec2()?;
            let targets: Vec<u32> = batch.target.to_dtype(DType::U32)?.to_vec1()?;
            right += logits
                .iter()
                .zip(&targets)
                .filter(|(l, &t)| predicted_class(l) == Some(t as usize))
                .count();
        }
        Ok(right as f64 / self.test.len().max(1) as f64)
    }
}

impl SequenceTask for Experience {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_size(&self) -> usize {
        self.base.input_size()
    }
    fn output_size(&self) -> usize {
        self.base.output_size()
    }
    fn objective(&self) -> Objective {
        self.base.objective()
    }
    fn len(&self, split: Split) -> usize {
        self.items(split).len()
    }
    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let items: Vec<Item> = indices.iter().map(|&i| self.items(split)[i]).collect();
        self.batch_of(split, &items, dtype, device)
            .map_err(|e| remanence_tasks::TaskError::Data(e.to_string()))
    }
    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        let acc = self
            .accuracy(batch_size, dtype, device, predict)
            .map_err(|e| remanence_tasks::TaskError::Data(e.to_string()))?;
        Ok(Evaluation {
            metric_name: "test_accuracy".into(),
            metric: acc,
            solved: None,
            values: BTreeMap::from([("test_accuracy".to_string(), acc)]),
            summary: format!(
                "{}: test accuracy {:.2}% on {} sequences of classes {:?}",
                self.name,
                100.0 * acc,
                self.test.len(),
                self.classes
            ),
        })
    }
    fn label(&self, split: Split, index: usize) -> Option<usize> {
        self.base.label(split, self.items(split)[index].index)
    }
}
