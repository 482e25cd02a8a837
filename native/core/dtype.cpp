#include "dtype.h"

#include "error.h"
#include "quant_blocks.h"

namespace chai {
namespace {

struct DTypeInfo {
  const char* name;
  int64_t block_values;
  size_t block_bytes;
};

DTypeInfo info(DType dtype) {
  switch (dtype) {
    case DType::F32: return {"f32", 1, 4};
    case DType::F16: return {"f16", 1, 2};
    case DType::BF16: return {"bf16", 1, 2};
    case DType::Q8_0: return {"q8_0", kQ8Block, sizeof(BlockQ8_0)};
    case DType::Q4_0: return {"q4_0", kBlockValues<BlockQ4_0>, sizeof(BlockQ4_0)};
    case DType::Q4_1: return {"q4_1", kBlockValues<BlockQ4_1>, sizeof(BlockQ4_1)};
    case DType::Q5_0: return {"q5_0", kBlockValues<BlockQ5_0>, sizeof(BlockQ5_0)};
    case DType::Q5_1: return {"q5_1", kBlockValues<BlockQ5_1>, sizeof(BlockQ5_1)};
    case DType::Q2_K: return {"q2_k", kBlockValues<BlockQ2_K>, sizeof(BlockQ2_K)};
    case DType::Q3_K: return {"q3_k", kBlockValues<BlockQ3_K>, sizeof(BlockQ3_K)};
    case DType::Q4_K: return {"q4_k", kBlockValues<BlockQ4_K>, sizeof(BlockQ4_K)};
    case DType::Q5_K: return {"q5_k", kBlockValues<BlockQ5_K>, sizeof(BlockQ5_K)};
    case DType::Q6_K: return {"q6_k", kBlockValues<BlockQ6_K>, sizeof(BlockQ6_K)};
    case DType::IQ4_NL: return {"iq4_nl", kBlockValues<BlockIQ4_NL>, sizeof(BlockIQ4_NL)};
    case DType::IQ4_XS: return {"iq4_xs", kBlockValues<BlockIQ4_XS>, sizeof(BlockIQ4_XS)};
  }
  return {"?", 1, 0};
}

template <typename Block>
void dequantize_blocks(const void* src, float* dst, int64_t cols) {
  const auto* blocks = static_cast<const Block*>(src);
  constexpr int64_t per_block = kBlockValues<Block>;
  DecodedBlock d;
  for (int64_t b = 0; b < cols / per_block; ++b) {
    decode_scales(blocks[b], d);
    decode_quants(blocks[b], d.q);
    for (int64_t j = 0; j < per_block; ++j) {
      const int g = int(j / kGroup);
      const float scaled = d.d * float(d.scale[g] * d.q[j]);
      dst[b * per_block + j] = kHasMin<Block> ? scaled + d.dmin * float(d.min[g]) : scaled;
    }
  }
}

}  // namespace

const char* dtype_name(DType dtype) { return info(dtype).name; }
int64_t dtype_block_values(DType dtype) { return info(dtype).block_values; }
size_t dtype_block_bytes(DType dtype) { return info(dtype).block_bytes; }
bool dtype_uses_quant_dot(DType dtype) { return dtype >= DType::Q4_0 && dtype <= DType::IQ4_XS; }

DType dtype_from_name(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  if (name == "q8_0") return DType::Q8_0;
  fail(ErrorCode::InvalidArgument, "unknown dtype '" + name + "': use 'f32', 'f16', 'bf16' or 'q8_0'");
}

size_t dtype_row_bytes(DType dtype, int64_t cols) {
  const DTypeInfo i = info(dtype);
  CHAI_REQUIRE(cols % i.block_values == 0, ErrorCode::InvalidArgument,
               std::string(i.name) + " rows must be a multiple of " + std::to_string(i.block_values) + " values, got " +
                   std::to_string(cols));
  return size_t(cols / i.block_values) * i.block_bytes;
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
    case DType::Q4_0: return dequantize_blocks<BlockQ4_0>(src, dst, cols);
    case DType::Q4_1: return dequantize_blocks<BlockQ4_1>(src, dst, cols);
    case DType::Q5_0: return dequantize_blocks<BlockQ5_0>(src, dst, cols);
    case DType::Q5_1: return dequantize_blocks<BlockQ5_1>(src, dst, cols);
    case DType::Q2_K: return dequantize_blocks<BlockQ2_K>(src, dst, cols);
    case DType::Q3_K: return dequantize_blocks<BlockQ3_K>(src, dst, cols);
    case DType::Q4_K: return dequantize_blocks<BlockQ4_K>(src, dst, cols);
    case DType::Q5_K: return dequantize_blocks<BlockQ5_K>(src, dst, cols);
    case DType::Q6_K: return dequantize_blocks<BlockQ6_K>(src, dst, cols);
    case DType::IQ4_NL: return dequantize_blocks<BlockIQ4_NL>(src, dst, cols);
    case DType::IQ4_XS: return dequantize_blocks<BlockIQ4_XS>(src, dst, cols);
  }
}

}  // namespace chai
