//! Training settings, given as command-line flags or as keys of a TOML recipe (`models/*.toml`)
//! with the same names (dashes or underscores). Precedence: built-in defaults < recipe < flags.
//! The resolved settings become the run's `config.json`.
//!
//! The settings are listed once, in the groups below: clap reads them as flags (`--help` shows
//! the groups), serde as recipe keys; overlaying and listing what was given go through serde, so
//! no list of fields is repeated.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::encoder::EncoderConfig;
use remanence_cells::{
    Activation, BackboneActivation, CellKind, CfcMode, Constraint, CtOptions, Kernel, Mapping,
    ModelConfig, ReservoirOptions, RnnConfig, SolverKind, WiringSpec,
};
use remanence_tasks::audio::{FeatureConfig, FeatureKind};
use remanence_tasks::fsdd::FsddSplit;
use remanence_tasks::jsb::JsbResolution;
use remanence_tasks::registry::TaskOptions;
use remanence_tasks::{TaskConfig, TaskKind};
use remanence_train::config::{BacktuneConfig, BacktuneCriterion, BacktuneReinject};
use remanence_train::{
    OptimizerConfig, OptimizerKind, RidgeConfig, RunConfig, Schedule, TrainConfig,
};
use serde::{Deserialize, Serialize};
use toml::Table;

/// Every training setting; `None` means "not given here".
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct Settings {
    #[command(flatten, next_help_heading = "Task")]
    #[serde(flatten)]
    pub task: TaskSettings,
    #[command(flatten, next_help_heading = "Model")]
    #[serde(flatten)]
    pub model: ModelSettings,
    #[command(
        flatten,
        next_help_heading = "Continuous-time cells (LTC, CfC, CT-RNN, ODE-RNN)"
    )]
    #[serde(flatten)]
    pub ct: CtSettings,
    #[command(flatten, next_help_heading = "Echo-state reservoir (esn)")]
    #[serde(flatten)]
    pub reservoir: ReservoirSettings,
    #[command(flatten, next_help_heading = "Training")]
    #[serde(flatten)]
    pub train: TrainSettings,
    #[command(flatten, next_help_heading = "Numbers and device")]
    #[serde(flatten)]
    pub device: DeviceSettings,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskSettings {
    /// Task: reber, embedded-reber, mnist-rows, mnist-pixels, mnist-pixels-permuted,
    /// moving-mnist (forecast frames 11–20), moving-mnist-digits (name the video's digits),
    /// fsdd, jsb-chorales, bach-soprano, occupancy, traffic, ozone.
    #[arg(long)]
    pub task: Option<TaskKind>,
    /// Folder of the data set (`remanence data list` says which files); default
    /// $REMANENCE_DATA/<folder>, then datasets/<folder>.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Training sequences (0: the whole split; default 256 for the grammars).
    #[arg(long, allow_negative_numbers = true, value_parser = whole)]
    pub train_size: Option<usize>,
    /// Test sequences (0: the whole split; default 256 for the grammars).
    #[arg(long, allow_negative_numbers = true, value_parser = whole)]
    pub test_size: Option<usize>,
    /// Seed of the data draw (default: --seed).
    #[arg(long, allow_negative_numbers = true, value_parser = seed)]
    pub data_seed: Option<u64>,
    /// Skip unreadable data files (fsdd) or bad --video sequences (moving-mnist), each
    /// reported, instead of stopping at the first.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub skip_bad: Option<bool>,
    /// fsdd: `official` (index 0–4 test) or `speaker:NAME` (that speaker held out).
    #[arg(long)]
    pub split: Option<FsddSplit>,
    /// fsdd: features per frame: mfcc or log-mel.
    #[arg(long)]
    pub features: Option<FeatureKind>,
    /// fsdd: sample rate the features are computed at (Hz; default 8000).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub sample_rate: Option<usize>,
    /// fsdd: FFT size (default 256).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub n_fft: Option<usize>,
    /// fsdd: hop between frames in samples (default 80: 10 ms at 8 kHz).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub hop_length: Option<usize>,
    /// fsdd: analysis window in samples (default 200: 25 ms at 8 kHz).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub win_length: Option<usize>,
    /// fsdd: mel bands (default 40).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub n_mels: Option<usize>,
    /// fsdd: cepstral coefficients kept (default 13).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub n_mfcc: Option<usize>,
    /// fsdd: lowest mel filter edge in Hz (default 0).
    #[arg(long, allow_negative_numbers = true)]
    pub fmin: Option<f64>,
    /// fsdd: highest mel filter edge in Hz (default: half the sample rate).
    #[arg(long, allow_negative_numbers = true)]
    pub fmax: Option<f64>,
    /// fsdd: classify from the mean read-out over the frames instead of the last frame.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub mean_over_time: Option<bool>,
    /// fsdd: resample recordings at another rate instead of refusing them.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub resample: Option<bool>,
    /// jsb-chorales: one frame per quarter, 8th or 16th note (default quarter).
    #[arg(long)]
    pub resolution: Option<JsbResolution>,
    /// bach-soprano: transpose every chorale so its soprano ends on a C (a common key).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub transpose: Option<bool>,
    /// moving-mnist: a `(20, N, 64, 64)` uint8 .npy file (the published test set's layout),
    /// or a folder of frame folders (DIR/<sequence>/<frame>.png|.jpg|.jpeg, 20 grey 64×64
    /// frames each, sequences and frames in name order), whose first --test-size sequences
    /// (0: all) replace the generated test set.
    #[arg(long, value_name = "FILE.npy|DIR")]
    pub video: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ModelSettings {
    /// Recurrent cell: srn, lstm, gru, ltc, cfc, ctrnn, odernn, esn (echo-state reservoir).
    #[arg(long)]
    pub cell: Option<CellKind>,
    /// Hidden units per layer (the state size; LTC/CfC units).
    #[arg(long, alias = "units", allow_negative_numbers = true, value_parser = positive)]
    pub hidden: Option<usize>,
    /// Stacked recurrent layers.
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub layers: Option<usize>,
    /// SRN non-linearity: tanh, sigmoid.
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Implementation: auto (the fastest measured), fused, reference (plain Candle ops).
    #[arg(long)]
    pub kernel: Option<Kernel>,
    /// Per-step front end before the recurrent stack: conv:C1,C2,…[:SIZE] (stride-2 3×3
    /// convolutions over square frames, e.g. moving-mnist and moving-mnist-digits, then a
    /// linear layer to SIZE, default 256) or dense:SIZE[:tanh|relu|identity].
    #[arg(long)]
    #[serde(default, with = "as_text")]
    pub encoder: Option<EncoderConfig>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CtSettings {
    /// LTC wiring: fully-connected[:OUT], random:SPARSITY[:OUT], auto-ncp:OUT[:SPARSITY],
    /// ncp:INTER:COMMAND:MOTOR:SENSORY_FANOUT:INTER_FANOUT:RECURRENT:MOTOR_FANIN.
    #[arg(long)]
    pub wiring: Option<WiringSpec>,
    /// Solver steps per input step (LTC, CT-RNN, ODE-RNN; default 6).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub ode_unfolds: Option<usize>,
    /// CT-RNN / ODE-RNN solver: euler, heun, rk4, dopri5.
    #[arg(long)]
    pub solver: Option<SolverKind>,
    /// dopri5 relative tolerance.
    #[arg(long, allow_negative_numbers = true)]
    pub rtol: Option<f64>,
    /// dopri5 absolute tolerance.
    #[arg(long, allow_negative_numbers = true)]
    pub atol: Option<f64>,
    /// LTC parameter constraint: softplus (at use time) or clip (clamped after each update).
    #[arg(long)]
    pub constraint: Option<Constraint>,
    /// LTC input mapping: affine, linear, none.
    #[arg(long)]
    pub input_mapping: Option<Mapping>,
    /// LTC output mapping: affine, linear, none.
    #[arg(long)]
    pub output_mapping: Option<Mapping>,
    /// CfC mode: default, no-gate, pure.
    #[arg(long)]
    pub mode: Option<CfcMode>,
    /// CfC backbone (ODE-RNN: ODE network) width.
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub backbone_units: Option<usize>,
    /// CfC backbone (ODE-RNN: ODE network) hidden layers.
    #[arg(long, allow_negative_numbers = true, value_parser = whole)]
    pub backbone_layers: Option<usize>,
    /// CfC backbone activation: lecun-tanh, tanh, relu, gelu, silu.
    #[arg(long)]
    pub backbone_activation: Option<BackboneActivation>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReservoirSettings {
    /// Spectral radius the reservoir's recurrent matrix is scaled to (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub spectral_radius: Option<f64>,
    /// Leak rate a in (0, 1]: h' = (1 − a)h + a·tanh(…) (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub leak_rate: Option<f64>,
    /// Scale of the ±1 input weights (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub input_scaling: Option<f64>,
    /// Share of non-zero recurrent weights, in (0, 1] (default 0.1).
    #[arg(long, allow_negative_numbers = true)]
    pub connectivity: Option<f64>,
    /// Share of non-zero input weights, in (0, 1] (default 0.1).
    #[arg(long, allow_negative_numbers = true)]
    pub input_connectivity: Option<f64>,
    /// Scale of the ±1 bias (default 0: no bias).
    #[arg(long, allow_negative_numbers = true)]
    pub bias_scaling: Option<f64>,
}

/// How the weights are learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TrainerKind {
    /// Backpropagation through time with the optimizer (every cell but esn).
    Gradient,
    /// The read-out fitted in closed form by ridge regression on the recurrent states; the
    /// recurrent weights stay as drawn (esn's default).
    Ridge,
    /// Backward tuning (Viéville et al. 2017): the recurrent weights and the read-out estimated
    /// from desired states given by an adjoint pass, per-unit least squares and line-searched
    /// steps; least squares on the targets. One-layer tanh SRN only.
    BackwardTuning,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainSettings {
    /// How the weights are learned: gradient, ridge (default for --cell esn, and then one
    /// epoch unless --epochs is given), or backward-tuning (--cell srn, tanh, one layer).
    #[arg(long, value_enum)]
    pub trainer: Option<TrainerKind>,
    /// Backward-tuning estimator iterations per batch (default 3).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub bt_iterations: Option<usize>,
    /// Backward tuning's DMAX: units with more weights than this (1 + hidden + inputs for a
    /// hidden unit) get first-order steps only (default 16).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub bt_dmax: Option<usize>,
    /// Backward tuning's criterion on the read-out's targets: l2 (default), l1, l0 (reweighted,
    /// robust to outliers), huber, biweight, or margin (Boolean: class objectives only).
    #[arg(long, value_name = "CRITERION")]
    pub bt_criterion: Option<BacktuneCriterion>,
    /// ν of --bt-criterion l1 (default 0.1), l0 (default 1) and margin (default 0.1); larger than
    /// reverse-engineer's 1e-3, which left every Reber run unsolved.
    #[arg(long, allow_negative_numbers = true)]
    pub bt_nu: Option<f64>,
    /// The scale of --bt-criterion huber (default 1) and biweight (default 3: at 1 the ±1
    /// targets' first errors lie where the biweight has no gradient).
    #[arg(long, allow_negative_numbers = true)]
    pub bt_scale: Option<f64>,
    /// Backward tuning's "reinject" option: the per-unit solves run on a desired trajectory
    /// (outputs clamped to their targets, hidden values from the network equations), by
    /// gauss-newton or the report's fixed-point recurrence.
    #[arg(long, value_name = "SOLVER")]
    pub bt_reinject: Option<BacktuneReinject>,
    /// Backward tuning: sparse activity κ·h²/(ε + |ĥ|) on the hidden units (ε default 1e-3).
    #[arg(long, value_name = "KAPPA[:EPS]", value_parser = kappa_eps, allow_negative_numbers = true)]
    pub bt_sparse_activity: Option<(f64, f64)>,
    /// Backward tuning: orthogonality κ·Σ_{n≠n'}(Σ_t h_n ĥ_n')² of the hidden units.
    #[arg(long, value_name = "KAPPA", allow_negative_numbers = true)]
    pub bt_orthogonality: Option<f64>,
    /// Backward tuning: a soft bound κ·e^{k(h − b)} on the hidden units (k > 0 keeps h below b,
    /// k < 0 above it); repeat it for both sides.
    #[arg(long, value_name = "KAPPA:K:B", value_parser = soft_bound, allow_negative_numbers = true)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bt_soft_bound: Vec<(f64, f64, f64)>,
    /// Ridge λ of --trainer ridge (default 1e-6).
    #[arg(long, allow_negative_numbers = true)]
    pub ridge: Option<f64>,
    /// Leading steps of every sequence left out of a per-step ridge fit (default 0).
    #[arg(long, allow_negative_numbers = true, value_parser = whole)]
    pub washout: Option<usize>,
    /// Maximum number of epochs.
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub epochs: Option<usize>,
    /// Sequences per batch.
    #[arg(long, alias = "batch", allow_negative_numbers = true, value_parser = positive)]
    pub batch_size: Option<usize>,
    /// Optimizer: adam, adamw, sgd, rmsprop.
    #[arg(long)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate.
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Momentum (sgd, rmsprop), in [0, 1).
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f64>,
    /// Weight decay (L2 for adam/sgd/rmsprop, decoupled for adamw).
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Clip gradients to this global L2 norm (0 turns clipping off).
    #[arg(long, allow_negative_numbers = true)]
    pub clip: Option<f64>,
    /// Learning-rate schedule: constant, cosine[:MIN_FACTOR], step:EVERY:GAMMA.
    #[arg(long)]
    #[serde(default, with = "as_text")]
    pub schedule: Option<Schedule>,
    /// Seed of initialisation and batch order (and of the data, unless --data-seed is given).
    #[arg(long, allow_negative_numbers = true, value_parser = seed)]
    pub seed: Option<u64>,
    /// Stop when the task counts as solved or the metric reaches --target (true/false).
    #[arg(long)]
    pub early_stop: Option<bool>,
    /// Stop when the headline metric reaches this value.
    #[arg(long, allow_negative_numbers = true)]
    pub target: Option<f64>,
}

#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeviceSettings {
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda[:N] or metal[:N].
    #[arg(long)]
    pub device: Option<String>,
}

/// A whole number ≥ 1, with an error that says so (also for negative numbers).
fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be a positive whole number, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A whole number ≥ 0.
/// `KAPPA[:EPS]` (ε default 1e-3), κ ≥ 0, ε > 0, both finite.
pub(crate) fn kappa_eps(s: &str) -> std::result::Result<(f64, f64), String> {
    let (k, e) = match s.split_once(':') {
        Some((k, e)) => (k, Some(e)),
        None => (s, None),
    };
    let number = |v: &str| {
        v.trim()
            .parse::<f64>()
            .map_err(|_| format!("`{v}` is not a number"))
    };
    let kappa = number(k)?;
    let eps = e.map(number).transpose()?.unwrap_or(1e-3);
    if !(kappa >= 0.0 && kappa.is_finite() && eps > 0.0 && eps.is_finite()) {
        return Err(format!("KAPPA must be ≥ 0 and EPS > 0, got {kappa}:{eps}"));
    }
    Ok((kappa, eps))
}

/// `KAPPA:K:B`, finite, κ ≥ 0.
pub(crate) fn soft_bound(s: &str) -> std::result::Result<(f64, f64, f64), String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Err(format!("`{s}` is not KAPPA:K:B (e.g. 0.01:10:0.9)"));
    }
    let v: Vec<f64> = parts
        .iter()
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("`{p}` is not a number"))
        })
        .collect::<std::result::Result<_, _>>()?;
    if !(v[0] >= 0.0 && v.iter().all(|x| x.is_finite())) {
        return Err(format!("KAPPA must be ≥ 0 and every value finite, got {s}"));
    }
    Ok((v[0], v[1], v[2]))
}

fn whole(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 0 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be a whole number ≥ 0, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A seed: a whole number from 0 to 2⁶³ − 1 (what a TOML recipe can hold).
fn seed(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (0..=i64::MAX as i128).contains(&n) => Ok(n as u64),
        Ok(n) => Err(format!("must be between 0 and 2^63 - 1, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// Serialises a setting as its text and reads it back with `FromStr` (recipes write
/// `schedule = "cosine:0.1"`).
mod as_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(d)? {
            Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

impl Settings {
    /// The given settings as a table of their recipe keys (a TOML table: unlike JSON it keeps
    /// NaN and infinities, which the range checks must see).
    fn to_table(&self) -> Table {
        Table::try_from(self).expect("settings serialise to a table")
    }

    fn from_table(table: Table) -> Result<Settings> {
        Ok(table.try_into()?)
    }

    /// Every recipe key, which is also the name of its flag (read from the flags themselves).
    pub fn keys() -> Vec<String> {
        Self::flags()
            .map(|a| a.get_long().map(str::to_string))
            .flatten()
            .collect()
    }

    /// The key a flag alias stands for (`units` → `hidden`), read from the flags' aliases.
    fn unalias(key: &str) -> Option<String> {
        Self::flags()
            .find(|a| a.get_all_aliases().is_some_and(|al| al.contains(&key)))
            .and_then(|a| a.get_long().map(str::to_string))
    }

    fn flags() -> impl Iterator<Item = clap::Arg> {
        let cmd = <Settings as Args>::augment_args(clap::Command::new("settings"));
        cmd.get_arguments().cloned().collect::<Vec<_>>().into_iter()
    }

    /// `top` wins where it gives a value.
    pub fn overlay(self, top: Settings) -> Settings {
        let mut base = self.to_table();
        base.extend(top.to_table());
        Settings::from_table(base).expect("an overlay of valid settings is valid")
    }

    /// Names of the settings that are given (recipe keys, which are also the flags' names).
    pub fn given(&self) -> Vec<String> {
        self.to_table().into_iter().map(|(k, _)| k).collect()
    }

    pub fn from_recipe(path: &Path) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read recipe {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("invalid recipe {}", path.display()))
    }

    /// Reads recipe text: keys with dashes or underscores, unknown keys refused with the
    /// closest known one.
    pub fn from_toml(text: &str) -> Result<Settings> {
        let table: Table = toml::from_str(text)?;
        let keys = Self::keys();
        let mut out = Table::new();
        for (k, v) in table {
            let mut key = k.replace('_', "-");
            if let Some(to) = Self::unalias(&key) {
                key = to;
            }
            if !keys.contains(&key) && (key == "scenario" || key == "method") {
                bail!(
                    "key `{k}` belongs to a continual-learning recipe: run it with \
                     `remanence continual --recipe FILE`"
                );
            }
            if !keys.contains(&key) {
                let near = keys
                    .iter()
                    .min_by_key(|c| edit_distance(c, &key))
                    .expect("settings have keys");
                bail!(
                    "unknown key `{k}` (did you mean `{near}`?); valid keys: {}",
                    keys.join(", ")
                );
            }
            if out.insert(key.clone(), v).is_some() {
                bail!("key `{key}` is given twice (with dashes and with underscores)");
            }
        }
        Self::from_table(out)
    }

    /// Reads a recipe that may also hold `extra` keys (given with dashes) of the command that
    /// reads it: the settings, and a table of the extra keys (with dashes; the recipe may write
    /// them with underscores). Unknown keys are refused with the closest key of either set.
    pub fn from_recipe_with(path: &Path, extra: &[String]) -> Result<(Settings, Table)> {
        let read = || -> Result<(Settings, Table)> {
            let text = std::fs::read_to_string(path).context("cannot read it")?;
            let table: Table = toml::from_str(&text)?;
            let keys = Self::keys();
            let (mut own, mut rest) = (Table::new(), Table::new());
            for (k, v) in table {
                let key = k.replace('_', "-");
                if extra.contains(&key) {
                    if own.insert(key.clone(), v).is_some() {
                        bail!("key `{key}` is given twice (with dashes and with underscores)");
                    }
                    continue;
                }
                let known = Self::unalias(&key).unwrap_or_else(|| key.clone());
                if !keys.contains(&known) {
                    let all: Vec<&str> = keys.iter().chain(extra).map(String::as_str).collect();
                    let near = all
                        .iter()
                        .min_by_key(|c| edit_distance(c, &key))
                        .expect("settings have keys");
                    bail!(
                        "unknown key `{k}` (did you mean `{near}`?); valid keys: {}",
                        all.join(", ")
                    );
                }
                rest.insert(k, v);
            }
            let settings = Self::from_toml(&toml::to_string(&rest)?).map_err(|e| {
                // Name the key whose value is refused (serde's message may not).
                let alone = |k: &String, v: &toml::Value| {
                    let one = Table::from_iter([(k.clone(), v.clone())]);
                    toml::to_string(&one).map_or(true, |t| Self::from_toml(&t).is_err())
                };
                match rest.iter().find(|(k, v)| alone(k, v)) {
                    Some((k, v)) => {
                        anyhow::anyhow!("`{k} = {v}`: {}", format!("{e:#}").trim_end())
                    }
                    None => e,
                }
            })?;
            Ok((settings, own))
        };
        read().with_context(|| format!("invalid recipe {}", path.display()))
    }

    /// The defaults: an LSTM on the embedded Reber grammar.
    pub fn defaults() -> Settings {
        Settings {
            task: TaskSettings {
                task: Some(TaskKind::EmbeddedReber),
                ..Default::default()
            },
            model: ModelSettings {
                cell: Some(CellKind::Lstm),
                hidden: Some(16),
                layers: Some(1),
                ..Default::default()
            },
            ct: CtSettings::default(),
            reservoir: ReservoirSettings::default(),
            train: TrainSettings {
                epochs: Some(200),
                batch_size: Some(16),
                optimizer: Some(OptimizerKind::Adam),
                lr: Some(0.01),
                clip: Some(1.0),
                seed: Some(0),
                early_stop: Some(true),
                ..Default::default()
            },
            device: DeviceSettings {
                dtype: Some("f32".into()),
                device: Some("cpu".into()),
            },
        }
    }

    /// Refuses settings that the chosen cell or task would ignore. `given` holds what the user
    /// gave (recipe and flags), not the defaults.
    pub fn check_applicable(&self, given: &[String]) -> Result<()> {
        let cell = self.model.cell.context("no cell given")?;
        let task = self.task.task.context("no task given")?;
        use CellKind::*;
        let rules: [(&str, &[CellKind]); 19] = [
            ("activation", &[Srn]),
            ("spectral-radius", &[Esn]),
            ("leak-rate", &[Esn]),
            ("input-scaling", &[Esn]),
            ("connectivity", &[Esn]),
            ("input-connectivity", &[Esn]),
            ("bias-scaling", &[Esn]),
            ("wiring", &[Ltc]),
            ("constraint", &[Ltc]),
            ("input-mapping", &[Ltc]),
            ("output-mapping", &[Ltc]),
            ("ode-unfolds", &[Ltc, Ctrnn, Odernn]),
            ("solver", &[Ctrnn, Odernn]),
            ("rtol", &[Ctrnn, Odernn]),
            ("atol", &[Ctrnn, Odernn]),
            ("mode", &[Cfc]),
            ("backbone-units", &[Cfc, Odernn]),
            ("backbone-layers", &[Cfc, Odernn]),
            ("backbone-activation", &[Cfc]),
        ];
        for (key, cells) in rules {
            if given.iter().any(|g| g == key) && !cells.contains(&cell) {
                let names: Vec<_> = cells.iter().map(|c| c.name()).collect();
                bail!(
                    "--{key} applies to {} only, and the cell is {cell}; remove it or choose \
                     another --cell",
                    names.join(", ")
                );
            }
        }
        let gradient_only = [
            "optimizer",
            "lr",
            "momentum",
            "weight-decay",
            "clip",
            "schedule",
        ];
        let trainer = self.trainer(cell);
        if trainer == TrainerKind::Ridge {
            if let Some(k) = given.iter().find(|g| gradient_only.contains(&g.as_str())) {
                bail!(
                    "--{k} is a setting of gradient training, and the read-out is fitted by ridge \
                     regression (--trainer ridge{}); remove it, or give --trainer gradient",
                    if cell == Esn {
                        ", the default for esn"
                    } else {
                        ""
                    }
                );
            }
        } else if let Some(k) = given.iter().find(|g| *g == "ridge" || *g == "washout") {
            bail!("--{k} applies to --trainer ridge only (the default for --cell esn)");
        }
        if trainer == TrainerKind::BackwardTuning {
            if let Some(k) = given.iter().find(|g| gradient_only.contains(&g.as_str())) {
                bail!(
                    "--{k} is a setting of gradient training, and --trainer backward-tuning \
                     estimates the weights without an optimizer; remove it, or give --trainer \
                     gradient"
                );
            }
            if cell != Srn {
                bail!(
                    "--trainer backward-tuning trains the Elman SRN only (--cell srn), and the \
                     cell is {cell}; give --cell srn or another --trainer"
                );
            }
        } else if let Some(k) = given.iter().find(|g| g.starts_with("bt-")) {
            bail!("--{k} applies to --trainer backward-tuning only");
        }
        let task_rules: [(&str, &[TaskKind]); 16] = [
            ("split", &[TaskKind::Fsdd]),
            ("features", &[TaskKind::Fsdd]),
            ("sample-rate", &[TaskKind::Fsdd]),
            ("n-fft", &[TaskKind::Fsdd]),
            ("hop-length", &[TaskKind::Fsdd]),
            ("win-length", &[TaskKind::Fsdd]),
            ("n-mels", &[TaskKind::Fsdd]),
            ("n-mfcc", &[TaskKind::Fsdd]),
            ("fmin", &[TaskKind::Fsdd]),
            ("fmax", &[TaskKind::Fsdd]),
            ("mean-over-time", &[TaskKind::Fsdd]),
            ("resample", &[TaskKind::Fsdd]),
            ("skip-bad", &[TaskKind::Fsdd, TaskKind::MovingMnist]),
            ("resolution", &[TaskKind::JsbChorales]),
            ("transpose", &[TaskKind::BachSoprano]),
            ("video", &[TaskKind::MovingMnist]),
        ];
        if task == TaskKind::MovingMnistDigits && given.iter().any(|g| g == "video") {
            bail!(
                "--video cannot be used with moving-mnist-digits: a video (.npy file or frame \
                 folders) carries no digit labels to score; remove --video, or use the task \
                 moving-mnist to forecast the video's frames"
            );
        }
        for (key, tasks) in task_rules {
            if given.iter().any(|g| g == key) && !tasks.contains(&task) {
                let names: Vec<_> = tasks.iter().map(|t| t.name()).collect();
                bail!(
                    "--{key} applies to the task {} only, and the task is {task}; remove it",
                    names.join(", ")
                );
            }
        }
        if let Some(d) = self
            .task
            .data
            .as_deref()
            .filter(|_| given.iter().any(|g| g == "data"))
        {
            data_dir_for(task, d)?;
        }
        Ok(())
    }

    /// The trainer the settings ask for: --trainer, else ridge for the reservoir and gradient
    /// for every other cell.
    pub fn trainer(&self, cell: CellKind) -> TrainerKind {
        self.train.trainer.unwrap_or(if cell == CellKind::Esn {
            TrainerKind::Ridge
        } else {
            TrainerKind::Gradient
        })
    }

    /// Turns complete settings (defaults overlaid) into a run configuration, checking every
    /// number for finiteness and range and naming the flag of the first that is not.
    pub fn resolve(&self) -> Result<RunConfig> {
        let (t, m, c, tr, d) = (&self.task, &self.model, &self.ct, &self.train, &self.device);
        let kind = t.task.context("no task given")?;
        let cell = m.cell.context("no cell given")?;
        let optimizer = tr.optimizer.context("no optimizer given")?;
        let dtype = d.dtype.clone().context("no dtype given")?;
        if dtype != "f32" && dtype != "f64" {
            bail!("--dtype: unknown dtype `{dtype}`; valid dtypes: f32, f64");
        }
        let seed = tr.seed.unwrap_or(0);
        let defaults_f = FeatureConfig::default();
        let sample_rate = t.sample_rate.map_or(defaults_f.sample_rate, |r| r as u32);
        let options = TaskOptions {
            split: t.split.clone().unwrap_or_default(),
            features: FeatureConfig {
                kind: t.features.unwrap_or_default(),
                sample_rate,
                n_fft: t.n_fft.unwrap_or(defaults_f.n_fft),
                hop_length: t.hop_length.unwrap_or(defaults_f.hop_length),
                win_length: t.win_length.unwrap_or(defaults_f.win_length),
                n_mels: t.n_mels.unwrap_or(defaults_f.n_mels),
                n_mfcc: t.n_mfcc.unwrap_or(defaults_f.n_mfcc),
                fmin: t.fmin.unwrap_or(defaults_f.fmin),
                fmax: match (t.fmax, t.sample_rate) {
                    (Some(f), _) => Some(f),
                    (None, Some(_)) => None,
                    (None, None) => defaults_f.fmax,
                },
                ..defaults_f
            },
            mean_over_time: t.mean_over_time.unwrap_or(false),
            resample: t.resample.unwrap_or(false),
            skip_bad: t.skip_bad.unwrap_or(false),
            jsb_resolution: t.resolution.unwrap_or_default(),
            transpose: t.transpose.unwrap_or(false),
            video: t.video.as_deref().map(absolute).transpose()?,
        };
        if kind == TaskKind::Fsdd {
            options.features.validate().map_err(|e| {
                anyhow::anyhow!(
                    "--n-fft/--hop-length/--win-length/--n-mels/--n-mfcc/--fmin/--fmax: {e}"
                )
            })?;
        }
        let sizing = TaskConfig {
            kind,
            train_size: 0,
            test_size: 0,
            data_seed: 0,
            data_dir: None,
            options: options.clone(),
        };
        let (input, output) = sizing.sizes();
        let (train_size, test_size) = kind.default_sizes();
        let lr = tr.lr.context("no learning rate given")?;
        let clip = tr.clip.unwrap_or(0.0);
        let defaults = CtOptions::default();
        let rv = &self.reservoir;
        let checks: [(&str, Option<f64>, fn(f64) -> bool, &str); 14] = [
            (
                "ridge",
                tr.ridge,
                |v| v >= 0.0 && v.is_finite(),
                "a finite number ≥ 0",
            ),
            (
                "spectral-radius",
                rv.spectral_radius,
                |v| v >= 0.0 && v.is_finite(),
                "a finite number ≥ 0",
            ),
            (
                "leak-rate",
                rv.leak_rate,
                |v| v > 0.0 && v <= 1.0,
                "in (0, 1]",
            ),
            (
                "input-scaling",
                rv.input_scaling,
                |v| v >= 0.0 && v.is_finite(),
                "a finite number ≥ 0",
            ),
            (
                "bias-scaling",
                rv.bias_scaling,
                |v| v >= 0.0 && v.is_finite(),
                "a finite number ≥ 0",
            ),
            (
                "connectivity",
                rv.connectivity,
                |v| v > 0.0 && v <= 1.0,
                "in (0, 1]",
            ),
            (
                "input-connectivity",
                rv.input_connectivity,
                |v| v > 0.0 && v <= 1.0,
                "in (0, 1]",
            ),
            (
                "lr",
                Some(lr),
                |v| v > 0.0 && v.is_finite(),
                "a finite number > 0",
            ),
            (
                "momentum",
                tr.momentum,
                |v| (0.0..1.0).contains(&v),
                "in [0, 1)",
            ),
            (
                "weight-decay",
                tr.weight_decay,
                |v| v >= 0.0 && v.is_finite(),
                "a finite number ≥ 0",
            ),
            (
                "clip",
                Some(clip),
                |v| v >= 0.0 && v.is_finite(),
                "a finite number ≥ 0 (0: off)",
            ),
            ("target", tr.target, f64::is_finite, "a finite number"),
            (
                "rtol",
                c.rtol,
                |v| v > 0.0 && v.is_finite(),
                "a finite number > 0",
            ),
            (
                "atol",
                c.atol,
                |v| v > 0.0 && v.is_finite(),
                "a finite number > 0",
            ),
        ];
        for (flag, value, ok, what) in checks {
            if let Some(v) = value {
                if !ok(v) {
                    bail!("--{flag} must be {what}, got {v}");
                }
            }
        }
        let data_dir = match &t.data {
            Some(p) => Some(data_dir_for(kind, p)?),
            None => None,
        };
        let stack_input = m.encoder.as_ref().map_or(input, |e| e.output_size());
        if let Some(EncoderConfig::Conv { .. }) = &m.encoder {
            let side = (input as f64).sqrt().round() as usize;
            if side * side != input {
                bail!(
                    "--encoder conv reads square frames, and task {kind} has {input} features \
                     per step; use a video task (moving-mnist, moving-mnist-digits) or a dense \
                     encoder"
                );
            }
        }
        let mut cfg = RunConfig {
            model: ModelConfig::new(
                RnnConfig {
                    cell,
                    input_size: stack_input,
                    hidden_size: m.hidden.context("no hidden size given")?,
                    num_layers: m.layers.unwrap_or(1),
                    activation: m.activation.unwrap_or_default(),
                    ct: CtOptions {
                        wiring: c.wiring.clone().unwrap_or(defaults.wiring.clone()),
                        wiring_seed: seed,
                        ode_unfolds: c.ode_unfolds.unwrap_or(defaults.ode_unfolds),
                        solver: c.solver.unwrap_or(defaults.solver),
                        rtol: c.rtol.unwrap_or(defaults.rtol),
                        atol: c.atol.unwrap_or(defaults.atol),
                        constraint: c.constraint.unwrap_or(defaults.constraint),
                        input_mapping: c.input_mapping.unwrap_or(defaults.input_mapping),
                        output_mapping: c.output_mapping.unwrap_or(defaults.output_mapping),
                        mode: c.mode.unwrap_or(defaults.mode),
                        backbone_units: c.backbone_units.unwrap_or(defaults.backbone_units),
                        backbone_layers: c.backbone_layers.unwrap_or(defaults.backbone_layers),
                        backbone_activation: c
                            .backbone_activation
                            .unwrap_or(defaults.backbone_activation),
                        ..defaults
                    },
                    kernel: m.kernel.unwrap_or_default(),
                    reservoir: {
                        let d = ReservoirOptions::default();
                        ReservoirOptions {
                            spectral_radius: rv.spectral_radius.unwrap_or(d.spectral_radius),
                            leak_rate: rv.leak_rate.unwrap_or(d.leak_rate),
                            input_scaling: rv.input_scaling.unwrap_or(d.input_scaling),
                            connectivity: rv.connectivity.unwrap_or(d.connectivity),
                            input_connectivity: rv
                                .input_connectivity
                                .unwrap_or(d.input_connectivity),
                            bias_scaling: rv.bias_scaling.unwrap_or(d.bias_scaling),
                        }
                    },
                    threads: None,
                },
                output,
            ),
            task: TaskConfig {
                kind,
                train_size: t.train_size.unwrap_or(train_size),
                test_size: t.test_size.unwrap_or(test_size),
                data_seed: t.data_seed.unwrap_or(seed),
                data_dir,
                options,
            },
            train: TrainConfig {
                epochs: tr.epochs.context("no epoch count given")?,
                batch_size: tr.batch_size.context("no batch size given")?,
                optimizer: OptimizerConfig {
                    momentum: tr.momentum.unwrap_or(0.0),
                    weight_decay: tr.weight_decay.unwrap_or(0.0),
                    ..OptimizerConfig::new(optimizer, lr)
                },
                schedule: tr.schedule.unwrap_or_default(),
                clip_norm: (clip > 0.0).then_some(clip),
                seed,
                early_stop: tr.early_stop.unwrap_or(true),
                target: tr.target,
                eval_batch_size: 256,
                ridge: (self.trainer(cell) == TrainerKind::Ridge).then(|| RidgeConfig {
                    lambda: tr.ridge.unwrap_or(RidgeConfig::default().lambda),
                    washout: tr.washout.unwrap_or(0),
                }),
                backtune: (self.trainer(cell) == TrainerKind::BackwardTuning).then(|| {
                    let d = BacktuneConfig::default();
                    BacktuneConfig {
                        iterations: tr.bt_iterations.unwrap_or(d.iterations),
                        dmax: tr.bt_dmax.unwrap_or(d.dmax),
                        criterion: tr.bt_criterion.unwrap_or(d.criterion),
                        nu: tr.bt_nu,
                        scale: tr.bt_scale,
                        reinject: tr.bt_reinject,
                        sparse_activity: tr.bt_sparse_activity,
                        orthogonality: tr.bt_orthogonality,
                        soft_bound: tr.bt_soft_bound.clone(),
                    }
                }),
            },
            dtype,
            device: d.device.clone().context("no device given")?,
        };
        if let Some(e) = &m.encoder {
            cfg.model.encoder = Some(e.clone());
            cfg.model.encoder_input = Some(input);
        }
        cfg.model.validate()?;
        cfg.train.validate()?;
        Ok(cfg)
    }
}

/// The folder `--data` names for `task`, made absolute; refused for tasks that generate their
/// data.
pub fn data_dir_for(task: TaskKind, data: &Path) -> Result<PathBuf> {
    if task.dataset().is_none() {
        bail!("--data names a data folder, and task {task} generates its data; remove --data");
    }
    absolute(data)
}

/// `p` made absolute against the working directory (without resolving links), so a run folder
/// finds its data from any directory.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("cannot resolve the path {}", p.display()))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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

    #[test]
    fn flags_override_recipe_which_overrides_defaults() {
        let recipe = Settings::from_toml("cell = \"gru\"\nhidden = 9\nbatch_size = 4").unwrap();
        let flags = Settings {
            model: ModelSettings {
                hidden: Some(5),
                ..Default::default()
            },
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
        let err = format!("{:#}", Settings::from_toml("cell = \"tcn\"").unwrap_err());
        assert!(
            err.contains("tcn") && err.contains("`srn`, `lstm`, `gru`"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            Settings::from_toml("optimizer = \"lion\"").unwrap_err()
        );
        assert!(err.contains("`adam`, `adamw`, `sgd`"), "{err}");
        assert!(Settings::from_toml("optimizer = \"rmsprop\"").is_ok());
        let err = Settings::from_toml("hiden = 3").unwrap_err().to_string();
        assert!(err.contains("hiden") && err.contains("hidden"), "{err}");
        let err = Settings::from_toml("schedule = \"linear\"").unwrap_err();
        assert!(format!("{err:#}").contains("constant, cosine"), "{err:#}");
    }

    #[test]
    fn recipe_keys_take_dashes_underscores_and_aliases() {
        let s = Settings::from_toml(
            "units = 7\nbatch = 3\nweight_decay = 0.5\nschedule = \"step:2:0.5\"\nwiring = \"auto-ncp:2\"",
        )
        .unwrap();
        assert_eq!(s.model.hidden, Some(7));
        assert_eq!(s.train.batch_size, Some(3));
        assert_eq!(s.train.weight_decay, Some(0.5));
        assert_eq!(
            s.train.schedule,
            Some(Schedule::parse("step:2:0.5").unwrap())
        );
        let mut given = s.given();
        given.sort();
        assert_eq!(
            given,
            ["batch-size", "hidden", "schedule", "weight-decay", "wiring"]
        );
        assert!(Settings::from_toml("batch_size = 3\nbatch-size = 4").is_err());
    }

    #[test]
    fn every_number_is_checked_and_the_flag_named() {
        // Before these checks NaN momentum and weight decay reached config.json as `null`.
        for (key, value, flag) in [
            ("momentum", f64::NAN, "--momentum"),
            ("momentum", 1.5, "--momentum"),
            ("weight_decay", f64::NAN, "--weight-decay"),
            ("weight_decay", -1.0, "--weight-decay"),
            ("lr", f64::INFINITY, "--lr"),
            ("clip", f64::NAN, "--clip"),
            ("target", f64::NAN, "--target"),
            ("rtol", 0.0, "--rtol"),
        ] {
            let recipe = format!("{key} = {}", toml::Value::Float(value));
            let s = Settings::defaults().overlay(Settings::from_toml(&recipe).unwrap());
            let err = format!("{:#}", s.resolve().unwrap_err());
            assert!(err.contains(flag), "{key}={value}: {err}");
        }
    }

    #[test]
    fn moving_mnist_takes_a_video_and_a_conv_encoder() {
        let recipe = Settings::from_toml(
            "task = \"moving-mnist\"\nvideo = \"test.npy\"\nencoder = \"conv:4,8:32\"",
        )
        .unwrap();
        let s = Settings::defaults().overlay(recipe.clone());
        s.check_applicable(&recipe.given()).unwrap();
        let cfg = s.resolve().unwrap();
        assert_eq!(cfg.task.kind, TaskKind::MovingMnist);
        assert_eq!((cfg.task.train_size, cfg.task.test_size), (10_000, 1_000));
        assert!(cfg.task.options.video.as_ref().unwrap().is_absolute());
        assert_eq!(cfg.model.input_size(), 4096);
        assert_eq!(cfg.model.rnn.input_size, 32);
        assert_eq!(cfg.model.output_size, 4096);
        assert_eq!(
            cfg.model.encoder.as_ref().unwrap().to_string(),
            "conv:4,8:32"
        );
        let other = Settings::from_toml("video = \"test.npy\"").unwrap();
        let err = Settings::defaults()
            .overlay(other.clone())
            .check_applicable(&other.given())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--video") && err.contains("moving-mnist"),
            "{err}"
        );
        let digits =
            Settings::from_toml("task = \"moving-mnist-digits\"\nencoder = \"conv:4,8:32\"")
                .unwrap();
        let s = Settings::defaults().overlay(digits.clone());
        s.check_applicable(&digits.given()).unwrap();
        let cfg = s.resolve().unwrap();
        assert_eq!(cfg.task.kind, TaskKind::MovingMnistDigits);
        assert_eq!((cfg.task.train_size, cfg.task.test_size), (10_000, 1_000));
        assert_eq!(cfg.model.input_size(), 4096);
        assert_eq!(cfg.model.rnn.input_size, 32);
        assert_eq!(cfg.model.output_size, 10);
        let with_video =
            Settings::from_toml("task = \"moving-mnist-digits\"\nvideo = \"test.npy\"").unwrap();
        let err = Settings::defaults()
            .overlay(with_video.clone())
            .check_applicable(&with_video.given())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--video") && err.contains("no digit labels"),
            "{err}"
        );
        let conv = Settings::from_toml("encoder = \"conv:4\"").unwrap();
        let err = format!(
            "{:#}",
            Settings::defaults().overlay(conv).resolve().unwrap_err()
        );
        assert!(err.contains("square frames"), "{err}");
    }

    #[test]
    fn every_shipped_recipe_resolves_and_builds() {
        let mut n = 0;
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                // `remanence continual`'s recipes also hold its scenario and method keys; the
                // command's tests resolve each of them whole (crates/cli/tests/continual.rs).
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("continual-"))
                {
                    continue;
                }
                let recipe = Settings::from_recipe(&p).unwrap();
                let s = Settings::defaults().overlay(recipe.clone());
                s.check_applicable(&recipe.given())
                    .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                let cfg = s
                    .resolve()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                remanence_cells::SequenceModel::init(
                    &cfg.model,
                    0,
                    candle_core::DType::F32,
                    &candle_core::Device::Cpu,
                )
                .unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
