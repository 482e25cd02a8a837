// The whole engine on the GPU against the CPU, in sections:
//   test_cuda_engine [stories] [fixtures] [quantized] [synthetic]      (none: all of them)
// stories: stories260K greedy tokens (full attention and CHAI, every attention version, f32 and
// f16 caches) and clusters; fixtures: each architecture fixture (RoPE styles and frequency
// factors, q/k/v biases, per-head q/k norms); quantized: files of every quantized type;
// synthetic: a random-weight model with head size 64 (the tensor-core prefill's) at
// $CHAI_SYNTHETIC_MODEL (npm run test:gpu-sim writes one), run with attention version 2, matmul
// versions 2 and 3 and an f16 cache so that prompts take the tensor-core GEMMs and prefill;
// quantized files also run with matmul version 3 (its quantized GEMV). The simulated GPU runs
// about a million thread-instructions a second, and one forward pass of stories260K is tens of
// millions: there a few sessions (each version, cache type and CHAI once) take the prompt and one
// greedy token, quantized files the prompt only, and the fixtures (vocabularies of 128k and 152k
// tokens: an LM head of 4M threads) are left out; their ops run in test_cuda_ops. Exits 77
// (ctest: skipped) with the reason when no device.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "engine/prefix_cache.h"
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

// Greedy tokens and prompt logits of one model on the CPU and the GPU, compared.
void compare_sessions(Suite& suite, const LlamaConfig& c, const LlamaWeights& cpu_weights, const LlamaWeights& gpu_weights, Backend& cpu,
                      Backend& gpu, DType kv, const std::optional<ChaiPlan>& plan, const std::vector<int32_t>& prompt, int tokens,
                      const std::string& what, double logits_bound = 1e-4) {
  KvPool cpu_pool(cpu, c.head_dim, 16, kv), gpu_pool(gpu, c.head_dim, 16, kv);
  Session on_cpu(c, cpu_weights, cpu, cpu_pool, 128, plan);
  Session on_gpu(c, gpu_weights, gpu, gpu_pool, 128, plan);
  std::vector<float> lc, lg;
  const auto a = greedy(on_cpu, prompt, tokens, &lc);
  const auto b = greedy(on_gpu, prompt, tokens, &lg);
  suite.check_close(relative_error(lg, lc), logits_bound, what + ": prompt logits GPU vs CPU");
  suite.check(a == b, what + ": " + std::to_string(tokens) + " greedy tokens equal the CPU's");
  if (plan)
    for (int l = 0; l < c.n_layers; ++l)
      if (plan->clusters[size_t(l)] < c.n_heads)
        suite.check(on_cpu.assignment(l)->membership == on_gpu.assignment(l)->membership &&
                        on_cpu.assignment(l)->representatives == on_gpu.assignment(l)->representatives,
                    what + ": layer " + std::to_string(l) + " clusters equal");
  suite.check(on_gpu.cache_stats().k_bytes == on_cpu.cache_stats().k_bytes, what + ": same K bytes");
}

std::optional<ChaiPlan> agglomerative_plan(std::vector<int> clusters) {
  ChaiPlan plan;
  plan.clustering.method = ClusterMethod::Agglomerative;
  plan.clusters = std::move(clusters);
  return plan;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> sections(argv + 1, argv + argc);
  for (const std::string& name : sections)
    if (name != "stories" && name != "fixtures" && name != "quantized" && name != "synthetic") {
      std::fprintf(stderr, "usage: test_cuda_engine [stories] [fixtures] [quantized] [synthetic]\n");
      return 2;
    }
  auto section = [&](const char* name) { return sections.empty() || std::count(sections.begin(), sections.end(), name) > 0; };
  const CudaStatus status = cuda_status();
  if (!status.available) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", status.reason.c_str());
    return 77;
  }
  Suite suite("cuda_engine");
  const auto& dev = status.devices[0];
  std::printf("device: %s (sm_%d%d)\n", dev.name.c_str(), dev.compute_major, dev.compute_minor);
  const bool simulated = shape_scale_for(dev.name) == ShapeScale::Simulator;
  const int greedy_tokens = simulated ? 1 : 40, quantized_tokens = simulated ? 0 : 8;
  const std::string models = models_dir();
  auto cpu = make_cpu_backend(0);
  auto gpu = make_cuda_backend(0);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 432, 383, 286};
  const std::vector<const char*> files =
      simulated ? std::vector<const char*>{"stories260K.gguf", "stories260K-mha.gguf", "stories260K-f16.gguf"}
                : std::vector<const char*>{"stories260K.gguf", "stories260K-mha.gguf", "stories260K-f16.gguf", "stories260K-q8_0.gguf"};
  for (const char* file : files)
    if (!std::ifstream(models + file)) {
      std::printf("FAIL no model: %s%s is missing; set CHAI_MODELS to a folder holding %zu stories260K*.gguf files\n",
                  models.c_str(), file, files.size());
      return 1;
    }
  // (attention version, cache type, CHAI) per file: every combination on a GPU, three on the simulator.
  struct Run {
    int version;
    DType kv;
    bool clustered;
  };
  std::vector<Run> every_run;
  for (int version = 1; version <= kAttentionVersions; ++version)
    for (auto [kv, clustered] : {std::pair{DType::F32, false}, {DType::F32, true}, {DType::F16, false}, {DType::F16, true}})
      every_run.push_back({version, kv, clustered});
  auto runs_for = [&](const std::string& file) {
    if (!simulated) return every_run;
    if (file == "stories260K.gguf") return std::vector<Run>{{1, DType::F32, false}};
    if (file == "stories260K-mha.gguf") return std::vector<Run>{{2, DType::F16, true}};
    if (file == "stories260K-f16.gguf") return std::vector<Run>{{2, DType::F32, true}};
    return std::vector<Run>{};
  };
  if (section("stories"))
    for (const char* file : files) {
      auto model = LlamaModel::load(GgufFile::open(models + file));
      const LlamaConfig& c = model->config();
      ResidentWeights resident(model->weights(), *gpu);
      for (const Run& run : runs_for(file)) {
        setenv("CHAI_ATTENTION_VERSION", std::to_string(run.version).c_str(), 1);  // read by the engine's planner each step
        const std::string what = std::string(file) + (run.clustered ? " CHAI" : " full") + ", " + dtype_name(run.kv) +
                                 " cache, attention v" + std::to_string(run.version);
        compare_sessions(suite, c, model->weights(), resident.weights(), *cpu, *gpu, run.kv,
                         run.clustered ? agglomerative_plan({8, 8, 8, 4, 2}) : std::nullopt, prompt, greedy_tokens, what);
      }
    }
  unsetenv("CHAI_ATTENTION_VERSION");
  // Prefix caching on the device: a request that starts inside a cached page (so copies it on the
  // device before writing) equals the CPU's uncached run, and the cached page is left as it was.
  if (section("stories") && !simulated) {
    auto model = LlamaModel::load(GgufFile::open(models + "stories260K-mha.gguf"));
    const LlamaConfig& c = model->config();
    ResidentWeights resident(model->weights(), *gpu);
    for (const auto& plan : {std::optional<ChaiPlan>(), agglomerative_plan({8, 8, 8, 4, 2})}) {
      const std::string what = std::string("prefix cache, ") + (plan ? "CHAI" : "full");
      KvPool gpu_pool(*gpu, c.head_dim, 16), cpu_pool(*cpu, c.head_dim, 16);
      PrefixCache cache(gpu_pool);
      std::vector<int32_t> first(40), second;
      for (int i = 0; i < 40; ++i) first[size_t(i)] = 3 + (i * 37) % (c.n_vocab - 3);
      second.assign(first.begin(), first.begin() + 36);
      for (int32_t t : {7, 8, 9, 10}) second.push_back(t);
      Session donor(c, resident.weights(), *gpu, gpu_pool, 128, plan, nullptr, &cache);
      greedy(donor, first, 8, nullptr);  // 48 tokens: three whole pages cached
      Session cached(c, resident.weights(), *gpu, gpu_pool, 128, plan, nullptr, &cache);
      suite.check(cached.reuse_prefix(second) == 36, what + ": 2 whole pages and 4 tokens of the third come from the cache");
      Session uncached(c, model->weights(), *cpu, cpu_pool, 128, plan);
      std::vector<float> lg, lc;
      const auto a = greedy(cached, std::vector<int32_t>(second.begin() + 36, second.end()), greedy_tokens, &lg);
      const auto b = greedy(uncached, second, greedy_tokens, &lc);
      suite.check_close(relative_error(lg, lc), 1e-4, what + ": logits from cached pages (GPU) vs uncached (CPU)");
      suite.check(a == b, what + ": greedy tokens equal the CPU's uncached run");
      Session again(c, resident.weights(), *gpu, gpu_pool, 128, plan, nullptr, &cache);
      suite.check(again.reuse_prefix(first) == 39, what + ": the donor's pages are still cached");
      std::vector<float> la, ld;
      Session uncached_first(c, model->weights(), *cpu, cpu_pool, 128, plan);
      greedy(again, {first.back()}, 0, &la);
      greedy(uncached_first, first, 0, &ld);
      suite.check_close(relative_error(la, ld), 1e-4, what + ": the page another request copied and wrote is unchanged");
    }
  }
  // Architecture fixtures: 4 query heads, 2 KV heads, 2 layers.
  const std::vector<int32_t> text = {100, 2000, 30, 4000, 500, 60, 7000, 80};
  if (section("fixtures") && !simulated)
    for (const char* file : {"synth-llama3.gguf", "synth-qwen2.gguf", "synth-qwen3.gguf"}) {
      auto model = LlamaModel::load(GgufFile::open(models + file));
      const LlamaConfig& c = model->config();
      ResidentWeights resident(model->weights(), *gpu);
      for (bool clustered : {false, true})
        compare_sessions(suite, c, model->weights(), resident.weights(), *cpu, *gpu, DType::F32,
                         clustered ? agglomerative_plan({2, 2}) : std::nullopt, text, 10,
                         std::string(file) + (clustered ? " CHAI" : " full"));
    }
  // Quantized files: the GPU against the CPU on the dequantized weights (same math, other order).
  const std::vector<const char*> quantized_files =
      simulated ? std::vector<const char*>{"stories260K-q4_0.gguf", "stories260K-q4_k_m.gguf"}
                : std::vector<const char*>{"stories260K-q4_0.gguf", "stories260K-q4_k_m.gguf", "synth-kq-q2_k.gguf", "synth-kq-q3_k_m.gguf",
                                           "synth-kq-q4_k_m.gguf", "synth-kq-q5_k_m.gguf", "synth-kq-q6_k.gguf", "synth-kq-iq4_xs.gguf"};
  // Each with the default matmul (version 1) and version 3 (its quantized GEMV).
  std::unique_ptr<Backend> gpu_matmul_v3;
  if (section("quantized")) {
    setenv("CHAI_MATMUL_VERSION", "3", 1);  // read when a CUDA backend is made
    gpu_matmul_v3 = make_cuda_backend(0);
    unsetenv("CHAI_MATMUL_VERSION");
  }
  for (const char* file : section("quantized") ? quantized_files : std::vector<const char*>{}) {
    auto model = LlamaModel::load(GgufFile::open(models + file));
    const LlamaConfig& c = model->config();
    std::vector<std::vector<float>> storage;
    const LlamaWeights exact = dequantized(model->weights(), storage);
    KvPool cpu_pool(*cpu, c.head_dim, 16, DType::F32);
    Session on_cpu(c, exact, *cpu, cpu_pool, 128, std::nullopt);
    std::vector<float> lc;
    greedy(on_cpu, prompt, quantized_tokens, &lc);
    for (Backend* be : {gpu.get(), gpu_matmul_v3.get()}) {
      ResidentWeights resident(model->weights(), *be);
      KvPool gpu_pool(*be, c.head_dim, 16, DType::F32);
      Session on_gpu(c, resident.weights(), *be, gpu_pool, 128, std::nullopt);
      std::vector<float> lg;
      greedy(on_gpu, prompt, quantized_tokens, &lg);
      suite.check_close(relative_error(lg, lc), 1e-4,
                        std::string(file) + (be == gpu.get() ? "" : ", matmul v3") + ": prompt logits GPU vs CPU (dequantized weights)");
    }
  }

  // The synthetic model (4 heads of 64, 2 KV heads, F16 weights) with attention version 2, matmul
  // versions 2 and 3 and an f16 cache: a 40-token prompt takes the tensor-core GEMM and prefill
  // (version 2's only head sizes are 64 and 128), decode the split-KV kernel and the GEMV.
  if (section("synthetic")) {
    const char* path = std::getenv("CHAI_SYNTHETIC_MODEL");
    if (!path || !*path) {
      suite.check(false,
                  "the synthetic section needs CHAI_SYNTHETIC_MODEL: node scripts/write-synthetic-model.js "
                  "gpu-models/synthetic-hd64.gguf (scripts/gpu-check.sh sets it from there; npm run test:gpu-sim writes its own)");
    } else {
      auto model = LlamaModel::load(GgufFile::open(path));
      const LlamaConfig& c = model->config();
      std::vector<int32_t> long_prompt;
      for (int i = 0; i < 40; ++i) long_prompt.push_back(int32_t(3 + (i * 37) % (c.n_vocab - 3)));
      setenv("CHAI_ATTENTION_VERSION", "2", 1);
      // Matmul version 3 takes the same prompt through its GEMM (on the simulator without CHAI:
      // the clustered session adds attention work, not matmul paths).
      for (const char* matmul_version : {"2", "3"}) {
        setenv("CHAI_MATMUL_VERSION", matmul_version, 1);  // read when a CUDA backend is made
        auto gpu_mm = make_cuda_backend(0);
        unsetenv("CHAI_MATMUL_VERSION");
        ResidentWeights resident(model->weights(), *gpu_mm);
        for (bool clustered : {false, true}) {
          if (clustered && simulated && std::string(matmul_version) == "3") continue;
          compare_sessions(suite, c, model->weights(), resident.weights(), *cpu, *gpu_mm, DType::F16,
                           clustered ? agglomerative_plan({2, 1}) : std::nullopt, long_prompt, simulated ? 1 : 10,
                           std::string("synthetic hd=64, matmul v") + matmul_version + ", attention v2, f16 cache" +
                               (clustered ? " CHAI" : " full"),
                           3e-3);  // activations, Q and P rounded to f16 on tensor cores (matmul_bounds.h, attention_tolerance)
        }
      }
      unsetenv("CHAI_ATTENTION_VERSION");
    }
  }
  return suite.finish();
}
