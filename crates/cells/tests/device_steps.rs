//! The GPU path of every fused cell (`device_sequence`: one whole-sequence op per layer, whose
//! time loop runs per step the recurrent product and the cell's CUDA kernels; more shapes in
//! `cuda_sequence.rs`) equals the reference composition: outputs, final states and every
//! gradient, through Candle's autograd, f64 to 1e-10 and f32 to 1e-5. Built with
//! `--features cuda` where CUDA device 0 exists (`scripts/gpu_check.sh run`), the device path runs
//! on the GPU, its kernels launched from the PTX and its products through cuBLAS, against the
//! reference on the CPU; otherwise the ops run the host build of the same kernel sources.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::cells::Gru;
use remanence_cells::cells::Lstm;
use remanence_cells::cells::Ltc;
use remanence_cells::cells::Srn;
use remanence_cells::{
    Activation, CellKind, CellState, CtOptions, Kernel, ParamStore, Recurrent, RnnConfig, RnnState,
    StackedRnn,
};

type Rng8 = rand_chacha::ChaCha8Rng;

fn uniform(shape: &[usize], rng: &mut Rng8, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

#[derive(Clone, Copy)]
struct Case {
    cell: CellKind,
    act: Activation,
    b: usize,
    t: usize,
    i: usize,
    h: usize,
    seed: u64,
}

/// CUDA device 0 when this build has CUDA and the machine a GPU, else the CPU (host builds).
fn gpu() -> Device {
    Device::new_cuda(0).unwrap_or(Device::Cpu)
}

/// Runs the reference (`device = false`, on the CPU) or the GPU path of one layer (on [`gpu`])
/// and returns its outputs and gradients by name, on the CPU.
fn run(c: Case, dtype: DType, device: bool, with_dt: bool) -> Vec<(String, Tensor)> {
    let dev = if device { gpu() } else { Device::Cpu };
    let on = |t: Tensor| t.to_device(&dev).unwrap();
    let ct = CtOptions {
        ode_unfolds: 3,
        ..Default::default()
    };
    let cfg = RnnConfig {
        cell: c.cell,
        input_size: c.i,
        hidden_size: c.h,
        num_layers: 1,
        activation: c.act,
        ct: ct.clone(),
        reservoir: Default::default(),
        threads: None,
        kernel: Kernel::Reference,
    };
    let store = ParamStore::seeded(c.seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", dtype, &dev).unwrap();
    let vb = store.var_builder(dtype, &dev).pp("rnn");
    let rnn = StackedRnn::new(&cfg, vb.clone()).unwrap();
    let mut rng = Rng8::seed_from_u64(c.seed + 5);
    let x = Var::from_tensor(&on(uniform(&[c.b, c.t, c.i], &mut rng, dtype))).unwrap();
    let h0 = Var::from_tensor(&on(uniform(&[c.b, c.h], &mut rng, dtype))).unwrap();
    let c0 = Var::from_tensor(&on(uniform(&[c.b, c.h], &mut rng, dtype))).unwrap();
    let dt = Tensor::from_vec(
        (0..c.b * c.t)
            .map(|_| 0.5 + rng.random::<f64>())
            .collect::<Vec<_>>(),
        (c.b, c.t),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    let dt = on(dt);
    let dt = with_dt.then_some(&dt);
    let lstm = c.cell == CellKind::Lstm;
    let state = CellState {
        h: h0.as_tensor().clone(),
        c: lstm.then(|| c0.as_tensor().clone()),
    };
    let (y, last) = if device {
        match c.cell {
            CellKind::Lstm => Lstm::new(c.i, c.h, 0, vb.clone())
                .unwrap()
                .device_sequence(x.as_tensor(), &state),
            CellKind::Gru => Gru::new(c.i, c.h, 0, vb.clone())
                .unwrap()
                .device_sequence(x.as_tensor(), &state),
            CellKind::Srn => Srn::new(c.i, c.h, 0, c.act, vb.clone())
                .unwrap()
                .device_sequence(x.as_tensor(), &state),
            CellKind::Ltc => {
                let motor = ct.wiring.output_dim(c.h);
                Ltc::new(c.i, c.h, motor, &ct, vb.pp("rnn_cell"))
                    .unwrap()
                    .device_sequence(x.as_tensor(), dt, &state)
            }
            k => panic!("no device path for {k}"),
        }
        .unwrap()
    } else {
        let init = RnnState {
            h: state.h.unsqueeze(0).unwrap(),
            c: state.c.as_ref().map(|c| c.unsqueeze(0).unwrap()),
        };
        let (y, last) = rnn.forward(x.as_tensor(), Some(&init), dt).unwrap();
        (
            y,
            CellState {
                h: last.h.squeeze(0).unwrap(),
                c: last.c.map(|c| c.squeeze(0).unwrap()),
            },
        )
    };
    let gy = on(uniform(y.dims(), &mut rng, dtype));
    let gh = on(uniform(last.h.dims(), &mut rng, dtype));
    let mut loss = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(cn) = &last.c {
        let gc = on(uniform(cn.dims(), &mut rng, dtype));
        loss = (loss + (cn * &gc).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut out = vec![("y".to_string(), y), ("h_n".to_string(), last.h.clone())];
    if let Some(cn) = last.c {
        out.push(("c_n".into(), cn));
    }
    for (name, v) in store.vars() {
        if let Some(g) = grads.get(v.as_tensor()) {
            out.push((format!("grad.{name}"), g.clone()));
        }
    }
    out.push(("grad.x".into(), grads.get(x.as_tensor()).unwrap().clone()));
    out.push(("grad.h0".into(), grads.get(h0.as_tensor()).unwrap().clone()));
    if lstm {
        out.push(("grad.c0".into(), grads.get(c0.as_tensor()).unwrap().clone()));
    }
    out.into_iter()
        .map(|(n, t)| (n, t.to_device(&Device::Cpu).unwrap()))
        .collect()
}

fn compare(c: Case, with_dt: bool) {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
        let want = run(c, dtype, false, with_dt);
        let got = run(c, dtype, true, with_dt);
        let names = |v: &[(String, Tensor)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&want), names(&got), "{} outputs", c.cell);
        for ((n, w), (_, g)) in want.iter().zip(&got) {
            common::assert_close(
                &format!("{} {n} {dtype:?} b{} t{} h{}", c.cell, c.b, c.t, c.h),
                g,
                w,
                tol,
            );
        }
    }
}

fn case(cell: CellKind, b: usize, t: usize, i: usize, h: usize, seed: u64) -> Case {
    Case {
        cell,
        act: Activation::Tanh,
        b,
        t,
        i,
        h,
        seed,
    }
}

#[test]
fn lstm_device_path_equals_reference() {
    compare(case(CellKind::Lstm, 3, 5, 4, 7, 1), false);
    compare(case(CellKind::Lstm, 1, 1, 2, 3, 2), false);
}

#[test]
fn gru_device_path_equals_reference() {
    compare(case(CellKind::Gru, 3, 5, 4, 7, 3), false);
    compare(case(CellKind::Gru, 1, 1, 2, 3, 4), false);
}

#[test]
fn srn_device_path_equals_reference() {
    compare(case(CellKind::Srn, 3, 5, 4, 7, 5), false);
    let mut c = case(CellKind::Srn, 2, 3, 3, 5, 6);
    c.act = Activation::Sigmoid;
    compare(c, false);
}

#[test]
fn ltc_device_path_equals_reference() {
    compare(case(CellKind::Ltc, 3, 4, 2, 5, 7), true);
    compare(case(CellKind::Ltc, 1, 1, 3, 4, 8), false);
}
