// Fused Elman step kernels: the activation of one time step and its derivative, one thread per
// (sample, unit) (crates/cells/src/srn.rs for the reference).
#include "common.cuh"

// pre (B, H) = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh → h (B, H); logistic: σ instead of tanh.
template <typename T>
__device__ void srn_step_forward(long long n, int logistic, const T* __restrict__ pre,
                                 T* __restrict__ h) {
    long long idx = global_index();
    if (idx >= n) return;
    h[idx] = logistic ? sigmoid_t(pre[idx]) : tanh_t(pre[idx]);
}

// h (B, H): this step's activation; dh (B, H): its whole gradient → dpre (B, H).
template <typename T>
__device__ void srn_step_backward(long long n, int logistic, const T* __restrict__ h,
                                  const T* __restrict__ dh, T* __restrict__ dpre) {
    long long idx = global_index();
    if (idx >= n) return;
    T a = h[idx];
    dpre[idx] = dh[idx] * (logistic ? a * (T(1) - a) : T(1) - a * a);
}

#define SRN_ENTRY_POINTS(SUFFIX, T)                                                          \
    extern "C" __global__ void srn_step_forward_##SUFFIX(long long n, int logistic,          \
                                                         const T* pre, T* h) {               \
        srn_step_forward<T>(n, logistic, pre, h);                                            \
    }                                                                                        \
    extern "C" __global__ void srn_step_backward_##SUFFIX(long long n, int logistic,         \
                                                          const T* h, const T* dh, T* dpre) { \
        srn_step_backward<T>(n, logistic, h, dh, dpre);                                      \
    }

SRN_ENTRY_POINTS(f32, float)
SRN_ENTRY_POINTS(f64, double)
