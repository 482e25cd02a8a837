// A LLaMA-family model read from a GGUF file: hyperparameters from the metadata and weight views
// straight into the memory-mapped file (quantized weights stay quantized). What differs between
// architectures (llama, mistral, qwen2, qwen3) comes from their ArchitectureDescription; the
// loading lives in architecture.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "architecture.h"
#include "core/tensor.h"
#include "gguf.h"

namespace chai {

struct LlamaConfig {
  int n_layers = 0;
  int n_embd = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int n_ff = 0;
  int n_vocab = 0;
  int n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_base = 10000.0f;
  // From the architecture's description (and the file, for the sliding window).
  std::string architecture;
  RopeStyle rope_style = RopeStyle::Normal;
  bool qkv_bias = false;     // layers carry bq, bk, bv
  bool qk_norm = false;      // layers carry q_norm, k_norm (per-head RMSNorm before RoPE)
  int sliding_window = 0;    // > 0: a token attends to at most this many tokens (itself included)

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int group() const { return n_heads / n_kv_heads; }  // query heads per KV head
};

struct LlamaLayer {
  TensorView attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
  TensorView bq, bk, bv;      // config.qkv_bias; empty otherwise
  TensorView q_norm, k_norm;  // config.qk_norm: head_dim weights; empty otherwise
};

struct LlamaWeights {
  TensorView token_embd, output_norm, output;  // output aliases token_embd when the model ties them
  bool tied_output = false;
  TensorView rope_factors;  // head_dim/2 F32 RoPE frequency divisors (rope_freqs.weight); empty: none
  std::vector<LlamaLayer> layers;
};

class LlamaModel {
 public:
  // Validates architecture, hyperparameters and every tensor's shape and type (ModelFormat or
  // Unsupported errors that name the offending key or tensor). A tensor the architecture does not
  // use, or a metadata key of the architecture that the engine does not understand, is refused
  // (Unsupported) rather than ignored: either could change what the model computes.
  static std::shared_ptr<LlamaModel> load(std::shared_ptr<GgufFile> file);

  const LlamaConfig& config() const { return config_; }
  const LlamaWeights& weights() const { return weights_; }
  const GgufFile& file() const { return *file_; }
  // Bytes of weights mapped from the file.
  size_t weight_bytes() const;

 private:
  std::shared_ptr<GgufFile> file_;
  LlamaConfig config_;
  LlamaWeights weights_;
};

}  // namespace chai
