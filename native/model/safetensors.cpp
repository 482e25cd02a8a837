#include "safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "architecture.h"
#include "json.h"

namespace chai {
namespace fs = std::filesystem;
namespace {

[[noreturn]] void bad(const std::string& what) { fail(ErrorCode::ModelFormat, "Hugging Face folder: " + what); }
[[noreturn]] void unsupported(const std::string& what) { fail(ErrorCode::Unsupported, "Hugging Face folder: " + what); }

JsonValue read_json_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) bad("cannot read '" + file.string() + "'");
  std::stringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  JsonValue v = parse_json(s.data(), s.size(), file.string());
  if (!v.is_object()) bad("'" + file.string() + "' must hold a JSON object");
  return v;
}

// ---- config.json -> GGUF metadata ------------------------------------------------------------

class Config {
 public:
  explicit Config(JsonValue json) : json_(std::move(json)) {}

  const JsonValue* get(const std::string& key) const {
    const JsonValue* v = json_.find(key);
    return v && !v->is_null() ? v : nullptr;
  }
  int64_t integer(const std::string& key, const int64_t* fallback = nullptr, int64_t minimum = 1) const {
    const JsonValue* v = get(key);
    if (!v) {
      if (fallback) return *fallback;
      bad("config.json lacks '" + key + "'");
    }
    if (v->kind != JsonValue::Kind::Number || !v->integral || v->number < double(minimum) || v->number > 2147483647.0)
      bad("config.json '" + key + "' must be an integer of at least " + std::to_string(minimum));
    return int64_t(v->number);
  }
  double number(const std::string& key, double fallback) const {
    const JsonValue* v = get(key);
    if (!v) return fallback;
    if (v->kind != JsonValue::Kind::Number) bad("config.json '" + key + "' must be a number");
    return v->number;
  }
  bool flag(const std::string& key, bool fallback) const {
    const JsonValue* v = get(key);
    if (!v) return fallback;
    if (v->kind != JsonValue::Kind::Bool) bad("config.json '" + key + "' must be true or false");
    return v->b;
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    const JsonValue* v = get(key);
    if (!v) return fallback;
    if (v->kind != JsonValue::Kind::String) bad("config.json '" + key + "' must be a string");
    return v->s;
  }

 private:
  JsonValue json_;
};

GgufValue uint_value(int64_t n) {
  GgufValue v;
  v.gguf_type = 4;  // u32
  v.u = uint64_t(n);
  return v;
}
GgufValue float_value(double f) {
  GgufValue v;
  v.kind = GgufValue::Kind::Float;
  v.gguf_type = 6;  // f32
  v.f = double(float(f));
  return v;
}
GgufValue string_value(const std::string& s) {
  GgufValue v;
  v.kind = GgufValue::Kind::String;
  v.gguf_type = 8;
  v.s = s;
  return v;
}

// What the engine needs from config.json, checked. Options that would change the computation
// and that this engine does not implement are errors, never silently ignored.
struct HfHyperparameters {
  const ArchitectureDescription* arch;
  int64_t layers, embd, ff, heads, kv_heads, head_dim, vocab, context;
  bool tied;
  std::vector<float> rope_factors;  // rope_freqs.weight from a 'llama3' RoPE scaling; empty: none
};

// The attention window config.json sets (0: none). Qwen-style configs apply it only with their
// switch on, and only to the layers from max_window_layers on; the engine has one window for all
// layers, and only for architectures that declare one.
int64_t sliding_window(const Config& c, const HfHyperparameters& h) {
  if (const JsonValue* types = c.get("layer_types")) {
    if (types->kind != JsonValue::Kind::Array) bad("config.json 'layer_types' must be a list");
    for (const JsonValue& t : types->items)
      if (t.kind != JsonValue::Kind::String || t.s != "full_attention")
        unsupported("config.json 'layer_types' lists a layer that is not 'full_attention'; only full attention in "
                    "every layer is supported");
  }
  const std::string& on = h.arch->hf.sliding_window_switch;
  if (!c.get("sliding_window") || (!on.empty() && !c.flag(on, false))) return 0;
  const int64_t window = c.integer("sliding_window");
  const int64_t none = 0;
  const int64_t first_layer = on.empty() ? 0 : c.integer("max_window_layers", &none, 0);
  if (window >= h.context || first_layer >= h.layers) return 0;  // it never narrows attention
  if (first_layer > 0)
    unsupported("a sliding window (sliding_window " + std::to_string(window) + ") in layers " + std::to_string(first_layer) +
                " and up only (max_window_layers) is not supported");
  if (!h.arch->sliding_window)
    unsupported("sliding-window attention (sliding_window " + std::to_string(window) + ") is not supported for " +
                h.arch->name);
  return window;
}

// RoPE's base: 'rope_theta', or inside 'rope_parameters' where transformers 5 writes it (with the
// RoPE type and its scaling parameters, read by rope_frequency_factors).
double rope_base(const Config& c) {
  const JsonValue* p = c.get("rope_parameters");
  if (!p) return c.number("rope_theta", 10000.0);
  if (!p->is_object()) bad("config.json 'rope_parameters' must be an object");
  const JsonValue* theta = p->find("rope_theta");
  if (!theta || theta->kind != JsonValue::Kind::Number || !(theta->number > 0))
    bad("config.json 'rope_parameters' lacks a positive 'rope_theta'");
  return theta->number;
}

// A positive number `key` of a RoPE scaling object, or `fallback` when absent.
double scaling_number(const JsonValue& s, const std::string& where, const std::string& key, double fallback) {
  const JsonValue* v = s.find(key);
  if (!v || v->is_null()) return fallback;
  if (v->kind != JsonValue::Kind::Number || !(v->number > 0)) bad("config.json '" + where + "." + key + "' must be a positive number");
  return v->number;
}

// RoPE scaling: 'rope_scaling', or 'rope_parameters' (transformers 5) with a type other than
// 'default'. Llama 3.1's type 'llama3' divides each rotary pair's frequency by a factor (1 for
// wavelengths shorter than original_max_position_embeddings / high_freq_factor, `factor` for those
// longer than original_max_position_embeddings / low_freq_factor, a smooth blend between): the
// engine reads those divisors as rope_freqs.weight, which is what llama.cpp's converter writes.
// Every other scaling changes the computation in ways the engine does not implement: refused.
std::vector<float> rope_frequency_factors(const Config& c, const ArchitectureDescription& arch, double base, int64_t head_dim) {
  std::string where = "rope_scaling";
  const JsonValue* s = c.get(where);
  if (!s) {
    where = "rope_parameters";
    s = c.get(where);
    const JsonValue* type = s ? s->find("rope_type") : nullptr;
    if (!type || (type->kind == JsonValue::Kind::String && type->s == "default")) return {};
  }
  if (!s->is_object()) bad("config.json '" + where + "' must be an object");
  const JsonValue* type = s->find("rope_type");
  if (!type) type = s->find("type");  // older configs
  const std::string name = type && type->kind == JsonValue::Kind::String ? type->s : "";
  if (name != "llama3")
    unsupported("RoPE scaling '" + name + "' (config.json '" + where + "') is not supported; only Llama 3.1's 'llama3' is");
  if (!arch.rope_freq_factors) unsupported("Llama 3.1 RoPE scaling (config.json '" + where + "') is not supported for " + arch.name);
  const double factor = scaling_number(*s, where, "factor", 0);
  const double low = scaling_number(*s, where, "low_freq_factor", 1.0), high = scaling_number(*s, where, "high_freq_factor", 4.0);
  const double original = scaling_number(*s, where, "original_max_position_embeddings", 8192);
  if (factor == 0) bad("config.json '" + where + "' lacks 'factor'");
  if (!(high > low)) bad("config.json '" + where + "': high_freq_factor must exceed low_freq_factor");
  const double pi = 3.14159265358979323846;
  std::vector<float> factors(size_t(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double wavelength = 2 * pi * std::pow(base, double(2 * i) / double(head_dim));
    if (wavelength < original / high) factors[size_t(i)] = 1.0f;
    else if (wavelength > original / low) factors[size_t(i)] = float(factor);
    else {
      const double smooth = (original / wavelength - low) / (high - low);
      factors[size_t(i)] = float(1.0 / ((1 - smooth) / factor + smooth));
    }
  }
  return factors;
}

HfHyperparameters read_hyperparameters(const Config& c, std::map<std::string, GgufValue>& meta) {
  HfHyperparameters h{};
  h.arch = &architecture_for_model_type(c.text("model_type", ""));
  const ArchitectureDescription& arch = *h.arch;
  if (c.get("quantization_config"))
    unsupported("quantized checkpoints (config.json 'quantization_config') are not supported; use F32, F16 or BF16 "
                "weights, or a quantized GGUF file");
  if (c.text("hidden_act", "silu") != "silu")
    unsupported("hidden_act '" + c.text("hidden_act", "") + "' is not supported (" + arch.name + " uses silu)");
  for (const HfRefusedFlag& f : arch.hf.refused_flags)
    if (c.flag(f.key, false)) unsupported(f.feature + " (" + f.key + ": true) are not supported for " + arch.name);

  h.layers = c.integer("num_hidden_layers");
  h.embd = c.integer("hidden_size");
  h.ff = c.integer("intermediate_size");
  h.heads = c.integer("num_attention_heads");
  h.kv_heads = c.integer("num_key_value_heads", &h.heads);
  h.vocab = c.integer("vocab_size");
  h.context = c.integer("max_position_embeddings");
  if (h.embd % h.heads != 0)
    bad("hidden_size " + std::to_string(h.embd) + " is not divisible by num_attention_heads " + std::to_string(h.heads));
  const int64_t default_head_dim = h.embd / h.heads;
  h.head_dim = c.integer("head_dim", &default_head_dim);
  if (h.head_dim % 2 != 0) bad("head size " + std::to_string(h.head_dim) + " must be even for RoPE");
  h.tied = c.flag("tie_word_embeddings", false);
  const int64_t window = sliding_window(c, h);
  const double base = rope_base(c);
  h.rope_factors = rope_frequency_factors(c, arch, base, h.head_dim);

  const std::string k = arch.name + ".";
  meta["general.architecture"] = string_value(arch.name);
  meta[k + "block_count"] = uint_value(h.layers);
  meta[k + "context_length"] = uint_value(h.context);
  meta[k + "embedding_length"] = uint_value(h.embd);
  meta[k + "feed_forward_length"] = uint_value(h.ff);
  meta[k + "attention.head_count"] = uint_value(h.heads);
  meta[k + "attention.head_count_kv"] = uint_value(h.kv_heads);
  meta[k + "attention.key_length"] = uint_value(h.head_dim);
  meta[k + "attention.value_length"] = uint_value(h.head_dim);
  meta[k + "rope.dimension_count"] = uint_value(h.head_dim);
  meta[k + "vocab_size"] = uint_value(h.vocab);
  meta[k + "attention.layer_norm_rms_epsilon"] = float_value(c.number("rms_norm_eps", 1e-6));
  meta[k + "rope.freq_base"] = float_value(base);
  if (window > 0) meta[k + "attention.sliding_window"] = uint_value(window);
  return h;
}

// ---- safetensors files -------------------------------------------------------------------------

struct RawTensor {
  std::string name;
  std::string dtype;              // safetensors' name: F32, F16, BF16, ...
  std::vector<int64_t> shape;     // row-major, last dimension contiguous
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
};

bool element_type(const std::string& dtype, DType* out, uint32_t* ggml, size_t* size) {
  if (dtype == "F32") { *out = DType::F32; *ggml = 0; *size = 4; return true; }
  if (dtype == "F16") { *out = DType::F16; *ggml = 1; *size = 2; return true; }
  if (dtype == "BF16") { *out = DType::BF16; *ggml = 30; *size = 2; return true; }
  return false;
}

// Reads the header of one safetensors file: an 8-byte little-endian length, then that many bytes
// of JSON mapping tensor names to dtype, shape and [begin, end) offsets into the data after it.
std::vector<RawTensor> read_safetensors(const MappedFile& file) {
  const std::string& path = file.path();
  if (file.size() < 8) bad("'" + path + "' is too short for a safetensors header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > file.size() - 8)
    bad("'" + path + "' declares a header of " + std::to_string(header_len) + " bytes, more than the file holds");
  const JsonValue header = parse_json(reinterpret_cast<const char*>(file.data() + 8), size_t(header_len), path);
  if (!header.is_object()) bad("'" + path + "' header is not a JSON object");
  const uint8_t* data = file.data() + 8 + header_len;
  const uint64_t data_size = file.size() - 8 - header_len;

  std::vector<RawTensor> out;
  for (const auto& [name, entry] : header.members) {
    if (name == "__metadata__") continue;
    const JsonValue* dtype = entry.find("dtype");
    const JsonValue* shape = entry.find("shape");
    const JsonValue* offsets = entry.find("data_offsets");
    if (!dtype || dtype->kind != JsonValue::Kind::String || !shape || shape->kind != JsonValue::Kind::Array || !offsets ||
        offsets->kind != JsonValue::Kind::Array || offsets->items.size() != 2)
      bad("'" + path + "': tensor '" + name + "' lacks dtype, shape or data_offsets");
    RawTensor t;
    t.name = name;
    t.dtype = dtype->s;
    DType dt;
    uint32_t ggml;
    size_t element = 0;
    if (!element_type(t.dtype, &dt, &ggml, &element))
      unsupported("tensor '" + name + "' in '" + path + "' is " + t.dtype + "; supported: F32, F16, BF16 (quantized " +
                  "safetensors are not: use a GGUF file)");
    uint64_t numel = 1;
    for (const JsonValue& d : shape->items) {
      if (d.kind != JsonValue::Kind::Number || !d.integral || d.number < 1 || d.number > double(uint64_t(1) << 40))
        bad("'" + path + "': tensor '" + name + "' has an invalid shape");
      t.shape.push_back(int64_t(d.number));
      numel *= uint64_t(d.number);
      if (numel > (uint64_t(1) << 48)) bad("'" + path + "': tensor '" + name + "' is impossibly large");
    }
    if (t.shape.empty() || t.shape.size() > 4) bad("'" + path + "': tensor '" + name + "' must have 1 to 4 dimensions");
    for (const JsonValue& o : offsets->items)
      if (o.kind != JsonValue::Kind::Number || !o.integral || o.number < 0) bad("'" + path + "': tensor '" + name + "' has bad data_offsets");
    const uint64_t begin = uint64_t(offsets->items[0].number), end = uint64_t(offsets->items[1].number);
    t.bytes = numel * element;
    if (end < begin || end - begin != t.bytes)
      bad("'" + path + "': tensor '" + name + "' occupies " + std::to_string(end - begin) + " bytes but its shape needs " +
          std::to_string(t.bytes));
    if (end > data_size)
      bad("'" + path + "': tensor '" + name + "' extends past the end of the file: the file is truncated or corrupt");
    t.data = data + begin;
    // Kernels read rows in place; an element split across alignment would need a copy.
    if (reinterpret_cast<uintptr_t>(t.data) % element != 0)
      unsupported("'" + path + "': tensor '" + name + "' is not aligned to its element size");
    out.push_back(std::move(t));
  }
  return out;
}

// The weight files of the folder: the shards named by the index, else every *.safetensors file.
// Returns the tensor name -> shard file map promised by the index (empty without one).
std::vector<fs::path> weight_files(const fs::path& dir, std::map<std::string, std::string>* promised) {
  std::vector<fs::path> files;
  const fs::path index = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(index, ec)) {
    const JsonValue json = read_json_file(index);
    const JsonValue* map = json.find("weight_map");
    if (!map || !map->is_object() || map->members.empty()) bad("'" + index.string() + "' lacks a weight_map");
    for (const auto& [tensor, shard] : map->members) {
      if (shard.kind != JsonValue::Kind::String || shard.s.empty() || shard.s.find('/') != std::string::npos)
        bad("'" + index.string() + "' maps '" + tensor + "' to an invalid file name");
      (*promised)[tensor] = shard.s;
      if (std::find(files.begin(), files.end(), dir / shard.s) == files.end()) files.push_back(dir / shard.s);
    }
    for (const auto& f : files)
      if (!fs::exists(f, ec)) bad("shard '" + f.filename().string() + "' listed in model.safetensors.index.json is missing");
    return files;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  if (ec) bad("cannot list '" + dir.string() + "': " + ec.message());
  if (files.empty())
    bad("'" + dir.string() + "' has no *.safetensors weights (PyTorch .bin checkpoints are not read: convert them to "
        "safetensors, or use a GGUF file)");
  std::sort(files.begin(), files.end());
  if (files.size() > 1) bad("'" + dir.string() + "' has several *.safetensors files but no model.safetensors.index.json");
  return files;
}

// ---- tensor names and layouts -----------------------------------------------------------------

// How one Hugging Face tensor becomes a GGUF one.
struct Mapping {
  std::string gguf_name;
  int64_t rope_heads = 0;  // > 0: q/k rows to reorder for that many heads
  bool skip = false;       // derived data the engine recomputes (rotary inv_freq)
};

bool map_name(const std::string& hf, const HfHyperparameters& h, Mapping* m) {
  const HfCheckpoint& names = h.arch->hf;
  for (const HfTensorName& n : names.globals)
    if (n.hf == hf) {
      m->gguf_name = n.gguf;
      return true;
    }
  static const std::regex layer_name(R"(model\.layers\.(\d{1,9})\.(.+))");
  std::smatch match;
  if (!std::regex_match(hf, match, layer_name)) return false;
  const int64_t layer = std::stoll(match[1].str());
  if (layer >= h.layers) return false;
  const std::string rest = match[2].str();
  // Older checkpoints store RoPE's inverse frequencies; they follow from rope_theta.
  if (rest == "self_attn.rotary_emb.inv_freq") {
    m->skip = true;
    return true;
  }
  const auto it = std::find_if(names.layer_tensors.begin(), names.layer_tensors.end(),
                               [&](const HfTensorName& n) { return n.hf == rest; });
  if (it == names.layer_tensors.end()) return false;
  m->gguf_name = "blk." + std::to_string(layer) + "." + it->gguf;
  // See HfCheckpoint: rotate_half rows become adjacent pairs for Normal RoPE.
  if (h.arch->rope_style == RopeStyle::Normal) {
    if (it->gguf == "attn_q.weight") m->rope_heads = h.heads;
    if (it->gguf == "attn_k.weight") m->rope_heads = h.kv_heads;
  }
  return true;
}

// Hugging Face checkpoints rotate each head's first half against its second half (rotate_half):
// rows [x_0..x_{d/2-1} | y_0..y_{d/2-1}]. GGUF llama files and the engine's Normal RoPE rotate
// adjacent pairs (x_0, y_0, x_1, y_1, ...), which llama.cpp's converter gets by permuting the q
// and k rows. We permute the same way into an owned copy at load, so there is one RoPE kernel.
std::shared_ptr<std::vector<uint8_t>> interleave_rope_rows(const RawTensor& t, int64_t heads, size_t row_bytes) {
  const int64_t rows = t.shape[0];
  const int64_t head_dim = rows / heads, half = head_dim / 2;
  auto out = std::make_shared<std::vector<uint8_t>>(size_t(t.bytes));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t p = 0; p < half; ++p)
      for (int64_t j = 0; j < 2; ++j)
        std::memcpy(out->data() + size_t(h * head_dim + 2 * p + j) * row_bytes,
                    t.data + size_t(h * head_dim + j * half + p) * row_bytes, row_bytes);
  return out;
}

// Norm weights are F32 in GGUF files (the converter widens them); widen F16/BF16 ones likewise.
std::shared_ptr<std::vector<uint8_t>> widen_to_f32(const RawTensor& t, DType dtype, int64_t n) {
  auto out = std::make_shared<std::vector<uint8_t>>(size_t(n) * sizeof(float));
  dequantize_row(dtype, t.data, reinterpret_cast<float*>(out->data()), n);
  return out;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::shared_ptr<GgufFile> open_hf_folder(const std::string& dir_name) {
  const fs::path dir(dir_name);
  std::error_code ec;
  if (!fs::exists(dir / "config.json", ec)) bad("'" + dir_name + "' has no config.json");
  std::map<std::string, GgufValue> meta;
  const HfHyperparameters h = read_hyperparameters(Config(read_json_file(dir / "config.json")), meta);
  meta["general.name"] = string_value(dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string());

  std::map<std::string, std::string> promised;
  std::vector<std::shared_ptr<const void>> storage;
  std::vector<GgufTensor> tensors;
  std::map<std::string, std::string> found;  // HF name -> shard file name
  for (const fs::path& path : weight_files(dir, &promised)) {
    auto file = MappedFile::open(path.string());
    storage.push_back(file);
    for (RawTensor& t : read_safetensors(*file)) {
      if (!found.emplace(t.name, path.filename().string()).second) bad("tensor '" + t.name + "' appears in two files");
      Mapping m;
      if (!map_name(t.name, h, &m))
        unsupported("tensor '" + t.name + "' is not part of a " + h.arch->name + " checkpoint as this engine reads it");
      if (m.skip || (h.tied && m.gguf_name == "output.weight")) continue;
      GgufTensor g;
      g.name = m.gguf_name;
      size_t element = 0;
      element_type(t.dtype, &g.dtype, &g.ggml_type, &element);
      g.dims.assign(t.shape.rbegin(), t.shape.rend());
      g.bytes = t.bytes;
      g.data = t.data;
      if (m.rope_heads > 0) {
        if (t.shape.size() != 2 || t.shape[0] != m.rope_heads * h.head_dim)
          bad("tensor '" + t.name + "' has shape " + shape_text(t.shape) + " but config.json implies " +
              std::to_string(m.rope_heads * h.head_dim) + " rows");
        auto copy = interleave_rope_rows(t, m.rope_heads, size_t(t.bytes / uint64_t(t.shape[0])));
        g.data = copy->data();
        storage.push_back(copy);
      } else if (t.shape.size() == 1 && g.dtype != DType::F32) {
        auto copy = widen_to_f32(t, g.dtype, t.shape[0]);
        g.data = copy->data();
        g.dtype = DType::F32;
        g.ggml_type = 0;
        g.bytes = copy->size();
        storage.push_back(copy);
      }
      tensors.push_back(std::move(g));
    }
  }
  if (!h.rope_factors.empty()) {
    auto factors = std::make_shared<std::vector<float>>(h.rope_factors);
    GgufTensor g;
    g.name = "rope_freqs.weight";
    g.dtype = DType::F32;
    g.ggml_type = 0;
    g.dims = {int64_t(factors->size())};
    g.bytes = factors->size() * sizeof(float);
    g.data = factors->data();
    storage.push_back(factors);
    tensors.push_back(std::move(g));
  }
  for (const auto& [tensor, shard] : promised) {
    auto it = found.find(tensor);
    if (it == found.end() || it->second != shard)
      bad("model.safetensors.index.json places '" + tensor + "' in '" + shard + "', which does not hold it");
  }
  const auto has = [&](const std::string& name) {
    return std::any_of(tensors.begin(), tensors.end(), [&](const GgufTensor& t) { return t.name == name; });
  };
  if (!h.tied && !has("output.weight"))
    bad("config.json says the output is not tied to the embedding (tie_word_embeddings false) but lm_head.weight is missing");
  for (const GgufTensor& t : tensors)
    if (t.name == "token_embd.weight" && t.dims.size() == 2 && t.dims[1] != h.vocab)
      bad("model.embed_tokens.weight has " + std::to_string(t.dims[1]) + " rows but config.json's vocab_size is " +
          std::to_string(h.vocab));
  return GgufFile::assemble(dir_name, std::move(meta), std::move(tensors), std::move(storage));
}

std::shared_ptr<GgufFile> open_model_description(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) ? open_hf_folder(path) : GgufFile::open(path);
}

}  // namespace chai
