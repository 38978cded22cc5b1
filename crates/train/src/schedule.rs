use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Learning-rate schedule, evaluated once per epoch.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Cosine decay from the base rate to `base · min_factor` over all epochs.
    Cosine { min_factor: f64 },
    /// Multiply by `gamma` every `every` epochs.
    Step { every: usize, gamma: f64 },
}

impl Schedule {
    /// Parses `constant`, `cosine`, `cosine:MIN_FACTOR` or `step:EVERY:GAMMA`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| -> Result<f64> {
            p.parse()
                .map_err(|_| TrainError::Config(format!("schedule `{s}`: `{p}` is not a number")))
        };
        let sched = match parts.as_slice() {
            ["constant"] => Schedule::Constant,
            ["cosine"] => Schedule::Cosine { min_factor: 0.0 },
            ["cosine", m] => Schedule::Cosine { min_factor: num(m)? },
            ["step", e, g] => Schedule::Step { every: num(e)? as usize, gamma: num(g)? },
            _ => {
                return Err(TrainError::Config(format!(
                    "unknown schedule `{s}`; valid schedules: constant, cosine[:MIN_FACTOR], step:EVERY:GAMMA"
                )))
            }
        };
        sched.validate()?;
        Ok(sched)
    }

    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Step { every: 0, .. } => Err(TrainError::Config(
                "step schedule: EVERY must be ≥ 1".into(),
            )),
            Schedule::Step { gamma, .. } if !(gamma > 0.0) => Err(TrainError::Config(
                "step schedule: GAMMA must be positive".into(),
            )),
            Schedule::Cosine { min_factor } if !(0.0..=1.0).contains(&min_factor) => Err(
                TrainError::Config("cosine schedule: MIN_FACTOR must be in [0, 1]".into()),
            ),
            _ => Ok(()),
        }
    }

    /// Learning rate for `epoch` (0-based) of `epochs`.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Cosine { min_factor } => {
                let p = if epochs <= 1 {
                    0.0
                } else {
                    epoch as f64 / (epochs - 1) as f64
                };
                let f = min_factor
                    + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
                base * f
            }
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every) as i32),
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for Schedule {
    /// The text [`Schedule::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Cosine { min_factor } => write!(f, "cosine:{min_factor}"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Schedule::parse("constant").unwrap().lr(0.1, 5, 10), 0.1);
        let c = Schedule::parse("cosine:0.1").unwrap();
        assert!((c.lr(1.0, 0, 11) - 1.0).abs() < 1e-12);
        assert!((c.lr(1.0, 10, 11) - 0.1).abs() < 1e-12);
        assert!((c.lr(1.0, 5, 11) - 0.55).abs() < 1e-12);
        let s = Schedule::parse("step:3:0.5").unwrap();
        assert_eq!(s.lr(1.0, 2, 10), 1.0);
        assert_eq!(s.lr(1.0, 3, 10), 0.5);
        assert_eq!(s.lr(1.0, 7, 10), 0.25);
        assert!(Schedule::parse("linear")
            .unwrap_err()
            .to_string()
            .contains("valid schedules"));
        assert!(Schedule::parse("step:0:0.5").is_err());
        for text in ["constant", "cosine:0.1", "step:3:0.5"] {
            assert_eq!(Schedule::parse(text).unwrap().to_string(), text);
        }
        assert!(Schedule::parse("cosine:nan").is_err());
    }
}
