#include "dtype.h"

#include "error.h"

namespace chai {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  fail(ErrorCode::InvalidArgument, "unknown dtype '" + name + "': use 'f32', 'f16' or 'bf16'");
}

size_t dtype_size(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

}  // namespace chai
