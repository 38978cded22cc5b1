//! Bit-packed binary matrices and the word-wide operations retrieval is made of.
//!
//! A [`BitMatrix`] of R rows and C columns keeps each row in ⌈C/64⌉ little-endian `u64` words:
//! bit j of a row is bit (j mod 64) of word ⌊j/64⌋, and the padding bits past C stay 0. Storage
//! in a binary associative memory is an OR of outer products, W ← W ∨ y xᵀ (Willshaw,
//! Buneman & Longuet-Higgins 1969), which [`BitMatrix::or_outer`] does for x and y given as
//! lists of active indices. Retrieval needs, for a row w and a state v (both packed),
//! popcount(w ∧ v) over the whole row or over a range of bits (a cluster of fanals, which need
//! not be aligned to words when the cluster size is not a multiple of 64): [`and_count_range`],
//! [`and_any_range`].
use serde::{Deserialize, Serialize};

use crate::error::{MemoryError, Result};

/// Words needed for `bits` bits.
pub fn words_for(bits: usize) -> usize {
    bits.div_ceil(64)
}

/// Bit `i` of a packed vector.
#[inline]
pub fn get_bit(words: &[u64], i: usize) -> bool {
    (words[i >> 6] >> (i & 63)) & 1 == 1
}

/// Sets bit `i` of a packed vector.
#[inline]
pub fn set_bit(words: &mut [u64], i: usize) {
    words[i >> 6] |= 1u64 << (i & 63);
}

/// Clears bit `i` of a packed vector.
#[inline]
pub fn clear_bit(words: &mut [u64], i: usize) {
    words[i >> 6] &= !(1u64 << (i & 63));
}

/// Number of set bits of a packed vector.
pub fn count_ones(words: &[u64]) -> u32 {
    words.iter().map(|w| w.count_ones()).sum()
}

/// popcount(a ∧ b) over whole words.
pub fn and_count(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// The mask of bits `lo..hi` of one word (0 ≤ lo ≤ hi ≤ 64).
#[inline]
fn mask(lo: usize, hi: usize) -> u64 {
    let upper = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
    let lower = if lo >= 64 { u64::MAX } else { (1u64 << lo) - 1 };
    upper & !lower
}

/// Calls `f(word index, mask)` for the words covering bits `lo..hi`.
#[inline]
fn for_range(lo: usize, hi: usize, mut f: impl FnMut(usize, u64) -> bool) {
    if lo >= hi {
        return;
    }
    let (w0, w1) = (lo >> 6, (hi - 1) >> 6);
    if w0 == w1 {
        f(w0, mask(lo & 63, ((hi - 1) & 63) + 1));
        return;
    }
    if !f(w0, mask(lo & 63, 64)) {
        return;
    }
    for w in w0 + 1..w1 {
        if !f(w, u64::MAX) {
            return;
        }
    }
    f(w1, mask(0, ((hi - 1) & 63) + 1));
}

/// popcount(a ∧ b) over bits `lo..hi` (a and b packed the same way).
#[inline]
pub fn and_count_range(a: &[u64], b: &[u64], lo: usize, hi: usize) -> u32 {
    let mut n = 0;
    for_range(lo, hi, |w, m| {
        n += (a[w] & b[w] & m).count_ones();
        true
    });
    n
}

/// Whether a ∧ b has a set bit in `lo..hi`.
#[inline]
pub fn and_any_range(a: &[u64], b: &[u64], lo: usize, hi: usize) -> bool {
    let mut any = false;
    for_range(lo, hi, |w, m| {
        any = a[w] & b[w] & m != 0;
        !any
    });
    any
}

/// Whether a packed vector has a set bit in `lo..hi`.
pub fn any_range(a: &[u64], lo: usize, hi: usize) -> bool {
    let mut any = false;
    for_range(lo, hi, |w, m| {
        any = a[w] & m != 0;
        !any
    });
    any
}

/// Number of set bits of a packed vector in `lo..hi`.
pub fn count_range(a: &[u64], lo: usize, hi: usize) -> u32 {
    let mut n = 0;
    for_range(lo, hi, |w, m| {
        n += (a[w] & m).count_ones();
        true
    });
    n
}

/// Sets bits `lo..hi` of a packed vector.
pub fn set_range(a: &mut [u64], lo: usize, hi: usize) {
    for_range(lo, hi, |w, m| {
        a[w] |= m;
        true
    });
}

/// A binary matrix of `rows × cols`, each row packed in `u64` words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BitMatrix {
    rows: usize,
    cols: usize,
    words_per_row: usize,
    data: Vec<u64>,
}

impl BitMatrix {
    /// An all-zero matrix.
    pub fn new(rows: usize, cols: usize) -> Self {
        let words_per_row = words_for(cols);
        Self {
            rows,
            cols,
            words_per_row,
            data: vec![0; rows * words_per_row],
        }
    }

    /// A matrix over packed words (row-major, `words_for(cols)` words a row); the padding bits
    /// past `cols` must be 0.
    pub fn from_words(rows: usize, cols: usize, data: Vec<u64>) -> Result<Self> {
        let words_per_row = words_for(cols);
        if data.len() != rows * words_per_row {
            return Err(MemoryError::WrongLength {
                what: "the packed words",
                expected: rows * words_per_row,
                got: data.len(),
            });
        }
        if !cols.is_multiple_of(64) && words_per_row > 0 {
            let pad = !mask(0, cols % 64);
            if let Some(r) =
                (0..rows).find(|r| data[r * words_per_row + words_per_row - 1] & pad != 0)
            {
                return Err(MemoryError::Corrupt(format!(
                    "row {r} has bits set past column {cols}"
                )));
            }
        }
        Ok(Self {
            rows,
            cols,
            words_per_row,
            data,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn words_per_row(&self) -> usize {
        self.words_per_row
    }

    /// All words, row-major.
    pub fn words(&self) -> &[u64] {
        &self.data
    }

    /// The packed words of row `r`.
    #[inline]
    pub fn row(&self, r: usize) -> &[u64] {
        &self.data[r * self.words_per_row..(r + 1) * self.words_per_row]
    }

    fn check(&self, r: usize, c: usize) {
        assert!(
            r < self.rows && c < self.cols,
            "({r}, {c}) outside a {}×{} matrix",
            self.rows,
            self.cols
        );
    }

    /// Entry (r, c). Panics outside the matrix.
    #[inline]
    pub fn get(&self, r: usize, c: usize) -> bool {
        self.check(r, c);
        get_bit(self.row(r), c)
    }

    /// Sets entry (r, c) to `value`. Panics outside the matrix.
    pub fn set(&mut self, r: usize, c: usize, value: bool) {
        self.check(r, c);
        let row = &mut self.data[r * self.words_per_row..(r + 1) * self.words_per_row];
        if value {
            set_bit(row, c);
        } else {
            clear_bit(row, c);
        }
    }

    /// W ← W ∨ y xᵀ for the row indices `ys` and the column indices `xs`: every (y, x) pair
    /// set. Indices must be in range (checked: an error names the first one outside).
    pub fn or_outer(&mut self, ys: &[usize], xs: &[usize]) -> Result<()> {
        if let Some(&y) = ys.iter().find(|&&y| y >= self.rows) {
            return Err(MemoryError::IndexOutOfRange {
                what: "row",
                index: y,
                size: self.rows,
            });
        }
        if let Some(&x) = xs.iter().find(|&&x| x >= self.cols) {
            return Err(MemoryError::IndexOutOfRange {
                what: "column",
                index: x,
                size: self.cols,
            });
        }
        // Pack the column pattern once, then OR it into every row of ys.
        let mut packed = vec![0u64; self.words_per_row];
        for &x in xs {
            set_bit(&mut packed, x);
        }
        for &y in ys {
            let row = &mut self.data[y * self.words_per_row..(y + 1) * self.words_per_row];
            for (w, p) in row.iter_mut().zip(&packed) {
                *w |= p;
            }
        }
        Ok(())
    }

    /// Row r ← row r ∨ `packed` (`words_per_row` words, padding bits 0).
    pub fn or_row(&mut self, r: usize, packed: &[u64]) {
        assert!(r < self.rows && packed.len() == self.words_per_row);
        let row = &mut self.data[r * self.words_per_row..(r + 1) * self.words_per_row];
        for (w, p) in row.iter_mut().zip(packed) {
            *w |= p;
        }
    }

    /// Set entries of row `r`.
    pub fn row_count(&self, r: usize) -> u32 {
        count_ones(self.row(r))
    }

    /// Set entries of every row.
    pub fn row_counts(&self) -> Vec<u32> {
        (0..self.rows).map(|r| self.row_count(r)).collect()
    }

    /// Set entries of the whole matrix.
    pub fn count_ones(&self) -> u64 {
        self.data.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// popcount(row r ∧ v) for a packed vector v of `cols` bits.
    #[inline]
    pub fn and_count(&self, r: usize, v: &[u64]) -> u32 {
        and_count(self.row(r), v)
    }

    /// popcount(row r ∧ v) over columns `lo..hi`.
    #[inline]
    pub fn and_count_range(&self, r: usize, v: &[u64], lo: usize, hi: usize) -> u32 {
        and_count_range(self.row(r), v, lo, hi)
    }

    /// Whether row r ∧ v has a set bit in columns `lo..hi`.
    #[inline]
    pub fn and_any_range(&self, r: usize, v: &[u64], lo: usize, hi: usize) -> bool {
        and_any_range(self.row(r), v, lo, hi)
    }

    /// Appends `n` all-zero rows.
    pub fn push_rows(&mut self, n: usize) {
        self.rows += n;
        self.data.resize(self.rows * self.words_per_row, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn set_get_and_counts_on_unaligned_widths() {
        let mut m = BitMatrix::new(3, 130);
        assert_eq!(m.words_per_row(), 3);
        m.set(0, 0, true);
        m.set(0, 63, true);
        m.set(0, 64, true);
        m.set(2, 129, true);
        assert!(m.get(0, 63) && m.get(0, 64) && m.get(2, 129));
        assert!(!m.get(1, 5));
        assert_eq!(m.row_counts(), vec![3, 0, 1]);
        m.set(0, 63, false);
        assert_eq!(m.count_ones(), 3);
    }

    #[test]
    fn or_outer_sets_every_pair_and_checks_indices() {
        let mut m = BitMatrix::new(5, 70);
        m.or_outer(&[1, 3], &[2, 69]).unwrap();
        m.or_outer(&[3], &[0]).unwrap();
        let set: Vec<(usize, usize)> = (0..5)
            .flat_map(|r| (0..70).map(move |c| (r, c)))
            .filter(|&(r, c)| m.get(r, c))
            .collect();
        assert_eq!(set, vec![(1, 2), (1, 69), (3, 0), (3, 2), (3, 69)]);
        assert_eq!(
            m.or_outer(&[5], &[0]),
            Err(MemoryError::IndexOutOfRange {
                what: "row",
                index: 5,
                size: 5
            })
        );
        assert!(m.or_outer(&[0], &[70]).is_err());
    }

    /// Range operations against bit-by-bit loops, on random vectors and every small range.
    #[test]
    fn range_operations_match_bit_loops() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let bits = 200;
        for _ in 0..20 {
            let a: Vec<u64> = (0..words_for(bits))
                .map(|_| rng.random::<u64>() & rng.random::<u64>())
                .collect();
            let b: Vec<u64> = (0..words_for(bits))
                .map(|_| rng.random::<u64>() & rng.random::<u64>())
                .collect();
            for lo in (0..bits).step_by(7) {
                for hi in (lo..=bits).step_by(5) {
                    let both = (lo..hi)
                        .filter(|&i| get_bit(&a, i) && get_bit(&b, i))
                        .count();
                    let ones = (lo..hi).filter(|&i| get_bit(&a, i)).count();
                    assert_eq!(and_count_range(&a, &b, lo, hi) as usize, both, "{lo}..{hi}");
                    assert_eq!(and_any_range(&a, &b, lo, hi), both > 0, "{lo}..{hi}");
                    assert_eq!(count_range(&a, lo, hi) as usize, ones);
                    assert_eq!(any_range(&a, lo, hi), ones > 0);
                }
            }
        }
        let mut v = vec![0u64; 4];
        set_range(&mut v, 60, 131);
        assert_eq!(count_ones(&v), 71);
        assert!(!get_bit(&v, 59) && get_bit(&v, 60) && get_bit(&v, 130) && !get_bit(&v, 131));
    }

    #[test]
    fn from_words_checks_length_and_padding() {
        assert!(BitMatrix::from_words(2, 10, vec![0; 3]).is_err());
        assert!(matches!(
            BitMatrix::from_words(2, 10, vec![0, 1 << 12]),
            Err(MemoryError::Corrupt(_))
        ));
        let m = BitMatrix::from_words(2, 10, vec![1, 1 << 9]).unwrap();
        assert!(m.get(0, 0) && m.get(1, 9));
    }
}
