// Device-side helpers of the microbenchmarks (native/bench): inputs generated on the GPU, so a
// benchmark never waits for host loops and uploads, and the read-bandwidth ceiling.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/dtype.h"

namespace chai::cuda::bench {

// rows × cols values of `dtype` at dst from a hash of (seed, index): float types uniform in
// ±[0.05, 1) · scale (never zero); Q8_0 blocks with d = scale / 127 and q uniform in [-127, 127].
void fill_random(void* dst, DType dtype, int64_t rows, int64_t cols, uint32_t seed, float scale, cudaStream_t stream);

// Reads `bytes` (a multiple of 16) at src once with 16-byte loads, coalesced, several in flight
// per thread; what it reads decides whether *sink is written, so no load can be left out.
void read_all(const void* src, size_t bytes, uint32_t* sink, cudaStream_t stream);

}  // namespace chai::cuda::bench
