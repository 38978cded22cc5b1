//! The associative-memory method (`--method assoc-memory`, issue #13): a recurrent feature
//! extractor learnt by gradient on the first experience only, then frozen, and a binary
//! bipartite memory ([`BipartiteMemory`]) that learns every class after it without any gradient
//! step, by OR-ing edges from product-quantisation codes of the extractor's features.
//!
//! - **Experience 1**: the model trains as `naive` does (the trainer's ordinary gradient
//!   steps). It is then the feature extractor, frozen for the rest of the stream: for the later
//!   experiences the runner runs no trainer at all (no epoch, no gradient step; the
//!   experience's folder gets the configuration and the unchanged weights,
//!   [`crate::strategy::MethodState::trains`]).
//! - **After each experience**: the features of its training sequences
//!   ([`FeatureKind::FinalState`]: the state of every layer after each sequence's last real
//!   step, [`batch_features`]). After experience 1 a product quantiser of P segments × K anchors
//!   (per-segment k-means, [`KMEANS_ITERATIONS`] Lloyd iterations, seeded from the run's seed) is
//!   fitted on all of experience 1's training features, once. Each class of the experience then
//!   has the codes of its training sequences (or of the first N of them in the experience, with
//!   `per_class`) OR-ed into the memory: its row of edges, nothing else.
//! - **Scoring**: a test sequence is predicted by the memory over the classes learnt so far
//!   (arg-max of the number of its code's neurons linked to each class, ties to the lowest
//!   class index), given to the scorer as a one-hot read-out at every step
//!   ([`AssocState::predict`]); the model's own read-out head is not used. The row before any
//!   training (forward transfer's reference) is the untrained model's, as for every method: the
//!   memory is empty then.
//! - **State**: the quantiser's anchors and the memory's bit matrix (with the classes learnt) are
//!   saved after each experience ([`SavedAssoc`]) and restored exactly on `--resume`.
//!
//! Only class-incremental (`split`) and domain-incremental (`permuted`) scenarios: task-incremental
//! ones (`split-task`) would need the memory to answer within a group, and sequence lists predict
//! an item at every step (one class per sequence is what the memory learns). Not data-parallel.
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use remanence_cells::{RnnState, SequenceModel};
use remanence_memory::bipartite::BipartiteMemory;
use remanence_memory::quantize::{AnchorMethod, PqSettings, ProductQuantizer};
use remanence_memory::BitMatrix;
use remanence_tasks::{Batch, SequenceTask, Split};
use remanence_train::RunConfig;
use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};
use crate::scenario::{Experience, Item, Scenario};

/// Lloyd iterations (at most) of each segment's k-means (as `remanence memory classify`).
pub const KMEANS_ITERATIONS: usize = 25;

/// What one sequence's feature vector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// The state of every layer after the last real step.
    FinalState,
    /// The top layer's output at the last real step.
    FinalOutput,
    /// The top layer's output averaged over the real steps.
    MeanOutput,
    /// h of layer K (from 1) after the last real step.
    Layer(usize),
}

impl FeatureKind {
    pub fn name(self) -> String {
        match self {
            FeatureKind::FinalState => "final-state".into(),
            FeatureKind::FinalOutput => "final-output".into(),
            FeatureKind::MeanOutput => "mean-output".into(),
            FeatureKind::Layer(k) => format!("layer:{k}"),
        }
    }

    /// Whether the feature is read from the recurrent state (rather than the outputs).
    pub fn reads_state(self) -> bool {
        matches!(self, FeatureKind::FinalState | FeatureKind::Layer(_))
    }
}

/// The rows of `state` (layers, batch, hidden) that make the feature: (batch, D).
fn state_rows(state: &RnnState, kind: FeatureKind) -> Result<Vec<Vec<f64>>> {
    let t = match kind {
        FeatureKind::Layer(k) => state.h.get(k - 1)?,
        _ => state.flatten()?,
    };
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// The features of one padded batch `x` (B, T, F) whose sequences have the real `lengths`
/// (padding after the end), with elapsed times `dt` (B, T) for continuous-time cells.
///
/// Output features come from one pass (the outputs at a sequence's real steps do not depend
/// on the padding after them). State features come from passes over the pieces of the batch
/// that end at its distinct lengths, each piece starting from the state the previous one ended
/// in; a sequence's feature is the state at the end of the piece that ends at its length.
pub fn batch_features(
    model: &SequenceModel,
    x: &Tensor,
    dt: Option<&Tensor>,
    lengths: &[usize],
    kind: FeatureKind,
) -> Result<Vec<Vec<f64>>> {
    let (b, t, _) = x.dims3()?;
    if lengths.len() != b || lengths.iter().any(|&l| l == 0 || l > t) {
        return Err(ContinualError::Config(format!(
            "sequence lengths {lengths:?} do not fit a batch of {b} sequences of {t} steps"
        )));
    }
    if !kind.reads_state() {
        let (_, hs, _) = model.forward_full(x, None, dt)?;
        let hs: Vec<Vec<Vec<f64>>> = hs.detach().to_dtype(DType::F64)?.to_vec3()?;
        return Ok(hs
            .iter()
            .zip(lengths)
            .map(|(seq, &len)| match kind {
                FeatureKind::MeanOutput => {
                    let mut m = vec![0.0; seq[0].len()];
                    for step in &seq[..len] {
                        for (a, v) in m.iter_mut().zip(step) {
                            *a += v;
                        }
                    }
                    m.iter_mut().for_each(|a| *a /= len as f64);
                    m
                }
                _ => seq[len - 1].clone(),
            })
            .collect());
    }
    let mut ends: Vec<usize> = lengths.to_vec();
    ends.sort_unstable();
    ends.dedup();
    let mut out: Vec<Option<Vec<f64>>> = vec![None; b];
    let mut state: Option<RnnState> = None;
    let mut start = 0;
    for end in ends {
        let xs = x.narrow(1, start, end - start)?;
        let dts = dt.map(|d| d.narrow(1, start, end - start)).transpose()?;
        let (_, _, st) = model.forward_full(&xs, state.as_ref(), dts.as_ref())?;
        let st = RnnState {
            h: st.h.detach(),
            c: st.c.map(|c| c.detach()),
        };
        let rows = state_rows(&st, kind)?;
        for (i, row) in rows.into_iter().enumerate() {
            if lengths[i] == end {
                out[i] = Some(row);
            }
        }
        state = Some(st);
        start = end;
    }
    Ok(out
        .into_iter()
        .map(|r| r.expect("every length is one of the ends"))
        .collect())
}

/// A memory error as this crate's, with what was being done.
fn mem_err(what: &str, e: remanence_memory::MemoryError) -> ContinualError {
    ContinualError::Config(format!("--method assoc-memory: {what}: {e}"))
}

/// What the memory did after one experience (a line of `metrics.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssocReport {
    /// The classes whose codes were OR-ed in.
    pub classes: Vec<usize>,
    /// Training sequences stored (their codes), over those classes.
    pub stored: usize,
    /// Whether the product quantiser was fitted after this experience (the first).
    pub quantizer_fitted: bool,
    /// Per class learnt so far, its edges' share of the P·K input neurons.
    pub edge_density: BTreeMap<usize, f64>,
    /// Feature extraction, fitting and storing.
    pub seconds: f64,
}

/// The memory's state between experiences: the quantiser (after experience 1) and the
/// bipartite memory, with a copy of its bit matrix (which the memory does not expose) to save.
#[derive(Debug, Clone, PartialEq)]
pub struct AssocState {
    pub segments: usize,
    pub anchors: usize,
    /// Training sequences of each class stored (the first N in the experience); `None`: all.
    pub per_class: Option<usize>,
    /// The quantiser's seed.
    pub seed: u64,
    pub quantizer: Option<ProductQuantizer>,
    pub memory: BipartiteMemory,
    /// classes × P·K: edge (y, p·K + k) is set iff the memory links neuron (p, k) to class y.
    pub edges: BitMatrix,
}

/// What `method-state.json` records of the memory: the quantiser (every floating-point number
/// as the bits of its f64, see [`crate::saved`]) and the bit matrix with the classes learnt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedAssoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantizer: Option<serde_json::Value>,
    pub edges: BitMatrix,
    pub learnt: Vec<usize>,
}

impl AssocState {
    /// An empty memory of `segments` × `anchors` input neurons; the quantiser is drawn from
    /// `seed` (the run's).
    pub fn new(
        segments: usize,
        anchors: usize,
        per_class: Option<usize>,
        seed: u64,
    ) -> Result<Self> {
        let memory =
            BipartiteMemory::new(segments, anchors).map_err(|e| mem_err("the memory's size", e))?;
        Ok(Self {
            segments,
            anchors,
            per_class,
            seed: seed ^ 0xA550_C1A7_E0F0_0D5E,
            quantizer: None,
            memory,
            edges: BitMatrix::new(0, segments * anchors),
        })
    }

    /// Refuses, before any training, settings the quantiser of `scenario`'s first experience
    /// could not fit: more segments than the features' coordinates (`cfg.model.state_size()`),
    /// more anchors than its training sequences.
    pub fn check(&self, scenario: &Scenario, cfg: &RunConfig) -> Result<()> {
        let dim = cfg.model.state_size();
        if self.segments > dim {
            return Err(ContinualError::Config(format!(
                "--method assoc-memory: --segments {} exceeds the {dim} coordinates of the \
                 features (the final state of every layer: {} layer(s) of {} units{}); use at \
                 most {dim}",
                self.segments,
                cfg.model.rnn.num_layers,
                cfg.model.rnn.hidden_size,
                if dim > cfg.model.rnn.num_layers * cfg.model.rnn.hidden_size {
                    ", h and c"
                } else {
                    ""
                }
            )));
        }
        let n = scenario.experiences.first().map_or(0, |e| e.train.len());
        if self.anchors > n {
            return Err(ContinualError::Config(format!(
                "--method assoc-memory: --anchors {} exceeds the {n} training sequences of the \
                 first experience, on which the quantiser's anchors are fitted; use at most {n}",
                self.anchors
            )));
        }
        Ok(())
    }

    /// The final-state features of `items` of `exp`'s training split, row-major, with their
    /// dimension and the sequences' classes (the batches' targets).
    fn features(
        model: &SequenceModel,
        exp: &Experience,
        items: &[Item],
        batch_size: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Vec<f64>, usize, Vec<usize>)> {
        let mut rows = Vec::new();
        let mut labels = Vec::with_capacity(items.len());
        let mut dim = 0;
        for chunk in items.chunks(batch_size.max(1)) {
            let b = exp.batch_of(Split::Train, chunk, dtype, device)?;
            let y: Vec<u32> = b.target.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
            if y.len() != chunk.len() {
                return Err(ContinualError::Config(format!(
                    "--method assoc-memory: experience {} has {} targets for {} sequences (it \
                     learns one class per sequence)",
                    exp.name(),
                    y.len(),
                    chunk.len()
                )));
            }
            labels.extend(y.into_iter().map(|v| v as usize));
            for r in batch_features(
                model,
                &b.x,
                b.dt.as_ref(),
                &b.lengths,
                FeatureKind::FinalState,
            )? {
                dim = r.len();
                rows.extend(r);
            }
        }
        Ok((rows, dim, labels))
    }

    /// The indices (into `exp.train`) of the sequences stored: the first `per_class` of each
    /// class in the experience's order, all of them without a limit.
    fn selected(&self, exp: &Experience) -> Vec<usize> {
        let mut seen = BTreeMap::<Option<usize>, usize>::new();
        (0..exp.train.len())
            .filter(|&i| {
                let n = seen.entry(exp.label(Split::Train, i)).or_insert(0);
                *n += 1;
                self.per_class.is_none_or(|p| *n <= p)
            })
            .collect()
    }

    /// After `exp` was learnt (by gradient for the first, not at all after), `model` the
    /// extractor: fits the quantiser the first time, then ORs the codes of the experience's
    /// stored sequences into the memory, class by class.
    pub fn learn(
        &mut self,
        exp: &Experience,
        model: &SequenceModel,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<AssocReport> {
        let start = Instant::now();
        let dtype = cfg.dtype()?;
        let bs = cfg.train.eval_batch_size;
        let selected = self.selected(exp);
        let fitting = self.quantizer.is_none();
        let (rows, dim, labels) = if fitting {
            // The quantiser sees every training sequence of the first experience.
            let (all, dim, labels) = Self::features(model, exp, &exp.train, bs, dtype, device)?;
            let pq = ProductQuantizer::fit(
                &all,
                dim,
                &PqSettings {
                    segments: self.segments,
                    anchors: self.anchors,
                    method: AnchorMethod::KMeans {
                        iterations: KMEANS_ITERATIONS,
                    },
                    seed: self.seed,
                },
            )
            .map_err(|e| {
                mem_err(
                    &format!(
                        "fitting the quantiser on the {} features of experience 1",
                        labels.len()
                    ),
                    e,
                )
            })?;
            self.quantizer = Some(pq);
            let rows: Vec<f64> = selected
                .iter()
                .flat_map(|&i| all[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            let labels = selected.iter().map(|&i| labels[i]).collect();
            (rows, dim, labels)
        } else {
            let items: Vec<Item> = selected.iter().map(|&i| exp.train[i]).collect();
            Self::features(model, exp, &items, bs, dtype, device)?
        };
        let pq = self.quantizer.as_ref().expect("fitted above");
        if labels.is_empty() {
            return Ok(AssocReport {
                classes: Vec::new(),
                stored: 0,
                quantizer_fitted: fitting,
                edge_density: self.densities(),
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        if dim != pq.dim() {
            return Err(ContinualError::Config(format!(
                "--method assoc-memory: features of {dim} values, and the quantiser takes {}",
                pq.dim()
            )));
        }
        let codes = pq
            .encode_rows(&rows)
            .map_err(|e| mem_err(&format!("encoding the features of {}", exp.name()), e))?;
        let mut by_class = BTreeMap::<usize, Vec<Vec<u32>>>::new();
        for (code, &y) in codes.into_iter().zip(&labels) {
            by_class.entry(y).or_default().push(code);
        }
        for (&y, codes) in &by_class {
            self.store(y, codes)?;
        }
        Ok(AssocReport {
            classes: by_class.keys().copied().collect(),
            stored: labels.len(),
            quantizer_fitted: fitting,
            edge_density: self.densities(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// ORs `codes` into class `y`'s edges, in the memory and in its copy.
    fn store(&mut self, y: usize, codes: &[Vec<u32>]) -> Result<()> {
        self.memory
            .add_class(y, codes)
            .map_err(|e| mem_err(&format!("storing class {y}"), e))?;
        if y >= self.edges.rows() {
            self.edges.push_rows(y + 1 - self.edges.rows());
        }
        for code in codes {
            for (p, &k) in code.iter().enumerate() {
                self.edges.set(y, p * self.anchors + k as usize, true);
            }
        }
        Ok(())
    }

    fn densities(&self) -> BTreeMap<usize, f64> {
        let inputs = (self.segments * self.anchors) as f64;
        self.memory
            .learnt()
            .into_iter()
            .map(|y| (y, self.memory.edges_of(y) as f64 / inputs))
            .collect()
    }

    /// The memory's classes for the features `rows` (one per sequence); `None` before any class.
    pub fn classify(&self, rows: &[Vec<f64>]) -> Result<Vec<Option<usize>>> {
        let Some(pq) = &self.quantizer else {
            return Ok(vec![None; rows.len()]);
        };
        rows.iter()
            .map(|r| {
                let code = pq
                    .encode(r)
                    .map_err(|e| mem_err("encoding a test feature", e))?;
                self.memory
                    .classify(&code)
                    .map_err(|e| mem_err("classifying a test code", e))
            })
            .collect()
    }

    /// The read-out the scorer reads for `batch`: (B, T, `classes`), at every step 1 for the
    /// class the memory gives the sequence and 0 elsewhere (all 0 before any class is learnt),
    /// in the batch's dtype.
    pub fn predict(&self, model: &SequenceModel, batch: &Batch, classes: usize) -> Result<Tensor> {
        let (b, t, _) = batch.x.dims3()?;
        let rows = batch_features(
            model,
            &batch.x,
            batch.dt.as_ref(),
            &batch.lengths,
            FeatureKind::FinalState,
        )?;
        let mut y = vec![0f32; b * t * classes];
        for (i, c) in self.classify(&rows)?.into_iter().enumerate() {
            if let Some(c) = c.filter(|&c| c < classes) {
                for s in 0..t {
                    y[(i * t + s) * classes + c] = 1.0;
                }
            }
        }
        Ok(Tensor::from_vec(y, (b, t, classes), batch.x.device())?.to_dtype(batch.x.dtype())?)
    }

    /// The accuracy of the memory's predictions on every experience of `scenario`.
    pub fn score_all(
        &self,
        model: &SequenceModel,
        scenario: &Scenario,
        cfg: &RunConfig,
        device: &Device,
    ) -> Result<Vec<f64>> {
        let classes = scenario.base.output_size();
        crate::runner::score_all_with(scenario, cfg, device, &mut |b| {
            self.predict(model, b, classes)
                .map_err(|e| remanence_tasks::TaskError::Data(e.to_string()))
        })
    }

    /// The record of the memory for `method-state.json` (the quantiser's floats still as numbers:
    /// [`crate::saved`] writes them as bits).
    pub fn saved(&self) -> std::result::Result<SavedAssoc, serde_json::Error> {
        Ok(SavedAssoc {
            quantizer: self
                .quantizer
                .as_ref()
                .map(serde_json::to_value)
                .transpose()?,
            edges: self.edges.clone(),
            learnt: self.memory.learnt(),
        })
    }

    /// Restores the quantiser `quantizer` and the memory whose bit matrix is `edges` with the
    /// classes `learnt`: each learnt class's edges are OR-ed back in from codes that together
    /// cover exactly its row (code j takes, in each segment, the j-th of that segment's anchors
    /// linked to the class, or the last one), so the memory is the one that was saved.
    pub fn restore(
        &mut self,
        quantizer: Option<ProductQuantizer>,
        edges: BitMatrix,
        learnt: &[usize],
    ) -> Result<()> {
        let bad = |m: String| ContinualError::Config(format!("the saved memory: {m}"));
        let inputs = self.segments * self.anchors;
        if edges.cols() != inputs {
            return Err(bad(format!(
                "{} input neurons, and the method has {} × {}",
                edges.cols(),
                self.segments,
                self.anchors
            )));
        }
        if let Some(pq) = &quantizer {
            if pq.segments() != self.segments || pq.anchors_per_segment() != self.anchors {
                return Err(bad(format!(
                    "a quantiser of {} segments × {} anchors, and the method has {} × {}",
                    pq.segments(),
                    pq.anchors_per_segment(),
                    self.segments,
                    self.anchors
                )));
            }
        } else if !learnt.is_empty() {
            return Err(bad("classes learnt without a quantiser".into()));
        }
        let mut fresh = Self::new(self.segments, self.anchors, self.per_class, 0)?;
        fresh.seed = self.seed;
        for &y in learnt {
            if y >= edges.rows() {
                return Err(bad(format!("class {y} has no row of edges")));
            }
            let per_segment: Vec<Vec<u32>> = (0..self.segments)
                .map(|p| {
                    (0..self.anchors)
                        .filter(|&k| edges.get(y, p * self.anchors + k))
                        .map(|k| k as u32)
                        .collect()
                })
                .collect();
            let n = per_segment.iter().map(Vec::len).max().unwrap_or(0);
            if per_segment.iter().any(Vec::is_empty) {
                return Err(bad(format!(
                    "class {y} has a segment without any edge (every stored code has one)"
                )));
            }
            let codes: Vec<Vec<u32>> = (0..n)
                .map(|j| per_segment.iter().map(|s| s[j.min(s.len() - 1)]).collect())
                .collect();
            fresh.store(y, &codes)?;
        }
        if fresh.edges.count_ones() != edges.count_ones() {
            return Err(bad(
                "edges of classes that are not learnt (the bit matrix and the classes disagree)"
                    .into(),
            ));
        }
        fresh.quantizer = quantizer;
        fresh.edges = edges;
        *self = fresh;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory saved and restored is the memory: same edges, classes and answers.
    #[test]
    fn a_restored_memory_is_the_saved_one() {
        let dim = 6;
        let data: Vec<f64> = (0..40 * dim)
            .map(|i| ((i * 37 % 23) as f64).sin())
            .collect();
        let pq = ProductQuantizer::fit(
            &data,
            dim,
            &PqSettings {
                segments: 3,
                anchors: 5,
                method: AnchorMethod::KMeans { iterations: 10 },
                seed: 2,
            },
        )
        .unwrap();
        let mut a = AssocState::new(3, 5, None, 9).unwrap();
        a.quantizer = Some(pq.clone());
        let codes = pq.encode_rows(&data).unwrap();
        for (i, chunk) in codes.chunks(10).enumerate() {
            a.store([4, 1, 7, 2][i], chunk).unwrap();
        }
        let saved = a.saved().unwrap();
        assert_eq!(saved.learnt, vec![1, 2, 4, 7]);
        let mut b = AssocState::new(3, 5, None, 9).unwrap();
        b.restore(Some(pq.clone()), saved.edges.clone(), &saved.learnt)
            .unwrap();
        assert_eq!(a, b);
        let rows: Vec<Vec<f64>> = data.chunks(dim).map(<[f64]>::to_vec).collect();
        assert_eq!(a.classify(&rows).unwrap(), b.classify(&rows).unwrap());
        // A bit matrix with an edge of a class not listed as learnt is refused.
        let mut c = AssocState::new(3, 5, None, 9).unwrap();
        let err = c
            .restore(Some(pq), saved.edges, &saved.learnt[1..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("disagree"), "{err}");
    }
}
