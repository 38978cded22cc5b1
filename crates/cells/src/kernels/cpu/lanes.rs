//! The element-wise passes of the fused kernels, in blocks of [`LANES`] values that the compiler
//! vectorizes whatever the slices alias.
use crate::kernels::math::KernelFloat;

/// Lanes of the element-wise passes: 8 f32 fill an AVX2 register (f64 takes two).
pub const LANES: usize = 8;

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
    lane_blocks(
        inputs,
        outputs,
        #[inline(always)]
        |a, b| {
            for l in 0..LANES {
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
fn load<T: Copy>(s: &[T]) -> [T; LANES] {
    assert!(s.len() >= LANES);
    // SAFETY: `s` holds at least LANES values; unaligned reads are allowed.
    unsafe { std::ptr::read_unaligned(s.as_ptr() as *const [T; LANES]) }
}

#[inline(always)]
fn store<T: Copy>(d: &mut [T], v: [T; LANES]) {
    assert!(d.len() >= LANES);
    // SAFETY: `d` holds at least LANES values; unaligned writes are allowed.
    unsafe { std::ptr::write_unaligned(d.as_mut_ptr() as *mut [T; LANES], v) }
}

/// As [`lanes`], but `f` gets whole blocks: `x[k][l]` is input `k` at lane `l`, and it loops over
/// the lanes itself (a plain vertical loop, which the compiler vectorizes best).
#[inline(always)]
pub fn lane_blocks<T: KernelFloat, const N: usize, const M: usize>(
    inputs: [&[T]; N],
    mut outputs: [&mut [T]; M],
    f: impl Fn(&[[T; LANES]; N], &mut [[T; LANES]; M]),
) {
    let len = if M == 0 { 0 } else { outputs[0].len() };
    let mut j0 = 0;
    while j0 < len {
        let m = LANES.min(len - j0);
        let mut a = [[T::zero(); LANES]; N];
        let mut b = [[T::zero(); LANES]; M];
        if m == LANES {
            for (k, src) in inputs.iter().enumerate() {
                a[k] = load(&src[j0..j0 + LANES]);
            }
            for (k, src) in outputs.iter().enumerate() {
                b[k] = load(&src[j0..j0 + LANES]);
            }
        } else {
            for (k, src) in inputs.iter().enumerate() {
                a[k][..m].copy_from_slice(&src[j0..j0 + m]);
            }
            for (k, src) in outputs.iter().enumerate() {
                b[k][..m].copy_from_slice(&src[j0..j0 + m]);
            }
        }
        f(&a, &mut b);
        if m == LANES {
            for (k, dst) in outputs.iter_mut().enumerate() {
                store(&mut dst[j0..j0 + LANES], b[k]);
            }
        } else {
            for (k, dst) in outputs.iter_mut().enumerate() {
                dst[j0..j0 + m].copy_from_slice(&b[k][..m]);
            }
        }
        j0 += LANES;
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
