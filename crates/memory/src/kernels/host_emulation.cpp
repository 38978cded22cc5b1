// The host build of the memory kernels, behind one entry point with CUDA's launch convention: a
// kernel name, grid and block sizes, and an array of pointers to the arguments (cuLaunchKernel's
// kernelParams). Rust calls it from crates/memory/src/cuda.rs.
#include "host_emulation.h"

#include <cstring>
#include <utility>

#include "gb.cu"

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

const Entry ENTRIES_TABLE[] = {
    ENTRY(gb_scores),
    ENTRY(gb_winners),
};

}  // namespace

// Runs kernel `name` on the host; returns 0, or -1 when no kernel has that name.
extern "C" int remanence_memory_host_launch(const char* name, unsigned grid, unsigned block,
                                            void** args) {
    for (const Entry& e : ENTRIES_TABLE) {
        if (std::strcmp(e.name, name) == 0) {
            e.run(grid, block, args);
            return 0;
        }
    }
    return -1;
}
