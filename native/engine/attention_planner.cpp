#include "attention_planner.h"

#include "core/error.h"
#include "session.h"

namespace chai {

AttentionPlanner::AttentionPlanner(Backend& backend, Workspace& workspace, size_t plan_slot, size_t partials_slot, int n_layers,
                                   const AttentionParams& shape, std::vector<StepSequence> seqs)
    : backend_(backend), workspace_(workspace), plan_slot_(plan_slot), partials_slot_(partials_slot), seqs_(std::move(seqs)) {
  plan_.n_layers = n_layers;
  plan_.n_seqs = int(seqs_.size());
  plan_.seqs.resize(size_t(n_layers) * seqs_.size());
  AttentionParams call = shape;
  call.version = attention_version_from_env();
  plan_.calls.assign(size_t(n_layers), call);
  for (int l = 0; l < n_layers; ++l) describe(l);
  const size_t bytes = plan_.seqs.size() * sizeof(SequenceAttention);
  device_ = static_cast<SequenceAttention*>(workspace_.get(plan_slot_, bytes));
  backend_.upload(device_, plan_.seqs.data(), bytes);
  reserve_partials();
}

void AttentionPlanner::describe(int layer) {
  SequenceAttention* seqs = plan_.layer(layer);
  for (size_t s = 0; s < seqs_.size(); ++s) {
    const StepSequence& sq = seqs_[s];
    SequenceAttention& sa = seqs[s];
    sa = sq.session->attention_of(layer);
    sa.q_row = sq.q_row;
    sa.n_q = sq.n_q;
    sa.pos0 = sq.pos0;
  }
  AttentionParams& call = plan_.calls[size_t(layer)];
  plan_attention_call(seqs, plan_.n_seqs, backend_.attention_fill_blocks(call), 0, call);
}

void AttentionPlanner::reserve_partials() {
  const AttentionParams& shape = plan_.calls[0];
  const size_t floats = partial_floats(plan_.max_partial_slots(), shape.n_heads, shape.head_dim);
  partials_ = floats ? static_cast<float*>(workspace_.get(partials_slot_, floats * sizeof(float))) : nullptr;
}

void AttentionPlanner::replan(int layer) {
  // The later layers too: a page table that grew lives in a new buffer.
  for (int l = layer; l < plan_.n_layers; ++l) describe(l);
  const size_t bytes = size_t(plan_.n_layers - layer) * plan_.n_seqs * sizeof(SequenceAttention);
  backend_.upload(device_ + size_t(layer) * plan_.n_seqs, plan_.layer(layer), bytes);
  reserve_partials();
}

AttentionParams AttentionPlanner::call(int layer, const float* q, float* out, const void* pool) const {
  AttentionParams p = plan_.calls[size_t(layer)];
  p.q = q;
  p.out = out;
  p.pool = pool;
  p.seqs = device_ + size_t(layer) * plan_.n_seqs;
  p.n_seqs = plan_.n_seqs;
  p.partials = p.partial_slots ? partials_ : nullptr;
  return p;
}

}  // namespace chai
