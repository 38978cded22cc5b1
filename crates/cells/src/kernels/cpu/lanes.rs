//! The element-wise passes of the fused kernels, in blocks of [`LANES`] (or [`WIDE`]) values that
//! the compiler vectorizes whatever the slices alias.
use crate::kernels::math::KernelFloat;

/// Lanes of the element-wise passes: 8 f32 fill an AVX2 register (f64 takes two).
pub const LANES: usize = 8;

/// Lanes of the wide passes (the LSTM, GRU and SRN kernels): 16 f32 fill an AVX-512 register,
/// two AVX2 ones. Every lane does the same operations whatever the width, so the results do not
/// depend on it.
pub const WIDE: usize = 16;

/// An element-wise pass over `N` input and `M` in-out slices of one length (that of the first
/// in-out slice). Blocks of [`LANES`] values are copied through local arrays, so the compiler
/// vectorizes `f` without having to prove that the slices do not overlap. `f` gets one lane's
/// inputs and its in-out values (their current contents, to update in place or overwrite); give
/// it `#[inline(always)]`, or it is compiled apart from the AVX2 build of its caller.
#[inline(always)]
pub fn lanes<T: KernelFloat, const N: usize, const M: usize>(
    inputs: [&[T]; N],
    outputs: [&mut [T]; M],
    f: impl Fn([T; N], &mut [T; M]),
) {
    lanes_of::<T, N, M, LANES>(inputs, outputs, f)
}

/// [`lanes`] in blocks of [`WIDE`] values.
#[inline(always)]
pub fn wide_lanes<T: KernelFloat, const N: usize, const M: usize>(
    inputs: [&[T]; N],
    outputs: [&mut [T]; M],
    f: impl Fn([T; N], &mut [T; M]),
) {
    lanes_of::<T, N, M, WIDE>(inputs, outputs, f)
}

/// [`lanes`] in blocks of `L` values.
#[inline(always)]
pub fn lanes_of<T: KernelFloat, const N: usize, const M: usize, const L: usize>(
    inputs: [&[T]; N],
    outputs: [&mut [T]; M],
    f: impl Fn([T; N], &mut [T; M]),
) {
    lane_blocks::<T, N, M, L>(
        inputs,
        outputs,
        #[inline(always)]
        |a, b| {
            for l in 0..L {
                let x: [T; N] = std::array::from_fn(|k| a[k][l]);
                let mut y: [T; M] = std::array::from_fn(|k| b[k][l]);
                f(x, &mut y);
                for k in 0..M {
                    b[k][l] = y[k];
                }
            }
        },
    );
}

/// One block of lanes as a value: a single vector load (slice copies of this size had become
/// calls to `memmove`).
#[inline(always)]
fn load<T: Copy, const L: usize>(s: &[T]) -> [T; L] {
    assert!(s.len() >= L);
    // SAFETY: `s` holds at least L values; unaligned reads are allowed.
    unsafe { std::ptr::read_unaligned(s.as_ptr() as *const [T; L]) }
}

#[inline(always)]
fn store<T: Copy, const L: usize>(d: &mut [T], v: [T; L]) {
    assert!(d.len() >= L);
    // SAFETY: `d` holds at least L values; unaligned writes are allowed.
    unsafe { std::ptr::write_unaligned(d.as_mut_ptr() as *mut [T; L], v) }
}

/// As [`lanes`], but `f` gets whole blocks of `L` lanes ([`LANES`] or [`WIDE`], from the type of
/// `f`): `x[k][l]` is input `k` at lane `l`, and it loops over the lanes itself (a plain vertical
/// loop, which the compiler vectorizes best).
#[inline(always)]
pub fn lane_blocks<T: KernelFloat, const N: usize, const M: usize, const L: usize>(
    inputs: [&[T]; N],
    mut outputs: [&mut [T]; M],
    f: impl Fn(&[[T; L]; N], &mut [[T; L]; M]),
) {
    let len = if M == 0 { 0 } else { outputs[0].len() };
    // Whole blocks, then the tail in a loop of its own: in one loop the compiler merged the
    // whole-block loads with the tail's copies into calls to `memcpy` of variable length.
    let whole = len - len % L;
    let mut j0 = 0;
    while j0 < whole {
        let a: [[T; L]; N] = std::array::from_fn(|k| load(&inputs[k][j0..j0 + L]));
        let mut b: [[T; L]; M] = std::array::from_fn(|k| load(&outputs[k][j0..j0 + L]));
        f(&a, &mut b);
        for (k, dst) in outputs.iter_mut().enumerate() {
            store(&mut dst[j0..j0 + L], b[k]);
        }
        j0 += L;
    }
    if j0 < len {
        let m = len - j0;
        let mut a = [[T::zero(); L]; N];
        let mut b = [[T::zero(); L]; M];
        for (k, src) in inputs.iter().enumerate() {
            a[k][..m].copy_from_slice(&src[j0..len]);
        }
        for (k, src) in outputs.iter().enumerate() {
            b[k][..m].copy_from_slice(&src[j0..len]);
        }
        f(&a, &mut b);
        for (k, dst) in outputs.iter_mut().enumerate() {
            dst[j0..len].copy_from_slice(&b[k][..m]);
        }
    }
}

/// Σ x, accumulated in [`LANES`] independent sums (which vectorize) and added at the end.
#[inline(always)]
pub fn lane_sum<T: KernelFloat>(x: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = acc[l] + c[l];
        }
    }
    let mut s = chunks.remainder().iter().fold(T::zero(), |a, &b| a + b);
    for a in acc {
        s = s + a;
    }
    s
}
