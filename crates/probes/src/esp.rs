//! The echo-state property (Jaeger 2001, GMD Report 148; Yildiz, Jaeger & Kiebel 2012): whether
//! the state a network reaches depends on its input history only, not on where it started.
//!
//! Three looks at it:
//! - **Spectra of the recurrent matrix.** For the SRN, s' = act(W_ih x + W_hh s + b): σ_max(W_hh)
//!   times the Lipschitz constant of act (1 for tanh, 1/4 for the logistic function) below 1
//!   makes every step a contraction, whatever the input: sufficient for echo states (Jaeger
//!   2001, Prop. 3a, stated for tanh). The necessary side (Prop. 3b): a spectral radius above 1
//!   at the null state makes it unstable, so no echo states for inputs that contain 0. Jaeger's
//!   statement is for tanh networks without bias, where J = W at the null state; in general we
//!   take ρ of the Jacobian at the rest state under zero input, which is ρ(W) in his case.
//!   ρ < 1 is not sufficient (Yildiz et al. 2012 give counterexamples).
//! - **The Jacobian J = ∂F/∂s of one step**, for any cell: at the zero state with zero input,
//!   and at the rest state the zero-input dynamics settle to. σ_max(J) < 1 at a point is a
//!   contraction near that point only (local); for the gated and continuous-time cells no global
//!   bound is derived here. For the PyTorch cells the raw blocks of `weight_hh` are reported too.
//! - **Empirically**: pairs of runs from different random initial states on the same input; the
//!   distance ‖s_a(t) − s_b(t)‖ against t falls to zero when the network has echo states for that
//!   input.
use remanence_cells::{Activation, CellKind, RnnConfig};
use serde::{Deserialize, Serialize};

use crate::dynamics::{jacobian, rest_state, run_series, RestState, JACOBIAN_STEP};
use crate::error::{invalid, ProbeError, Result};
use crate::linalg::{sigma_max, spectral_radius, Mat};
use crate::signal::{rng, stream, uniform_series};
use crate::subject::{Features, Subject, SubjectInfo};

/// The two numbers of a square matrix the echo-state conditions use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spectrum {
    /// Largest singular value ‖M‖₂.
    pub sigma_max: f64,
    /// Spectral radius max |λ_i|.
    pub spectral_radius: f64,
}

/// σ_max and ρ of a square matrix ([`sigma_max`], [`spectral_radius`]).
pub fn spectrum(m: &Mat) -> Result<Spectrum> {
    Ok(Spectrum {
        sigma_max: sigma_max(m)?,
        spectral_radius: spectral_radius(m)?,
    })
}

/// A raw recurrent weight block of a PyTorch-style cell.
#[derive(Debug, Clone, Serialize)]
pub struct WeightBlock {
    /// The parameter (`rnn.weight_hh_l0`).
    pub name: String,
    /// The gate whose rows these are (`i`, `f`, `g`, `o` for the LSTM; `r`, `z`, `n` for the
    /// GRU and ODE-RNN; `all` for the SRN and CT-RNN).
    pub block: String,
    pub layer: usize,
    pub size: usize,
    #[serde(flatten)]
    pub spectrum: Spectrum,
    #[serde(skip)]
    pub matrix: Mat,
}

/// Gate names of the rows of `weight_hh` per cell; `None` for the cells without such a matrix
/// (LTC: conductances through sigmoids; CfC: a backbone over [x, h]).
fn gate_names(cell: CellKind) -> Option<&'static [&'static str]> {
    match cell {
        CellKind::Srn | CellKind::Ctrnn | CellKind::Esn => Some(&["all"]),
        CellKind::Lstm => Some(&["i", "f", "g", "o"]),
        CellKind::Gru | CellKind::Odernn => Some(&["r", "z", "n"]),
        CellKind::Ltc | CellKind::Cfc => None,
    }
}

/// The raw recurrent blocks of `weight_hh_l{k}` (under `prefix`, `rnn.` in a model) of every
/// layer of a PyTorch-style cell, each H × H, in gate order; an empty list for the LTC and CfC.
/// A parameter missing or of the wrong shape is an error naming it.
pub fn recurrent_blocks(
    config: &RnnConfig,
    tensors: &[(String, candle_core::Tensor)],
    prefix: &str,
) -> Result<Vec<WeightBlock>> {
    let Some(gates) = gate_names(config.cell) else {
        return Ok(Vec::new());
    };
    let h = config.hidden_size;
    let mut out = Vec::new();
    for layer in 0..config.num_layers {
        let name = format!("{prefix}weight_hh_l{layer}");
        let Some((_, t)) = tensors.iter().find(|(n, _)| *n == name) else {
            return Err(ProbeError::NoRecurrentMatrix {
                cell: config.cell.to_string(),
                looked_for: vec![name],
                available: tensors.iter().map(|(n, _)| n.clone()).collect(),
            });
        };
        let want = [gates.len() * h, h];
        if t.dims() != want {
            return Err(invalid(format!(
                "`{name}` has shape {:?}, a {} layer of {h} units needs {want:?}",
                t.dims(),
                config.cell
            )));
        }
        let rows = t.to_dtype(candle_core::DType::F64)?.to_vec2::<f64>()?;
        for (g, gate) in gates.iter().enumerate() {
            let m = Mat::from_rows(&rows[g * h..(g + 1) * h])?;
            out.push(WeightBlock {
                name: name.clone(),
                block: gate.to_string(),
                layer,
                size: h,
                spectrum: spectrum(&m)?,
                matrix: m,
            });
        }
    }
    Ok(out)
}

/// Settings of the echo-state probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EspSettings {
    /// Pairs of runs in the convergence check.
    pub pairs: usize,
    /// Steps of each run.
    pub steps: usize,
    /// Half-width of the i.i.d. uniform input, as for the memory capacity.
    pub amplitude: f64,
    /// Initial state values are drawn uniform on [−init_scale, init_scale].
    pub init_scale: f64,
    /// A pair has converged when its distance fell to `tolerance` × its initial distance.
    pub tolerance: f64,
    /// Most steps of the search for the rest state under zero input.
    pub rest_steps: usize,
    /// The rest state is reached when one step moves no value by more than this.
    pub rest_tolerance: f64,
    /// Step of the Jacobian's central differences.
    pub difference_step: f64,
}

impl Default for EspSettings {
    fn default() -> Self {
        Self {
            pairs: 8,
            steps: 500,
            amplitude: 0.8,
            init_scale: 1.0,
            tolerance: 1e-6,
            rest_steps: 2000,
            rest_tolerance: 1e-12,
            difference_step: JACOBIAN_STEP,
        }
    }
}

impl EspSettings {
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("pairs", self.pairs),
            ("steps", self.steps),
            ("rest steps", self.rest_steps),
        ];
        for (what, v) in positive {
            if v == 0 {
                return Err(invalid(format!("{what} must be at least 1, got 0")));
            }
        }
        let reals = [
            ("amplitude", self.amplitude),
            ("init scale", self.init_scale),
            ("tolerance", self.tolerance),
            ("rest tolerance", self.rest_tolerance),
            ("difference step", self.difference_step),
        ];
        for (what, v) in reals {
            if !(v > 0.0 && v.is_finite()) {
                return Err(invalid(format!("{what} must be finite and > 0, got {v}")));
            }
        }
        Ok(())
    }
}

/// The distances of pairs of runs from different initial states on the same input.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    pub pairs: usize,
    pub steps: usize,
    /// d_p(t) = ‖s_a(t) − s_b(t)‖₂ for pair p and t = 0..=steps (t = 0: the initial states).
    pub distances: Vec<Vec<f64>>,
    /// max_p d_p(T)/d_p(0).
    pub max_final_ratio: f64,
    /// Every pair's distance fell to `tolerance` × its initial distance by the last step.
    pub converged: bool,
    /// The first step at which every pair's ratio is at most the tolerance.
    pub steps_to_tolerance: Option<usize>,
    /// Median over pairs of the per-step factor exp(slope) of a least-squares line through
    /// ln d_p(t), over the steps before d_p falls below 1e-13 d_p(0) (rounding); below 1:
    /// exponential convergence.
    pub rate: Option<f64>,
}

/// Slope of the least-squares line through (t, ln d(t)) over the steps before `d` falls below
/// 1e-13 · d(0); `None` with fewer than two such steps.
fn log_slope(d: &[f64]) -> Option<f64> {
    let floor = 1e-13 * d.first().copied()?;
    let pts: Vec<(f64, f64)> = d
        .iter()
        .enumerate()
        .take_while(|(_, &v)| v > floor && v > 0.0)
        .map(|(t, &v)| (t as f64, v.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mt = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let ml = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = pts.iter().map(|(t, l)| (t - mt) * (l - ml)).sum();
    let den: f64 = pts.iter().map(|(t, _)| (t - mt).powi(2)).sum();
    Some(num / den)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    })
}

/// Runs pairs (`a[p]`, `b[p]`) of initial states on the same input series and measures their
/// distance at every step, judged against `tolerance`.
pub fn convergence_of(
    subject: &Subject,
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    input: &[f64],
    tolerance: f64,
    progress: &mut dyn FnMut(usize),
) -> Result<Convergence> {
    if a.len() != b.len() || a.is_empty() {
        return Err(invalid(format!(
            "pairs of initial states: {} first and {} second states",
            a.len(),
            b.len()
        )));
    }
    let pairs = a.len();
    let init: Vec<Vec<f64>> = a.iter().chain(b).cloned().collect();
    let series = vec![input.to_vec(); 2 * pairs];
    let runs = run_series(subject, &series, Some(&init), Features::State, progress)?;
    let dist = |x: &[f64], y: &[f64]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let steps = input.len();
    let distances: Vec<Vec<f64>> = (0..pairs)
        .map(|p| {
            let mut d = Vec::with_capacity(steps + 1);
            d.push(dist(&a[p], &b[p]));
            for t in 0..steps {
                d.push(dist(runs[p].row(t), runs[pairs + p].row(t)));
            }
            d
        })
        .collect();
    if let Some(p) = distances.iter().position(|d| !(d[0] > 0.0)) {
        return Err(invalid(format!(
            "pair {p} starts from two equal states: nothing to converge"
        )));
    }
    let ratio = |d: &Vec<f64>, t: usize| d[t] / d[0];
    let max_final_ratio = distances
        .iter()
        .map(|d| ratio(d, steps))
        .fold(0.0, f64::max);
    let steps_to_tolerance =
        (0..=steps).find(|&t| distances.iter().all(|d| ratio(d, t) <= tolerance));
    let rate = median(
        distances
            .iter()
            .filter_map(|d| log_slope(d).map(f64::exp))
            .collect(),
    );
    Ok(Convergence {
        pairs,
        steps,
        distances,
        max_final_ratio,
        converged: max_final_ratio <= tolerance,
        steps_to_tolerance,
        rate,
    })
}

/// A Jacobian's spectrum at a named point.
#[derive(Debug, Clone, Serialize)]
pub struct JacobianAt {
    /// Where: `zero state, zero input` or `rest state, zero input`.
    pub point: String,
    #[serde(flatten)]
    pub spectrum: Spectrum,
    #[serde(skip)]
    pub matrix: Mat,
}

/// How close to 1 a condition's value must be to count as undecided: the relative precision of
/// weights stored in f32, far above the spectral estimates' own error (about 1e-14).
pub const BORDERLINE: f64 = 1e-6;

fn verdict(value: f64) -> (bool, bool) {
    let borderline = (value - 1.0).abs() <= BORDERLINE;
    (value < 1.0 && !borderline, borderline)
}

/// An echo-state condition, evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// The inequality, in words.
    pub statement: String,
    /// Its left-hand side.
    pub value: f64,
    /// value < 1 by more than [`BORDERLINE`].
    pub holds: bool,
    /// |value − 1| ≤ [`BORDERLINE`]: too close to 1 for the measurement to decide (a reservoir
    /// scaled to ρ = 1, weights stored in f32); `holds` is then false.
    pub borderline: bool,
    /// `global` (for every state and input) or `local` (near one point).
    pub scope: String,
    /// What the verdict means and where it comes from.
    pub note: String,
}

/// Everything the echo-state probe measured.
#[derive(Debug, Clone, Serialize)]
pub struct EspReport {
    pub subject: SubjectInfo,
    pub seed: u64,
    pub settings: EspSettings,
    /// Sufficient condition (σ_max < 1).
    pub sufficient: Condition,
    /// Necessary condition (ρ < 1 at zero input).
    pub necessary: Condition,
    pub jacobian_at_zero: JacobianAt,
    pub rest_state: RestState,
    /// At the rest state, when the zero-input iteration reached one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jacobian_at_rest: Option<JacobianAt>,
    /// The raw `weight_hh` blocks (PyTorch-style cells; empty for the LTC and CfC).
    pub weight_blocks: Vec<WeightBlock>,
    pub convergence: Convergence,
}

/// The sufficient condition: the global one for the SRN, the local one of the Jacobian at the
/// zero state for every other cell.
fn sufficient(config: &RnnConfig, blocks: &[WeightBlock], j0: &JacobianAt) -> Condition {
    if config.cell == CellKind::Srn && !blocks.is_empty() {
        let (lip, act) = match config.activation {
            Activation::Tanh => (1.0, "tanh"),
            Activation::Sigmoid => (0.25, "logistic"),
        };
        let worst = blocks
            .iter()
            .map(|b| b.spectrum.sigma_max)
            .fold(0.0, f64::max);
        let value = lip * worst;
        return Condition {
            statement: if lip == 1.0 {
                "max over layers of σ_max(W_hh) < 1".into()
            } else {
                "max over layers of σ_max(W_hh)/4 < 1".into()
            },
            value,
            holds: verdict(value).0,
            borderline: verdict(value).1,
            scope: "global".into(),
            note: format!(
                "{act} is {}-Lipschitz, so each step moves two states of a layer at most \
                 {value:.4} times as far apart whatever the input: a contraction when < 1, and \
                 then the network has echo states (Jaeger 2001, Prop. 3a); a stack of \
                 contracting layers contracts",
                if lip == 1.0 { "1" } else { "1/4" }
            ),
        };
    }
    let s = j0.spectrum.sigma_max;
    Condition {
        statement: "σ_max(J) < 1 at the zero state with zero input".into(),
        value: s,
        holds: verdict(s).0,
        borderline: verdict(s).1,
        scope: "local".into(),
        note: format!(
            "J = ∂F/∂s of one {} step; σ_max(J) < 1 makes the step a contraction near that \
             point only: no global bound is derived for this cell, so the empirical convergence \
             check is the test that counts",
            config.cell
        ),
    }
}

/// The necessary condition: ρ of the Jacobian at the rest state under zero input (at the zero
/// state when the zero-input dynamics reached no fixed point).
fn necessary(rest: &RestState, j0: &JacobianAt, jr: Option<&JacobianAt>) -> Condition {
    match jr {
        Some(j) => {
            let v = j.spectrum.spectral_radius;
            Condition {
                statement: "ρ(J) < 1 at the rest state under zero input".into(),
                value: v,
                holds: verdict(v).0,
                borderline: verdict(v).1,
                scope: "local".into(),
                note: format!(
                    "the zero-input dynamics reach a fixed point in {} steps; ρ(J) > 1 there \
                     would make it unstable, so no echo states for inputs containing 0 (Jaeger \
                     2001, Prop. 3b, where J = W for tanh networks without bias); ρ < 1 is not \
                     sufficient (Yildiz, Jaeger & Kiebel 2012)",
                    rest.steps
                ),
            }
        }
        None => {
            let v = j0.spectrum.spectral_radius;
            Condition {
                statement: "ρ(J) < 1 at the zero state with zero input".into(),
                value: v,
                holds: verdict(v).0,
                borderline: verdict(v).1,
                scope: "local".into(),
                note: format!(
                    "the zero-input dynamics reached no fixed point in {} steps (last move \
                     {:.3e}): they oscillate or wander, itself a sign against echo states at \
                     zero input; ρ is taken at the zero state instead",
                    rest.steps, rest.residual
                ),
            }
        }
    }
}

/// Runs the echo-state probe on `subject`: spectra, conditions and the convergence of
/// `settings.pairs` pairs of random initial states (stream [`stream::ESP_STATES`] of ChaCha8
/// seeded with `seed`) on one input series (stream [`stream::ESP_INPUT`]). `progress` is told
/// the convergence steps done (of `settings.steps` in all).
pub fn run(
    subject: &Subject,
    settings: &EspSettings,
    seed: u64,
    progress: &mut dyn FnMut(usize),
) -> Result<EspReport> {
    settings.validate()?;
    let config = &subject.config().rnn;
    let n = subject.state_size();
    let zero_input = vec![0.0; subject.drive().input_size];
    let blocks = recurrent_blocks(config, &subject.tensors(), "rnn.")?;

    let j0 = jacobian(
        subject,
        &vec![0.0; n],
        &zero_input,
        settings.difference_step,
    )?;
    let jacobian_at_zero = JacobianAt {
        point: "zero state, zero input".into(),
        spectrum: spectrum(&j0)?,
        matrix: j0,
    };
    let rest = rest_state(subject, settings.rest_steps, settings.rest_tolerance)?;
    let jacobian_at_rest = if rest.converged {
        let j = jacobian(subject, &rest.state, &zero_input, settings.difference_step)?;
        Some(JacobianAt {
            point: "rest state, zero input".into(),
            spectrum: spectrum(&j)?,
            matrix: j,
        })
    } else {
        None
    };

    let mut r = rng(seed, stream::ESP_STATES);
    let mut draw = || uniform_series(n, settings.init_scale, &mut r);
    let a = (0..settings.pairs)
        .map(|_| draw())
        .collect::<Result<Vec<_>>>()?;
    let b = (0..settings.pairs)
        .map(|_| draw())
        .collect::<Result<Vec<_>>>()?;
    let input = uniform_series(
        settings.steps,
        settings.amplitude,
        &mut rng(seed, stream::ESP_INPUT),
    )?;
    let convergence = convergence_of(subject, &a, &b, &input, settings.tolerance, progress)?;

    Ok(EspReport {
        subject: subject.info(),
        seed,
        settings: settings.clone(),
        sufficient: sufficient(config, &blocks, &jacobian_at_zero),
        necessary: necessary(&rest, &jacobian_at_zero, jacobian_at_rest.as_ref()),
        jacobian_at_zero,
        rest_state: rest,
        jacobian_at_rest,
        weight_blocks: blocks,
        convergence,
    })
}
