//! The fast paths of the fused LSTM, GRU and SRN kernels: the inference pass (no input needs a
//! gradient, nothing is saved) gives the very bits of the training pass, also for a kernel that
//! keeps its saved values either way (CT-RNN); and at sizes where the packed products run whole
//! tiles (hidden 128, 16 or 32 rows per thread, input 32), the fused cells equal the reference
//! composition, values and every gradient.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::kernels::cpu::ctrnn::FixedStep;
use remanence_cells::kernels::cpu::{
    CtRnnKernel, Fused, GruKernel, LstmKernel, RowKernel, SrnKernel,
};
use remanence_cells::{Activation, CellKind, Kernel, ParamStore, Recurrent, RnnConfig, StackedRnn};

fn uniform(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// The values of a tensor, exactly, as f64.
fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The op's outputs and final values with plain tensors (inference) and with variables
/// (training: the op saves for the backward pass, which then runs), bit for bit.
fn same_bits<K: RowKernel + Clone + 'static>(kernel: K, b: usize, t: usize, seed: u64) {
    for dtype in [DType::F32, DType::F64] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x = uniform(&[b, t, kernel.input_width()], &mut rng, dtype);
        let w = (uniform(&[kernel.weights_len()], &mut rng, dtype) * 0.5).unwrap();
        let s0 = uniform(&[b, kernel.state_width()], &mut rng, dtype);
        for threads in [1, 2, 3] {
            let (y, fin) = Fused::new(kernel.clone(), threads)
                .apply(&x, &w, &s0)
                .unwrap();
            let (xv, wv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap());
            let (yt, fint) = Fused::new(kernel.clone(), threads)
                .apply(xv.as_tensor(), wv.as_tensor(), &s0)
                .unwrap();
            let what = format!("{} {dtype:?} {threads} threads", K::NAME);
            assert_eq!(values(&y), values(&yt), "{what}: outputs");
            assert_eq!(values(&fin), values(&fint), "{what}: final values");
            assert!(values(&y).iter().all(|v| v.is_finite()), "{what}: finite");
            // The training pass can still run its backward pass.
            let grads = yt.sum_all().unwrap().backward().unwrap();
            let dw = grads.get(wv.as_tensor()).expect("a weight gradient");
            assert!(values(dw).iter().any(|&v| v != 0.0), "{what}: a gradient");
        }
    }
}

#[test]
fn the_inference_pass_gives_the_bits_of_the_training_pass() {
    same_bits(
        LstmKernel {
            input: 5,
            hidden: 19,
        },
        7,
        6,
        1,
    );
    same_bits(
        GruKernel {
            input: 3,
            hidden: 33,
        },
        5,
        4,
        2,
    );
    for logistic in [false, true] {
        for leak in [None, Some(0.3)] {
            same_bits(
                SrnKernel {
                    input: 4,
                    hidden: 17,
                    logistic,
                    leak,
                },
                6,
                5,
                3,
            );
        }
    }
    // A kernel that does not skip its saved values gets a real buffer either way.
    same_bits(
        CtRnnKernel {
            input: 3,
            hidden: 6,
            solver: FixedStep::Rk4,
            unfolds: 2,
            dt: None,
        },
        4,
        5,
        4,
    );
}

/// Outputs, final states and the gradients of every input and weight of one layer of `cell`.
fn run(
    cell: CellKind,
    b: usize,
    t: usize,
    i: usize,
    h: usize,
    kernel: Kernel,
    dtype: DType,
) -> Vec<(String, Tensor)> {
    let cfg = RnnConfig {
        cell,
        input_size: i,
        hidden_size: h,
        num_layers: 1,
        activation: Activation::Tanh,
        ct: Default::default(),
        reservoir: Default::default(),
        threads: Some(2),
        kernel,
    };
    let store = ParamStore::seeded(5);
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let x = Var::from_tensor(&uniform(&[b, t, i], &mut rng, dtype)).unwrap();
    let gy = uniform(&[b, t, h], &mut rng, dtype);
    let gh = uniform(&[1, b, h], &mut rng, dtype);
    let (y, last) = rnn.forward(x.as_tensor(), None, None).unwrap();
    let mut loss = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &last.c {
        loss = (loss + (c * &gh).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut out = vec![
        ("y".to_string(), y.clone()),
        ("h_n".to_string(), last.h.clone()),
    ];
    if let Some(c) = &last.c {
        out.push(("c_n".into(), c.clone()));
    }
    for (name, v) in store.vars() {
        out.push((
            format!("grad.{name}"),
            grads.get(v.as_tensor()).expect("gradient").clone(),
        ));
    }
    out.push(("grad.x".into(), grads.get(x.as_tensor()).unwrap().clone()));
    out
}

#[test]
fn fused_cells_equal_the_reference_on_whole_tiles() {
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::Srn] {
        // 32 and 64 rows: 16 and 32 per thread; hidden 128: whole panels of every build.
        for (b, t) in [(32, 5), (64, 3)] {
            for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
                let want = run(cell, b, t, 32, 128, Kernel::Reference, dtype);
                let got = run(cell, b, t, 32, 128, Kernel::Fused, dtype);
                assert_eq!(want.len(), got.len());
                for ((n, w), (_, g)) in want.iter().zip(&got) {
                    common::assert_close(&format!("{cell} {n} {b}x{t} {dtype:?}"), g, w, tol);
                }
            }
        }
    }
}
