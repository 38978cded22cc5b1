use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use remanence_cells::SequenceModel;
use remanence_tasks::grammar::to_text;
use remanence_tasks::jsb::{JsbResolution, JsbTask, KEYS, LOWEST_PITCH};
use remanence_tasks::reber::{sample_string, NUM_SYMBOLS};
use remanence_tasks::soprano::{self, SopranoTask, Token, VOCAB};
use remanence_tasks::{TaskError, TaskKind};

use crate::music::{self, Note};

#[derive(Args)]
pub struct SampleArgs {
    /// The run folder of a model trained on a grammar task (reber, embedded-reber: strings) or
    /// on music (jsb-chorales, bach-soprano: MIDI files and piano-roll pictures).
    #[arg(long, value_name = "RUN_DIR")]
    run: PathBuf,
    /// Softmax temperature over the outputs (music: the Bernoulli keys' p = σ(z/T) for
    /// jsb-chorales, softmax(z/T) for bach-soprano); 0 takes the most likely output.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Number of strings (default 10) or of music samples (default 1).
    #[arg(short = 'n', long = "count")]
    n: Option<usize>,
    /// Longest string generated (grammars).
    #[arg(long, default_value_t = 100)]
    max_len: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Music: steps generated after the primer (default 16 bars: 64 quarter frames, 256 16ths).
    #[arg(long)]
    steps: Option<usize>,
    /// Music: the test chorale whose opening primes the model (0 = the first).
    #[arg(long, default_value_t = 0)]
    primer_chorale: usize,
    /// Music: steps of the primer (default one bar: 4 quarter frames, 16 16ths).
    #[arg(long)]
    primer_steps: Option<usize>,
    /// Music: folder for the .mid, .png (and soprano .txt) files (default: the run folder).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Music: the data set's folder, where the run's own is not found (primers come from it).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// Tempo of the written MIDI files.
const BPM: f64 = 100.0;

pub fn run(args: SampleArgs) -> Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!(
            "--temperature must be a non-negative number, got {}",
            args.temperature
        );
    }
    let r = super::load_run_with_data(&args.run, args.data.as_deref())?;
    let kind = r.cfg.task.kind;
    if matches!(kind, TaskKind::JsbChorales | TaskKind::BachSoprano) {
        return sample_music(&args, &r);
    }
    let music_flags = [
        ("steps", args.steps.is_some()),
        ("primer-chorale", args.primer_chorale != 0),
        ("primer-steps", args.primer_steps.is_some()),
        ("out", args.out.is_some()),
    ];
    if let Some((flag, _)) = music_flags.iter().find(|(_, given)| *given) {
        bail!("--{flag} applies to music runs (jsb-chorales, bach-soprano); this run's task is {kind}");
    }
    let Some(grammar) = kind.grammar() else {
        bail!("sample needs a model trained on a grammar task (reber, embedded-reber) or on music (jsb-chorales, bach-soprano); this run's task is {kind}");
    };
    let n = args.n.unwrap_or(10);
    let dtype = r.cfg.dtype()?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut good = 0;
    for _ in 0..n {
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
        "{good}/{n} strings are grammatical ({kind}, temperature {})",
        args.temperature
    );
    Ok(())
}

/// Runs the model one step at a time on its own outputs.
struct Stepper<'a> {
    model: &'a SequenceModel,
    state: remanence_cells::RnnState,
    dtype: DType,
    device: &'a Device,
}

impl Stepper<'_> {
    /// Feeds one input vector; returns the read-out (logits) in f64.
    fn step(&mut self, x: Vec<f32>) -> Result<Vec<f64>> {
        let n = x.len();
        let x = Tensor::from_vec(x, (1, n), self.device)?.to_dtype(self.dtype)?;
        let (y, s) = self.model.step(&x, &self.state)?;
        self.state = s;
        Ok(y.squeeze(0)?.to_dtype(DType::F64)?.to_vec1()?)
    }
}

/// Next token from logits at temperature `t` (0: the most likely).
fn draw_token(z: &[f64], t: f64, rng: &mut ChaCha8Rng) -> Result<u32> {
    if z.iter().any(|v| !v.is_finite()) {
        bail!("the model emitted a non-finite logit");
    }
    let best = (0..z.len()).fold(0, |b, i| if z[i] > z[b] { i } else { b });
    if t == 0.0 {
        return Ok(best as u32);
    }
    let w: Vec<f64> = z.iter().map(|v| ((v - z[best]) / t).exp()).collect();
    let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
    for (i, wi) in w.iter().enumerate() {
        if u < *wi {
            return Ok(i as u32);
        }
        u -= wi;
    }
    Ok(best as u32)
}

/// Next piano-roll frame from one logit per key: key on with p = σ(z/T) (T = 0: on iff z > 0).
fn draw_frame(z: &[f64], t: f64, rng: &mut ChaCha8Rng) -> Result<u128> {
    if z.iter().any(|v| !v.is_finite()) {
        bail!("the model emitted a non-finite logit");
    }
    let mut f = 0u128;
    for (k, &v) in z.iter().enumerate() {
        let on = if t == 0.0 {
            v > 0.0
        } else {
            rng.random::<f64>() < 1.0 / (1.0 + (-v / t).exp())
        };
        if on {
            f |= 1 << k;
        }
    }
    Ok(f)
}

fn sample_music(args: &SampleArgs, r: &super::LoadedRun) -> Result<()> {
    let kind = r.cfg.task.kind;
    let dir = remanence_tasks::datasets::locate("jsb-chorales", r.cfg.task.data_dir.as_deref())?;
    let soprano = kind == TaskKind::BachSoprano;
    let resolution = r.cfg.task.options.jsb_resolution;
    // Steps per quarter-note beat.
    let steps_per_beat: u32 = match (soprano, resolution) {
        (true, _) | (false, JsbResolution::Sixteenth) => 4,
        (false, JsbResolution::Eighth) => 2,
        (false, JsbResolution::Quarter) => 1,
    };
    let steps_per_bar = 4 * steps_per_beat as usize;
    let steps = args.steps.unwrap_or(16 * steps_per_bar);
    let primer_len = args.primer_steps.unwrap_or(steps_per_bar);
    if primer_len == 0 {
        bail!("--primer-steps must be at least 1");
    }
    let k = args.primer_chorale;
    // The primer as model inputs, and as tokens or frames.
    let primer: Vec<u128> = if soprano {
        let task = SopranoTask::new(&dir, 0, 0, r.cfg.task.options.transpose)?;
        let test = &task.data().test;
        let c = test.get(k).with_context(|| {
            format!(
                "--primer-chorale {k}: the test split has {} chorales",
                test.len()
            )
        })?;
        if primer_len > c.len() {
            bail!(
                "--primer-steps {primer_len}: test chorale {k} has {} steps",
                c.len()
            );
        }
        c[..primer_len].iter().map(|&t| t as u128).collect()
    } else {
        let task = JsbTask::new(&dir, resolution, 0, 0)?;
        let test = &task.data().test;
        let c = test.get(k).with_context(|| {
            format!(
                "--primer-chorale {k}: the test split has {} chorales",
                test.len()
            )
        })?;
        if primer_len > c.frames.len() {
            bail!(
                "--primer-steps {primer_len}: test chorale {k} has {} frames",
                c.frames.len()
            );
        }
        c.frames[..primer_len].to_vec()
    };
    let out = args.out.clone().unwrap_or_else(|| args.run.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let dtype = r.cfg.dtype()?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let (input, step_name) = if soprano {
        (VOCAB, "16th")
    } else {
        (KEYS, resolution.name())
    };
    let encode = |v: u128| -> Vec<f32> {
        let mut x = vec![0f32; input];
        if soprano {
            x[v as usize] = 1.0;
        } else {
            for (k, xk) in x.iter_mut().enumerate() {
                *xk = (v >> k & 1) as f32;
            }
        }
        x
    };
    for i in 0..args.n.unwrap_or(1) {
        let mut stepper = Stepper {
            model: &r.model,
            state: r.model.rnn_zero_state(1, dtype, &r.device)?,
            dtype,
            device: &r.device,
        };
        let mut seq = primer.clone();
        let mut z = Vec::new();
        for &v in &primer {
            z = stepper.step(encode(v))?;
        }
        for _ in 0..steps {
            let v = if soprano {
                draw_token(&z, args.temperature, &mut rng)? as u128
            } else {
                draw_frame(&z, args.temperature, &mut rng)?
            };
            seq.push(v);
            z = stepper.step(encode(v))?;
        }
        let notes: Vec<Note> = if soprano {
            let tokens: Vec<u32> = seq.iter().map(|&t| t as u32).collect();
            music::notes_from_tokens(&tokens)
        } else {
            music::notes_from_roll(&seq, LOWEST_PITCH as u8)
        };
        let stem = out.join(format!("{kind}-sample-{i}"));
        let path = |ext: &str| stem.with_extension(ext);
        music::write_midi(&path("mid"), &notes, steps_per_beat, BPM)?;
        music::write_roll_png(
            &path("png"),
            &notes,
            seq.len() as u32,
            steps_per_bar as u32,
            primer_len as u32,
        )?;
        let mut written = vec![path("mid"), path("png")];
        if soprano {
            let mut text = music::score_text(&notes, step_name);
            text.push_str("# tokens: ");
            let names: Vec<String> = seq
                .iter()
                .map(|&t| Token::from_index(t as u32).name())
                .collect();
            text.push_str(&names.join(" "));
            text.push('\n');
            remanence_cells::io::write_atomic(&path("txt"), text.as_bytes())
                .with_context(|| format!("cannot write {}", path("txt").display()))?;
            written.push(path("txt"));
        }
        describe(i, &notes, &seq, primer_len, soprano, &written);
    }
    println!(
        "{kind}: primer {primer_len} {step_name} step{} of test chorale {k}, then {steps} sampled at \
         temperature {}; MIDI at {BPM} bpm, {steps_per_beat} step{} per beat",
        if primer_len == 1 { "" } else { "s" },
        args.temperature,
        if steps_per_beat == 1 { "" } else { "s" },
    );
    Ok(())
}

/// One line per sample: its notes, range and files.
fn describe(
    i: usize,
    notes: &[Note],
    seq: &[u128],
    primer: usize,
    soprano: bool,
    files: &[PathBuf],
) {
    let lo = notes.iter().map(|n| n.pitch).min();
    let hi = notes.iter().map(|n| n.pitch).max();
    let range = match (lo, hi) {
        (Some(l), Some(h)) => format!(
            "{}..{}",
            soprano::pitch_name(l as i64),
            soprano::pitch_name(h as i64)
        ),
        _ => "silent".into(),
    };
    let sampled = &seq[primer..];
    let extra = if soprano {
        let rests = sampled
            .iter()
            .filter(|&&t| t as u32 == soprano::REST)
            .count();
        let onsets = sampled
            .iter()
            .filter(|&&t| matches!(Token::from_index(t as u32), Token::Note(_)))
            .count();
        format!("{onsets} sampled onsets, {rests} sampled rest steps")
    } else {
        let voices: f64 = sampled.iter().map(|f| f.count_ones() as f64).sum::<f64>()
            / sampled.len().max(1) as f64;
        format!("{voices:.2} keys on per sampled frame")
    };
    let names: Vec<String> = files.iter().map(|p| display(p)).collect();
    println!(
        "sample {i}: {} notes, range {range}, {extra} → {}",
        notes.len(),
        names.join(", ")
    );
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
