//! `remanence bench`: times a training step (forward, backward, Adam update) and an inference
//! forward pass (weights detached: nothing is saved for a backward pass, as PyTorch's `no_grad`) of
//! each cell's fused path and its reference composition, beside candle-nn's `rnn::lstm` /
//! `rnn::gru`, on the same inputs, and prints the ratios. Every measurement runs in a child
//! process of its own, so its peak memory is its own. Speed is measured here, never in tests.
//!
//! With `--against pytorch` every row is also timed in PyTorch (`nn.RNN/LSTM/GRU`) or ncps (`LTC`,
//! `CfC`) right after ours, in a child Python process running `bench/torch_bench.py` (built into
//! this binary) on the same shape and thread count, and the row prints theirs / ours.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::rnn::{GRUConfig, LSTMConfig, RNN};
use clap::Args;
use rand::{Rng, SeedableRng};
use remanence_cells::device::parse_device;
use remanence_cells::{
    Activation, CellKind, CtOptions, Kernel, ParamStore, Recurrent, RnnConfig, StackedRnn,
};
use remanence_train::stack::with_deep_stack;
use remanence_train::{OptimizerConfig, OptimizerKind};
use serde::{Deserialize, Serialize};

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Cells to time, comma-separated: srn, lstm, gru, ltc, cfc, ctrnn, odernn.
    #[arg(long, default_value = "srn,lstm,gru,ltc,cfc", value_delimiter = ',')]
    cells: Vec<String>,
    /// Hidden sizes of srn, lstm, gru, ctrnn, odernn, comma-separated.
    #[arg(long, default_value = "128,256", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Units of ltc and cfc, comma-separated.
    #[arg(long, default_value = "64,128", value_delimiter = ',')]
    units: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Sequence length.
    #[arg(long, default_value_t = 100)]
    len: usize,
    /// Input features.
    #[arg(long, default_value_t = 32)]
    input: usize,
    /// Timed repetitions (the median is reported).
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Untimed repetitions first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// LTC wiring (as `train --wiring`).
    #[arg(long, default_value = "fully-connected")]
    wiring: String,
    /// Skip the reference composition of cells that have a fused path (LTC's reference needs
    /// O(B·T·L·H²) memory: about 20 GiB at 128 units).
    #[arg(long)]
    no_reference: bool,
    /// Largest LTC for which the reference composition is timed too: it needs O(B·T·L·H²) memory
    /// (6.7 GiB at 64 units, about 27 GiB at 128).
    #[arg(long, default_value_t = 64)]
    ltc_reference_max: usize,
    /// Skip the second shape, row-MNIST's (batch 128, 28 steps of 28 inputs; hidden 128, or the
    /// first of --units for ltc and cfc).
    #[arg(long)]
    no_row_mnist: bool,
    /// Device of the timed models: cpu, or cuda[:N] (a binary built with `--features cuda`; the
    /// fused path is then the CUDA step kernels, and every timing waits for the device).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time the library a user would otherwise pick on each row, interleaved with ours:
    /// `pytorch` (PyTorch's nn.RNN/LSTM/GRU for srn/lstm/gru, ncps's LTC/CfC for ltc/cfc), on
    /// the CPU with the same thread count. Needs a Python with torch and ncps (`--python`).
    #[arg(long, value_enum)]
    against: Option<Against>,
    /// The Python of `--against`: default `bench/.venv/bin/python` (made by `bench/run.sh`) when it
    /// exists below the working directory, else `python3`.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Internal: run one measurement `CELL:SIZE:PATH` and print it as JSON.
    #[arg(long, hide = true)]
    only: Option<String>,
}

/// The libraries `--against` can time beside ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Against {
    Pytorch,
}

/// The PyTorch/ncps side of `--against pytorch`: the script (written to a temporary file that is
/// removed on drop) and the Python that runs it.
struct Theirs {
    python: PathBuf,
    script: PathBuf,
    version: String,
}

/// `bench/torch_bench.py`, carried in the binary so that `--against` works from any directory.
const TORCH_BENCH: &str = include_str!("../../../../bench/torch_bench.py");

impl Theirs {
    /// Checks up front that `python` imports torch (and ncps when `need_ncps`), so a missing
    /// install fails before any measurement.
    fn new(python: Option<PathBuf>, need_ncps: bool) -> Result<Self> {
        let venv = Path::new("bench/.venv/bin/python");
        let python = python.unwrap_or_else(|| {
            if venv.exists() {
                venv.to_path_buf()
            } else {
                PathBuf::from("python3")
            }
        });
        let probe = if need_ncps {
            "import torch, ncps, importlib.metadata as m; print(torch.__version__, 'ncps', m.version('ncps'))"
        } else {
            "import torch; print(torch.__version__)"
        };
        let out = std::process::Command::new(&python)
            .args(["-c", probe])
            .output()
            .with_context(|| format!("--against pytorch: cannot run {}", python.display()))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "--against pytorch: {} cannot import torch{}: {}\nrun bench/run.sh --install once (it creates bench/.venv with torch and ncps), or pass --python",
                python.display(),
                if need_ncps { " and ncps" } else { "" },
                err.trim().lines().last().unwrap_or_default()
            );
        }
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let script =
            std::env::temp_dir().join(format!("remanence-torch-bench-{}.py", std::process::id()));
        std::fs::write(&script, TORCH_BENCH)
            .with_context(|| format!("writing {}", script.display()))?;
        Ok(Self {
            python,
            script,
            version,
        })
    }

    /// Their model for one of our cells, or `None` where neither library has it.
    fn spec(kind: CellKind, h: usize) -> Option<String> {
        let name = match kind {
            CellKind::Srn => "rnn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
            CellKind::Ltc => "ltc",
            CellKind::Cfc => "cfc",
            _ => return None,
        };
        Some(format!("{name}:{h}"))
    }

    /// One measurement in a child Python process (the script's `--only`).
    fn measure(&self, spec: &str, shape: Shape, a: &BenchArgs) -> Result<Measure> {
        let threads =
            crate::kernel_threads().unwrap_or_else(remanence_cells::route::default_threads);
        let out = std::process::Command::new(&self.python)
            .arg(&self.script)
            .args(["--only", spec, "--threads", &threads.to_string()])
            .args([
                "--reps",
                &a.reps.to_string(),
                "--warmup",
                &a.warmup.to_string(),
            ])
            .args([
                "--batch",
                &shape.batch.to_string(),
                "--len",
                &shape.len.to_string(),
                "--input",
                &shape.input.to_string(),
            ])
            .output()
            .context("running the PyTorch bench")?;
        if !out.status.success() {
            bail!(
                "PyTorch bench {spec} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().unwrap_or_default();
        serde_json::from_str(line).with_context(|| format!("PyTorch bench {spec} printed {line:?}"))
    }
}

impl Drop for Theirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.script);
    }
}

/// Batch, length and input features of a timed run.
#[derive(Clone, Copy)]
struct Shape {
    batch: usize,
    len: usize,
    input: usize,
}

/// One measurement.
#[derive(Serialize, Deserialize)]
struct Measure {
    forward_ms: f64,
    train_ms: f64,
    peak_mib: Option<f64>,
}

fn median_ms(reps: usize, warmup: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Ok(t[t.len() / 2])
}

fn random(shape: &[usize], rng: &mut impl Rng, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?.to_device(device)?)
}

/// Times `infer` (the model with detached weights, so nothing is saved for a backward pass, as
/// PyTorch's `no_grad`) and a training step of `forward` (loss = Σ y·g, backward, Adam).
fn time(
    infer: &dyn Fn(&Tensor) -> Result<Tensor>,
    forward: &dyn Fn(&Tensor) -> Result<Tensor>,
    vars: Vec<(String, Var)>,
    x: &Tensor,
    rng: &mut impl Rng,
    a: &BenchArgs,
) -> Result<(f64, f64)> {
    let y0 = forward(x)?;
    let g = random(y0.dims(), rng, x.device())?;
    let fwd = median_ms(a.reps, a.warmup, || {
        infer(x)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let mut opt = OptimizerConfig::new(OptimizerKind::Adam, 1e-4).build();
    let train = median_ms(a.reps, a.warmup, || {
        let loss = (forward(x)? * &g)?.sum_all()?;
        let grads = loss.backward()?;
        let gs: Vec<_> = vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        opt.step(&vars, &gs, 1e-4)?;
        // A GPU runs the step asynchronously: the time counts once it is done.
        x.device().synchronize()?;
        Ok(())
    })?;
    Ok((fwd, train))
}

fn measure(a: &BenchArgs, spec: &str) -> Result<Measure> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [cell, size, path] = parts.as_slice() else {
        bail!("bad --only {spec}")
    };
    let kind: CellKind = cell.parse()?;
    let h: usize = size.parse()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let dev = parse_device(&a.device).context("--device")?;
    let x = random(&[a.batch, a.len, a.input], &mut rng, &dev)?;
    let before = peak_rss_mib();
    let (fwd, train) = match *path {
        "fused" | "reference" => {
            let cfg = RnnConfig {
                cell: kind,
                input_size: a.input,
                hidden_size: h,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: CtOptions {
                    wiring: a.wiring.parse()?,
                    ..Default::default()
                },
                reservoir: Default::default(),
                threads: crate::kernel_threads(),
                kernel: if *path == "reference" {
                    Kernel::Reference
                } else {
                    Kernel::Fused
                },
            };
            let store = ParamStore::seeded(1);
            StackedRnn::seed_store(&cfg, &store, "rnn", DType::F32, &dev)?;
            let rnn = StackedRnn::new(&cfg, store.var_builder(DType::F32, &dev).pp("rnn"))?;
            let detached = candle_nn::VarBuilder::from_tensors(
                store.tensors().into_iter().collect(),
                DType::F32,
                &dev,
            );
            let frozen = StackedRnn::new(&cfg, detached.pp("rnn"))?;
            let f = |x: &Tensor| -> Result<Tensor> { Ok(rnn.forward(x, None, None)?.0) };
            let i = |x: &Tensor| -> Result<Tensor> { Ok(frozen.forward(x, None, None)?.0) };
            time(&i, &f, store.vars(), x.as_ref(), &mut rng, a)?
        }
        "candle-nn" => {
            let vm = candle_nn::VarMap::new();
            let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let vars = || {
                let data = vm.data().lock().unwrap();
                let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            // The same weights, detached, for the timed inference pass.
            let frozen = || {
                let t = vars().into_iter().map(|(k, v)| (k, v.as_tensor().detach()));
                candle_nn::VarBuilder::from_tensors(t.collect(), DType::F32, &dev)
            };
            match kind {
                CellKind::Lstm => {
                    let m = candle_nn::rnn::lstm(a.input, h, LSTMConfig::default(), vb)?;
                    let n = candle_nn::rnn::lstm(a.input, h, LSTMConfig::default(), frozen())?;
                    let f = |x: &Tensor| -> Result<Tensor> { Ok(m.states_to_tensor(&m.seq(x)?)?) };
                    let i = |x: &Tensor| -> Result<Tensor> { Ok(n.states_to_tensor(&n.seq(x)?)?) };
                    time(&i, &f, vars(), &x, &mut rng, a)?
                }
                CellKind::Gru => {
                    let m = candle_nn::rnn::gru(a.input, h, GRUConfig::default(), vb)?;
                    let n = candle_nn::rnn::gru(a.input, h, GRUConfig::default(), frozen())?;
                    let f = |x: &Tensor| -> Result<Tensor> { Ok(m.states_to_tensor(&m.seq(x)?)?) };
                    let i = |x: &Tensor| -> Result<Tensor> { Ok(n.states_to_tensor(&n.seq(x)?)?) };
                    time(&i, &f, vars(), &x, &mut rng, a)?
                }
                _ => bail!("candle-nn has no {kind}"),
            }
        }
        p => bail!("unknown path {p}"),
    };
    let peak_mib = peak_rss_mib().zip(before).map(|(p, b)| p - b);
    Ok(Measure {
        forward_ms: fwd,
        train_ms: train,
        peak_mib,
    })
}

/// Runs one measurement in a child process.
fn child(a: &BenchArgs, spec: &str, shape: Shape) -> Result<Measure> {
    let exe = std::env::current_exe().context("locating the remanence binary")?;
    let mut cmd = std::process::Command::new(exe);
    if let Some(t) = crate::kernel_threads() {
        cmd.args(["--threads", &t.to_string()]);
    }
    let out = cmd
        .args(["bench", "--only", spec])
        .args([
            "--batch",
            &shape.batch.to_string(),
            "--len",
            &shape.len.to_string(),
            "--input",
            &shape.input.to_string(),
            "--wiring",
            &a.wiring,
            "--device",
            &a.device,
        ])
        .args([
            "--reps",
            &a.reps.to_string(),
            "--warmup",
            &a.warmup.to_string(),
        ])
        .output()
        .context("running a bench child")?;
    if !out.status.success() {
        bail!(
            "bench {spec} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("bench {spec} printed {line:?}"))
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(spec) = args.only.clone() {
        let m = with_deep_stack(move || measure(&args, &spec))?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    // A device this binary cannot use is refused before any measurement starts.
    parse_device(&args.device).context("--device")?;
    let kinds: Vec<CellKind> = args
        .cells
        .iter()
        .map(|c| c.parse::<CellKind>())
        .collect::<std::result::Result<_, _>>()?;
    let theirs = match args.against {
        None => None,
        Some(Against::Pytorch) => {
            if args.device != "cpu" {
                bail!(
                    "--against pytorch times PyTorch on the CPU; on a GPU, scripts/gpu_check.sh runs PyTorch's cuDNN beside --device cuda"
                );
            }
            if kinds.iter().any(|k| *k == CellKind::Ltc) && args.wiring != "fully-connected" {
                bail!(
                    "--against pytorch: ncps's LTC is timed fully connected only (got --wiring {})",
                    args.wiring
                );
            }
            let ncps = kinds.iter().any(|k| k.is_ncps());
            Some(Theirs::new(args.python.clone(), ncps)?)
        }
    };
    let threads = format!(
        "{} Candle / {} kernel",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default(),
        crate::kernel_threads().unwrap_or_else(remanence_cells::route::default_threads)
    );
    println!(
        "f32, {}, {threads} thread(s); median of {} reps after {} warm-up; one process per measurement; LTC wiring {}; BxTxI = batch x steps x inputs; forward = inference (weights detached)",
        args.device, args.reps, args.warmup, args.wiring
    );
    if let Some(t) = &theirs {
        println!(
            "against: torch {} ({}), same threads, each of their rows measured right after ours",
            t.version,
            t.python.display()
        );
    }
    if kinds.contains(&CellKind::Ltc) {
        let spec: remanence_cells::WiringSpec = args.wiring.parse()?;
        for &units in &args.units {
            for input in [args.input, 28] {
                if input == 28 && (args.no_row_mnist || units != args.units[0]) {
                    continue;
                }
                let w = spec.build(units, input, CtOptions::default().wiring_seed)?;
                let kept = |m: &[i8]| m.iter().filter(|&&v| v != 0).count();
                let (r, s) = (kept(&w.adjacency), kept(&w.sensory));
                let sparse = |k: usize, n: usize| {
                    if (k as f64) < remanence_cells::kernels::cpu::Synapses::SPARSE_BELOW * n as f64
                    {
                        "sparse path"
                    } else {
                        "dense loops"
                    }
                };
                println!(
                    "ltc {units} units, {input} inputs: recurrent synapses {r}/{} ({}), sensory {s}/{} ({})",
                    units * units,
                    sparse(r, units * units),
                    input * units,
                    sparse(s, input * units)
                );
            }
        }
    }
    let header = [
        "cell",
        "BxTxI",
        "size",
        "pass",
        "fused ms",
        "ref ms",
        "cnn ms",
        "torch ms",
        "vs ref",
        "vs cnn",
        "vs torch",
        "GFLOP/s",
        "fused MiB",
        "ref MiB",
        "torch MiB",
    ];
    print_row(&header.map(String::from));
    let main = Shape {
        batch: args.batch,
        len: args.len,
        input: args.input,
    };
    let row_mnist = Shape {
        batch: 128,
        len: 28,
        input: 28,
    };
    let mut runs: Vec<(CellKind, usize, Shape)> = Vec::new();
    for &kind in &kinds {
        let sizes = if kind.is_ncps() {
            &args.units
        } else {
            &args.hidden
        };
        if sizes.contains(&0) {
            bail!("sizes must be positive");
        }
        runs.extend(sizes.iter().map(|&h| (kind, h, main)));
    }
    if !args.no_row_mnist {
        for &kind in &kinds {
            let h = if kind.is_ncps() {
                args.units.first().copied().unwrap_or(64)
            } else {
                128
            };
            runs.push((kind, h, row_mnist));
        }
    }
    for (kind, h, shape) in runs {
        let label = format!("{}x{}x{}", shape.batch, shape.len, shape.input);
        let fused = if kind.has_fused_cpu() {
            Some(child(&args, &format!("{kind}:{h}:fused"), shape)?)
        } else {
            None
        };
        let too_big = kind == CellKind::Ltc && h > args.ltc_reference_max;
        let reference = if kind.has_fused_cpu() && (args.no_reference || too_big) {
            None
        } else {
            Some(child(&args, &format!("{kind}:{h}:reference"), shape)?)
        };
        let cnn = if matches!(kind, CellKind::Lstm | CellKind::Gru) {
            Some(child(&args, &format!("{kind}:{h}:candle-nn"), shape)?)
        } else {
            None
        };
        let torch = match (&theirs, Theirs::spec(kind, h)) {
            (Some(t), Some(spec)) => Some(t.measure(&spec, shape, &args)?),
            _ => None,
        };
        // Matrix-product work of the gated cells: 2·B·T·(I+H)·gates·H forward; backward
        // about twice that.
        let flops = matches!(kind, CellKind::Srn | CellKind::Lstm | CellKind::Gru)
            .then(|| 2.0 * (shape.batch * shape.len * (shape.input + h) * kind.gates() * h) as f64);
        let ms = |m: &Option<Measure>, train: bool| {
            m.as_ref()
                .map(|m| if train { m.train_ms } else { m.forward_ms })
        };
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", b / a),
            _ => "-".into(),
        };
        let mib = |m: &Option<Measure>, train: bool| {
            m.as_ref()
                .and_then(|m| m.peak_mib)
                .filter(|_| train)
                .map(|p| format!("{p:.0}"))
                .unwrap_or_default()
        };
        for (pass, train) in [("train", true), ("forward", false)] {
            let best = match (ms(&fused, train), ms(&reference, train)) {
                (Some(f), Some(r)) => Some(f.min(r)),
                (f, r) => f.or(r),
            };
            let gf = flops
                .zip(best)
                .map(|(f, t)| format!("{:.1}", f * if train { 3.0 } else { 1.0 } / (t * 1e6)));
            print_row(&[
                kind.name().to_string(),
                label.clone(),
                h.to_string(),
                pass.to_string(),
                fmt(ms(&fused, train)),
                fmt(ms(&reference, train)),
                fmt(ms(&cnn, train)),
                fmt(ms(&torch, train)),
                ratio(ms(&fused, train), ms(&reference, train)),
                ratio(best, ms(&cnn, train)),
                ratio(best, ms(&torch, train)),
                gf.unwrap_or_else(|| "-".into()),
                mib(&fused, train),
                mib(&reference, train),
                mib(&torch, train),
            ]);
        }
    }
    println!("vs ref = reference ms / fused ms; vs cnn = candle-nn ms / our best ms; vs torch = PyTorch or ncps ms / our best ms (above 1: we are faster)");
    println!("MiB = growth of the peak resident memory of the measuring process over its start (model, graph, buffers)");
    Ok(())
}

/// One line of the table, columns right-aligned to fixed widths (the cell name left-aligned).
fn print_row(c: &[String; 15]) {
    println!(
        "{:<6} {:>10} {:>5} {:>7} | {:>9} {:>9} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>7} | {:>9} {:>8} {:>9}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12], c[13], c[14]
    );
}

/// The process's peak resident set size (VmHWM) in MiB, where the platform reports it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
