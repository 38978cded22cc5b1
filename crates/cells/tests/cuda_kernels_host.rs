//! The CUDA kernels (`crates/cells/kernels/*.cu`), built for the host under the emulation header,
//! equal the reference: whole sequences run as the GPU path runs them (per step the products,
//! here plain loops, and one launch of the cell's element-wise kernel; the LTC's sensory, unfold
//! and backward kernels), and outputs, final states and every gradient are compared with the
//! reference composition (SRN, LSTM, GRU) or with the fused CPU LTC op, itself tested against
//! the reference. f64 to 1e-10, f32 to 1e-5, on fresh random inputs, odd sizes, batch 1,
//! length 1.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::kernels::cpu::ltc::{LtcKernel, PackedLayout};
use remanence_cells::kernels::cpu::Fused;
use remanence_cells::kernels::cuda::{host, DeviceFloat};
use remanence_cells::{
    Activation, CellKind, Kernel, ParamStore, Recurrent, RnnConfig, RnnState, StackedRnn,
};

type Rng8 = rand_chacha::ChaCha8Rng;

fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut Rng8) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f64>())
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn vec_of<T: DeviceFloat + candle_core::WithDType>(t: &Tensor) -> Vec<T> {
    t.flatten_all().unwrap().to_vec1::<T>().unwrap()
}

/// `c (m × n) += a (m × k) · b`, b (k × n) or, transposed, bᵀ with b (n × k).
#[allow(clippy::too_many_arguments)]
fn mm<T: DeviceFloat>(c: &mut [T], a: &[T], b: &[T], m: usize, k: usize, n: usize, bt: bool) {
    for r in 0..m {
        for j in 0..n {
            let mut acc = T::zero();
            for q in 0..k {
                let bv = if bt { b[j * k + q] } else { b[q * n + j] };
                acc = acc + a[r * k + q] * bv;
            }
            c[r * n + j] = c[r * n + j] + acc;
        }
    }
}

/// `c (k × n) += aᵀ b` with a (m × k), b (m × n).
fn mm_tn<T: DeviceFloat>(c: &mut [T], a: &[T], b: &[T], m: usize, k: usize, n: usize) {
    for r in 0..m {
        for q in 0..k {
            for j in 0..n {
                c[q * n + j] = c[q * n + j] + a[r * k + q] * b[r * n + j];
            }
        }
    }
}

fn col_sums<T: DeviceFloat>(acc: &mut [T], a: &[T], cols: usize) {
    for row in a.chunks_exact(cols) {
        for (s, &v) in acc.iter_mut().zip(row) {
            *s = *s + v;
        }
    }
}

/// Step `t` of a (B, T, W) array as (B, W), and back.
fn rows<T: Copy>(x: &[T], b: usize, steps: usize, w: usize, t: usize) -> Vec<T> {
    (0..b)
        .flat_map(|r| x[(r * steps + t) * w..(r * steps + t + 1) * w].to_vec())
        .collect()
}
fn put_rows<T: Copy>(dst: &mut [T], src: &[T], b: usize, steps: usize, w: usize, t: usize) {
    for r in 0..b {
        dst[(r * steps + t) * w..(r * steps + t + 1) * w].copy_from_slice(&src[r * w..(r + 1) * w]);
    }
}

/// Everything one run yields, by name, in a fixed order.
type Results = Vec<(String, Tensor)>;

struct Problem {
    cell: CellKind,
    act: Activation,
    b: usize,
    t: usize,
    i: usize,
    h: usize,
    seed: u64,
}

/// The reference path (one layer, given initial state), its outputs and gradients, with the
/// inputs and weights the kernel path needs.
fn reference(p: &Problem, dtype: DType) -> (Results, Vec<(String, Tensor)>) {
    let cfg = RnnConfig {
        cell: p.cell,
        input_size: p.i,
        hidden_size: p.h,
        num_layers: 1,
        activation: p.act,
        ct: Default::default(),
        reservoir: Default::default(),
        threads: None,
        kernel: Kernel::Reference,
    };
    let store = ParamStore::seeded(p.seed);
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = Rng8::seed_from_u64(p.seed + 3);
    let mk = |shape: &[usize], rng: &mut Rng8| {
        Var::from_tensor(&uniform(shape, -1.0, 1.0, rng).to_dtype(dtype).unwrap()).unwrap()
    };
    let x = mk(&[p.b, p.t, p.i], &mut rng);
    let h0 = mk(&[1, p.b, p.h], &mut rng);
    let c0 = mk(&[1, p.b, p.h], &mut rng);
    let gy = mk(&[p.b, p.t, p.h], &mut rng).as_tensor().clone();
    let gh = mk(&[1, p.b, p.h], &mut rng).as_tensor().clone();
    let gc = mk(&[1, p.b, p.h], &mut rng).as_tensor().clone();
    let lstm = p.cell == CellKind::Lstm;
    let init = RnnState {
        h: h0.as_tensor().clone(),
        c: lstm.then(|| c0.as_tensor().clone()),
    };
    let (y, last) = rnn.forward(x.as_tensor(), Some(&init), None).unwrap();
    let mut loss = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &last.c {
        loss = (loss + (c * &gc).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let mut out = vec![("y".to_string(), y), ("h_n".to_string(), last.h.clone())];
    if let Some(c) = &last.c {
        out.push(("c_n".into(), c.clone()));
    }
    let mut inputs = vec![
        ("x".to_string(), x.as_tensor().clone()),
        ("h0".to_string(), h0.as_tensor().clone()),
        ("c0".to_string(), c0.as_tensor().clone()),
        ("gy".to_string(), gy),
        ("gh".to_string(), gh),
        ("gc".to_string(), gc),
    ];
    for (name, v) in store.vars() {
        out.push((
            format!("grad.{name}"),
            grads.get(v.as_tensor()).unwrap().clone(),
        ));
        inputs.push((name, v.as_tensor().clone()));
    }
    out.push(("grad.x".into(), grads.get(x.as_tensor()).unwrap().clone()));
    out.push(("grad.h0".into(), grads.get(h0.as_tensor()).unwrap().clone()));
    if lstm {
        out.push(("grad.c0".into(), grads.get(c0.as_tensor()).unwrap().clone()));
    }
    (out, inputs)
}

/// The GPU path of one layer, with the host build of the kernels.
fn kernels<T: DeviceFloat + candle_core::WithDType>(
    p: &Problem,
    inputs: &[(String, Tensor)],
) -> Results {
    let get = |n: &str| -> Vec<T> {
        vec_of(
            &inputs
                .iter()
                .find(|(k, _)| k == n)
                .unwrap_or_else(|| panic!("{n}"))
                .1,
        )
    };
    let (b, steps, i, h) = (p.b, p.t, p.i, p.h);
    let (x, gy) = (get("x"), get("gy"));
    let (w_ih, w_hh) = (get("rnn.weight_ih_l0"), get("rnn.weight_hh_l0"));
    let (b_ih, b_hh) = (get("rnn.bias_ih_l0"), get("rnn.bias_hh_l0"));
    let gates = match p.cell {
        CellKind::Lstm => 4,
        CellKind::Gru => 3,
        _ => 1,
    };
    let g = gates * h;
    let logistic = p.act == Activation::Sigmoid;
    let zero = |n: usize| vec![T::zero(); n];
    // Forward, step by step, keeping what the backward kernels need.
    let mut hs = get("h0");
    let mut cs = get("c0");
    let (mut y, mut saved, mut hprev, mut cprev) = (zero(b * steps * h), vec![], vec![], vec![]);
    for t in 0..steps {
        let xt = rows(&x, b, steps, i, t);
        let mut xp = zero(b * g);
        for r in 0..b {
            xp[r * g..(r + 1) * g].copy_from_slice(&b_ih);
        }
        mm(&mut xp, &xt, &w_ih, b, i, g, true);
        let mut rec = zero(b * g);
        mm(&mut rec, &hs, &w_hh, b, h, g, true);
        let mut hn = zero(b * h);
        hprev.push(hs.clone());
        match p.cell {
            CellKind::Lstm => {
                let pre: Vec<T> = (0..b * g).map(|q| xp[q] + rec[q] + b_hh[q % g]).collect();
                let (mut cn, mut sv) = (zero(b * h), zero(b * 5 * h));
                host::lstm_step_forward(b, h, &pre, &cs, &mut hn, &mut cn, &mut sv);
                cprev.push(std::mem::replace(&mut cs, cn));
                saved.push(sv);
            }
            CellKind::Gru => {
                let mut sv = zero(b * 4 * h);
                host::gru_step_forward(b, h, &xp, &rec, &b_hh, &hs, &mut hn, &mut sv);
                saved.push(sv);
            }
            _ => {
                let pre: Vec<T> = (0..b * g).map(|q| xp[q] + rec[q] + b_hh[q % g]).collect();
                host::srn_step_forward(logistic, &pre, &mut hn);
            }
        }
        put_rows(&mut y, &hn, b, steps, h, t);
        hs = hn;
    }
    // Backward.
    let (mut dw_ih, mut dw_hh, mut db_ih, mut db_hh) = (zero(g * i), zero(g * h), zero(g), zero(g));
    let mut dx = zero(b * steps * i);
    let mut dh = get("gh");
    let mut dc = get("gc");
    for t in (0..steps).rev() {
        let xt = rows(&x, b, steps, i, t);
        let dh_t: Vec<T> = rows(&gy, b, steps, h, t)
            .iter()
            .zip(&dh)
            .map(|(a, c)| *a + *c)
            .collect();
        // Gradients of the input projection (dxp) and of the recurrent product (drec).
        let (mut dxp, mut drec) = (zero(b * g), zero(b * g));
        let mut dh_prev = zero(b * h);
        match p.cell {
            CellKind::Lstm => {
                host::lstm_step_backward(b, h, &saved[t], &cprev[t], &dh_t, &mut dc, &mut dxp);
                drec.copy_from_slice(&dxp);
            }
            CellKind::Gru => {
                host::gru_step_backward(
                    b,
                    h,
                    &saved[t],
                    &hprev[t],
                    &dh_t,
                    &mut dxp,
                    &mut drec,
                    &mut dh_prev,
                );
            }
            _ => {
                let ht = rows(&y, b, steps, h, t);
                host::srn_step_backward(logistic, &ht, &dh_t, &mut dxp);
                drec.copy_from_slice(&dxp);
            }
        }
        mm_tn(&mut dw_ih, &dxp, &xt, b, g, i);
        mm_tn(&mut dw_hh, &drec, &hprev[t], b, g, h);
        col_sums(&mut db_ih, &dxp, g);
        col_sums(&mut db_hh, &drec, g);
        let mut dxt = zero(b * i);
        mm(&mut dxt, &dxp, &w_ih, b, g, i, false);
        put_rows(&mut dx, &dxt, b, steps, i, t);
        mm(&mut dh_prev, &drec, &w_hh, b, g, h, false);
        dh = dh_prev;
    }
    let dev = &Device::Cpu;
    let ten = |v: Vec<T>, s: &[usize]| Tensor::from_vec(v, s, dev).unwrap();
    let mut out = vec![
        ("y".to_string(), ten(y, &[b, steps, h])),
        ("h_n".to_string(), ten(hs, &[1, b, h])),
    ];
    if p.cell == CellKind::Lstm {
        out.push(("c_n".into(), ten(cs, &[1, b, h])));
    }
    // In the order the store lists its variables (sorted names).
    let mut named = vec![
        ("grad.rnn.bias_hh_l0".to_string(), ten(db_hh, &[g])),
        ("grad.rnn.bias_ih_l0".to_string(), ten(db_ih, &[g])),
        ("grad.rnn.weight_hh_l0".to_string(), ten(dw_hh, &[g, h])),
        ("grad.rnn.weight_ih_l0".to_string(), ten(dw_ih, &[g, i])),
    ];
    named.sort_by(|a, b| a.0.cmp(&b.0));
    out.extend(named);
    out.push(("grad.x".into(), ten(dx, &[b, steps, i])));
    out.push(("grad.h0".into(), ten(dh, &[1, b, h])));
    if p.cell == CellKind::Lstm {
        out.push(("grad.c0".into(), ten(dc, &[1, b, h])));
    }
    out
}

fn compare(p: Problem) {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
        let (mut want, inputs) = reference(&p, dtype);
        let got = match dtype {
            DType::F64 => kernels::<f64>(&p, &inputs),
            _ => kernels::<f32>(&p, &inputs),
        };
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<_> = want.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(
            names,
            got.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        );
        for ((n, w), (_, g)) in want.iter().zip(&got) {
            common::assert_close(
                &format!(
                    "{} {n} {dtype:?} b{} t{} i{} h{}",
                    p.cell, p.b, p.t, p.i, p.h
                ),
                g,
                w,
                tol,
            );
        }
    }
}

#[test]
fn lstm_kernels_equal_reference() {
    for (b, t, i, h, seed) in [(3, 5, 4, 7, 1), (1, 1, 2, 3, 2), (2, 4, 3, 130, 3)] {
        compare(Problem {
            cell: CellKind::Lstm,
            act: Activation::Tanh,
            b,
            t,
            i,
            h,
            seed,
        });
    }
}

#[test]
fn gru_kernels_equal_reference() {
    for (b, t, i, h, seed) in [(3, 5, 4, 7, 4), (1, 1, 2, 3, 5), (2, 3, 5, 129, 6)] {
        compare(Problem {
            cell: CellKind::Gru,
            act: Activation::Tanh,
            b,
            t,
            i,
            h,
            seed,
        });
    }
}

#[test]
fn srn_kernels_equal_reference() {
    for act in [Activation::Tanh, Activation::Sigmoid] {
        for (b, t, i, h, seed) in [(3, 5, 4, 7, 7), (1, 1, 2, 3, 8), (2, 3, 3, 131, 9)] {
            compare(Problem {
                cell: CellKind::Srn,
                act,
                b,
                t,
                i,
                h,
                seed,
            });
        }
    }
}

/// The LTC kernels against the fused CPU op on the same packed effective parameters: outputs
/// and the gradients of the inputs, every parameter and the initial state, with per-sample Δt.
fn ltc_case<T: DeviceFloat + candle_core::WithDType>(
    b: usize,
    t: usize,
    d: usize,
    h: usize,
    l: usize,
    seed: u64,
    tol: f64,
) {
    let layout = PackedLayout { h, d };
    let mut rng = Rng8::seed_from_u64(seed);
    let dtype = T::DTYPE;
    let x = Var::from_tensor(
        &uniform(&[b, t, d], -1.0, 1.0, &mut rng)
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    // Positive weights, sigma in [3, 8], leak and capacitance positive, as after softplus.
    let mut p: Vec<f64> = (0..layout.len()).map(|_| rng.random::<f64>()).collect();
    for v in p.iter_mut().take(h * h) {
        *v = 3.0 + 5.0 * *v;
    }
    for v in p[3 * h * h..4 * h * h].iter_mut() {
        *v = 2.0 * *v - 1.0; // reversal potentials of both signs
    }
    let p = Var::from_tensor(
        &Tensor::from_vec(p, layout.len(), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let h0 = Var::from_tensor(
        &uniform(&[b, h], -1.0, 1.0, &mut rng)
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let dt: Vec<f64> = (0..b * t).map(|_| 0.5 + rng.random::<f64>()).collect();
    let g = uniform(&[b, t, h], -1.0, 1.0, &mut rng)
        .to_dtype(dtype)
        .unwrap();
    let eps = 1e-8;
    let op = Fused::new(
        LtcKernel {
            layout,
            unfolds: l,
            epsilon: eps,
            dt: Some(dt.clone()),
            synapses: None,
            sensory_synapses: None,
        },
        1,
    );
    let (y, _) = op
        .apply(x.as_tensor(), p.as_tensor(), h0.as_tensor())
        .unwrap();
    let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();

    let xs: Vec<T> = vec_of(x.as_tensor());
    let ps: Vec<T> = vec_of(p.as_tensor());
    let dts: Vec<T> = dt.iter().map(|&v| T::from(v).unwrap()).collect();
    let (saved, out) = host::ltc_sequence_forward(
        layout,
        l,
        T::from(eps).unwrap(),
        &xs,
        &ps,
        &vec_of::<T>(h0.as_tensor()),
        Some(&dts),
        b,
        t,
    );
    // (T, B, H) ↔ (B, T, H)
    let to_tbh = |v: &Tensor| v.transpose(0, 1).unwrap().contiguous().unwrap();
    let gt: Vec<T> = vec_of(&to_tbh(&g));
    let (dx, dp, dh0) = host::ltc_sequence_backward(
        layout,
        l,
        T::from(eps).unwrap(),
        &xs,
        &ps,
        Some(&dts),
        b,
        t,
        &saved,
        &out,
        &gt,
    );
    let dev = &Device::Cpu;
    let out = Tensor::from_vec(out, (t, b, h), dev)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let name = format!("ltc b{b} t{t} d{d} h{h} l{l} {dtype:?}");
    common::assert_close(&format!("{name} outputs"), &out, &y, tol);
    common::assert_close(
        &format!("{name} dx"),
        &Tensor::from_vec(dx, (b, t, d), dev).unwrap(),
        grads.get(x.as_tensor()).unwrap(),
        tol,
    );
    common::assert_close(
        &format!("{name} dparams"),
        &Tensor::from_vec(dp, layout.len(), dev).unwrap(),
        grads.get(p.as_tensor()).unwrap(),
        tol,
    );
    common::assert_close(
        &format!("{name} dh0"),
        &Tensor::from_vec(dh0, (b, h), dev).unwrap(),
        grads.get(h0.as_tensor()).unwrap(),
        tol,
    );
}

#[test]
fn ltc_kernels_equal_fused_cpu_op() {
    ltc_case::<f64>(3, 4, 2, 5, 3, 11, 1e-10);
    ltc_case::<f64>(1, 1, 3, 4, 1, 12, 1e-10);
    ltc_case::<f64>(2, 3, 5, 33, 6, 13, 1e-10);
    ltc_case::<f32>(3, 4, 2, 5, 3, 14, 1e-5);
}
