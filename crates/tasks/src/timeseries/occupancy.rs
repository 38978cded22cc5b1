//! UCI Occupancy Detection (Candanedo & Feldheim 2016) as the LTC paper uses it: is the office
//! occupied, at every minute of a window of 16?
//!
//! - inputs: Temperature, Humidity, Light, CO2 and HumidityRatio, standardised with the mean and
//!   standard deviation of `datatraining.txt` (the test files do not contribute);
//! - training windows: every window of 16 rows of `datatraining.txt` (stride 1), 10 % of them
//!   (drawn by the data seed) held out for validation, as in the paper's code;
//! - test windows: every 8th window of 16 rows of `datatest.txt` and of `datatest2.txt`, cut from
//!   each file separately;
//! - target: the `Occupancy` class (0/1) at every step; metric: accuracy over all test steps.
//!
//! The files are R `write.table` output: a header of 7 quoted names, then rows of 8 fields (a
//! quoted row id first), the date quoted in some files and not in others. Columns are found by
//! name; rows without the row id are accepted too.
use std::path::Path;

use super::{
    binary_class, fields, number, read_text, split_indices, window_starts, Rows, Scoring,
    Standardizer, TimeSeriesTask, Window, VALID_FRACTION,
};
use crate::error::{Result, TaskError};

/// The training file, then the two test files.
pub const FILES: [&str; 3] = ["datatraining.txt", "datatest.txt", "datatest2.txt"];
/// The input columns, in the order of `Batch::x`.
pub const FEATURES: [&str; 5] = ["Temperature", "Humidity", "Light", "CO2", "HumidityRatio"];
/// The class column.
pub const LABEL: &str = "Occupancy";
pub const STEPS: usize = 16;
pub const TRAIN_STRIDE: usize = 1;
pub const TEST_STRIDE: usize = 8;

/// Parses one occupancy file; `source` names it in errors.
pub fn parse(text: &str, source: &str) -> Result<Rows> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let header: Vec<&str> = loop {
        match lines.next() {
            Some((_, l)) if l.trim().is_empty() => continue,
            Some((_, l)) => break fields(l),
            None => return Err(TaskError::Data(format!("{source}: the file is empty"))),
        }
    };
    let column = |name: &str| -> Result<usize> {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            TaskError::Data(format!(
                "{source}: the header lacks the column {name} (it has {})",
                header.join(", ")
            ))
        })
    };
    let cols: Vec<usize> = FEATURES.iter().map(|f| column(f)).collect::<Result<_>>()?;
    let label = column(LABEL)?;
    let mut rows = Rows {
        width: FEATURES.len(),
        x: Vec::new(),
        y: Vec::new(),
    };
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f = fields(line);
        // R writes the row names as an extra first field without a header name.
        let skip = if f.len() == header.len() + 1 {
            1
        } else if f.len() == header.len() {
            0
        } else {
            return Err(super::bad_row(
                source,
                n,
                format!(
                    "{} fields, expected {} (a row id and the {} columns of the header)",
                    f.len(),
                    header.len() + 1,
                    header.len()
                ),
            ));
        };
        for (&c, name) in cols.iter().zip(FEATURES) {
            rows.x.push(number(f[c + skip], source, n, name)?);
        }
        rows.y
            .push(binary_class(f[label + skip], source, n, LABEL)?);
    }
    Ok(rows)
}

impl TimeSeriesTask {
    /// The occupancy task from the three files in `dir` (see [`FILES`]); `seed` draws the
    /// validation windows.
    pub fn occupancy(dir: &Path, seed: u64) -> Result<Self> {
        let mut parsed = Vec::with_capacity(3);
        for file in FILES {
            let (text, shown) = read_text(dir, file, "occupancy")?;
            parsed.push(parse(&text, &shown)?);
        }
        let train = parsed.remove(0);
        Self::occupancy_from_rows(train, parsed, seed)
    }

    /// The occupancy task from parsed rows: the training file and the test files, in order.
    pub fn occupancy_from_rows(train: Rows, tests: Vec<Rows>, seed: u64) -> Result<Self> {
        let mut series = Vec::with_capacity(1 + tests.len());
        series.push(train);
        series.extend(tests);
        for s in &series {
            if s.width != FEATURES.len() {
                return Err(TaskError::Data(format!(
                    "occupancy: rows of {} values, expected {}",
                    s.width,
                    FEATURES.len()
                )));
            }
        }
        let stats = Standardizer::fit(&series[0], |_| true);
        for s in &mut series {
            stats.apply(s);
        }
        let starts = window_starts(series[0].len(), STEPS, TRAIN_STRIDE);
        if starts.len() < 10 {
            return Err(TaskError::Data(format!(
                "occupancy: the training file has {} rows, too few for windows of {STEPS}",
                series[0].len()
            )));
        }
        let (tr, va, _) = split_indices(starts.len(), VALID_FRACTION, 0.0, seed);
        let pick = |ix: Vec<usize>| -> Vec<Window> {
            ix.into_iter()
                .map(|i| Window {
                    series: 0,
                    start: starts[i],
                })
                .collect()
        };
        let mut test = Vec::new();
        for (k, s) in series.iter().enumerate().skip(1) {
            let w = window_starts(s.len(), STEPS, TEST_STRIDE);
            if w.is_empty() {
                return Err(TaskError::Data(format!(
                    "occupancy: test file {k} has {} rows, fewer than a window of {STEPS}",
                    s.len()
                )));
            }
            test.extend(w.into_iter().map(|start| Window { series: k, start }));
        }
        let test_note = format!(
            "every {TEST_STRIDE}th window of each of the {} test files",
            series.len() - 1
        );
        Ok(Self {
            name: "occupancy",
            steps: STEPS,
            width: FEATURES.len(),
            scoring: Scoring::Accuracy,
            class_weights: None,
            train: pick(tr),
            valid: pick(va),
            test,
            series,
            test_note,
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

    /// A file of `n` rows in R's layout (`quote_date` as in datatraining.txt) whose readings are
    /// `base + row` and whose label alternates every 5 rows.
    fn sample(n: usize, base: f32, quote_date: bool) -> String {
        let mut s = String::from(
            "\"date\",\"Temperature\",\"Humidity\",\"Light\",\"CO2\",\"HumidityRatio\",\"Occupancy\"\n",
        );
        for i in 0..n {
            let d = format!("2015-02-04 17:{:02}:00", i % 60);
            let d = if quote_date { format!("\"{d}\"") } else { d };
            let v = base + i as f32;
            s += &format!(
                "\"{}\",{d},{v},{},{},{},{},{}\n",
                i + 1,
                v + 1.0,
                v + 2.0,
                v + 3.0,
                v / 1000.0,
                (i / 5) % 2
            );
        }
        s
    }

    #[test]
    fn parses_r_layout_with_and_without_quoted_dates() {
        let a = parse(&sample(3, 20.0, true), "a.txt").unwrap();
        let b = parse(&sample(3, 20.0, false), "b.txt").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.row(1), &[21.0, 22.0, 23.0, 24.0, 0.021]);
        // Rows without R's row id parse too.
        let plain = "date,Temperature,Humidity,Light,CO2,HumidityRatio,Occupancy\n\
                     2015-02-04 17:51:00,23.18,27.272,426,721.25,0.0047,1\n";
        let p = parse(plain, "plain.txt").unwrap();
        assert_eq!((p.row(0)[3], p.y[0]), (721.25, 1.0));
    }

    #[test]
    fn a_malformed_row_names_the_file_and_line() {
        let mut text = sample(4, 20.0, true);
        text += "\"5\",\"2015-02-04 18:00:00\",23.1,27.2,426\n";
        let err = parse(&text, "datatraining.txt").unwrap_err().to_string();
        assert!(err.contains("datatraining.txt: line 6"), "{err}");
        assert!(err.contains("5 fields"), "{err}");
        let text = sample(2, 20.0, true).replace(",0.021,", ",abc,");
        let err = parse(&text, "x.txt").unwrap_err().to_string();
        assert!(
            err.contains("x.txt: line 3") && err.contains("HumidityRatio"),
            "{err}"
        );
        let text = sample(2, 20.0, true).replace(",0\n", ",2\n");
        let err = parse(&text, "y.txt").unwrap_err().to_string();
        assert!(
            err.contains("y.txt: line 2") && err.contains("Occupancy"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_names_the_file_and_folder() {
        let dir = std::env::temp_dir().join(format!("remanence-occ-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("datatraining.txt"), sample(40, 20.0, true)).unwrap();
        let err = TimeSeriesTask::occupancy(&dir, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("datatest.txt"), "{err}");
        assert!(err.contains(&dir.display().to_string()), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn small_task() -> TimeSeriesTask {
        let train = parse(&sample(116, 20.0, true), "train").unwrap();
        let t1 = parse(&sample(40, 500.0, true), "t1").unwrap();
        let t2 = parse(&sample(33, -80.0, false), "t2").unwrap();
        TimeSeriesTask::occupancy_from_rows(train, vec![t1, t2], 3).unwrap()
    }

    #[test]
    fn windows_and_standardisation_use_the_training_file() {
        let task = small_task();
        // 116 rows, stride 1: 101 windows, 10 of them validate.
        assert_eq!((task.len(Split::Train), task.valid_len()), (91, 10));
        // Test: ⌊(40−16)/8⌋+1 = 4 and ⌊(33−16)/8⌋+1 = 3 windows.
        assert_eq!(task.len(Split::Test), 7);
        assert_eq!((task.input_size(), task.output_size()), (5, 2));
        // Training temperatures are 20..=135: mean 77.5, population std √((116²−1)/12).
        let (mean, std) = (77.5f64, ((116.0f64 * 116.0 - 1.0) / 12.0).sqrt());
        let fitted = task.fitted_statistics();
        assert_eq!(fitted[0].0, "feature_mean");
        assert_eq!(fitted[0].1[0], mean);
        assert!((fitted[1].1[0] - std).abs() < 1e-9);
        let b = task
            .batch(Split::Test, &[0, 4], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, 16, 5]);
        assert_eq!(b.target.dims(), &[2, 16]);
        assert!(b.mask.is_none());
        let x: Vec<Vec<Vec<f32>>> = b.x.to_vec3().unwrap();
        let want0 = ((500.0 - mean) / std) as f32;
        let want1 = ((-80.0 - mean) / std) as f32;
        assert!(
            (x[0][0][0] - want0).abs() < 1e-5,
            "{} vs {want0}",
            x[0][0][0]
        );
        assert!(
            (x[1][0][0] - want1).abs() < 1e-5,
            "{} vs {want1}",
            x[1][0][0]
        );
        let y: Vec<Vec<u32>> = b.target.to_vec2().unwrap();
        assert_eq!(&y[0][..6], &[0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn evaluation_counts_every_test_step() {
        let task = small_task();
        let cpu = Device::Cpu;
        let e = task
            .evaluate(3, DType::F32, &cpu, &mut oracle(&task, false, false))
            .unwrap();
        assert_eq!((e.metric_name.as_str(), e.metric), ("test_accuracy", 1.0));
        assert_eq!(e.values["valid_accuracy"], 1.0);
        assert!(
            e.summary.contains("112 steps of 7 16-step windows"),
            "{}",
            e.summary
        );
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, true, false))
            .unwrap();
        assert_eq!(e.metric, 0.0);
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, false, true))
            .unwrap();
        assert_eq!(e.metric, 0.0, "NaN outputs are never right");
        assert!(e.summary.contains("non-finite"), "{}", e.summary);
    }

    #[test]
    fn reads_the_real_files() {
        let Some(dir) = shared_dataset("occupancy") else {
            return;
        };
        let task = TimeSeriesTask::occupancy(&dir, 0).unwrap();
        // 8,143 training rows give 8,128 windows; 812 validate.
        assert_eq!(task.len(Split::Train) + task.valid_len(), 8_128);
        assert_eq!(task.valid_len(), 812);
        // ⌊(2665−16)/8⌋+1 = 332 and ⌊(9752−16)/8⌋+1 = 1218.
        assert_eq!(task.len(Split::Test), 332 + 1_218);
        assert_eq!(task.input_size(), FEATURES.len());
        let occupied: f32 = task.series[0].y.iter().sum();
        assert_eq!(occupied, 1_729.0);
        let b = task
            .batch(Split::Train, &[0, 1, 2], DType::F32, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[3, 16, 5]);
    }
}
