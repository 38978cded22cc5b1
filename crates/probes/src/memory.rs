//! Memory capacity (Jaeger 2002, GMD Report 152).
//!
//! Drive the model with u_t i.i.d. uniform on [−a, a] (a = 0.8), discard a washout, and on the
//! states s_t (row t: the features after reading u_t) fit one linear read-out per delay
//! k = 1..k_max to the target u_{t−k+1} by ridge regression on the training steps. MC_k is the
//! squared correlation between read-out and target on the held-out steps that follow, and
//! MC = Σ_k MC_k. Delay k = 1 is the input just read (texts index this lag differently, some as
//! lag 0): with this count a delay line of N taps recalls k = 1..N exactly (MC = N), a linear
//! network has MC = rank of its Kalman matrix ≤ N (Gonon, Grigoryeva & Ortega 2020), and
//! MC ≤ N for any network with N state values, up to the estimate's noise.
//!
//! [`memory_capacity`] is the estimator alone, a function of a (T, N) state matrix and the
//! input series, so it is tested on hand-built features; [`run`] drives a [`Subject`].
use serde::{Deserialize, Serialize};

use crate::dynamics::run_series;
use crate::error::{invalid, Result};
use crate::linalg::{ridge_solve, Mat, RidgeRaise};
use crate::signal::{rng, stream, uniform_series};
use crate::subject::{Features, Subject};

/// Settings of the memory-capacity probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McSettings {
    /// Steps discarded before the training steps (they also hold the oldest targets, so
    /// `k_max ≤ washout + 1`).
    pub washout: usize,
    /// Steps the read-outs are fitted on.
    pub train: usize,
    /// Held-out steps MC_k is measured on.
    pub test: usize,
    /// Largest delay.
    pub k_max: usize,
    /// Ridge coefficient relative to the mean feature variance: λ = ridge · tr(XᵀX)/N on the
    /// centred training features X.
    pub ridge: f64,
    /// Half-width a of the uniform input on [−a, a].
    pub amplitude: f64,
    /// Which values the read-outs see.
    pub features: Features,
}

/// Washout when none is given: at least this, and at least k_max − 1.
pub const DEFAULT_WASHOUT: usize = 200;

impl McSettings {
    /// The defaults for `n` features: k_max = 2n, washout max(200, k_max), 2000 training and
    /// 1000 test steps, ridge 1e-6, amplitude 0.8, the whole state.
    pub fn for_features(n: usize) -> Self {
        let k_max = 2 * n.max(1);
        Self {
            washout: DEFAULT_WASHOUT.max(k_max),
            train: 2000,
            test: 1000,
            k_max,
            ridge: 1e-6,
            amplitude: 0.8,
            features: Features::State,
        }
    }

    /// Steps of one input series: washout + train + test.
    pub fn steps(&self) -> usize {
        self.washout + self.train + self.test
    }

    /// Refuses settings that cannot give a measurement, naming the setting.
    pub fn validate(&self) -> Result<()> {
        if self.train == 0 {
            return Err(invalid("train steps must be at least 1, got 0"));
        }
        if self.test < 3 {
            return Err(invalid(format!(
                "test steps must be at least 3 (a correlation on held-out steps), got {}",
                self.test
            )));
        }
        if self.k_max == 0 {
            return Err(invalid("k_max must be at least 1, got 0"));
        }
        if self.k_max > self.washout + 1 {
            return Err(invalid(format!(
                "k_max = {} is larger than the series allows: the target of delay k at the \
                 first training step is u[washout − k + 1], so k_max ≤ washout + 1 = {}; raise \
                 the washout to at least {} or lower k_max",
                self.k_max,
                self.washout + 1,
                self.k_max - 1
            )));
        }
        if !(self.ridge >= 0.0 && self.ridge.is_finite()) {
            return Err(invalid(format!(
                "ridge must be finite and ≥ 0, got {}",
                self.ridge
            )));
        }
        if !(self.amplitude > 0.0 && self.amplitude.is_finite()) {
            return Err(invalid(format!(
                "amplitude must be finite and > 0, got {}",
                self.amplitude
            )));
        }
        Ok(())
    }
}

/// One memory-capacity measurement.
#[derive(Debug, Clone, Serialize)]
pub struct McEstimate {
    /// MC_k for k = 1..k_max (index k − 1).
    pub per_delay: Vec<f64>,
    /// MC = Σ_k MC_k.
    pub total: f64,
    /// Features per step (N, the bound).
    pub features: usize,
    /// λ the solve used (λ asked for unless the system was singular).
    pub lambda: f64,
    /// λ asked for: ridge · tr(XᵀX)/N.
    pub lambda_requested: f64,
    /// Every raise of λ after a singular system (empty normally).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ridge_raises: Vec<RidgeRaise>,
    /// Things a reader should know (a singular system, constant features or read-outs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Pearson correlation of `a` and `b`; `None` when either has no variance.
fn correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    // Relative to the values' size, so rounding noise of a constant column counts as constant.
    let tiny = |s: f64, m: f64| s <= 1e-24 * n * (1.0 + m * m);
    if tiny(saa, ma) || tiny(sbb, mb) {
        None
    } else {
        Some(sab / (saa * sbb).sqrt())
    }
}

/// MC_k and MC of a state matrix: row t of `states` (T × N) holds the features after reading
/// `input[t]` (T values). Rows `washout..washout + train` fit the read-outs (centred features and
/// targets, one ridge solve for all delays together: the same (XᵀX + λI) for every k, one
/// right-hand side per delay), the next `test` rows measure them. Rows past
/// `washout + train + test` are ignored.
pub fn memory_capacity(states: &Mat, input: &[f64], s: &McSettings) -> Result<McEstimate> {
    s.validate()?;
    let (t_len, n) = (states.rows(), states.cols());
    if n == 0 {
        return Err(invalid("a state of width zero (no features to read out)"));
    }
    if input.len() != t_len {
        return Err(invalid(format!(
            "{t_len} states for an input series of {} steps",
            input.len()
        )));
    }
    if s.steps() > t_len {
        return Err(invalid(format!(
            "washout {} + train {} + test {} = {} steps, and the series has {t_len}",
            s.washout,
            s.train,
            s.test,
            s.steps()
        )));
    }
    if !states.is_finite() || input.iter().any(|v| !v.is_finite()) {
        return Err(crate::error::ProbeError::NonFinite(
            "the states or the input series".into(),
        ));
    }
    let (k_max, w) = (s.k_max, s.washout);
    let target = |t: usize, k: usize| input[t + 1 - k];
    let mut warnings = Vec::new();

    // Centring on the training steps.
    let train = states.row_range(w, s.train);
    let mut mean_x = vec![0.0; n];
    for i in 0..s.train {
        for (m, v) in mean_x.iter_mut().zip(train.row(i)) {
            *m += v;
        }
    }
    mean_x.iter_mut().for_each(|m| *m /= s.train as f64);
    let mut xc = train;
    for i in 0..s.train {
        for j in 0..n {
            xc[(i, j)] -= mean_x[j];
        }
    }
    let mut yc = Mat::zeros(s.train, k_max);
    let mut mean_y = vec![0.0; k_max];
    for k in 1..=k_max {
        let m = (0..s.train).map(|i| target(w + i, k)).sum::<f64>() / s.train as f64;
        mean_y[k - 1] = m;
        for i in 0..s.train {
            yc[(i, k - 1)] = target(w + i, k) - m;
        }
    }
    let gram = xc.t_matmul(&xc)?;
    let rhs = xc.t_matmul(&yc)?;
    let scale = gram.trace() / n as f64;
    let lambda_requested = s.ridge * scale;
    if !(scale > 0.0) {
        warnings.push(
            "the features are constant over the training steps: nothing to read out, MC = 0".into(),
        );
        return Ok(McEstimate {
            per_delay: vec![0.0; k_max],
            total: 0.0,
            features: n,
            lambda: lambda_requested,
            lambda_requested,
            ridge_raises: Vec::new(),
            warnings,
        });
    }
    let sol = ridge_solve(&gram, &rhs, lambda_requested)?;
    if let Some(first) = sol.raises.first() {
        warnings.push(format!(
            "singular ridge system at λ = {:e} (pivot {} of {} is {:e}): λ raised {} time{} to \
             {:e}",
            first.lambda,
            first.pivot_index,
            n,
            first.pivot,
            sol.raises.len(),
            if sol.raises.len() == 1 { "" } else { "s" },
            sol.lambda
        ));
    }

    // Held-out steps.
    let test = states.row_range(w + s.train, s.test);
    let mut xt = test;
    for i in 0..s.test {
        for j in 0..n {
            xt[(i, j)] -= mean_x[j];
        }
    }
    let pred = xt.matmul(&sol.weights)?;
    let mut per_delay = Vec::with_capacity(k_max);
    let mut flat = 0;
    for k in 1..=k_max {
        let p: Vec<f64> = (0..s.test)
            .map(|i| pred[(i, k - 1)] + mean_y[k - 1])
            .collect();
        let y: Vec<f64> = (0..s.test).map(|i| target(w + s.train + i, k)).collect();
        match correlation(&p, &y) {
            Some(r) => per_delay.push(r * r),
            None => {
                flat += 1;
                per_delay.push(0.0);
            }
        }
    }
    if flat > 0 {
        warnings.push(format!(
            "{flat} read-out{} constant on the test steps (no correlation): MC_k = 0 there",
            if flat == 1 { " is" } else { "s are" }
        ));
    }
    Ok(McEstimate {
        total: per_delay.iter().sum(),
        per_delay,
        features: n,
        lambda: sol.lambda,
        lambda_requested,
        ridge_raises: sol.raises,
        warnings,
    })
}

/// The expected squared correlation of a read-out with an unrelated target on `test` held-out
/// steps, 1/(test − 1) per delay: what a delay with no memory still scores.
pub fn noise_floor_per_delay(test: usize) -> f64 {
    1.0 / (test.max(2) - 1) as f64
}

/// MC ≤ N checked within the estimate's noise: an unrelated target scores r² with mean 1/m and
/// standard deviation about √2/m (m = test − 1). The r² of neighbouring delays are strongly
/// correlated (their test covariances are sums of the same input products shifted by one
/// step), so the standard deviations of k_max such delays are added, not their variances: by
/// chance they add at most about k_max (1 + 3√2)/m (three standard deviations).
#[derive(Debug, Clone, Serialize)]
pub struct BoundCheck {
    /// N, the features per step.
    pub n: usize,
    pub mc: f64,
    /// k_max (1 + 3√2) / (test − 1).
    pub margin: f64,
    /// MC ≤ N + margin.
    pub holds: bool,
}

pub fn bound_check(mc: f64, n: usize, k_max: usize, test: usize) -> BoundCheck {
    let m = noise_floor_per_delay(test);
    let margin = k_max as f64 * (1.0 + 3.0 * 2f64.sqrt()) * m;
    BoundCheck {
        n,
        mc,
        margin,
        holds: mc <= n as f64 + margin,
    }
}

/// One measurement of a subject: its seed and estimate.
#[derive(Debug, Clone, Serialize)]
pub struct McRun {
    /// Seed of the input series (and of the untrained model's initialisation).
    pub seed: u64,
    #[serde(flatten)]
    pub estimate: McEstimate,
}

/// Measures the memory capacity of `subject` on one input series per seed of `seeds` (all run
/// together as one batch): the series of seed s is stream [`stream::MC_INPUT`] of ChaCha8
/// seeded with s. `progress` is told the steps done (of `settings.steps()` in all).
pub fn run(
    subject: &Subject,
    settings: &McSettings,
    seeds: &[u64],
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<McRun>> {
    settings.validate()?;
    if seeds.is_empty() {
        return Err(invalid("no seeds: nothing to measure"));
    }
    let series = seeds
        .iter()
        .map(|&seed| {
            uniform_series(
                settings.steps(),
                settings.amplitude,
                &mut rng(seed, stream::MC_INPUT),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let states = run_series(subject, &series, None, settings.features, progress)?;
    seeds
        .iter()
        .zip(states.iter().zip(&series))
        .map(|(&seed, (x, u))| {
            Ok(McRun {
                seed,
                estimate: memory_capacity(x, u, settings)?,
            })
        })
        .collect()
}

/// Mean, sample standard deviation, minimum and maximum of some numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation (0 for a single value).
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Self {
            mean,
            std: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// The measurements over seeds, summarised.
#[derive(Debug, Clone, Serialize)]
pub struct McSummary {
    /// MC over the seeds.
    pub mc: Spread,
    /// MC_k over the seeds, per delay (index k − 1).
    pub per_delay: Vec<Spread>,
    /// The bound check of the largest MC.
    pub bound: BoundCheck,
    /// Expected MC of k_max delays without memory: k_max / (test − 1).
    pub noise_floor: f64,
}

impl McSummary {
    pub fn of(runs: &[McRun], settings: &McSettings) -> Result<Self> {
        let Some(first) = runs.first() else {
            return Err(invalid("no measurements to summarise"));
        };
        let totals: Vec<f64> = runs.iter().map(|r| r.estimate.total).collect();
        let per_delay = (0..settings.k_max)
            .map(|k| {
                let v: Vec<f64> = runs.iter().map(|r| r.estimate.per_delay[k]).collect();
                Spread::of(&v)
            })
            .collect();
        let mc = Spread::of(&totals);
        Ok(Self {
            mc,
            per_delay,
            bound: bound_check(
                mc.max,
                first.estimate.features,
                settings.k_max,
                settings.test,
            ),
            noise_floor: settings.k_max as f64 * noise_floor_per_delay(settings.test),
        })
    }
}
