//! Single-threaded matrix products on row-major slices for the fused CPU kernels, through the
//! `gemm` crate (the kernel Candle itself uses). Threads are used one level up (batch shards for
//! a whole sequence), which suits recurrent shapes better than parallel small products.
use num_traits::Float;

/// A row-major (or transposed) view: element (r, c) at `r * rs + c * cs`.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    pub data: &'a [T],
    pub rs: isize,
    pub cs: isize,
}

impl<'a, T> View<'a, T> {
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: cols as isize,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [T], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols as isize,
        }
    }
}

/// `dst (m × n, row stride dst_rs) = [dst +] a (m × k) · b (k × n)`.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Float + 'static>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    accumulate: bool,
    a: View<T>,
    b: View<T>,
) {
    matmul_strided(m, n, k, dst, (dst_rs, 1), accumulate, a, b)
}

/// As [`matmul`], with `dst` element (r, c) at `r * rs + c * cs` for `(rs, cs) = dst_strides`.
/// The products are fastest when `a` and `dst` are contiguous down their columns (`rs = 1`):
/// the kernel then reads `a` without repacking it.
#[allow(clippy::too_many_arguments)]
pub fn matmul_strided<T: Float + 'static>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_strides: (usize, usize),
    accumulate: bool,
    a: View<T>,
    b: View<T>,
) {
    let (dst_rs, dst_cs) = dst_strides;
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst[r * dst_rs + c * dst_cs] = T::zero();
                }
            }
        }
        return;
    }
    // Bounds: the last element each operand touches must exist.
    let last =
        |rs: isize, cs: isize, r: usize, c: usize| (r as isize - 1) * rs + (c as isize - 1) * cs;
    assert!(last(dst_rs as isize, dst_cs as isize, m, n) < dst.len() as isize);
    assert!(last(a.rs, a.cs, m, k) < a.data.len() as isize);
    assert!(last(b.rs, b.cs, k, n) < b.data.len() as isize);
    // SAFETY: the asserts above keep every access inside the slices; `dst` is exclusive.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The transpose of a row-major (rows × cols) matrix, row-major (cols × rows). The per-step
/// products take the recurrent weights in this layout: the product kernel then reads them as
/// they are instead of repacking them at every step.
pub fn transpose<T: Copy>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        t.extend((0..rows).map(|r| a[r * cols + c]));
    }
    t
}

/// Rows (sample, step) of width `w` reordered to (step, sample): a step's rows then sit together,
/// so the per-step products read and write one compact block. (Rows `steps·w` apart would also
/// map to the same cache sets whenever that stride is a multiple of 4 KiB.)
pub fn time_major<T: Copy>(src: &[T], n: usize, steps: usize, w: usize) -> Vec<T> {
    let mut dst = Vec::with_capacity(n * steps * w);
    for t in 0..steps {
        for r in 0..n {
            dst.extend_from_slice(&src[(r * steps + t) * w..(r * steps + t + 1) * w]);
        }
    }
    dst
}

/// The inverse of [`time_major`], into `dst` (sample, step).
pub fn sample_major<T: Copy>(src: &[T], n: usize, steps: usize, w: usize, dst: &mut [T]) {
    for t in 0..steps {
        for r in 0..n {
            dst[(r * steps + t) * w..(r * steps + t + 1) * w]
                .copy_from_slice(&src[(t * n + r) * w..(t * n + r + 1) * w]);
        }
    }
}

/// The input projection of a layer: `out (m × rows) = a (m × k) · Wᵀ`, with `W` (rows × k)
/// row-major. The kernels add the biases in their element-wise pass.
pub fn project<T: Float + 'static>(
    m: usize,
    k: usize,
    rows: usize,
    a: &[T],
    w: &[T],
    out: &mut [T],
) {
    matmul(
        m,
        rows,
        k,
        out,
        rows,
        false,
        View::rows(a, k),
        View::transposed(w, k),
    );
}

/// The gradients of [`project`] from `dout` (m × rows): `dw (rows × k) = doutᵀ a`,
/// `db = Σ_m dout` and, when asked, `da (m × k) = dout · W`, each as one product over all `m`
/// rows.
#[allow(clippy::too_many_arguments)]
pub fn project_backward<T: Float + 'static>(
    m: usize,
    k: usize,
    rows: usize,
    a: &[T],
    w: &[T],
    dout: &[T],
    dw: &mut [T],
    db: &mut [T],
    da: Option<&mut [T]>,
) {
    matmul(
        rows,
        k,
        m,
        dw,
        k,
        false,
        View::transposed(dout, rows),
        View::rows(a, k),
    );
    let db = &mut db[..rows];
    db.fill(T::zero());
    for d in dout[..m * rows].chunks_exact(rows) {
        for (acc, &v) in db.iter_mut().zip(d) {
            *acc = *acc + v;
        }
    }
    if let Some(da) = da {
        matmul(
            m,
            k,
            rows,
            da,
            k,
            false,
            View::rows(dout, rows),
            View::rows(w, k),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_and_transposes() {
        // a (2×3), b (3×2)
        let a = [1.0f64, 2., 3., 4., 5., 6.];
        let b = [7.0f64, 8., 9., 10., 11., 12.];
        let mut d = [0.0f64; 4];
        matmul(
            2,
            2,
            3,
            &mut d,
            2,
            false,
            View::rows(&a, 3),
            View::rows(&b, 2),
        );
        assert_eq!(d, [58., 64., 139., 154.]);
        matmul(
            2,
            2,
            3,
            &mut d,
            2,
            true,
            View::rows(&a, 3),
            View::rows(&b, 2),
        );
        assert_eq!(d, [116., 128., 278., 308.]);
        // aᵀ (3×2) · a (2×3)
        let mut e = [0.0f32; 9];
        let af = a.map(|v| v as f32);
        matmul(
            3,
            3,
            2,
            &mut e,
            3,
            false,
            View::transposed(&af, 3),
            View::rows(&af, 3),
        );
        assert_eq!(e, [17., 22., 27., 22., 29., 36., 27., 36., 45.]);
    }
}
