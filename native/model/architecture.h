// What makes one LLaMA-family architecture differ from another, in one place. The loader and the
// forward pass read these fields; nothing else tests architecture names. A new architecture is a
// description in its family's file (llama.cpp, qwen.cpp) plus its fixture test.
#pragma once
#include <string>
#include <vector>

#include "core/backend.h"

namespace chai {

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
};

// The descriptions of each family, defined in that family's file.
std::vector<ArchitectureDescription> llama_family();  // llama, mistral
std::vector<ArchitectureDescription> qwen_family();   // qwen2, qwen3

// Every supported architecture, and the one named (Unsupported, listing the others, if none).
const std::vector<ArchitectureDescription>& supported_architectures();
const ArchitectureDescription& architecture_named(const std::string& name);

}  // namespace chai
