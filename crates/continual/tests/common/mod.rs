//! The small classification task the continual tests share (no data set needed).
#![allow(dead_code)]
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use remanence_cells::{Activation, CellKind, Kernel, ModelConfig, RnnConfig};
use remanence_continual::scenario::Scenario;
use remanence_tasks::task::Predict;
use remanence_tasks::{Batch, Evaluation, Objective, SequenceTask, Split};
use remanence_tasks::{TaskConfig, TaskKind};
use remanence_train::{OptimizerConfig, OptimizerKind, RunConfig, Schedule, TrainConfig};

/// Features per step, classes and steps of [`Toy6`].
pub const F: usize = 2;
pub const C: usize = 6;
pub const T: usize = 3;

/// 6 classes; sequence i has class i % 6 and reads 3 steps of 2 features that announce it.
pub struct Toy6;

impl Toy6 {
    /// Feature `f` of step `s` of sequence `i`.
    pub fn value(i: usize, s: usize, f: usize) -> f64 {
        let c = (i % 6) as f64;
        (c - 2.5) * if f == 0 { 0.6 } else { -0.3 } + 0.02 * ((i * 5 + s * 3 + f) % 7) as f64
    }
}

impl SequenceTask for Toy6 {
    fn name(&self) -> &str {
        "toy6"
    }
    fn input_size(&self) -> usize {
        F
    }
    fn output_size(&self) -> usize {
        C
    }
    fn objective(&self) -> Objective {
        Objective::ClassLastStep
    }
    fn len(&self, split: Split) -> usize {
        match split {
            Split::Train => 48,
            Split::Test => 24,
        }
    }
    fn batch(
        &self,
        _split: Split,
        indices: &[usize],
        dtype: DType,
        device: &Device,
    ) -> remanence_tasks::Result<Batch> {
        let x: Vec<f64> = indices
            .iter()
            .flat_map(|&i| (0..T).flat_map(move |s| (0..F).map(move |f| Toy6::value(i, s, f))))
            .collect();
        let y: Vec<u32> = indices.iter().map(|&i| (i % 6) as u32).collect();
        let b = indices.len();
        Ok(Batch {
            x: Tensor::from_vec(x, (b, T, F), device)?.to_dtype(dtype)?,
            target: Tensor::from_vec(y, b, device)?,
            mask: None,
            dt: None,
            indices: indices.to_vec(),
            lengths: vec![T; b],
        })
    }
    fn evaluate(
        &self,
        _: usize,
        _: DType,
        _: &Device,
        _: &mut Predict<'_>,
    ) -> remanence_tasks::Result<Evaluation> {
        unreachable!("scenarios score experiences themselves")
    }
    fn label(&self, _split: Split, index: usize) -> Option<usize> {
        Some(index % 6)
    }
}

/// A scenario of `spec` cut from [`Toy6`] (data seed 4).
pub fn scenario(spec: &str) -> Scenario {
    Scenario::new(spec.parse().unwrap(), Arc::new(Toy6), 4).unwrap()
}

/// A GRU of 6 units learning [`Toy6`]: 2 epochs per experience, batches of 8, Adam 0.05, f32.
pub fn config() -> RunConfig {
    RunConfig {
        model: ModelConfig::new(
            RnnConfig {
                cell: CellKind::Gru,
                input_size: 2,
                hidden_size: 6,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: Default::default(),
                reservoir: Default::default(),
                threads: None,
                kernel: Kernel::Auto,
            },
            6,
        ),
        task: TaskConfig {
            kind: TaskKind::MnistRows,
            train_size: 0,
            test_size: 0,
            data_seed: 4,
            data_dir: None,
            options: Default::default(),
        },
        train: TrainConfig {
            epochs: 2,
            batch_size: 8,
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
        dtype: "f32".into(),
        device: "cpu".into(),
    }
}
