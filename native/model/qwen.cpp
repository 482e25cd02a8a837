// The Qwen family: NeoX-style RoPE; Qwen2 adds biases to the q/k/v projections, Qwen3 drops them
// and normalises every head of q and k (RMSNorm) before RoPE.
#include "architecture.h"

namespace chai {

std::vector<ArchitectureDescription> qwen_family() {
  ArchitectureDescription qwen2;
  qwen2.name = "qwen2";
  qwen2.rope_style = RopeStyle::Neox;
  qwen2.qkv_bias = true;

  ArchitectureDescription qwen3;
  qwen3.name = "qwen3";
  qwen3.rope_style = RopeStyle::Neox;
  qwen3.qk_norm = true;
  return {qwen2, qwen3};
}

}  // namespace chai
