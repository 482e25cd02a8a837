// Device-side helpers of the microbenchmarks (native/bench): inputs generated on the GPU, so a
// benchmark never waits for host loops and uploads, and the read-bandwidth ceiling.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/dtype.h"

namespace chai::cuda::bench {

// rows × cols values of `dtype` at dst from a hash of (seed, index). F32, F16, BF16: uniform in
// ±[0.05, 1) · scale (never zero). Q8_0, Q4_0, Q4_K, Q6_K: random bytes in every block, but each
// f16 scale field (d, and Q4_K's dmin) ±[0.05, 1) of the value at which the largest quant could
// reach ±scale, so that every block decodes to finite values within ±scale (rows must hold whole
// blocks). Other types: Unsupported.
void fill_random(void* dst, DType dtype, int64_t rows, int64_t cols, uint32_t seed, float scale, cudaStream_t stream);

// Reads `bytes` (a multiple of 16) at src once with 16-byte loads, coalesced, several in flight
// per thread; what it reads decides whether *sink is written, so no load can be left out.
void read_all(const void* src, size_t bytes, uint32_t* sink, cudaStream_t stream);

}  // namespace chai::cuda::bench
