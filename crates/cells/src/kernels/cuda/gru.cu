// Fused GRU step kernels: the element-wise part of one time step, forward and backward, one
// thread per (sample, unit). PyTorch's formulas (crates/cells/src/gru.rs): b_hn stays inside
// r ⊙ (·), so the recurrent product arrives without its bias.
#include "common.cuh"

// xp (B, 3H) = x W_ihᵀ + b_ih; gh (B, 3H) = h W_hhᵀ; b_hh (3H); h_prev (B, H) → h (B, H) and
// saved (B, 4H) = [r | z | n | g_n + b_hn].
template <typename T>
__device__ void gru_step_forward(int batch, int hidden, const T* __restrict__ xp,
                                 const T* __restrict__ gh, const T* __restrict__ b_hh,
                                 const T* __restrict__ h_prev, T* __restrict__ h,
                                 T* __restrict__ saved) {
    long long idx = global_index();
    if (idx >= (long long)batch * hidden) return;
    long long b = idx / hidden;
    int j = (int)(idx % hidden);
    const T* x = xp + b * 3 * hidden;
    const T* g = gh + b * 3 * hidden;
    T r = sigmoid_t(x[j] + g[j] + b_hh[j]);
    T z = sigmoid_t(x[hidden + j] + g[hidden + j] + b_hh[hidden + j]);
    T gn = g[2 * hidden + j] + b_hh[2 * hidden + j];
    T n = tanh_t(x[2 * hidden + j] + r * gn);
    h[idx] = n + z * (h_prev[idx] - n);
    T* s = saved + b * 4 * hidden;
    s[j] = r;
    s[hidden + j] = z;
    s[2 * hidden + j] = n;
    s[3 * hidden + j] = gn;
}

// dh (B, H): the whole gradient of this step's h → dxp (B, 3H) (also the gradient of b_ih),
// dgh (B, 3H): the gradient of h W_hhᵀ + b_hh, and direct (B, H): the part of h_prev's gradient
// that bypasses W_hh.
template <typename T>
__device__ void gru_step_backward(int batch, int hidden, const T* __restrict__ saved,
                                  const T* __restrict__ h_prev, const T* __restrict__ dh,
                                  T* __restrict__ dxp, T* __restrict__ dgh,
                                  T* __restrict__ direct) {
    long long idx = global_index();
    if (idx >= (long long)batch * hidden) return;
    long long b = idx / hidden;
    int j = (int)(idx % hidden);
    const T* s = saved + b * 4 * hidden;
    T r = s[j], z = s[hidden + j], n = s[2 * hidden + j], gn = s[3 * hidden + j];
    T d = dh[idx];
    T dn = d * (T(1) - z) * (T(1) - n * n);
    T dz = d * (h_prev[idx] - n) * z * (T(1) - z);
    T dr = dn * gn * r * (T(1) - r);
    T* dx = dxp + b * 3 * hidden;
    T* dg = dgh + b * 3 * hidden;
    dx[j] = dr;
    dx[hidden + j] = dz;
    dx[2 * hidden + j] = dn;
    dg[j] = dr;
    dg[hidden + j] = dz;
    dg[2 * hidden + j] = dn * r;
    direct[idx] = d * z;
}

// y (n) += x (n). The whole-sequence backward pass (sequence.rs) adds the direct part of h_prev's
// gradient to the part that came back through W_hh.
template <typename T>
__device__ void gru_accumulate(long long n, const T* __restrict__ x, T* __restrict__ y) {
    long long idx = global_index();
    if (idx >= n) return;
    y[idx] += x[idx];
}

#define GRU_ENTRY_POINTS(SUFFIX, T)                                                              \
    extern "C" __global__ void gru_step_forward_##SUFFIX(int batch, int hidden, const T* xp,     \
                                                         const T* gh, const T* b_hh,             \
                                                         const T* h_prev, T* h, T* saved) {      \
        gru_step_forward<T>(batch, hidden, xp, gh, b_hh, h_prev, h, saved);                      \
    }                                                                                            \
    extern "C" __global__ void gru_step_backward_##SUFFIX(int batch, int hidden, const T* saved, \
                                                          const T* h_prev, const T* dh, T* dxp,  \
                                                          T* dgh, T* direct) {                   \
        gru_step_backward<T>(batch, hidden, saved, h_prev, dh, dxp, dgh, direct);                \
    }                                                                                            \
    extern "C" __global__ void gru_accumulate_##SUFFIX(long long n, const T* x, T* y) {          \
        gru_accumulate<T>(n, x, y);                                                              \
    }

GRU_ENTRY_POINTS(f32, float)
GRU_ENTRY_POINTS(f64, double)
