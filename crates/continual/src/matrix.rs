//! The accuracy matrix of a continual-learning run and the metrics derived from it.
//!
//! Over a stream of `T` experiences, `R[i][j]` is the accuracy on (the test set of) experience
//! `j` measured right after training on experience `i`; `b_j` is the accuracy on experience `j`
//! of the model at its random initialisation, before any training. Indices are 0-based here:
//! experiences `0..T`, the last row after a complete run is `T−1`.
//!
//! All metrics derive from `R` and `b` (see the reference sheet, §3.3):
//!
//! | metric | formula (complete run, 0-based) | source |
//! |---|---|---|
//! | ACC, seen | `acc_seen(i) = 1/(i+1) · Σ_{j≤i} R[i][j]` | "average accuracy so far" curve |
//! | ACC, all | `acc_all(i) = 1/T · Σ_{j<T} R[i][j]` | Lopez-Paz & Ranzato 2017 (at `i = T−1`) |
//! | BWT | `1/(T−1) · Σ_{j<T−1} (R[T−1][j] − R[j][j])` | Lopez-Paz & Ranzato 2017 (GEM) |
//! | FWT | `1/(T−1) · Σ_{1≤j<T} (R[j−1][j] − b_j)` | Lopez-Paz & Ranzato 2017 (GEM) |
//! | forgetting (max) | `1/(T−1) · Σ_{j<T−1} (max_{l<T−1} R[l][j] − R[T−1][j])` | Chaudhry et al. 2018 (RWalk) |
//! | forgetting (first) | `1/(T−1) · Σ_{j<T−1} (R[j][j] − R[T−1][j])` | Avalanche's `Forgetting` |
//!
//! At `i = T−1` both ACC variants coincide. Avalanche's forgetting averaged over `j < T−1` is
//! exactly `−BWT`; the max-based one is never smaller than it (the max over `l` includes `l = j`).
//!
//! **Partial matrices.** A run stopped after `k < T` experiences has rows `0..k`. Every metric is
//! then computed over the rows present, as if the stream ended at the last row `L = k−1`:
//! BWT and both forgettings average over `j < L` with `R[L][·]` in place of `R[T−1][·]` (defined
//! when `k ≥ 2`); FWT averages over the experiences whose "before training on it" accuracy is
//! known, `1 ≤ j ≤ min(k, T−1)` (row `j−1` must exist; defined when `k ≥ 1`, `T ≥ 2` and every
//! `b_j` used is known); `acc_seen(i)` and `acc_all(i)` exist for `i < k`. A metric that cannot
//! be computed is `None`, never a NaN.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ContinualError, Result};

/// `R[i][j]` (`rows`) and `b_j` (`initial`) of one run; see the [module docs](self).
///
/// Stored in the run folder as `matrix.json`. Deserialisation checks the shape and the values
/// (as [`AccuracyMatrix::validate`]), so a loaded matrix is always consistent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMatrix")]
pub struct AccuracyMatrix {
    /// Number of experiences `T` of the stream.
    pub experiences: usize,
    /// `b_j`: accuracy on experience `j` before any training (random initialisation); `None`
    /// where it was not measured. Length `T`.
    pub initial: Vec<Option<f64>>,
    /// `rows[i][j]`: accuracy on experience `j` after training on experience `i`. At most `T`
    /// rows, each of length `T`; fewer rows for a run stopped early.
    pub rows: Vec<Vec<f64>>,
}

/// The serialised form, checked before it becomes an [`AccuracyMatrix`].
#[derive(Deserialize)]
struct RawMatrix {
    experiences: usize,
    #[serde(default)]
    initial: Vec<Option<f64>>,
    #[serde(default)]
    rows: Vec<Vec<f64>>,
}

impl TryFrom<RawMatrix> for AccuracyMatrix {
    type Error = ContinualError;

    fn try_from(raw: RawMatrix) -> Result<Self> {
        let initial = if raw.initial.is_empty() {
            vec![None; raw.experiences]
        } else {
            raw.initial
        };
        let m = AccuracyMatrix {
            experiences: raw.experiences,
            initial,
            rows: raw.rows,
        };
        m.validate()?;
        Ok(m)
    }
}

fn check_accuracy(what: &str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ContinualError::Config(format!(
            "accuracy matrix: {what} is {v}, not an accuracy in [0, 1]"
        )))
    }
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

impl AccuracyMatrix {
    /// An empty matrix for a stream of `experiences ≥ 1` experiences, with no `b_j` yet.
    pub fn new(experiences: usize) -> Result<Self> {
        if experiences == 0 {
            return Err(ContinualError::Config(
                "accuracy matrix: a stream needs at least one experience".into(),
            ));
        }
        Ok(AccuracyMatrix {
            experiences,
            initial: vec![None; experiences],
            rows: Vec::new(),
        })
    }

    /// Records `b_j`, the accuracy on experience `j` before any training.
    pub fn set_initial(&mut self, j: usize, accuracy: f64) -> Result<()> {
        if j >= self.experiences {
            return Err(ContinualError::Config(format!(
                "accuracy matrix: experience {j} out of range (the stream has {})",
                self.experiences
            )));
        }
        check_accuracy(&format!("b[{j}]"), accuracy)?;
        self.initial[j] = Some(accuracy);
        Ok(())
    }

    /// Records all `b_j` at once (one accuracy per experience).
    pub fn set_initial_row(&mut self, accuracies: &[f64]) -> Result<()> {
        if accuracies.len() != self.experiences {
            return Err(ContinualError::Config(format!(
                "accuracy matrix: {} initial accuracies for {} experiences",
                accuracies.len(),
                self.experiences
            )));
        }
        for (j, &a) in accuracies.iter().enumerate() {
            self.set_initial(j, a)?;
        }
        Ok(())
    }

    /// Appends the row measured after training on the next experience: one accuracy in `[0, 1]`
    /// per experience of the stream, in stream order. Fails when the row has the wrong length,
    /// holds a value that is not an accuracy, or when all `T` rows are already there.
    pub fn push_row(&mut self, row: Vec<f64>) -> Result<()> {
        let i = self.rows.len();
        if i >= self.experiences {
            return Err(ContinualError::Config(format!(
                "accuracy matrix: already complete with {} rows",
                self.experiences
            )));
        }
        if row.len() != self.experiences {
            return Err(ContinualError::Config(format!(
                "accuracy matrix: row {i} has {} accuracies, expected {}",
                row.len(),
                self.experiences
            )));
        }
        for (j, &v) in row.iter().enumerate() {
            check_accuracy(&format!("R[{i}][{j}]"), v)?;
        }
        self.rows.push(row);
        Ok(())
    }

    /// Checks shape and values: `T ≥ 1`, `initial` of length `T`, at most `T` rows of length `T`,
    /// every value a finite accuracy in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        let t = self.experiences;
        if t == 0 {
            return Err(ContinualError::Config(
                "accuracy matrix: a stream needs at least one experience".into(),
            ));
        }
        if self.initial.len() != t {
            return Err(ContinualError::Config(format!(
                "accuracy matrix: {} initial accuracies for {t} experiences",
                self.initial.len()
            )));
        }
        for (j, b) in self.initial.iter().enumerate() {
            if let Some(b) = b {
                check_accuracy(&format!("b[{j}]"), *b)?;
            }
        }
        if self.rows.len() > t {
            return Err(ContinualError::Config(format!(
                "accuracy matrix: {} rows for {t} experiences",
                self.rows.len()
            )));
        }
        for (i, row) in self.rows.iter().enumerate() {
            if row.len() != t {
                return Err(ContinualError::Config(format!(
                    "accuracy matrix: row {i} has {} accuracies, expected {t}",
                    row.len()
                )));
            }
            for (j, &v) in row.iter().enumerate() {
                check_accuracy(&format!("R[{i}][{j}]"), v)?;
            }
        }
        Ok(())
    }

    /// Number of rows present, i.e. experiences trained so far (`k`).
    pub fn trained(&self) -> usize {
        self.rows.len()
    }

    /// Whether all `T` rows are present.
    pub fn is_complete(&self) -> bool {
        self.rows.len() == self.experiences
    }

    /// `R[i][j]`, if row `i` is present.
    pub fn get(&self, i: usize, j: usize) -> Option<f64> {
        self.rows.get(i).and_then(|r| r.get(j)).copied()
    }

    /// Index `L = k−1` of the last row present.
    fn last(&self) -> Option<usize> {
        self.rows.len().checked_sub(1)
    }

    /// Average accuracy on the experiences seen so far, after training on experience `i`:
    /// `acc_seen(i) = 1/(i+1) · Σ_{j≤i} R[i][j]`. `None` if row `i` is absent.
    pub fn acc_seen(&self, i: usize) -> Option<f64> {
        let row = self.rows.get(i)?;
        mean(row[..=i].iter().copied())
    }

    /// Average accuracy on all `T` experiences after training on experience `i`:
    /// `acc_all(i) = 1/T · Σ_j R[i][j]`; at `i = T−1` this is Lopez-Paz & Ranzato's ACC.
    /// `None` if row `i` is absent.
    pub fn acc_all(&self, i: usize) -> Option<f64> {
        mean(self.rows.get(i)?.iter().copied())
    }

    /// `acc_seen(i)` for every row present: the "average accuracy so far" curve.
    pub fn acc_seen_curve(&self) -> Vec<f64> {
        (0..self.rows.len())
            .filter_map(|i| self.acc_seen(i))
            .collect()
    }

    /// `acc_all(i)` for every row present.
    pub fn acc_all_curve(&self) -> Vec<f64> {
        (0..self.rows.len())
            .filter_map(|i| self.acc_all(i))
            .collect()
    }

    /// Backward transfer (Lopez-Paz & Ranzato 2017, GEM):
    /// `BWT = 1/(T−1) · Σ_{j<T−1} (R[T−1][j] − R[j][j])`; negative when learning later
    /// experiences hurt earlier ones. Over a partial matrix, `L = k−1` replaces `T−1`.
    /// `None` with fewer than 2 rows.
    pub fn bwt(&self) -> Option<f64> {
        let l = self.last()?;
        mean((0..l).map(|j| self.rows[l][j] - self.rows[j][j]))
    }

    /// Forward transfer (Lopez-Paz & Ranzato 2017, GEM; also Avalanche's `ForwardTransfer`):
    /// `FWT = 1/(T−1) · Σ_{1≤j<T} (R[j−1][j] − b_j)`, how much training on the experiences before
    /// `j` helps on `j` compared with the random initialisation. Over a partial matrix of `k` rows
    /// the sum runs over `1 ≤ j ≤ min(k, T−1)` and is divided by its number of terms. `None` when
    /// `T < 2`, no row is present, or a `b_j` used is missing.
    pub fn fwt(&self) -> Option<f64> {
        let top = self.rows.len().min(self.experiences.saturating_sub(1));
        let mut terms = Vec::with_capacity(top);
        for j in 1..=top {
            terms.push(self.rows[j - 1][j] - self.initial[j]?);
        }
        mean(terms)
    }

    /// Chaudhry et al. 2018 (RWalk) forgetting of experience `j < L`:
    /// `f_j = max_{l<L} R[l][j] − R[L][j]`, with `L = T−1` (or `k−1` for a partial matrix).
    pub fn forgetting_chaudhry_of(&self, j: usize) -> Option<f64> {
        let l = self.last()?;
        if j >= l {
            return None;
        }
        let best = (0..l).map(|r| self.rows[r][j]).fold(f64::MIN, f64::max);
        Some(best - self.rows[l][j])
    }

    /// Avalanche's forgetting of experience `j < L`: `R[j][j] − R[L][j]`, the accuracy right
    /// after learning `j` minus the last one, with `L = T−1` (or `k−1` for a partial matrix).
    pub fn forgetting_avalanche_of(&self, j: usize) -> Option<f64> {
        let l = self.last()?;
        (j < l).then(|| self.rows[j][j] - self.rows[l][j])
    }

    /// Average forgetting, Chaudhry et al. 2018 (max-based):
    /// `1/(T−1) · Σ_{j<T−1} (max_{l<T−1} R[l][j] − R[T−1][j])`. Over a partial matrix `L = k−1`
    /// replaces `T−1`. `None` with fewer than 2 rows.
    pub fn forgetting_chaudhry(&self) -> Option<f64> {
        let l = self.last()?;
        mean((0..l).filter_map(|j| self.forgetting_chaudhry_of(j)))
    }

    /// Average forgetting, Avalanche's definition:
    /// `1/(T−1) · Σ_{j<T−1} (R[j][j] − R[T−1][j])`, equal to `−BWT`. Over a partial matrix
    /// `L = k−1` replaces `T−1`. `None` with fewer than 2 rows.
    pub fn forgetting_avalanche(&self) -> Option<f64> {
        let l = self.last()?;
        mean((0..l).filter_map(|j| self.forgetting_avalanche_of(j)))
    }

    /// All metrics at once, over the rows present.
    pub fn summary(&self) -> Summary {
        let last = self.last();
        Summary {
            experiences: self.experiences,
            trained: self.rows.len(),
            complete: self.is_complete(),
            acc_seen: last.and_then(|l| self.acc_seen(l)),
            acc_all: last.and_then(|l| self.acc_all(l)),
            acc_seen_curve: self.acc_seen_curve(),
            acc_all_curve: self.acc_all_curve(),
            bwt: self.bwt(),
            fwt: self.fwt(),
            forgetting_chaudhry: self.forgetting_chaudhry(),
            forgetting_avalanche: self.forgetting_avalanche(),
        }
    }

    /// The matrix as a markdown table (a "before training" row with the `b_j` when any is known,
    /// then one row "after exp i" per row present; columns are the experiences), followed by
    /// the [`Summary`] lines. Accuracies with 4 decimals, `–` where unknown.
    pub fn to_markdown(&self) -> String {
        let t = self.experiences;
        let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.4}"));
        let mut s = String::new();
        s.push('|');
        s.push_str(" |");
        for j in 0..t {
            s.push_str(&format!(" exp {j} |"));
        }
        s.push_str("\n|---|");
        for _ in 0..t {
            s.push_str("---:|");
        }
        s.push('\n');
        if self.initial.iter().any(Option::is_some) {
            s.push_str("| before training |");
            for b in &self.initial {
                s.push_str(&format!(" {} |", cell(*b)));
            }
            s.push('\n');
        }
        for (i, row) in self.rows.iter().enumerate() {
            s.push_str(&format!("| after exp {i} |"));
            for v in row {
                s.push_str(&format!(" {} |", cell(Some(*v))));
            }
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.summary().markdown_lines());
        s
    }

    /// Writes the matrix as pretty JSON to `path` (through a temporary file in the same folder,
    /// then a rename).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ContinualError::File {
            path: path.to_path_buf(),
            msg: format!("cannot serialise the accuracy matrix: {e}"),
        })?;
        write_atomic(path, text.as_bytes())
    }

    /// Reads a matrix written by [`save_json`](Self::save_json), checking it.
    pub fn load_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ContinualError::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ContinualError::File {
            path: path.to_path_buf(),
            msg: format!("not an accuracy matrix: {e}"),
        })
    }
}

/// Every metric of an [`AccuracyMatrix`], computed over the rows present (see the
/// [module docs](self) for the formulas and for partial matrices). `None`: not computable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// `T`.
    pub experiences: usize,
    /// `k`, the rows present.
    pub trained: usize,
    /// `k == T`.
    pub complete: bool,
    /// `acc_seen(k−1)`: mean accuracy on the experiences trained so far, after the last row.
    pub acc_seen: Option<f64>,
    /// `acc_all(k−1)`: mean accuracy on all `T` experiences after the last row (ACC of
    /// Lopez-Paz & Ranzato when complete; equal to `acc_seen` then).
    pub acc_all: Option<f64>,
    /// `acc_seen(i)` for `i < k`.
    pub acc_seen_curve: Vec<f64>,
    /// `acc_all(i)` for `i < k`.
    pub acc_all_curve: Vec<f64>,
    /// Backward transfer (Lopez-Paz & Ranzato 2017).
    pub bwt: Option<f64>,
    /// Forward transfer (Lopez-Paz & Ranzato 2017); needs the `b_j`.
    pub fwt: Option<f64>,
    /// Average max-based forgetting (Chaudhry et al. 2018).
    pub forgetting_chaudhry: Option<f64>,
    /// Average forgetting as Avalanche defines it (first accuracy after training minus last).
    pub forgetting_avalanche: Option<f64>,
}

impl Summary {
    /// The summary as markdown list lines (one metric a line, `n/a` where not computable).
    pub fn markdown_lines(&self) -> String {
        let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:+.4}"));
        let a = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
        let last = self
            .trained
            .checked_sub(1)
            .map_or_else(|| "–".to_string(), |l| l.to_string());
        let mut s = format!(
            "- experiences trained: {} of {}{}\n",
            self.trained,
            self.experiences,
            if self.complete {
                ""
            } else {
                " (partial run: metrics over the rows present)"
            }
        );
        s.push_str(&format!(
            "- ACC, seen experiences, after exp {last}: {}\n",
            a(self.acc_seen)
        ));
        s.push_str(&format!(
            "- ACC, all experiences, after exp {last}: {}\n",
            a(self.acc_all)
        ));
        let curve: Vec<String> = self
            .acc_seen_curve
            .iter()
            .map(|v| format!("{v:.4}"))
            .collect();
        s.push_str(&format!(
            "- ACC (seen) after each experience: {}\n",
            if curve.is_empty() {
                "–".to_string()
            } else {
                curve.join(", ")
            }
        ));
        s.push_str(&format!(
            "- BWT (Lopez-Paz & Ranzato 2017): {}\n",
            f(self.bwt)
        ));
        s.push_str(&format!(
            "- FWT (Lopez-Paz & Ranzato 2017): {}\n",
            f(self.fwt)
        ));
        s.push_str(&format!(
            "- forgetting, max-based (Chaudhry et al. 2018): {}\n",
            f(self.forgetting_chaudhry)
        ));
        s.push_str(&format!(
            "- forgetting, Avalanche (first − last): {}\n",
            f(self.forgetting_avalanche)
        ));
        s
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it onto `path`, so a reader
/// never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let res = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ContinualError::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("metric should be defined");
        assert!((a - b).abs() < EPS, "{a} != {b}");
    }

    /// R (rows: after exp i; columns: exp j) and b:
    ///
    /// ```text
    ///            exp0  exp1  exp2
    /// before     0.10  0.20  0.30
    /// after 0    0.80  0.30  0.20
    /// after 1    0.90  0.85  0.25
    /// after 2    0.60  0.70  0.95
    /// ```
    ///
    /// Exp 0 gains after exp 1 (0.80 → 0.90) before it is forgotten, so the two forgetting
    /// definitions differ.
    fn example() -> AccuracyMatrix {
        let mut m = AccuracyMatrix::new(3).unwrap();
        m.set_initial_row(&[0.10, 0.20, 0.30]).unwrap();
        m.push_row(vec![0.80, 0.30, 0.20]).unwrap();
        m.push_row(vec![0.90, 0.85, 0.25]).unwrap();
        m.push_row(vec![0.60, 0.70, 0.95]).unwrap();
        m
    }

    #[test]
    fn matrix_metrics_by_hand() {
        let m = example();
        assert!(m.is_complete());
        // ACC over the seen experiences.
        close(m.acc_seen(0), 0.80);
        close(m.acc_seen(1), (0.90 + 0.85) / 2.0); // 0.875
        close(m.acc_seen(2), (0.60 + 0.70 + 0.95) / 3.0); // 0.75
        assert_eq!(m.acc_seen(3), None);
        // ACC over all experiences.
        close(m.acc_all(0), (0.80 + 0.30 + 0.20) / 3.0);
        close(m.acc_all(1), (0.90 + 0.85 + 0.25) / 3.0);
        close(m.acc_all(2), 0.75);
        // BWT = ((0.60 − 0.80) + (0.70 − 0.85)) / 2 = −0.175.
        close(m.bwt(), ((0.60 - 0.80) + (0.70 - 0.85)) / 2.0);
        close(m.bwt(), -0.175);
        // FWT = ((R[0][1] − b1) + (R[1][2] − b2)) / 2 = ((0.30 − 0.20) + (0.25 − 0.30)) / 2.
        close(m.fwt(), 0.025);
        // Chaudhry: f0 = max(0.80, 0.90) − 0.60 = 0.30, f1 = max(0.30, 0.85) − 0.70 = 0.15.
        close(m.forgetting_chaudhry_of(0), 0.30);
        close(m.forgetting_chaudhry_of(1), 0.15);
        assert_eq!(m.forgetting_chaudhry_of(2), None);
        close(m.forgetting_chaudhry(), 0.225);
        // Avalanche: f0 = 0.80 − 0.60 = 0.20, f1 = 0.85 − 0.70 = 0.15.
        close(m.forgetting_avalanche_of(0), 0.20);
        close(m.forgetting_avalanche(), 0.175);
        // The two definitions differ here; Avalanche's equals −BWT.
        assert!(m.forgetting_chaudhry().unwrap() > m.forgetting_avalanche().unwrap() + 0.01);
        close(m.forgetting_avalanche(), -m.bwt().unwrap());

        let s = m.summary();
        assert_eq!((s.experiences, s.trained, s.complete), (3, 3, true));
        close(s.acc_seen, 0.75);
        close(s.acc_all, 0.75);
        assert_eq!(s.acc_seen_curve.len(), 3);
        close(Some(s.acc_seen_curve[1]), 0.875);
        close(s.forgetting_chaudhry, 0.225);
    }

    #[test]
    fn matrix_partial_rows() {
        let full = example();
        // Two rows of three: the stream is taken to end at L = 1.
        let mut m = AccuracyMatrix::new(3).unwrap();
        m.initial = full.initial.clone();
        m.push_row(full.rows[0].clone()).unwrap();
        m.push_row(full.rows[1].clone()).unwrap();
        assert!(!m.is_complete());
        close(m.acc_seen(1), 0.875);
        assert_eq!(m.acc_seen(2), None);
        // BWT = R[1][0] − R[0][0] = 0.10 (positive: exp 1 helped exp 0).
        close(m.bwt(), 0.10);
        // FWT over j = 1..=min(2, 2): same terms as the full matrix.
        close(m.fwt(), 0.025);
        // Forgetting of exp 0 only: 0.80 − 0.90 with either definition.
        close(m.forgetting_chaudhry(), -0.10);
        close(m.forgetting_avalanche(), -0.10);
        let s = m.summary();
        assert_eq!((s.trained, s.complete), (2, false));
        close(s.acc_all, (0.90 + 0.85 + 0.25) / 3.0);
        assert!(m.to_markdown().contains("partial run"));

        // One row: FWT from R[0][1] − b1 only; nothing backward.
        m.rows.truncate(1);
        close(m.fwt(), 0.10);
        assert_eq!(m.bwt(), None);
        assert_eq!(m.forgetting_chaudhry(), None);
        assert_eq!(m.forgetting_avalanche(), None);
        close(m.summary().acc_seen, 0.80);

        // No row: nothing at all.
        m.rows.clear();
        let s = m.summary();
        assert_eq!(
            (s.acc_seen, s.acc_all, s.bwt, s.fwt, s.forgetting_chaudhry),
            (None, None, None, None, None)
        );
        assert!(s.acc_seen_curve.is_empty());
    }

    #[test]
    fn matrix_missing_initial_and_single_experience() {
        let mut m = example();
        m.initial[2] = None;
        assert_eq!(m.fwt(), None);
        // b_0 is never used by FWT.
        let mut m = example();
        m.initial[0] = None;
        close(m.fwt(), 0.025);

        let mut one = AccuracyMatrix::new(1).unwrap();
        one.set_initial(0, 0.5).unwrap();
        one.push_row(vec![0.9]).unwrap();
        close(one.acc_seen(0), 0.9);
        assert_eq!(
            (one.bwt(), one.fwt(), one.forgetting_avalanche()),
            (None, None, None)
        );
    }

    #[test]
    fn matrix_push_row_checks() {
        let mut m = AccuracyMatrix::new(2).unwrap();
        assert!(m.push_row(vec![0.5]).is_err());
        assert!(m.push_row(vec![0.5, 1.5]).is_err());
        assert!(m.push_row(vec![0.5, f64::NAN]).is_err());
        assert!(m.set_initial(2, 0.5).is_err());
        assert!(m.set_initial(0, -0.1).is_err());
        m.push_row(vec![0.5, 0.1]).unwrap();
        m.push_row(vec![0.4, 0.9]).unwrap();
        assert!(m.push_row(vec![0.4, 0.9]).is_err());
        assert!(AccuracyMatrix::new(0).is_err());
    }

    #[test]
    fn matrix_serde_round_trip() {
        let m = example();
        let text = serde_json::to_string(&m).unwrap();
        let back: AccuracyMatrix = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);

        // Partial, with unknown b_j: null in JSON.
        let mut p = AccuracyMatrix::new(3).unwrap();
        p.set_initial(1, 0.25).unwrap();
        p.push_row(vec![0.5, 0.25, 0.125]).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains("null"));
        let back: AccuracyMatrix = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);

        // Checked on the way in.
        let bad = r#"{"experiences": 2, "initial": [null, null], "rows": [[0.5]]}"#;
        assert!(serde_json::from_str::<AccuracyMatrix>(bad).is_err());
        let bad = r#"{"experiences": 1, "rows": [[2.0]]}"#;
        assert!(serde_json::from_str::<AccuracyMatrix>(bad).is_err());
        // `initial` may be left out.
        let ok = r#"{"experiences": 2, "rows": [[0.5, 0.25]]}"#;
        let m: AccuracyMatrix = serde_json::from_str(ok).unwrap();
        assert_eq!(m.initial, vec![None, None]);

        // serde_json (without its `float_roundtrip` feature) may read a float back one ulp off.
        let s = example().summary();
        let back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(
            (back.experiences, back.trained, back.complete),
            (3, 3, true)
        );
        let pairs = [
            (back.acc_seen, s.acc_seen),
            (back.acc_all, s.acc_all),
            (back.bwt, s.bwt),
            (back.fwt, s.fwt),
            (back.forgetting_chaudhry, s.forgetting_chaudhry),
            (back.forgetting_avalanche, s.forgetting_avalanche),
        ];
        for (a, b) in pairs {
            close(a, b.unwrap());
        }
        assert_eq!(back.acc_seen_curve.len(), s.acc_seen_curve.len());
        for (a, b) in back.acc_all_curve.iter().zip(&s.acc_all_curve) {
            close(Some(*a), *b);
        }
        let partial = p.summary();
        let back: Summary =
            serde_json::from_str(&serde_json::to_string(&partial).unwrap()).unwrap();
        // One row: no BWT; FWT = R[0][1] − b_1 = 0.25 − 0.25.
        assert_eq!(
            (back.bwt, back.fwt, back.complete),
            (None, Some(0.0), false)
        );

        // Through a file.
        let dir = std::env::temp_dir().join(format!("remanence-matrix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("matrix.json");
        example().save_json(&path).unwrap();
        assert_eq!(AccuracyMatrix::load_json(&path).unwrap(), example());
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn matrix_markdown() {
        let md = example().to_markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| | exp 0 | exp 1 | exp 2 |");
        assert_eq!(lines[1], "|---|---:|---:|---:|");
        assert_eq!(lines[2], "| before training | 0.1000 | 0.2000 | 0.3000 |");
        assert_eq!(lines[3], "| after exp 0 | 0.8000 | 0.3000 | 0.2000 |");
        assert_eq!(lines[5], "| after exp 2 | 0.6000 | 0.7000 | 0.9500 |");
        assert!(md.contains("BWT (Lopez-Paz & Ranzato 2017): -0.1750"));
        assert!(md.contains("FWT (Lopez-Paz & Ranzato 2017): +0.0250"));
        assert!(md.contains("max-based (Chaudhry et al. 2018): +0.2250"));
        assert!(md.contains("Avalanche (first − last): +0.1750"));
        assert!(md.contains("ACC (seen) after each experience: 0.8000, 0.8750, 0.7500"));
        // No b_j: no "before training" row.
        let mut m = example();
        m.initial = vec![None; 3];
        assert!(!m.to_markdown().contains("before training"));
        assert!(m
            .to_markdown()
            .contains("FWT (Lopez-Paz & Ranzato 2017): n/a"));
    }
}
