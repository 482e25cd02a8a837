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
// c + a·b rounded once, as an explicit instruction: the scalar tails of the vector kernels must not
// depend on what the compiler's vectorizer or contraction makes of `c += a * b` in each of them.
CHAI_AVX2 inline float fma1(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}
}  // namespace chai
#endif
