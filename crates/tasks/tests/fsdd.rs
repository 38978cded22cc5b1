//! The spoken-digit task on the real recordings (../shared/datasets/fsdd) and on small folders of
//! made-up WAV files that are broken in the ways users' files are.
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use remanence_tasks::audio::FeatureConfig;
use remanence_tasks::datasets::shared_for_tests;
use remanence_tasks::fsdd::{FsddOptions, FsddSplit, FsddTask};
use remanence_tasks::{SequenceTask, Split};

fn options(split: FsddSplit) -> FsddOptions {
    FsddOptions {
        split,
        features: FeatureConfig::default(),
        mean_over_time: false,
        resample: false,
        skip_bad: false,
    }
}

#[test]
fn official_and_speaker_splits_of_the_real_recordings() {
    let Some(dir) = shared_for_tests("datasets/fsdd") else {
        return;
    };
    let task = FsddTask::new(&dir, options(FsddSplit::Official), 0, 0).unwrap();
    assert_eq!((task.len(Split::Train), task.len(Split::Test)), (2700, 300));
    // Training frames are standardised with their own statistics: mean 0, deviation 1.
    let b = task
        .batch(
            Split::Train,
            &(0..2700).collect::<Vec<_>>(),
            DType::F64,
            &Device::Cpu,
        )
        .unwrap();
    let mask = b.mask.clone().unwrap().unsqueeze(2).unwrap();
    let frames = mask.sum_all().unwrap().to_scalar::<f64>().unwrap();
    assert_eq!(frames as usize, b.lengths.iter().sum::<usize>());
    let mean = (b.x.broadcast_mul(&mask).unwrap().sum((0, 1)).unwrap() / frames).unwrap();
    let sq =
        (b.x.sqr()
            .unwrap()
            .broadcast_mul(&mask)
            .unwrap()
            .sum((0, 1))
            .unwrap()
            / frames)
            .unwrap();
    for (m, s) in mean
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .zip(sq.to_vec1::<f64>().unwrap())
    {
        assert!(
            m.abs() < 1e-5 && (s - 1.0).abs() < 1e-4,
            "mean {m}, mean square {s}"
        );
    }
    // Padding after each recording's end is zero.
    let longest = *b.lengths.iter().max().unwrap();
    let short = b.lengths.iter().position(|&l| l < longest).unwrap();
    let pad =
        b.x.get(short)
            .unwrap()
            .narrow(0, b.lengths[short], longest - b.lengths[short])
            .unwrap();
    assert_eq!(
        pad.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        0.0
    );
    assert_eq!(task.fitted_statistics().len(), 2);

    let held_out = FsddTask::new(&dir, options(FsddSplit::Speaker("theo".into())), 0, 0).unwrap();
    assert_eq!(
        (held_out.len(Split::Train), held_out.len(Split::Test)),
        (2500, 500)
    );
    let err = FsddTask::new(&dir, options(FsddSplit::Speaker("alice".into())), 0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no such speaker") && err.contains("jackson"),
        "{err}"
    );
}

fn folder(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("remanence-fsdd-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("recordings")).unwrap();
    d
}

fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f64, freq: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * rate as f64) as usize {
        let v = (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin();
        for _ in 0..channels {
            w.write_sample((v * 8000.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Two digits, two recordings each (index 0 test, index 5 train).
fn small_set(tag: &str) -> PathBuf {
    let d = folder(tag);
    for (digit, freq) in [(0, 300.0), (1, 900.0)] {
        for index in [0, 5] {
            let p = d.join(format!("recordings/{digit}_theo_{index}.wav"));
            write_wav(&p, 8000, 1, 0.3 + 0.01 * index as f64, freq);
        }
    }
    d
}

#[test]
fn a_bad_recording_stops_the_run_unless_skipped() {
    let d = small_set("bad");
    let bad = d.join("recordings/1_theo_6.wav");
    let full = {
        write_wav(&bad, 8000, 1, 0.3, 500.0);
        std::fs::read(&bad).unwrap()
    };
    std::fs::write(&bad, &full[..full.len() / 2 + 1]).unwrap();
    let err = FsddTask::new(&d, options(FsddSplit::Official), 0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("1_theo_6.wav") && err.contains("--skip-bad"),
        "{err}"
    );
    let task = FsddTask::new(
        &d,
        FsddOptions {
            skip_bad: true,
            ..options(FsddSplit::Official)
        },
        0,
        0,
    )
    .unwrap();
    assert_eq!(task.len(Split::Train), 2);
    let w = task.warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("1_theo_6.wav"), "{w:?}");

    std::fs::write(&bad, b"RIFF\x04\x00\x00\x00JUNK").unwrap();
    let err = FsddTask::new(&d, options(FsddSplit::Official), 0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("1_theo_6.wav") && err.contains("WAV"), "{err}");
    std::fs::write(&bad, full).unwrap();
    std::fs::rename(&bad, d.join("recordings/one_theo_6.wav")).unwrap();
    let err = FsddTask::new(&d, options(FsddSplit::Official), 0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("DIGIT_SPEAKER_INDEX"), "{err}");
}

#[test]
fn another_sample_rate_is_refused_unless_resampling_is_asked_for_and_stereo_mixes_down() {
    let d = small_set("rate");
    write_wav(&d.join("recordings/1_theo_7.wav"), 16000, 2, 0.3, 900.0);
    let err = FsddTask::new(&d, options(FsddSplit::Official), 0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("16000 Hz") && err.contains("--resample"),
        "{err}"
    );
    let o = FsddOptions {
        resample: true,
        ..options(FsddSplit::Official)
    };
    let task = FsddTask::new(&d, o, 0, 0).unwrap();
    assert_eq!(task.len(Split::Train), 3);
    // The resampled 0.3 s recording has the frames of a 0.3 s recording at 8 kHz.
    let b = task
        .batch(Split::Train, &[2], DType::F32, &Device::Cpu)
        .unwrap();
    assert_eq!(b.lengths, vec![FeatureConfig::default().frames(2400)]);
}

#[test]
fn metrics_read_each_recording_at_its_own_last_frame() {
    let d = small_set("metric");
    let task = FsddTask::new(&d, options(FsddSplit::Official), 0, 0).unwrap();
    // A predictor that is right only at each sequence's last real frame (and NaN elsewhere).
    let mut oracle = |b: &remanence_tasks::Batch| -> remanence_tasks::Result<Tensor> {
        let t = b.x.dim(1)?;
        let labels = b.target.to_vec1::<u32>()?;
        let mut y = vec![f32::NAN; b.indices.len() * t * 10];
        for (row, (&len, &label)) in b.lengths.iter().zip(&labels).enumerate() {
            let at = (row * t + len - 1) * 10;
            y[at..at + 10].fill(0.0);
            y[at + label as usize] = 1.0;
        }
        Ok(Tensor::from_vec(y, (b.indices.len(), t, 10), &Device::Cpu)?)
    };
    let e = task
        .evaluate(1, DType::F32, &Device::Cpu, &mut oracle)
        .unwrap();
    assert_eq!(e.values["test_accuracy"], 1.0);
    assert_eq!(e.values["train_accuracy"], 1.0);
    let mut nan = |b: &remanence_tasks::Batch| -> remanence_tasks::Result<Tensor> {
        Ok(Tensor::full(
            f32::NAN,
            (b.indices.len(), b.x.dim(1)?, 10),
            &Device::Cpu,
        )?)
    };
    let e = task
        .evaluate(4, DType::F32, &Device::Cpu, &mut nan)
        .unwrap();
    assert_eq!(e.metric, 0.0);
}
