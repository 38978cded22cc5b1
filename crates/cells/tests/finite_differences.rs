//! Gradients of every cell against central finite differences in f64, on random inputs, random
//! initial states and random parameters (never zeros).
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::{
    Activation, CellKind, CtOptions, Kernel, ParamStore, Recurrent, RnnConfig, RnnState, StackedRnn,
};

fn randn(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn check(cell: CellKind, activation: Activation, layers: usize, seed: u64) {
    check_ct(cell, activation, layers, seed, CtOptions::default(), false);
}

/// Checks the reference path and, where the cell has one, the fused path.
fn check_ct(
    cell: CellKind,
    activation: Activation,
    layers: usize,
    seed: u64,
    ct: CtOptions,
    with_dt: bool,
) {
    check_path(cell, activation, layers, seed, ct.clone(), with_dt, true);
    check_path(cell, activation, layers, seed, ct, with_dt, false);
}

#[allow(clippy::too_many_arguments)]
fn check_path(
    cell: CellKind,
    activation: Activation,
    layers: usize,
    seed: u64,
    ct: CtOptions,
    with_dt: bool,
    reference: bool,
) {
    let (b, t, i, h) = (2, 5, 3, 4);
    let cfg = RnnConfig {
        cell,
        input_size: i,
        hidden_size: h,
        num_layers: layers,
        activation,
        ct,
        reservoir: Default::default(),
        threads: None,
        kernel: if reference {
            Kernel::Reference
        } else {
            Kernel::Fused
        },
    };
    let store = ParamStore::seeded(seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", DType::F64, &Device::Cpu).unwrap();
    let rnn = StackedRnn::new(&cfg, store.var_builder(DType::F64, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 100);
    let x = Var::from_tensor(&randn(&[b, t, i], &mut rng)).unwrap();
    let h0 = Var::from_tensor(&randn(&[layers, b, h], &mut rng)).unwrap();
    let c0 = (cell == CellKind::Lstm)
        .then(|| Var::from_tensor(&randn(&[layers, b, h], &mut rng)).unwrap());
    let dt = with_dt.then(|| randn(&[b, t], &mut rng).affine(0.4, 0.8).unwrap());
    let out = rnn.output_size();
    let gy = randn(&[b, t, out], &mut rng);
    let gh = randn(&[layers, b, h], &mut rng);

    let loss = || -> f64 {
        let init = RnnState {
            h: h0.as_tensor().clone(),
            c: c0.as_ref().map(|c| c.as_tensor().clone()),
        };
        let (y, last) = rnn
            .forward(x.as_tensor(), Some(&init), dt.as_ref())
            .unwrap();
        let mut l = ((&y * &gy).unwrap().sum_all().unwrap()
            + (&last.h * &gh).unwrap().sum_all().unwrap())
        .unwrap();
        if let Some(c) = &last.c {
            l = (l + (c * &gh).unwrap().sum_all().unwrap()).unwrap();
        }
        l.to_scalar::<f64>().unwrap()
    };
    let init = RnnState {
        h: h0.as_tensor().clone(),
        c: c0.as_ref().map(|c| c.as_tensor().clone()),
    };
    let (y, last) = rnn
        .forward(x.as_tensor(), Some(&init), dt.as_ref())
        .unwrap();
    let mut l = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &last.c {
        l = (l + (c * &gh).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = l.backward().unwrap();

    let mut vars: Vec<(String, Var)> = store.vars();
    // The wiring masks are fixed: they get no gradient.
    vars.retain(|(name, var)| {
        let fixed = name.ends_with("sparsity_mask");
        assert_eq!(grads.get(var.as_tensor()).is_none(), fixed, "{name}");
        !fixed
    });
    vars.push(("x".into(), x.clone()));
    vars.push(("h0".into(), h0.clone()));
    if let Some(c0) = &c0 {
        vars.push(("c0".into(), c0.clone()));
    }
    let eps = 1e-6;
    for (name, var) in vars {
        let analytic: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let mut numeric = vec![0.0; base.len()];
        for k in 0..base.len() {
            let mut p = base.clone();
            p[k] += eps;
            var.set(&Tensor::from_vec(p.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lp = loss();
            p[k] -= 2.0 * eps;
            var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lm = loss();
            numeric[k] = (lp - lm) / (2.0 * eps);
        }
        var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let a = Tensor::new(analytic.as_slice(), &Device::Cpu).unwrap();
        let n = Tensor::new(numeric.as_slice(), &Device::Cpu).unwrap();
        common::assert_close(&format!("{cell} {name}"), &a, &n, 1e-7);
    }
}

#[test]
fn srn_tanh_gradients_match_finite_differences() {
    check(CellKind::Srn, Activation::Tanh, 2, 1);
}
#[test]
fn srn_sigmoid_gradients_match_finite_differences() {
    check(CellKind::Srn, Activation::Sigmoid, 1, 2);
}
#[test]
fn lstm_gradients_match_finite_differences() {
    check(CellKind::Lstm, Activation::Tanh, 2, 3);
}
#[test]
fn gru_gradients_match_finite_differences() {
    check(CellKind::Gru, Activation::Tanh, 2, 4);
}

fn ct(f: impl FnOnce(&mut CtOptions)) -> CtOptions {
    let mut o = CtOptions {
        backbone_units: 6,
        ..CtOptions::default()
    };
    f(&mut o);
    o
}

#[test]
fn ltc_gradients_match_finite_differences() {
    check_ct(CellKind::Ltc, Activation::Tanh, 1, 5, ct(|_| {}), true);
    check_ct(
        CellKind::Ltc,
        Activation::Tanh,
        1,
        6,
        ct(|o| o.wiring = "random:0.5:2".parse().unwrap()),
        false,
    );
    check_ct(
        CellKind::Ltc,
        Activation::Tanh,
        1,
        7,
        ct(|o| {
            o.constraint = "clip".parse().unwrap();
            o.input_mapping = "linear".parse().unwrap();
            o.output_mapping = "none".parse().unwrap();
            o.ode_unfolds = 3;
        }),
        true,
    );
}

#[test]
fn cfc_gradients_match_finite_differences() {
    for (k, mode) in ["default", "no-gate", "pure"].iter().enumerate() {
        check_ct(
            CellKind::Cfc,
            Activation::Tanh,
            1,
            10 + k as u64,
            ct(|o| o.mode = mode.parse().unwrap()),
            true,
        );
    }
    check_ct(
        CellKind::Cfc,
        Activation::Tanh,
        1,
        13,
        ct(|o| {
            o.backbone_layers = 2;
            o.backbone_activation = "silu".parse().unwrap();
        }),
        false,
    );
}

/// Both paths (the fused CfC kernel and the reference) without backbone, with two backbone
/// layers and with the other activations. GELU is left out: Candle's derivative of it (which
/// both paths reproduce) rounds 1/√(2π) to 0.398942, a relative error of 7e-7.
#[test]
fn cfc_depths_and_activations_match_finite_differences() {
    for (k, (mode, layers, act, with_dt)) in [
        ("default", 0, "lecun-tanh", true),
        ("pure", 0, "lecun-tanh", true),
        ("no-gate", 2, "lecun-tanh", true),
        ("pure", 2, "tanh", false),
        ("default", 1, "relu", true),
        ("no-gate", 1, "silu", true),
    ]
    .into_iter()
    .enumerate()
    {
        check_ct(
            CellKind::Cfc,
            Activation::Tanh,
            1,
            30 + k as u64,
            ct(|o| {
                o.mode = mode.parse().unwrap();
                o.backbone_layers = layers;
                o.backbone_activation = act.parse().unwrap();
            }),
            with_dt,
        );
    }
}

#[test]
fn ctrnn_and_odernn_gradients_match_finite_differences() {
    for solver in ["euler", "heun", "rk4"] {
        check_ct(
            CellKind::Ctrnn,
            Activation::Tanh,
            2,
            20,
            ct(|o| {
                o.solver = solver.parse().unwrap();
                o.ode_unfolds = 3;
            }),
            true,
        );
    }
    check_ct(
        CellKind::Odernn,
        Activation::Tanh,
        1,
        21,
        ct(|o| {
            o.solver = "rk4".parse().unwrap();
            o.ode_unfolds = 2;
        }),
        true,
    );
}

/// The CT-RNN's fused kernel (and its reference) with one unfold per step and unit elapsed
/// times; the case above covers three unfolds with elapsed times, two layers.
#[test]
fn ctrnn_single_unfold_gradients_match_finite_differences() {
    for (k, solver) in ["euler", "heun", "rk4"].iter().enumerate() {
        check_ct(
            CellKind::Ctrnn,
            Activation::Tanh,
            1,
            22 + k as u64,
            ct(|o| {
                o.solver = solver.parse().unwrap();
                o.ode_unfolds = 1;
            }),
            false,
        );
    }
}

/// The ODE-RNN's fused kernel (and its reference) for each fixed-step solver and ODE networks
/// of 0, 1 and 2 hidden layers, with and without elapsed times.
#[test]
fn odernn_solvers_and_depths_match_finite_differences() {
    for (k, solver) in ["euler", "heun", "rk4"].iter().enumerate() {
        for backbone_layers in [0, 1, 2] {
            check_ct(
                CellKind::Odernn,
                Activation::Tanh,
                1 + backbone_layers % 2,
                30 + 3 * k as u64 + backbone_layers as u64,
                ct(|o| {
                    o.solver = solver.parse().unwrap();
                    o.ode_unfolds = 1 + backbone_layers;
                    o.backbone_layers = backbone_layers;
                    o.backbone_units = 5;
                }),
                backbone_layers != 1,
            );
        }
    }
}
