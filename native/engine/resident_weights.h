// A model's weights copied into a backend's memory (the CUDA backend; the CPU backend reads the
// memory-mapped file directly). Views keep the stored types: quantized weights stay quantized.
#pragma once
#include <memory>
#include <vector>

#include "core/backend.h"
#include "model/llama.h"

namespace chai {

class ResidentWeights {
 public:
  ResidentWeights(const LlamaWeights& host, Backend& backend);
  const LlamaWeights& weights() const { return weights_; }
  size_t bytes() const { return bytes_; }

 private:
  TensorView upload(const TensorView& host);

  Backend& backend_;
  std::vector<std::unique_ptr<DeviceBuffer>> buffers_;
  LlamaWeights weights_;
  size_t bytes_ = 0;
};

}  // namespace chai
