// A LLaMA-architecture model read from a GGUF file: hyperparameters from the metadata and
// weight views straight into the memory-mapped file (quantized weights stay quantized).
#pragma once
#include <memory>
#include <string>
#include <vector>

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

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int group() const { return n_heads / n_kv_heads; }  // query heads per KV head
};

struct LlamaLayer {
  TensorView attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
};

struct LlamaWeights {
  TensorView token_embd, output_norm, output;  // output aliases token_embd when the model ties them
  bool tied_output = false;
  std::vector<LlamaLayer> layers;
};

class LlamaModel {
 public:
  // Validates architecture, hyperparameters and every tensor's shape and type (ModelFormat or
  // Unsupported errors that name the offending key or tensor).
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
