//! LTC and CfC reproduce ncps's outputs, final states and every gradient from the golden files in
//! `../shared/fixtures/ncps_*.safetensors` (float64, ncps 1.0.1), and the ncps tensors load
//! into our cells unchanged. The per-step elapsed-time fixtures also run inside a batch of
//! several sequences with different time steps, row by row.
mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use remanence_cells::{
    io, Activation, CellKind, CtOptions, Kernel, ParamStore, Recurrent, RnnConfig, RnnState,
    StackedRnn,
};

struct Fixture {
    all: HashMap<String, Tensor>,
    path: std::path::PathBuf,
}

impl Fixture {
    fn load(file: &str, dtype: DType) -> Option<Self> {
        let dir = common::shared("fixtures")?;
        let path = dir.join(file);
        let (all, _) = io::read(&path, &Device::Cpu).unwrap();
        Some(Self {
            all: io::cast_all(all, dtype).unwrap(),
            path,
        })
    }
    fn get(&self, k: &str) -> Tensor {
        self.all
            .get(k)
            .unwrap_or_else(|| panic!("{} lacks {k}", self.path.display()))
            .clone()
    }
    fn build(
        &self,
        cell: CellKind,
        ct: CtOptions,
        dtype: DType,
        reference: bool,
    ) -> (StackedRnn, ParamStore) {
        let params: HashMap<String, Tensor> = self
            .all
            .iter()
            .filter(|(k, _)| k.starts_with("rnn."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let store = ParamStore::from_tensors(params, &self.path).unwrap();
        let x = self.get("x");
        let cfg = RnnConfig {
            cell,
            input_size: x.dim(2).unwrap(),
            hidden_size: self.get("h0").dim(1).unwrap(),
            num_layers: 1,
            activation: Activation::Tanh,
            ct,
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
        (rnn, store)
    }
}

/// Both the reference composition and the fused path must reproduce the fixture.
fn check(file: &str, cell: CellKind, ct: CtOptions, dtype: DType, tol: f64) {
    check_path(file, cell, ct.clone(), dtype, tol, true);
    check_path(file, cell, ct, dtype, tol, false);
}

fn check_path(file: &str, cell: CellKind, ct: CtOptions, dtype: DType, tol: f64, reference: bool) {
    let Some(fx) = Fixture::load(file, dtype) else {
        return;
    };
    let (rnn, store) = fx.build(cell, ct, dtype, reference);
    let xv = Var::from_tensor(&fx.get("x")).unwrap();
    let h0v = Var::from_tensor(&fx.get("h0")).unwrap();
    let dt = fx.all.get("timespans").cloned();
    let init = RnnState {
        h: h0v.as_tensor().unsqueeze(0).unwrap(),
        c: None,
    };
    let (y, last) = rnn
        .forward(xv.as_tensor(), Some(&init), dt.as_ref())
        .unwrap();
    let h_n = last.h.squeeze(0).unwrap();
    common::assert_close(&format!("{file} y"), &y, &fx.get("y"), tol);
    common::assert_close(&format!("{file} h_n"), &h_n, &fx.get("h_n"), tol);
    let loss = ((&y * fx.get("grad_y")).unwrap().sum_all().unwrap()
        + (&h_n * fx.get("grad_h_n")).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let g = |t: &Tensor| grads.get(t).expect("no gradient").clone();
    common::assert_close(
        &format!("{file} grad.x"),
        &g(xv.as_tensor()),
        &fx.get("grad.x"),
        tol,
    );
    common::assert_close(
        &format!("{file} grad.h0"),
        &g(h0v.as_tensor()),
        &fx.get("grad.h0"),
        tol,
    );
    let mut checked = 0;
    for (name, var) in store.vars() {
        let key = format!("grad.{name}");
        match fx.all.get(&key) {
            Some(want) => {
                common::assert_close(&format!("{file} {key}"), &g(var.as_tensor()), want, tol);
                checked += 1;
            }
            None => assert!(
                name.ends_with("sparsity_mask"),
                "{file}: no reference gradient for {name}"
            ),
        }
    }
    let expected = fx.all.keys().filter(|k| k.starts_with("grad.rnn.")).count();
    assert_eq!(
        checked, expected,
        "{file}: every parameter gradient compared"
    );
}

fn ltc(wiring: &str) -> CtOptions {
    CtOptions {
        wiring: wiring.parse().unwrap(),
        ..CtOptions::default()
    }
}

fn cfc(mode: &str) -> CtOptions {
    CtOptions {
        mode: mode.parse().unwrap(),
        backbone_units: 16,
        backbone_layers: 1,
        ..CtOptions::default()
    }
}

#[test]
fn ltc_fully_connected_matches_ncps() {
    check(
        "ncps_ltc_fully_connected.safetensors",
        CellKind::Ltc,
        ltc("fully-connected"),
        DType::F64,
        1e-10,
    );
    check(
        "ncps_ltc_fully_connected.safetensors",
        CellKind::Ltc,
        ltc("fully-connected"),
        DType::F32,
        1e-5,
    );
}

#[test]
fn ltc_auto_ncp_matches_ncps() {
    check(
        "ncps_ltc_autoncp.safetensors",
        CellKind::Ltc,
        ltc("auto-ncp:3"),
        DType::F64,
        1e-10,
    );
    check(
        "ncps_ltc_autoncp.safetensors",
        CellKind::Ltc,
        ltc("auto-ncp:3"),
        DType::F32,
        1e-5,
    );
}

#[test]
fn ltc_timespans_matches_ncps() {
    check(
        "ncps_ltc_timespans.safetensors",
        CellKind::Ltc,
        ltc("fully-connected"),
        DType::F64,
        1e-10,
    );
    check(
        "ncps_ltc_timespans.safetensors",
        CellKind::Ltc,
        ltc("fully-connected"),
        DType::F32,
        1e-5,
    );
}

#[test]
fn cfc_modes_match_ncps() {
    for (file, mode) in [
        ("ncps_cfc_default.safetensors", "default"),
        ("ncps_cfc_no_gate.safetensors", "no-gate"),
        ("ncps_cfc_pure.safetensors", "pure"),
        ("ncps_cfc_timespans.safetensors", "default"),
    ] {
        check(file, CellKind::Cfc, cfc(mode), DType::F64, 1e-10);
        check(file, CellKind::Cfc, cfc(mode), DType::F32, 1e-5);
    }
}

/// ncps breaks on per-sample elapsed times when the batch has more than one sequence; ours takes
/// (batch, time). Row 0 of a batch is the fixture; rows 1 and 2 use other time steps and must equal
/// the same sequences run alone.
fn batched_timespans(file: &str, cell: CellKind, ct: CtOptions) {
    let Some(fx) = Fixture::load(file, DType::F64) else {
        return;
    };
    let (rnn, _) = fx.build(cell, ct, DType::F64, false);
    let (x, h0, ts) = (fx.get("x"), fx.get("h0"), fx.get("timespans"));
    let scales = [1.0, 0.3, 2.5];
    let xs = Tensor::cat(
        &[
            &x,
            &x.affine(-0.5, 0.1).unwrap(),
            &x.affine(1.3, -0.2).unwrap(),
        ],
        0,
    )
    .unwrap();
    let hs = Tensor::cat(
        &[
            &h0,
            &h0.affine(0.5, 0.1).unwrap(),
            &h0.affine(-1.0, 0.0).unwrap(),
        ],
        0,
    )
    .unwrap();
    let tss = Tensor::cat(
        &scales
            .iter()
            .map(|s| ts.affine(*s, 0.0).unwrap())
            .collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    let run = |x: &Tensor, h: &Tensor, t: &Tensor| {
        let init = RnnState {
            h: h.unsqueeze(0).unwrap(),
            c: None,
        };
        rnn.forward(x, Some(&init), Some(t)).unwrap()
    };
    let (y, last) = run(&xs, &hs, &tss);
    common::assert_close(
        &format!("{file} batched row 0 y"),
        &y.narrow(0, 0, 1).unwrap(),
        &fx.get("y"),
        1e-10,
    );
    common::assert_close(
        &format!("{file} batched row 0 h_n"),
        &last.h.squeeze(0).unwrap().narrow(0, 0, 1).unwrap(),
        &fx.get("h_n"),
        1e-10,
    );
    for r in 1..3 {
        let (yr, lr) = run(
            &xs.narrow(0, r, 1).unwrap(),
            &hs.narrow(0, r, 1).unwrap(),
            &tss.narrow(0, r, 1).unwrap(),
        );
        common::assert_close(
            &format!("{file} row {r} y"),
            &y.narrow(0, r, 1).unwrap(),
            &yr,
            1e-12,
        );
        common::assert_close(
            &format!("{file} row {r} h_n"),
            &last.h.narrow(1, r, 1).unwrap(),
            &lr.h,
            1e-12,
        );
    }
    // Different time steps do change the result.
    assert!(
        common::rel_err(
            &y.narrow(0, 1, 1).unwrap(),
            &run(
                &xs.narrow(0, 1, 1).unwrap(),
                &hs.narrow(0, 1, 1).unwrap(),
                &ts
            )
            .0
        ) > 1e-6
    );
}

#[test]
fn timespans_work_batched_row_by_row() {
    batched_timespans(
        "ncps_ltc_timespans.safetensors",
        CellKind::Ltc,
        ltc("fully-connected"),
    );
    batched_timespans(
        "ncps_cfc_timespans.safetensors",
        CellKind::Cfc,
        cfc("default"),
    );
}

#[test]
fn bad_elapsed_times_are_refused() {
    let Some(fx) = Fixture::load("ncps_ltc_timespans.safetensors", DType::F64) else {
        return;
    };
    let (rnn, _) = fx.build(CellKind::Ltc, ltc("fully-connected"), DType::F64, false);
    let x = fx.get("x");
    for bad in [-0.5, 0.0, f64::NAN, f64::INFINITY] {
        let mut v: Vec<f64> = fx
            .get("timespans")
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        v[3] = bad;
        let dt = Tensor::from_vec(v, (1, 7), &Device::Cpu).unwrap();
        let err = rnn.forward(&x, None, Some(&dt)).unwrap_err().to_string();
        assert!(
            err.contains("dt[0, 3]") && err.contains("positive and finite"),
            "{err}"
        );
    }
}
