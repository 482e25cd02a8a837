#include "quant_dot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "../core/error.h"
#include "../core/quant_blocks.h"

#include "x86.h"

namespace chai {
namespace {

template <typename Block>
using ActivationFor = ActivationBlock<kBlockValues<Block>>;

template <int V>
void quantize_blocks_scalar(const float* x, void* out, int64_t k) {
  auto* blocks = static_cast<ActivationBlock<V>*>(out);
  for (int64_t b = 0; b < k / V; ++b) {
    const float* xb = x + b * V;
    float amax = 0;
    for (int j = 0; j < V; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
    ActivationBlock<V>& a = blocks[b];
    a.d = d;
    for (int g = 0; g < V / kGroup; ++g) {
      int sum = 0;
      for (int j = g * kGroup; j < (g + 1) * kGroup; ++j) {
        // |v| <= 127 by the choice of d; rounds half away from zero, as lround (a libm call) would.
        const float v = xb[j] * inv;
        a.q[j] = int8_t(std::min(127, v >= 0 ? int(v + 0.5f) : -int(0.5f - v)));
        sum += a.q[j];
      }
      a.sums[g] = int16_t(sum);
    }
  }
}

// R activation rows against one weight row: every block decoded once, then per row the integer
// sums Σ scale[g] · Σ q_w·q_x and Σ min[g] · Σ q_x, scaled once per block. Each row's arithmetic
// is the same whatever R is. (Sums fit int32: 16 groups of 16 products of at most 127 · 128,
// times scales of at most 128.)
template <typename Block, int R>
void dot_rows_scalar(const void* x, int64_t x_stride, const void* w, int64_t k, float* out) {
  constexpr int V = kBlockValues<Block>;
  const auto* wb = static_cast<const Block*>(w);
  float acc[R] = {};
  DecodedBlock d;
  for (int64_t b = 0; b < k / V; ++b) {
    decode_scales(wb[b], d);
    decode_quants(wb[b], d.q);
    for (int r = 0; r < R; ++r) {
      const auto& a = reinterpret_cast<const ActivationFor<Block>*>(static_cast<const uint8_t*>(x) + r * x_stride)[b];
      int32_t scaled = 0;
      for (int g = 0; g < V / kGroup; ++g) {
        int32_t group = 0;
        for (int j = g * kGroup; j < (g + 1) * kGroup; ++j) group += int32_t(d.q[j]) * int32_t(a.q[j]);
        scaled += int32_t(d.scale[g]) * group;
      }
      float s = d.d * float(scaled);
      if constexpr (kHasMin<Block>) {
        int32_t mins = 0;
        for (int g = 0; g < V / kGroup; ++g) mins += int32_t(d.min[g]) * int32_t(a.sums[g]);
        s += d.dmin * float(mins);
      }
      acc[r] += a.d * s;
    }
  }
  for (int r = 0; r < R; ++r) out[r] = acc[r];
}

template <typename Block>
float dot_scalar(const void* x, const void* w, int64_t k) {
  float out;
  dot_rows_scalar<Block, 1>(x, 0, w, k, &out);
  return out;
}
template <typename Block>
void dot4x_scalar(const void* x, int64_t x_stride, const void* w, int64_t k, float* out) {
  dot_rows_scalar<Block, 4>(x, x_stride, w, k, out);
}

#if CHAI_X86

CHAI_AVX2 inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
CHAI_AVX2 inline void store32(int8_t* p, __m256i v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
CHAI_AVX2 inline __m256i low_bits(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(char(mask)));
}
// 16 bytes of nibbles -> 32 bytes: the low nibbles, then the high nibbles.
CHAI_AVX2 inline __m256i nibbles16(const uint8_t* qs) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), mask), _mm_and_si128(v, mask));
}
// The 32 fifth bits of Q5_0/Q5_1 as 0x10 per byte.
CHAI_AVX2 inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)),
                                             _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                               0x0101010101010101, 0x0000000000000000));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}
CHAI_AVX2 inline __m256i iq4_lookup(__m256i nibbles) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues)));
  return _mm256_shuffle_epi8(table, nibbles);
}

// The vector twins of quantize_blocks_scalar give the same bytes: the same max, d and 1/d, and
// rounding half away from zero as truncate(v + copysign(0.5, v)) (v - 0.5 is exactly -(0.5 - v)).
template <int V>
CHAI_AVX2 void quantize_blocks_avx2(const float* x, void* out, int64_t k) {
  auto* blocks = static_cast<ActivationBlock<V>*>(out);
  const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
  for (int64_t b = 0; b < k / V; ++b) {
    const float* xb = x + b * V;
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < V; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
    const __m256 inv = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    ActivationBlock<V>& a = blocks[b];
    a.d = amax / 127.0f;
    for (int g = 0; g < V / kGroup; ++g) {
      __m256i q[2];
      for (int h = 0; h < 2; ++h) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(xb + 16 * g + 8 * h), inv);
        const __m256 rounded = _mm256_add_ps(v, _mm256_or_ps(half, _mm256_and_ps(v, sign)));
        q[h] = _mm256_min_epi32(_mm256_cvttps_epi32(rounded), _mm256_set1_epi32(127));
      }
      const __m256i sum8 = _mm256_add_epi32(q[0], q[1]);
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum8), _mm256_extracti128_si256(sum8, 1));
      s4 = _mm_hadd_epi32(s4, s4);
      a.sums[g] = int16_t(_mm_cvtsi128_si32(_mm_hadd_epi32(s4, s4)));
      // int32 -> int16 -> int8 with saturation (values are in [-127, 127]); packs interleave lanes.
      const __m256i words = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
      const __m128i bytes = _mm_packs_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.q + 16 * g), bytes);
    }
  }
}

// Vector twins of decode_quants (quant_blocks.h), writing the same int8 values.
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ4_0& b, int8_t* q) {
  store32(q, _mm256_sub_epi8(nibbles16(b.qs), _mm256_set1_epi8(8)));
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ4_1& b, int8_t* q) { store32(q, nibbles16(b.qs)); }
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ5_0& b, int8_t* q) {
  store32(q, _mm256_sub_epi8(_mm256_or_si256(nibbles16(b.qs), fifth_bits(b.qh)), _mm256_set1_epi8(16)));
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ5_1& b, int8_t* q) {
  store32(q, _mm256_or_si256(nibbles16(b.qs), fifth_bits(b.qh)));
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockIQ4_NL& b, int8_t* q) { store32(q, iq4_lookup(nibbles16(b.qs))); }
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ2_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h) {
    const __m256i v = load32(b.qs + 32 * h);
    for (int s = 0; s < 4; ++s) store32(q + 128 * h + 32 * s, low_bits(v, 2 * s, 3));
  }
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ3_K& b, int8_t* q) {
  const __m256i hm = load32(b.hmask);
  const __m256i four = _mm256_set1_epi8(4);
  for (int h = 0; h < 2; ++h) {
    const __m256i v = load32(b.qs + 32 * h);
    for (int s = 0; s < 4; ++s) {
      const __m256i high = _mm256_slli_epi16(low_bits(hm, 4 * h + s, 1), 2);  // 4 where the bit is set
      store32(q + 128 * h + 32 * s, _mm256_sub_epi8(_mm256_or_si256(low_bits(v, 2 * s, 3), high), four));
    }
  }
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ4_K& b, int8_t* q) {
  for (int c = 0; c < 4; ++c) {
    const __m256i v = load32(b.qs + 32 * c);
    store32(q + 64 * c, low_bits(v, 0, 0x0F));
    store32(q + 64 * c + 32, low_bits(v, 4, 0x0F));
  }
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ5_K& b, int8_t* q) {
  const __m256i qh = load32(b.qh);
  for (int c = 0; c < 4; ++c) {
    const __m256i v = load32(b.qs + 32 * c);
    store32(q + 64 * c, _mm256_or_si256(low_bits(v, 0, 0x0F), _mm256_slli_epi16(low_bits(qh, 2 * c, 1), 4)));
    store32(q + 64 * c + 32, _mm256_or_si256(low_bits(v, 4, 0x0F), _mm256_slli_epi16(low_bits(qh, 2 * c + 1, 1), 4)));
  }
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockQ6_K& b, int8_t* q) {
  const __m256i bias = _mm256_set1_epi8(32);
  for (int h = 0; h < 2; ++h) {
    const __m256i a = load32(b.ql + 64 * h), c = load32(b.ql + 64 * h + 32), qh = load32(b.qh + 32 * h);
    const __m256i parts[4] = {low_bits(a, 0, 0x0F), low_bits(c, 0, 0x0F), low_bits(a, 4, 0x0F), low_bits(c, 4, 0x0F)};
    for (int j = 0; j < 4; ++j) {
      const __m256i high = _mm256_slli_epi16(low_bits(qh, 2 * j, 3), 4);
      store32(q + 128 * h + 32 * j, _mm256_sub_epi8(_mm256_or_si256(parts[j], high), bias));
    }
  }
}
CHAI_AVX2 inline void decode_quants_avx2(const BlockIQ4_XS& b, int8_t* q) {
  for (int s = 0; s < 8; ++s) store32(q + 32 * s, iq4_lookup(nibbles16(b.qs + 16 * s)));
}

// The AVX2 twin of dot_rows_scalar: per 32 values, maddubs on |w| and sign-adjusted x gives 16
// int16 pair sums (the first 8 of group 2c, the last 8 of group 2c + 1), madd with the groups'
// scales gives int32 lanes; one float multiply-add per block and row.
template <typename Block, int R>
CHAI_AVX2 void dot_rows_avx2(const void* x, int64_t x_stride, const void* w, int64_t k, float* out) {
  constexpr int V = kBlockValues<Block>;
  const auto* wb = static_cast<const Block*>(w);
  __m256 acc[R];
  float small_mins[R] = {};  // 32-value types' min terms
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  alignas(32) DecodedBlock d;
  for (int64_t b = 0; b < k / V; ++b) {
    decode_scales(wb[b], d);
    decode_quants_avx2(wb[b], d.q);
    __m256i scales[V / 32];
    for (int c = 0; c < V / 32; ++c) scales[c] = _mm256_set_m128i(_mm_set1_epi16(d.scale[2 * c + 1]), _mm_set1_epi16(d.scale[2 * c]));
    for (int r = 0; r < R; ++r) {
      const auto& a = reinterpret_cast<const ActivationFor<Block>*>(static_cast<const uint8_t*>(x) + r * x_stride)[b];
      __m256i sum = _mm256_setzero_si256();
      for (int c = 0; c < V / 32; ++c) {
        const __m256i wq = load32(d.q + 32 * c), xq = load32(a.q + 32 * c);
        const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, scales[c]));
      }
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(a.d * d.d), acc[r]);
      if constexpr (kHasMin<Block> && V == kSuperBlock) {
        const __m256i mins = _mm256_madd_epi16(load32(a.sums), load32(d.min));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * d.dmin), acc[r]);
      } else if constexpr (kHasMin<Block>) {
        small_mins[r] += a.d * (d.dmin * float(int32_t(d.min[0]) * a.sums[0] + int32_t(d.min[1]) * a.sums[1]));
      }
    }
  }
  for (int r = 0; r < R; ++r) out[r] = hsum256(acc[r]) + small_mins[r];
}

template <typename Block>
CHAI_AVX2 float dot_avx2(const void* x, const void* w, int64_t k) {
  float out;
  dot_rows_avx2<Block, 1>(x, 0, w, k, &out);
  return out;
}
template <typename Block>
CHAI_AVX2 void dot4x_avx2(const void* x, int64_t x_stride, const void* w, int64_t k, float* out) {
  dot_rows_avx2<Block, 4>(x, x_stride, w, k, out);
}

#define CHAI_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
// GCC 12's AVX-512 headers trip -Wuninitialized on their own undefined-vector temporaries (GCC
// bug 105593), here and wherever these functions are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The AVX-512 twin of dot_rows_avx2 for 256-value blocks: 64 values per step; x's signs are flipped
// where w is negative (masked subtract), maddubs gives 32 int16 pair sums (8 per group of 16) and
// VNNI's dpwssd multiplies them by the groups' scales into int32 lanes. 32-value blocks run the
// 256-bit form of the same steps.
template <typename Block, int R>
CHAI_AVX512 void dot_rows_avx512(const void* x, int64_t x_stride, const void* w, int64_t k, float* out) {
  constexpr int V = kBlockValues<Block>;
  const auto* wb = static_cast<const Block*>(w);
  __m512 acc[R];
  __m256 acc_small[R];  // 32-value blocks and the K-quants' min terms
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    acc_small[r] = _mm256_setzero_ps();
  }
  float small_mins[R] = {};
  alignas(64) DecodedBlock d;
  for (int64_t b = 0; b < k / V; ++b) {
    decode_scales(wb[b], d);
    decode_quants_avx2(wb[b], d.q);
    if constexpr (V == kSuperBlock) {
      // Lanes 8g..8g+7 of step c get the scale of group 4c + g.
      // Lanes 8g..8g+7 of step c get the scale of group 4c + g, broadcast from the scalars that
      // decode_scales just stored (a vector load of them would miss store forwarding).
      __m512i scales[4];
      for (int c = 0; c < 4; ++c) {
        const __m256i low = _mm256_set_m128i(_mm_set1_epi16(d.scale[4 * c + 1]), _mm_set1_epi16(d.scale[4 * c]));
        const __m256i high = _mm256_set_m128i(_mm_set1_epi16(d.scale[4 * c + 3]), _mm_set1_epi16(d.scale[4 * c + 2]));
        scales[c] = _mm512_inserti64x4(_mm512_castsi256_si512(low), high, 1);
      }
      for (int r = 0; r < R; ++r) {
        const auto& a = reinterpret_cast<const ActivationFor<Block>*>(static_cast<const uint8_t*>(x) + r * x_stride)[b];
        __m512i sum = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
          // Two 32-byte loads: the decoder just stored these halves, and a 64-byte load of two
          // 32-byte stores would miss store forwarding.
          const __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(load32(d.q + 64 * c)), load32(d.q + 64 * c + 32), 1);
          const __m512i xq = _mm512_loadu_si512(a.q + 64 * c);
          const __m512i xs = _mm512_mask_sub_epi8(xq, _mm512_movepi8_mask(wq), _mm512_setzero_si512(), xq);
          sum = _mm512_dpwssd_epi32(sum, _mm512_maddubs_epi16(_mm512_abs_epi8(wq), xs), scales[c]);
        }
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(a.d * d.d), acc[r]);
        if constexpr (kHasMin<Block>) {
          const __m256i mins = _mm256_madd_epi16(load32(a.sums), load32(d.min));
          acc_small[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(a.d * d.dmin), acc_small[r]);
        }
      }
    } else {
      const __m256i wq = load32(d.q), wabs = _mm256_abs_epi8(wq);
      for (int r = 0; r < R; ++r) {
        const auto& a = reinterpret_cast<const ActivationFor<Block>*>(static_cast<const uint8_t*>(x) + r * x_stride)[b];
        const __m256i sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wabs, _mm256_sign_epi8(load32(a.q), wq));
        acc_small[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(a.d * d.d), acc_small[r]);
        if constexpr (kHasMin<Block>)
          small_mins[r] += a.d * (d.dmin * float(int32_t(d.min[0]) * a.sums[0] + int32_t(d.min[1]) * a.sums[1]));
      }
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]) + hsum256(acc_small[r]) + small_mins[r];
}

// One group of 16 values is one 512-bit vector here.
template <int V>
CHAI_AVX512 void quantize_blocks_avx512(const float* x, void* out, int64_t k) {
  auto* blocks = static_cast<ActivationBlock<V>*>(out);
  const __m512 half = _mm512_set1_ps(0.5f);
  const __m512i sign = _mm512_set1_epi32(int(0x80000000u));
  for (int64_t b = 0; b < k / V; ++b) {
    const float* xb = x + b * V;
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < V; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + j)));
    const float amax = _mm512_reduce_max_ps(m);
    const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    ActivationBlock<V>& a = blocks[b];
    a.d = amax / 127.0f;
    for (int g = 0; g < V / kGroup; ++g) {
      const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(xb + 16 * g), inv);
      const __m512 away = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(half), _mm512_castps_si512(v), sign, 0xF8));
      const __m512i q = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(v, away)), _mm512_set1_epi32(127));
      a.sums[g] = int16_t(_mm512_reduce_add_epi32(q));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.q + 16 * g), _mm512_cvtepi32_epi8(q));
    }
  }
}

template <typename Block>
CHAI_AVX512 float dot_avx512(const void* x, const void* w, int64_t k) {
  float out;
  dot_rows_avx512<Block, 1>(x, 0, w, k, &out);
  return out;
}
template <typename Block>
CHAI_AVX512 void dot4x_avx512(const void* x, int64_t x_stride, const void* w, int64_t k, float* out) {
  dot_rows_avx512<Block, 4>(x, x_stride, w, k, out);
}
#pragma GCC diagnostic pop
#endif

template <typename Block>
const QuantDotKernels& kernels_for(SimdLevel level) {
  static const QuantDotKernels scalar{dot_scalar<Block>, dot4x_scalar<Block>};
#if CHAI_X86
  static const QuantDotKernels avx2{dot_avx2<Block>, dot4x_avx2<Block>};
  static const QuantDotKernels avx512{dot_avx512<Block>, dot4x_avx512<Block>};
  if (level == SimdLevel::Avx512) return avx512;
  if (level == SimdLevel::Avx2) return avx2;
#endif
  (void)level;
  return scalar;
}

}  // namespace

size_t activation_row_bytes(DType weight, int64_t k) {
  return dtype_block_values(weight) == kSuperBlock ? size_t(k / kSuperBlock) * sizeof(ActivationBlock<kSuperBlock>)
                                                   : size_t(k / 32) * sizeof(ActivationBlock<32>);
}

namespace {
template <int V>
void quantize_blocks(const float* x, void* out, int64_t k, SimdLevel level) {
#if CHAI_X86
  if (level == SimdLevel::Avx512) return quantize_blocks_avx512<V>(x, out, k);
  if (level == SimdLevel::Avx2) return quantize_blocks_avx2<V>(x, out, k);
#endif
  (void)level;
  quantize_blocks_scalar<V>(x, out, k);
}
}  // namespace

void quantize_activation_row(DType weight, const float* x, void* out, int64_t k, SimdLevel level) {
  if (dtype_block_values(weight) == kSuperBlock) quantize_blocks<kSuperBlock>(x, out, k, level);
  else quantize_blocks<32>(x, out, k, level);
}

const QuantDotKernels& quant_dot_kernels(DType weight, SimdLevel level) {
  switch (weight) {
    case DType::Q4_0: return kernels_for<BlockQ4_0>(level);
    case DType::Q4_1: return kernels_for<BlockQ4_1>(level);
    case DType::Q5_0: return kernels_for<BlockQ5_0>(level);
    case DType::Q5_1: return kernels_for<BlockQ5_1>(level);
    case DType::IQ4_NL: return kernels_for<BlockIQ4_NL>(level);
    case DType::Q2_K: return kernels_for<BlockQ2_K>(level);
    case DType::Q3_K: return kernels_for<BlockQ3_K>(level);
    case DType::Q4_K: return kernels_for<BlockQ4_K>(level);
    case DType::Q5_K: return kernels_for<BlockQ5_K>(level);
    case DType::Q6_K: return kernels_for<BlockQ6_K>(level);
    case DType::IQ4_XS: return kernels_for<BlockIQ4_XS>(level);
    default: break;
  }
  fail(ErrorCode::InvalidArgument, std::string("no quantized dot product for ") + dtype_name(weight));
}

}  // namespace chai
