// Exactness of the host conversions between f32 and f16 / bf16.
#include <cstdio>

#include "core/dtype.h"
#include "core/error.h"
#include "testing.h"

using namespace chai;

int main() {
  testing::Suite suite("dtype");

  int f16_mismatches = 0;
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = f16_to_f32(uint16_t(h));
    if (std::isnan(f)) continue;
    if (f32_to_f16(f) != h) ++f16_mismatches;
  }
  suite.check(f16_mismatches == 0, "every non-NaN half survives f16 -> f32 -> f16");
  suite.check(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0x7bff) == 65504.0f && f16_to_f32(0x0001) == std::ldexp(1.0f, -24),
              "known half values decode");
  suite.check(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00, "a tie rounds to the even half (down)");
  suite.check(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02, "a tie rounds to the even half (up)");
  suite.check(f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(-1e10f) == 0xfc00, "overflow gives infinity");
  suite.check(f32_to_f16(std::ldexp(1.0f, -25)) == 0x0000 && f32_to_f16(std::ldexp(1.5f, -25)) == 0x0001,
              "half subnormals round to nearest even");
  suite.check(std::isnan(f16_to_f32(f32_to_f16(NAN))), "NaN stays NaN in f16");

  int bf16_mismatches = 0;
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = bf16_to_f32(uint16_t(b));
    if (!std::isnan(f) && f32_to_bf16(f) != b) ++bf16_mismatches;
  }
  suite.check(bf16_mismatches == 0, "every non-NaN bf16 survives bf16 -> f32 -> bf16");
  suite.check(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80, "bf16 tie rounds to even");
  suite.check(std::isnan(bf16_to_f32(f32_to_bf16(NAN))), "NaN stays NaN in bf16");

  suite.check(dtype_from_name("bf16") == DType::BF16, "dtype names parse");
  suite.check_throws([] { dtype_from_name("f8"); }, "an unknown dtype name");
  return suite.finish();
}
