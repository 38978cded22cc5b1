//! The fused LTC sequence kernel equals the reference step composition: outputs, final state and
//! every gradient, on fresh random inputs, in f64 (1e-10) and f32 (1e-5), for batch 1, odd sizes,
//! length 1, with and without initial state and elapsed times, sparse wirings, every mapping and
//! both constraints; and splitting the batch over threads changes nothing.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::kernels::cpu::ltc::{LtcKernel, PackedLayout};
use remanence_cells::kernels::cpu::Fused;
use remanence_cells::{Activation, CellKind, CtOptions, Kernel, ParamStore, RnnConfig, StackedRnn};

use common::uniform;

struct Case {
    b: usize,
    t: usize,
    d: usize,
    h: usize,
    ct: CtOptions,
    with_h0: bool,
    with_dt: bool,
}

/// Runs one path and returns (y, h_n, gradients of every parameter, x, h0).
fn run(case: &Case, reference: bool, dtype: DType, seed: u64) -> Vec<(String, Tensor)> {
    let cfg = RnnConfig {
        cell: CellKind::Ltc,
        input_size: case.d,
        hidden_size: case.h,
        num_layers: 1,
        activation: Activation::Tanh,
        ct: case.ct.clone(),
        reservoir: Default::default(),
        threads: None,
        kernel: if reference {
            Kernel::Reference
        } else {
            Kernel::Fused
        },
    };
    let store = ParamStore::seeded(seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", dtype, &Device::Cpu).unwrap();
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &Device::Cpu).pp("rnn")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + 1);
    let feed = common::Feed {
        b: case.b,
        t: case.t,
        i: case.d,
        with_h0: case.with_h0,
        with_dt: case.with_dt,
    };
    common::outputs_and_gradients(&rnn, &store, 1, case.h, &feed, dtype, &mut rng)
}

fn compare(case: &Case, seed: u64) {
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
        let reference = run(case, true, dtype, seed);
        let fused = run(case, false, dtype, seed);
        assert_eq!(reference.len(), fused.len());
        for ((n1, a), (n2, b)) in reference.iter().zip(&fused) {
            assert_eq!(n1, n2);
            common::assert_close(
                &format!("{n1} ({dtype:?}, b{} t{} h{})", case.b, case.t, case.h),
                b,
                a,
                tol,
            );
        }
    }
}

fn opts(f: impl FnOnce(&mut CtOptions)) -> CtOptions {
    let mut o = CtOptions::default();
    f(&mut o);
    o
}

#[test]
fn fused_equals_reference_fully_connected() {
    compare(
        &Case {
            b: 3,
            t: 5,
            d: 3,
            h: 7,
            ct: opts(|_| {}),
            with_h0: true,
            with_dt: true,
        },
        1,
    );
    compare(
        &Case {
            b: 2,
            t: 4,
            d: 5,
            h: 6,
            ct: opts(|_| {}),
            with_h0: false,
            with_dt: false,
        },
        2,
    );
}

#[test]
fn fused_equals_reference_batch_one_and_length_one() {
    compare(
        &Case {
            b: 1,
            t: 1,
            d: 2,
            h: 5,
            ct: opts(|_| {}),
            with_h0: true,
            with_dt: true,
        },
        3,
    );
    compare(
        &Case {
            b: 1,
            t: 6,
            d: 1,
            h: 3,
            ct: opts(|o| o.ode_unfolds = 1),
            with_h0: false,
            with_dt: true,
        },
        4,
    );
    compare(
        &Case {
            b: 5,
            t: 1,
            d: 4,
            h: 9,
            ct: opts(|_| {}),
            with_h0: false,
            with_dt: false,
        },
        5,
    );
}

#[test]
fn fused_equals_reference_sparse_wirings_mappings_and_clip() {
    compare(
        &Case {
            b: 4,
            t: 6,
            d: 3,
            h: 12,
            ct: opts(|o| o.wiring = "auto-ncp:3".parse().unwrap()),
            with_h0: true,
            with_dt: true,
        },
        6,
    );
    compare(
        &Case {
            b: 3,
            t: 3,
            d: 2,
            h: 8,
            ct: opts(|o| o.wiring = "random:0.7:4".parse().unwrap()),
            with_h0: true,
            with_dt: false,
        },
        7,
    );
    compare(
        &Case {
            b: 2,
            t: 4,
            d: 3,
            h: 5,
            ct: opts(|o| {
                o.constraint = "clip".parse().unwrap();
                o.input_mapping = "linear".parse().unwrap();
                o.output_mapping = "none".parse().unwrap();
                o.ode_unfolds = 3;
            }),
            with_h0: true,
            with_dt: true,
        },
        8,
    );
}

/// Splitting the batch over 1, 2 or 3 threads gives the same forward values and gradients.
#[test]
fn thread_split_changes_nothing() {
    let (b, t, d, h, l) = (5, 4, 3, 6, 3);
    let layout = PackedLayout { h, d };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let x = Var::from_tensor(&uniform(&[b, t, d], -1.0, 1.0, &mut rng)).unwrap();
    let mut p: Vec<f64> = (0..layout.len()).map(|_| rng.random::<f64>()).collect();
    for v in p.iter_mut().take(h * h) {
        *v = 3.0 + 5.0 * *v; // sigma in [3, 8]
    }
    let p = Var::from_tensor(&Tensor::from_vec(p, layout.len(), &Device::Cpu).unwrap()).unwrap();
    let h0 = Var::from_tensor(&uniform(&[b, h], -1.0, 1.0, &mut rng)).unwrap();
    let dt: Vec<f64> = (0..b * t).map(|_| 0.5 + rng.random::<f64>()).collect();
    let g = uniform(&[b, t, h], -1.0, 1.0, &mut rng);
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let op = Fused::new(
            LtcKernel {
                layout,
                unfolds: l,
                epsilon: 1e-8,
                dt: Some(dt.clone()),
                synapses: None,
                sensory_synapses: None,
            },
            threads,
        );
        let (y, _) = op
            .apply(x.as_tensor(), p.as_tensor(), h0.as_tensor())
            .unwrap();
        let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        results.push([
            y,
            grads.get(x.as_tensor()).unwrap().clone(),
            grads.get(p.as_tensor()).unwrap().clone(),
            grads.get(h0.as_tensor()).unwrap().clone(),
        ]);
    }
    for r in &results[1..] {
        for k in 0..4 {
            common::assert_close(&format!("part {k}"), &r[k], &results[0][k], 1e-13);
        }
        let a: Vec<f64> = r[0].flatten_all().unwrap().to_vec1().unwrap();
        let b0: Vec<f64> = results[0][0].flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b0, "the forward pass is identical");
    }
}

/// The sparse path (the kept synapses only, recurrent and sensory) equals the dense loops on the
/// same parameters, the removed synapses' weights set to zero: outputs, ∂x, ∂h0 and every gradient of a kept synapse
/// (removed ones get none from the sparse path; autograd's mask discards them anyway), for
/// densities from one synapse per row to nearly full (the kernel takes any density), with 1 and 3 threads.
#[test]
fn sparse_path_equals_dense_loops() {
    use remanence_cells::kernels::cpu::Synapses;
    use std::sync::Arc;
    let (b, t, d, h, l) = (4, 5, 3, 9, 3);
    let layout = PackedLayout { h, d };
    for (case, keep) in [0.12, 0.5, 0.9].into_iter().enumerate() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20 + case as u64);
        let mask: Vec<f64> = (0..h * h)
            .map(|k| {
                // At least the diagonal is kept, so no row is empty unless chosen below.
                let keep_it = k % (h + 1) == 0 || rng.random::<f64>() < keep;
                if case == 0 && k / h == 2 {
                    0.0 // one presynaptic neuron without any synapse
                } else if keep_it {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let syn = Synapses::from_mask(&mask, h);
        let smask: Vec<f64> = (0..d * h)
            .map(|_| (rng.random::<f64>() < keep) as u8 as f64)
            .collect();
        let ssyn = Synapses::from_mask(&smask, h);
        let mut p: Vec<f64> = (0..layout.len()).map(|_| rng.random::<f64>()).collect();
        for v in p.iter_mut().take(h * h) {
            *v = 3.0 + 5.0 * *v; // sigma in [3, 8]
        }
        for k in 0..d * h {
            p[4 * h * h + 2 * d * h + k] *= smask[k]; // sensory w of removed synapses: 0
            p[4 * h * h + 3 * d * h + k] = 2.0 * p[4 * h * h + 3 * d * h + k] - 1.0;
        }
        for k in 0..h * h {
            p[2 * h * h + k] *= mask[k]; // w of removed synapses: 0
            p[3 * h * h + k] = 2.0 * p[3 * h * h + k] - 1.0; // erev in [-1, 1]
        }
        let p =
            Var::from_tensor(&Tensor::from_vec(p, layout.len(), &Device::Cpu).unwrap()).unwrap();
        let x = Var::from_tensor(&uniform(&[b, t, d], -1.0, 1.0, &mut rng)).unwrap();
        let h0 = Var::from_tensor(&uniform(&[b, h], -1.0, 1.0, &mut rng)).unwrap();
        let g = uniform(&[b, t, h], -1.0, 1.0, &mut rng);
        let run = |synapses: Option<Arc<Synapses>>,
                   sensory: Option<Arc<Synapses>>,
                   threads: usize,
                   dtype: DType| {
            let (xv, pv, hv) = (
                Var::from_tensor(&x.as_tensor().to_dtype(dtype).unwrap()).unwrap(),
                Var::from_tensor(&p.as_tensor().to_dtype(dtype).unwrap()).unwrap(),
                Var::from_tensor(&h0.as_tensor().to_dtype(dtype).unwrap()).unwrap(),
            );
            let op = Fused::new(
                LtcKernel {
                    layout,
                    unfolds: l,
                    epsilon: 1e-8,
                    dt: None,
                    synapses: synapses.clone(),
                    sensory_synapses: sensory.clone(),
                },
                threads,
            );
            let (y, _) = op
                .apply(xv.as_tensor(), pv.as_tensor(), hv.as_tensor())
                .unwrap();
            let gd = g.to_dtype(dtype).unwrap();
            let grads = (&y * &gd).unwrap().sum_all().unwrap().backward().unwrap();
            let f = |t: &Tensor| t.to_dtype(DType::F64).unwrap();
            let dp: Vec<f64> = f(grads.get(pv.as_tensor()).unwrap()).to_vec1().unwrap();
            // Gradients of the kept synapses only in the four recurrent blocks.
            let kept: Vec<f64> = dp
                .iter()
                .enumerate()
                .map(|(k, &v)| {
                    let removed = if k < 4 * h * h {
                        mask[k % (h * h)] == 0.0
                    } else if k < 4 * h * h + 4 * d * h {
                        smask[(k - 4 * h * h) % (d * h)] == 0.0
                    } else {
                        false
                    };
                    if removed {
                        0.0
                    } else {
                        v
                    }
                })
                .collect();
            [
                f(&y),
                f(grads.get(xv.as_tensor()).unwrap()),
                f(grads.get(hv.as_tensor()).unwrap()),
                Tensor::from_vec(kept, layout.len(), &Device::Cpu).unwrap(),
            ]
        };
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            let dense = run(None, None, 1, dtype);
            for threads in [1, 3] {
                let sparse = run(
                    Some(Arc::new(syn.clone())),
                    Some(Arc::new(ssyn.clone())),
                    threads,
                    dtype,
                );
                for (k, name) in ["y", "dx", "dh0", "dparams"].iter().enumerate() {
                    common::assert_close(
                        &format!("{name} keep {keep} {dtype:?} threads {threads}"),
                        &sparse[k],
                        &dense[k],
                        tol,
                    );
                }
            }
        }
    }
}

/// The wirings of the sparse tests above run the sparse path (their density is below the
/// threshold), and a fully connected one the dense loops.
#[test]
fn which_wirings_run_sparse() {
    use remanence_cells::kernels::cpu::Synapses;
    let dense = Synapses::from_mask(&vec![1.0f64; 36], 6);
    assert_eq!(dense.density(), 1.0);
    assert!(dense.density() >= Synapses::SPARSE_BELOW);
    for (spec, h) in [("auto-ncp:3", 12), ("random:0.7:4", 8), ("random:0.8", 64)] {
        let w = remanence_cells::wiring::WiringSpec::parse(spec)
            .unwrap()
            .build(h, 3, 0)
            .unwrap();
        let mask: Vec<f64> = w.adjacency.iter().map(|&a| (a != 0) as u8 as f64).collect();
        let syn = Synapses::from_mask(&mask, h);
        assert!(
            syn.density() < Synapses::SPARSE_BELOW,
            "{spec}: density {}",
            syn.density()
        );
    }
}
