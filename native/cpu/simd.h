// Run-time choice of vector kernels: a prebuilt binary must run on any x86-64 (or other) CPU,
// so wide instructions are compiled per function and picked by what the CPU reports.
#pragma once
#include <cstdint>
#include <string>

#include "../core/dtype.h"

namespace chai {

enum class SimdLevel { Scalar, Avx2 };

// What the CPU supports (e.g. "avx512f avx512bw avx2 fma f16c") and the kernel level in use.
std::string cpu_features();
SimdLevel simd_level();
const char* simd_level_name(SimdLevel level);

// Dot products of an f32 activation row with a weight row stored as f32 / f16 / bf16.
struct DotKernels {
  float (*f32)(const float* x, const float* w, int64_t n);
  float (*f16)(const float* x, const uint16_t* w, int64_t n);
  float (*bf16)(const float* x, const uint16_t* w, int64_t n);
  float (*q8_0)(const float* x, const BlockQ8_0* w, int64_t n);  // n: a multiple of 32
};

const DotKernels& dot_kernels();
const DotKernels& dot_kernels_for(SimdLevel level);

}  // namespace chai
