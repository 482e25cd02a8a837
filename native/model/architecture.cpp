// The registry of architectures and the loading they share: hyperparameters from "<arch>.*"
// metadata, tensors by their GGUF names, and the refusal of anything not understood.
#include <climits>
#include <set>

#include "core/error.h"
#include "llama.h"

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

std::string dims_string(const GgufTensor& t) {
  std::string s = "[";
  for (size_t d = 0; d < t.dims.size(); ++d) s += (d ? ", " : "") + std::to_string(t.dims[d]);
  return s + "]";
}

// Reads tensors by name and remembers which ones it read, so that the rest can be refused.
class TensorReader {
 public:
  explicit TensorReader(const GgufFile& f) : f_(f) {}

  TensorView matrix(const std::string& name, int64_t cols, int64_t rows, bool required = true) {
    const GgufTensor* t = take(name, required);
    if (!t) return {};
    if (t->dims.size() != 2 || t->dims[0] != cols || t->dims[1] != rows)
      bad("tensor '" + name + "' should be [" + std::to_string(cols) + ", " + std::to_string(rows) + "] but is " +
          dims_string(*t));
    return TensorView{const_cast<void*>(t->data), t->dtype, rows, cols};
  }

  TensorView vector_f32(const std::string& name, int64_t n, bool required = true) {
    const GgufTensor* t = take(name, required);
    if (!t) return {};
    if (t->dims.size() != 1 || t->dims[0] != n)
      bad("tensor '" + name + "' should be a vector of " + std::to_string(n) + " values but is " + dims_string(*t));
    if (t->dtype != DType::F32)
      fail(ErrorCode::Unsupported, "tensor '" + name + "' is " + dtype_name(t->dtype) + "; vectors (norms, biases) must be F32");
    return TensorView{const_cast<void*>(t->data), DType::F32, 1, n};
  }

  // Unsupported naming the first tensor of the file that nothing read.
  void refuse_unread(const std::string& architecture) const {
    for (const GgufTensor& t : f_.tensors())
      if (!read_.count(t.name))
        fail(ErrorCode::Unsupported, "tensor '" + t.name + "' is not part of the '" + architecture +
                                         "' architecture as this engine runs it; refusing to ignore it");
  }

 private:
  const GgufTensor* take(const std::string& name, bool required) {
    const GgufTensor* t = f_.tensor(name);
    if (!t && required) bad("model lacks tensor '" + name + "'");
    if (t) read_.insert(name);
    return t;
  }

  const GgufFile& f_;
  std::set<std::string> read_;
};

// Metadata keys under "<arch>." that this loader reads, or that cannot change the computation.
const std::set<std::string>& understood_keys() {
  static const std::set<std::string> keys = {
      "block_count", "context_length", "embedding_length", "feed_forward_length", "vocab_size",
      "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
      "attention.key_length", "attention.value_length", "rope.freq_base", "rope.dimension_count",
      "rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length", "rope.scaling.finetuned",
      "expert_count", "expert_used_count"};
  return keys;
}

// Refuses keys of the architecture that would change the computation in ways not implemented.
void check_keys(const GgufFile& f, const ArchitectureDescription& arch) {
  const std::string prefix = arch.name + ".";
  for (const auto& [key, value] : f.metadata()) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = key.substr(prefix.size());
    if (rest == "attention.sliding_window" && arch.sliding_window) continue;
    if (!understood_keys().count(rest))
      fail(ErrorCode::Unsupported, "model metadata '" + key + "' is not understood by this engine and may change what the "
                                   "model computes; refusing to ignore it");
  }
  const GgufValue* scaling = f.find(prefix + "rope.scaling.type");
  const bool no_scaling = !scaling || (scaling->kind == GgufValue::Kind::String && scaling->s == "none");
  if (!no_scaling)
    fail(ErrorCode::Unsupported, "RoPE scaling '" + (scaling->kind == GgufValue::Kind::String ? scaling->s : "?") +
                                     "' (" + prefix + "rope.scaling.type) is not supported; only unscaled RoPE and "
                                     "Llama 3.1 frequency factors (rope_freqs.weight) are");
  if (scaling == nullptr && float_key(f, prefix + "rope.scaling.factor", 1.0) != 1.0)
    fail(ErrorCode::Unsupported, "RoPE scaling factor " + prefix + "rope.scaling.factor != 1 is not supported");
  for (const char* experts : {"expert_count", "expert_used_count"}) {
    const GgufValue* v = f.find(prefix + experts);
    if (v && (!v->is_integer() || v->as_int() != 0))
      fail(ErrorCode::Unsupported, "mixture-of-experts models (" + prefix + experts + " > 0) are not supported");
  }
}

}  // namespace

const std::vector<ArchitectureDescription>& supported_architectures() {
  static const std::vector<ArchitectureDescription> all = [] {
    std::vector<ArchitectureDescription> v = llama_family();
    for (auto& d : qwen_family()) v.push_back(d);
    return v;
  }();
  return all;
}

HfCheckpoint llama_style_checkpoint() {
  HfCheckpoint c;
  c.globals = {{"model.embed_tokens.weight", "token_embd.weight"},
               {"model.norm.weight", "output_norm.weight"},
               {"lm_head.weight", "output.weight"}};
  c.layer_tensors = {{"input_layernorm.weight", "attn_norm.weight"},
                     {"self_attn.q_proj.weight", "attn_q.weight"},
                     {"self_attn.k_proj.weight", "attn_k.weight"},
                     {"self_attn.v_proj.weight", "attn_v.weight"},
                     {"self_attn.o_proj.weight", "attn_output.weight"},
                     {"post_attention_layernorm.weight", "ffn_norm.weight"},
                     {"mlp.gate_proj.weight", "ffn_gate.weight"},
                     {"mlp.up_proj.weight", "ffn_up.weight"},
                     {"mlp.down_proj.weight", "ffn_down.weight"}};
  return c;
}

const ArchitectureDescription& architecture_for_model_type(const std::string& model_type) {
  std::string names;
  for (const auto& d : supported_architectures())
    for (const std::string& t : d.hf.model_types) {
      if (t == model_type) return d;
      names += (names.empty() ? "" : ", ") + t;
    }
  fail(ErrorCode::Unsupported, "Hugging Face folder: model_type '" + model_type + "' is not supported (supported: " +
                                   names + ")");
}

const ArchitectureDescription& architecture_named(const std::string& name) {
  std::string names;
  for (const auto& d : supported_architectures()) {
    if (d.name == name) return d;
    names += (names.empty() ? "" : ", ") + d.name;
  }
  fail(ErrorCode::Unsupported, "architecture '" + name + "' is not supported (this engine runs " + names + ")");
}

std::shared_ptr<LlamaModel> LlamaModel::load(std::shared_ptr<GgufFile> file) {
  const GgufFile& f = *file;
  const GgufValue* arch_value = f.find("general.architecture");
  if (!arch_value || arch_value->kind != GgufValue::Kind::String) bad("model metadata lacks 'general.architecture'");
  const ArchitectureDescription& arch = architecture_named(arch_value->s);
  const std::string k = arch.name + ".";

  auto model = std::shared_ptr<LlamaModel>(new LlamaModel());
  model->file_ = file;
  LlamaConfig& c = model->config_;
  c.architecture = arch.name;
  c.rope_style = arch.rope_style;
  c.qkv_bias = arch.qkv_bias;
  c.qk_norm = arch.qk_norm;
  c.n_layers = int(int_key(f, k + "block_count"));
  c.n_embd = int(int_key(f, k + "embedding_length"));
  c.n_ff = int(int_key(f, k + "feed_forward_length"));
  c.n_heads = int(int_key(f, k + "attention.head_count"));
  const int64_t heads = c.n_heads;
  c.n_kv_heads = int(int_key(f, k + "attention.head_count_kv", &heads));
  c.n_ctx_train = int(int_key(f, k + "context_length"));
  c.rms_eps = float(float_key(f, k + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = float(float_key(f, k + "rope.freq_base", 10000.0));
  if (arch.sliding_window) {
    const GgufValue* window = f.find(k + "attention.sliding_window");
    // Converters write 0 for "no window".
    if (window && !(window->is_integer() && window->as_int() == 0))
      c.sliding_window = int(int_key(f, k + "attention.sliding_window"));
  }
  check_keys(f, arch);  // after the required keys, so that a missing one is named as missing
  if (c.n_heads % c.n_kv_heads != 0)
    bad("head_count " + std::to_string(c.n_heads) + " is not a multiple of head_count_kv " + std::to_string(c.n_kv_heads));
  const GgufValue* key_length = f.find(k + "attention.key_length");
  if (!key_length && c.n_embd % c.n_heads != 0)
    bad("embedding_length " + std::to_string(c.n_embd) + " is not divisible by head_count " + std::to_string(c.n_heads));
  const int64_t head_dim = key_length ? int_key(f, k + "attention.key_length") : c.n_embd / c.n_heads;
  c.head_dim = int(head_dim);
  if (int_key(f, k + "attention.value_length", &head_dim) != c.head_dim)
    fail(ErrorCode::Unsupported, "models whose key and value head sizes differ are not supported");
  if (c.head_dim % 2 != 0) bad("head size " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (int_key(f, k + "rope.dimension_count", &head_dim) != c.head_dim)
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
  if (const GgufValue* size = f.find(k + "vocab_size"))
    if (!size->is_integer() || size->as_int() != c.n_vocab)
      bad("'" + k + "vocab_size' does not match the " + std::to_string(c.n_vocab) + " rows of token_embd.weight");

  TensorReader read(f);
  LlamaWeights& w = model->weights_;
  w.token_embd = read.matrix("token_embd.weight", c.n_embd, c.n_vocab);
  w.output_norm = read.vector_f32("output_norm.weight", c.n_embd);
  w.output = read.matrix("output.weight", c.n_embd, c.n_vocab, false);
  w.tied_output = w.output.data == nullptr;
  if (w.tied_output) w.output = w.token_embd;
  if (arch.rope_freq_factors) w.rope_factors = read.vector_f32("rope_freqs.weight", c.head_dim / 2, false);
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LlamaLayer layer;
    layer.attn_norm = read.vector_f32(p + "attn_norm.weight", c.n_embd);
    layer.wq = read.matrix(p + "attn_q.weight", c.n_embd, c.q_dim());
    layer.wk = read.matrix(p + "attn_k.weight", c.n_embd, c.kv_dim());
    layer.wv = read.matrix(p + "attn_v.weight", c.n_embd, c.kv_dim());
    layer.wo = read.matrix(p + "attn_output.weight", c.q_dim(), c.n_embd);
    layer.ffn_norm = read.vector_f32(p + "ffn_norm.weight", c.n_embd);
    layer.gate = read.matrix(p + "ffn_gate.weight", c.n_embd, c.n_ff);
    layer.up = read.matrix(p + "ffn_up.weight", c.n_embd, c.n_ff);
    layer.down = read.matrix(p + "ffn_down.weight", c.n_ff, c.n_embd);
    if (arch.qkv_bias) {
      layer.bq = read.vector_f32(p + "attn_q.bias", c.q_dim());
      layer.bk = read.vector_f32(p + "attn_k.bias", c.kv_dim());
      layer.bv = read.vector_f32(p + "attn_v.bias", c.kv_dim());
    }
    if (arch.qk_norm) {
      layer.q_norm = read.vector_f32(p + "attn_q_norm.weight", c.head_dim);
      layer.k_norm = read.vector_f32(p + "attn_k_norm.weight", c.head_dim);
    }
    w.layers.push_back(layer);
  }
  read.refuse_unread(arch.name);
  return model;
}

size_t LlamaModel::weight_bytes() const {
  size_t total = 0;
  for (const auto& t : file_->tensors()) total += t.bytes;
  return total;
}

}  // namespace chai
