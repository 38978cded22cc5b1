//! What the fuzz targets in `fuzz/` run, one function a target, shared with the test that replays
//! every input they ever crashed on (`tests/fuzz_regressions.rs`, reading `fuzz/regressions/`).
//!
//! Each function takes arbitrary bytes and feeds them to a loader the way a user's file would
//! reach it. A loader may refuse the bytes with an error; it must never panic, abort or hang.
//! Run them with `scripts/fuzz.sh` (cargo-fuzz, libFuzzer).
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use remanence_cells::io;
use remanence_tasks::audio::{features, wav, FeatureConfig};
use remanence_tasks::moving_mnist::{FRAMES, SIDE};
use remanence_tasks::timeseries::{occupancy, ozone, traffic};
use remanence_tasks::{idx, jsb, npy};

use crate::run_dir;

/// How far an input got; the replay test checks that the seeds reach the deepest stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// Refused by the first loader.
    Nothing,
    /// A configuration (or header) was accepted.
    Parsed,
    /// A model or array was built from the bytes.
    Loaded,
    /// The loaded model ran.
    Ran,
}

/// An IDX file (MNIST's format): the first byte picks the expected number of dimensions
/// (0–4) and whether the rest is gzip-compressed.
pub fn idx_file(data: &[u8]) -> Reached {
    let Some((&head, rest)) = data.split_first() else {
        return Reached::Nothing;
    };
    let ndim = ((head & 0x7f) % 5) as usize;
    let gzip = head & 0x80 != 0;
    match idx::decode_u8(rest, gzip, ndim) {
        Ok(a) => {
            assert_eq!(a.dims.iter().product::<usize>(), a.data.len());
            Reached::Loaded
        }
        Err(_) => Reached::Nothing,
    }
}

/// Whether a fuzzed configuration is small enough to build. Larger ones are skipped here, not
/// refused: the CLI refuses what does not fit in memory before it builds anything
/// (`commands::memory`), and a fuzzer that allocates gigabytes finds nothing else. The limits
/// admit every configuration of the seeds.
fn small_enough(cfg: &crate::RunConfig) -> bool {
    let m = &cfg.model;
    let ct = &m.rnn.ct;
    [
        (m.rnn.input_size, 64),
        (m.rnn.hidden_size, 64),
        (m.output_size, 64),
        (m.encoder_input.unwrap_or(1), 64),
        (m.rnn.num_layers, 4),
        (ct.backbone_units, 256),
        (ct.backbone_layers, 4),
        (ct.ode_unfolds, 16),
        (ct.max_steps, 1000),
    ]
    .iter()
    .all(|&(n, limit)| n <= limit)
}

/// A run folder: `config.json`, a NUL byte, then a safetensors file read as
/// `checkpoint.safetensors` and, if it is none, as `model.safetensors`. A model that loads runs
/// two steps.
pub fn run_folder(data: &[u8]) -> Reached {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (config, tensors) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let (config_path, model_path) = (Path::new("config.json"), Path::new("model.safetensors"));
    let device = Device::Cpu;
    let cfg = std::str::from_utf8(config)
        .ok()
        .and_then(|text| run_dir::parse_config(text, config_path).ok());
    let dtype = cfg.as_ref().map_or(DType::F32, |c| c.dtype().unwrap());
    let checkpoint = run_dir::decode_checkpoint(tensors, model_path, dtype, &device);
    let Some(cfg) = cfg else {
        return Reached::Nothing;
    };
    let _ = cfg.train.validate();
    if !small_enough(&cfg) {
        return Reached::Parsed;
    }
    let loaded = match checkpoint {
        Ok(c) => c.params,
        Err(_) => match io::decode(tensors, model_path, &device) {
            Ok((t, _)) => t,
            Err(_) => return Reached::Parsed,
        },
    };
    let Ok((model, _)) = run_dir::model_from_tensors(&cfg, loaded, model_path, &device) else {
        return Reached::Parsed;
    };
    let x = Tensor::zeros((1, 2, cfg.model.input_size()), dtype, &device).unwrap();
    match model.forward(&x, None, None) {
        Ok((y, _)) => {
            assert_eq!(y.dims(), &[1, 2, cfg.model.output_size]);
            Reached::Ran
        }
        Err(_) => Reached::Loaded,
    }
}

/// A WAV file (any encoding hound reads), then its MFCCs at the file's own rate and, for a
/// plausible rate, resampled to 8 kHz as `--resample` would.
pub fn wav_file(data: &[u8]) -> Reached {
    let Ok(audio) = wav::decode(data) else {
        return Reached::Nothing;
    };
    assert!(!audio.samples.is_empty() && audio.samples.iter().all(|v| v.is_finite()));
    let resampled = match wav::resample(&audio.samples, audio.sample_rate, 8000) {
        Ok(s) => s,
        Err(_) => return Reached::Parsed,
    };
    let cfg = FeatureConfig::default();
    let m = features::extract(&resampled, &cfg);
    assert_eq!((m.rows, m.cols), (cfg.frames(resampled.len()), cfg.dim()));
    Reached::Loaded
}

/// A CSV file of the LTC paper's time series: the first byte picks the parser (occupancy,
/// traffic, ozone), the rest is the file's text.
pub fn series_csv(data: &[u8]) -> Reached {
    let Some((&head, rest)) = data.split_first() else {
        return Reached::Nothing;
    };
    let text = String::from_utf8_lossy(rest);
    let parsed = match head % 3 {
        0 => occupancy::parse(&text, "fuzz.csv"),
        1 => traffic::parse(&text, "fuzz.csv"),
        _ => ozone::parse(&text, "fuzz.csv"),
    };
    match parsed {
        Ok(rows) => {
            assert_eq!(rows.x.len(), rows.width * rows.len());
            Reached::Loaded
        }
        Err(_) => Reached::Nothing,
    }
}

/// A JSB chorales JSON file.
pub fn chorale_json(data: &[u8]) -> Reached {
    let text = String::from_utf8_lossy(data);
    match jsb::parse(&text, "fuzz.json") {
        Ok(d) => {
            for c in d.train.iter().chain(&d.valid).chain(&d.test) {
                assert!(c.frames.len() >= 2);
            }
            Reached::Loaded
        }
        Err(_) => Reached::Nothing,
    }
}

/// A NumPy `.npy` file as `--video FILE.npy` reads it: the header (unsigned bytes, C order, 4
/// dimensions, exactly the data it announces), then the data read as moving-mnist's
/// (20, N, 64, 64) video, and as a video of the header's own frame count and size (so small
/// seeds reach the data), all of it and its first sequence.
pub fn npy_file(data: &[u8]) -> Reached {
    let Ok(header) = npy::decode_u8_header(data, "fuzz.npy", 4) else {
        return Reached::Nothing;
    };
    let _ = npy::decode_video(data, "fuzz.npy", FRAMES, SIDE, SIDE, 0);
    let s = &header.shape;
    let (frames, height, width) = (s[0], s[2], s[3]);
    let mut reached = Reached::Parsed;
    for limit in [0, 1] {
        if let Ok(v) = npy::decode_video(data, "fuzz.npy", frames, height, width, limit) {
            let kept = if limit == 0 { s[1] } else { 1 };
            assert_eq!((v.sequences, v.in_file), (kept, s[1]));
            assert_eq!(v.data.len(), kept * frames * height * width);
            reached = Reached::Loaded;
        }
    }
    reached
}
