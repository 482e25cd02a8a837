// Element types of weights and activations, and exact host conversions between them.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace chai {

// Q4_0 .. IQ4_XS are ggml's packed block types (layouts in quant_blocks.h); like Q8_0 they are
// only weight storage types, computed with by matmul and the embedding lookup.
enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS };

// Q8_0 as ggml stores it: blocks of 32 values, one f16 scale d and 32 int8 q; value = d * q.
constexpr int64_t kQ8Block = 32;
struct BlockQ8_0 {
  uint16_t d;
  int8_t q[kQ8Block];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 blocks are 34 bytes");

const char* dtype_name(DType dtype);
// Values per block (1 for F32/F16/BF16) and bytes per block.
int64_t dtype_block_values(DType dtype);
size_t dtype_block_bytes(DType dtype);
// Q4_0 .. IQ4_XS: weights whose matmul runs the 8-bit-activation dot products (cpu/quant_dot.h).
bool dtype_uses_quant_dot(DType dtype);
// Parses "f32" / "f16" / "bf16" / "q8_0"; throws InvalidArgument naming the accepted values otherwise.
DType dtype_from_name(const std::string& name);
// Bytes of one row of `cols` values; block types' rows must hold whole blocks (InvalidArgument otherwise).
size_t dtype_row_bytes(DType dtype, int64_t cols);
// Decodes one row of `cols` values to f32.
void dequantize_row(DType dtype, const void* src, float* dst, int64_t cols);

inline float bits_to_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline uint32_t f32_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// IEEE binary16 -> binary32, exact for every input including subnormals, inf and NaN.
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_f32(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_f32(sign);
  // Subnormal half: normalise into a float exponent.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  mantissa &= 0x3ffu;
  return bits_to_f32(sign | uint32_t(113 - shift) << 23 | (mantissa << 13));
}

// binary32 -> binary16 with round-to-nearest-even, as hardware conversions do.
inline uint16_t f32_to_f16(float f) {
  const uint32_t bits = f32_to_bits(f);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds past the largest half
  if (abs < 0x38800000u) {                                   // half subnormal or zero
    if (abs < 0x33000000u) return sign;                      // below half the smallest subnormal
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;                   // 14..24
    uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = ((abs >> 13) - (112u << 10));
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return uint16_t(sign | half);
}

inline float bf16_to_f32(uint16_t b) { return bits_to_f32(uint32_t(b) << 16); }

// binary32 -> bfloat16 with round-to-nearest-even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  const uint32_t bits = f32_to_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40u);
  return uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

}  // namespace chai
