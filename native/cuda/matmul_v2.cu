// Matmul version selection and the dispatch of versions 2 (gemm_mma.cu, gemv.cu) and 3 (gemm_v3.cu,
// gemv_quant_v3.cu) by row count and weight type.
#include <cstdlib>
#include <string>

#include "../core/error.h"
#include "cuda_check.h"
#include "kernels.h"
#include "matmul_v2.h"

namespace chai::cuda {

DeviceScratch::~DeviceScratch() { cudaFree(ptr_); }  // a destructor must not throw

void* DeviceScratch::reserve(size_t bytes) {
  if (bytes <= bytes_) return ptr_;
  // cudaFree waits for the device, so kernels still reading the old buffer finish first.
  cuda_check(cudaFree(ptr_), "cudaFree (scratch)");
  ptr_ = nullptr;
  bytes_ = 0;
  cuda_check(cudaMalloc(&ptr_, bytes), "cudaMalloc (matmul scratch)");
  bytes_ = bytes;
  return ptr_;
}

int matmul_version_from_env() {
  const char* value = std::getenv("CHAI_MATMUL_VERSION");
  if (value == nullptr || *value == '\0' || std::string(value) == "1") return 1;
  if (std::string(value) == "2") return 2;
  if (std::string(value) == "3") return 3;
  fail(ErrorCode::InvalidArgument, std::string("CHAI_MATMUL_VERSION must be 1 (the default), 2 (tensor-core GEMM and GEMV) or 3 "
                                               "(GEMM converting x in its tile loads, quantized GEMV through shared memory), not '") +
                                       value + "'");
}

void matmul_v2(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  const bool done = x.rows >= kGemmMinRows ? gemm_tensor_core(x, w, y, scratch, stream) : gemv(x, w, y, scratch, stream);
  if (!done) matmul(x, w, y, stream);  // version 1
}

void matmul_v3(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  if (x.rows >= kGemmMinRows && gemm_v3(x, w, y, scratch, stream)) return;
  if (gemv_quant_v3(x, w, y, stream)) return;
  matmul_v2(x, w, y, scratch, stream);
}

}  // namespace chai::cuda
