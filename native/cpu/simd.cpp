#include "simd.h"

#include "../core/dtype.h"

#if defined(__x86_64__) || defined(_M_X64)
#define CHAI_X86 1
#include <immintrin.h>
#else
#define CHAI_X86 0
#endif

namespace chai {
namespace {

// Eight independent partial sums per row: the order of additions is fixed (so results do not
// depend on the thread count or on how rows are grouped) and the compiler may keep them in vector
// registers. R rows of x (x_stride apart) share each loaded weight.
template <int R, typename Load>
void dot_rows_scalar(const float* x, int64_t x_stride, int64_t n, Load load, float* out) {
  float acc[R][8] = {};
  float tail[R] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) {
      const float w = load(i + l);
      for (int r = 0; r < R; ++r) acc[r][l] += x[r * x_stride + i + l] * w;
    }
  for (; i < n; ++i) {
    const float w = load(i);
    for (int r = 0; r < R; ++r) tail[r] += x[r * x_stride + i] * w;
  }
  for (int r = 0; r < R; ++r)
    out[r] = ((acc[r][0] + acc[r][4]) + (acc[r][1] + acc[r][5])) + ((acc[r][2] + acc[r][6]) + (acc[r][3] + acc[r][7])) + tail[r];
}

template <typename Load>
float dot_scalar(const float* x, int64_t n, Load load) {
  float out;
  dot_rows_scalar<1>(x, 0, n, load, &out);
  return out;
}

float dot_f32_scalar(const float* x, const float* w, int64_t n) {
  return dot_scalar(x, n, [w](int64_t i) { return w[i]; });
}
float dot_f16_scalar(const float* x, const uint16_t* w, int64_t n) {
  return dot_scalar(x, n, [w](int64_t i) { return f16_to_f32(w[i]); });
}
float dot_bf16_scalar(const float* x, const uint16_t* w, int64_t n) {
  return dot_scalar(x, n, [w](int64_t i) { return bf16_to_f32(w[i]); });
}
void dot4_f32_scalar(const float* x, int64_t s, const float* w, int64_t n, float* out) {
  dot_rows_scalar<4>(x, s, n, [w](int64_t i) { return w[i]; }, out);
}
void dot4_f16_scalar(const float* x, int64_t s, const uint16_t* w, int64_t n, float* out) {
  dot_rows_scalar<4>(x, s, n, [w](int64_t i) { return f16_to_f32(w[i]); }, out);
}
void dot4_bf16_scalar(const float* x, int64_t s, const uint16_t* w, int64_t n, float* out) {
  dot_rows_scalar<4>(x, s, n, [w](int64_t i) { return bf16_to_f32(w[i]); }, out);
}

// Q8_0 sums per block and scales, so four rows simply run the single-row kernel.
template <float (*Dot)(const float*, const BlockQ8_0*, int64_t)>
void dot4_by_rows(const float* x, int64_t s, const BlockQ8_0* w, int64_t n, float* out) {
  for (int r = 0; r < 4; ++r) out[r] = Dot(x + r * s, w, n);
}

// Exact products x · (d · q): per block, Σ x·q in float, then scaled by d.
float dot_q8_0_scalar(const float* x, const BlockQ8_0* w, int64_t n) {
  float total = 0;
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const float* xb = x + b * kQ8Block;
    const int8_t* q = w[b].q;
    total += f16_to_f32(w[b].d) * dot_scalar(xb, kQ8Block, [q](int64_t i) { return float(q[i]); });
  }
  return total;
}

void axpy_f32_scalar(float* acc, float w, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w * v[i];
}
void axpy_f16_scalar(float* acc, float w, const uint16_t* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w * f16_to_f32(v[i]);
}

#if CHAI_X86
#define CHAI_AVX2 __attribute__((target("avx2,fma,f16c")))

CHAI_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Two accumulators of 8 lanes per row hide the FMA latency; the tail is scalar. R rows of x
// (x_stride apart) share each loaded and converted weight vector; every row's arithmetic is the
// same whatever R is.
template <int R, typename Load8, typename Load1>
CHAI_AVX2 inline void dot_rows_avx2(const float* x, int64_t x_stride, int64_t n, Load8 load8, Load1 load1, float* out) {
  __m256 a0[R], a1[R];
  for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = load8(i), w1 = load8(i + 8);
    for (int r = 0; r < R; ++r) {
      a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * x_stride + i), w0, a0[r]);
      a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * x_stride + i + 8), w1, a1[r]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 w0 = load8(i);
    for (int r = 0; r < R; ++r) a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * x_stride + i), w0, a0[r]);
  }
  float tail[R] = {};
  for (; i < n; ++i) {
    const float w = load1(i);
    for (int r = 0; r < R; ++r) tail[r] += x[r * x_stride + i] * w;
  }
  for (int r = 0; r < R; ++r) out[r] = hsum256(_mm256_add_ps(a0[r], a1[r])) + tail[r];
}

template <typename Load8, typename Load1>
CHAI_AVX2 inline float dot_avx2(const float* x, int64_t n, Load8 load8, Load1 load1) {
  float out;
  dot_rows_avx2<1>(x, 0, n, load8, load1, &out);
  return out;
}

CHAI_AVX2 float dot_f32_avx2(const float* x, const float* w, int64_t n) {
  return dot_avx2(
      x, n, [w](int64_t i) CHAI_AVX2 { return _mm256_loadu_ps(w + i); }, [w](int64_t i) { return w[i]; });
}
CHAI_AVX2 float dot_f16_avx2(const float* x, const uint16_t* w, int64_t n) {
  return dot_avx2(
      x, n,
      [w](int64_t i) CHAI_AVX2 { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))); },
      [w](int64_t i) { return f16_to_f32(w[i]); });
}
CHAI_AVX2 float dot_bf16_avx2(const float* x, const uint16_t* w, int64_t n) {
  return dot_avx2(
      x, n,
      [w](int64_t i) CHAI_AVX2 {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
      },
      [w](int64_t i) { return bf16_to_f32(w[i]); });
}
CHAI_AVX2 void dot4_f32_avx2(const float* x, int64_t s, const float* w, int64_t n, float* out) {
  dot_rows_avx2<4>(
      x, s, n, [w](int64_t i) CHAI_AVX2 { return _mm256_loadu_ps(w + i); }, [w](int64_t i) { return w[i]; }, out);
}
CHAI_AVX2 void dot4_f16_avx2(const float* x, int64_t s, const uint16_t* w, int64_t n, float* out) {
  dot_rows_avx2<4>(
      x, s, n,
      [w](int64_t i) CHAI_AVX2 { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i))); },
      [w](int64_t i) { return f16_to_f32(w[i]); }, out);
}
CHAI_AVX2 void dot4_bf16_avx2(const float* x, int64_t s, const uint16_t* w, int64_t n, float* out) {
  dot_rows_avx2<4>(
      x, s, n,
      [w](int64_t i) CHAI_AVX2 {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
      },
      [w](int64_t i) { return bf16_to_f32(w[i]); }, out);
}

CHAI_AVX2 float dot_q8_0_avx2(const float* x, const BlockQ8_0* w, int64_t n) {
  __m256 total = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const float* xb = x + b * kQ8Block;
    __m256 acc = _mm256_setzero_ps();
    for (int j = 0; j < kQ8Block; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w[b].q + j));
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(xb + j), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), acc);
    }
    total = _mm256_fmadd_ps(_mm256_set1_ps(f16_to_f32(w[b].d)), acc, total);
  }
  return hsum256(total);
}
// acc += w · v with the same rounding as the scalar loop (one multiply-add per element, fused).
CHAI_AVX2 void axpy_f32_avx2(float* acc, float w, const float* v, int64_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(acc + i)));
  for (; i < n; ++i) acc[i] += w * v[i];
}
CHAI_AVX2 void axpy_f16_avx2(float* acc, float w, const uint16_t* v, int64_t n) {
  const __m256 wv = _mm256_set1_ps(w);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 vf = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)));
    _mm256_storeu_ps(acc + i, _mm256_fmadd_ps(wv, vf, _mm256_loadu_ps(acc + i)));
  }
  for (; i < n; ++i) acc[i] += w * f16_to_f32(v[i]);
}
#endif

const VectorKernels kScalar{dot_f32_scalar,   dot_f16_scalar,   dot_bf16_scalar,  dot_q8_0_scalar,
                            axpy_f32_scalar,  axpy_f16_scalar,  dot4_f32_scalar,  dot4_f16_scalar,
                            dot4_bf16_scalar, dot4_by_rows<dot_q8_0_scalar>};
#if CHAI_X86
const VectorKernels kAvx2{dot_f32_avx2,   dot_f16_avx2,   dot_bf16_avx2,  dot_q8_0_avx2,
                          axpy_f32_avx2,  axpy_f16_avx2,  dot4_f32_avx2,  dot4_f16_avx2,
                          dot4_bf16_avx2, dot4_by_rows<dot_q8_0_avx2>};
#endif

SimdLevel detect_level() {
#if CHAI_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return SimdLevel::Avx2;
#endif
  return SimdLevel::Scalar;
}

}  // namespace

std::string cpu_features() {
  std::string out;
#if CHAI_X86
  __builtin_cpu_init();
  const char* names[] = {"avx512f", "avx512bw", "avx512bf16", "avx2", "fma", "f16c", "avx", "sse4.2"};
  // __builtin_cpu_supports needs literal arguments, hence the explicit list.
  const bool has[] = {bool(__builtin_cpu_supports("avx512f")),  bool(__builtin_cpu_supports("avx512bw")),
                      bool(__builtin_cpu_supports("avx512bf16")), bool(__builtin_cpu_supports("avx2")),
                      bool(__builtin_cpu_supports("fma")),      bool(__builtin_cpu_supports("f16c")),
                      bool(__builtin_cpu_supports("avx")),      bool(__builtin_cpu_supports("sse4.2"))};
  for (size_t i = 0; i < sizeof has / sizeof has[0]; ++i)
    if (has[i]) out += (out.empty() ? "" : " ") + std::string(names[i]);
#endif
  return out;
}

SimdLevel simd_level() {
  static const SimdLevel level = detect_level();
  return level;
}

const char* simd_level_name(SimdLevel level) { return level == SimdLevel::Avx2 ? "avx2" : "scalar"; }

const VectorKernels& vector_kernels_for(SimdLevel level) {
#if CHAI_X86
  if (level == SimdLevel::Avx2) return kAvx2;
#endif
  (void)level;
  return kScalar;
}

const VectorKernels& vector_kernels() { return vector_kernels_for(simd_level()); }

}  // namespace chai
