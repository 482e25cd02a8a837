// The whole engine on the GPU against the CPU: stories260K greedy tokens (full attention and
// CHAI, every attention version) and clusters, and each architecture fixture (RoPE styles and
// frequency factors, q/k/v biases, per-head q/k norms). Exits 77 (ctest: skipped) with the reason
// when no device.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "engine/resident_weights.h"
#include "engine/session.h"
#include "model/llama.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

std::vector<int32_t> greedy(Session& s, std::vector<int32_t> prompt, int n, std::vector<float>* first_logits) {
  std::vector<float> logits = s.evaluate(prompt, false);
  if (first_logits) *first_logits = logits;
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    logits = s.evaluate({next}, false);
  }
  return out;
}

// The model's weights with every quantized (Q4_0 .. IQ4_XS) matrix decoded to F32 in `storage`:
// the exact CPU twin of the GPU's quantized GEMV, which dequantizes weights and keeps f32
// activations (the CPU's own quantized path rounds activations to 8 bits).
LlamaWeights dequantized(const LlamaWeights& w, std::vector<std::vector<float>>& storage) {
  auto decode = [&](TensorView t) {
    if (!dtype_uses_quant_dot(t.dtype)) return t;
    storage.emplace_back(size_t(t.rows * t.cols));
    for (int64_t r = 0; r < t.rows; ++r)
      dequantize_row(t.dtype, t.as<const uint8_t>() + size_t(r) * dtype_row_bytes(t.dtype, t.cols),
                     storage.back().data() + r * t.cols, t.cols);
    return TensorView{storage.back().data(), DType::F32, t.rows, t.cols};
  };
  LlamaWeights out = w;
  out.token_embd = decode(w.token_embd);
  out.output = decode(w.output);
  for (auto& l : out.layers)
    for (TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down}) *t = decode(*t);
  return out;
}

}  // namespace

int main() {
  const CudaStatus status = cuda_status();
  if (!status.available) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", status.reason.c_str());
    return 77;
  }
  Suite suite("cuda_engine");
  const std::string models = models_dir();
  auto cpu = make_cpu_backend(0);
  auto gpu = make_cuda_backend(0);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 432, 383, 286};
  const std::vector<const char*> files = {"stories260K.gguf", "stories260K-mha.gguf", "stories260K-f16.gguf", "stories260K-q8_0.gguf"};
  for (const char* file : files)
    if (!std::ifstream(models + file)) {
      std::printf("FAIL no model: %s%s is missing; set CHAI_MODELS to a folder holding %zu stories260K*.gguf files\n",
                  models.c_str(), file, files.size());
      return 1;
    }
  for (const char* file : files) {
    auto model = LlamaModel::load(GgufFile::open(models + file));
    const LlamaConfig& c = model->config();
    ResidentWeights resident(model->weights(), *gpu);
    for (int version = 1; version <= kAttentionVersions; ++version) {
      for (auto [kv, clustered] : {std::pair{DType::F32, false}, {DType::F32, true}, {DType::F16, false}, {DType::F16, true}}) {
        setenv("CHAI_ATTENTION_VERSION", std::to_string(version).c_str(), 1);  // read by the engine's planner each step
        KvPool cpu_pool(*cpu, c.head_dim, 16, kv), gpu_pool(*gpu, c.head_dim, 16, kv);
        std::optional<ChaiPlan> plan;
        if (clustered) {
          plan = ChaiPlan{};
          plan->clustering.method = ClusterMethod::Agglomerative;
          plan->clusters = {8, 8, 8, 4, 2};
        }
        Session on_cpu(c, model->weights(), *cpu, cpu_pool, 128, plan);
        Session on_gpu(c, resident.weights(), *gpu, gpu_pool, 128, plan);
        std::vector<float> lc, lg;
        const auto a = greedy(on_cpu, prompt, 40, &lc);
        const auto b = greedy(on_gpu, prompt, 40, &lg);
        const std::string what = std::string(file) + (clustered ? " CHAI" : " full") + ", " + dtype_name(kv) + " cache, attention v" +
                                 std::to_string(version);
        suite.check_close(relative_error(lg, lc), 1e-4, what + ": prompt logits GPU vs CPU");
        suite.check(a == b, what + ": 40 greedy tokens equal the CPU's");
        if (clustered)
          for (int l = 3; l < 5; ++l)
            suite.check(on_cpu.assignment(l)->membership == on_gpu.assignment(l)->membership &&
                            on_cpu.assignment(l)->representatives == on_gpu.assignment(l)->representatives,
                        what + ": layer " + std::to_string(l) + " clusters equal");
        suite.check(on_gpu.cache_stats().k_bytes == on_cpu.cache_stats().k_bytes, what + ": same K bytes");
      }
    }
  }
  // Architecture fixtures: 4 query heads, 2 KV heads, 2 layers.
  const std::vector<int32_t> text = {100, 2000, 30, 4000, 500, 60, 7000, 80};
  for (const char* file : {"synth-llama3.gguf", "synth-qwen2.gguf", "synth-qwen3.gguf"}) {
    auto model = LlamaModel::load(GgufFile::open(models + file));
    const LlamaConfig& c = model->config();
    ResidentWeights resident(model->weights(), *gpu);
    for (bool clustered : {false, true}) {
      KvPool cpu_pool(*cpu, c.head_dim, 16), gpu_pool(*gpu, c.head_dim, 16);
      std::optional<ChaiPlan> plan;
      if (clustered) {
        plan = ChaiPlan{};
        plan->clustering.method = ClusterMethod::Agglomerative;
        plan->clusters = {2, 2};
      }
      Session on_cpu(c, model->weights(), *cpu, cpu_pool, 64, plan);
      Session on_gpu(c, resident.weights(), *gpu, gpu_pool, 64, plan);
      std::vector<float> lc, lg;
      const auto a = greedy(on_cpu, text, 10, &lc);
      const auto b = greedy(on_gpu, text, 10, &lg);
      const std::string what = std::string(file) + (clustered ? " CHAI" : " full");
      suite.check_close(relative_error(lg, lc), 1e-4, what + ": prompt logits GPU vs CPU");
      suite.check(a == b, what + ": 10 greedy tokens equal the CPU's");
    }
  }
  // Quantized files: the GPU against the CPU on the dequantized weights (same math, other order).
  for (const char* file : {"stories260K-q4_0.gguf", "stories260K-q4_k_m.gguf", "synth-kq-q2_k.gguf", "synth-kq-q3_k_m.gguf",
                           "synth-kq-q4_k_m.gguf", "synth-kq-q5_k_m.gguf", "synth-kq-q6_k.gguf", "synth-kq-iq4_xs.gguf"}) {
    auto model = LlamaModel::load(GgufFile::open(models + file));
    const LlamaConfig& c = model->config();
    std::vector<std::vector<float>> storage;
    const LlamaWeights exact = dequantized(model->weights(), storage);
    ResidentWeights resident(model->weights(), *gpu);
    KvPool cpu_pool(*cpu, c.head_dim, 16, DType::F32), gpu_pool(*gpu, c.head_dim, 16, DType::F32);
    Session on_cpu(c, exact, *cpu, cpu_pool, 128, std::nullopt);
    Session on_gpu(c, resident.weights(), *gpu, gpu_pool, 128, std::nullopt);
    std::vector<float> lc, lg;
    greedy(on_cpu, prompt, 8, &lc);
    greedy(on_gpu, prompt, 8, &lg);
    suite.check_close(relative_error(lg, lc), 1e-4, std::string(file) + ": prompt logits GPU vs CPU (dequantized weights)");
  }
  return suite.finish();
}
