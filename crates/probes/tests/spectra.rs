//! Spectral radius and largest singular value against matrices with known spectra, and the
//! ridge solve's handling of singular systems.
mod common;

use common::{orthogonal, rotation};
use remanence_probes::esp::spectrum;
use remanence_probes::linalg::{ridge_solve, sigma_max, spectral_radius, Mat};

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol * b.abs().max(1.0), "{a} != {b}");
}

#[test]
fn diagonal_matrices_give_their_largest_entry() {
    let d = Mat::diag(&[0.5, -0.9, 0.3, 0.0]);
    let s = spectrum(&d).unwrap();
    close(s.spectral_radius, 0.9, 1e-12);
    close(s.sigma_max, 0.9, 1e-12);
    // Two entries of equal modulus and opposite sign (power iteration on a vector stalls here).
    let d = Mat::diag(&[-1.2, 1.2, 0.1]);
    close(spectral_radius(&d).unwrap(), 1.2, 1e-12);
}

#[test]
fn rotations_have_a_complex_pair_of_the_scale_as_modulus() {
    for (theta, r) in [(0.3, 0.7), (2.0, 1.3), (std::f64::consts::FRAC_PI_2, 0.95)] {
        let m = rotation(theta, r);
        let s = spectrum(&m).unwrap();
        close(s.spectral_radius, r, 1e-12);
        close(s.sigma_max, r, 1e-12);
    }
}

#[test]
fn scaled_orthogonal_matrices_have_every_eigenvalue_on_one_circle() {
    for (n, scale, seed) in [(10, 0.9, 1), (50, 1.3, 2), (7, 0.2, 3)] {
        let q = orthogonal(n, seed);
        let qtq = q.t_matmul(&q).unwrap();
        assert!(qtq.max_abs_diff(&Mat::identity(n)) < 1e-12);
        let s = spectrum(&q.scaled(scale)).unwrap();
        close(s.spectral_radius, scale, 1e-10);
        close(s.sigma_max, scale, 1e-10);
    }
}

#[test]
fn non_normal_matrices_separate_the_two_numbers() {
    // Upper triangular: eigenvalues 0.5 and 0.6; σ_max from the 2×2 AᵀA in closed form.
    let a = Mat::from_rows(&[vec![0.5, 10.0], vec![0.0, 0.6]]).unwrap();
    let s = spectrum(&a).unwrap();
    close(s.spectral_radius, 0.6, 1e-10);
    let ata = a.t_matmul(&a).unwrap();
    let (p, q, r) = (ata[(0, 0)], ata[(0, 1)], ata[(1, 1)]);
    let lam = 0.5 * (p + r) + (0.25 * (p - r).powi(2) + q * q).sqrt();
    close(s.sigma_max, lam.sqrt(), 1e-12);
    // A Jordan block: ρ = 0.9 although ‖A^k‖ grows first.
    let j = Mat::from_rows(&[
        vec![0.9, 1.0, 0.0],
        vec![0.0, 0.9, 1.0],
        vec![0.0, 0.0, 0.9],
    ])
    .unwrap();
    close(spectral_radius(&j).unwrap(), 0.9, 1e-9);
    // A companion matrix of (x − 0.8)(x + 0.5)(x − 0.1) = x³ − 0.4x² − 0.37x + 0.04.
    let c = Mat::from_rows(&[
        vec![0.4, 0.37, -0.04],
        vec![1.0, 0.0, 0.0],
        vec![0.0, 1.0, 0.0],
    ])
    .unwrap();
    close(spectral_radius(&c).unwrap(), 0.8, 1e-10);
}

#[test]
fn nilpotent_shifts_and_zero_have_spectral_radius_zero() {
    // The delay line's matrix: ones below the diagonal.
    let mut shift = Mat::zeros(6, 6);
    for i in 1..6 {
        shift[(i, i - 1)] = 1.0;
    }
    let s = spectrum(&shift).unwrap();
    assert_eq!(s.spectral_radius, 0.0);
    close(s.sigma_max, 1.0, 1e-12);
    let z = spectrum(&Mat::zeros(3, 3)).unwrap();
    assert_eq!((z.spectral_radius, z.sigma_max), (0.0, 0.0));
}

#[test]
fn bad_matrices_are_refused() {
    let e = spectral_radius(&Mat::zeros(2, 3)).unwrap_err().to_string();
    assert!(e.contains("square") && e.contains("2×3"), "{e}");
    let e = spectral_radius(&Mat::zeros(0, 0)).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    assert!(sigma_max(&Mat::zeros(0, 4)).is_err());
    let nan = Mat::diag(&[1.0, f64::NAN]);
    assert!(matches!(
        spectral_radius(&nan).unwrap_err(),
        remanence_cells::linalg::LinalgError::NonFinite(_)
    ));
}

#[test]
fn a_singular_ridge_system_raises_lambda_and_still_solves() {
    // G of rank 1 with λ = 0: singular. The raise makes it solvable and reports each attempt.
    let g = Mat::from_rows(&[vec![1.0, 1.0], vec![1.0, 1.0]]).unwrap();
    let r = Mat::from_rows(&[vec![2.0], vec![2.0]]).unwrap();
    let sol = ridge_solve(&g, &r, 0.0).unwrap();
    assert_eq!(sol.raises.len(), 1);
    assert_eq!(sol.raises[0].lambda, 0.0);
    assert!(sol.lambda > 0.0 && sol.lambda < 1e-10);
    // The minimum-norm solution (1, 1) up to the tiny λ.
    assert!((sol.weights[(0, 0)] - 1.0).abs() < 1e-9);
    assert!((sol.weights[(1, 0)] - 1.0).abs() < 1e-9);
    // A regular system is solved at the λ asked for.
    let g = Mat::from_rows(&[vec![2.0, 0.5], vec![0.5, 1.0]]).unwrap();
    let sol = ridge_solve(&g, &r, 0.1).unwrap();
    assert!(sol.raises.is_empty());
    assert_eq!(sol.lambda, 0.1);
    // All-zero G: the floor λ makes it solvable (weights 0 for a zero right-hand side).
    let sol = ridge_solve(&Mat::zeros(2, 2), &Mat::zeros(2, 1), 0.0).unwrap();
    assert_eq!(sol.weights, Mat::zeros(2, 1));
    // Non-finite and negative inputs are refused.
    assert!(ridge_solve(&g, &r, -1.0).is_err());
    let bad = Mat::diag(&[f64::INFINITY, 1.0]);
    assert!(ridge_solve(&bad, &r, 0.1).is_err());
}
