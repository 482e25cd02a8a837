// Dot products of packed quantized weight rows (Q4_0 .. IQ4_XS) with activation rows that were
// quantized to 8 bits per block, as llama.cpp computes them: the weights' blocks are never
// expanded to float; Σ x·w runs in integers per group of 16 values, then scales.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/dtype.h"
#include "simd.h"

namespace chai {

// An activation block for 32-value weight blocks (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL; llama.cpp's
// Q8_0/Q8_1) and for 256-value ones (K-quants, IQ4_XS; llama.cpp's Q8_K):
// x ≈ d · q, d = max|x| / 127, and the sums of q per group of 16 (for the types with a min).
template <int V>
struct ActivationBlock {
  float d;
  int16_t sums[V / 16];
  int8_t q[V];
};

// Bytes of one activation row of k values quantized for weights of type `weight`.
size_t activation_row_bytes(DType weight, int64_t k);
// Quantizes x[0..k) for dot products with `weight` rows; k must be a multiple of its block. Every
// SIMD level writes the same bytes.
void quantize_activation_row(DType weight, const float* x, void* out, int64_t k, SimdLevel level = simd_level());

struct QuantDotKernels {
  // Σ x·w of one packed weight row and one quantized activation row of k values.
  float (*dot)(const void* x, const void* w, int64_t k);
  // Four activation rows (x_stride bytes apart) against one weight row; each row's result is
  // exactly what `dot` gives (each weight block is decoded once for the four).
  void (*dot4x)(const void* x, int64_t x_stride, const void* w, int64_t k, float* out);
};

// The kernels for weights of `weight` (a type with dtype_uses_quant_dot) at a SIMD level.
const QuantDotKernels& quant_dot_kernels(DType weight, SimdLevel level);

}  // namespace chai
