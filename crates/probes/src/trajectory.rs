//! Trajectory length and computational depth of random continuous-time networks (Hasani,
//! Lechner, Amini, Rus & Grosu 2021, "Liquid time-constant networks", after Raghu, Poole,
//! Kleinberg, Ganguli & Sohl-Dickstein 2017, "On the expressive power of deep neural networks").
//!
//! A stack of `layers` layers of `width` units reads the circle I(t) = (sin t, cos t), t ∈ [0,
//! t_end] (2π by default). Layer ℓ's input u_ℓ is I(t) for the first layer and the state of
//! layer ℓ − 1 for the others, and all layers share one f of their own weights,
//! f_ℓ(x, u) = act(W_ℓ x + U_ℓ u + b_ℓ), with
//! - Neural ODE: dx/dt = f(x, u);
//! - CT-RNN: dx/dt = −x/τ + f(x, u) (the equation of crates/cells' CT-RNN, whose f is tanh);
//! - LTC: dx/dt = −(1/τ + f(x, u)) ⊙ x + f(x, u) ⊙ A (the paper's Eq. 1, the form its
//!   trajectory experiments use; crates/cells' LTC is ncps's conductance form, with a sigmoid per
//!   synapse and fixed semi-implicit unfolds, so it cannot take these activations or an adaptive
//!   solver);
//!
//! τ = 1, act tanh, logistic, ReLU or hard-tanh (clamp to [−1, 1]). Weights W_ℓ, U_ℓ i.i.d.
//! N(0, σ_w²/k) (k the width, for U of the first layer too), biases b_ℓ N(0, σ_b²), the LTC's
//! A_ℓ N(0, 1) (the paper gives no law for A: our choice). One draw's standard normals are
//! shared by the three models, every activation and every σ_w (common random numbers: a sweep
//! changes the scale, not the draw). The right-hand sides are plain f64, every layer solved
//! together from x = 0 by the adaptive Dormand–Prince of [`crate::adaptive`] (the cells'
//! method and controller, its own first step and dense output).
//!
//! Measured per layer: the state sampled at `samples` equally spaced times, projected on its
//! first two principal components ([`crate::pca`]); the arc length of that projection (the
//! paper's trajectory length), the share of the variance the two components hold, and the arc
//! length in the full state space. Per solve: the accepted and rejected steps and right-hand
//! side evaluations, and the computational depth, accepted steps per input sample of spacing
//! `depth_dt` (0.01), i.e. accepted steps × depth_dt / t_end: the input is continuous and the
//! solver's steps may be longer than a sample's spacing, which is how a depth below 1 arises.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adaptive::{solve_dense, Dp5Settings, Dp5Stats};
use crate::error::{invalid, ProbeError, Result};
use crate::linalg::Mat;
use crate::memory::Spread;
use crate::pca::{arc_length, pca};
use crate::plain_cell::dot;

/// ChaCha8 stream of the networks' draws.
pub const NETWORK_STREAM: u64 = 5;

/// The three continuous-time systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OdeModel {
    NeuralOde,
    Ctrnn,
    Ltc,
}

impl OdeModel {
    pub const ALL: [OdeModel; 3] = [OdeModel::NeuralOde, OdeModel::Ctrnn, OdeModel::Ltc];
    pub fn name(self) -> &'static str {
        match self {
            Self::NeuralOde => "neural-ode",
            Self::Ctrnn => "ctrnn",
            Self::Ltc => "ltc",
        }
    }
}

impl std::fmt::Display for OdeModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OdeModel {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "neural-ode" | "node" => Ok(Self::NeuralOde),
            "ctrnn" | "ct-rnn" => Ok(Self::Ctrnn),
            "ltc" => Ok(Self::Ltc),
            _ => Err(invalid(format!(
                "unknown model `{s}`; valid: neural-ode, ctrnn, ltc"
            ))),
        }
    }
}

/// Activations of f.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    Tanh,
    Sigmoid,
    Relu,
    HardTanh,
}

impl Act {
    pub const ALL: [Act; 4] = [Act::Tanh, Act::Sigmoid, Act::Relu, Act::HardTanh];
    pub fn name(self) -> &'static str {
        match self {
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
            Self::Relu => "relu",
            Self::HardTanh => "hard-tanh",
        }
    }
    #[inline]
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Self::Tanh => x.tanh(),
            Self::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Self::Relu => x.max(0.0),
            Self::HardTanh => x.clamp(-1.0, 1.0),
        }
    }
}

impl std::fmt::Display for Act {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Act {
    type Err = ProbeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tanh" => Ok(Self::Tanh),
            "sigmoid" | "logistic" => Ok(Self::Sigmoid),
            "relu" => Ok(Self::Relu),
            "hard-tanh" | "hardtanh" => Ok(Self::HardTanh),
            _ => Err(invalid(format!(
                "unknown activation `{s}`; valid: tanh, sigmoid, relu, hard-tanh"
            ))),
        }
    }
}

/// The paper's computational depth (its Table 2), per activation: Neural ODE, CT-RNN, LTC.
pub const PAPER_DEPTH: [(Act, [f64; 3]); 4] = [
    (Act::Tanh, [0.56, 4.13, 9.19]),
    (Act::Sigmoid, [0.56, 5.33, 7.00]),
    (Act::Relu, [1.29, 4.31, 56.9]),
    (Act::HardTanh, [0.61, 4.05, 81.01]),
];

/// The paper's depth of `model` with `act`.
pub fn paper_depth(model: OdeModel, act: Act) -> f64 {
    let (_, v) = PAPER_DEPTH.iter().find(|(a, _)| *a == act).unwrap();
    v[OdeModel::ALL.iter().position(|m| *m == model).unwrap()]
}

/// Settings of the trajectory-length probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajSettings {
    /// k, units per layer.
    pub width: usize,
    /// Layers of the stack (each layer's trajectory is measured: the depth sweep).
    pub layers: usize,
    /// σ_w values (more than one: the σ_w sweep); weights N(0, σ_w²/k).
    pub sigma_w: Vec<f64>,
    /// Biases N(0, σ_b²).
    pub sigma_b: f64,
    pub activations: Vec<Act>,
    pub models: Vec<OdeModel>,
    /// Independent networks per setting.
    pub draws: usize,
    /// Trajectory samples, equally spaced over [0, t_end] with both ends.
    pub samples: usize,
    pub t_end: f64,
    /// Input-sample spacing of the computational depth.
    pub depth_dt: f64,
    pub solver: Dp5Settings,
    /// Threads the solves are spread over (results do not depend on it).
    #[serde(skip)]
    pub threads: usize,
}

impl Default for TrajSettings {
    fn default() -> Self {
        Self {
            width: 100,
            layers: 1,
            sigma_w: vec![2.0],
            sigma_b: 1.0,
            activations: Act::ALL.to_vec(),
            models: OdeModel::ALL.to_vec(),
            draws: 1,
            samples: 1000,
            t_end: 2.0 * std::f64::consts::PI,
            depth_dt: 0.01,
            solver: Dp5Settings::default(),
            threads: 1,
        }
    }
}

impl TrajSettings {
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("width", self.width),
            ("layers", self.layers),
            ("draws", self.draws),
            ("threads", self.threads),
        ] {
            if v == 0 {
                return Err(invalid(format!("{what} must be at least 1, got 0")));
            }
        }
        if self.samples < 3 {
            return Err(invalid(format!(
                "samples must be at least 3 (a trajectory and its components), got {}",
                self.samples
            )));
        }
        if self.sigma_w.is_empty() || self.activations.is_empty() || self.models.is_empty() {
            return Err(invalid(
                "give at least one σ_w, one activation and one model",
            ));
        }
        if let Some(s) = self.sigma_w.iter().find(|s| !(**s >= 0.0 && s.is_finite())) {
            return Err(invalid(format!("σ_w must be finite and ≥ 0, got {s}")));
        }
        if !(self.sigma_b >= 0.0 && self.sigma_b.is_finite()) {
            return Err(invalid(format!(
                "σ_b must be finite and ≥ 0, got {}",
                self.sigma_b
            )));
        }
        for (what, v) in [("the end time", self.t_end), ("depth Δt", self.depth_dt)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(invalid(format!("{what} must be finite and > 0, got {v}")));
            }
        }
        self.solver.validate()
    }
}

/// One draw's standard normals, per layer: Z_W (k × k), Z_U (k × inputs), z_b, z_A.
#[derive(Debug, Clone)]
pub struct NetworkDraw {
    pub width: usize,
    pub layers: Vec<LayerDraw>,
}

#[derive(Debug, Clone)]
pub struct LayerDraw {
    pub inputs: usize,
    pub w: Vec<f64>,
    pub u: Vec<f64>,
    pub b: Vec<f64>,
    pub a: Vec<f64>,
}

/// SplitMix64's finaliser.
fn mix(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl NetworkDraw {
    /// Draw `draw` from `seed`: ChaCha8 seeded with SplitMix64(SplitMix64(seed) ⊕ draw) on
    /// stream [`NETWORK_STREAM`]; per layer Z_W, Z_U, z_b, z_A row-major in that order
    /// (Box–Muller).
    pub fn new(width: usize, layers: usize, seed: u64, draw: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed) ^ draw as u64));
        rng.set_stream(NETWORK_STREAM);
        let mut normal = move || {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let layers = (0..layers)
            .map(|l| {
                let inputs = if l == 0 { 2 } else { width };
                let mut take = |n: usize| (0..n).map(|_| normal()).collect::<Vec<f64>>();
                LayerDraw {
                    inputs,
                    w: take(width * width),
                    u: take(width * inputs),
                    b: take(width),
                    a: take(width),
                }
            })
            .collect();
        Self { width, layers }
    }
}

/// A network of one draw, scaled: W, U × σ_w/√k, b × σ_b.
pub struct Network {
    pub model: OdeModel,
    pub act: Act,
    width: usize,
    layers: Vec<LayerDraw>,
}

impl Network {
    pub fn new(draw: &NetworkDraw, model: OdeModel, act: Act, sigma_w: f64, sigma_b: f64) -> Self {
        let k = draw.width;
        let sw = sigma_w / (k as f64).sqrt();
        let layers = draw
            .layers
            .iter()
            .map(|l| LayerDraw {
                inputs: l.inputs,
                w: l.w.iter().map(|v| v * sw).collect(),
                u: l.u.iter().map(|v| v * sw).collect(),
                b: l.b.iter().map(|v| v * sigma_b).collect(),
                a: l.a.clone(),
            })
            .collect();
        Self {
            model,
            act,
            width: k,
            layers,
        }
    }

    /// Values of the joint state (every layer's).
    pub fn state_size(&self) -> usize {
        self.width * self.layers.len()
    }

    /// dx/dt of the joint state at time t (the circle input).
    pub fn rhs(&self, t: f64, x: &[f64], dx: &mut [f64]) {
        let k = self.width;
        let circle = [t.sin(), t.cos()];
        for (l, p) in self.layers.iter().enumerate() {
            let xl = &x[l * k..(l + 1) * k];
            let ul: &[f64] = if l == 0 {
                &circle
            } else {
                &x[(l - 1) * k..l * k]
            };
            let out = &mut dx[l * k..(l + 1) * k];
            for r in 0..k {
                let pre = dot(&p.w[r * k..(r + 1) * k], xl)
                    + dot(&p.u[r * p.inputs..(r + 1) * p.inputs], ul)
                    + p.b[r];
                let f = self.act.apply(pre);
                out[r] = match self.model {
                    OdeModel::NeuralOde => f,
                    OdeModel::Ctrnn => -xl[r] + f,
                    OdeModel::Ltc => -(1.0 + f) * xl[r] + f * p.a[r],
                };
            }
        }
    }
}

/// One layer's trajectory, measured.
#[derive(Debug, Clone, Serialize)]
pub struct LayerLength {
    /// Arc length of the projection on the first two principal components.
    pub pca_length: f64,
    /// Share of the variance along those two components.
    pub explained: f64,
    /// Arc length in the layer's full state space.
    pub full_length: f64,
    /// The projection (samples × 2), for the pictures.
    #[serde(skip)]
    pub projection: Mat,
}

/// One solve: a model, an activation, a σ_w, a draw.
#[derive(Debug, Clone, Serialize)]
pub struct TrajRun {
    pub model: OdeModel,
    pub activation: Act,
    pub sigma_w: f64,
    pub draw: usize,
    pub layers: Vec<LayerLength>,
    pub steps: Dp5Stats,
    /// Accepted steps per input sample of spacing depth_dt.
    pub depth: f64,
}

/// Solves one network over the circle and measures every layer.
pub fn measure(net: &Network, s: &TrajSettings) -> Result<(Vec<LayerLength>, Dp5Stats)> {
    let times: Vec<f64> = (0..s.samples)
        .map(|j| s.t_end * j as f64 / (s.samples - 1) as f64)
        .collect();
    let y0 = vec![0.0; net.state_size()];
    let mut f = |t: f64, x: &[f64], dx: &mut [f64]| net.rhs(t, x, dx);
    let (ys, stats) = solve_dense(&mut f, &y0, s.t_end, &times, &s.solver)?;
    let k = net.width;
    let layers = (0..net.layers.len())
        .map(|l| {
            let rows: Vec<Vec<f64>> = ys.iter().map(|y| y[l * k..(l + 1) * k].to_vec()).collect();
            let m = Mat::from_rows(&rows)?;
            let p = pca(&m, 2.min(k))?;
            let proj = p.project(&m)?;
            Ok(LayerLength {
                pca_length: arc_length(&proj),
                explained: p.explained(2),
                full_length: arc_length(&m),
                projection: proj,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((layers, stats))
}

/// The input's own arc length over the samples (2π for the full circle, up to the chords).
pub fn input_length(s: &TrajSettings) -> f64 {
    let m = Mat::from_rows(
        &(0..s.samples)
            .map(|j| {
                let t = s.t_end * j as f64 / (s.samples - 1) as f64;
                vec![t.sin(), t.cos()]
            })
            .collect::<Vec<_>>(),
    )
    .expect("rows of two");
    arc_length(&m)
}

/// The mean over draws of one (model, activation, σ_w).
#[derive(Debug, Clone, Serialize)]
pub struct TrajSummary {
    pub model: OdeModel,
    pub activation: Act,
    pub sigma_w: f64,
    /// Per layer: the PCA arc length over draws.
    pub pca_length: Vec<Spread>,
    /// Per layer: mean share of the variance on two components.
    pub explained: Vec<f64>,
    /// Per layer: mean arc length in the full state space.
    pub full_length: Vec<f64>,
    pub depth: Spread,
    /// The paper's Table 2 depth for this model and activation.
    pub paper_depth: f64,
}

/// Whether the paper's ordering holds for one (activation, σ_w): LTC > CT-RNN > Neural ODE.
#[derive(Debug, Clone, Serialize)]
pub struct Ordering {
    pub activation: Act,
    pub sigma_w: f64,
    /// On the last layer's mean PCA arc length.
    pub length_holds: bool,
    /// On the mean computational depth.
    pub depth_holds: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrajReport {
    pub probe: &'static str,
    pub seed: u64,
    pub settings: TrajSettings,
    /// Arc length of the sampled input circle.
    pub input_length: f64,
    pub summaries: Vec<TrajSummary>,
    /// Present when all three models ran.
    pub orderings: Vec<Ordering>,
    pub runs: Vec<TrajRun>,
}

/// Runs every (σ_w, activation, model, draw) of `s`, spread over `s.threads` threads.
/// `progress` is told the solves done.
pub fn run(s: &TrajSettings, seed: u64, progress: &mut dyn FnMut(usize)) -> Result<TrajReport> {
    s.validate()?;
    let draws: Vec<NetworkDraw> = (0..s.draws)
        .map(|d| NetworkDraw::new(s.width, s.layers, seed, d))
        .collect();
    let mut jobs = Vec::new();
    for &sw in &s.sigma_w {
        for &act in &s.activations {
            for &model in &s.models {
                for d in 0..s.draws {
                    jobs.push((sw, act, model, d));
                }
            }
        }
    }
    let one = |&(sw, act, model, d): &(f64, Act, OdeModel, usize)| -> Result<TrajRun> {
        let net = Network::new(&draws[d], model, act, sw, s.sigma_b);
        let (layers, steps) = measure(&net, s)
            .map_err(|e| ProbeError::Solver(format!("{model}, {act}, σ_w {sw}, draw {d}: {e}")))?;
        Ok(TrajRun {
            model,
            activation: act,
            sigma_w: sw,
            draw: d,
            layers,
            depth: steps.accepted as f64 * s.depth_dt / s.t_end,
            steps,
        })
    };
    let threads = s.threads.max(1);
    let mut runs = Vec::with_capacity(jobs.len());
    for block in jobs.chunks(4 * threads) {
        let results: Vec<Result<TrajRun>> = if threads == 1 {
            block.iter().map(one).collect()
        } else {
            let per = block.len().div_ceil(threads);
            std::thread::scope(|sc| {
                let hs: Vec<_> = block
                    .chunks(per)
                    .map(|c| {
                        let one = &one;
                        sc.spawn(move || c.iter().map(one).collect::<Vec<_>>())
                    })
                    .collect();
                hs.into_iter()
                    .flat_map(|h| h.join().expect("a solve thread panicked"))
                    .collect()
            })
        };
        for r in results {
            runs.push(r?);
        }
        progress(block.len());
    }
    let mut summaries = Vec::new();
    for &sw in &s.sigma_w {
        for &act in &s.activations {
            for &model in &s.models {
                let mine: Vec<&TrajRun> = runs
                    .iter()
                    .filter(|r| r.sigma_w == sw && r.activation == act && r.model == model)
                    .collect();
                let per_layer = |f: &dyn Fn(&LayerLength) -> f64| -> Vec<Vec<f64>> {
                    (0..s.layers)
                        .map(|l| mine.iter().map(|r| f(&r.layers[l])).collect())
                        .collect()
                };
                let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
                summaries.push(TrajSummary {
                    model,
                    activation: act,
                    sigma_w: sw,
                    pca_length: per_layer(&|l| l.pca_length)
                        .iter()
                        .map(|v| Spread::of(v))
                        .collect(),
                    explained: per_layer(&|l| l.explained).iter().map(mean).collect(),
                    full_length: per_layer(&|l| l.full_length).iter().map(mean).collect(),
                    depth: Spread::of(&mine.iter().map(|r| r.depth).collect::<Vec<_>>()),
                    paper_depth: paper_depth(model, act),
                });
            }
        }
    }
    let mut orderings = Vec::new();
    if OdeModel::ALL.iter().all(|m| s.models.contains(m)) {
        for &sw in &s.sigma_w {
            for &act in &s.activations {
                let get = |m: OdeModel| {
                    summaries
                        .iter()
                        .find(|x| x.model == m && x.activation == act && x.sigma_w == sw)
                        .unwrap()
                };
                let (n, c, l) = (
                    get(OdeModel::NeuralOde),
                    get(OdeModel::Ctrnn),
                    get(OdeModel::Ltc),
                );
                let last = s.layers - 1;
                orderings.push(Ordering {
                    activation: act,
                    sigma_w: sw,
                    length_holds: l.pca_length[last].mean > c.pca_length[last].mean
                        && c.pca_length[last].mean > n.pca_length[last].mean,
                    depth_holds: l.depth.mean > c.depth.mean && c.depth.mean > n.depth.mean,
                });
            }
        }
    }
    Ok(TrajReport {
        probe: "trajectory-length",
        seed,
        input_length: input_length(s),
        settings: s.clone(),
        summaries,
        orderings,
        runs,
    })
}

/// A run's model on the circle, measured per layer.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectTrajectory {
    pub probe: &'static str,
    pub subject: crate::subject::SubjectInfo,
    pub samples: usize,
    pub t_end: f64,
    /// Per layer (h of each layer; the LTC's every neuron).
    pub layers: Vec<LayerLength>,
    pub note: String,
}

/// Drives a model (a run's weights) with the circle sampled at `samples` equally spaced times
/// of [0, t_end], one input step per sample with the model's own step and solver (elapsed time
/// 1 per step): sin t on input feature 0, cos t on feature 1, any other feature 0. Each layer's
/// h (the LSTM's c left out) is measured as for the random networks. No computational depth:
/// the cells solve each step with a fixed number of unfolds (or a dopri5 that counts nothing).
pub fn of_subject(
    subject: &crate::subject::Subject,
    samples: usize,
    t_end: f64,
    progress: &mut dyn FnMut(usize),
) -> Result<SubjectTrajectory> {
    use candle_core::{DType, Tensor};
    if samples < 3 {
        return Err(invalid(format!(
            "samples must be at least 3 (a trajectory and its components), got {samples}"
        )));
    }
    if !(t_end > 0.0 && t_end.is_finite()) {
        return Err(invalid(format!(
            "the end time must be finite and > 0, got {t_end}"
        )));
    }
    let f = subject.config().input_size();
    if f < 2 {
        return Err(invalid(format!(
            "the circle (sin t, cos t) needs two input features, and the model reads {f}"
        )));
    }
    let r = &subject.config().rnn;
    let (layers, hidden) = (r.num_layers, r.hidden_size);
    let model = subject.model();
    let mut state = model.rnn_zero_state(1, DType::F64, subject.device())?;
    let mut rows: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(samples); layers];
    for j in 0..samples {
        let t = t_end * j as f64 / (samples - 1) as f64;
        let mut x = vec![0.0; f];
        x[0] = t.sin();
        x[1] = t.cos();
        let xt = Tensor::from_vec(x, (1, f), subject.device())?;
        let (_, next) = model.step(&xt, &state)?;
        state = remanence_cells::RnnState {
            h: next.h.detach(),
            c: next.c.map(|c| c.detach()),
        };
        let h = state.h.to_dtype(DType::F64)?.to_vec3::<f64>()?;
        for (l, layer) in h.into_iter().enumerate() {
            rows[l].push(layer.into_iter().next().unwrap_or_default());
        }
        if (j + 1) % 256 == 0 {
            progress(256);
        }
    }
    progress(samples % 256);
    let measured = rows
        .into_iter()
        .map(|r| {
            let m = Mat::from_rows(&r)?;
            if !m.is_finite() {
                return Err(ProbeError::NonFinite(
                    "the model's state on the circle".into(),
                ));
            }
            let p = pca(&m, 2.min(hidden))?;
            let proj = p.project(&m)?;
            Ok(LayerLength {
                pca_length: arc_length(&proj),
                explained: p.explained(2),
                full_length: arc_length(&m),
                projection: proj,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut note = format!(
        "one input step per sample (elapsed time 1 each, the model's own step); sin t on feature 0, \
         cos t on feature 1{}",
        if f > 2 {
            format!(", features 2..{} held at 0", f - 1)
        } else {
            String::new()
        }
    );
    if layers != measured.len() {
        note.push_str("; layer count mismatch");
    }
    Ok(SubjectTrajectory {
        probe: "trajectory-length",
        subject: subject.info(),
        samples,
        t_end,
        layers: measured,
        note,
    })
}
