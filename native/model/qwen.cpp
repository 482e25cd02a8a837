// The Qwen family: NeoX-style RoPE; Qwen2 adds biases to the q/k/v projections, Qwen3 drops them
// and normalises every head of q and k (RMSNorm) before RoPE.
#include "architecture.h"

namespace chai {

std::vector<ArchitectureDescription> qwen_family() {
  ArchitectureDescription qwen2;
  qwen2.name = "qwen2";
  qwen2.rope_style = RopeStyle::Neox;
  qwen2.qkv_bias = true;
  // Qwen2's q/k/v projections always have biases (config.json has no switch for them). A sliding
  // window applies only with use_sliding_window, to the layers from max_window_layers on.
  qwen2.hf = llama_style_checkpoint();
  qwen2.hf.model_types = {"qwen2"};
  for (const char* p : {"q", "k", "v"})
    qwen2.hf.layer_tensors.push_back({std::string("self_attn.") + p + "_proj.bias", std::string("attn_") + p + ".bias"});
  qwen2.hf.sliding_window_switch = "use_sliding_window";

  ArchitectureDescription qwen3;
  qwen3.name = "qwen3";
  qwen3.rope_style = RopeStyle::Neox;
  qwen3.qk_norm = true;
  qwen3.hf = llama_style_checkpoint();
  qwen3.hf.model_types = {"qwen3"};
  qwen3.hf.layer_tensors.push_back({"self_attn.q_norm.weight", "attn_q_norm.weight"});
  qwen3.hf.layer_tensors.push_back({"self_attn.k_norm.weight", "attn_k_norm.weight"});
  qwen3.hf.refused_flags = {{"attention_bias", "attention biases"}};
  qwen3.hf.sliding_window_switch = "use_sliding_window";
  return {qwen2, qwen3};
}

}  // namespace chai
