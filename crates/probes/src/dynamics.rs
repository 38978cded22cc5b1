//! A model as a driven dynamical system s_t = F(s_{t−1}, x_t): state trajectories under scalar
//! input series, the Jacobian ∂F/∂s at any state and input, and the rest state under zero input.
//!
//! States are the flattened recurrent state ([`RnnState::flatten`]: `h` of every layer, then `c`
//! of every layer for the LSTM), as plain `Vec<f64>`; every step's state is detached from
//! Candle's graph, so a long run keeps no history.
use candle_core::{DType, Tensor};
use remanence_cells::{CellKind, RnnState};

use crate::error::{invalid, ProbeError, Result};
use crate::linalg::Mat;
use crate::subject::{Features, Subject};

/// Steps per call of the model's sequence path (between progress reports).
const CHUNK: usize = 256;

/// Whether the top layer's output is the whole flattened state, so the fused sequence path may
/// give the state trajectory: one layer, no LSTM cell state, no LTC motor mapping.
pub fn state_is_output(subject: &Subject) -> bool {
    let r = &subject.config().rnn;
    r.num_layers == 1 && !matches!(r.cell, CellKind::Lstm | CellKind::Ltc)
}

fn check_series(series: &[Vec<f64>]) -> Result<usize> {
    let Some(first) = series.first() else {
        return Err(invalid("no input series (a batch of zero sequences)"));
    };
    let len = first.len();
    if len == 0 {
        return Err(invalid("an input series of length zero"));
    }
    if let Some(b) = series.iter().position(|s| s.len() != len) {
        return Err(invalid(format!(
            "input series {b} has {} steps, series 0 has {len}",
            series[b].len()
        )));
    }
    if series.iter().flatten().any(|v| !v.is_finite()) {
        return Err(ProbeError::NonFinite("the input series".into()));
    }
    Ok(len)
}

/// The model inputs (B, len, F) of steps `start..start + len` of each series.
fn inputs(subject: &Subject, series: &[Vec<f64>], start: usize, len: usize) -> Result<Tensor> {
    let d = subject.drive();
    let mut v = vec![0.0f64; series.len() * len * d.input_size];
    for (b, s) in series.iter().enumerate() {
        for t in 0..len {
            v[(b * len + t) * d.input_size + d.channel] = s[start + t];
        }
    }
    Ok(Tensor::from_vec(
        v,
        (series.len(), len, d.input_size),
        subject.device(),
    )?)
}

/// The recurrent state of `states` (one flattened state per sequence).
pub fn state_from_rows(subject: &Subject, states: &[Vec<f64>]) -> Result<RnnState> {
    let n = subject.state_size();
    if let Some(b) = states.iter().position(|s| s.len() != n) {
        return Err(invalid(format!(
            "initial state {b} has {} values, the model's state has {n}",
            states[b].len()
        )));
    }
    if states.is_empty() {
        return Err(invalid("no initial states"));
    }
    let flat = Tensor::from_vec(states.concat(), (states.len(), n), subject.device())?;
    let r = &subject.config().rnn;
    Ok(RnnState::unflatten(
        &flat,
        r.num_layers,
        r.hidden_size,
        r.cell == CellKind::Lstm,
    )?)
}

fn detach(s: RnnState) -> RnnState {
    RnnState {
        h: s.h.detach(),
        c: s.c.map(|c| c.detach()),
    }
}

fn rows_of(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2::<f64>()?)
}

/// Runs the model over B scalar series of equal length T from `init` (one flattened state per
/// series; the zero state when `None`) and returns, per series, a (T, n) matrix whose row t
/// holds `features` after reading u_t. `progress` is told how many steps were done since its
/// last call.
pub fn run_series(
    subject: &Subject,
    series: &[Vec<f64>],
    init: Option<&[Vec<f64>]>,
    features: Features,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<Mat>> {
    let len = check_series(series)?;
    let batch = series.len();
    if let Some(i) = init {
        if i.len() != batch {
            return Err(invalid(format!(
                "{} initial states for {batch} series",
                i.len()
            )));
        }
    }
    let mut state = match init {
        Some(rows) => state_from_rows(subject, rows)?,
        None => subject
            .model()
            .rnn_zero_state(batch, DType::F64, subject.device())?,
    };
    let n = subject.feature_size(features);
    let mut out: Vec<Vec<f64>> = vec![Vec::with_capacity(len * n); batch];
    let sequence_path = features == Features::Output || state_is_output(subject);
    let mut start = 0;
    while start < len {
        let steps = CHUNK.min(len - start);
        let x = inputs(subject, series, start, steps)?;
        if sequence_path {
            // The model's own sequence path (fused kernels where the cell has them).
            let (_, hs, last) = subject.model().forward_full(&x, Some(&state), None)?;
            let hs = hs.to_dtype(DType::F64)?.to_vec3::<f64>()?;
            for (o, h) in out.iter_mut().zip(hs) {
                for row in h {
                    o.extend_from_slice(&row);
                }
            }
            state = detach(last);
        } else {
            for t in 0..steps {
                let xt = x.narrow(1, t, 1)?.squeeze(1)?;
                let (_, next) = subject.model().step(&xt, &state)?;
                state = detach(next);
                for (o, row) in out.iter_mut().zip(rows_of(&state.flatten()?)?) {
                    o.extend_from_slice(&row);
                }
            }
        }
        start += steps;
        progress(steps);
    }
    let mats = out
        .into_iter()
        .map(|v| Mat::from_vec(len, n, v).map_err(ProbeError::from))
        .collect::<Result<Vec<_>>>()?;
    if let Some(b) = mats.iter().position(|m| !m.is_finite()) {
        return Err(ProbeError::NonFinite(format!(
            "the model's {features} became NaN or infinite on input series {b}"
        )));
    }
    Ok(mats)
}

/// One step from each of `states` on the same model input `x` (F values): the next states.
pub fn step_states(subject: &Subject, states: &[Vec<f64>], x: &[f64]) -> Result<Vec<Vec<f64>>> {
    let d = subject.drive();
    if x.len() != d.input_size {
        return Err(invalid(format!(
            "an input of {} values for a model that reads {}",
            x.len(),
            d.input_size
        )));
    }
    let s = state_from_rows(subject, states)?;
    let xs = Tensor::from_vec(
        x.repeat(states.len()),
        (states.len(), d.input_size),
        subject.device(),
    )?;
    let (_, next) = subject.model().step(&xs, &s)?;
    rows_of(&next.flatten()?)
}

/// Default step of [`jacobian`]'s central differences (f64: truncation ~ε², rounding ~1e-16/ε).
pub const JACOBIAN_STEP: f64 = 1e-6;

/// The Jacobian J_ij = ∂F_i/∂s_j of one step at state `at` (flattened) and model input `x`, by
/// central differences with step `eps`, all 2n perturbed states in one batched step. Works for
/// any cell, with or without a fused kernel (a step always runs the reference composition).
pub fn jacobian(subject: &Subject, at: &[f64], x: &[f64], eps: f64) -> Result<Mat> {
    let n = subject.state_size();
    if at.len() != n {
        return Err(invalid(format!(
            "a state of {} values for a model whose state has {n}",
            at.len()
        )));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(invalid(format!(
            "the difference step must be > 0, got {eps}"
        )));
    }
    let mut states = Vec::with_capacity(2 * n);
    for j in 0..n {
        for sign in [1.0, -1.0] {
            let mut s = at.to_vec();
            s[j] += sign * eps;
            states.push(s);
        }
    }
    let next = step_states(subject, &states, x)?;
    let mut jac = Mat::zeros(n, n);
    for j in 0..n {
        let (plus, minus) = (&next[2 * j], &next[2 * j + 1]);
        for i in 0..n {
            jac[(i, j)] = (plus[i] - minus[i]) / (2.0 * eps);
        }
    }
    if !jac.is_finite() {
        return Err(ProbeError::NonFinite(
            "the Jacobian (the step is NaN or infinite near that state)".into(),
        ));
    }
    Ok(jac)
}

/// Where the model settles under zero input.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RestState {
    /// The last state reached.
    #[serde(skip)]
    pub state: Vec<f64>,
    /// Steps taken.
    pub steps: usize,
    /// max_i |F(s, 0)_i − s_i| at the last state.
    pub residual: f64,
    /// Whether the residual fell below the tolerance: a fixed point of F(·, 0).
    pub converged: bool,
    /// max_i |s_i| at the last state.
    pub max_abs: f64,
}

/// Iterates s ← F(s, 0) from the zero state until max |Δs| ≤ `tolerance` or `max_steps` steps.
pub fn rest_state(subject: &Subject, max_steps: usize, tolerance: f64) -> Result<RestState> {
    let n = subject.state_size();
    let zero_input = vec![0.0; subject.drive().input_size];
    let mut s = vec![0.0; n];
    let mut residual = f64::INFINITY;
    let mut steps = 0;
    while steps < max_steps {
        let next = step_states(subject, std::slice::from_ref(&s), &zero_input)?.remove(0);
        if next.iter().any(|v| !v.is_finite()) {
            return Err(ProbeError::NonFinite(format!(
                "the state under zero input after {} steps",
                steps + 1
            )));
        }
        residual = next
            .iter()
            .zip(&s)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        s = next;
        steps += 1;
        if residual <= tolerance {
            break;
        }
    }
    let max_abs = s.iter().map(|v| v.abs()).fold(0.0, f64::max);
    Ok(RestState {
        state: s,
        steps,
        residual,
        converged: residual <= tolerance,
        max_abs,
    })
}
