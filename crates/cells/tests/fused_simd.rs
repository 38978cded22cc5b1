//! The builds of the fused LSTM, GRU and SRN kernels agree: the AVX2 and the AVX-512 builds give
//! the same bits (outputs and every gradient: each value is the same sequence of operations), the
//! baseline build (multiply and add apart) the same values to rounding. The builds are chosen
//! with `limit_simd`, which holds for the whole process: this file has one test, run alone.
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::kernels::cpu::runner::{limit_simd, simd, Simd};
use remanence_cells::kernels::cpu::{Fused, GruKernel, LstmKernel, RowKernel, SrnKernel};

fn uniform(shape: &[usize], rng: &mut rand_chacha::ChaCha8Rng, dtype: DType) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| 2.0 * rng.random::<f64>() - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Outputs, final values and the gradients of x, w and s0, each as exact f64 values.
fn pass<K: RowKernel + Clone + 'static>(
    kernel: &K,
    b: usize,
    t: usize,
    dtype: DType,
) -> Vec<Vec<f64>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let x = Var::from_tensor(&uniform(&[b, t, kernel.input_width()], &mut rng, dtype)).unwrap();
    let w = Var::from_tensor(&(uniform(&[kernel.weights_len()], &mut rng, dtype) * 0.3).unwrap())
        .unwrap();
    let s0 = Var::from_tensor(&uniform(&[b, kernel.state_width()], &mut rng, dtype)).unwrap();
    let g = uniform(&[b, t, kernel.output_width()], &mut rng, dtype);
    let (y, fin) = Fused::new(kernel.clone(), 2)
        .apply(x.as_tensor(), w.as_tensor(), s0.as_tensor())
        .unwrap();
    let mut loss = (&y * &g).unwrap().sum_all().unwrap();
    if kernel.final_width() > 0 {
        loss = (loss + fin.sqr().unwrap().sum_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let v = |t: &Tensor| -> Vec<f64> {
        t.flatten_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    vec![
        v(&y),
        v(&fin),
        v(grads.get(x.as_tensor()).unwrap()),
        v(grads.get(w.as_tensor()).unwrap()),
        v(grads.get(s0.as_tensor()).unwrap()),
    ]
}

fn agree<K: RowKernel + Clone + 'static>(kernel: K) {
    // Rows and sizes off the tiles (29 rows: 15 and 14 per thread).
    let (b, t) = (29, 4);
    for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-12)] {
        limit_simd(Some(Simd::Avx2));
        let avx2 = pass(&kernel, b, t, dtype);
        let used = simd();
        limit_simd(None);
        let best = pass(&kernel, b, t, dtype);
        limit_simd(Some(Simd::Baseline));
        let base = pass(&kernel, b, t, dtype);
        limit_simd(None);
        let what = format!("{} {dtype:?}", K::NAME);
        if used == Simd::Avx2 {
            assert_eq!(avx2, best, "{what}: AVX2 and {:?} builds", simd());
        } else {
            eprintln!("no AVX2 here: {what} compares the baseline build only");
        }
        for (k, (p, q)) in base.iter().zip(&best).enumerate() {
            let num: f64 = p
                .iter()
                .zip(q)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt();
            let den: f64 = q.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-300);
            assert!(
                num / den <= tol,
                "{what}: part {k}, baseline build off by {:.2e}",
                num / den
            );
        }
    }
}

#[test]
fn the_builds_agree() {
    agree(LstmKernel {
        input: 7,
        hidden: 37,
    });
    agree(GruKernel {
        input: 5,
        hidden: 21,
    });
    for (logistic, leak) in [(false, None), (true, None), (false, Some(0.25))] {
        agree(SrnKernel {
            input: 6,
            hidden: 45,
            logistic,
            leak,
        });
    }
}
