//! Backward tuning: the adjoint state `ε` (the Lagrange multipliers of the network equations)
//! and the gradient it gives (RR-9100, §3, steps 2 and 3).
//!
//! With `L = ρ(x) + Σ_nt ε_nt (x̃_n(t) − x_n(t))`, `∂L/∂x = 0` gives, from `t = T−1` down to 0,
//!
//! `ε_n't' = ρ'_n't' + g( Σ_{nt efferent to n't'} β^{n't'}_{nt} ε_nt )`,
//! `β^{n't'}_{nt} = ∂x̃_n(t)/∂x_n'(t') = Σ_{terms of n reading n' at delay t−t'} c · f'(x_n'(t'))`
//! (for a gated term `f(s)·h(s')`, `c·f'(s)·h(s')` towards `s` and `c·f(s)·h'(s')` towards `s'`)
//!
//! with `c` the term's fixed coefficient or its weight `W_nd`, the efferent nodes being those
//! with `t' < t ≤ t' + R`, or `t = t'` and `n < n'`; and `∂L/∂W = 0` gives the gradient
//!
//! `∂L/∂W_nd = Σ_t φ_ndt ε_nt`
//!
//! (a local, "Hebbian" product of an error and a kernel value). Without a guard (`g` the
//! identity) `ε_nt` is exactly `dL/dx_n(t)` taken through all later steps, i.e. what
//! back-propagation through time computes under another name (LeCun 1988); the difference is the
//! guard `g` ([`super::guard`]) and what the `ε` are used for: desired values `x̂ = x − ε` for a
//! per-unit second-order solve ([`super::solve`]).
//!
//! Both passes cost `O(N·D·T)`. The recursion is run here as a scatter: when `ε_nt` is final (all
//! its efferents, later in time or lower in index at the same step, are done), each term of node
//! `n` that reads a node adds its `β·ε_nt` to that node's accumulator.
use super::guard::{mean_output_error, Guard};
use super::network::{Data, Network, Trajectory};

/// `ε` laid out as [`Trajectory::x`] (`t·N + n`), from the output errors `rho_prime` (same
/// layout) and weights `w`.
pub fn backward(
    net: &Network,
    w: &[f64],
    traj: &Trajectory,
    data: &Data,
    rho_prime: &[f64],
    guard: Guard,
) -> Vec<f64> {
    let n_nodes = net.n_nodes();
    let rho_bar = mean_output_error(rho_prime);
    let mut acc = vec![0.0; traj.x.len()];
    let mut eps = vec![0.0; traj.x.len()];
    for t in (0..data.steps).rev() {
        for n in 0..n_nodes {
            let i = t * n_nodes + n;
            let e = rho_prime[i] + guard.apply(acc[i], rho_bar);
            eps[i] = e;
            if e == 0.0 {
                continue;
            }
            net.for_each_beta(w, &traj.x, data, n, t, |j, beta| acc[j] += beta * e);
        }
    }
    eps
}

/// `∂L/∂W_nd = Σ_t φ_ndt ε_nt`, laid out as [`Network::weights`].
pub fn gradient(net: &Network, traj: &Trajectory, data: &Data, eps: &[f64]) -> Vec<f64> {
    let n_nodes = net.n_nodes();
    let mut g = vec![0.0; net.n_weights()];
    for n in 0..n_nodes {
        let off = net.offset(n);
        let kernels = &net.nodes()[n].kernels;
        for t in 0..data.steps {
            let e = eps[t * n_nodes + n];
            if e == 0.0 {
                continue;
            }
            for (d, term) in kernels.iter().enumerate() {
                g[off + d] += net.term_value(&traj.x, data, term, t) * e;
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::super::criteria::{loss, output_errors, Criterion};
    use super::super::network::Sequence;
    use super::super::units::{lnl, normal, Leak, LnlSpec};
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// An LNL network of `u` units with random weights, a random input and random targets on
    /// unit 0 and unit 1.
    fn setup(u: usize, steps: usize, leak: Leak, seed: u64) -> (Network, Data) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spec = LnlSpec {
            units: u,
            inputs: 1,
            a: -1.0,
            b: 1.0,
            leak,
            input_delay: 1,
        };
        let mut net = lnl(&spec).unwrap().network;
        for w in net.weights.iter_mut() {
            *w = normal(&mut rng) * 0.8;
        }
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let targets: Vec<f64> = (0..2 * steps)
            .map(|_| rng.random_range(-0.5..0.5))
            .collect();
        let seq = Sequence {
            len: steps,
            inputs,
            targets,
        };
        (net, Data::concat(&[seq], 1, vec![0, 1], 0, false))
    }

    fn loss_at(net: &Network, w: &[f64], data: &Data, crit: Criterion) -> f64 {
        loss(crit, &net.forward_with(w, data), data, &[])
    }

    fn adjoint_gradient(net: &Network, data: &Data, crit: Criterion) -> Vec<f64> {
        let traj = net.forward(data);
        let rp = output_errors(crit, &traj, data, &[]);
        let eps = backward(net, &net.weights, &traj, data, &rp, Guard::Identity);
        gradient(net, &traj, data, &eps)
    }

    #[test]
    fn unguarded_gradient_equals_central_differences() {
        for (seed, leak, crit) in [
            (1, Leak::None, Criterion::L2),
            (2, Leak::Adjustable(0.3), Criterion::L2),
            (3, Leak::Fixed(0.5), Criterion::Huber { delta: 0.2 }),
        ] {
            let (net, data) = setup(4, 30, leak, seed);
            let g = adjoint_gradient(&net, &data, crit);
            let gnorm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            for i in 0..net.n_weights() {
                let h = 1e-5;
                let mut wp = net.weights.clone();
                let mut wm = net.weights.clone();
                wp[i] += h;
                wm[i] -= h;
                let fd =
                    (loss_at(&net, &wp, &data, crit) - loss_at(&net, &wm, &data, crit)) / (2.0 * h);
                let err = (fd - g[i]).abs() / (g[i].abs().max(1e-3 * gnorm));
                assert!(
                    err < 1e-6,
                    "seed {seed} weight {i}: adjoint {} fd {fd}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn unguarded_gradient_of_gated_and_statistical_networks_equals_central_differences() {
        use super::super::criteria::{ObservableKind, Statistical};
        use super::super::units::aif_learned;
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        // Integrate-and-fire units with learned sharpness: gated reset terms, a sharpness node
        // per unit; the sharpness is a weight like the others.
        let u = 3;
        let mut net = aif_learned(u, 1, 0.9, 3.0).unwrap();
        let unit_weights = net.offset(u);
        for w in net.weights[..unit_weights].iter_mut() {
            *w = 0.9 * normal(&mut rng);
        }
        for n in 0..u {
            let i = net.offset(u + n);
            net.weights[i] = rng.random_range(2.0..6.0);
        }
        let steps = 25;
        let inputs: Vec<f64> = (0..steps).map(|_| rng.random_range(-1.0..1.0)).collect();
        let targets: Vec<f64> = (0..2 * steps).map(|_| rng.random_range(0.0..1.0)).collect();
        let seq = Sequence {
            len: steps,
            inputs,
            targets,
        };
        let data = Data::concat(&[seq], 1, vec![0, 1], 0, false);
        let supervised = |w: &[f64]| loss(Criterion::L2, &net.forward_with(w, &data), &data, &[]);
        let g = adjoint_gradient(&net, &data, Criterion::L2);
        // The statistical criterion on the same network: mean and autocorrelations of unit 0,
        // its desired values those of the targets.
        let st = Statistical::from_targets(
            &[
                (0, ObservableKind::Mean, 1.0),
                (0, ObservableKind::Autocorrelation { lag: 0 }, 1.0),
                (0, ObservableKind::Autocorrelation { lag: 2 }, 0.7),
                (1, ObservableKind::Mean, 0.3),
            ],
            &data,
        )
        .unwrap();
        let statistical = |w: &[f64]| st.loss(&net.forward_with(w, &data), &data);
        let traj = net.forward(&data);
        let rp = st.output_errors(&traj, &data);
        let eps = backward(&net, &net.weights, &traj, &data, &rp, Guard::Identity);
        let gs = gradient(&net, &traj, &data, &eps);
        for (what, g, f) in [
            ("L2", &g, &supervised as &dyn Fn(&[f64]) -> f64),
            ("statistical", &gs, &statistical),
        ] {
            let gnorm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!(gnorm > 0.0);
            for i in 0..net.n_weights() {
                let h = 1e-6;
                let mut wp = net.weights.clone();
                let mut wm = net.weights.clone();
                wp[i] += h;
                wm[i] -= h;
                let fd = (f(&wp) - f(&wm)) / (2.0 * h);
                let err = (fd - g[i]).abs() / (g[i].abs().max(1e-3 * gnorm));
                assert!(err < 1e-5, "{what}, weight {i}: adjoint {} fd {fd}", g[i]);
            }
        }
    }

    /// Plain back-propagation through time on the LNL equations themselves
    /// `x(t) = γ x(t−1) + tanh(p(t))`, `p(t) = α + W x(t−1) + w_in i(t−1)`, with
    /// `L = Σ_t Σ_{o∈{0,1}} (x_o(t) − ō_o(t))²/2`; returns (dW, dw_in, dα, dγ).
    fn bptt(
        w: &[Vec<f64>],
        w_in: &[f64],
        alpha: &[f64],
        gamma: &[f64],
        data: &Data,
    ) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let u = w.len();
        let steps = data.steps;
        let i = |t: usize| if t == 0 { 0.0 } else { data.inputs[t - 1] };
        let mut x = vec![vec![0.0; u]; steps + 1]; // x[t+1] = x(t); x[0] = 0
        let mut p = vec![vec![0.0; u]; steps];
        for t in 0..steps {
            for n in 0..u {
                let mut v = alpha[n] + w_in[n] * i(t);
                for k in 0..u {
                    v += w[n][k] * x[t][k];
                }
                p[t][n] = v;
                x[t + 1][n] = gamma[n] * x[t][n] + v.tanh();
            }
        }
        let (mut dw, mut dwin) = (vec![vec![0.0; u]; u], vec![0.0; u]);
        let (mut da, mut dg) = (vec![0.0; u], vec![0.0; u]);
        let mut dx_next = vec![0.0; u]; // dL/dx(t+1) through later steps
        let mut dp_next = vec![0.0; u];
        for t in (0..steps).rev() {
            let mut dx = vec![0.0; u];
            for n in 0..u {
                let mut v = 0.0;
                if n < 2 {
                    v += x[t + 1][n] - data.target(n, t);
                }
                if t + 1 < steps {
                    v += gamma[n] * dx_next[n];
                    for k in 0..u {
                        v += w[k][n] * dp_next[k];
                    }
                }
                dx[n] = v;
            }
            let dp: Vec<f64> = (0..u)
                .map(|n| dx[n] * (1.0 - p[t][n].tanh().powi(2)))
                .collect();
            for n in 0..u {
                dg[n] += dx[n] * x[t][n];
                da[n] += dp[n];
                dwin[n] += dp[n] * i(t);
                for k in 0..u {
                    dw[n][k] += dp[n] * x[t][k];
                }
            }
            dx_next = dx;
            dp_next = dp;
        }
        (dw, dwin, da, dg)
    }

    #[test]
    fn unguarded_gradient_equals_plain_backpropagation() {
        let (net, data) = setup(4, 30, Leak::Adjustable(0.2), 7);
        let built = lnl(&LnlSpec {
            units: 4,
            inputs: 1,
            a: -1.0,
            b: 1.0,
            leak: Leak::Adjustable(0.2),
            input_delay: 1,
        })
        .unwrap();
        let p = built.layout.params(&net);
        let (dw, dwin, da, dg) = bptt(
            &p.w,
            &p.w_in.iter().map(|r| r[0]).collect::<Vec<_>>(),
            &p.alpha,
            &p.gamma,
            &data,
        );
        let g = adjoint_gradient(&net, &data, Criterion::L2);
        let mut grad_net = net.clone();
        grad_net.weights = g;
        let gp = built.layout.params(&grad_net);
        for n in 0..4 {
            assert!((gp.alpha[n] - da[n]).abs() < 1e-10);
            assert!((gp.gamma[n] - dg[n]).abs() < 1e-10);
            assert!((gp.w_in[n][0] - dwin[n]).abs() < 1e-10);
            for (k, d) in dw[n].iter().enumerate() {
                assert!((gp.w[n][k] - d).abs() < 1e-10, "dW[{n}][{k}]");
            }
        }
    }
}
