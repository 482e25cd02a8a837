// One sequence being run through a LLaMA model on one backend: the forward pass (prefill as one
// batch, decode token by token) over a paged KV cache, with per-layer head clusters that the
// attention uses (identity clusters = full attention).
#pragma once
#include <memory>
#include <vector>

#include "core/backend.h"
#include "kv_cache.h"
#include "model/llama.h"

namespace chai {

// Head clusters of one layer in CSR form: cluster c takes its scores from head reps[c] and
// applies them to members[offsets[c] .. offsets[c+1]).
struct HeadClusters {
  std::vector<int32_t> reps, offsets, members;
  static HeadClusters identity(int n_heads);
  int count() const { return int(reps.size()); }
  int max_members() const;
};

class Session {
 public:
  // `weights` must live in `backend`'s memory and outlive the session (the caller keeps the
  // model alive). The session draws cache pages from `pool`.
  Session(const LlamaConfig& config, const LlamaWeights& weights, Backend& backend, KvPool& pool, int max_tokens);

  // Runs `tokens` at positions n_past() onwards. Returns the logits of the last token, or of every
  // token when all_logits (row-major [n, n_vocab]). On error the session is as before the call.
  std::vector<float> evaluate(const std::vector<int32_t>& tokens, bool all_logits);

  int n_past() const { return kv_.n_tokens(); }
  int max_tokens() const { return kv_.max_tokens(); }
  // Forgets every token from `n_tokens` on (0 clears the sequence).
  void rewind(int n_tokens);
  KvStats cache_stats() const { return kv_.stats(); }

 private:
  void upload_tables();

  const LlamaConfig& config_;
  const LlamaWeights& weights_;
  Backend& backend_;
  KvPool& pool_;
  SequenceKv kv_;
  uint64_t uploaded_version_ = ~uint64_t(0);
  std::unique_ptr<DeviceBuffer> k_tables_, v_tables_;
  std::vector<HeadClusters> clusters_;
  std::vector<std::unique_ptr<DeviceBuffer>> cluster_buffers_;  // per layer: reps | offsets | members
};

}  // namespace chai
