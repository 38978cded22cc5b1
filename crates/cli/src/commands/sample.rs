use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Tensor;
use clap::Args;
use rand::SeedableRng;
use remanence_tasks::grammar::to_text;
use remanence_tasks::reber::{sample_string, NUM_SYMBOLS};
use remanence_tasks::TaskError;

#[derive(Args)]
pub struct SampleArgs {
    /// The run folder of a model trained on a grammar task.
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Softmax temperature over the outputs; 0 takes the most active output.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Number of strings.
    #[arg(short = 'n', long = "count", default_value_t = 10)]
    n: usize,
    /// Longest string generated.
    #[arg(long, default_value_t = 100)]
    max_len: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: SampleArgs) -> Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!(
            "--temperature must be a non-negative number, got {}",
            args.temperature
        );
    }
    let r = super::load_run(&args.run)?;
    let Some(grammar) = r.cfg.task.kind.grammar() else {
        bail!("sample needs a model trained on a grammar task (reber, embedded-reber); this run's task is {}", r.cfg.task.kind);
    };
    let dtype = r.cfg.dtype()?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let mut good = 0;
    for _ in 0..args.n {
        let mut state = r.model.rnn_zero_state(1, dtype, &r.device)?;
        let mut step = |sym: u8| -> remanence_tasks::Result<Vec<f32>> {
            let mut x = vec![0f32; NUM_SYMBOLS];
            x[sym as usize] = 1.0;
            let x = Tensor::from_vec(x, (1, NUM_SYMBOLS), &r.device)?.to_dtype(dtype)?;
            let (y, s) = r
                .model
                .step(&x, &state)
                .map_err(|e| TaskError::Model(Box::new(e)))?;
            state = s;
            Ok(y.squeeze(0)?.to_dtype(candle_core::DType::F32)?.to_vec1()?)
        };
        let s = sample_string(grammar, args.temperature, args.max_len, &mut rng, &mut step)?;
        let ok = grammar.accepts(&s);
        good += ok as usize;
        println!("{} {}", if ok { "ok " } else { "BAD" }, to_text(&s));
    }
    println!(
        "{good}/{} strings are grammatical ({}, temperature {})",
        args.n, r.cfg.task.kind, args.temperature
    );
    Ok(())
}
