// Shared definitions of the memory crate's kernels. The same sources compile with nvcc (to PTX)
// and, through host_emulation.h, with the host C++ compiler, where the tests check them against
// GbNetwork::recall (crates/memory/tests/cuda_host.rs).
#pragma once

#ifndef REMANENCE_HOST_EMULATION
#include <cuda_runtime.h>
#endif

// A packed word: bit j of a packed vector is bit (j mod 64) of word ⌊j/64⌋, as in src/bits.rs.
typedef unsigned long long gb_word;

// The global index of this thread in a one-dimensional launch.
__device__ __forceinline__ long long global_index() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

#ifdef REMANENCE_HOST_EMULATION
__device__ __forceinline__ unsigned popcount64(gb_word x) {
    return (unsigned)__builtin_popcountll(x);
}
// Index of the lowest set bit; x ≠ 0.
__device__ __forceinline__ int lowest_bit64(gb_word x) { return __builtin_ctzll(x); }
#else
__device__ __forceinline__ unsigned popcount64(gb_word x) { return (unsigned)__popcll(x); }
__device__ __forceinline__ int lowest_bit64(gb_word x) { return __ffsll((long long)x) - 1; }
#endif
