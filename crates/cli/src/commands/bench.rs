//! `remanence bench`: times a training step (forward, backward, Adam update) and a forward pass of
//! our recurrent layers beside candle-nn's `rnn::lstm` / `rnn::gru`, measured in the same run on
//! the same inputs, and prints the ratio. Speed is measured here, never asserted in tests.
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::rnn::{GRUConfig, LSTMConfig, RNN};
use clap::Args;
use rand::{Rng, SeedableRng};
use remanence_cells::{Activation, CellKind, ParamStore, Recurrent, RnnConfig, StackedRnn};
use remanence_train::stack::with_deep_stack;
use remanence_train::{OptimizerConfig, OptimizerKind};

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// Cells to time, comma-separated: srn, lstm, gru, ltc, cfc, ctrnn, odernn.
    #[arg(long, default_value = "lstm,gru,cfc", value_delimiter = ',')]
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
}

/// A model under test: a forward pass and a training step.
trait Subject {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    fn vars(&self) -> Vec<(String, Var)>;
}

struct Ours(StackedRnn, ParamStore);
impl Subject for Ours {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.0.forward(x, None, None)?.0)
    }
    fn vars(&self) -> Vec<(String, Var)> {
        self.1.vars()
    }
}

enum CandleNn {
    Lstm(candle_nn::rnn::LSTM),
    Gru(candle_nn::rnn::GRU),
}
struct Theirs(CandleNn, candle_nn::VarMap);
impl Subject for Theirs {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match &self.0 {
            CandleNn::Lstm(m) => m.states_to_tensor(&m.seq(x)?)?,
            CandleNn::Gru(m) => m.states_to_tensor(&m.seq(x)?)?,
        })
    }
    fn vars(&self) -> Vec<(String, Var)> {
        let data = self.1.data().lock().unwrap();
        let mut v: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
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

/// (forward ms, training-step ms).
fn time(subject: &dyn Subject, x: &Tensor, g: &Tensor, a: &BenchArgs) -> Result<(f64, f64)> {
    let fwd = median_ms(a.reps, a.warmup, || {
        let y = subject.forward(x)?;
        y.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let vars = subject.vars();
    let mut opt = OptimizerConfig::new(OptimizerKind::Adam, 1e-4).build();
    let train = median_ms(a.reps, a.warmup, || {
        let y = subject.forward(x)?;
        let loss = (y.reshape(g.shape())? * g)?.sum_all()?;
        let grads = loss.backward()?;
        let gs: Vec<_> = vars
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        opt.step(&vars, &gs, 1e-4)?;
        Ok(())
    })?;
    Ok((fwd, train))
}

fn random(shape: &[usize], rng: &mut impl Rng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

pub fn run(args: BenchArgs) -> Result<()> {
    with_deep_stack(move || bench(args))
}

fn bench(a: BenchArgs) -> Result<()> {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    println!(
        "batch {}, length {}, input {}, f32, cpu, {threads} thread(s); median of {} reps after {} warm-up",
        a.batch, a.len, a.input, a.reps, a.warmup
    );
    println!(
        "{:<6} {:>6} {:>8} | {:>12} {:>12} {:>8} | {:>14} | {:>10}",
        "cell",
        "hidden",
        "pass",
        "remanence ms",
        "candle-nn ms",
        "speed-up",
        "ours GFLOP/s",
        "peak MiB"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for cell in &a.cells {
        let kind: CellKind = cell.parse()?;
        let sizes = if kind.is_ncps() { &a.units } else { &a.hidden };
        for &h in sizes {
            if h == 0 {
                bail!("--hidden sizes must be positive");
            }
            let x = random(&[a.batch, a.len, a.input], &mut rng)?;
            let g = random(&[a.batch, a.len, h], &mut rng)?;
            let cfg = RnnConfig {
                cell: kind,
                input_size: a.input,
                hidden_size: h,
                num_layers: 1,
                activation: Activation::Tanh,
                ct: Default::default(),
                reference: false,
            };
            let peak_before = peak_rss_mib();
            let store = ParamStore::seeded(1);
            StackedRnn::seed_store(&cfg, &store, "rnn", DType::F32, &Device::Cpu)?;
            let ours = Ours(
                StackedRnn::new(&cfg, store.var_builder(DType::F32, &Device::Cpu).pp("rnn"))?,
                store,
            );
            let g_ours = random(&[a.batch, a.len, ours.0.output_size()], &mut rng)?;
            let (of, ot) = time(&ours, &x, &g_ours, &a)?;
            let peak = peak_rss_mib().zip(peak_before).map(|(p, b)| p - b);
            let theirs = {
                let vm = candle_nn::VarMap::new();
                let vb = candle_nn::VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
                match kind {
                    CellKind::Lstm => Some(Theirs(
                        CandleNn::Lstm(candle_nn::rnn::lstm(
                            a.input,
                            h,
                            LSTMConfig::default(),
                            vb,
                        )?),
                        vm,
                    )),
                    CellKind::Gru => Some(Theirs(
                        CandleNn::Gru(candle_nn::rnn::gru(a.input, h, GRUConfig::default(), vb)?),
                        vm,
                    )),
                    _ => None,
                }
            };
            let (tf, tt) = match &theirs {
                Some(t) => {
                    let (f, t) = time(t, &x, &g, &a)?;
                    (Some(f), Some(t))
                }
                None => (None, None),
            };
            // Matrix-product work of the gated cells: 2·B·T·(I+H)·gates·H forward; backward
            // about twice that. Not meaningful for the continuous-time cells.
            let flops = matches!(kind, CellKind::Srn | CellKind::Lstm | CellKind::Gru)
                .then(|| 2.0 * (a.batch * a.len * (a.input + h) * kind.gates() * h) as f64);
            for (pass, ours_ms, theirs_ms, f) in [
                ("train", ot, tt, flops.map(|f| 3.0 * f)),
                ("forward", of, tf, flops),
            ] {
                let (t, r) = match theirs_ms {
                    Some(t) => (format!("{t:.1}"), format!("{:.2}x", t / ours_ms)),
                    None => ("-".into(), "-".into()),
                };
                let gf = f
                    .map(|f| format!("{:.1}", f / (ours_ms * 1e6)))
                    .unwrap_or_else(|| "-".into());
                let mem = match (pass, peak) {
                    ("train", Some(p)) => format!("{p:.0}"),
                    _ => String::new(),
                };
                println!(
                    "{:<6} {:>6} {:>8} | {:>12.1} {:>12} {:>8} | {:>14} | {:>10}",
                    kind.name(),
                    h,
                    pass,
                    ours_ms,
                    t,
                    r,
                    gf,
                    mem
                );
            }
        }
    }
    println!("speed-up = candle-nn ms / remanence ms (above 1: we are faster)");
    println!("peak MiB = growth of the process's peak resident memory while timing our cell (sizes run in the order given)");
    Ok(())
}

/// The process's peak resident set size (VmHWM) in MiB, where the platform reports it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
