//! UCI Metro Interstate Traffic Volume (Hogue 2019) as the LTC paper uses it: the westbound I-94
//! traffic volume at every hour of a window of 32, from weather, holidays and time.
//!
//! - inputs (the paper's seven, in its order): a holiday flag (1 where `holiday` is not `None`),
//!   `temp`, `rain_1h`, `snow_1h`, `clouds_all`, the day of the week (Monday 0 … Sunday 6) and
//!   sin(π·hour/24) (0 at midnight, 1 at noon). All but the holiday flag are standardised with the
//!   statistics of the rows that training windows cover; the flag stays 0/1;
//! - target: `traffic_volume`, standardised the same way; metric: mean squared error on it;
//! - windows of 32 rows every 4 rows of the file as it comes (rows in time order; some hours
//!   repeat, once per weather description, and the series has gaps, as in the paper), split at
//!   random by the data seed into 75 % training, 10 % validation and 15 % test windows.
use std::path::Path;

use super::{fields, number, read_text, split_series, Rows, Scoring, Standardizer, TimeSeriesTask};
use crate::error::{Result, TaskError};

pub const FILE: &str = "Metro_Interstate_Traffic_Volume.csv";
/// The inputs, in the order of `Batch::x`.
pub const FEATURES: [&str; 7] = [
    "holiday",
    "temp",
    "rain_1h",
    "snow_1h",
    "clouds_all",
    "weekday",
    "hour_sin",
];
pub const STEPS: usize = 32;
pub const STRIDE: usize = 4;

/// The columns read, by name.
const COLUMNS: [&str; 7] = [
    "holiday",
    "temp",
    "rain_1h",
    "snow_1h",
    "clouds_all",
    "date_time",
    "traffic_volume",
];

/// Day of the week of a date of the proleptic Gregorian calendar, Monday 0 … Sunday 6.
pub fn weekday(year: i64, month: u32, day: u32) -> u32 {
    // Days since 1970-01-01 (a Thursday), by the usual civil-from-days inversion with March as
    // the first month of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days + 3).rem_euclid(7) as u32
}

/// `YYYY-MM-DD HH:MM:SS` as (year, month, day, hour).
fn date_time(s: &str) -> Option<(i64, u32, u32, u32)> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let hour: u32 = time.split(':').next()?.parse().ok()?;
    let ok =
        d.next().is_none() && (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24;
    ok.then_some((year, month, day, hour))
}

/// Parses the CSV (header first); `source` names it in errors. The targets are the raw volumes.
pub fn parse(text: &str, source: &str) -> Result<Rows> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let header = match lines.next() {
        Some((_, l)) => fields(l),
        None => return Err(TaskError::Data(format!("{source}: the file is empty"))),
    };
    let mut col = [0usize; 7];
    for (c, name) in col.iter_mut().zip(COLUMNS) {
        *c = header.iter().position(|h| *h == name).ok_or_else(|| {
            TaskError::Data(format!(
                "{source}: the header lacks the column {name} (it has {})",
                header.join(", ")
            ))
        })?;
    }
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
        if f.len() != header.len() {
            return Err(super::bad_row(
                source,
                n,
                format!("{} fields, expected {}", f.len(), header.len()),
            ));
        }
        let holiday = if f[col[0]] == "None" { 0.0 } else { 1.0 };
        rows.x.push(holiday);
        for (k, name) in COLUMNS.iter().enumerate().take(5).skip(1) {
            rows.x.push(number(f[col[k]], source, n, name)?);
        }
        let (y, m, d, h) = date_time(f[col[5]]).ok_or_else(|| {
            super::bad_row(
                source,
                n,
                format!("date_time `{}` is not YYYY-MM-DD HH:MM:SS", f[col[5]]),
            )
        })?;
        rows.x.push(weekday(y, m, d) as f32);
        rows.x
            .push((h as f64 * std::f64::consts::PI / 24.0).sin() as f32);
        rows.y.push(number(f[col[6]], source, n, "traffic_volume")?);
    }
    Ok(rows)
}

impl TimeSeriesTask {
    /// The traffic task from [`FILE`] in `dir`; `seed` draws the split of the windows.
    pub fn traffic(dir: &Path, seed: u64) -> Result<Self> {
        let (text, shown) = read_text(dir, FILE, "traffic")?;
        Self::traffic_from_rows(parse(&text, &shown)?, seed)
    }

    /// The traffic task from parsed rows (raw volumes as targets).
    pub fn traffic_from_rows(mut rows: Rows, seed: u64) -> Result<Self> {
        if rows.width != FEATURES.len() {
            return Err(TaskError::Data(format!(
                "traffic: rows of {} values, expected {}",
                rows.width,
                FEATURES.len()
            )));
        }
        let (train, valid, test, covered) =
            split_series("traffic", rows.len(), STEPS, STRIDE, seed)?;
        let mut stats = Standardizer::fit(&rows, |i| covered[i]);
        stats.mean[0] = 0.0;
        stats.std[0] = 1.0;
        stats.apply(&mut rows);
        let volume = Rows {
            width: 1,
            x: rows.y.clone(),
            y: vec![0.0; rows.len()],
        };
        let vs = Standardizer::fit(&volume, |i| covered[i]);
        for v in &mut rows.y {
            *v = ((*v as f64 - vs.mean[0]) / vs.std[0]) as f32;
        }
        let mut fitted = stats.named();
        fitted.push(("target_mean".into(), vs.mean));
        fitted.push(("target_std".into(), vs.std));
        Ok(Self {
            name: "traffic",
            steps: STEPS,
            width: FEATURES.len(),
            scoring: Scoring::Mse,
            class_weights: None,
            series: vec![rows],
            train,
            valid,
            test,
            test_note: "15 % of the windows, drawn by the data seed".into(),
            fitted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{SequenceTask, Split};
    use crate::timeseries::tests::{oracle, shared_dataset};
    use candle_core::{DType, Device};

    const HEADER: &str = "holiday,temp,rain_1h,snow_1h,clouds_all,weather_main,\
                          weather_description,date_time,traffic_volume";

    /// `n` hourly rows from 2012-10-02 00:00, a holiday at the first.
    fn sample(n: usize) -> String {
        let mut s = format!("{HEADER}\n");
        for i in 0..n {
            let holiday = if i == 0 { "Columbus Day" } else { "None" };
            let (day, hour) = (2 + i / 24, i % 24);
            s += &format!(
                "{holiday},{},0.0,0.0,{},Clouds,scattered clouds,2012-10-{day:02} {hour:02}:00:00,{}\n",
                280.0 + (i % 7) as f32,
                (i * 13) % 100,
                1000 + 37 * (i % 50)
            );
        }
        s
    }

    #[test]
    fn weekdays_match_the_calendar() {
        assert_eq!(weekday(2012, 10, 2), 1); // a Tuesday
        assert_eq!(weekday(2018, 9, 30), 6); // a Sunday
        assert_eq!(weekday(2000, 2, 29), 1);
        assert_eq!(weekday(1970, 1, 1), 3);
        assert_eq!(weekday(2024, 1, 1), 0);
    }

    #[test]
    fn parses_rows_into_the_seven_inputs() {
        let r = parse(&sample(30), FILE).unwrap();
        assert_eq!((r.len(), r.width), (30, 7));
        assert_eq!(r.row(0)[0], 1.0);
        assert_eq!(r.row(1)[0], 0.0);
        assert_eq!(r.row(0)[5], 1.0); // Tuesday
        assert_eq!(r.row(25)[5], 2.0); // Wednesday 01:00
        assert_eq!(r.row(12)[6], 1.0); // noon
        assert_eq!(r.row(0)[6], 0.0);
        assert_eq!((r.row(3)[1], r.row(3)[4], r.y[3]), (283.0, 39.0, 1111.0));
    }

    #[test]
    fn a_malformed_row_names_the_file_and_line() {
        let text = sample(5).replace("2012-10-02 03:00:00", "2012-13-02 03:00:00");
        let err = parse(&text, "m.csv").unwrap_err().to_string();
        assert!(
            err.contains("m.csv: line 5") && err.contains("date_time"),
            "{err}"
        );
        let text = sample(5) + "None,280.0,0.0\n";
        let err = parse(&text, "m.csv").unwrap_err().to_string();
        assert!(err.contains("m.csv: line 7: 3 fields, expected 9"), "{err}");
        let text = sample(3).replace(",1037\n", ",lots\n");
        let err = parse(&text, "m.csv").unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("traffic_volume"),
            "{err}"
        );
    }

    #[test]
    fn windows_split_and_statistics_come_from_training_rows() {
        let rows = parse(&sample(200), FILE).unwrap();
        // Windows overlap, so training windows cover nearly every row; take a seed whose
        // training windows leave the last rows out, so that the statistics must skip them.
        let task = (0..64)
            .map(|seed| TimeSeriesTask::traffic_from_rows(rows.clone(), seed).unwrap())
            .find(|t| t.train.iter().all(|w| w.start + STEPS < 200))
            .expect("a seed that leaves the last window out of training");
        // ⌊(200−32)/4⌋+1 = 43 windows: 4 validate, 6 test, 33 train.
        let n = (
            task.len(Split::Train),
            task.valid_len(),
            task.len(Split::Test),
        );
        assert_eq!(n, (33, 4, 6));
        assert_eq!((task.input_size(), task.output_size()), (7, 1));
        // Over the rows training windows cover, standardised columns have mean 0 and std 1.
        let s = &task.series[0];
        let mut covered = vec![false; s.len()];
        for w in &task.train {
            covered[w.start..w.start + STEPS].fill(true);
        }
        let rows: Vec<usize> = (0..s.len()).filter(|&i| covered[i]).collect();
        assert!(
            rows.len() < s.len(),
            "some rows lie outside training windows"
        );
        let moments = |v: Vec<f64>| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len() as f64;
            (m, var.sqrt())
        };
        let (m, sd) = moments(rows.iter().map(|&i| s.row(i)[1] as f64).collect());
        assert!(m.abs() < 1e-5 && (sd - 1.0).abs() < 1e-5, "temp {m} {sd}");
        let (m, sd) = moments(rows.iter().map(|&i| s.y[i] as f64).collect());
        assert!(m.abs() < 1e-5 && (sd - 1.0).abs() < 1e-5, "volume {m} {sd}");
        assert_eq!(s.row(0)[0], 1.0, "the holiday flag stays 0/1");
        let fitted = task.fitted_statistics();
        let names: Vec<&str> = fitted.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(
            names,
            ["feature_mean", "feature_std", "target_mean", "target_std"]
        );
        assert_eq!((fitted[0].1[0], fitted[1].1[0]), (0.0, 1.0));
        assert!(fitted[2].1[0] > 1000.0);
        let b = task
            .batch(Split::Train, &[0, 1], DType::F64, &Device::Cpu)
            .unwrap();
        assert_eq!(b.x.dims(), &[2, 32, 7]);
        assert_eq!(b.target.dims(), &[2, 32, 1]);
        assert_eq!(b.target.dtype(), DType::F64);
        assert!(b.mask.is_none());
    }

    #[test]
    fn evaluation_reports_negative_mse() {
        let task =
            TimeSeriesTask::traffic_from_rows(parse(&sample(200), FILE).unwrap(), 5).unwrap();
        let cpu = Device::Cpu;
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, false, false))
            .unwrap();
        assert_eq!(e.metric_name, "neg_test_mse");
        assert_eq!(
            (e.metric, e.values["test_mse"], e.values["valid_mse"]),
            (0.0, 0.0, 0.0)
        );
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, true, false))
            .unwrap();
        assert!((e.values["test_mse"] - 1.0).abs() < 1e-5 && (e.metric + 1.0).abs() < 1e-5);
        let e = task
            .evaluate(4, DType::F32, &cpu, &mut oracle(&task, false, true))
            .unwrap();
        assert_eq!(e.values["test_mse"], f64::INFINITY);
        assert_eq!(e.metric, f64::NEG_INFINITY);
        assert!(e.summary.contains("infinite"), "{}", e.summary);
    }

    #[test]
    fn reads_the_real_file() {
        let Some(dir) = shared_dataset("traffic") else {
            return;
        };
        let task = TimeSeriesTask::traffic(&dir, 0).unwrap();
        // 48,204 rows: ⌊(48204−32)/4⌋+1 = 12,044 windows, 1,204 validate and 1,806 test.
        assert_eq!(task.series[0].len(), 48_204);
        assert_eq!(task.valid_len(), 1_204);
        assert_eq!(task.len(Split::Test), 1_806);
        assert_eq!(task.len(Split::Train), 12_044 - 1_204 - 1_806);
        assert_eq!(task.input_size(), 7);
        let holidays = (0..task.series[0].len())
            .filter(|&i| task.series[0].row(i)[0] == 1.0)
            .count();
        assert_eq!(holidays, 48_204 - 48_143);
        assert!(task.series[0].x.iter().all(|v| v.is_finite()));
        let y = &task.series[0].y;
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        assert!(mean.abs() < 0.05, "the volume is standardised: mean {mean}");
    }
}
