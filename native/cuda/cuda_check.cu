// fit_shared_memory (see cuda_check.h): what the device says about a kernel, asked once.
#include <map>
#include <mutex>
#include <utility>

#include "cuda_check.h"

namespace chai {
namespace {

struct SharedMemoryFit {
  size_t static_bytes = 0;      // the kernel's own __shared__ arrays
  size_t optin_limit = 0;       // the device's largest block, opted in
  size_t opted_in_dynamic = 0;  // the dynamic size the kernel is opted in to (0: the default)
};

std::mutex fits_mutex;
std::map<std::pair<const void*, int>, SharedMemoryFit> fits;  // by (kernel, device)

}  // namespace

void fit_shared_memory(const void* kernel, size_t dynamic_bytes, const char* what) {
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(fits_mutex);
  auto found = fits.find({kernel, device});
  if (found == fits.end()) {
    cudaFuncAttributes attributes{};
    cuda_check(cudaFuncGetAttributes(&attributes, kernel), "cudaFuncGetAttributes");
    int optin = 0;
    cuda_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
    found = fits.emplace(std::pair{kernel, device}, SharedMemoryFit{attributes.sharedSizeBytes, size_t(optin), 0}).first;
  }
  SharedMemoryFit& fit = found->second;
  const size_t total = fit.static_bytes + dynamic_bytes;
  CHAI_REQUIRE(total <= fit.optin_limit, ErrorCode::Unsupported,
               std::string(what) + " needs " + std::to_string(total) + " bytes of shared memory per block (" +
                   std::to_string(fit.static_bytes) + " static), this device allows " + std::to_string(fit.optin_limit) +
                   ": use smaller clusters or a smaller head size");
  // Past 48 KiB a block needs the opt-in; a kernel opted in to a size launches with less too.
  if (total > 48 * 1024 && dynamic_bytes > fit.opted_in_dynamic) {
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dynamic_bytes)),
               "cudaFuncSetAttribute (shared memory)");
    fit.opted_in_dynamic = dynamic_bytes;
  }
}

}  // namespace chai
