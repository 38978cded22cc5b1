//! Principal components of a sampled trajectory and the arc length of a polyline.
//!
//! The covariance C = X̃ᵀX̃/(M − 1) of the centred samples (M × N) is diagonalised by the cyclic
//! Jacobi method (rotations zeroing each off-diagonal pair in turn until every off-diagonal value
//! is below 1e-15 of the matrix's norm): exact to rounding whatever the gaps between the
//! eigenvalues, where power iteration slows down on near-equal ones (a circle has two). The
//! components are the eigenvectors of the largest eigenvalues, each signed so that its largest
//! entry in absolute value is positive.
use serde::Serialize;

use crate::error::{invalid, ProbeError, Result};
use crate::linalg::Mat;

/// Eigenvalues (descending) and eigenvectors (the columns, in the same order) of a symmetric
/// matrix, by cyclic Jacobi rotations. Only the upper triangle's symmetry is assumed; a
/// non-square or non-finite matrix is refused.
pub fn symmetric_eigen(a: &Mat) -> Result<(Vec<f64>, Mat)> {
    if !a.is_square() || a.rows() == 0 {
        return Err(invalid(format!(
            "eigen-decomposition of a {}×{} matrix: it must be square and non-empty",
            a.rows(),
            a.cols()
        )));
    }
    if !a.is_finite() {
        return Err(ProbeError::NonFinite("the matrix to diagonalise".into()));
    }
    let n = a.rows();
    let mut m = a.clone();
    let mut v = Mat::diag(&vec![1.0; n]);
    let norm = a.frobenius();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[(i, j)] * m[(i, j)])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * norm || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[(p, q)];
                if apq == 0.0 {
                    continue;
                }
                let theta = (m[(q, q)] - m[(p, p)]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (kp, kq) = (m[(k, p)], m[(k, q)]);
                    m[(k, p)] = c * kp - s * kq;
                    m[(k, q)] = s * kp + c * kq;
                }
                for k in 0..n {
                    let (pk, qk) = (m[(p, k)], m[(q, k)]);
                    m[(p, k)] = c * pk - s * qk;
                    m[(q, k)] = s * pk + c * qk;
                }
                m[(p, q)] = 0.0;
                m[(q, p)] = 0.0;
                for k in 0..n {
                    let (kp, kq) = (v[(k, p)], v[(k, q)]);
                    v[(k, p)] = c * kp - s * kq;
                    v[(k, q)] = s * kp + c * kq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[(j, j)].total_cmp(&m[(i, i)]));
    let values = order.iter().map(|&i| m[(i, i)]).collect();
    let mut vectors = Mat::zeros(n, n);
    for (c, &i) in order.iter().enumerate() {
        for r in 0..n {
            vectors[(r, c)] = v[(r, i)];
        }
    }
    Ok((values, vectors))
}

/// The principal components of samples (rows) of a trajectory.
#[derive(Debug, Clone, Serialize)]
pub struct Pca {
    /// Mean of the samples.
    #[serde(skip)]
    pub mean: Vec<f64>,
    /// The leading components, unit vectors (each signed with its largest entry positive).
    #[serde(skip)]
    pub components: Vec<Vec<f64>>,
    /// Every eigenvalue of the covariance, descending (variances along the components).
    pub variances: Vec<f64>,
}

impl Pca {
    /// Share of the total variance along the first `n` components (1 for a constant
    /// trajectory, which has none to explain).
    pub fn explained(&self, n: usize) -> f64 {
        let total: f64 = self.variances.iter().map(|v| v.max(0.0)).sum();
        if total <= 0.0 {
            return 1.0;
        }
        self.variances
            .iter()
            .take(n)
            .map(|v| v.max(0.0))
            .sum::<f64>()
            / total
    }

    /// The centred samples' coordinates along the components (M × components).
    pub fn project(&self, data: &Mat) -> Result<Mat> {
        if data.cols() != self.mean.len() {
            return Err(invalid(format!(
                "samples of {} values projected on components of {}",
                data.cols(),
                self.mean.len()
            )));
        }
        let mut out = Mat::zeros(data.rows(), self.components.len());
        for i in 0..data.rows() {
            let row = data.row(i);
            for (c, comp) in self.components.iter().enumerate() {
                out[(i, c)] = row
                    .iter()
                    .zip(&self.mean)
                    .zip(comp)
                    .map(|((x, m), w)| (x - m) * w)
                    .sum();
            }
        }
        Ok(out)
    }
}

/// The `components` leading principal components of `data` (M samples × N values, M ≥ 2).
pub fn pca(data: &Mat, components: usize) -> Result<Pca> {
    let (m, n) = (data.rows(), data.cols());
    if m < 2 || n == 0 {
        return Err(invalid(format!(
            "principal components of {m} samples of {n} values: need at least 2 samples of at \
             least 1 value"
        )));
    }
    if components == 0 || components > n {
        return Err(invalid(format!(
            "{components} components of {n}-dimensional samples"
        )));
    }
    if !data.is_finite() {
        return Err(ProbeError::NonFinite("the trajectory samples".into()));
    }
    let mut mean = vec![0.0; n];
    for i in 0..m {
        for (s, v) in mean.iter_mut().zip(data.row(i)) {
            *s += v;
        }
    }
    mean.iter_mut().for_each(|s| *s /= m as f64);
    let mut xc = data.clone();
    for i in 0..m {
        for j in 0..n {
            xc[(i, j)] -= mean[j];
        }
    }
    let cov = xc.t_matmul(&xc)?.scaled(1.0 / (m - 1) as f64);
    let (variances, vectors) = symmetric_eigen(&cov)?;
    let comps = (0..components)
        .map(|c| {
            let mut v: Vec<f64> = (0..n).map(|r| vectors[(r, c)]).collect();
            let big = v
                .iter()
                .copied()
                .fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
            if big < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            v
        })
        .collect();
    Ok(Pca {
        mean,
        components: comps,
        variances,
    })
}

/// Σ_j ‖p_{j+1} − p_j‖₂ over the rows of `points` (0 for fewer than two).
pub fn arc_length(points: &Mat) -> f64 {
    (1..points.rows())
        .map(|i| {
            points
                .row(i)
                .iter()
                .zip(points.row(i - 1))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt()
        })
        .sum()
}
