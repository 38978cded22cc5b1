//! Helpers shared by the cells' integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

use candle_core::Tensor;

/// `../shared/<sub>` beside the repository (or `$REMANENCE_SHARED/<sub>`). In CI a missing folder
/// fails the test; on a developer machine without it the test says so and returns `None`.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os("REMANENCE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = root.join(sub);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must provide ../shared/{sub}",
            dir.display()
        );
    }
    eprintln!(
        "skipping: {} not found (set REMANENCE_SHARED)",
        dir.display()
    );
    None
}

/// ‖a − b‖ / ‖b‖ (absolute norm when b is zero).
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap();
    let b = b
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap();
    let a: Vec<f64> = a.to_vec1().unwrap();
    let b: Vec<f64> = b.to_vec1().unwrap();
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if den == 0.0 {
        num
    } else {
        num / den
    }
}

pub fn assert_close(name: &str, a: &Tensor, b: &Tensor, tol: f64) {
    let e = rel_err(a, b);
    assert!(e <= tol, "{name}: relative error {e:.3e} > {tol:.1e}");
}
