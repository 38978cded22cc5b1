//! Density of a binary associative memory after M messages, the one-iteration error estimate
//! and the stored bits per connection (reference sheet, §2; formulas from Gripon & Berrou 2011
//! and Aliabadi et al. 2014, the error estimate by the standard derivation).
//!
//! - Dense GB network (c clusters of l, every message in all): a given pair of fanals of two
//!   distinct clusters is connected by a uniform message with probability 1/l², so after M
//!   independent messages `d = 1 − (1 − 1/l²)^M`.
//! - Sparse GB network (χ clusters, messages in c of them, clusters uniform without
//!   replacement): a pair of clusters is used by a message with probability c(c−1)/(χ(χ−1)), so
//!   `d = 1 − (1 − c(c−1)/(χ(χ−1)l²))^M`.
//! - One iteration with c_e erased (silent) clusters: a wrong fanal of an erased cluster ties
//!   with the right one when it is connected to all c − c_e known fanals (probability d^{c−c_e},
//!   the connections taken as independent); retrieval fails if any of the c_e(l−1) wrong fanals
//!   does: `P_e = 1 − (1 − d^{c−c_e})^{c_e(l−1)}`. With guided recall in the sparse network the
//!   same formula holds with the sparse d (only the c guided clusters take part).
//! - A second clique (the floor of sum-of-max, dense network): a wrong fanal s of an erased
//!   cluster e connected to all c − 1 other fanals of the message completes the cue as well as
//!   the right one. The connections of s are not independent: s is connected to the message's
//!   fanal of cluster k iff one of the N other messages using s in cluster e has that symbol
//!   in k, N ~ Binomial(M − 1, 1/l), and given N the c − 1 clusters are independent, so
//!   `π = E_N[(1 − (1 − 1/l)^N)^{c−1}]` (about 1.3·d^{c−1} at the sheet's M = 15000), and a
//!   probe has a rival with probability `P_2 = 1 − (1 − π)^{c_e(l−1)}` (≈ 0.0197 there; the
//!   independent-connection value 1 − (1 − d^{c−1})^{c_e(l−1)} would be 0.0152). Sum-of-max
//!   keeps such a rival beside the right fanal (see [`crate::gb`]), so its exact-retrieval
//!   error is at least P_2.
//! - Bits per connection: B/Q = M·c·log₂(l) / (c(c−1)/2·l²) for the dense network (B the bits
//!   of the messages, Q the binary connections between distinct clusters). For the sparse
//!   network a message also carries the choice of its clusters: B = M·(c·log₂ l + log₂ C(χ, c)),
//!   Q = χ(χ−1)/2·l² (this crate's choice; the sheet gives only the dense ratio).
//! - Willshaw network (n_x inputs with a_x active, n_y outputs with a_y active):
//!   `p₁ = 1 − (1 − a_x a_y/(n_x n_y))^M`, the fraction of ones.
//!
//! `(1 − p)^M` is computed as exp(M·ln(1 − p)) (`ln_1p`), exact for tiny p.
use serde::{Deserialize, Serialize};

/// `1 − (1 − p)^m` for a per-message probability p.
fn fill(p: f64, m: f64) -> f64 {
    -(m * (-p).ln_1p()).exp_m1()
}

/// Density of the dense GB network after `m` messages: `1 − (1 − 1/l²)^M`.
pub fn dense_density(fanals: usize, m: u64) -> f64 {
    let l = fanals as f64;
    fill(1.0 / (l * l), m as f64)
}

/// Density of the sparse GB network after `m` messages: `1 − (1 − c(c−1)/(χ(χ−1)l²))^M`.
/// For c = χ it is the dense density; for χ = 1 there are no pairs and it is 0.
pub fn sparse_density(clusters: usize, active: usize, fanals: usize, m: u64) -> f64 {
    if clusters < 2 || active < 2 {
        return 0.0;
    }
    let (x, c, l) = (clusters as f64, active as f64, fanals as f64);
    fill(c * (c - 1.0) / (x * (x - 1.0) * l * l), m as f64)
}

/// One-iteration error estimate `P_e = 1 − (1 − d^{c−c_e})^{c_e(l−1)}` for a network of
/// density `d`, c clusters per message, c_e of them erased.
pub fn one_iteration_error(density: f64, active: usize, erased: usize, fanals: usize) -> f64 {
    if erased == 0 {
        return 0.0;
    }
    let known = active.saturating_sub(erased) as i32;
    let p = density.powi(known);
    fill(p, (erased * fanals.saturating_sub(1)) as f64)
}

/// π: probability that a given wrong fanal of cluster e is connected to the c − 1 other
/// fanals of a stored message, in the dense network of c clusters of l fanals holding M uniform
/// messages: `E_N[(1 − (1 − 1/l)^N)^{c−1}]`, N ~ Binomial(M − 1, 1/l) the other messages using
/// that fanal.
pub fn rival_probability(clusters: usize, fanals: usize, m: u64) -> f64 {
    if clusters < 2 || fanals < 2 || m < 2 {
        return 0.0;
    }
    let (p, trials) = (1.0 / fanals as f64, m - 1);
    let q = 1.0 - p;
    let ratio = (p / q).ln();
    // ln P(N = n), by the recurrence P(n + 1) = P(n)·(trials − n)/(n + 1)·p/q.
    let mut ln_pmf = trials as f64 * q.ln();
    let mean = trials as f64 * p;
    let mut sum = 0.0;
    for n in 0..=trials {
        if ln_pmf > -745.0 {
            let covered = -(n as f64 * (-p).ln_1p()).exp_m1();
            sum += ln_pmf.exp() * covered.powi(clusters as i32 - 1);
        } else if n as f64 > mean {
            break;
        }
        ln_pmf += ((trials - n) as f64 / (n + 1) as f64).ln() + ratio;
    }
    sum
}

/// P_2 = `1 − (1 − π)^{c_e(l−1)}`: probability that a probe of a stored message with c_e
/// erased clusters admits a second clique (some wrong fanal of an erased cluster connected to
/// all c − 1 other fanals of the message), π from [`rival_probability`]. A lower bound of the
/// sum-of-max error.
pub fn second_clique_probability(clusters: usize, fanals: usize, m: u64, erased: usize) -> f64 {
    if erased == 0 {
        return 0.0;
    }
    fill(
        rival_probability(clusters, fanals, m),
        (erased * fanals.saturating_sub(1)) as f64,
    )
}

/// B/Q for the dense network: `M·c·log₂(l) / (c(c−1)/2·l²)`.
pub fn dense_bits_per_connection(clusters: usize, fanals: usize, m: u64) -> f64 {
    let (c, l) = (clusters as f64, fanals as f64);
    m as f64 * c * l.log2() / (c * (c - 1.0) / 2.0 * l * l)
}

/// log₂ C(n, k).
pub fn log2_binomial(n: usize, k: usize) -> f64 {
    let k = k.min(n - k.min(n));
    (0..k)
        .map(|i| ((n - i) as f64 / (i + 1) as f64).log2())
        .sum()
}

/// B/Q for the sparse network: `M·(c·log₂ l + log₂ C(χ, c)) / (χ(χ−1)/2·l²)`.
pub fn sparse_bits_per_connection(clusters: usize, active: usize, fanals: usize, m: u64) -> f64 {
    let (x, c, l) = (clusters as f64, active as f64, fanals as f64);
    m as f64 * (c * l.log2() + log2_binomial(clusters, active)) / (x * (x - 1.0) / 2.0 * l * l)
}

/// Fraction of ones of a Willshaw matrix: `1 − (1 − a_x a_y/(n_x n_y))^M`.
pub fn willshaw_density(nx: usize, ax: usize, ny: usize, ay: usize, m: u64) -> f64 {
    fill((ax as f64 * ay as f64) / (nx as f64 * ny as f64), m as f64)
}

/// The formulas at one setting, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Predicted {
    pub density: f64,
    pub one_iteration_error: f64,
    pub bits_per_connection: f64,
}

/// The formulas for χ clusters (c active) of l fanals, M messages and c_e erasures.
pub fn predicted(
    clusters: usize,
    active: usize,
    fanals: usize,
    m: u64,
    erased: usize,
) -> Predicted {
    let (density, bits_per_connection) = if active == clusters {
        (
            dense_density(fanals, m),
            dense_bits_per_connection(clusters, fanals, m),
        )
    } else {
        (
            sparse_density(clusters, active, fanals, m),
            sparse_bits_per_connection(clusters, active, fanals, m),
        )
    };
    Predicted {
        density,
        one_iteration_error: one_iteration_error(density, active, erased, fanals),
        bits_per_connection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sheet's table (c = 8, l = 256, 4 erased): d, P_e(1 it) and B/Q at its rounding.
    #[test]
    fn the_reference_table_formulas() {
        let rows = [
            (5_000, 0.0735, 0.029, 0.17),
            (10_000, 0.1416, 0.336, 0.35),
            (15_000, 0.2044, 0.833, 0.52),
            (20_000, 0.263, 0.992, 0.70),
            (25_000, 0.317, 1.0, 0.87),
            (30_000, 0.367, 1.0, 1.05),
        ];
        for (m, d, pe, bq) in rows {
            let p = predicted(8, 8, 256, m, 4);
            assert!((p.density - d).abs() < 6e-4, "M={m}: d {}", p.density);
            assert!(
                (p.one_iteration_error - pe).abs() < 2e-3,
                "M={m}: P_e {}",
                p.one_iteration_error
            );
            assert!(
                (p.bits_per_connection - bq).abs() < 6e-3,
                "M={m}: B/Q {}",
                p.bits_per_connection
            );
        }
    }

    #[test]
    fn sparse_reduces_to_dense_and_edge_cases() {
        for m in [0, 1, 1000, 50_000] {
            assert!((sparse_density(8, 8, 64, m) - dense_density(64, m)).abs() < 1e-15);
        }
        assert_eq!(dense_density(256, 0), 0.0);
        assert_eq!(sparse_density(1, 1, 4, 10), 0.0);
        assert_eq!(one_iteration_error(0.5, 8, 0, 256), 0.0);
        // One message of l = 1: every pair connected.
        assert!((dense_density(1, 1) - 1.0).abs() < 1e-15);
        assert!((log2_binomial(5, 2) - 10f64.log2()).abs() < 1e-12);
        assert_eq!(log2_binomial(7, 0), 0.0);
        assert!((log2_binomial(100, 12) - log2_binomial(100, 88)).abs() < 1e-9);
        // Sparse B/Q with c = χ keeps only the symbols' bits (C(χ, χ) = 1).
        assert!(
            (sparse_bits_per_connection(8, 8, 256, 15_000)
                - dense_bits_per_connection(8, 256, 15_000))
            .abs()
                < 1e-12
        );
        assert!((willshaw_density(100, 10, 50, 5, 1) - 0.01).abs() < 1e-15);
        assert_eq!(second_clique_probability(8, 256, 15_000, 0), 0.0);
        assert_eq!(rival_probability(8, 256, 1), 0.0);
    }

    /// The sum-of-max floor at the sheet's M = 15000 (d = 0.2044): π ≈ 1.3·d⁷ and
    /// P_2 ≈ 0.0197, above the sheet's SoM 0.006 (the independent-connection value is 0.0152).
    /// With l = 2, c = 2 and M = 2 the other message uses the rival with probability 1/2 and
    /// then shares the message's other symbol with probability 1/2: π = 1/4.
    #[test]
    fn second_clique_floor() {
        let d = dense_density(256, 15_000);
        let pi = rival_probability(8, 256, 15_000);
        assert!((pi / d.powi(7) - 1.304).abs() < 0.01, "{pi}");
        let p2 = second_clique_probability(8, 256, 15_000, 4);
        assert!((p2 - 0.0197).abs() < 2e-4, "{p2}");
        assert!((p2 - fill(d.powi(7), 4.0 * 255.0) - 0.0046).abs() < 3e-4);
        assert!((rival_probability(2, 2, 2) - 0.25).abs() < 1e-15);
        // Large M: the loop starts below the smallest normal exponent and still converges.
        let big = rival_probability(8, 256, 1_000_000);
        assert!((big - 1.0).abs() < 1e-5, "{big}");
    }
}
