// Compiled instead of native/cuda/ when the build found no nvcc: the CPU backend is all there is.
#include "backend.h"
#include "error.h"

namespace chai {

CudaStatus cuda_status() {
  CudaStatus status;
  status.reason = "this build has no CUDA backend: nvcc was not found when it was compiled";
  return status;
}

std::vector<int> cuda_architectures() { return {}; }

std::unique_ptr<Backend> make_cuda_backend(int) {
  fail(ErrorCode::DeviceUnavailable,
       "this build has no CUDA backend (nvcc was not found when it was compiled); use device 'cpu', or rebuild "
       "with nvcc on PATH (npm run build:native)");
}

}  // namespace chai
