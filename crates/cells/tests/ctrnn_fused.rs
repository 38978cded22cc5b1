//! The fused CT-RNN layer kernel equals the reference step composition (the cell's `step`
//! through `ode::integrate`): outputs, final state and the gradients of every parameter, of x
//! and of h0, on fresh random inputs and random time constants, in f64 (1e-10) and f32 (1e-5),
//! for Euler, Heun and RK4 with 1 and 3 unfolds, with and without elapsed times and initial
//! state, one and two layers, batch 1, odd sizes and length 1. Splitting the batch over threads
//! changes nothing; Dormand–Prince still runs the reference.
mod common;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use remanence_cells::cells::CtRnn;
use remanence_cells::kernels::cpu::ctrnn::FixedStep;
use remanence_cells::kernels::cpu::{CtRnnKernel, Fused};
use remanence_cells::{
    Activation, CellKind, CellState, CtOptions, Kernel, ParamStore, RecurrentCell, RnnConfig,
    Route, StackedRnn,
};

type Rng8 = rand_chacha::ChaCha8Rng;

use common::uniform;

#[derive(Clone)]
struct Case {
    b: usize,
    t: usize,
    i: usize,
    h: usize,
    layers: usize,
    solver: &'static str,
    unfolds: usize,
    with_h0: bool,
    with_dt: bool,
}

fn config(case: &Case, kernel: Kernel, threads: Option<usize>) -> RnnConfig {
    RnnConfig {
        cell: CellKind::Ctrnn,
        input_size: case.i,
        hidden_size: case.h,
        num_layers: case.layers,
        activation: Activation::Tanh,
        ct: CtOptions {
            solver: case.solver.parse().unwrap(),
            ode_unfolds: case.unfolds,
            rtol: 1e-6,
            atol: 1e-8,
            ..CtOptions::default()
        },
        reservoir: Default::default(),
        threads,
        kernel,
    }
}

/// Runs one path and returns (y, h_n, the gradient of every parameter, of x and of h0).
fn run(
    case: &Case,
    kernel: Kernel,
    threads: Option<usize>,
    dtype: DType,
    seed: u64,
) -> Vec<(String, Tensor)> {
    let cfg = config(case, kernel, threads);
    let store = ParamStore::seeded(seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", dtype, &Device::Cpu).unwrap();
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = Rng8::seed_from_u64(seed + 1);
    // Time constants differ per unit (the initialisation makes every τ = 1): τ in (0.31, 1.7).
    for (name, var) in store.vars() {
        if name.contains("tau_l") {
            let v = uniform(var.dims(), -1.0, 1.5, &mut rng)
                .to_dtype(dtype)
                .unwrap();
            var.set(&v).unwrap();
        }
    }
    assert_eq!(
        store.vars().len(),
        4 * case.layers,
        "four parameters per layer"
    );
    let feed = common::Feed {
        b: case.b,
        t: case.t,
        i: case.i,
        with_h0: case.with_h0,
        with_dt: case.with_dt,
    };
    common::outputs_and_gradients(&rnn, &store, case.layers, case.h, &feed, dtype, &mut rng)
}

/// Fused against reference in both float types; returns the largest relative error of each.
fn compare(case: &Case, seed: u64) -> [f64; 2] {
    compare_in(case, seed, &[(DType::F64, 1e-10), (DType::F32, 1e-5)])
}

fn compare_in(case: &Case, seed: u64, types: &[(DType, f64)]) -> [f64; 2] {
    let mut worst = [0.0f64; 2];
    for (k, (dtype, tol)) in types.iter().enumerate() {
        let reference = run(case, Kernel::Reference, None, *dtype, seed);
        let fused = run(case, Kernel::Fused, Some(2), *dtype, seed);
        assert_eq!(reference.len(), fused.len());
        for ((n1, a), (n2, b)) in reference.iter().zip(&fused) {
            assert_eq!(n1, n2);
            let e = common::rel_err(b, a);
            worst[k] = worst[k].max(e);
            assert!(
                e <= *tol,
                "{n1} ({dtype:?}, {} ×{}, b{} t{} h{} layers {}, h0 {}, dt {}): relative error {e:.3e} > {tol:.0e}",
                case.solver,
                case.unfolds,
                case.b,
                case.t,
                case.h,
                case.layers,
                case.with_h0,
                case.with_dt
            );
        }
    }
    worst
}

/// Every combination of unfolds (1, 3), elapsed times and initial state for one solver, two
/// layers, odd sizes.
fn solver_cases(solver: &'static str, seed: u64) {
    let mut worst = [0.0f64; 2];
    let mut k = 0;
    for unfolds in [1, 3] {
        for (with_h0, with_dt) in [(true, true), (false, false), (true, false), (false, true)] {
            let case = Case {
                b: 3,
                t: 5,
                i: 3,
                h: 7,
                layers: 2,
                solver,
                unfolds,
                with_h0,
                with_dt,
            };
            let w = compare(&case, seed + k);
            k += 1;
            worst = [worst[0].max(w[0]), worst[1].max(w[1])];
        }
    }
    eprintln!(
        "{solver}: worst relative error f64 {:.2e}, f32 {:.2e}",
        worst[0], worst[1]
    );
}

#[test]
fn fused_equals_reference_euler() {
    solver_cases("euler", 10);
}

#[test]
fn fused_equals_reference_heun() {
    solver_cases("heun", 20);
}

#[test]
fn fused_equals_reference_rk4() {
    solver_cases("rk4", 30);
}

#[test]
fn fused_equals_reference_batch_one_length_one_odd_sizes() {
    let base = Case {
        b: 1,
        t: 1,
        i: 2,
        h: 5,
        layers: 1,
        solver: "rk4",
        unfolds: 3,
        with_h0: true,
        with_dt: true,
    };
    let mut worst = [0.0f64; 2];
    let cases = [
        base.clone(),
        Case {
            t: 6,
            i: 1,
            h: 3,
            solver: "heun",
            unfolds: 1,
            with_h0: false,
            ..base.clone()
        },
        Case {
            b: 5,
            t: 1,
            i: 4,
            h: 9,
            layers: 2,
            solver: "euler",
            unfolds: 3,
            with_dt: false,
            ..base.clone()
        },
        Case {
            b: 1,
            t: 4,
            i: 5,
            h: 11,
            layers: 2,
            ..base.clone()
        },
        // A width past one block of vector lanes, and a batch split over two threads unevenly.
        Case {
            b: 3,
            t: 3,
            i: 6,
            h: 17,
            layers: 1,
            solver: "rk4",
            unfolds: 2,
            ..base.clone()
        },
    ];
    for (k, case) in cases.iter().enumerate() {
        let w = compare(case, 40 + k as u64);
        worst = [worst[0].max(w[0]), worst[1].max(w[1])];
    }
    eprintln!(
        "small shapes: worst relative error f64 {:.2e}, f32 {:.2e}",
        worst[0], worst[1]
    );
}

/// A sequence long enough that the backward pass forms ∂W_hh in two blocks (one sample, RK4:
/// 4 rows per sub-step, 2048 sub-steps per block of 8192 rows; here 360·6 = 2160 sub-steps).
#[test]
fn long_sequence_with_two_weight_gradient_blocks() {
    let case = Case {
        b: 1,
        t: 360,
        i: 2,
        h: 3,
        layers: 1,
        solver: "rk4",
        unfolds: 6,
        with_h0: true,
        with_dt: true,
    };
    assert_eq!(remanence_cells::kernels::cpu::ctrnn::BLOCK_ROWS, 8192);
    let w = compare_in(&case, 80, &[(DType::F64, 1e-10)]);
    eprintln!("long sequence: worst relative error f64 {:.2e}", w[0]);
}

fn bits(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// One thread or three give the same numbers to rounding (the matrix products see other row
/// counts per thread, so the last bits may differ), and a fixed thread count is deterministic.
#[test]
fn thread_split_changes_nothing() {
    let mut worst = [0.0f64; 2];
    for solver in ["euler", "heun", "rk4"] {
        let case = Case {
            b: 5,
            t: 4,
            i: 3,
            h: 6,
            layers: 2,
            solver,
            unfolds: 3,
            with_h0: true,
            with_dt: true,
        };
        for (k, (dtype, tol)) in [(DType::F64, 1e-13), (DType::F32, 1e-6)].iter().enumerate() {
            let one = run(&case, Kernel::Fused, Some(1), *dtype, 50);
            let three = run(&case, Kernel::Fused, Some(3), *dtype, 50);
            let again = run(&case, Kernel::Fused, Some(3), *dtype, 50);
            for (((n1, a), (n2, b)), (_, c)) in one.iter().zip(&three).zip(&again) {
                assert_eq!(n1, n2);
                let e = common::rel_err(b, a);
                worst[k] = worst[k].max(e);
                assert!(e <= *tol, "{solver} {n1} {dtype:?}: 1 vs 3 threads {e:.3e}");
                assert_eq!(
                    bits(b),
                    bits(c),
                    "{solver} {n1} {dtype:?}: not deterministic"
                );
            }
        }
    }
    eprintln!(
        "1 vs 3 threads: worst relative difference f64 {:.2e}, f32 {:.2e}",
        worst[0], worst[1]
    );
}

/// Dormand–Prince has no fused kernel: with `Kernel::Fused` it runs the reference, bit for bit.
#[test]
fn dopri5_runs_the_reference() {
    let case = Case {
        b: 3,
        t: 4,
        i: 3,
        h: 5,
        layers: 2,
        solver: "dopri5",
        unfolds: 1,
        with_h0: true,
        with_dt: true,
    };
    let reference = run(&case, Kernel::Reference, None, DType::F64, 60);
    let fused = run(&case, Kernel::Fused, Some(2), DType::F64, 60);
    assert_eq!(reference.len(), fused.len());
    for ((n1, a), (_, b)) in reference.iter().zip(&fused) {
        let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert!(a.iter().all(|v| v.is_finite()), "{n1}");
        assert_eq!(a, b, "{n1}");
    }
    // And the adaptive solution is close to a fine RK4 one (it did integrate the ODE).
    let rk4 = run(
        &Case {
            solver: "rk4",
            unfolds: 64,
            ..case.clone()
        },
        Kernel::Fused,
        Some(2),
        DType::F64,
        60,
    );
    let e = common::rel_err(&fused[0].1, &rk4[0].1);
    assert!(e < 1e-5, "dopri5 vs fine rk4: {e:.3e}");
}

/// The cell takes the fused route for the fixed-step solvers only, and its op is
/// `CtRnnKernel` on `[W_ih | W_hh | b | 1/softplus(tau)]`.
#[test]
fn cell_routes_and_packs_its_weights() {
    let (b, t, i, h) = (3, 4, 2, 5);
    let mut rng = Rng8::seed_from_u64(70);
    let x = uniform(&[b, t, i], -1.0, 1.0, &mut rng);
    let h0 = uniform(&[b, h], -1.0, 1.0, &mut rng);
    let dt = uniform(&[b, t], 0.3, 1.5, &mut rng);
    let state = CellState {
        h: h0.clone(),
        c: None,
    };
    let route = Route::CpuFused { threads: 2 };
    for (solver, fixed) in [
        ("euler", Some(FixedStep::Euler)),
        ("heun", Some(FixedStep::Heun)),
        ("rk4", Some(FixedStep::Rk4)),
        ("dopri5", None),
    ] {
        let opts = CtOptions {
            solver: solver.parse().unwrap(),
            ode_unfolds: 2,
            ..CtOptions::default()
        };
        let store = ParamStore::seeded(71);
        let cell = CtRnn::new(i, h, 0, &opts, store.var_builder(DType::F64, &Device::Cpu)).unwrap();
        let get = |n: &str| store.get(n).unwrap().as_tensor().clone();
        let tau = uniform(&[h], -1.0, 1.5, &mut rng);
        store.get("tau_l0").unwrap().set(&tau).unwrap();
        assert!(cell
            .forward_sequence(&x, Some(&dt), &state, Route::Reference)
            .unwrap()
            .is_none());
        let got = cell.forward_sequence(&x, Some(&dt), &state, route).unwrap();
        let Some(fixed) = fixed else {
            assert!(got.is_none(), "dopri5 has no fused kernel");
            continue;
        };
        let (y, last) = got.expect("the fused route");
        let kappa: Vec<f64> = tau
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|v| 1.0 / v.exp().ln_1p())
            .collect();
        let w = Tensor::cat(
            &[
                get("weight_ih_l0").flatten_all().unwrap(),
                get("weight_hh_l0").flatten_all().unwrap(),
                get("bias_l0"),
                Tensor::new(kappa.as_slice(), &Device::Cpu).unwrap(),
            ],
            0,
        )
        .unwrap();
        let kernel = CtRnnKernel {
            input: i,
            hidden: h,
            solver: fixed,
            unfolds: 2,
            dt: Some(dt.flatten_all().unwrap().to_vec1().unwrap()),
        };
        let (direct, _) = Fused::new(kernel, 2).apply(&x, &w, &h0).unwrap();
        common::assert_close(&format!("{solver} y"), &y, &direct, 1e-15);
        let last_direct = direct.narrow(1, t - 1, 1).unwrap().squeeze(1).unwrap();
        common::assert_close(&format!("{solver} h_n"), &last.h, &last_direct, 0.0);
        // The reference step composition gives the same sequence.
        let mut hs = state.clone();
        let mut ys = Vec::new();
        for s in 0..t {
            let xs = x.narrow(1, s, 1).unwrap().squeeze(1).unwrap();
            let ds = dt.narrow(1, s, 1).unwrap().squeeze(1).unwrap();
            hs = cell.step(&xs, Some(&ds), &hs).unwrap();
            ys.push(hs.h.clone());
        }
        let reference = Tensor::stack(&ys, 1).unwrap();
        common::assert_close(&format!("{solver} vs step"), &y, &reference, 1e-13);
    }
}
