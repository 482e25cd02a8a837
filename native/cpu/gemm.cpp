#include "gemm.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.h"

#include "x86.h"

namespace chai::cpu {

#if CHAI_X86
namespace {

// GCC 12's AVX-512 headers trip -Wuninitialized on their own undefined-vector temporaries (as in
// quant_dot.cpp); the warnings are about the headers, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define CHAI_AVX512_GEMM __attribute__((target("avx512f,avx2,fma,f16c")))

// The register tile: kRx activation rows × kRw weight rows, 24 zmm accumulators, 4 activation
// vectors and one weight vector in flight (of 32 registers).
constexpr int kRx = 4;
constexpr int kRw = 6;
// k per block: a tile's 4 packed activation rows (8 KB) and 6 widened weight rows (12 KB) stay in
// L1 (256 and 1024 measured no better on an Ice Lake Xeon).
constexpr int64_t kKc = 512;
// A work item: kPanelRows weight rows against kChunkRows activation rows; its accumulators
// (64 × 24 × 16 floats, 96 KB) and widened panel block (48 KB) stay in L2.
constexpr int64_t kPanelRows = 4 * kRw;
constexpr int64_t kChunkRows = 64;
constexpr int64_t kLanes = 16;

constexpr int64_t blocks_of(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per storage type: 16 weights widened to f32, 8 into the low lanes, and one (the AVX2 dot
// kernels' scalar tail load), all exact.
struct F32Weights {
  using T = float;
  CHAI_AVX512_GEMM static __m512 load16(const float* w) { return _mm512_loadu_ps(w); }
  CHAI_AVX512_GEMM static __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
  static float load1(const float* w) { return *w; }
};
struct F16Weights {
  using T = uint16_t;
  CHAI_AVX512_GEMM static __m512 load16(const uint16_t* w) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
  }
  CHAI_AVX512_GEMM static __m256 load8(const uint16_t* w) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))); }
  static float load1(const uint16_t* w) { return f16_to_f32(*w); }
};
struct BF16Weights {
  using T = uint16_t;
  CHAI_AVX512_GEMM static __m512 load16(const uint16_t* w) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
  }
  CHAI_AVX512_GEMM static __m256 load8(const uint16_t* w) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  static float load1(const uint16_t* w) { return bf16_to_f32(*w); }
};

// acc[rx][rw] (kPanelRows × 16 floats apart per x row) += x rows · w rows over `steps` steps of 16
// elements; `first` starts from zero. Both operands are packed so that each step reads them in
// order: x as [step][rx][16], w as [step][rw][16]. Lanes 0-7 and 8-15 of an accumulator are the
// AVX2 dot kernel's two 8-lane accumulators, so every lane sees the same fused multiply-adds in the
// same order.
template <int RX, int RW>
CHAI_AVX512_GEMM void micro_tile(const float* x, const float* w, int64_t steps, float* acc, bool first) {
  __m512 a[RX][RW];
#pragma GCC unroll 8
  for (int rx = 0; rx < RX; ++rx)
#pragma GCC unroll 8
    for (int rw = 0; rw < RW; ++rw)
      a[rx][rw] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + (rx * kPanelRows + rw) * kLanes);
  for (int64_t t = 0; t < steps; ++t, x += RX * kLanes, w += RW * kLanes) {
    __m512 xv[RX];
#pragma GCC unroll 8
    for (int rx = 0; rx < RX; ++rx) xv[rx] = _mm512_loadu_ps(x + rx * kLanes);
#pragma GCC unroll 8
    for (int rw = 0; rw < RW; ++rw) {
      const __m512 wv = _mm512_loadu_ps(w + rw * kLanes);
#pragma GCC unroll 8
      for (int rx = 0; rx < RX; ++rx) a[rx][rw] = _mm512_fmadd_ps(xv[rx], wv, a[rx][rw]);
    }
  }
#pragma GCC unroll 8
  for (int rx = 0; rx < RX; ++rx)
#pragma GCC unroll 8
    for (int rw = 0; rw < RW; ++rw) _mm512_storeu_ps(acc + (rx * kPanelRows + rw) * kLanes, a[rx][rw]);
}

using MicroTile = void (*)(const float*, const float*, int64_t, float*, bool);
// kMicroTiles[rx - 1][rw - 1]: the edges of the output take the smaller tiles.
const MicroTile kMicroTiles[kRx][kRw] = {
    {micro_tile<1, 1>, micro_tile<1, 2>, micro_tile<1, 3>, micro_tile<1, 4>, micro_tile<1, 5>, micro_tile<1, 6>},
    {micro_tile<2, 1>, micro_tile<2, 2>, micro_tile<2, 3>, micro_tile<2, 4>, micro_tile<2, 5>, micro_tile<2, 6>},
    {micro_tile<3, 1>, micro_tile<3, 2>, micro_tile<3, 3>, micro_tile<3, 4>, micro_tile<3, 5>, micro_tile<3, 6>},
    {micro_tile<4, 1>, micro_tile<4, 2>, micro_tile<4, 3>, micro_tile<4, 4>, micro_tile<4, 5>, micro_tile<4, 6>}};

// The end of one dot product, as the AVX2 kernel ends it: 8 more elements into the low lanes when
// at least 8 remain past the multiples of 16, the sum of the two halves, then the scalar tail.
template <typename Weights>
CHAI_AVX512_GEMM float finish_dot(const float* acc, const float* x, const typename Weights::T* w, int64_t k16, int64_t k) {
  __m256 low = _mm256_loadu_ps(acc);
  const __m256 high = _mm256_loadu_ps(acc + 8);
  int64_t i = k16;
  if (i + 8 <= k) {
    low = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), Weights::load8(w + i), low);
    i += 8;
  }
  float tail = 0;
  for (; i < k; ++i) tail = fma1(x[i], Weights::load1(w + i), tail);
  return hsum256(_mm256_add_ps(low, high)) + tail;
}

// The first 64-byte boundary in v after resizing it to hold n floats from there: the packed
// operands are read as whole zmm vectors, and one split across two cache lines costs two loads.
float* aligned_floats(std::vector<float>& v, size_t n) {
  if (v.size() < n + kLanes) v.resize(n + kLanes);
  const auto address = reinterpret_cast<uintptr_t>(v.data());
  return v.data() + (-address % 64) / sizeof(float);
}

// `rows` rows (stride apart) × `steps` steps of 16 elements from src, widened to f32 and packed as
// [step][row][16] into out: the order a micro tile reads them in.
template <typename Weights>
CHAI_AVX512_GEMM void pack_rows(const typename Weights::T* src, int64_t stride, int rows, int64_t steps, float* out) {
  for (int64_t t = 0; t < steps; ++t)
    for (int r = 0; r < rows; ++r, out += kLanes) _mm512_storeu_ps(out, Weights::load16(src + r * stride + t * kLanes));
}

template <typename Weights>
void gemm_typed(ThreadPool& pool, const float* x, const typename Weights::T* w, float* y, int64_t n, int64_t m, int64_t k) {
  const int64_t k16 = k / kLanes * kLanes, steps16 = k16 / kLanes;
  const int64_t blocks = std::max<int64_t>(1, blocks_of(k16, kKc));  // one (empty) block when k < 16
  const int64_t panels = blocks_of(m, kPanelRows), chunks = blocks_of(n, kChunkRows);
  // x packed once per call, 4 rows at a time as [step][row][16] over all of k16 (the last group may
  // hold fewer rows); every panel reads it from there.
  thread_local std::vector<float> packed_x;
  float* const xp = aligned_floats(packed_x, size_t(n * k16));  // this thread's buffer, which the workers fill and read
  pool.parallel_for(blocks_of(n, kRx), 4, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)
      pack_rows<F32Weights>(x + g * kRx * k, k, int(std::min<int64_t>(kRx, n - g * kRx)), steps16, xp + g * kRx * k16);
  });
  // Consecutive items share a chunk of activation rows (it stays in cache across panels).
  pool.parallel_for(panels * chunks, 1, [&](int64_t begin, int64_t end) {
    // Reused across calls: one forward pass must not allocate per matmul.
    thread_local std::vector<float> panel_store, acc_store;
    float* const panel = aligned_floats(panel_store, size_t(kPanelRows * kKc));
    float* const acc = aligned_floats(acc_store, size_t(kChunkRows * kPanelRows * kLanes));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t j0 = item % panels * kPanelRows, i0 = item / panels * kChunkRows;
      const int64_t rows_w = std::min(kPanelRows, m - j0), rows_x = std::min(kChunkRows, n - i0);
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t k0 = b * kKc, steps = std::min(kKc, k16 - k0) / kLanes;
        // The panel's block of weights, widened, one group of kRw rows after another.
        for (int64_t s = 0; s < rows_w; s += kRw)
          pack_rows<Weights>(w + (j0 + s) * k + k0, k, int(std::min<int64_t>(kRw, rows_w - s)), steps, panel + s * kKc);
        // The weight rows of a tile stay in L1 while the chunk's activation rows go past them.
        for (int64_t s = 0; s < rows_w; s += kRw) {
          const int rw = int(std::min<int64_t>(kRw, rows_w - s));
          for (int64_t i = 0; i < rows_x; i += kRx) {
            const int rx = int(std::min<int64_t>(kRx, rows_x - i));
            kMicroTiles[rx - 1][rw - 1](xp + (i0 + i) * k16 + k0 * rx, panel + s * kKc, steps,
                                        acc + (i * kPanelRows + s) * kLanes, b == 0);
          }
        }
      }
      for (int64_t i = 0; i < rows_x; ++i)
        for (int64_t j = 0; j < rows_w; ++j)
          y[(i0 + i) * m + j0 + j] =
              finish_dot<Weights>(acc + (i * kPanelRows + j) * kLanes, x + (i0 + i) * k, w + (j0 + j) * k, k16, k);
    }
  });
}

// Decoding (fewer than kRx rows of x): RX x rows against RW ≤ kGemvRows weight rows read in place,
// their rows streamed side by side (one stream at a time left a single thread well short of the
// memory's read bandwidth: 7.6 against 11+ GB/s for four, measured on the 413M model's shapes).
// The same lanes and tails as the GEMM, so decoding and prefill agree bit for bit.
constexpr int kGemvRows = 4;

template <typename Weights, int RX, int RW>
CHAI_AVX512_GEMM void gemv_tile(const float* x, int64_t k, const typename Weights::T* w, float* y, int64_t m) {
  const int64_t k16 = k / kLanes * kLanes;
  __m512 a[RX][RW];
#pragma GCC unroll 8
  for (int rx = 0; rx < RX; ++rx)
#pragma GCC unroll 8
    for (int rw = 0; rw < RW; ++rw) a[rx][rw] = _mm512_setzero_ps();
  for (int64_t t = 0; t < k16; t += kLanes) {
    __m512 xv[RX];
#pragma GCC unroll 8
    for (int rx = 0; rx < RX; ++rx) xv[rx] = _mm512_loadu_ps(x + rx * k + t);
#pragma GCC unroll 8
    for (int rw = 0; rw < RW; ++rw) {
      const __m512 wv = Weights::load16(w + rw * k + t);
#pragma GCC unroll 8
      for (int rx = 0; rx < RX; ++rx) a[rx][rw] = _mm512_fmadd_ps(xv[rx], wv, a[rx][rw]);
    }
  }
  alignas(64) float acc[kLanes];
#pragma GCC unroll 8
  for (int rx = 0; rx < RX; ++rx)
#pragma GCC unroll 8
    for (int rw = 0; rw < RW; ++rw) {
      _mm512_store_ps(acc, a[rx][rw]);
      y[rx * m + rw] = finish_dot<Weights>(acc, x + rx * k, w + rw * k, k16, k);
    }
}

template <typename Weights>
void gemv_typed(ThreadPool& pool, const float* x, const typename Weights::T* w, float* y, int64_t n, int64_t m, int64_t k) {
  using Tile = void (*)(const float*, int64_t, const typename Weights::T*, float*, int64_t);
  // kTiles[rx - 1][rw - 1]; the last group of weight rows may hold fewer than kGemvRows.
  static const Tile kTiles[kRx - 1][kGemvRows] = {
      {gemv_tile<Weights, 1, 1>, gemv_tile<Weights, 1, 2>, gemv_tile<Weights, 1, 3>, gemv_tile<Weights, 1, 4>},
      {gemv_tile<Weights, 2, 1>, gemv_tile<Weights, 2, 2>, gemv_tile<Weights, 2, 3>, gemv_tile<Weights, 2, 4>},
      {gemv_tile<Weights, 3, 1>, gemv_tile<Weights, 3, 2>, gemv_tile<Weights, 3, 3>, gemv_tile<Weights, 3, 4>}};
  const int64_t groups = blocks_of(m, kGemvRows);
  // Below about 32k multiply-adds, handing work to other threads costs more than it saves.
  const int64_t grain = n * m * k < (int64_t(1) << 15) ? groups : 16;
  pool.parallel_for(groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t j = g * kGemvRows;
      const int rw = int(std::min<int64_t>(kGemvRows, m - j));
      kTiles[n - 1][rw - 1](x, k, w + j * k, y + j, m);
    }
  });
}

#pragma GCC diagnostic pop

}  // namespace
#endif

bool gemm_available(SimdLevel level) { return CHAI_X86 && level == SimdLevel::Avx512; }

void gemm_float_weights(ThreadPool& pool, const float* x, const void* w, DType w_dtype, float* y, int64_t n, int64_t m,
                        int64_t k) {
#if CHAI_X86
  const bool few_rows = n < kRx;
  switch (w_dtype) {
    case DType::F32: {
      const auto* wt = static_cast<const float*>(w);
      return few_rows ? gemv_typed<F32Weights>(pool, x, wt, y, n, m, k) : gemm_typed<F32Weights>(pool, x, wt, y, n, m, k);
    }
    case DType::F16: {
      const auto* wt = static_cast<const uint16_t*>(w);
      return few_rows ? gemv_typed<F16Weights>(pool, x, wt, y, n, m, k) : gemm_typed<F16Weights>(pool, x, wt, y, n, m, k);
    }
    case DType::BF16: {
      const auto* wt = static_cast<const uint16_t*>(w);
      return few_rows ? gemv_typed<BF16Weights>(pool, x, wt, y, n, m, k) : gemm_typed<BF16Weights>(pool, x, wt, y, n, m, k);
    }
    default: break;
  }
#else
  (void)pool, (void)x, (void)w, (void)y, (void)n, (void)m, (void)k;
#endif
  fail(ErrorCode::Internal, std::string("gemm_float_weights: no AVX-512 GEMM for ") + dtype_name(w_dtype) + " weights here");
}

}  // namespace chai::cpu
