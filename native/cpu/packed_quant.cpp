#include "packed_quant.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "../core/error.h"
#include "../core/quant_blocks.h"
#include "../core/thread_pool.h"
#include "quant_dot.h"
#include "x86.h"

namespace chai {
namespace {

// One super-block (256 values) of a panel of 16 rows, values unsigned (q + offset). Per 4 values
// ("step") a 64-byte vector holds those 4 values of each row (row j in bytes 4j..4j+3). The low 4
// bits of each value are nibbles: per 32 values ("window" w, steps 8w..8w+7), vector 4w + i holds
// step 8w + i in its low and step 8w + 4 + i in its high nibbles. Values of more than 4 bits keep
// their high bits in planes: per window, HighBits vectors; step s of the window has bits
// (HighBits·s) % 8 .. of plane vector HighBits·s / 8. Per row: d and dmin of the decoded form
// (quant_blocks.h) and its scale per scale group; the min term Σ dmin·min[g]·Σx[g] runs on int16
// pairs (min[2p], min[2p + 1]) against the activation's sums of groups 2p and 2p + 1.
// Types with a scale per 16 values (Q6_K) have their scales as min pairs, read from `scale`.
template <int Groups>
struct MinPairs {
  int8_t mins[8][kPanelRows][2];
};
template <>
struct MinPairs<16> {};

template <int HighBits, int Groups>
struct alignas(64) PanelBlock : MinPairs<Groups> {
  static constexpr int kHighBits = HighBits, kGroups = Groups;
  uint8_t nibbles[32][64];
  uint8_t high[8 * HighBits][64];
  float d[kPanelRows];
  float dmin[kPanelRows];
  int8_t scale[Groups][kPanelRows];
};

// How a block type packs: the offset that makes its values unsigned (q + offset) and its panel block.
// Lookup types (IQ4_NL, IQ4_XS) keep their 4-bit indices in the nibbles; the kernel maps them to
// table value + 128 (vpshufb). Their unsigned values reach 241, past what AVX2's int16 pair sums
// hold, so they pack for AVX-512 only.
template <int Offset, typename PanelType, bool Lookup = false>
struct PackAs {
  static constexpr int kOffset = Offset;
  static constexpr bool kLookup = Lookup;
  using Panel = PanelType;
};
template <typename Block>
struct PackTraits;
// Q4_K / Q5_K: values 0..15 / 0..31, a scale and a min per sub-block of 32.
template <>
struct PackTraits<BlockQ4_K> : PackAs<0, PanelBlock<0, 8>> {};
template <>
struct PackTraits<BlockQ5_K> : PackAs<0, PanelBlock<1, 8>> {};
// Q6_K: values q + 32 (0..63), a scale per group of 16; the -32 · scale term is the min term
// (min = scale, dmin = -32 · d).
template <>
struct PackTraits<BlockQ6_K> : PackAs<32, PanelBlock<2, 16>> {};
// Q3_K: values q + 4 (0..7, in nibbles), a signed scale per group of 16, as Q6_K otherwise.
template <>
struct PackTraits<BlockQ3_K> : PackAs<4, PanelBlock<0, 16>> {};
// IQ4_XS: table values + 128, a signed scale per sub-block of 32; the -128 · scale term is the min term.
template <>
struct PackTraits<BlockIQ4_XS> : PackAs<128, PanelBlock<0, 8>, true> {};

// 32-value blocks (Q4_0, Q4_1, Q5_0, Q5_1): one window per block, and per row d and the min factor as
// the blocks store them (f16). Q4_0 / Q5_0 are stored as q + 8 / q + 16, whose -8·d / -16·d the
// kernel forms (an exact product) and applies, like a min, to the activation block's sum.
template <int HighBits>
struct alignas(64) SmallPanelBlock {
  static constexpr int kHighBits = HighBits;
  uint8_t nibbles[4][64];
  uint8_t high[HighBits][64];
  uint16_t d[kPanelRows];
  uint16_t m[kPanelRows];  // Q4_1 / Q5_1: the block's min m; zero for the offset types
};
template <>
struct PackTraits<BlockQ4_0> : PackAs<8, SmallPanelBlock<0>> {};
template <>
struct PackTraits<BlockQ4_1> : PackAs<0, SmallPanelBlock<0>> {};
template <>
struct PackTraits<BlockQ5_0> : PackAs<16, SmallPanelBlock<1>> {};
template <>
struct PackTraits<BlockQ5_1> : PackAs<0, SmallPanelBlock<1>> {};
template <>
struct PackTraits<BlockIQ4_NL> : PackAs<128, SmallPanelBlock<0>, true> {};

// The nibble whose IQ4_NL / IQ4_XS table value is `value`.
uint8_t iq4_index(int8_t value) {
  return uint8_t(std::find(std::begin(kIq4nlValues), std::end(kIq4nlValues), value) - std::begin(kIq4nlValues));
}

// Bytes per 16 rows × 256 values (the README quotes them): Q4_K 2560 (stored 2304), Q5_K 3072 (2816),
// Q6_K 3456 (3360), Q3_K 2432 (1760), IQ4_XS 2560 (2176); per 16 rows × 32 values: Q4_0 and IQ4_NL 320
// (288), Q4_1 320 (320), Q5_0 384 (352), Q5_1 384 (384).
static_assert(sizeof(PackTraits<BlockQ4_K>::Panel) == 2560 && sizeof(PackTraits<BlockQ5_K>::Panel) == 3072 &&
                  sizeof(PackTraits<BlockQ6_K>::Panel) == 3456 && sizeof(PackTraits<BlockQ3_K>::Panel) == 2432 &&
                  sizeof(SmallPanelBlock<0>) == 320 &&
                  sizeof(SmallPanelBlock<1>) == 384,
              "packed panel sizes");

template <typename Block>
void pack_panels(const TensorView& w, typename PackTraits<Block>::Panel* out) {
  using T = PackTraits<Block>;
  using Panel = typename T::Panel;
  constexpr int V = kBlockValues<Block>, hb = Panel::kHighBits;
  const int64_t blocks = w.cols / V;
  const auto* rows = w.as<const Block>();
  DecodedBlock dec;
  for (int64_t p = 0; p < w.rows / kPanelRows; ++p)
    for (int64_t b = 0; b < blocks; ++b) {
      Panel& o = out[p * blocks + b];
      std::memset(&o, 0, sizeof o);
      for (int j = 0; j < kPanelRows; ++j) {
        const Block& blk = rows[(p * kPanelRows + j) * blocks + b];
        decode_scales(blk, dec);
        decode_quants(blk, dec.q);
        if constexpr (V == 32) {
          o.d[j] = blk.d;
          if constexpr (T::kOffset == 0) o.m[j] = blk.m;
        } else {
          constexpr int kScaleValues = kSuperBlock / Panel::kGroups;
          o.d[j] = dec.d;
          o.dmin[j] = T::kOffset ? -float(T::kOffset) * dec.d : dec.dmin;
          for (int g = 0; g < Panel::kGroups; ++g) o.scale[g][j] = int8_t(dec.scale[g * kScaleValues / kGroup]);
          if constexpr (Panel::kGroups == 8)
            for (int pr = 0; pr < 8; ++pr)
              for (int h = 0; h < 2; ++h) o.mins[pr][j][h] = int8_t(T::kOffset ? dec.scale[2 * pr + h] : dec.min[2 * pr + h]);
        }
        for (int v = 0; v < V; ++v) {
          const auto u = T::kLookup ? iq4_index(dec.q[v]) : uint8_t(dec.q[v] + T::kOffset);
          const int window = v / 32, step = v % 32 / 4, byte = 4 * j + v % 4;
          o.nibbles[4 * window + step % 4][byte] |= uint8_t(step < 4 ? u & 0xF : (u & 0xF) << 4);
          if constexpr (hb > 0) o.high[hb * window + hb * step / 8][byte] |= uint8_t((u >> 4) << (hb * step % 8));
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

// Decoding streams the weights once, faster than the hardware prefetcher fetches them on its own
// (measured: 1.4x decode on Q6_K): while a block runs, part `part` of `parts` of the panel's block
// `ahead` is requested (256-value blocks: an eighth of block b + 2 per window; 32-value blocks, 5-6
// lines each: all of block b + 8). Addresses past the weights are only hints, never read.
template <typename Panel>
CHAI_AVX2 inline void prefetch_part(const Panel* panel, int64_t ahead, int part, int parts) {
  constexpr int kLines = int(sizeof(Panel) / 64);
  const int per_part = (kLines + parts - 1) / parts;
  const uintptr_t block = reinterpret_cast<uintptr_t>(panel) + uintptr_t(ahead) * sizeof(Panel);
  for (int l = part * per_part; l < std::min(kLines, (part + 1) * per_part); ++l)
    _mm_prefetch(reinterpret_cast<const char*>(block + 64 * uintptr_t(l)), _MM_HINT_T0);
}

// IQ4 table values + 128 in every 128-bit lane, for vpshufb on nibbles.
CHAI_AVX512_VNNI inline __m512i iq4_lookup_unsigned() {
  alignas(16) uint8_t table[16];
  for (int i = 0; i < 16; ++i) table[i] = uint8_t(kIq4nlValues[i] + 128);
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(table)));
}

// Bits 4.. of step s's values (0..7 within a window) from the window's high-bit planes.
template <int HighBits>
CHAI_AVX512_VNNI inline __m512i high_bits(const __m512i* plane, int s) {
  const int offset = HighBits * s % 8;
  const __m512i v = plane[HighBits * s / 8];
  const __m512i at4 = offset <= 4 ? _mm512_sll_epi16(v, _mm_cvtsi32_si128(4 - offset)) : _mm512_srl_epi16(v, _mm_cvtsi32_si128(offset - 4));
  return _mm512_and_si512(at4, _mm512_set1_epi8(char(((1 << HighBits) - 1) << 4)));
}

// The unsigned values of steps i and 4 + i of a window from its nibble vector v (and high-bit
// planes; lookup types through the IQ4 table).
template <typename Block>
CHAI_AVX512_VNNI inline void window_steps(__m512i v, const __m512i* plane, int i, __m512i lookup, __m512i* low, __m512i* high) {
  constexpr int hb = PackTraits<Block>::Panel::kHighBits;
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  *low = _mm512_and_si512(v, nibble);
  *high = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
  if constexpr (hb > 0) {
    *low = _mm512_or_si512(*low, high_bits<hb>(plane, i));
    *high = _mm512_or_si512(*high, high_bits<hb>(plane, 4 + i));
  }
  if constexpr (PackTraits<Block>::kLookup) {
    *low = _mm512_shuffle_epi8(lookup, *low);
    *high = _mm512_shuffle_epi8(lookup, *high);
  }
}

CHAI_AVX512_VNNI inline __m512i group_scales(const int8_t* per_row) {
  return _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(per_row)));
}

// R activation rows (x_stride bytes apart) against one panel: y[r · y_stride + 0..15].
template <typename Block, int R>
CHAI_AVX512_VNNI void panel_rows(const uint8_t* x, int64_t x_stride, const typename PackTraits<Block>::Panel* panel,
                                 int64_t blocks, float* y, int64_t y_stride) {
  using Panel = typename PackTraits<Block>::Panel;
  constexpr int hb = Panel::kHighBits;
  constexpr bool kGroupPerHalfWindow = Panel::kGroups == 16;  // else one group per window of 32
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i lookup = PackTraits<Block>::kLookup ? iq4_lookup_unsigned() : _mm512_setzero_si512();  // lookup types only
  for (int64_t b = 0; b < blocks; ++b) {
    const Panel& P = panel[b];
    const ActivationBlock<kSuperBlock>* a[R];
    for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActivationBlock<kSuperBlock>*>(x + r * x_stride) + b;
    __m512i total[R], pair[R];
    for (int r = 0; r < R; ++r) total[r] = pair[r] = _mm512_setzero_si512();
    for (int w = 0; w < 8; ++w) {
      prefetch_part(panel, b + 2, w, 8);
      __m512i plane[hb > 0 ? hb : 1];
      for (int h = 0; h < hb; ++h) plane[h] = _mm512_load_si512(P.high[hb * w + h]);
      __m512i first[R], second[R];  // sums of the window's first and second 16 values
      for (int r = 0; r < R; ++r) first[r] = second[r] = _mm512_setzero_si512();
      for (int i = 0; i < 4; ++i) {
        __m512i low, high;
        window_steps<Block>(_mm512_load_si512(P.nibbles[4 * w + i]), plane, i, lookup, &low, &high);
        for (int r = 0; r < R; ++r) {
          first[r] = _mm512_dpbusd_epi32(first[r], low, broadcast4(a[r]->q + 32 * w + 4 * i));
          second[r] = _mm512_dpbusd_epi32(second[r], high, broadcast4(a[r]->q + 32 * w + 16 + 4 * i));
        }
      }
      if constexpr (kGroupPerHalfWindow) {
        const __m512i s0 = group_scales(P.scale[2 * w]), s1 = group_scales(P.scale[2 * w + 1]);
        for (int r = 0; r < R; ++r)
          total[r] = _mm512_add_epi32(total[r], _mm512_add_epi32(_mm512_mullo_epi32(first[r], s0), _mm512_mullo_epi32(second[r], s1)));
      } else {
        const __m512i s = group_scales(P.scale[w]);
        for (int r = 0; r < R; ++r) total[r] = _mm512_add_epi32(total[r], _mm512_mullo_epi32(_mm512_add_epi32(first[r], second[r]), s));
      }
    }
    for (int p = 0; p < 8; ++p) {
      __m512i mins;
      if constexpr (kGroupPerHalfWindow) {
        const __m128i s0 = _mm_load_si128(reinterpret_cast<const __m128i*>(P.scale[2 * p]));
        const __m128i s1 = _mm_load_si128(reinterpret_cast<const __m128i*>(P.scale[2 * p + 1]));
        mins = _mm512_cvtepi8_epi16(_mm256_set_m128i(_mm_unpackhi_epi8(s0, s1), _mm_unpacklo_epi8(s0, s1)));
      } else {
        mins = _mm512_cvtepi8_epi16(_mm256_load_si256(reinterpret_cast<const __m256i*>(P.mins[p])));
      }
      for (int r = 0; r < R; ++r) pair[r] = _mm512_dpwssd_epi32(pair[r], mins, broadcast4(a[r]->sums + 2 * p));
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

// 32-value blocks: one window per block; per row and block the integer sum times d, plus the
// min factor (m, or -offset·d) times the activation block's sum, both scaled by the block's x d.
template <typename Block, int R>
CHAI_AVX512_VNNI void small_panel_rows(const uint8_t* x, int64_t x_stride, const typename PackTraits<Block>::Panel* panel,
                                       int64_t blocks, float* y, int64_t y_stride) {
  using Panel = typename PackTraits<Block>::Panel;
  constexpr int hb = Panel::kHighBits;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i lookup = PackTraits<Block>::kLookup ? iq4_lookup_unsigned() : _mm512_setzero_si512();  // lookup types only
  for (int64_t b = 0; b < blocks; ++b) {
    const Panel& P = panel[b];
    prefetch_part(panel, b + 8, 0, 1);
    const ActivationBlock<32>* a[R];
    for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActivationBlock<32>*>(x + r * x_stride) + b;
    __m512i plane[hb > 0 ? hb : 1];
    for (int h = 0; h < hb; ++h) plane[h] = _mm512_load_si512(P.high[h]);
    __m512i sum[R];
    for (int r = 0; r < R; ++r) sum[r] = _mm512_setzero_si512();
    for (int i = 0; i < 4; ++i) {
      __m512i low, high;
      window_steps<Block>(_mm512_load_si512(P.nibbles[i]), plane, i, lookup, &low, &high);
      for (int r = 0; r < R; ++r) {
        sum[r] = _mm512_dpbusd_epi32(sum[r], low, broadcast4(a[r]->q + 4 * i));
        sum[r] = _mm512_dpbusd_epi32(sum[r], high, broadcast4(a[r]->q + 16 + 4 * i));
      }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(P.d)));
    const __m512 dmin = PackTraits<Block>::kOffset ? _mm512_mul_ps(d, _mm512_set1_ps(-float(PackTraits<Block>::kOffset)))
                                                   : _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(P.m)));
    for (int r = 0; r < R; ++r) {
      const __m512 xd = _mm512_set1_ps(a[r]->d);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[r]), _mm512_mul_ps(d, xd), acc[r]);
      acc[r] = _mm512_fmadd_ps(dmin, _mm512_set1_ps(a[r]->d * float(a[r]->sums[0] + a[r]->sums[1])), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + r * y_stride, acc[r]);
}

// The AVX2 twin (no VNNI): per half panel of 8 rows, maddubs gives int16 pair sums of 4-value
// steps, summed over as many steps as int16 holds (kStepsInt16), then madd with the group's scale
// (in both int16 of each lane) adds them to the int32 totals. The integer totals are exact, and the
// float steps are the AVX-512 kernel's, so both give the same bits.
template <typename Panel>
inline constexpr int kStepsInt16 = 32767 / (((16 << Panel::kHighBits) - 1) * 127 * 2);

CHAI_AVX2 inline __m256i half_vector(const uint8_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
CHAI_AVX2 inline __m256i broadcast4_avx2(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}
// Eight int8 scales as int16 pairs (s, s).
CHAI_AVX2 inline __m256i scale_pairs(const int8_t* per_row) {
  const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(per_row)));
  return _mm256_blend_epi16(v, _mm256_slli_epi32(v, 16), 0xAA);
}
template <int HighBits>
CHAI_AVX2 inline __m256i high_bits_avx2(const __m256i* plane, int s) {
  const int offset = HighBits * s % 8;
  const __m256i v = plane[HighBits * s / 8];
  const __m256i at4 = offset <= 4 ? _mm256_sll_epi16(v, _mm_cvtsi32_si128(4 - offset)) : _mm256_srl_epi16(v, _mm_cvtsi32_si128(offset - 4));
  return _mm256_and_si256(at4, _mm256_set1_epi8(char(((1 << HighBits) - 1) << 4)));
}

// window_steps for a half panel (no lookup types: they pack for AVX-512 only).
template <typename Block>
CHAI_AVX2 inline void window_steps_avx2(__m256i v, const __m256i* plane, int i, __m256i* low, __m256i* high) {
  constexpr int hb = PackTraits<Block>::Panel::kHighBits;
  static_assert(!PackTraits<Block>::kLookup, "lookup types pack for AVX-512 only");
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  *low = _mm256_and_si256(v, nibble);
  *high = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
  if constexpr (hb > 0) {
    *low = _mm256_or_si256(*low, high_bits_avx2<hb>(plane, i));
    *high = _mm256_or_si256(*high, high_bits_avx2<hb>(plane, 4 + i));
  }
}

template <typename Block, int R>
CHAI_AVX2 void panel_rows_avx2(const uint8_t* x, int64_t x_stride, const typename PackTraits<Block>::Panel* panel,
                               int64_t blocks, float* y, int64_t y_stride) {
  using Panel = typename PackTraits<Block>::Panel;
  constexpr int hb = Panel::kHighBits, kFlush = kStepsInt16<Panel> < 4 ? kStepsInt16<Panel> : 4;
  constexpr bool kGroupPerHalfWindow = Panel::kGroups == 16;
  for (int half = 0; half < 2; ++half) {
    const int h8 = 8 * half, h32 = 32 * half;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const Panel& P = panel[b];
      const ActivationBlock<kSuperBlock>* a[R];
      for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActivationBlock<kSuperBlock>*>(x + r * x_stride) + b;
      __m256i total[R], pair[R];
      for (int r = 0; r < R; ++r) total[r] = pair[r] = _mm256_setzero_si256();
      for (int w = 0; w < 8; ++w) {
        if (half == 0) prefetch_part(panel, b + 2, w, 8);  // the second half finds the panel in cache
        __m256i plane[hb > 0 ? hb : 1];
        for (int h = 0; h < hb; ++h) plane[h] = half_vector(P.high[hb * w + h] + h32);
        const __m256i s_first = scale_pairs((kGroupPerHalfWindow ? P.scale[2 * w] : P.scale[w]) + h8);
        const __m256i s_second = kGroupPerHalfWindow ? scale_pairs(P.scale[2 * w + 1] + h8) : s_first;
        __m256i first[R], second[R];  // int16 pair sums of the window's first and second 16 values
        for (int i = 0; i < 4; ++i) {
          __m256i low, high;
          window_steps_avx2<Block>(half_vector(P.nibbles[4 * w + i] + h32), plane, i, &low, &high);
          for (int r = 0; r < R; ++r) {
            const __m256i pf = _mm256_maddubs_epi16(low, broadcast4_avx2(a[r]->q + 32 * w + 4 * i));
            const __m256i ps = _mm256_maddubs_epi16(high, broadcast4_avx2(a[r]->q + 32 * w + 16 + 4 * i));
            first[r] = i % kFlush == 0 ? pf : _mm256_add_epi16(first[r], pf);
            second[r] = i % kFlush == 0 ? ps : _mm256_add_epi16(second[r], ps);
            if (i % kFlush == kFlush - 1)
              total[r] = _mm256_add_epi32(total[r], _mm256_add_epi32(_mm256_madd_epi16(first[r], s_first),
                                                                     _mm256_madd_epi16(second[r], s_second)));
          }
        }
      }
      for (int p = 0; p < 8; ++p) {
        __m128i mins;
        if constexpr (kGroupPerHalfWindow) {
          const __m128i s0 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(P.scale[2 * p] + h8));
          const __m128i s1 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(P.scale[2 * p + 1] + h8));
          mins = _mm_unpacklo_epi8(s0, s1);
        } else {
          mins = _mm_loadu_si128(reinterpret_cast<const __m128i*>(P.mins[p][h8]));
        }
        const __m256i pairs = _mm256_cvtepi8_epi16(mins);
        for (int r = 0; r < R; ++r) pair[r] = _mm256_add_epi32(pair[r], _mm256_madd_epi16(pairs, broadcast4_avx2(a[r]->sums + 2 * p)));
      }
      const __m256 d = _mm256_loadu_ps(P.d + h8), dmin = _mm256_loadu_ps(P.dmin + h8);
      for (int r = 0; r < R; ++r) {
        const __m256 xd = _mm256_set1_ps(a[r]->d);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total[r]), _mm256_mul_ps(d, xd), acc[r]);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pair[r]), _mm256_mul_ps(dmin, xd), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(y + r * y_stride + h8, acc[r]);
  }
}

template <typename Block>
CHAI_AVX2 inline void small_factors(const typename PackTraits<Block>::Panel& P, int h8, __m256* d, __m256* dmin) {
  *d = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(P.d + h8)));
  *dmin = PackTraits<Block>::kOffset ? _mm256_mul_ps(*d, _mm256_set1_ps(-float(PackTraits<Block>::kOffset)))
                                     : _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(P.m + h8)));
}

template <typename Block, int R>
CHAI_AVX2 void small_panel_rows_avx2(const uint8_t* x, int64_t x_stride, const typename PackTraits<Block>::Panel* panel,
                                     int64_t blocks, float* y, int64_t y_stride) {
  using Panel = typename PackTraits<Block>::Panel;
  // Both nibbles of a vector go into one int16 sum: flush after kFlush vectors (2 · kFlush steps).
  constexpr int hb = Panel::kHighBits, kFlush = kStepsInt16<Panel> / 2 < 4 ? kStepsInt16<Panel> / 2 : 4;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int half = 0; half < 2; ++half) {
    const int h8 = 8 * half, h32 = 32 * half;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const Panel& P = panel[b];
      const ActivationBlock<32>* a[R];
      for (int r = 0; r < R; ++r) a[r] = reinterpret_cast<const ActivationBlock<32>*>(x + r * x_stride) + b;
      __m256i plane[hb > 0 ? hb : 1];
      for (int h = 0; h < hb; ++h) plane[h] = half_vector(P.high[h] + h32);
      __m256i sum[R], pairs[R];
      for (int r = 0; r < R; ++r) sum[r] = _mm256_setzero_si256();
      for (int i = 0; i < 4; ++i) {
        __m256i low, high;
        window_steps_avx2<Block>(half_vector(P.nibbles[i] + h32), plane, i, &low, &high);
        for (int r = 0; r < R; ++r) {
          const __m256i both = _mm256_add_epi16(_mm256_maddubs_epi16(low, broadcast4_avx2(a[r]->q + 4 * i)),
                                                _mm256_maddubs_epi16(high, broadcast4_avx2(a[r]->q + 16 + 4 * i)));
          pairs[r] = i % kFlush == 0 ? both : _mm256_add_epi16(pairs[r], both);
          if (i % kFlush == kFlush - 1) sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(pairs[r], ones));
        }
      }
      __m256 d, dmin;
      small_factors<Block>(P, h8, &d, &dmin);
      for (int r = 0; r < R; ++r) {
        const __m256 xd = _mm256_set1_ps(a[r]->d);
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]), _mm256_mul_ps(d, xd), acc[r]);
        acc[r] = _mm256_fmadd_ps(dmin, _mm256_set1_ps(a[r]->d * float(a[r]->sums[0] + a[r]->sums[1])), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) _mm256_storeu_ps(y + r * y_stride + h8, acc[r]);
  }
}
#pragma GCC diagnostic pop

template <typename Block>
using PanelKernel = void (*)(const uint8_t*, int64_t, const typename PackTraits<Block>::Panel*, int64_t, float*, int64_t);

// rows[R - 1]: the kernel for R activation rows at once (AVX2 has 16 registers: at most 2).
template <typename Block>
struct PanelKernels {
  PanelKernel<Block> rows[4];
  int max_rows;
};

template <typename Block, int R>
CHAI_AVX512_VNNI void small_or_super_rows(const uint8_t* x, int64_t x_stride, const typename PackTraits<Block>::Panel* panel,
                                          int64_t blocks, float* y, int64_t y_stride) {
  if constexpr (kBlockValues<Block> == 32) small_panel_rows<Block, R>(x, x_stride, panel, blocks, y, y_stride);
  else panel_rows<Block, R>(x, x_stride, panel, blocks, y, y_stride);
}

template <typename Block>
const PanelKernels<Block>& panel_kernels(SimdLevel level) {
  if constexpr (PackTraits<Block>::kLookup) {
    static const PanelKernels<Block> avx512{{small_or_super_rows<Block, 1>, small_or_super_rows<Block, 2>,
                                             small_or_super_rows<Block, 3>, small_or_super_rows<Block, 4>},
                                            4};
    (void)level;  // packed for AVX-512 only
    return avx512;
  } else if constexpr (kBlockValues<Block> == 32) {
    static const PanelKernels<Block> avx512{
        {small_panel_rows<Block, 1>, small_panel_rows<Block, 2>, small_panel_rows<Block, 3>, small_panel_rows<Block, 4>}, 4};
    static const PanelKernels<Block> avx2{{small_panel_rows_avx2<Block, 1>, small_panel_rows_avx2<Block, 2>}, 2};
    return level >= SimdLevel::Avx512 ? avx512 : avx2;
  } else {
    static const PanelKernels<Block> avx512{
        {panel_rows<Block, 1>, panel_rows<Block, 2>, panel_rows<Block, 3>, panel_rows<Block, 4>}, 4};
    static const PanelKernels<Block> avx2{{panel_rows_avx2<Block, 1>, panel_rows_avx2<Block, 2>}, 2};
    return level >= SimdLevel::Avx512 ? avx512 : avx2;
  }
}

template <typename Block>
void matmul_panels(ThreadPool& pool, const uint8_t* x, int64_t x_row, const TensorView& w, float* y, int64_t n,
                   SimdLevel level) {
  using Panel = typename PackTraits<Block>::Panel;
  const PanelKernels<Block>& kernels = panel_kernels<Block>(level);
  const auto* panels = static_cast<const Panel*>(w.packed);
  const int64_t m = w.rows, k = w.cols, blocks = k / kBlockValues<Block>, n_panels = m / kPanelRows;
  // Rows past the last whole panel (fewer than 16) run the row kernels, as a last column of tasks.
  const int64_t tail_begin = n_panels * kPanelRows, columns = n_panels + (tail_begin < m ? 1 : 0);
  const QuantDotKernels& row_kernels = quant_dot_kernels(w.dtype, level);
  const auto* w_rows = w.as<const uint8_t>();
  const size_t w_row = dtype_row_bytes(w.dtype, k);
  constexpr int64_t kTileRows = 32;  // activation rows per task: a panel is reused from cache for them
  const int64_t row_tiles = (n + kTileRows - 1) / kTileRows;
  // Below about 32k multiply-adds, handing work to other threads costs more than it saves.
  const int64_t tasks = columns * row_tiles;
  const int64_t grain = n * m * k < (int64_t(1) << 15) ? tasks : 1;
  pool.parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t p = t % columns, i1 = std::min(n, (t / columns + 1) * kTileRows);
      for (int64_t i = (t / columns) * kTileRows; i < i1;) {
        const uint8_t* xi = x + i * x_row;
        if (p < n_panels) {
          const int64_t r = std::min<int64_t>(kernels.max_rows, i1 - i);
          kernels.rows[r - 1](xi, x_row, panels + p * blocks, blocks, y + i * m + p * kPanelRows, m);
          i += r;
        } else if (i + 4 <= i1) {
          for (int64_t j = tail_begin; j < m; ++j) {
            float out[4];
            row_kernels.dot4x(xi, x_row, w_rows + j * w_row, k, out);
            for (int q = 0; q < 4; ++q) y[(i + q) * m + j] = out[q];
          }
          i += 4;
        } else {
          for (int64_t j = tail_begin; j < m; ++j) y[i * m + j] = row_kernels.dot(xi, w_rows + j * w_row, k);
          i += 1;
        }
      }
    }
  });
}
#endif

template <typename Block>
std::shared_ptr<const void> pack(const TensorView& w) {
  using Panel = typename PackTraits<Block>::Panel;
  const size_t bytes = size_t(w.rows / kPanelRows) * size_t(w.cols / kBlockValues<Block>) * sizeof(Panel);
  void* memory = std::aligned_alloc(alignof(Panel), bytes);
  CHAI_REQUIRE(memory != nullptr, ErrorCode::DeviceOom, "out of host memory packing a weight of " + std::to_string(bytes) + " bytes");
  std::shared_ptr<void> owned(memory, std::free);
  pack_panels<Block>(w, static_cast<Panel*>(memory));
  return owned;
}

// Calls fn(Block{}) for a type that packs at `level` (IQ4_NL / IQ4_XS need AVX-512, the others AVX2);
// false for every other type and level.
template <typename Fn>
bool with_packing_block(DType type, SimdLevel level, Fn&& fn) {
  if (!CHAI_X86 || level < SimdLevel::Avx2) return false;
  switch (type) {
    case DType::Q4_0: fn(BlockQ4_0{}); return true;
    case DType::Q4_1: fn(BlockQ4_1{}); return true;
    case DType::Q5_0: fn(BlockQ5_0{}); return true;
    case DType::Q5_1: fn(BlockQ5_1{}); return true;
    case DType::Q3_K: fn(BlockQ3_K{}); return true;
    case DType::Q4_K: fn(BlockQ4_K{}); return true;
    case DType::Q5_K: fn(BlockQ5_K{}); return true;
    case DType::Q6_K: fn(BlockQ6_K{}); return true;
    case DType::IQ4_NL:
    case DType::IQ4_XS:
      if (level < SimdLevel::Avx512) return false;
      if (type == DType::IQ4_NL) fn(BlockIQ4_NL{});
      else fn(BlockIQ4_XS{});
      return true;
    default: return false;
  }
}

}  // namespace

std::shared_ptr<const void> pack_quant_weight(const TensorView& w, SimdLevel level) {
  std::shared_ptr<const void> packed;
  if (w.rows >= kPanelRows && w.cols % dtype_block_values(w.dtype) == 0)
    with_packing_block(w.dtype, level, [&](auto block) { packed = pack<decltype(block)>(w); });
  return packed;
}

void matmul_packed_quant(ThreadPool& pool, const uint8_t* x_rows, int64_t x_row_bytes, const TensorView& w, float* y,
                         int64_t n, SimdLevel level) {
  const bool ran = with_packing_block(w.dtype, level, [&](auto block) {
#if CHAI_X86
    matmul_panels<decltype(block)>(pool, x_rows, x_row_bytes, w, y, n, level);
#else
    (void)block, (void)pool, (void)x_rows, (void)x_row_bytes, (void)y, (void)n;
#endif
  });
  if (!ran) fail(ErrorCode::InvalidArgument, std::string("no packed matmul for ") + dtype_name(w.dtype) + " at this SIMD level");
}

}  // namespace chai
