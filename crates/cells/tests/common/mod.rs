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

/// Values uniform in [lo, hi), f64 (convert with `to_dtype`).
pub fn uniform(shape: &[usize], lo: f64, hi: f64, rng: &mut rand_chacha::ChaCha8Rng) -> Tensor {
    use rand::Rng;
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| lo + (hi - lo) * rng.random::<f64>())
        .collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
}

/// What [`outputs_and_gradients`] feeds a stack: batch, steps, inputs, and whether an initial
/// state and elapsed times are given.
pub struct Feed {
    pub b: usize,
    pub t: usize,
    pub i: usize,
    pub with_h0: bool,
    pub with_dt: bool,
}

/// Runs `rnn` (parameters in `store`) over fresh random inputs from `rng` (x in [−1.5, 1.5),
/// h0 (layers, B, H) in [−1, 1), dt in [0.2, 2)) with the loss Σ y·g_y + Σ h_n·g_h for random
/// weights, and returns `y`, `h_n` and the gradients of every parameter (`grad.<name>`; each
/// must have one but the wiring's fixed masks), of x and, when given, of h0.
pub fn outputs_and_gradients(
    rnn: &remanence_cells::StackedRnn,
    store: &remanence_cells::ParamStore,
    layers: usize,
    hidden: usize,
    feed: &Feed,
    dtype: candle_core::DType,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Vec<(String, Tensor)> {
    use candle_core::Var;
    use remanence_cells::{Recurrent, RnnState};
    let mut mk =
        |shape: &[usize], lo: f64, hi: f64| uniform(shape, lo, hi, rng).to_dtype(dtype).unwrap();
    let Feed { b, t, i, .. } = *feed;
    let x = Var::from_tensor(&mk(&[b, t, i], -1.5, 1.5)).unwrap();
    let h0 = Var::from_tensor(&mk(&[layers, b, hidden], -1.0, 1.0)).unwrap();
    let dt = mk(&[b, t], 0.2, 2.0);
    let gy = mk(&[b, t, rnn.output_size()], -1.0, 1.0);
    let gh = mk(&[layers, b, hidden], -1.0, 1.0);
    let init = feed.with_h0.then(|| RnnState {
        h: h0.as_tensor().clone(),
        c: None,
    });
    let (y, last) = rnn
        .forward(x.as_tensor(), init.as_ref(), feed.with_dt.then_some(&dt))
        .unwrap();
    let loss = ((&y * &gy).unwrap().sum_all().unwrap()
        + (&last.h * &gh).unwrap().sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let mut out = vec![("y".to_string(), y), ("h_n".to_string(), last.h)];
    for (name, v) in store.vars() {
        match grads.get(v.as_tensor()) {
            Some(g) => out.push((format!("grad.{name}"), g.clone())),
            None if name.ends_with("sparsity_mask") => {}
            None => panic!("no gradient for {name}"),
        }
    }
    out.push(("grad.x".into(), grads.get(x.as_tensor()).unwrap().clone()));
    if feed.with_h0 {
        out.push(("grad.h0".into(), grads.get(h0.as_tensor()).unwrap().clone()));
    }
    out
}
