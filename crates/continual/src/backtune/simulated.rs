//! A world of several ranks run as threads of one process, for the tests of the partitioned
//! solves and estimator (the pattern of `remanence-distributed`'s plugin tests): every collective
//! call is a round in which each rank deposits its buffer and, once all have arrived, reads all
//! of them.
use std::sync::{Arc, Condvar, Mutex};

use remanence_distributed::{Collective, Result};

#[derive(Default)]
struct Round {
    deposits: Vec<Option<Vec<u8>>>,
    arrived: usize,
    generation: u64,
    result: Vec<Vec<u8>>,
}

pub struct Simulated {
    rank: usize,
    size: usize,
    shared: Arc<(Mutex<Round>, Condvar)>,
    /// Collective calls made by this rank.
    pub calls: std::cell::Cell<usize>,
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
                calls: std::cell::Cell::new(0),
            })
            .collect()
    }

    /// Every rank's `mine`, indexed by rank.
    fn exchange(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        self.calls.set(self.calls.get() + 1);
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

impl Collective for Simulated {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn broadcast_f64(&self, buf: &mut [f64], root: usize) -> Result<()> {
        let all = self.exchange(to_bytes(buf));
        let got = from_bytes(&all[root]);
        assert_eq!(
            got.len(),
            buf.len(),
            "ranks broadcast buffers of different lengths"
        );
        buf.copy_from_slice(&got);
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32], _: usize) -> Result<()> {
        unimplemented!("not used by backward tuning")
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
