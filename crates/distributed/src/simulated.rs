//! A world of several ranks run as threads of one process, for tests (the all-reduce plugin's,
//! backward tuning's partitioned solves): every collective call is a round in which each rank
//! deposits its bytes and, once all have arrived, reads every rank's. The results are those of
//! MPI's collectives (sums in rank order), so a test can compare P simulated ranks with one
//! process without `mpirun`.
use std::sync::{Arc, Condvar, Mutex};

use crate::collective::Collective;
use crate::error::Result;

#[derive(Default)]
struct Round {
    deposits: Vec<Option<Vec<u8>>>,
    arrived: usize,
    generation: u64,
    result: Vec<Vec<u8>>,
}

/// One rank of a simulated world; move each into its own thread.
pub struct Simulated {
    rank: usize,
    size: usize,
    shared: Arc<(Mutex<Round>, Condvar)>,
}

impl Simulated {
    /// The `size` ranks of one simulated world.
    pub fn world(size: usize) -> Vec<Simulated> {
        let shared = Arc::new((Mutex::new(Round::default()), Condvar::new()));
        (0..size)
            .map(|rank| Simulated {
                rank,
                size,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's `mine`, indexed by rank.
    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let (lock, cv) = &*self.shared;
        let mut r = lock.lock().unwrap();
        if r.arrived == 0 {
            r.deposits = vec![None; self.size];
        }
        assert!(r.deposits[self.rank].is_none(), "rank deposits twice");
        r.deposits[self.rank] = Some(mine);
        r.arrived += 1;
        let generation = r.generation;
        if r.arrived == self.size {
            r.result = r.deposits.drain(..).map(|d| d.unwrap()).collect();
            r.arrived = 0;
            r.generation += 1;
            cv.notify_all();
        } else {
            while r.generation == generation {
                r = cv.wait(r).unwrap();
            }
        }
        r.result.clone()
    }
}

fn to_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// `root`'s buffer, of the same length as every rank's.
fn take_root<T: Copy>(
    all: &[Vec<u8>],
    root: usize,
    buf: &mut [T],
    decode: impl Fn(&[u8]) -> Vec<T>,
) {
    let got = decode(&all[root]);
    assert_eq!(
        got.len(),
        buf.len(),
        "ranks broadcast buffers of different lengths"
    );
    buf.copy_from_slice(&got);
}

impl Collective for Simulated {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
        let all = self.exchange(to_bytes(buf));
        take_root(&all, root, buf, from_bytes);
        Ok(())
    }
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        let all = self.exchange(buf.iter().flat_map(|x| x.to_le_bytes()).collect());
        take_root(&all, root, buf, |b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        });
        Ok(())
    }
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        *buf = self.exchange(buf.clone()).swap_remove(root);
        Ok(())
    }
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        let all = self.exchange(to_bytes(buf));
        buf.fill(0.0);
        for b in &all {
            for (s, x) in buf.iter_mut().zip(from_bytes(b)) {
                *s += x;
            }
        }
        Ok(())
    }
    fn all_gather_u64(&self, value: u64) -> Result<Vec<u64>> {
        let all = self.exchange(value.to_le_bytes().to_vec());
        Ok(all
            .iter()
            .map(|b| u64::from_le_bytes(b[..8].try_into().unwrap()))
            .collect())
    }
    fn barrier(&self) -> Result<()> {
        self.exchange(Vec::new());
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_collective_gives_what_mpi_would() {
        let handles: Vec<_> = Simulated::world(3)
            .into_iter()
            .map(|c| {
                std::thread::spawn(move || {
                    let r = c.rank() as f64;
                    let mut s = [r, 10.0 * r];
                    c.all_reduce_sum_f64(&mut s).unwrap();
                    let mut b64 = [r; 2];
                    c.broadcast_f64(&mut b64, 1).unwrap();
                    let mut b32 = [r as f32; 3];
                    c.broadcast_f32(&mut b32, 2).unwrap();
                    let mut bytes = vec![c.rank() as u8; c.rank() + 1];
                    c.broadcast_bytes(&mut bytes, 0).unwrap();
                    let g = c.all_gather_u64(u64::MAX - c.rank() as u64).unwrap();
                    c.barrier().unwrap();
                    (s, b64, b32, bytes, g)
                })
            })
            .collect();
        for h in handles {
            let (s, b64, b32, bytes, g) = h.join().unwrap();
            assert_eq!(s, [3.0, 30.0]);
            assert_eq!(b64, [1.0; 2]);
            assert_eq!(b32, [2.0; 3]);
            assert_eq!(bytes, vec![0u8]);
            assert_eq!(g, vec![u64::MAX, u64::MAX - 1, u64::MAX - 2]);
        }
    }
}
