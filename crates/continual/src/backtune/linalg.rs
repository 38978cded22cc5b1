//! The small dense linear algebra of the per-unit solves (`D ≤ 16`): the cyclic Jacobi
//! eigen-decomposition of a symmetric matrix, the pseudo-inverse of a symmetric positive
//! semi-definite matrix from it, and the minimum-distance solution of `A w = b`.
//!
//! Jacobi: each rotation in the plane `(p, q)` by `θ` with `tan 2θ = 2A_pq/(A_qq − A_pp)` zeroes
//! `A_pq`; sweeps over all pairs until the off-diagonal mass is below `1e−15` of the total. For a
//! symmetric `A = V Λ Vᵀ`, `A† = V Λ† Vᵀ` with `λ† = 1/λ` for `λ > τ·max|λ|` and 0 otherwise
//! (`τ = 1e−12`, an eigenvalue below it is treated as zero: the direction is in the null space).
//!
//! The minimum-distance solution `w = ŵ + A†(b − Aŵ)` is, among the least-squares solutions of
//! `A w = b`, the one nearest `ŵ`: `w − ŵ` lies in the range of `A`, orthogonal to its null
//! space. Matrices are `Vec<f64>` row-major `D × D`.

/// Eigenvalues and eigenvectors (`vecs[i·D + k]` is component `i` of eigenvector `k`) of the
/// symmetric `a` (`d × d`, row-major).
pub fn sym_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), d * d);
    let mut m = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let total: f64 = m.iter().map(|x| x * x).sum();
    for _sweep in 0..100 {
        let mut off = 0.0;
        for p in 0..d {
            for q in p + 1..d {
                off += 2.0 * m[p * d + q] * m[p * d + q];
            }
        }
        if off <= 1e-30 * total || off == 0.0 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (m[p * d + p], m[q * d + q]);
                let theta = (aqq - app) / (2.0 * apq);
                // t = tan θ, the smaller root of t² + 2θt − 1 = 0.
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (mkp, mkq) = (m[k * d + p], m[k * d + q]);
                    m[k * d + p] = c * mkp - s * mkq;
                    m[k * d + q] = s * mkp + c * mkq;
                }
                for k in 0..d {
                    let (mpk, mqk) = (m[p * d + k], m[q * d + k]);
                    m[p * d + k] = c * mpk - s * mqk;
                    m[q * d + k] = s * mpk + c * mqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| m[i * d + i]).collect(), v)
}

/// The pseudo-inverse of the symmetric `a` (`d × d`).
pub fn sym_pinv(a: &[f64], d: usize) -> Vec<f64> {
    let (vals, vecs) = sym_eigen(a, d);
    let top = vals.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut p = vec![0.0; d * d];
    for k in 0..d {
        if top == 0.0 || vals[k].abs() <= 1e-12 * top {
            continue;
        }
        let inv = 1.0 / vals[k];
        for i in 0..d {
            let vi = vecs[i * d + k] * inv;
            for j in 0..d {
                p[i * d + j] += vi * vecs[j * d + k];
            }
        }
    }
    p
}

/// `y = A x`.
pub fn mat_vec(a: &[f64], x: &[f64]) -> Vec<f64> {
    let d = x.len();
    (0..a.len() / d)
        .map(|i| (0..d).map(|j| a[i * d + j] * x[j]).sum())
        .collect()
}

/// `w = ŵ + A†(b − Aŵ)`, the least-squares solution of `A w = b` nearest `ŵ`, for a symmetric
/// positive semi-definite `A`.
pub fn min_distance_solve(a: &[f64], b: &[f64], w_hat: &[f64]) -> Vec<f64> {
    let d = b.len();
    let r: Vec<f64> = b
        .iter()
        .zip(mat_vec(a, w_hat))
        .map(|(bi, ai)| bi - ai)
        .collect();
    let step = mat_vec(&sym_pinv(a, d), &r);
    w_hat.iter().zip(step).map(|(w, s)| w + s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_decomposition_rebuilds_the_matrix() {
        let d = 5;
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = ((i * 7 + j * 3) % 5) as f64 + ((j * 7 + i * 3) % 5) as f64 - 3.0;
            }
        }
        let (vals, v) = sym_eigen(&a, d);
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| v[i * d + k] * vals[k] * v[j * d + k]).sum();
                assert!((r - a[i * d + j]).abs() < 1e-12);
                let o: f64 = (0..d).map(|k| v[k * d + i] * v[k * d + j]).sum();
                assert!((o - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn minimum_distance_solution_of_a_rank_deficient_system() {
        // A = Φᵀ Φ with the third column of Φ the sum of the first two: rank 2, null space
        // spanned by n = (1, 1, −1)/√3.
        let phi = [
            [1.0, 0.0, 1.0],
            [0.0, 2.0, 2.0],
            [1.0, 1.0, 2.0],
            [3.0, -1.0, 2.0],
        ];
        let d = 3;
        let mut a = vec![0.0; 9];
        for row in &phi {
            for i in 0..d {
                for j in 0..d {
                    a[i * d + j] += row[i] * row[j];
                }
            }
        }
        let w_true = [0.5, -1.0, 0.25];
        let b = mat_vec(&a, &w_true); // consistent right-hand side
        let w_hat = [2.0, 1.0, -3.0];
        let w = min_distance_solve(&a, &b, &w_hat);
        // It solves the system…
        for (x, y) in mat_vec(&a, &w).iter().zip(&b) {
            assert!((x - y).abs() < 1e-10);
        }
        // …and its move from ŵ is orthogonal to the null space, so it is the nearest solution.
        let n = [1.0, 1.0, -1.0];
        let dot: f64 = (0..3).map(|i| (w[i] - w_hat[i]) * n[i]).sum();
        assert!(dot.abs() < 1e-10);
        let dist = |v: &[f64]| (0..3).map(|i| (v[i] - w_hat[i]).powi(2)).sum::<f64>();
        for s in [-1.0, -0.1, 0.1, 2.0] {
            let other: Vec<f64> = (0..3).map(|i| w[i] + s * n[i]).collect();
            assert!(dist(&other) > dist(&w));
        }
        // A zero matrix leaves ŵ unchanged.
        assert_eq!(
            min_distance_solve(&[0.0; 4], &[0.0, 0.0], &[1.0, 2.0]),
            vec![1.0, 2.0]
        );
    }
}
