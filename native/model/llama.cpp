// The llama family: Llama 1-3 (Llama 3.1's RoPE scaling as rope_freqs.weight) and Mistral, which
// uses llama's tensors and may limit attention to a sliding window.
#include "architecture.h"

namespace chai {

std::vector<ArchitectureDescription> llama_family() {
  ArchitectureDescription llama;
  llama.name = "llama";
  llama.rope_style = RopeStyle::Normal;
  llama.rope_freq_factors = true;
  llama.sliding_window = true;  // converters write it for Mistral models stored as 'llama'
  // llama.cpp converts Mistral checkpoints to 'llama' too.
  llama.hf = llama_style_checkpoint();
  llama.hf.model_types = {"llama", "mistral"};
  llama.hf.refused_flags = {{"attention_bias", "attention biases"}, {"mlp_bias", "feed-forward biases"}};

  ArchitectureDescription mistral = llama;
  mistral.name = "mistral";
  mistral.hf = {};
  return {llama, mistral};
}

}  // namespace chai
