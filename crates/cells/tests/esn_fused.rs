//! The echo-state reservoir's fused path (the Elman kernel with a leak) equals its reference
//! step composition: outputs, final states and every gradient, on fresh random inputs, in f64
//! (1e-10) and f32 (1e-5), leaky and not, one and two layers; and the fused gradients equal
//! central finite differences in f64.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::{
    Activation, CellKind, Kernel, ParamStore, Recurrent, ReservoirOptions, RnnConfig, RnnState,
    StackedRnn,
};

fn uniform(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

struct Case {
    dims: (usize, usize, usize, usize, usize),
    leak: f64,
    seed: u64,
}

fn config(c: &Case, kernel: Kernel) -> RnnConfig {
    let (_, _, i, h, layers) = c.dims;
    RnnConfig {
        cell: CellKind::Esn,
        input_size: i,
        hidden_size: h,
        num_layers: layers,
        activation: Activation::Tanh,
        ct: Default::default(),
        reservoir: ReservoirOptions {
            spectral_radius: 0.9,
            leak_rate: c.leak,
            connectivity: 0.5,
            input_connectivity: 0.7,
            bias_scaling: 0.3,
            ..Default::default()
        },
        kernel,
        threads: Some(2),
    }
}

/// Outputs, final state and the gradients of a random linear functional of both.
fn run(c: &Case, kernel: Kernel, dtype: DType) -> Vec<(String, Tensor)> {
    let (b, t, i, h, layers) = c.dims;
    let cfg = config(c, kernel);
    let store = ParamStore::seeded(c.seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", dtype, &Device::Cpu).unwrap();
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c.seed + 7);
    let mut mk = |shape: &[usize]| {
        Var::from_tensor(&uniform(shape, &mut rng).to_dtype(dtype).unwrap()).unwrap()
    };
    let x = mk(&[b, t, i]);
    let h0 = mk(&[layers, b, h]);
    let gy = mk(&[b, t, h]).as_tensor().clone();
    let gh = mk(&[layers, b, h]).as_tensor().clone();
    let init = RnnState {
        h: h0.as_tensor().clone(),
        c: None,
    };
    let (y, last) = rnn.forward(x.as_tensor(), Some(&init), None).unwrap();
    let loss = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let mut out = vec![("y".to_string(), y), ("h_n".to_string(), last.h)];
    for (name, v) in store.vars() {
        out.push((
            format!("grad.{name}"),
            grads.get(v.as_tensor()).unwrap().clone(),
        ));
    }
    out.push(("grad.x".into(), grads.get(x.as_tensor()).unwrap().clone()));
    out.push(("grad.h0".into(), grads.get(h0.as_tensor()).unwrap().clone()));
    out
}

const CASES: [Case; 5] = [
    Case {
        dims: (3, 6, 5, 7, 1),
        leak: 0.3,
        seed: 1,
    },
    Case {
        dims: (3, 6, 5, 7, 1),
        leak: 1.0,
        seed: 2,
    },
    Case {
        dims: (1, 1, 2, 3, 1),
        leak: 0.5,
        seed: 3,
    },
    Case {
        dims: (2, 9, 4, 6, 2),
        leak: 0.05,
        seed: 4,
    },
    Case {
        dims: (5, 4, 1, 11, 2),
        leak: 0.8,
        seed: 5,
    },
];

#[test]
fn the_fused_reservoir_equals_its_reference() {
    for c in &CASES {
        for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
            let a = run(c, Kernel::Reference, dtype);
            let b = run(c, Kernel::Fused, dtype);
            assert_eq!(a.len(), b.len());
            for ((n, x), (m, y)) in a.iter().zip(&b) {
                assert_eq!(n, m);
                let what = format!("esn leak {} {n} {:?} {dtype:?}", c.leak, c.dims);
                common::assert_close(&what, y, x, tol);
            }
        }
    }
}

#[test]
fn the_fused_reservoir_gradients_equal_finite_differences() {
    let c = Case {
        dims: (2, 5, 3, 4, 2),
        leak: 0.4,
        seed: 9,
    };
    let (b, t, i, h, layers) = c.dims;
    let cfg = config(&c, Kernel::Fused);
    let store = ParamStore::seeded(c.seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", DType::F64, &Device::Cpu).unwrap();
    let rnn = StackedRnn::new(&cfg, store.var_builder(DType::F64, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    let x = Var::from_tensor(&uniform(&[b, t, i], &mut rng)).unwrap();
    let h0 = Var::from_tensor(&uniform(&[layers, b, h], &mut rng)).unwrap();
    let gy = uniform(&[b, t, h], &mut rng);
    let gh = uniform(&[layers, b, h], &mut rng);
    let value = || {
        let init = RnnState {
            h: h0.as_tensor().clone(),
            c: None,
        };
        let (y, last) = rnn.forward(x.as_tensor(), Some(&init), None).unwrap();
        ((&y * &gy).unwrap().sum_all().unwrap() + (&last.h * &gh).unwrap().sum_all().unwrap())
            .unwrap()
    };
    let grads = value().backward().unwrap();
    let mut vars = store.vars();
    vars.push(("x".into(), x.clone()));
    vars.push(("h0".into(), h0.clone()));
    let eps = 1e-6;
    for (name, var) in vars {
        let analytic = grads.get(var.as_tensor()).unwrap().clone();
        let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let mut numeric = vec![0.0; base.len()];
        for k in 0..base.len() {
            let mut p = base.clone();
            p[k] += eps;
            var.set(&Tensor::from_vec(p.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lp = value().to_scalar::<f64>().unwrap();
            p[k] -= 2.0 * eps;
            var.set(&Tensor::from_vec(p, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let lm = value().to_scalar::<f64>().unwrap();
            numeric[k] = (lp - lm) / (2.0 * eps);
        }
        var.set(&Tensor::from_vec(base, var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        let n = Tensor::from_vec(numeric, analytic.shape(), &Device::Cpu).unwrap();
        common::assert_close(&format!("esn fused {name}"), &analytic, &n, 1e-7);
    }
}
