//! An adaptive Dormand–Prince 5(4) solver in plain f64 for one state vector, counting its steps,
//! with output at any times by cubic Hermite interpolation between accepted steps.
//!
//! crates/cells has the same method over Candle tensors, restarted at every input step of a
//! cell with a first step of 1/unfolds and no count of its steps; the trajectory-length probe
//! needs one solve over a whole input signal, its number of accepted steps, and states at output
//! times the solver does not step to (its steps may be longer than the spacing of the samples).
//! The method and controller are the cells' ones: the same tableau, the error norm the RMS of
//! err_i/(atol + rtol·max(|y_i|, |y5_i|)), a step accepted when the norm is ≤ 1, the next step
//! the last one times 0.9·norm^(−1/5) clamped to [0.2, 10]. The first step follows Hairer,
//! Nørsett & Wanner (Solving ODEs I, §II.4): h = min(100 h₀, (0.01/max(d₁, d₂))^(1/5)) from the
//! sizes of y₀, f(y₀) and a trial Euler step. The fifth-order solution is propagated and its
//! last stage reused as the next step's first (FSAL). Between two accepted steps the output is
//! the method's continuous extension of order 4 (from the step's seven stages, no extra
//! evaluation): the cubic Hermite interpolant of (y, f) at both ends plus a quartic correction
//! θ²(1 − θ)²·h·Σ d_i k_i.
use serde::{Deserialize, Serialize};

use crate::error::{invalid, ProbeError, Result};
use crate::plain_cell::tableau::{A, C, E};

/// Weights of the fourth-order continuous extension of Dormand–Prince 5(4) (Shampine 1986;
/// Hairer, Nørsett & Wanner, Solving ODEs I, §II.6), on stages 1, 3–7 (stage 2 has none).
const D: [f64; 7] = [
    -12715105075.0 / 11282082432.0,
    0.0,
    87487479700.0 / 32700410799.0,
    -10690763975.0 / 1880347072.0,
    701980252875.0 / 199316789632.0,
    -1453857185.0 / 822651844.0,
    69997945.0 / 29380423.0,
];

/// Tolerances and step budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dp5Settings {
    pub rtol: f64,
    pub atol: f64,
    /// Most attempted steps (accepted and rejected) of one solve.
    pub max_steps: usize,
}

impl Default for Dp5Settings {
    /// The cells' dopri5 defaults (`CtOptions`: rtol 1e-3, atol 1e-4), with a budget for a
    /// whole signal rather than one input step.
    fn default() -> Self {
        Self {
            rtol: 1e-3,
            atol: 1e-4,
            max_steps: 1_000_000,
        }
    }
}

impl Dp5Settings {
    pub fn validate(&self) -> Result<()> {
        if !(self.rtol > 0.0 && self.rtol.is_finite() && self.atol > 0.0 && self.atol.is_finite()) {
            return Err(invalid(format!(
                "the solver needs rtol > 0 and atol > 0, got rtol {} and atol {}",
                self.rtol, self.atol
            )));
        }
        if self.max_steps == 0 {
            return Err(invalid(
                "the solver's step budget must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

/// What a solve cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Dp5Stats {
    pub accepted: usize,
    pub rejected: usize,
    /// Evaluations of the right-hand side.
    pub evaluations: usize,
}

/// The RMS of v_i / (atol + rtol·|y_i|).
fn rms_scaled(v: &[f64], y: &[f64], s: &Dp5Settings) -> f64 {
    let n = v.len().max(1) as f64;
    (v.iter()
        .zip(y)
        .map(|(v, y)| (v / (s.atol + s.rtol * y.abs())).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// Solves y' = f(t, y) from y(0) = `y0` to `t_end` > 0 and returns y at each of `times`
/// (ascending, in [0, t_end]) with the solver's counts. `f(t, y, out)` writes y' to `out`.
pub fn solve_dense(
    f: &mut dyn FnMut(f64, &[f64], &mut [f64]),
    y0: &[f64],
    t_end: f64,
    times: &[f64],
    s: &Dp5Settings,
) -> Result<(Vec<Vec<f64>>, Dp5Stats)> {
    s.validate()?;
    if !(t_end > 0.0 && t_end.is_finite()) {
        return Err(invalid(format!(
            "the end time must be finite and > 0, got {t_end}"
        )));
    }
    if y0.is_empty() {
        return Err(invalid("a state of zero values"));
    }
    if times.windows(2).any(|w| w[1] < w[0]) || times.iter().any(|&t| !(0.0..=t_end).contains(&t)) {
        return Err(invalid(format!(
            "output times must be ascending within [0, {t_end}]"
        )));
    }
    let n = y0.len();
    let mut stats = Dp5Stats::default();
    let mut out: Vec<Vec<f64>> = Vec::with_capacity(times.len());
    let mut next_out = 0;
    while next_out < times.len() && times[next_out] <= 0.0 {
        out.push(y0.to_vec());
        next_out += 1;
    }
    let mut y = y0.to_vec();
    let mut f0 = vec![0.0; n];
    f(0.0, &y, &mut f0);
    stats.evaluations += 1;
    if f0.iter().any(|v| !v.is_finite()) {
        return Err(ProbeError::Solver(
            "dopri5: the right-hand side is non-finite at t = 0".into(),
        ));
    }

    // First step (Hairer, Nørsett & Wanner, §II.4).
    let d0 = rms_scaled(&y, &y, s);
    let d1 = rms_scaled(&f0, &y, s);
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let y1: Vec<f64> = y.iter().zip(&f0).map(|(y, f)| y + h0 * f).collect();
    let mut f1 = vec![0.0; n];
    f(h0, &y1, &mut f1);
    stats.evaluations += 1;
    let diff: Vec<f64> = f1.iter().zip(&f0).map(|(a, b)| (a - b) / h0).collect();
    let d2 = rms_scaled(&diff, &y, s);
    let big = d1.max(d2);
    let h1 = if big <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / big).powf(0.2)
    };
    let mut h = (100.0 * h0).min(h1).min(t_end);

    let mut t = 0.0f64;
    let mut k: Vec<Vec<f64>> = vec![vec![0.0; n]; 7];
    let mut stage = vec![0.0; n];
    let mut err = vec![0.0; n];
    let mut cont = vec![[0.0f64; 5]; n];
    while t_end - t > 1e-12 * t_end {
        if stats.accepted + stats.rejected >= s.max_steps {
            return Err(ProbeError::Solver(format!(
                "dopri5: {} steps were not enough: stopped at t = {t:.6} of {t_end:.6} (step \
                 {h:.3e}); raise the step budget or loosen rtol/atol",
                s.max_steps
            )));
        }
        let last = h >= t_end - t;
        let hs = if last { t_end - t } else { h };
        k[0].copy_from_slice(&f0);
        for st in 0..6 {
            stage.copy_from_slice(&y);
            for (j, a) in A[st].iter().enumerate() {
                if *a != 0.0 {
                    for r in 0..n {
                        stage[r] += k[j][r] * hs * a;
                    }
                }
            }
            f(t + C[st] * hs, &stage, &mut k[st + 1]);
            stats.evaluations += 1;
        }
        // `stage` now holds the fifth-order solution y5 and k[6] its slope.
        for r in 0..n {
            let mut e = k[0][r] * E[0];
            for (j, c) in E.iter().enumerate().skip(1) {
                if *c != 0.0 {
                    e += k[j][r] * c;
                }
            }
            err[r] = e * hs;
        }
        let norm = (err
            .iter()
            .zip(y.iter().zip(&stage))
            .map(|(e, (a, b))| (e / (a.abs().max(b.abs()) * s.rtol + s.atol)).powi(2))
            .sum::<f64>()
            / n as f64)
            .sqrt();
        if !norm.is_finite() {
            return Err(ProbeError::Solver(format!(
                "dopri5: the state became non-finite at t = {t:.6} (step {hs:.3e})"
            )));
        }
        if norm <= 1.0 {
            let t1 = if last { t_end } else { t + hs };
            // Outputs in (t, t1]: the method's fourth-order continuous extension.
            if next_out < times.len() && times[next_out] <= t1 {
                for r in 0..n {
                    let diff = stage[r] - y[r];
                    let bspl = hs * k[0][r] - diff;
                    let corr = hs
                        * (D[0] * k[0][r]
                            + D[2] * k[2][r]
                            + D[3] * k[3][r]
                            + D[4] * k[4][r]
                            + D[5] * k[5][r]
                            + D[6] * k[6][r]);
                    cont[r] = [y[r], diff, bspl, diff - hs * k[6][r] - bspl, corr];
                }
            }
            while next_out < times.len() && times[next_out] <= t1 {
                let th = ((times[next_out] - t) / hs).clamp(0.0, 1.0);
                let th1 = 1.0 - th;
                out.push(
                    cont.iter()
                        .map(|c| c[0] + th * (c[1] + th1 * (c[2] + th * (c[3] + th1 * c[4]))))
                        .collect(),
                );
                next_out += 1;
            }
            y.copy_from_slice(&stage);
            f0.copy_from_slice(&k[6]);
            t = t1;
            stats.accepted += 1;
        } else {
            stats.rejected += 1;
        }
        let factor = if norm == 0.0 {
            10.0
        } else {
            (0.9 * norm.powf(-0.2)).clamp(0.2, 10.0)
        };
        h = hs * factor;
        if h < 1e-12 * t_end && t_end - t > 1e-12 * t_end {
            return Err(ProbeError::Solver(format!(
                "dopri5: stalled at t = {t:.6} of {t_end:.6}: step {h:.3e} cannot meet rtol {}, \
                 atol {}",
                s.rtol, s.atol
            )));
        }
    }
    while next_out < times.len() {
        out.push(y.clone());
        next_out += 1;
    }
    Ok((out, stats))
}
