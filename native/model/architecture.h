// What makes one LLaMA-family architecture differ from another, in one place. The loader, the
// Hugging Face folder reader and the forward pass read these fields; nothing else tests
// architecture names. A new architecture is a description in its family's file (llama.cpp,
// qwen.cpp) plus its fixture tests.
#pragma once
#include <string>
#include <vector>

#include "core/backend.h"

namespace chai {

// A tensor's name in a Hugging Face checkpoint and in GGUF. Layer tensors are named after their
// prefixes ("model.layers.N." and "blk.N."), the others in full.
struct HfTensorName {
  std::string hf, gguf;
};

// A config.json flag that, when true, switches on computation this engine does not run.
struct HfRefusedFlag {
  std::string key, feature;
};

// How a Hugging Face folder (config.json + safetensors) of the architecture reads. Hugging Face's
// modeling code rotates q and k with rotate_half, the NeoX layout; for an architecture the engine
// runs with Normal (adjacent-pair) RoPE the loader reorders the q/k rows of every head, as
// llama.cpp's converter does, and reads NeoX ones as they are.
struct HfCheckpoint {
  // config.json model_type values read as this architecture; none: its folders are not read.
  std::vector<std::string> model_types;
  std::vector<HfTensorName> globals, layer_tensors;
  std::vector<HfRefusedFlag> refused_flags;
  // The config.json flag that must also be true for 'sliding_window' to apply (Qwen's
  // use_sliding_window, together with max_window_layers); empty: 'sliding_window' alone sets it.
  std::string sliding_window_switch;
};

// The tensors every LLaMA-style checkpoint has (embeddings, norms, attention and SwiGLU
// projections without biases); families add theirs.
HfCheckpoint llama_style_checkpoint();

struct ArchitectureDescription {
  std::string name;  // general.architecture; metadata keys start with "<name>."
  RopeStyle rope_style = RopeStyle::Normal;
  // blk.N.attn_{q,k,v}.bias (required): added to the projections before RoPE.
  bool qkv_bias = false;
  // blk.N.attn_{q,k}_norm.weight (required): RMSNorm of every head of q and k before RoPE.
  bool qk_norm = false;
  // rope_freqs.weight (optional, head_dim/2 values) divides RoPE's frequencies (Llama 3.1 scaling).
  bool rope_freq_factors = false;
  // <name>.attention.sliding_window (optional): each token attends to at most that many tokens.
  bool sliding_window = false;
  HfCheckpoint hf;
};

// The descriptions of each family, defined in that family's file.
std::vector<ArchitectureDescription> llama_family();  // llama, mistral
std::vector<ArchitectureDescription> qwen_family();   // qwen2, qwen3

// Every supported architecture, and the one named (Unsupported, listing the others, if none).
const std::vector<ArchitectureDescription>& supported_architectures();
const ArchitectureDescription& architecture_named(const std::string& name);
// The architecture a Hugging Face config.json model_type reads as (Unsupported, listing them, if none).
const ArchitectureDescription& architecture_for_model_type(const std::string& model_type);

}  // namespace chai
