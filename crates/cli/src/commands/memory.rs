//! `remanence memory`: binary associative memories (crates/memory), Gripon–Berrou clique
//! networks on random messages.
//!
//! - `store`: draws M random messages (c clusters of l fanals, or sparse: c of χ clusters) from
//!   `--seed`, stores them, and writes the network (`network.bin`), the messages
//!   (`messages.bin`) and a description (`store.json`) to a new folder `--out`, built under a
//!   temporary name beside it and renamed into place.
//! - `recall`: loads such a folder, draws probes from the stored messages (`--erase E` clusters
//!   erased, `--noise N` given a wrong symbol; guided by the message's clusters in a sparse
//!   network), recalls them by sum-of-sum and sum-of-max, prints the error rates and writes
//!   `recall.json`.
//! - `bench`: the reference sheet's sweep (c = 8, l = 256, 4 erased, 4 iterations, γ = 1,
//!   M = 5000 … 30000), the sparse setting (χ = 100, c = 12, l = 64, guided), and the
//!   throughput of the bit-packed network against the byte-per-connection one; prints the tables
//!   and writes `results.json` to `--out`. `--device cuda` (a build with `--features cuda`) also
//!   recalls the throughput probes with the retrieval kernel (`remanence_memory::cuda`) on GPU 0.
//! - `classify`: the feature bridge (issue #13): a trained run's recurrent features, product
//!   quantised, feed a binary bipartite class memory that learns classes one at a time, beside
//!   the nearest class mean, a fine-tuned and a jointly trained softmax read-out
//!   (`memory_classify.rs`).
//!
//! Retrieval runs over `--threads` threads (default 1); the results do not depend on it.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use remanence_memory::density::{self, Predicted};
use remanence_memory::experiments::{
    self, SweepReport, SweepSettings, ThroughputReport, ThroughputSettings,
};
use remanence_memory::{ErasedStart, GbNetwork, MessageSet, RecallSettings, Rule};
use serde::{Deserialize, Serialize};

#[path = "memory_classify.rs"]
mod memory_classify;

#[derive(Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    command: MemoryCommand,
}

#[derive(Subcommand)]
enum MemoryCommand {
    /// Store M random messages in a Gripon–Berrou network and write it (with the messages) to a
    /// new folder.
    Store(StoreArgs),
    /// Recall probes of the stored messages (erased or noisy clusters) by sum-of-sum and
    /// sum-of-max; print and write the error rates.
    Recall(RecallArgs),
    /// The reference sweep (c = 8, l = 256, 4 erased), the sparse setting, and the throughput
    /// of the bit-packed network against a byte-per-connection one; writes results.json.
    Bench(BenchArgs),
    /// Classes added one at a time to a binary bipartite memory over a trained run's recurrent
    /// features (product quantised), against the nearest class mean, a softmax read-out
    /// fine-tuned on each new class and one trained on all classes; writes classify.json and
    /// classify.png.
    Classify(memory_classify::ClassifyArgs),
}

#[derive(Args)]
struct StoreArgs {
    /// χ, the clusters of the network.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = positive)]
    clusters: usize,
    /// l, the fanals of each cluster.
    #[arg(long, default_value_t = 256, allow_negative_numbers = true, value_parser = positive)]
    fanals: usize,
    /// c, the clusters a message occupies (sparse messages when below --clusters; default: all).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    active: Option<usize>,
    /// M, the messages stored.
    #[arg(long, default_value_t = 15_000, allow_negative_numbers = true, value_parser = positive)]
    messages: usize,
    /// Seed of the messages.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = seed)]
    seed: u64,
    /// The folder to create (it must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Start {
    /// Erased clusters start with no active fanal (the reference code's erasure).
    Silent,
    /// Every fanal of an erased cluster starts active.
    AllActive,
}

#[derive(Args)]
struct RecallArgs {
    /// A folder written by `remanence memory store`.
    #[arg(long, value_name = "DIR")]
    net: PathBuf,
    /// Clusters erased in each probe (default: half the clusters a message occupies).
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    erase: Option<usize>,
    /// Clusters given a wrong symbol in each probe.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = count)]
    noise: usize,
    /// Probes, drawn uniformly from the stored messages.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = positive)]
    probes: usize,
    #[arg(long, default_value_t = 4, allow_negative_numbers = true, value_parser = positive)]
    iterations: usize,
    /// γ, the memory effect of sum-of-sum.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = gamma)]
    gamma: u32,
    /// How erased clusters start.
    #[arg(long, value_enum, default_value = "silent")]
    erased_start: Start,
    /// Recall sparse messages without their clusters (blind; default: guided by them).
    #[arg(long)]
    blind: bool,
    /// Seed of the probes.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = seed)]
    seed: u64,
    /// Where recall.json goes (default: the --net folder).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Message counts of the reference sweep, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,15000,20000,25000,30000", allow_negative_numbers = true, value_parser = positive)]
    messages: Vec<usize>,
    /// Probes per row of the reference sweep.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true, value_parser = positive)]
    probes: usize,
    /// Probes per row of the sparse sweep (0: skip it).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = count)]
    sparse_probes: usize,
    /// Messages stored for the throughput measurement (0: skip it).
    #[arg(long, default_value_t = 15_000, allow_negative_numbers = true, value_parser = count)]
    throughput_messages: usize,
    /// Probes recalled by the bit-packed network in the throughput measurement.
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true, value_parser = positive)]
    throughput_probes: usize,
    /// Probes recalled by the byte-per-connection network (much slower).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = positive)]
    dense_probes: usize,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = seed)]
    seed: u64,
    /// Output folder (created if missing); results.json is written there.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Print the report as JSON instead of the tables.
    #[arg(long)]
    json: bool,
    /// `cuda`: also recall the throughput probes with the CUDA retrieval kernel on GPU 0 (a build
    /// with `--features cuda`): its rates, and whether its states equal the CPU's.
    #[arg(long, value_enum, default_value_t = BenchDevice::Cpu)]
    device: BenchDevice,
}

/// Where `memory bench` recalls besides the CPU.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchDevice {
    Cpu,
    Cuda,
}

/// A whole number ≥ 1, with an error that says so (also for negative numbers).
fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be a positive whole number, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// A whole number ≥ 0.
fn count(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if n >= 0 => usize::try_from(n).map_err(|_| format!("{n} is too large")),
        Ok(n) => Err(format!("must be a whole number ≥ 0, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// γ: a whole number from 0 to 1000.
fn gamma(s: &str) -> std::result::Result<u32, String> {
    match count(s)? {
        n if n <= 1000 => Ok(n as u32),
        n => Err(format!("must be at most 1000, got {n}")),
    }
}

/// A seed: a whole number from 0 to 2⁶³ − 1.
fn seed(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<i128>() {
        Ok(n) if (0..=i64::MAX as i128).contains(&n) => Ok(n as u64),
        Ok(n) => Err(format!("must be between 0 and 2^63 - 1, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

pub fn run(args: MemoryArgs) -> Result<()> {
    match args.command {
        MemoryCommand::Store(a) => store(a),
        MemoryCommand::Recall(a) => recall(a),
        MemoryCommand::Bench(a) => bench(a),
        MemoryCommand::Classify(a) => memory_classify::run(a),
    }
}

/// Threads of retrieval: `--threads`, else 1.
fn threads() -> usize {
    crate::kernel_threads().unwrap_or(1).max(1)
}

/// A progress bar of `total` `unit` on a terminal; nothing otherwise.
fn bar(total: u64, unit: &str, what: &str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(&format!(
                "{{elapsed_precise}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}"
            ))
            .expect("valid template")
            .progress_chars("=> "),
        );
        b.set_message(what.to_string());
        b
    })
}

const NETWORK: &str = "network.bin";
const MESSAGES: &str = "messages.bin";
const MANIFEST: &str = "store.json";
const RECALL: &str = "recall.json";
const RESULTS: &str = "results.json";

/// What `store.json` holds.
#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    clusters: usize,
    active: usize,
    fanals: usize,
    messages: usize,
    seed: u64,
    measured_density: f64,
    predicted: Predicted,
}

fn store(a: StoreArgs) -> Result<()> {
    let active = a.active.unwrap_or(a.clusters);
    // Every setting is checked (by building the empty network) before anything is written.
    let mut net = GbNetwork::sparse(a.clusters, active, a.fanals)
        .context("--clusters, --active or --fanals")?;
    let out = &a.out;
    if out.exists() {
        let empty = out.is_dir()
            && std::fs::read_dir(out)
                .with_context(|| format!("cannot read {}", out.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not an empty folder; nothing was overwritten (choose \
                 another --out)",
                out.display()
            );
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let messages = MessageSet::random_sparse(a.clusters, active, a.fanals, a.messages, &mut rng)?;
    let pb = bar(a.messages as u64, "messages", "storing");
    for i in 0..messages.len() {
        net.store_sparse(&messages.get(i))?;
        if let Some(b) = &pb {
            if i % 1000 == 999 {
                b.set_position(i as u64 + 1);
            }
        }
    }
    if let Some(b) = pb {
        b.finish_and_clear();
    }
    let manifest = Manifest {
        format: 1,
        clusters: a.clusters,
        active,
        fanals: a.fanals,
        messages: a.messages,
        seed: a.seed,
        measured_density: net.density(),
        predicted: density::predicted(a.clusters, active, a.fanals, a.messages as u64, 0),
    };
    // Built under a temporary name beside --out, then renamed into place.
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no folder name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| -> Result<()> {
        std::fs::create_dir(&tmp)
            .with_context(|| format!("cannot create the folder {}", tmp.display()))?;
        write(&tmp.join(NETWORK), &net.to_bytes())?;
        write(&tmp.join(MESSAGES), &messages.to_bytes())?;
        let json = serde_json::to_string_pretty(&manifest)?;
        write(&tmp.join(MANIFEST), format!("{json}\n").as_bytes())?;
        std::fs::rename(&tmp, out)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    written?;
    println!(
        "stored {} messages ({} of {} clusters of {} fanals) in {}: density {:.4} (formula {:.4}), \
         {:.3} bits per connection",
        a.messages,
        active,
        a.clusters,
        a.fanals,
        out.display(),
        manifest.measured_density,
        manifest.predicted.density,
        manifest.predicted.bits_per_connection
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    remanence_cells::io::write_atomic(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read(dir: &Path, file: &str) -> Result<Vec<u8>> {
    let p = dir.join(file);
    std::fs::read(&p).with_context(|| {
        format!(
            "cannot read {} (a folder written by `remanence memory store` holds {NETWORK}, \
             {MESSAGES} and {MANIFEST})",
            p.display()
        )
    })
}

/// A stored folder: its description, network and messages, checked against one another.
fn load(dir: &Path) -> Result<(Manifest, GbNetwork, MessageSet)> {
    if !dir.is_dir() {
        bail!("{}: no such folder", dir.display());
    }
    let manifest: Manifest = serde_json::from_slice(&read(dir, MANIFEST)?)
        .with_context(|| format!("{}: not a store description", dir.join(MANIFEST).display()))?;
    let net = GbNetwork::from_bytes(&read(dir, NETWORK)?)
        .with_context(|| format!("{}", dir.join(NETWORK).display()))?;
    let messages = MessageSet::from_bytes(&read(dir, MESSAGES)?)
        .with_context(|| format!("{}", dir.join(MESSAGES).display()))?;
    let shape = |c: usize, a: usize, l: usize| (c, a, l);
    let want = shape(manifest.clusters, manifest.active, manifest.fanals);
    if shape(net.clusters(), net.active(), net.fanals()) != want
        || shape(messages.clusters(), messages.active(), messages.fanals()) != want
        || messages.len() != manifest.messages
        || net.stored() != manifest.messages as u64
    {
        bail!(
            "{}: the network, the messages and {MANIFEST} disagree (written by different runs?)",
            dir.display()
        );
    }
    if messages.is_empty() {
        bail!("{}: no messages stored", dir.display());
    }
    Ok((manifest, net, messages))
}

#[derive(Serialize)]
struct RuleReport {
    rule: Rule,
    failures: usize,
    error: f64,
    stderr: f64,
}

#[derive(Serialize)]
struct RecallReport {
    network: PathBuf,
    clusters: usize,
    active: usize,
    fanals: usize,
    messages: usize,
    measured_density: f64,
    predicted: Predicted,
    erase: usize,
    noise: usize,
    guided: bool,
    iterations: usize,
    erased_start: ErasedStart,
    probes: usize,
    seed: u64,
    threads: usize,
    results: Vec<RuleReport>,
}

fn recall(a: RecallArgs) -> Result<()> {
    let (manifest, net, messages) = load(&a.net)?;
    let erase = a.erase.unwrap_or(net.active() / 2);
    if erase + a.noise > net.active() {
        bail!(
            "--erase {erase} and --noise {} make {} clusters, but a message occupies {}",
            a.noise,
            erase + a.noise,
            net.active()
        );
    }
    if erase == 0 && a.noise == 0 {
        bail!("--erase 0 and --noise 0: the probes would be the messages themselves");
    }
    let out = a.out.clone().unwrap_or_else(|| a.net.clone());
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let guided = net.is_sparse() && !a.blind;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let (idx, cues) = experiments::draw_probes(
        &messages,
        messages.len(),
        a.probes,
        erase,
        a.noise,
        guided,
        &mut rng,
    )?;
    let erased_start = match a.erased_start {
        Start::Silent => ErasedStart::Silent,
        Start::AllActive => ErasedStart::AllActive,
    };
    let threads = threads();
    let rules = [Rule::SumOfSum { gamma: a.gamma }, Rule::SumOfMax];
    let pb = bar(2 * a.probes as u64, "probes", "recall");
    let mut results = Vec::new();
    for rule in rules {
        let settings = RecallSettings {
            rule,
            iterations: a.iterations,
            erased: erased_start,
        };
        let mut failures = 0;
        for (ids, cs) in idx.chunks(1000).zip(cues.chunks(1000)) {
            failures += experiments::failures(&net, &messages, ids, cs, &settings, threads)?;
            if let Some(b) = &pb {
                b.inc(cs.len() as u64);
            }
        }
        let p = failures as f64 / a.probes as f64;
        results.push(RuleReport {
            rule,
            failures,
            error: p,
            stderr: (p * (1.0 - p) / a.probes as f64).sqrt(),
        });
    }
    if let Some(b) = pb {
        b.finish_and_clear();
    }
    let report = RecallReport {
        network: a.net.clone(),
        clusters: net.clusters(),
        active: net.active(),
        fanals: net.fanals(),
        messages: manifest.messages,
        measured_density: manifest.measured_density,
        predicted: density::predicted(
            net.clusters(),
            net.active(),
            net.fanals(),
            manifest.messages as u64,
            erase,
        ),
        erase,
        noise: a.noise,
        guided,
        iterations: a.iterations,
        erased_start,
        probes: a.probes,
        seed: a.seed,
        threads,
        results,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let path = out.join(RECALL);
    write(&path, format!("{json}\n").as_bytes())?;
    if a.json {
        println!("{json}");
    } else {
        println!(
            "{} messages, {} of {} clusters of {} fanals, density {:.4}; {} probes, {erase} erased, \
             {} noisy{}, {} iterations",
            report.messages,
            report.active,
            report.clusters,
            report.fanals,
            report.measured_density,
            report.probes,
            report.noise,
            if guided { ", guided" } else { "" },
            report.iterations
        );
        if a.noise == 0 && erased_start == ErasedStart::Silent {
            println!(
                "one-iteration estimate P_e = {:.4}",
                report.predicted.one_iteration_error
            );
        }
        for r in &report.results {
            println!(
                "{:>4} error {:.4} ± {:.4} ({} of {})",
                r.rule.name(),
                r.error,
                r.stderr,
                r.failures,
                report.probes
            );
        }
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct BenchReport {
    threads: usize,
    reference: SweepReport,
    sparse: Option<SweepReport>,
    throughput: Option<ThroughputReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cuda: Option<CudaThroughput>,
}

/// The CUDA kernel on the throughput measurement's probes (`--device cuda`).
#[derive(Serialize)]
struct CudaThroughput {
    probes: usize,
    /// Retrievals per second, end to end (cues up, states back; W already on the device).
    recall_sos_per_s: f64,
    recall_som_per_s: f64,
    /// Whether the kernel's final states equal `recall_batch`'s on every probe, both rules.
    identical: bool,
}

/// The refusal of `--device cuda` by a build without the `cuda` feature.
const NO_CUDA: &str = "--device cuda: this build has no CUDA support; rebuild with \
                       `--features cuda` (nvcc from NVCC, CUDA_HOME or PATH; \
                       scripts/cuda_toolchain.sh installs one)";

#[cfg(not(feature = "cuda"))]
fn cuda_throughput(_: &ThroughputSettings) -> Result<CudaThroughput> {
    bail!(NO_CUDA)
}

/// The throughput measurement's network and probes (same seed, same draws) recalled by the CUDA
/// kernel, timed, and compared with the CPU's states.
#[cfg(feature = "cuda")]
fn cuda_throughput(s: &ThroughputSettings) -> Result<CudaThroughput> {
    use remanence_memory::cuda::CudaGbNetwork;
    use std::time::Instant;
    let device = candle_core::Device::new_cuda(0).context("opening CUDA device 0")?;
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let messages = MessageSet::random(s.clusters, s.fanals, s.messages, &mut rng)?;
    let mut net = GbNetwork::new(s.clusters, s.fanals)?;
    net.store_all(&messages)?;
    let mut prng = ChaCha8Rng::seed_from_u64(s.seed);
    prng.set_stream(1);
    let (_, cues) = experiments::draw_probes(
        &messages, s.messages, s.probes, s.erased, 0, false, &mut prng,
    )?;
    let gpu = CudaGbNetwork::new(device.as_cuda_device()?, &net)?;
    let (mut rates, mut identical) = (Vec::new(), true);
    for settings in [
        RecallSettings::sos(s.gamma, s.iterations),
        RecallSettings::som(s.iterations),
    ] {
        // Loads the PTX module before the clock starts.
        gpu.recall_batch(&cues[..1], &settings)?;
        let t = Instant::now();
        let states = gpu.recall_batch(&cues, &settings)?;
        rates.push(cues.len() as f64 / t.elapsed().as_secs_f64().max(1e-12));
        let cpu = net.recall_batch(&cues, &settings, s.threads)?;
        identical &= states.len() == cpu.len()
            && states
                .iter()
                .zip(&cpu)
                .all(|(g, c)| g.as_slice() == c.words());
    }
    Ok(CudaThroughput {
        probes: cues.len(),
        recall_sos_per_s: rates[0],
        recall_som_per_s: rates[1],
        identical,
    })
}

fn print_sweep(title: &str, r: &SweepReport) {
    println!("{title}");
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>6} {:>15} {:>15}",
        "M", "d meas.", "d formula", "P_e(1 it)", "B/Q", "SoS error", "SoM error"
    );
    for row in &r.rows {
        println!(
            "{:>8} {:>9.4} {:>9.4} {:>9.3} {:>6.2} {:>7.4} ± {:.4} {:>7.4} ± {:.4}",
            row.messages,
            row.measured_density,
            row.predicted.density,
            row.predicted.one_iteration_error,
            row.predicted.bits_per_connection,
            row.sos.error,
            row.sos.stderr,
            row.som.error,
            row.som.stderr
        );
    }
}

fn bench(a: BenchArgs) -> Result<()> {
    let threads = threads();
    let messages: Vec<u64> = a.messages.iter().map(|&m| m as u64).collect();
    let reference = SweepSettings {
        messages,
        probes: a.probes,
        seed: a.seed,
        threads,
        ..SweepSettings::reference()
    };
    let sparse = (a.sparse_probes > 0).then(|| SweepSettings {
        probes: a.sparse_probes,
        seed: a.seed,
        threads,
        ..SweepSettings::sparse_reference()
    });
    let throughput = (a.throughput_messages > 0).then(|| ThroughputSettings {
        messages: a.throughput_messages,
        probes: a.throughput_probes,
        dense_probes: a.dense_probes,
        seed: a.seed,
        threads,
        ..ThroughputSettings::reference()
    });
    if let Some(m) = a.messages.windows(2).find(|w| w[0] >= w[1]) {
        bail!("--messages must be ascending: {} then {}", m[0], m[1]);
    }
    if a.device == BenchDevice::Cuda {
        // Refused before the sweeps run.
        if !remanence_memory::cuda::CUDA_ENABLED {
            bail!(NO_CUDA);
        }
        if throughput.is_none() {
            bail!(
                "--device cuda measures the throughput: --throughput-messages must be at least 1"
            );
        }
    }
    let cuda_settings = throughput.clone().filter(|_| a.device == BenchDevice::Cuda);
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create the output folder {}", a.out.display()))?;
    let rows = reference.messages.len() + sparse.as_ref().map_or(0, |s| s.messages.len());
    let pb = bar(rows as u64, "rows", "sweep");
    let tick = |_: &experiments::SweepRow| {
        if let Some(b) = &pb {
            b.inc(1);
        }
    };
    let reference = experiments::sweep(&reference, tick).context("the reference sweep")?;
    let sparse = sparse
        .map(|s| experiments::sweep(&s, tick).context("the sparse sweep"))
        .transpose()?;
    if let Some(b) = &pb {
        b.set_message("throughput");
    }
    let throughput = throughput
        .map(|t| experiments::throughput(&t).context("the throughput measurement"))
        .transpose()?;
    let cuda = cuda_settings
        .map(|t| cuda_throughput(&t).context("the CUDA kernel's throughput"))
        .transpose()?;
    if let Some(b) = pb {
        b.finish_and_clear();
    }
    let report = BenchReport {
        threads,
        reference,
        sparse,
        throughput,
        cuda,
    };
    let json = serde_json::to_string_pretty(&report)?;
    let path = a.out.join(RESULTS);
    write(&path, format!("{json}\n").as_bytes())?;
    if a.json {
        println!("{json}");
        return Ok(());
    }
    let s = &report.reference.settings;
    print_sweep(
        &format!(
            "GB network, c = {}, l = {}, {} erased, {} iterations, γ = {}, {} probes:",
            s.active, s.fanals, s.erased, s.iterations, s.gamma, s.probes
        ),
        &report.reference,
    );
    if let Some(sp) = &report.sparse {
        let s = &sp.settings;
        print_sweep(
            &format!(
                "\nsparse GB network, χ = {}, c = {}, l = {}, {} erased, guided, {} probes:",
                s.clusters, s.active, s.fanals, s.erased, s.probes
            ),
            sp,
        );
    }
    if let Some(t) = &report.throughput {
        let s = &t.settings;
        println!(
            "\nthroughput, c = {}, l = {}, M = {}, {} erased, {} iterations ({} probes bit-packed, \
             {} dense):",
            s.clusters, s.fanals, s.messages, s.erased, s.iterations, s.probes, s.dense_probes
        );
        println!(
            "{:<28} {:>14} {:>14} {:>9}",
            "", "bit-packed/s", "dense/s", "ratio"
        );
        for (what, p, d) in [
            ("messages stored", t.store_packed_per_s, t.store_dense_per_s),
            (
                "SoS retrievals",
                t.recall_sos_packed_per_s,
                t.recall_sos_dense_per_s,
            ),
            (
                "SoM retrievals",
                t.recall_som_packed_per_s,
                t.recall_som_dense_per_s,
            ),
        ] {
            println!("{what:<28} {p:>14.0} {d:>14.1} {:>9.1}", p / d);
        }
        println!(
            "SoS retrievals, {} thread{}: {:.0}/s; bit-packed and dense states {}",
            s.threads,
            if s.threads == 1 { "" } else { "s" },
            t.recall_sos_batch_per_s,
            if t.identical { "identical" } else { "DIFFER" }
        );
    }
    if let Some(c) = &report.cuda {
        println!(
            "CUDA kernel, {} probes: SoS {:.0}/s, SoM {:.0}/s; states {} the CPU's",
            c.probes,
            c.recall_sos_per_s,
            c.recall_som_per_s,
            if c.identical {
                "identical to"
            } else {
                "DIFFER from"
            }
        );
    }
    println!("wrote {}", path.display());
    Ok(())
}
