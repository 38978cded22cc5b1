use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use remanence_tasks::{build_task, moving_mnist, Split, TaskKind};
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
    /// Evaluate the weights of the best-validation epoch (`best.safetensors`) instead of the
    /// last epoch's.
    #[arg(long)]
    best: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    with_deep_stack(move || {
        let weights = if args.best {
            remanence_train::run_dir::BEST
        } else {
            remanence_train::run_dir::MODEL
        };
        let r = super::load_run_weights(&args.run, args.data.as_deref(), weights)?;
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
        if r.cfg.task.kind == TaskKind::MovingMnist {
            // The first test sequence: true frames 11–20 above the model's forecast.
            let batch = task.batch(Split::Test, &[0], r.cfg.dtype()?, &r.device)?;
            let (y, _) = r.model.forward(&batch.x, None, batch.dt.as_ref())?;
            let (truth, predicted) = moving_mnist::predicted_frames(&batch, &y, 0)?;
            let path = args.run.join("prediction.png");
            let png = moving_mnist::strip_png_bytes(&truth, &predicted)?;
            remanence_cells::io::write_atomic(&path, &png)?;
            eprintln!("wrote {}", path.display());
        }
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
