//! The fused ODE-RNN layer kernel equals the reference step composition (the cell's `step`:
//! `ode::integrate` of the ODE network, then the GRU): outputs, final state and the gradients
//! of every parameter, of x and of h0, on fresh random inputs and random ODE-network weights,
//! in f64 (1e-10) and f32 (1e-5), for Euler, Heun and RK4 with 1 and 3 unfolds, 0, 1 and 2
//! hidden layers in the ODE network, with and without elapsed times and initial state, one and
//! two layers, batch 1 and length 1. The gradient of the elapsed times themselves, which the
//! fused op returns through an extra input column, equals the reference's and central finite
//! differences. Inference (nothing saved) equals the reference, a sequence spanning several
//! weight-gradient blocks too, splitting the batch over threads changes nothing, and
//! Dormand–Prince still runs the reference.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use remanence_cells::cells::OdeRnn;
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
    backbone_layers: usize,
    backbone_units: usize,
    solver: &'static str,
    unfolds: usize,
    with_h0: bool,
    with_dt: bool,
}

fn options(case: &Case) -> CtOptions {
    CtOptions {
        solver: case.solver.parse().unwrap(),
        ode_unfolds: case.unfolds,
        backbone_layers: case.backbone_layers,
        backbone_units: case.backbone_units,
        rtol: 1e-6,
        atol: 1e-8,
        ..CtOptions::default()
    }
}

fn config(case: &Case, kernel: Kernel, threads: Option<usize>) -> RnnConfig {
    RnnConfig {
        cell: CellKind::Odernn,
        input_size: case.i,
        hidden_size: case.h,
        num_layers: case.layers,
        activation: Activation::Tanh,
        ct: options(case),
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
    // The ODE network starts with zero biases and small weights: random ones of useful size,
    // so that every term of its gradient matters.
    for (name, var) in store.vars() {
        if name.contains("ode_l") {
            let v = uniform(var.dims(), -0.8, 0.8, &mut rng)
                .to_dtype(dtype)
                .unwrap();
            var.set(&v).unwrap();
        }
    }
    assert_eq!(
        store.vars().len(),
        (4 + 2 * (case.backbone_layers + 1)) * case.layers,
        "the GRU's four parameters and two per ODE-network layer"
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
            assert!(
                common::rel_err(a, &a.zeros_like().unwrap()) > 0.0,
                "{n1} is all zeros: the comparison would be empty"
            );
            let e = common::rel_err(b, a);
            worst[k] = worst[k].max(e);
            assert!(
                e <= *tol,
                "{n1} ({dtype:?}, {} ×{}, b{} t{} h{} layers {}, backbone {}×{}, h0 {}, dt {}): relative error {e:.3e} > {tol:.0e}",
                case.solver,
                case.unfolds,
                case.b,
                case.t,
                case.h,
                case.layers,
                case.backbone_layers,
                case.backbone_units,
                case.with_h0,
                case.with_dt
            );
        }
    }
    worst
}

/// Every combination of unfolds (1, 3), backbone depth (0, 1, 2), elapsed times and initial
/// state for one solver, two layers, odd sizes.
fn solver_cases(solver: &'static str, seed: u64) {
    let mut worst = [0.0f64; 2];
    let mut k = 0;
    for unfolds in [1, 3] {
        for backbone_layers in [0, 1, 2] {
            for (with_h0, with_dt) in [(true, true), (false, false), (true, false), (false, true)] {
                let case = Case {
                    b: 3,
                    t: 4,
                    i: 3,
                    h: 5,
                    layers: 2,
                    backbone_layers,
                    backbone_units: 6,
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
    }
    eprintln!(
        "{solver}: worst relative error f64 {:.2e}, f32 {:.2e}",
        worst[0], worst[1]
    );
}

#[test]
fn fused_equals_reference_euler() {
    solver_cases("euler", 100);
}

#[test]
fn fused_equals_reference_heun() {
    solver_cases("heun", 200);
}

#[test]
fn fused_equals_reference_rk4() {
    solver_cases("rk4", 300);
}

#[test]
fn fused_equals_reference_batch_one_length_one_odd_sizes() {
    let base = Case {
        b: 1,
        t: 1,
        i: 2,
        h: 5,
        layers: 1,
        backbone_layers: 1,
        backbone_units: 7,
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
            backbone_layers: 0,
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
            backbone_layers: 2,
            backbone_units: 3,
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
        // Widths past one block of vector lanes, and a batch split over two threads unevenly.
        Case {
            b: 3,
            t: 3,
            i: 6,
            h: 17,
            backbone_units: 19,
            layers: 1,
            solver: "rk4",
            unfolds: 2,
            ..base.clone()
        },
    ];
    for (k, case) in cases.iter().enumerate() {
        let w = compare(case, 400 + k as u64);
        worst = [worst[0].max(w[0]), worst[1].max(w[1])];
    }
    eprintln!(
        "small shapes: worst relative error f64 {:.2e}, f32 {:.2e}",
        worst[0], worst[1]
    );
}

/// A sequence long enough that the backward pass sums the ODE network's weight gradients over
/// several blocks (RK4, 2 unfolds: 8 stage rows per sample and step; 300 steps give 2400 rows
/// for one sample, past one block of 2048, and 4800 for the thread holding two samples).
#[test]
fn long_sequence_with_several_weight_gradient_blocks() {
    assert_eq!(remanence_cells::kernels::cpu::odernn::BLOCK_ROWS, 2048);
    for b in [1, 3] {
        let case = Case {
            b,
            t: 300,
            i: 2,
            h: 3,
            layers: 1,
            backbone_layers: 1,
            backbone_units: 4,
            solver: "rk4",
            unfolds: 2,
            with_h0: true,
            with_dt: true,
        };
        let w = compare_in(&case, 800 + b as u64, &[(DType::F64, 1e-10)]);
        eprintln!(
            "long sequence, batch {b}: worst relative error f64 {:.2e}",
            w[0]
        );
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// One thread or three give the same numbers to rounding (the products see other row counts
/// per thread), and a fixed thread count is deterministic.
#[test]
fn thread_split_changes_nothing() {
    for solver in ["euler", "heun", "rk4"] {
        let case = Case {
            b: 5,
            t: 4,
            i: 3,
            h: 6,
            layers: 2,
            backbone_layers: 1,
            backbone_units: 5,
            solver,
            unfolds: 3,
            with_h0: true,
            with_dt: true,
        };
        for (dtype, tol) in [(DType::F64, 1e-13), (DType::F32, 1e-6)] {
            let one = run(&case, Kernel::Fused, Some(1), dtype, 900);
            let three = run(&case, Kernel::Fused, Some(3), dtype, 900);
            let again = run(&case, Kernel::Fused, Some(3), dtype, 900);
            for (((n1, a), (n2, b)), (_, c)) in one.iter().zip(&three).zip(&again) {
                assert_eq!(n1, n2);
                let e = common::rel_err(b, a);
                assert!(e <= tol, "{solver} {n1} {dtype:?}: 1 vs 3 threads {e:.3e}");
                assert_eq!(
                    values(b),
                    values(c),
                    "{solver} {n1} {dtype:?}: not deterministic"
                );
            }
        }
    }
}

/// One cell, elapsed times as a variable: the gradient of `dt` (and of everything else) from
/// the fused route equals the reference step loop's, for each fixed-step solver; and in f64 it
/// equals central finite differences of the fused route's loss.
#[test]
fn elapsed_time_gradient_equals_reference_and_finite_differences() {
    let (b, t, i, h) = (3, 4, 2, 5);
    for (k, solver) in ["euler", "heun", "rk4"].iter().enumerate() {
        for backbone_layers in [0, 1, 2] {
            let case = Case {
                b,
                t,
                i,
                h,
                layers: 1,
                backbone_layers,
                backbone_units: 4,
                solver,
                unfolds: 2,
                with_h0: true,
                with_dt: true,
            };
            let seed = 500 + 10 * k as u64 + backbone_layers as u64;
            for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
                let mut rng = Rng8::seed_from_u64(seed);
                let mut mk = |shape: &[usize], lo: f64, hi: f64| {
                    uniform(shape, lo, hi, &mut rng).to_dtype(dtype).unwrap()
                };
                let x = Var::from_tensor(&mk(&[b, t, i], -1.5, 1.5)).unwrap();
                let h0 = Var::from_tensor(&mk(&[b, h], -1.0, 1.0)).unwrap();
                let dt = Var::from_tensor(&mk(&[b, t], 0.2, 2.0)).unwrap();
                let gy = mk(&[b, t, h], -1.0, 1.0);
                let store = ParamStore::seeded(seed);
                let cell = OdeRnn::new(
                    i,
                    h,
                    0,
                    &options(&case),
                    store.var_builder(dtype, &Device::Cpu),
                )
                .unwrap();
                for (name, var) in store.vars() {
                    if name.contains("ode_l") {
                        var.set(&mk(var.dims(), -0.8, 0.8)).unwrap();
                    }
                }
                let state = CellState {
                    h: h0.as_tensor().clone(),
                    c: None,
                };
                let fused_loss = || -> Tensor {
                    let (y, _) = cell
                        .forward_sequence(
                            x.as_tensor(),
                            Some(dt.as_tensor()),
                            &state,
                            Route::CpuFused { threads: 2 },
                        )
                        .unwrap()
                        .expect("the fused route");
                    (&y * &gy).unwrap().sum_all().unwrap()
                };
                let reference_loss = || -> Tensor {
                    let mut hs = state.clone();
                    let mut ys = Vec::new();
                    for s in 0..t {
                        let xs = x.as_tensor().narrow(1, s, 1).unwrap().squeeze(1).unwrap();
                        let ds = dt.as_tensor().narrow(1, s, 1).unwrap().squeeze(1).unwrap();
                        hs = cell.step(&xs, Some(&ds), &hs).unwrap();
                        ys.push(hs.h.clone());
                    }
                    let y = Tensor::stack(&ys, 1).unwrap();
                    (&y * &gy).unwrap().sum_all().unwrap()
                };
                let gf = fused_loss().backward().unwrap();
                let gr = reference_loss().backward().unwrap();
                let mut vars: Vec<(String, Var)> = store.vars();
                vars.push(("x".into(), x.clone()));
                vars.push(("h0".into(), h0.clone()));
                vars.push(("dt".into(), dt.clone()));
                for (name, var) in &vars {
                    let a = gr.get(var.as_tensor()).expect("a reference gradient");
                    let f = gf.get(var.as_tensor()).expect("a fused gradient");
                    assert!(common::rel_err(a, &a.zeros_like().unwrap()) > 0.0, "{name}");
                    common::assert_close(
                        &format!("{solver} backbone {backbone_layers} {dtype:?} grad.{name}"),
                        f,
                        a,
                        tol,
                    );
                }
                if dtype != DType::F64 {
                    continue;
                }
                // Central differences of the fused loss in the elapsed times.
                let analytic: Vec<f64> = gf
                    .get(dt.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let base: Vec<f64> = dt.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let eps = 1e-6;
                for (q, &g) in analytic.iter().enumerate() {
                    let at = |d: f64| {
                        let mut p = base.clone();
                        p[q] += d;
                        dt.set(&Tensor::from_vec(p, (b, t), &Device::Cpu).unwrap())
                            .unwrap();
                        fused_loss().to_scalar::<f64>().unwrap()
                    };
                    let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                    let err = (numeric - g).abs() / g.abs().max(1.0);
                    assert!(
                        err < 1e-6,
                        "{solver} backbone {backbone_layers} dt[{q}]: analytic {g}, numeric {numeric}"
                    );
                }
                dt.set(&Tensor::from_vec(base, (b, t), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
    }
}

/// Dormand–Prince has no fused kernel: with `Kernel::Fused` it runs the reference, bit for bit,
/// and the cell declines the fused route.
#[test]
fn dopri5_runs_the_reference() {
    let case = Case {
        b: 3,
        t: 4,
        i: 3,
        h: 5,
        layers: 2,
        backbone_layers: 1,
        backbone_units: 6,
        solver: "dopri5",
        unfolds: 1,
        with_h0: true,
        with_dt: true,
    };
    let reference = run(&case, Kernel::Reference, None, DType::F64, 600);
    let fused = run(&case, Kernel::Fused, Some(2), DType::F64, 600);
    assert_eq!(reference.len(), fused.len());
    for ((n1, a), (_, b)) in reference.iter().zip(&fused) {
        let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f64> = b.flatten_all().unwrap().to_vec1().unwrap();
        assert!(a.iter().all(|v| v.is_finite()), "{n1}");
        assert_eq!(a, b, "{n1}");
    }
    let store = ParamStore::seeded(601);
    let cell = OdeRnn::new(
        3,
        5,
        0,
        &options(&case),
        store.var_builder(DType::F64, &Device::Cpu),
    )
    .unwrap();
    let x = Tensor::zeros((2, 3, 3), DType::F64, &Device::Cpu).unwrap();
    let state = CellState {
        h: Tensor::zeros((2, 5), DType::F64, &Device::Cpu).unwrap(),
        c: None,
    };
    assert!(cell
        .forward_sequence(&x, None, &state, Route::CpuFused { threads: 2 })
        .unwrap()
        .is_none());
    // And the fixed-step solvers take the fused route, the reference route declines it.
    let cell = OdeRnn::new(
        3,
        5,
        0,
        &options(&Case {
            solver: "rk4",
            ..case.clone()
        }),
        store.var_builder(DType::F64, &Device::Cpu).pp("other"),
    )
    .unwrap();
    assert!(cell
        .forward_sequence(&x, None, &state, Route::CpuFused { threads: 2 })
        .unwrap()
        .is_some());
    assert!(cell
        .forward_sequence(&x, None, &state, Route::Reference)
        .unwrap()
        .is_none());
}

/// Inference with detached weights and inputs (the op then saves nothing): outputs and final
/// state still equal the reference's, for each solver, with and without elapsed times.
#[test]
fn inference_without_saved_values_equals_reference() {
    use remanence_cells::{Recurrent, RnnState};
    for (k, solver) in ["euler", "heun", "rk4"].iter().enumerate() {
        for (backbone_layers, with_dt) in [(0, true), (1, false), (2, true)] {
            let case = Case {
                b: 3,
                t: 5,
                i: 3,
                h: 7,
                layers: 2,
                backbone_layers,
                backbone_units: 6,
                solver,
                unfolds: 2,
                with_h0: true,
                with_dt,
            };
            let seed = 700 + 10 * k as u64 + backbone_layers as u64;
            let mut rng = Rng8::seed_from_u64(seed);
            let x = uniform(&[3, 5, 3], -1.5, 1.5, &mut rng);
            let h0 = uniform(&[2, 3, 7], -1.0, 1.0, &mut rng);
            let dt = uniform(&[3, 5], 0.2, 2.0, &mut rng);
            let mut outs = Vec::new();
            for kernel in [Kernel::Reference, Kernel::Fused] {
                let cfg = config(&case, kernel, Some(2));
                let store = ParamStore::seeded(seed);
                StackedRnn::seed_store(&cfg, &store, "rnn", DType::F64, &Device::Cpu).unwrap();
                // Creates every parameter in the store.
                StackedRnn::new(&cfg, store.var_builder(DType::F64, &Device::Cpu).pp("rnn"))
                    .unwrap();
                let mut wr = Rng8::seed_from_u64(seed + 1);
                for (name, var) in store.vars() {
                    if name.contains("ode_l") {
                        var.set(&uniform(var.dims(), -0.8, 0.8, &mut wr)).unwrap();
                    }
                }
                let vb = candle_nn::VarBuilder::from_tensors(
                    store.tensors().into_iter().collect(),
                    DType::F64,
                    &Device::Cpu,
                );
                let rnn = StackedRnn::new(&cfg, vb.pp("rnn")).unwrap();
                let init = RnnState {
                    h: h0.clone(),
                    c: None,
                };
                let (y, last) = rnn
                    .forward(&x, Some(&init), with_dt.then_some(&dt))
                    .unwrap();
                outs.push((y, last.h));
            }
            common::assert_close(
                &format!("{solver} backbone {backbone_layers} y"),
                &outs[1].0,
                &outs[0].0,
                1e-12,
            );
            common::assert_close(
                &format!("{solver} backbone {backbone_layers} h_n"),
                &outs[1].1,
                &outs[0].1,
                1e-12,
            );
        }
    }
}
