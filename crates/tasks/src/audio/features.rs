//! Log-mel spectrograms and MFCCs, following librosa's conventions so that features match the
//! field's reference implementation. Checked against librosa 0.11 in `tests/audio_features.rs`:
//! the filter bank equals librosa's bit for bit once rounded to f32 as librosa stores it; mel
//! power, dB and MFCC agree to about 3e-8 relative error, which is librosa's f32 filters (this
//! module computes in f64 throughout).
//!
//! 1. **Frames, centred.** The signal is padded with `n_fft/2` zeros on each side; frame `t` covers
//!    samples `[t·hop, t·hop + n_fft)` of the padded signal, so there are `1 + len/hop` frames
//!    (integer division) and frame `t` is centred on sample `t·hop`.
//! 2. **Window.** A periodic Hann window of `win_length` samples,
//!    `w[n] = ½ − ½·cos(2πn / win_length)`, zero-padded to `n_fft` and centred in it.
//! 3. **Power spectrum.** `S[t, k] = |Σ_n w[n]·x_t[n]·e^{−2πikn/n_fft}|²` for `k = 0..n_fft/2`
//!    (a real FFT, realfft).
//! 4. **Mel filters (Slaney).** The Slaney mel scale is linear below 1 kHz (`m = 3f/200`) and
//!    logarithmic above (`m = 15 + 27·ln(f/1000)/ln 6.4`). `n_mels + 2` points equally spaced in
//!    mel between `fmin` and `fmax` give triangular filters on the FFT bin frequencies
//!    `k·sr/n_fft`, each scaled by `2/(f_{i+2} − f_i)` (equal area, librosa's `norm="slaney"`).
//! 5. **Decibels.** `10·log10(max(amin, M)) − 10·log10(max(amin, ref))`, `amin = 1e-10`,
//!    `ref = 1`, no `top_db` clipping unless asked.
//! 6. **MFCC.** The orthonormal DCT-II of each frame's dB mel vector,
//!    `c_k = s_k Σ_m X_m cos(πk(2m+1)/(2M))` with `s_0 = √(1/M)`, `s_k = √(2/M)`, first `n_mfcc`.
//!
//! Sources: librosa's `stft`, `filters.mel`, `power_to_db` and `feature.mfcc` documentation;
//! M. Slaney, "Auditory Toolbox", Interval Research Technical Report 1998-010.
use serde::{Deserialize, Serialize};

/// Which features a spoken-digit sequence carries per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureKind {
    /// `n_mfcc` cepstral coefficients.
    #[default]
    Mfcc,
    /// `n_mels` log-mel energies in dB.
    LogMel,
}

impl std::str::FromStr for FeatureKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "mfcc" => Ok(Self::Mfcc),
            "log-mel" | "logmel" => Ok(Self::LogMel),
            _ => Err(format!("unknown features `{s}`; valid: mfcc, log-mel")),
        }
    }
}

impl std::fmt::Display for FeatureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mfcc => "mfcc",
            Self::LogMel => "log-mel",
        })
    }
}

/// Feature settings; the defaults are the librosa fixture's (8 kHz speech: 25 ms windows,
/// 10 ms hop, 40 mel bands up to 4 kHz, 13 MFCCs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureConfig {
    pub kind: FeatureKind,
    /// Rate the signal is at (Hz); files at other rates are resampled or refused.
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop_length: usize,
    pub win_length: usize,
    pub n_mels: usize,
    pub fmin: f64,
    /// Upper edge of the mel filters; `None`: half the sample rate.
    pub fmax: Option<f64>,
    pub n_mfcc: usize,
    /// Floor of the power before the logarithm.
    pub amin: f64,
    /// Clip dB values to `max − top_db` (librosa's default is 80; the fixture uses none).
    pub top_db: Option<f64>,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            kind: FeatureKind::Mfcc,
            sample_rate: 8000,
            n_fft: 256,
            hop_length: 80,
            win_length: 200,
            n_mels: 40,
            fmin: 0.0,
            fmax: Some(4000.0),
            n_mfcc: 13,
            amin: 1e-10,
            top_db: None,
        }
    }
}

impl FeatureConfig {
    /// Features per frame.
    pub fn dim(&self) -> usize {
        match self.kind {
            FeatureKind::Mfcc => self.n_mfcc,
            FeatureKind::LogMel => self.n_mels,
        }
    }

    /// Frames of a signal of `len` samples.
    pub fn frames(&self, len: usize) -> usize {
        1 + len / self.hop_length
    }

    /// Checks the settings against each other, naming the offending one.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let fmax = self.fmax.unwrap_or(self.sample_rate as f64 / 2.0);
        let checks = [
            (self.sample_rate > 0, "sample rate must be positive"),
            (self.n_fft >= 2, "n_fft must be at least 2"),
            (self.hop_length > 0, "hop length must be positive"),
            (
                self.win_length > 0 && self.win_length <= self.n_fft,
                "window length must be in 1..=n_fft",
            ),
            (self.n_mels > 0, "n_mels must be positive"),
            (
                self.n_mfcc > 0 && self.n_mfcc <= self.n_mels,
                "n_mfcc must be in 1..=n_mels",
            ),
            (
                self.fmin >= 0.0 && self.fmin < fmax && fmax <= self.sample_rate as f64 / 2.0,
                "need 0 ≤ fmin < fmax ≤ sample_rate/2",
            ),
            (
                self.amin > 0.0 && self.amin.is_finite(),
                "amin must be a finite number > 0",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(format!("audio features: {msg} ({self:?})")),
            None => Ok(()),
        }
    }
}

/// A (rows, cols) matrix of f64, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose: librosa's (features, frames) layout from ours (frames, features).
    pub fn transpose(&self) -> Self {
        let mut t = Self::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for c in 0..self.cols {
                t.data[c * self.rows + r] = self.data[r * self.cols + c];
            }
        }
        t
    }
}

/// The periodic Hann window of `win_length` samples, centred in `n_fft` zeros.
pub fn window(win_length: usize, n_fft: usize) -> Vec<f64> {
    let mut w = vec![0.0; n_fft];
    let left = (n_fft - win_length) / 2;
    for n in 0..win_length {
        let phase = 2.0 * std::f64::consts::PI * n as f64 / win_length as f64;
        w[left + n] = 0.5 - 0.5 * phase.cos();
    }
    w
}

/// The power spectrogram (frames, n_fft/2 + 1) of centred, zero-padded frames.
pub fn power_spectrogram(signal: &[f64], cfg: &FeatureConfig) -> Matrix {
    let (n_fft, hop) = (cfg.n_fft, cfg.hop_length);
    let pad = n_fft / 2;
    let mut padded = vec![0.0; signal.len() + 2 * pad];
    padded[pad..pad + signal.len()].copy_from_slice(signal);
    let frames = cfg.frames(signal.len());
    let bins = n_fft / 2 + 1;
    let w = window(cfg.win_length, n_fft);
    let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut out = Matrix::zeros(frames, bins);
    for t in 0..frames {
        let start = t * hop;
        for (k, v) in input.iter_mut().enumerate() {
            *v = padded.get(start + k).copied().unwrap_or(0.0) * w[k];
        }
        fft.process(&mut input, &mut spectrum)
            .expect("buffers come from the plan");
        for (o, c) in out.row_mut(t).iter_mut().zip(&spectrum) {
            *o = c.norm_sqr();
        }
    }
    out
}

/// Hz to mel on Slaney's scale.
pub fn hz_to_mel(f: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    if f >= min_log_hz {
        min_log_hz / f_sp + (f / min_log_hz).ln() / (6.4f64.ln() / 27.0)
    } else {
        f / f_sp
    }
}

/// Mel on Slaney's scale to Hz.
pub fn mel_to_hz(m: f64) -> f64 {
    let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
    let min_log_mel = min_log_hz / f_sp;
    if m >= min_log_mel {
        min_log_hz * ((6.4f64.ln() / 27.0) * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// The Slaney-normalised triangular mel filter bank, (n_mels, n_fft/2 + 1).
pub fn mel_filters(cfg: &FeatureConfig) -> Matrix {
    let sr = cfg.sample_rate as f64;
    let fmax = cfg.fmax.unwrap_or(sr / 2.0);
    let bins = cfg.n_fft / 2 + 1;
    let (lo, hi) = (hz_to_mel(cfg.fmin), hz_to_mel(fmax));
    let points: Vec<f64> = (0..cfg.n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (cfg.n_mels + 1) as f64))
        .collect();
    let mut fb = Matrix::zeros(cfg.n_mels, bins);
    for m in 0..cfg.n_mels {
        let (left, centre, right) = (points[m], points[m + 1], points[m + 2]);
        let area = 2.0 / (right - left);
        for (k, v) in fb.row_mut(m).iter_mut().enumerate() {
            let f = k as f64 * sr / cfg.n_fft as f64;
            let rising = (f - left) / (centre - left);
            let falling = (right - f) / (right - centre);
            *v = rising.min(falling).max(0.0) * area;
        }
    }
    fb
}

/// The mel power spectrogram (frames, n_mels): each frame's power spectrum through the filters.
pub fn mel_power(signal: &[f64], cfg: &FeatureConfig) -> Matrix {
    let spec = power_spectrogram(signal, cfg);
    let fb = mel_filters(cfg);
    let mut out = Matrix::zeros(spec.rows, cfg.n_mels);
    for t in 0..spec.rows {
        let s = spec.row(t);
        for m in 0..cfg.n_mels {
            out.data[t * cfg.n_mels + m] = fb.row(m).iter().zip(s).map(|(a, b)| a * b).sum();
        }
    }
    out
}

/// Power to decibels (reference 1), floored at `amin`, optionally clipped to `max − top_db`.
pub fn power_to_db(power: &Matrix, cfg: &FeatureConfig) -> Matrix {
    let mut db = power.clone();
    for v in &mut db.data {
        *v = 10.0 * v.max(cfg.amin).log10();
    }
    if let Some(top) = cfg.top_db {
        let max = db.data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        for v in &mut db.data {
            *v = v.max(max - top);
        }
    }
    db
}

/// The first `n_out` coefficients of the orthonormal DCT-II of each row.
pub fn dct_ortho(x: &Matrix, n_out: usize) -> Matrix {
    let n = x.cols;
    let mut basis = Matrix::zeros(n_out, n);
    for k in 0..n_out {
        let scale = if k == 0 {
            (1.0 / n as f64).sqrt()
        } else {
            (2.0 / n as f64).sqrt()
        };
        for (m, b) in basis.row_mut(k).iter_mut().enumerate() {
            let angle = std::f64::consts::PI * k as f64 * (2 * m + 1) as f64 / (2 * n) as f64;
            *b = scale * angle.cos();
        }
    }
    let mut out = Matrix::zeros(x.rows, n_out);
    for r in 0..x.rows {
        for k in 0..n_out {
            out.data[r * n_out + k] = basis.row(k).iter().zip(x.row(r)).map(|(a, b)| a * b).sum();
        }
    }
    out
}

/// The features of `cfg.kind` for a signal at `cfg.sample_rate`: (frames, dim).
pub fn extract(signal: &[f64], cfg: &FeatureConfig) -> Matrix {
    let db = power_to_db(&mel_power(signal, cfg), cfg);
    match cfg.kind {
        FeatureKind::LogMel => db,
        FeatureKind::Mfcc => dct_ortho(&db, cfg.n_mfcc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1khz() {
        assert!((hz_to_mel(600.0) - 9.0).abs() < 1e-12);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        for f in [0.0, 150.0, 999.0, 1000.0, 2500.0, 4000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9, "{f}");
        }
    }

    #[test]
    fn frames_are_centred_and_dct_is_orthonormal() {
        let cfg = FeatureConfig::default();
        let s = power_spectrogram(&vec![0.0; 800], &cfg);
        assert_eq!((s.rows, s.cols), (11, 129));
        // An impulse at sample 160 is seen by frames centred within n_fft/2 of it.
        let mut x = vec![0.0; 800];
        x[160] = 1.0;
        let s = power_spectrogram(&x, &cfg);
        assert_eq!(s.row(2)[0], window(200, 256)[128].powi(2));
        assert_eq!(s.row(5)[0], 0.0);
        // Orthonormal: the DCT of a row keeps its norm when every coefficient is kept.
        let m = Matrix {
            rows: 1,
            cols: 5,
            data: vec![1.0, -2.0, 0.5, 3.0, 0.0],
        };
        let c = dct_ortho(&m, 5);
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
        assert!((norm(&c.data) - norm(&m.data)).abs() < 1e-12);
    }

    #[test]
    fn bad_settings_are_named() {
        let cfg = FeatureConfig {
            n_mfcc: 50,
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().contains("n_mfcc"));
        let cfg = FeatureConfig {
            fmax: Some(6000.0),
            ..Default::default()
        };
        assert!(cfg.validate().unwrap_err().contains("fmax"));
        assert!(FeatureConfig::default().validate().is_ok());
    }
}
