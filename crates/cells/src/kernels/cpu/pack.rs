//! The matrix products of the LSTM, GRU and SRN kernels, `dst (m × n) = start + a (m × k) · b`,
//! with the weight operand `b` packed once per sequence.
//!
//! Each step multiplies a few dozen rows (a thread's shard of the batch) by the same weights. A
//! general product routine repacks the weights at every call; here they are packed once, in
//! panels of `NR` columns stored k-major (`NR` values of one row of `b` after another), zero
//! padded to whole panels, and a register-blocked tile kernel keeps an `MR × NR` block of `dst` in
//! vector registers while it walks down `k`: per `k`, one panel row is loaded and each of the `MR`
//! values of `a` is broadcast into `NR / lanes` fused multiply-adds. A panel's rows are taken in
//! passes of at most [`KC_PANEL`], so that the part in use stays in the L1 cache while every row
//! block of the shard passes over it. The left operand is packed per call into blocks of rows,
//! k-major, or, when there are only a few panels to amortise that, read in place.
//!
//! The tiles are written once, generic over a small vector type, and built three times (as the
//! row kernels are in `runner`): with AVX-512 (`NR` = 32 f32 or 16 f64, up to 12 rows), with AVX2
//! and FMA (16 f32 or 8 f64, up to 6 rows) and for the baseline target (no fused multiply-add).
//! Every value of `dst` is the same sequence of operations in the two FMA builds: `start`, then
//! one multiply-add per `k` in order, so they give identical bits; the baseline build rounds each
//! product separately.
//!
//! Extras that suit the recurrences: the left operand can come in two parts with their own row
//! strides (`[x_t | h_{t-1}]`: the input projection and the recurrent product in one pass); each
//! group of columns can take only a range of `k` (the GRU's candidate gate keeps its input and
//! recurrent parts apart); a product can start from a packed bias row. [`StepGradients`] sums the
//! weight gradients a few steps at a time during the backward pass ([`product_tn`]).
use super::scratch::Scratch;
use super::KernelFloat;

/// Columns `col..col + cols` of `b` that take the rows `k0..k1` of `b` (and of `a`'s columns);
/// the other rows count as zeros and are skipped.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub col: usize,
    pub cols: usize,
    pub k0: usize,
    pub k1: usize,
}

/// The instruction sets the tiles are built for (those of the row kernels).
pub use super::runner::Simd as Isa;

impl Isa {
    /// The best the kernels may use now ([`super::runner::simd`]).
    pub fn best() -> Isa {
        super::runner::simd()
    }

    /// Whether this CPU can run tiles built for `self`.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Isa::Baseline => true,
                Isa::Avx2 => has!("avx2") && has!("fma"),
                Isa::Avx512 => has!("avx512f") && has!("avx2") && has!("fma"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Baseline
        }
    }

    /// Rows per tile at most.
    fn mr(self) -> usize {
        match self {
            Isa::Baseline => 4,
            Isa::Avx2 => 6,
            Isa::Avx512 => 12,
        }
    }
}

/// One panel: `cols` (≤ NR) columns from `col` on, rows `k0..k1`, at `off` in the packed data.
#[derive(Clone, Copy, Debug)]
struct Panel {
    off: usize,
    k0: usize,
    k1: usize,
    col: usize,
    cols: usize,
}

/// A right operand `b` (k × n) packed for [`Packed::product`].
#[derive(Clone, Debug)]
pub struct Packed<T> {
    isa: Isa,
    k: usize,
    n: usize,
    panels: Vec<Panel>,
    data: Vec<T>,
    /// The start row of each panel (`nr` values per panel), when packed with one.
    bias: Vec<T>,
}

/// Where the product starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From zero: `dst = a · b`.
    Zero,
    /// From `dst`: `dst += a · b`.
    Dst,
    /// From the packed bias row: `dst = bias + a · b`.
    Bias,
}

/// The left operand: row `r`, column `kk` is `a1[r·rs1 + kk·cs1]` for `kk < split` and
/// `a2[r·rs2 + (kk − split)·cs2]` after.
#[derive(Clone, Copy, Debug)]
pub struct Lhs<'a, T> {
    pub a1: &'a [T],
    pub rs1: usize,
    pub cs1: usize,
    pub a2: &'a [T],
    pub rs2: usize,
    pub cs2: usize,
    pub split: usize,
}

impl<'a, T> Lhs<'a, T> {
    /// One row-major block with row stride `lda`.
    pub fn one(a: &'a [T], lda: usize) -> Self {
        Self::strided(a, lda, 1)
    }

    /// One block with element (r, kk) at `a[r·rs + kk·cs]` (any strides: it is packed).
    pub fn strided(a: &'a [T], rs: usize, cs: usize) -> Self {
        Lhs {
            a1: a,
            rs1: rs,
            cs1: cs,
            a2: &[],
            rs2: 0,
            cs2: 0,
            split: usize::MAX,
        }
    }

    /// `[a1 | a2]`, both row-major, `a1` holding the first `split` columns.
    pub fn two(a1: &'a [T], lda1: usize, a2: &'a [T], lda2: usize, split: usize) -> Self {
        Lhs {
            a1,
            rs1: lda1,
            cs1: 1,
            a2,
            rs2: lda2,
            cs2: 1,
            split,
        }
    }
}

/// Columns of an operand of [`product_tn`]: `width` columns, element (kk, c) at
/// `data[kk·ld + c]`, or all ones when `data` is empty.
#[derive(Clone, Copy, Debug)]
pub struct Cols<'a, T> {
    pub data: &'a [T],
    pub ld: usize,
    pub width: usize,
}

impl<'a, T> Cols<'a, T> {
    /// A row-major block of `width` columns.
    pub fn rows(data: &'a [T], width: usize) -> Self {
        Cols {
            data,
            ld: width,
            width,
        }
    }

    /// `width` columns of ones (a product with them sums the other operand's rows: the bias
    /// gradients).
    pub fn ones(width: usize) -> Self {
        Cols {
            data: &[],
            ld: 0,
            width,
        }
    }
}

/// Rows of `k` per block of [`product_tn`]: a block of the right operand (256 rows) stays in the
/// L2 cache while every panel and row block passes over it.
const KC: usize = 256;

/// `dst (m × n) = start + aᵀ · b` for one-shot products with a long `k` (the weight gradients,
/// `k` = rows × steps), both operands given by their `k` rows: `a` = `[a_1 | a_2 | …]` (k × m),
/// `b` = `[b_1 | b_2 | …]` (k × n). `k` is cut in blocks of [`KC`]; each block of `b` is packed
/// in panels and each of `a` in row blocks (a row block of `aᵀ` is a run of columns of `a`, read
/// row by row), and their product is added to `dst`.
pub fn product_tn<T: KernelFloat>(
    k: usize,
    a: &[Cols<T>],
    b: &[Cols<T>],
    start: Start,
    dst: &mut [T],
    ldd: usize,
) {
    assert!(start != Start::Bias, "no bias here");
    let m: usize = a.iter().map(|c| c.width).sum();
    let n: usize = b.iter().map(|c| c.width).sum();
    if k == 0 {
        if start == Start::Zero {
            for r in 0..m {
                dst[r * ldd..r * ldd + n].fill(T::zero());
            }
        }
        return;
    }
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let packed = Packed::from_cols(Isa::best(), k0, kc, b);
        let ap = pack_transposed(a, m, k0, kc, packed.isa.mr());
        let st = if k0 == 0 { start } else { Start::Dst };
        packed.product_packed(m, &ap, st, dst, ldd);
        k0 += kc;
    }
}

/// Rows `k0..k0 + kc` of `[a_1 | a_2 | …]` (k × m) as the left operand `aᵀ` (m × kc), packed in
/// [`row_blocks`] of at most `mr` rows, each block k-major.
fn pack_transposed<T: KernelFloat>(
    a: &[Cols<T>],
    m: usize,
    k0: usize,
    kc: usize,
    mr: usize,
) -> Vec<T> {
    let mut ap: Vec<T> = Vec::with_capacity(m * kc);
    let to = ap.as_mut_ptr();
    for (r0, rows) in row_blocks(m, mr) {
        let mut c0 = 0;
        for src in a {
            // The part of this source's columns in the block.
            let (lo, hi) = (c0.max(r0), (c0 + src.width).min(r0 + rows));
            if lo < hi {
                for kk in 0..kc {
                    let at = r0 * kc + kk * rows + (lo - r0);
                    if src.data.is_empty() {
                        for j in 0..hi - lo {
                            // SAFETY: below m·kc, the capacity: block (r0, rows) fills
                            // r0·kc .. (r0 + rows)·kc, element (r, kk) at r0·kc + kk·rows + r.
                            unsafe { to.add(at + j).write(T::one()) };
                        }
                    } else {
                        let row = (k0 + kk) * src.ld;
                        for (j, &v) in src.data[row + lo - c0..row + hi - c0].iter().enumerate() {
                            // SAFETY: as above.
                            unsafe { to.add(at + j).write(v) };
                        }
                    }
                }
            }
            c0 += src.width;
        }
    }
    // SAFETY: the blocks cover the m rows (the sources' columns), each for every kk, so every
    // one of the m·kc values was written.
    unsafe { ap.set_len(m * kc) };
    ap
}

/// The weight gradients of a layer whose pre-activations are `b + x W_ihᵀ + h W_hhᵀ`, gathered
/// a run of steps at a time while the backward pass walks back through the sequence:
/// `[dW_ih | dW_hh | db]` (m × (I + H + 1)) = Σ `dgᵀ · [x | h_prev | 1]` over every (step, row),
/// `dg` the pre-activation gradients (m per row).
///
/// A step's rows go into a block of [`KC`] rows or so ([`StepGradients::step`]); when it is full
/// its product is added to the sum, while the block is still in the cache: the gradients of the
/// whole sequence are never stored. The product runs transposed, `[x | h_prev | 1]ᵀ · dg`, so that
/// the long operand `dg` is packed as it lies and only the I + H + 1 columns of the other are
/// rearranged.
pub struct StepGradients<T: KernelFloat> {
    rows: usize,
    m: usize,
    /// Values of `[x | h_prev]` per row.
    w: usize,
    /// Steps per block.
    per_block: usize,
    /// Steps in the block so far.
    filled: usize,
    dg: Scratch<T>,
    xh: Scratch<T>,
    /// The sum so far, transposed ((w + 1) × m).
    sum: Scratch<T>,
    started: bool,
}

impl<T: KernelFloat> StepGradients<T> {
    /// For `rows` rows per step, `m` gradients and `w` = I + H inputs per row.
    pub fn new(rows: usize, m: usize, w: usize, steps: usize) -> Self {
        let per_block = (KC / rows.max(1)).clamp(1, steps.max(1));
        StepGradients {
            rows,
            m,
            w,
            per_block,
            filled: 0,
            // Every value is written (by the caller, `step`) before it is read.
            dg: Scratch::new(per_block * rows * m),
            xh: Scratch::new(per_block * rows * w),
            sum: Scratch::new((w + 1) * m),
            started: false,
        }
    }

    /// The next step's rows, to fill: its gradients (rows × m) and `[x | h_prev]` (rows × w),
    /// row-major. Call [`StepGradients::done`] once they are written.
    pub fn step(&mut self) -> (&mut [T], &mut [T]) {
        let (r, m, w, f) = (self.rows, self.m, self.w, self.filled);
        (
            &mut self.dg[f * r * m..(f + 1) * r * m],
            &mut self.xh[f * r * w..(f + 1) * r * w],
        )
    }

    /// The gradients of the step just filled (rows × m).
    pub fn last(&self) -> &[T] {
        let (r, m, f) = (self.rows, self.m, self.filled);
        &self.dg[f * r * m..(f + 1) * r * m]
    }

    /// Ends the step; a full block is added to the sum.
    pub fn done(&mut self) {
        self.filled += 1;
        if self.filled == self.per_block {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.filled == 0 {
            return;
        }
        let k = self.filled * self.rows;
        let a = [Cols::rows(&self.xh[..k * self.w], self.w), Cols::ones(1)];
        let b = [Cols::rows(&self.dg[..k * self.m], self.m)];
        let start = if self.started {
            Start::Dst
        } else {
            Start::Zero
        };
        product_tn(k, &a, &b, start, &mut self.sum, self.m);
        self.started = true;
        self.filled = 0;
    }

    /// `[dW_ih | dW_hh | db]` (m × (w + 1)), row-major.
    pub fn finish(mut self) -> Vec<T> {
        self.flush();
        let (m, w) = (self.m, self.w + 1);
        if !self.started {
            return vec![T::zero(); m * w];
        }
        let mut out = vec![T::zero(); m * w];
        for (c, col) in self.sum.chunks_exact(m.max(1)).enumerate().take(w) {
            for (r, &v) in col.iter().enumerate() {
                out[r * w + c] = v;
            }
        }
        out
    }
}

impl<T: KernelFloat> Packed<T> {
    /// Packs `b` (k × n), element (kk, c) given by `b(kk, c)`, for this CPU's best tiles; every
    /// column belongs to exactly one of `groups`. `bias` (n values), when given, can start the
    /// products ([`Start::Bias`]).
    pub fn new(
        k: usize,
        n: usize,
        groups: &[Group],
        b: impl Fn(usize, usize) -> T,
        bias: Option<&[T]>,
    ) -> Self {
        Self::with_isa(Isa::best(), k, n, groups, b, bias)
    }

    /// All of `b` (k × n) as one group.
    pub fn dense(k: usize, n: usize, b: impl Fn(usize, usize) -> T, bias: Option<&[T]>) -> Self {
        let all = [Group {
            col: 0,
            cols: n,
            k0: 0,
            k1: k,
        }];
        Self::new(k, n, &all, b, bias)
    }

    /// As [`Packed::new`], for the tiles of `isa` (which must run on this CPU).
    pub fn with_isa(
        isa: Isa,
        k: usize,
        n: usize,
        groups: &[Group],
        b: impl Fn(usize, usize) -> T,
        bias: Option<&[T]>,
    ) -> Self {
        assert!(isa.runs_here(), "{isa:?} tiles do not run on this CPU");
        // Vector tiles exist for f32 and f64 only.
        let isa = if is::<T, f32>() || is::<T, f64>() {
            isa
        } else {
            Isa::Baseline
        };
        let nr = panel_width::<T>(isa);
        let (panels, len) = layout(nr, k, n, groups);
        let mut data = Vec::with_capacity(len);
        for p in &panels {
            for kk in p.k0..p.k1 {
                data.extend((0..nr).map(|j| {
                    if j < p.cols {
                        b(kk, p.col + j)
                    } else {
                        T::zero()
                    }
                }));
            }
        }
        let bias = match bias {
            None => Vec::new(),
            Some(v) => {
                assert_eq!(v.len(), n, "bias length");
                let mut out = Vec::with_capacity(panels.len() * nr);
                for p in &panels {
                    out.extend((0..nr).map(|j| if j < p.cols { v[p.col + j] } else { T::zero() }));
                }
                out
            }
        };
        Packed {
            isa,
            k,
            n,
            panels,
            data,
            bias,
        }
    }

    /// Rows `k0..k0 + kc` of `[b_1 | b_2 | …]`, one group, copied a row segment at a time.
    fn from_cols(isa: Isa, k0: usize, kc: usize, b: &[Cols<T>]) -> Self {
        let isa = if is::<T, f32>() || is::<T, f64>() {
            isa
        } else {
            Isa::Baseline
        };
        let nr = panel_width::<T>(isa);
        let n: usize = b.iter().map(|c| c.width).sum();
        let all = [Group {
            col: 0,
            cols: n,
            k0: 0,
            k1: kc,
        }];
        let (panels, len) = layout(nr, kc, n, &all);
        // Where each source's columns start.
        let starts: Vec<usize> = b
            .iter()
            .scan(0, |c, s| {
                let at = *c;
                *c += s.width;
                Some(at)
            })
            .collect();
        // Row by row of `b` (read in order), each into its panels.
        let mut data: Vec<T> = Vec::with_capacity(len);
        let to = data.as_mut_ptr();
        for kk in 0..kc {
            for p in &panels {
                let at = p.off + kk * nr;
                let mut j = 0;
                for (src, &c0) in b.iter().zip(&starts) {
                    // The part of this source inside the panel's columns.
                    let (lo, hi) = (c0.max(p.col), (c0 + src.width).min(p.col + p.cols));
                    if lo >= hi {
                        continue;
                    }
                    if src.data.is_empty() {
                        for _ in lo..hi {
                            // SAFETY: `at + j` < p.off + kc·nr ≤ len, the capacity.
                            unsafe { to.add(at + j).write(T::one()) };
                            j += 1;
                        }
                    } else {
                        let row = (k0 + kk) * src.ld;
                        let run = &src.data[row + lo - c0..row + hi - c0];
                        // SAFETY: as above, for the `run.len()` values from `at + j`.
                        unsafe { copy_run(run, to.add(at + j)) };
                        j += run.len();
                    }
                }
                for jj in j..nr {
                    // SAFETY: as above (the padding of a partial panel).
                    unsafe { to.add(at + jj).write(T::zero()) };
                }
            }
        }
        // SAFETY: every panel's kc rows of nr values were written, and the panels tile 0..len.
        unsafe { data.set_len(len) };
        Packed {
            isa,
            k: kc,
            n,
            panels,
            data,
            bias: Vec::new(),
        }
    }
}

/// Copies `src` to `to`, as whole vectors when it is a whole panel row.
///
/// # Safety
/// `to` must be valid for `src.len()` writes.
#[inline(always)]
unsafe fn copy_run<T: Copy>(src: &[T], to: *mut T) {
    unsafe fn fixed<T: Copy, const N: usize>(src: &[T], to: *mut T) {
        let v = std::ptr::read_unaligned(src.as_ptr() as *const [T; N]);
        std::ptr::write_unaligned(to as *mut [T; N], v);
    }
    match src.len() {
        32 => fixed::<T, 32>(src, to),
        16 => fixed::<T, 16>(src, to),
        8 => fixed::<T, 8>(src, to),
        _ => std::ptr::copy_nonoverlapping(src.as_ptr(), to, src.len()),
    }
}

/// The panels of `groups` (each cut in panels of `nr` columns) and the packed length.
fn layout(nr: usize, k: usize, n: usize, groups: &[Group]) -> (Vec<Panel>, usize) {
    let mut covered = vec![false; n];
    let mut panels = Vec::new();
    let mut off = 0;
    for g in groups {
        assert!(
            g.col + g.cols <= n && g.k0 <= g.k1 && g.k1 <= k,
            "bad group {g:?}"
        );
        for (c, seen) in covered[g.col..g.col + g.cols].iter_mut().enumerate() {
            assert!(!*seen, "column {} in two groups", g.col + c);
            *seen = true;
        }
        let mut col = g.col;
        while col < g.col + g.cols {
            let cols = nr.min(g.col + g.cols - col);
            panels.push(Panel {
                off,
                k0: g.k0,
                k1: g.k1,
                col,
                cols,
            });
            off += (g.k1 - g.k0) * nr;
            col += cols;
        }
    }
    assert!(covered.iter().all(|&c| c), "a column is in no group");
    (panels, off)
}

impl<T: KernelFloat> Packed<T> {
    /// `dst (m × n, row stride ldd) = start + a (m × k) · b`.
    pub fn product(&self, m: usize, a: Lhs<T>, start: Start, dst: &mut [T], ldd: usize) {
        let k = self.k;
        if m == 0 || self.n == 0 {
            return;
        }
        let s1 = a.split.min(k);
        let s2 = k - s1;
        // The last element of each part of `a`.
        let last = |rs: usize, cs: usize, cols: usize| (m - 1) * rs + (cols - 1) * cs;
        assert!(
            s1 == 0 || last(a.rs1, a.cs1, s1) < a.a1.len(),
            "a1 too short"
        );
        assert!(
            s2 == 0 || last(a.rs2, a.cs2, s2) < a.a2.len(),
            "a2 too short"
        );
        assert!(
            (s1 == 0 || a.cs1 > 0) && (s2 == 0 || a.cs2 > 0),
            "a column stride of 0"
        );
        let in_place = |len: usize, rs: usize, cs: usize| len == 0 || (cs == 1 && rs > 0);
        if in_place(s1, a.rs1, a.cs1)
            && in_place(s2, a.rs2, a.cs2)
            && self.panels.len() <= DIRECT_PANELS
        {
            // Few panels: packing `a` would cost more than reading its rows in place.
            let parts = [(a.a1.as_ptr(), a.rs1.max(1)), (a.a2.as_ptr(), a.rs2.max(1))];
            return self.run(m, Operand::Rows(parts, s1), start, dst, ldd);
        }
        // `a` packed per block of rows, k-major (element (r, kk) of the block at kk·rows + r):
        // the tiles then read it in order with constant offsets.
        let mut ap: Vec<T> = Vec::with_capacity(m * k);
        let to = ap.as_mut_ptr();
        let parts = [(a.a1, a.rs1, a.cs1, 0, s1), (a.a2, a.rs2, a.cs2, s1, s2)];
        for (r0, rows) in row_blocks(m, self.isa.mr()) {
            for (src, rs, cs, kk0, len) in parts {
                if len == 0 {
                    continue;
                }
                let at = r0 * k + kk0 * rows;
                if rs == 1 && cs != 1 {
                    // Column-major: a column's values of the block sit together.
                    for kk in 0..len {
                        let col = &src[r0 + kk * cs..r0 + kk * cs + rows];
                        for (r, &v) in col.iter().enumerate() {
                            // SAFETY: below m·k, the capacity: block (r0, rows) fills
                            // r0·k .. (r0 + rows)·k.
                            unsafe { to.add(at + kk * rows + r).write(v) };
                        }
                    }
                } else if cs == 1 {
                    // Row-major: `rows` rows read side by side, a column at a time (the writes
                    // in order).
                    let src_rows: [&[T]; MR_MAX] = std::array::from_fn(|r| {
                        if r < rows {
                            &src[(r0 + r) * rs..(r0 + r) * rs + len]
                        } else {
                            &[]
                        }
                    });
                    let mut w = at;
                    for kk in 0..len {
                        for row in &src_rows[..rows] {
                            // SAFETY: as above (w runs through at .. at + len·rows); each row
                            // holds `len` values.
                            unsafe { to.add(w).write(*row.get_unchecked(kk)) };
                            w += 1;
                        }
                    }
                } else {
                    for r in 0..rows {
                        let row = &src[(r0 + r) * rs..=(r0 + r) * rs + (len - 1) * cs];
                        for (kk, &v) in row.iter().step_by(cs).enumerate() {
                            // SAFETY: as above.
                            unsafe { to.add(at + kk * rows + r).write(v) };
                        }
                    }
                }
            }
        }
        // SAFETY: the blocks cover the m rows and the two parts the k columns, so every one of
        // the m·k values was written.
        unsafe { ap.set_len(m * k) };
        self.product_packed(m, &ap, start, dst, ldd);
    }

    /// The product with `a` packed already (by [`row_blocks`] of this build's tile height, each
    /// block k-major).
    fn product_packed(&self, m: usize, ap: &[T], start: Start, dst: &mut [T], ldd: usize) {
        assert_eq!(ap.len(), m * self.k, "packed a");
        self.run(m, Operand::Packed(ap.as_ptr()), start, dst, ldd)
    }

    /// The tiles over `a` (m × k, checked by the caller).
    fn run(&self, m: usize, a: Operand<T>, start: Start, dst: &mut [T], ldd: usize) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        // Bounds: every access of the tiles is inside these (the panels lie inside k × n, `a`
        // was checked by the caller).
        assert!(ldd >= n && (m - 1) * ldd + n <= dst.len(), "dst too short");
        assert!(
            start != Start::Bias || !self.bias.is_empty(),
            "no bias packed"
        );
        let job = Job {
            m,
            k,
            a,
            panels: &self.panels,
            data: self.data.as_ptr(),
            bias: self.bias.as_ptr(),
            start,
            dst: dst.as_mut_ptr(),
            ldd,
        };
        // SAFETY: the asserts above bound every access; `isa` was checked when packing.
        unsafe {
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => run_avx512(&job),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => run_avx2(&job),
                _ => run_plain(&job),
            }
        }
    }
}

/// The left operand as the tiles read it: packed by [`row_blocks`], each block k-major, or in
/// place as two row-major parts (start, row stride), the first holding the columns before the
/// split.
#[derive(Clone, Copy)]
enum Operand<T> {
    Packed(*const T),
    Rows([(*const T, usize); 2], usize),
}

/// Products with at most this many panels read a row-major `a` in place instead of packing it.
const DIRECT_PANELS: usize = 8;

/// Rows per tile at most, any build.
const MR_MAX: usize = 12;

/// Blocks `(first row, rows)` of at most `mr` rows covering `m` rows, as even as can be.
fn row_blocks(m: usize, mr: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = m.div_ceil(mr);
    let (base, extra) = (m / blocks.max(1), m % blocks.max(1));
    (0..blocks).map(move |b| (b * base + b.min(extra), base + usize::from(b < extra)))
}

/// A product checked by [`Packed::product`], as raw parts for the tiles: `a` packed by
/// [`row_blocks`], each block k-major.
struct Job<'p, T> {
    m: usize,
    k: usize,
    a: Operand<T>,
    panels: &'p [Panel],
    data: *const T,
    bias: *const T,
    start: Start,
    dst: *mut T,
    ldd: usize,
}

impl<T> Job<'_, T> {
    /// The same job on another element type: only for `U` = `T` (checked by the callers).
    fn cast<U>(&self) -> Job<'_, U> {
        Job {
            m: self.m,
            k: self.k,
            a: match self.a {
                Operand::Packed(p) => Operand::Packed(p as *const U),
                Operand::Rows([(p, r), (q, s)], split) => {
                    Operand::Rows([(p as *const U, r), (q as *const U, s)], split)
                }
            },
            panels: self.panels,
            data: self.data as *const U,
            bias: self.bias as *const U,
            start: self.start,
            dst: self.dst as *mut U,
            ldd: self.ldd,
        }
    }
}

fn is<T: 'static, U: 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

/// A vector of `W` values of `E` with the operations of a tile (all `#[inline(always)]`: their
/// instructions are generated inside the caller built for the vector's features).
trait Vector: Copy {
    type E: KernelFloat;
    const W: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const Self::E) -> Self;
    unsafe fn store(self, p: *mut Self::E);
    unsafe fn splat(v: Self::E) -> Self;
    /// `a·b + c`.
    unsafe fn madd(a: Self, b: Self, c: Self) -> Self;
}

/// One value, multiply and add apart: the baseline build.
#[derive(Clone, Copy)]
struct One<T>(T);

impl<T: KernelFloat> Vector for One<T> {
    type E = T;
    const W: usize = 1;
    #[inline(always)]
    unsafe fn zero() -> Self {
        One(T::zero())
    }
    #[inline(always)]
    unsafe fn load(p: *const T) -> Self {
        One(*p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut T) {
        *p = self.0
    }
    #[inline(always)]
    unsafe fn splat(v: T) -> Self {
        One(v)
    }
    #[inline(always)]
    unsafe fn madd(a: Self, b: Self, c: Self) -> Self {
        One(a.0 * b.0 + c.0)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    macro_rules! vector {
        ($name:ident, $e:ty, $v:ty, $w:expr, $zero:ident, $load:ident, $store:ident, $splat:ident, $fma:ident) => {
            #[derive(Clone, Copy)]
            pub(super) struct $name($v);
            impl Vector for $name {
                type E = $e;
                const W: usize = $w;
                #[inline(always)]
                unsafe fn zero() -> Self {
                    $name($zero())
                }
                #[inline(always)]
                unsafe fn load(p: *const $e) -> Self {
                    $name($load(p))
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut $e) {
                    $store(p, self.0)
                }
                #[inline(always)]
                unsafe fn splat(v: $e) -> Self {
                    $name($splat(v))
                }
                #[inline(always)]
                unsafe fn madd(a: Self, b: Self, c: Self) -> Self {
                    $name($fma(a.0, b.0, c.0))
                }
            }
        };
    }
    vector!(
        Y32,
        f32,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps
    );
    vector!(
        Y64,
        f64,
        __m256d,
        4,
        _mm256_setzero_pd,
        _mm256_loadu_pd,
        _mm256_storeu_pd,
        _mm256_set1_pd,
        _mm256_fmadd_pd
    );
    vector!(
        Z32,
        f32,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps
    );
    vector!(
        Z64,
        f64,
        __m512d,
        8,
        _mm512_setzero_pd,
        _mm512_loadu_pd,
        _mm512_storeu_pd,
        _mm512_set1_pd,
        _mm512_fmadd_pd
    );
}

/// Columns per panel of `isa` for `T`.
fn panel_width<T: 'static>(isa: Isa) -> usize {
    let f32 = is::<T, f32>();
    let f64 = is::<T, f64>();
    match isa {
        Isa::Avx512 if f32 => 32,
        Isa::Avx512 if f64 => 16,
        Isa::Avx2 if f32 => 16,
        Isa::Avx2 if f64 => 8,
        _ => PLAIN_NR,
    }
}

/// Columns per panel of the baseline build.
const PLAIN_NR: usize = 8;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512<T: KernelFloat>(job: &Job<T>) {
    if is::<T, f32>() {
        run::<x86::Z32, 12, 2, 32>(&job.cast())
    } else if is::<T, f64>() {
        run::<x86::Z64, 12, 2, 16>(&job.cast())
    } else {
        run_plain(job)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2<T: KernelFloat>(job: &Job<T>) {
    if is::<T, f32>() {
        run::<x86::Y32, 6, 2, 16>(&job.cast())
    } else if is::<T, f64>() {
        run::<x86::Y64, 6, 2, 8>(&job.cast())
    } else {
        run_plain(job)
    }
}

unsafe fn run_plain<T: KernelFloat>(job: &Job<T>) {
    run::<One<T>, 4, PLAIN_NR, PLAIN_NR>(job)
}

/// Rows of `k` per pass of a panel at most: a panel's part (192 × 32 f32: 24 KiB) stays in the
/// L1 cache while every row block passes over it.
const KC_PANEL: usize = 192;

/// Every panel, in passes over parts of its `k` range, and in each every block of at most `MR`
/// rows (the rows split evenly); panels of `NR` = `NV` vectors.
#[inline(always)]
unsafe fn run<V: Vector, const MR: usize, const NV: usize, const NR: usize>(job: &Job<V::E>) {
    debug_assert_eq!(NR, NV * V::W);
    for (pi, panel) in job.panels.iter().enumerate() {
        let bias = if job.start == Start::Bias {
            job.bias.add(pi * NR)
        } else {
            std::ptr::null()
        };
        let len = panel.k1 - panel.k0;
        let passes = len.div_ceil(KC_PANEL).max(1);
        let mut kk0 = panel.k0;
        for pass in 0..passes {
            let kc = len / passes + usize::from(pass < len % passes);
            // The first pass starts as asked, the others from what it left in `dst`.
            let start = if pass == 0 { job.start } else { Start::Dst };
            for (r0, rows) in row_blocks(job.m, MR) {
                // This pass's columns of the block's rows of `a`.
                let segs = match job.a {
                    Operand::Packed(p) => {
                        let run = Seg {
                            a: p.add(r0 * job.k + kk0 * rows),
                            step: rows,
                            rs: 1,
                            len: kc,
                        };
                        [run, Seg { len: 0, ..run }]
                    }
                    Operand::Rows([(p, rp), (q, rq)], split) => {
                        // Columns kk0..split from the first part, the rest from the second.
                        let (e1, s2) = ((kk0 + kc).min(split), kk0.max(split));
                        [
                            Seg {
                                a: p.wrapping_add(r0 * rp + kk0),
                                step: 1,
                                rs: rp,
                                len: e1.saturating_sub(kk0),
                            },
                            Seg {
                                a: q.wrapping_add(r0 * rq + s2 - split),
                                step: 1,
                                rs: rq,
                                len: (kk0 + kc).saturating_sub(s2),
                            },
                        ]
                    }
                };
                let t = Tile {
                    segs,
                    panel,
                    b: job.data.add(panel.off + (kk0 - panel.k0) * NR),
                    bias,
                    start,
                    dst: job.dst.add(r0 * job.ldd + panel.col),
                    ldd: job.ldd,
                };
                let in_place = matches!(job.a, Operand::Rows(..));
                macro_rules! rows {
                    ($($r:literal)*) => {
                        match (rows, in_place) {
                            $(($r, false) if $r <= MR => tile::<V, $r, NV, NR, false>(&t),)*
                            $(($r, true) if $r <= MR => tile::<V, $r, NV, NR, true>(&t),)*
                            _ => unreachable!("row block of {rows}"),
                        }
                    };
                }
                rows!(1 2 3 4 5 6 7 8 9 10 11 12);
            }
            kk0 += kc;
        }
    }
}

/// A run of columns of a tile's rows of `a`: `len` columns from `a`, the next column `step`
/// values on, the next row `rs` values on (packed: `step` = the block's rows, `rs` = 1).
#[derive(Clone, Copy)]
struct Seg<T> {
    a: *const T,
    step: usize,
    rs: usize,
    len: usize,
}

/// One tile's operands: `dst` at the tile's first row and column, the columns of `a` of this
/// pass (one packed run, or the runs from the two row-major parts) and the panel's rows of `b`
/// that go with them, one after the other.
struct Tile<'p, T> {
    segs: [Seg<T>; 2],
    panel: &'p Panel,
    b: *const T,
    bias: *const T,
    start: Start,
    dst: *mut T,
    ldd: usize,
}

#[inline(always)]
unsafe fn tile<
    V: Vector,
    const R: usize,
    const NV: usize,
    const NR: usize,
    const IN_PLACE: bool,
>(
    t: &Tile<V::E>,
) {
    let p = t.panel;
    let full = p.cols == NR;
    let mut acc = [[V::zero(); NV]; R];
    // A partial panel's row goes through a full-width copy.
    let load_row = |src: *const V::E| -> [V; NV] {
        if full {
            std::array::from_fn(|v| V::load(src.add(v * V::W)))
        } else {
            let mut tmp: [V::E; NR] = [num_traits::Zero::zero(); NR];
            std::ptr::copy_nonoverlapping(src, tmp.as_mut_ptr(), p.cols);
            std::array::from_fn(|v| V::load(tmp.as_ptr().add(v * V::W)))
        }
    };
    match t.start {
        Start::Zero => {}
        // The packed bias row is padded to whole panels.
        Start::Bias => {
            let v: [V; NV] = std::array::from_fn(|v| V::load(t.bias.add(v * V::W)));
            acc = [v; R];
        }
        Start::Dst => {
            for (r, row) in acc.iter_mut().enumerate() {
                *row = load_row(t.dst.add(r * t.ldd));
            }
        }
    }
    // Per row of the panel: one row of `b` loaded, each value of `a` broadcast against it.
    let mut b = t.b;
    for seg in t.segs {
        let mut a = seg.a;
        for _ in 0..seg.len {
            let bv: [V; NV] = std::array::from_fn(|v| V::load(b.add(v * V::W)));
            for (r, row) in acc.iter_mut().enumerate() {
                // In place, the rows are `rs` apart; packed, they follow each other.
                let av = V::splat(*a.add(if IN_PLACE { r * seg.rs } else { r }));
                for v in 0..NV {
                    row[v] = V::madd(av, bv[v], row[v]);
                }
            }
            a = a.add(if IN_PLACE { 1 } else { seg.step });
            b = b.add(NR);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let d = t.dst.add(r * t.ldd);
        if full {
            for (v, x) in row.iter().enumerate() {
                x.store(d.add(v * V::W));
            }
        } else {
            let mut tmp: [V::E; NR] = [num_traits::Zero::zero(); NR];
            for (v, x) in row.iter().enumerate() {
                x.store(tmp.as_mut_ptr().add(v * V::W));
            }
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), d, p.cols);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value from a small deterministic generator, in [-1, 1).
    fn val(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn isas() -> Vec<Isa> {
        [Isa::Baseline, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.runs_here())
            .collect()
    }

    /// The product with every start, one or two parts of `a`, groups with their own `k` ranges,
    /// against a plain triple loop in f64, on sizes that are not multiples of the tiles.
    fn check<T: KernelFloat>(tol: f64) {
        let mut seed = 5;
        for (m, n, k) in [
            (0, 3, 4),
            (3, 0, 4),
            (2, 5, 0),
            (1, 1, 1),
            (7, 19, 5),
            (13, 33, 17),
            (6, 16, 8),
            (12, 32, 3),
            (25, 70, 40),
            (32, 512, 160),
            // k in several passes of a panel
            (9, 40, 450),
        ] {
            for split in [0, k / 3, k] {
                for isa in isas() {
                    for start in [Start::Zero, Start::Dst, Start::Bias] {
                        // Three groups when n allows: all of k, the first part only, the rest.
                        let (c1, c2) = (n / 2, n / 2 + n / 4);
                        let groups = [
                            Group {
                                col: 0,
                                cols: c1,
                                k0: 0,
                                k1: k,
                            },
                            Group {
                                col: c1,
                                cols: c2 - c1,
                                k0: 0,
                                k1: split,
                            },
                            Group {
                                col: c2,
                                cols: n - c2,
                                k0: split,
                                k1: k,
                            },
                        ];
                        let range = |c: usize| {
                            let g = groups.iter().find(|g| c >= g.col && c < g.col + g.cols);
                            g.map_or((0, 0), |g| (g.k0, g.k1))
                        };
                        let bm: Vec<f64> = (0..k * n).map(|_| val(&mut seed)).collect();
                        let bias: Vec<f64> = (0..n).map(|_| val(&mut seed)).collect();
                        let (lda1, lda2) = (split + 3, k - split + 2);
                        let a1: Vec<f64> = (0..m * lda1).map(|_| val(&mut seed)).collect();
                        let a2: Vec<f64> = (0..m * lda2).map(|_| val(&mut seed)).collect();
                        let ldd = n + 1;
                        let d0: Vec<f64> = (0..m * ldd).map(|_| val(&mut seed)).collect();
                        let cast = |v: &[f64]| -> Vec<T> {
                            v.iter().map(|&x| T::from(x).unwrap()).collect()
                        };
                        let (bt, biast, a1t, a2t) = (cast(&bm), cast(&bias), cast(&a1), cast(&a2));
                        let p = Packed::<T>::with_isa(
                            isa,
                            k,
                            n,
                            &groups,
                            |kk, c| bt[kk * n + c],
                            Some(&biast),
                        );
                        let mut d = cast(&d0);
                        p.product(
                            m,
                            Lhs::two(&a1t, lda1, &a2t, lda2, split),
                            start,
                            &mut d,
                            ldd,
                        );
                        for r in 0..m {
                            for c in 0..ldd {
                                let got = d[r * ldd + c].to_f64().unwrap();
                                if c >= n {
                                    assert_eq!(got, cast(&d0)[r * ldd + c].to_f64().unwrap());
                                    continue;
                                }
                                let (k0, k1) = range(c);
                                let mut want = match start {
                                    Start::Zero => 0.0,
                                    Start::Dst => cast(&d0)[r * ldd + c].to_f64().unwrap(),
                                    Start::Bias => biast[c].to_f64().unwrap(),
                                };
                                let mut size = want.abs();
                                for kk in k0..k1 {
                                    let a = if kk < split {
                                        a1t[r * lda1 + kk]
                                    } else {
                                        a2t[r * lda2 + kk - split]
                                    };
                                    let term =
                                        a.to_f64().unwrap() * bt[kk * n + c].to_f64().unwrap();
                                    want += term;
                                    size += term.abs();
                                }
                                assert!(
                                    (got - want).abs() <= tol * size.max(1.0),
                                    "{isa:?} {start:?} m{m} n{n} k{k} split {split} ({r}, {c}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packed_products_equal_a_triple_loop() {
        check::<f32>(1e-6);
        check::<f64>(1e-14);
    }

    /// Column-major and strided left operands of [`Packed::product`] (k across several passes of
    /// a panel), the blocked product [`product_tn`] over several sources (a row-major block with
    /// a row stride of its own, ones, another block; `k` across several blocks) and
    /// [`StepGradients`], against triple loops.
    fn check_strided<T: KernelFloat>(tol: f64) {
        let mut seed = 17;
        let close = |got: T, want: f64, size: f64, what: &str| {
            let got = got.to_f64().unwrap();
            assert!(
                (got - want).abs() <= tol * size.max(1.0),
                "{what}: {got} vs {want}"
            );
        };
        for (m, k, n) in [
            (1, 1, 1),
            (5, 3, 4),
            (13, 300, 40),
            (30, 700, 33),
            (0, 4, 2),
            (3, 0, 2),
        ] {
            let bm: Vec<T> = (0..k * n)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let p = Packed::dense(k, n, |kk, c| bm[kk * n + c], None);
            // a (m × k) column-major (rs 1, cs m + 1), and the same values with a row stride of
            // 2k and a column stride of 2.
            let ld = m + 1;
            let ac: Vec<T> = (0..k * ld)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let av = |r: usize, kk: usize| ac[kk * ld + r];
            let mut ar = vec![T::zero(); m * 2 * k.max(1)];
            for r in 0..m {
                for kk in 0..k {
                    ar[r * 2 * k + 2 * kk] = av(r, kk);
                }
            }
            for (lhs, name) in [
                (Lhs::strided(&ac, 1, ld), "column-major"),
                (Lhs::strided(&ar, 2 * k, 2), "strided"),
            ] {
                let mut d = vec![T::zero(); m * n];
                p.product(m, lhs, Start::Zero, &mut d, n);
                for r in 0..m {
                    for c in 0..n {
                        let terms = (0..k).map(|kk| {
                            av(r, kk).to_f64().unwrap() * bm[kk * n + c].to_f64().unwrap()
                        });
                        let (want, size) = terms.fold((0.0, 0.0), |(s, a), t| (s + t, a + t.abs()));
                        close(
                            d[r * n + c],
                            want,
                            size,
                            &format!("{name} m{m} k{k} ({r}, {c})"),
                        );
                    }
                }
            }
            // product_tn: a = [a1 (k × 3, row stride 5) | ones | a2 (k × m)], b = [b1 | b2].
            let a1: Vec<T> = (0..k * 5)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let b1: Vec<T> = (0..k * 2)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let a = [
                Cols {
                    data: &a1[..],
                    ld: 5,
                    width: 3,
                },
                Cols::ones(1),
                Cols::rows(&ac, ld),
            ];
            let b = [Cols::rows(&b1, 2), Cols::rows(&bm, n)];
            let (ma, nb) = (3 + 1 + ld, 2 + n);
            let at = |kk: usize, r: usize| -> f64 {
                match r {
                    0..3 => a1[kk * 5 + r].to_f64().unwrap(),
                    3 => 1.0,
                    _ => ac[kk * ld + r - 4].to_f64().unwrap(),
                }
            };
            let bt = |kk: usize, c: usize| -> f64 {
                if c < 2 {
                    b1[kk * 2 + c].to_f64().unwrap()
                } else {
                    bm[kk * n + c - 2].to_f64().unwrap()
                }
            };
            for start in [Start::Zero, Start::Dst] {
                let ldd = nb + 3;
                let d0: Vec<T> = (0..ma * ldd)
                    .map(|_| T::from(val(&mut seed)).unwrap())
                    .collect();
                let mut d = d0.clone();
                product_tn(k, &a, &b, start, &mut d, ldd);
                for r in 0..ma {
                    for c in 0..ldd {
                        let mut want = if start == Start::Dst || c >= nb {
                            d0[r * ldd + c].to_f64().unwrap()
                        } else {
                            0.0
                        };
                        let mut size = want.abs();
                        if c < nb {
                            for kk in 0..k {
                                let t = at(kk, r) * bt(kk, c);
                                want += t;
                                size += t.abs();
                            }
                        }
                        close(
                            d[r * ldd + c],
                            want,
                            size,
                            &format!("product_tn {start:?} k{k} ({r}, {c})"),
                        );
                    }
                }
            }
            // StepGradients: dg (k × n), x (k × 3), h_prev (k × m), fed 1 or 3 rows a step.
            let dg: Vec<T> = (0..k * n)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let xs: Vec<T> = (0..k * 3)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let hs: Vec<T> = (0..k * m)
                .map(|_| T::from(val(&mut seed)).unwrap())
                .collect();
            let w = 3 + m + 1;
            for rows in [1, 3] {
                let steps = k / rows;
                let mut sg = StepGradients::new(rows, n, 3 + m, steps);
                for st in 0..steps {
                    let (g, xh) = sg.step();
                    for r in 0..rows {
                        let kk = st * rows + r;
                        g[r * n..(r + 1) * n].copy_from_slice(&dg[kk * n..(kk + 1) * n]);
                        xh[r * (w - 1)..r * (w - 1) + 3].copy_from_slice(&xs[kk * 3..kk * 3 + 3]);
                        xh[r * (w - 1) + 3..(r + 1) * (w - 1)]
                            .copy_from_slice(&hs[kk * m..(kk + 1) * m]);
                    }
                    assert!(sg.last()[..n] == dg[st * rows * n..st * rows * n + n]);
                    sg.done();
                }
                let wg = sg.finish();
                for g in 0..n {
                    for c in 0..w {
                        let (mut want, mut size) = (0.0, 0.0);
                        for kk in 0..steps * rows {
                            let v = match c {
                                c if c < 3 => xs[kk * 3 + c].to_f64().unwrap(),
                                c if c < 3 + m => hs[kk * m + c - 3].to_f64().unwrap(),
                                _ => 1.0,
                            };
                            let t = dg[kk * n + g].to_f64().unwrap() * v;
                            want += t;
                            size += t.abs();
                        }
                        close(
                            wg[g * w + c],
                            want,
                            size,
                            &format!("weight gradient k{k} rows {rows} ({g}, {c})"),
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn strided_and_blocked_products_equal_a_triple_loop() {
        check_strided::<f32>(1e-6);
        check_strided::<f64>(1e-14);
    }

    /// The AVX2 and AVX-512 tiles do the same operations in the same order: identical bits (where
    /// this CPU runs both); the baseline tiles give the same values to rounding.
    #[test]
    fn fma_builds_agree_to_the_bit() {
        let mut seed = 9;
        let (m, n, k) = (29, 150, 77);
        let b: Vec<f32> = (0..k * n).map(|_| val(&mut seed) as f32).collect();
        let a: Vec<f32> = (0..m * k).map(|_| val(&mut seed) as f32).collect();
        let bias: Vec<f32> = (0..n).map(|_| val(&mut seed) as f32).collect();
        let all = [Group {
            col: 0,
            cols: n,
            k0: 0,
            k1: k,
        }];
        let out = |isa| {
            let p = Packed::with_isa(isa, k, n, &all, |kk, c| b[kk * n + c], Some(&bias));
            let mut d = vec![0.0f32; m * n];
            p.product(m, Lhs::one(&a, k), Start::Bias, &mut d, n);
            d
        };
        let fma: Vec<Vec<f32>> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|i| i.runs_here())
            .map(out)
            .collect();
        for x in &fma[1.min(fma.len())..] {
            let same = x
                .iter()
                .zip(&fma[0])
                .all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "the FMA builds differ");
        }
        // The baseline build rounds each product apart: the same values to rounding.
        let base = out(Isa::Baseline);
        assert!(base.iter().any(|&v| v != 0.0));
        for x in &fma {
            for (p, q) in x.iter().zip(&base) {
                assert!((p - q).abs() <= 1e-5 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}
