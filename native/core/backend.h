// The one interface both backends implement. Pointers inside TensorViews passed to a backend
// live in that backend's memory (host memory for the CPU, device memory for CUDA); moving data
// in and out goes through upload/download so callers never touch device pointers directly.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "attention_plan.h"
#include "tensor.h"

namespace chai {

// CHAI's clustering features: for every query head h, its causal attention probabilities among the
// first t0 tokens, softmax over j <= i of q_i · k_j · scale for 0 <= j <= i < t0, row by row (the
// t0(t0+1)/2 entries of the lower triangle). Head h reads the keys of KV head h / group.
struct HeadFeatureParams {
  const float* q = nullptr;  // [t0, n_heads * head_dim]
  const float* k = nullptr;  // [t0, n_kv_heads * head_dim]
  float* out = nullptr;      // [n_heads, t0 (t0 + 1) / 2]
  int t0 = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;
};

inline int feature_length(int t0) { return t0 * (t0 + 1) / 2; }

// Which elements of a head RoPE rotates together: llama's adjacent pairs (2i, 2i+1), or GPT-NeoX's
// halves (i, i + head_dim/2) as Qwen uses. Pair i turns by the same angle in both.
enum class RopeStyle { Normal, Neox };

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
  // Independent blocks of work that keep this backend busy; split-KV attention sizes its grid by it.
  virtual int fill_blocks() const = 0;
  // The same for one attention call (its version, head size and cache type are set): the CUDA
  // backend sizes version 3's split-KV grid by the occupancy of the decode kernel it will launch.
  virtual int attention_fill_blocks(const AttentionParams& call) const {
    (void)call;
    return fill_blocks();
  }
  // A copy of matmul weight w (in this backend's memory) in a layout this backend multiplies
  // faster, to set as w.packed; null where the stored layout is best. Called once per weight at load.
  virtual std::shared_ptr<const void> pack_matmul_weight(const TensorView& w) {
    (void)w;
    return nullptr;
  }

  // The ops. Each checks its arguments here (InvalidArgument on bad shapes or types), once for
  // every backend, then runs the backend's kernel.
  // y[n, m] = x[n, k] · w[m, k]ᵀ. x and y are F32; w is F32, F16, BF16, Q8_0 or a quantized type
  // (weights stay in their stored type, or w.packed, and are converted inside the kernel).
  void matmul(const TensorView& x, const TensorView& w, const TensorView& y);
  // y[i, :] = x[i, :] / sqrt(mean(x[i, :]²) + eps) * weight. All F32; weight has cols entries.
  // y may be x (in place); a [rows · heads, head_dim] view of x normalises every head on its own.
  void rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y);
  // Numerically stable softmax of every row, in place. F32.
  void softmax_rows(const TensorView& x);

  // out[i, :] = table[tokens[i], :] decoded to f32. `tokens` (n ints) lives in backend memory.
  void embed(const TensorView& table, const int32_t* tokens, const TensorView& out);
  // Rotary position embedding as llama.cpp applies it: within each head, pair i (see RopeStyle)
  // rotates by positions[row] · base^(−2i/head_dim) / freq_factors[i]. In place, F32.
  // `positions` (x.rows ints, backend memory) lets one call cover rows of several sequences;
  // `freq_factors` (head_dim/2 floats, backend memory, or null for all ones) are Llama 3.1's
  // per-frequency scaling (rope_freqs.weight).
  void rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style = RopeStyle::Normal,
            const float* freq_factors = nullptr);
  // gate = silu(gate) · up, element-wise, in place. F32.
  void swiglu(const TensorView& gate, const TensorView& up);
  // x += y, element-wise. F32.
  void add(const TensorView& x, const TensorView& y);
  // x[i, :] += bias for every row (Qwen2's q/k/v projection biases). F32; bias has x.cols entries.
  void add_bias(const TensorView& x, const TensorView& bias);
  // Clustered causal attention over a paged cache; see AttentionParams.
  void attention(const AttentionParams& p);
  // Writes K or V rows into cache pages; see KvStoreParams.
  void store_kv(const KvStoreParams& p);
  // CHAI's per-head features; see HeadFeatureParams.
  void head_features(const HeadFeatureParams& p);

  // For benchmarks: the time of the ops that call(i), i = 0 .. calls - 1, queue on this backend
  // (ops only: no upload, download, copy or synchronize), in seconds per call: the median of
  // `repeats` timed runs of all the calls, after a warm-up. The CPU times them on the host clock;
  // CUDA by events on its stream around replays of a graph of the calls, so that neither launches
  // nor synchronization count. No other thread may use the backend meanwhile.
  double seconds_per_call(const std::function<void(int)>& call, int calls, int repeats);

 protected:
  // What a backend implements: the kernels, called with checked arguments.
  virtual void run_matmul(const TensorView& x, const TensorView& w, const TensorView& y) = 0;
  virtual void run_rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y) = 0;
  virtual void run_softmax_rows(const TensorView& x) = 0;
  virtual void run_embed(const TensorView& table, const int32_t* tokens, const TensorView& out) = 0;
  virtual void run_rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
                        const float* freq_factors) = 0;
  virtual void run_swiglu(const TensorView& gate, const TensorView& up) = 0;
  virtual void run_add(const TensorView& x, const TensorView& y) = 0;
  virtual void run_add_bias(const TensorView& x, const TensorView& bias) = 0;
  virtual void run_attention(const AttentionParams& p) = 0;
  virtual void run_store_kv(const KvStoreParams& p) = 0;
  virtual void run_head_features(const HeadFeatureParams& p) = 0;
  // seconds_per_call with checked counts. This version: the host clock around the calls and a
  // synchronize, exact for backends whose ops finish on the calling thread.
  virtual double time_calls(const std::function<void(int)>& call, int calls, int repeats);
};


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
  size_t l2_cache_bytes = 0;
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

struct CpuStatus {
  std::string features;  // what the CPU supports, e.g. "avx512f avx512bw avx2 fma f16c"
  std::string kernels;   // the vector-kernel level the CPU backend runs, e.g. "avx2"
};
CpuStatus cpu_status();
// CUDA architectures (e.g. 80, 90) this build embeds code for; empty without CUDA.
std::vector<int> cuda_architectures();

std::unique_ptr<Backend> make_cpu_backend(int threads);
// Throws DeviceUnavailable (naming the reason) when the device cannot be used.
std::unique_ptr<Backend> make_cuda_backend(int device);

}  // namespace chai
