// CHAI_X86: whether this build targets x86-64, where the vector kernels (compiled per function with
// target attributes and chosen at run time) use the intrinsics of <immintrin.h>.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define CHAI_X86 1
#include <immintrin.h>
#else
#define CHAI_X86 0
#endif

#if CHAI_X86
#define CHAI_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace chai {
// The sum of the eight lanes.
CHAI_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
}  // namespace chai
#endif
