#include "resident_weights.h"

namespace chai {

TensorView ResidentWeights::upload(const TensorView& host) {
  if (host.data == nullptr) return host;  // a tensor this architecture does not have
  auto buffer = std::make_unique<DeviceBuffer>(backend_, host.bytes());
  backend_.upload(buffer->get(), host.data, host.bytes());
  TensorView device = host;
  device.data = buffer->get();
  bytes_ += host.bytes();
  buffers_.push_back(std::move(buffer));
  return device;
}

ResidentWeights::ResidentWeights(const LlamaWeights& host, Backend& backend) : backend_(backend) {
  weights_.token_embd = upload(host.token_embd);
  weights_.output_norm = upload(host.output_norm);
  weights_.tied_output = host.tied_output;
  weights_.output = host.tied_output ? weights_.token_embd : upload(host.output);
  weights_.rope_factors = upload(host.rope_factors);
  for (const LlamaLayer& l : host.layers) {
    weights_.layers.push_back({upload(l.attn_norm), upload(l.wq), upload(l.wk), upload(l.wv), upload(l.wo),
                               upload(l.ffn_norm), upload(l.gate), upload(l.up), upload(l.down), upload(l.bq),
                               upload(l.bk), upload(l.bv), upload(l.q_norm), upload(l.k_norm)});
  }
}

}  // namespace chai
