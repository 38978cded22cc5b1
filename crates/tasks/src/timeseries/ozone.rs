//! UCI Ozone Level Detection, 8-hour set (Zhang & Fan 2008), as the LTC paper uses it: is each
//! day of a window of 32 an ozone day?
//!
//! - inputs: the 72 daily measurements (`?` marks a missing one), each standardised with the
//!   statistics of the rows that training windows cover, missing values left out of the
//!   statistics and then set to 0 (the training mean);
//! - target: the class (1 = ozone day) at every step, trained with class-weighted cross-entropy:
//!   `Batch::mask` carries the weight of each step's class, the paper's 0.1 for normal days and
//!   1.6 for ozone days ([`CLASS_WEIGHTS`]);
//! - windows of 32 days every 4 days, split at random by the data seed into 75 % training, 10 %
//!   validation and 15 % test windows; metric: the F1 score of ozone days over all test steps.
use std::path::Path;

use super::{
    binary_class, number, read_text, split_series, Rows, Scoring, Standardizer, TimeSeriesTask,
};
use crate::error::{Result, TaskError};

pub const FILE: &str = "eighthr.data";
/// Fields per line: the date, the measurements, the class.
pub const FIELDS: usize = 74;
pub const FEATURES: usize = 72;
pub const STEPS: usize = 32;
pub const STRIDE: usize = 4;
/// Loss weight of a normal day and of an ozone day (the paper's `0.1 + 1.5·class`).
pub const CLASS_WEIGHTS: [f32; 2] = [0.1, 1.6];

/// Parses `eighthr.data` (no header; CRLF or LF); `source` names it in errors. Missing values
/// (`?`) become NaN.
pub fn parse(text: &str, source: &str) -> Result<Rows> {
    let mut rows = Rows {
        width: FEATURES,
        x: Vec::new(),
        y: Vec::new(),
    };
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != FIELDS {
            return Err(super::bad_row(
                source,
                n,
                format!(
                    "{} fields, expected {FIELDS} (a date, {FEATURES} measurements, the class)",
                    f.len()
                ),
            ));
        }
        if f[0].split('/').count() != 3 {
            return Err(super::bad_row(
                source,
                n,
                format!("`{}` is not a date M/D/YYYY", f[0]),
            ));
        }
        for (k, v) in f[1..=FEATURES].iter().enumerate() {
            rows.x.push(if *v == "?" {
                f32::NAN
            } else {
                number(v, source, n, &format!("field {}", k + 2))?
            });
        }
        rows.y
            .push(binary_class(f[FIELDS - 1], source, n, "the class")?);
    }
    Ok(rows)
}

impl TimeSeriesTask {
    /// The ozone task from [`FILE`] in `dir`; `seed` draws the split of the windows.
    pub fn ozone(dir: &Path, seed: u64) -> Result<Self> {
        let (text, shown) = read_text(dir, FILE, "ozone")?;
        Self::ozone_from_rows(parse(&text, &shown)?, seed)
    }

    /// The ozone task from parsed rows (NaN where a value is missing).
    pub fn ozone_from_rows(mut rows: Rows, seed: u64) -> Result<Self> {
        if rows.width != FEATURES {
            return Err(TaskError::Data(format!(
                "ozone: rows of {} values, expected {FEATURES}",
                rows.width
            )));
        }
        let (train, valid, test, covered) = split_series("ozone", rows.len(), STEPS, STRIDE, seed)?;
        let stats = Standardizer::fit(&rows, |i| covered[i]);
        stats.apply(&mut rows);
        Ok(Self {
            name: "ozone",
            steps: STEPS,
            width: FEATURES,
            scoring: Scoring::F1,
            class_weights: Some(CLASS_WEIGHTS),
            series: vec![rows],
            train,
            valid,
            test,
            test_note: "15 % of the windows, drawn by the data seed".into(),
            fitted: stats.named(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{SequenceTask, Split};
    use crate::timeseries::tests::{oracle, shared_dataset};
    use candle_core::{DType, Device};

    /// `n` CRLF lines; every 9th day is an ozone day and every 5th has a missing first value.
    fn sample(n: usize) -> String {
        let mut s = String::new();
        for i in 0..n {
            s += &format!("{}/{}/1998", 1 + i / 28, 1 + i % 28);
            for k in 0..FEATURES {
                if k == 0 && i % 5 == 0 {
                    s += ",?";
                } else {
                    s += &format!(",{}", (i * (k + 1)) % 17);
                }
            }
            s += if i % 9 == 0 { ",1.0\r\n" } else { ",0.0\r\n" };
        }
        s
    }

    #[test]
    fn parses_crlf_lines_with_missing_values() {
        let r = parse(&sample(12), FILE).unwrap();
        assert_eq!((r.len(), r.width), (12, 72));
        assert!(r.row(0)[0].is_nan() && r.row(5)[0].is_nan());
        assert_eq!(
            (r.row(3)[0], r.row(3)[1], r.row(3)[71]),
            (3.0, 6.0, (3 * 72 % 17) as f32)
        );
        assert_eq!(&r.y[..3], &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_malformed_row_names_the_file_and_line() {
        let mut lines: Vec<String> = sample(4).lines().map(String::from).collect();
        lines[2] = lines[2].replacen(",", ",,", 1);
        let err = parse(&lines.join("\n"), "e.data").unwrap_err().to_string();
        assert!(
            err.contains("e.data: line 3: 75 fields, expected 74"),
            "{err}"
        );
        let text = sample(4).replace(",0.0\r\n", ",0.5\r\n");
        let err = parse(&text, "e.data").unwrap_err().to_string();
        assert!(
            err.contains("e.data: line 2") && err.contains("class"),
            "{err}"
        );
        let text = sample(4).replacen(",?", ",x", 1);
        let err = parse(&text, "e.data").unwrap_err().to_string();
        assert!(
            err.contains("e.data: line 1") && err.contains("field 2"),
            "{err}"
        );
    }

    fn small_task() -> TimeSeriesTask {
        TimeSeriesTask::ozone_from_rows(parse(&sample(300), FILE).unwrap(), 11).unwrap()
    }

    #[test]
    fn batches_carry_class_weights_and_missing_values_become_zero() {
        let task = small_task();
        // ⌊(300−32)/4⌋+1 = 68 windows: 6 validate, 10 test, 52 train.
        let n = (
            task.len(Split::Train),
            task.valid_len(),
            task.len(Split::Test),
        );
        assert_eq!(n, (52, 6, 10));
        assert_eq!((task.input_size(), task.output_size()), (72, 2));
        let b = task
            .batch(Split::Train, &[0, 3], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, 32, 72]);
        let y: Vec<Vec<u32>> = b.target.to_vec2().unwrap();
        let m: Vec<Vec<f32>> = b.mask.as_ref().unwrap().to_vec2().unwrap();
        for (yr, mr) in y.iter().zip(&m) {
            for (&c, &w) in yr.iter().zip(mr) {
                assert_eq!(w, CLASS_WEIGHTS[c as usize]);
            }
        }
        assert!(y.iter().flatten().any(|&c| c == 1));
        let s = &task.series[0];
        assert_eq!((s.row(0)[0], s.row(5)[0]), (0.0, 0.0));
        assert!(s.x.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn evaluation_scores_f1_of_ozone_days() {
        let task = small_task();
        let cpu = Device::Cpu;
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, false, false))
            .unwrap();
        assert_eq!((e.metric_name.as_str(), e.metric), ("test_f1", 1.0));
        assert_eq!(
            (e.values["test_accuracy"], e.values["valid_f1"]),
            (1.0, 1.0)
        );
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, true, false))
            .unwrap();
        assert_eq!((e.metric, e.values["test_accuracy"]), (0.0, 0.0));
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, false, true))
            .unwrap();
        assert_eq!((e.metric, e.values["test_accuracy"]), (0.0, 0.0));
        assert_eq!(e.values["test_recall"], 0.0);
        assert!(e.summary.contains("non-finite"), "{}", e.summary);
    }

    #[test]
    fn reads_the_real_file() {
        let Some(dir) = shared_dataset("ozone") else {
            return;
        };
        let task = TimeSeriesTask::ozone(&dir, 0).unwrap();
        let s = &task.series[0];
        assert_eq!((s.len(), s.width), (2_534, 72));
        assert_eq!(s.y.iter().sum::<f32>(), 160.0);
        // ⌊(2534−32)/4⌋+1 = 626 windows: 62 validate, 93 test, 471 train.
        let n = (
            task.len(Split::Train),
            task.valid_len(),
            task.len(Split::Test),
        );
        assert_eq!(n, (471, 62, 93));
        assert!(s.x.iter().all(|v| v.is_finite()));
        let raw = parse(&std::fs::read_to_string(dir.join(FILE)).unwrap(), FILE).unwrap();
        let lines_missing = (0..raw.len())
            .filter(|&i| raw.row(i).iter().any(|v| v.is_nan()))
            .count();
        assert_eq!(lines_missing, 687);
    }
}
