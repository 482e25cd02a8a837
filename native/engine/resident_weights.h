// A model's weights as a backend runs them: copied into its memory (the CUDA backend) or read in
// place from the memory-mapped file (the CPU backend), plus the packed copies of matmul weights
// the backend asks for (Backend::pack_matmul_weight). Views keep the stored types: quantized
// weights stay quantized.
#pragma once
#include <memory>
#include <vector>

#include "core/backend.h"
#include "model/llama.h"

namespace chai {

class ResidentWeights {
 public:
  enum class Placement { Copy, InPlace };
  ResidentWeights(const LlamaWeights& host, Backend& backend, Placement placement = Placement::Copy);
  const LlamaWeights& weights() const { return weights_; }
  size_t bytes() const { return bytes_; }  // copied bytes
  // The weights (as placed) that got a packed copy: matmuls no longer read them.
  const std::vector<TensorView>& packed_sources() const { return packed_sources_; }

 private:
  TensorView place(const TensorView& host);
  TensorView with_packed_copy(TensorView w);  // for matmul weights

  Backend& backend_;
  Placement placement_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  std::vector<std::shared_ptr<const void>> packed_;
  std::vector<TensorView> packed_sources_;
  LlamaWeights weights_;
  size_t bytes_ = 0;
};

}  // namespace chai
