use std::path::PathBuf;

use anyhow::Result;
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
}

pub fn run(args: EvalArgs) -> Result<()> {
    with_deep_stack(move || {
        let r = super::load_run(&args.run)?;
        let task = build_task(&r.cfg.task)?;
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
        Ok(())
    })
}
