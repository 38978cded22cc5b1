//! Helpers of the probes' tests: known matrices, hand-built models, plain-Rust reservoirs.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remanence_cells::{
    Activation, CellKind, CtOptions, Kernel, ModelConfig, ParamStore, RnnConfig, SequenceModel,
};
use remanence_probes::{Mat, Source, Subject};

pub fn gaussian(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Mat {
    let v = (0..rows * cols)
        .map(|_| {
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect();
    Mat::from_vec(rows, cols, v).unwrap()
}

/// A random orthogonal n × n matrix (Gram–Schmidt on a Gaussian one).
pub fn orthogonal(n: usize, seed: u64) -> Mat {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = gaussian(n, n, &mut rng);
    let mut q: Vec<Vec<f64>> = Vec::new();
    for j in 0..n {
        let mut v: Vec<f64> = (0..n).map(|i| g[(i, j)]).collect();
        for _ in 0..2 {
            for u in &q {
                let d: f64 = u.iter().zip(&v).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(x, y)| *x -= d * y);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        q.push(v.into_iter().map(|x| x / norm).collect());
    }
    // Columns q_j.
    let mut m = Mat::zeros(n, n);
    for (j, col) in q.iter().enumerate() {
        for i in 0..n {
            m[(i, j)] = col[i];
        }
    }
    m
}

/// A 2 × 2 rotation by `theta` times `r`: eigenvalues r·e^{±iθ}, singular values r, r.
pub fn rotation(theta: f64, r: f64) -> Mat {
    Mat::from_rows(&[
        vec![r * theta.cos(), -r * theta.sin()],
        vec![r * theta.sin(), r * theta.cos()],
    ])
    .unwrap()
}

pub fn tensor(m: &Mat) -> Tensor {
    Tensor::from_vec(m.data().to_vec(), (m.rows(), m.cols()), &Device::Cpu).unwrap()
}

pub fn vector(v: &[f64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), v.len(), &Device::Cpu).unwrap()
}

pub fn config(cell: CellKind, hidden: usize, layers: usize, kernel: Kernel) -> ModelConfig {
    ModelConfig::new(
        RnnConfig {
            cell,
            input_size: 1,
            hidden_size: hidden,
            num_layers: layers,
            activation: Activation::Tanh,
            ct: CtOptions {
                backbone_units: 8,
                ode_unfolds: 2,
                ..CtOptions::default()
            },
            kernel,
            reservoir: Default::default(),
            threads: Some(1),
        },
        1,
    )
}

/// A one-layer tanh SRN with the given recurrent matrix, input weights and total bias
/// (split as b_ih = bias, b_hh = 0), read-out zeros.
pub fn srn(w_hh: &Mat, w_ih: &[f64], bias: &[f64], activation: Activation) -> Subject {
    let h = w_hh.rows();
    let mut cfg = config(CellKind::Srn, h, 1, Kernel::Auto);
    cfg.rnn.activation = activation;
    let tensors = vec![
        ("rnn.weight_hh_l0".to_string(), tensor(w_hh)),
        (
            "rnn.weight_ih_l0".to_string(),
            tensor(&Mat::from_vec(h, 1, w_ih.to_vec()).unwrap()),
        ),
        ("rnn.bias_ih_l0".to_string(), vector(bias)),
        ("rnn.bias_hh_l0".to_string(), vector(&vec![0.0; h])),
        ("head.weight".to_string(), tensor(&Mat::zeros(1, h))),
        ("head.bias".to_string(), vector(&[0.0])),
    ];
    let store = ParamStore::from_tensors(tensors, "test").unwrap();
    let model = SequenceModel::from_store(&cfg, &store, DType::F64, &Device::Cpu).unwrap();
    Subject::new(
        model,
        store,
        Device::Cpu,
        Source::Built {
            what: "a hand-built SRN".into(),
        },
    )
    .unwrap()
}

/// Runs x_t = act(W x_{t−1} + w u_t) from zero in plain Rust: row t is x after reading u_t.
pub fn reservoir(w: &Mat, w_in: &[f64], u: &[f64], linear: bool) -> Mat {
    let n = w.rows();
    let mut x = vec![0.0; n];
    let mut out = Vec::with_capacity(u.len() * n);
    for &ut in u {
        let next: Vec<f64> = (0..n)
            .map(|i| {
                let pre = (0..n).map(|j| w[(i, j)] * x[j]).sum::<f64>() + w_in[i] * ut;
                if linear {
                    pre
                } else {
                    pre.tanh()
                }
            })
            .collect();
        x = next;
        out.extend_from_slice(&x);
    }
    Mat::from_vec(u.len(), n, out).unwrap()
}

pub fn uniform(len: usize, a: f64, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len)
        .map(|_| a * (2.0 * rng.random::<f64>() - 1.0))
        .collect()
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-probes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
