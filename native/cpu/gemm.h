// The matrix multiply for weights stored as f32 / f16 / bf16 on AVX-512: y = x · wᵀ, for prefill
// blocked for the caches, with a register tile of 4 activation rows × 6 weight rows (24
// accumulators of 16 lanes keep both FMA ports busy). A panel of weights is widened to f32 once
// (vcvtph2ps for f16, a shift for bf16; never through bf16) and reused for every activation row;
// activations are packed once per call. Both packed operands are 64-byte aligned (a zmm load
// split across two cache lines halved the kernel's speed).
// Each output is computed with exactly the arithmetic of the AVX2 dot kernels (simd.h), so
// results are the same bit for bit whichever path, thread count or batch of rows computes them.
#pragma once
#include <cstdint>

#include "../core/dtype.h"
#include "../core/thread_pool.h"
#include "simd.h"

namespace chai::cpu {

// Whether gemm_float_weights runs at this level (AVX-512 only).
bool gemm_available(SimdLevel level);

// y[n][m] = x[n][k] · w[m][k]ᵀ; w is f32, f16 or bf16 (w_dtype), rows of k elements. Fewer than 4
// rows of x (decoding) read the weights in place, four rows side by side.
void gemm_float_weights(ThreadPool& pool, const float* x, const void* w, DType w_dtype, float* y, int64_t n, int64_t m,
                        int64_t k);

}  // namespace chai::cpu
