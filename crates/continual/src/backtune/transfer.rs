//! The scalar transfer functions a kernel term may apply to its source value, each with its
//! derivative (what the backward pass multiplies by).
//!
//! - identity `f(v) = v`;
//! - the bounded sigmoid of the report, `ζ_[a,b](u) = (a+b)/2 + (b−a)/2 · tanh(2u/(b−a))`,
//!   whose slope at 0 is 1 and which saturates at `a` and `b` (`ζ_[−1,1] = tanh`);
//! - the ReLU saturated at ±`cap` (the report's sparse unit saturates at ±1e6);
//! - the spike profile of the integrate-and-fire unit, `Υ_ε(v) = ζ_[0,1]((v − ½)/ε)`;
//! - the reset leak of the same unit, `v ↦ (1 − Υ_ε(v))·v` (a unit that fired is reset);
//! - a shift `v ↦ v + c` (the integrate-and-fire unit with a learned sharpness reads
//!   `x − ½` through it, [`super::units::aif_learned`]).
//!
//! By design of the report, `0 ≤ f' ≤ 1` for the first three (Υ has slope `1/ε` at ½).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Transfer {
    Identity,
    /// `ζ_[a,b]`, `a < b`.
    Zeta {
        a: f64,
        b: f64,
    },
    /// `min(max(v, 0), cap)`.
    Relu {
        cap: f64,
    },
    /// `Υ_ε(v) = ζ_[0,1]((v − ½)/ε)`.
    Upsilon {
        eps: f64,
    },
    /// `(1 − Υ_ε(v))·v`.
    ResetLeak {
        eps: f64,
    },
    /// `v + by`.
    Shift {
        by: f64,
    },
}

/// `ζ_[a,b](u)`.
pub fn zeta(a: f64, b: f64, u: f64) -> f64 {
    0.5 * (a + b) + 0.5 * (b - a) * (2.0 * u / (b - a)).tanh()
}

/// `ζ'_[a,b](u) = 1 − tanh²(2u/(b−a))`.
pub fn zeta_prime(a: f64, b: f64, u: f64) -> f64 {
    let t = (2.0 * u / (b - a)).tanh();
    1.0 - t * t
}

impl Transfer {
    pub fn value(self, v: f64) -> f64 {
        match self {
            Transfer::Identity => v,
            Transfer::Zeta { a, b } => zeta(a, b, v),
            Transfer::Relu { cap } => v.clamp(0.0, cap),
            Transfer::Upsilon { eps } => zeta(0.0, 1.0, (v - 0.5) / eps),
            Transfer::ResetLeak { eps } => (1.0 - zeta(0.0, 1.0, (v - 0.5) / eps)) * v,
            Transfer::Shift { by } => v + by,
        }
    }

    pub fn derivative(self, v: f64) -> f64 {
        match self {
            Transfer::Identity | Transfer::Shift { .. } => 1.0,
            Transfer::Zeta { a, b } => zeta_prime(a, b, v),
            Transfer::Relu { cap } => {
                if v > 0.0 && v < cap {
                    1.0
                } else {
                    0.0
                }
            }
            Transfer::Upsilon { eps } => zeta_prime(0.0, 1.0, (v - 0.5) / eps) / eps,
            Transfer::ResetLeak { eps } => {
                let u = (v - 0.5) / eps;
                1.0 - zeta(0.0, 1.0, u) - v * zeta_prime(0.0, 1.0, u) / eps
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_central_differences() {
        let fs = [
            Transfer::Identity,
            Transfer::Zeta { a: -1.0, b: 1.0 },
            Transfer::Zeta { a: 0.0, b: 3.0 },
            Transfer::Relu { cap: 1e6 },
            Transfer::Upsilon { eps: 0.3 },
            Transfer::ResetLeak { eps: 0.3 },
            Transfer::Shift { by: -0.5 },
        ];
        for f in fs {
            for &v in &[-1.3, -0.2, 0.37, 0.5, 0.9, 2.1] {
                let h = 1e-6;
                let fd = (f.value(v + h) - f.value(v - h)) / (2.0 * h);
                assert!((fd - f.derivative(v)).abs() < 1e-6, "{f:?} at {v}");
            }
        }
        // ζ_[−1,1] is tanh; ζ_[a,b] has slope 1 at 0 and its bounds as limits.
        assert!((zeta(-1.0, 1.0, 0.7) - 0.7f64.tanh()).abs() < 1e-15);
        assert!((zeta_prime(2.0, 5.0, 0.0) - 1.0).abs() < 1e-15);
        assert!((zeta(2.0, 5.0, 1e3) - 5.0).abs() < 1e-12);
        assert!((zeta(2.0, 5.0, -1e3) - 2.0).abs() < 1e-12);
    }
}
