//! WAV files to mono f64 signals in [−1, 1] (hound), and resampling (rubato).
//!
//! Integer PCM of 8, 16, 24 or 32 bits is divided by 2^(bits−1) (16-bit: int16 / 32768, as
//! librosa and soundfile read it); 32-bit float is taken as is. Several channels are mixed down
//! to their mean.
use std::io::Cursor;

/// A mono signal and its sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub samples: Vec<f64>,
    pub sample_rate: u32,
}

/// Decodes the bytes of a WAV file; the error says what is wrong (the caller names the file).
pub fn decode(bytes: &[u8]) -> Result<Audio, String> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::FormatError(m) => format!("not a readable WAV file ({m})"),
        hound::Error::Unsupported => "unsupported WAV encoding".to_string(),
        e => format!("not a readable WAV file ({e})"),
    })?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        return Err("WAV header declares 0 channels".into());
    }
    let interleaved: Vec<f64> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f64 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("truncated or corrupt sample data ({e})"))?
        }
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("truncated or corrupt sample data ({e})"))?,
        (format, bits) => {
            return Err(format!(
                "unsupported sample format: {bits}-bit {}; supported: 8/16/24/32-bit integer PCM, 32-bit float",
                match format {
                    hound::SampleFormat::Int => "integer",
                    hound::SampleFormat::Float => "float",
                }
            ))
        }
    };
    if interleaved.is_empty() {
        return Err("the file holds no samples".into());
    }
    if interleaved.len() % channels != 0 {
        return Err(format!(
            "{} samples do not fill {channels} channels: the data chunk is truncated",
            interleaved.len()
        ));
    }
    if let Some(i) = interleaved.iter().position(|v| !v.is_finite()) {
        return Err(format!("sample {i} is not a finite number"));
    }
    let samples = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f64>() / channels as f64)
        .collect();
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

/// Resamples `samples` from rate `from` to rate `to` (band-limited, rubato's FFT resampler);
/// the output has `round(len·to/from)` samples aligned with the input.
pub fn resample(samples: &[f64], from: u32, to: u32) -> Result<Vec<f64>, String> {
    use rubato::{FftFixedIn, Resampler};
    if from == to {
        return Ok(samples.to_vec());
    }
    // A header's rate is any u32: a rate of 1 Hz resampled to 8 kHz would ask for 8000 output
    // samples per input sample. Audio is recorded between these bounds.
    const RATES: std::ops::RangeInclusive<u32> = 1000..=768_000;
    for rate in [from, to] {
        if !RATES.contains(&rate) {
            return Err(format!(
                "a sample rate of {rate} Hz is not an audio rate (resampling takes 1 kHz to 768 kHz)"
            ));
        }
    }
    let chunk = 1024;
    let mut r = FftFixedIn::<f64>::new(from as usize, to as usize, chunk, 2, 1)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    let want = (samples.len() as f64 * to as f64 / from as f64).round() as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + chunk);
    let mut pos = 0;
    let err = |e: rubato::ResampleError| format!("resampling failed: {e}");
    while pos + r.input_frames_next() <= samples.len() {
        let n = r.input_frames_next();
        let y = r.process(&[&samples[pos..pos + n]], None).map_err(err)?;
        out.extend_from_slice(&y[0]);
        pos += n;
    }
    if pos < samples.len() {
        let y = r
            .process_partial(Some(&[&samples[pos..]]), None)
            .map_err(err)?;
        out.extend_from_slice(&y[0]);
    }
    while out.len() < want + delay {
        let y = r.process_partial::<&[f64]>(None, None).map_err(err)?;
        out.extend_from_slice(&y[0]);
    }
    Ok(out[delay..delay + want].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(
        spec: hound::WavSpec,
        write: impl FnOnce(&mut hound::WavWriter<Cursor<&mut Vec<u8>>>),
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        {
            let mut w = hound::WavWriter::new(Cursor::new(&mut bytes), spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        bytes
    }

    fn spec(channels: u16, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: 8000,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    #[test]
    fn every_pcm_depth_scales_to_unit_range_and_stereo_mixes_down() {
        use hound::SampleFormat::{Float, Int};
        let b = wav(spec(1, 16, Int), |w| {
            for v in [-32768i16, 0, 16384] {
                w.write_sample(v).unwrap();
            }
        });
        assert_eq!(decode(&b).unwrap().samples, vec![-1.0, 0.0, 0.5]);
        let b = wav(spec(1, 8, Int), |w| w.write_sample(-64i8).unwrap());
        assert_eq!(decode(&b).unwrap().samples, vec![-0.5]);
        let b = wav(spec(1, 24, Int), |w| w.write_sample(1 << 22).unwrap());
        assert_eq!(decode(&b).unwrap().samples, vec![0.5]);
        let b = wav(spec(1, 32, Int), |w| w.write_sample(i32::MIN).unwrap());
        assert_eq!(decode(&b).unwrap().samples, vec![-1.0]);
        let b = wav(spec(2, 32, Float), |w| {
            for v in [0.25f32, 0.75, -1.0, 0.0] {
                w.write_sample(v).unwrap();
            }
        });
        let a = decode(&b).unwrap();
        assert_eq!(a.samples, vec![0.5, -0.5]);
        assert_eq!(a.sample_rate, 8000);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        use hound::SampleFormat::Int;
        assert!(decode(b"RIFX not a wave")
            .unwrap_err()
            .contains("not a readable WAV"));
        let full = wav(spec(1, 16, Int), |w| {
            for v in 0..100i16 {
                w.write_sample(v).unwrap();
            }
        });
        let err = decode(&full[..full.len() - 51]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let empty = wav(spec(1, 16, Int), |_| {});
        assert!(decode(&empty).unwrap_err().contains("no samples"));
    }

    #[test]
    fn resampling_keeps_a_tone_and_the_length() {
        let tone = |rate: f64, n: usize| -> Vec<f64> {
            (0..n)
                .map(|i| (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate).sin())
                .collect()
        };
        let x = tone(16000.0, 16000);
        let y = resample(&x, 16000, 8000).unwrap();
        assert_eq!(y.len(), 8000);
        let want = tone(8000.0, 8000);
        // Away from the edges the band-limited result is the tone sampled at the new rate.
        let err = (1000..7000)
            .map(|i| (y[i] - want[i]).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-3, "{err}");
        assert_eq!(resample(&x, 8000, 8000).unwrap(), x);
        assert!(resample(&x, 1, 8000)
            .unwrap_err()
            .contains("not an audio rate"));
    }
}
