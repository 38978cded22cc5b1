//! Distinguishability D(l, k): hand-computed tiny networks, the plain f64 cells against the
//! Candle models step by step, the N(0, 1) draws against E|tanh Z|, the early stops, the
//! length grid, determinism over threads and seeds, and bad settings.
mod common;

use candle_core::{DType, Device, Tensor};
use common::config;
use remanence_cells::{
    Activation, BackboneActivation, CellKind, CfcMode, Constraint, Kernel, Mapping, ModelConfig,
    ParamStore, RnnConfig, SequenceModel, SolverKind,
};
use remanence_probes::distinguish::{
    self, draw_cell, draw_tensors, heatmap, length_grid, word_distances, DistSettings, Init,
};
use remanence_probes::plain_cell::PlainCell;
use remanence_probes::{ProbeError, Source, Subject};

fn t2(rows: usize, cols: usize, v: &[f64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), (rows, cols), &Device::Cpu).unwrap()
}

fn t1(v: &[f64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
}

fn rnn(cell: CellKind, hidden: usize) -> RnnConfig {
    config(cell, hidden, 1, Kernel::Auto).rnn
}

#[test]
fn a_one_unit_tanh_network_gives_the_hand_computed_distances() {
    // h_u(1) = tanh(0.8), h_u(l) = tanh(1.5 h_u(l − 1)); h_v stays 0 (no bias, no input).
    let tensors = vec![
        ("rnn.weight_ih_l0".to_string(), t2(1, 1, &[0.8])),
        ("rnn.weight_hh_l0".to_string(), t2(1, 1, &[1.5])),
        ("rnn.bias_ih_l0".to_string(), t1(&[0.0])),
        ("rnn.bias_hh_l0".to_string(), t1(&[0.0])),
    ];
    let cell = PlainCell::from_tensors(&rnn(CellKind::Srn, 1), &tensors, "rnn.").unwrap();
    let d = word_distances(&cell, 4).unwrap();
    let want = [
        0.6640367702678491,
        0.7599324386480045,
        0.8143799660800461,
        0.8401166705569135,
    ];
    for (l, (a, b)) in d.iter().zip(want).enumerate() {
        assert!((a - b).abs() < 1e-15, "l = {}: {a} vs {b}", l + 1);
    }
}

#[test]
fn a_two_unit_network_with_biases_gives_the_hand_computed_distances() {
    // The v word moves too (biases): D = ‖h_u − h_v‖ of two non-zero runs.
    let tensors = vec![
        ("rnn.weight_ih_l0".to_string(), t2(2, 1, &[0.5, -1.0])),
        (
            "rnn.weight_hh_l0".to_string(),
            t2(2, 2, &[0.3, -0.7, 0.9, 0.2]),
        ),
        ("rnn.bias_ih_l0".to_string(), t1(&[0.1, -0.2])),
        ("rnn.bias_hh_l0".to_string(), t1(&[0.05, 0.0])),
    ];
    let cell = PlainCell::from_tensors(&rnn(CellKind::Srn, 2), &tensors, "rnn.").unwrap();
    let d = word_distances(&cell, 3).unwrap();
    let want = [0.7639361425611576, 0.4707016499339248, 0.3790127767199638];
    for (a, b) in d.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
}

#[test]
fn a_one_unit_lstm_gives_the_hand_computed_distances_on_h() {
    // Gates i, f, g, o; zero biases, so the v word stays at h = c = 0 and D = |h_u|.
    let tensors = vec![
        (
            "rnn.weight_ih_l0".to_string(),
            t2(4, 1, &[0.7, -0.4, 1.3, 0.2]),
        ),
        (
            "rnn.weight_hh_l0".to_string(),
            t2(4, 1, &[-0.6, 2.0, 0.9, -1.1]),
        ),
        ("rnn.bias_ih_l0".to_string(), t1(&[0.0; 4])),
        ("rnn.bias_hh_l0".to_string(), t1(&[0.0; 4])),
    ];
    let cell = PlainCell::from_tensors(&rnn(CellKind::Lstm, 1), &tensors, "rnn.").unwrap();
    let d = word_distances(&cell, 3).unwrap();
    let want = [0.2856942316830052, 0.1893694459200644, 0.1571832916379367];
    for (a, b) in d.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{a} vs {b}");
    }
}

/// The configurations the plain cells must reproduce.
fn variants() -> Vec<(String, RnnConfig)> {
    let mut v = Vec::new();
    let mut srn = rnn(CellKind::Srn, 5);
    v.push(("srn tanh".into(), srn.clone()));
    srn.activation = Activation::Sigmoid;
    v.push(("srn logistic".into(), srn));
    v.push(("lstm".into(), rnn(CellKind::Lstm, 5)));
    v.push(("gru".into(), rnn(CellKind::Gru, 5)));
    for (solver, unfolds) in [
        (SolverKind::Euler, 6),
        (SolverKind::Heun, 3),
        (SolverKind::Rk4, 2),
        (SolverKind::Dopri5, 1),
    ] {
        let mut c = rnn(CellKind::Ctrnn, 5);
        c.ct.solver = solver;
        c.ct.ode_unfolds = unfolds;
        v.push((format!("ctrnn {solver}"), c));
    }
    let mut ltc = rnn(CellKind::Ltc, 5);
    ltc.ct.ode_unfolds = 3;
    v.push(("ltc softplus".into(), ltc.clone()));
    ltc.ct.constraint = Constraint::Clip;
    ltc.ct.input_mapping = Mapping::Linear;
    v.push(("ltc clip linear".into(), ltc));
    let mut cfc = rnn(CellKind::Cfc, 5);
    v.push(("cfc default".into(), cfc.clone()));
    cfc.ct.mode = CfcMode::NoGate;
    cfc.ct.backbone_layers = 2;
    cfc.ct.backbone_activation = BackboneActivation::Relu;
    v.push(("cfc no-gate relu×2".into(), cfc.clone()));
    cfc.ct.mode = CfcMode::Pure;
    cfc.ct.backbone_layers = 1;
    cfc.ct.backbone_activation = BackboneActivation::Silu;
    v.push(("cfc pure silu".into(), cfc));
    v
}

#[test]
fn the_plain_cells_follow_the_models_step_for_both_initialisations() {
    let len = 30;
    for (name, cfg) in variants() {
        for init in [Init::Default, Init::Normal] {
            for seed in [3u64, 11] {
                let mut cfg = cfg.clone();
                cfg.ct.wiring_seed = seed;
                let tensors = draw_tensors(&cfg, init, seed).unwrap();
                let plain = PlainCell::from_tensors(&cfg, &tensors, "rnn.").unwrap();
                let d_plain = word_distances(&plain, len).unwrap();
                assert!(d_plain[0] > 1e-6, "{name}, {init}: D(1) = {}", d_plain[0]);

                let mcfg = ModelConfig::new(cfg.clone(), 1);
                let store = ParamStore::from_tensors(tensors, "test").unwrap();
                let model =
                    SequenceModel::from_store(&mcfg, &store, DType::F64, &Device::Cpu).unwrap();
                let subject = Subject::new(
                    model,
                    store,
                    Device::Cpu,
                    Source::Built { what: name.clone() },
                )
                .unwrap();
                let rep = distinguish::of_subject(&subject, len, &mut |_| {}).unwrap();
                for (j, &l) in rep.lengths.iter().enumerate() {
                    let (a, b) = (d_plain[l - 1], rep.rows[0].mean[j]);
                    assert!(
                        (a - b).abs() <= 1e-10 * (1.0 + b.abs()),
                        "{name}, {init}, seed {seed}, l = {l}: plain {a} vs model {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn normal_weights_give_the_expected_first_step_distance() {
    // One tanh unit, N(0, 1) weights, zero bias: D(1) = |tanh(Z)|, E = 0.555979 (quadrature),
    // standard deviation √(E tanh²Z − E²) = 0.2919.
    let s = DistSettings {
        max_length: 1,
        widths: vec![1],
        draws: 4000,
        init: Init::Normal,
        threads: 1,
    };
    let rep = heatmap(&rnn(CellKind::Srn, 1), &s, 5, &mut |_| {}).unwrap();
    let mean = rep.rows[0].mean[0];
    let se = 0.2919 / (4000f64).sqrt();
    assert!((mean - 0.555979).abs() < 4.0 * se, "mean {mean}, se {se}");
    // The cell's own U(−1, 1) at k = 1: D(1) = |tanh(a + b) − tanh(b)|, which is smaller.
    let own = heatmap(
        &rnn(CellKind::Srn, 1),
        &DistSettings {
            init: Init::Default,
            ..s
        },
        5,
        &mut |_| {},
    )
    .unwrap();
    assert!(own.rows[0].mean[0] < mean);
}

#[test]
fn the_early_stops_give_the_same_distances_as_running_every_step() {
    for (name, cfg) in variants() {
        let cell = draw_cell(&cfg, Init::Default, 7).unwrap();
        let len = 400;
        let fast = word_distances(&cell, len).unwrap();
        let mut u = cell.zero_state();
        let mut v = cell.zero_state();
        for (t, &d) in fast.iter().enumerate() {
            cell.step(&[if t == 0 { 1.0 } else { 0.0 }], &mut u)
                .unwrap();
            cell.step(&[0.0], &mut v).unwrap();
            let slow: f64 =
                u.h.iter()
                    .zip(&v.h)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
            assert_eq!(d, slow, "{name}, l = {}", t + 1);
        }
    }
}

#[test]
fn the_length_grid_holds_every_short_length_and_ends_at_the_longest() {
    assert_eq!(length_grid(1), vec![1]);
    assert_eq!(length_grid(7), (1..=7).collect::<Vec<_>>());
    let g = length_grid(2000);
    assert_eq!(&g[..20], &(1..=20).collect::<Vec<_>>()[..]);
    assert_eq!(*g.last().unwrap(), 2000);
    assert!(g.windows(2).all(|w| w[0] < w[1]));
    for l in [25, 50, 100, 125, 200, 500, 1000, 1750] {
        assert!(g.contains(&l), "{l} missing from {g:?}");
    }
    assert_eq!(g.len(), 20 + 9 + 14 + 4 + 1, "{g:?}");
    assert_eq!(
        length_grid(23),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 23]
    );
}

#[test]
fn the_same_seed_gives_the_same_numbers_on_any_number_of_threads() {
    let base = rnn(CellKind::Gru, 4);
    let s = DistSettings {
        max_length: 60,
        widths: vec![2, 5],
        draws: 70,
        init: Init::Default,
        threads: 1,
    };
    let a = heatmap(&base, &s, 9, &mut |_| {}).unwrap();
    let b = heatmap(
        &base,
        &DistSettings {
            threads: 3,
            ..s.clone()
        },
        9,
        &mut |_| {},
    )
    .unwrap();
    let c = heatmap(&base, &s, 10, &mut |_| {}).unwrap();
    for (ra, rb) in a.rows.iter().zip(&b.rows) {
        assert_eq!(ra.mean, rb.mean);
        assert_eq!(ra.median, rb.median);
    }
    assert_ne!(a.rows[0].mean, c.rows[0].mean);
    let mut done = 0;
    heatmap(&base, &s, 9, &mut |k| done += k).unwrap();
    assert_eq!(done, 2 * 70);
}

#[test]
fn a_width_or_length_of_zero_is_refused_with_a_clear_error() {
    let base = rnn(CellKind::Lstm, 4);
    let ok = DistSettings {
        max_length: 10,
        widths: vec![2],
        draws: 2,
        ..DistSettings::default()
    };
    let msg = |s: DistSettings| match heatmap(&base, &s, 0, &mut |_| {}) {
        Err(e @ ProbeError::Invalid(_)) => e.to_string(),
        other => panic!("expected a refusal, got {:?}", other.map(|r| r.rows.len())),
    };
    let m = msg(DistSettings {
        widths: vec![3, 0],
        ..ok.clone()
    });
    assert!(m.contains("width of zero"), "{m}");
    let m = msg(DistSettings {
        max_length: 0,
        ..ok.clone()
    });
    assert!(m.contains("length") && m.contains("at least 1"), "{m}");
    let m = msg(DistSettings {
        draws: 0,
        ..ok.clone()
    });
    assert!(m.contains("draws"), "{m}");
    let m = msg(DistSettings {
        widths: vec![],
        ..ok.clone()
    });
    assert!(m.contains("no widths"), "{m}");
    let cell = draw_cell(&base, Init::Default, 1).unwrap();
    assert!(word_distances(&cell, 0).is_err());
    assert!("bogus".parse::<Init>().is_err());
    let mut two = base.clone();
    two.num_layers = 2;
    assert!(heatmap(&two, &ok, 0, &mut |_| {})
        .unwrap_err()
        .to_string()
        .contains("one-layer"));
    let odernn = rnn(CellKind::Odernn, 3);
    assert!(heatmap(&odernn, &ok, 0, &mut |_| {}).is_err());
}
