//! The Gripon–Berrou clique network (Gripon & Berrou 2011, IEEE TNN 22(7):1087–1096), dense and
//! sparse (Aliabadi, Berrou, Gripon & Jiang 2014, IEEE TNNLS), bit-packed.
//!
//! **Structure.** n = χ·l binary neurons ("fanals") in χ clusters of l (l any size ≥ 1, not
//! necessarily a power of two). Fanal f of cluster k is neuron k·l + f. A message occupies c of
//! the clusters (c = χ in the dense network) with one symbol < l in each.
//!
//! **Storage.** The c fanals of a message are connected as a binary clique: W(a, b) = W(b, a) = 1
//! for every pair of distinct fanals a ≠ b of the message; no self-connections, and never an
//! edge inside a cluster. W is an n × n [`BitMatrix`], the OR over messages of the cliques, so
//! storage is incremental and order-free.
//!
//! **Retrieval.** From an initial state v ∈ {0,1}ⁿ (the cue), each iteration computes a score per
//! fanal and keeps, in each cluster, the fanals with the cluster's maximum score if it is > 0
//! (winner-take-all keeping ties: v(n) = 1 ⟺ s(n) = max_{cluster} s ∧ s(n) > 0):
//! - sum-of-sum (SoS): s(n) = Σ_{n'} W(n', n) v(n') + γ v(n), γ the memory effect;
//! - sum-of-max (SoM): s(n) = Σ_{clusters k} max_{n' ∈ k} W(n', n) v(n'), where an active fanal
//!   counts its own cluster (the own cluster contributes v(n), since W has no edge inside a
//!   cluster): each cluster contributes at most 1 (Yao, Gripon & Rabbat, arXiv 1303.7032; the
//!   rule as the `gbnn-matlab` code's comment states it).
//!
//! **Against the reference code** (`lrq3000/gbnn-matlab`, `gbnn-core/`). Its network is the
//! boolean product TᵀT of the stored codes (`gbnn_construct_network.m`, `gbnn_mini.m`), which
//! also sets the diagonal of every used fanal; its densities subtract that diagonal. Its SoS is
//! therefore our SoS with γ = 1 + `gamma_memory` (its own note in `gbnn_correct.m` says the
//! memory effect is already 1): `gbnn_mini.m` (`gamma_memory = 0`) is our γ = 1, the sheet's
//! setting. It implements no sum-of-max: SoM appears only as a to-do comment in
//! `gbnn_correct.m` (and "only SoS is implemented" in `gbnn_test.m`), so the SoM rule here is
//! the comment's and Yao et al.'s; the diagonal there is what makes an active fanal count its
//! own cluster, and an extra memory effect on top changes no winner of an erasure cue (an active
//! fanal stays iff it sees an active fanal in every other cluster). Erasure (fanals switched
//! off), winner-take-all keeping ties with the zero-score guard, a fixed loop of iterations and
//! success as an exact match of the whole state are the same rules as here.
//!
//! **The sum-of-max floor.** Whenever a wrong fanal s of an erased cluster is connected to all
//! c − 1 other fanals of the message, SoM cannot separate it from the right one: after the first
//! iteration every right fanal is active (each reaches the largest score available) and so is s
//! (it ties with the right one on the known clusters); from then on every right fanal and s score
//! c, the maximum, and stay. So the SoM error is at least the probability P_2 that a probe
//! leaves such a rival in one of its erased clusters
//! ([`crate::density::second_clique_probability`]): ≈ 0.0197 at the sheet's M = 15000
//! (d ≈ 0.2046). The connections of a rival are positively correlated, so P_2 is above the
//! independent-connection value 1 − (1 − d^{c−1})^{c_e(l−1)} ≈ 0.0152. Measured there, SoM sits
//! just above P_2 and about at SoS (≈ 0.02): the sheet's SoM 0.006 (3 of 500 probes) is below
//! this floor under its own rules (exact match, ties are errors).
//!
//! A fixed number of iterations (4 in the reference setting) is run; since an iteration is a
//! function of the state alone, the loop stops early when an iteration leaves the state
//! unchanged (the remaining ones would too), which changes no result. Success is a final state
//! equal to the stored message: in each of the message's clusters exactly its fanal active, in
//! every other cluster none (a cluster with tied winners is an error).
//!
//! **Cues.** A cue gives the symbols of some clusters (correct, or wrong: a noisy symbol) and
//! names its erased clusters. How erased clusters start is [`ErasedStart`]: the reference rule
//! (`gbnn_test.m`, `tampering_type = 'erase'`) switches the erased fanals off, so the default is
//! [`ErasedStart::Silent`]: an erased cluster starts with no active fanal and is filled by the
//! first iteration; [`ErasedStart::AllActive`] starts every fanal of an erased cluster active
//! (the other convention in the literature). The one-iteration error estimate of the reference
//! sheet, P_e = 1 − (1 − d^{c−c_e})^{c_e(l−1)}, assumes silent erased clusters.
//!
//! **Sparse messages and guided recall.** In the sparse network (χ clusters, messages in c of
//! them) a cue may carry a guide: the clusters the message is known to occupy. As the reference
//! code's `guiding_mask`, every fanal outside the guided clusters is held at 0, in the cue and
//! after every iteration. Blind recall (no guide) is the plain rule above over all clusters; with
//! local winner-take-all it lights fanals in unused clusters, so it is not the blind rule of
//! Aliabadi et al. (which the reference sheet does not give) and is not used by the experiments.
//!
//! Many cues are recalled at once by [`GbNetwork::recall_batch`]: coarse contiguous blocks, one
//! per thread (`std::thread::scope`); the results are those of [`GbNetwork::recall`], in order,
//! whatever the thread count.
use rand::seq::index::sample;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::bits::{self, BitMatrix};
use crate::error::{invalid, nonzero, MemoryError, Result};

/// A message: (cluster, symbol) pairs, one per occupied cluster.
pub type Message = [(usize, u32)];

/// The score rule of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum Rule {
    /// s(n) = Σ W(n', n) v(n') + γ v(n).
    SumOfSum { gamma: u32 },
    /// s(n) = Σ_clusters max_{n' ∈ cluster} W(n', n) v(n'), an active fanal counting its own
    /// cluster.
    SumOfMax,
}

impl Rule {
    pub fn name(&self) -> &'static str {
        match self {
            Rule::SumOfSum { .. } => "SoS",
            Rule::SumOfMax => "SoM",
        }
    }
}

/// How the fanals of an erased cluster start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErasedStart {
    /// No fanal active (the reference code's erasure).
    #[default]
    Silent,
    /// Every fanal of the cluster active.
    AllActive,
}

/// Settings of a retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecallSettings {
    pub rule: Rule,
    /// Iterations (at most; the loop ends early at a fixed point).
    pub iterations: usize,
    pub erased: ErasedStart,
}

impl RecallSettings {
    /// Sum-of-sum with memory effect γ, `iterations` iterations, silent erased clusters.
    pub fn sos(gamma: u32, iterations: usize) -> Self {
        Self {
            rule: Rule::SumOfSum { gamma },
            iterations,
            erased: ErasedStart::Silent,
        }
    }

    /// Sum-of-max, `iterations` iterations, silent erased clusters.
    pub fn som(iterations: usize) -> Self {
        Self {
            rule: Rule::SumOfMax,
            iterations,
            erased: ErasedStart::Silent,
        }
    }
}

/// A retrieval cue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cue {
    /// Clusters whose symbol is given, with that symbol (a noisy cue gives a wrong one).
    pub known: Vec<(usize, u32)>,
    /// Clusters whose symbol is missing.
    pub erased: Vec<usize>,
    /// Guided recall: the only clusters allowed active fanals (`None`: all).
    pub guide: Option<Vec<usize>>,
}

impl Cue {
    /// The message with the clusters `erase` erased (unguided).
    pub fn with_erasures(message: &Message, erase: &[usize]) -> Result<Self> {
        if erase.len() > message.len() {
            return Err(MemoryError::TooManyErased {
                erased: erase.len(),
                clusters: message.len(),
            });
        }
        for &e in erase {
            if !message.iter().any(|&(k, _)| k == e) {
                return Err(invalid(format!(
                    "cannot erase cluster {e}: the message does not occupy it"
                )));
            }
        }
        Ok(Self {
            known: message
                .iter()
                .copied()
                .filter(|(k, _)| !erase.contains(k))
                .collect(),
            erased: erase.to_vec(),
            guide: None,
        })
    }

    /// A probe of a stored message: `erase` of its clusters, drawn at random, erased, and
    /// `noise` others given a wrong symbol (uniform among the l − 1 others); guided by the
    /// message's clusters if `guided`.
    pub fn probe(
        message: &Message,
        fanals: usize,
        erase: usize,
        noise: usize,
        guided: bool,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let c = message.len();
        if erase > c {
            return Err(MemoryError::TooManyErased {
                erased: erase,
                clusters: c,
            });
        }
        if erase + noise > c {
            return Err(invalid(format!(
                "cannot erase {erase} and noise {noise} clusters of a message that occupies {c}"
            )));
        }
        if noise > 0 && fanals < 2 {
            return Err(invalid("noisy symbols need at least 2 fanals per cluster"));
        }
        let picked = sample(rng, c, erase + noise).into_vec();
        let erased: Vec<usize> = picked[..erase].iter().map(|&i| message[i].0).collect();
        let noisy = &picked[erase..];
        let mut known = Vec::with_capacity(c - erase);
        for (i, &(k, s)) in message.iter().enumerate() {
            if picked[..erase].contains(&i) {
                continue;
            }
            let s = if noisy.contains(&i) {
                // Uniform over the l − 1 other symbols.
                let r = rng.random_range(0..fanals as u32 - 1);
                if r >= s {
                    r + 1
                } else {
                    r
                }
            } else {
                s
            };
            known.push((k, s));
        }
        Ok(Self {
            known,
            erased,
            guide: guided.then(|| message.iter().map(|&(k, _)| k).collect()),
        })
    }
}

/// A network state: one bit per fanal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    clusters: usize,
    fanals: usize,
    words: Vec<u64>,
}

/// What a cluster of a final state says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decoded {
    /// No active fanal.
    Silent,
    /// Exactly one active fanal, this symbol.
    One(u32),
    /// Several tied fanals (this many).
    Ambiguous(usize),
}

impl State {
    fn new(clusters: usize, fanals: usize) -> Self {
        Self {
            clusters,
            fanals,
            words: vec![0; bits::words_for(clusters * fanals)],
        }
    }

    /// The packed bits (fanal k·l + f at bit k·l + f).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn is_active(&self, cluster: usize, symbol: u32) -> bool {
        bits::get_bit(&self.words, cluster * self.fanals + symbol as usize)
    }

    /// Active symbols of a cluster, ascending.
    pub fn active_in(&self, cluster: usize) -> Vec<u32> {
        (0..self.fanals as u32)
            .filter(|&f| self.is_active(cluster, f))
            .collect()
    }

    /// Number of active fanals.
    pub fn count(&self) -> usize {
        bits::count_ones(&self.words) as usize
    }

    /// Each cluster's reading.
    pub fn decode(&self) -> Vec<Decoded> {
        (0..self.clusters)
            .map(|k| {
                let lo = k * self.fanals;
                match bits::count_range(&self.words, lo, lo + self.fanals) {
                    0 => Decoded::Silent,
                    1 => Decoded::One(self.active_in(k)[0]),
                    m => Decoded::Ambiguous(m as usize),
                }
            })
            .collect()
    }

    /// Whether the state is exactly `message`: its fanal alone in each of its clusters, nothing
    /// elsewhere.
    pub fn matches(&self, message: &Message) -> bool {
        self.count() == message.len()
            && message.iter().all(|&(k, s)| {
                k < self.clusters && (s as usize) < self.fanals && self.is_active(k, s)
            })
    }

    /// One bool per fanal.
    pub fn to_bools(&self) -> Vec<bool> {
        (0..self.clusters * self.fanals)
            .map(|i| bits::get_bit(&self.words, i))
            .collect()
    }
}

/// A Gripon–Berrou network of χ clusters of l fanals, messages occupying c clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GbNetwork {
    clusters: usize,
    active: usize,
    fanals: usize,
    stored: u64,
    w: BitMatrix,
}

impl GbNetwork {
    /// The dense network: c = χ clusters of l fanals, every message occupying all.
    pub fn new(clusters: usize, fanals: usize) -> Result<Self> {
        Self::sparse(clusters, clusters, fanals)
    }

    /// The sparse network: χ clusters of l fanals, messages occupying c ≤ χ of them.
    pub fn sparse(clusters: usize, active: usize, fanals: usize) -> Result<Self> {
        let n = check_shape(clusters, active, fanals)?;
        Ok(Self {
            clusters,
            active,
            fanals,
            stored: 0,
            w: BitMatrix::new(n, n),
        })
    }

    /// χ, the number of clusters.
    pub fn clusters(&self) -> usize {
        self.clusters
    }

    /// c, the clusters a message occupies.
    pub fn active(&self) -> usize {
        self.active
    }

    /// l, fanals per cluster.
    pub fn fanals(&self) -> usize {
        self.fanals
    }

    /// n = χ·l.
    pub fn neurons(&self) -> usize {
        self.clusters * self.fanals
    }

    /// Messages stored so far (duplicates counted).
    pub fn stored(&self) -> u64 {
        self.stored
    }

    pub fn is_sparse(&self) -> bool {
        self.active < self.clusters
    }

    /// The connection matrix.
    pub fn matrix(&self) -> &BitMatrix {
        &self.w
    }

    /// Whether fanal (ka, fa) is connected to (kb, fb).
    pub fn connected(&self, a: (usize, u32), b: (usize, u32)) -> bool {
        self.w.get(
            a.0 * self.fanals + a.1 as usize,
            b.0 * self.fanals + b.1 as usize,
        )
    }

    /// Checks a message: c distinct clusters in range, symbols < l.
    pub fn check_message(&self, message: &Message) -> Result<()> {
        if message.len() != self.active {
            return Err(if self.is_sparse() {
                MemoryError::WrongActiveCount {
                    expected: self.active,
                    got: message.len(),
                }
            } else {
                MemoryError::WrongLength {
                    what: "the message",
                    expected: self.active,
                    got: message.len(),
                }
            });
        }
        self.check_entries(message, "the message")
    }

    fn check_entries(&self, entries: &Message, what: &'static str) -> Result<()> {
        for (i, &(k, s)) in entries.iter().enumerate() {
            self.check_cluster(k)?;
            if s as usize >= self.fanals {
                return Err(MemoryError::SymbolOutOfRange {
                    cluster: k,
                    symbol: s,
                    fanals: self.fanals,
                });
            }
            if entries[..i].iter().any(|&(k2, _)| k2 == k) {
                return Err(MemoryError::DuplicateCluster { what, cluster: k });
            }
        }
        Ok(())
    }

    fn check_cluster(&self, k: usize) -> Result<()> {
        if k >= self.clusters {
            return Err(MemoryError::IndexOutOfRange {
                what: "cluster",
                index: k,
                size: self.clusters,
            });
        }
        Ok(())
    }

    /// Stores a dense message: one symbol per cluster, `symbols.len() = χ`.
    pub fn store(&mut self, symbols: &[u32]) -> Result<()> {
        if self.is_sparse() {
            return Err(invalid(format!(
                "this network holds sparse messages ({} of {} clusters): use store_sparse",
                self.active, self.clusters
            )));
        }
        if symbols.len() != self.clusters {
            return Err(MemoryError::WrongLength {
                what: "the message",
                expected: self.clusters,
                got: symbols.len(),
            });
        }
        let m: Vec<(usize, u32)> = symbols.iter().copied().enumerate().collect();
        self.store_sparse(&m)
    }

    /// Stores a message given as (cluster, symbol) pairs (c of them, distinct clusters).
    pub fn store_sparse(&mut self, message: &Message) -> Result<()> {
        self.check_message(message)?;
        self.store_unchecked(message);
        Ok(())
    }

    fn store_unchecked(&mut self, message: &Message) {
        let l = self.fanals;
        let nodes: Vec<usize> = message.iter().map(|&(k, s)| k * l + s as usize).collect();
        let wpr = self.w.words_per_row();
        let mut clique = vec![0u64; wpr];
        for &a in &nodes {
            bits::set_bit(&mut clique, a);
        }
        for &a in &nodes {
            // Row a gets the clique minus a itself: no self-connection.
            bits::clear_bit(&mut clique, a);
            self.w.or_row(a, &clique);
            bits::set_bit(&mut clique, a);
        }
        self.stored += 1;
    }

    /// Stores every message of `messages`.
    pub fn store_all(&mut self, messages: &MessageSet) -> Result<()> {
        if messages.clusters() != self.clusters
            || messages.active() != self.active
            || messages.fanals() != self.fanals
        {
            return Err(invalid(format!(
                "messages of {} clusters ({} active) of {} fanals cannot be stored in a network of \
                 {} clusters ({} active) of {} fanals",
                messages.clusters(),
                messages.active(),
                messages.fanals(),
                self.clusters,
                self.active,
                self.fanals
            )));
        }
        for i in 0..messages.len() {
            self.store_unchecked(&messages.get(i));
        }
        Ok(())
    }

    /// Connections between fanals of distinct clusters, counted once per pair.
    pub fn edges(&self) -> u64 {
        self.w.count_ones() / 2
    }

    /// Measured density: edges over the χ(χ−1)/2·l² possible ones between distinct clusters.
    pub fn density(&self) -> f64 {
        let q = self.connections();
        if q == 0.0 {
            0.0
        } else {
            self.edges() as f64 / q
        }
    }

    /// Q = χ(χ−1)/2·l², the binary connections between distinct clusters.
    pub fn connections(&self) -> f64 {
        let (x, l) = (self.clusters as f64, self.fanals as f64);
        x * (x - 1.0) / 2.0 * l * l
    }

    /// Checks a cue against the network.
    pub fn check_cue(&self, cue: &Cue) -> Result<()> {
        self.check_entries(&cue.known, "the cue")?;
        for (i, &e) in cue.erased.iter().enumerate() {
            self.check_cluster(e)?;
            if cue.known.iter().any(|&(k, _)| k == e) || cue.erased[..i].contains(&e) {
                return Err(MemoryError::DuplicateCluster {
                    what: "the cue",
                    cluster: e,
                });
            }
        }
        if cue.erased.len() > self.active {
            return Err(MemoryError::TooManyErased {
                erased: cue.erased.len(),
                clusters: self.active,
            });
        }
        if let Some(g) = &cue.guide {
            for (i, &k) in g.iter().enumerate() {
                self.check_cluster(k)?;
                if g[..i].contains(&k) {
                    return Err(MemoryError::DuplicateCluster {
                        what: "the guide",
                        cluster: k,
                    });
                }
            }
        }
        Ok(())
    }

    /// The clusters allowed active fanals (the guide, or all), ascending.
    pub(crate) fn allowed(&self, cue: &Cue) -> Vec<usize> {
        match &cue.guide {
            Some(g) => {
                let mut g = g.clone();
                g.sort_unstable();
                g
            }
            None => (0..self.clusters).collect(),
        }
    }

    /// The initial state of a cue (guide applied).
    fn initial(&self, cue: &Cue, erased: ErasedStart, allowed: &[bool]) -> State {
        let l = self.fanals;
        let mut v = State::new(self.clusters, l);
        for &(k, s) in &cue.known {
            if allowed[k] {
                bits::set_bit(&mut v.words, k * l + s as usize);
            }
        }
        if erased == ErasedStart::AllActive {
            for &k in &cue.erased {
                if allowed[k] {
                    bits::set_range(&mut v.words, k * l, (k + 1) * l);
                }
            }
        }
        v
    }

    /// Retrieval from one cue.
    pub fn recall(&self, cue: &Cue, settings: &RecallSettings) -> Result<State> {
        self.check_cue(cue)?;
        Ok(self.recall_checked(cue, settings, &mut vec![0; self.fanals]))
    }

    fn recall_checked(&self, cue: &Cue, settings: &RecallSettings, scores: &mut [u32]) -> State {
        let (l, chi) = (self.fanals, self.clusters);
        let allowed_list = self.allowed(cue);
        let mut allowed = vec![false; chi];
        for &k in &allowed_list {
            allowed[k] = true;
        }
        let mut v = self.initial(cue, settings.erased, &allowed);
        let mut next = State::new(chi, l);
        let mut live: Vec<usize> = Vec::with_capacity(chi);
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(chi);
        for _ in 0..settings.iterations {
            // Clusters holding an active fanal: the only ones that contribute to scores.
            live.clear();
            live.extend(
                allowed_list
                    .iter()
                    .copied()
                    .filter(|&k| bits::any_range(&v.words, k * l, (k + 1) * l)),
            );
            if live.is_empty() {
                break;
            }
            // Runs of consecutive live clusters as bit ranges (one range in the dense network).
            spans.clear();
            for &k in &live {
                match spans.last_mut() {
                    Some(last) if last.1 == k * l => last.1 = (k + 1) * l,
                    _ => spans.push((k * l, (k + 1) * l)),
                }
            }
            next.words.fill(0);
            for &k in &allowed_list {
                let base = k * l;
                for (f, s) in scores.iter_mut().enumerate() {
                    let node = base + f;
                    let row = self.w.row(node);
                    let own = bits::get_bit(&v.words, node) as u32;
                    *s = match settings.rule {
                        Rule::SumOfSum { gamma } => {
                            spans
                                .iter()
                                .map(|&(lo, hi)| bits::and_count_range(row, &v.words, lo, hi))
                                .sum::<u32>()
                                + gamma * own
                        }
                        Rule::SumOfMax => {
                            live.iter()
                                .filter(|&&k2| {
                                    k2 != k
                                        && bits::and_any_range(row, &v.words, k2 * l, (k2 + 1) * l)
                                })
                                .count() as u32
                                + own
                        }
                    };
                }
                let max = scores.iter().copied().max().unwrap_or(0);
                if max > 0 {
                    for (f, &s) in scores.iter().enumerate() {
                        if s == max {
                            bits::set_bit(&mut next.words, base + f);
                        }
                    }
                }
            }
            std::mem::swap(&mut v, &mut next);
            if v.words == next.words {
                break;
            }
        }
        v
    }

    /// Retrieval from many cues, in parallel over `threads` threads (contiguous blocks); the
    /// same states as [`recall`](Self::recall) one by one, in order. Every cue is checked first.
    pub fn recall_batch(
        &self,
        cues: &[Cue],
        settings: &RecallSettings,
        threads: usize,
    ) -> Result<Vec<State>> {
        nonzero("threads", threads)?;
        for c in cues {
            self.check_cue(c)?;
        }
        if cues.is_empty() {
            return Ok(Vec::new());
        }
        let threads = threads.min(cues.len());
        let block = cues.len().div_ceil(threads);
        let run = |chunk: &[Cue]| -> Vec<State> {
            let mut scores = vec![0u32; self.fanals];
            chunk
                .iter()
                .map(|c| self.recall_checked(c, settings, &mut scores))
                .collect()
        };
        if threads == 1 {
            return Ok(run(cues));
        }
        let parts: Vec<Vec<State>> = std::thread::scope(|s| {
            let handles: Vec<_> = cues
                .chunks(block)
                .map(|chunk| s.spawn(move || run(chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a recall thread panicked"))
                .collect()
        });
        Ok(parts.into_iter().flatten().collect())
    }

    /// The network as bytes: the magic `RMGBNET1`, χ, c, l and the stored count as u64
    /// little-endian, then the n × ⌈n/64⌉ words of W, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.w.words().len() * 8);
        out.extend_from_slice(NET_MAGIC);
        for v in [
            self.clusters as u64,
            self.active as u64,
            self.fanals as u64,
            self.stored,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for w in self.w.words() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s output; checks the header, the size and that W is a
    /// symmetric matrix of edges between distinct clusters.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let header = read_header(bytes, NET_MAGIC, 4)?;
        let [chi, c, l, stored] = [header[0], header[1], header[2], header[3]];
        let mut net = Self::sparse(to_usize(chi)?, to_usize(c)?, to_usize(l)?)
            .map_err(|e| MemoryError::Corrupt(format!("bad header: {e}")))?;
        let body = &bytes[NET_MAGIC.len() + 32..];
        let words = net.w.words().len();
        if body.len() != words * 8 {
            return Err(MemoryError::Corrupt(format!(
                "a network of {chi} clusters of {l} fanals needs {} bytes of connections, found {}",
                words * 8,
                body.len()
            )));
        }
        let data: Vec<u64> = body
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let n = net.neurons();
        let w = BitMatrix::from_words(n, n, data)?;
        let lsz = net.fanals;
        // Only the set bits are visited: O(edges), not O(n²).
        for a in 0..n {
            for (wi, &word) in w.row(a).iter().enumerate() {
                let mut rest = word;
                while rest != 0 {
                    let b = wi * 64 + rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    if a / lsz == b / lsz || !w.get(b, a) {
                        return Err(MemoryError::Corrupt(format!(
                            "connection ({a}, {b}) is inside a cluster or not symmetric"
                        )));
                    }
                }
            }
        }
        net.w = w;
        net.stored = stored;
        Ok(net)
    }
}

const NET_MAGIC: &[u8; 8] = b"RMGBNET1";
const MSG_MAGIC: &[u8; 8] = b"RMGBMSG1";

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| MemoryError::Corrupt(format!("{v} does not fit a usize")))
}

fn read_header(bytes: &[u8], magic: &[u8; 8], fields: usize) -> Result<Vec<u64>> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        return Err(MemoryError::Corrupt(format!(
            "expected the header {}",
            String::from_utf8_lossy(magic)
        )));
    }
    if bytes.len() < 8 + 8 * fields {
        return Err(MemoryError::Corrupt("truncated header".into()));
    }
    Ok((0..fields)
        .map(|i| u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes")))
        .collect())
}

/// A set of messages kept compactly: c symbols per message, and for sparse messages their c
/// clusters (ascending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSet {
    clusters: usize,
    active: usize,
    fanals: usize,
    /// c clusters per message, only for sparse messages (empty when c = χ).
    cluster_ids: Vec<u32>,
    /// c symbols per message.
    symbols: Vec<u32>,
}

impl MessageSet {
    /// `m` dense messages of χ uniform symbols.
    pub fn random(clusters: usize, fanals: usize, m: usize, rng: &mut impl Rng) -> Result<Self> {
        Self::random_sparse(clusters, clusters, fanals, m, rng)
    }

    /// `m` sparse messages: c of the χ clusters drawn uniformly without replacement, a uniform
    /// symbol in each (dense when c = χ).
    pub fn random_sparse(
        clusters: usize,
        active: usize,
        fanals: usize,
        m: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        // The same checks as the network's.
        check_shape(clusters, active, fanals)?;
        if fanals > u32::MAX as usize {
            return Err(invalid(format!("{fanals} fanals do not fit u32 symbols")));
        }
        let sparse = active < clusters;
        let mut cluster_ids = Vec::with_capacity(if sparse { m * active } else { 0 });
        let mut symbols = Vec::with_capacity(m * active);
        for _ in 0..m {
            if sparse {
                let mut ks = sample(rng, clusters, active).into_vec();
                ks.sort_unstable();
                cluster_ids.extend(ks.iter().map(|&k| k as u32));
            }
            for _ in 0..active {
                symbols.push(rng.random_range(0..fanals as u32));
            }
        }
        Ok(Self {
            clusters,
            active,
            fanals,
            cluster_ids,
            symbols,
        })
    }

    pub fn clusters(&self) -> usize {
        self.clusters
    }

    pub fn active(&self) -> usize {
        self.active
    }

    pub fn fanals(&self) -> usize {
        self.fanals
    }

    pub fn len(&self) -> usize {
        self.symbols.len() / self.active
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Message `i` as (cluster, symbol) pairs.
    pub fn get(&self, i: usize) -> Vec<(usize, u32)> {
        let c = self.active;
        let syms = &self.symbols[i * c..(i + 1) * c];
        if self.cluster_ids.is_empty() {
            syms.iter().copied().enumerate().collect()
        } else {
            self.cluster_ids[i * c..(i + 1) * c]
                .iter()
                .map(|&k| k as usize)
                .zip(syms.iter().copied())
                .collect()
        }
    }

    /// The set as bytes: the magic `RMGBMSG1`, χ, c, l and M as u64 little-endian, then for
    /// each message its c clusters (sparse sets only) and its c symbols as u32 little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + (self.cluster_ids.len() + self.symbols.len()) * 4);
        out.extend_from_slice(MSG_MAGIC);
        for v in [self.clusters, self.active, self.fanals, self.len()] {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        let c = self.active;
        for i in 0..self.len() {
            if !self.cluster_ids.is_empty() {
                for k in &self.cluster_ids[i * c..(i + 1) * c] {
                    out.extend_from_slice(&k.to_le_bytes());
                }
            }
            for s in &self.symbols[i * c..(i + 1) * c] {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s output, checking every cluster and symbol.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let h = read_header(bytes, MSG_MAGIC, 4)?;
        let (chi, c, l, m) = (
            to_usize(h[0])?,
            to_usize(h[1])?,
            to_usize(h[2])?,
            to_usize(h[3])?,
        );
        check_shape(chi, c, l).map_err(|e| MemoryError::Corrupt(format!("bad header: {e}")))?;
        let sparse = c < chi;
        let per = if sparse { 2 * c } else { c };
        let body = &bytes[40..];
        let need = m
            .checked_mul(per * 4)
            .ok_or_else(|| MemoryError::Corrupt("size overflows".into()))?;
        if body.len() != need {
            return Err(MemoryError::Corrupt(format!(
                "{m} messages need {need} bytes, found {}",
                body.len()
            )));
        }
        let vals: Vec<u32> = body
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let mut cluster_ids = Vec::new();
        let mut symbols = Vec::with_capacity(m * c);
        for (i, msg) in vals.chunks_exact(per).enumerate() {
            let (ks, ss) = if sparse {
                msg.split_at(c)
            } else {
                (&msg[..0], msg)
            };
            if sparse
                && (ks.windows(2).any(|w| w[0] >= w[1]) || ks.iter().any(|&k| k as usize >= chi))
            {
                return Err(MemoryError::Corrupt(format!(
                    "message {i}: clusters {ks:?} are not ascending below {chi}"
                )));
            }
            if let Some(s) = ss.iter().find(|&&s| s as usize >= l) {
                return Err(MemoryError::Corrupt(format!(
                    "message {i}: symbol {s} is not below {l}"
                )));
            }
            cluster_ids.extend_from_slice(ks);
            symbols.extend_from_slice(ss);
        }
        Ok(Self {
            clusters: chi,
            active: c,
            fanals: l,
            cluster_ids,
            symbols,
        })
    }
}

/// Checks χ, c and l; returns n = χ·l.
pub(crate) fn check_shape(clusters: usize, active: usize, fanals: usize) -> Result<usize> {
    nonzero("clusters", clusters)?;
    nonzero("active clusters", active)?;
    nonzero("fanals per cluster", fanals)?;
    if active > clusters {
        return Err(invalid(format!(
            "messages cannot occupy {active} clusters of a network of {clusters}"
        )));
    }
    clusters
        .checked_mul(fanals)
        .filter(|&n| n <= MAX_NEURONS)
        .ok_or_else(|| {
            invalid(format!(
                "{clusters} clusters of {fanals} fanals is too large (n = χ·l ≤ {MAX_NEURONS} \
                 neurons: the matrix is n² bits)"
            ))
        })
}

/// The largest n = χ·l (a 65 536² matrix is 512 MiB).
pub const MAX_NEURONS: usize = 1 << 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::DenseGb;
    use crate::density;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn settings_list() -> Vec<RecallSettings> {
        let mut v = Vec::new();
        for erased in [ErasedStart::Silent, ErasedStart::AllActive] {
            for rule in [
                Rule::SumOfSum { gamma: 0 },
                Rule::SumOfSum { gamma: 1 },
                Rule::SumOfSum { gamma: 3 },
                Rule::SumOfMax,
            ] {
                v.push(RecallSettings {
                    rule,
                    iterations: 4,
                    erased,
                });
            }
        }
        v
    }

    /// Bit-packed and dense networks give the same final states, on random instances with
    /// cluster sizes that are not multiples of 64 (so clusters straddle words), at low and high
    /// load (many ties), with erased and noisy cues, dense and sparse (guided and blind).
    #[test]
    fn bit_packed_equals_dense_on_random_instances() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let shapes = [
            // (χ, c, l, M)
            (4, 4, 13, 20),
            (4, 4, 13, 120),
            (6, 6, 70, 400),
            (6, 6, 70, 3000),
            (5, 5, 64, 1500),
            (12, 4, 20, 300),
            (12, 4, 20, 1500),
        ];
        let mut compared = 0;
        let mut failures_seen = 0;
        for &(chi, c, l, m) in &shapes {
            let msgs = MessageSet::random_sparse(chi, c, l, m, &mut rng).unwrap();
            let mut packed = GbNetwork::sparse(chi, c, l).unwrap();
            let mut dense = DenseGb::sparse(chi, c, l).unwrap();
            packed.store_all(&msgs).unwrap();
            for i in 0..m {
                dense.store(&msgs.get(i)).unwrap();
            }
            assert_eq!(packed.edges(), dense.edges());
            for p in 0..12 {
                let msg = msgs.get(rng.random_range(0..m));
                let erase = rng.random_range(0..c);
                let noise = rng.random_range(0..=(c - erase)).min(1);
                let guided = chi > c && p % 3 != 0;
                let cue = Cue::probe(&msg, l, erase, noise, guided, &mut rng).unwrap();
                for s in settings_list() {
                    let a = packed.recall(&cue, &s).unwrap();
                    let b = dense.recall(&cue, &s).unwrap();
                    assert_eq!(a.to_bools(), b, "χ={chi} c={c} l={l} M={m} {cue:?} {s:?}");
                    compared += 1;
                    failures_seen += usize::from(!a.matches(&msg));
                }
            }
        }
        assert_eq!(compared, shapes.len() * 12 * 8);
        // The instances include failed retrievals (ties, wrong winners), not only easy ones.
        assert!(failures_seen > 50, "{failures_seen}");
    }

    #[test]
    fn recall_batch_equals_one_by_one_for_any_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let msgs = MessageSet::random(8, 100, 4000, &mut rng).unwrap();
        let mut net = GbNetwork::new(8, 100).unwrap();
        net.store_all(&msgs).unwrap();
        let cues: Vec<Cue> = (0..37)
            .map(|i| Cue::probe(&msgs.get(i * 7), 100, 4, 0, false, &mut rng).unwrap())
            .collect();
        for s in [RecallSettings::sos(1, 4), RecallSettings::som(4)] {
            let one: Vec<State> = cues.iter().map(|c| net.recall(c, &s).unwrap()).collect();
            for threads in [1, 2, 3, 8, 64] {
                assert_eq!(
                    net.recall_batch(&cues, &s, threads).unwrap(),
                    one,
                    "{threads}"
                );
            }
        }
        assert_eq!(
            net.recall_batch(&cues, &RecallSettings::som(4), 0),
            Err(MemoryError::ZeroSize { what: "threads" })
        );
    }

    /// c = 8, l = 256, M = 500 (d ≈ 0.008): every probe with 4 erased clusters, or with 2
    /// noisy symbols (SoS, γ = 1), is retrieved exactly.
    #[test]
    fn small_load_has_zero_error() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let msgs = MessageSet::random(8, 256, 500, &mut rng).unwrap();
        let mut net = GbNetwork::new(8, 256).unwrap();
        net.store_all(&msgs).unwrap();
        assert_eq!(net.stored(), 500);
        let mut erased = Vec::new();
        let mut noisy = Vec::new();
        for i in 0..200 {
            erased.push(Cue::probe(&msgs.get(i), 256, 4, 0, false, &mut rng).unwrap());
            noisy.push(Cue::probe(&msgs.get(i), 256, 0, 2, false, &mut rng).unwrap());
        }
        assert!(noisy
            .iter()
            .enumerate()
            .all(|(i, c)| c.known != msgs.get(i)));
        for s in [RecallSettings::sos(1, 4), RecallSettings::som(4)] {
            for (i, st) in net.recall_batch(&erased, &s, 2).unwrap().iter().enumerate() {
                assert!(
                    st.matches(&msgs.get(i)),
                    "{s:?} probe {i}: {:?}",
                    st.decode()
                );
            }
        }
        for (i, st) in net
            .recall_batch(&noisy, &RecallSettings::sos(1, 4), 1)
            .unwrap()
            .iter()
            .enumerate()
        {
            assert!(
                st.matches(&msgs.get(i)),
                "noisy probe {i}: {:?}",
                st.decode()
            );
        }
    }

    /// Two messages that differ in one cluster: erasing it leaves both fanals tied, an
    /// ambiguous cluster, which is an error.
    #[test]
    fn ties_are_kept_and_count_as_errors() {
        let mut net = GbNetwork::new(4, 10).unwrap();
        net.store(&[1, 2, 3, 4]).unwrap();
        net.store(&[1, 2, 3, 7]).unwrap();
        let m: Vec<(usize, u32)> = vec![(0, 1), (1, 2), (2, 3), (3, 4)];
        let cue = Cue::with_erasures(&m, &[3]).unwrap();
        for s in [RecallSettings::sos(1, 4), RecallSettings::som(4)] {
            let st = net.recall(&cue, &s).unwrap();
            assert_eq!(st.active_in(3), vec![4, 7]);
            assert_eq!(
                st.decode(),
                vec![
                    Decoded::One(1),
                    Decoded::One(2),
                    Decoded::One(3),
                    Decoded::Ambiguous(2)
                ]
            );
            assert!(!st.matches(&m));
        }
        // Erasing a shared cluster instead is recovered exactly.
        let cue = Cue::with_erasures(&m, &[0]).unwrap();
        assert!(net
            .recall(&cue, &RecallSettings::sos(1, 4))
            .unwrap()
            .matches(&m));
        assert!(net.connected((0, 1), (3, 7)) && net.connected((3, 7), (0, 1)));
        assert!(!net.connected((3, 4), (3, 7)) && !net.connected((0, 1), (0, 1)));
    }

    /// The sheet's setting (c = 8, l = 256, M = 15000, 4 erased). Rivals (a wrong fanal
    /// connected to the 7 other fanals of a stored message) occur at the rate of the formula,
    /// 7·255·π ≈ 0.040 per message over its 8 clusters (within 4 Poisson standard errors, over
    /// all messages); SoM fails on every probe that leaves a rival in an erased cluster, and on
    /// few others, so its error sits at P_2 ≈ 0.0197, not at the sheet's 0.006.
    #[test]
    fn som_fails_whenever_a_second_clique_completes_the_cue() {
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        let (c, l, m, erase, probes) = (8, 256, 15_000, 4, 3000);
        let msgs = MessageSet::random(c, l, m, &mut rng).unwrap();
        let mut net = GbNetwork::new(c, l).unwrap();
        net.store_all(&msgs).unwrap();
        let has_rival = |msg: &Message, e: usize| {
            (0..l as u32).any(|f| {
                f != msg[e].1
                    && msg
                        .iter()
                        .all(|&(k, s)| k == e || net.connected((k, s), (e, f)))
            })
        };
        let rivals: usize = (0..m)
            .map(|i| {
                let msg = msgs.get(i);
                (0..c).filter(|&e| has_rival(&msg, e)).count()
            })
            .sum();
        let expected = (c * (l - 1)) as f64 * density::rival_probability(c, l, m as u64);
        let se = (expected / m as f64).sqrt();
        let per_message = rivals as f64 / m as f64;
        assert!(
            (per_message - expected).abs() < 4.0 * se,
            "{per_message} {expected}"
        );
        let mut idx = Vec::with_capacity(probes);
        let mut cues = Vec::with_capacity(probes);
        for _ in 0..probes {
            let i = rng.random_range(0..m);
            cues.push(Cue::probe(&msgs.get(i), l, erase, 0, false, &mut rng).unwrap());
            idx.push(i);
        }
        let states = net.recall_batch(&cues, &RecallSettings::som(4), 2).unwrap();
        let (mut second, mut failed) = (0usize, 0usize);
        for ((st, cue), &i) in states.iter().zip(&cues).zip(&idx) {
            let msg = msgs.get(i);
            let ok = st.matches(&msg);
            if cue.erased.iter().any(|&e| has_rival(&msg, e)) {
                second += 1;
                assert!(!ok, "probe of message {i}: {:?}", st.decode());
            }
            failed += usize::from(!ok);
        }
        // Failures beyond the second cliques are rare (SoM sits just above its floor).
        assert!(
            second > 0 && failed >= second && failed - second < probes / 100,
            "{failed} {second}"
        );
        let p2 = density::second_clique_probability(c, l, m as u64, erase);
        // The sheet's 3 failures of 500 probes: P(X ≤ 3) under 2% for X ~ Binomial(500, P_2),
        // even at the floor (≈ 0.010).
        let mut term = (1.0 - p2).powi(500);
        let mut tail = term;
        for k in 0..3 {
            term *= (500 - k) as f64 / (k + 1) as f64 * p2 / (1.0 - p2);
            tail += term;
        }
        assert!(p2 > 0.019 && tail < 0.02, "{p2} {tail}");
    }

    /// The measured density against d = 1 − (1 − 1/l²)^M and the sparse formula, within
    /// 5 binomial standard errors over the Q possible connections.
    #[test]
    fn measured_density_follows_the_formulas() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (chi, c, l, m) in [
            (4, 4, 32, 300),
            (4, 4, 32, 1500),
            (6, 6, 50, 3000),
            (30, 6, 16, 4000),
            (30, 6, 16, 20_000),
        ] {
            let msgs = MessageSet::random_sparse(chi, c, l, m, &mut rng).unwrap();
            let mut net = GbNetwork::sparse(chi, c, l).unwrap();
            net.store_all(&msgs).unwrap();
            let d = density::sparse_density(chi, c, l, m as u64);
            let se = (d * (1.0 - d) / net.connections()).sqrt();
            assert!(
                (net.density() - d).abs() < 5.0 * se,
                "χ={chi} c={c} l={l} M={m}: measured {} formula {d} (s.e. {se})",
                net.density()
            );
        }
    }

    #[test]
    fn guided_recall_keeps_unguided_clusters_silent() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let msgs = MessageSet::random_sparse(20, 5, 16, 200, &mut rng).unwrap();
        let mut net = GbNetwork::sparse(20, 5, 16).unwrap();
        net.store_all(&msgs).unwrap();
        let m = msgs.get(3);
        let cue = Cue::probe(&m, 16, 2, 0, true, &mut rng).unwrap();
        assert_eq!(cue.guide.as_ref().unwrap().len(), 5);
        let st = net.recall(&cue, &RecallSettings::sos(1, 4)).unwrap();
        assert!(st.matches(&m), "{:?}", st.decode());
        // Blind, the same cue lights fanals in clusters the message does not occupy.
        let blind = Cue { guide: None, ..cue };
        let st = net.recall(&blind, &RecallSettings::sos(1, 4)).unwrap();
        assert!(!st.matches(&m));
    }

    #[test]
    fn bad_messages_and_cues_are_refused() {
        let mut net = GbNetwork::new(4, 10).unwrap();
        assert_eq!(
            net.store(&[1, 2, 10, 0]),
            Err(MemoryError::SymbolOutOfRange {
                cluster: 2,
                symbol: 10,
                fanals: 10
            })
        );
        assert_eq!(
            net.store(&[1, 2, 3]),
            Err(MemoryError::WrongLength {
                what: "the message",
                expected: 4,
                got: 3
            })
        );
        assert_eq!(net.stored(), 0);
        assert_eq!(net.edges(), 0);
        assert_eq!(
            GbNetwork::new(0, 4),
            Err(MemoryError::ZeroSize { what: "clusters" })
        );
        assert_eq!(
            GbNetwork::new(4, 0),
            Err(MemoryError::ZeroSize {
                what: "fanals per cluster"
            })
        );
        assert!(matches!(
            GbNetwork::sparse(4, 5, 4),
            Err(MemoryError::Invalid(_))
        ));
        assert!(matches!(
            GbNetwork::new(1000, 1000),
            Err(MemoryError::Invalid(_))
        ));
        let mut sp = GbNetwork::sparse(10, 3, 4).unwrap();
        assert_eq!(
            sp.store_sparse(&[(0, 1), (5, 2)]),
            Err(MemoryError::WrongActiveCount {
                expected: 3,
                got: 2
            })
        );
        assert_eq!(
            sp.store_sparse(&[(0, 1), (5, 2), (5, 3)]),
            Err(MemoryError::DuplicateCluster {
                what: "the message",
                cluster: 5
            })
        );
        assert_eq!(
            sp.store_sparse(&[(0, 1), (5, 2), (10, 3)]),
            Err(MemoryError::IndexOutOfRange {
                what: "cluster",
                index: 10,
                size: 10
            })
        );
        assert!(sp.store(&[0; 10]).is_err());
        let m: Vec<(usize, u32)> = vec![(0, 1), (1, 2), (2, 3), (3, 4)];
        assert_eq!(
            Cue::with_erasures(&m, &[0, 1, 2, 3, 0]),
            Err(MemoryError::TooManyErased {
                erased: 5,
                clusters: 4
            })
        );
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            Cue::probe(&m, 10, 5, 0, false, &mut rng),
            Err(MemoryError::TooManyErased {
                erased: 5,
                clusters: 4
            })
        );
        assert!(Cue::probe(&m, 10, 3, 2, false, &mut rng).is_err());
        let s = RecallSettings::sos(1, 4);
        let bad_symbol = Cue {
            known: vec![(0, 11)],
            erased: vec![],
            guide: None,
        };
        assert!(matches!(
            net.recall(&bad_symbol, &s),
            Err(MemoryError::SymbolOutOfRange { symbol: 11, .. })
        ));
        let dup = Cue {
            known: vec![(0, 1)],
            erased: vec![0],
            guide: None,
        };
        assert!(matches!(
            net.recall(&dup, &s),
            Err(MemoryError::DuplicateCluster { cluster: 0, .. })
        ));
        let too_many = Cue {
            known: vec![],
            erased: vec![0, 1, 2, 3, 4],
            guide: None,
        };
        assert!(net.recall(&too_many, &s).is_err());
        let bad_guide = Cue {
            known: vec![(0, 1)],
            erased: vec![],
            guide: Some(vec![0, 4]),
        };
        assert!(matches!(
            net.recall(&bad_guide, &s),
            Err(MemoryError::IndexOutOfRange { index: 4, .. })
        ));
        assert!(matches!(
            net.recall_batch(&[dup], &s, 2),
            Err(MemoryError::DuplicateCluster { .. })
        ));
    }

    #[test]
    fn bytes_round_trip_and_corruption_is_refused() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for (chi, c, l) in [(5, 5, 13), (9, 3, 70)] {
            let msgs = MessageSet::random_sparse(chi, c, l, 50, &mut rng).unwrap();
            let mut net = GbNetwork::sparse(chi, c, l).unwrap();
            net.store_all(&msgs).unwrap();
            assert_eq!(GbNetwork::from_bytes(&net.to_bytes()).unwrap(), net);
            assert_eq!(MessageSet::from_bytes(&msgs.to_bytes()).unwrap(), msgs);
            let b = net.to_bytes();
            assert!(matches!(
                GbNetwork::from_bytes(&b[..b.len() - 8]),
                Err(MemoryError::Corrupt(_))
            ));
            assert!(matches!(
                GbNetwork::from_bytes(b"RMGBNET0"),
                Err(MemoryError::Corrupt(_))
            ));
            let mut asym = b.clone();
            // Set bit (0, l) (cluster 0 fanal 0 → cluster 1 fanal 0) only one way.
            let at = 40 + (l / 8);
            asym[at] ^= 1 << (l % 8);
            assert!(matches!(
                GbNetwork::from_bytes(&asym),
                Err(MemoryError::Corrupt(_))
            ));
            let mb = msgs.to_bytes();
            let mut bad = mb.clone();
            let last = bad.len() - 4;
            bad[last..].copy_from_slice(&(l as u32).to_le_bytes());
            assert!(matches!(
                MessageSet::from_bytes(&bad),
                Err(MemoryError::Corrupt(_))
            ));
            assert!(MessageSet::from_bytes(&mb[..mb.len() - 1]).is_err());
        }
    }
}
