#include "session.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "attention_planner.h"
#include "core/error.h"

namespace chai {
namespace {

TensorView rows_of(void* buffer, int64_t rows, int64_t cols, int64_t first_row = 0) {
  return TensorView{static_cast<float*>(buffer) + first_row * cols, DType::F32, rows, cols};
}

// K and V rows of one sequence's new tokens into its pages of one layer (tables from the plan).
void store_kv(Backend& backend, const KvPool& pool, const LlamaConfig& c, const StepSequence& sq, const SequenceAttention& sa,
              const TensorView& K, const TensorView& V) {
  KvStoreParams store;
  store.n = sq.n_q;
  store.n_heads = c.n_kv_heads;
  store.head_dim = c.head_dim;
  store.pos0 = sq.pos0;
  store.pool = pool.base();
  store.kv_dtype = pool.dtype();
  store.page_tokens = pool.page_tokens();
  store.max_pages = sa.max_pages;
  store.src = K.as<float>() + size_t(sq.q_row) * c.kv_dim();
  store.table = sa.k_table;
  backend.store_kv(store);
  store.src = V.as<float>() + size_t(sq.q_row) * c.kv_dim();
  store.table = sa.v_table;
  backend.store_kv(store);
}

// Workspace slots of a forward pass.
enum Slot : size_t { kTokens, kPositions, kX, kH, kQ, kK, kV, kAtt, kGate, kUp, kPlan, kPartials, kPicked, kLogits };

// The stacked rows of one forward pass, in workspace buffers: token ids and positions uploaded,
// activations allocated.
struct Activations {
  const int32_t* tokens;
  const int32_t* positions;
  TensorView X, H, Q, K, V, A, G, U;

  Activations(Backend& backend, Workspace& ws, const LlamaConfig& c, const std::vector<int32_t>& token_ids,
              const std::vector<int32_t>& token_positions) {
    const int64_t rows = int64_t(token_ids.size());
    auto ints = [&](size_t slot, const std::vector<int32_t>& values) {
      void* buffer = ws.get(slot, values.size() * sizeof(int32_t));
      backend.upload(buffer, values.data(), values.size() * sizeof(int32_t));
      return static_cast<const int32_t*>(buffer);
    };
    auto floats = [&](size_t slot, int64_t cols) { return rows_of(ws.get(slot, size_t(rows * cols) * 4), rows, cols); };
    tokens = ints(kTokens, token_ids);
    positions = ints(kPositions, token_positions);
    X = floats(kX, c.n_embd), H = floats(kH, c.n_embd);
    Q = floats(kQ, c.q_dim()), K = floats(kK, c.kv_dim()), V = floats(kV, c.kv_dim());
    A = floats(kAtt, c.q_dim()), G = floats(kGate, c.n_ff), U = floats(kUp, c.n_ff);
  }
};

// Logits only for the rows asked for: gather them, then one norm and one output product.
void emit_logits(const std::vector<Session::BatchItem*>& items, const std::vector<StepSequence>& steps, Backend& backend,
                 Workspace& ws, const LlamaWeights& weights, const LlamaConfig& c, const void* x, void* h) {
  int out_rows = 0;
  for (const Session::BatchItem* item : items) out_rows += item->all_logits ? int(item->tokens.size()) : 1;
  void* picked = ws.get(kPicked, size_t(out_rows) * c.n_embd * 4);
  int at = 0;
  for (size_t s = 0; s < steps.size(); ++s) {
    const int m = items[s]->all_logits ? steps[s].n_q : 1;
    backend.copy(static_cast<float*>(picked) + size_t(at) * c.n_embd,
                 static_cast<const float*>(x) + size_t(steps[s].q_row + steps[s].n_q - m) * c.n_embd, size_t(m) * c.n_embd * 4);
    at += m;
  }
  const TensorView normed = rows_of(h, out_rows, c.n_embd);
  backend.rmsnorm(rows_of(picked, out_rows, c.n_embd), weights.output_norm, c.rms_eps, normed);
  void* logits = ws.get(kLogits, size_t(out_rows) * c.n_vocab * 4);
  backend.matmul(normed, weights.output, rows_of(logits, out_rows, c.n_vocab));
  std::vector<float> host(size_t(out_rows) * c.n_vocab);
  backend.download(host.data(), logits, host.size() * sizeof(float));
  at = 0;
  for (Session::BatchItem* item : items) {
    const int m = item->all_logits ? int(item->tokens.size()) : 1;
    item->logits.assign(host.begin() + std::ptrdiff_t(size_t(at) * c.n_vocab),
                        host.begin() + std::ptrdiff_t(size_t(at + m) * c.n_vocab));
    at += m;
  }
}

// One layer's Q/K/V projections and what the architecture does to them before attention: biases
// (Qwen2), per-head RMSNorm of q and k (Qwen3), then RoPE in the architecture's style with
// optional frequency factors (Llama 3.1). Reads only the config's description fields.
void project_qkv(Backend& backend, const LlamaConfig& c, const LlamaWeights& weights, const LlamaLayer& w,
                 const TensorView& normed, const TensorView& Q, const TensorView& K, const TensorView& V,
                 const int32_t* positions) {
  backend.matmul(normed, w.wq, Q);
  backend.matmul(normed, w.wk, K);
  backend.matmul(normed, w.wv, V);
  if (c.qkv_bias) {
    backend.add_bias(Q, w.bq);
    backend.add_bias(K, w.bk);
    backend.add_bias(V, w.bv);
  }
  if (c.qk_norm) {
    const TensorView q_heads{Q.data, DType::F32, Q.rows * c.n_heads, c.head_dim};
    const TensorView k_heads{K.data, DType::F32, K.rows * c.n_kv_heads, c.head_dim};
    backend.rmsnorm(q_heads, w.q_norm, c.rms_eps, q_heads);
    backend.rmsnorm(k_heads, w.k_norm, c.rms_eps, k_heads);
  }
  const float* factors = weights.rope_factors.data ? weights.rope_factors.as<float>() : nullptr;
  backend.rope(Q, c.head_dim, positions, c.rope_base, c.rope_style, factors);
  backend.rope(K, c.head_dim, positions, c.rope_base, c.rope_style, factors);
}

}  // namespace

HeadClusters HeadClusters::identity(int n_heads) {
  HeadClusters c;
  c.reps.resize(size_t(n_heads));
  c.members.resize(size_t(n_heads));
  c.offsets.resize(size_t(n_heads) + 1);
  std::iota(c.reps.begin(), c.reps.end(), 0);
  std::iota(c.members.begin(), c.members.end(), 0);
  std::iota(c.offsets.begin(), c.offsets.end(), 0);
  return c;
}

HeadClusters HeadClusters::from(const Clustering& clustering) {
  HeadClusters c;
  c.reps = clustering.representatives;
  c.offsets.push_back(0);
  for (int32_t cluster = 0; cluster < int32_t(c.reps.size()); ++cluster) {
    for (size_t h = 0; h < clustering.membership.size(); ++h)
      if (clustering.membership[h] == cluster) c.members.push_back(int32_t(h));
    c.offsets.push_back(int32_t(c.members.size()));
  }
  return c;
}

void validate_plan(const ChaiPlan& plan, const LlamaConfig& config) {
  CHAI_REQUIRE(int(plan.clusters.size()) == config.n_layers, ErrorCode::PlanMismatch,
          "the cluster plan has " + std::to_string(plan.clusters.size()) + " layers but the model has " +
              std::to_string(config.n_layers));
  for (size_t l = 0; l < plan.clusters.size(); ++l)
    CHAI_REQUIRE(plan.clusters[l] >= 1 && plan.clusters[l] <= config.n_heads, ErrorCode::PlanMismatch,
            "the cluster plan asks for " + std::to_string(plan.clusters[l]) + " clusters in layer " + std::to_string(l) +
                "; the model has " + std::to_string(config.n_heads) + " heads per layer (use 1.." +
                std::to_string(config.n_heads) + ")");
  CHAI_REQUIRE(plan.t0 >= 1 && plan.t0 <= 32, ErrorCode::PlanMismatch,
          "the cluster plan's t0 must be between 1 and 32, got " + std::to_string(plan.t0));
}

Session::Session(const LlamaConfig& config, const LlamaWeights& weights, Backend& backend, KvPool& pool, int max_tokens,
                 std::optional<ChaiPlan> plan, Workspace* workspace, PrefixCache* prefix_cache)
    : config_(config),
      weights_(weights),
      backend_(backend),
      pool_(pool),
      workspace_(workspace),
      kv_(pool, config.n_layers, config.n_kv_heads, max_tokens),
      plan_(std::move(plan)),
      prefix_cache_(prefix_cache) {
  CHAI_REQUIRE(max_tokens > 0 && max_tokens <= config.n_ctx_train, ErrorCode::InvalidArgument,
          "maxTokens must be in 1.." + std::to_string(config.n_ctx_train) + " (the model's context length), got " +
              std::to_string(max_tokens));
  // Attention over at most `window` tokens equals full attention while the context fits in it.
  CHAI_REQUIRE(config.sliding_window == 0 || max_tokens <= config.sliding_window, ErrorCode::InvalidArgument,
          "this model attends over a sliding window of " + std::to_string(config.sliding_window) +
              " tokens, which this engine runs exactly only up to that length: use maxTokens <= " +
              std::to_string(config.sliding_window));
  CHAI_REQUIRE(pool.head_dim() == config.head_dim, ErrorCode::Internal, "KV pool head size differs from the model's");
  CHAI_REQUIRE(!prefix_cache || prefix_cache->serves(pool), ErrorCode::Internal, "the prefix cache belongs to another KV pool");
  if (plan_) validate_plan(*plan_, config);
  prefix_scope_ = prefix_scope();
  packed_clusters_.resize(size_t(config.n_layers));
  cluster_buffers_.resize(size_t(config.n_layers));
  early_q_.resize(size_t(config.n_layers));
  early_k_.resize(size_t(config.n_layers));
  reset_clusters();
}

bool Session::clusters_heads() const {
  return plan_ && std::any_of(plan_->clusters.begin(), plan_->clusters.end(), [&](int k) { return k < config_.n_heads; });
}

std::string Session::prefix_scope() const {
  if (!clusters_heads()) return "full attention";
  const ClusteringOptions& o = plan_->clustering;
  std::string scope = "chai t0=" + std::to_string(plan_->t0) + " method=" + std::to_string(int(o.method)) +
                      " representative=" + std::to_string(int(o.representative)) + " seed=" + std::to_string(o.seed) +
                      " restarts=" + std::to_string(o.restarts) + " clusters=";
  for (int k : plan_->clusters) scope += std::to_string(k) + ",";
  return scope;
}

int Session::reuse_prefix(const std::vector<int32_t>& prompt) {
  CHAI_REQUIRE(prefix_cache_ != nullptr, ErrorCode::InvalidArgument,
               "this session was created without prefix caching: create it with prefixCache enabled");
  CHAI_REQUIRE(kv_.n_tokens() == 0, ErrorCode::InvalidArgument,
               "a cached prefix can only start a request, but the session holds " + std::to_string(kv_.n_tokens()) +
                   " tokens: reset it to 0 first");
  check_token_ids(prompt);
  const bool clustered = clusters_heads();
  const int most = std::min(int(prompt.size()) - 1, kv_.max_tokens());
  const PrefixMatch found = prefix_cache_->match(prefix_scope_, prompt, clustered ? plan_->t0 : 1, most);
  if (found.tokens == 0) return 0;
  try {
    CHAI_REQUIRE(!clustered || found.assignments, ErrorCode::Internal, "a cached CHAI prefix without its clusters");
    tokens_.reserve(prompt.size());
    kv_.adopt(found.columns, found.tokens);
  } catch (...) {
    for (const PageColumn& c : found.columns) {
      pool_.release(c.k);
      pool_.release(c.v);
    }
    throw;
  }
  try {
    if (clustered) {
      for (int l = 0; l < config_.n_layers; ++l)
        if (const auto& a = (*found.assignments)[size_t(l)]) set_clusters(l, HeadClusters::from(*a));
      assignments_ = *found.assignments;
      shared_assignments_ = found.assignments;
    }
  } catch (...) {
    rewind(0);  // gives the adopted pages back
    throw;
  }
  tokens_.assign(prompt.begin(), prompt.begin() + found.tokens);
  cached_tokens_ = found.tokens;
  cacheable_ = true;  // the cached rows are what this request computes from its start
  return found.tokens;
}

void Session::record(const std::vector<int32_t>& tokens, int pos0) noexcept {
  // prepare() reserved room for these tokens: no allocation, nothing to throw.
  tokens_.resize(size_t(pos0));
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  const int page = pool_.page_tokens();
  const int full_pages = kv_.n_tokens() / page;
  if (!prefix_cache_ || !cacheable_ || full_pages == pos0 / page) return;  // no page completed now
  // A failure from here on (memory) only leaves these pages uncached; the evaluation stands.
  try {
    if (clusters_heads() && !shared_assignments_) shared_assignments_ = std::make_shared<const LayerAssignments>(assignments_);
    prefix_cache_->insert(prefix_scope_, tokens_, kv_, full_pages, plan_ ? plan_->t0 : 0, shared_assignments_);
  } catch (...) {
  }
}

bool Session::pending(int layer) const {
  return plan_ && plan_->clusters[size_t(layer)] < config_.n_heads && !assignments_[size_t(layer)];
}

void Session::reset_clusters() {
  assignments_.assign(size_t(config_.n_layers), std::nullopt);
  for (int l = 0; l < config_.n_layers; ++l) {
    set_clusters(l, HeadClusters::identity(config_.n_heads));
    early_q_[size_t(l)].reset();
    early_k_[size_t(l)].reset();
  }
}

void Session::set_clusters(int layer, const HeadClusters& c) {
  PackedClusters packed =
      pack_clusters(c.reps, c.offsets, c.members, config_.n_heads, config_.n_kv_heads, config_.head_dim, pool_.dtype());
  auto buffer = std::make_unique<DeviceBuffer>(backend_, packed.data.size() * sizeof(int32_t));
  backend_.upload(buffer->get(), packed.data.data(), buffer->bytes());
  cluster_buffers_[size_t(layer)] = std::move(buffer);
  packed_clusters_[size_t(layer)] = std::move(packed);
}

SequenceAttention Session::attention_of(int layer) const {
  SequenceAttention sa;
  const size_t stride = size_t(config_.n_kv_heads) * kv_.max_pages();
  sa.k_table = static_cast<const int32_t*>(k_tables_->get()) + size_t(layer) * stride;
  sa.v_table = static_cast<const int32_t*>(v_tables_->get()) + size_t(layer) * stride;
  sa.max_pages = kv_.max_pages();
  point_clusters(sa, packed_clusters_[size_t(layer)], static_cast<const int32_t*>(cluster_buffers_[size_t(layer)]->get()));
  return sa;
}

std::optional<Clustering> Session::assignment(int layer) const {
  CHAI_REQUIRE(layer >= 0 && layer < config_.n_layers, ErrorCode::InvalidArgument,
          "layer " + std::to_string(layer) + " does not exist (the model has " + std::to_string(config_.n_layers) + ")");
  return assignments_[size_t(layer)];
}

void Session::cluster_if_ready(int layer, const TensorView& q, const TensorView& k, int pos0, int n) {
  const int t0 = plan_->t0;
  const size_t q_row = size_t(config_.q_dim()) * sizeof(float), k_row = size_t(config_.kv_dim()) * sizeof(float);
  auto& early_q = early_q_[size_t(layer)];
  auto& early_k = early_k_[size_t(layer)];
  if (!early_q) {
    early_q = std::make_unique<DeviceBuffer>(backend_, size_t(t0) * q_row);
    early_k = std::make_unique<DeviceBuffer>(backend_, size_t(t0) * k_row);
  }
  const int rows = std::min(pos0 + n, t0) - pos0;
  if (rows > 0) {
    backend_.copy(static_cast<char*>(early_q->get()) + size_t(pos0) * q_row, q.data, size_t(rows) * q_row);
    backend_.copy(static_cast<char*>(early_k->get()) + size_t(pos0) * k_row, k.data, size_t(rows) * k_row);
  }
  if (pos0 + n < t0) return;

  const std::vector<float> features = head_features(early_q->get(), early_k->get(), t0);
  Clustering clustering =
      cluster_points(features.data(), config_.n_heads, feature_length(t0), plan_->clusters[size_t(layer)], plan_->clustering);
  std::vector<bool> keep(size_t(config_.n_kv_heads), false);
  for (int32_t rep : clustering.representatives) keep[size_t(rep / config_.group())] = true;
  kv_.decide_keys(layer, keep);
  set_clusters(layer, HeadClusters::from(clustering));
  assignments_[size_t(layer)] = std::move(clustering);
  early_q.reset();
  early_k.reset();
}

void Session::upload_tables() {
  if (uploaded_version_ == kv_.version()) return;
  const size_t bytes = kv_.k_tables().size() * sizeof(int32_t);
  if (!k_tables_ || k_tables_->bytes() != bytes) {  // the tables grow with the sequence
    k_tables_ = std::make_unique<DeviceBuffer>(backend_, bytes);
    v_tables_ = std::make_unique<DeviceBuffer>(backend_, bytes);
  }
  backend_.upload(k_tables_->get(), kv_.k_tables().data(), bytes);
  backend_.upload(v_tables_->get(), kv_.v_tables().data(), bytes);
  uploaded_version_ = kv_.version();
}

std::vector<float> Session::head_features(const void* q, const void* k, int t0) {
  DeviceBuffer features(backend_, size_t(config_.n_heads) * feature_length(t0) * sizeof(float));
  HeadFeatureParams fp;
  fp.q = static_cast<const float*>(q);
  fp.k = static_cast<const float*>(k);
  fp.out = static_cast<float*>(features.get());
  fp.t0 = t0;
  fp.n_heads = config_.n_heads;
  fp.n_kv_heads = config_.n_kv_heads;
  fp.head_dim = config_.head_dim;
  fp.scale = 1.0f / std::sqrt(float(config_.head_dim));
  backend_.head_features(fp);
  std::vector<float> host(size_t(config_.n_heads) * feature_length(t0));
  backend_.download(host.data(), features.get(), features.bytes());
  return host;
}

std::vector<std::vector<float>> Session::features_of(const std::vector<int32_t>& tokens, int t0) {
  CHAI_REQUIRE(t0 >= 1 && int(tokens.size()) >= t0, ErrorCode::InvalidArgument,
          "features need at least t0 = " + std::to_string(t0) + " tokens, got " + std::to_string(tokens.size()));
  CHAI_REQUIRE(!plan_, ErrorCode::Internal, "features_of runs on a full-attention session");
  rewind(0);
  capture_t0_ = t0;
  captured_.assign(size_t(config_.n_layers), {});
  try {
    evaluate(std::vector<int32_t>(tokens.begin(), tokens.begin() + t0), false);
  } catch (...) {
    capture_t0_ = 0;
    rewind(0);
    throw;
  }
  capture_t0_ = 0;
  rewind(0);
  return std::move(captured_);
}

void Session::rewind(int n_tokens) {
  CHAI_REQUIRE(n_tokens >= 0 && n_tokens <= kv_.n_tokens(), ErrorCode::InvalidArgument,
          "cannot rewind to " + std::to_string(n_tokens) + " tokens: the session holds " + std::to_string(kv_.n_tokens()));
  if (n_tokens == 0) {
    kv_.clear();
    reset_clusters();
    tokens_.clear();
    cached_tokens_ = 0;
    shared_assignments_.reset();
    return;
  }
  // Dropped keys cannot come back, and a layer waiting for t0 tokens keeps only its first rows.
  CHAI_REQUIRE(!plan_ || n_tokens >= plan_->t0 || n_tokens == kv_.n_tokens(), ErrorCode::InvalidArgument,
          "a CHAI session cannot rewind into its first t0 = " + std::to_string(plan_ ? plan_->t0 : 0) +
              " tokens, which chose its clusters; rewind to 0 to start a new request");
  kv_.set_tokens(n_tokens);
  tokens_.resize(size_t(n_tokens));
}

void Session::check_token_ids(const std::vector<int32_t>& tokens) const {
  for (int32_t t : tokens)
    CHAI_REQUIRE(t >= 0 && t < config_.n_vocab, ErrorCode::InvalidArgument,
            "token id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(config_.n_vocab - 1) + ")");
}

int Session::prepare(const std::vector<int32_t>& tokens) {
  const LlamaConfig& c = config_;
  const int n = int(tokens.size());
  CHAI_REQUIRE(n > 0, ErrorCode::InvalidArgument, "evaluate needs at least one token");
  check_token_ids(tokens);
  const int pos0 = kv_.n_tokens();
  CHAI_REQUIRE(pos0 + n <= kv_.max_tokens(), ErrorCode::ContextOverflow,
          std::to_string(pos0) + " + " + std::to_string(n) + " tokens exceed this session's maxTokens (" +
              std::to_string(kv_.max_tokens()) + "): create the session with a larger maxTokens or shorten the prompt");
  // A prompt that reaches t0 clusters each layer before its attention: its keys wait for the decision.
  if (plan_ && pos0 == 0 && n >= plan_->t0)
    for (int l = 0; l < c.n_layers; ++l)
      if (pending(l)) kv_.defer_keys(l);
  kv_.reserve(pos0 + n);
  kv_.unshare(pos0, n);  // pages shared with the prefix cache or other sequences stay as they are
  if (tokens_.capacity() < size_t(pos0 + n)) tokens_.reserve(std::max(size_t(pos0 + n), 2 * tokens_.capacity()));
  if (pos0 == 0) cacheable_ = !clusters_heads() || n >= plan_->t0;
  return pos0;
}

std::vector<float> Session::evaluate(const std::vector<int32_t>& tokens, bool all_logits) {
  std::vector<BatchItem> items(1);
  items[0].session = this;
  items[0].tokens = tokens;
  items[0].all_logits = all_logits;
  evaluate_batch(items);
  if (items[0].error) std::rethrow_exception(items[0].error);
  return std::move(items[0].logits);
}

// The requests of a batch that pass their checks, with their rows in the stacked batch; the
// others keep their error.
std::vector<Session::Admitted> Session::admit(std::vector<BatchItem>& items) {
  std::vector<Admitted> seqs;
  int rows = 0;
  for (BatchItem& item : items) {
    try {
      CHAI_REQUIRE(item.session != nullptr, ErrorCode::Internal, "batch item without a session");
      for (const Admitted& a : seqs)
        CHAI_REQUIRE(a.step.session != item.session, ErrorCode::InvalidArgument, "a session can appear only once in a batch");
      if (!seqs.empty()) {
        const Session& first = *seqs[0].step.session;
        CHAI_REQUIRE(&item.session->backend_ == &first.backend_ && &item.session->pool_ == &first.pool_ &&
                         &item.session->weights_ == &first.weights_,
                     ErrorCode::Internal, "a batch mixes sessions of different models");
      }
      const int pos0 = item.session->prepare(item.tokens);
      const int n = int(item.tokens.size());
      seqs.push_back({&item, {item.session, rows, n, pos0}});
      rows += n;
    } catch (...) {
      item.error = std::current_exception();
    }
  }
  return seqs;
}

// Before a layer's attention, per sequence: CHAI's work on this layer's Q and K rows (features
// for calibration; clustering once t0 tokens exist, which changes the layer's pages and
// clusters, so the plan of this layer is made again).
void Session::before_attention(int layer, const StepSequence& sq, const TensorView& Q, const TensorView& K,
                               AttentionPlanner& planner, std::shared_lock<std::shared_mutex>& reading) {
  const TensorView Qs = rows_of(Q.data, sq.n_q, config_.q_dim(), sq.q_row);
  const TensorView Ks = rows_of(K.data, sq.n_q, config_.kv_dim(), sq.q_row);
  if (capture_t0_ > 0) captured_[size_t(layer)] = head_features(Qs.data, Ks.data, capture_t0_);
  if (!pending(layer)) return;
  reading.unlock();  // choosing keys may allocate pages, and so grow (move) the pool
  cluster_if_ready(layer, Qs, Ks, sq.pos0, sq.n_q);
  reading.lock();
  if (pending(layer)) return;
  upload_tables();
  planner.replan(layer);
}

void Session::evaluate_batch(std::vector<BatchItem>& all_items) {
  // 1. Admit the requests that pass their checks (cache room made for each).
  std::vector<Admitted> seqs = admit(all_items);
  if (seqs.empty()) return;

  Session& first = *seqs[0].step.session;
  const LlamaConfig& c = first.config_;
  const LlamaWeights& weights = first.weights_;
  Backend& backend = first.backend_;
  KvPool& pool = first.pool_;
  try {
    // 2. Stack the batch's tokens and positions; bring page tables up to date; activations.
    std::vector<int32_t> tokens, positions;
    std::vector<StepSequence> steps;
    std::vector<BatchItem*> items;
    for (const Admitted& a : seqs) {
      tokens.insert(tokens.end(), a.item->tokens.begin(), a.item->tokens.end());
      for (int i = 0; i < a.step.n_q; ++i) positions.push_back(a.step.pos0 + i);
      steps.push_back(a.step);
      items.push_back(a.item);
      a.step.session->upload_tables();
    }
    // Sessions of one model share its workspace (one pass at a time); otherwise this pass has its own.
    std::unique_ptr<Workspace> own;
    Workspace* ws = first.workspace_;
    if (!ws) ws = (own = std::make_unique<Workspace>(backend)).get();
    auto in_use = ws->lock();
    const Activations act(backend, *ws, c, tokens, positions);
    const TensorView &X = act.X, &H = act.H, &Q = act.Q, &K = act.K, &V = act.V, &A = act.A, &G = act.G, &U = act.U;
    const int32_t* pos = act.positions;

    // 3. Plan every layer's attention at once (one upload for the step).
    AttentionParams shape;
    shape.n_heads = c.n_heads;
    shape.n_kv_heads = c.n_kv_heads;
    shape.head_dim = c.head_dim;
    shape.scale = 1.0f / std::sqrt(float(c.head_dim));
    shape.kv_dtype = pool.dtype();
    shape.page_tokens = pool.page_tokens();
    AttentionPlanner planner(backend, *ws, kPlan, kPartials, c.n_layers, shape, steps);

    // 4. The layers.
    auto reading = pool.reading();  // the pool arena must not move while kernels read it
    backend.embed(weights.token_embd, act.tokens, X);
    for (int l = 0; l < c.n_layers; ++l) {
      const LlamaLayer& w = weights.layers[size_t(l)];
      backend.rmsnorm(X, w.attn_norm, c.rms_eps, H);
      project_qkv(backend, c, weights, w, H, Q, K, V, pos);
      for (size_t s = 0; s < steps.size(); ++s) {
        Session& session = *steps[s].session;
        session.before_attention(l, steps[s], Q, K, planner, reading);
        store_kv(backend, pool, c, steps[s], planner.sequence(l, int(s)), K, V);
      }
      // Every sequence of the batch, each with its own pages and clusters, in one call.
      backend.attention(planner.call(l, Q.as<float>(), A.as<float>(), pool.base()));

      backend.matmul(A, w.wo, H);
      backend.add(X, H);
      backend.rmsnorm(X, w.ffn_norm, c.rms_eps, H);
      backend.matmul(H, w.gate, G);
      backend.matmul(H, w.up, U);
      backend.swiglu(G, U);
      backend.matmul(G, w.down, H);
      backend.add(X, H);
    }
    // 5. Logits of the rows asked for; the new tokens now count as cached.
    emit_logits(items, steps, backend, *ws, weights, c, X.data, H.data);
    for (size_t s = 0; s < steps.size(); ++s) {
      steps[s].session->kv_.set_tokens(steps[s].pos0 + steps[s].n_q);
      steps[s].session->record(items[s]->tokens, steps[s].pos0);
    }
  } catch (...) {
    for (const Admitted& a : seqs) a.item->error = std::current_exception();
  }
}

}  // namespace chai
