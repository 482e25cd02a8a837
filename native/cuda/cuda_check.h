// Turns CUDA runtime failures into chai::Error so that no CUDA failure aborts the process.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "../core/error.h"

namespace chai {

inline std::string cuda_error_text(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + " (" + std::to_string(int(err)) + "): " + cudaGetErrorString(err);
}

// Errors after which the CUDA context is corrupt: every later call fails the same way.
inline bool cuda_error_is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

inline void cuda_check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();  // clear a non-sticky error so the device stays usable
  if (cuda_error_is_sticky(err))
    fail(ErrorCode::Cuda, std::string(what) + " failed: " + cuda_error_text(err) +
                              ". The device is unusable for the rest of this process: restart it (and report the failure)");
  fail(err == cudaErrorMemoryAllocation ? ErrorCode::DeviceOom : ErrorCode::Cuda,
       std::string(what) + " failed: " + cuda_error_text(err));
}

// A kernel's static shared memory plus `dynamic_bytes` against the device's opt-in limit per
// block (Unsupported, naming both, when it does not fit); opts the kernel in above the default.
// Launchers call it before every launch, so the device is asked once per kernel and device and
// the answer kept (cuda_check.cu); safe to call from several threads.
void fit_shared_memory(const void* kernel, size_t dynamic_bytes, const char* what);
template <typename Kernel>
void fit_shared_memory(Kernel kernel, size_t dynamic_bytes, const char* what) {
  fit_shared_memory(reinterpret_cast<const void*>(kernel), dynamic_bytes, what);
}

}  // namespace chai
