//! State trajectories: the model's sequence path and stepping agree, the drive of models with
//! several input features, the Jacobian against the step for every cell, and bad inputs.
mod common;

use common::{config, uniform};
use remanence_cells::{CellKind, Kernel};
use remanence_probes::dynamics::{jacobian, run_series, state_is_output, step_states};
use remanence_probes::{Features, Subject};

#[test]
fn the_sequence_path_and_stepping_give_the_same_states() {
    let series = vec![uniform(300, 0.8, 1), uniform(300, 0.8, 2)];
    for cell in CellKind::ALL {
        let cfg = config(cell, 4, 1, Kernel::Auto);
        let subject = Subject::untrained(&cfg, 1).unwrap();
        let mut steps = 0;
        let states = run_series(&subject, &series, None, Features::State, &mut |s| {
            steps += s
        })
        .unwrap();
        assert_eq!(steps, 300);
        assert_eq!(
            (states[0].rows(), states[0].cols()),
            (300, subject.state_size())
        );
        // Stepping by hand from the zero state.
        let mut s: Vec<Vec<f64>> = vec![vec![0.0; subject.state_size()]; 2];
        for t in [0usize, 1, 2] {
            s = (0..2)
                .map(|b| {
                    step_states(&subject, &s[b..b + 1], &[series[b][t]])
                        .unwrap()
                        .remove(0)
                })
                .collect();
        }
        for b in 0..2 {
            let d: f64 = states[b]
                .row(2)
                .iter()
                .zip(&s[b])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(d < 1e-12, "{cell}: {d}");
        }
        if state_is_output(&subject) {
            // The sequence path ran; the reference kernel steps: same numbers.
            let rcfg = config(cell, 4, 1, Kernel::Reference);
            let reference = Subject::untrained(&rcfg, 1).unwrap();
            let r = run_series(&reference, &series, None, Features::State, &mut |_| {}).unwrap();
            assert!(r[1].max_abs_diff(&states[1]) < 1e-10, "{cell}");
        } else {
            // The output is a part (LSTM: h of the state) or a map (LTC) of the state.
            let out = run_series(&subject, &series, None, Features::Output, &mut |_| {}).unwrap();
            assert_eq!(out[0].cols(), subject.output_size());
            if cell == CellKind::Lstm {
                let h: Vec<f64> = states[0].row(299)[..4].to_vec();
                assert!(out[0]
                    .row(299)
                    .iter()
                    .zip(&h)
                    .all(|(a, b)| (a - b).abs() < 1e-12));
            }
        }
    }
}

#[test]
fn a_model_of_several_inputs_is_driven_on_feature_zero() {
    let mut cfg = config(CellKind::Gru, 3, 2, Kernel::Auto);
    cfg.rnn.input_size = 3;
    let subject = Subject::untrained(&cfg, 0).unwrap();
    let note = subject.drive().note().unwrap();
    assert!(
        note.contains("3 features") && note.contains("feature 0"),
        "{note}"
    );
    assert!(subject.info().drive_note.is_some());
    let states = run_series(
        &subject,
        &[uniform(20, 0.8, 3)],
        None,
        Features::State,
        &mut |_| {},
    )
    .unwrap();
    // Two layers of 3 units.
    assert_eq!(states[0].cols(), 6);
    // The same as stepping with (u, 0, 0).
    let u = uniform(20, 0.8, 3);
    let s1 = step_states(&subject, &[vec![0.0; 6]], &[u[0], 0.0, 0.0]).unwrap();
    let d: f64 = states[0]
        .row(0)
        .iter()
        .zip(&s1[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d < 1e-12);
    // One-feature models need no note.
    let one = Subject::untrained(&config(CellKind::Gru, 3, 1, Kernel::Auto), 0).unwrap();
    assert!(one.drive().note().is_none());
}

#[test]
fn the_jacobian_matches_a_finite_step_for_every_cell() {
    for cell in CellKind::ALL {
        let cfg = config(cell, 3, 1, Kernel::Auto);
        let subject = Subject::untrained(&cfg, 4).unwrap();
        let n = subject.state_size();
        let at: Vec<f64> = uniform(n, 0.5, 5);
        let x = [0.3];
        let j = jacobian(&subject, &at, &x, 1e-6).unwrap();
        // F(s + δ) − F(s) ≈ J δ for a small δ.
        let delta: Vec<f64> = uniform(n, 1e-5, 6);
        let moved: Vec<f64> = at.iter().zip(&delta).map(|(a, d)| a + d).collect();
        let f = step_states(&subject, &[at.clone(), moved], &x).unwrap();
        for i in 0..n {
            let lin: f64 = (0..n).map(|k| j[(i, k)] * delta[k]).sum();
            let diff = f[1][i] - f[0][i];
            assert!((lin - diff).abs() < 1e-8, "{cell} row {i}: {lin} vs {diff}");
        }
    }
}

#[test]
fn bad_series_and_states_are_refused() {
    let subject = Subject::untrained(&config(CellKind::Srn, 3, 1, Kernel::Auto), 0).unwrap();
    let run = |series: &[Vec<f64>]| {
        run_series(&subject, series, None, Features::State, &mut |_| {})
            .err()
            .unwrap()
            .to_string()
    };
    assert!(run(&[]).contains("zero sequences"));
    assert!(run(&[vec![]]).contains("length zero"));
    assert!(run(&[vec![0.0; 3], vec![0.0; 4]]).contains("series 1 has 4 steps"));
    assert!(run(&[vec![f64::NAN; 3]]).contains("non-finite"));
    let e = run_series(
        &subject,
        &[vec![0.0; 3]],
        Some(&[vec![0.0; 2]]),
        Features::State,
        &mut |_| {},
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("2 values") && e.contains("has 3"), "{e}");
    let e = jacobian(&subject, &[0.0; 3], &[0.0, 0.0], 1e-6)
        .unwrap_err()
        .to_string();
    assert!(e.contains("reads 1"), "{e}");
    // f32 models are refused: the probes compare numbers far below f32's precision.
    let cfg = config(CellKind::Srn, 3, 1, Kernel::Auto);
    let (m, store) = remanence_cells::SequenceModel::init(
        &cfg,
        0,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let e = Subject::new(
        m,
        store,
        candle_core::Device::Cpu,
        remanence_probes::Source::Built { what: "f32".into() },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("f64"), "{e}");
}
