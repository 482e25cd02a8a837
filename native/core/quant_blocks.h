// The packed block layouts of ggml's quantized weight types, byte for byte as GGUF files store
// them, and a scalar decoder of each block into a common form. Plain structs: the CUDA kernels
// (native/cuda/quant.cuh) read the same layouts.
//
// The common form every type decodes to ("groups of 16"): a block of V values (32 or 256) is
//   value[i] = d · scale[g] · q[i] + dmin · min[g],   g = i / 16,
// with q an int8 and scale, min small integers (types with one scale per 32 values repeat it for
// both groups; 32-value types have scale 1; types without a min have dmin 0). The CPU dot products
// (native/cpu/quant_dot.cpp) work on this form: Σ x·w per block is then integer sums and two
// float products. Every product here is exact in float, so decoding rounds exactly as ggml's.
#pragma once
#include <cstdint>

#include "dtype.h"
#include "host_device.h"

namespace chai {

constexpr int kSuperBlock = 256;  // values per K-quant / IQ4_XS block
constexpr int kGroup = 16;        // values per group of the decoded form

// f16 fields are raw IEEE half bits.
struct BlockQ4_0 {  // value = d * (nibble - 8)
  uint16_t d;
  uint8_t qs[16];   // byte j: value j in the low nibble, value j + 16 in the high one
};
struct BlockQ4_1 {  // value = d * nibble + m
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ5_0 {  // value = d * (nibble | fifth bit << 4) - 16 · d
  uint16_t d;
  uint8_t qh[4];    // bit j of the little-endian u32: fifth bit of value j
  uint8_t qs[16];
};
struct BlockQ5_1 {  // value = d * (nibble | fifth bit << 4) + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct BlockIQ4_NL {  // value = d * kIq4nlValues[nibble], nibbles as in Q4_0
  uint16_t d;
  uint8_t qs[16];
};
// 16 groups of 16: value = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4), q 2 bits.
struct BlockQ2_K {
  uint8_t scales[16];
  uint8_t qs[64];   // per half of 128: byte l, bits 2s..2s+1 hold value 32s + l of the half
  uint16_t d, dmin;
};
// 16 groups of 16: value = d * (scale6[g] - 32) * (q2 - (hmask bit ? 0 : 4)).
struct BlockQ3_K {
  uint8_t hmask[32];  // bit b of byte l: high bit of value 32b + l
  uint8_t qs[64];     // low 2 bits, arranged as in Q2_K
  uint8_t scales[12]; // sixteen 6-bit scales: low nibbles in bytes 0..7, high 2 bits in 8..11
  uint16_t d;
};
// 8 sub-blocks of 32: value = d * sc[s] * q4 - dmin * mn[s], sc and mn 6 bits (packed in 12 bytes).
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];  // per 64 values: 32 bytes, low nibbles the first 32 values, high the next 32
};
struct BlockQ5_K {  // as Q4_K with a fifth bit: qh byte l, bit s is the high bit of value 32s + l
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
// 16 groups of 16: value = d * scales[g] * (q6 - 32).
struct BlockQ6_K {
  uint8_t ql[128];  // low 4 bits: per 128 values, 64 bytes (values l and l+64 in byte l, l+32/l+96 in byte l+32)
  uint8_t qh[64];   // high 2 bits: per 128 values, 32 bytes, bits 2j..2j+1 of byte l for value 32j + l
  int8_t scales[16];
  uint16_t d;
};
// 8 sub-blocks of 32: value = d * (scale6[s] - 32) * kIq4nlValues[nibble], nibbles as in Q4_0 per 32.
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;   // high 2 bits of the eight 6-bit scales
  uint8_t scales_l[4]; // low 4 bits, two per byte
  uint8_t qs[128];
};

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
                  sizeof(BlockQ5_1) == 24 && sizeof(BlockIQ4_NL) == 18,
              "32-value block sizes as ggml stores them");
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
                  sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_XS) == 136,
              "256-value block sizes as ggml stores them");

// Values per block of each type.
template <typename Block>
inline constexpr int kBlockValues = kSuperBlock;
template <> inline constexpr int kBlockValues<BlockQ4_0> = 32;
template <> inline constexpr int kBlockValues<BlockQ4_1> = 32;
template <> inline constexpr int kBlockValues<BlockQ5_0> = 32;
template <> inline constexpr int kBlockValues<BlockQ5_1> = 32;
template <> inline constexpr int kBlockValues<BlockIQ4_NL> = 32;
template <> inline constexpr int kBlockValues<BlockQ8_0> = kQ8Block;

// The 16 values of IQ4_NL / IQ4_XS nibbles. A macro so that host and device tables share one list.
#define CHAI_IQ4NL_VALUES -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113
inline constexpr int8_t kIq4nlValues[16] = {CHAI_IQ4NL_VALUES};

// Q4_K / Q5_K: 6-bit scale and min of sub-block s (0..7) from the 12 packed bytes.
CHAI_HOST_DEVICE inline void k_scale_min(const uint8_t* packed, int s, uint8_t* scale, uint8_t* min) {
  if (s < 4) {
    *scale = packed[s] & 63;
    *min = packed[s + 4] & 63;
  } else {
    *scale = uint8_t((packed[s + 4] & 0xF) | ((packed[s - 4] >> 6) << 4));
    *min = uint8_t((packed[s + 4] >> 4) | ((packed[s] >> 6) << 4));
  }
}

// Q3_K: 6-bit scale of group g (0..15), minus 32.
CHAI_HOST_DEVICE inline int q3k_scale(const uint8_t* packed, int g) {
  const int low = g < 8 ? packed[g] & 0xF : packed[g - 8] >> 4;
  const int high = (packed[8 + g % 4] >> (2 * (g / 4))) & 3;
  return (low | high << 4) - 32;
}

// IQ4_XS: 6-bit scale of sub-block s (0..7), minus 32.
CHAI_HOST_DEVICE inline int iq4xs_scale(const BlockIQ4_XS& b, int s) {
  return (((b.scales_l[s / 2] >> (4 * (s % 2))) & 0xF) | (((b.scales_h >> (2 * s)) & 3) << 4)) - 32;
}

// One block in the decoded form (see the top of this file). `q` gets the block's 32 or 256
// values, scale/min its 2 or 16 groups.
struct DecodedBlock {
  int8_t q[kSuperBlock];
  int16_t scale[kSuperBlock / kGroup];
  int16_t min[kSuperBlock / kGroup];
  float d, dmin;
};

// Types whose values have a min term (dmin · min[g]); the others skip it.
template <typename Block>
inline constexpr bool kHasMin = false;
template <> inline constexpr bool kHasMin<BlockQ4_1> = true;
template <> inline constexpr bool kHasMin<BlockQ5_1> = true;
template <> inline constexpr bool kHasMin<BlockQ2_K> = true;
template <> inline constexpr bool kHasMin<BlockQ4_K> = true;
template <> inline constexpr bool kHasMin<BlockQ5_K> = true;

// Scalar decoders, one overload per block type: decode_scales fills d, dmin and every group's
// scale and min, decode_quants the int8 values. The SIMD kernels replace decode_quants with vector
// code and keep these for the scales (a few per 256 values).
// 32-value blocks: scale 1 and min 1 for both groups; d (and the min m, as dmin) from the block.
inline void decode_unit_scales(float d, float m, DecodedBlock& o) {
  o.scale[0] = o.scale[1] = 1;
  o.min[0] = o.min[1] = 1;
  o.d = d;
  o.dmin = m;
}
inline void decode_scales(const BlockQ4_0& b, DecodedBlock& o) { decode_unit_scales(f16_to_f32(b.d), 0, o); }
inline void decode_quants(const BlockQ4_0& b, int8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = int8_t((b.qs[j] & 0xF) - 8);
    q[j + 16] = int8_t((b.qs[j] >> 4) - 8);
  }
}
inline void decode_scales(const BlockQ4_1& b, DecodedBlock& o) { decode_unit_scales(f16_to_f32(b.d), f16_to_f32(b.m), o); }
inline void decode_quants(const BlockQ4_1& b, int8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = int8_t(b.qs[j] & 0xF);
    q[j + 16] = int8_t(b.qs[j] >> 4);
  }
}
inline uint32_t q5_high_bits(const uint8_t* qh) {
  return uint32_t(qh[0]) | uint32_t(qh[1]) << 8 | uint32_t(qh[2]) << 16 | uint32_t(qh[3]) << 24;
}
inline void decode_q5_values(const uint8_t* qs, const uint8_t* qh, int bias, int8_t* q) {
  const uint32_t high = q5_high_bits(qh);
  for (int j = 0; j < 16; ++j) {
    q[j] = int8_t(((qs[j] & 0xF) | ((high >> j) & 1) << 4) - bias);
    q[j + 16] = int8_t(((qs[j] >> 4) | ((high >> (j + 16)) & 1) << 4) - bias);
  }
}
inline void decode_scales(const BlockQ5_0& b, DecodedBlock& o) { decode_unit_scales(f16_to_f32(b.d), 0, o); }
inline void decode_quants(const BlockQ5_0& b, int8_t* q) { decode_q5_values(b.qs, b.qh, 16, q); }
inline void decode_scales(const BlockQ5_1& b, DecodedBlock& o) { decode_unit_scales(f16_to_f32(b.d), f16_to_f32(b.m), o); }
inline void decode_quants(const BlockQ5_1& b, int8_t* q) { decode_q5_values(b.qs, b.qh, 0, q); }
inline void decode_scales(const BlockIQ4_NL& b, DecodedBlock& o) { decode_unit_scales(f16_to_f32(b.d), 0, o); }
inline void decode_iq4_values(const uint8_t* qs, int8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = kIq4nlValues[qs[j] & 0xF];
    q[j + 16] = kIq4nlValues[qs[j] >> 4];
  }
}
inline void decode_quants(const BlockIQ4_NL& b, int8_t* q) { decode_iq4_values(b.qs, q); }

inline void decode_scales(const BlockQ2_K& b, DecodedBlock& o) {
  o.d = f16_to_f32(b.d);
  o.dmin = -f16_to_f32(b.dmin);
  for (int g = 0; g < 16; ++g) {
    o.scale[g] = int16_t(b.scales[g] & 0xF);
    o.min[g] = int16_t(b.scales[g] >> 4);
  }
}
// Q2_K and Q3_K low bits: value 128h + 32s + l sits in byte 32h + l, bits 2s..2s+1.
inline void decode_2bit(const uint8_t* qs, int8_t* q) {
  for (int h = 0; h < 2; ++h)
    for (int s = 0; s < 4; ++s)
      for (int l = 0; l < 32; ++l) q[128 * h + 32 * s + l] = int8_t((qs[32 * h + l] >> (2 * s)) & 3);
}
inline void decode_quants(const BlockQ2_K& b, int8_t* q) { decode_2bit(b.qs, q); }
inline void decode_scales(const BlockQ3_K& b, DecodedBlock& o) {
  o.d = f16_to_f32(b.d);
  o.dmin = 0;
  for (int g = 0; g < 16; ++g) {
    o.scale[g] = int16_t(q3k_scale(b.scales, g));
    o.min[g] = 0;
  }
}
inline void decode_quants(const BlockQ3_K& b, int8_t* q) {
  decode_2bit(b.qs, q);
  // hmask byte l, bit 4h + s: high bit of value 128h + 32s + l; a clear bit subtracts 4.
  for (int i = 0; i < kSuperBlock; ++i)
    if (!((b.hmask[i % 32] >> (i / 32)) & 1)) q[i] = int8_t(q[i] - 4);
}
inline void decode_k_scales(uint16_t d_bits, uint16_t dmin_bits, const uint8_t* packed, DecodedBlock& o) {
  o.d = f16_to_f32(d_bits);
  o.dmin = -f16_to_f32(dmin_bits);
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, mn;
    k_scale_min(packed, s, &sc, &mn);
    o.scale[2 * s] = o.scale[2 * s + 1] = int16_t(sc);
    o.min[2 * s] = o.min[2 * s + 1] = int16_t(mn);
  }
}
inline void decode_scales(const BlockQ4_K& b, DecodedBlock& o) { decode_k_scales(b.d, b.dmin, b.scales, o); }
// Q4_K / Q5_K / IQ4_XS nibbles: per 64 values, 32 bytes; low nibble value l, high nibble value 32 + l.
inline void decode_quants(const BlockQ4_K& b, int8_t* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = int8_t(b.qs[32 * c + l] & 0xF);
      q[64 * c + 32 + l] = int8_t(b.qs[32 * c + l] >> 4);
    }
}
inline void decode_scales(const BlockQ5_K& b, DecodedBlock& o) { decode_k_scales(b.d, b.dmin, b.scales, o); }
inline void decode_quants(const BlockQ5_K& b, int8_t* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      q[64 * c + l] = int8_t((b.qs[32 * c + l] & 0xF) | ((b.qh[l] >> (2 * c)) & 1) << 4);
      q[64 * c + 32 + l] = int8_t((b.qs[32 * c + l] >> 4) | ((b.qh[l] >> (2 * c + 1)) & 1) << 4);
    }
}
inline void decode_scales(const BlockQ6_K& b, DecodedBlock& o) {
  o.d = f16_to_f32(b.d);
  o.dmin = 0;
  for (int g = 0; g < 16; ++g) {
    o.scale[g] = b.scales[g];
    o.min[g] = 0;
  }
}
inline void decode_quants(const BlockQ6_K& b, int8_t* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int8_t* out = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      out[l] = int8_t(((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32);
      out[l + 32] = int8_t(((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
      out[l + 64] = int8_t(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
      out[l + 96] = int8_t(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
    }
  }
}
inline void decode_scales(const BlockIQ4_XS& b, DecodedBlock& o) {
  o.d = f16_to_f32(b.d);
  o.dmin = 0;
  for (int s = 0; s < 8; ++s) {
    o.scale[2 * s] = o.scale[2 * s + 1] = int16_t(iq4xs_scale(b, s));
    o.min[2 * s] = o.min[2 * s + 1] = 0;
  }
}
// IQ4_XS nibbles go per 32 values as Q4_0's do (16 bytes: low nibbles first, high nibbles next).
inline void decode_quants(const BlockIQ4_XS& b, int8_t* q) {
  for (int s = 0; s < 8; ++s) decode_iq4_values(b.qs + 16 * s, q + 32 * s);
}

}  // namespace chai
