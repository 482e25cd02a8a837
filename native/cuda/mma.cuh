// The tensor-core and asynchronous-copy instructions the GEMM and prefill attention use, as PTX
// (sm_80: mma.sync m16n8k16, ldmatrix, cp.async). Fragment layouts are PTX's: for mma m16n8k16,
// lane l holds A rows l/4 and l/4 + 8 at columns (k) 2(l%4), 2(l%4) + 1 and those + 8; B column
// (n) l/4 at rows (k) 2(l%4), 2(l%4) + 1 and those + 8; C rows l/4 and l/4 + 8 at columns
// 2(l%4), 2(l%4) + 1.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "weights.cuh"

namespace chai::cuda {

// Two floats, rounded to nearest, as one 32-bit register of 16-bit operands (lo in the low half).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  return uint32_t(bf16_bits_rn(lo)) | uint32_t(bf16_bits_rn(hi)) << 16;
}

// f16 operands of x are scaled per row by a power of two 2^shift that puts the row's largest
// finite |value| `top` in [2^14, 2^15): nothing overflows f16's 65504, small values keep f16's 11
// bits, and the scale is undone exactly on y. Rows of zeros (top 0) keep shift 0.
__device__ __forceinline__ int f16_row_shift(float top) {
  constexpr int kRowExponent = 14;
  int exponent = 0;  // top = f · 2^exponent, f in [0.5, 1)
  if (top > 0.0f) frexpf(top, &exponent);
  return top > 0.0f ? min(max(kRowExponent + 1 - exponent, -126), 126) : 0;
}

// d += a · b for one m16n8k16 tile: a 4 and b 2 registers of 16-bit pairs, f32 accumulators.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8×8 matrices of 16-bit values from shared memory; lanes 8i..8i+7 address the rows of
// matrix i (16-byte aligned), and lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of each.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
// The same, each matrix transposed (lane l receives column l/4, rows 2(l%4), 2(l%4)+1).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// Starts a 16-byte copy global → shared (both 16-byte aligned) that bypasses registers; with
// `bytes` 0 it writes 16 zero bytes and reads nothing (src must still be a valid address).
__device__ __forceinline__ void cp_async16(void* smem, const void* src, int bytes) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most kPending committed groups of this thread are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

}  // namespace chai::cuda
