//! The reverse-engineering table of backward tuning (Viéville et al. 2017, RR-9100): for each
//! `N`, a random root LNL network driven by one random input, only unit 0 observed,
//! `T = 2N(N+1)`; a fresh network is estimated from that output. Prints the final criterion
//! relative to the initial one, the iterations, the stop reason and the time.
//!
//! `cargo run --release -p remanence-continual --example backtune_reverse -- [N…] [--seeds K]
//! [--dmax D] [--threads P] [--aif] [--trace]`
use remanence_continual::backtune::estimator::{Candidate, EstimatorConfig};
use remanence_continual::backtune::reverse::{reverse_engineer, ReverseSpec, UnitKind};

fn main() {
    let mut sizes = Vec::new();
    let (mut seeds, mut dmax, mut threads, mut aif, mut trace) =
        (1u64, 16usize, 1usize, false, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => seeds = args.next().and_then(|v| v.parse().ok()).expect("--seeds K"),
            "--dmax" => dmax = args.next().and_then(|v| v.parse().ok()).expect("--dmax D"),
            "--threads" => {
                threads = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--threads P")
            }
            "--aif" => aif = true,
            "--trace" => trace = true,
            v => sizes.push(v.parse::<usize>().expect("a network size")),
        }
    }
    if sizes.is_empty() {
        sizes = vec![2, 4, 8, 16];
    }
    let cfg = EstimatorConfig {
        dmax,
        threads,
        ..Default::default()
    };
    println!("| N | seed | T | weights | L0 | L_end/L0 | iterations | stop | 2nd-order wins | s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for seed in 0..seeds {
            let mut spec = ReverseSpec::lnl(n, 1000 * n as u64 + seed);
            if aif {
                spec.kind = UnitKind::Aif {
                    gamma: 0.9,
                    eps: 0.1,
                };
            }
            let res = reverse_engineer(&spec, &cfg).expect("network");
            let tr = &res.trace;
            let second = tr
                .records
                .iter()
                .filter(|r| matches!(r.candidate, Some(Candidate::SecondOrder(_))))
                .count();
            println!(
                "| {n} | {seed} | {} | {} | {:.3e} | {:.2e} | {} | {:?} | {second} | {:.2} |",
                res.steps,
                res.weights,
                tr.initial,
                tr.ratio(),
                tr.iterations(),
                tr.stop,
                tr.seconds
            );
            if trace {
                for r in &tr.records {
                    println!(
                        "    it {:3} L/L0 {:.3e} {:?} step {:?} evals {}",
                        r.iteration,
                        r.criterion / tr.initial,
                        r.candidate,
                        r.step,
                        r.evaluations
                    );
                }
            }
        }
    }
}
