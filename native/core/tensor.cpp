#include "tensor.h"

namespace chai {

std::string TensorView::shape_string() const {
  return std::string(dtype_name(dtype)) + "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

}  // namespace chai
