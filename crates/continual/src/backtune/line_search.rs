//! Brent's minimisation of a function of one variable on an interval `[a, b]` (Brent 1973,
//! "Algorithms for minimization without derivatives", ch. 5): golden-section steps, replaced by
//! the vertex of the parabola through the three best points whenever that vertex falls inside
//! the bracket and the step is less than half the one before last. It stops when the bracket
//! around the best point `x` is within `2·tol` with `tol = rel·|x| + abs`.
//!
//! The report's line searches use a relative precision of `1e−2`. The end points themselves are
//! never evaluated; a caller that needs them (the full second-order step at `u = 1`) evaluates
//! them itself. A non-finite value is treated as `+∞`.

/// The result of a line search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Minimum {
    pub x: f64,
    pub f: f64,
    pub evals: usize,
}

/// Minimises `f` on `[a, b]` to relative precision `rel` (plus `abs`), with at most `max_evals`
/// evaluations.
pub fn brent<F: FnMut(f64) -> f64>(
    mut f: F,
    a: f64,
    b: f64,
    rel: f64,
    abs: f64,
    max_evals: usize,
) -> Minimum {
    let golden = 0.5 * (3.0 - 5f64.sqrt());
    let mut eval = |u: f64| {
        let y = f(u);
        if y.is_finite() {
            y
        } else {
            f64::INFINITY
        }
    };
    let (mut lo, mut hi) = if a <= b { (a, b) } else { (b, a) };
    let mut x = lo + golden * (hi - lo);
    let (mut w, mut v) = (x, x);
    let mut fx = eval(x);
    let (mut fw, mut fv) = (fx, fx);
    let mut evals = 1;
    let (mut d, mut e) = (0.0f64, 0.0f64);
    while evals < max_evals {
        let mid = 0.5 * (lo + hi);
        let tol1 = rel * x.abs() + abs;
        let tol2 = 2.0 * tol1;
        if (x - mid).abs() <= tol2 - 0.5 * (hi - lo) {
            break;
        }
        let mut golden_step = true;
        if e.abs() > tol1 {
            // The parabola through (v, fv), (w, fw), (x, fx): its vertex is x + p/q.
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            } else {
                q = -q;
            }
            let e_before = e;
            if p.abs() < (0.5 * q * e_before).abs() && p > q * (lo - x) && p < q * (hi - x) {
                e = d;
                d = p / q;
                let u = x + d;
                if u - lo < tol2 || hi - u < tol2 {
                    d = if mid >= x { tol1 } else { -tol1 };
                }
                golden_step = false;
            }
        }
        if golden_step {
            e = if x >= mid { lo - x } else { hi - x };
            d = golden * e;
        }
        let u = if d.abs() >= tol1 {
            x + d
        } else {
            x + tol1.copysign(d)
        };
        let fu = eval(u);
        evals += 1;
        if fu <= fx {
            if u >= x {
                lo = x;
            } else {
                hi = x;
            }
            (v, fv) = (w, fw);
            (w, fw) = (x, fx);
            (x, fx) = (u, fu);
        } else {
            if u < x {
                lo = u;
            } else {
                hi = u;
            }
            if fu <= fw || w == x {
                (v, fv) = (w, fw);
                (w, fw) = (u, fu);
            } else if fu <= fv || v == x || v == w {
                (v, fv) = (u, fu);
            }
        }
    }
    Minimum { x, f: fx, evals }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_known_minima_to_the_requested_precision() {
        // A parabola: the first parabolic step lands on the vertex; the rest only shrinks the
        // bracket to the tolerance.
        let m = brent(|x| (x - 0.3).powi(2) + 1.0, 0.0, 1.0, 1e-8, 1e-12, 100);
        assert!(
            (m.x - 0.3).abs() < 1e-7 && (m.f - 1.0).abs() < 1e-12,
            "{m:?}"
        );
        assert!(m.evals < 40, "{m:?}");
        let coarse = brent(|x| (x - 0.3).powi(2) + 1.0, 0.0, 1.0, 1e-2, 1e-6, 100);
        assert!(
            (coarse.x - 0.3).abs() < 1e-2 && coarse.evals < m.evals,
            "{coarse:?}"
        );
        // A non-parabolic function, minimum of x⁴ − 3x at x = (3/4)^{1/3}.
        let m = brent(|x| x.powi(4) - 3.0 * x, -2.0, 3.0, 1e-8, 1e-12, 200);
        assert!((m.x - 0.75f64.powf(1.0 / 3.0)).abs() < 1e-6, "{m:?}");
        // cos on [0, 2π]: minimum at π, found to the report's relative precision 1e-2.
        let m = brent(f64::cos, 0.0, 2.0 * std::f64::consts::PI, 1e-2, 1e-10, 100);
        assert!((m.x - std::f64::consts::PI).abs() < 0.1, "{m:?}");
        // A monotone function: the minimum approaches the lower end of the bracket.
        let m = brent(|x| x, 0.0, 1.0, 1e-3, 1e-6, 100);
        assert!(m.x < 1e-3, "{m:?}");
        // Non-finite values count as +∞.
        let m = brent(
            |x| if x > 0.5 { f64::NAN } else { (x - 0.2).abs() },
            0.0,
            1.0,
            1e-6,
            1e-9,
            100,
        );
        assert!((m.x - 0.2).abs() < 1e-5, "{m:?}");
    }
}
