#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../core/backend.h"
#include "../core/error.h"
#include "ops.h"
#include "packed_quant.h"
#include "simd.h"

namespace chai {
namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}

  std::string name() const override { return "cpu"; }

  void* alloc(size_t bytes) override {
    // 64-byte alignment suits every vector width we dispatch to.
    void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 1) + 63) / 64 * 64);
    CHAI_REQUIRE(p != nullptr, ErrorCode::DeviceOom, "out of host memory allocating " + std::to_string(bytes) + " bytes");
    return p;
  }
  void release(void* ptr) override { std::free(ptr); }
  void upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void synchronize() override {}
  int fill_blocks() const override { return 4 * pool_.size(); }
  std::shared_ptr<const void> pack_matmul_weight(const TensorView& w) override { return pack_quant_weight(w); }

 protected:
  void run_matmul(const TensorView& x, const TensorView& w, const TensorView& y) override {
    cpu::matmul(pool_, x, w, y);
  }
  void run_rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y) override {
    cpu::rmsnorm(pool_, x, weight, eps, y);
  }
  void run_softmax_rows(const TensorView& x) override {
    cpu::softmax_rows(pool_, x);
  }
  void run_embed(const TensorView& table, const int32_t* tokens, const TensorView& out) override {
    cpu::embed(pool_, table, tokens, out);
  }
  void run_rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
                const float* freq_factors) override {
    cpu::rope(pool_, x, head_dim, positions, base, style, freq_factors);
  }
  void run_swiglu(const TensorView& gate, const TensorView& up) override {
    cpu::swiglu(pool_, gate, up);
  }
  void run_add(const TensorView& x, const TensorView& y) override {
    cpu::add(pool_, x, y);
  }
  void run_add_bias(const TensorView& x, const TensorView& bias) override {
    cpu::add_bias(pool_, x, bias);
  }
  void run_attention(const AttentionParams& p) override {
    cpu::attention(pool_, p);
  }
  void run_store_kv(const KvStoreParams& p) override {
    cpu::store_kv(pool_, p);
  }
  void run_head_features(const HeadFeatureParams& p) override {
    cpu::head_features(pool_, p);
  }

 private:
  ThreadPool pool_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

CpuStatus cpu_status() { return CpuStatus{cpu_features(), simd_level_name(simd_level())}; }

}  // namespace chai
