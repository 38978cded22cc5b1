//! The forward pass of backward tuning, interpreted ([`Network::forward_with`]) against the
//! lowered plan ([`ForwardPlan`]), on the reverse-engineering problem (`reverse::setup`, LNL,
//! `T = 2N(N+1)` unless `--steps-per-unit C` sets `T = C·N`): seconds per pass (the best of
//! `--repeat R` passes, default 3), the speed-up, and a check that both give the same bits.
//!
//! `cargo run --release -p remanence-continual --example backtune_forward -- [N…]
//! [--steps-per-unit C] [--repeat R]`
use std::time::Instant;

use remanence_continual::backtune::network::Network;
use remanence_continual::backtune::plan::ForwardPlan;
use remanence_continual::backtune::reverse::{setup, ReverseSpec};

fn main() {
    let mut sizes = Vec::new();
    let (mut per_unit, mut repeat) = (None::<usize>, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--steps-per-unit" => {
                per_unit = Some(
                    args.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--steps-per-unit C"),
                )
            }
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--repeat R")
            }
            v => sizes.push(v.parse::<usize>().expect("a network size")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![32, 64, 128];
    }
    println!("| N | T | weights | interpreted s | plan s | speed-up | gathered / general terms |");
    println!("|---|---|---|---|---|---|---|");
    for n in sizes {
        let mut spec = ReverseSpec::lnl(n, 0);
        spec.steps = per_unit.map(|c| c * n);
        let (_, data, net) = setup(&spec).expect("network");
        let plan = ForwardPlan::new(&net);
        let best = |f: &dyn Fn() -> Vec<f64>| {
            let mut best = f64::INFINITY;
            let mut out = Vec::new();
            for _ in 0..repeat.max(1) {
                let t0 = Instant::now();
                out = f();
                best = best.min(t0.elapsed().as_secs_f64());
            }
            (best, out)
        };
        let (ti, xi) = best(&|| Network::forward_with(&net, &net.weights, &data).x);
        let (tp, xp) = best(&|| plan.forward_with(&net, &net.weights, &data).x);
        let same = xi.iter().zip(&xp).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "N = {n}: the plan differs from the interpreted pass");
        let (g, o) = plan.counts();
        println!(
            "| {n} | {} | {} | {ti:.4} | {tp:.4} | {:.1} | {g} / {o} |",
            data.steps,
            net.n_weights(),
            ti / tp
        );
    }
}
