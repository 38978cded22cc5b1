//! Progress reporting for training: a bar on a terminal, a line every few epochs otherwise.
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use remanence_train::{EpochRecord, Observer};

pub struct Progress {
    bar: Option<ProgressBar>,
    epochs: usize,
    epoch: usize,
    last_loss: f64,
    last_metric: Option<(String, f64)>,
    seqs: u64,
    started: Instant,
}

impl Progress {
    pub fn new(total_sequences: u64, epochs: usize) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total_sequences);
            b.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b
        });
        Self {
            bar,
            epochs,
            epoch: 0,
            last_loss: f64::NAN,
            last_metric: None,
            seqs: 0,
            started: Instant::now(),
        }
    }

    fn message(&self) -> String {
        let rate = self.seqs as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let metric = match &self.last_metric {
            Some((n, v)) => format!(" | {n} {v:.4}"),
            None => String::new(),
        };
        format!(
            "epoch {}/{} | loss {:.4}{metric} | {rate:.0} seq/s",
            self.epoch, self.epochs, self.last_loss
        )
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, _batches: usize) {
        self.epoch = epoch;
        self.epochs = epochs;
    }
    fn batch_end(&mut self, loss: f64, sequences: usize) {
        self.last_loss = loss;
        self.seqs += sequences as u64;
        if let Some(b) = &self.bar {
            b.inc(sequences as u64);
            b.set_message(self.message());
        }
    }
    fn epoch_end(&mut self, r: &EpochRecord) {
        self.last_loss = r.loss;
        self.last_metric = Some((r.metric_name.clone(), r.metric));
        match &self.bar {
            Some(b) => b.set_message(self.message()),
            None => {
                if r.epoch == 1
                    || r.epoch % 10 == 0
                    || r.solved == Some(true)
                    || r.epoch == self.epochs
                {
                    eprintln!("{}", self.message());
                }
            }
        }
    }
}
