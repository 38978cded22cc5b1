//! The supervised criteria of the report (its `TransformSupervisedCriterion`), each a sum over
//! the observed output nodes and the steps where they have a target, of `ρ(e)` with
//! `e = x − ō`, and its derivative `ρ'`, the output error that starts the backward pass:
//!
//! | name | `ρ` | `ρ'` (w.r.t. `x`) |
//! |---|---|---|
//! | `2` least squares | `e²/2` | `e` |
//! | `1` reweighted L1 | `e²/(2(ν+|ê|))` | `e/(ν+|ê|)` |
//! | `0` reweighted L0 | `e²/(2(ν+ê²))` | `e/(ν+ê²)` |
//! | `a` Huber-like (pseudo-Huber) | `δ²(√(1+(e/δ)²) − 1)` | `e/√(1+(e/δ)²)` |
//! | `b` biweight, `s = e/c` | `c²/6·(s⁶ − 3s⁴ + 3s²)` if `|s|<1`, else `c²/6` | `e(1−s²)²` if `|s|<1`, else 0 |
//! | `h` Boolean margin, `v = ν − sg(ō−½)(x−½)` | `H(v)v²/2` | `−sg(ō−½)·H(v)·v` |
//!
//! `ê` is the previous estimate of the error, held fixed while one iteration's candidates are
//! compared (iteratively reweighted least squares: at `ê = e` the reweighted L1 is `≈ |e|/2`
//! and the L0 one `≈ 1/2` per non-zero error). The biweight is the report's
//! `x⁶ − 3x⁴ + 3x² = 1 − (1−x²)³`, scaled by `c²/6` so that every criterion is `≈ e²/2` near 0.
//! The report leaves the Huber-like form open; the pseudo-Huber form is used here.
use serde::{Deserialize, Serialize};

use super::network::{Data, Trajectory};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Criterion {
    L2,
    ReweightedL1 { nu: f64 },
    ReweightedL0 { nu: f64 },
    Huber { delta: f64 },
    Biweight { scale: f64 },
    Margin { nu: f64 },
}

impl Criterion {
    /// `ρ` at node value `x`, target `o`, previous error estimate `e_hat`.
    pub fn rho(self, x: f64, o: f64, e_hat: f64) -> f64 {
        let e = x - o;
        match self {
            Criterion::L2 => 0.5 * e * e,
            Criterion::ReweightedL1 { nu } => e * e / (2.0 * (nu + e_hat.abs())),
            Criterion::ReweightedL0 { nu } => e * e / (2.0 * (nu + e_hat * e_hat)),
            Criterion::Huber { delta } => {
                delta * delta * ((1.0 + (e / delta).powi(2)).sqrt() - 1.0)
            }
            Criterion::Biweight { scale } => {
                let s2 = (e / scale).powi(2);
                let b = if s2 < 1.0 {
                    1.0 - (1.0 - s2).powi(3)
                } else {
                    1.0
                };
                scale * scale / 6.0 * b
            }
            Criterion::Margin { nu } => {
                let v = nu - sg(o - 0.5) * (x - 0.5);
                if v > 0.0 {
                    0.5 * v * v
                } else {
                    0.0
                }
            }
        }
    }

    /// `ρ' = ∂ρ/∂x`.
    pub fn drho(self, x: f64, o: f64, e_hat: f64) -> f64 {
        let e = x - o;
        match self {
            Criterion::L2 => e,
            Criterion::ReweightedL1 { nu } => e / (nu + e_hat.abs()),
            Criterion::ReweightedL0 { nu } => e / (nu + e_hat * e_hat),
            Criterion::Huber { delta } => e / (1.0 + (e / delta).powi(2)).sqrt(),
            Criterion::Biweight { scale } => {
                let s2 = (e / scale).powi(2);
                if s2 < 1.0 {
                    e * (1.0 - s2).powi(2)
                } else {
                    0.0
                }
            }
            Criterion::Margin { nu } => {
                let v = nu - sg(o - 0.5) * (x - 0.5);
                if v > 0.0 {
                    -sg(o - 0.5) * v
                } else {
                    0.0
                }
            }
        }
    }

    /// Whether `ρ` reads `ê` (the reweighted criteria).
    pub fn reweighted(self) -> bool {
        matches!(
            self,
            Criterion::ReweightedL1 { .. } | Criterion::ReweightedL0 { .. }
        )
    }
}

fn sg(v: f64) -> f64 {
    if v < 0.0 {
        -1.0
    } else {
        1.0
    }
}

/// `e = x − ō` for every observed node and step, laid out as [`Data::targets`] (NaN where
/// there is no target).
pub fn errors(traj: &Trajectory, data: &Data) -> Vec<f64> {
    let mut e = vec![f64::NAN; data.targets.len()];
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let target = data.target(o, t);
            if !target.is_nan() {
                e[o * data.steps + t] = traj.get(n, t) - target;
            }
        }
    }
    e
}

/// `Σ ρ` over the observed nodes and steps with a target. `e_hat` is laid out as
/// [`Data::targets`]; an empty slice means `ê = e`.
pub fn loss(crit: Criterion, traj: &Trajectory, data: &Data, e_hat: &[f64]) -> f64 {
    let mut l = 0.0;
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let target = data.target(o, t);
            if target.is_nan() {
                continue;
            }
            let x = traj.get(n, t);
            let eh = if e_hat.is_empty() {
                x - target
            } else {
                e_hat[o * data.steps + t]
            };
            l += crit.rho(x, target, eh);
        }
    }
    l
}

/// `ρ'_nt` for every node and step, laid out as [`Trajectory::x`] (`t·N + n`), 0 on nodes or
/// steps without a target.
pub fn output_errors(crit: Criterion, traj: &Trajectory, data: &Data, e_hat: &[f64]) -> Vec<f64> {
    let mut r = vec![0.0; traj.x.len()];
    for (o, &n) in data.observed.iter().enumerate() {
        for t in 0..data.steps {
            let target = data.target(o, t);
            if target.is_nan() {
                continue;
            }
            let x = traj.get(n, t);
            let eh = if e_hat.is_empty() {
                x - target
            } else {
                e_hat[o * data.steps + t]
            };
            r[t * traj.nodes + n] = crit.drho(x, target, eh);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Criterion; 6] = [
        Criterion::L2,
        Criterion::ReweightedL1 { nu: 0.1 },
        Criterion::ReweightedL0 { nu: 0.1 },
        Criterion::Huber { delta: 0.5 },
        Criterion::Biweight { scale: 2.0 },
        Criterion::Margin { nu: 0.2 },
    ];

    #[test]
    fn derivatives_match_central_differences() {
        for c in ALL {
            for &(x, o) in &[(0.3, 0.0), (-0.4, 1.0), (1.7, 0.2), (0.45, 1.0), (0.8, 0.0)] {
                let h = 1e-6;
                let e_hat = 0.25;
                let fd = (c.rho(x + h, o, e_hat) - c.rho(x - h, o, e_hat)) / (2.0 * h);
                assert!((fd - c.drho(x, o, e_hat)).abs() < 1e-6, "{c:?} at {x}, {o}");
            }
        }
    }

    #[test]
    fn every_criterion_is_half_the_square_near_zero_and_non_negative() {
        for c in ALL
            .into_iter()
            .filter(|c| !matches!(c, Criterion::Margin { .. }))
        {
            let e = 1e-3;
            let scale = match c {
                Criterion::ReweightedL1 { nu } => 1.0 / nu,
                Criterion::ReweightedL0 { nu } => 1.0 / nu,
                _ => 1.0,
            };
            let r = c.rho(e, 0.0, 0.0);
            assert!((r / (0.5 * e * e * scale) - 1.0).abs() < 1e-5, "{c:?}");
            assert_eq!(c.rho(0.0, 0.0, 0.0), 0.0);
            assert!(c.rho(-3.0, 0.0, 1.0) > 0.0);
        }
        // The margin is zero beyond it on the right side, positive on the wrong side.
        let m = Criterion::Margin { nu: 0.2 };
        assert_eq!(m.rho(0.9, 1.0, 0.0), 0.0);
        assert_eq!(m.rho(0.1, 0.0, 0.0), 0.0);
        assert!(m.rho(0.6, 1.0, 0.0) > 0.0 && m.rho(0.4, 1.0, 0.0) > m.rho(0.6, 1.0, 0.0));
        // The biweight is bounded: an outlier costs c²/6 at most.
        let b = Criterion::Biweight { scale: 2.0 };
        assert_eq!(b.rho(100.0, 0.0, 0.0), 4.0 / 6.0);
    }
}
