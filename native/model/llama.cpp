#include "llama.h"

#include <climits>

#include "core/error.h"

namespace chai {
namespace {

[[noreturn]] void bad(const std::string& what) { fail(ErrorCode::ModelFormat, what); }

int64_t int_key(const GgufFile& f, const std::string& key, const int64_t* fallback = nullptr) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    bad("model metadata lacks '" + key + "'");
  }
  if (!v->is_integer()) bad("model metadata '" + key + "' must be an integer");
  if (v->as_int() <= 0 || v->as_int() > (int64_t(1) << 31) - 1)
    bad("model metadata '" + key + "' = " + std::to_string(v->as_int()) + " is out of range");
  return v->as_int();
}

double float_key(const GgufFile& f, const std::string& key, double fallback) {
  const GgufValue* v = f.find(key);
  if (!v) return fallback;
  if (v->kind != GgufValue::Kind::Float && !v->is_integer()) bad("model metadata '" + key + "' must be a number");
  return v->as_float();
}

TensorView matrix(const GgufFile& f, const std::string& name, int64_t cols, int64_t rows, bool required = true) {
  const GgufTensor* t = f.tensor(name);
  if (!t) {
    if (!required) return {};
    bad("model lacks tensor '" + name + "'");
  }
  if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows)
    bad("tensor '" + name + "' should be [" + std::to_string(cols) + ", " + std::to_string(rows) + "] but is " +
        [&] {
          std::string s = "[";
          for (size_t d = 0; d < t->dims.size(); ++d) s += (d ? ", " : "") + std::to_string(t->dims[d]);
          return s + "]";
        }());
  return TensorView{const_cast<void*>(t->data), t->dtype, rows, cols};
}

TensorView vector_f32(const GgufFile& f, const std::string& name, int64_t n) {
  const GgufTensor* t = f.tensor(name);
  if (!t) bad("model lacks tensor '" + name + "'");
  if (t->dims.size() != 1 || t->dims[0] != n)
    bad("tensor '" + name + "' should be a vector of " + std::to_string(n) + " values");
  if (t->dtype != DType::F32)
    fail(ErrorCode::Unsupported, "tensor '" + name + "' is " + dtype_name(t->dtype) + "; norm weights must be F32");
  return TensorView{const_cast<void*>(t->data), DType::F32, 1, n};
}

}  // namespace

std::shared_ptr<LlamaModel> LlamaModel::load(std::shared_ptr<GgufFile> file) {
  const GgufFile& f = *file;
  const GgufValue* arch = f.find("general.architecture");
  if (!arch || arch->kind != GgufValue::Kind::String) bad("model metadata lacks 'general.architecture'");
  if (arch->s != "llama")
    fail(ErrorCode::Unsupported, "architecture '" + arch->s + "' is not supported (this engine runs 'llama')");

  auto model = std::shared_ptr<LlamaModel>(new LlamaModel());
  model->file_ = file;
  LlamaConfig& c = model->config_;
  c.n_layers = int(int_key(f, "llama.block_count"));
  c.n_embd = int(int_key(f, "llama.embedding_length"));
  c.n_ff = int(int_key(f, "llama.feed_forward_length"));
  c.n_heads = int(int_key(f, "llama.attention.head_count"));
  const int64_t heads = c.n_heads;
  c.n_kv_heads = int(int_key(f, "llama.attention.head_count_kv", &heads));
  c.n_ctx_train = int(int_key(f, "llama.context_length"));
  c.rms_eps = float(float_key(f, "llama.attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = float(float_key(f, "llama.rope.freq_base", 10000.0));
  if (c.n_embd % c.n_heads != 0)
    bad("embedding_length " + std::to_string(c.n_embd) + " is not divisible by head_count " + std::to_string(c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    bad("head_count " + std::to_string(c.n_heads) + " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
  const int64_t head_dim = c.n_embd / c.n_heads;
  c.head_dim = int(int_key(f, "llama.attention.key_length", &head_dim));
  if (int_key(f, "llama.attention.value_length", &head_dim) != c.head_dim)
    fail(ErrorCode::Unsupported, "models whose key and value head sizes differ are not supported");
  if (c.head_dim % 2 != 0) bad("head size " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (int_key(f, "llama.rope.dimension_count", &head_dim) != c.head_dim)
    fail(ErrorCode::Unsupported, "partial RoPE (rope.dimension_count < head size) is not supported");
  if (!(c.rms_eps > 0) || !(c.rope_base > 0)) bad("rms epsilon and rope.freq_base must be positive");

  const GgufTensor* embd = f.tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2) bad("model lacks a 2-D 'token_embd.weight'");
  if (embd->dims[1] > INT32_MAX) bad("token_embd.weight has more rows than token ids can address");
  c.n_vocab = int(embd->dims[1]);
  // Token ids come from the tokenizer and index token_embd and output: the three must agree, or an
  // id the tokenizer produces (or a sampled one it cannot decode) reaches past a table.
  for (const char* key : {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
    const GgufValue* list = f.find(key);
    if (list && (list->kind != GgufValue::Kind::Array || list->items.size() != size_t(c.n_vocab)))
      bad(std::string("'") + key + "' lists " + std::to_string(list->items.size()) + " entries but token_embd.weight has " +
          std::to_string(c.n_vocab) + " rows: the vocabulary and the embedding table must be the same size");
  }
  if (const GgufValue* size = f.find("llama.vocab_size"))
    if (!size->is_integer() || size->as_int() != c.n_vocab)
      bad("'llama.vocab_size' does not match the " + std::to_string(c.n_vocab) + " rows of token_embd.weight");

  LlamaWeights& w = model->weights_;
  w.token_embd = matrix(f, "token_embd.weight", c.n_embd, c.n_vocab);
  w.output_norm = vector_f32(f, "output_norm.weight", c.n_embd);
  w.output = matrix(f, "output.weight", c.n_embd, c.n_vocab, false);
  w.tied_output = w.output.data == nullptr;
  if (w.tied_output) w.output = w.token_embd;
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer layer;
    layer.attn_norm = vector_f32(f, p + "attn_norm.weight", c.n_embd);
    layer.wq = matrix(f, p + "attn_q.weight", c.n_embd, c.q_dim());
    layer.wk = matrix(f, p + "attn_k.weight", c.n_embd, c.kv_dim());
    layer.wv = matrix(f, p + "attn_v.weight", c.n_embd, c.kv_dim());
    layer.wo = matrix(f, p + "attn_output.weight", c.q_dim(), c.n_embd);
    layer.ffn_norm = vector_f32(f, p + "ffn_norm.weight", c.n_embd);
    layer.gate = matrix(f, p + "ffn_gate.weight", c.n_embd, c.n_ff);
    layer.up = matrix(f, p + "ffn_up.weight", c.n_embd, c.n_ff);
    layer.down = matrix(f, p + "ffn_down.weight", c.n_ff, c.n_embd);
    w.layers.push_back(layer);
  }
  return model;
}

size_t LlamaModel::weight_bytes() const {
  size_t total = 0;
  for (const auto& t : file_->tensors()) total += t.bytes;
  return total;
}

}  // namespace chai
