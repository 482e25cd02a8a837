// Device dequantization of ggml's packed blocks (layouts in core/quant_blocks.h): one plain
// __device__ function per block type, dequant8(block, part, out), that writes the block's values
// 8·part .. 8·part + 7 (part < 4 for 32-value blocks, < 32 for 256-value ones). GEMV kernels
// and GEMM tile loaders build on these; each matches dequantize_row on the host exactly.
#pragma once
#include <cuda_fp16.h>

#include "../core/quant_blocks.h"

namespace chai::cuda {

static __constant__ int8_t kIq4nlDevice[16] = {CHAI_IQ4NL_VALUES};

__device__ __forceinline__ float half_at(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

// Value r (0..31) of 16 bytes of nibbles packed as Q4_0 packs them.
__device__ __forceinline__ int nibble32(const uint8_t* qs, int r) { return r < 16 ? qs[r] & 15 : qs[r - 16] >> 4; }

__device__ __forceinline__ void dequant8(const BlockQ8_0& b, int part, float* out) {
  const float d = half_at(b.d);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = d * float(b.q[8 * part + t]);
}
__device__ __forceinline__ void dequant8(const BlockQ4_0& b, int part, float* out) {
  const float d = half_at(b.d);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = d * float(nibble32(b.qs, 8 * part + t) - 8);
}
__device__ __forceinline__ void dequant8(const BlockQ4_1& b, int part, float* out) {
  const float d = half_at(b.d), m = half_at(b.m);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = __fadd_rn(__fmul_rn(d, float(nibble32(b.qs, 8 * part + t))), m);
}
__device__ __forceinline__ int q5_value(const uint8_t* qs, const uint8_t* qh, int i) {
  return nibble32(qs, i) | ((qh[i / 8] >> (i % 8)) & 1) << 4;
}
__device__ __forceinline__ void dequant8(const BlockQ5_0& b, int part, float* out) {
  const float d = half_at(b.d);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = d * float(q5_value(b.qs, b.qh, 8 * part + t) - 16);
}
__device__ __forceinline__ void dequant8(const BlockQ5_1& b, int part, float* out) {
  const float d = half_at(b.d), m = half_at(b.m);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = __fadd_rn(__fmul_rn(d, float(q5_value(b.qs, b.qh, 8 * part + t))), m);
}
__device__ __forceinline__ void dequant8(const BlockIQ4_NL& b, int part, float* out) {
  const float d = half_at(b.d);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = d * float(kIq4nlDevice[nibble32(b.qs, 8 * part + t)]);
}
// Q2_K / Q3_K: value 128h + 32s + l has its low 2 bits in byte 32h + l at bit 2s.
__device__ __forceinline__ void dequant8(const BlockQ2_K& b, int part, float* out) {
  const int i0 = 8 * part, h = i0 / 128, s = i0 % 128 / 32, l0 = i0 % 32, g = i0 / 16;
  const float scale = half_at(b.d) * float(b.scales[g] & 15), offset = half_at(b.dmin) * float(b.scales[g] >> 4);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = __fsub_rn(__fmul_rn(scale, float((b.qs[32 * h + l0 + t] >> (2 * s)) & 3)), offset);
}
__device__ __forceinline__ void dequant8(const BlockQ3_K& b, int part, float* out) {
  const int i0 = 8 * part, h = i0 / 128, s = i0 % 128 / 32, l0 = i0 % 32;
  const float scale = half_at(b.d) * float(q3k_scale(b.scales, i0 / 16));
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const int low = (b.qs[32 * h + l0 + t] >> (2 * s)) & 3;
    out[t] = scale * float(low - (((b.hmask[l0 + t] >> (4 * h + s)) & 1) ? 0 : 4));
  }
}
// Q4_K / Q5_K: per 64 values, 32 bytes; low nibbles the first 32 values, high nibbles the next.
__device__ __forceinline__ void k_scale_offset(uint16_t d, uint16_t dmin, const uint8_t* packed, int sub, float* scale,
                                               float* offset) {
  uint8_t sc, mn;
  k_scale_min(packed, sub, &sc, &mn);
  *scale = half_at(d) * float(sc);
  *offset = half_at(dmin) * float(mn);
}
__device__ __forceinline__ void dequant8(const BlockQ4_K& b, int part, float* out) {
  const int i0 = 8 * part, c = i0 / 64, high = i0 % 64 / 32, l0 = i0 % 32;
  float scale, offset;
  k_scale_offset(b.d, b.dmin, b.scales, i0 / 32, &scale, &offset);
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = __fsub_rn(__fmul_rn(scale, float((b.qs[32 * c + l0 + t] >> (4 * high)) & 15)), offset);
}
__device__ __forceinline__ void dequant8(const BlockQ5_K& b, int part, float* out) {
  const int i0 = 8 * part, c = i0 / 64, high = i0 % 64 / 32, l0 = i0 % 32;
  float scale, offset;
  k_scale_offset(b.d, b.dmin, b.scales, i0 / 32, &scale, &offset);
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const int q = ((b.qs[32 * c + l0 + t] >> (4 * high)) & 15) | ((b.qh[l0 + t] >> (2 * c + high)) & 1) << 4;
    out[t] = __fsub_rn(__fmul_rn(scale, float(q)), offset);
  }
}
// Q6_K: per 128 values, ql bytes l (values l, l + 64) and l + 32 (values l + 32, l + 96), qh byte l.
__device__ __forceinline__ void dequant8(const BlockQ6_K& b, int part, float* out) {
  const int i0 = 8 * part, h = i0 / 128, j = i0 % 128 / 32, l0 = i0 % 32;
  const float scale = half_at(b.d) * float(b.scales[i0 / 16]);
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    const int low = (b.ql[64 * h + 32 * (j % 2) + l0 + t] >> (4 * (j / 2))) & 15;
    const int q = low | ((b.qh[32 * h + l0 + t] >> (2 * j)) & 3) << 4;
    out[t] = scale * float(q - 32);
  }
}
__device__ __forceinline__ void dequant8(const BlockIQ4_XS& b, int part, float* out) {
  const int i0 = 8 * part, s = i0 / 32;
  const float scale = half_at(b.d) * float(iq4xs_scale(b, s));
#pragma unroll
  for (int t = 0; t < 8; ++t) out[t] = scale * float(kIq4nlDevice[nibble32(b.qs + 16 * s, i0 % 32 + t)]);
}

}  // namespace chai::cuda
