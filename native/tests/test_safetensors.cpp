// The Hugging Face folder reader on tiny folders written here: GGUF names and dims, the q/k rows
// reordered per head from HF's half-split layout to adjacent pairs for llama (and kept for
// Qwen2/Qwen3, which run NeoX RoPE), Qwen's biases and q/k norms, BF16 vectors widened exactly,
// tied embeddings, sliding windows, typed errors for bad folders, and a seeded fuzz of the
// safetensors header and of config.json (every mutant loads or throws chai::Error: no other
// exception, crash or sanitizer report).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "testing.h"

using namespace chai;
namespace fs = std::filesystem;

namespace {

// 1 layer, embedding 8, 2 query heads and 1 KV head of 4, feed-forward 12, vocabulary 16.
constexpr int kEmbd = 8, kHeads = 2, kKvHeads = 1, kHeadDim = 4, kFf = 12, kVocab = 16;

const std::string kConfig = R"({"model_type": "llama", "hidden_size": 8, "intermediate_size": 12,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16,
  "max_position_embeddings": 64, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rope_scaling": null,
  "tie_word_embeddings": true, "hidden_act": "silu"})";

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// Row r of a matrix holds values 100 * r + column, so a row is recognisable after reordering.
Tensor matrix(const std::string& name, int64_t rows, int64_t cols) {
  Tensor t{name, "F32", {rows, cols}, std::vector<uint8_t>(size_t(rows * cols) * 4)};
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = float(100 * r + c);
      std::memcpy(t.data.data() + size_t(r * cols + c) * 4, &v, 4);
    }
  return t;
}

Tensor bf16_vector(const std::string& name, int64_t n) {
  Tensor t{name, "BF16", {n}, std::vector<uint8_t>(size_t(n) * 2)};
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t bits = f32_to_bf16(1.0f + 0.125f * float(i));
    std::memcpy(t.data.data() + size_t(i) * 2, &bits, 2);
  }
  return t;
}

std::vector<uint8_t> safetensors_bytes(const std::vector<Tensor>& tensors) {
  std::string header = "{\"__metadata__\": {\"format\": \"pt\"}";
  size_t offset = 0;
  for (const Tensor& t : tensors) {
    header += ", \"" + t.name + "\": {\"dtype\": \"" + t.dtype + "\", \"shape\": [";
    for (size_t d = 0; d < t.shape.size(); ++d) header += (d ? ", " : "") + std::to_string(t.shape[d]);
    header += "], \"data_offsets\": [" + std::to_string(offset) + ", " + std::to_string(offset + t.data.size()) + "]}";
    offset += t.data.size();
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::vector<uint8_t> out(8);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  for (const Tensor& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

std::vector<Tensor> model_tensors() {
  const std::string p = "model.layers.0.";
  // F32 matrices first and the BF16 norms last keep every tensor aligned to its element size.
  return {matrix("model.embed_tokens.weight", kVocab, kEmbd),
          matrix(p + "self_attn.q_proj.weight", kHeads * kHeadDim, kEmbd),
          matrix(p + "self_attn.k_proj.weight", kKvHeads * kHeadDim, kEmbd),
          matrix(p + "self_attn.v_proj.weight", kKvHeads * kHeadDim, kEmbd),
          matrix(p + "self_attn.o_proj.weight", kEmbd, kHeads * kHeadDim),
          matrix(p + "mlp.gate_proj.weight", kFf, kEmbd),
          matrix(p + "mlp.up_proj.weight", kFf, kEmbd),
          matrix(p + "mlp.down_proj.weight", kEmbd, kFf),
          bf16_vector("model.norm.weight", kEmbd),
          bf16_vector(p + "input_layernorm.weight", kEmbd),
          bf16_vector(p + "post_attention_layernorm.weight", kEmbd)};
}

void write_file(const fs::path& path, const void* data, size_t n) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(n));
}

void write_folder(const fs::path& dir, const std::string& config, const std::vector<uint8_t>& weights) {
  fs::create_directories(dir);
  write_file(dir / "config.json", config.data(), config.size());
  write_file(dir / "model.safetensors", weights.data(), weights.size());
}

// The first value of row `row` of a GGUF matrix.
float first_of_row(const GgufTensor& t, int64_t row) {
  float v;
  std::memcpy(&v, static_cast<const uint8_t*>(t.data) + size_t(row * t.dims[0]) * 4, 4);
  return v;
}

// What loading `dir` does: "ok", the error code's name, or "other" for anything but chai::Error.
std::string outcome(const fs::path& dir) {
  try {
    LlamaModel::load(open_model_description(dir.string()));
    return "ok";
  } catch (const Error& e) {
    return error_code_name(e.code());
  } catch (...) {
    return "other";
  }
}

}  // namespace

int main(int argc, char** argv) {
  testing::Suite suite("safetensors");
  const fs::path root = fs::temp_directory_path() / ("chai-safetensors-" + std::to_string(getpid()));
  const std::vector<uint8_t> weights = safetensors_bytes(model_tensors());
  write_folder(root / "good", kConfig, weights);

  auto file = open_model_description((root / "good").string());
  suite.check(file->version() == 0 && file->find("general.architecture")->s == "llama", "a folder is a llama description");
  suite.check(file->find("llama.attention.head_count_kv")->as_int() == kKvHeads &&
                  file->find("llama.feed_forward_length")->as_int() == kFf &&
                  file->find("llama.context_length")->as_int() == 64 &&
                  std::abs(file->find("llama.attention.layer_norm_rms_epsilon")->as_float() - 1e-5) < 1e-12,
              "config.json becomes GGUF metadata");
  const GgufTensor* q = file->tensor("blk.0.attn_q.weight");
  const GgufTensor* k = file->tensor("blk.0.attn_k.weight");
  suite.check(q && q->dims == std::vector<int64_t>{kEmbd, kHeads * kHeadDim} && k && k->dims[1] == kKvHeads * kHeadDim,
              "HF names and shapes become GGUF names and (reversed) dims");
  // Per head of 4 rows, HF order [x0 x1 | y0 y1] becomes adjacent pairs [x0 y0 x1 y1]: HF rows 0 2 1 3.
  bool q_ok = true, k_ok = true;
  const int64_t expected[] = {0, 2, 1, 3};
  for (int64_t h = 0; h < kHeads; ++h)
    for (int64_t r = 0; r < kHeadDim; ++r) q_ok &= first_of_row(*q, h * kHeadDim + r) == float(100 * (h * kHeadDim + expected[r]));
  for (int64_t r = 0; r < kHeadDim; ++r) k_ok &= first_of_row(*k, r) == float(100 * expected[r]);
  suite.check(q_ok, "q rows interleave the two halves of each query head");
  suite.check(k_ok, "k rows interleave the two halves of each KV head");
  suite.check(first_of_row(*file->tensor("blk.0.attn_v.weight"), 1) == 100.0f, "v rows keep their order");
  const GgufTensor* norm = file->tensor("output_norm.weight");
  float norm_values[kEmbd];
  if (norm) std::memcpy(norm_values, norm->data, sizeof norm_values);
  suite.check(norm && norm->dtype == DType::F32 && norm->bytes == kEmbd * 4 && norm_values[3] == 1.375f,
              "BF16 norm weights are widened to F32 exactly");
  auto model = LlamaModel::load(file);
  suite.check(model->weights().tied_output && !file->tensor("output.weight"), "tied embeddings: no output tensor");

  const auto with_config = [&](const std::string& from, const std::string& to) {
    std::string c = kConfig;
    c.replace(c.find(from), from.size(), to);
    return c;
  };

  // Qwen2: q/k/v biases, rows as they are; Qwen3: per-head q/k norms.
  const std::string layer = "model.layers.0.";
  std::vector<Tensor> qwen2_tensors = model_tensors();
  for (const auto& [name, rows] : {std::pair{"q", kHeads * kHeadDim}, {"k", kKvHeads * kHeadDim}, {"v", kKvHeads * kHeadDim}})
    qwen2_tensors.push_back(bf16_vector(layer + "self_attn." + name + "_proj.bias", rows));
  write_folder(root / "qwen2", with_config("\"llama\"", "\"qwen2\""), safetensors_bytes(qwen2_tensors));
  auto qwen2 = open_model_description((root / "qwen2").string());
  const GgufTensor* qwen2_q = qwen2->tensor("blk.0.attn_q.weight");
  bool rows_kept = qwen2_q != nullptr;
  for (int64_t r = 0; rows_kept && r < kHeads * kHeadDim; ++r) rows_kept &= first_of_row(*qwen2_q, r) == float(100 * r);
  suite.check(qwen2->find("general.architecture")->s == "qwen2" && qwen2->find("qwen2.attention.head_count_kv")->as_int() == kKvHeads &&
                  !qwen2->find("llama.block_count"),
              "a qwen2 folder becomes qwen2.* metadata");
  suite.check(rows_kept, "qwen2 q rows keep HF's order (NeoX RoPE)");
  const GgufTensor* k_bias = qwen2->tensor("blk.0.attn_k.bias");
  suite.check(k_bias && k_bias->dtype == DType::F32 && k_bias->dims == std::vector<int64_t>{kKvHeads * kHeadDim},
              "qwen2 biases become F32 attn_{q,k,v}.bias");
  suite.check(LlamaModel::load(qwen2)->config().qkv_bias, "a qwen2 folder loads with its biases");

  std::vector<Tensor> qwen3_tensors = model_tensors();
  qwen3_tensors.push_back(bf16_vector(layer + "self_attn.q_norm.weight", kHeadDim));
  qwen3_tensors.push_back(bf16_vector(layer + "self_attn.k_norm.weight", kHeadDim));
  write_folder(root / "qwen3", with_config("\"llama\"", "\"qwen3\""), safetensors_bytes(qwen3_tensors));
  auto qwen3 = open_model_description((root / "qwen3").string());
  suite.check(qwen3->tensor("blk.0.attn_q_norm.weight") && qwen3->tensor("blk.0.attn_k_norm.weight") &&
                  LlamaModel::load(qwen3)->config().qk_norm,
              "a qwen3 folder loads with its q/k norms");

  write_folder(root / "rope-parameters",
               with_config("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000.0}"),
               weights);
  suite.check(open_model_description((root / "rope-parameters").string())->find("llama.rope.freq_base")->as_float() == 500000.0,
              "transformers 5's rope_parameters give RoPE's base");

  write_folder(root / "mistral", with_config("\"llama\"", "\"mistral\", \"sliding_window\": 16"), weights);
  auto mistral = open_model_description((root / "mistral").string());
  const GgufValue* window = mistral->find("llama.attention.sliding_window");
  suite.check(window && window->as_int() == 16, "Mistral's sliding window becomes llama.attention.sliding_window");
  struct Case {
    const char* what;
    std::string config;
    std::vector<uint8_t> weights;
    const char* code;
  };
  std::vector<uint8_t> truncated(weights.begin(), weights.end() - 10);
  std::vector<uint8_t> bad_dtype = weights;
  const std::string f32_text = "\"F32\"";
  auto at = std::search(bad_dtype.begin(), bad_dtype.end(), f32_text.begin(), f32_text.end());
  std::memcpy(&*at, "\"I32\"", 5);
  std::vector<uint8_t> huge_header = weights;
  const uint64_t too_long = weights.size();
  std::memcpy(huge_header.data(), &too_long, 8);
  const std::vector<Case> cases = {
      {"an unknown model_type", with_config("\"llama\"", "\"phi3\""), weights, "E_UNSUPPORTED"},
      {"quantization_config", with_config("\"hidden_act\"", "\"quantization_config\": {\"bits\": 4}, \"hidden_act\""), weights, "E_UNSUPPORTED"},
      {"attention biases", with_config("\"hidden_act\"", "\"attention_bias\": true, \"hidden_act\""), weights, "E_UNSUPPORTED"},
      {"a scaled RoPE type in rope_parameters",
       with_config("\"rope_theta\": 10000.0", "\"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 10000.0, \"factor\": 4}"),
       weights, "E_UNSUPPORTED"},
      {"qwen2 without its biases", with_config("\"llama\"", "\"qwen2\""), weights, "E_MODEL_FORMAT"},
      {"qwen2's sliding window", with_config("\"llama\"", "\"qwen2\", \"use_sliding_window\": true, \"sliding_window\": 16, \"max_window_layers\": 0"),
       safetensors_bytes(qwen2_tensors), "E_UNSUPPORTED"},
      {"a missing hidden_size", with_config("\"hidden_size\": 8,", ""), weights, "E_MODEL_FORMAT"},
      {"a fractional layer count", with_config("\"num_hidden_layers\": 1", "\"num_hidden_layers\": 1.5"), weights, "E_MODEL_FORMAT"},
      {"heads that disagree with q_proj", with_config("\"num_attention_heads\": 2", "\"num_attention_heads\": 4"), weights, "E_MODEL_FORMAT"},
      {"config.json that is not JSON", "{\"model_type\": ", weights, "E_MODEL_FORMAT"},
      {"a truncated weights file", kConfig, truncated, "E_MODEL_FORMAT"},
      {"an I32 tensor", kConfig, bad_dtype, "E_UNSUPPORTED"},
      {"a header longer than the file", kConfig, huge_header, "E_MODEL_FORMAT"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const fs::path dir = root / ("case" + std::to_string(i));
    write_folder(dir, cases[i].config, cases[i].weights);
    const std::string got = outcome(dir);
    suite.check(got == cases[i].code, std::string(cases[i].what) + " gives " + cases[i].code + " (got " + got + ")");
  }

  // Seeded fuzz: byte mutations in the safetensors header and in config.json.
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 400;
  std::mt19937 rng(argc > 2 ? uint32_t(std::atoi(argv[2])) : 7);
  const size_t header_end = 8 + size_t(*reinterpret_cast<const uint64_t*>(weights.data()));
  const char noise[] = "{}[]\",:0123456789-eE.truefalsenull \\u";
  int others = 0, loaded = 0;
  for (int i = 0; i < iterations; ++i) {
    std::vector<uint8_t> w = weights;
    std::string c = kConfig;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      if (rng() % 2) {
        w[rng() % header_end] = rng() % 2 ? uint8_t(noise[rng() % (sizeof noise - 1)]) : uint8_t(rng());
      } else {
        c[rng() % c.size()] = noise[rng() % (sizeof noise - 1)];
      }
    }
    if (rng() % 8 == 0) w.resize(rng() % w.size());
    const fs::path dir = root / "fuzz";
    write_folder(dir, c, w);
    const std::string got = outcome(dir);
    others += got == "other";
    loaded += got == "ok";
  }
  std::printf("fuzz: %d mutants, %d loaded, %d rejected with chai::Error, %d other failures\n", iterations, loaded,
              iterations - loaded - others, others);
  suite.check(others == 0, "every fuzzed folder loads or throws chai::Error");

  std::error_code ec;
  fs::remove_all(root, ec);
  return suite.finish();
}
