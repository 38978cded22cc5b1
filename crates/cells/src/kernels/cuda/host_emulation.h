// Compiles the CUDA kernel sources for the host, so that tests can check their index arithmetic
// and formulas against the reference cells on a machine without a GPU. A launch becomes two
// loops over blocks and threads (block after block, thread after thread), which is faithful for
// kernels whose threads do not communicate: none of ours uses shared memory, barriers or atomics.
#pragma once
#define REMANENCE_HOST_EMULATION 1

#include <math.h>
#include <cmath>

struct remanence_dim3 {
    unsigned int x, y, z;
};

// Per OS thread, so that tests running in parallel do not share them.
extern thread_local remanence_dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict

using std::exp;
using std::tanh;
