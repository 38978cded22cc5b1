//! Scenarios: a stream of experiences cut from one classification task of the registry, or made
//! up from the seed.
//!
//! - `split:TASK:N` (class-incremental): the classes, in an order drawn from the seed, in groups
//!   of N; experience k trains and tests on the sequences of its group, and the model keeps one
//!   read-out over every class (a single head), so it must tell old classes from new ones.
//! - `split-task:TASK:N` (task-incremental): the same groups in the same order as `split` with
//!   the same seed, the same single read-out, but the task identity is known when training and
//!   testing: each sequence's logits of the classes outside its own group are masked out
//!   ([`crate::task_il`]), so it only tells apart the N classes of its group (N ≥ 2).
//! - `permuted:TASK:E` (domain-incremental): E experiences over all classes, each reading its
//!   input through its own fixed permutation of the (time × feature) values of a sequence; the
//!   first experience is the task itself (the identity), as in Goodfellow et al. 2013 and
//!   Kirkpatrick et al. 2017.
//! - `lists:L:S:N:V` (sequence-list learning, after Ans, Rousset, French & Musca 2004): L lists
//!   of S sequences of N items over a vocabulary of V items, made up from the seed
//!   ([`crate::lists`]); experience l is list l, trained and tested on its own sequences (recall),
//!   predicting the next item at each step. It needs no task of the registry
//!   ([`ScenarioSpec::task`] is `None`; build it with [`Scenario::synthetic`]).
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
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};
use crate::lists::{Recall, SequenceLists};
use crate::task_il::TaskMask;

/// What a scenario is made of, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScenarioSpec {
    /// Class-incremental: groups of `per_experience` classes.
    Split {
        task: TaskKind,
        per_experience: usize,
    },
    /// Task-incremental: the groups of [`ScenarioSpec::Split`], each sequence's read-out masked
    /// to its own group.
    SplitTask {
        task: TaskKind,
        per_experience: usize,
    },
    /// Domain-incremental: `experiences` input permutations over all classes.
    Permuted { task: TaskKind, experiences: usize },
    /// Sequence-list learning: `lists` lists of `per_list` sequences of `length` items over a
    /// vocabulary of `items` items ([`SequenceLists`]), one list an experience.
    Lists {
        lists: usize,
        per_list: usize,
        length: usize,
        items: usize,
    },
}

impl ScenarioSpec {
    /// The registry task the scenario is cut from; `None` for a scenario that makes up its own
    /// sequences (`lists`).
    pub fn task(&self) -> Option<TaskKind> {
        match self {
            Self::Split { task, .. }
            | Self::SplitTask { task, .. }
            | Self::Permuted { task, .. } => Some(*task),
            Self::Lists { .. } => None,
        }
    }

    /// Whether the task identity is known at training and test time (`split-task`).
    pub fn is_task_incremental(&self) -> bool {
        matches!(self, Self::SplitTask { .. })
    }
}

impl std::str::FromStr for ScenarioSpec {
    type Err = ContinualError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| {
            ContinualError::Config(format!(
                "--scenario `{s}`: {why}; valid: split:TASK:CLASSES_PER_EXPERIENCE \
                 (class-incremental), split-task:TASK:CLASSES_PER_EXPERIENCE (task-incremental), \
                 permuted:TASK:EXPERIENCES (domain-incremental), \
                 lists:LISTS:SEQUENCES_PER_LIST:ITEMS_PER_SEQUENCE:VOCABULARY (sequence lists) \
                 (e.g. split:mnist-rows:2, split-task:mnist-rows:2, permuted:mnist-rows:10, \
                 lists:4:5:6:12)"
            ))
        };
        let number = |n: &str| -> Result<usize> {
            n.parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(format!("`{n}` is not a whole number ≥ 1")))
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts[0] {
            "split" | "split-task" | "permuted" => {
                let [kind, task, n] = parts.as_slice() else {
                    return Err(bad(format!("`{}:` takes three parts", parts[0])));
                };
                let task: TaskKind = task.parse().map_err(|e| bad(format!("{e}")))?;
                let n = number(n)?;
                Ok(match *kind {
                    "split" => Self::Split {
                        task,
                        per_experience: n,
                    },
                    "split-task" => Self::SplitTask {
                        task,
                        per_experience: n,
                    },
                    _ => Self::Permuted {
                        task,
                        experiences: n,
                    },
                })
            }
            "lists" => {
                let [_, l, n_seq, len, v] = parts.as_slice() else {
                    return Err(bad("`lists:` takes five parts".into()));
                };
                let (lists, per_list, length, items) =
                    (number(l)?, number(n_seq)?, number(len)?, number(v)?);
                SequenceLists::check(lists, per_list, length, items).map_err(bad)?;
                Ok(Self::Lists {
                    lists,
                    per_list,
                    length,
                    items,
                })
            }
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
            Self::SplitTask {
                task,
                per_experience,
            } => write!(f, "split-task:{task}:{per_experience}"),
            Self::Permuted { task, experiences } => write!(f, "permuted:{task}:{experiences}"),
            Self::Lists {
                lists,
                per_list,
                length,
                items,
            } => write!(f, "lists:{lists}:{per_list}:{length}:{items}"),
        }
    }
}

/// One sequence of the base task, read through one of the scenario's input permutations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The classes this experience holds (every class for permutations; every item of the
    /// vocabulary for sequence lists, whose targets are next items).
    pub classes: Vec<usize>,
    pub train: Vec<Item>,
    pub test: Vec<Item>,
    /// Task-incremental: each sequence's read-out is masked to its own group (`split-task`, and
    /// the joint experiences made of its experiences); `None`: one head over every class.
    mask: Option<Arc<TaskMask>>,
}

/// A stream of experiences over one base task.
pub struct Scenario {
    pub spec: ScenarioSpec,
    /// The seed the class order, the permutations or the sequence lists were drawn from.
    pub seed: u64,
    /// The task the experiences read their sequences from: the registry task, or the
    /// [`SequenceLists`] of a `lists` scenario.
    pub base: Arc<dyn SequenceTask>,
    /// Class order of a split scenario (drawn from the seed); `0..classes` for permutations, and
    /// `0..V` (the item indices) for sequence lists.
    pub class_order: Vec<usize>,
    pub permutations: Arc<Vec<Vec<u32>>>,
    pub experiences: Vec<Experience>,
}

fn labels(task: &dyn SequenceTask, split: Split, spec: &ScenarioSpec) -> Result<Vec<usize>> {
    (0..task.len(split))
        .map(|i| {
            task.label(split, i).ok_or_else(|| {
                ContinualError::Config(format!(
                    "--scenario {spec}: task {} gives no class label to its sequences, so it \
                     cannot be split into experiences by class; scenarios take mnist-rows, \
                     mnist-pixels, mnist-pixels-permuted or fsdd",
                    task.name()
                ))
            })
        })
        .collect()
}

impl Scenario {
    /// Cuts `base` into the experiences of `spec`; `seed` draws the class order and the
    /// permutations. A scenario without a registry task (`lists`) is built by
    /// [`Scenario::synthetic`] instead.
    pub fn new(spec: ScenarioSpec, base: Arc<dyn SequenceTask>, seed: u64) -> Result<Self> {
        if spec.task().is_none() {
            return Err(ContinualError::Config(format!(
                "--scenario {spec} makes up its own sequences and reads no task; build it with \
                 Scenario::synthetic"
            )));
        }
        if !matches!(
            base.objective(),
            Objective::ClassLastStep | Objective::ClassMeanOverTime
        ) {
            return Err(ContinualError::Config(format!(
                "--scenario {spec}: task {} is not a sequence classification task",
                base.name()
            )));
        }
        let (train_labels, test_labels) = (
            labels(&*base, Split::Train, &spec)?,
            labels(&*base, Split::Test, &spec)?,
        );
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
            ScenarioSpec::Split { per_experience, .. }
            | ScenarioSpec::SplitTask { per_experience, .. } => {
                let n = *per_experience;
                let task_il = spec.is_task_incremental();
                if task_il && n == 1 {
                    return Err(ContinualError::Config(format!(
                        "--scenario {spec}: task-incremental groups of 1 class are trivial (with \
                         the task identity known, the mask leaves each sequence a single class, so \
                         every prediction is right); use at least 2 classes per experience"
                    )));
                }
                if !classes.is_multiple_of(n) || n >= classes {
                    return Err(ContinualError::Config(format!(
                        "--scenario {spec}: {classes} classes cannot be split into groups of {n} \
                         (the group size must divide the classes and leave at least two groups)"
                    )));
                }
                let mut order: Vec<usize> = (0..classes).collect();
                order.shuffle(&mut rng);
                let groups: Vec<Vec<usize>> = order.chunks(n).map(<[usize]>::to_vec).collect();
                let mask = if task_il {
                    Some(Arc::new(TaskMask::new(&groups, classes)?))
                } else {
                    None
                };
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
                            mask: mask.clone(),
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
                        let perm = k.checked_sub(1);
                        Experience {
                            name: format!("{}-perm{k}", base.name()),
                            base: base.clone(),
                            permutations: empty.clone(),
                            classes: (0..classes).collect(),
                            train: items(&train_labels, &all, perm),
                            test: items(&test_labels, &all, perm),
                            mask: None,
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
            ScenarioSpec::Lists { .. } => unreachable!("checked above: lists read no task"),
        };
        Ok(Self {
            spec,
            seed,
            base,
            class_order,
            permutations,
            experiences,
        })
    }

    /// Builds a scenario that makes up its own sequences from `seed` (`lists:L:S:N:V`): the
    /// [`SequenceLists`] drawn from `seed` as the base task, experience l holding list l's S
    /// sequences as its training and its test split (recall), every experience's classes the V
    /// items, and the class order `0..V`.
    pub fn synthetic(spec: ScenarioSpec, seed: u64) -> Result<Self> {
        let ScenarioSpec::Lists {
            lists,
            per_list,
            length,
            items,
        } = spec
        else {
            return Err(ContinualError::Config(format!(
                "--scenario {spec} is cut from a task of the registry; build it with Scenario::new"
            )));
        };
        let task = SequenceLists::new(lists, per_list, length, items, seed)?;
        let ranges: Vec<_> = (0..lists).map(|l| task.list(l)).collect();
        let base: Arc<dyn SequenceTask> = Arc::new(task);
        let empty = Arc::new(Vec::new());
        let experiences = ranges
            .into_iter()
            .enumerate()
            .map(|(l, range)| {
                let seqs: Vec<Item> = range
                    .map(|index| Item {
                        index,
                        permutation: None,
                    })
                    .collect();
                Experience {
                    name: format!("lists-list{l}"),
                    base: base.clone(),
                    permutations: empty.clone(),
                    classes: (0..items).collect(),
                    train: seqs.clone(),
                    test: seqs,
                    mask: None,
                }
            })
            .collect();
        Ok(Self {
            spec,
            seed,
            base,
            class_order: (0..items).collect(),
            permutations: empty,
            experiences,
        })
    }

    /// Whether the task identity is known at training and test time (`split-task`): the
    /// learner must then mask each sequence's read-out to its group
    /// ([`crate::task_il::TaskIlPlugin`] with [`Experience::task_mask`]).
    pub fn is_task_incremental(&self) -> bool {
        self.spec.is_task_incremental()
    }

    /// The union of experiences `0..=k` (joint, cumulative training: the upper bound). Its test
    /// split is experience k's; in a task-incremental scenario each sequence stays masked to its
    /// own group.
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

    /// Whether `item` names a training sequence of the base task (index within its training
    /// split) read through an input permutation of the scenario (or none): a stored memory item
    /// read back from a file must, before it is batched.
    pub fn reads_train_item(&self, item: &Item) -> bool {
        item.index < self.base.len(Split::Train)
            && item.permutation.is_none_or(|p| p < self.permutations.len())
    }

    /// The task-incremental mask of this experience's sequences; `None` for one head over every
    /// class (class- and domain-incremental scenarios, sequence lists).
    pub fn task_mask(&self) -> Option<Arc<TaskMask>> {
        self.mask.clone()
    }

    /// The score of the model on this experience's test sequences:
    /// - sequence classification: the fraction of sequences whose argmax is their class, the
    ///   argmax taken over every class (one head), or, with a task-incremental mask, over the
    ///   classes of the sequence's own group only;
    /// - next-item prediction (sequence lists, [`Objective::ClassPerStep`]): the fraction of
    ///   steps that count (mask weight > 0) whose argmax is the next item, and the fraction of
    ///   sequences with every such step right.
    pub fn score(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<ExperienceScore> {
        let objective = self.base.objective();
        match objective {
            Objective::ClassLastStep | Objective::ClassMeanOverTime => {
                let mut right = 0usize;
                for chunk in self.test.chunks(batch_size.max(1)) {
                    let batch = self.batch_of(Split::Test, chunk, dtype, device)?;
                    let mut y = predict(&batch)?;
                    if let Some(mask) = &self.mask {
                        y = mask.apply(&batch, objective, &y)?;
                    }
                    let logits: Vec<Vec<f32>> = class_readout(&y, &batch.lengths, objective)?
                        .to_dtype(DType::F32)?
                        .to_vec2()?;
                    let targets: Vec<u32> = batch.target.to_dtype(DType::U32)?.to_vec1()?;
                    right += logits
                        .iter()
                        .zip(&targets)
                        .filter(|(l, &t)| predicted_class(l) == Some(t as usize))
                        .count();
                }
                Ok(ExperienceScore {
                    accuracy: right as f64 / self.test.len().max(1) as f64,
                    sequences_recalled: None,
                })
            }
            Objective::ClassPerStep => {
                let mut recall = Recall::default();
                for chunk in self.test.chunks(batch_size.max(1)) {
                    let batch = self.batch_of(Split::Test, chunk, dtype, device)?;
                    recall.add(&predict(&batch)?, &batch)?;
                }
                Ok(ExperienceScore {
                    accuracy: recall.item_accuracy(),
                    sequences_recalled: Some(recall.perfect_fraction()),
                })
            }
            o => Err(ContinualError::Config(format!(
                "experience {}: no accuracy for the objective {o:?}",
                self.name
            ))),
        }
    }

    /// The accuracy of [`Experience::score`]: the accuracy matrix's entry for this experience.
    pub fn accuracy(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<f64> {
        Ok(self.score(batch_size, dtype, device, predict)?.accuracy)
    }
}

/// What [`Experience::score`] measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExperienceScore {
    /// Sequences classified right, or, for next-item prediction, steps predicted right.
    pub accuracy: f64,
    /// Next-item prediction only: the fraction of sequences recalled perfectly.
    pub sequences_recalled: Option<f64>,
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
        let score = self
            .score(batch_size, dtype, device, predict)
            .map_err(|e| remanence_tasks::TaskError::Data(e.to_string()))?;
        let acc = score.accuracy;
        let mut values = BTreeMap::from([("test_accuracy".to_string(), acc)]);
        let summary = match score.sequences_recalled {
            Some(perfect) => {
                values.insert("sequences_recalled".to_string(), perfect);
                format!(
                    "{}: next item right on {:.2}% of the steps of its {} sequences, {:.2}% of \
                     them recalled perfectly",
                    self.name,
                    100.0 * acc,
                    self.test.len(),
                    100.0 * perfect
                )
            }
            None => format!(
                "{}: test accuracy {:.2}% on {} sequences of classes {:?}{}",
                self.name,
                100.0 * acc,
                self.test.len(),
                self.classes,
                if self.mask.is_some() {
                    " (task-incremental: each argmax within its sequence's group)"
                } else {
                    ""
                }
            ),
        };
        Ok(Evaluation {
            metric_name: "test_accuracy".into(),
            metric: acc,
            solved: None,
            values,
            summary,
        })
    }
    fn label(&self, split: Split, index: usize) -> Option<usize> {
        self.base.label(split, self.items(split)[index].index)
    }
}
