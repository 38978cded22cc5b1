//! The fused CfC layer kernel equals the reference step composition: outputs, final state and
//! the gradients of every parameter, of x and of h0, on fresh random inputs, in f64 (1e-10) and
//! f32 (1e-5), for every mode, 0, 1 and 2 backbone layers, every backbone activation, with and
//! without elapsed times and initial state, batch 1, odd sizes and length 1;
//! the fused route really runs the kernel, and splitting the batch over threads changes nothing
//! but the last bits.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use remanence_cells::cells::Cfc;
use remanence_cells::kernels::cpu::{CfcKernel, Fused, RowKernel};
use remanence_cells::{
    Activation, BackboneActivation, CellKind, CellState, CfcMode, CtOptions, Kernel, ParamStore,
    RecurrentCell, RnnConfig, Route, StackedRnn,
};

type Rng8 = rand_chacha::ChaCha8Rng;

use common::uniform;

const MODES: [CfcMode; 3] = [CfcMode::Default, CfcMode::NoGate, CfcMode::Pure];
const ACTIVATIONS: [BackboneActivation; 5] = [
    BackboneActivation::LecunTanh,
    BackboneActivation::Tanh,
    BackboneActivation::Relu,
    BackboneActivation::Gelu,
    BackboneActivation::Silu,
];

#[derive(Clone)]
struct Case {
    b: usize,
    t: usize,
    d: usize,
    h: usize,
    ct: CtOptions,
    with_h0: bool,
    with_dt: bool,
}

fn ct(mode: CfcMode, backbone_layers: usize, act: BackboneActivation, units: usize) -> CtOptions {
    CtOptions {
        mode,
        backbone_layers,
        backbone_activation: act,
        backbone_units: units,
        ..CtOptions::default()
    }
}

impl Case {
    fn new(b: usize, t: usize, d: usize, h: usize, ct: CtOptions) -> Self {
        Self {
            b,
            t,
            d,
            h,
            ct,
            with_h0: true,
            with_dt: true,
        }
    }
    fn describe(&self) -> String {
        format!(
            "{} {}x{} {} b{} t{} d{} h{}{}{}",
            self.ct.mode,
            self.ct.backbone_layers,
            self.ct.backbone_units,
            self.ct.backbone_activation,
            self.b,
            self.t,
            self.d,
            self.h,
            if self.with_h0 { " h0" } else { "" },
            if self.with_dt { " dt" } else { "" },
        )
    }
}

/// Runs one path and returns (y, h_n, gradients of every parameter, x and h0).
fn run(
    case: &Case,
    kernel: Kernel,
    threads: Option<usize>,
    dtype: DType,
    seed: u64,
) -> Vec<(String, Tensor)> {
    let cfg = RnnConfig {
        cell: CellKind::Cfc,
        input_size: case.d,
        hidden_size: case.h,
        num_layers: 1,
        activation: Activation::Tanh,
        ct: case.ct.clone(),
        reservoir: Default::default(),
        threads,
        kernel,
    };
    let dev = Device::Cpu;
    let store = ParamStore::seeded(seed);
    StackedRnn::seed_store(&cfg, &store, "rnn", dtype, &dev).unwrap();
    let rnn = StackedRnn::new(&cfg, store.var_builder(dtype, &dev).pp("rnn")).unwrap();
    let mut rng = Rng8::seed_from_u64(seed + 1);
    let feed = common::Feed {
        b: case.b,
        t: case.t,
        i: case.d,
        with_h0: case.with_h0,
        with_dt: case.with_dt,
    };
    common::outputs_and_gradients(&rnn, &store, 1, case.h, &feed, dtype, &mut rng)
}

/// Compares the fused path with the reference in f64 and f32; returns the largest relative
/// errors seen in each.
fn compare(case: &Case, seed: u64) -> [f64; 2] {
    let mut worst = [0.0f64; 2];
    for (k, (dtype, tol)) in [(DType::F64, 1e-10), (DType::F32, 1e-5)]
        .into_iter()
        .enumerate()
    {
        let reference = run(case, Kernel::Reference, None, dtype, seed);
        let fused = run(case, Kernel::Fused, Some(2), dtype, seed);
        assert_eq!(reference.len(), fused.len());
        for ((n1, a), (n2, b)) in reference.iter().zip(&fused) {
            assert_eq!(n1, n2);
            let e = common::rel_err(b, a);
            assert!(
                e <= tol,
                "{n1} ({dtype:?}, {}): relative error {e:.3e} > {tol:.1e}",
                case.describe()
            );
            worst[k] = worst[k].max(e);
        }
    }
    worst
}

/// Runs every case and prints the largest errors (`--nocapture` shows them).
fn compare_all(what: &str, cases: &[Case]) {
    let mut worst = [0.0f64; 2];
    for (s, case) in cases.iter().enumerate() {
        let w = compare(case, 100 + s as u64);
        worst = [worst[0].max(w[0]), worst[1].max(w[1])];
    }
    eprintln!(
        "{what}: {} cases, largest relative error f64 {:.2e}, f32 {:.2e}",
        cases.len(),
        worst[0],
        worst[1]
    );
}

#[test]
fn fused_route_runs_the_kernel() {
    let dev = Device::Cpu;
    let store = ParamStore::seeded(3);
    let opts = ct(CfcMode::Default, 1, BackboneActivation::LecunTanh, 5);
    let cell = Cfc::new(3, 4, &opts, store.var_builder(DType::F64, &dev)).unwrap();
    let mut rng = Rng8::seed_from_u64(4);
    let x = uniform(&[2, 3, 3], -1.0, 1.0, &mut rng);
    let state = CellState {
        h: uniform(&[2, 4], -1.0, 1.0, &mut rng),
        c: None,
    };
    let fused = cell
        .forward_sequence(&x, None, &state, Route::CpuFused { threads: 1 })
        .unwrap()
        .expect("the CPU route runs the fused kernel");
    assert_eq!(fused.0.dims(), &[2, 3, 4]);
    for route in [Route::Reference, Route::CudaSteps] {
        assert!(cell
            .forward_sequence(&x, None, &state, route)
            .unwrap()
            .is_none());
    }
    // The fused result is that of stepping the reference.
    let mut st = state.clone();
    for t in 0..3 {
        st = cell
            .step(&x.narrow(1, t, 1).unwrap().squeeze(1).unwrap(), None, &st)
            .unwrap();
        common::assert_close(
            &format!("step {t}"),
            &fused.0.narrow(1, t, 1).unwrap().squeeze(1).unwrap(),
            &st.h,
            1e-12,
        );
    }
    common::assert_close("h_n", &fused.1.h, &st.h, 1e-12);
}

#[test]
fn fused_equals_reference_every_mode_and_depth() {
    let mut cases = Vec::new();
    for mode in MODES {
        for layers in [0, 1, 2] {
            cases.push(Case::new(
                3,
                5,
                3,
                7,
                ct(mode, layers, BackboneActivation::LecunTanh, 5),
            ));
        }
    }
    compare_all("modes x depths", &cases);
}

#[test]
fn fused_equals_reference_every_activation() {
    let mut cases = Vec::new();
    for act in ACTIVATIONS {
        for mode in MODES {
            cases.push(Case::new(2, 4, 3, 5, ct(mode, 2, act, 6)));
        }
        cases.push(Case::new(3, 3, 2, 4, ct(CfcMode::Default, 1, act, 9)));
    }
    compare_all("activations", &cases);
}

#[test]
fn fused_equals_reference_without_dt_or_h0() {
    let mut cases = Vec::new();
    for mode in MODES {
        for (with_h0, with_dt) in [(false, false), (true, false), (false, true)] {
            let mut c = Case::new(3, 4, 2, 5, ct(mode, 1, BackboneActivation::LecunTanh, 6));
            c.with_h0 = with_h0;
            c.with_dt = with_dt;
            cases.push(c);
        }
        let mut c = Case::new(2, 3, 4, 3, ct(mode, 0, BackboneActivation::Tanh, 1));
        c.with_dt = false;
        cases.push(c);
    }
    compare_all("without dt or h0", &cases);
}

#[test]
fn fused_equals_reference_batch_one_length_one_and_odd_sizes() {
    let mut cases = Vec::new();
    for mode in MODES {
        cases.push(Case::new(
            1,
            1,
            2,
            5,
            ct(mode, 1, BackboneActivation::LecunTanh, 3),
        ));
        cases.push(Case::new(
            1,
            7,
            1,
            3,
            ct(mode, 2, BackboneActivation::Silu, 11),
        ));
        cases.push(Case::new(
            5,
            1,
            4,
            9,
            ct(mode, 0, BackboneActivation::LecunTanh, 2),
        ));
        cases.push(Case::new(
            7,
            3,
            13,
            1,
            ct(mode, 1, BackboneActivation::Relu, 17),
        ));
        let mut c = Case::new(1, 1, 1, 1, ct(mode, 2, BackboneActivation::Gelu, 1));
        c.with_h0 = false;
        cases.push(c);
    }
    compare_all("batch 1, length 1, odd sizes", &cases);
}

/// The same model on 1 and 3 threads: the same numbers to rounding (the products see other row
/// counts per thread), and a fixed thread count is deterministic.
#[test]
fn thread_count_changes_nothing_through_the_stack() {
    for mode in MODES {
        let case = Case::new(7, 5, 3, 6, ct(mode, 2, BackboneActivation::Silu, 8));
        let one = run(&case, Kernel::Fused, Some(1), DType::F64, 7);
        let three = run(&case, Kernel::Fused, Some(3), DType::F64, 7);
        let again = run(&case, Kernel::Fused, Some(3), DType::F64, 7);
        for (((n, a), (_, b)), (_, c)) in one.iter().zip(&three).zip(&again) {
            common::assert_close(&format!("{mode} {n}, 1 vs 3 threads"), b, a, 1e-13);
            let (bv, cv): (Vec<f64>, Vec<f64>) = (
                b.flatten_all().unwrap().to_vec1().unwrap(),
                c.flatten_all().unwrap().to_vec1().unwrap(),
            );
            assert_eq!(bv, cv, "{mode} {n}: a fixed thread count is deterministic");
        }
    }
}

/// The kernel alone, random weights: any split of the batch over 1, 2, 3 or 5 threads gives the
/// same outputs and gradients.
#[test]
fn thread_split_changes_nothing() {
    let (b, t) = (5, 4);
    for (s, (mode, layers, act)) in [
        (CfcMode::Default, 2, BackboneActivation::Gelu),
        (CfcMode::NoGate, 0, BackboneActivation::LecunTanh),
        (CfcMode::Pure, 1, BackboneActivation::Relu),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = Rng8::seed_from_u64(20 + s as u64);
        let kernel = CfcKernel {
            input: 3,
            hidden: 6,
            backbone_units: 7,
            backbone_layers: layers,
            mode,
            activation: act,
            dt: Some((0..b * t).map(|_| 0.3 + rng.random::<f64>()).collect()),
        };
        let x = Var::from_tensor(&uniform(&[b, t, 3], -1.0, 1.0, &mut rng)).unwrap();
        let w = Var::from_tensor(&uniform(&[kernel.weights_len()], -0.6, 0.6, &mut rng)).unwrap();
        let h0 = Var::from_tensor(&uniform(&[b, 6], -1.0, 1.0, &mut rng)).unwrap();
        let g = uniform(&[b, t, 6], -1.0, 1.0, &mut rng);
        let mut first: Option<Vec<Tensor>> = None;
        for threads in [1, 2, 3, 5] {
            let (y, _) = Fused::new(kernel.clone(), threads)
                .apply(x.as_tensor(), w.as_tensor(), h0.as_tensor())
                .unwrap();
            let grads = (&y * &g).unwrap().sum_all().unwrap().backward().unwrap();
            let r = vec![
                y,
                grads.get(x.as_tensor()).unwrap().clone(),
                grads.get(w.as_tensor()).unwrap().clone(),
                grads.get(h0.as_tensor()).unwrap().clone(),
            ];
            match &first {
                None => first = Some(r),
                Some(f) => {
                    for k in 0..4 {
                        common::assert_close(
                            &format!("{mode} part {k}, {threads} threads"),
                            &r[k],
                            &f[k],
                            1e-13,
                        );
                    }
                }
            }
        }
    }
}
