//! Backward tuning against plain gradient descent (Adam) on the reverse-engineering problem of
//! RR-9100: the same data, the same network, the same starting weights, the same criterion.
//!
//! "The same network": the root, its observed output (unit 0, `T = 2N(N+1)` steps) and the
//! fresh LNL network to estimate are `backtune::reverse::setup(&ReverseSpec::lnl(N, seed))`,
//! the data of `remanence reverse-engineer --units-count N --seed seed`. Backward tuning is the
//! full estimator (`EstimatorConfig` defaults but `--dmax`: 100 iterations at most, stop below
//! 1e−6·L₀). Adam starts from the same fresh weights and descends the same least-squares
//! criterion `Σ_t (x_0(t) − o(t))²/2` with its exact gradient: the adjoint of
//! `backtune::adjoint` without the guard (`Guard::Identity`), which is the BPTT gradient (the
//! library's tests check it against finite differences), full batch, β = (0.9, 0.999),
//! ε = 1e−8, for each learning rate given.
//!
//! For each run: the criterion L/L₀ backward tuning ends with, its iterations, forward-pass
//! evaluations (its line searches) and seconds; for Adam at each learning rate, the iterations
//! and seconds to first reach that same L/L₀ (or "–" within the budget), then to reach 1e−6
//! (the report's stop, where Adam stops too), and the best L/L₀ reached within `--adam-iters`
//! iterations.
//!
//! `cargo run --release -p remanence-continual --example backtune_vs_adam -- [N…] [--seeds K]
//! [--dmax D] [--adam-iters M] [--lr a,b,c]`
use std::time::Instant;

use remanence_continual::backtune::adjoint::{backward, gradient};
use remanence_continual::backtune::criteria::{loss, output_errors, Criterion};
use remanence_continual::backtune::estimator::{estimate, EstimatorConfig};
use remanence_continual::backtune::guard::Guard;
use remanence_continual::backtune::network::{Data, Network};
use remanence_continual::backtune::reverse::{setup, ReverseSpec};

const STOP: f64 = 1e-6;

struct AdamRun {
    /// Iterations and seconds after which `L/L₀ ≤ goal` first held.
    reached: Option<(usize, f64)>,
    /// The same for `L/L₀ ≤ 1e−6` (the report's stop; Adam stops there).
    stop: Option<(usize, f64)>,
    best: f64,
    iterations: usize,
    seconds: f64,
}

fn adam(net: &Network, data: &Data, lr: f64, max_iters: usize, goal: f64) -> AdamRun {
    let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
    let mut w = net.weights.clone();
    let (mut m, mut v) = (vec![0.0; w.len()], vec![0.0; w.len()]);
    let mut probe = net.clone();
    let l0 = loss(Criterion::L2, &net.forward_with(&w, data), data, &[]);
    let mut best = 1.0f64;
    let (mut reached, mut stop) = (None, None);
    let started = Instant::now();
    let mut it = 0;
    while it < max_iters {
        probe.weights.copy_from_slice(&w);
        let traj = probe.forward(data);
        let l = loss(Criterion::L2, &traj, data, &[]);
        if !l.is_finite() {
            break;
        }
        best = best.min(l / l0);
        if l / l0 <= goal && reached.is_none() {
            reached = Some((it, started.elapsed().as_secs_f64()));
        }
        if l / l0 <= STOP {
            stop = Some((it, started.elapsed().as_secs_f64()));
            break;
        }
        let rp = output_errors(Criterion::L2, &traj, data, &[]);
        let e = backward(&probe, &w, &traj, data, &rp, Guard::Identity);
        let g = gradient(&probe, &traj, data, &e);
        it += 1;
        let (c1, c2) = (1.0 - b1.powi(it as i32), 1.0 - b2.powi(it as i32));
        for i in 0..w.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            w[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
    }
    if stop.is_none() {
        let l = loss(Criterion::L2, &net.forward_with(&w, data), data, &[]);
        if l.is_finite() {
            best = best.min(l / l0);
        }
    }
    AdamRun {
        reached,
        stop,
        best,
        iterations: it,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    let mut sizes = Vec::new();
    let (mut seeds, mut dmax, mut max_iters) = (1u64, 16usize, 20_000usize);
    let mut lrs = vec![1e-3, 3e-3, 1e-2, 3e-2];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => seeds = args.next().and_then(|v| v.parse().ok()).expect("--seeds K"),
            "--dmax" => dmax = args.next().and_then(|v| v.parse().ok()).expect("--dmax D"),
            "--adam-iters" => {
                max_iters = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--adam-iters M")
            }
            "--lr" => {
                lrs = args
                    .next()
                    .expect("--lr a,b,c")
                    .split(',')
                    .map(|s| s.parse().expect("a learning rate"))
                    .collect()
            }
            v => sizes.push(v.parse::<usize>().expect("a network size")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![4, 8];
    }
    let cfg = EstimatorConfig {
        dmax,
        ..Default::default()
    };
    println!(
        "| N | seed | backward tuning: L/L0, iterations, forward evaluations, s | Adam lr | \
         iterations to that L/L0 | s | iterations to 1e-6 | s | best L/L0 in the budget |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for seed in 0..seeds {
            let (_, data, fresh) = setup(&ReverseSpec::lnl(n, seed)).expect("network");
            let mut net = fresh.clone();
            let tr = estimate(&mut net, &data, &cfg);
            let goal = tr.ratio();
            let evals: usize = tr.records.iter().map(|r| r.evaluations).sum();
            let bt = format!(
                "{:.2e}, {}, {evals}, {:.2}",
                goal,
                tr.iterations(),
                tr.seconds
            );
            for &lr in &lrs {
                let r = adam(&fresh, &data, lr, max_iters, goal);
                let (its, secs) = match r.reached {
                    Some((i, s)) => (i.to_string(), format!("{s:.2}")),
                    None => (
                        format!("– (not in {})", r.iterations),
                        format!("{:.2}", r.seconds),
                    ),
                };
                let (its6, secs6) = match r.stop {
                    Some((i, s)) => (i.to_string(), format!("{s:.2}")),
                    None => (
                        format!("– (not in {})", r.iterations),
                        format!("{:.2}", r.seconds),
                    ),
                };
                println!(
                    "| {n} | {seed} | {bt} | {lr} | {its} | {secs} | {its6} | {secs6} | {:.2e} |",
                    r.best
                );
            }
        }
    }
}
