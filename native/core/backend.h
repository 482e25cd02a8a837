// The one interface both backends implement. Pointers inside TensorViews passed to a backend
// live in that backend's memory (host memory for the CPU, device memory for CUDA); moving data
// in and out goes through upload/download so callers never touch device pointers directly.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "tensor.h"

namespace chai {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* ptr) = 0;
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, size_t bytes) = 0;  // within this backend's memory
  virtual void synchronize() = 0;

  // y[n, m] = x[n, k] · w[m, k]ᵀ. x and y are F32; w is F32, F16 or BF16 (weights stay in
  // their stored type and are converted inside the kernel).
  virtual void matmul(const TensorView& x, const TensorView& w, const TensorView& y) = 0;
  // y[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) * weight. All F32; weight has cols entries.
  virtual void rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y) = 0;
  // Numerically stable softmax of every row, in place. F32.
  virtual void softmax_rows(const TensorView& x) = 0;
};

// Shape and dtype checks shared by every backend's ops; they throw InvalidArgument.
void check_matmul_args(const TensorView& x, const TensorView& w, const TensorView& y);
void check_rmsnorm_args(const TensorView& x, const TensorView& weight, const TensorView& y);
void check_softmax_args(const TensorView& x);

// Owns one allocation in a backend's memory.
class DeviceBuffer {
 public:
  DeviceBuffer(Backend& backend, size_t bytes) : backend_(&backend), ptr_(backend.alloc(bytes)), bytes_(bytes) {}
  ~DeviceBuffer() { backend_->release(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  Backend* backend_;
  void* ptr_;
  size_t bytes_;
};

// --- Devices -------------------------------------------------------------------------------

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  size_t total_memory = 0;
  int multiprocessors = 0;
};

struct CudaStatus {
  bool compiled = false;          // this build contains the CUDA backend
  bool available = false;         // at least one device can run it now
  std::string reason;             // why not, when !available
  int driver_version = 0;         // from cudaDriverGetVersion, 0 when no driver
  int runtime_version = 0;        // the CUDA runtime linked in
  std::vector<CudaDeviceInfo> devices;
};

CudaStatus cuda_status();
// CUDA architectures (e.g. 80, 90) this build embeds code for; empty without CUDA.
std::vector<int> cuda_architectures();

std::unique_ptr<Backend> make_cpu_backend(int threads);
// Throws DeviceUnavailable (naming the reason) when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace chai
