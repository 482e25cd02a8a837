#include "packed_kquant.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../core/error.h"
#include "../core/quant_blocks.h"
#include "../core/thread_pool.h"
#include "quant_dot.h"
#include "x86.h"

namespace chai {
namespace {

// One super-block (256 values) of a panel of 16 rows. values: per 4 values of the block, a 64-byte
// vector of those 4 values of each row (row j at bytes 4j..4j+3), unsigned. Per row: d and dmin of
// the decoded form (quant_blocks.h) and its scales per group of Groups; pairs[p] are the int16
// pairs (lanes) that multiply the activation's sums of groups 2p and 2p + 1 (the min term).
template <int Groups, int ValueBytes>
struct alignas(64) PanelBlock {
  uint8_t values[ValueBytes];
  float d[kPanelRows];
  float dmin[kPanelRows];
  int8_t scale[Groups][kPanelRows];
  int8_t pairs[8][kPanelRows][2];
};

template <typename Block>
struct PackTraits;
// Q4_K: values 0..15, two per byte (low nibble: 4 values of a sub-block's first half, high nibble:
// the same 4 of its second half), one scale per sub-block of 32, mins in the pairs.
template <>
struct PackTraits<BlockQ4_K> {
  static constexpr int kScaleValues = 32, kOffset = 0;
  static constexpr bool kNibbles = true;
  using Panel = PanelBlock<8, 2048>;
};
// Q6_K: values q + 32 (0..63), one per byte, a scale per group of 16; the -32 · scale term is the
// min term (pairs = scales, dmin = -32 · d).
template <>
struct PackTraits<BlockQ6_K> {
  static constexpr int kScaleValues = 16, kOffset = 32;
  static constexpr bool kNibbles = false;
  using Panel = PanelBlock<16, 4096>;
};

template <typename Block>
void pack_panels(const TensorView& w, typename PackTraits<Block>::Panel* out) {
  using T = PackTraits<Block>;
  const int64_t blocks = w.cols / kSuperBlock;
  const auto* rows = w.as<const Block>();
  DecodedBlock dec;
  for (int64_t p = 0; p < w.rows / kPanelRows; ++p)
    for (int64_t b = 0; b < blocks; ++b) {
      auto& o = out[p * blocks + b];
      std::memset(&o, 0, sizeof o);
      for (int j = 0; j < kPanelRows; ++j) {
        const Block& blk = rows[(p * kPanelRows + j) * blocks + b];
        decode_scales(blk, dec);
        decode_quants(blk, dec.q);
        o.d[j] = dec.d;
        o.dmin[j] = T::kOffset ? -float(T::kOffset) * dec.d : dec.dmin;
        for (int g = 0; g < kSuperBlock / T::kScaleValues; ++g) o.scale[g][j] = int8_t(dec.scale[g * T::kScaleValues / kGroup]);
        for (int pr = 0; pr < 8; ++pr)
          for (int h = 0; h < 2; ++h) o.pairs[pr][j][h] = int8_t(T::kOffset ? dec.scale[2 * pr + h] : dec.min[2 * pr + h]);
        for (int v = 0; v < kSuperBlock; ++v) {
          const auto u = uint8_t(dec.q[v] + T::kOffset);
          const int t = v / 4, byte = 4 * j + v % 4;
          if constexpr (T::kNibbles) {
            const int within = t % 8;  // 4-value step within the sub-block t / 8
            o.values[64 * (4 * (t / 8) + within % 4) + byte] |= uint8_t(within < 4 ? u : u << 4);
          } else {
            o.values[64 * t + byte] = u;
          }
        }
      }
    }
}

#if CHAI_X86
#define CHAI_AVX512_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

CHAI_AVX512_VNNI inline __m512i broadcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// R activation rows (x_stride bytes apart) against one panel: y[r · y_stride + 0..15].
template <typename Block, int R>
CHAI_AVX512_VNNI void panel_rows(const uint8_t* x, int64_t x_stride, const typename PackTraits<Block>::Panel* panel,
                                 int64_t blocks, float* y, int64_t y_stride) {
  using T = PackTraits<Block>;
  constexpr int kGroups = kSuperBlock / T::kScaleValues, kStepsPerGroup = T::kScaleValues / 4;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  for (int64_t b = 0; b < blocks; ++b) {
    const auto& P = panel[b];
    const ActivationBlock<kSuperBlock>* a[R];
    for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActivationBlock<kSuperBlock>*>(x + r * x_stride) + b;
    __m512i total[R], pair[R];
    for (int r = 0; r < R; ++r) total[r] = pair[r] = _mm512_setzero_si512();
    for (int g = 0; g < kGroups; ++g) {
      __m512i group[R];
      for (int r = 0; r < R; ++r) group[r] = _mm512_setzero_si512();
      if constexpr (T::kNibbles) {
        for (int i = 0; i < 4; ++i) {
          const __m512i v = _mm512_load_si512(P.values + 64 * (4 * g + i));
          const __m512i low = _mm512_and_si512(v, nibble), high = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
          for (int r = 0; r < R; ++r) {
            group[r] = _mm512_dpbusd_epi32(group[r], low, broadcast4(a[r]->q + 4 * (8 * g + i)));
            group[r] = _mm512_dpbusd_epi32(group[r], high, broadcast4(a[r]->q + 4 * (8 * g + 4 + i)));
          }
        }
      } else {
        for (int i = 0; i < kStepsPerGroup; ++i) {
          const int t = kStepsPerGroup * g + i;
          const __m512i v = _mm512_load_si512(P.values + 64 * t);
          for (int r = 0; r < R; ++r) group[r] = _mm512_dpbusd_epi32(group[r], v, broadcast4(a[r]->q + 4 * t));
        }
      }
      const __m512i scale = _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(P.scale[g])));
      for (int r = 0; r < R; ++r) total[r] = _mm512_add_epi32(total[r], _mm512_mullo_epi32(group[r], scale));
    }
    for (int p = 0; p < 8; ++p) {
      const __m512i weights = _mm512_cvtepi8_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(P.pairs[p])));
      for (int r = 0; r < R; ++r) pair[r] = _mm512_dpwssd_epi32(pair[r], weights, broadcast4(a[r]->sums + 2 * p));
    }
    const __m512 d = _mm512_load_ps(P.d), dmin = _mm512_load_ps(P.dmin);
    for (int r = 0; r < R; ++r) {
      const __m512 xd = _mm512_set1_ps(a[r]->d);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[r]), _mm512_mul_ps(d, xd), acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair[r]), _mm512_mul_ps(dmin, xd), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + r * y_stride, acc[r]);
}
#pragma GCC diagnostic pop

template <typename Block>
void matmul_panels(ThreadPool& pool, const uint8_t* x, int64_t x_row, const TensorView& w, float* y, int64_t n) {
  using Panel = typename PackTraits<Block>::Panel;
  const auto* panels = static_cast<const Panel*>(w.packed);
  const int64_t m = w.rows, blocks = w.cols / kSuperBlock, n_panels = m / kPanelRows;
  constexpr int64_t kTileRows = 32;  // activation rows per task: a panel is reused from L1 for them
  const int64_t row_tiles = (n + kTileRows - 1) / kTileRows;
  // Below about 32k multiply-adds, handing work to other threads costs more than it saves.
  const int64_t tasks = n_panels * row_tiles;
  const int64_t grain = n * m * w.cols < (int64_t(1) << 15) ? tasks : 1;
  pool.parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t p = t % n_panels, i0 = (t / n_panels) * kTileRows, i1 = std::min(n, i0 + kTileRows);
      const Panel* panel = panels + p * blocks;
      const auto at = [&](int64_t i) { return x + i * x_row; };
      float* out = y + p * kPanelRows;
      int64_t i = i0;
      for (; i + 4 <= i1; i += 4) panel_rows<Block, 4>(at(i), x_row, panel, blocks, out + i * m, m);
      switch (i1 - i) {
        case 3: panel_rows<Block, 3>(at(i), x_row, panel, blocks, out + i * m, m); break;
        case 2: panel_rows<Block, 2>(at(i), x_row, panel, blocks, out + i * m, m); break;
        case 1: panel_rows<Block, 1>(at(i), x_row, panel, blocks, out + i * m, m); break;
        default: break;
      }
    }
  });
}
#endif

template <typename Block>
std::shared_ptr<const void> pack(const TensorView& w) {
  using Panel = typename PackTraits<Block>::Panel;
  const size_t bytes = size_t(w.rows / kPanelRows) * size_t(w.cols / kSuperBlock) * sizeof(Panel);
  void* memory = std::aligned_alloc(alignof(Panel), bytes);
  CHAI_REQUIRE(memory != nullptr, ErrorCode::DeviceOom, "out of host memory packing a weight of " + std::to_string(bytes) + " bytes");
  std::shared_ptr<void> owned(memory, std::free);
  pack_panels<Block>(w, static_cast<Panel*>(memory));
  return owned;
}

}  // namespace

std::shared_ptr<const void> pack_kquant_weight(const TensorView& w, SimdLevel level) {
  if (!CHAI_X86 || level < SimdLevel::Avx512 || w.rows % kPanelRows != 0 || w.cols % kSuperBlock != 0) return nullptr;
  if (w.dtype == DType::Q4_K) return pack<BlockQ4_K>(w);
  if (w.dtype == DType::Q6_K) return pack<BlockQ6_K>(w);
  return nullptr;
}

void matmul_packed_kquant(ThreadPool& pool, const uint8_t* x_rows, int64_t x_row_bytes, const TensorView& w, float* y,
                          int64_t n) {
#if CHAI_X86
  if (w.dtype == DType::Q4_K) return matmul_panels<BlockQ4_K>(pool, x_rows, x_row_bytes, w, y, n);
  if (w.dtype == DType::Q6_K) return matmul_panels<BlockQ6_K>(pool, x_rows, x_row_bytes, w, y, n);
#else
  (void)pool, (void)x_rows, (void)x_row_bytes, (void)y, (void)n;
#endif
  fail(ErrorCode::InvalidArgument, std::string("no packed matmul for ") + dtype_name(w.dtype));
}

}  // namespace chai
