//! A plain Gripon–Berrou network: one byte per connection and scores by nested loops, written
//! straight from the rules (see [`crate::gb`] for them and their sources):
//! - SoS: s(n) = Σ_{n'} W(n', n) v(n') + γ v(n);
//! - SoM: s(n) = Σ_{clusters k ≠ k(n)} max_{n' ∈ k} W(n', n) v(n') + v(n);
//! - winner-take-all per cluster keeping ties (v(n) = 1 ⟺ s(n) = cluster max > 0), a guide
//!   holding the fanals of unguided clusters at 0, every iteration run (no early stop).
//!
//! It is the exactness reference of the bit-packed [`crate::gb::GbNetwork`] (the tests check
//! that both give the same final states) and the throughput baseline of
//! [`crate::experiments::throughput`].
use crate::error::{MemoryError, Result};
use crate::gb::{Cue, ErasedStart, GbNetwork, Message, RecallSettings, Rule};

/// A Gripon–Berrou network with an n × n byte matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenseGb {
    clusters: usize,
    active: usize,
    fanals: usize,
    w: Vec<u8>,
    /// A bit-packed network of χ clusters of one fanal, used only for its cue checks (which
    /// depend on χ and c alone once the symbols are checked here).
    shape: GbNetwork,
}

impl DenseGb {
    /// The dense network of χ = c clusters of l fanals.
    pub fn new(clusters: usize, fanals: usize) -> Result<Self> {
        Self::sparse(clusters, clusters, fanals)
    }

    /// The sparse network: χ clusters of l fanals, messages occupying c of them.
    pub fn sparse(clusters: usize, active: usize, fanals: usize) -> Result<Self> {
        // The checks (and the size limit) of the bit-packed network.
        let n = crate::gb::check_shape(clusters, active, fanals)?;
        Ok(Self {
            clusters,
            active,
            fanals,
            w: vec![0; n * n],
            shape: GbNetwork::sparse(clusters, active, 1)?,
        })
    }

    fn n(&self) -> usize {
        self.clusters * self.fanals
    }

    /// Stores a message as (cluster, symbol) pairs: every pair of its distinct fanals connected.
    pub fn store(&mut self, message: &Message) -> Result<()> {
        self.check_message(message)?;
        let n = self.n();
        for &(ka, sa) in message {
            for &(kb, sb) in message {
                if ka != kb {
                    let a = ka * self.fanals + sa as usize;
                    let b = kb * self.fanals + sb as usize;
                    self.w[a * n + b] = 1;
                }
            }
        }
        Ok(())
    }

    fn check_message(&self, message: &Message) -> Result<()> {
        if message.len() != self.active {
            return Err(MemoryError::WrongActiveCount {
                expected: self.active,
                got: message.len(),
            });
        }
        for (i, &(k, s)) in message.iter().enumerate() {
            if k >= self.clusters {
                return Err(MemoryError::IndexOutOfRange {
                    what: "cluster",
                    index: k,
                    size: self.clusters,
                });
            }
            if s as usize >= self.fanals {
                return Err(MemoryError::SymbolOutOfRange {
                    cluster: k,
                    symbol: s,
                    fanals: self.fanals,
                });
            }
            if message[..i].iter().any(|&(k2, _)| k2 == k) {
                return Err(MemoryError::DuplicateCluster {
                    what: "the message",
                    cluster: k,
                });
            }
        }
        Ok(())
    }

    /// Connection between neurons a and b.
    pub fn get(&self, a: usize, b: usize) -> bool {
        self.w[a * self.n() + b] == 1
    }

    /// Edges between distinct clusters, each pair once.
    pub fn edges(&self) -> u64 {
        self.w.iter().map(|&x| x as u64).sum::<u64>() / 2
    }

    /// Retrieval from a cue: the final state, one bool per neuron. Index loops on purpose: this
    /// is the rules written out plainly.
    #[allow(clippy::needless_range_loop)]
    pub fn recall(&self, cue: &Cue, settings: &RecallSettings) -> Result<Vec<bool>> {
        self.check_cue(cue)?;
        let (l, n) = (self.fanals, self.n());
        let allowed: Vec<bool> = match &cue.guide {
            Some(g) => (0..self.clusters).map(|k| g.contains(&k)).collect(),
            None => vec![true; self.clusters],
        };
        let mut v = vec![false; n];
        for &(k, s) in &cue.known {
            if allowed[k] {
                v[k * l + s as usize] = true;
            }
        }
        if settings.erased == ErasedStart::AllActive {
            for &k in &cue.erased {
                if allowed[k] {
                    for f in 0..l {
                        v[k * l + f] = true;
                    }
                }
            }
        }
        for _ in 0..settings.iterations {
            let mut s = vec![0u32; n];
            for (node, score) in s.iter_mut().enumerate() {
                let own = node / l;
                match settings.rule {
                    Rule::SumOfSum { gamma } => {
                        for other in 0..n {
                            if v[other] && self.w[other * n + node] == 1 {
                                *score += 1;
                            }
                        }
                        if v[node] {
                            *score += gamma;
                        }
                    }
                    Rule::SumOfMax => {
                        for k in 0..self.clusters {
                            if k == own {
                                continue;
                            }
                            let mut best = 0;
                            for f in 0..l {
                                let other = k * l + f;
                                if v[other] && self.w[other * n + node] == 1 {
                                    best = 1;
                                }
                            }
                            *score += best;
                        }
                        if v[node] {
                            *score += 1;
                        }
                    }
                }
            }
            let mut next = vec![false; n];
            for k in 0..self.clusters {
                if !allowed[k] {
                    continue;
                }
                let max = (0..l).map(|f| s[k * l + f]).max().unwrap_or(0);
                if max > 0 {
                    for f in 0..l {
                        next[k * l + f] = s[k * l + f] == max;
                    }
                }
            }
            v = next;
        }
        Ok(v)
    }

    fn check_cue(&self, cue: &Cue) -> Result<()> {
        // The checks of the bit-packed network, which depend only on χ, c and the symbols.
        for &(k, s) in &cue.known {
            if k < self.clusters && s as usize >= self.fanals {
                return Err(MemoryError::SymbolOutOfRange {
                    cluster: k,
                    symbol: s,
                    fanals: self.fanals,
                });
            }
        }
        let mut shape_cue = cue.clone();
        for e in shape_cue.known.iter_mut() {
            e.1 = 0;
        }
        self.shape.check_cue(&shape_cue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_message_is_a_symmetric_clique_without_self_connections() {
        let mut d = DenseGb::new(3, 5).unwrap();
        d.store(&[(0, 1), (1, 4), (2, 0)]).unwrap();
        assert_eq!(d.edges(), 3);
        assert!(d.get(1, 5 + 4) && d.get(5 + 4, 1) && d.get(1, 10) && d.get(9, 10));
        assert!(!d.get(1, 1));
        assert!(matches!(
            d.store(&[(0, 5), (1, 0), (2, 0)]),
            Err(MemoryError::SymbolOutOfRange { symbol: 5, .. })
        ));
        let cue = Cue::with_erasures(&[(0, 1), (1, 4), (2, 0)], &[2]).unwrap();
        let v = d.recall(&cue, &RecallSettings::sos(1, 4)).unwrap();
        let active: Vec<usize> = (0..15).filter(|&i| v[i]).collect();
        assert_eq!(active, vec![1, 9, 10]);
    }
}
