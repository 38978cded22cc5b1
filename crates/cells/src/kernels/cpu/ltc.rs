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

use super::{lane_sum, sigmoid, KernelFloat, Parts, RowKernel};
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

/// The kernel: inputs `x` (B, T, D) already mapped, packed parameters, `h0` (B, H) → per step
/// the state after the step (H), saving the state before each unfold (L·H).
#[derive(Debug, Clone)]
pub struct LtcKernel {
    pub layout: PackedLayout,
    pub unfolds: usize,
    pub epsilon: f64,
    /// Elapsed time per (sample, step), row-major; `None`: 1 everywhere.
    pub dt: Option<Vec<f64>>,
}

impl LtcKernel {
    fn dt(&self, b: usize, t: usize, steps: usize) -> f64 {
        self.dt.as_ref().map(|d| d[b * steps + t]).unwrap_or(1.0)
    }

    /// Sensory drive of one sample and step: (Σ_d a·E, Σ_d a) per neuron, and σ values in `s`.
    #[inline(always)]
    fn sensory<T: KernelFloat>(
        &self,
        p: &Params<T>,
        x: &[T],
        s: &mut [T],
        num: &mut [T],
        den: &mut [T],
    ) {
        let h = self.layout.h;
        num.fill(T::zero());
        den.fill(T::zero());
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
            vec![T::zero(); d * h],
            vec![T::zero(); h],
            vec![T::zero(); h],
        );
        let (mut num, mut den, mut cm_t) =
            (vec![T::zero(); h], vec![T::zero(); h], vec![T::zero(); h]);
        let eps = T::from(self.epsilon).unwrap();
        for r in 0..n {
            let b = b0 + r;
            let mut v: Vec<T> = h0[b * h..(b + 1) * h].to_vec();
            for t in 0..steps {
                self.sensory(
                    p,
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
        let (mut sa, mut ns, mut ds) =
            (vec![T::zero(); dh], vec![T::zero(); h], vec![T::zero(); h]);
        let mut sbuf = vec![T::zero(); hh];
        let (mut asum, mut cm_t, mut dnum, mut dden) = (
            vec![T::zero(); h],
            vec![T::zero(); h],
            vec![T::zero(); h],
            vec![T::zero(); h],
        );
        let mut zs = vec![T::zero(); h];
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
                self.sensory(p, xs, &mut sa, &mut ns, &mut ds);
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
                    for (i, &vi) in v.iter().enumerate() {
                        let row = i * h..(i + 1) * h;
                        let (sg, mu, w, sb) = (
                            &p.sigma[row.clone()],
                            &p.mu[row.clone()],
                            &p.w[row.clone()],
                            &mut sbuf[row],
                        );
                        let asum = &mut asum[..h];
                        assert!(sg.len() == h && mu.len() == h && w.len() == h && sb.len() == h);
                        for j in 0..h {
                            let s = sigmoid(sg[j] * (vi - mu[j]));
                            sb[j] = s;
                            asum[j] = asum[j] + w[j] * s;
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
                    {
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
                {
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
