//! The fused LTC sequence operation on the CPU: every step and every ODE unfold of a sequence in
//! one pass, with its own backward pass.
//!
//! Forward returns the state after each step (B, T, H) and saves only the state before each
//! unfold, (B, T, L, H) values; the backward pass
//! recomputes the synapse activations from them, so training memory is O(B·T·L·H) rather than
//! the O(B·T·L·H²) of autograd over the (B, H, H) synapse tensors. The math is the same as the
//! reference step in [`crate::ltc`] (see that file for the equations); the backward formulas
//! of one unfold `v' = num/den` are
//!
//! ```text
//! ∂num_j = g_j/den_j,  ∂den_j = −g_j v'_j/den_j,  ∂v_j += ∂num_j·cm_t_j
//! ∂cm_t_j += ∂num_j v_j + ∂den_j,  ∂gleak_j += ∂num_j vleak_j + ∂den_j,  ∂vleak_j += ∂num_j gleak_j
//! per synapse i→j, s = σ(σ_ij (v_i − μ_ij)), a = W_ij s:
//!   ∂a = ∂num_j E_ij + ∂den_j;  ∂W_ij += ∂a s;  ∂E_ij += ∂num_j a;  ∂z = ∂a W_ij s (1 − s)
//!   ∂σ_ij += ∂z (v_i − μ_ij);  ∂μ_ij −= ∂z σ_ij;  ∂v_i += ∂z σ_ij
//! ```
//! and the sensory synapses follow the same pattern once per step with the accumulated ∂num, ∂den.
//!
//! Parameters enter as one packed vector (see [`PackedLayout`]) of *effective* values (softplus
//! and masks already applied by Candle ops), so Candle's autograd carries the gradients on to the
//! raw parameters. [`crate::fused::Fused`] splits the batch over threads for the whole sequence.
//!
//! A sparse wiring (a fraction p of the synapses) runs through [`Synapses`]: the kept synapses
//! by target neuron, their parameters gathered into contiguous runs once per call, so the
//! synapse work is about p of the dense work. For each target the sources' values are gathered,
//! the activations computed and summed in vector lanes; the backward pass scatters ∂z σ back to
//! the sources. Gradients of synapses the wiring removed are left at zero (the mask multiplies
//! them away in autograd anyway). Dense wirings keep the dense loops.

use super::{lane_sum, sigmoid, KernelFloat, Parts, RowKernel, LANES};
pub use crate::cells::ltc::PackedLayout;

impl PackedLayout {
    fn split<'a, T>(&self, p: &'a [T]) -> Params<'a, T> {
        let (hh, dh, h) = (self.h * self.h, self.d * self.h, self.h);
        let (sigma, r) = p.split_at(hh);
        let (mu, r) = r.split_at(hh);
        let (w, r) = r.split_at(hh);
        let (erev, r) = r.split_at(hh);
        let (ssig, r) = r.split_at(dh);
        let (smu, r) = r.split_at(dh);
        let (sw, r) = r.split_at(dh);
        let (serev, r) = r.split_at(dh);
        let (cm, r) = r.split_at(h);
        let (gleak, vleak) = r.split_at(h);
        Params {
            sigma,
            mu,
            w,
            erev,
            ssig,
            smu,
            sw,
            serev,
            cm,
            gleak,
            vleak,
        }
    }
}

struct Params<'a, T> {
    sigma: &'a [T],
    mu: &'a [T],
    w: &'a [T],
    erev: &'a [T],
    ssig: &'a [T],
    smu: &'a [T],
    sw: &'a [T],
    serev: &'a [T],
    cm: &'a [T],
    gleak: &'a [T],
    vleak: &'a [T],
}

/// The synapses a wiring keeps between `rows` source neurons (or sensory channels) and `cols`
/// target neurons, in a sliced-ELLPACK layout: targets sorted by in-degree (most first) and
/// taken in groups of [`LANES`], so that a group's targets have similar in-degrees; a group has
/// as many slots as its largest in-degree, and slot `s` holds, lane by lane, the `s`-th synapse
/// into each target of the group (entry `slot·LANES + lane`), padding where a target has fewer. A pass then runs one vector per slot with the targets' sums in the vector's lanes (no
/// horizontal sums); only the sources' values are gathered, and the backward pass scatters one
/// value per synapse back to the sources. Padding has weight 0, so it adds exactly nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synapses {
    pub rows: usize,
    pub cols: usize,
    /// Slots of group `g`: `slots[g]..slots[g + 1]`.
    pub slots: Vec<usize>,
    /// The target of each lane of each group (`g·LANES + lane`); `cols` for lanes past the last
    /// target.
    pub target: Vec<u32>,
    /// The source of every entry (0 for padding), `LANES` per slot.
    pub pre: Vec<u32>,
    /// Whether each entry is a synapse of the wiring (not padding).
    pub real: Vec<bool>,
}

impl Synapses {
    /// The synapses of a row-major (rows, `cols`) mask (source × target): every non-zero entry.
    pub fn from_mask<T: num_traits::Zero + Copy + PartialEq>(mask: &[T], cols: usize) -> Self {
        assert!(cols > 0 && mask.len() % cols == 0, "a mask of whole rows");
        let rows = mask.len() / cols;
        let sources: Vec<Vec<u32>> = (0..cols)
            .map(|j| {
                (0..rows)
                    .filter(|&i| mask[i * cols + j] != T::zero())
                    .map(|i| i as u32)
                    .collect()
            })
            .collect();
        let mut order: Vec<usize> = (0..cols).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(sources[j].len()));
        let mut slots = vec![0];
        let (mut pre, mut real, mut target) = (Vec::new(), Vec::new(), Vec::new());
        for group in order.chunks(LANES) {
            target.extend(group.iter().map(|&j| j as u32));
            target.resize(target.len() + LANES - group.len(), cols as u32);
            let depth = group.iter().map(|&j| sources[j].len()).max().unwrap_or(0);
            for s in 0..depth {
                for l in 0..LANES {
                    let src = group.get(l).map_or(&[][..], |&j| &sources[j][..]);
                    pre.push(src.get(s).copied().unwrap_or(0));
                    real.push(s < src.len());
                }
            }
            slots.push(slots.last().unwrap() + depth);
        }
        Self {
            rows,
            cols,
            slots,
            target,
            pre,
            real,
        }
    }

    /// Kept synapses over all possible ones.
    pub fn density(&self) -> f64 {
        let all = self.rows * self.cols;
        if all == 0 {
            return 1.0;
        }
        self.kept() as f64 / all as f64
    }

    /// The wiring's synapses (padding excluded).
    pub fn kept(&self) -> usize {
        self.real.iter().filter(|&&r| r).count()
    }

    /// Entries (synapses and padding): the work of one pass.
    pub fn entries(&self) -> usize {
        self.pre.len()
    }

    /// The sparse path is used below this density (docs/benchmarks.md: the LTC with random
    /// wirings of several densities against the fully connected one).
    pub const SPARSE_BELOW: f64 = 0.4;

    /// The synapses of `mask` when their density is below [`Self::SPARSE_BELOW`].
    pub fn if_sparse<T: num_traits::Zero + Copy + PartialEq>(
        mask: &[T],
        cols: usize,
    ) -> Option<std::sync::Arc<Self>> {
        let s = Self::from_mask(mask, cols);
        (s.density() < Self::SPARSE_BELOW).then(|| std::sync::Arc::new(s))
    }

    /// The dense index (source · cols + target) of every entry; `None` for padding.
    fn places(&self) -> impl Iterator<Item = Option<usize>> + '_ {
        (0..self.slots.len() - 1).flat_map(move |g| {
            (self.slots[g]..self.slots[g + 1]).flat_map(move |s| {
                (0..LANES).map(move |l| {
                    let k = s * LANES + l;
                    let j = self.target[g * LANES + l] as usize;
                    self.real[k].then(|| self.pre[k] as usize * self.cols + j)
                })
            })
        })
    }

    /// `dense[place]` of every entry in order, 0 for padding.
    fn gather<T: num_traits::Zero + Copy>(&self, dense: &[T]) -> Vec<T> {
        self.places()
            .map(|p| p.map_or(T::zero(), |p| dense[p]))
            .collect()
    }

    /// Adds the per-entry values `packed` into their places of the dense (rows, cols) `dense`.
    fn scatter_add<T: KernelFloat>(&self, packed: &[T], dense: &mut [T]) {
        for (p, &g) in self.places().zip(packed) {
            if let Some(p) = p {
                dense[p] = dense[p] + g;
            }
        }
    }

    fn params<T: num_traits::Zero + Copy>(
        &self,
        sigma: &[T],
        mu: &[T],
        w: &[T],
        erev: &[T],
    ) -> SparseParams<T> {
        SparseParams {
            sigma: self.gather(sigma),
            mu: self.gather(mu),
            w: self.gather(w),
            erev: self.gather(erev),
        }
    }

    /// The sources' values of one slot's entries.
    #[inline(always)]
    fn sources<T: Copy>(&self, src: &[T], slot: usize) -> [T; LANES] {
        let idx = &self.pre[slot * LANES..(slot + 1) * LANES];
        assert!(src.len() >= self.rows && idx.len() == LANES);
        // SAFETY: `from_mask` stores only sources below `rows` (padding: 0), and `src` holds at
        // least `rows` values (asserted above); a bounds check per lane would keep this scalar.
        std::array::from_fn(|l| unsafe { *src.get_unchecked(*idx.get_unchecked(l) as usize) })
    }

    /// Adds the synapses' drive from `src` (one value per source) to every target:
    /// `num_j += Σ a·E`, `den_j += Σ a` with `a = W σ(σ_s (src − μ))`; writes each entry's σ into
    /// `s` (entry order).
    #[inline(always)]
    fn drive<T: KernelFloat>(
        &self,
        sp: &SparseParams<T>,
        src: &[T],
        num: &mut [T],
        den: &mut [T],
        s: &mut [T],
    ) {
        for g in 0..self.slots.len() - 1 {
            let (mut an, mut ad) = ([T::zero(); LANES], [T::zero(); LANES]);
            for slot in self.slots[g]..self.slots[g + 1] {
                let v = self.sources(src, slot);
                // Whole blocks through local arrays: the compiler then vectorizes the lanes
                // without proving that the slices do not overlap.
                let (sg, mu, w, er) = (
                    block(&sp.sigma, slot),
                    block(&sp.mu, slot),
                    block(&sp.w, slot),
                    block(&sp.erev, slot),
                );
                let mut so = [T::zero(); LANES];
                for l in 0..LANES {
                    let sv = sigmoid(sg[l] * (v[l] - mu[l]));
                    so[l] = sv;
                    let a = w[l] * sv;
                    an[l] = an[l] + a * er[l];
                    ad[l] = ad[l] + a;
                }
                s[slot * LANES..(slot + 1) * LANES].copy_from_slice(&so);
            }
            for l in 0..LANES {
                let j = self.target[g * LANES + l] as usize;
                if j < self.cols {
                    num[j] = num[j] + an[l];
                    den[j] = den[j] + ad[l];
                }
            }
        }
    }

    /// The backward of [`Self::drive`] given `∂num`, `∂den` per target and the saved σ: adds the
    /// entries' parameter gradients into `grad` and `Σ_j ∂z σ_s` into `dsrc` per source.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn drive_backward<T: KernelFloat>(
        &self,
        sp: &SparseParams<T>,
        grad: &mut SparseParams<T>,
        src: &[T],
        s: &[T],
        dnum: &[T],
        dden: &[T],
        dsrc: &mut [T],
    ) {
        for g in 0..self.slots.len() - 1 {
            let (mut dn, mut dd) = ([T::zero(); LANES], [T::zero(); LANES]);
            for l in 0..LANES {
                let j = self.target[g * LANES + l] as usize;
                if j < self.cols {
                    dn[l] = dnum[j];
                    dd[l] = dden[j];
                }
            }
            for slot in self.slots[g]..self.slots[g + 1] {
                let v = self.sources(src, slot);
                let (sv, w, er, sg, mu) = (
                    block(s, slot),
                    block(&sp.w, slot),
                    block(&sp.erev, slot),
                    block(&sp.sigma, slot),
                    block(&sp.mu, slot),
                );
                let (mut dsig, mut dmu, mut dw, mut de) = (
                    block(&grad.sigma, slot),
                    block(&grad.mu, slot),
                    block(&grad.w, slot),
                    block(&grad.erev, slot),
                );
                let mut zs = [T::zero(); LANES];
                for l in 0..LANES {
                    let s = sv[l];
                    let da = dn[l] * er[l] + dd[l];
                    dw[l] = dw[l] + da * s;
                    de[l] = de[l] + dn[l] * w[l] * s;
                    let dz = da * w[l] * s * (T::one() - s);
                    dsig[l] = dsig[l] + dz * (v[l] - mu[l]);
                    zs[l] = dz * sg[l];
                    dmu[l] = dmu[l] - zs[l];
                }
                let e = slot * LANES..(slot + 1) * LANES;
                grad.sigma[e.clone()].copy_from_slice(&dsig);
                grad.mu[e.clone()].copy_from_slice(&dmu);
                grad.w[e.clone()].copy_from_slice(&dw);
                grad.erev[e].copy_from_slice(&de);
                for (l, &z) in zs.iter().enumerate() {
                    let i = self.pre[slot * LANES + l] as usize;
                    dsrc[i] = dsrc[i] + z;
                }
            }
        }
    }
}

/// The `slot`-th block of [`LANES`] values of `v`, as a value (one vector load).
#[inline(always)]
fn block<T: Copy>(v: &[T], slot: usize) -> [T; LANES] {
    v[slot * LANES..(slot + 1) * LANES]
        .try_into()
        .expect("a whole block")
}

/// The recurrent parameters of the kept synapses, gathered per call (see [`Synapses`]).
struct SparseParams<T> {
    sigma: Vec<T>,
    mu: Vec<T>,
    w: Vec<T>,
    erev: Vec<T>,
}

/// The kernel: inputs `x` (B, T, D) already mapped, packed parameters, `h0` (B, H) → per step
/// the state after the step (H), saving the state before each unfold (L·H).
#[derive(Debug, Clone)]
pub struct LtcKernel {
    pub layout: PackedLayout,
    pub unfolds: usize,
    pub epsilon: f64,
    /// Elapsed time per (sample, step), row-major; `None`: 1 everywhere.
    pub dt: Option<Vec<f64>>,
    /// The wiring's recurrent synapses when it is sparse enough to run them alone
    /// (below [`Synapses::SPARSE_BELOW`]); `None`: every synapse, dense loops.
    pub synapses: Option<std::sync::Arc<Synapses>>,
    /// The same for the sensory synapses (D × H).
    pub sensory_synapses: Option<std::sync::Arc<Synapses>>,
}

impl LtcKernel {
    fn dt(&self, b: usize, t: usize, steps: usize) -> f64 {
        self.dt.as_ref().map(|d| d[b * steps + t]).unwrap_or(1.0)
    }

    /// Values of one step's sensory activations: D × H, or one per sparse entry.
    fn sensory_width(&self) -> usize {
        let dense = self.layout.d * self.layout.h;
        self.sensory_synapses
            .as_ref()
            .map_or(dense, |s| s.entries())
    }

    fn sparse_params<T: KernelFloat>(&self, p: &Params<T>) -> Option<SparseParams<T>> {
        self.synapses
            .as_ref()
            .map(|s| s.params(p.sigma, p.mu, p.w, p.erev))
    }

    fn sparse_sensory<T: KernelFloat>(&self, p: &Params<T>) -> Option<SparseParams<T>> {
        self.sensory_synapses
            .as_ref()
            .map(|s| s.params(p.ssig, p.smu, p.sw, p.serev))
    }

    /// Sensory drive of one sample and step: (Σ_d a·E, Σ_d a) per neuron, and σ values in `s`
    /// (D × H, or one per entry of the [`Synapses`] on the sparse path).
    #[inline(always)]
    fn sensory<T: KernelFloat>(
        &self,
        p: &Params<T>,
        sparse: Option<&SparseParams<T>>,
        x: &[T],
        s: &mut [T],
        num: &mut [T],
        den: &mut [T],
    ) {
        let h = self.layout.h;
        num.fill(T::zero());
        den.fill(T::zero());
        if let (Some(syn), Some(sp)) = (self.sensory_synapses.as_deref(), sparse) {
            syn.drive(sp, x, num, den, s);
            return;
        }
        for (d, &xd) in x.iter().enumerate() {
            let row = d * h..(d + 1) * h;
            let (sg, mu, w, e, sr) = (
                &p.ssig[row.clone()],
                &p.smu[row.clone()],
                &p.sw[row.clone()],
                &p.serev[row.clone()],
                &mut s[row],
            );
            for j in 0..h {
                let sv = sigmoid(sg[j] * (xd - mu[j]));
                sr[j] = sv;
                let a = w[j] * sv;
                num[j] = num[j] + a * e[j];
                den[j] = den[j] + a;
            }
        }
    }

    /// Forward for samples `b0..b0+n`; `out` holds exactly their rows.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn forward_packed<T: KernelFloat>(
        &self,
        p: &Params<T>,
        x: &[T],
        h0: &[T],
        steps: usize,
        b0: usize,
        out: &mut [T],
        saved: &mut [T],
    ) {
        let (h, d, l) = (self.layout.h, self.layout.d, self.unfolds);
        let n = out.len() / (steps * h);
        let (mut sbuf, mut ns, mut ds) = (
            vec![T::zero(); self.sensory_width()],
            vec![T::zero(); h],
            vec![T::zero(); h],
        );
        let (mut num, mut den, mut cm_t) =
            (vec![T::zero(); h], vec![T::zero(); h], vec![T::zero(); h]);
        let eps = T::from(self.epsilon).unwrap();
        let sparse = self.sparse_params(p);
        let sensory = self.sparse_sensory(p);
        // The recurrent synapse activations of the sparse path (not needed after the pass).
        let mut sact = vec![T::zero(); sparse.as_ref().map_or(0, |sp| sp.w.len())];
        for r in 0..n {
            let b = b0 + r;
            let mut v: Vec<T> = h0[b * h..(b + 1) * h].to_vec();
            for t in 0..steps {
                self.sensory(
                    p,
                    sensory.as_ref(),
                    &x[(b * steps + t) * d..(b * steps + t + 1) * d],
                    &mut sbuf,
                    &mut ns,
                    &mut ds,
                );
                let scale = T::from(l as f64 / self.dt(b, t, steps)).unwrap();
                for j in 0..h {
                    cm_t[j] = p.cm[j] * scale;
                }
                let (q, base) = (r * steps + t, (r * steps + t) * l * h);
                for u in 0..l {
                    saved[base + u * h..base + (u + 1) * h].copy_from_slice(&v);
                    for j in 0..h {
                        num[j] = cm_t[j] * v[j] + p.gleak[j] * p.vleak[j] + ns[j];
                        den[j] = cm_t[j] + p.gleak[j] + ds[j];
                    }
                    if let (Some(syn), Some(sp)) = (self.synapses.as_deref(), &sparse) {
                        syn.drive(sp, &v, &mut num, &mut den, &mut sact);
                    } else {
                        for (i, &vi) in v.iter().enumerate() {
                            let row = i * h..(i + 1) * h;
                            let (sg, mu, w, e) = (
                                &p.sigma[row.clone()],
                                &p.mu[row.clone()],
                                &p.w[row.clone()],
                                &p.erev[row],
                            );
                            let (num, den) = (&mut num[..h], &mut den[..h]);
                            // Equal lengths let the compiler drop bounds checks and vectorize.
                            assert!(sg.len() == h && mu.len() == h && w.len() == h && e.len() == h);
                            for j in 0..h {
                                let a = w[j] * sigmoid(sg[j] * (vi - mu[j]));
                                num[j] = num[j] + a * e[j];
                                den[j] = den[j] + a;
                            }
                        }
                    }
                    for j in 0..h {
                        v[j] = num[j] / (den[j] + eps);
                    }
                }
                out[q * h..(q + 1) * h].copy_from_slice(&v);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward_packed<T: KernelFloat>(
        &self,
        p: &Params<T>,
        x: &[T],
        fwd: Parts<&[T]>,
        grad: Parts<&[T]>,
        steps: usize,
        b0: usize,
        dx: &mut [T],
        dh0: &mut [T],
        dp: &mut [T],
    ) {
        let (h, d, l) = (self.layout.h, self.layout.d, self.unfolds);
        let n = dh0.len() / h;
        let lay = self.layout;
        let (hh, dh) = (h * h, d * h);
        // Offsets into dp, in PackedLayout order.
        // sigma, mu, w and erev occupy the first 4·H² values, in that order.
        let o_ssig = 4 * hh;
        let (o_cm, o_gl, o_vl) = (
            4 * hh + 4 * dh,
            4 * hh + 4 * dh + h,
            4 * hh + 4 * dh + 2 * h,
        );
        debug_assert_eq!(dp.len(), lay.len());
        let eps = T::from(self.epsilon).unwrap();
        let (mut sa, mut ns, mut ds) = (
            vec![T::zero(); self.sensory_width()],
            vec![T::zero(); h],
            vec![T::zero(); h],
        );
        let mut sbuf = vec![T::zero(); self.synapses.as_ref().map_or(hh, |s| s.entries())];
        let (mut asum, mut cm_t, mut dnum, mut dden) = (
            vec![T::zero(); h],
            vec![T::zero(); h],
            vec![T::zero(); h],
            vec![T::zero(); h],
        );
        let mut zs = vec![T::zero(); h];
        let sparse = self.sparse_params(p);
        let sensory = self.sparse_sensory(p);
        let mut sensory_grad = sensory.as_ref().map(|sp| SparseParams {
            sigma: vec![T::zero(); sp.w.len()],
            mu: vec![T::zero(); sp.w.len()],
            w: vec![T::zero(); sp.w.len()],
            erev: vec![T::zero(); sp.w.len()],
        });
        // Per-synapse gradients of the kept synapses (scattered into dp at the end), and the
        // sparse path's work space.
        let mut sparse_grad = sparse.as_ref().map(|sp| SparseParams {
            sigma: vec![T::zero(); sp.w.len()],
            mu: vec![T::zero(); sp.w.len()],
            w: vec![T::zero(); sp.w.len()],
            erev: vec![T::zero(); sp.w.len()],
        });
        let mut nscratch = vec![T::zero(); h];
        let (mut dns, mut dds, mut g, mut gp) = (
            vec![T::zero(); h],
            vec![T::zero(); h],
            vec![T::zero(); h],
            vec![T::zero(); h],
        );
        for r in 0..n {
            let b = b0 + r;
            g.fill(T::zero());
            for t in (0..steps).rev() {
                let (q, gq) = (r * steps + t, b * steps + t);
                let lbase = q * l * h;
                for j in 0..h {
                    g[j] = g[j] + grad.out[gq * h + j];
                }
                let xs = &x[(b * steps + t) * d..(b * steps + t + 1) * d];
                self.sensory(p, sensory.as_ref(), xs, &mut sa, &mut ns, &mut ds);
                let scale = T::from(l as f64 / self.dt(b, t, steps)).unwrap();
                for j in 0..h {
                    cm_t[j] = p.cm[j] * scale;
                }
                dns.fill(T::zero());
                dds.fill(T::zero());
                for u in (0..l).rev() {
                    let v = &fwd.saved[lbase + u * h..lbase + (u + 1) * h];
                    let vn = if u + 1 < l {
                        &fwd.saved[lbase + (u + 1) * h..lbase + (u + 2) * h]
                    } else {
                        &fwd.out[q * h..(q + 1) * h]
                    };
                    asum.fill(T::zero());
                    if let (Some(syn), Some(sp)) = (self.synapses.as_deref(), &sparse) {
                        // sbuf holds the activations σ of the kept synapses (Synapses order);
                        // the numerators are not needed here.
                        nscratch.fill(T::zero());
                        syn.drive(sp, v, &mut nscratch, &mut asum, &mut sbuf);
                    } else {
                        for (i, &vi) in v.iter().enumerate() {
                            let row = i * h..(i + 1) * h;
                            let (sg, mu, w, sb) = (
                                &p.sigma[row.clone()],
                                &p.mu[row.clone()],
                                &p.w[row.clone()],
                                &mut sbuf[row],
                            );
                            let asum = &mut asum[..h];
                            assert!(
                                sg.len() == h && mu.len() == h && w.len() == h && sb.len() == h
                            );
                            for j in 0..h {
                                let s = sigmoid(sg[j] * (vi - mu[j]));
                                sb[j] = s;
                                asum[j] = asum[j] + w[j] * s;
                            }
                        }
                    }
                    for j in 0..h {
                        let den = cm_t[j] + p.gleak[j] + ds[j] + asum[j] + eps;
                        dnum[j] = g[j] / den;
                        dden[j] = -g[j] * vn[j] / den;
                        gp[j] = dnum[j] * cm_t[j];
                        dp[o_cm + j] = dp[o_cm + j] + (dnum[j] * v[j] + dden[j]) * scale;
                        dp[o_gl + j] = dp[o_gl + j] + dnum[j] * p.vleak[j] + dden[j];
                        dp[o_vl + j] = dp[o_vl + j] + dnum[j] * p.gleak[j];
                        dns[j] = dns[j] + dnum[j];
                        dds[j] = dds[j] + dden[j];
                    }
                    if let (Some(syn), Some(sp), Some(sg_)) =
                        (self.synapses.as_deref(), &sparse, sparse_grad.as_mut())
                    {
                        syn.drive_backward(sp, sg_, v, &sbuf, &dnum, &dden, &mut gp);
                    } else {
                        let (dsig, rest) = dp.split_at_mut(hh);
                        let (dmu, rest) = rest.split_at_mut(hh);
                        let (dw, rest) = rest.split_at_mut(hh);
                        let de = &mut rest[..hh];
                        let (dnum, dden) = (&dnum[..h], &dden[..h]);
                        for (i, &vi) in v.iter().enumerate() {
                            let row = i * h..(i + 1) * h;
                            let (sb, w, e, sg, mu) = (
                                &sbuf[row.clone()],
                                &p.w[row.clone()],
                                &p.erev[row.clone()],
                                &p.sigma[row.clone()],
                                &p.mu[row.clone()],
                            );
                            let (dsig, dmu, dw, de) = (
                                &mut dsig[row.clone()],
                                &mut dmu[row.clone()],
                                &mut dw[row.clone()],
                                &mut de[row],
                            );
                            assert!(
                                sb.len() == h
                                    && w.len() == h
                                    && e.len() == h
                                    && sg.len() == h
                                    && mu.len() == h
                            );
                            assert!(
                                dsig.len() == h && dmu.len() == h && dw.len() == h && de.len() == h
                            );
                            let zs = &mut zs[..h];
                            for j in 0..h {
                                let s = sb[j];
                                let da = dnum[j] * e[j] + dden[j];
                                dw[j] = dw[j] + da * s;
                                de[j] = de[j] + dnum[j] * w[j] * s;
                                let dz = da * w[j] * s * (T::one() - s);
                                dsig[j] = dsig[j] + dz * (vi - mu[j]);
                                zs[j] = dz * sg[j];
                                dmu[j] = dmu[j] - zs[j];
                            }
                            // Σ_j ∂z σ in lane sums: a plain running sum would keep the loop
                            // above from vectorizing.
                            gp[i] = gp[i] + lane_sum(zs);
                        }
                    }
                    std::mem::swap(&mut g, &mut gp);
                }
                if let (Some(syn), Some(sp), Some(sgr)) = (
                    self.sensory_synapses.as_deref(),
                    &sensory,
                    sensory_grad.as_mut(),
                ) {
                    let dxr = &mut dx[(r * steps + t) * d..(r * steps + t + 1) * d];
                    dxr.fill(T::zero());
                    syn.drive_backward(sp, sgr, xs, &sa, &dns, &dds, dxr);
                } else {
                    let sens = &mut dp[o_ssig..o_ssig + 4 * dh];
                    let (dssig, rest) = sens.split_at_mut(dh);
                    let (dsmu, rest) = rest.split_at_mut(dh);
                    let (dsw, dserev) = rest.split_at_mut(dh);
                    let (dns, dds) = (&dns[..h], &dds[..h]);
                    for (dd, &xd) in xs.iter().enumerate() {
                        let row = dd * h..(dd + 1) * h;
                        let (s_, w, e, sg, mu) = (
                            &sa[row.clone()],
                            &p.sw[row.clone()],
                            &p.serev[row.clone()],
                            &p.ssig[row.clone()],
                            &p.smu[row.clone()],
                        );
                        let (gsw, gse, gss, gsm) = (
                            &mut dsw[row.clone()],
                            &mut dserev[row.clone()],
                            &mut dssig[row.clone()],
                            &mut dsmu[row],
                        );
                        let zs = &mut zs[..h];
                        assert!(s_.len() == h && w.len() == h && e.len() == h && sg.len() == h);
                        assert!(mu.len() == h && gsw.len() == h && gse.len() == h);
                        assert!(gss.len() == h && gsm.len() == h);
                        for j in 0..h {
                            let s = s_[j];
                            let da = dns[j] * e[j] + dds[j];
                            gsw[j] = gsw[j] + da * s;
                            gse[j] = gse[j] + dns[j] * w[j] * s;
                            let dz = da * w[j] * s * (T::one() - s);
                            gss[j] = gss[j] + dz * (xd - mu[j]);
                            zs[j] = dz * sg[j];
                            gsm[j] = gsm[j] - zs[j];
                        }
                        dx[(r * steps + t) * d + dd] = lane_sum(zs);
                    }
                }
            }
            dh0[r * h..(r + 1) * h].copy_from_slice(&g);
        }
        if let (Some(syn), Some(sg)) = (self.sensory_synapses.as_deref(), &sensory_grad) {
            let sens = &mut dp[o_ssig..o_ssig + 4 * dh];
            let (dssig, rest) = sens.split_at_mut(dh);
            let (dsmu, rest) = rest.split_at_mut(dh);
            let (dsw, dserev) = rest.split_at_mut(dh);
            syn.scatter_add(&sg.sigma, dssig);
            syn.scatter_add(&sg.mu, dsmu);
            syn.scatter_add(&sg.w, dsw);
            syn.scatter_add(&sg.erev, dserev);
        }
        if let (Some(syn), Some(sg)) = (self.synapses.as_deref(), &sparse_grad) {
            let (dsig, rest) = dp.split_at_mut(hh);
            let (dmu, rest) = rest.split_at_mut(hh);
            let (dw, rest) = rest.split_at_mut(hh);
            syn.scatter_add(&sg.sigma, dsig);
            syn.scatter_add(&sg.mu, dmu);
            syn.scatter_add(&sg.w, dw);
            syn.scatter_add(&sg.erev, &mut rest[..hh]);
        }
    }
}

impl RowKernel for LtcKernel {
    const NAME: &'static str = "ltc-sequence";
    fn input_width(&self) -> usize {
        self.layout.d
    }
    fn state_width(&self) -> usize {
        self.layout.h
    }
    fn weights_len(&self) -> usize {
        self.layout.len()
    }
    fn output_width(&self) -> usize {
        self.layout.h
    }
    fn saved_width(&self) -> usize {
        self.unfolds * self.layout.h
    }
    #[inline(always)]
    fn forward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        s0: &[T],
        steps: usize,
        b0: usize,
        res: Parts<&mut [T]>,
    ) {
        self.forward_packed(&self.layout.split(w), x, s0, steps, b0, res.out, res.saved);
    }
    #[inline(always)]
    fn backward_rows<T: KernelFloat>(
        &self,
        x: &[T],
        w: &[T],
        _s0: &[T],
        fwd: Parts<&[T]>,
        grad: Parts<&[T]>,
        steps: usize,
        b0: usize,
        dx: &mut [T],
        ds0: &mut [T],
    ) -> Vec<T> {
        let mut dp = vec![T::zero(); self.layout.len()];
        self.backward_packed(
            &self.layout.split(w),
            x,
            fwd,
            grad,
            steps,
            b0,
            dx,
            ds0,
            &mut dp,
        );
        dp
    }
}
