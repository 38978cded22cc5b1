//! Distinguishability D(l, k): how long a network of k units keeps apart two words that differ
//! in their first symbol only.
//!
//! The words u and v have length l over {0, 1}: u₀ = 1, v₀ = 0, every later symbol 0. Both run
//! from the zero state through a network of k units; D = ‖h_u(l) − h_v(l)‖₂ on the final hidden
//! states (h; for the LSTM h, not the cell state c; for the LTC every neuron's potential, not the
//! mapped motor output). D(l, k) is the mean over independent draws of the weights. The words
//! agree after step 0, so one run of L steps gives D for every l ≤ L: the state after the l-th
//! symbol of the long word is the final state of the word of length l.
//!
//! Two initialisations of each draw ([`Init`]): the cell's own (the model's parameter store
//! seeded per draw), or i.i.d. N(0, 1) weights with zero biases (the study's); which tensors
//! each cell draws N(0, 1) is [`Init::note`].
//!
//! Speed: each draw runs in plain f64 ([`crate::plain_cell`]), draws spread over threads in
//! blocks; once the two runs are bitwise equal they stay equal (D = 0 from there on), and once
//! both are at a fixed point D stays constant, so a run stops early in either case.
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remanence_cells::{CellKind, CfcMode, Constraint, ModelConfig, RnnConfig, SequenceModel};
use serde::{Deserialize, Serialize};

use crate::dynamics::run_series;
use crate::error::{invalid, ProbeError, Result};
use crate::memory::Spread;
use crate::plain_cell::{PlainCell, PlainState};
use crate::subject::{Features, Subject, SubjectInfo};

/// ChaCha8 stream of the N(0, 1) draws (the probes' other streams are 1–3; a model's store
/// uses stream 0).
pub const NORMAL_STREAM: u64 = 4;

/// Largest default length L.
pub const DEFAULT_MAX_LENGTH: usize = 2000;
/// Default number of draws per width.
pub const DEFAULT_DRAWS: usize = 2000;
/// Default widths k.
pub const DEFAULT_WIDTHS: [usize; 7] = [1, 2, 4, 8, 16, 30, 64];
/// D(L) above this counts as remembering (the fraction of such draws is reported).
pub const REMEMBER_THRESHOLD: f64 = 1e-3;

/// How each draw's weights are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// The cell's own initialisation: the model's parameter store seeded with the draw's seed.
    #[default]
    Default,
    /// i.i.d. N(0, 1) weights and zero biases (the study's), the rest as the cell's own.
    Normal,
}

impl std::str::FromStr for Init {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "default" => Ok(Self::Default),
            "normal" | "study" => Ok(Self::Normal),
            _ => Err(invalid(format!(
                "unknown initialisation `{s}`; valid: default, normal (alias study)"
            ))),
        }
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Normal => "normal",
        })
    }
}

impl Init {
    /// What the initialisation draws for `cell`, in words.
    pub fn note(self, cell: CellKind, mode: CfcMode, constraint: Constraint) -> String {
        match self {
            Init::Default => format!(
                "the {cell} cell's own initialisation: the model's parameter store seeded with \
                 each draw's seed{}",
                if cell == CellKind::Ltc {
                    " (the wiring too)"
                } else {
                    ""
                }
            ),
            Init::Normal => match cell {
                CellKind::Srn | CellKind::Lstm | CellKind::Gru => format!(
                    "weight_ih_l0 and weight_hh_l0 (every gate block) i.i.d. N(0, 1); bias_ih_l0 \
                     and bias_hh_l0 zero (the study's initialisation of the {cell})"
                ),
                CellKind::Ctrnn => "weight_ih_l0 and weight_hh_l0 i.i.d. N(0, 1); bias_l0 zero; \
                     tau_l0 left at its initial value (τ = 1), a time constant, not a weight"
                    .into(),
                CellKind::Ltc => format!(
                    "our definition (the study's initialisation has no direct meaning for the \
                     LTC): the synaptic weights w and sensory_w raw i.i.d. N(0, 1) ({}), vleak \
                     and input_b zero (its bias-like terms); sigma, mu, gleak, cm, erev, the \
                     masks and input_w as the cell's own draw",
                    if constraint == Constraint::Softplus {
                        "through softplus at use, so the conductances are softplus(N(0, 1))"
                    } else {
                        "clamped at 0, as the clip constraint does after an update"
                    }
                ),
                CellKind::Cfc => format!(
                    "our definition (the study's initialisation has no direct meaning for the \
                     CfC): every `.weight` of the backbone and the heads i.i.d. N(0, 1), every \
                     `.bias` zero{}",
                    if mode == CfcMode::Pure {
                        ", A and w_tau i.i.d. N(0, 1)"
                    } else {
                        ""
                    }
                ),
                CellKind::Esn => "weight_ih_l0 and weight_hh_l0 i.i.d. N(0, 1) (dense, not scaled \
                     to a spectral radius); bias_l0 zero; the leak rate as configured"
                    .into(),
                CellKind::Odernn => "not offered for the ODE-RNN".into(),
            },
        }
    }
}

/// SplitMix64's finaliser.
fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of draw `draw` at width `width`: SplitMix64(SplitMix64(SplitMix64(seed) ⊕ width) ⊕
/// draw), so every (seed, width, draw) has its own weights.
pub fn draw_seed(seed: u64, width: usize, draw: usize) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ width as u64) ^ draw as u64)
}

/// Box–Muller from a ChaCha8 stream (the recipe of the parameter store).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The one-layer, one-input configuration of width `k` for a draw of seed `seed`.
fn draw_config(base: &RnnConfig, k: usize, seed: u64) -> RnnConfig {
    let mut c = base.clone();
    c.hidden_size = k;
    c.input_size = 1;
    c.num_layers = 1;
    c.ct.wiring_seed = seed;
    c.threads = Some(1);
    c
}

/// Whether `init` replaces tensor `name` (the full name in a model's store), and with what:
/// `Some(true)` N(0, 1), `Some(false)` zeros.
fn normal_rule(cell: CellKind, mode: CfcMode, name: &str) -> Option<bool> {
    let Some(local) = name.strip_prefix("rnn.") else {
        return None;
    };
    match cell {
        CellKind::Srn | CellKind::Lstm | CellKind::Gru => match local {
            "weight_ih_l0" | "weight_hh_l0" => Some(true),
            "bias_ih_l0" | "bias_hh_l0" => Some(false),
            _ => None,
        },
        CellKind::Ctrnn | CellKind::Esn => match local {
            "weight_ih_l0" | "weight_hh_l0" => Some(true),
            "bias_l0" => Some(false),
            _ => None,
        },
        CellKind::Ltc => match local.strip_prefix("rnn_cell.")? {
            "w" | "sensory_w" => Some(true),
            "vleak" | "input_b" => Some(false),
            _ => None,
        },
        CellKind::Cfc => {
            let l = local.strip_prefix("rnn_cell.")?;
            if l.ends_with(".weight") {
                Some(true)
            } else if l.ends_with(".bias") {
                Some(false)
            } else if mode == CfcMode::Pure && (l == "A" || l == "w_tau") {
                Some(true)
            } else {
                None
            }
        }
        CellKind::Odernn => None,
    }
}

/// Every tensor of the one-layer model of one draw (the read-out head included), as `init`
/// makes it: the model's store seeded with `seed`, then for [`Init::Normal`] the tensors of
/// [`Init::note`] replaced, in name order, by N(0, 1) values from ChaCha8 seeded with `seed` on
/// stream [`NORMAL_STREAM`] (row-major) or by zeros.
pub fn draw_tensors(config: &RnnConfig, init: Init, seed: u64) -> Result<Vec<(String, Tensor)>> {
    if config.cell == CellKind::Odernn {
        return Err(invalid(
            "the distinguishability heatmap does not draw ODE-RNNs (not among its cells); probe a \
             trained one with --run",
        ));
    }
    let model = ModelConfig::new(config.clone(), 1);
    let (_, store) = SequenceModel::init(&model, seed, DType::F64, &Device::Cpu)?;
    let mut tensors = store.tensors();
    if init == Init::Normal {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(NORMAL_STREAM);
        let clip = config.ct.constraint == Constraint::Clip;
        for (name, t) in tensors.iter_mut() {
            let Some(gaussian) = normal_rule(config.cell, config.ct.mode, name) else {
                continue;
            };
            let n = t.elem_count();
            let mut v: Vec<f64> = if gaussian {
                (0..n).map(|_| normal(&mut rng)).collect()
            } else {
                vec![0.0; n]
            };
            if clip && config.cell == CellKind::Ltc && gaussian {
                v.iter_mut().for_each(|x| *x = x.max(0.0));
            }
            *t = Tensor::from_vec(v, t.dims(), &Device::Cpu)?;
        }
    }
    Ok(tensors)
}

/// The plain f64 cell of one draw.
pub fn draw_cell(config: &RnnConfig, init: Init, seed: u64) -> Result<PlainCell> {
    PlainCell::from_tensors(config, &draw_tensors(config, init, seed)?, "rnn.")
}

/// D(l) = ‖h_u(l) − h_v(l)‖₂ for l = 1..=max_length (index l − 1) of one cell of input size 1.
pub fn word_distances(cell: &PlainCell, max_length: usize) -> Result<Vec<f64>> {
    if max_length == 0 {
        return Err(invalid("the word length must be at least 1, got 0"));
    }
    if cell.input_size() != 1 {
        return Err(invalid(format!(
            "the words drive a cell of one input, and this one reads {}",
            cell.input_size()
        )));
    }
    let mut u = cell.zero_state();
    let mut v = cell.zero_state();
    let mut out = Vec::with_capacity(max_length);
    let dist = |a: &PlainState, b: &PlainState| -> f64 {
        a.h.iter()
            .zip(&b.h)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    };
    cell.step(&[1.0], &mut u)?;
    cell.step(&[0.0], &mut v)?;
    out.push(dist(&u, &v));
    while out.len() < max_length {
        if u == v {
            // Same state, same input from here on.
            out.resize(max_length, 0.0);
            break;
        }
        let (pu, pv) = (u.clone(), v.clone());
        cell.step(&[0.0], &mut u)?;
        cell.step(&[0.0], &mut v)?;
        out.push(dist(&u, &v));
        if u == pu && v == pv {
            // Both at a fixed point of the zero-input step.
            let last = *out.last().unwrap();
            out.resize(max_length, last);
            break;
        }
    }
    if let Some(l) = out.iter().position(|d| !d.is_finite()) {
        return Err(ProbeError::NonFinite(format!(
            "the hidden state after {} symbols",
            l + 1
        )));
    }
    Ok(out)
}

/// Multipliers of the reported lengths above 20, per decade.
const LADDER: [f64; 14] = [
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
];

/// The word lengths reported: every l ≤ 20, then 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7,
/// 8, 9 × 10^m (so 25, 30, …, 100, 125, …, 1000, …), then L.
pub fn length_grid(max_length: usize) -> Vec<usize> {
    let mut g: Vec<usize> = (1..=max_length.min(20)).collect();
    let mut decade = 10.0f64;
    'outer: loop {
        for m in LADDER {
            let l = (m * decade).round() as usize;
            if l >= max_length {
                break 'outer;
            }
            if l > *g.last().unwrap() {
                g.push(l);
            }
        }
        decade *= 10.0;
    }
    if *g.last().unwrap() != max_length {
        g.push(max_length);
    }
    g
}

/// Settings of the heatmap over random draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistSettings {
    /// Largest word length L (D is reported at the lengths of [`length_grid`]`(L)`).
    pub max_length: usize,
    /// Widths k (hidden units).
    pub widths: Vec<usize>,
    /// Independent weight draws per width.
    pub draws: usize,
    pub init: Init,
    /// Threads the draws are spread over (results do not depend on it).
    #[serde(skip)]
    pub threads: usize,
}

impl Default for DistSettings {
    fn default() -> Self {
        Self {
            max_length: DEFAULT_MAX_LENGTH,
            widths: DEFAULT_WIDTHS.to_vec(),
            draws: DEFAULT_DRAWS,
            init: Init::Default,
            threads: 1,
        }
    }
}

impl DistSettings {
    pub fn validate(&self) -> Result<()> {
        if self.max_length == 0 {
            return Err(invalid("the largest word length must be at least 1, got 0"));
        }
        if self.widths.is_empty() {
            return Err(invalid(
                "no widths: give at least one number of hidden units",
            ));
        }
        if self.widths.contains(&0) {
            return Err(invalid(format!(
                "a width of zero hidden units in {:?}: every width must be at least 1",
                self.widths
            )));
        }
        if self.draws == 0 {
            return Err(invalid("draws must be at least 1, got 0"));
        }
        if self.threads == 0 {
            return Err(invalid("threads must be at least 1, got 0"));
        }
        Ok(())
    }
}

/// D at every reported length for one width.
#[derive(Debug, Clone, Serialize)]
pub struct DistRow {
    /// k: hidden units (of every layer together for a trained multi-layer model).
    pub width: usize,
    pub draws: usize,
    /// Mean over draws at each of the report's lengths.
    pub mean: Vec<f64>,
    /// Sample standard deviation over draws (0 for one draw).
    pub std: Vec<f64>,
    pub median: Vec<f64>,
    /// Fraction of draws with D(L) > [`REMEMBER_THRESHOLD`].
    pub remembering_at_max: f64,
    /// Mean, spread and range of D(L) over draws.
    pub at_max: Spread,
}

/// Summary over draws of the per-draw curves (each at the grid's lengths).
fn row_of(width: usize, curves: &[Vec<f64>]) -> DistRow {
    let nl = curves[0].len();
    let mut mean = Vec::with_capacity(nl);
    let mut std = Vec::with_capacity(nl);
    let mut median = Vec::with_capacity(nl);
    for j in 0..nl {
        let mut v: Vec<f64> = curves.iter().map(|c| c[j]).collect();
        let s = Spread::of(&v);
        mean.push(s.mean);
        std.push(s.std);
        v.sort_by(f64::total_cmp);
        let m = v.len() / 2;
        median.push(if v.len() % 2 == 1 {
            v[m]
        } else {
            0.5 * (v[m - 1] + v[m])
        });
    }
    let last: Vec<f64> = curves.iter().map(|c| c[nl - 1]).collect();
    DistRow {
        width,
        draws: curves.len(),
        mean,
        std,
        median,
        remembering_at_max: last.iter().filter(|&&d| d > REMEMBER_THRESHOLD).count() as f64
            / last.len() as f64,
        at_max: Spread::of(&last),
    }
}

/// The heatmap and how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct DistReport {
    pub probe: &'static str,
    /// The cell (`srn (tanh)`, `lstm`, …) and, for a run, the model.
    pub cell: String,
    /// `default`, `normal`, or `trained` for a run's weights.
    pub init: String,
    /// What the initialisation draws, in words.
    pub init_note: String,
    /// Which state D measures.
    pub state: String,
    pub seed: u64,
    pub max_length: usize,
    /// The lengths l of every row's values.
    pub lengths: Vec<usize>,
    pub rows: Vec<DistRow>,
    /// The run's model (with --run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<SubjectInfo>,
}

impl DistReport {
    /// Mean D at length `l` of the row of width `k` (`None` when `l` is not a reported length).
    pub fn mean_at(&self, k: usize, l: usize) -> Option<f64> {
        let row = self.rows.iter().find(|r| r.width == k)?;
        let j = self.lengths.iter().position(|&x| x == l)?;
        Some(row.mean[j])
    }
}

/// The state D measures, in words, for `cell`.
pub fn state_note(cell: CellKind) -> String {
    match cell {
        CellKind::Lstm => "h, the final hidden state (not the cell state c)".into(),
        CellKind::Ltc => {
            "h, every neuron's potential (not the motor neurons' mapped output)".into()
        }
        _ => "h, the final hidden state".into(),
    }
}

fn cell_name(config: &RnnConfig) -> String {
    match config.cell {
        CellKind::Srn => format!(
            "srn ({})",
            match config.activation {
                remanence_cells::Activation::Tanh => "tanh",
                remanence_cells::Activation::Sigmoid => "logistic",
            }
        ),
        c => c.to_string(),
    }
}

/// D(l, k) over random draws of one-layer networks of `base`'s cell and options (its width,
/// input size and layer count are replaced: widths from `settings`, one input, one layer).
/// Draw d of width k uses [`draw_seed`]`(seed, k, d)`. `progress` is told the draws done (of
/// widths × draws).
pub fn heatmap(
    base: &RnnConfig,
    settings: &DistSettings,
    seed: u64,
    progress: &mut dyn FnMut(usize),
) -> Result<DistReport> {
    settings.validate()?;
    if base.num_layers != 1 {
        return Err(invalid(format!(
            "the distinguishability heatmap draws one-layer networks, and {} layers were asked \
             for (a trained multi-layer model is probed with --run)",
            base.num_layers
        )));
    }
    let grid = length_grid(settings.max_length);
    let mut rows = Vec::with_capacity(settings.widths.len());
    let threads = settings.threads.max(1);
    let block = (16 * threads).max(32);
    for &k in &settings.widths {
        // Checked once before the draws run (a bad option fails here, not in a thread).
        let s0 = draw_seed(seed, k, 0);
        draw_cell(&draw_config(base, k, s0), settings.init, s0)?;
        let mut curves: Vec<Vec<f64>> = Vec::with_capacity(settings.draws);
        let mut start = 0;
        while start < settings.draws {
            let end = (start + block).min(settings.draws);
            let ids: Vec<usize> = (start..end).collect();
            let per = ids.len().div_ceil(threads);
            let one = |d: usize| -> Result<Vec<f64>> {
                let s = draw_seed(seed, k, d);
                let cell = draw_cell(&draw_config(base, k, s), settings.init, s)?;
                let all = word_distances(&cell, settings.max_length).map_err(|e| {
                    ProbeError::Invalid(format!("width {k}, draw {d} (seed {s}): {e}"))
                })?;
                Ok(grid.iter().map(|&l| all[l - 1]).collect())
            };
            let results: Vec<Result<Vec<Vec<f64>>>> = if threads == 1 {
                vec![ids.iter().map(|&d| one(d)).collect()]
            } else {
                std::thread::scope(|sc| {
                    let handles: Vec<_> = ids
                        .chunks(per)
                        .map(|chunk| {
                            let one = &one;
                            sc.spawn(move || chunk.iter().map(|&d| one(d)).collect())
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("a draw thread panicked"))
                        .collect()
                })
            };
            for r in results {
                curves.extend(r?);
            }
            progress(end - start);
            start = end;
        }
        rows.push(row_of(k, &curves));
    }
    Ok(DistReport {
        probe: "distinguishability",
        cell: cell_name(base),
        init: settings.init.to_string(),
        init_note: settings
            .init
            .note(base.cell, base.ct.mode, base.ct.constraint),
        state: state_note(base.cell),
        seed,
        max_length: settings.max_length,
        lengths: grid,
        rows,
        subject: None,
    })
}

/// D(l) of one model (a run's weights): the two words through the model's own step (h of
/// every layer; the LSTM's c left out), one row of width = layers × hidden and one "draw".
pub fn of_subject(
    subject: &Subject,
    max_length: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<DistReport> {
    if max_length == 0 {
        return Err(invalid("the largest word length must be at least 1, got 0"));
    }
    let mut u = vec![0.0; max_length];
    u[0] = 1.0;
    let v = vec![0.0; max_length];
    let runs = run_series(subject, &[u, v], None, Features::State, progress)?;
    let r = &subject.config().rnn;
    let width = r.num_layers * r.hidden_size;
    let all: Vec<f64> = (0..max_length)
        .map(|t| {
            let (a, b) = (runs[0].row(t), runs[1].row(t));
            (0..width)
                .map(|i| (a[i] - b[i]).powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let grid = length_grid(max_length);
    let curve: Vec<f64> = grid.iter().map(|&l| all[l - 1]).collect();
    let mut note =
        "the run's trained weights (one network: the mean is its D, the spread 0)".to_string();
    if let Some(d) = subject.drive().note() {
        note.push_str(&format!("; {d}"));
    }
    Ok(DistReport {
        probe: "distinguishability",
        cell: cell_name(r),
        init: "trained".into(),
        init_note: note,
        state: format!(
            "{}{}",
            state_note(r.cell),
            if r.num_layers > 1 {
                format!(", of all {} layers together", r.num_layers)
            } else {
                String::new()
            }
        ),
        seed: 0,
        max_length,
        lengths: grid,
        rows: vec![row_of(width, &[curve])],
        subject: Some(subject.info()),
    })
}
