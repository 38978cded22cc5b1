// Shared definitions of the fused step kernels. The same sources compile with nvcc (to PTX) and,
// through host_emulation.h, with the host C++ compiler, where the tests check them against the
// reference cells.
#pragma once

#ifndef REMANENCE_HOST_EMULATION
#include <cuda_runtime.h>
#endif

// The global index of this thread in a one-dimensional launch.
__device__ __forceinline__ long long global_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }
__device__ __forceinline__ float tanh_t(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_t(double x) { return tanh(x); }

template <typename T>
__device__ __forceinline__ T sigmoid_t(T x) {
    return T(1) / (T(1) + exp_t(-x));
}
