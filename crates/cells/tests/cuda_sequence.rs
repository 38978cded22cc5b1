//! The whole-sequence ops of the CUDA route (`kernels/cuda/sequence.rs`: one op per layer and
//! pass for SRN, LSTM, GRU and LTC, the time loop inside) equal the reference composition:
//! outputs, final states and every gradient (inputs, h0, c0, all weights and biases; the LTC's
//! parameters, with and without Δt) through Candle's autograd, f64 to 1e-10 and f32 to 1e-5, on
//! fresh random inputs and several shapes (T = 1, batch 1 among them). And the backward graph no longer grows with T: the device path adds no
//! graph node per step, so no per-step slice of a tracked tensor pads its gradient to the whole
//! sequence (the O(T²) backward of the per-step route).
//!
//! Built with `--features cuda` where CUDA device 0 exists (`scripts/gpu_check.sh run`), the
//! device path runs on the GPU (its kernels from the PTX, its products through cuBLAS) against
//! the reference on the CPU; otherwise the ops run the host build of the same kernels and the
//! same GEMM plans (`GemmPlan::host`).
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::cells::{Gru, Lstm, Ltc, Srn};
use remanence_cells::kernels::cuda::{GruSequence, LstmSequence, SrnSequence};
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

#[derive(Clone, Copy, Debug)]
struct Case {
    cell: CellKind,
    act: Activation,
    b: usize,
    t: usize,
    i: usize,
    h: usize,
    seed: u64,
    /// LTC only: per-sample elapsed times.
    with_dt: bool,
}

/// CUDA device 0 when this build has CUDA and the machine a GPU, else the CPU (host builds).
fn gpu() -> Device {
    Device::new_cuda(0).unwrap_or(Device::Cpu)
}

fn ct() -> CtOptions {
    CtOptions {
        ode_unfolds: 3,
        ..Default::default()
    }
}

fn config(c: Case) -> RnnConfig {
    RnnConfig {
        cell: c.cell,
        input_size: c.i,
        hidden_size: c.h,
        num_layers: 1,
        activation: c.act,
        ct: ct(),
        reservoir: Default::default(),
        threads: None,
        kernel: Kernel::Reference,
    }
}

/// One layer's forward pass: the reference composition (`device = false`, through
/// `StackedRnn` with `Kernel::Reference`) or the cell's `device_sequence` (the whole-sequence
/// op), with its loss, the tracked inputs and the parameter store.
struct Pass {
    y: Tensor,
    last: CellState,
    loss: Tensor,
    x: Var,
    h0: Var,
    c0: Var,
    store: ParamStore,
}

fn forward(c: Case, dtype: DType, device: bool) -> Pass {
    let dev = if device { gpu() } else { Device::Cpu };
    let on = |t: Tensor| t.to_device(&dev).unwrap();
    let cfg = config(c);
    let store = ParamStore::seeded(c.seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", dtype, &dev).unwrap();
    let vb = store.var_builder(dtype, &dev).pp("rnn");
    let mut rng = Rng8::seed_from_u64(c.seed.wrapping_mul(31).wrapping_add(7));
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
    let dt = c.with_dt.then_some(&dt);
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
                let ct = ct();
                let motor = ct.wiring.output_dim(c.h);
                Ltc::new(c.i, c.h, motor, &ct, vb.pp("rnn_cell"))
                    .unwrap()
                    .device_sequence(x.as_tensor(), dt, &state)
            }
            k => panic!("no whole-sequence op for {k}"),
        }
        .unwrap()
    } else {
        let rnn = StackedRnn::new(&cfg, vb.clone()).unwrap();
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
    // Random weights on every output, so every gradient path carries a distinct signal.
    let gy = on(uniform(y.dims(), &mut rng, dtype));
    let gh = on(uniform(last.h.dims(), &mut rng, dtype));
    let mut loss = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(cn) = &last.c {
        let gc = on(uniform(cn.dims(), &mut rng, dtype));
        loss = (loss + (cn * &gc).unwrap().sum_all().unwrap()).unwrap();
    }
    Pass {
        y,
        last,
        loss,
        x,
        h0,
        c0,
        store,
    }
}

/// Outputs and every gradient by name, on the CPU.
fn run(c: Case, dtype: DType, device: bool) -> Vec<(String, Tensor)> {
    let p = forward(c, dtype, device);
    let grads = p.loss.backward().unwrap();
    let mut out = vec![("y".to_string(), p.y), ("h_n".to_string(), p.last.h)];
    if let Some(cn) = p.last.c {
        out.push(("c_n".into(), cn));
    }
    let mut params = 0;
    for (name, v) in p.store.vars() {
        // The LTC's wiring masks are constants of the store, not trained.
        if c.cell == CellKind::Ltc && name.ends_with("_mask") {
            continue;
        }
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{:?}: no gradient for {name}", c.cell));
        out.push((format!("grad.{name}"), g.clone()));
        params += 1;
    }
    if c.cell != CellKind::Ltc {
        // weight_ih, weight_hh, bias_ih, bias_hh.
        assert_eq!(params, 4, "{:?}: parameters", c.cell);
    }
    out.push(("grad.x".into(), grads.get(p.x.as_tensor()).unwrap().clone()));
    out.push((
        "grad.h0".into(),
        grads.get(p.h0.as_tensor()).unwrap().clone(),
    ));
    if c.cell == CellKind::Lstm {
        out.push((
            "grad.c0".into(),
            grads.get(p.c0.as_tensor()).unwrap().clone(),
        ));
    }
    out.into_iter()
        .map(|(n, t)| (n, t.to_device(&Device::Cpu).unwrap()))
        .collect()
}

fn compare(c: Case) {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
        let want = run(c, dtype, false);
        let got = run(c, dtype, true);
        let names = |v: &[(String, Tensor)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&want), names(&got), "{:?} outputs", c.cell);
        for ((n, w), (_, g)) in want.iter().zip(&got) {
            // Not a vacuous comparison: every output and gradient carries signal.
            let norm = w
                .to_dtype(DType::F64)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(norm > 0.0, "{:?} {n}: zero reference", c.cell);
            common::assert_close(
                &format!(
                    "{:?} {:?} {n} {dtype:?} b{} t{} i{} h{}",
                    c.cell, c.act, c.b, c.t, c.i, c.h
                ),
                g,
                w,
                tol,
            );
        }
    }
}

/// (B, T, I, H): the usual shape, T = 1, batch 1, both 1, a longer sequence, H = 1.
const SHAPES: [(usize, usize, usize, usize); 6] = [
    (3, 5, 4, 7),
    (4, 1, 3, 5),
    (1, 6, 2, 4),
    (1, 1, 2, 3),
    (2, 17, 3, 6),
    (3, 4, 2, 1),
];

fn each_shape(cell: CellKind, act: Activation, seed: u64) {
    for (k, &(b, t, i, h)) in SHAPES.iter().enumerate() {
        // The LTC needs two units at least (its wiring) and alternates with and without Δt.
        let h = if cell == CellKind::Ltc { h.max(2) } else { h };
        compare(Case {
            cell,
            act,
            b,
            t,
            i,
            h,
            seed: seed + 100 * k as u64,
            with_dt: cell == CellKind::Ltc && k % 2 == 0,
        });
    }
}

#[test]
fn lstm_sequence_op_equals_reference() {
    each_shape(CellKind::Lstm, Activation::Tanh, 11);
}

#[test]
fn gru_sequence_op_equals_reference() {
    each_shape(CellKind::Gru, Activation::Tanh, 12);
}

#[test]
fn ltc_sequence_op_equals_reference() {
    each_shape(CellKind::Ltc, Activation::Tanh, 15);
}

#[test]
fn srn_sequence_op_equals_reference() {
    each_shape(CellKind::Srn, Activation::Tanh, 13);
    each_shape(CellKind::Srn, Activation::Sigmoid, 14);
}

/// The graph autograd walks, as (node count, total values of its tensors).
fn graph(c: Case, device: bool) -> (usize, usize) {
    let p = forward(c, DType::F64, device);
    let nodes = p.loss.sorted_nodes();
    let values = nodes.iter().map(|t| t.elem_count()).sum();
    (nodes.len(), values)
}

/// The device path's backward graph has the same nodes at T = 4 and T = 64 (one op per layer,
/// no node per step), so its size is linear in T; the reference composition, for contrast, adds
/// nodes every step.
#[test]
fn backward_graph_does_not_grow_with_steps() {
    for cell in [CellKind::Srn, CellKind::Lstm, CellKind::Gru, CellKind::Ltc] {
        let case = |t| Case {
            cell,
            act: Activation::Tanh,
            b: 2,
            t,
            i: 3,
            h: 4,
            seed: 21,
            with_dt: cell == CellKind::Ltc,
        };
        let (short, short_values) = graph(case(4), true);
        let (long, long_values) = graph(case(64), true);
        assert_eq!(short, long, "{cell}: graph nodes at T = 4 and T = 64");
        // Every tensor of the graph is at most linear in T (64 / 4 = 16).
        assert!(
            long_values <= 16 * short_values,
            "{cell}: {long_values} values at T = 64, {short_values} at T = 4"
        );
        let (ref_short, _) = graph(case(4), false);
        let (ref_long, _) = graph(case(64), false);
        assert!(
            ref_long >= ref_short + 60,
            "{cell}: the reference adds nodes per step ({ref_short} → {ref_long})"
        );
        // And far fewer nodes than steps: the op is one node, whatever T.
        assert!(long < 64, "{cell}: {long} nodes at T = 64");
    }
}

/// The ops refuse inputs whose shapes do not fit together, instead of reading past a buffer.
#[test]
fn ops_refuse_mismatched_shapes() {
    let dev = Device::Cpu;
    let z = |s: &[usize]| Tensor::zeros(s, DType::F64, &dev).unwrap();
    // LSTM: gates not a multiple of 4; W_hh of the wrong shape; a state of the wrong size.
    assert!(z(&[2, 3, 10])
        .apply_op3(&z(&[10, 2]), &z(&[2, 3, 2]), LstmSequence)
        .is_err());
    assert!(z(&[2, 3, 8])
        .apply_op3(&z(&[8, 3]), &z(&[2, 3, 2]), LstmSequence)
        .is_err());
    assert!(z(&[2, 3, 8])
        .apply_op3(&z(&[8, 2]), &z(&[1, 3, 2]), LstmSequence)
        .is_err());
    assert!(z(&[2, 3, 8])
        .apply_op3(&z(&[8, 2]), &z(&[2, 3, 2]), LstmSequence)
        .is_ok());
    // GRU: [W_hh | b_hh] one value short.
    assert!(z(&[2, 3, 6])
        .apply_op3(&z(&[6 * 2 + 5]), &z(&[3, 2]), GruSequence)
        .is_err());
    assert!(z(&[2, 3, 6])
        .apply_op3(&z(&[6 * 2 + 6]), &z(&[3, 2]), GruSequence)
        .is_ok());
    // SRN: h0 of another batch; no steps.
    let srn = SrnSequence { logistic: false };
    assert!(z(&[2, 3, 2])
        .apply_op3(&z(&[2, 2]), &z(&[4, 2]), srn)
        .is_err());
    assert!(z(&[0, 3, 2])
        .apply_op3(&z(&[2, 2]), &z(&[3, 2]), srn)
        .is_err());
    // f16 is not supported.
    let h = |s: &[usize]| Tensor::zeros(s, DType::F16, &dev).unwrap();
    assert!(h(&[2, 3, 2])
        .apply_op3(&h(&[2, 2]), &h(&[3, 2]), srn)
        .is_err());
}
