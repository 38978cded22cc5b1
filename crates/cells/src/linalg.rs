//! Small dense linear algebra in f64: a row-major matrix, the ridge solve by Cholesky with an
//! automatic raise of λ on a singular system, and the spectral radius and largest singular
//! value of a square matrix.
//!
//! The matrices here are small (a state of at most a few thousand values): the products go
//! through the `gemm` crate (as the fused kernels' do), the factorisations are plain loops. Users: the echo-state reservoir's scaling to a
//! spectral radius, ridge read-outs (the trainer's closed-form fit), and the probes.
use serde::Serialize;

use crate::kernels::cpu::gemm::{self, View};

/// Errors of the dense linear algebra.
#[derive(Debug, thiserror::Error)]
pub enum LinalgError {
    /// Shapes that do not fit, an empty matrix, a negative λ.
    #[error("{0}")]
    Invalid(String),
    /// NaN or ±inf in a matrix.
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// The ridge system stayed singular however much the regularisation was raised.
    #[error(
        "the ridge system ({size}×{size}) stayed singular after raising λ {attempts} times to \
         {lambda:e}; the features are degenerate (constant, duplicated or non-finite)"
    )]
    Singular {
        size: usize,
        lambda: f64,
        attempts: usize,
    },
}

pub type Result<T> = std::result::Result<T, LinalgError>;

fn invalid(msg: impl Into<String>) -> LinalgError {
    LinalgError::Invalid(msg.into())
}

/// A dense row-major matrix of f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn identity(n: usize) -> Self {
        let mut m = Self::zeros(n, n);
        for i in 0..n {
            m[(i, i)] = 1.0;
        }
        m
    }

    /// A matrix over `data` in row-major order; `data.len()` must be `rows · cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if data.len() != rows * cols {
            return Err(invalid(format!(
                "a {rows}×{cols} matrix needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }

    /// A matrix from its rows, which must all have the same length.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let cols = rows.first().map_or(0, Vec::len);
        if let Some(i) = rows.iter().position(|r| r.len() != cols) {
            return Err(invalid(format!(
                "row {i} has {} values, row 0 has {cols}",
                rows[i].len()
            )));
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            data: rows.concat(),
        })
    }

    /// The diagonal matrix of `d`.
    pub fn diag(d: &[f64]) -> Self {
        let mut m = Self::zeros(d.len(), d.len());
        for (i, &v) in d.iter().enumerate() {
            m[(i, i)] = v;
        }
        m
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn is_square(&self) -> bool {
        self.rows == self.cols
    }

    /// The values in row-major order.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Rows `start..start + len` as a new matrix.
    pub fn row_range(&self, start: usize, len: usize) -> Mat {
        Mat {
            rows: len,
            cols: self.cols,
            data: self.data[start * self.cols..(start + len) * self.cols].to_vec(),
        }
    }

    pub fn transpose(&self) -> Mat {
        let mut t = Mat::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t[(j, i)] = self[(i, j)];
            }
        }
        t
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Mat) -> Result<Mat> {
        if self.cols != other.rows {
            return Err(invalid(format!(
                "cannot multiply a {}×{} matrix by a {}×{} one",
                self.rows, self.cols, other.rows, other.cols
            )));
        }
        let mut out = Mat::zeros(self.rows, other.cols);
        gemm::matmul(
            self.rows,
            other.cols,
            self.cols,
            &mut out.data,
            other.cols,
            false,
            View::rows(&self.data, self.cols),
            View::rows(&other.data, other.cols),
        );
        Ok(out)
    }

    /// `selfᵀ · other` without forming the transpose (both with the same number of rows).
    pub fn t_matmul(&self, other: &Mat) -> Result<Mat> {
        if self.rows != other.rows {
            return Err(invalid(format!(
                "cannot form AᵀB of a {}×{} A and a {}×{} B",
                self.rows, self.cols, other.rows, other.cols
            )));
        }
        let mut out = Mat::zeros(self.cols, other.cols);
        gemm::matmul(
            self.cols,
            other.cols,
            self.rows,
            &mut out.data,
            other.cols,
            false,
            View::transposed(&self.data, self.cols),
            View::rows(&other.data, other.cols),
        );
        Ok(out)
    }

    /// The Frobenius norm.
    pub fn frobenius(&self) -> f64 {
        self.data.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    pub fn trace(&self) -> f64 {
        (0..self.rows.min(self.cols)).map(|i| self[(i, i)]).sum()
    }

    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }

    /// Every value multiplied by `s`.
    pub fn scaled(&self, s: f64) -> Mat {
        Mat {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|v| v * s).collect(),
        }
    }

    /// The largest absolute difference to `other` (same shape), for tests and checks.
    pub fn max_abs_diff(&self, other: &Mat) -> f64 {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols));
        self.data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }
}

impl std::ops::Index<(usize, usize)> for Mat {
    type Output = f64;
    fn index(&self, (i, j): (usize, usize)) -> &f64 {
        &self.data[i * self.cols + j]
    }
}

impl std::ops::IndexMut<(usize, usize)> for Mat {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f64 {
        &mut self.data[i * self.cols + j]
    }
}

/// Where a Cholesky factorisation met a pivot that is not clearly positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotPositive {
    /// Row of the failing pivot.
    pub index: usize,
    /// Its value before the square root.
    pub pivot: f64,
}

/// The lower Cholesky factor L (A = L Lᵀ) of a symmetric matrix `a`. A pivot at or below
/// `n · ε · max|a_ii|` counts as zero: the matrix is singular (or indefinite) to working
/// precision.
pub fn cholesky(a: &Mat) -> std::result::Result<Mat, NotPositive> {
    assert!(a.is_square(), "cholesky of a non-square matrix");
    let n = a.rows;
    let scale = (0..n).map(|i| a[(i, i)].abs()).fold(0.0, f64::max);
    let tiny = (n.max(1) as f64) * f64::EPSILON * scale;
    let mut l = Mat::zeros(n, n);
    for j in 0..n {
        let mut d = a[(j, j)];
        for k in 0..j {
            d -= l[(j, k)] * l[(j, k)];
        }
        if !(d > tiny) {
            return Err(NotPositive { index: j, pivot: d });
        }
        let djj = d.sqrt();
        l[(j, j)] = djj;
        for i in j + 1..n {
            let mut s = a[(i, j)];
            for k in 0..j {
                s -= l[(i, k)] * l[(j, k)];
            }
            l[(i, j)] = s / djj;
        }
    }
    Ok(l)
}

/// Solves `L Lᵀ X = B` for X given the Cholesky factor `l`.
pub fn cholesky_solve(l: &Mat, b: &Mat) -> Mat {
    let n = l.rows;
    assert_eq!(b.rows, n);
    let mut x = b.clone();
    for c in 0..b.cols {
        // Forward: L y = b.
        for i in 0..n {
            let mut s = x[(i, c)];
            for k in 0..i {
                s -= l[(i, k)] * x[(k, c)];
            }
            x[(i, c)] = s / l[(i, i)];
        }
        // Backward: Lᵀ x = y.
        for i in (0..n).rev() {
            let mut s = x[(i, c)];
            for k in i + 1..n {
                s -= l[(k, i)] * x[(k, c)];
            }
            x[(i, c)] = s / l[(i, i)];
        }
    }
    x
}

/// One raise of λ after a singular ridge system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RidgeRaise {
    /// λ at which the factorisation failed.
    pub lambda: f64,
    /// Row of the failing pivot and its value.
    pub pivot_index: usize,
    pub pivot: f64,
}

/// The solution of a ridge system and the λ it took.
#[derive(Debug, Clone)]
pub struct RidgeSolution {
    /// W, solving (G + λI) W = R.
    pub weights: Mat,
    /// The λ of the solve (the one asked for unless the system was singular).
    pub lambda: f64,
    /// Every failed attempt, in order (empty when the first λ worked).
    pub raises: Vec<RidgeRaise>,
}

/// Most raises of λ before a ridge system counts as hopeless.
pub const MAX_RAISES: usize = 20;

/// Solves the ridge system `(G + λ I) W = R` for a symmetric positive semi-definite `G`
/// (n × n) and right-hand sides `R` (n × k) by Cholesky. When the factorisation finds a zero
/// pivot (a singular system: collinear or constant features, λ = 0), λ is raised to
/// `max(10 λ, 1e-12 · tr(G)/n)` and the solve tried again, at most [`MAX_RAISES`] times; the
/// raises are returned so that the caller can report them.
pub fn ridge_solve(gram: &Mat, rhs: &Mat, lambda: f64) -> Result<RidgeSolution> {
    if !gram.is_square() || gram.rows != rhs.rows {
        return Err(invalid(format!(
            "ridge system: a {}×{} Gram matrix and {}×{} right-hand sides",
            gram.rows, gram.cols, rhs.rows, rhs.cols
        )));
    }
    if !(lambda >= 0.0 && lambda.is_finite()) {
        return Err(invalid(format!(
            "ridge λ must be finite and ≥ 0, got {lambda}"
        )));
    }
    if !gram.is_finite() || !rhs.is_finite() {
        return Err(LinalgError::NonFinite(
            "the ridge system holds NaN or infinite values".into(),
        ));
    }
    let n = gram.rows;
    let floor = 1e-12 * gram.trace() / n.max(1) as f64;
    let floor = if floor > 0.0 { floor } else { 1e-12 };
    let mut lam = lambda;
    let mut raises = Vec::new();
    loop {
        let mut a = gram.clone();
        for i in 0..n {
            a[(i, i)] += lam;
        }
        match cholesky(&a) {
            Ok(l) => {
                return Ok(RidgeSolution {
                    weights: cholesky_solve(&l, rhs),
                    lambda: lam,
                    raises,
                })
            }
            Err(e) => {
                raises.push(RidgeRaise {
                    lambda: lam,
                    pivot_index: e.index,
                    pivot: e.pivot,
                });
                if raises.len() > MAX_RAISES {
                    return Err(LinalgError::Singular {
                        size: n,
                        lambda: lam,
                        attempts: raises.len(),
                    });
                }
                lam = (10.0 * lam).max(floor);
            }
        }
    }
}

/// Most squarings of [`spectral_radius`].
const MAX_SQUARINGS: usize = 64;

/// The spectral radius ρ(A) = max |λ_i| of a square matrix, by Gelfand's formula
/// ρ(A) = lim ‖A^k‖^{1/k} along k = 2^m: A is squared repeatedly, each square rescaled to unit
/// Frobenius norm and the logarithms of the scales accumulated, so nothing overflows. The
/// estimates ‖A^{2^m}‖^{1/2^m} decrease to ρ; the loop stops when one changes the last by less
/// than 1e-14 relative (or after 64 squarings, k = 2^64), or when a power vanishes (ρ = 0,
/// a nilpotent matrix). Unlike power iteration on a vector it needs no dominant real
/// eigenvalue: rotations and complex pairs converge alike. The error after m squarings is
/// about log(C)/2^m in log ρ, C the non-normality constant of ‖A^k‖ ≤ C ρ^k.
pub fn spectral_radius(a: &Mat) -> Result<f64> {
    if !a.is_square() {
        return Err(invalid(format!(
            "the spectral radius needs a square matrix, got {}×{}",
            a.rows, a.cols
        )));
    }
    if a.rows == 0 {
        return Err(invalid("the spectral radius of an empty (0×0) matrix"));
    }
    if !a.is_finite() {
        return Err(LinalgError::NonFinite(
            "the matrix holds NaN or infinite values".into(),
        ));
    }
    let s0 = a.frobenius();
    if s0 == 0.0 {
        return Ok(0.0);
    }
    // A^{2^m} = exp(log_c) · n_m with ‖n_m‖_F = 1.
    let mut n = a.scaled(1.0 / s0);
    let mut log_c = s0.ln();
    let mut estimate = s0;
    let mut power = 1.0f64; // 2^m
    for _ in 0..MAX_SQUARINGS {
        let sq = n.matmul(&n)?;
        let s = sq.frobenius();
        if s == 0.0 || !s.is_finite() {
            // A power vanished (nilpotent): ρ = 0. (A finite unit-norm matrix cannot
            // overflow when squared; `!is_finite` only guards against the impossible.)
            return Ok(if s == 0.0 { 0.0 } else { estimate });
        }
        n = sq.scaled(1.0 / s);
        log_c = 2.0 * log_c + s.ln();
        power *= 2.0;
        let next = (log_c / power).exp();
        let done = (estimate - next).abs() <= 1e-14 * next.max(f64::MIN_POSITIVE);
        estimate = next;
        if done {
            break;
        }
    }
    Ok(estimate)
}

/// The largest singular value σ_max(A) = ‖A‖₂ = √ρ(AᵀA) of any matrix, by [`spectral_radius`] of
/// the symmetric AᵀA (whose repeated squares converge at least as fast as a power iteration).
pub fn sigma_max(a: &Mat) -> Result<f64> {
    if a.rows == 0 || a.cols == 0 {
        return Err(invalid(format!(
            "the largest singular value of an empty ({}×{}) matrix",
            a.rows, a.cols
        )));
    }
    let ata = a.t_matmul(a)?;
    Ok(spectral_radius(&ata)?.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_and_flags_a_zero_pivot() {
        let a = Mat::from_rows(&[
            vec![4.0, 2.0, 0.6],
            vec![2.0, 5.0, 1.0],
            vec![0.6, 1.0, 3.0],
        ])
        .unwrap();
        let l = cholesky(&a).unwrap();
        let llt = l.matmul(&l.transpose()).unwrap();
        assert!(llt.max_abs_diff(&a) < 1e-14);
        let b = Mat::from_rows(&[vec![1.0], vec![2.0], vec![3.0]]).unwrap();
        let x = cholesky_solve(&l, &b);
        assert!(a.matmul(&x).unwrap().max_abs_diff(&b) < 1e-13);
        // Rank 1.
        let s = Mat::from_rows(&[vec![1.0, 2.0], vec![2.0, 4.0]]).unwrap();
        let e = cholesky(&s).unwrap_err();
        assert_eq!(e.index, 1);
    }

    #[test]
    fn matmul_and_t_matmul_agree() {
        let a = Mat::from_rows(&[vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]).unwrap();
        let b = Mat::from_rows(&[vec![1.0, 0.5], vec![-1.0, 2.0]]).unwrap();
        let direct = a.transpose().matmul(&b).unwrap();
        assert_eq!(a.t_matmul(&b).unwrap(), direct);
        assert!(a.matmul(&a).is_err());
    }
}
