//! The `.cu` kernels built for the host under `host_emulation.h` (grid and block indices become
//! loops), launched with CUDA's convention (name, grid, block, pointers to the arguments), with
//! safe wrappers that check every slice's length. The tests run whole sequences through these
//! wrappers (step by step, as the GPU path does) against the reference cells.
use std::ffi::{c_char, c_void, CString};

use super::{grid, DeviceFloat, BLOCK};
use crate::cells::ltc::PackedLayout;

extern "C" {
    fn remanence_host_launch(
        name: *const c_char,
        grid: u32,
        block: u32,
        args: *mut *mut c_void,
    ) -> i32;
}

/// One kernel argument.
pub enum Arg<'a, T> {
    Int(i32),
    Long(i64),
    Float(T),
    In(&'a [T]),
    Out(&'a mut [T]),
}

/// Launches kernel `{name}_{f32|f64}` over `threads` threads.
///
/// # Safety
/// `args` must match the kernel's parameters in order and type, and every slice must hold
/// what the kernel reads or writes through it (the typed wrappers below check that).
unsafe fn launch<T: DeviceFloat>(name: &str, threads: usize, args: &mut [Arg<'_, T>]) {
    if threads == 0 {
        return;
    }
    // The values the kernel receives: slices become their data pointers.
    enum Val<T> {
        I32(i32),
        I64(i64),
        F(T),
        P(*mut c_void),
    }
    let vals: Vec<Val<T>> = args
        .iter_mut()
        .map(|a| match a {
            Arg::Int(v) => Val::I32(*v),
            Arg::Long(v) => Val::I64(*v),
            Arg::Float(v) => Val::F(*v),
            Arg::In(s) => Val::P(s.as_ptr() as *mut c_void),
            Arg::Out(s) => Val::P(s.as_mut_ptr() as *mut c_void),
        })
        .collect();
    // CUDA's convention: an array of pointers, each to one argument's value.
    let mut ptrs: Vec<*mut c_void> = vals
        .iter()
        .map(|v| match v {
            Val::I32(x) => x as *const i32 as *mut c_void,
            Val::I64(x) => x as *const i64 as *mut c_void,
            Val::F(x) => x as *const T as *mut c_void,
            Val::P(x) => x as *const *mut c_void as *mut c_void,
        })
        .collect();
    let full = CString::new(format!("{name}_{}", T::SUFFIX)).expect("kernel name");
    let rc = remanence_host_launch(full.as_ptr(), grid(threads), BLOCK, ptrs.as_mut_ptr());
    assert_eq!(rc, 0, "no host kernel {name}");
}

fn check<T>(name: &str, what: &str, s: &[T], len: usize) {
    assert!(
        s.len() >= len,
        "{name}: {what} holds {} values, needs {len}",
        s.len()
    );
}

fn int(v: usize) -> i32 {
    i32::try_from(v).expect("size fits the kernels' int")
}

/// LSTM step forward: `gates` (B, 4H), `c_prev` (B, H) → `h`, `c` (B, H), `saved` (B, 5H).
pub fn lstm_step_forward<T: DeviceFloat>(
    batch: usize,
    hidden: usize,
    gates: &[T],
    c_prev: &[T],
    h: &mut [T],
    c: &mut [T],
    saved: &mut [T],
) {
    let (n, k) = (batch * hidden, "lstm_step_forward");
    check(k, "gates", gates, 4 * n);
    check(k, "c_prev", c_prev, n);
    check(k, "h", h, n);
    check(k, "c", c, n);
    check(k, "saved", saved, 5 * n);
    // SAFETY: arguments in the kernel's order and types; lengths checked above.
    unsafe {
        launch(
            k,
            n,
            &mut [
                Arg::Int(int(batch)),
                Arg::Int(int(hidden)),
                Arg::In(gates),
                Arg::In(c_prev),
                Arg::Out(h),
                Arg::Out(c),
                Arg::Out(saved),
            ],
        )
    }
}

/// LSTM step backward: `dh` the whole gradient of h; `dc` in: from step t+1, out: of
/// `c_prev`; → `dgates` (B, 4H).
#[allow(clippy::too_many_arguments)]
pub fn lstm_step_backward<T: DeviceFloat>(
    batch: usize,
    hidden: usize,
    saved: &[T],
    c_prev: &[T],
    dh: &[T],
    dc: &mut [T],
    dgates: &mut [T],
) {
    let (n, k) = (batch * hidden, "lstm_step_backward");
    check(k, "saved", saved, 5 * n);
    check(k, "c_prev", c_prev, n);
    check(k, "dh", dh, n);
    check(k, "dc", dc, n);
    check(k, "dgates", dgates, 4 * n);
    // SAFETY: as above.
    unsafe {
        launch(
            k,
            n,
            &mut [
                Arg::Int(int(batch)),
                Arg::Int(int(hidden)),
                Arg::In(saved),
                Arg::In(c_prev),
                Arg::In(dh),
                Arg::Out(dc),
                Arg::Out(dgates),
            ],
        )
    }
}

/// GRU step forward: `xp` (B, 3H) with b_ih, `gh` (B, 3H) without b_hh, `b_hh` (3H),
/// `h_prev` (B, H) → `h` (B, H), `saved` (B, 4H).
#[allow(clippy::too_many_arguments)]
pub fn gru_step_forward<T: DeviceFloat>(
    batch: usize,
    hidden: usize,
    xp: &[T],
    gh: &[T],
    b_hh: &[T],
    h_prev: &[T],
    h: &mut [T],
    saved: &mut [T],
) {
    let (n, k) = (batch * hidden, "gru_step_forward");
    check(k, "xp", xp, 3 * n);
    check(k, "gh", gh, 3 * n);
    check(k, "b_hh", b_hh, 3 * hidden);
    check(k, "h_prev", h_prev, n);
    check(k, "h", h, n);
    check(k, "saved", saved, 4 * n);
    // SAFETY: as above.
    unsafe {
        launch(
            k,
            n,
            &mut [
                Arg::Int(int(batch)),
                Arg::Int(int(hidden)),
                Arg::In(xp),
                Arg::In(gh),
                Arg::In(b_hh),
                Arg::In(h_prev),
                Arg::Out(h),
                Arg::Out(saved),
            ],
        )
    }
}

/// GRU step backward → `dxp`, `dgh` (B, 3H) and the direct part of h_prev's gradient.
#[allow(clippy::too_many_arguments)]
pub fn gru_step_backward<T: DeviceFloat>(
    batch: usize,
    hidden: usize,
    saved: &[T],
    h_prev: &[T],
    dh: &[T],
    dxp: &mut [T],
    dgh: &mut [T],
    direct: &mut [T],
) {
    let (n, k) = (batch * hidden, "gru_step_backward");
    check(k, "saved", saved, 4 * n);
    check(k, "h_prev", h_prev, n);
    check(k, "dh", dh, n);
    check(k, "dxp", dxp, 3 * n);
    check(k, "dgh", dgh, 3 * n);
    check(k, "direct", direct, n);
    // SAFETY: as above.
    unsafe {
        launch(
            k,
            n,
            &mut [
                Arg::Int(int(batch)),
                Arg::Int(int(hidden)),
                Arg::In(saved),
                Arg::In(h_prev),
                Arg::In(dh),
                Arg::Out(dxp),
                Arg::Out(dgh),
                Arg::Out(direct),
            ],
        )
    }
}

/// `y += x` element-wise (the GRU sequence backward pass's accumulation of the direct part).
pub fn gru_accumulate<T: DeviceFloat>(x: &[T], y: &mut [T]) {
    let (n, k) = (x.len(), "gru_accumulate");
    check(k, "y", y, n);
    // SAFETY: as above.
    unsafe { launch(k, n, &mut [Arg::Long(n as i64), Arg::In(x), Arg::Out(y)]) }
}

/// SRN step forward: `h = f(pre)` element-wise.
pub fn srn_step_forward<T: DeviceFloat>(logistic: bool, pre: &[T], h: &mut [T]) {
    let (n, k) = (pre.len(), "srn_step_forward");
    check(k, "h", h, n);
    // SAFETY: as above.
    unsafe {
        launch(
            k,
            n,
            &mut [
                Arg::Long(n as i64),
                Arg::Int(logistic as i32),
                Arg::In(pre),
                Arg::Out(h),
            ],
        )
    }
}

/// SRN step backward: `dpre = dh f'` from the activations `h`.
pub fn srn_step_backward<T: DeviceFloat>(logistic: bool, h: &[T], dh: &[T], dpre: &mut [T]) {
    let (n, k) = (h.len(), "srn_step_backward");
    check(k, "dh", dh, n);
    check(k, "dpre", dpre, n);
    // SAFETY: as above.
    unsafe {
        launch(
            k,
            n,
            &mut [
                Arg::Long(n as i64),
                Arg::Int(logistic as i32),
                Arg::In(h),
                Arg::In(dh),
                Arg::Out(dpre),
            ],
        )
    }
}

/// The packed LTC parameters ([`PackedLayout`] order) cut into their eleven parts.
fn ltc_parts<T>(layout: PackedLayout, p: &[T]) -> [&[T]; 11] {
    assert_eq!(p.len(), layout.len(), "packed LTC parameters");
    let (hh, dh, h) = (layout.h * layout.h, layout.d * layout.h, layout.h);
    let sizes = [hh, hh, hh, hh, dh, dh, dh, dh, h, h, h];
    let mut rest = p;
    sizes.map(|s| {
        let (a, b) = rest.split_at(s);
        rest = b;
        a
    })
}

fn ltc_parts_mut<T>(layout: PackedLayout, p: &mut [T]) -> [&mut [T]; 11] {
    assert_eq!(p.len(), layout.len(), "packed LTC parameter gradients");
    let (hh, dh, h) = (layout.h * layout.h, layout.d * layout.h, layout.h);
    let sizes = [hh, hh, hh, hh, dh, dh, dh, dh, h, h, h];
    let mut rest = p;
    sizes.map(|s| {
        let (a, b) = std::mem::take(&mut rest).split_at_mut(s);
        rest = b;
        a
    })
}

/// LTC forward of a whole sequence on the host build, launching the kernels as the GPU path
/// does: `x` (B, T, D) mapped inputs, packed effective parameters, `h0` (B, H), `dt` (B, T)
/// or 1 → the states before every unfold (T, L, B, H) and after every step (T, B, H).
#[allow(clippy::too_many_arguments)]
pub fn ltc_sequence_forward<T: DeviceFloat>(
    layout: PackedLayout,
    unfolds: usize,
    epsilon: T,
    x: &[T],
    p: &[T],
    h0: &[T],
    dt: Option<&[T]>,
    batch: usize,
    steps: usize,
) -> (Vec<T>, Vec<T>) {
    let (h, d, l) = (layout.h, layout.d, unfolds);
    let [sigma, mu, w, erev, ssig, smu, sw, serev, cm, gleak, vleak] = ltc_parts(layout, p);
    let bh = batch * h;
    let mut saved = vec![T::zero(); steps * l * bh];
    let mut out = vec![T::zero(); steps * bh];
    let (mut ns, mut ds) = (vec![T::zero(); bh], vec![T::zero(); bh]);
    let mut v = h0.to_vec();
    for t in 0..steps {
        let xt = step_rows(x, batch, steps, d, t);
        let scale = ltc_scale(dt, batch, steps, t, l);
        ltc_sensory(layout, batch, &xt, [ssig, smu, sw, serev], &mut ns, &mut ds);
        for u in 0..l {
            saved[(t * l + u) * bh..(t * l + u + 1) * bh].copy_from_slice(&v);
            let mut vn = vec![T::zero(); bh];
            // SAFETY: as above.
            unsafe {
                launch(
                    "ltc_unfold",
                    bh,
                    &mut [
                        Arg::Int(int(batch)),
                        Arg::Int(int(h)),
                        Arg::Float(epsilon),
                        Arg::In(&v),
                        Arg::In(sigma),
                        Arg::In(mu),
                        Arg::In(w),
                        Arg::In(erev),
                        Arg::In(cm),
                        Arg::In(gleak),
                        Arg::In(vleak),
                        Arg::In(&ns),
                        Arg::In(&ds),
                        Arg::In(&scale),
                        Arg::Out(&mut vn),
                    ],
                );
            }
            v = vn;
        }
        out[t * bh..(t + 1) * bh].copy_from_slice(&v);
    }
    (saved, out)
}

/// The backward pass of [`ltc_sequence_forward`] from `grad` (T, B, H), the gradient of its
/// outputs: returns the gradients of `x` (B, T, D), of the packed parameters and of `h0`.
#[allow(clippy::too_many_arguments)]
pub fn ltc_sequence_backward<T: DeviceFloat>(
    layout: PackedLayout,
    unfolds: usize,
    epsilon: T,
    x: &[T],
    p: &[T],
    dt: Option<&[T]>,
    batch: usize,
    steps: usize,
    saved: &[T],
    out: &[T],
    grad: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (h, d, l) = (layout.h, layout.d, unfolds);
    let [sigma, mu, w, erev, ssig, smu, sw, serev, cm, gleak, vleak] = ltc_parts(layout, p);
    let bh = batch * h;
    let mut dp = vec![T::zero(); layout.len()];
    let mut dx = vec![T::zero(); batch * steps * d];
    let mut g = vec![T::zero(); bh];
    let (mut ns, mut ds) = (vec![T::zero(); bh], vec![T::zero(); bh]);
    for t in (0..steps).rev() {
        for (a, b) in g.iter_mut().zip(&grad[t * bh..(t + 1) * bh]) {
            *a = *a + *b;
        }
        let xt = step_rows(x, batch, steps, d, t);
        let scale = ltc_scale(dt, batch, steps, t, l);
        ltc_sensory(layout, batch, &xt, [ssig, smu, sw, serev], &mut ns, &mut ds);
        let (mut dns, mut dds) = (vec![T::zero(); bh], vec![T::zero(); bh]);
        for u in (0..l).rev() {
            let v = &saved[(t * l + u) * bh..(t * l + u + 1) * bh];
            let vn = if u + 1 < l {
                &saved[(t * l + u + 1) * bh..(t * l + u + 2) * bh]
            } else {
                &out[t * bh..(t + 1) * bh]
            };
            let (mut dnum, mut dden) = (vec![T::zero(); bh], vec![T::zero(); bh]);
            let mut g_prev = vec![T::zero(); bh];
            let [dsig, dmu, dw, de, _, _, _, _, dcm, dgl, dvl] = ltc_parts_mut(layout, &mut dp);
            // SAFETY: as above; the four launches of one unfold read and write disjoint
            // buffers in order.
            unsafe {
                launch(
                    "ltc_unfold_backward_neurons",
                    bh,
                    &mut [
                        Arg::Int(int(batch)),
                        Arg::Int(int(h)),
                        Arg::Float(epsilon),
                        Arg::In(v),
                        Arg::In(vn),
                        Arg::In(&g),
                        Arg::In(sigma),
                        Arg::In(mu),
                        Arg::In(w),
                        Arg::In(cm),
                        Arg::In(gleak),
                        Arg::In(&ds),
                        Arg::In(&scale),
                        Arg::Out(&mut dnum),
                        Arg::Out(&mut dden),
                        Arg::Out(&mut dns),
                        Arg::Out(&mut dds),
                    ],
                );
                launch(
                    "ltc_unfold_backward_inputs",
                    bh,
                    &mut [
                        Arg::Int(int(batch)),
                        Arg::Int(int(h)),
                        Arg::In(v),
                        Arg::In(sigma),
                        Arg::In(mu),
                        Arg::In(w),
                        Arg::In(erev),
                        Arg::In(cm),
                        Arg::In(&scale),
                        Arg::In(&dnum),
                        Arg::In(&dden),
                        Arg::Out(&mut g_prev),
                    ],
                );
                launch(
                    "ltc_unfold_backward_synapses",
                    h * h,
                    &mut [
                        Arg::Int(int(batch)),
                        Arg::Int(int(h)),
                        Arg::In(v),
                        Arg::In(sigma),
                        Arg::In(mu),
                        Arg::In(w),
                        Arg::In(erev),
                        Arg::In(&dnum),
                        Arg::In(&dden),
                        Arg::Out(dsig),
                        Arg::Out(dmu),
                        Arg::Out(dw),
                        Arg::Out(de),
                    ],
                );
                launch(
                    "ltc_unfold_backward_leak",
                    h,
                    &mut [
                        Arg::Int(int(batch)),
                        Arg::Int(int(h)),
                        Arg::In(v),
                        Arg::In(gleak),
                        Arg::In(vleak),
                        Arg::In(&scale),
                        Arg::In(&dnum),
                        Arg::In(&dden),
                        Arg::Out(dcm),
                        Arg::Out(dgl),
                        Arg::Out(dvl),
                    ],
                );
            }
            g = g_prev;
        }
        let [_, _, _, _, dssig, dsmu, dsw, dserev, _, _, _] = ltc_parts_mut(layout, &mut dp);
        let mut dxt = vec![T::zero(); batch * d];
        // SAFETY: as above.
        unsafe {
            launch(
                "ltc_sensory_backward_synapses",
                d * h,
                &mut [
                    Arg::Int(int(batch)),
                    Arg::Int(int(d)),
                    Arg::Int(int(h)),
                    Arg::In(&xt),
                    Arg::In(ssig),
                    Arg::In(smu),
                    Arg::In(sw),
                    Arg::In(serev),
                    Arg::In(&dns),
                    Arg::In(&dds),
                    Arg::Out(dssig),
                    Arg::Out(dsmu),
                    Arg::Out(dsw),
                    Arg::Out(dserev),
                ],
            );
            launch(
                "ltc_sensory_backward_inputs",
                batch * d,
                &mut [
                    Arg::Int(int(batch)),
                    Arg::Int(int(d)),
                    Arg::Int(int(h)),
                    Arg::In(&xt),
                    Arg::In(ssig),
                    Arg::In(smu),
                    Arg::In(sw),
                    Arg::In(serev),
                    Arg::In(&dns),
                    Arg::In(&dds),
                    Arg::Out(&mut dxt),
                ],
            );
        }
        for b in 0..batch {
            dx[(b * steps + t) * d..(b * steps + t + 1) * d]
                .copy_from_slice(&dxt[b * d..(b + 1) * d]);
        }
    }
    (dx, dp, g)
}

/// The sensory drive of one step: `x` (B, D) → `ns`, `ds` (B, H).
fn ltc_sensory<T: DeviceFloat>(
    layout: PackedLayout,
    batch: usize,
    x: &[T],
    sensory: [&[T]; 4],
    ns: &mut [T],
    ds: &mut [T],
) {
    let (d, h) = (layout.d, layout.h);
    let [ssig, smu, sw, serev] = sensory;
    check("ltc_sensory", "x", x, batch * d);
    check("ltc_sensory", "ns", ns, batch * h);
    check("ltc_sensory", "ds", ds, batch * h);
    // SAFETY: arguments in the kernel's order and types; sizes checked or from the layout.
    unsafe {
        launch(
            "ltc_sensory",
            batch * h,
            &mut [
                Arg::Int(int(batch)),
                Arg::Int(int(d)),
                Arg::Int(int(h)),
                Arg::In(x),
                Arg::In(ssig),
                Arg::In(smu),
                Arg::In(sw),
                Arg::In(serev),
                Arg::Out(ns),
                Arg::Out(ds),
            ],
        );
    }
}

/// Rows of step `t` of a (B, T, W) array, as (B, W).
fn step_rows<T: Copy>(x: &[T], batch: usize, steps: usize, w: usize, t: usize) -> Vec<T> {
    (0..batch)
        .flat_map(|b| {
            x[(b * steps + t) * w..(b * steps + t + 1) * w]
                .iter()
                .copied()
        })
        .collect()
}

/// `L / Δt` per sample at step `t`.
fn ltc_scale<T: DeviceFloat>(
    dt: Option<&[T]>,
    batch: usize,
    steps: usize,
    t: usize,
    l: usize,
) -> Vec<T> {
    let l = T::from(l).expect("unfolds");
    (0..batch)
        .map(|b| l / dt.map(|d| d[b * steps + t]).unwrap_or(T::one()))
        .collect()
}
