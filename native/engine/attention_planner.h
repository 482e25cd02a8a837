// The attention planner: turns a batch of sessions into the step's AttentionPlan (page tables,
// clusters and the split-KV chunking of every layer), uploaded in one copy per step instead of
// one per layer; when a layer's clusters are chosen during the step, it and the layers after it
// are planned again.
#pragma once
#include <vector>

#include "core/attention_plan.h"
#include "core/backend.h"
#include "workspace.h"

namespace chai {

class Session;

// One sequence of the step: its query rows q_row .. q_row + n_q - 1, at positions pos0 onwards.
struct StepSequence {
  Session* session;
  int q_row, n_q, pos0;
};

class AttentionPlanner {
 public:
  // `shape`: heads, head size, scale, cache type and page size of the model (pointers unused).
  // The plan and the partial results of split-KV decoding live in workspace slots plan_slot and
  // partials_slot. The attention version comes from CHAI_ATTENTION_VERSION (default 1).
  AttentionPlanner(Backend& backend, Workspace& workspace, size_t plan_slot, size_t partials_slot, int n_layers,
                   const AttentionParams& shape, std::vector<StepSequence> seqs);

  // Describes `layer` and the layers after it again (its clusters or pages changed during the
  // step) and uploads them.
  void replan(int layer);
  // The call of one layer over the batch's rows of q and out.
  AttentionParams call(int layer, const float* q, float* out, const void* pool) const;
  const SequenceAttention& sequence(int layer, int seq) { return plan_.layer(layer)[seq]; }

 private:
  void describe(int layer);
  void reserve_partials();

  Backend& backend_;
  Workspace& workspace_;
  size_t plan_slot_, partials_slot_;
  std::vector<StepSequence> seqs_;
  AttentionPlan plan_;
  SequenceAttention* device_ = nullptr;
  float* partials_ = nullptr;
};

}  // namespace chai
