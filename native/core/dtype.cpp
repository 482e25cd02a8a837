#include "dtype.h"

#include "error.h"

namespace chai {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::Q8_0: return "q8_0";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  if (name == "q8_0") return DType::Q8_0;
  fail(ErrorCode::InvalidArgument, "unknown dtype '" + name + "': use 'f32', 'f16', 'bf16' or 'q8_0'");
}

size_t dtype_row_bytes(DType dtype, int64_t cols) {
  switch (dtype) {
    case DType::F32: return size_t(cols) * 4;
    case DType::F16:
    case DType::BF16: return size_t(cols) * 2;
    case DType::Q8_0:
      CHAI_REQUIRE(cols % kQ8Block == 0, ErrorCode::InvalidArgument,
              "q8_0 rows must be a multiple of 32 values, got " + std::to_string(cols));
      return size_t(cols / kQ8Block) * sizeof(BlockQ8_0);
  }
  return 0;
}

void dequantize_row(DType dtype, const void* src, float* dst, int64_t cols) {
  switch (dtype) {
    case DType::F32: std::memcpy(dst, src, size_t(cols) * 4); return;
    case DType::F16:
      for (int64_t i = 0; i < cols; ++i) dst[i] = f16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::BF16:
      for (int64_t i = 0; i < cols; ++i) dst[i] = bf16_to_f32(static_cast<const uint16_t*>(src)[i]);
      return;
    case DType::Q8_0: {
      const auto* blocks = static_cast<const BlockQ8_0*>(src);
      for (int64_t b = 0; b < cols / kQ8Block; ++b) {
        const float d = f16_to_f32(blocks[b].d);
        for (int64_t j = 0; j < kQ8Block; ++j) dst[b * kQ8Block + j] = d * float(blocks[b].q[j]);
      }
      return;
    }
  }
}

}  // namespace chai
