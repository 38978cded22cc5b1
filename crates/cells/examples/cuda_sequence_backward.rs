//! One LSTM layer's forward + backward on the CUDA route's whole-sequence op (`LstmSequence`), run
//! with its host build on the CPU. Prints, for each T, the autograd graph's node count and the
//! seconds of one forward + backward (median of `REPS` runs). (The per-step composition it
//! replaced, and its step op, are gone; their rows in docs/benchmarks.md were measured at 4f3df62.)
//!
//! ```sh
//! cargo run --release -p remanence-cells --example cuda_sequence_backward -- 100 400
//! ```
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::kernels::cuda::sequence;

const B: usize = 16;
const I: usize = 32;
const H: usize = 64;
const REPS: usize = 3;

struct Layer {
    w_ih: Var,
    w_hh: Var,
    bias: Var,
    h0: Var,
    c0: Var,
}

fn uniform(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| 0.2 * (2.0 * rng.random::<f32>() - 1.0))
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// The whole-sequence op.
fn whole(l: &Layer, x: &Tensor) -> Tensor {
    let xp = sequence::time_major_projection(x, &l.w_ih.t().unwrap(), l.bias.as_tensor()).unwrap();
    let (ys, _, _) =
        sequence::lstm_sequence(&xp, l.w_hh.as_tensor(), l.h0.as_tensor(), l.c0.as_tensor())
            .unwrap();
    ys.sum_all().unwrap()
}

fn main() {
    let steps: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("steps"))
        .collect();
    let steps = if steps.is_empty() {
        vec![100, 400]
    } else {
        steps
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let var = |s: &[usize], rng: &mut _| Var::from_tensor(&uniform(s, rng)).unwrap();
    let l = Layer {
        w_ih: var(&[4 * H, I], &mut rng),
        w_hh: var(&[4 * H, H], &mut rng),
        bias: var(&[4 * H], &mut rng),
        h0: var(&[B, H], &mut rng),
        c0: var(&[B, H], &mut rng),
    };
    println!("LSTM, B = {B}, I = {I}, H = {H}, f32, host build on the CPU; median of {REPS}");
    println!("| path | T | graph nodes | forward + backward (s) |");
    println!("|---|---|---|---|");
    {
        let (name, f) = ("whole sequence", whole);
        for &t in &steps {
            let x = uniform(&[B, t, I], &mut rng).to_dtype(DType::F32).unwrap();
            let nodes = f(&l, &x).sorted_nodes().len();
            let mut secs: Vec<f64> = (0..REPS)
                .map(|_| {
                    let t0 = Instant::now();
                    let loss = f(&l, &x);
                    let grads = loss.backward().unwrap();
                    assert!(grads.get(l.w_hh.as_tensor()).is_some());
                    t0.elapsed().as_secs_f64()
                })
                .collect();
            secs.sort_by(f64::total_cmp);
            println!("| {name} | {t} | {nodes} | {:.3} |", secs[REPS / 2]);
        }
    }
}
