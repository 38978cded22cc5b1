// One retrieval iteration of the Gripon–Berrou clique network (crates/memory/src/gb.rs, the
// reference) for a batch of queries, on the bit-packed network, in two launches:
//
// 1. gb_scores: one thread per (fanal, query), the query index fastest, so that the threads of a
//    warp read the same row of W (one broadcast load per word) and the small packed states of
//    neighbouring queries. Each thread computes its fanal's score from the row of W and the
//    query's state:
//    - sum-of-sum (rule 0): popcount(row ∧ v) + γ v(n), word by word;
//    - sum-of-max (rule 1): the number of other clusters holding a fanal of row ∧ v, plus v(n)
//      (an active fanal counts its own cluster): a scan that jumps to the end of a cluster as
//      soon as it finds one bit in it.
//    A fanal of a cluster the query's guide does not allow scores 0.
// 2. gb_winners: one thread per (word of the new state, query), the query index fastest again:
//    for each bit of its word, the winner-take-all of the bit's cluster keeping ties: bit set ⟺
//    score = the cluster's maximum and that maximum > 0 (the zero-score guard). A cluster's
//    maximum is a loop over its l scores, done once per word the cluster overlaps (clusters need
//    not be aligned to words).
//
// Scores are kept fanal-major (n × batch), so that a warp writes (gb_scores) and reads
// (gb_winners) consecutive addresses. No thread writes what another reads in the same launch,
// and every word of the new state is written by exactly one thread: no atomics, no barriers,
// deterministic.
//
// Shapes: χ = clusters, l = fanals per cluster, n = χ·l, `words` = ⌈n/64⌉ words per row of W and
// per state; W (n × words), states (batch × words), allowed (batch × χ, 0 or 1), scores
// (n × batch), row-major; padding bits past n are 0 in W and in the states.
#include "common.cuh"

extern "C" __global__ void gb_scores(int batch, int clusters, int fanals, int words, int rule,
                                     unsigned gamma, const gb_word* __restrict__ w,
                                     const gb_word* __restrict__ state,
                                     const unsigned char* __restrict__ allowed,
                                     unsigned* __restrict__ scores) {
    long long n = (long long)clusters * fanals;
    long long idx = global_index();
    if (idx >= n * batch) return;
    int q = (int)(idx % batch);
    int node = (int)(idx / batch);
    int k = node / fanals;
    unsigned s = 0;
    if (allowed[(long long)q * clusters + k]) {
        const gb_word* row = w + (long long)node * words;
        const gb_word* v = state + (long long)q * words;
        unsigned own = (unsigned)((v[node >> 6] >> (node & 63)) & 1ull);
        if (rule == 0) {
            for (int i = 0; i < words; ++i) s += popcount64(row[i] & v[i]);
            s += gamma * own;
        } else {
            // p: the first bit not yet looked at; every cluster before it is counted.
            long long p = 0;
            while (p < n) {
                int i = (int)(p >> 6);
                gb_word x = row[i] & v[i] & (~0ull << (p & 63));
                while (x == 0 && ++i < words) x = row[i] & v[i];
                if (x == 0) break;
                long long j = ((long long)i << 6) + lowest_bit64(x);
                long long k2 = j / fanals;
                if (k2 != k) ++s;
                p = (k2 + 1) * fanals;
            }
            s += own;
        }
    }
    scores[idx] = s;  // (node, q)
}

extern "C" __global__ void gb_winners(int batch, int clusters, int fanals, int words,
                                      const unsigned* __restrict__ scores,
                                      gb_word* __restrict__ next) {
    long long n = (long long)clusters * fanals;
    long long idx = global_index();
    if (idx >= (long long)batch * words) return;
    int q = (int)(idx % batch);
    int i = (int)(idx / batch);
    // Score of fanal j for this query: s[j * batch].
    const unsigned* s = scores + q;
    long long b = batch;
    long long lo = (long long)i << 6;
    long long hi = lo + 64 < n ? lo + 64 : n;
    gb_word out = 0;
    long long k = -1;
    unsigned best = 0;
    for (long long j = lo; j < hi; ++j) {
        long long kj = j / fanals;
        if (kj != k) {
            k = kj;
            best = 0;
            const unsigned* sk = s + k * fanals * b;
            for (int f = 0; f < fanals; ++f) best = sk[f * b] > best ? sk[f * b] : best;
        }
        if (best > 0 && s[j * b] == best) out |= 1ull << (j - lo);
    }
    next[(long long)q * words + i] = out;
}
