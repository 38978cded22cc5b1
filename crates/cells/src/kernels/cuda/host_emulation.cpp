// The host build of every kernel, behind one entry point with CUDA's launch convention: a kernel
// name, grid and block sizes, and an array of pointers to the arguments (cuLaunchKernel's
// kernelParams). Rust calls it from crates/cells/src/kernels/cuda/host.rs.
#include "host_emulation.h"

#include <cstring>
#include <utility>

thread_local remanence_dim3 blockIdx, threadIdx, blockDim, gridDim;

#include "gru.cu"
#include "lstm.cu"
#include "ltc.cu"
#include "srn.cu"

namespace {

template <typename... A, std::size_t... I>
void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<A*>(args[I])...);
}

template <typename... A>
void emulate(void (*f)(A...), unsigned grid, unsigned block, void** args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned bx = 0; bx < grid; ++bx) {
        for (unsigned tx = 0; tx < block; ++tx) {
            blockIdx = {bx, 0, 0};
            threadIdx = {tx, 0, 0};
            call(f, args, std::index_sequence_for<A...>{});
        }
    }
}

struct Entry {
    const char* name;
    void (*run)(unsigned, unsigned, void**);
};

#define ENTRY(NAME) {#NAME, [](unsigned g, unsigned b, void** a) { emulate(NAME, g, b, a); }}
#define ENTRIES(NAME) ENTRY(NAME##_f32), ENTRY(NAME##_f64)

const Entry ENTRIES_TABLE[] = {
    ENTRIES(lstm_step_forward),
    ENTRIES(lstm_step_backward),
    ENTRIES(gru_step_forward),
    ENTRIES(gru_step_backward),
    ENTRIES(gru_accumulate),
    ENTRIES(srn_step_forward),
    ENTRIES(srn_step_backward),
    ENTRIES(ltc_sensory),
    ENTRIES(ltc_unfold),
    ENTRIES(ltc_unfold_backward_neurons),
    ENTRIES(ltc_unfold_backward_inputs),
    ENTRIES(ltc_unfold_backward_synapses),
    ENTRIES(ltc_unfold_backward_leak),
    ENTRIES(ltc_sensory_backward_synapses),
    ENTRIES(ltc_sensory_backward_inputs),
};

}  // namespace

// Runs kernel `name` on the host; returns 0, or -1 when no kernel has that name.
extern "C" int remanence_host_launch(const char* name, unsigned grid, unsigned block,
                                     void** args) {
    for (const Entry& e : ENTRIES_TABLE) {
        if (std::strcmp(e.name, name) == 0) {
            e.run(grid, block, args);
            return 0;
        }
    }
    return -1;
}
