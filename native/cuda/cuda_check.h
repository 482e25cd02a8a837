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
template <typename Kernel>
void fit_shared_memory(Kernel kernel, size_t dynamic_bytes, const char* what) {
  cudaFuncAttributes attributes{};
  cuda_check(cudaFuncGetAttributes(&attributes, reinterpret_cast<const void*>(kernel)), "cudaFuncGetAttributes");
  int device = 0, optin = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  const size_t total = attributes.sharedSizeBytes + dynamic_bytes;
  CHAI_REQUIRE(total <= size_t(optin), ErrorCode::Unsupported,
               std::string(what) + " needs " + std::to_string(total) + " bytes of shared memory per block (" +
                   std::to_string(attributes.sharedSizeBytes) + " static), this device allows " + std::to_string(optin) +
                   ": use smaller clusters or a smaller head size");
  if (total > 48 * 1024)
    cuda_check(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(dynamic_bytes)),
               "cudaFuncSetAttribute (shared memory)");
}

}  // namespace chai
