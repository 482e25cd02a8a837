// One sequence being run through a LLaMA model on one backend: the forward pass (prefill as one
// batch, decode token by token) over a paged KV cache, with per-layer head clusters that the
// attention uses (identity clusters = full attention).
#pragma once
#include <exception>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <vector>

#include "attention_planner.h"
#include "chai/calibration.h"
#include "chai/clustering.h"
#include "core/backend.h"
#include "kv_cache.h"
#include "model/llama.h"
#include "prefix_cache.h"
#include "workspace.h"

namespace chai {

// Head clusters of one layer in CSR form: cluster c takes its scores from head reps[c] and
// applies them to members[offsets[c] .. offsets[c+1]).
struct HeadClusters {
  std::vector<int32_t> reps, offsets, members;
  static HeadClusters identity(int n_heads);
  static HeadClusters from(const Clustering& clustering);
  int count() const { return int(reps.size()); }
};

// What CHAI does in a session (a validated cluster plan): layer l keeps clusters[l] clusters of
// heads (== n_heads: not clustered), chosen from the first t0 tokens of the sequence.
struct ChaiPlan {
  int t0 = 5;
  ClusteringOptions clustering;
  std::vector<int> clusters;
};

// Throws PlanMismatch naming what does not fit.
void validate_plan(const ChaiPlan& plan, const LlamaConfig& config);

class Session : public HeadFeatureSource {
 public:
  // `weights` must live in `backend`'s memory and outlive the session (the caller keeps the
  // model alive). The session draws cache pages from `pool`.
  // Without a plan (or with every layer at n_heads clusters) this is full attention. Sessions of
  // one model may share a workspace for their forward passes; without one, each pass allocates.
  // With a prefix cache (of `pool`), the session offers the full pages it computes to the cache
  // and can start a request from cached ones (reuse_prefix).
  Session(const LlamaConfig& config, const LlamaWeights& weights, Backend& backend, KvPool& pool, int max_tokens,
          std::optional<ChaiPlan> plan = std::nullopt, Workspace* workspace = nullptr, PrefixCache* prefix_cache = nullptr);

  // Runs `tokens` at positions n_past() onwards. Returns the logits of the last token, or of every
  // token when all_logits (row-major [n, n_vocab]). On error the session is as before the call.
  std::vector<float> evaluate(const std::vector<int32_t>& tokens, bool all_logits);

  // Several sessions of one model (same config, weights, backend and pool) in one forward pass:
  // their rows are stacked, so every weight is read once for the whole batch; attention and
  // clustering stay per sequence. Each item gets its logits or its own error (a request that
  // fails validation does not stop the others).
  struct BatchItem {
    Session* session = nullptr;
    std::vector<int32_t> tokens;
    bool all_logits = false;
    std::vector<float> logits;  // out
    std::exception_ptr error;   // out
  };
  static void evaluate_batch(std::vector<BatchItem>& items);

  // Starts an empty session from the longest cached prefix of `prompt` (at most prompt.size() - 1
  // tokens, so that the last one is evaluated and gives logits; with CHAI at least t0 tokens, and
  // the clusters chosen from them come along). Returns the tokens now held (0: none cached); the
  // caller evaluates the rest of the prompt.
  int reuse_prefix(const std::vector<int32_t>& prompt);
  // Tokens of the current request that came from the prefix cache.
  int cached_tokens() const { return cached_tokens_; }
  // Names the plan (or full attention) in prefix cache keys: what else cached pages depend on.
  std::string prefix_scope() const;

  int n_past() const { return kv_.n_tokens(); }
  int max_tokens() const { return kv_.max_tokens(); }
  // Forgets every token from `n_tokens` on. 0 starts a new request (clusters are chosen again);
  // otherwise a clustered session cannot go back before its first t0 tokens.
  void rewind(int n_tokens);
  KvStats cache_stats() const { return kv_.stats(); }
  // The clusters of a clustered layer, once chosen; nullopt for unclustered or undecided layers.
  std::optional<Clustering> assignment(int layer) const;

  // Calibration: starts a new request, runs its first t0 tokens with full attention and returns
  // every layer's head features ([n_layers][n_heads × t0(t0+1)/2]). Leaves the session empty.
  std::vector<std::vector<float>> features_of(const std::vector<int32_t>& tokens, int t0) override;

  // This sequence's attention descriptor for `layer`: page tables and clusters in backend memory
  // (rows, positions and split-KV fields are the planner's).
  SequenceAttention attention_of(int layer) const;

 private:
  struct Admitted {
    BatchItem* item;
    StepSequence step;
  };
  static std::vector<Admitted> admit(std::vector<BatchItem>& items);
  void before_attention(int layer, const StepSequence& sq, const TensorView& Q, const TensorView& K, AttentionPlanner& planner,
                        std::shared_lock<std::shared_mutex>& reading);
  void upload_tables();
  // Checks a request and makes cache room for it; returns its first position.
  int prepare(const std::vector<int32_t>& tokens);
  void check_token_ids(const std::vector<int32_t>& tokens) const;
  // Whether the plan clusters any layer (otherwise the session computes full attention).
  bool clusters_heads() const;
  void set_clusters(int layer, const HeadClusters& clusters);
  bool pending(int layer) const;
  void reset_clusters();
  // Keeps this batch's Q/K rows of the first t0 positions; once t0 exist, clusters the layer.
  void cluster_if_ready(int layer, const TensorView& q, const TensorView& k, int pos0, int n);
  // Features of the first t0 rows of q and k (backend memory), downloaded.
  std::vector<float> head_features(const void* q, const void* k, int t0);
  // After an evaluation: the tokens now held, and their full pages offered to the prefix cache.
  void record(const std::vector<int32_t>& tokens, int pos0) noexcept;

  const LlamaConfig& config_;
  const LlamaWeights& weights_;
  Backend& backend_;
  KvPool& pool_;
  Workspace* workspace_;
  SequenceKv kv_;
  uint64_t uploaded_version_ = ~uint64_t(0);
  std::unique_ptr<DeviceBuffer> k_tables_, v_tables_;
  std::vector<PackedClusters> packed_clusters_;                 // per layer
  std::vector<std::unique_ptr<DeviceBuffer>> cluster_buffers_;  // per layer: backend copy of packed_clusters_
  std::optional<ChaiPlan> plan_;
  std::vector<std::optional<Clustering>> assignments_;
  // Q and K rows of the first t0 positions, per layer, until the layer is clustered.
  std::vector<std::unique_ptr<DeviceBuffer>> early_q_, early_k_;
  PrefixCache* prefix_cache_;
  std::string prefix_scope_;
  std::vector<int32_t> tokens_;  // the tokens whose K/V rows are stored
  int cached_tokens_ = 0;
  std::shared_ptr<const LayerAssignments> shared_assignments_;  // assignments_ once all are chosen, for the cache
  // The pages hold what a request computes from its start: no plan, or its first evaluation had
  // t0 tokens and so clustered before any attention (a shorter one runs full attention until t0,
  // and its rows differ from what a longer prompt computes). Only such pages are cached.
  bool cacheable_ = true;
  int capture_t0_ = 0;  // > 0 while features_of() runs
  std::vector<std::vector<float>> captured_;
};

}  // namespace chai
