// The relative error (against the CPU twin: f32 arithmetic on the decoded weights) that each
// CUDA matmul path is allowed, shared by the CUDA tests and the benchmark's pre-timing check.
#pragma once
#include "core/dtype.h"

namespace chai::testing {

// - f32 arithmetic in another summation order (version 1, and version 2 on f32 weights or in
//   its f16/bf16 GEMV): rounding only.
// - f16 tiles (version 2 from 16 rows, F16 and Q8_0 weights): each x row is scaled by a power of
//   two into [2^14, 2^15) and rounded to f16 (relative 2^-11, whatever the row's magnitude), and so
//   is d * q for Q8_0 (F16 weights are exact): about 4e-4 on random inputs. Q8_0 weights must
//   dequantize below f16's 65504 (scales d < 516), as weights quantized from f16 or bf16 models do.
// - bf16 tiles (version 2 from 16 rows, BF16 weights): x rounded to bf16 (relative 2^-9; bf16 has
//   f32's range, so no scaling): about 1.5e-3 on random inputs.
// - int8 activations (version 2 GEMV on Q8_0 weights with k % 64 == 0): x rounded to a step of
//   max|x| / 127 per block of 32: about 4e-3 on uniform inputs.
// Version 3 has the same tiles (same operands and scaling) from 16 rows; its quantized GEMV and
// everything else are f32 arithmetic. Block-quantized weights other than Q8_0 never take tiles.
constexpr double kF32Bound = 1e-5, kF16TileBound = 1e-3, kBf16TileBound = 4e-3, kInt8Bound = 1e-2;

inline double matmul_error_bound(int version, DType w, int n, int k) {
  if (version == 1 || w == DType::F32) return kF32Bound;
  if (n >= 16 && (w == DType::F16 || w == DType::BF16 || w == DType::Q8_0)) return w == DType::BF16 ? kBf16TileBound : kF16TileBound;
  return version == 2 && w == DType::Q8_0 && k % 64 == 0 ? kInt8Bound : kF32Bound;
}

}  // namespace chai::testing
