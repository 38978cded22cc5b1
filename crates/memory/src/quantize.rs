//! Product quantisation (Jégou, Douze & Schmid 2011, IEEE TPAMI 33(1)): the bridge from
//! real feature vectors to a code of P clusters of K neurons (reference sheet §2, "associative
//! memories on top of deep features": Hacene et al. 2017, 2019; Gripon et al. 2018).
//!
//! A vector x ∈ R^D is split into P contiguous segments x = (x₁, …, x_P) and each segment is
//! replaced by the index of its nearest anchor (Euclidean distance, ties to the lowest index)
//! among the K anchors of that segment: code(x) = (q₁(x₁), …, q_P(x_P)) ∈ {0..K}^P.
//!
//! **Segments.** D need not be a multiple of P: as `numpy.array_split`, the first D mod P
//! segments get ⌊D/P⌋ + 1 coordinates and the others ⌊D/P⌋ (so 1 ≤ P ≤ D).
//!
//! **Anchors**, learnt per segment from N training vectors:
//! - [`AnchorMethod::KMeans`]: k-means++ seeding (Arthur & Vassilvitskii 2007: the first centre
//!   uniform, each next one drawn with probability ∝ D(x)², the squared distance to the nearest
//!   centre chosen so far; uniform over the points when every D(x) is 0), then Lloyd iterations
//!   (assign every point to its nearest centre, move every centre to the mean of its points; a
//!   centre with no point stays where it is) until no assignment changes or the iteration limit.
//! - [`AnchorMethod::Sampled`]: K distinct training vectors drawn uniformly, their sub-vectors
//!   the anchors (drawn independently per segment: "product random sampling").
//!
//! Every segment draws from its own ChaCha8 stream (stream p of the seed), so the anchors are
//! a function of the data and the seed alone. K > N, P = 0, P > D, an empty input or a NaN/±inf
//! are refused with the value named.
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{nonzero, MemoryError, Result};

/// How the anchors of a segment are learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnchorMethod {
    /// k-means++ seeding, then at most `iterations` Lloyd iterations.
    KMeans { iterations: usize },
    /// K training sub-vectors drawn without replacement.
    Sampled,
}

/// Settings of a product quantiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqSettings {
    /// P.
    pub segments: usize,
    /// K, anchors per segment.
    pub anchors: usize,
    pub method: AnchorMethod,
    pub seed: u64,
}

/// The [start, end) coordinates of P segments of D coordinates (the first D mod P one longer).
pub fn segment_bounds(dim: usize, segments: usize) -> Result<Vec<(usize, usize)>> {
    nonzero("the dimension", dim)?;
    nonzero("segments", segments)?;
    if segments > dim {
        return Err(MemoryError::TooManySegments { segments, dim });
    }
    let (base, extra) = (dim / segments, dim % segments);
    let mut start = 0;
    Ok((0..segments)
        .map(|p| {
            let len = base + usize::from(p < extra);
            let b = (start, start + len);
            start += len;
            b
        })
        .collect())
}

/// Checks a row-major matrix of `dim` columns; returns its rows as f64.
fn rows_f64<T: Copy + Into<f64>>(data: &[T], dim: usize, what: &'static str) -> Result<Vec<f64>> {
    nonzero("the dimension", dim)?;
    if data.is_empty() {
        return Err(MemoryError::Empty(what));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(MemoryError::WrongLength {
            what,
            expected: data.len().div_ceil(dim) * dim,
            got: data.len(),
        });
    }
    let out: Vec<f64> = data.iter().map(|&x| x.into()).collect();
    if let Some(i) = out.iter().position(|x| !x.is_finite()) {
        return Err(MemoryError::NonFinite {
            row: i / dim,
            col: i % dim,
            value: out[i],
        });
    }
    Ok(out)
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Index of the nearest of `k` centres (row-major, `len` each) to `x`; ties to the lowest.
fn nearest(centres: &[f64], len: usize, x: &[f64]) -> usize {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centres.chunks_exact(len).enumerate() {
        let d = dist2(c, x);
        if d < best.1 {
            best = (j, d);
        }
    }
    best.0
}

/// A fitted product quantiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductQuantizer {
    dim: usize,
    anchors_per_segment: usize,
    bounds: Vec<(usize, usize)>,
    /// Per segment, K anchors of the segment's length, row-major.
    anchors: Vec<Vec<f64>>,
    settings: PqSettings,
}

impl ProductQuantizer {
    /// Learns the anchors from `data`, N rows of `dim` values (row-major).
    pub fn fit<T: Copy + Into<f64>>(data: &[T], dim: usize, settings: &PqSettings) -> Result<Self> {
        let x = rows_f64(data, dim, "the training vectors")?;
        let bounds = segment_bounds(dim, settings.segments)?;
        let k = nonzero("anchors per segment", settings.anchors)?;
        let n = x.len() / dim;
        if k > n {
            return Err(MemoryError::TooFewVectors {
                anchors: k,
                vectors: n,
            });
        }
        if let AnchorMethod::KMeans { iterations } = settings.method {
            nonzero("k-means iterations", iterations)?;
        }
        let anchors = bounds
            .iter()
            .enumerate()
            .map(|(p, &(s, e))| {
                let len = e - s;
                let sub: Vec<f64> = x
                    .chunks_exact(dim)
                    .flat_map(|r| r[s..e].iter().copied())
                    .collect();
                let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
                rng.set_stream(p as u64);
                match settings.method {
                    AnchorMethod::Sampled => sample(&mut rng, n, k)
                        .into_iter()
                        .flat_map(|i| sub[i * len..(i + 1) * len].to_vec())
                        .collect(),
                    AnchorMethod::KMeans { iterations } => {
                        kmeans(&sub, len, k, iterations, &mut rng)
                    }
                }
            })
            .collect();
        Ok(Self {
            dim,
            anchors_per_segment: k,
            bounds,
            anchors,
            settings: *settings,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// P.
    pub fn segments(&self) -> usize {
        self.bounds.len()
    }

    /// K.
    pub fn anchors_per_segment(&self) -> usize {
        self.anchors_per_segment
    }

    pub fn settings(&self) -> &PqSettings {
        &self.settings
    }

    /// The [start, end) coordinates of each segment.
    pub fn bounds(&self) -> &[(usize, usize)] {
        &self.bounds
    }

    /// Anchor `k` of segment `p`.
    pub fn anchor(&self, p: usize, k: usize) -> &[f64] {
        let len = self.bounds[p].1 - self.bounds[p].0;
        &self.anchors[p][k * len..(k + 1) * len]
    }

    /// The code of one vector: its nearest anchor in each segment.
    pub fn encode<T: Copy + Into<f64>>(&self, row: &[T]) -> Result<Vec<u32>> {
        if row.len() != self.dim {
            return Err(MemoryError::WrongLength {
                what: "the vector",
                expected: self.dim,
                got: row.len(),
            });
        }
        let x = rows_f64(row, self.dim, "the vector")?;
        Ok(self.encode_f64(&x))
    }

    fn encode_f64(&self, x: &[f64]) -> Vec<u32> {
        self.bounds
            .iter()
            .zip(&self.anchors)
            .map(|(&(s, e), a)| nearest(a, e - s, &x[s..e]) as u32)
            .collect()
    }

    /// The codes of N vectors (row-major, `dim` values each).
    pub fn encode_rows<T: Copy + Into<f64>>(&self, data: &[T]) -> Result<Vec<Vec<u32>>> {
        let x = rows_f64(data, self.dim, "the vectors")?;
        Ok(x.chunks_exact(self.dim)
            .map(|r| self.encode_f64(r))
            .collect())
    }

    /// The vector made of each segment's anchor (the quantised vector).
    pub fn reconstruct(&self, code: &[u32]) -> Result<Vec<f64>> {
        if code.len() != self.segments() {
            return Err(MemoryError::WrongLength {
                what: "the code",
                expected: self.segments(),
                got: code.len(),
            });
        }
        let mut out = Vec::with_capacity(self.dim);
        for (p, &k) in code.iter().enumerate() {
            if k as usize >= self.anchors_per_segment {
                return Err(MemoryError::IndexOutOfRange {
                    what: "anchor",
                    index: k as usize,
                    size: self.anchors_per_segment,
                });
            }
            out.extend_from_slice(self.anchor(p, k as usize));
        }
        Ok(out)
    }
}

/// k-means++ seeding then Lloyd iterations on `n` points of `len` values; K centres row-major.
fn kmeans(x: &[f64], len: usize, k: usize, iterations: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let n = x.len() / len;
    let point = |i: usize| &x[i * len..(i + 1) * len];
    let mut centres = Vec::with_capacity(k * len);
    centres.extend_from_slice(point(rng.random_range(0..n)));
    let mut d2: Vec<f64> = (0..n).map(|i| dist2(point(i), &centres[..len])).collect();
    while centres.len() < k * len {
        let total: f64 = d2.iter().sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in d2.iter().enumerate() {
                if d > 0.0 && r < d {
                    pick = i;
                    break;
                }
                r -= d;
            }
            // Rounding may leave r past the last positive weight: take the last positive one.
            if d2[pick] == 0.0 {
                pick = d2.iter().rposition(|&d| d > 0.0).expect("total > 0");
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        let start = centres.len();
        centres.extend_from_slice(point(pick));
        for (i, d) in d2.iter_mut().enumerate() {
            *d = d.min(dist2(point(i), &centres[start..start + len]));
        }
    }
    let mut assign = vec![usize::MAX; n];
    for _ in 0..iterations {
        let mut changed = false;
        for (i, a) in assign.iter_mut().enumerate() {
            let j = nearest(&centres, len, point(i));
            if *a != j {
                *a = j;
                changed = true;
            }
        }
        if !changed {
            break;
        }
        let mut sums = vec![0.0; k * len];
        let mut counts = vec![0usize; k];
        for (i, &a) in assign.iter().enumerate() {
            counts[a] += 1;
            for (s, v) in sums[a * len..(a + 1) * len].iter_mut().zip(point(i)) {
                *s += v;
            }
        }
        for j in 0..k {
            if counts[j] > 0 {
                for (c, s) in centres[j * len..(j + 1) * len]
                    .iter_mut()
                    .zip(&sums[j * len..(j + 1) * len])
                {
                    *c = s / counts[j] as f64;
                }
            }
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `centres` (row-major, `dim` each), spread ±`noise`.
    fn blobs(centres: &[f64], dim: usize, per: usize, noise: f64, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        for c in centres.chunks_exact(dim) {
            for _ in 0..per {
                out.extend(
                    c.iter()
                        .map(|&m| (m + noise * (2.0 * rng.random::<f64>() - 1.0)) as f32),
                );
            }
        }
        out
    }

    #[test]
    fn segments_may_be_unequal() {
        assert_eq!(segment_bounds(7, 3).unwrap(), vec![(0, 3), (3, 5), (5, 7)]);
        assert_eq!(
            segment_bounds(4, 4).unwrap(),
            vec![(0, 1), (1, 2), (2, 3), (3, 4)]
        );
        assert_eq!(
            segment_bounds(3, 4),
            Err(MemoryError::TooManySegments {
                segments: 4,
                dim: 3
            })
        );
        assert_eq!(
            segment_bounds(3, 0),
            Err(MemoryError::ZeroSize { what: "segments" })
        );
    }

    /// Four blobs far apart in 6 dimensions (segments of 3, 2 and 1 coordinates): k-means finds
    /// one anchor per blob in each segment, so the points of a blob share one code, the four
    /// codes differ, and the anchors sit at the blob means (within the noise).
    #[test]
    fn kmeans_separates_separable_clusters() {
        let dim = 6;
        let centres = [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, //
            100.0, 0.0, 100.0, 0.0, 100.0, 0.0, //
            0.0, 100.0, 0.0, 100.0, 0.0, 100.0, //
            100.0, 100.0, 100.0, 100.0, 100.0, 100.0,
        ];
        let data = blobs(&centres, dim, 30, 1.0, 4);
        let settings = PqSettings {
            segments: 3,
            anchors: 4,
            method: AnchorMethod::KMeans { iterations: 50 },
            seed: 9,
        };
        let pq = ProductQuantizer::fit(&data, dim, &settings).unwrap();
        assert_eq!(pq.bounds(), &[(0, 2), (2, 4), (4, 6)]);
        let codes = pq.encode_rows(&data).unwrap();
        let mut distinct = Vec::new();
        for blob in codes.chunks(30) {
            assert!(blob.iter().all(|c| c == &blob[0]), "{blob:?}");
            distinct.push(blob[0].clone());
            // The blob's reconstruction is near its centre.
        }
        for (b, code) in distinct.iter().enumerate() {
            let r = pq.reconstruct(code).unwrap();
            for (x, c) in r.iter().zip(&centres[b * dim..(b + 1) * dim]) {
                assert!((x - c).abs() < 1.0, "blob {b}: {r:?}");
            }
        }
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 4);
        // f64 input gives the same codes.
        let data64: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        let pq64 = ProductQuantizer::fit(&data64, dim, &settings).unwrap();
        assert_eq!(pq64, pq);
    }

    #[test]
    fn sampled_anchors_are_training_subvectors_and_seeded() {
        let data = blobs(&[0.0, 0.0, 0.0, 10.0, 10.0, 10.0], 3, 20, 2.0, 5);
        let settings = PqSettings {
            segments: 2,
            anchors: 5,
            method: AnchorMethod::Sampled,
            seed: 3,
        };
        let pq = ProductQuantizer::fit(&data, 3, &settings).unwrap();
        for p in 0..2 {
            let (s, e) = pq.bounds()[p];
            for k in 0..5 {
                let a = pq.anchor(p, k);
                assert!(data
                    .chunks_exact(3)
                    .any(|r| r[s..e].iter().zip(a).all(|(&x, &y)| x as f64 == y)));
            }
        }
        assert_eq!(ProductQuantizer::fit(&data, 3, &settings).unwrap(), pq);
        let other = ProductQuantizer::fit(
            &data,
            3,
            &PqSettings {
                seed: 4,
                ..settings
            },
        )
        .unwrap();
        assert_ne!(other, pq);
        // Every training vector's code points at its nearest anchors.
        let code = pq.encode(&data[..3]).unwrap();
        assert_eq!(code.len(), 2);
    }

    #[test]
    fn kmeans_is_deterministic_per_seed() {
        let data = blobs(&[0.0; 4], 4, 200, 5.0, 6);
        let s = PqSettings {
            segments: 2,
            anchors: 8,
            method: AnchorMethod::KMeans { iterations: 20 },
            seed: 11,
        };
        let a = ProductQuantizer::fit(&data, 4, &s).unwrap();
        assert_eq!(a, ProductQuantizer::fit(&data, 4, &s).unwrap());
        assert_ne!(
            a,
            ProductQuantizer::fit(&data, 4, &PqSettings { seed: 12, ..s }).unwrap()
        );
        // Duplicated points (all D(x) = 0 after the first centre) still give K anchors.
        let flat = vec![1.0f64; 40];
        let f = ProductQuantizer::fit(&flat, 4, &s).unwrap();
        assert_eq!(f.encode(&[1.0f64; 4]).unwrap(), vec![0, 0]);
    }

    #[test]
    fn bad_inputs_are_refused() {
        let s = PqSettings {
            segments: 2,
            anchors: 4,
            method: AnchorMethod::KMeans { iterations: 10 },
            seed: 0,
        };
        let three = [0.0f32; 12];
        assert_eq!(
            ProductQuantizer::fit(&three, 4, &s),
            Err(MemoryError::TooFewVectors {
                anchors: 4,
                vectors: 3
            })
        );
        assert_eq!(
            ProductQuantizer::fit::<f32>(&[], 4, &s),
            Err(MemoryError::Empty("the training vectors"))
        );
        assert!(matches!(
            ProductQuantizer::fit(&[0.0f32; 10], 4, &s),
            Err(MemoryError::WrongLength { got: 10, .. })
        ));
        let mut nan = vec![0.0f64; 20];
        nan[13] = f64::NAN;
        assert!(matches!(
            ProductQuantizer::fit(&nan, 4, &s),
            Err(MemoryError::NonFinite { row: 3, col: 1, .. })
        ));
        assert_eq!(
            ProductQuantizer::fit(&[0.0f32; 20], 4, &PqSettings { segments: 5, ..s }),
            Err(MemoryError::TooManySegments {
                segments: 5,
                dim: 4
            })
        );
        assert_eq!(
            ProductQuantizer::fit(&[0.0f32; 20], 4, &PqSettings { anchors: 0, ..s }),
            Err(MemoryError::ZeroSize {
                what: "anchors per segment"
            })
        );
        let pq = ProductQuantizer::fit(&[0.0f32; 20], 4, &s).unwrap();
        assert!(matches!(
            pq.encode(&[0.0f32; 3]),
            Err(MemoryError::WrongLength { .. })
        ));
        assert!(matches!(
            pq.encode(&[0.0, f64::INFINITY, 0.0, 0.0]),
            Err(MemoryError::NonFinite { .. })
        ));
        assert!(matches!(
            pq.reconstruct(&[0, 4]),
            Err(MemoryError::IndexOutOfRange { index: 4, .. })
        ));
    }
}
