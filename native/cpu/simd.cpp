#include "simd.h"

#include <algorithm>
#include <cstdlib>

#include "../core/dtype.h"
#include "../core/error.h"

#include "x86.h"

namespace chai {
namespace {

// Scalar loads of one weight element as float, per storage type.
inline float load1(const float* w, int64_t i) { return w[i]; }
inline float load1_f16(const uint16_t* w, int64_t i) { return f16_to_f32(w[i]); }
inline float load1_bf16(const uint16_t* w, int64_t i) { return bf16_to_f32(w[i]); }
inline float load1_i8(const int8_t* w, int64_t i) { return float(w[i]); }

// A block of dot products: RX rows of x (x_stride apart) against RW weight rows (w_stride apart),
// out[rx * RW + rw] (the kernels use 1×1 and 4×1). Eight independent partial sums per pair: the order of additions is fixed, so
// results depend neither on the thread count nor on how rows are blocked, and each loaded weight
// (and each loaded x) serves several pairs.
template <int RX, int RW, typename W, float (*Load)(const W*, int64_t)>
void dot_block_scalar(const float* x, int64_t x_stride, const W* w, int64_t w_stride, int64_t n, float* out) {
  float acc[RX][RW][8] = {};
  float tail[RX][RW] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l)
      for (int rw = 0; rw < RW; ++rw) {
        const float wv = Load(w + rw * w_stride, i + l);
        for (int rx = 0; rx < RX; ++rx) acc[rx][rw][l] += x[rx * x_stride + i + l] * wv;
      }
  for (; i < n; ++i)
    for (int rw = 0; rw < RW; ++rw) {
      const float wv = Load(w + rw * w_stride, i);
      for (int rx = 0; rx < RX; ++rx) tail[rx][rw] += x[rx * x_stride + i] * wv;
    }
  for (int rx = 0; rx < RX; ++rx)
    for (int rw = 0; rw < RW; ++rw) {
      const float* a = acc[rx][rw];
      out[rx * RW + rw] = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7])) + tail[rx][rw];
    }
}

template <typename W, float (*Load)(const W*, int64_t)>
float dot1_scalar(const float* x, const W* w, int64_t n) {
  float out;
  dot_block_scalar<1, 1, W, Load>(x, 0, w, 0, n, &out);
  return out;
}
template <typename W, float (*Load)(const W*, int64_t)>
void dot4x_scalar(const float* x, int64_t x_stride, const W* w, int64_t n, float* out) {
  dot_block_scalar<4, 1, W, Load>(x, x_stride, w, 0, n, out);
}

// Q8_0 sums per block and scales, so its four-row form simply runs the single-row kernel.
template <float (*Dot)(const float*, const BlockQ8_0*, int64_t)>
void dot4x_by_rows(const float* x, int64_t x_stride, const BlockQ8_0* w, int64_t n, float* out) {
  for (int r = 0; r < 4; ++r) out[r] = Dot(x + r * x_stride, w, n);
}


// Exact products x · (d · q): per block, Σ x·q in float, then scaled by d.
float dot_q8_0_scalar(const float* x, const BlockQ8_0* w, int64_t n) {
  float total = 0;
  for (int64_t b = 0; b < n / kQ8Block; ++b) {
    const float* xb = x + b * kQ8Block;
    const int8_t* q = w[b].q;
    float sum;
    dot_block_scalar<1, 1, int8_t, load1_i8>(xb, 0, q, 0, kQ8Block, &sum);
    total += f16_to_f32(w[b].d) * sum;
  }
  return total;
}

// One x against four rows of a KV page (stride apart), each result what dot1 gives.
template <typename W, float (*Load)(const W*, int64_t)>
void dot1x4_scalar(const float* x, const W* rows, int64_t stride, int64_t n, float* out) {
  dot_block_scalar<1, 4, W, Load>(x, 0, rows, stride, n, out);
}
void axpy_f32_scalar(float* acc, float w, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w * v[i];
}
void axpy_f16_scalar(float* acc, float w, const uint16_t* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w * f16_to_f32(v[i]);
}
// acc += Σ_j w[j] · v_j over `rows` rows (stride apart), in order: what that many axpy calls give.
template <typename V, void (*Axpy)(float*, float, const V*, int64_t)>
void axpy_rows_by_rows(float* acc, const float* w, const V* v, int64_t stride, int64_t rows, int64_t n) {
  for (int64_t j = 0; j < rows; ++j) Axpy(acc, w[j], v + j * stride, n);
}

#if CHAI_X86

// Eight-lane loads of weights as float, per storage type.
CHAI_AVX2 inline __m256 load8(const float* w, int64_t i) { return _mm256_loadu_ps(w + i); }
CHAI_AVX2 inline __m256 load8_f16(const uint16_t* w, int64_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
}
CHAI_AVX2 inline __m256 load8_bf16(const uint16_t* w, int64_t i) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

// The AVX2 twin of dot_block_scalar: two accumulators of 8 lanes per pair hide the FMA latency,
// the tail is scalar; every pair's arithmetic is the same whatever the block shape.
template <int RX, int RW, typename W, __m256 (*Load8)(const W*, int64_t), float (*Load1)(const W*, int64_t)>
CHAI_AVX2 inline void dot_block_avx2(const float* x, int64_t x_stride, const W* w, int64_t w_stride, int64_t n, float* out) {
  __m256 a0[RX][RW], a1[RX][RW];
  for (int rx = 0; rx < RX; ++rx)
    for (int rw = 0; rw < RW; ++rw) a0[rx][rw] = a1[rx][rw] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int rw = 0; rw < RW; ++rw) {
      const __m256 w0 = Load8(w + rw * w_stride, i), w1 = Load8(w + rw * w_stride, i + 8);
      for (int rx = 0; rx < RX; ++rx) {
        a0[rx][rw] = _mm256_fmadd_ps(_mm256_loadu_ps(x + rx * x_stride + i), w0, a0[rx][rw]);
        a1[rx][rw] = _mm256_fmadd_ps(_mm256_loadu_ps(x + rx * x_stride + i + 8), w1, a1[rx][rw]);
      }
    }
  for (; i + 8 <= n; i += 8)
    for (int rw = 0; rw < RW; ++rw) {
      const __m256 w0 = Load8(w + rw * w_stride, i);
      for (int rx = 0; rx < RX; ++rx) a0[rx][rw] = _mm256_fmadd_ps(_mm256_loadu_ps(x + rx * x_stride + i), w0, a0[rx][rw]);
    }
  float tail[RX][RW] = {};
  for (; i < n; ++i)
    for (int rw = 0; rw < RW; ++rw) {
      const float wv = Load1(w + rw * w_stride, i);
      for (int rx = 0; rx < RX; ++rx) tail[rx][rw] = fma1(x[rx * x_stride + i], wv, tail[rx][rw]);
    }
  for (int rx = 0; rx < RX; ++rx)
    for (int rw = 0; rw < RW; ++rw) out[rx * RW + rw] = hsum256(_mm256_add_ps(a0[rx][rw], a1[rx][rw])) + tail[rx][rw];
}

template <typename W, __m256 (*Load8)(const W*, int64_t), float (*Load1)(const W*, int64_t)>
CHAI_AVX2 float dot1_avx2(const float* x, const W* w, int64_t n) {
  float out;
  dot_block_avx2<1, 1, W, Load8, Load1>(x, 0, w, 0, n, &out);
  return out;
}
template <typename W, __m256 (*Load8)(const W*, int64_t), float (*Load1)(const W*, int64_t)>
CHAI_AVX2 void dot1x4_avx2(const float* x, const W* rows, int64_t stride, int64_t n, float* out) {
  dot_block_avx2<1, 4, W, Load8, Load1>(x, 0, rows, stride, n, out);
}
template <typename W, __m256 (*Load8)(const W*, int64_t), float (*Load1)(const W*, int64_t)>
CHAI_AVX2 void dot4x_avx2(const float* x, int64_t x_stride, const W* w, int64_t n, float* out) {
  dot_block_avx2<4, 1, W, Load8, Load1>(x, x_stride, w, 0, n, out);
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
// The rows form keeps 8 lanes of acc in a register across all rows (one load and store per 8
// lanes instead of one per row); the tail is axpy's own scalar loop, row by row.
template <typename V, __m256 (*Load8)(const V*, int64_t), float (*Load1)(const V*, int64_t)>
CHAI_AVX2 void axpy_rows_avx2(float* acc, const float* w, const V* v, int64_t stride, int64_t rows, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 a = _mm256_loadu_ps(acc + i);
    for (int64_t j = 0; j < rows; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), Load8(v + j * stride, i), a);
    _mm256_storeu_ps(acc + i, a);
  }
  for (int64_t j = 0; j < rows; ++j)
    for (int64_t t = i; t < n; ++t) acc[t] += w[j] * Load1(v + j * stride, t);
}
#endif

const VectorKernels kScalar{
    dot1_scalar<float, load1>, dot1_scalar<uint16_t, load1_f16>, dot1_scalar<uint16_t, load1_bf16>, dot_q8_0_scalar,
    axpy_f32_scalar, axpy_f16_scalar,
    dot4x_scalar<float, load1>, dot4x_scalar<uint16_t, load1_f16>, dot4x_scalar<uint16_t, load1_bf16>,
    dot4x_by_rows<dot_q8_0_scalar>,
    dot1x4_scalar<float, load1>, dot1x4_scalar<uint16_t, load1_f16>,
    axpy_rows_by_rows<float, axpy_f32_scalar>, axpy_rows_by_rows<uint16_t, axpy_f16_scalar>};
#if CHAI_X86
const VectorKernels kAvx2{
    dot1_avx2<float, load8, load1>, dot1_avx2<uint16_t, load8_f16, load1_f16>, dot1_avx2<uint16_t, load8_bf16, load1_bf16>,
    dot_q8_0_avx2, axpy_f32_avx2, axpy_f16_avx2,
    dot4x_avx2<float, load8, load1>, dot4x_avx2<uint16_t, load8_f16, load1_f16>, dot4x_avx2<uint16_t, load8_bf16, load1_bf16>,
    dot4x_by_rows<dot_q8_0_avx2>,
    dot1x4_avx2<float, load8, load1>, dot1x4_avx2<uint16_t, load8_f16, load1_f16>,
    axpy_rows_avx2<float, load8, load1>, axpy_rows_avx2<uint16_t, load8_f16, load1_f16>};
#endif

SimdLevel detect_level() {
#if CHAI_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
      return SimdLevel::Avx512;
    return SimdLevel::Avx2;
  }
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

// CHAI_SIMD=scalar|avx2 caps the level (to compare kernels, or to rule one out); a level above
// what the CPU has is not granted.
SimdLevel capped_level() {
  const SimdLevel detected = detect_level();
  const char* cap = std::getenv("CHAI_SIMD");
  if (cap == nullptr || *cap == '\0') return detected;
  const std::string name(cap);
  for (SimdLevel level : {SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512})
    if (name == simd_level_name(level)) return std::min(level, detected);
  fail(ErrorCode::InvalidArgument, "CHAI_SIMD='" + name + "' is not a kernel level: use scalar, avx2 or avx512 (or unset it)");
}

SimdLevel simd_level() {
  static const SimdLevel level = capped_level();
  return level;
}

const char* simd_level_name(SimdLevel level) {
  return level == SimdLevel::Avx512 ? "avx512" : level == SimdLevel::Avx2 ? "avx2" : "scalar";
}

const VectorKernels& vector_kernels_for(SimdLevel level) {
#if CHAI_X86
  if (level != SimdLevel::Scalar) return kAvx2;
#endif
  (void)level;
  return kScalar;
}

const VectorKernels& vector_kernels() { return vector_kernels_for(simd_level()); }

}  // namespace chai
