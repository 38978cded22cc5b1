// Fused LSTM step kernels: the element-wise part of one time step, forward and backward, one
// thread per (sample, unit). The products `x W_ihᵀ` and `h W_hhᵀ` come from cuBLAS; gate order
// and formulas are PyTorch's (see crates/cells/src/lstm.rs for the reference).
#include "common.cuh"

// gates (B, 4H): pre-activations i, f, g, o; c_prev (B, H) → h (B, H), c (B, H) and
// saved (B, 5H) = [c | i | f | g | o], which the backward pass reuses.
template <typename T>
__device__ void lstm_step_forward(int batch, int hidden, const T* __restrict__ gates,
                                  const T* __restrict__ c_prev, T* __restrict__ h,
                                  T* __restrict__ c, T* __restrict__ saved) {
    long long idx = global_index();
    if (idx >= (long long)batch * hidden) return;
    long long b = idx / hidden;
    int j = (int)(idx % hidden);
    const T* g = gates + b * 4 * hidden;
    T i = sigmoid_t(g[j]);
    T f = sigmoid_t(g[hidden + j]);
    T gg = tanh_t(g[2 * hidden + j]);
    T o = sigmoid_t(g[3 * hidden + j]);
    T cn = f * c_prev[idx] + i * gg;
    T hn = o * tanh_t(cn);
    h[idx] = hn;
    c[idx] = cn;
    T* s = saved + b * 5 * hidden;
    s[j] = cn;
    s[hidden + j] = i;
    s[2 * hidden + j] = f;
    s[3 * hidden + j] = gg;
    s[4 * hidden + j] = o;
}

// dh (B, H): the whole gradient of this step's h (its output's and step t+1's); dc (B, H): in,
// the gradient reaching c from step t+1 (or the last cell state's), out, the gradient of c_prev;
// dgates (B, 4H): the gradient of the pre-activations.
template <typename T>
__device__ void lstm_step_backward(int batch, int hidden, const T* __restrict__ saved,
                                   const T* __restrict__ c_prev, const T* __restrict__ dh,
                                   T* __restrict__ dc, T* __restrict__ dgates) {
    long long idx = global_index();
    if (idx >= (long long)batch * hidden) return;
    long long b = idx / hidden;
    int j = (int)(idx % hidden);
    const T* s = saved + b * 5 * hidden;
    T c = s[j], i = s[hidden + j], f = s[2 * hidden + j], g = s[3 * hidden + j],
      o = s[4 * hidden + j];
    T tc = tanh_t(c);
    T d = dh[idx];
    T dcj = dc[idx] + d * o * (T(1) - tc * tc);
    T* dg = dgates + b * 4 * hidden;
    dg[j] = dcj * g * i * (T(1) - i);
    dg[hidden + j] = dcj * c_prev[idx] * f * (T(1) - f);
    dg[2 * hidden + j] = dcj * i * (T(1) - g * g);
    dg[3 * hidden + j] = d * tc * o * (T(1) - o);
    dc[idx] = dcj * f;
}

#define LSTM_ENTRY_POINTS(SUFFIX, T)                                                            \
    extern "C" __global__ void lstm_step_forward_##SUFFIX(int batch, int hidden, const T* gates, \
                                                          const T* c_prev, T* h, T* c,          \
                                                          T* saved) {                           \
        lstm_step_forward<T>(batch, hidden, gates, c_prev, h, c, saved);                        \
    }                                                                                           \
    extern "C" __global__ void lstm_step_backward_##SUFFIX(int batch, int hidden,               \
                                                           const T* saved, const T* c_prev,     \
                                                           const T* dh, T* dc, T* dgates) {     \
        lstm_step_backward<T>(batch, hidden, saved, c_prev, dh, dc, dgates);                    \
    }

LSTM_ENTRY_POINTS(f32, float)
LSTM_ENTRY_POINTS(f64, double)
