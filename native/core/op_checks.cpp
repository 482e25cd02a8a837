#include "backend.h"
#include "error.h"

namespace chai {
namespace {

void require_f32(const TensorView& t, const char* what) {
  require(t.dtype == DType::F32, ErrorCode::InvalidArgument,
          std::string(what) + " must be f32, got " + t.shape_string());
}

void require_data(const TensorView& t, const char* what) {
  require(t.data != nullptr && t.rows > 0 && t.cols > 0, ErrorCode::InvalidArgument,
          std::string(what) + " must be a non-empty tensor, got " + t.shape_string());
}

}  // namespace

void check_matmul_args(const TensorView& x, const TensorView& w, const TensorView& y) {
  require_data(x, "matmul input x");
  require_data(w, "matmul weight w");
  require_data(y, "matmul output y");
  require_f32(x, "matmul input x");
  require_f32(y, "matmul output y");
  require(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows, ErrorCode::InvalidArgument,
          "matmul shapes do not fit: x " + x.shape_string() + " · w " + w.shape_string() + "ᵀ → y " +
              y.shape_string() + " (need x[n,k], w[m,k], y[n,m])");
}

void check_rmsnorm_args(const TensorView& x, const TensorView& weight, const TensorView& y) {
  require_data(x, "rmsnorm input x");
  require_data(weight, "rmsnorm weight");
  require_data(y, "rmsnorm output y");
  require_f32(x, "rmsnorm input x");
  require_f32(weight, "rmsnorm weight");
  require_f32(y, "rmsnorm output y");
  require(weight.numel() == x.cols && y.rows == x.rows && y.cols == x.cols, ErrorCode::InvalidArgument,
          "rmsnorm shapes do not fit: x " + x.shape_string() + ", weight " + weight.shape_string() + ", y " +
              y.shape_string());
}

void check_softmax_args(const TensorView& x) {
  require_data(x, "softmax input");
  require_f32(x, "softmax input");
}

}  // namespace chai
