//! The echo-state probe: the Jacobian of a step against a known recurrent matrix, the raw
//! weight blocks of the PyTorch cells, the conditions, and the empirical convergence against a
//! contraction bound and a network without echo states.
mod common;

use candle_core::{DType, Device};
use common::{config, orthogonal, rotation, srn, uniform};
use remanence_cells::{Activation, CellKind, Kernel, ParamStore, SequenceModel};
use remanence_probes::dynamics::{jacobian, rest_state};
use remanence_probes::esp::{self, convergence_of, recurrent_blocks, spectrum, EspSettings};
use remanence_probes::{Mat, ProbeError, Subject};

fn quick() -> EspSettings {
    EspSettings {
        pairs: 3,
        steps: 120,
        ..EspSettings::default()
    }
}

#[test]
fn the_srn_jacobian_at_zero_is_its_recurrent_matrix() {
    // tanh'(0) = 1 and no bias: J = W_hh exactly, up to the differences' error.
    let w = orthogonal(6, 1).scaled(0.8);
    let subject = srn(&w, &uniform(6, 1.0, 2), &[0.0; 6], Activation::Tanh);
    let j = jacobian(&subject, &[0.0; 6], &[0.0], 1e-6).unwrap();
    assert!(j.max_abs_diff(&w) < 1e-9, "{}", j.max_abs_diff(&w));
    // With a bias b, J = diag(1 − tanh²(b)) W; the logistic function has slope 1/4 at 0.
    let b: Vec<f64> = uniform(6, 0.5, 3);
    let subject = srn(&w, &[0.1; 6], &b, Activation::Tanh);
    let j = jacobian(&subject, &[0.0; 6], &[0.0], 1e-6).unwrap();
    let mut want = w.clone();
    for i in 0..6 {
        for k in 0..6 {
            want[(i, k)] *= 1.0 - b[i].tanh().powi(2);
        }
    }
    assert!(j.max_abs_diff(&want) < 1e-9);
    let subject = srn(&w, &[0.1; 6], &[0.0; 6], Activation::Sigmoid);
    let j = jacobian(&subject, &[0.0; 6], &[0.0], 1e-6).unwrap();
    assert!(j.max_abs_diff(&w.scaled(0.25)) < 1e-9);
}

#[test]
fn the_report_of_a_known_srn_states_both_conditions() {
    // A block rotation (ρ = 0.7, σ = 0.7) and a diagonal 0.5: ρ = σ_max = 0.7.
    let mut w = Mat::zeros(3, 3);
    let r = rotation(0.4, 0.7);
    for i in 0..2 {
        for k in 0..2 {
            w[(i, k)] = r[(i, k)];
        }
    }
    w[(2, 2)] = 0.5;
    let subject = srn(&w, &[1.0, 0.5, -0.5], &[0.0; 3], Activation::Tanh);
    let rep = esp::run(&subject, &quick(), 0, &mut |_| {}).unwrap();
    assert_eq!(rep.weight_blocks.len(), 1);
    let b = &rep.weight_blocks[0];
    assert_eq!(
        (b.name.as_str(), b.block.as_str()),
        ("rnn.weight_hh_l0", "all")
    );
    assert!((b.spectrum.sigma_max - 0.7).abs() < 1e-12);
    assert!((b.spectrum.spectral_radius - 0.7).abs() < 1e-12);
    assert_eq!(rep.sufficient.scope, "global");
    assert!(rep.sufficient.holds && (rep.sufficient.value - 0.7).abs() < 1e-12);
    // Zero is the rest state (no bias): ρ(J) there is ρ(W).
    assert!(rep.rest_state.converged && rep.rest_state.max_abs == 0.0);
    assert!(rep.necessary.statement.contains("rest state"));
    assert!((rep.necessary.value - 0.7).abs() < 1e-8);
    // Each step contracts by at least σ_max = 0.7: d(t) ≤ 0.7^t d(0), to rounding.
    let c = &rep.convergence;
    for d in &c.distances {
        for (t, v) in d.iter().enumerate() {
            assert!(*v <= 0.7f64.powi(t as i32) * d[0] * (1.0 + 1e-9) + 1e-15);
        }
    }
    assert!(c.converged && c.steps_to_tolerance.unwrap() <= 40);
    assert!(c.rate.unwrap() <= 0.7 + 1e-9, "{:?}", c.rate);
}

#[test]
fn an_expanding_srn_fails_both_conditions_and_does_not_converge() {
    // W = 3I, no input weight: each unit settles at ±0.9950 by the sign it starts with.
    let w = Mat::identity(4).scaled(3.0);
    let subject = srn(&w, &[0.0; 4], &[0.0; 4], Activation::Tanh);
    let rep = esp::run(&subject, &quick(), 0, &mut |_| {}).unwrap();
    assert!(!rep.sufficient.holds && (rep.sufficient.value - 3.0).abs() < 1e-12);
    assert!(!rep.necessary.holds && (rep.necessary.value - 3.0).abs() < 1e-8);
    // Opposite initial states stay apart.
    let a = vec![vec![0.5; 4]];
    let b = vec![vec![-0.5; 4]];
    let input = vec![0.3; 50];
    let c = convergence_of(&subject, &a, &b, &input, 1e-6, &mut |_| {}).unwrap();
    assert!(!c.converged && c.max_final_ratio > 1.0);
    assert!(c.steps_to_tolerance.is_none());
}

#[test]
fn a_logistic_srn_uses_a_quarter_of_sigma_max() {
    let w = orthogonal(4, 9).scaled(2.0);
    let subject = srn(&w, &[0.5; 4], &[0.0; 4], Activation::Sigmoid);
    let rep = esp::run(&subject, &quick(), 1, &mut |_| {}).unwrap();
    assert!((rep.sufficient.value - 0.5).abs() < 1e-10);
    assert!(rep.sufficient.holds && rep.sufficient.statement.contains("/4"));
    assert!(rep.convergence.converged);
}

#[test]
fn the_gated_cells_report_their_weight_blocks_by_gate() {
    for (cell, gates) in [
        (CellKind::Lstm, vec!["i", "f", "g", "o"]),
        (CellKind::Gru, vec!["r", "z", "n"]),
        (CellKind::Odernn, vec!["r", "z", "n"]),
        (CellKind::Ctrnn, vec!["all"]),
    ] {
        let cfg = config(cell, 4, 2, Kernel::Auto);
        let subject = Subject::untrained(&cfg, 0).unwrap();
        let blocks = recurrent_blocks(&cfg.rnn, &subject.tensors(), "rnn.").unwrap();
        assert_eq!(blocks.len(), 2 * gates.len(), "{cell}");
        for (k, b) in blocks.iter().enumerate() {
            assert_eq!(b.layer, k / gates.len());
            assert_eq!(b.block, gates[k % gates.len()]);
            assert_eq!(b.name, format!("rnn.weight_hh_l{}", b.layer));
            assert_eq!((b.matrix.rows(), b.matrix.cols()), (4, 4));
            assert_eq!(b.spectrum, spectrum(&b.matrix).unwrap());
        }
        // The g block of the LSTM is rows 2H..3H of weight_hh.
        if cell == CellKind::Lstm {
            let w = subject
                .tensors()
                .into_iter()
                .find(|(n, _)| n == "rnn.weight_hh_l0")
                .unwrap()
                .1
                .to_vec2::<f64>()
                .unwrap();
            assert_eq!(blocks[2].matrix.row(1), &w[9][..]);
        }
    }
    // LTC and CfC have none: the Jacobian stands alone.
    for cell in [CellKind::Ltc, CellKind::Cfc] {
        let cfg = config(cell, 4, 1, Kernel::Auto);
        let subject = Subject::untrained(&cfg, 0).unwrap();
        assert!(recurrent_blocks(&cfg.rnn, &subject.tensors(), "rnn.")
            .unwrap()
            .is_empty());
    }
}

#[test]
fn a_checkpoint_without_its_recurrent_matrix_is_named() {
    let cfg = config(CellKind::Gru, 3, 1, Kernel::Auto);
    let subject = Subject::untrained(&cfg, 0).unwrap();
    let without: Vec<_> = subject
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "rnn.weight_hh_l0")
        .collect();
    let e = recurrent_blocks(&cfg.rnn, &without, "rnn.").unwrap_err();
    assert!(matches!(e, ProbeError::NoRecurrentMatrix { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("gru") && msg.contains("rnn.weight_hh_l0") && msg.contains("rnn.weight_ih_l0"),
        "{msg}"
    );
    // And a model built from such a file fails to load, naming the tensor.
    let store = ParamStore::from_tensors(without, "ckpt.safetensors").unwrap();
    let e = SequenceModel::from_store(&cfg, &store, DType::F64, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("weight_hh_l0"), "{e}");
    // A wrong shape is named too.
    let mut cfg3 = cfg.clone();
    cfg3.rnn.hidden_size = 5;
    let e = recurrent_blocks(&cfg3.rnn, &subject.tensors(), "rnn.")
        .unwrap_err()
        .to_string();
    assert!(e.contains("[9, 3]") && e.contains("[15, 5]"), "{e}");
}

#[test]
fn every_cell_gives_a_finite_report() {
    for cell in CellKind::ALL {
        let cfg = config(cell, 4, 1, Kernel::Auto);
        let subject = Subject::untrained(&cfg, 2).unwrap();
        let rep = esp::run(&subject, &quick(), 0, &mut |_| {}).unwrap();
        let n = subject.state_size();
        assert_eq!(rep.jacobian_at_zero.matrix.rows(), n, "{cell}");
        let s = rep.jacobian_at_zero.spectrum;
        assert!(s.sigma_max.is_finite() && s.spectral_radius <= s.sigma_max + 1e-9);
        assert_eq!(rep.convergence.distances.len(), 3);
        assert_eq!(rep.convergence.distances[0].len(), 121);
        let json = serde_json::to_string(&rep).unwrap();
        assert!(json.contains("\"sufficient\"") && json.contains("\"necessary\""));
    }
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let cfg = config(CellKind::Cfc, 4, 1, Kernel::Auto);
    let subject = Subject::untrained(&cfg, 5).unwrap();
    let a = esp::run(&subject, &quick(), 3, &mut |_| {}).unwrap();
    let b = esp::run(&subject, &quick(), 3, &mut |_| {}).unwrap();
    let c = esp::run(&subject, &quick(), 4, &mut |_| {}).unwrap();
    assert_eq!(a.convergence.distances, b.convergence.distances);
    assert_ne!(a.convergence.distances, c.convergence.distances);
}

#[test]
fn the_rest_state_of_a_biased_srn_is_its_fixed_point() {
    let w = orthogonal(5, 4).scaled(0.5);
    let b: Vec<f64> = uniform(5, 0.8, 6);
    let subject = srn(&w, &[0.0; 5], &b, Activation::Tanh);
    let rest = rest_state(&subject, 1000, 1e-13).unwrap();
    assert!(rest.converged && rest.steps < 100);
    // s = tanh(W s + b) at the fixed point.
    for i in 0..5 {
        let pre: f64 = (0..5).map(|k| w[(i, k)] * rest.state[k]).sum::<f64>() + b[i];
        assert!((pre.tanh() - rest.state[i]).abs() < 1e-12);
    }
}

#[test]
fn bad_settings_and_states_are_refused() {
    let subject = srn(
        &Mat::identity(2).scaled(0.5),
        &[1.0, 1.0],
        &[0.0; 2],
        Activation::Tanh,
    );
    for (s, what) in [
        (
            EspSettings {
                pairs: 0,
                ..quick()
            },
            "pairs",
        ),
        (
            EspSettings {
                steps: 0,
                ..quick()
            },
            "steps",
        ),
        (
            EspSettings {
                tolerance: 0.0,
                ..quick()
            },
            "tolerance",
        ),
        (
            EspSettings {
                init_scale: f64::NAN,
                ..quick()
            },
            "init scale",
        ),
    ] {
        let e = esp::run(&subject, &s, 0, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{e}");
    }
    let e = convergence_of(
        &subject,
        &[vec![0.1, 0.2]],
        &[vec![0.1, 0.2]],
        &[0.0; 5],
        1e-6,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("equal states"), "{e}");
    let e = convergence_of(
        &subject,
        &[vec![0.1]],
        &[vec![0.2]],
        &[0.0; 5],
        1e-6,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("1 values") && e.contains("has 2"), "{e}");
    let e = convergence_of(
        &subject,
        &[vec![0.1, 0.0]],
        &[vec![0.2, 0.0]],
        &[],
        1e-6,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("length zero"), "{e}");
}

#[test]
fn a_matrix_at_exactly_one_is_borderline_not_holding() {
    // An orthogonal W: σ_max = ρ = 1 up to rounding; neither condition can be decided.
    let w = orthogonal(5, 4);
    let subject = srn(&w, &[0.2; 5], &[0.0; 5], Activation::Tanh);
    let rep = esp::run(&subject, &quick(), 0, &mut |_| {}).unwrap();
    for c in [&rep.sufficient, &rep.necessary] {
        assert!((c.value - 1.0).abs() < 1e-8, "{}", c.value);
        assert!(c.borderline && !c.holds, "{}: {}", c.statement, c.value);
    }
    // Just below: decided.
    let subject = srn(&w.scaled(0.99), &[0.2; 5], &[0.0; 5], Activation::Tanh);
    let rep = esp::run(&subject, &quick(), 0, &mut |_| {}).unwrap();
    assert!(rep.sufficient.holds && !rep.sufficient.borderline);
}
