// A non-owning view of a row-major matrix in some backend's memory. Every op in this project
// works row by row (tokens × features), so two dimensions are all a view needs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "dtype.h"

namespace chai {

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  // A copy of this weight in the layout its backend multiplies fastest (Backend::pack_matmul_weight),
  // or null; `data` stays valid either way.
  const void* packed = nullptr;

  int64_t numel() const { return rows * cols; }
  size_t bytes() const { return size_t(rows) * dtype_row_bytes(dtype, cols); }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
  std::string shape_string() const;
};

inline TensorView view_f32(float* data, int64_t rows, int64_t cols) {
  return TensorView{data, DType::F32, rows, cols};
}

}  // namespace chai
