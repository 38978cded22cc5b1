//! Trajectory length: the adaptive solver against exact solutions, PCA against a known rotation,
//! arc length against a circle and a line, the probe against networks solved by hand, its
//! determinism over threads, and bad settings.
mod common;

use std::f64::consts::PI;

use common::orthogonal;
use remanence_probes::adaptive::{solve_dense, Dp5Settings};
use remanence_probes::linalg::Mat;
use remanence_probes::pca::{arc_length, pca, symmetric_eigen};
use remanence_probes::trajectory::{
    self, measure, Act, LayerDraw, Network, NetworkDraw, OdeModel, TrajSettings,
};
use remanence_probes::ProbeError;

fn tight() -> Dp5Settings {
    Dp5Settings {
        rtol: 1e-10,
        atol: 1e-12,
        max_steps: 100_000,
    }
}

#[test]
fn the_solver_meets_its_tolerance_and_counts_more_steps_when_asked_for_more() {
    // y' = −y + cos t, y(0) = 1: y = e^{−t}/2 + (cos t + sin t)/2.
    let exact = |t: f64| 0.5 * (-t).exp() + 0.5 * (t.cos() + t.sin());
    let times: Vec<f64> = (0..=50).map(|j| 10.0 * j as f64 / 50.0).collect();
    let mut f = |t: f64, y: &[f64], d: &mut [f64]| d[0] = -y[0] + t.cos();
    let mut errs = Vec::new();
    let mut steps = Vec::new();
    for s in [
        Dp5Settings {
            rtol: 1e-3,
            atol: 1e-6,
            max_steps: 10_000,
        },
        tight(),
    ] {
        let (ys, st) = solve_dense(&mut f, &[1.0], 10.0, &times, &s).unwrap();
        assert_eq!(ys.len(), times.len());
        let e = times
            .iter()
            .zip(&ys)
            .map(|(t, y)| (y[0] - exact(*t)).abs())
            .fold(0.0, f64::max);
        errs.push(e);
        steps.push(st.accepted);
        assert_eq!(st.evaluations, 2 + 6 * (st.accepted + st.rejected));
    }
    // The tight solve's error is the accumulated global error of ~10³ steps at rtol 1e-10.
    assert!(errs[0] < 1e-2 && errs[1] < 1e-6, "{errs:?}");
    assert!(steps[1] > 5 * steps[0], "{steps:?}");
}

#[test]
fn an_oscillator_traces_a_circle_of_length_two_pi() {
    // (y1, y2)' = (y2, −y1) from (0, 1): (sin t, cos t).
    let n = 2001;
    let times: Vec<f64> = (0..n)
        .map(|j| 2.0 * PI * j as f64 / (n - 1) as f64)
        .collect();
    let mut f = |_: f64, y: &[f64], d: &mut [f64]| {
        d[0] = y[1];
        d[1] = -y[0];
    };
    let (ys, st) = solve_dense(&mut f, &[0.0, 1.0], 2.0 * PI, &times, &tight()).unwrap();
    // Steps much longer than the 2000 sample spacings: the output is interpolated.
    assert!(st.accepted < 400, "{st:?}");
    let m = Mat::from_rows(&ys).unwrap();
    assert!(
        (arc_length(&m) - 2.0 * PI).abs() < 1e-5,
        "{}",
        arc_length(&m)
    );
    for (t, y) in times.iter().zip(&ys) {
        assert!((y[0] - t.sin()).abs() < 1e-9 && (y[1] - t.cos()).abs() < 1e-9);
    }
}

#[test]
fn the_solver_refuses_bad_settings_and_reports_where_it_stops() {
    let mut f = |_: f64, y: &[f64], d: &mut [f64]| d[0] = y[0] * y[0];
    let s = Dp5Settings::default();
    assert!(solve_dense(&mut f, &[1.0], 0.0, &[], &s).is_err());
    assert!(solve_dense(&mut f, &[1.0], 1.0, &[], &Dp5Settings { rtol: 0.0, ..s }).is_err());
    assert!(solve_dense(&mut f, &[1.0], 1.0, &[0.5, 0.2], &s).is_err());
    // y' = y², y(0) = 1 blows up at t = 1.
    let e = solve_dense(&mut f, &[1.0], 2.0, &[], &s).unwrap_err();
    assert!(matches!(e, ProbeError::Solver(_)), "{e}");
    // y(0) = 0.1 blows up at t = 10: near it the budget of three steps runs out.
    let e = solve_dense(&mut f, &[0.1], 9.9, &[], &Dp5Settings { max_steps: 3, ..s })
        .unwrap_err()
        .to_string();
    assert!(e.contains("steps were not enough"), "{e}");
}

#[test]
fn pca_recovers_a_rotated_ellipse() {
    // (3 cos θ, sin θ, 0, 0, 0) rotated by an orthogonal Q and shifted.
    let q = orthogonal(5, 4);
    let m = 720;
    let shift = [1.0, -2.0, 0.5, 3.0, 0.0];
    let rows: Vec<Vec<f64>> = (0..m)
        .map(|j| {
            let th = 2.0 * PI * j as f64 / m as f64;
            let p = [3.0 * th.cos(), th.sin(), 0.0, 0.0, 0.0];
            (0..5)
                .map(|i| (0..5).map(|c| q[(i, c)] * p[c]).sum::<f64>() + shift[i])
                .collect()
        })
        .collect();
    let data = Mat::from_rows(&rows).unwrap();
    let p = pca(&data, 2).unwrap();
    assert!((p.explained(2) - 1.0).abs() < 1e-12);
    let scale = m as f64 / (m - 1) as f64;
    assert!(
        (p.variances[0] - 4.5 * scale).abs() < 1e-10,
        "{:?}",
        p.variances
    );
    assert!(
        (p.variances[1] - 0.5 * scale).abs() < 1e-10,
        "{:?}",
        p.variances
    );
    for c in 0..2 {
        let d: f64 = (0..5).map(|i| p.components[c][i] * q[(i, c)]).sum();
        assert!((d.abs() - 1.0).abs() < 1e-10, "component {c}: |cos| {d}");
    }
    let proj = p.project(&data).unwrap();
    for j in 0..m {
        let th = 2.0 * PI * j as f64 / m as f64;
        assert!((proj[(j, 0)].abs() - (3.0 * th.cos()).abs()).abs() < 1e-10);
        assert!((proj[(j, 1)].abs() - th.sin().abs()).abs() < 1e-10);
    }
    // The same polyline in the plane, in 5-D and projected.
    let plane: Vec<Vec<f64>> = (0..m)
        .map(|j| {
            let th = 2.0 * PI * j as f64 / m as f64;
            vec![3.0 * th.cos(), th.sin()]
        })
        .collect();
    let want = arc_length(&Mat::from_rows(&plane).unwrap());
    assert!((arc_length(&proj) - want).abs() < 1e-10);
    assert!((arc_length(&data) - want).abs() < 1e-10);
}

#[test]
fn jacobi_finds_known_eigenvalues_even_when_two_are_equal() {
    let q = orthogonal(4, 9);
    let d = Mat::diag(&[5.0, 2.0, 2.0, -1.0]);
    let a = q.matmul(&d).unwrap().matmul(&q.transpose()).unwrap();
    let (vals, vecs) = symmetric_eigen(&a).unwrap();
    for (v, w) in vals.iter().zip([5.0, 2.0, 2.0, -1.0]) {
        assert!((v - w).abs() < 1e-12, "{vals:?}");
    }
    let av = a.matmul(&vecs).unwrap();
    for c in 0..4 {
        for r in 0..4 {
            assert!((av[(r, c)] - vals[c] * vecs[(r, c)]).abs() < 1e-12);
        }
    }
    assert!(symmetric_eigen(&Mat::zeros(2, 3)).is_err());
}

#[test]
fn arc_length_of_a_circle_and_a_line() {
    for r in [0.5, 2.0] {
        let n = 2000;
        let rows: Vec<Vec<f64>> = (0..=n)
            .map(|j| {
                let t = 2.0 * PI * j as f64 / n as f64;
                vec![r * t.cos(), r * t.sin()]
            })
            .collect();
        let l = arc_length(&Mat::from_rows(&rows).unwrap());
        assert!((l - 2.0 * PI * r).abs() < 1e-3 * r, "r {r}: {l}");
    }
    // Irregular steps along a straight line of length 3 · |(1, 2, 2)| = 9.
    let s = [0.0, 0.1, 0.15, 0.9, 1.7, 2.0, 2.95, 3.0];
    let rows: Vec<Vec<f64>> = s.iter().map(|&s| vec![s, 2.0 * s, 2.0 * s]).collect();
    assert!((arc_length(&Mat::from_rows(&rows).unwrap()) - 9.0).abs() < 1e-12);
    assert_eq!(arc_length(&Mat::zeros(1, 3)), 0.0);
}

/// A one-layer network with W = 0, b = 0 and small input weights, so hard-tanh is the identity
/// on every pre-activation: x' = U I(t) (Neural ODE) or x' = −x + U I(t) (CT-RNN).
fn linear_network(model: OdeModel) -> Network {
    let k = 3;
    let u = vec![0.3, -0.1, 0.2, 0.25, -0.4, 0.05];
    let draw = NetworkDraw {
        width: k,
        layers: vec![LayerDraw {
            inputs: 2,
            w: vec![0.0; k * k],
            u: u.iter().map(|v| v * (k as f64).sqrt()).collect(),
            b: vec![0.0; k],
            a: vec![0.0; k],
        }],
    };
    Network::new(&draw, model, Act::HardTanh, 1.0, 0.0)
}

#[test]
fn networks_solved_by_hand_give_their_exact_trajectory_lengths() {
    let u = [[0.3, -0.1], [0.2, 0.25], [-0.4, 0.05]];
    let s = TrajSettings {
        samples: 1500,
        solver: tight(),
        ..TrajSettings::default()
    };
    // Neural ODE: x = U (1 − cos t, sin t). CT-RNN: with s' = −s + sin t and c' = −c + cos t
    // from 0, s = (sin t − cos t + e^{−t})/2, c = (cos t + sin t − e^{−t})/2, x = U (s, c).
    for (model, basis) in [
        (
            OdeModel::NeuralOde,
            Box::new(|t: f64| [1.0 - t.cos(), t.sin()]) as Box<dyn Fn(f64) -> [f64; 2]>,
        ),
        (
            OdeModel::Ctrnn,
            Box::new(|t: f64| {
                let e = (-t).exp();
                [(t.sin() - t.cos() + e) / 2.0, (t.cos() + t.sin() - e) / 2.0]
            }),
        ),
    ] {
        let net = linear_network(model);
        let (layers, stats) = measure(&net, &s).unwrap();
        let rows: Vec<Vec<f64>> = (0..s.samples)
            .map(|j| {
                let b = basis(s.t_end * j as f64 / (s.samples - 1) as f64);
                u.iter().map(|r| r[0] * b[0] + r[1] * b[1]).collect()
            })
            .collect();
        let exact = Mat::from_rows(&rows).unwrap();
        let want = arc_length(&exact);
        assert!(
            (layers[0].full_length - want).abs() < 1e-7,
            "{model}: {} vs {want}",
            layers[0].full_length
        );
        let p = pca(&exact, 2).unwrap();
        let want2 = arc_length(&p.project(&exact).unwrap());
        assert!((layers[0].pca_length - want2).abs() < 1e-7);
        assert!(stats.accepted > 0);
    }
    // The input circle itself.
    assert!((trajectory::input_length(&s) - 2.0 * PI).abs() < 1e-5);
}

#[test]
fn the_probe_gives_the_same_numbers_on_any_number_of_threads() {
    let s = TrajSettings {
        width: 6,
        layers: 2,
        sigma_w: vec![1.0, 3.0],
        draws: 2,
        samples: 200,
        activations: vec![Act::Tanh, Act::Relu],
        ..TrajSettings::default()
    };
    let mut done = 0;
    let a = trajectory::run(&s, 3, &mut |k| done += k).unwrap();
    assert_eq!(done, 2 * 2 * 3 * 2);
    let b = trajectory::run(
        &TrajSettings {
            threads: 3,
            ..s.clone()
        },
        3,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(a.runs.len(), b.runs.len());
    for (x, y) in a.runs.iter().zip(&b.runs) {
        assert_eq!(x.steps, y.steps);
        assert_eq!(x.layers[1].pca_length, y.layers[1].pca_length);
    }
    assert_eq!(a.summaries.len(), 2 * 2 * 3);
    assert_eq!(a.orderings.len(), 2 * 2);
    let c = trajectory::run(&s, 4, &mut |_| {}).unwrap();
    assert_ne!(
        a.runs[0].layers[0].pca_length,
        c.runs[0].layers[0].pca_length
    );
    for r in &a.runs {
        assert!(r
            .layers
            .iter()
            .all(|l| l.explained > 0.0 && l.explained <= 1.0 + 1e-12));
        assert!((r.depth - r.steps.accepted as f64 * 0.01 / (2.0 * PI)).abs() < 1e-12);
    }
}

#[test]
fn a_width_or_a_depth_of_zero_is_refused_with_a_clear_error() {
    for (s, what) in [
        (
            TrajSettings {
                width: 0,
                ..TrajSettings::default()
            },
            "width",
        ),
        (
            TrajSettings {
                layers: 0,
                ..TrajSettings::default()
            },
            "layers",
        ),
        (
            TrajSettings {
                samples: 2,
                ..TrajSettings::default()
            },
            "samples",
        ),
        (
            TrajSettings {
                sigma_w: vec![],
                ..TrajSettings::default()
            },
            "σ_w",
        ),
    ] {
        let e = trajectory::run(&s, 0, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
    }
    assert!("leaky".parse::<Act>().is_err());
    assert!("gru".parse::<OdeModel>().is_err());
}

#[test]
fn a_runs_model_on_the_circle_is_measured_per_layer() {
    use candle_core::{DType, Device, Tensor};
    use remanence_cells::{CellKind, Kernel, ParamStore, SequenceModel};
    use remanence_probes::{Source, Subject};
    // An SRN without recurrence: h_t = tanh(W_ih (sin t, cos t)), known sample by sample.
    let w = [0.4, -0.3, 0.1, 0.5, -0.2, 0.25];
    let mut cfg = common::config(CellKind::Srn, 3, 1, Kernel::Auto);
    cfg.rnn.input_size = 2;
    let t = |v: &[f64], shape: (usize, usize)| Tensor::from_vec(v.to_vec(), shape, &Device::Cpu);
    let tensors = vec![
        ("rnn.weight_ih_l0".to_string(), t(&w, (3, 2)).unwrap()),
        (
            "rnn.weight_hh_l0".to_string(),
            t(&[0.0; 9], (3, 3)).unwrap(),
        ),
        (
            "rnn.bias_ih_l0".to_string(),
            Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
        ),
        (
            "rnn.bias_hh_l0".to_string(),
            Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
        ),
        ("head.weight".to_string(), t(&[0.0; 3], (1, 3)).unwrap()),
        (
            "head.bias".to_string(),
            Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap(),
        ),
    ];
    let store = ParamStore::from_tensors(tensors, "test").unwrap();
    let model = SequenceModel::from_store(&cfg, &store, DType::F64, &Device::Cpu).unwrap();
    let subject = Subject::new(
        model,
        store,
        Device::Cpu,
        Source::Built {
            what: "a feed-forward SRN".into(),
        },
    )
    .unwrap();
    let n = 400;
    let r = trajectory::of_subject(&subject, n, 2.0 * PI, &mut |_| {}).unwrap();
    assert_eq!(r.layers.len(), 1);
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            let s = 2.0 * PI * j as f64 / (n - 1) as f64;
            (0..3)
                .map(|i| (w[2 * i] * s.sin() + w[2 * i + 1] * s.cos()).tanh())
                .collect()
        })
        .collect();
    let want = arc_length(&Mat::from_rows(&rows).unwrap());
    assert!(
        (r.layers[0].full_length - want).abs() < 1e-12,
        "{} {want}",
        r.layers[0].full_length
    );
    // One input feature cannot carry the circle.
    let one = Subject::untrained(&common::config(CellKind::Gru, 3, 1, Kernel::Auto), 1).unwrap();
    let e = trajectory::of_subject(&one, n, 1.0, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("two input features"), "{e}");
}
