#include "resident_weights.h"

namespace chai {

TensorView ResidentWeights::place(const TensorView& host) {
  if (host.data == nullptr || placement_ == Placement::InPlace) return host;  // absent tensors stay absent
  auto buffer = std::make_unique<DeviceBuffer>(backend_, host.bytes());
  backend_.upload(buffer->get(), host.data, host.bytes());
  TensorView device = host;
  device.data = buffer->get();
  bytes_ += host.bytes();
  buffers_.push_back(std::move(buffer));
  return device;
}

TensorView ResidentWeights::with_packed_copy(TensorView w) {
  if (w.data == nullptr) return w;
  if (auto packed = backend_.pack_matmul_weight(w)) {
    packed_sources_.push_back(w);
    w.packed = packed.get();
    packed_.push_back(std::move(packed));
  }
  return w;
}

ResidentWeights::ResidentWeights(const LlamaWeights& host, Backend& backend, Placement placement)
    : backend_(backend), placement_(placement) {
  weights_.token_embd = place(host.token_embd);
  weights_.output_norm = place(host.output_norm);
  weights_.tied_output = host.tied_output;
  // A tied output reads the embedding table's memory; only the matmul's view gets a packed copy.
  weights_.output = with_packed_copy(host.tied_output ? weights_.token_embd : place(host.output));
  weights_.rope_factors = place(host.rope_factors);
  for (const LlamaLayer& l : host.layers) {
    weights_.layers.push_back({place(l.attn_norm), with_packed_copy(place(l.wq)), with_packed_copy(place(l.wk)),
                               with_packed_copy(place(l.wv)), with_packed_copy(place(l.wo)), place(l.ffn_norm),
                               with_packed_copy(place(l.gate)), with_packed_copy(place(l.up)), with_packed_copy(place(l.down)),
                               place(l.bq), place(l.bk), place(l.bv), place(l.q_norm), place(l.k_norm)});
  }
}

}  // namespace chai
