//! Whole-sequence ops: one Candle custom op per layer and pass for SRN, LSTM, GRU and LTC on the
//! CUDA route (their host build on the CPU, where the tests run them). The LTC's
//! ([`LtcSequence`]) has no products: per step it launches the kernels of one step op, and its
//! backward op recomputes each step's unfolds from the state before it; the rest of this note is
//! about the other three.
//!
//! The caller computes the input projection of every step in one product, time-major:
//! `xp` (T, B, G·H), biases added (the GRU's `b_ih` only: `b_hn` sits inside `r ⊙ (·)`, so the
//! GRU op takes `b_hh` itself). The forward op then runs the time loop inside: per step one GEMM
//! `h_{t-1} W_hhᵀ` (cuBLAS on a GPU), accumulated onto the step's slice of a copy of `xp` (SRN,
//! LSTM) or written beside it (GRU), and one launch of the cell's element-wise step kernel
//! (`srn.cu`, `lstm.cu`, `gru.cu`).
//!
//! Nothing is kept between the passes. The backward op receives the op's inputs and its output
//! (every hidden state) and recomputes what the element-wise backward kernels need: with all
//! `h_{t-1}` known, the pre-activations of every step are ONE product `(T·B, H)·W_hhᵀ`, the
//! activations one launch (GRU) or one element-wise launch per step (LSTM, whose cell states
//! are a recurrence). Then the reverse time loop: per step the backward kernel → the gradient of
//! the step's pre-activations, and one GEMM `dgates_t W_hh` for the gradient of `h_{t-1}`. After
//! the loop, `dW_hh` is ONE product over all steps (`dgatesᵀ · H_prev`, `H_prev` the (T·B, H)
//! stack of `h_{t-1}`); the gradient of `xp` is the stacked `dgates` itself.
//!
//! Autograd therefore sees a constant number of nodes per layer (no per-step `narrow` of a
//! tracked tensor, whose backward pads each step's gradient to the whole (B, T, G·H) tensor and
//! made backpropagation through time O(T²) on the per-step route).
//!
//! Layouts (all row-major, time-major, contiguous):
//!
//! | op | inputs | output |
//! |---|---|---|
//! | [`SrnSequence`] | `xp` (T, B, H), `W_hh` (H, H), `h0` (B, H) | `h_1..h_T` (T, B, H) |
//! | [`LstmSequence`] | `xp` (T, B, 4H), `W_hh` (4H, H), `[h0; c0]` (2, B, H) | `[h_1..h_T; c_T]` (T+1, B, H) |
//! | [`GruSequence`] | `xp` (T, B, 3H), `[W_hh | b_hh]` (3H·H + 3H), `h0` (B, H) | `h_1..h_T` (T, B, H) |
//! | [`LtcSequence`] | `x` (T, B, D) mapped, packed parameters, `v0` (B, H); Δt (B, T) in the op | `v_1..v_T` (T, B, H) |
//!
//! The GEMMs are described once, as cuBLAS takes them ([`GemmPlan`]): the GPU passes the plan
//! to cuBLAS, the host build runs the same plan with the same operands through a plain
//! column-major loop ([`GemmPlan::host`]), so the tests here check every transposition, leading
//! dimension and operand offset the GPU uses; only cuBLAS itself runs untested.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use super::contiguous;
use super::host;
use super::steps::LtcStep;
use super::DeviceFloat;
use crate::cells::ltc::PackedLayout;
use crate::kernels::slice;

type Res<T> = candle_core::Result<T>;

// ----------------------------------------------------------------------------------------------
// GEMM plans

/// One GEMM as cuBLAS takes it: column-major `C = op(A)·op(B) + β·C`, α = 1, β = 1 when
/// `accumulate` else 0 (then C is not read).
///
/// cuBLAS is column-major and our buffers are row-major. A row-major (r, c) matrix with row
/// length c is, read column-major with leading dimension c, its transpose (c, r). So a row-major
/// product `C = X·Y` is computed as the column-major `Cᵀ = Yᵀ·Xᵀ`: the FIRST cuBLAS operand (A) is
/// always the right-hand row-major factor and the second (B) the left-hand one, and m, n are
/// the row-major C's column and row counts. The constructors name the row-major product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPlan {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub accumulate: bool,
}

impl GemmPlan {
    /// Row-major `C (rows, cols) (+)= X (rows, inner) · Yᵀ` with `Y` (cols, inner): cuBLAS A = Y
    /// (transposed), B = X. The recurrent product `h W_hhᵀ` (W_hh is (G·H, H)).
    pub fn x_yt(rows: usize, inner: usize, cols: usize, accumulate: bool) -> Self {
        Self {
            trans_a: true,
            trans_b: false,
            m: cols,
            n: rows,
            k: inner,
            lda: inner,
            ldb: inner,
            ldc: cols,
            accumulate,
        }
    }

    /// Row-major `C (rows, cols) (+)= X (rows, inner) · Y (inner, cols)`: cuBLAS A = Y, B = X,
    /// neither transposed. The gradient of `h_{t-1}`: `dgates W_hh`.
    pub fn x_y(rows: usize, inner: usize, cols: usize, accumulate: bool) -> Self {
        Self {
            trans_a: false,
            trans_b: false,
            m: cols,
            n: rows,
            k: inner,
            lda: cols,
            ldb: inner,
            ldc: cols,
            accumulate,
        }
    }

    /// Row-major `C (rows, cols) (+)= Xᵀ · Y` with `X` (inner, rows), `Y` (inner, cols): cuBLAS
    /// A = Y, B = X (transposed). The weight gradient `dgatesᵀ H_prev` over all steps.
    pub fn xt_y(rows: usize, inner: usize, cols: usize, accumulate: bool) -> Self {
        Self {
            trans_a: false,
            trans_b: true,
            m: cols,
            n: rows,
            k: inner,
            lda: cols,
            ldb: rows,
            ldc: cols,
            accumulate,
        }
    }

    /// Values operand A must hold (column-major `lda × cols`, the last column partial).
    pub fn len_a(&self) -> usize {
        let (rows, cols) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        (cols - 1) * self.lda + rows
    }

    /// Values operand B must hold.
    pub fn len_b(&self) -> usize {
        let (rows, cols) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        (cols - 1) * self.ldb + rows
    }

    /// Values C must hold.
    pub fn len_c(&self) -> usize {
        (self.n - 1) * self.ldc + self.m
    }

    /// Panics unless the plan satisfies cuBLAS's rules (positive sizes; `lda ≥ m` untransposed
    /// else `≥ k`; `ldb ≥ k` untransposed else `≥ n`; `ldc ≥ m`) and the operands are long enough.
    pub fn check(&self, a: usize, b: usize, c: usize) {
        assert!(
            self.m > 0 && self.n > 0 && self.k > 0,
            "gemm: empty {self:?}"
        );
        assert!(
            self.lda >= if self.trans_a { self.k } else { self.m },
            "gemm: lda {self:?}"
        );
        assert!(
            self.ldb >= if self.trans_b { self.n } else { self.k },
            "gemm: ldb {self:?}"
        );
        assert!(self.ldc >= self.m, "gemm: ldc {self:?}");
        assert!(
            a >= self.len_a() && b >= self.len_b() && c >= self.len_c(),
            "gemm: operands of {a}, {b}, {c} values for {self:?}"
        );
    }

    /// Runs the plan on the host with cuBLAS's column-major semantics (plain loops).
    pub fn host<T: DeviceFloat>(&self, a: &[T], b: &[T], c: &mut [T]) {
        self.check(a.len(), b.len(), c.len());
        let mut col = vec![T::zero(); self.m];
        for j in 0..self.n {
            col.iter_mut().for_each(|v| *v = T::zero());
            for p in 0..self.k {
                let bpj = if self.trans_b {
                    b[j + p * self.ldb]
                } else {
                    b[p + j * self.ldb]
                };
                if self.trans_a {
                    for (i, v) in col.iter_mut().enumerate() {
                        *v = *v + a[p + i * self.lda] * bpj;
                    }
                } else {
                    let ap = &a[p * self.lda..p * self.lda + self.m];
                    for (v, &x) in col.iter_mut().zip(ap) {
                        *v = *v + x * bpj;
                    }
                }
            }
            let cj = &mut c[j * self.ldc..j * self.ldc + self.m];
            for (dst, &v) in cj.iter_mut().zip(&col) {
                *dst = if self.accumulate { *dst + v } else { v };
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Shared helpers

/// `xp` (T, B, G·H) and the recurrent weight (G·H, H) (or its flat `[W | b]` with `extra` more
/// values) → (T, B, H).
fn seq_dims(
    name: &str,
    gates: usize,
    xp: &Layout,
    w: &Layout,
    extra: usize,
) -> Res<(usize, usize, usize)> {
    let (t, b, gh) = xp.shape().dims3()?;
    let h = gh / gates;
    if t == 0 || b == 0 || h == 0 || gh % gates != 0 {
        candle_core::bail!("{name}: xp {:?}", xp.shape());
    }
    let w_ok = if extra == 0 {
        w.shape().dims() == [gh, h]
    } else {
        w.shape().elem_count() == gh * h + extra
    };
    if !w_ok {
        candle_core::bail!("{name}: xp {:?}, weights {:?}", xp.shape(), w.shape());
    }
    contiguous(name, xp)?;
    contiguous(name, w)?;
    Ok((t, b, h))
}

fn rows_of(name: &str, l: &Layout, rows: usize, b: usize, h: usize) -> Res<()> {
    if l.shape().elem_count() != rows * b * h {
        candle_core::bail!("{name}: {:?}, want {rows}·{b}·{h} values", l.shape());
    }
    contiguous(name, l)
}

/// The op's flat gradient result cut into tensors of the inputs' shapes.
fn cut(flat: &Tensor, shapes: &[&[usize]]) -> Res<Vec<Tensor>> {
    let mut start = 0;
    shapes
        .iter()
        .map(|s| {
            let n: usize = s.iter().product();
            let part = flat.narrow(0, start, n)?.reshape(*s)?;
            start += n;
            Ok(part)
        })
        .collect()
}

// ----------------------------------------------------------------------------------------------
// SRN

/// `(xp (T, B, H), W_hh (H, H), h0 (B, H)) → h_1..h_T (T, B, H)`, `h_t = f(xp_t + h_{t-1} W_hhᵀ)`,
/// f = σ (logistic) or tanh.
#[derive(Debug, Clone, Copy)]
pub struct SrnSequence {
    pub logistic: bool,
}

/// `(W_hh, [h0; h_1..h_T; grad] (2T+1, B, H)) → [dxp | dW_hh | dh0]`.
#[derive(Debug, Clone, Copy)]
struct SrnSequenceGrad {
    logistic: bool,
}

fn srn_forward_host<T: DeviceFloat>(
    logistic: bool,
    (t, b, h): (usize, usize, usize),
    xp: &[T],
    w: &[T],
    h0: &[T],
) -> Vec<T> {
    let bh = b * h;
    let mut pre = xp.to_vec();
    let mut out = vec![T::zero(); t * bh];
    let plan = GemmPlan::x_yt(b, h, h, true);
    for s in 0..t {
        let (done, rest) = out.split_at_mut(s * bh);
        let hp = if s == 0 { h0 } else { &done[(s - 1) * bh..] };
        let p = &mut pre[s * bh..(s + 1) * bh];
        plan.host(w, &hp[..bh], p);
        host::srn_step_forward(logistic, p, &mut rest[..bh]);
    }
    out
}

fn srn_backward_host<T: DeviceFloat>(
    logistic: bool,
    (t, b, h): (usize, usize, usize),
    w: &[T],
    z: &[T],
) -> Vec<T> {
    let bh = b * h;
    let hprev = &z[..t * bh];
    let hs = &z[bh..(t + 1) * bh];
    let mut g = z[(t + 1) * bh..(2 * t + 1) * bh].to_vec();
    let mut out = vec![T::zero(); t * bh + h * h + bh];
    let (dpre, rest) = out.split_at_mut(t * bh);
    let (dw, dh0) = rest.split_at_mut(h * h);
    for s in (0..t).rev() {
        let r = s * bh..(s + 1) * bh;
        host::srn_step_backward(
            logistic,
            &hs[r.clone()],
            &g[r.clone()],
            &mut dpre[r.clone()],
        );
        if s > 0 {
            GemmPlan::x_y(b, h, h, true).host(w, &dpre[r], &mut g[(s - 1) * bh..s * bh]);
        } else {
            GemmPlan::x_y(b, h, h, false).host(w, &dpre[r], dh0);
        }
    }
    GemmPlan::xt_y(h, t * b, h, false).host(hprev, dpre, dw);
    out
}

impl CustomOp3 for SrnSequence {
    fn name(&self) -> &'static str {
        "srn-sequence"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let d = seq_dims(n, 1, l1, l2, 0)?;
        rows_of(n, l3, 1, d.1, d.2)?;
        let out = per_float!(s1, n, T => {
            srn_forward_host::<T>(self.logistic, d, slice(s1, l1, n)?, slice(s2, l2, n)?, slice(s3, l3, n)?)
        });
        Ok((out, Shape::from(d)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let n = self.name();
        let d = seq_dims(n, 1, l1, l2, 0)?;
        rows_of(n, l3, 1, d.1, d.2)?;
        let out = gpu::srn_sequence_forward(self.logistic, d, s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from(d)))
    }
    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        h0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let z = Tensor::cat(
            &[&h0.detach().unsqueeze(0)?, &res.detach(), &grad.detach()],
            0,
        )?
        .contiguous()?;
        let flat = w.detach().contiguous()?.apply_op2_no_bwd(
            &z,
            &SrnSequenceGrad {
                logistic: self.logistic,
            },
        )?;
        let p = cut(&flat, &[xp.dims(), w.dims(), h0.dims()])?;
        Ok((Some(p[0].clone()), Some(p[1].clone()), Some(p[2].clone())))
    }
}

impl SrnSequenceGrad {
    fn dims(&self, l1: &Layout, l2: &Layout) -> Res<(usize, usize, usize)> {
        let name = "srn-sequence-grad";
        let (rows, b, h) = l2.shape().dims3()?;
        if rows % 2 != 1 || l1.shape().dims() != [h, h] {
            candle_core::bail!("{name}: {:?} {:?}", l1.shape(), l2.shape());
        }
        contiguous(name, l1)?;
        contiguous(name, l2)?;
        Ok((rows / 2, b, h))
    }
}

impl CustomOp2 for SrnSequenceGrad {
    fn name(&self) -> &'static str {
        "srn-sequence-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let d = self.dims(l1, l2)?;
        let (t, b, h) = d;
        let out = per_float!(s1, n, T => {
            srn_backward_host::<T>(self.logistic, d, slice(s1, l1, n)?, slice(s2, l2, n)?)
        });
        Ok((out, Shape::from(t * b * h + h * h + b * h)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let d = self.dims(l1, l2)?;
        let (t, b, h) = d;
        let out = gpu::srn_sequence_backward(self.logistic, d, s1, l1, s2, l2)?;
        Ok((out, Shape::from(t * b * h + h * h + b * h)))
    }
}

// ----------------------------------------------------------------------------------------------
// LSTM

/// `(xp (T, B, 4H), W_hh (4H, H), [h0; c0] (2, B, H)) → [h_1..h_T; c_T] (T+1, B, H)`.
#[derive(Debug, Clone, Copy)]
pub struct LstmSequence;

/// `(xp, W_hh, [h0; h_1..h_T; c_T; c0; grad (T+1 rows)] (2T+4, B, H)) → [dxp | dW_hh | dh0 | dc0]`.
#[derive(Debug, Clone, Copy)]
struct LstmSequenceGrad;

fn lstm_forward_host<T: DeviceFloat>(
    (t, b, h): (usize, usize, usize),
    xp: &[T],
    w: &[T],
    s0: &[T],
) -> Vec<T> {
    let (bh, g4) = (b * h, 4 * b * h);
    let (h0, c0) = s0.split_at(bh);
    let mut gates = xp.to_vec();
    let mut out = vec![T::zero(); (t + 1) * bh];
    let mut c_prev = c0.to_vec();
    let mut c_next = vec![T::zero(); bh];
    let mut saved = vec![T::zero(); 5 * bh];
    let plan = GemmPlan::x_yt(b, h, 4 * h, true);
    for s in 0..t {
        let (done, rest) = out.split_at_mut(s * bh);
        let hp = if s == 0 { h0 } else { &done[(s - 1) * bh..] };
        let gs = &mut gates[s * g4..(s + 1) * g4];
        plan.host(w, &hp[..bh], gs);
        host::lstm_step_forward(b, h, gs, &c_prev, &mut rest[..bh], &mut c_next, &mut saved);
        std::mem::swap(&mut c_prev, &mut c_next);
    }
    out[t * bh..].copy_from_slice(&c_prev);
    out
}

fn lstm_backward_host<T: DeviceFloat>(
    (t, b, h): (usize, usize, usize),
    xp: &[T],
    w: &[T],
    z: &[T],
) -> Vec<T> {
    let (bh, g4, s5) = (b * h, 4 * b * h, 5 * b * h);
    let hprev = &z[..t * bh];
    let c0 = &z[(t + 2) * bh..(t + 3) * bh];
    // The activations of every step: one product for the pre-activations, then the cell
    // states' recurrence, element-wise.
    let mut gates = xp.to_vec();
    GemmPlan::x_yt(t * b, h, 4 * h, true).host(w, hprev, &mut gates);
    let mut cs = vec![T::zero(); (t + 1) * bh];
    cs[..bh].copy_from_slice(c0);
    let mut saved = vec![T::zero(); t * s5];
    let mut h_scratch = vec![T::zero(); bh];
    for s in 0..t {
        let (cp, cn) = cs.split_at_mut((s + 1) * bh);
        host::lstm_step_forward(
            b,
            h,
            &gates[s * g4..(s + 1) * g4],
            &cp[s * bh..],
            &mut h_scratch,
            &mut cn[..bh],
            &mut saved[s * s5..(s + 1) * s5],
        );
    }
    let mut g = z[(t + 3) * bh..(2 * t + 3) * bh].to_vec();
    let mut dc = z[(2 * t + 3) * bh..(2 * t + 4) * bh].to_vec();
    let mut out = vec![T::zero(); t * g4 + 4 * h * h + 2 * bh];
    let (dxp, rest) = out.split_at_mut(t * g4);
    let (dw, ds0) = rest.split_at_mut(4 * h * h);
    for s in (0..t).rev() {
        let dg = &mut dxp[s * g4..(s + 1) * g4];
        host::lstm_step_backward(
            b,
            h,
            &saved[s * s5..(s + 1) * s5],
            &cs[s * bh..(s + 1) * bh],
            &g[s * bh..(s + 1) * bh],
            &mut dc,
            dg,
        );
        if s > 0 {
            GemmPlan::x_y(b, 4 * h, h, true).host(w, dg, &mut g[(s - 1) * bh..s * bh]);
        } else {
            GemmPlan::x_y(b, 4 * h, h, false).host(w, dg, &mut ds0[..bh]);
        }
    }
    GemmPlan::xt_y(4 * h, t * b, h, false).host(hprev, dxp, dw);
    ds0[bh..].copy_from_slice(&dc);
    out
}

impl CustomOp3 for LstmSequence {
    fn name(&self) -> &'static str {
        "lstm-sequence"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let d = seq_dims(n, 4, l1, l2, 0)?;
        rows_of(n, l3, 2, d.1, d.2)?;
        let out = per_float!(s1, n, T => {
            lstm_forward_host::<T>(d, slice(s1, l1, n)?, slice(s2, l2, n)?, slice(s3, l3, n)?)
        });
        Ok((out, Shape::from((d.0 + 1, d.1, d.2))))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let n = self.name();
        let d = seq_dims(n, 4, l1, l2, 0)?;
        rows_of(n, l3, 2, d.1, d.2)?;
        let out = gpu::lstm_sequence_forward(d, s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from((d.0 + 1, d.1, d.2))))
    }
    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        s0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s0 = s0.detach();
        let z = Tensor::cat(
            &[
                &s0.narrow(0, 0, 1)?,
                &res.detach(),
                &s0.narrow(0, 1, 1)?,
                &grad.detach(),
            ],
            0,
        )?
        .contiguous()?;
        let flat = xp.detach().contiguous()?.apply_op3_no_bwd(
            &w.detach().contiguous()?,
            &z,
            &LstmSequenceGrad,
        )?;
        let p = cut(&flat, &[xp.dims(), w.dims(), s0.dims()])?;
        Ok((Some(p[0].clone()), Some(p[1].clone()), Some(p[2].clone())))
    }
}

impl LstmSequenceGrad {
    fn dims(&self, l1: &Layout, l2: &Layout, l3: &Layout) -> Res<(usize, usize, usize)> {
        let n = self.name();
        let d = seq_dims(n, 4, l1, l2, 0)?;
        rows_of(n, l3, 2 * d.0 + 4, d.1, d.2)?;
        Ok(d)
    }
}

impl CustomOp3 for LstmSequenceGrad {
    fn name(&self) -> &'static str {
        "lstm-sequence-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let d = self.dims(l1, l2, l3)?;
        let (t, b, h) = d;
        let out = per_float!(s1, n, T => {
            lstm_backward_host::<T>(d, slice(s1, l1, n)?, slice(s2, l2, n)?, slice(s3, l3, n)?)
        });
        Ok((out, Shape::from(4 * t * b * h + 4 * h * h + 2 * b * h)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let d = self.dims(l1, l2, l3)?;
        let (t, b, h) = d;
        let out = gpu::lstm_sequence_backward(d, s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from(4 * t * b * h + 4 * h * h + 2 * b * h)))
    }
}

// ----------------------------------------------------------------------------------------------
// GRU

/// `(xp (T, B, 3H) with b_ih, [W_hh (3H·H) | b_hh (3H)], h0 (B, H)) → h_1..h_T (T, B, H)`.
#[derive(Debug, Clone, Copy)]
pub struct GruSequence;

/// `(xp, [W_hh | b_hh], [h0; h_1..h_T; grad] (2T+1, B, H)) → [dxp | dW_hh | db_hh | dh0]`.
#[derive(Debug, Clone, Copy)]
struct GruSequenceGrad;

fn gru_forward_host<T: DeviceFloat>(
    (t, b, h): (usize, usize, usize),
    xp: &[T],
    wb: &[T],
    h0: &[T],
) -> Vec<T> {
    let (bh, g3) = (b * h, 3 * b * h);
    let (w, b_hh) = wb.split_at(3 * h * h);
    let mut gh = vec![T::zero(); g3];
    let mut saved = vec![T::zero(); 4 * bh];
    let mut out = vec![T::zero(); t * bh];
    let plan = GemmPlan::x_yt(b, h, 3 * h, false);
    for s in 0..t {
        let (done, rest) = out.split_at_mut(s * bh);
        let hp = if s == 0 { h0 } else { &done[(s - 1) * bh..] };
        let hp = &hp[..bh];
        plan.host(w, hp, &mut gh);
        host::gru_step_forward(
            b,
            h,
            &xp[s * g3..(s + 1) * g3],
            &gh,
            b_hh,
            hp,
            &mut rest[..bh],
            &mut saved,
        );
    }
    out
}

fn gru_backward_host<T: DeviceFloat>(
    (t, b, h): (usize, usize, usize),
    xp: &[T],
    wb: &[T],
    z: &[T],
) -> Vec<T> {
    let (bh, g3, s4) = (b * h, 3 * b * h, 4 * b * h);
    let (w, b_hh) = wb.split_at(3 * h * h);
    let hprev = &z[..t * bh];
    // The activations of every step at once: h_{t-1} is known for every step.
    let mut gh = vec![T::zero(); t * g3];
    GemmPlan::x_yt(t * b, h, 3 * h, false).host(w, hprev, &mut gh);
    let mut saved = vec![T::zero(); t * s4];
    let mut h_scratch = vec![T::zero(); t * bh];
    host::gru_step_forward(t * b, h, xp, &gh, b_hh, hprev, &mut h_scratch, &mut saved);
    let mut g = z[(t + 1) * bh..(2 * t + 1) * bh].to_vec();
    let mut dgh = vec![T::zero(); t * g3];
    let mut direct = vec![T::zero(); bh];
    let mut out = vec![T::zero(); t * g3 + 3 * h * h + 3 * h + bh];
    let (dxp, rest) = out.split_at_mut(t * g3);
    let (dwb, dh0) = rest.split_at_mut(3 * h * h + 3 * h);
    for s in (0..t).rev() {
        let dg = &mut dgh[s * g3..(s + 1) * g3];
        // At the first step the direct part lands in dh0, which the product then adds to.
        let dir: &mut [T] = if s == 0 { &mut *dh0 } else { &mut direct };
        host::gru_step_backward(
            b,
            h,
            &saved[s * s4..(s + 1) * s4],
            &hprev[s * bh..(s + 1) * bh],
            &g[s * bh..(s + 1) * bh],
            &mut dxp[s * g3..(s + 1) * g3],
            dg,
            dir,
        );
        if s > 0 {
            let gp = &mut g[(s - 1) * bh..s * bh];
            GemmPlan::x_y(b, 3 * h, h, true).host(w, dg, gp);
            host::gru_accumulate(&direct, gp);
        } else {
            GemmPlan::x_y(b, 3 * h, h, true).host(w, dg, dh0);
        }
    }
    let (dw, db) = dwb.split_at_mut(3 * h * h);
    GemmPlan::xt_y(3 * h, t * b, h, false).host(hprev, &dgh, dw);
    let ones = vec![T::one(); t * b];
    GemmPlan::xt_y(1, t * b, 3 * h, false).host(&dgh, &ones, db);
    out
}

impl CustomOp3 for GruSequence {
    fn name(&self) -> &'static str {
        "gru-sequence"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let gh = l1.shape().dims3()?.2;
        let d = seq_dims(n, 3, l1, l2, gh)?;
        rows_of(n, l3, 1, d.1, d.2)?;
        let out = per_float!(s1, n, T => {
            gru_forward_host::<T>(d, slice(s1, l1, n)?, slice(s2, l2, n)?, slice(s3, l3, n)?)
        });
        Ok((out, Shape::from(d)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let n = self.name();
        let gh = l1.shape().dims3()?.2;
        let d = seq_dims(n, 3, l1, l2, gh)?;
        rows_of(n, l3, 1, d.1, d.2)?;
        let out = gpu::gru_sequence_forward(d, s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from(d)))
    }
    fn bwd(
        &self,
        xp: &Tensor,
        wb: &Tensor,
        h0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let z = Tensor::cat(
            &[&h0.detach().unsqueeze(0)?, &res.detach(), &grad.detach()],
            0,
        )?
        .contiguous()?;
        let flat = xp.detach().contiguous()?.apply_op3_no_bwd(
            &wb.detach().contiguous()?,
            &z,
            &GruSequenceGrad,
        )?;
        let p = cut(&flat, &[xp.dims(), wb.dims(), h0.dims()])?;
        Ok((Some(p[0].clone()), Some(p[1].clone()), Some(p[2].clone())))
    }
}

impl GruSequenceGrad {
    fn dims(&self, l1: &Layout, l2: &Layout, l3: &Layout) -> Res<(usize, usize, usize)> {
        let n = self.name();
        let gh = l1.shape().dims3()?.2;
        let d = seq_dims(n, 3, l1, l2, gh)?;
        rows_of(n, l3, 2 * d.0 + 1, d.1, d.2)?;
        Ok(d)
    }
}

impl CustomOp3 for GruSequenceGrad {
    fn name(&self) -> &'static str {
        "gru-sequence-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let d = self.dims(l1, l2, l3)?;
        let (t, b, h) = d;
        let out = per_float!(s1, n, T => {
            gru_backward_host::<T>(d, slice(s1, l1, n)?, slice(s2, l2, n)?, slice(s3, l3, n)?)
        });
        Ok((out, Shape::from(3 * t * b * h + 3 * h * h + 3 * h + b * h)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let d = self.dims(l1, l2, l3)?;
        let (t, b, h) = d;
        let out = gpu::gru_sequence_backward(d, s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from(3 * t * b * h + 3 * h * h + 3 * h + b * h)))
    }
}

// ----------------------------------------------------------------------------------------------
// LTC

/// `(x (T, B, D) mapped inputs, packed effective parameters, v0 (B, H)) → v_1..v_T (T, B, H)`:
/// every step's sensory synapses and ODE unfolds in one op (on a GPU, per step the kernels of
/// one [`LtcStep`](super::LtcStep), no products). `dt` is (B, T), sample-major, or `None`: 1.
#[derive(Debug, Clone)]
pub struct LtcSequence {
    pub layout: PackedLayout,
    pub unfolds: usize,
    pub epsilon: f64,
    pub dt: Option<Vec<f64>>,
}

/// `(x, params, [v0; v_1..v_T; grad] (2T+1, B, H)) → [dx (T·B·D) | dparams | dv0 (B·H)]`.
#[derive(Debug, Clone)]
struct LtcSequenceGrad(LtcSequence);

impl LtcSequence {
    /// (T, B) after checking the shapes.
    fn dims(&self, l1: &Layout, l2: &Layout, l3: &Layout, rows3: usize) -> Res<(usize, usize)> {
        let (t, b, d) = l1.shape().dims3()?;
        let want3 = if rows3 == 1 { b } else { (2 * t + 1) * b };
        if t == 0
            || b == 0
            || d != self.layout.d
            || l2.shape().elem_count() != self.layout.len()
            || l3.shape().elem_count() != want3 * self.layout.h
            || self.dt.as_ref().is_some_and(|dt| dt.len() != b * t)
        {
            candle_core::bail!(
                "ltc-sequence: shapes {:?} {:?} {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        for l in [l1, l2, l3] {
            contiguous("ltc-sequence", l)?;
        }
        Ok((t, b))
    }

    /// The step op of step `s` (its column of `dt`), whose launches the GPU side reuses.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn step(&self, s: usize, b: usize, t: usize) -> LtcStep {
        LtcStep {
            layout: self.layout,
            unfolds: self.unfolds,
            epsilon: self.epsilon,
            dt: self
                .dt
                .as_ref()
                .map(|d| (0..b).map(|i| d[i * t + s]).collect()),
        }
    }

    fn cast<T: DeviceFloat>(&self) -> (T, Option<Vec<T>>) {
        let c = |v: f64| <T as num_traits::NumCast>::from(v).expect("ltc constant");
        (
            c(self.epsilon),
            self.dt.as_ref().map(|d| d.iter().map(|&v| c(v)).collect()),
        )
    }
}

/// (T, B, W) time-major ↔ (B, T, W) sample-major.
fn swap_major<T: Copy>(src: &[T], outer: usize, inner: usize, w: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    for i in 0..inner {
        for o in 0..outer {
            out.extend_from_slice(&src[(o * inner + i) * w..(o * inner + i + 1) * w]);
        }
    }
    out
}

impl CustomOp3 for LtcSequence {
    fn name(&self) -> &'static str {
        "ltc-sequence"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let n = self.name();
        let (t, b) = self.dims(l1, l2, l3, 1)?;
        let out = per_float!(s1, n, T => {
            let (eps, dt) = self.cast::<T>();
            let x = swap_major(slice::<T>(s1, l1, n)?, t, b, self.layout.d);
            host::ltc_sequence_forward::<T>(
                self.layout, self.unfolds, eps, &x, slice(s2, l2, n)?, slice(s3, l3, n)?,
                dt.as_deref(), b, t,
            )
            .1
        });
        Ok((out, Shape::from((t, b, self.layout.h))))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let (t, b) = self.dims(l1, l2, l3, 1)?;
        let out = gpu::ltc_sequence_forward(self, (t, b), s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from((t, b, self.layout.h))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        p: &Tensor,
        v0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Res<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let z = Tensor::cat(
            &[&v0.detach().unsqueeze(0)?, &res.detach(), &grad.detach()],
            0,
        )?
        .contiguous()?;
        let flat = x.detach().contiguous()?.apply_op3_no_bwd(
            &p.detach().contiguous()?,
            &z,
            &LtcSequenceGrad(self.clone()),
        )?;
        let parts = cut(&flat, &[x.dims(), p.dims(), v0.dims()])?;
        Ok((
            Some(parts[0].clone()),
            Some(parts[1].clone()),
            Some(parts[2].clone()),
        ))
    }
}

impl CustomOp3 for LtcSequenceGrad {
    fn name(&self) -> &'static str {
        "ltc-sequence-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Res<(CpuStorage, Shape)> {
        let st = &self.0;
        let n = self.name();
        let (t, b) = st.dims(l1, l2, l3, 2)?;
        let (d, h, np) = (st.layout.d, st.layout.h, st.layout.len());
        let bh = b * h;
        let out = per_float!(s1, n, T => {
            let (eps, dt) = st.cast::<T>();
            let x = swap_major(slice::<T>(s1, l1, n)?, t, b, d);
            let (p, z) = (slice::<T>(s2, l2, n)?, slice::<T>(s3, l3, n)?);
            let (v0, grad) = (&z[..bh], &z[(t + 1) * bh..(2 * t + 1) * bh]);
            let (saved, out) =
                host::ltc_sequence_forward(st.layout, st.unfolds, eps, &x, p, v0, dt.as_deref(), b, t);
            let (dx, dp, dv) = host::ltc_sequence_backward(
                st.layout, st.unfolds, eps, &x, p, dt.as_deref(), b, t, &saved, &out, grad,
            );
            let mut all = swap_major(&dx, b, t, d);
            all.extend(dp);
            all.extend(dv);
            all
        });
        Ok((out, Shape::from(t * b * d + np + bh)))
    }
    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> Res<(candle_core::CudaStorage, Shape)> {
        let st = &self.0;
        let (t, b) = st.dims(l1, l2, l3, 2)?;
        let len = t * b * st.layout.d + st.layout.len() + b * st.layout.h;
        let out = gpu::ltc_sequence_backward(st, (t, b), s1, l1, s2, l2, s3, l3)?;
        Ok((out, Shape::from(len)))
    }
}

// ----------------------------------------------------------------------------------------------
// The layers as the cells call them

/// `x` (B, T, I) → the time-major input projection `x W_ihᵀ + bias` (T, B, G·H) of every step in
/// one product (`w_ih_t` is `W_ihᵀ`, (I, G·H)).
pub fn time_major_projection(x: &Tensor, w_ih_t: &Tensor, bias: &Tensor) -> Res<Tensor> {
    let (b, t, i) = x.dims3()?;
    let gh = w_ih_t.dim(1)?;
    x.transpose(0, 1)?
        .contiguous()?
        .reshape((t * b, i))?
        .matmul(w_ih_t)?
        .broadcast_add(bias)?
        .reshape((t, b, gh))
}

/// Hidden states (T, B, H) time-major → (B, T, H) and the last one.
fn unstack(hs: &Tensor, t: usize) -> Res<(Tensor, Tensor)> {
    let ys = hs.narrow(0, 0, t)?.transpose(0, 1)?.contiguous()?;
    Ok((ys, hs.get(t - 1)?))
}

/// An SRN layer: `xp` (T, B, H) from [`time_major_projection`] (both biases in it), `w_hh`
/// (H, H), `h0` (B, H) → every hidden state (B, T, H) and the last (B, H).
pub fn srn_sequence(
    xp: &Tensor,
    w_hh: &Tensor,
    h0: &Tensor,
    logistic: bool,
) -> Res<(Tensor, Tensor)> {
    let t = xp.dim(0)?;
    let hs = xp.contiguous()?.apply_op3(
        &w_hh.contiguous()?,
        &h0.contiguous()?,
        SrnSequence { logistic },
    )?;
    unstack(&hs, t)
}

/// An LSTM layer: `xp` (T, B, 4H) (both biases in it), `w_hh` (4H, H), `h0`, `c0` (B, H) →
/// every hidden state (B, T, H), the last hidden and cell states (B, H).
pub fn lstm_sequence(
    xp: &Tensor,
    w_hh: &Tensor,
    h0: &Tensor,
    c0: &Tensor,
) -> Res<(Tensor, Tensor, Tensor)> {
    let t = xp.dim(0)?;
    let s0 = Tensor::stack(&[h0, c0], 0)?;
    let out = xp
        .contiguous()?
        .apply_op3(&w_hh.contiguous()?, &s0, LstmSequence)?;
    let (ys, h_n) = unstack(&out, t)?;
    Ok((ys, h_n, out.get(t)?))
}

/// A GRU layer: `xp` (T, B, 3H) with `b_ih` only, `w_hh` (3H, H), `b_hh` (3H), `h0` (B, H) →
/// every hidden state (B, T, H) and the last (B, H).
pub fn gru_sequence(
    xp: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
    h0: &Tensor,
) -> Res<(Tensor, Tensor)> {
    let t = xp.dim(0)?;
    let wb = Tensor::cat(&[&w_hh.flatten_all()?, &b_hh.flatten_all()?], 0)?;
    let hs = xp
        .contiguous()?
        .apply_op3(&wb, &h0.contiguous()?, GruSequence)?;
    unstack(&hs, t)
}

/// An LTC layer: `x` (B, T, D) mapped inputs, `p` the packed effective parameters, `v0` (B, H),
/// `op` with the layer's constants and `dt` (B, T) → every state (B, T, H) and the last (B, H).
pub fn ltc_sequence(x: &Tensor, p: &Tensor, v0: &Tensor, op: LtcSequence) -> Res<(Tensor, Tensor)> {
    let t = x.dim(1)?;
    let xt = x.transpose(0, 1)?.contiguous()?;
    let vs = xt.apply_op3(&p.contiguous()?, &v0.contiguous()?, op)?;
    unstack(&vs, t)
}

#[cfg(feature = "cuda")]
use super::launch as gpu;

#[cfg(test)]
mod tests {
    use super::GemmPlan;

    /// Row-major reference product of `x` (r, k) and `y` (k, c).
    fn mm(x: &[f64], y: &[f64], r: usize, k: usize, c: usize) -> Vec<f64> {
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[i * c + j] = (0..k).map(|p| x[i * k + p] * y[p * c + j]).sum();
            }
        }
        out
    }

    fn tr(x: &[f64], r: usize, c: usize) -> Vec<f64> {
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = x[i * c + j];
            }
        }
        out
    }

    fn vals(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1013) as f64) / 500.0 - 1.0)
            .collect()
    }

    /// The three plans compute the row-major products their names say, with cuBLAS's operand
    /// order (A = right-hand factor, B = left-hand factor), overwriting or accumulating.
    #[test]
    fn plans_compute_the_row_major_products() {
        let (r, k, c) = (3, 5, 4);
        let x = vals(r * k, 1);
        let y = vals(k * c, 2);
        let want = mm(&x, &y, r, k, c);
        // X · Yᵀ with Yᵀ given as (c, k).
        let yt = tr(&y, k, c);
        let mut got = vec![f64::NAN; r * c];
        GemmPlan::x_yt(r, k, c, false).host(&yt, &x, &mut got);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
        // X · Y, accumulated onto ones.
        let mut got = vec![1.0; r * c];
        GemmPlan::x_y(r, k, c, true).host(&y, &x, &mut got);
        assert!(got
            .iter()
            .zip(&want)
            .all(|(a, b)| (a - 1.0 - b).abs() < 1e-12));
        // Xᵀ · Y with X given as (k, r).
        let xt = tr(&x, r, k);
        let mut got = vec![f64::NAN; r * c];
        GemmPlan::xt_y(r, k, c, false).host(&y, &xt, &mut got);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    #[should_panic(expected = "gemm: operands")]
    fn a_short_operand_is_refused() {
        let mut c = vec![0.0; 12];
        GemmPlan::x_y(3, 5, 4, false).host(&[0.0; 19], &[0.0; 15], &mut c);
    }
}
