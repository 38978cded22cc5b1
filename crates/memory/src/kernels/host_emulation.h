// Compiles the memory crate's CUDA kernels for the host, so that tests can check them against
// GbNetwork::recall on a machine without a GPU (the pattern of crates/cells' host_emulation.h).
// A launch becomes two loops over blocks and threads, which is faithful because no kernel here
// has its threads communicate: no shared memory, barriers or atomics.
#pragma once
#define REMANENCE_HOST_EMULATION 1

struct gb_dim3 {
    unsigned int x, y, z;
};

// One translation unit (host_emulation.cpp) uses them: internal linkage, so that they do not
// clash with crates/cells' own emulation when both crates are linked into one binary; per OS
// thread, so that tests running in parallel do not share them.
static thread_local gb_dim3 blockIdx, threadIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
