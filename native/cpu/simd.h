// Run-time choice of vector kernels: a prebuilt binary must run on any x86-64 (or other) CPU,
// so wide instructions are compiled per function and picked by what the CPU reports.
#pragma once
#include <cstdint>
#include <string>

#include "../core/dtype.h"

namespace chai {

// Avx512 (AVX-512 BW/VL/VNNI on top of AVX2) has its own quantized dot products (quant_dot.h);
// the float kernels below are the AVX2 ones at that level.
enum class SimdLevel { Scalar, Avx2, Avx512 };

// What the CPU supports (e.g. "avx512f avx512bw avx2 fma f16c") and the kernel level in use.
std::string cpu_features();
SimdLevel simd_level();
const char* simd_level_name(SimdLevel level);

// The vector kernels the CPU ops are built from: dot products of an f32 activation row with a
// row stored as f32 / f16 / bf16 / Q8_0, and acc += w · v for a cache row stored as f32 / f16.
struct VectorKernels {
  float (*f32)(const float* x, const float* w, int64_t n);
  float (*f16)(const float* x, const uint16_t* w, int64_t n);
  float (*bf16)(const float* x, const uint16_t* w, int64_t n);
  float (*q8_0)(const float* x, const BlockQ8_0* w, int64_t n);  // n: a multiple of 32
  void (*axpy_f32)(float* acc, float w, const float* v, int64_t n);
  void (*axpy_f16)(float* acc, float w, const uint16_t* v, int64_t n);
  // Four dot products at once, each computed exactly as the one-row kernel computes it (so results
  // never depend on how rows are grouped): four x rows (x_stride apart) against one weight row,
  // each weight element loaded and converted once for the four.
  void (*dot4x_f32)(const float* x, int64_t x_stride, const float* w, int64_t n, float* out);
  void (*dot4x_f16)(const float* x, int64_t x_stride, const uint16_t* w, int64_t n, float* out);
  void (*dot4x_bf16)(const float* x, int64_t x_stride, const uint16_t* w, int64_t n, float* out);
  void (*dot4x_q8_0)(const float* x, int64_t x_stride, const BlockQ8_0* w, int64_t n, float* out);
  // Attention over a KV page (rows `stride` elements apart), with the one-row kernels' results:
  // one query against four key rows, and acc += Σ_j w[j] · v_j over value rows in order.
  void (*dot1x4_f32)(const float* x, const float* rows, int64_t stride, int64_t n, float* out);
  void (*dot1x4_f16)(const float* x, const uint16_t* rows, int64_t stride, int64_t n, float* out);
  void (*axpy_rows_f32)(float* acc, const float* w, const float* v, int64_t stride, int64_t rows, int64_t n);
  void (*axpy_rows_f16)(float* acc, const float* w, const uint16_t* v, int64_t stride, int64_t rows, int64_t n);
};

const VectorKernels& vector_kernels();
const VectorKernels& vector_kernels_for(SimdLevel level);

}  // namespace chai
