//! Ans & Rousset's dual network: reverberated pseudo-patterns (their shapes, the reverberation
//! equations step by step, the clamp, the noise), the distillation loss against hand-computed
//! entropies and cross-entropies, the reconstruction targets and loss, the transfer from NET1 to
//! NET2, and whole scenario runs; tiny models, f64 wherever numbers are compared.
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remanence_cells::{
    Activation, AutoAssoc, CellKind, CtOptions, Kernel, ModelConfig, ParamStore, RnnConfig,
    RnnState, SequenceModel,
};
use remanence_continual::dual::{self, DualOptions};
use remanence_continual::matrix::AccuracyMatrix;
use remanence_continual::reverberation::{
    distill_loss, generate, recon_loss, recon_targets, InputRange, Noise, Pseudo, PseudoKind,
    Reverb,
};
use remanence_continual::runner::{self, ExperienceRecord};
use remanence_continual::scenario::Scenario;
use remanence_continual::strategy::{Method, MethodOptions, ReplayBuffer};
use remanence_tasks::task::Predict;
use remanence_tasks::{Batch, Evaluation, Objective, SequenceTask, Split, TaskConfig, TaskKind};
use remanence_train::trainer::Silent;
use remanence_train::{OptimizerConfig, OptimizerKind, RunConfig, RunDir, Schedule, TrainConfig};

mod common;
use common::{Toy6, C, F, T};

const CPU: Device = Device::Cpu;

// ---- Tasks ----

/// Hand-written sequences of 2 features, of their own lengths, padded with 99 past the end.
struct Table {
    seqs: Vec<Vec<[f64; 2]>>,
}

impl SequenceTask for Table {
    fn name(&self) -> &str {
        "table"
    }
    fn input_size(&self) -> usize {
        2
    }
    fn output_size(&self) -> usize {
        2
    }
    fn objective(&self) -> Objective {
        Objective::ClassLastStep
    }
    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.seqs.len(),
            Split::Test => 0,
        }
    }
    fn batch(
        &self,
        _split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let t = indices.iter().map(|&i| self.seqs[i].len()).max().unwrap();
        let mut x = Vec::new();
        for &i in indices {
            for s in 0..t {
                x.extend_from_slice(self.seqs[i].get(s).unwrap_or(&[99.0, 99.0]));
            }
        }
        let b = indices.len();
        Ok(Batch {
            x: Tensor::from_vec(x, (b, t, 2), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(indices.iter().map(|&i| (i % 2) as u32).collect(), b, device)?,
            mask: None,
            dt: None,
            indices: indices.to_vec(),
            lengths: indices.iter().map(|&i| self.seqs[i].len()).collect(),
        })
    }
    fn evaluate(
        &self,
        _: usize,
        _: DType,
        _: &Device,
        _: &mut Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        unreachable!()
    }
    fn label(&self, _split: Split, index: usize) -> Option<usize> {
        Some(index % 2)
    }
}

// ---- Helpers ----

fn model_cfg(cell: CellKind, layers: usize, hidden: usize, head: Option<AutoAssoc>) -> ModelConfig {
    let mut c = ModelConfig::new(
        RnnConfig {
            cell,
            input_size: F,
            hidden_size: hidden,
            num_layers: layers,
            activation: Activation::Tanh,
            ct: CtOptions {
                backbone_units: 6,
                ode_unfolds: 2,
                ..CtOptions::default()
            },
            reservoir: Default::default(),
            threads: Some(1),
            kernel: Kernel::Auto,
        },
        C,
    );
    c.autoassoc = head;
    c
}

/// A 2-layer LSTM (its state has h and c of each layer) of 4 units with the head `kind` needs.
fn lstm_for(kind: PseudoKind) -> ModelConfig {
    model_cfg(CellKind::Lstm, 2, 4, Some(kind.autoassoc()))
}

fn model(cfg: &ModelConfig, seed: u64) -> (SequenceModel, ParamStore) {
    SequenceModel::init(cfg, seed, DType::F64, &CPU).unwrap()
}

fn toy_batch(indices: &[usize]) -> Batch {
    Toy6.batch(Split::Train, indices, DType::F64, &CPU).unwrap()
}

fn toy_range() -> InputRange {
    let mut r = InputRange::default();
    r.observe(&Toy6, 4096).unwrap();
    r
}

fn reverb(kind: PseudoKind, rounds: usize) -> Reverb {
    Reverb {
        kind,
        rounds,
        noise: Noise::Uniform,
        denoise: 0.0,
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    vals(a)
        .iter()
        .zip(vals(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Step `k` of (B, T, …).
fn at(x: &Tensor, k: usize) -> Tensor {
    x.narrow(1, k, 1).unwrap().squeeze(1).unwrap()
}

/// The first F columns of `r` (…, F + …), clamped per feature to `range` by hand.
fn clamp_input_part(r: &Tensor, range: &InputRange) -> Tensor {
    let r = r.narrow(D::Minus1, 0, F).unwrap();
    let v: Vec<f64> = vals(&r)
        .into_iter()
        .enumerate()
        .map(|(k, v)| v.max(range.min[k % F]).min(range.max[k % F]))
        .collect();
    Tensor::from_vec(v, r.dims(), &CPU).unwrap()
}

/// Rows of a (N, C) tensor.
fn rows(z: &Tensor) -> Vec<Vec<f64>> {
    z.to_dtype(DType::F64).unwrap().to_vec2().unwrap()
}

fn log_softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

fn argmax(z: &[f64]) -> usize {
    (0..z.len()).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap()
}

/// The class read-out as `objective` reads it: (N, C) rows.
fn class_view(y: &Tensor, objective: Objective) -> Vec<Vec<f64>> {
    if y.rank() == 2 {
        return rows(y);
    }
    let (b, t, c) = y.dims3().unwrap();
    rows(&match objective {
        Objective::ClassLastStep => at(y, t - 1),
        Objective::ClassMeanOverTime => y.mean(1).unwrap(),
        _ => y.reshape((b * t, c)).unwrap(),
    })
}

/// Mean entropy of the softmax of each row.
fn mean_entropy(z: &[Vec<f64>]) -> f64 {
    z.iter()
        .map(|r| log_softmax(r).iter().map(|lq| -lq.exp() * lq).sum::<f64>())
        .sum::<f64>()
        / z.len() as f64
}

/// Mean over rows of −Σ softmax(target) · log_softmax(z) (soft) or −log_softmax(z)[argmax target].
fn cross_entropy(z: &[Vec<f64>], target: &[Vec<f64>], soft: bool) -> f64 {
    z.iter()
        .zip(target)
        .map(|(zr, tr)| {
            let lp = log_softmax(zr);
            if soft {
                let lq = log_softmax(tr);
                -lq.iter().zip(&lp).map(|(q, p)| q.exp() * p).sum::<f64>()
            } else {
                -lp[argmax(tr)]
            }
        })
        .sum::<f64>()
        / z.len() as f64
}

fn mse(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (vals(a), vals(b));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        / a.len() as f64
}

fn run_config(cell: CellKind, hidden: usize, dtype: &str) -> RunConfig {
    RunConfig {
        model: model_cfg(cell, 1, hidden, None),
        task: TaskConfig {
            kind: TaskKind::MnistRows,
            train_size: 0,
            test_size: 0,
            data_seed: 4,
            data_dir: None,
            options: Default::default(),
        },
        train: TrainConfig {
            epochs: 1,
            batch_size: 16,
            optimizer: OptimizerConfig::new(OptimizerKind::Adam, 0.05),
            schedule: Schedule::Constant,
            clip_norm: Some(1.0),
            seed: 7,
            early_stop: false,
            target: None,
            eval_batch_size: 64,
            ridge: None,
            backtune: None,
        },
        dtype: dtype.into(),
        device: "cpu".into(),
    }
}

fn scenario() -> Scenario {
    Scenario::new("split:mnist-rows:2".parse().unwrap(), Arc::new(Toy6), 4).unwrap()
}

fn temp_root(name: &str) -> std::path::PathBuf {
    let r = std::env::temp_dir().join(format!("remanence-dual-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r);
    r
}

// ---- 2. Reverberation ----

#[test]
fn every_kind_of_pseudo_pattern_has_its_shapes() {
    let range = toy_range();
    for (cell, layers) in [(CellKind::Lstm, 2), (CellKind::Gru, 1)] {
        for kind in [
            PseudoKind::Sequence,
            PseudoKind::ClosedLoop,
            PseudoKind::Transition,
        ] {
            let cfg = model_cfg(cell, layers, 4, Some(kind.autoassoc()));
            let s = cfg.state_size();
            assert_eq!(s, if cell == CellKind::Lstm { 16 } else { 4 });
            let (g, _) = model(&cfg, 1);
            let seeds = toy_batch(&[0, 1, 2, 3, 4, 5, 6]);
            // Noise seeds: `n` patterns of the data's length; buffer seeds: one per sequence.
            for (p_n, seeds) in [(5, None), (7, Some(&seeds))] {
                let what = format!("{cell} {kind:?} seeds {}", seeds.is_some());
                let p = generate(
                    &g,
                    &reverb(kind, 2),
                    &range,
                    5,
                    seeds,
                    &mut rng(3),
                    DType::F64,
                    &CPU,
                )
                .unwrap();
                match kind {
                    PseudoKind::Sequence | PseudoKind::ClosedLoop => {
                        assert_eq!(p.x.dims(), &[p_n, T, F], "{what}");
                        assert_eq!(p.y.dims(), &[p_n, T, C], "{what}");
                        assert_eq!(p.recon.dims(), &[p_n, T, F], "{what}");
                        assert!(p.state.is_none() && p.next_state.is_none(), "{what}");
                    }
                    PseudoKind::Transition => {
                        assert_eq!(p.x.dims(), &[p_n, F], "{what}");
                        assert_eq!(p.state.as_ref().unwrap().dims(), &[p_n, s], "{what}");
                        assert_eq!(p.next_state.as_ref().unwrap().dims(), &[p_n, s], "{what}");
                        assert_eq!(p.y.dims(), &[p_n, C], "{what}");
                        assert_eq!(p.recon.dims(), &[p_n, F + s], "{what}");
                    }
                }
                assert_eq!(p.x.dtype(), DType::F64);
                for t in [&p.x, &p.y, &p.recon] {
                    assert!(vals(t).iter().all(|v| v.is_finite()), "{what}");
                }
            }
        }
    }
}

#[test]
fn sequence_patterns_are_r_reverberations_of_the_seed() {
    let range = toy_range();
    let cfg = lstm_for(PseudoKind::Sequence);
    let (g, _) = model(&cfg, 2);
    let seeds = toy_batch(&[0, 1, 2, 3, 4, 5]);
    for rounds in [0, 1, 3] {
        let p = generate(
            &g,
            &reverb(PseudoKind::Sequence, rounds),
            &range,
            99,
            Some(&seeds),
            &mut rng(0),
            DType::F64,
            &CPU,
        )
        .unwrap();
        // By hand: X^{k+1} = clamp(r(X^k)), then one recorded pass over X^R.
        let mut x = seeds.x.clone();
        for _ in 0..rounds {
            let (_, hs, _) = g.forward_full(&x, None, None).unwrap();
            x = clamp_input_part(&g.reconstruct(&hs).unwrap(), &range);
        }
        let (y, hs, _) = g.forward_full(&x, None, None).unwrap();
        let r = g.reconstruct(&hs).unwrap();
        assert!(max_diff(&p.x, &x) < 1e-12, "R = {rounds}: x");
        assert!(max_diff(&p.y, &y) < 1e-12, "R = {rounds}: y");
        assert!(max_diff(&p.recon, &r) < 1e-12, "R = {rounds}: recon");
        if rounds == 0 {
            // Robins's pseudo-rehearsal: the seed itself.
            assert_eq!(vals(&p.x), vals(&seeds.x));
        } else {
            assert!(
                max_diff(&p.x, &seeds.x) > 1e-3,
                "R = {rounds} left the seed"
            );
        }
    }
    // Noise seeds with R = 0: exactly the noise the range draws from the same stream.
    let p = generate(
        &g,
        &Reverb {
            noise: Noise::Gaussian,
            ..reverb(PseudoKind::Sequence, 0)
        },
        &range,
        4,
        None,
        &mut rng(9),
        DType::F64,
        &CPU,
    )
    .unwrap();
    let noise = range
        .sample(Noise::Gaussian, &[4, T, F], &mut rng(9), DType::F64, &CPU)
        .unwrap();
    assert_eq!(vals(&p.x), vals(&noise));
}

#[test]
fn closed_loop_patterns_feed_the_reconstruction_forward() {
    let range = toy_range();
    let cfg = lstm_for(PseudoKind::ClosedLoop);
    let (g, _) = model(&cfg, 4);
    let seeds = toy_batch(&[3, 8, 13, 20]);
    for rounds in [0, 2] {
        let p = generate(
            &g,
            &reverb(PseudoKind::ClosedLoop, rounds),
            &range,
            4,
            Some(&seeds),
            &mut rng(1),
            DType::F64,
            &CPU,
        )
        .unwrap();
        let zero = g.rnn_zero_state(4, DType::F64, &CPU).unwrap();
        let mut x = at(&seeds.x, 0);
        for _ in 0..rounds {
            let (_, r, _) = g.step_autoassoc(&x, &zero).unwrap();
            x = clamp_input_part(&r, &range);
        }
        let mut state = zero;
        for t in 0..T {
            let (y, r, s) = g.step_autoassoc(&x, &state).unwrap();
            assert!(max_diff(&at(&p.x, t), &x) < 1e-12, "R = {rounds}, x_{t}");
            assert!(max_diff(&at(&p.y, t), &y) < 1e-12, "R = {rounds}, y_{t}");
            assert!(
                max_diff(&at(&p.recon, t), &r) < 1e-12,
                "R = {rounds}, r_{t}"
            );
            x = clamp_input_part(&r, &range);
            state = s;
        }
        if rounds == 0 {
            assert_eq!(vals(&at(&p.x, 0)), vals(&at(&seeds.x, 0)));
        }
    }
}

#[test]
fn transition_patterns_reverberate_an_item_and_a_state() {
    let range = toy_range();
    let cfg = lstm_for(PseudoKind::Transition);
    let (g, _) = model(&cfg, 6);
    let seeds = toy_batch(&[1, 2, 9, 10, 17]);
    let mut prefixes = Vec::new();
    for seed in 0..6 {
        for rounds in [0, 2] {
            let r0 = rng(seed);
            // The prefix length is the stream's first draw (no noise, no corruption before it).
            let k = r0.clone().random_range(0..T);
            prefixes.push(k);
            let p = generate(
                &g,
                &reverb(PseudoKind::Transition, rounds),
                &range,
                5,
                Some(&seeds),
                &mut r0.clone(),
                DType::F64,
                &CPU,
            )
            .unwrap();
            let state = if k == 0 {
                g.rnn_zero_state(5, DType::F64, &CPU).unwrap()
            } else {
                g.forward(&seeds.x.narrow(1, 0, k).unwrap(), None, None)
                    .unwrap()
                    .1
            };
            let mut x = at(&seeds.x, k);
            let mut s = state.flatten().unwrap();
            for _ in 0..rounds {
                let st = RnnState::unflatten(&s, 2, 4, true).unwrap();
                let (_, r, _) = g.step_autoassoc(&x, &st).unwrap();
                x = clamp_input_part(&r, &range);
                s = r.narrow(1, F, 16).unwrap();
            }
            let st = RnnState::unflatten(&s, 2, 4, true).unwrap();
            let (y, r, next) = g.step_autoassoc(&x, &st).unwrap();
            let what = format!("seed {seed}, k {k}, R {rounds}");
            assert!(max_diff(&p.x, &x) < 1e-12, "{what}: x");
            assert!(max_diff(p.state.as_ref().unwrap(), &s) < 1e-12, "{what}: s");
            assert!(
                max_diff(p.next_state.as_ref().unwrap(), &next.flatten().unwrap()) < 1e-12,
                "{what}: next state"
            );
            assert!(max_diff(&p.y, &y) < 1e-12, "{what}: y");
            assert!(max_diff(&p.recon, &r) < 1e-12, "{what}: recon");
            if rounds == 0 {
                assert_eq!(vals(&p.x), vals(&at(&seeds.x, k)), "{what}");
            }
        }
    }
    assert!(prefixes.iter().any(|&k| k > 0), "{prefixes:?}");
}

#[test]
fn reverberated_inputs_stay_inside_each_features_range() {
    let range = toy_range();
    assert!(range.min[0] < range.max[0] && range.min[1] < range.max[1]);
    for kind in [
        PseudoKind::Sequence,
        PseudoKind::ClosedLoop,
        PseudoKind::Transition,
    ] {
        let cfg = lstm_for(kind);
        let (g, store) = model(&cfg, 5);
        // Push the reconstruction of the inputs far outside the data, one feature each way.
        let b = store.get("autoassoc.bias").unwrap();
        let mut bias = vals(b.as_tensor());
        bias[0] = 50.0;
        bias[1] = -50.0;
        b.set(&Tensor::from_vec(bias, b.dims(), &CPU).unwrap())
            .unwrap();
        for rounds in [1, 3] {
            // Gaussian noise seeds fall outside the range too.
            let p = generate(
                &g,
                &Reverb {
                    noise: Noise::Gaussian,
                    ..reverb(kind, rounds)
                },
                &range,
                16,
                None,
                &mut rng(rounds as u64),
                DType::F64,
                &CPU,
            )
            .unwrap();
            let x = vals(&p.x);
            for (k, v) in x.iter().enumerate() {
                let j = k % F;
                assert!(
                    (range.min[j]..=range.max[j]).contains(v),
                    "{kind:?} R {rounds}: feature {j} = {v}"
                );
            }
            // The clamp did act: every input sits on its bound.
            assert!(x.iter().step_by(F).all(|&v| v == range.max[0]), "{kind:?}");
            assert!(
                x.iter().skip(1).step_by(F).all(|&v| v == range.min[1]),
                "{kind:?}"
            );
        }
    }
}

#[test]
fn the_same_stream_gives_the_same_patterns_and_another_different_ones() {
    let range = toy_range();
    for kind in [
        PseudoKind::Sequence,
        PseudoKind::ClosedLoop,
        PseudoKind::Transition,
    ] {
        let cfg = lstm_for(kind);
        let (g, _) = model(&cfg, 8);
        let make = |seed: u64| {
            let rv = Reverb {
                denoise: 0.3,
                ..reverb(kind, 2)
            };
            generate(&g, &rv, &range, 6, None, &mut rng(seed), DType::F64, &CPU).unwrap()
        };
        let (a, b, c) = (make(11), make(11), make(12));
        let all = |p: &Pseudo| {
            let mut v = vals(&p.x);
            v.extend(vals(&p.y));
            v.extend(vals(&p.recon));
            if let Some(s) = &p.state {
                v.extend(vals(s));
            }
            v
        };
        assert_eq!(all(&a), all(&b), "{kind:?}");
        assert_ne!(vals(&a.x), vals(&c.x), "{kind:?}");
    }
}

#[test]
fn a_generator_whose_head_does_not_fit_the_kind_is_refused() {
    let range = toy_range();
    let cases = [
        (Some(AutoAssoc::Input), PseudoKind::Transition),
        (Some(AutoAssoc::InputAndState), PseudoKind::Sequence),
        (Some(AutoAssoc::InputAndState), PseudoKind::ClosedLoop),
        (None, PseudoKind::Sequence),
        (None, PseudoKind::Transition),
    ];
    for (head, kind) in cases {
        let (g, _) = model(&model_cfg(CellKind::Gru, 1, 4, head), 0);
        let e = generate(
            &g,
            &reverb(kind, 1),
            &range,
            3,
            None,
            &mut rng(0),
            DType::F64,
            &CPU,
        )
        .err()
        .unwrap_or_else(|| panic!("{head:?} with {kind:?} was accepted"))
        .to_string();
        assert!(e.contains(&format!("{kind:?}")), "{e}");
        assert!(e.contains(&format!("{:?}", kind.autoassoc())), "{e}");
    }
}

#[test]
fn the_range_counts_real_steps_exactly() {
    let task = Table {
        seqs: vec![
            vec![[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]],
            vec![[-1.0, 5.0]],
            vec![[0.5, -4.0], [4.0, 0.0]],
        ],
    };
    let mut r = InputRange::default();
    r.observe(&task, 100).unwrap();
    let f0 = [1.0, 2.0, 3.0, -1.0, 0.5, 4.0];
    let f1 = [10.0, 20.0, 30.0, 5.0, -4.0, 0.0];
    let stats = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64;
        (m, var.sqrt())
    };
    // The padding (99) is not data.
    assert_eq!(r.min, vec![-1.0, -4.0]);
    assert_eq!(r.max, vec![4.0, 30.0]);
    assert_eq!(r.steps, 3);
    for (j, v) in [&f0[..], &f1[..]].into_iter().enumerate() {
        let (m, s) = r.mean_std(j);
        let (em, es) = stats(v);
        assert!(
            (m - em).abs() < 1e-12 && (s - es).abs() < 1e-12,
            "{j}: {m} {s} vs {em} {es}"
        );
    }
    // A limit takes the first sequences only.
    let mut first = InputRange::default();
    first.observe(&task, 2).unwrap();
    assert_eq!(first.min, vec![-1.0, 5.0]);
    assert_eq!(first.max, vec![3.0, 30.0]);
    let (m, _) = first.mean_std(0);
    assert!((m - 5.0 / 4.0).abs() < 1e-12, "{m}");
    // A second task adds to what was seen.
    let more = Table {
        seqs: vec![vec![[-7.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]],
    };
    first.observe(&more, 100).unwrap();
    assert_eq!(first.min, vec![-7.0, 1.0]);
    assert_eq!(first.max, vec![3.0, 30.0]);
    assert_eq!(first.steps, 4);
    let (m, _) = first.mean_std(0);
    assert!((m - (5.0 - 7.0) / 8.0).abs() < 1e-12, "{m}");
}

/// A range of two features, [-1, 4] and [2, 3], from a tiny table.
fn two_feature_range() -> InputRange {
    let mut r = InputRange::default();
    r.observe(
        &Table {
            seqs: vec![vec![[-1.0, 3.0], [4.0, 2.0]], vec![[0.0, 2.5]]],
        },
        10,
    )
    .unwrap();
    assert_eq!(
        (r.min.clone(), r.max.clone()),
        (vec![-1.0, 2.0], vec![4.0, 3.0])
    );
    r
}

#[test]
fn noise_matches_each_features_range() {
    let r = two_feature_range();
    let shape = [400, 3, 2];
    let binary = vals(
        &r.sample(Noise::Binary, &shape, &mut rng(0), DType::F64, &CPU)
            .unwrap(),
    );
    for j in 0..2 {
        let col: Vec<f64> = binary.iter().skip(j).step_by(2).cloned().collect();
        assert!(col.iter().all(|&v| v == r.min[j] || v == r.max[j]), "{j}");
        let highs = col.iter().filter(|&&v| v == r.max[j]).count() as f64 / col.len() as f64;
        assert!((highs - 0.5).abs() < 0.1, "{j}: {highs}");
    }
    let uniform = r
        .sample(Noise::Uniform, &shape, &mut rng(1), DType::F32, &CPU)
        .unwrap();
    assert_eq!(uniform.dtype(), DType::F32);
    assert_eq!(uniform.dims(), &shape);
    let uniform = vals(&uniform);
    for j in 0..2 {
        let col: Vec<f64> = uniform.iter().skip(j).step_by(2).cloned().collect();
        let (lo, hi) = (r.min[j], r.max[j]);
        assert!(col.iter().all(|&v| v >= lo - 1e-6 && v <= hi + 1e-6), "{j}");
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        assert!(
            (mean - (lo + hi) / 2.0).abs() < 0.05 * (hi - lo),
            "{j}: {mean}"
        );
        let inner = col
            .iter()
            .filter(|&&v| v > lo + 0.1 * (hi - lo) && v < hi - 0.1 * (hi - lo));
        assert!(inner.count() > col.len() / 2, "{j}");
    }
    let gauss = vals(
        &r.sample(Noise::Gaussian, &[20_000, 2], &mut rng(2), DType::F64, &CPU)
            .unwrap(),
    );
    for j in 0..2 {
        let col: Vec<f64> = gauss.iter().skip(j).step_by(2).cloned().collect();
        let m = col.iter().sum::<f64>() / col.len() as f64;
        let s = (col.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / col.len() as f64).sqrt();
        let (em, es) = r.mean_std(j);
        assert!(
            (m - em).abs() < 0.05 * es && (s - es).abs() < 0.05 * es,
            "{j}: {m} {s}"
        );
    }
    // The last dimension must be the features, and a range must have seen data.
    assert!(r
        .sample(Noise::Uniform, &[4, 3], &mut rng(0), DType::F64, &CPU)
        .is_err());
    let e = InputRange::default()
        .sample(Noise::Uniform, &[4, 2], &mut rng(0), DType::F64, &CPU)
        .unwrap_err()
        .to_string();
    assert!(e.contains("range"), "{e}");
}

#[test]
fn the_clamp_works_per_feature() {
    let r = two_feature_range();
    let x = Tensor::new(&[[-5.0f64, 2.5], [10.0, 0.0], [0.5, 9.0]], &CPU).unwrap();
    assert_eq!(
        rows(&r.clamp(&x).unwrap()),
        vec![vec![-1.0, 2.5], vec![4.0, 2.0], vec![0.5, 3.0]]
    );
    let x3 = x.to_dtype(DType::F32).unwrap().unsqueeze(0).unwrap();
    let c3 = r.clamp(&x3).unwrap();
    assert_eq!(c3.dtype(), DType::F32);
    assert_eq!(
        c3.to_vec3::<f32>().unwrap(),
        vec![vec![vec![-1.0, 2.5], vec![4.0, 2.0], vec![0.5, 3.0]]]
    );
}

// ---- 3. Distillation ----

#[test]
fn a_learner_that_is_the_generator_pays_only_the_entropy_of_its_targets() {
    let range = toy_range();
    for kind in [
        PseudoKind::Sequence,
        PseudoKind::ClosedLoop,
        PseudoKind::Transition,
    ] {
        let cfg = lstm_for(kind);
        let (g, _) = model(&cfg, 21);
        // The same weights, built again from the same seed.
        let (learner, _) = model(&cfg, 21);
        let p = generate(
            &g,
            &reverb(kind, 2),
            &range,
            7,
            None,
            &mut rng(5),
            DType::F64,
            &CPU,
        )
        .unwrap();
        let objectives: &[Objective] = if kind == PseudoKind::Transition {
            &[Objective::ClassLastStep]
        } else {
            &[
                Objective::ClassLastStep,
                Objective::ClassMeanOverTime,
                Objective::ClassPerStep,
            ]
        };
        for &objective in objectives {
            let h = mean_entropy(&class_view(&p.y, objective));
            assert!(h > 0.1, "{kind:?}: a degenerate target ({h})");
            for w in [0.0, 1.0, 3.5] {
                for m in [&g, &learner] {
                    let l = scalar(&distill_loss(m, &p, objective, true, w).unwrap());
                    assert!(
                        (l - h).abs() < 1e-10,
                        "{kind:?} {objective:?} w {w}: {l} vs entropy {h}"
                    );
                }
            }
            // Hard targets: the cross-entropy with its own arg-max, −log max softmax.
            let z = class_view(&p.y, objective);
            let hard = cross_entropy(&z, &z, false);
            let l = scalar(&distill_loss(&learner, &p, objective, false, 2.0).unwrap());
            assert!(
                (l - hard).abs() < 1e-10,
                "{kind:?} {objective:?}: {l} vs {hard}"
            );
        }
    }
}

#[test]
fn the_distillation_loss_is_the_cross_entropy_plus_weighted_errors() {
    let range = toy_range();
    for kind in [PseudoKind::Sequence, PseudoKind::Transition] {
        let cfg = lstm_for(kind);
        let (g, _) = model(&cfg, 30);
        let (learner, _) = model(&cfg, 31);
        let p = generate(
            &g,
            &reverb(kind, 1),
            &range,
            6,
            None,
            &mut rng(2),
            DType::F64,
            &CPU,
        )
        .unwrap();
        // The learner's outputs on the patterns, by hand.
        let (y, r, state_err) = match &p.state {
            Some(s) => {
                let st = RnnState::unflatten(s, 2, 4, true).unwrap();
                let (y, r, next) = learner.step_autoassoc(&p.x, &st).unwrap();
                let e = mse(&next.flatten().unwrap(), p.next_state.as_ref().unwrap());
                (y, r, e)
            }
            None => {
                let (y, hs, _) = learner.forward_full(&p.x, None, None).unwrap();
                (y, learner.reconstruct(&hs).unwrap(), 0.0)
            }
        };
        let rec = mse(&r, &p.recon);
        assert!(
            rec > 1e-6,
            "{kind:?}: the learner reconstructs like the generator"
        );
        if kind == PseudoKind::Transition {
            assert!(state_err > 1e-6, "{kind:?}");
        }
        let z = class_view(&y, Objective::ClassLastStep);
        let zt = class_view(&p.y, Objective::ClassLastStep);
        for soft in [true, false] {
            let ce = cross_entropy(&z, &zt, soft);
            let loss = |w: f64| {
                scalar(&distill_loss(&learner, &p, Objective::ClassLastStep, soft, w).unwrap())
            };
            for w in [0.0, 0.5, 2.0] {
                let want = ce + w * rec + state_err;
                assert!(
                    (loss(w) - want).abs() < 1e-10,
                    "{kind:?} soft {soft} w {w}: {} vs {want}",
                    loss(w)
                );
            }
            // The weight scales the reconstruction part only.
            assert!(
                (loss(2.0) - loss(0.0) - 2.0 * rec).abs() < 1e-10,
                "{kind:?}"
            );
        }
    }
}

#[test]
fn distillation_gradients_are_finite_and_reach_both_heads() {
    let range = toy_range();
    for kind in [
        PseudoKind::Sequence,
        PseudoKind::ClosedLoop,
        PseudoKind::Transition,
    ] {
        let cfg = lstm_for(kind);
        let (g, gen_store) = model(&cfg, 40);
        let (learner, store) = model(&cfg, 41);
        let p = generate(
            &g,
            &reverb(kind, 2),
            &range,
            5,
            None,
            &mut rng(4),
            DType::F64,
            &CPU,
        )
        .unwrap();
        for soft in [true, false] {
            let l = distill_loss(&learner, &p, Objective::ClassLastStep, soft, 1.0).unwrap();
            let grads = l.backward().unwrap();
            for (name, v) in store.vars() {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("{kind:?}: no gradient for {name}"));
                let gv = vals(g);
                assert!(gv.iter().all(|x| x.is_finite()), "{kind:?} {name}");
                if name.starts_with("head.") || name.starts_with("autoassoc.") {
                    assert!(gv.iter().any(|x| *x != 0.0), "{kind:?} {name}: zero");
                }
            }
            // Nothing flows back into the generator: its patterns are detached targets.
            for (name, v) in gen_store.vars() {
                assert!(grads.get(v.as_tensor()).is_none(), "{kind:?}: {name}");
            }
        }
    }
}

// ---- 4. Reconstruction targets and loss ----

#[test]
fn state_targets_are_the_input_and_the_state_before_each_step() {
    let cfg = model_cfg(CellKind::Lstm, 2, 3, Some(AutoAssoc::InputAndState));
    assert_eq!(cfg.state_size(), 12);
    let (m, _) = model(&cfg, 50);
    let b = toy_batch(&[0, 5, 7, 11]);
    let targets = recon_targets(&m, &b).unwrap();
    assert_eq!(targets.dims(), &[4, T, F + 12]);
    let (_, hs, _) = m.forward_full(&b.x, None, None).unwrap();
    let mut state = m.rnn_zero_state(4, DType::F64, &CPU).unwrap();
    for k in 0..T {
        let xk = at(&b.x, k);
        let row = at(&targets, k);
        assert_eq!(vals(&row.narrow(1, 0, F).unwrap()), vals(&xk), "x_{k}");
        let s = row.narrow(1, F, 12).unwrap();
        assert!(max_diff(&s, &state.flatten().unwrap()) < 1e-12, "s_{k}");
        if k == 0 {
            assert!(vals(&s).iter().all(|&v| v == 0.0));
        } else {
            // Layer 1's h (the stack's output) of the step before, from the sequence pass.
            let top = s.narrow(1, 3, 3).unwrap();
            assert!(max_diff(&top, &at(&hs, k - 1)) < 1e-10, "top h before {k}");
            assert!(vals(&s).iter().any(|&v| v != 0.0));
        }
        state = m.step(&xk, &state).unwrap().1;
    }
    // The input head reconstructs the input; no head, no targets.
    let (mi, _) = model(&model_cfg(CellKind::Lstm, 2, 3, Some(AutoAssoc::Input)), 50);
    assert_eq!(vals(&recon_targets(&mi, &b).unwrap()), vals(&b.x));
    let (mn, _) = model(&model_cfg(CellKind::Lstm, 2, 3, None), 50);
    let e = recon_targets(&mn, &b).unwrap_err().to_string();
    assert!(e.contains("auto-associative"), "{e}");
}

/// `b` with every padded step (past `lengths`) set to `fill`.
fn fill_padding(b: &Batch, fill: f64) -> Batch {
    let (n, t, f) = b.x.dims3().unwrap();
    let mut x = vals(&b.x);
    for i in 0..n {
        for s in b.lengths[i]..t {
            for j in 0..f {
                x[(i * t + s) * f + j] = fill;
            }
        }
    }
    Batch {
        x: Tensor::from_vec(x, (n, t, f), &CPU).unwrap(),
        ..b.clone()
    }
}

#[test]
fn the_reconstruction_loss_ignores_padded_steps() {
    for head in [AutoAssoc::Input, AutoAssoc::InputAndState] {
        let cfg = model_cfg(CellKind::Gru, 1, 4, Some(head));
        let (m, _) = model(&cfg, 60);
        let mut base = toy_batch(&[0, 1, 2, 3]);
        base.lengths = vec![3, 2, 1, 3];
        for masked in [false, true] {
            let mut b = base.clone();
            if masked {
                let w: Vec<f32> = (0..4 * T)
                    .map(|k| (k % T < b.lengths[k / T]) as u8 as f32)
                    .collect();
                b.mask = Some(Tensor::from_vec(w, (4, T), &CPU).unwrap());
            }
            let loss = |b: &Batch| {
                let (_, hs, _) = m.forward_full(&b.x, None, None).unwrap();
                scalar(&recon_loss(&m, b, &hs, None).unwrap())
            };
            let a = fill_padding(&b, 0.0);
            let z = fill_padding(&b, 7.0);
            let (la, lz) = (loss(&a), loss(&z));
            assert!(
                (la - lz).abs() < 1e-12,
                "{head:?} mask {masked}: {la} vs {lz}"
            );
            // By hand: the mean over real steps of each step's mean squared error.
            let (_, hs, _) = m.forward_full(&a.x, None, None).unwrap();
            let r = m.reconstruct(&hs).unwrap();
            let tg = recon_targets(&m, &a).unwrap();
            let (rv, tv) = (
                rows(&r.reshape((4 * T, ())).unwrap()),
                rows(&tg.reshape((4 * T, ())).unwrap()),
            );
            let (mut sum, mut count) = (0.0, 0.0);
            for k in 0..4 * T {
                if k % T < a.lengths[k / T] {
                    let se: f64 = rv[k]
                        .iter()
                        .zip(&tv[k])
                        .map(|(x, y)| (x - y) * (x - y))
                        .sum();
                    sum += se / rv[k].len() as f64;
                    count += 1.0;
                }
            }
            assert!(
                (la - sum / count).abs() < 1e-12,
                "{head:?} mask {masked}: {la} vs {}",
                sum / count
            );
            // A real step does count.
            let mut changed = vals(&a.x);
            changed[(T + 1) * F] += 0.5; // sequence 1, step 1 (its last real step)
            let c = Batch {
                x: Tensor::from_vec(changed, (4, T, F), &CPU).unwrap(),
                ..a.clone()
            };
            assert!((loss(&c) - la).abs() > 1e-6, "{head:?} mask {masked}");
        }
        // Every step real: the plain mean over every step.
        let full = toy_batch(&[0, 1, 2, 3]);
        let (_, hs, _) = m.forward_full(&full.x, None, None).unwrap();
        let l = scalar(&recon_loss(&m, &full, &hs, None).unwrap());
        let want = mse(
            &m.reconstruct(&hs).unwrap(),
            &recon_targets(&m, &full).unwrap(),
        );
        assert!((l - want).abs() < 1e-12, "{head:?}: {l} vs {want}");
    }
}

#[test]
fn state_targets_follow_the_batchs_elapsed_times() {
    let cfg = model_cfg(CellKind::Cfc, 1, 4, Some(AutoAssoc::InputAndState));
    let (m, _) = model(&cfg, 70);
    let mut b = toy_batch(&[0, 1, 2]);
    b.dt = Some(Tensor::full(0.3f64, (3, T), &CPU).unwrap());
    let targets = recon_targets(&m, &b).unwrap();
    let dt = b.dt.as_ref().unwrap();
    let mut state = m.rnn_zero_state(3, DType::F64, &CPU).unwrap();
    for k in 0..T {
        let s = at(&targets, k).narrow(1, F, 4).unwrap();
        assert!(
            max_diff(&s, &state.flatten().unwrap()) < 1e-10,
            "step {k}: the target is not the state the step started from"
        );
        let xk = b.x.narrow(1, k, 1).unwrap();
        let dk = dt.narrow(1, k, 1).unwrap();
        state = m.forward_full(&xk, Some(&state), Some(&dk)).unwrap().2;
    }
}

// ---- 5. Transfer ----

/// NET1 (LSTM, input head) trained `steps` Adam steps on experience 0's training set.
fn trained_net1(
    cfg: &RunConfig,
    exp: &dyn SequenceTask,
    steps: usize,
) -> (SequenceModel, ParamStore) {
    let (m, store) = SequenceModel::init(&cfg.model, 7, DType::F64, &CPU).unwrap();
    let idx: Vec<usize> = (0..exp.len(Split::Train)).collect();
    let b = exp.batch(Split::Train, &idx, DType::F64, &CPU).unwrap();
    let vars = store.vars();
    let mut opt = cfg.train.optimizer.build();
    for _ in 0..steps {
        let (y, hs, _) = m.forward_full(&b.x, None, None).unwrap();
        let z = at(&y, T - 1);
        let ce = candle_nn::loss::cross_entropy(&z, &b.target).unwrap();
        let l = (ce + recon_loss(&m, &b, &hs, None).unwrap()).unwrap();
        let grads = l.backward().unwrap();
        let g: Vec<Option<Tensor>> = vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        opt.step(&vars, &g, cfg.train.optimizer.lr).unwrap();
    }
    (m, store)
}

/// Mean KL(NET1 ‖ NET2) of the last-step class distributions on `x`, and the fraction of
/// sequences where their arg-max agrees.
fn closeness(net1: &SequenceModel, net2: &SequenceModel, x: &Tensor) -> (f64, f64) {
    let z1 = class_view(
        &net1.forward(x, None, None).unwrap().0,
        Objective::ClassLastStep,
    );
    let z2 = class_view(
        &net2.forward(x, None, None).unwrap().0,
        Objective::ClassLastStep,
    );
    let (mut kl, mut agree) = (0.0, 0.0);
    for (a, b) in z1.iter().zip(&z2) {
        let (la, lb) = (log_softmax(a), log_softmax(b));
        kl += la
            .iter()
            .zip(&lb)
            .map(|(p, q)| p.exp() * (p - q))
            .sum::<f64>();
        agree += (argmax(a) == argmax(b)) as u8 as f64;
    }
    (kl / z1.len() as f64, agree / z1.len() as f64)
}

fn transfer_setup() -> (RunConfig, Scenario, InputRange) {
    let mut cfg = run_config(CellKind::Lstm, 6, "f64");
    cfg.model.autoassoc = Some(AutoAssoc::Input);
    let s = scenario();
    let mut range = InputRange::default();
    range.observe(&s.experiences[0], 4096).unwrap();
    (cfg, s, range)
}

#[test]
fn a_transfer_brings_net2_to_net1_on_the_buffered_seeds() {
    let (cfg, s, range) = transfer_setup();
    let exp = &s.experiences[0];
    let (net1, store1) = trained_net1(&cfg, exp, 40);
    let before1: Vec<Vec<f64>> = store1.tensors().iter().map(|(_, t)| vals(t)).collect();
    let buffer = Arc::new(Mutex::new(ReplayBuffer::new(4, 0)));
    buffer.lock().unwrap().add_experience(exp);
    // The very seeds: a second buffer of the same seed holds the same 8 sequences.
    let mut copy = ReplayBuffer::new(4, 0);
    copy.add_experience(exp);
    let seeds = copy.draw(100, DType::F64, &CPU).unwrap().unwrap();
    assert_eq!(seeds.indices.len(), 2 * 4);

    let (net2, store2) = SequenceModel::init(&cfg.model, 8, DType::F64, &CPU).unwrap();
    let (kl0, agree0) = closeness(&net1, &net2, &seeds.x);
    let options = DualOptions {
        kind: PseudoKind::Sequence,
        rounds: 1,
        transfer_size: 48,
        transfer_epochs: 5,
        seeds_per_class: 4,
        ..DualOptions::default()
    };
    let report = dual::transfer(
        &net1,
        &net2,
        &store2,
        &cfg,
        Objective::ClassLastStep,
        &options,
        &range,
        Some(&buffer),
        &mut rng(3),
        &CPU,
    )
    .unwrap();
    let (kl1, agree1) = closeness(&net1, &net2, &seeds.x);
    let l = &report.epoch_loss;
    assert_eq!(l.len(), 5);
    assert!(l.iter().all(|v| v.is_finite()), "{l:?}");
    assert!(l[4] < l[0], "the distillation loss did not fall: {l:?}");
    assert!(kl1 < 0.5 * kl0, "KL {kl0} → {kl1}");
    assert!(
        agree1 >= agree0 && agree1 >= 0.75,
        "agreement {agree0} → {agree1}"
    );
    assert_eq!(report.patterns, 48 * 5);
    assert_eq!(report.class_counts.len(), C);
    assert_eq!(report.class_counts.iter().sum::<usize>(), 48 * 5);
    // NET1 learned the experience's two classes; its pseudo-patterns are mostly of them.
    let own: usize = exp.classes.iter().map(|&c| report.class_counts[c]).sum();
    assert!(
        own * 2 > 48 * 5,
        "{:?} {:?}",
        exp.classes,
        report.class_counts
    );
    let sample = report.sample.as_ref().unwrap();
    assert_eq!(sample.dims(), &[16, T, F]);
    // The generator is left as it was.
    let after1: Vec<Vec<f64>> = store1.tensors().iter().map(|(_, t)| vals(t)).collect();
    assert_eq!(before1, after1);
}

/// Sets every value of the parameter `name` of `store` to NaN.
fn poison(store: &ParamStore, name: &str) {
    let v = store
        .get(name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    v.set(&Tensor::full(f64::NAN, v.dims(), &CPU).unwrap())
        .unwrap();
}

fn transfer_with_nan(
    name: &str,
    soft: bool,
) -> (remanence_continual::Result<dual::TransferReport>, bool) {
    let (cfg, s, range) = transfer_setup();
    let (net1, store1) = SequenceModel::init(&cfg.model, 7, DType::F64, &CPU).unwrap();
    poison(&store1, name);
    let (net2, store2) = SequenceModel::init(&cfg.model, 8, DType::F64, &CPU).unwrap();
    let before: Vec<Vec<f64>> = store2.tensors().iter().map(|(_, t)| vals(t)).collect();
    let options = DualOptions {
        rounds: 2,
        transfer_size: 16,
        transfer_epochs: 1,
        soft,
        ..DualOptions::default()
    };
    let _ = s;
    let r = dual::transfer(
        &net1,
        &net2,
        &store2,
        &cfg,
        Objective::ClassLastStep,
        &options,
        &range,
        None,
        &mut rng(0),
        &CPU,
    );
    let after: Vec<Vec<f64>> = store2.tensors().iter().map(|(_, t)| vals(t)).collect();
    (r, before == after)
}

#[test]
fn a_nan_in_net1_stops_the_transfer_with_a_non_finite_error() {
    let rnn_weight = "rnn.weight_hh_l0";
    for (name, soft) in [(rnn_weight, true), (rnn_weight, false), ("head.bias", true)] {
        let (r, untouched) = transfer_with_nan(name, soft);
        let e = r
            .err()
            .unwrap_or_else(|| panic!("{name} soft {soft}: NaN generator trained NET2"))
            .to_string();
        assert!(e.contains("transfer") && e.contains("NaN"), "{name}: {e}");
        assert!(untouched, "{name} soft {soft}: NET2 was updated");
    }
}

#[test]
fn a_nan_read_out_stops_a_hard_target_transfer() {
    let (r, untouched) = transfer_with_nan("head.bias", false);
    let e = r
        .err()
        .expect("a NaN generator trained NET2 with hard targets")
        .to_string();
    assert!(e.contains("NaN"), "{e}");
    assert!(untouched);
}

// ---- 6. Whole runs and settings ----

#[test]
fn a_dual_net_run_writes_net2_its_matrix_and_pictures() {
    remanence_train::stack::with_deep_stack(|| {
        let root = temp_root("run");
        let s = scenario();
        assert_eq!(s.experiences.len(), 3);
        let mut cfg = run_config(CellKind::Lstm, 6, "f32");
        cfg.train.batch_size = 8;
        let mut o = MethodOptions::default();
        o.dual.transfer_size = 64;
        o.dual.transfer_epochs = 1;
        let method = Method::parse("dual-net", &o).unwrap();
        let run = RunDir::create_new(&root, "dual").unwrap();
        let mut records: Vec<ExperienceRecord> = Vec::new();
        let m = runner::run(&cfg, &s, method, &run, &CPU, &mut Silent, &mut |r| {
            records.push(r.clone())
        })
        .unwrap();
        assert_eq!(m.rows.len(), 3);
        for f in ["net2-matrix.json", "net2.safetensors", "model.safetensors"] {
            assert!(run.file(f).is_file(), "{f}");
        }
        for k in 0..3 {
            let png = std::fs::read(run.file(&format!("exp-{k:02}/pseudo-patterns.png"))).unwrap();
            assert!(png.len() > 8 + 25, "exp {k}: {} bytes", png.len());
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "exp {k}");
            assert_eq!(&png[12..16], b"IHDR", "exp {k}");
        }
        // NET2's matrix has a row per experience, the scores the records give.
        let net2 = AccuracyMatrix::load_json(&run.file("net2-matrix.json")).unwrap();
        assert_eq!(net2.rows.len(), 3);
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(run.file("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        for (k, line) in lines.iter().enumerate() {
            let acc: Vec<f64> = serde_json::from_value(line["net2_accuracies"].clone()).unwrap();
            assert_eq!(acc.len(), 3, "{line}");
            for (a, b) in acc.iter().zip(&net2.rows[k]) {
                assert!((a - b).abs() < 1e-9, "{line}");
            }
            let t = &line["transfer"];
            let counts: Vec<usize> = serde_json::from_value(t["class_counts"].clone()).unwrap();
            assert_eq!(counts.len(), C, "{line}");
            assert_eq!(counts.iter().sum::<usize>(), 64, "{line}");
            assert_eq!(t["patterns"], 64, "{line}");
            assert_eq!(t["epoch_loss"].as_array().unwrap().len(), 1, "{line}");
            let rec = records[k].net2_accuracies.as_ref().unwrap();
            assert!(
                rec.iter().zip(&acc).all(|(a, b)| (a - b).abs() < 1e-9),
                "{line}"
            );
            assert_eq!(records[k].experience, k);
        }
        // Both networks carry the head; they are different networks.
        assert_eq!(
            run.read_config().unwrap().model.autoassoc,
            Some(AutoAssoc::Input)
        );
        let (n2, _) = remanence_cells::io::read(&run.file("net2.safetensors"), &CPU).unwrap();
        let (n1, _) = remanence_cells::io::read(&run.file("model.safetensors"), &CPU).unwrap();
        assert_eq!(n2["autoassoc.weight"].dims(), &[F, 6]);
        assert_ne!(vals(&n2["autoassoc.weight"]), vals(&n1["autoassoc.weight"]));
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn closed_loop_and_transition_runs_complete_with_buffer_seeds() {
    remanence_train::stack::with_deep_stack(|| {
        let root = temp_root("kinds");
        let s = scenario();
        let mut cfg = run_config(CellKind::Gru, 5, "f32");
        cfg.train.batch_size = 8;
        for kind in [PseudoKind::ClosedLoop, PseudoKind::Transition] {
            let mut o = MethodOptions::default();
            o.dual.kind = kind;
            o.dual.rounds = 2;
            o.dual.transfer_size = 32;
            o.dual.transfer_epochs = 1;
            o.dual.seeds_per_class = 2;
            let method = Method::parse("dual-net", &o).unwrap();
            let run = RunDir::create_new(&root, &format!("{kind:?}")).unwrap();
            let m = runner::run_limited(
                &cfg,
                &s,
                method,
                &run,
                &CPU,
                &mut Silent,
                &mut |_| {},
                Some(2),
            )
            .unwrap();
            assert_eq!(m.rows.len(), 2, "{kind:?}");
            let (n2, _) = remanence_cells::io::read(&run.file("net2.safetensors"), &CPU).unwrap();
            let size = if kind == PseudoKind::Transition {
                F + 5
            } else {
                F
            };
            assert_eq!(n2["autoassoc.weight"].dims(), &[size, 5], "{kind:?}");
            assert!(run.file("exp-01/pseudo-patterns.png").is_file(), "{kind:?}");
        }
        let _ = std::fs::remove_dir_all(&root);
    });
}

#[test]
fn settings_that_make_no_sense_are_refused_naming_the_flag() {
    let ok = DualOptions::default();
    assert!(ok.validate().is_ok());
    let cases: Vec<(DualOptions, &str)> = vec![
        (
            DualOptions {
                per_example: -0.5,
                ..ok
            },
            "--pseudo-per-example",
        ),
        (
            DualOptions {
                per_example: f64::NAN,
                ..ok
            },
            "--pseudo-per-example",
        ),
        (
            DualOptions {
                per_example: f64::INFINITY,
                ..ok
            },
            "--pseudo-per-example",
        ),
        (
            DualOptions {
                recon_weight: -1.0,
                ..ok
            },
            "--recon-weight",
        ),
        (
            DualOptions {
                recon_weight: f64::NAN,
                ..ok
            },
            "--recon-weight",
        ),
        (
            DualOptions {
                denoise: -0.1,
                ..ok
            },
            "--denoise",
        ),
        (
            DualOptions {
                denoise: f64::NAN,
                ..ok
            },
            "--denoise",
        ),
        (
            DualOptions {
                transfer_size: 0,
                ..ok
            },
            "--transfer-size",
        ),
        (
            DualOptions {
                transfer_epochs: 0,
                ..ok
            },
            "--transfer-epochs",
        ),
    ];
    for (o, flag) in cases {
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains(flag), "{flag}: {e}");
        // The method refuses them too.
        let mo = MethodOptions {
            dual: o,
            ..MethodOptions::default()
        };
        let e = Method::parse("dual-net", &mo).unwrap_err().to_string();
        assert!(e.contains(flag), "{flag}: {e}");
    }
    // Zero is a valid weight, and zero pseudo-patterns per example too.
    for o in [
        DualOptions {
            per_example: 0.0,
            ..ok
        },
        DualOptions {
            recon_weight: 0.0,
            ..ok
        },
        DualOptions { denoise: 0.0, ..ok },
    ] {
        assert!(o.validate().is_ok());
    }
    assert_eq!(ok.reverb().kind, ok.kind);
    assert_eq!(ok.reverb().rounds, ok.rounds);
}
