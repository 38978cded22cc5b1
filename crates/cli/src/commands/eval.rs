use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use remanence_tasks::build_task;
use remanence_train::stack::with_deep_stack;
use remanence_train::trainer::evaluate;

#[derive(Args)]
pub struct EvalArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Print the evaluation as JSON.
    #[arg(long)]
    json: bool,
    /// Folder of the data set, replacing the one stored in the run (a run moved elsewhere).
    #[arg(long)]
    data: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    with_deep_stack(move || {
        let r = super::load_run_with_data(&args.run, args.data.as_deref())?;
        let task = build_task(&r.cfg.task)?;
        for w in task.warnings() {
            eprintln!("warning: {w}");
        }
        super::check_task_statistics(
            &remanence_train::RunDir::open(&args.run)?,
            &task.fitted_statistics(),
        )?;
        let eval = evaluate(
            &r.model,
            task.as_ref(),
            r.cfg.train.eval_batch_size,
            &r.device,
            r.cfg.dtype()?,
        )?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&eval)?);
        } else {
            println!("{}", super::describe(&r.cfg, r.store.num_parameters()));
            println!("{}", eval.summary);
            for (k, v) in &eval.values {
                println!("  {k}: {v:.6}");
            }
        }
        if let Some(n) = eval.values.get("non_finite_sequences") {
            bail!(
                "the model in {} produces non-finite outputs (NaN or ±inf) on {n} evaluated \
                 sequences",
                args.run.display()
            );
        }
        Ok(())
    })
}
