use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use remanence_cells::{io, RnnState};
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::count_non_finite_rows;

#[derive(Args)]
pub struct InferArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// safetensors file with `x` (batch, time, features) and optionally `h0`, `c0`
    /// (layers, batch, hidden) and `dt` (batch, time).
    #[arg(long)]
    input: PathBuf,
    /// Where to write `y` (batch, time, outputs), `hidden` (batch, time, hidden), `h_n` and `c_n`.
    #[arg(long)]
    output: PathBuf,
}

pub fn run(args: InferArgs) -> Result<()> {
    with_deep_stack(move || {
        let r = super::load_run(&args.run)?;
        let dtype = r.cfg.dtype()?;
        let (mut t, _) = io::read(&args.input, &r.device)?;
        let input = args.input.display().to_string();
        let x = io::take(&mut t, "x", &args.input)?.to_dtype(dtype)?;
        let feats = r.cfg.model.input_size();
        if x.rank() != 3 || x.dim(2)? != feats {
            bail!(
                "{input}: tensor `x` has shape {:?}; the model expects (batch, time, {feats})",
                x.dims()
            );
        }
        let h0 = t.remove("h0").map(|h| h.to_dtype(dtype)).transpose()?;
        let c0 = t.remove("c0").map(|c| c.to_dtype(dtype)).transpose()?;
        let dt = t.remove("dt").map(|d| d.to_dtype(dtype)).transpose()?;
        let state = match (h0, c0) {
            (Some(h), c) => Some(RnnState { h, c }),
            (None, None) => None,
            (None, Some(_)) => bail!("{input}: `c0` given without `h0`"),
        };
        let (y, hidden, last) = r
            .model
            .forward_full(&x, state.as_ref(), dt.as_ref())
            .with_context(|| format!("running the model on {input}"))?;
        let bad = count_non_finite_rows(&y)?;
        if bad > 0 {
            bail!(
                "the model in {} produced non-finite outputs (NaN or ±inf) for {bad} of the {} \
                 sequences in {input}; nothing was written to {}",
                args.run.display(),
                y.dim(0)?,
                args.output.display()
            );
        }
        let mut out = vec![
            ("y".to_string(), y),
            ("hidden".to_string(), hidden),
            ("h_n".to_string(), last.h),
        ];
        if let Some(c) = last.c {
            out.push(("c_n".to_string(), c));
        }
        io::write(&args.output, &out, None)?;
        println!(
            "wrote y {:?}, hidden, h_n{} to {}",
            out[0].1.dims(),
            if out.len() == 4 { ", c_n" } else { "" },
            args.output.display()
        );
        Ok(())
    })
}
