//! The SRN, LSTM and GRU reproduce PyTorch's outputs, final states and every gradient, from the
//! golden files in `../shared/fixtures/torch_*.safetensors` (computed in float64 by PyTorch).
mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use remanence_cells::{
    io, Activation, CellKind, Kernel, ParamStore, Recurrent, RnnConfig, RnnState, StackedRnn,
};

/// Both the reference composition and the fused path (where the cell has one) must reproduce
/// PyTorch.
fn check(file: &str, cell: CellKind, dtype: DType, tol: f64) {
    check_path(file, cell, dtype, tol, true);
    check_path(file, cell, dtype, tol, false);
}

fn check_path(file: &str, cell: CellKind, dtype: DType, tol: f64, reference: bool) {
    let Some(dir) = common::shared("fixtures") else {
        return;
    };
    let path = dir.join(file);
    let (all, _) = io::read(&path, &Device::Cpu).unwrap();
    let all = io::cast_all(all, dtype).unwrap();
    let get = |k: &str| {
        all.get(k)
            .unwrap_or_else(|| panic!("{file} lacks {k}"))
            .clone()
    };
    let params: HashMap<String, Tensor> = all
        .iter()
        .filter(|(k, _)| k.starts_with("rnn."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let store = ParamStore::from_tensors(params, &path).unwrap();
    let x = get("x");
    let h0 = get("h0");
    let cfg = RnnConfig {
        cell,
        input_size: x.dim(2).unwrap(),
        hidden_size: h0.dim(2).unwrap(),
        num_layers: h0.dim(0).unwrap(),
        activation: Activation::Tanh,
        ct: Default::default(),
        reservoir: Default::default(),
        threads: None,
        kernel: if reference {
            Kernel::Reference
        } else {
            Kernel::Fused
        },
    };
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &Device::Cpu).pp("rnn")).unwrap();
    store.finish_loading().unwrap();

    let xv = Var::from_tensor(&x).unwrap();
    let h0v = Var::from_tensor(&h0).unwrap();
    let c0v = (cell == CellKind::Lstm).then(|| Var::from_tensor(&get("c0")).unwrap());
    let init = RnnState {
        h: h0v.as_tensor().clone(),
        c: c0v.as_ref().map(|v| v.as_tensor().clone()),
    };
    let (y, last) = rnn.forward(xv.as_tensor(), Some(&init), None).unwrap();

    common::assert_close(&format!("{file} y"), &y, &get("y"), tol);
    common::assert_close(&format!("{file} h_n"), &last.h, &get("h_n"), tol);
    let mut loss = ((&y * get("grad_y")).unwrap().sum_all().unwrap()
        + (&last.h * get("grad_h_n")).unwrap().sum_all().unwrap())
    .unwrap();
    if let Some(c) = &last.c {
        common::assert_close(&format!("{file} c_n"), c, &get("c_n"), tol);
        loss = (loss + (c * get("grad_c_n")).unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let g = |t: &Tensor| grads.get(t).expect("no gradient").clone();
    common::assert_close(
        &format!("{file} grad.x"),
        &g(xv.as_tensor()),
        &get("grad.x"),
        tol,
    );
    common::assert_close(
        &format!("{file} grad.h0"),
        &g(h0v.as_tensor()),
        &get("grad.h0"),
        tol,
    );
    if let Some(c0v) = &c0v {
        common::assert_close(
            &format!("{file} grad.c0"),
            &g(c0v.as_tensor()),
            &get("grad.c0"),
            tol,
        );
    }
    let mut n = 0;
    for (name, var) in store.vars() {
        common::assert_close(
            &format!("{file} grad.{name}"),
            &g(var.as_tensor()),
            &get(&format!("grad.{name}")),
            tol,
        );
        n += 1;
    }
    assert_eq!(n, 8, "two layers of four tensors each");
}

#[test]
fn rnn_tanh_matches_torch_f64() {
    check(
        "torch_rnn_tanh.safetensors",
        CellKind::Srn,
        DType::F64,
        1e-10,
    );
}
#[test]
fn rnn_tanh_matches_torch_f32() {
    check(
        "torch_rnn_tanh.safetensors",
        CellKind::Srn,
        DType::F32,
        1e-5,
    );
}
#[test]
fn lstm_matches_torch_f64() {
    check("torch_lstm.safetensors", CellKind::Lstm, DType::F64, 1e-10);
}
#[test]
fn lstm_matches_torch_f32() {
    check("torch_lstm.safetensors", CellKind::Lstm, DType::F32, 1e-5);
}
#[test]
fn gru_matches_torch_f64() {
    check("torch_gru.safetensors", CellKind::Gru, DType::F64, 1e-10);
}
#[test]
fn gru_matches_torch_f32() {
    check("torch_gru.safetensors", CellKind::Gru, DType::F32, 1e-5);
}
