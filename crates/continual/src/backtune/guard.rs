//! The backward guard `g(u)` applied to the back-propagated part of the adjoint,
//! `ε = ρ' + g(Σ β ε)` (RR-9100, §3). It keeps the sign of `u` and changes only its magnitude, so
//! that the backward error neither explodes nor dies out. Its scale is the mean non-zero output
//! error `ρ̄' = mean{|ρ'_nt| : ρ'_nt ≠ 0}` (when there is none the guard is the identity).
//!
//! - [`Guard::Smooth`], the report's: with `ν = 1e−6·ρ̄'`, `ω = 1e6·ρ̄'`, `α = 1e−3·ω`,
//!   `|g(u)| = ν + u²/(4ν)` for `|u| < 2ν`; `|u|` for `2ν ≤ |u| ≤ ω − α`;
//!   `ω − α·exp(−(|u| − ω)/α − 1)` for `|u| > ω − α`. It is C¹ (value and slope 1 match at
//!   both joints), increasing, at least `ν` and below `ω`.
//! - [`Guard::Code`], the cruder rule of the reference code: with `e = u/ρ̄'`, clip `e` at
//!   `±1e6`, and replace `|e| < 1e−6` by `1e−6 + 2.5e5·e²` (that is `ν + u²/(4ν)` on the band
//!   `|u| < ν` only), times `ρ̄'`. It is *not* continuous: at `|e| = 1e−6` it jumps from
//!   `1.25e−6·ρ̄'` down to `1e−6·ρ̄'`, so it is monotone only on each side of that point.
//! - [`Guard::Identity`]: no guard; the adjoint is then the exact gradient of the criterion.
//!
//! `u = 0` (exactly) is given the positive sign.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Guard {
    Identity,
    Code,
    Smooth,
}

/// `ρ̄'`: the mean of the non-zero `|ρ'|` (0 when all are zero).
pub fn mean_output_error(rho_prime: &[f64]) -> f64 {
    let (mut s, mut k) = (0.0, 0usize);
    for &r in rho_prime {
        if r != 0.0 {
            s += r.abs();
            k += 1;
        }
    }
    if k == 0 {
        0.0
    } else {
        s / k as f64
    }
}

impl Guard {
    /// `g(u)` at scale `rho_bar = ρ̄'`.
    pub fn apply(self, u: f64, rho_bar: f64) -> f64 {
        if self == Guard::Identity || rho_bar <= 0.0 || !rho_bar.is_finite() {
            return u;
        }
        let sign = if u < 0.0 { -1.0 } else { 1.0 };
        let a = u.abs();
        let mag = match self {
            Guard::Identity => unreachable!(),
            Guard::Code => {
                let e = a / rho_bar;
                if e > 1e6 {
                    1e6 * rho_bar
                } else if e < 1e-6 {
                    rho_bar * (1e-6 + 2.5e5 * e * e)
                } else {
                    a
                }
            }
            Guard::Smooth => {
                let nu = 1e-6 * rho_bar;
                let omega = 1e6 * rho_bar;
                let alpha = 1e-3 * omega;
                if a < 2.0 * nu {
                    nu + a * a / (4.0 * nu)
                } else if a <= omega - alpha {
                    a
                } else {
                    omega - alpha * (-(a - omega) / alpha - 1.0).exp()
                }
            }
        };
        sign * mag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(r: f64) -> Vec<f64> {
        // Log-spaced magnitudes from 1e-10·r to 1e10·r, both signs, and 0.
        let mut v = vec![0.0];
        for k in -100..=100 {
            let a = r * 10f64.powf(k as f64 / 10.0);
            v.push(a);
            v.push(-a);
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    #[test]
    fn both_guards_keep_the_sign_and_are_the_identity_on_their_band() {
        let r = 0.37;
        for g in [Guard::Code, Guard::Smooth] {
            for u in grid(r) {
                let y = g.apply(u, r);
                assert!(
                    y != 0.0 && (u == 0.0 || y.signum() == u.signum()),
                    "{g:?} {u} {y}"
                );
                assert!(
                    y.abs() >= 1e-6 * r * (1.0 - 1e-12) && y.abs() <= 1e6 * r,
                    "{g:?} {u}"
                );
            }
            for &u in &[3e-6 * r, 1e-3 * r, r, -5.0 * r, 1e5 * r, -9e5 * r] {
                assert_eq!(g.apply(u, r), u, "{g:?} identity at {u}");
            }
        }
        assert_eq!(Guard::Identity.apply(1e-30, r), 1e-30);
        assert_eq!(
            Guard::Code.apply(1e-30, 0.0),
            1e-30,
            "no output error: identity"
        );
    }

    #[test]
    fn smooth_guard_is_increasing_and_continuous_with_slope_one_at_its_joints() {
        let r = 2.0;
        let v = grid(r);
        for w in v.windows(2) {
            assert!(
                Guard::Smooth.apply(w[1], r) >= Guard::Smooth.apply(w[0], r),
                "{w:?}"
            );
        }
        let (nu, omega) = (1e-6 * r, 1e6 * r);
        for joint in [2.0 * nu, omega - 1e-3 * omega] {
            let h = joint * 1e-7;
            let lo = Guard::Smooth.apply(joint - h, r);
            let hi = Guard::Smooth.apply(joint + h, r);
            assert!(
                ((hi - lo) / (2.0 * h) - 1.0).abs() < 1e-3,
                "slope at {joint}"
            );
        }
        assert!(Guard::Smooth.apply(1e12, r) <= omega && Guard::Smooth.apply(1e6, r) < omega);
    }

    #[test]
    fn code_guard_is_increasing_on_each_side_of_its_jump() {
        let r = 1.0;
        let below: Vec<f64> = grid(r)
            .into_iter()
            .filter(|&u| (0.0..1e-6).contains(&u))
            .collect();
        let above: Vec<f64> = grid(r).into_iter().filter(|&u| u >= 1e-6).collect();
        for side in [below, above] {
            for w in side.windows(2) {
                assert!(Guard::Code.apply(w[1], r) >= Guard::Code.apply(w[0], r));
            }
        }
        // The documented jump at |e| = 1e-6: 1.25e-6 just below, 1e-6 at the band edge.
        let just_below = Guard::Code.apply(1e-6 * (1.0 - 1e-9), r);
        assert!((just_below - 1.25e-6).abs() < 1e-12);
        assert_eq!(Guard::Code.apply(1e-6, r), 1e-6);
        assert_eq!(Guard::Code.apply(-1e9, r), -1e6);
        assert_eq!(mean_output_error(&[0.0, -2.0, 0.0, 4.0]), 3.0);
    }
}
