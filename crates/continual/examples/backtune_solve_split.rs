//! Where a per-unit solve's time goes at large N: the whole `solve_units` of each variant on the
//! large-network protocol (LNL, every unit observed, `T = 4N`, DMAX `N + 2`; `reverse::setup`
//! observes unit 0 only, which does not change the solves' cost), against the pseudo-inverses
//! alone (one `sym_pinv` of an `(N+2)²` Gram matrix per unit for `Weighted`): what is left is the
//! Gram products, the right-hand sides and the kernels, the part a batched matrix product could
//! take over.
//!
//! `cargo run --release -p remanence-continual --example backtune_solve_split -- [N…]`
use std::time::Instant;

use remanence_continual::backtune::adjoint::backward;
use remanence_continual::backtune::criteria::{output_errors, Criterion};
use remanence_continual::backtune::guard::Guard;
use remanence_continual::backtune::linalg::sym_pinv;
use remanence_continual::backtune::reverse::{setup, ReverseSpec};
use remanence_continual::backtune::solve::{solve_units, Extras, Variant};

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|v| v.parse().expect("a network size"))
        .collect();
    if sizes.is_empty() {
        sizes = vec![64, 128];
    }
    println!("| N | T | variant | solve_units s | of which pseudo-inverses s | the rest s |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let mut spec = ReverseSpec::lnl(n, 0);
        spec.steps = Some(4 * n);
        let (_, data, net) = setup(&spec).expect("network");
        let traj = net.forward(&data);
        let rp = output_errors(Criterion::L2, &traj, &data, &[]);
        let eps = backward(&net, &net.weights, &traj, &data, &rp, Guard::Code);
        let d = n + 2;
        // A Gram matrix of the pre-activation kernels (1, x(t−1), i(t−1)), for the pseudo-inverse.
        let mut a = vec![0.0; d * d];
        for t in 1..data.steps {
            let mut phi = vec![1.0; d];
            for k in 0..n {
                phi[1 + k] = traj.get(k, t - 1);
            }
            phi[d - 1] = data.inputs[t - 1];
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] += phi[i] * phi[j];
                }
            }
        }
        let t0 = Instant::now();
        let p = sym_pinv(&a, d);
        let one_pinv = t0.elapsed().as_secs_f64();
        assert!(p.iter().all(|v| v.is_finite()));
        for variant in Variant::ALL {
            let t0 = Instant::now();
            let w = solve_units(&net, &traj, &data, &eps, variant, d, 1, Extras::default());
            let s = t0.elapsed().as_secs_f64();
            assert_eq!(w.len(), net.n_weights());
            // Weighted: one pseudo-inverse per unit; plain and no-adjoint: one shared.
            let pinvs = if variant == Variant::Weighted { n } else { 1 };
            let pi = one_pinv * pinvs as f64;
            println!(
                "| {n} | {} | {variant:?} | {s:.3} | {pi:.3} ({pinvs} × {one_pinv:.4}) | {:.3} |",
                data.steps,
                s - pi
            );
        }
    }
}
