//! Memory capacity: the estimator on hand-built features (a delay line recalls exactly N, a
//! linear reservoir with a full-rank Krylov matrix approaches N, a tanh reservoir stays below N
//! within the noise), singular and degenerate systems, bad settings, and whole runs on models.
mod common;

use common::{config, orthogonal, reservoir, srn, uniform};
use remanence_cells::{Activation, CellKind, Kernel};
use remanence_probes::memory::{self, bound_check, memory_capacity, McSettings, McSummary};
use remanence_probes::{Features, Mat, ProbeError, Subject};

fn settings(n: usize, k_max: usize) -> McSettings {
    McSettings {
        k_max,
        ..McSettings::for_features(n)
    }
}

/// x_t = (u_t, u_{t−1}, …, u_{t−N+1}): a delay line of N taps.
fn delay_line(u: &[f64], n: usize) -> Mat {
    let mut m = Mat::zeros(u.len(), n);
    for t in 0..u.len() {
        for j in 0..n.min(t + 1) {
            m[(t, j)] = u[t - j];
        }
    }
    m
}

#[test]
fn a_delay_line_of_n_taps_recalls_exactly_n() {
    for n in [1, 5, 20] {
        let s = settings(n, n);
        let u = uniform(s.steps(), 0.8, 7 + n as u64);
        let e = memory_capacity(&delay_line(&u, n), &u, &s).unwrap();
        assert!((e.total - n as f64).abs() < 1e-6, "n {n}: MC {}", e.total);
        assert!(e.per_delay.iter().all(|m| (m - 1.0).abs() < 1e-6));
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    }
}

#[test]
fn past_its_length_a_delay_line_recalls_nothing_beyond_the_noise_floor() {
    let n = 10;
    let s = settings(n, 2 * n);
    let u = uniform(s.steps(), 0.8, 3);
    let e = memory_capacity(&delay_line(&u, n), &u, &s).unwrap();
    for k in 0..n {
        assert!((e.per_delay[k] - 1.0).abs() < 1e-6, "k {}", k + 1);
    }
    // Unrelated targets: r² of mean 1/(test − 1) each (over 40 seeds the ten of them add
    // 0.0102 on average, against 10/999), within the margin of the bound check.
    let beyond: f64 = e.per_delay[n..].iter().sum();
    let b = bound_check(e.total, n, s.k_max, s.test);
    assert!(beyond < b.margin, "{beyond} {b:?}");
    assert!(b.holds && e.total >= n as f64 - 1e-6, "{b:?}");
    for seed in 0..10 {
        let u = uniform(s.steps(), 0.8, 1000 + seed);
        let e = memory_capacity(&delay_line(&u, n), &u, &s).unwrap();
        assert!(
            bound_check(e.total, n, s.k_max, s.test).holds,
            "seed {seed}"
        );
    }
}

#[test]
fn a_linear_reservoir_with_a_full_rank_krylov_matrix_approaches_n() {
    // x_t = W x_{t−1} + w u_t, W = 0.5 Q (Q orthogonal): MC = rank[w, Ww, …] = N in theory;
    // memory fades as 0.5^k, so k_max = 4N holds all of it.
    let n = 8;
    let w = orthogonal(n, 11).scaled(0.5);
    let w_in: Vec<f64> = uniform(n, 1.0, 12);
    let s = McSettings {
        train: 5000,
        ridge: 1e-10,
        ..settings(n, 4 * n)
    };
    let u = uniform(s.steps(), 0.8, 13);
    let e = memory_capacity(&reservoir(&w, &w_in, &u, true), &u, &s).unwrap();
    assert!(e.total > n as f64 - 0.1, "MC {}", e.total);
    assert!(
        bound_check(e.total, n, s.k_max, s.test).holds,
        "MC {}",
        e.total
    );
}

#[test]
fn a_tanh_reservoir_stays_below_n_within_the_noise() {
    let n = 20;
    let w = orthogonal(n, 21).scaled(0.9);
    let w_in: Vec<f64> = uniform(n, 1.0, 22);
    let s = settings(n, 2 * n);
    for seed in 0..3 {
        let u = uniform(s.steps(), 0.8, 100 + seed);
        let e = memory_capacity(&reservoir(&w, &w_in, &u, false), &u, &s).unwrap();
        let b = bound_check(e.total, n, s.k_max, s.test);
        assert!(b.holds, "{b:?}");
        assert!(e.total > 1.0 && e.total < n as f64, "MC {}", e.total);
    }
}

#[test]
fn duplicated_features_without_ridge_are_reported_and_regularised() {
    // Two copies of each tap and λ = 0: XᵀX is singular.
    let n = 4;
    let s = McSettings {
        ridge: 0.0,
        ..settings(2 * n, n)
    };
    let u = uniform(s.steps(), 0.8, 5);
    let d = delay_line(&u, n);
    let mut twice = Mat::zeros(u.len(), 2 * n);
    for t in 0..u.len() {
        for j in 0..n {
            twice[(t, j)] = d[(t, j)];
            twice[(t, n + j)] = d[(t, j)];
        }
    }
    let e = memory_capacity(&twice, &u, &s).unwrap();
    assert!(!e.ridge_raises.is_empty());
    assert!(e.lambda > 0.0);
    assert!(
        e.warnings
            .iter()
            .any(|w| w.contains("singular ridge system")),
        "{:?}",
        e.warnings
    );
    assert!((e.total - n as f64).abs() < 1e-6, "MC {}", e.total);
}

#[test]
fn constant_features_give_zero_with_a_warning() {
    let s = settings(3, 4);
    let u = uniform(s.steps(), 0.8, 1);
    let mut m = Mat::zeros(u.len(), 3);
    for t in 0..u.len() {
        m[(t, 1)] = 0.25;
    }
    let e = memory_capacity(&m, &u, &s).unwrap();
    assert_eq!(e.total, 0.0);
    assert!(e.warnings[0].contains("constant"), "{:?}", e.warnings);
}

#[test]
fn settings_that_cannot_measure_are_refused_with_the_reason() {
    let u = uniform(1400, 0.8, 1);
    let x = delay_line(&u, 3);
    let base = McSettings {
        washout: 100,
        train: 1000,
        test: 300,
        ..settings(3, 6)
    };
    let err = |s: McSettings| memory_capacity(&x, &u, &s).unwrap_err().to_string();
    let e = err(McSettings {
        k_max: 102,
        ..base.clone()
    });
    assert!(
        e.contains("larger than the series allows") && e.contains("101"),
        "{e}"
    );
    assert!(err(McSettings {
        k_max: 0,
        ..base.clone()
    })
    .contains("k_max"));
    assert!(err(McSettings {
        train: 0,
        ..base.clone()
    })
    .contains("train"));
    assert!(err(McSettings {
        test: 0,
        ..base.clone()
    })
    .contains("test"));
    let e = err(McSettings {
        train: 2000,
        ..base.clone()
    });
    assert!(e.contains("the series has 1400"), "{e}");
    assert!(err(McSettings {
        ridge: f64::NAN,
        ..base.clone()
    })
    .contains("ridge"));
    // Width zero, mismatched lengths, non-finite states.
    let e = memory_capacity(&Mat::zeros(1400, 0), &u, &base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("width zero"), "{e}");
    let e = memory_capacity(&x, &u[..1000], &base)
        .unwrap_err()
        .to_string();
    assert!(e.contains("1400 states"), "{e}");
    let mut bad = x.clone();
    bad[(500, 1)] = f64::NAN;
    assert!(matches!(
        memory_capacity(&bad, &u, &base).unwrap_err(),
        ProbeError::NonFinite(_)
    ));
}

#[test]
fn a_nearly_linear_srn_approaches_its_width_through_the_model() {
    // Tiny input weights keep tanh in its linear range: the model path must agree with theory.
    let n = 6;
    let w = orthogonal(n, 31).scaled(0.5);
    let w_in: Vec<f64> = uniform(n, 1e-3, 32);
    let subject = srn(&w, &w_in, &vec![0.0; n], Activation::Tanh);
    let s = McSettings {
        train: 4000,
        ridge: 1e-10,
        ..settings(n, 4 * n)
    };
    let runs = memory::run(&subject, &s, &[1, 2], &mut |_| {}).unwrap();
    for r in &runs {
        assert!(r.estimate.total > n as f64 - 0.1, "MC {}", r.estimate.total);
        assert!(bound_check(r.estimate.total, n, s.k_max, s.test).holds);
    }
    let summary = McSummary::of(&runs, &s).unwrap();
    assert_eq!(summary.per_delay.len(), s.k_max);
    assert!(summary.mc.min <= summary.mc.mean && summary.mc.mean <= summary.mc.max);
}

#[test]
fn the_same_seed_gives_the_same_numbers_and_another_seed_others() {
    let cfg = config(CellKind::Gru, 6, 1, Kernel::Auto);
    let s = McSettings {
        train: 400,
        test: 200,
        ..McSettings::for_features(6)
    };
    let measure = |model_seed: u64, seeds: &[u64]| -> Vec<f64> {
        let subject = Subject::untrained(&cfg, model_seed).unwrap();
        memory::run(&subject, &s, seeds, &mut |_| {})
            .unwrap()
            .iter()
            .map(|r| r.estimate.total)
            .collect()
    };
    let a = measure(3, &[5, 6]);
    assert_eq!(a, measure(3, &[5, 6]));
    // A batch of seeds gives what each seed gives alone.
    assert_eq!(a[1], measure(3, &[6])[0]);
    assert_ne!(a[0], a[1]);
    assert_ne!(a, measure(4, &[5, 6]));
}

#[test]
fn every_cell_gives_a_capacity_within_its_bound() {
    for cell in CellKind::ALL {
        let cfg = config(cell, 5, 1, Kernel::Auto);
        let subject = Subject::untrained(&cfg, 0).unwrap();
        for features in [Features::State, Features::Output] {
            let n = subject.feature_size(features);
            let s = McSettings {
                train: 300,
                test: 200,
                features,
                ..McSettings::for_features(n)
            };
            let runs = memory::run(&subject, &s, &[0], &mut |_| {}).unwrap();
            let e = &runs[0].estimate;
            assert_eq!(e.features, n, "{cell} {features}");
            assert!(e.total.is_finite() && e.total >= 0.0, "{cell}");
            assert!(
                bound_check(e.total, n, s.k_max, s.test).holds,
                "{cell} {features}: MC {} of {n}",
                e.total
            );
        }
    }
}
