// The CUDA backend: device discovery with precise reasons, memory, and op dispatch on one stream.
#include <mutex>
#include <sstream>

#include "../core/backend.h"
#include "cuda_check.h"
#include "graph_timing.h"
#include "kernels.h"
#include "matmul_v2.h"

#ifndef CHAI_CUDA_ARCHS
#error "CHAI_CUDA_ARCHS must list the CUDA architectures this build embeds (set by CMakeLists.txt)"
#endif

namespace chai {
namespace {

std::string version_string(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

std::string unavailable_reason(cudaError_t err, int driver_version, int runtime_version) {
  if (err == cudaErrorInsufficientDriver) {
    if (driver_version == 0)
      return "no NVIDIA driver is installed (cudaGetDeviceCount: " + cuda_error_text(err) + ")";
    return "the NVIDIA driver supports CUDA " + version_string(driver_version) + " but this build needs CUDA " +
           version_string(runtime_version) + " (driver R580 or newer): " + cuda_error_text(err);
  }
  if (err == cudaErrorNoDevice) return "the driver sees no CUDA device (cudaGetDeviceCount: " + cuda_error_text(err) + ")";
  return "cudaGetDeviceCount failed: " + cuda_error_text(err);
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device), matmul_version_(cuda::matmul_version_from_env()) {
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaDeviceGetAttribute(&multiprocessors_, cudaDevAttrMultiProcessorCount, device_), "cudaDeviceGetAttribute");
  }
  ~CudaBackend() override {
    cudaSetDevice(device_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda:" + std::to_string(device_); }

  void* alloc(size_t bytes) override {
    std::lock_guard<std::mutex> lock(mutex_);
    activate();
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 1));
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fail(ErrorCode::DeviceOom, "out of memory on " + name() + " allocating " + std::to_string(bytes) + " bytes (" +
                                     std::to_string(free_bytes) + " of " + std::to_string(total_bytes) + " free)");
    }
    cuda_check(err, "cudaMalloc");
    return p;
  }
  void release(void* ptr) override {
    std::lock_guard<std::mutex> lock(mutex_);
    activate();
    cudaFree(ptr);  // only fails on a broken context, and a destructor path must not throw
  }
  void upload(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes, cudaMemcpyHostToDevice); }
  void download(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes, cudaMemcpyDeviceToHost); }
  void copy(void* dst, const void* src, size_t bytes) override { copy(dst, src, bytes, cudaMemcpyDeviceToDevice); }
  void synchronize() override {
    on_stream([&] { cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); });
  }
  // Eight blocks per multiprocessor: enough warps in flight to keep memory busy.
  int fill_blocks() const override { return 8 * multiprocessors_; }
  // Version 3: as many blocks of the decode kernel it launches as the device holds at once.
  int attention_fill_blocks(const AttentionParams& call) const override {
    if (call.version < 3) return fill_blocks();
    activate();
    const int per_multiprocessor = cuda::attention_decode_v3_blocks_per_sm(call.head_dim, call.kv_dtype);
    return per_multiprocessor > 0 ? per_multiprocessor * multiprocessors_ : fill_blocks();
  }

 protected:
  void run_matmul(const TensorView& x, const TensorView& w, const TensorView& y) override {
    on_stream([&] {
      if (matmul_version_ == 3) cuda::matmul_v3(x, w, y, matmul_scratch_, stream_);
      else if (matmul_version_ == 2) cuda::matmul_v2(x, w, y, matmul_scratch_, stream_);
      else cuda::matmul(x, w, y, stream_);
    });
  }
  void run_rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y) override {
    on_stream([&] { cuda::rmsnorm(x, weight, eps, y, stream_); });
  }
  void run_softmax_rows(const TensorView& x) override {
    on_stream([&] { cuda::softmax_rows(x, stream_); });
  }
  void run_embed(const TensorView& table, const int32_t* tokens, const TensorView& out) override {
    on_stream([&] { cuda::embed(table, tokens, out, stream_); });
  }
  void run_rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
                const float* freq_factors) override {
    on_stream([&] { cuda::rope(x, head_dim, positions, base, style, freq_factors, stream_); });
  }
  void run_swiglu(const TensorView& gate, const TensorView& up) override {
    on_stream([&] { cuda::swiglu(gate, up, stream_); });
  }
  void run_add(const TensorView& x, const TensorView& y) override {
    on_stream([&] { cuda::add(x, y, stream_); });
  }
  void run_add_bias(const TensorView& x, const TensorView& bias) override {
    on_stream([&] { cuda::add_bias(x, bias, stream_); });
  }
  void run_attention(const AttentionParams& p) override {
    on_stream([&] { cuda::attention(p, stream_); });
  }
  void run_store_kv(const KvStoreParams& p) override {
    on_stream([&] { cuda::store_kv(p, stream_); });
  }
  void run_head_features(const HeadFeatureParams& p) override {
    on_stream([&] { cuda::head_features(p, stream_); });
  }
  // Not under the stream's lock: each op the calls queue takes it.
  double time_calls(const std::function<void(int)>& call, int calls, int repeats) override {
    activate();
    return cuda::graph_seconds_per_call(call, calls, repeats, stream_);
  }

 private:
  // The current device is per host thread, and async workers run on pool threads.
  void activate() const { cuda_check(cudaSetDevice(device_), "cudaSetDevice"); }

  // Runs fn with this device current and the stream to itself (one caller at a time).
  template <typename Fn>
  void on_stream(Fn fn) {
    std::lock_guard<std::mutex> lock(mutex_);
    activate();
    fn();
  }

  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
    on_stream([&] {
      cuda_check(cudaMemcpyAsync(dst, src, bytes, kind, stream_), "cudaMemcpyAsync");
      cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    });
  }

  int device_;
  int matmul_version_;  // CHAI_MATMUL_VERSION when the backend was made
  int multiprocessors_ = 0;
  cudaStream_t stream_ = nullptr;
  cuda::DeviceScratch matmul_scratch_;
  std::mutex mutex_;
};

}  // namespace

CudaStatus cuda_status() {
  CudaStatus status;
  status.compiled = true;
  cudaRuntimeGetVersion(&status.runtime_version);
  if (cudaDriverGetVersion(&status.driver_version) != cudaSuccess) status.driver_version = 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    status.reason = unavailable_reason(err, status.driver_version, status.runtime_version);
    return status;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    status.devices.push_back(
        {i, prop.name, prop.major, prop.minor, prop.totalGlobalMem, prop.multiProcessorCount, size_t(prop.l2CacheSize)});
  }
  status.available = !status.devices.empty();
  if (!status.available) status.reason = "the driver reports " + std::to_string(count) + " devices but none answered";
  return status;
}

std::vector<int> cuda_architectures() {
  std::vector<int> archs;
  std::stringstream list(CHAI_CUDA_ARCHS);
  for (std::string item; std::getline(list, item, ',');)
    if (!item.empty()) archs.push_back(std::stoi(item));  // "90-real" and "90" both give 90
  return archs;
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  const CudaStatus status = cuda_status();
  CHAI_REQUIRE(status.available, ErrorCode::DeviceUnavailable, "CUDA is unavailable: " + status.reason);
  CHAI_REQUIRE(device >= 0 && device < int(status.devices.size()), ErrorCode::DeviceUnavailable,
          "cuda:" + std::to_string(device) + " does not exist; this machine has " +
              std::to_string(status.devices.size()) + " CUDA device(s): use cuda:0..cuda:" +
              std::to_string(int(status.devices.size()) - 1));
  return std::make_unique<CudaBackend>(device);
}

}  // namespace chai
