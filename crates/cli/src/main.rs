//! `remanence`: train, evaluate, sample, run and benchmark recurrent networks.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod music;
mod progress;
mod settings;

#[derive(Parser)]
#[command(
    name = "remanence",
    version,
    about = "Train and study recurrent networks on Candle tensors"
)]
struct Cli {
    /// Threads. Candle's own ops default to 1 (or $RAYON_NUM_THREADS): on small recurrent shapes
    /// one thread is faster than its spinning pool. The fused kernels default to every core (they
    /// split the batch once per sequence). Giving --threads sets both.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model (defaults: an LSTM on the embedded Reber grammar).
    Train(commands::train::TrainArgs),
    /// Re-evaluate a saved run on its task.
    Eval(commands::eval::EvalArgs),
    /// Generate strings from a trained grammar model and check them against the grammar.
    Sample(commands::sample::SampleArgs),
    /// Run a saved model on a tensor `x` (batch, time, features) read from a safetensors file.
    Infer(commands::infer::InferArgs),
    /// Time training steps and forward passes against candle-nn's LSTM/GRU.
    Bench(commands::bench::BenchArgs),
    /// List the data sets, where each is looked for and whether it is present; verify one.
    Data(commands::data::DataArgs),
    /// Learn a stream of experiences (a continual-learning scenario) with one method; writes the
    /// accuracy matrix and its summary.
    Continual(commands::continual::ContinualArgs),
    /// Probe a model, untrained (--cell …) or trained (--run RUN_DIR): memory capacity,
    /// echo-state property, distinguishability D(l, k), trajectory length; writes a JSON report
    /// and PNG pictures.
    Probe(commands::probe::ProbeArgs),
    /// Binary associative memories (Gripon–Berrou clique networks): store random messages,
    /// recall erased or noisy probes by sum-of-sum and sum-of-max, and the reference benchmark.
    Memory(commands::memory::MemoryArgs),
    /// Backward tuning (Viéville et al. 2017): estimate a random recurrent network's weights
    /// from the observed output of some of its units; writes the criterion per iteration.
    ReverseEngineer(commands::reverse::ReverseArgs),
}

/// Threads of the fused CPU kernels (`--threads`); `None`: every core.
pub static KERNEL_THREADS: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// The fused kernels' thread count to put in a model configuration.
pub fn kernel_threads() -> Option<usize> {
    KERNEL_THREADS.get().copied().flatten()
}

/// Where runs go unless `--runs-dir` says otherwise.
pub fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// Keeps freed memory in the process instead of handing it back to the kernel after every
/// training step. A step allocates and frees tens of megabytes of activations; with glibc's
/// defaults those come back as fresh pages, and the page faults that fill them cost more than the
/// fused LSTM's arithmetic (measured in docs/benchmarks.md). The peak memory is unchanged.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it runs before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // the largest glibc accepts
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let threads = cli
        .threads
        .map(|t| t.max(1).to_string())
        .or_else(|| std::env::var("RAYON_NUM_THREADS").ok())
        .unwrap_or_else(|| "1".into());
    // Before any Candle call reads them; nothing else runs yet.
    std::env::set_var("RAYON_NUM_THREADS", &threads);
    std::env::set_var("CANDLE_NUM_THREADS", &threads);
    // The fused kernels' threads travel in the model configuration (`RnnConfig::threads`);
    // REMANENCE_KERNEL_THREADS is read here once, for scripts that set it.
    let kernel_threads = cli.threads.map(|t| t.max(1)).or_else(|| {
        std::env::var("REMANENCE_KERNEL_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > 0)
    });
    KERNEL_THREADS
        .set(kernel_threads)
        .expect("set once, at start-up");
    let result = match cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Sample(a) => commands::sample::run(a),
        Command::Infer(a) => commands::infer::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Data(a) => commands::data::run(a),
        Command::Continual(a) => commands::continual::run(a),
        Command::Probe(a) => commands::probe::run(a),
        Command::Memory(a) => commands::memory::run(a),
        Command::ReverseEngineer(a) => commands::reverse::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    /// Clap's own consistency checks of every command and flag (ids, defaults, conflicts), which
    /// otherwise run only in debug builds when a command is parsed.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
