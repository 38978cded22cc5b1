//! Next-symbol prediction on the Reber and embedded Reber grammars, with the protocol of
//! Hochreiter & Schmidhuber (1997, experiment 1, after Fahlman):
//!
//! - 256 training strings drawn from the grammar (repeats allowed, as drawn) and 256 distinct test
//!   strings, none of which occurs in the training set;
//! - one-hot input of each symbol but the last; at every step the target is the set of valid next
//!   symbols (multi-hot, trained with independent sigmoid outputs);
//! - a string is predicted correctly when at every step the valid next symbols are the most
//!   active outputs; the task is solved when every string of both sets is predicted correctly.
use std::collections::{BTreeMap, HashSet};

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TaskError};
use crate::grammar::{Grammar, B, E};
use crate::task::{Batch, Evaluation, Objective, Predict, SequenceTask, Split};

pub const NUM_SYMBOLS: usize = 7;

pub struct ReberTask {
    grammar: Grammar,
    name: String,
    train: Vec<Vec<u8>>,
    test: Vec<Vec<u8>>,
}

impl ReberTask {
    /// Draws the training and test strings from `seed`.
    pub fn new(grammar: Grammar, train_size: usize, test_size: usize, seed: u64) -> Result<Self> {
        if train_size == 0 || test_size == 0 {
            return Err(TaskError::Config(
                "train and test sizes must be positive".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5245_4245_5200_0000);
        let train: Vec<Vec<u8>> = (0..train_size)
            .map(|_| grammar.generate(&mut rng))
            .collect();
        let seen: HashSet<&Vec<u8>> = train.iter().collect();
        let mut test_set = HashSet::new();
        let mut test = Vec::with_capacity(test_size);
        let budget = 10_000 * test_size;
        for _ in 0..budget {
            if test.len() == test_size {
                break;
            }
            let s = grammar.generate(&mut rng);
            if !seen.contains(&s) && test_set.insert(s.clone()) {
                test.push(s);
            }
        }
        if test.len() < test_size {
            return Err(TaskError::Config(format!(
                "could draw only {} distinct test strings outside the training set (asked for {test_size})",
                test.len()
            )));
        }
        let name = match grammar {
            Grammar::Reber => "reber",
            Grammar::Embedded => "embedded-reber",
        };
        Ok(Self {
            grammar,
            name: name.into(),
            train,
            test,
        })
    }

    pub fn grammar(&self) -> Grammar {
        self.grammar
    }

    pub fn strings(&self, split: Split) -> &[Vec<u8>] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// Per string of `split`: (whether every step was right, steps right, steps).
    fn score_split(
        &self,
        split: Split,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<(usize, usize, usize)> {
        let strings = self.strings(split);
        let (mut good_strings, mut good_steps, mut steps) = (0, 0, 0);
        let order: Vec<usize> = (0..strings.len()).collect();
        for chunk in order.chunks(batch_size.max(1)) {
            let batch = self.batch(split, chunk, dtype, device)?;
            let out = predict(&batch)?;
            let out: Vec<Vec<Vec<f32>>> = out.to_dtype(DType::F32)?.to_vec3()?;
            for (row, &i) in chunk.iter().enumerate() {
                let s = &strings[i];
                let sets = self.grammar.next_sets(s).expect("grammatical");
                let mut all = true;
                for (step, set) in sets.iter().enumerate() {
                    let ok = valid_are_most_active(&out[row][step], *set);
                    good_steps += ok as usize;
                    all &= ok;
                }
                steps += sets.len();
                good_strings += all as usize;
            }
        }
        Ok((good_strings, good_steps, steps))
    }
}

/// Whether the outputs of the symbols in `set` are all above every other output. A step with a
/// non-finite output (NaN, ±∞) is never right.
pub fn valid_are_most_active(out: &[f32], set: u8) -> bool {
    if out.iter().take(NUM_SYMBOLS).any(|v| !v.is_finite()) {
        return false;
    }
    let mut lo_valid = f32::INFINITY;
    let mut hi_other = f32::NEG_INFINITY;
    for (k, &v) in out.iter().enumerate().take(NUM_SYMBOLS) {
        if set & (1 << k) != 0 {
            lo_valid = lo_valid.min(v);
        } else {
            hi_other = hi_other.max(v);
        }
    }
    lo_valid > hi_other
}

impl SequenceTask for ReberTask {
    fn name(&self) -> &str {
        &self.name
    }
    fn input_size(&self) -> usize {
        NUM_SYMBOLS
    }
    fn output_size(&self) -> usize {
        NUM_SYMBOLS
    }
    fn objective(&self) -> Objective {
        Objective::MultiLabelPerStep
    }
    fn len(&self, split: Split) -> usize {
        self.strings(split).len()
    }

    fn batch(
        &self,
        split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Batch> {
        let strings = self.strings(split);
        let lengths: Vec<usize> = indices.iter().map(|&i| strings[i].len() - 1).collect();
        let (b, t) = (indices.len(), *lengths.iter().max().unwrap_or(&1));
        let mut x = vec![0f32; b * t * NUM_SYMBOLS];
        let mut y = vec![0f32; b * t * NUM_SYMBOLS];
        let mut m = vec![0f32; b * t];
        for (row, &i) in indices.iter().enumerate() {
            let s = &strings[i];
            let sets = self
                .grammar
                .next_sets(s)
                .expect("generated strings are grammatical");
            for step in 0..s.len() - 1 {
                let base = (row * t + step) * NUM_SYMBOLS;
                x[base + s[step] as usize] = 1.0;
                for k in 0..NUM_SYMBOLS {
                    if sets[step] & (1 << k) != 0 {
                        y[base + k] = 1.0;
                    }
                }
                m[row * t + step] = 1.0;
            }
        }
        let mk = |v: Vec<f32>, shape: &[usize]| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
        };
        let full = lengths.iter().all(|&l| l == t);
        Ok(Batch {
            x: mk(x, &[b, t, NUM_SYMBOLS])?,
            target: mk(y, &[b, t, NUM_SYMBOLS])?,
            mask: if full { None } else { Some(mk(m, &[b, t])?) },
            dt: None,
            indices: indices.to_vec(),
            lengths,
        })
    }

    fn evaluate(
        &self,
        batch_size: usize,
        dtype: DType,
        device: &Device,
        predict: &mut Predict<'_>,
    ) -> Result<Evaluation> {
        let mut values = BTreeMap::new();
        let mut all_solved = true;
        let mut counts = Vec::new();
        for (split, name) in [(Split::Train, "train"), (Split::Test, "test")] {
            let (gs, gt, st) = self.score_split(split, batch_size, dtype, device, predict)?;
            let n = self.strings(split).len();
            values.insert(format!("{name}_string_accuracy"), gs as f64 / n as f64);
            values.insert(format!("{name}_step_accuracy"), gt as f64 / st as f64);
            all_solved &= gs == n;
            counts.push((gs, n));
        }
        let pct = |(g, n): (usize, usize)| 100.0 * g as f64 / n as f64;
        let summary = format!(
            "{}/{} test strings ({:.2}%) and {}/{} training strings ({:.2}%) have every next-symbol \
             prediction right; {}",
            counts[1].0,
            counts[1].1,
            pct(counts[1]),
            counts[0].0,
            counts[0].1,
            pct(counts[0]),
            if all_solved {
                "solved (Hochreiter & Schmidhuber's criterion: every string of both sets right)"
            } else {
                "not solved (that needs every string of both sets right)"
            }
        );
        Ok(Evaluation {
            metric_name: "test_string_accuracy".into(),
            metric: values["test_string_accuracy"],
            solved: Some(all_solved),
            values,
            summary,
        })
    }
}

/// Generates one string from a model: starts from `B`, feeds each chosen symbol back, and stops
/// after the grammar's last `E` (one for Reber, two for embedded Reber) or `max_len` symbols.
/// `step` maps a symbol to the model's read-out for the next one. `temperature` 0 takes the
/// most active output; otherwise a symbol is drawn from softmax(out / temperature).
pub fn sample_string(
    grammar: Grammar,
    temperature: f64,
    max_len: usize,
    rng: &mut impl Rng,
    step: &mut dyn FnMut(u8) -> Result<Vec<f32>>,
) -> Result<Vec<u8>> {
    let ends = match grammar {
        Grammar::Reber => 1,
        Grammar::Embedded => 2,
    };
    let mut s = vec![B];
    let mut seen_e = 0;
    while s.len() < max_len {
        let out = step(*s.last().unwrap())?;
        let sym = if temperature <= 0.0 {
            argmax(&out)
        } else {
            let mx = out.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let w: Vec<f64> = out
                .iter()
                .map(|&v| ((v as f64 - mx) / temperature).exp())
                .collect();
            let total: f64 = w.iter().sum();
            let mut u = rng.random::<f64>() * total;
            let mut pick = w.len() - 1;
            for (k, wk) in w.iter().enumerate() {
                if u < *wk {
                    pick = k;
                    break;
                }
                u -= wk;
            }
            pick
        } as u8;
        s.push(sym);
        if sym == E {
            seen_e += 1;
            if seen_e == ends {
                break;
            }
        }
    }
    Ok(s)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(0, |best, (k, &x)| if x > v[best] { k } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_sizes_distinct_test_and_deterministic() {
        let a = ReberTask::new(Grammar::Embedded, 256, 256, 1).unwrap();
        let b = ReberTask::new(Grammar::Embedded, 256, 256, 1).unwrap();
        assert_eq!(a.train, b.train);
        assert_eq!(a.test, b.test);
        assert_eq!(a.train.len(), 256);
        let distinct: HashSet<_> = a.test.iter().collect();
        assert_eq!(distinct.len(), 256);
        assert!(a.test.iter().all(|s| !a.train.contains(s)));
        let c = ReberTask::new(Grammar::Embedded, 256, 256, 2).unwrap();
        assert_ne!(a.train, c.train);
    }

    #[test]
    fn batch_encodes_inputs_targets_and_mask() {
        let task = ReberTask::new(Grammar::Reber, 8, 8, 5).unwrap();
        let batch = task
            .batch(Split::Train, &[0, 1, 2], DType::F32, &Device::Cpu)
            .unwrap();
        let x: Vec<Vec<Vec<f32>>> = batch.x.to_vec3().unwrap();
        let y: Vec<Vec<Vec<f32>>> = batch.target.to_vec3().unwrap();
        for (row, &i) in [0usize, 1, 2].iter().enumerate() {
            let s = &task.train[i];
            assert_eq!(batch.lengths[row], s.len() - 1);
            assert_eq!(x[row][0][B as usize], 1.0);
            for t in 0..s.len() - 1 {
                assert_eq!(x[row][t].iter().sum::<f32>(), 1.0);
                assert_eq!(
                    y[row][t][s[t + 1] as usize],
                    1.0,
                    "the actual next symbol is valid"
                );
            }
            for t in s.len() - 1..x[row].len() {
                assert_eq!(x[row][t].iter().sum::<f32>(), 0.0, "padding is zero");
            }
        }
    }

    #[test]
    fn non_finite_outputs_are_never_right() {
        // Before this check, all-NaN outputs passed (NaN is ignored by min and max).
        let set = 0b0000_0110;
        assert!(valid_are_most_active(&[0., 1., 1., 0., 0., 0., 0.], set));
        assert!(!valid_are_most_active(&[f32::NAN; 7], set));
        assert!(!valid_are_most_active(
            &[0., 1., 1., 0., f32::NAN, 0., 0.],
            set
        ));
        assert!(!valid_are_most_active(
            &[0., f32::INFINITY, 1., 0., 0., 0., 0.],
            set
        ));
    }

    #[test]
    fn perfect_predictor_solves_and_constant_one_does_not() {
        let task = ReberTask::new(Grammar::Embedded, 32, 32, 9).unwrap();
        let mut oracle = |b: &Batch| Ok(b.target.clone());
        let ev = task
            .evaluate(7, DType::F32, &Device::Cpu, &mut oracle)
            .unwrap();
        assert_eq!(ev.solved, Some(true));
        assert_eq!(ev.metric, 1.0);
        let mut flat = |b: &Batch| Ok(b.target.zeros_like()?);
        let ev = task
            .evaluate(7, DType::F32, &Device::Cpu, &mut flat)
            .unwrap();
        assert_eq!(ev.solved, Some(false));
        assert_eq!(ev.metric, 0.0);
    }

    #[test]
    fn sampling_from_the_grammar_itself_is_grammatical() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for g in [Grammar::Reber, Grammar::Embedded] {
            for _ in 0..50 {
                let mut prefix = Vec::new();
                let mut step = |sym: u8| -> Result<Vec<f32>> {
                    prefix.push(sym);
                    let valid = g.valid_after(&prefix).unwrap();
                    Ok((0..7)
                        .map(|k| {
                            if valid.contains(&(k as u8)) {
                                5.0
                            } else {
                                -5.0
                            }
                        })
                        .collect())
                };
                let s = sample_string(g, 0.3, 100, &mut rng, &mut step).unwrap();
                assert!(g.accepts(&s), "{}", crate::grammar::to_text(&s));
            }
        }
    }
}
