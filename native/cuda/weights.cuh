// Reading one weight value, whatever its storage type, as f32 inside a kernel.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../core/dtype.h"

namespace chai::cuda {

__device__ __forceinline__ float weight_at(const float* row, int c) { return row[c]; }
__device__ __forceinline__ float weight_at(const __half* row, int c) { return __half2float(row[c]); }
__device__ __forceinline__ float weight_at(const __nv_bfloat16* row, int c) { return __bfloat162float(row[c]); }
__device__ __forceinline__ float weight_at(const BlockQ8_0* row, int c) {
  const BlockQ8_0& b = row[c / kQ8Block];
  return __half2float(__ushort_as_half(b.d)) * float(b.q[c % kQ8Block]);
}

// f32 -> bf16 bits rounded to nearest even, by integer arithmetic (the simulated GPU of npm run
// test:gpu-sim has no cvt to bf16): __float2bfloat16_rn's bits for every non-NaN value; a NaN
// stays a quiet NaN with its sign (the intrinsic gives 0x7fff).
__device__ __forceinline__ uint16_t bf16_bits_rn(float f) {
  const uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// Elements of type W per row of k values (blocks for Q8_0).
template <typename W>
__host__ __device__ constexpr int row_stride(int k) {
  return k;
}
template <>
__host__ __device__ constexpr int row_stride<BlockQ8_0>(int k) {
  return k / kQ8Block;
}

}  // namespace chai::cuda
