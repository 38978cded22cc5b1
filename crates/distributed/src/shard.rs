//! Cutting a global batch into one contiguous shard per rank, and each shard's weight in the
//! global loss.
//!
//! Every objective's loss is a weighted mean `Σ w·l / Σ w` over the batch (see
//! `remanence_train::loss`), with a normaliser that adds up over sequences:
//!
//! | objective | loss normaliser of a batch |
//! |---|---|
//! | class-last-step, class-mean-over-time | the number of sequences (the mask is not used) |
//! | per-step objectives with a mask | Σ mask |
//! | per-step objectives without a mask | B·T, T the padded length, the same on every rank: so B |
//!
//! Hence with `w_r` the normaliser of rank r's shard, `Σ_r w_r·loss(shard_r) / Σ_r w_r` is the
//! loss of the global batch, and the same weights applied to the shards' gradients give its
//! gradient: this is what the all-reduce computes.
use std::ops::Range;

use candle_core::{DType, Tensor};
use remanence_tasks::{Batch, Objective};

use crate::error::{DistError, Result};

/// The sequences of a batch of `n` that rank `rank` of `size` takes: contiguous, balanced (the
/// sizes differ by at most one, the first `n % size` ranks take one more).
pub fn shard_range(n: usize, rank: usize, size: usize) -> Result<Range<usize>> {
    if size == 0 || rank >= size {
        return Err(DistError::Shard(format!(
            "rank {rank} does not exist in a world of {size} processes"
        )));
    }
    if n < size {
        return Err(DistError::Shard(format!(
            "a batch of {n} sequences cannot be shared by {size} processes (each needs at \
             least one); use at most {n} processes or larger batches"
        )));
    }
    let (base, extra) = (n / size, n % size);
    let start = rank * base + rank.min(extra);
    let len = base + usize::from(rank < extra);
    Ok(start..start + len)
}

/// Rank `rank`'s shard of `batch`: its contiguous slice of sequences ([`shard_range`]), every
/// tensor (`x`, `target`, `mask`, `dt`) narrowed along the batch dimension (dim 0) and
/// `indices`, `lengths` cut alike. The padded length T stays the global batch's.
pub fn shard(batch: &Batch, rank: usize, size: usize) -> Result<Batch> {
    let n = batch.x.dim(0)?;
    let check = |what: &str, len: usize| -> Result<()> {
        if len != n {
            return Err(DistError::Shard(format!(
                "the batch has {n} sequences but {len} {what}"
            )));
        }
        Ok(())
    };
    check("targets", batch.target.dim(0)?)?;
    check("indices", batch.indices.len())?;
    check("lengths", batch.lengths.len())?;
    if let Some(m) = &batch.mask {
        check("mask rows", m.dim(0)?)?;
    }
    if let Some(d) = &batch.dt {
        check("dt rows", d.dim(0)?)?;
    }
    let r = shard_range(n, rank, size)?;
    let cut = |t: &Tensor| -> Result<Tensor> { Ok(t.narrow(0, r.start, r.len())?) };
    Ok(Batch {
        x: cut(&batch.x)?,
        target: cut(&batch.target)?,
        mask: batch.mask.as_ref().map(cut).transpose()?,
        dt: batch.dt.as_ref().map(cut).transpose()?,
        indices: batch.indices[r.clone()].to_vec(),
        lengths: batch.lengths[r].to_vec(),
    })
}

/// The normaliser of `objective`'s loss on `batch` (the table above): its weight when shards'
/// losses and gradients are averaged into the global batch's.
pub fn loss_weight(objective: Objective, batch: &Batch) -> Result<f64> {
    let sequences = batch.x.dim(0)? as f64;
    Ok(match objective {
        Objective::ClassLastStep | Objective::ClassMeanOverTime => sequences,
        Objective::MultiLabelPerStep | Objective::ClassPerStep | Objective::RegressionPerStep => {
            match &batch.mask {
                Some(m) => m.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?,
                None => sequences,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use remanence_train::loss::loss;

    const OBJECTIVES: [Objective; 5] = [
        Objective::MultiLabelPerStep,
        Objective::ClassLastStep,
        Objective::ClassMeanOverTime,
        Objective::ClassPerStep,
        Objective::RegressionPerStep,
    ];

    /// A random batch of `b` sequences padded to `t` steps, its read-out `y`, with a 0/1
    /// padding mask, a mask of class-like weights, or none.
    fn batch(
        objective: Objective,
        b: usize,
        t: usize,
        mask: Option<bool>,
        seed: u64,
    ) -> (Batch, Tensor) {
        let (o, dev) = (3usize, &Device::Cpu);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let lengths: Vec<usize> = (0..b).map(|_| rng.random_range(1..=t)).collect();
        let mut r = |n: usize, lo: f64, hi: f64| -> Vec<f64> {
            (0..n).map(|_| rng.random_range(lo..hi)).collect()
        };
        let y = Tensor::from_vec(r(b * t * o, -2.0, 2.0), (b, t, o), dev).unwrap();
        let x = Tensor::from_vec(r(b * t * 2, -1.0, 1.0), (b, t, 2), dev).unwrap();
        let classes = |v: Vec<f64>| -> Vec<u32> { v.iter().map(|c| *c as u32).collect() };
        let target = match objective {
            Objective::MultiLabelPerStep => {
                let v = r(b * t * o, 0.0, 1.0).iter().map(|v| v.round()).collect();
                Tensor::from_vec(v, (b, t, o), dev).unwrap()
            }
            Objective::ClassLastStep | Objective::ClassMeanOverTime => {
                Tensor::from_vec(classes(r(b, 0.0, o as f64)), b, dev).unwrap()
            }
            Objective::ClassPerStep => {
                Tensor::from_vec(classes(r(b * t, 0.0, o as f64)), (b, t), dev).unwrap()
            }
            Objective::RegressionPerStep => {
                Tensor::from_vec(r(b * t * o, -1.0, 1.0), (b, t, o), dev).unwrap()
            }
        };
        let weights = r(b * t, 0.1, 3.0);
        let mask = mask.map(|class_weights| {
            let m: Vec<f64> = (0..b * t)
                .map(|i| {
                    let real = i % t < lengths[i / t];
                    match (real, class_weights) {
                        (false, _) => 0.0,
                        (true, false) => 1.0,
                        (true, true) => weights[i],
                    }
                })
                .collect();
            Tensor::from_vec(m, (b, t), dev).unwrap()
        });
        let batch = Batch {
            x,
            target,
            mask,
            dt: Some(Tensor::from_vec(r(b * t, 0.5, 1.5), (b, t), dev).unwrap()),
            indices: (100..100 + b).collect(),
            lengths,
        };
        (batch, y)
    }

    fn scalar(t: Tensor) -> f64 {
        t.to_scalar::<f64>().unwrap()
    }

    #[test]
    fn ranges_are_contiguous_balanced_and_cover_the_batch() {
        for n in 1..20 {
            for size in 1..=n {
                let rs: Vec<_> = (0..size)
                    .map(|r| shard_range(n, r, size).unwrap())
                    .collect();
                assert_eq!(rs[0].start, 0);
                assert_eq!(rs[size - 1].end, n);
                for w in rs.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    // The first ranks take the extra sequence.
                    assert!(w[0].len() == w[1].len() || w[0].len() == w[1].len() + 1);
                }
            }
        }
        assert_eq!(shard_range(7, 0, 3).unwrap(), 0..3);
        assert_eq!(shard_range(7, 1, 3).unwrap(), 3..5);
        assert_eq!(shard_range(7, 2, 3).unwrap(), 5..7);
        let err = shard_range(2, 0, 3).unwrap_err().to_string();
        assert!(
            err.contains("2 sequences") && err.contains("3 processes"),
            "{err}"
        );
        assert!(shard_range(5, 3, 3).is_err());
    }

    #[test]
    fn a_shard_holds_its_rows_of_every_field() {
        let (b, _) = batch(Objective::RegressionPerStep, 7, 4, Some(false), 1);
        let s = shard(&b, 1, 3).unwrap();
        assert_eq!(s.indices, [103, 104]);
        assert_eq!(s.lengths, b.lengths[3..5]);
        for (whole, part) in [
            (&b.x, &s.x),
            (&b.target, &s.target),
            (b.mask.as_ref().unwrap(), s.mask.as_ref().unwrap()),
            (b.dt.as_ref().unwrap(), s.dt.as_ref().unwrap()),
        ] {
            assert_eq!(part.dim(0).unwrap(), 2);
            assert_eq!(part.dims()[1..], whole.dims()[1..]);
            let want = whole.narrow(0, 3, 2).unwrap().flatten_all().unwrap();
            let got = part.flatten_all().unwrap();
            assert_eq!(
                want.to_vec1::<f64>().unwrap(),
                got.to_vec1::<f64>().unwrap()
            );
        }
        let err = shard(&b, 0, 8).unwrap_err().to_string();
        assert!(
            err.contains("7 sequences") && err.contains("8 processes"),
            "{err}"
        );
    }

    /// Σ_r w_r·loss(shard_r) / Σ_r w_r is the global batch's loss, for every objective, with
    /// and without a mask, with uneven shards.
    #[test]
    fn weighted_shard_losses_average_to_the_global_loss() {
        let (b, t) = (7, 5);
        for (k, objective) in OBJECTIVES.into_iter().enumerate() {
            for mask in [None, Some(false), Some(true)] {
                let (global, y) = batch(objective, b, t, mask, 10 + k as u64);
                let want = scalar(loss(objective, &y, &global).unwrap());
                assert!(want.is_finite());
                for size in [1, 2, 3, 4, 7] {
                    let (mut num, mut den) = (0.0, 0.0);
                    for rank in 0..size {
                        let s = shard(&global, rank, size).unwrap();
                        let r = shard_range(b, rank, size).unwrap();
                        let ys = y.narrow(0, r.start, r.len()).unwrap();
                        let w = loss_weight(objective, &s).unwrap();
                        assert!(w > 0.0);
                        num += w * scalar(loss(objective, &ys, &s).unwrap());
                        den += w;
                    }
                    let got = num / den;
                    assert!(
                        (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                        "{objective:?}, mask {mask:?}, {size} ranks: {got} vs {want}"
                    );
                }
                // The whole batch's weight is the loss normaliser.
                let w = loss_weight(objective, &global).unwrap();
                match (objective, &global.mask) {
                    (Objective::ClassLastStep | Objective::ClassMeanOverTime, _) | (_, None) => {
                        assert_eq!(w, b as f64)
                    }
                    (_, Some(m)) => assert!((w - scalar(m.sum_all().unwrap())).abs() < 1e-12),
                }
            }
        }
    }
}
