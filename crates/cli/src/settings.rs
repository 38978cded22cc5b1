//! Training settings, given as command-line flags or as keys of a TOML recipe (`models/*.toml`)
//! with the same names (dashes or underscores). Precedence: built-in defaults < recipe < flags.
//! The resolved settings become the run's `config.json`.
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::{Activation, CellKind, CtOptions, Kernel, ModelConfig, RnnConfig};
use remanence_tasks::{TaskConfig, TaskKind};
use remanence_train::{OptimizerConfig, OptimizerKind, RunConfig, Schedule, TrainConfig};
use serde::Deserialize;

/// Every training setting; `None` means "not given here".
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Task: reber, embedded-reber, mnist-rows, mnist-pixels, mnist-pixels-permuted.
    #[arg(long)]
    pub task: Option<String>,
    /// Recurrent cell: srn, lstm, gru, ltc, cfc, ctrnn, odernn.
    #[arg(long)]
    pub cell: Option<String>,
    /// Hidden units per layer (the state size; LTC/CfC units).
    #[arg(long, alias = "units")]
    #[serde(alias = "units")]
    pub hidden: Option<usize>,
    /// LTC wiring: fully-connected[:OUT], random:SPARSITY[:OUT], auto-ncp:OUT[:SPARSITY],
    /// ncp:INTER:COMMAND:MOTOR:SENSORY_FANOUT:INTER_FANOUT:RECURRENT:MOTOR_FANIN.
    #[arg(long)]
    pub wiring: Option<String>,
    /// Solver steps per input step (LTC, CT-RNN, ODE-RNN; default 6).
    #[arg(long)]
    #[serde(alias = "ode_unfolds")]
    pub ode_unfolds: Option<usize>,
    /// CT-RNN / ODE-RNN solver: euler, heun, rk4, dopri5.
    #[arg(long)]
    pub solver: Option<String>,
    /// dopri5 relative and absolute tolerances.
    #[arg(long)]
    pub rtol: Option<f64>,
    #[arg(long)]
    pub atol: Option<f64>,
    /// LTC parameter constraint: softplus (at use time) or clip (clamped after each update).
    #[arg(long)]
    pub constraint: Option<String>,
    /// LTC input / output mapping: affine, linear, none.
    #[arg(long)]
    #[serde(alias = "input_mapping")]
    pub input_mapping: Option<String>,
    #[arg(long)]
    #[serde(alias = "output_mapping")]
    pub output_mapping: Option<String>,
    /// CfC mode: default, no-gate, pure.
    #[arg(long)]
    pub mode: Option<String>,
    /// CfC backbone (ODE-RNN: ODE network) width, depth and activation.
    #[arg(long)]
    #[serde(alias = "backbone_units")]
    pub backbone_units: Option<usize>,
    #[arg(long)]
    #[serde(alias = "backbone_layers")]
    pub backbone_layers: Option<usize>,
    #[arg(long)]
    #[serde(alias = "backbone_activation")]
    pub backbone_activation: Option<String>,
    /// Stacked recurrent layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// SRN non-linearity: tanh, sigmoid.
    #[arg(long)]
    pub activation: Option<String>,
    /// Maximum number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Sequences per batch.
    #[arg(long, alias = "batch")]
    #[serde(alias = "batch_size")]
    pub batch_size: Option<usize>,
    /// Optimizer: adam, adamw, sgd, rmsprop.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum (sgd, rmsprop).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (L2 for adam/sgd/rmsprop, decoupled for adamw).
    #[arg(long)]
    #[serde(alias = "weight_decay")]
    pub weight_decay: Option<f64>,
    /// Clip gradients to this global L2 norm (0 turns clipping off).
    #[arg(long)]
    pub clip: Option<f64>,
    /// Learning-rate schedule: constant, cosine[:MIN_FACTOR], step:EVERY:GAMMA.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Seed of initialisation and batch order (and of the data, unless --data-seed is given).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seed of the data draw.
    #[arg(long)]
    #[serde(alias = "data_seed")]
    pub data_seed: Option<u64>,
    /// Folder of the data set (MNIST: the four IDX .gz files); default datasets/<name>.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    /// Training sequences (0: the whole split; default 256 for the grammars).
    #[arg(long)]
    #[serde(alias = "train_size")]
    pub train_size: Option<usize>,
    /// Test sequences (0: the whole split; default 256 for the grammars).
    #[arg(long)]
    #[serde(alias = "test_size")]
    pub test_size: Option<usize>,
    /// Stop when the task counts as solved or the metric reaches --target (true/false).
    #[arg(long)]
    #[serde(alias = "early_stop")]
    pub early_stop: Option<bool>,
    /// Stop when the headline metric reaches this value.
    #[arg(long)]
    pub target: Option<f64>,
    /// Implementation: auto (the fastest measured), fused, reference (plain Candle ops).
    #[arg(long)]
    pub kernel: Option<String>,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long)]
    pub device: Option<String>,
}

macro_rules! overlay {
    ($base:expr, $top:expr; $($f:ident),*) => { Settings { $($f: $top.$f.or($base.$f)),* } };
}

impl Settings {
    /// `top` wins where it gives a value.
    pub fn overlay(self, top: Settings) -> Settings {
        overlay!(self, top; task, cell, hidden, wiring, ode_unfolds, solver, rtol, atol, constraint,
            input_mapping, output_mapping, mode, backbone_units, backbone_layers, backbone_activation, layers, activation, epochs, batch_size, optimizer,
            lr, momentum, weight_decay, clip, schedule, seed, data_seed, data, train_size, test_size,
            early_stop, target, kernel, dtype, device)
    }

    /// Names of the settings that are given.
    pub fn given(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        macro_rules! check { ($($f:ident),*) => { $( if self.$f.is_some() { v.push(stringify!($f)); } )* } }
        check!(
            task,
            cell,
            hidden,
            wiring,
            ode_unfolds,
            solver,
            rtol,
            atol,
            constraint,
            input_mapping,
            output_mapping,
            mode,
            backbone_units,
            backbone_layers,
            backbone_activation,
            layers,
            activation,
            epochs,
            batch_size,
            optimizer,
            lr,
            momentum,
            weight_decay,
            clip,
            schedule,
            seed,
            data_seed,
            data,
            train_size,
            test_size,
            early_stop,
            target,
            kernel,
            dtype,
            device
        );
        v
    }

    pub fn from_recipe(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read recipe {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid recipe {}", path.display()))
    }

    /// The defaults: an LSTM on the embedded Reber grammar.
    pub fn defaults() -> Settings {
        Settings {
            task: Some("embedded-reber".into()),
            cell: Some("lstm".into()),
            hidden: Some(16),
            wiring: None,
            ode_unfolds: None,
            solver: None,
            rtol: None,
            atol: None,
            constraint: None,
            input_mapping: None,
            output_mapping: None,
            mode: None,
            backbone_units: None,
            backbone_layers: None,
            backbone_activation: None,
            layers: Some(1),
            activation: Some("tanh".into()),
            epochs: Some(200),
            batch_size: Some(16),
            optimizer: Some("adam".into()),
            lr: Some(0.01),
            momentum: Some(0.0),
            weight_decay: Some(0.0),
            clip: Some(1.0),
            schedule: Some("constant".into()),
            seed: Some(0),
            data_seed: None,
            data: None,
            train_size: None,
            test_size: None,
            early_stop: Some(true),
            target: None,
            kernel: None,
            dtype: Some("f32".into()),
            device: Some("cpu".into()),
        }
    }

    /// Turns complete settings (defaults overlaid) into a run configuration.
    pub fn resolve(&self) -> Result<RunConfig> {
        let s = self;
        let need =
            |o: &Option<String>, what: &str| o.clone().with_context(|| format!("no {what} given"));
        let kind: TaskKind = need(&s.task, "task")?.parse().context("--task")?;
        let cell: CellKind = need(&s.cell, "cell")?.parse().context("--cell")?;
        let activation: Activation = need(&s.activation, "activation")?
            .parse()
            .context("--activation")?;
        let optimizer: OptimizerKind = need(&s.optimizer, "optimizer")?
            .parse()
            .context("--optimizer")?;
        let schedule = Schedule::parse(&need(&s.schedule, "schedule")?).context("--schedule")?;
        let dtype = need(&s.dtype, "dtype")?;
        if dtype != "f32" && dtype != "f64" {
            bail!("--dtype: unknown dtype `{dtype}`; valid dtypes: f32, f64");
        }
        let seed = s.seed.unwrap_or(0);
        let (input, output) = kind.sizes();
        let (train_size, test_size) = kind.default_sizes();
        let clip = s.clip.unwrap_or(0.0);
        if clip < 0.0 || !clip.is_finite() {
            bail!("--clip must be a non-negative number, got {clip}");
        }
        let cfg = RunConfig {
            model: ModelConfig {
                rnn: RnnConfig {
                    cell,
                    input_size: input,
                    hidden_size: s.hidden.context("no hidden size")?,
                    num_layers: s.layers.unwrap_or(1),
                    activation,
                    ct: {
                        let d = CtOptions::default();
                        CtOptions {
                            wiring: s.wiring.clone().unwrap_or(d.wiring),
                            wiring_seed: seed,
                            ode_unfolds: s.ode_unfolds.unwrap_or(d.ode_unfolds),
                            solver: s.solver.clone().unwrap_or(d.solver),
                            rtol: s.rtol.unwrap_or(d.rtol),
                            atol: s.atol.unwrap_or(d.atol),
                            constraint: s.constraint.clone().unwrap_or(d.constraint),
                            input_mapping: s.input_mapping.clone().unwrap_or(d.input_mapping),
                            output_mapping: s.output_mapping.clone().unwrap_or(d.output_mapping),
                            mode: s.mode.clone().unwrap_or(d.mode),
                            backbone_units: s.backbone_units.unwrap_or(d.backbone_units),
                            backbone_layers: s.backbone_layers.unwrap_or(d.backbone_layers),
                            backbone_activation: s
                                .backbone_activation
                                .clone()
                                .unwrap_or(d.backbone_activation),
                            ..d
                        }
                    },
                    kernel: match &s.kernel {
                        Some(k) => k.parse().context("--kernel")?,
                        None => Kernel::Auto,
                    },
                },
                output_size: output,
            },
            task: TaskConfig {
                kind,
                train_size: s.train_size.unwrap_or(train_size),
                test_size: s.test_size.unwrap_or(test_size),
                data_seed: s.data_seed.unwrap_or(seed),
                data_dir: s.data.clone(),
            },
            train: TrainConfig {
                epochs: s.epochs.context("no epoch count")?,
                batch_size: s.batch_size.context("no batch size")?,
                optimizer: OptimizerConfig {
                    momentum: s.momentum.unwrap_or(0.0),
                    weight_decay: s.weight_decay.unwrap_or(0.0),
                    ..OptimizerConfig::new(optimizer, s.lr.context("no learning rate")?)
                },
                schedule,
                clip_norm: (clip > 0.0).then_some(clip),
                seed,
                early_stop: s.early_stop.unwrap_or(true),
                target: s.target,
                eval_batch_size: 256,
            },
            dtype,
            device: need(&s.device, "device")?,
        };
        cfg.model.validate()?;
        cfg.train.validate()?;
        // Build the model once on the CPU so a bad wiring, solver, mode or mapping fails here,
        // before any run folder exists.
        remanence_cells::SequenceModel::init(
            &cfg.model,
            0,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .context("the model configuration")?;
        Ok(cfg)
    }
}

/// The default run name: `<task>-<cell>-h<hidden>-s<seed>`.
pub fn run_name(cfg: &RunConfig) -> String {
    format!(
        "{}-{}-h{}-s{}",
        cfg.task.kind, cfg.model.rnn.cell, cfg.model.rnn.hidden_size, cfg.train.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn flags_override_recipe_which_overrides_defaults() {
        let recipe: Settings =
            toml::from_str("cell = \"gru\"\nhidden = 9\nbatch_size = 4").unwrap();
        let flags = Settings {
            hidden: Some(5),
            ..Default::default()
        };
        let s = Settings::defaults().overlay(recipe).overlay(flags);
        let cfg = s.resolve().unwrap();
        assert_eq!(cfg.model.rnn.cell, CellKind::Gru);
        assert_eq!(cfg.model.rnn.hidden_size, 5);
        assert_eq!(cfg.train.batch_size, 4);
        assert_eq!(cfg.train.epochs, 200);
        assert_eq!(cfg.task.data_seed, cfg.train.seed);
    }

    #[test]
    fn unknown_values_and_keys_are_reported_with_the_choices() {
        let bad = Settings {
            cell: Some("tcn".into()),
            ..Settings::defaults()
        };
        let err = format!("{:#}", bad.resolve().unwrap_err());
        assert!(err.contains("srn, lstm, gru"), "{err}");
        let bad = Settings {
            optimizer: Some("lion".into()),
            ..Settings::defaults()
        };
        assert!(format!("{:#}", bad.resolve().unwrap_err()).contains("adam, adamw, sgd, rmsprop"));
        let err = toml::from_str::<Settings>("hiden = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hiden") && err.contains("hidden"), "{err}");
    }

    #[test]
    fn every_shipped_recipe_resolves() {
        let mut n = 0;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                let s = Settings::defaults().overlay(Settings::from_recipe(&p).unwrap());
                s.resolve()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
