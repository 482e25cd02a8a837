#include "session.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace chai {
namespace {

TensorView rows_of(void* buffer, int64_t rows, int64_t cols, int64_t first_row = 0) {
  return TensorView{static_cast<float*>(buffer) + first_row * cols, DType::F32, rows, cols};
}

// Workspace slots of a forward pass.
enum Slot : size_t { kTokens, kPositions, kX, kH, kQ, kK, kV, kAtt, kGate, kUp, kSequences, kPicked, kLogits };

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

int HeadClusters::max_members() const {
  int largest = 0;
  for (size_t c = 0; c + 1 < offsets.size(); ++c) largest = std::max(largest, offsets[c + 1] - offsets[c]);
  return largest;
}

Session::Session(const LlamaConfig& config, const LlamaWeights& weights, Backend& backend, KvPool& pool, int max_tokens,
                 std::optional<ChaiPlan> plan, Workspace* workspace)
    : config_(config),
      weights_(weights),
      backend_(backend),
      pool_(pool),
      workspace_(workspace),
      kv_(pool, config.n_layers, config.n_kv_heads, max_tokens),
      plan_(std::move(plan)) {
  CHAI_REQUIRE(max_tokens > 0 && max_tokens <= config.n_ctx_train, ErrorCode::InvalidArgument,
          "maxTokens must be in 1.." + std::to_string(config.n_ctx_train) + " (the model's context length), got " +
              std::to_string(max_tokens));
  // Attention over at most `window` tokens equals full attention while the context fits in it.
  CHAI_REQUIRE(config.sliding_window == 0 || max_tokens <= config.sliding_window, ErrorCode::InvalidArgument,
          "this model attends over a sliding window of " + std::to_string(config.sliding_window) +
              " tokens, which this engine runs exactly only up to that length: use maxTokens <= " +
              std::to_string(config.sliding_window));
  CHAI_REQUIRE(pool.head_dim() == config.head_dim, ErrorCode::Internal, "KV pool head size differs from the model's");
  if (plan_) validate_plan(*plan_, config);
  clusters_.resize(size_t(config.n_layers));
  cluster_buffers_.resize(size_t(config.n_layers));
  early_q_.resize(size_t(config.n_layers));
  early_k_.resize(size_t(config.n_layers));
  reset_clusters();
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
  std::vector<int32_t> packed(c.reps);
  packed.insert(packed.end(), c.offsets.begin(), c.offsets.end());
  packed.insert(packed.end(), c.members.begin(), c.members.end());
  auto buffer = std::make_unique<DeviceBuffer>(backend_, packed.size() * sizeof(int32_t));
  backend_.upload(buffer->get(), packed.data(), buffer->bytes());
  cluster_buffers_[size_t(layer)] = std::move(buffer);
  clusters_[size_t(layer)] = c;
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
    return;
  }
  // Dropped keys cannot come back, and a layer waiting for t0 tokens keeps only its first rows.
  CHAI_REQUIRE(!plan_ || n_tokens >= plan_->t0 || n_tokens == kv_.n_tokens(), ErrorCode::InvalidArgument,
          "a CHAI session cannot rewind into its first t0 = " + std::to_string(plan_ ? plan_->t0 : 0) +
              " tokens, which chose its clusters; rewind to 0 to start a new request");
  kv_.set_tokens(n_tokens);
}

int Session::prepare(const std::vector<int32_t>& tokens) {
  const LlamaConfig& c = config_;
  const int n = int(tokens.size());
  CHAI_REQUIRE(n > 0, ErrorCode::InvalidArgument, "evaluate needs at least one token");
  for (int32_t t : tokens)
    CHAI_REQUIRE(t >= 0 && t < c.n_vocab, ErrorCode::InvalidArgument,
            "token id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(c.n_vocab - 1) + ")");
  const int pos0 = kv_.n_tokens();
  CHAI_REQUIRE(pos0 + n <= kv_.max_tokens(), ErrorCode::ContextOverflow,
          std::to_string(pos0) + " + " + std::to_string(n) + " tokens exceed this session's maxTokens (" +
              std::to_string(kv_.max_tokens()) + "): create the session with a larger maxTokens or shorten the prompt");
  // A prompt that reaches t0 clusters each layer before its attention: its keys wait for the decision.
  if (plan_ && pos0 == 0 && n >= plan_->t0)
    for (int l = 0; l < c.n_layers; ++l)
      if (pending(l)) kv_.defer_keys(l);
  kv_.reserve(pos0 + n);
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

void Session::evaluate_batch(std::vector<BatchItem>& all_items) {
  // Requests that pass their checks run together; the others keep their error.
  struct Seq {
    BatchItem* item;
    Session* s;
    int pos0, n, row;
  };
  std::vector<Seq> seqs;
  int rows = 0;
  for (BatchItem& item : all_items) {
    try {
      CHAI_REQUIRE(item.session != nullptr, ErrorCode::Internal, "batch item without a session");
      for (const Seq& q : seqs)
        CHAI_REQUIRE(q.s != item.session, ErrorCode::InvalidArgument, "a session can appear only once in a batch");
      if (!seqs.empty())
        CHAI_REQUIRE(&item.session->backend_ == &seqs[0].s->backend_ && &item.session->pool_ == &seqs[0].s->pool_ &&
                    &item.session->weights_ == &seqs[0].s->weights_,
                ErrorCode::Internal, "a batch mixes sessions of different models");
      const int pos0 = item.session->prepare(item.tokens);
      seqs.push_back({&item, item.session, pos0, int(item.tokens.size()), rows});
      rows += int(item.tokens.size());
    } catch (...) {
      item.error = std::current_exception();
    }
  }
  if (seqs.empty()) return;

  Session& first = *seqs[0].s;
  const LlamaConfig& c = first.config_;
  const LlamaWeights& weights = first.weights_;
  Backend& backend = first.backend_;
  KvPool& pool = first.pool_;
  try {
    std::vector<int32_t> tokens, positions;
    for (const Seq& q : seqs) {
      tokens.insert(tokens.end(), q.item->tokens.begin(), q.item->tokens.end());
      for (int i = 0; i < q.n; ++i) positions.push_back(q.pos0 + i);
    }
    // Sessions of one model share its workspace (one pass at a time); otherwise this pass has its own.
    std::unique_ptr<Workspace> own;
    Workspace* ws = first.workspace_;
    if (!ws) ws = (own = std::make_unique<Workspace>(backend)).get();
    auto in_use = ws->lock();
    void* token_buf = ws->get(kTokens, size_t(rows) * sizeof(int32_t));
    void* position_buf = ws->get(kPositions, size_t(rows) * sizeof(int32_t));
    backend.upload(token_buf, tokens.data(), size_t(rows) * sizeof(int32_t));
    backend.upload(position_buf, positions.data(), size_t(rows) * sizeof(int32_t));
    const int32_t* pos = static_cast<const int32_t*>(position_buf);
    void* x = ws->get(kX, size_t(rows) * c.n_embd * 4);
    void* h = ws->get(kH, size_t(rows) * c.n_embd * 4);
    void* q = ws->get(kQ, size_t(rows) * c.q_dim() * 4);
    void* k = ws->get(kK, size_t(rows) * c.kv_dim() * 4);
    void* v = ws->get(kV, size_t(rows) * c.kv_dim() * 4);
    void* att = ws->get(kAtt, size_t(rows) * c.q_dim() * 4);
    void* gate = ws->get(kGate, size_t(rows) * c.n_ff * 4);
    void* up = ws->get(kUp, size_t(rows) * c.n_ff * 4);

    const TensorView X = rows_of(x, rows, c.n_embd), H = rows_of(h, rows, c.n_embd);
    const TensorView Q = rows_of(q, rows, c.q_dim()), K = rows_of(k, rows, c.kv_dim()), V = rows_of(v, rows, c.kv_dim());
    const TensorView A = rows_of(att, rows, c.q_dim()), G = rows_of(gate, rows, c.n_ff), U = rows_of(up, rows, c.n_ff);
    const float scale = 1.0f / std::sqrt(float(c.head_dim));

    auto reading = pool.reading();  // the pool arena must not move while kernels read it
    backend.embed(weights.token_embd, static_cast<const int32_t*>(token_buf), X);
    for (int l = 0; l < c.n_layers; ++l) {
      const LlamaLayer& w = weights.layers[size_t(l)];
      backend.rmsnorm(X, w.attn_norm, c.rms_eps, H);
      project_qkv(backend, c, weights, w, H, Q, K, V, pos);

      std::vector<SequenceAttention> attention;
      int max_n_q = 0, max_clusters = 0, max_members = 0;
      for (const Seq& sq : seqs) {
        Session& s = *sq.s;
        const TensorView Qs = rows_of(q, sq.n, c.q_dim(), sq.row), Ks = rows_of(k, sq.n, c.kv_dim(), sq.row);
        const TensorView Vs = rows_of(v, sq.n, c.kv_dim(), sq.row);
        if (s.capture_t0_ > 0) s.captured_[size_t(l)] = s.head_features(Qs.data, Ks.data, s.capture_t0_);
        if (s.pending(l)) {
          reading.unlock();  // choosing keys may allocate pages, and so grow (move) the pool
          s.cluster_if_ready(l, Qs, Ks, sq.pos0, sq.n);
          reading.lock();
        }
        s.upload_tables();

        const int table_stride = c.n_kv_heads * s.kv_.max_pages();
        const int32_t* k_table = static_cast<const int32_t*>(s.k_tables_->get()) + size_t(l) * table_stride;
        const int32_t* v_table = static_cast<const int32_t*>(s.v_tables_->get()) + size_t(l) * table_stride;
        KvStoreParams store;
        store.n = sq.n;
        store.n_heads = c.n_kv_heads;
        store.head_dim = c.head_dim;
        store.pos0 = sq.pos0;
        store.pool = pool.base();
        store.kv_dtype = pool.dtype();
        store.page_tokens = pool.page_tokens();
        store.max_pages = s.kv_.max_pages();
        store.src = Ks.as<float>();
        store.table = k_table;
        backend.store_kv(store);
        store.src = Vs.as<float>();
        store.table = v_table;
        backend.store_kv(store);

        const HeadClusters& hc = s.clusters_[size_t(l)];
        const int32_t* packed = static_cast<const int32_t*>(s.cluster_buffers_[size_t(l)]->get());
        SequenceAttention sa;
        sa.k_table = k_table;
        sa.v_table = v_table;
        sa.reps = packed;
        sa.offsets = packed + hc.count();
        sa.members = packed + 2 * hc.count() + 1;
        sa.q_row = sq.row;
        sa.n_q = sq.n;
        sa.pos0 = sq.pos0;
        sa.max_pages = s.kv_.max_pages();
        sa.n_clusters = hc.count();
        attention.push_back(sa);
        max_n_q = std::max(max_n_q, sq.n);
        max_clusters = std::max(max_clusters, hc.count());
        max_members = std::max(max_members, hc.max_members());
      }
      // Every sequence of the batch, each with its own pages and clusters, in one call.
      const size_t seq_bytes = attention.size() * sizeof(SequenceAttention);
      void* seq_buf = ws->get(kSequences, seq_bytes);
      backend.upload(seq_buf, attention.data(), seq_bytes);
      AttentionParams ap;
      ap.q = Q.as<float>();
      ap.out = A.as<float>();
      ap.n_heads = c.n_heads;
      ap.n_kv_heads = c.n_kv_heads;
      ap.head_dim = c.head_dim;
      ap.scale = scale;
      ap.pool = pool.base();
      ap.kv_dtype = pool.dtype();
      ap.page_tokens = pool.page_tokens();
      ap.seqs = static_cast<const SequenceAttention*>(seq_buf);
      ap.n_seqs = int(attention.size());
      ap.max_n_q = max_n_q;
      ap.max_clusters = max_clusters;
      ap.max_members = max_members;
      backend.attention(ap);

      backend.matmul(A, w.wo, H);
      backend.add(X, H);
      backend.rmsnorm(X, w.ffn_norm, c.rms_eps, H);
      backend.matmul(H, w.gate, G);
      backend.matmul(H, w.up, U);
      backend.swiglu(G, U);
      backend.matmul(G, w.down, H);
      backend.add(X, H);
    }

    // Logits only for the rows asked for: gather them, then one norm and one output product.
    int out_rows = 0;
    for (const Seq& sq : seqs) out_rows += sq.item->all_logits ? sq.n : 1;
    void* picked = ws->get(kPicked, size_t(out_rows) * c.n_embd * 4);
    int at = 0;
    for (const Seq& sq : seqs) {
      const int m = sq.item->all_logits ? sq.n : 1;
      backend.copy(static_cast<float*>(picked) + size_t(at) * c.n_embd,
                   static_cast<const float*>(x) + size_t(sq.row + sq.n - m) * c.n_embd, size_t(m) * c.n_embd * 4);
      at += m;
    }
    const TensorView normed = rows_of(h, out_rows, c.n_embd);
    backend.rmsnorm(rows_of(picked, out_rows, c.n_embd), weights.output_norm, c.rms_eps, normed);
    void* logits = ws->get(kLogits, size_t(out_rows) * c.n_vocab * 4);
    backend.matmul(normed, weights.output, rows_of(logits, out_rows, c.n_vocab));
    std::vector<float> host(size_t(out_rows) * c.n_vocab);
    backend.download(host.data(), logits, host.size() * sizeof(float));
    at = 0;
    for (const Seq& sq : seqs) {
      const int m = sq.item->all_logits ? sq.n : 1;
      sq.item->logits.assign(host.begin() + std::ptrdiff_t(size_t(at) * c.n_vocab),
                             host.begin() + std::ptrdiff_t(size_t(at + m) * c.n_vocab));
      at += m;
      sq.s->kv_.set_tokens(sq.pos0 + sq.n);
    }
  } catch (...) {
    for (const Seq& sq : seqs) sq.item->error = std::current_exception();
  }
}

}  // namespace chai
