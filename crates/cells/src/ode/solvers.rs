//! ODE solvers over batched states with a per-sample time span.
//!
//! `dy/dt = f(t, y)` with `y` (B, H) and per-sample times `t` (B, 1). Fixed-step methods take
//! `unfolds` equal steps of `span/unfolds` (each sample its own step); Dormand–Prince 5(4) adapts
//! one step size per sample with the usual controller. Every update is a tensor expression, so
//! Candle's autograd differentiates through the solver (discretise-then-optimise).
use candle_core::{Device, Tensor};

use crate::config::SolverKind;
use crate::error::{CellError, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Solver {
    /// Explicit Euler (order 1).
    Euler,
    /// Heun's method, the explicit trapezoid (order 2).
    Heun,
    /// Classic fourth-order Runge–Kutta (the 1/6, 1/3, 1/3, 1/6 rule, not the 3/8 variant).
    Rk4,
    /// Dormand–Prince 5(4), adaptive, per sample; fails after `max_steps` attempts.
    Dopri5 {
        rtol: f64,
        atol: f64,
        max_steps: usize,
    },
}

impl Solver {
    /// The solver of a configuration; the adaptive one with its tolerances and step budget.
    pub fn new(kind: SolverKind, rtol: f64, atol: f64, max_steps: usize) -> Result<Self> {
        Ok(match kind {
            SolverKind::Euler => Solver::Euler,
            SolverKind::Heun => Solver::Heun,
            SolverKind::Rk4 => Solver::Rk4,
            SolverKind::Dopri5 => {
                if !(rtol > 0.0 && atol > 0.0) || max_steps == 0 {
                    return Err(CellError::Config(
                        "dopri5 needs rtol > 0, atol > 0 and max_steps ≥ 1".into(),
                    ));
                }
                Solver::Dopri5 {
                    rtol,
                    atol,
                    max_steps,
                }
            }
        })
    }
}

/// Integrates `f` from `y0` at times `t0` over `span` (both (B, 1)); returns y(t0 + span).
pub fn integrate(
    f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
    y0: &Tensor,
    t0: &Tensor,
    span: &Tensor,
    solver: Solver,
    unfolds: usize,
) -> Result<Tensor> {
    match solver {
        Solver::Dopri5 {
            rtol,
            atol,
            max_steps,
        } => dopri5(f, y0, t0, span, rtol, atol, max_steps, unfolds),
        _ => {
            let h = span.affine(1.0 / unfolds as f64, 0.0)?;
            let half = h.affine(0.5, 0.0)?;
            let mut y = y0.clone();
            let mut t = t0.clone();
            for _ in 0..unfolds {
                y = match solver {
                    Solver::Euler => (&y + f(&t, &y)?.broadcast_mul(&h)?)?,
                    Solver::Heun => {
                        let k1 = f(&t, &y)?;
                        let k2 = f(&(&t + &h)?, &(&y + k1.broadcast_mul(&h)?)?)?;
                        (&y + (k1 + k2)?.broadcast_mul(&half)?)?
                    }
                    Solver::Rk4 => {
                        let tm = (&t + &half)?;
                        let k1 = f(&t, &y)?;
                        let k2 = f(&tm, &(&y + k1.broadcast_mul(&half)?)?)?;
                        let k3 = f(&tm, &(&y + k2.broadcast_mul(&half)?)?)?;
                        let k4 = f(&(&t + &h)?, &(&y + k3.broadcast_mul(&h)?)?)?;
                        let sum = (k1 + k4 + (k2 + k3)?.affine(2.0, 0.0)?)?;
                        (&y + sum.broadcast_mul(&h)?.affine(1.0 / 6.0, 0.0)?)?
                    }
                    Solver::Dopri5 { .. } => unreachable!(),
                };
                t = (&t + &h)?;
            }
            Ok(y)
        }
    }
}

const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// Fifth-order weights minus the embedded fourth-order ones (the error estimate).
const E: [f64; 7] = [
    35.0 / 384.0 - 5179.0 / 57600.0,
    0.0,
    500.0 / 1113.0 - 7571.0 / 16695.0,
    125.0 / 192.0 - 393.0 / 640.0,
    -2187.0 / 6784.0 + 92097.0 / 339200.0,
    11.0 / 84.0 - 187.0 / 2100.0,
    -1.0 / 40.0,
];

fn col(v: &[f64], like: &Tensor, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(v.to_vec(), (v.len(), 1), device)?.to_dtype(like.dtype())?)
}

#[allow(clippy::too_many_arguments)]
fn dopri5(
    f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
    y0: &Tensor,
    t0: &Tensor,
    span: &Tensor,
    rtol: f64,
    atol: f64,
    max_steps: usize,
    unfolds: usize,
) -> Result<Tensor> {
    let dev = y0.device().clone();
    let to_vec = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.flatten_all()?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?)
    };
    let b = y0.dim(0)?;
    let total = to_vec(span)?;
    let mut t = to_vec(t0)?;
    let mut done = vec![0.0f64; b];
    let mut h: Vec<f64> = total.iter().map(|s| s / unfolds as f64).collect();
    let mut y = y0.clone();
    let finished =
        |done: &[f64], i: usize| (total[i] - done[i]).abs() <= 1e-12 * total[i].abs().max(1e-300);
    for _ in 0..max_steps {
        if (0..b).all(|i| finished(&done, i)) {
            return Ok(y);
        }
        let hs: Vec<f64> = (0..b)
            .map(|i| {
                if finished(&done, i) {
                    0.0
                } else {
                    h[i].min(total[i] - done[i])
                }
            })
            .collect();
        let ht = col(&hs, y0, &dev)?;
        let tt = col(&t, y0, &dev)?;
        let mut k: Vec<Tensor> = vec![f(&tt, &y)?];
        for s in 0..6 {
            let mut acc = y.clone();
            for (j, a) in A[s].iter().enumerate() {
                if *a != 0.0 {
                    acc = (acc + k[j].broadcast_mul(&ht)?.affine(*a, 0.0)?)?;
                }
            }
            let ts = (&tt + ht.affine(C[s], 0.0)?)?;
            if s < 5 {
                k.push(f(&ts, &acc)?);
            } else {
                // The sixth row is the fifth-order solution; its slope is the seventh stage.
                k.push(f(&ts, &acc)?);
                let y5 = acc;
                let mut err = k[0].affine(E[0], 0.0)?;
                for (j, e) in E.iter().enumerate().skip(1) {
                    if *e != 0.0 {
                        err = (err + k[j].affine(*e, 0.0)?)?;
                    }
                }
                let err = err.broadcast_mul(&ht)?.detach();
                let scale = y
                    .detach()
                    .abs()?
                    .maximum(&y5.detach().abs()?)?
                    .affine(rtol, atol)?;
                let ratio = (err / scale)?.sqr()?.mean(1)?.sqrt()?;
                let norms = to_vec(&ratio)?;
                let accept: Vec<f64> = (0..b)
                    .map(|i| {
                        if hs[i] > 0.0 && norms[i] <= 1.0 {
                            1.0
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let m = col(&accept, y0, &dev)?;
                y = (y5.broadcast_mul(&m)? + y.broadcast_mul(&m.affine(-1.0, 1.0)?)?)?;
                for i in 0..b {
                    if hs[i] == 0.0 {
                        continue;
                    }
                    if accept[i] == 1.0 {
                        t[i] += hs[i];
                        done[i] += hs[i];
                    }
                    let n = norms[i];
                    let factor = if n == 0.0 {
                        10.0
                    } else {
                        (0.9 * n.powf(-0.2)).clamp(0.2, 10.0)
                    };
                    if !n.is_finite() {
                        return Err(CellError::Input(format!(
                            "dopri5: the state of sample {i} became non-finite at t = {:.6} (step {:.3e})",
                            t[i], hs[i]
                        )));
                    }
                    h[i] = hs[i] * factor;
                    if h[i] < 1e-10 * total[i].abs() {
                        return Err(CellError::Input(format!(
                            "dopri5: sample {i} stalled at t = {:.6} ({:.6} of {:.6} done): step {:.3e} cannot meet rtol {rtol}, atol {atol}",
                            t[i], done[i], total[i], h[i]
                        )));
                    }
                }
            }
        }
    }
    if (0..b).all(|i| finished(&done, i)) {
        return Ok(y);
    }
    let i = (0..b).find(|&i| !finished(&done, i)).unwrap();
    Err(CellError::Input(format!(
        "dopri5: {max_steps} steps were not enough: sample {i} stalled at t = {:.6} ({:.6} of {:.6} done, step {:.3e}); \
         raise max_steps or loosen rtol/atol",
        t[i], done[i], total[i], h[i]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn t(v: &[f64]) -> Tensor {
        Tensor::from_vec(v.to_vec(), (v.len(), 1), &Device::Cpu).unwrap()
    }

    /// y' = −y + cos(t): exact y(t) = c·e^{−t} + (cos t + sin t)/2, with y(t0) = y0.
    fn max_err(solver: Solver, unfolds: usize) -> f64 {
        let f = |tt: &Tensor, y: &Tensor| -> Result<Tensor> {
            Ok((y.neg()? + tt.cos()?.broadcast_as(y.shape())?)?)
        };
        let t0 = [0.0f64, 0.3, -1.0];
        let span = [1.0f64, 2.0, 0.5];
        let y0 = Tensor::from_vec(
            vec![1.0f64, -0.5, 2.0, 0.7, 0.0, -1.0],
            (3, 2),
            &Device::Cpu,
        )
        .unwrap();
        let y = integrate(&f, &y0, &t(&t0), &t(&span), solver, unfolds).unwrap();
        let y: Vec<Vec<f64>> = y.to_vec2().unwrap();
        let y0v: Vec<Vec<f64>> = y0.to_vec2().unwrap();
        let mut worst: f64 = 0.0;
        for i in 0..3 {
            for j in 0..2 {
                let p = |s: f64| (s.cos() + s.sin()) / 2.0;
                let c = (y0v[i][j] - p(t0[i])) * t0[i].exp();
                let t1 = t0[i] + span[i];
                let exact = c * (-t1).exp() + p(t1);
                worst = worst.max((y[i][j] - exact).abs());
            }
        }
        worst
    }

    #[test]
    fn fixed_step_methods_converge_at_their_order() {
        for (solver, order) in [
            (Solver::Euler, 1.0),
            (Solver::Heun, 2.0),
            (Solver::Rk4, 4.0),
        ] {
            let (e1, e2) = (max_err(solver, 16), max_err(solver, 32));
            let measured = (e1 / e2).log2();
            assert!(
                (measured - order).abs() < 0.25,
                "{solver:?}: measured order {measured:.3}, errors {e1:.3e} {e2:.3e}"
            );
        }
    }

    #[test]
    fn dopri5_meets_its_tolerance_per_sample() {
        let e = max_err(
            Solver::Dopri5 {
                rtol: 1e-8,
                atol: 1e-10,
                max_steps: 500,
            },
            1,
        );
        assert!(e < 1e-7, "{e:.3e}");
        let loose = max_err(
            Solver::Dopri5 {
                rtol: 1e-3,
                atol: 1e-6,
                max_steps: 500,
            },
            1,
        );
        assert!(loose > e && loose < 1e-2, "{loose:.3e}");
    }

    #[test]
    fn dopri5_reports_where_it_stalls() {
        // y' = y² blows up at t = 1 for y(0) = 1.
        let f = |_: &Tensor, y: &Tensor| -> Result<Tensor> { Ok(y.sqr()?) };
        let y0 = Tensor::ones((2, 1), DType::F64, &Device::Cpu)
            .unwrap()
            .affine(1.0, 0.0)
            .unwrap();
        let y0 = (y0 * t(&[0.1, 1.0])).unwrap();
        let err = integrate(
            &f,
            &y0,
            &t(&[0.0, 0.0]),
            &t(&[2.0, 2.0]),
            Solver::Dopri5 {
                rtol: 1e-6,
                atol: 1e-8,
                max_steps: 400,
            },
            1,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sample 1") && err.contains("dopri5"), "{err}");
    }

    #[test]
    fn gradients_flow_through_the_solver() {
        // y' = −a·y, y(T) = y0·e^{−aT}: d y(T)/d a = −T·y(T).
        let a = candle_core::Var::new(&[0.7f64], &Device::Cpu).unwrap();
        let f = |_: &Tensor, y: &Tensor| -> Result<Tensor> {
            Ok(y.broadcast_mul(a.as_tensor())?.neg()?)
        };
        let y0 = t(&[1.5]);
        let y = integrate(&f, &y0, &t(&[0.0]), &t(&[2.0]), Solver::Rk4, 64).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g = g.get(a.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
        let exact = -2.0 * 1.5 * (-1.4f64).exp();
        assert!((g - exact).abs() < 1e-6, "{g} vs {exact}");
    }
}
