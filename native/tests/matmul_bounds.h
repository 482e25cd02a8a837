// The relative error (against the CPU twin: f32 arithmetic on the decoded weights) that each
// CUDA matmul path is allowed, shared by the CUDA tests and the benchmark's pre-timing check.
#pragma once
#include "core/dtype.h"

namespace chai::testing {

// - f32 arithmetic in another summation order (version 1, and version 2 on f32 weights or in
//   its f16/bf16 GEMV): rounding only.
// - f16 tiles (version 2 from 16 rows): x is rounded to f16 (relative 2^-11 at most), and so is
//   d * q for Q8_0 (F16 and BF16 weights convert exactly): about 4e-4 on random inputs.
// - int8 activations (version 2 GEMV on Q8_0 weights with k % 64 == 0): x rounded to a step of
//   max|x| / 127 per block of 32: about 4e-3 on uniform inputs.
constexpr double kF32Bound = 1e-5, kF16TileBound = 1e-3, kInt8Bound = 1e-2;

inline double matmul_error_bound(int version, DType w, int n, int k) {
  if (version == 1 || w == DType::F32) return kF32Bound;
  if (n >= 16) return kF16TileBound;
  return w == DType::Q8_0 && k % 64 == 0 ? kInt8Bound : kF32Bound;
}

}  // namespace chai::testing
