// Turns CUDA runtime failures into chai::Error so that no CUDA failure aborts the process.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "../core/error.h"

namespace chai {

inline std::string cuda_error_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + std::to_string(int(err)) + "): " + cudaGetErrorString(err);
}

inline void cuda_check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so the device stays usable
  fail(err == cudaErrorMemoryAllocation ? ErrorCode::DeviceOom : ErrorCode::Cuda,
       std::string(what) + " failed: " + cuda_error_text(err));
}

}  // namespace chai
