#include "session.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace chai {
namespace {

TensorView rows_of(const DeviceBuffer& buffer, int64_t rows, int64_t cols, int64_t first_row = 0) {
  return TensorView{static_cast<float*>(buffer.get()) + first_row * cols, DType::F32, rows, cols};
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

int HeadClusters::max_members() const {
  int largest = 0;
  for (size_t c = 0; c + 1 < offsets.size(); ++c) largest = std::max(largest, offsets[c + 1] - offsets[c]);
  return largest;
}

Session::Session(const LlamaConfig& config, const LlamaWeights& weights, Backend& backend, KvPool& pool, int max_tokens)
    : config_(config),
      weights_(weights),
      backend_(backend),
      pool_(pool),
      kv_(pool, config.n_layers, config.n_kv_heads, max_tokens) {
  require(max_tokens > 0, ErrorCode::InvalidArgument, "maxTokens must be positive");
  require(pool.head_dim() == config.head_dim, ErrorCode::Internal, "KV pool head size differs from the model's");
  for (int l = 0; l < config.n_layers; ++l) {
    clusters_.push_back(HeadClusters::identity(config.n_heads));
    const HeadClusters& c = clusters_.back();
    std::vector<int32_t> packed(c.reps);
    packed.insert(packed.end(), c.offsets.begin(), c.offsets.end());
    packed.insert(packed.end(), c.members.begin(), c.members.end());
    auto buffer = std::make_unique<DeviceBuffer>(backend, packed.size() * sizeof(int32_t));
    backend.upload(buffer->get(), packed.data(), buffer->bytes());
    cluster_buffers_.push_back(std::move(buffer));
  }
}

void Session::upload_tables() {
  if (uploaded_version_ == kv_.version()) return;
  const size_t bytes = kv_.k_tables().size() * sizeof(int32_t);
  if (!k_tables_) {
    k_tables_ = std::make_unique<DeviceBuffer>(backend_, bytes);
    v_tables_ = std::make_unique<DeviceBuffer>(backend_, bytes);
  }
  backend_.upload(k_tables_->get(), kv_.k_tables().data(), bytes);
  backend_.upload(v_tables_->get(), kv_.v_tables().data(), bytes);
  uploaded_version_ = kv_.version();
}

void Session::rewind(int n_tokens) {
  require(n_tokens >= 0 && n_tokens <= kv_.n_tokens(), ErrorCode::InvalidArgument,
          "cannot rewind to " + std::to_string(n_tokens) + " tokens: the session holds " + std::to_string(kv_.n_tokens()));
  kv_.set_tokens(n_tokens);
}

std::vector<float> Session::evaluate(const std::vector<int32_t>& tokens, bool all_logits) {
  const LlamaConfig& c = config_;
  const int n = int(tokens.size());
  require(n > 0, ErrorCode::InvalidArgument, "evaluate needs at least one token");
  for (int32_t t : tokens)
    require(t >= 0 && t < c.n_vocab, ErrorCode::InvalidArgument,
            "token id " + std::to_string(t) + " is outside the vocabulary (0.." + std::to_string(c.n_vocab - 1) + ")");
  const int pos0 = kv_.n_tokens();
  kv_.reserve(pos0 + n);  // ContextOverflow before anything changes
  upload_tables();

  DeviceBuffer token_buf(backend_, size_t(n) * sizeof(int32_t));
  backend_.upload(token_buf.get(), tokens.data(), token_buf.bytes());
  DeviceBuffer x(backend_, size_t(n) * c.n_embd * 4), h(backend_, size_t(n) * c.n_embd * 4),
      q(backend_, size_t(n) * c.q_dim() * 4), k(backend_, size_t(n) * c.kv_dim() * 4),
      v(backend_, size_t(n) * c.kv_dim() * 4), att(backend_, size_t(n) * c.q_dim() * 4),
      gate(backend_, size_t(n) * c.n_ff * 4), up(backend_, size_t(n) * c.n_ff * 4);

  const TensorView X = rows_of(x, n, c.n_embd), H = rows_of(h, n, c.n_embd);
  const TensorView Q = rows_of(q, n, c.q_dim()), K = rows_of(k, n, c.kv_dim()), V = rows_of(v, n, c.kv_dim());
  const TensorView A = rows_of(att, n, c.q_dim()), G = rows_of(gate, n, c.n_ff), U = rows_of(up, n, c.n_ff);
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  const int table_stride = c.n_kv_heads * kv_.max_pages();

  auto reading = pool_.reading();  // the pool arena must not move while kernels read it
  backend_.embed(weights_.token_embd, static_cast<const int32_t*>(token_buf.get()), X);
  for (int l = 0; l < c.n_layers; ++l) {
    const LlamaLayer& w = weights_.layers[size_t(l)];
    backend_.rmsnorm(X, w.attn_norm, c.rms_eps, H);
    backend_.matmul(H, w.wq, Q);
    backend_.matmul(H, w.wk, K);
    backend_.matmul(H, w.wv, V);
    backend_.rope(Q, c.head_dim, pos0, c.rope_base);
    backend_.rope(K, c.head_dim, pos0, c.rope_base);

    const int32_t* k_table = static_cast<const int32_t*>(k_tables_->get()) + size_t(l) * table_stride;
    const int32_t* v_table = static_cast<const int32_t*>(v_tables_->get()) + size_t(l) * table_stride;
    KvStoreParams store;
    store.n = n;
    store.n_heads = c.n_kv_heads;
    store.head_dim = c.head_dim;
    store.pos0 = pos0;
    store.pool = pool_.base();
    store.page_tokens = pool_.page_tokens();
    store.max_pages = kv_.max_pages();
    store.src = K.as<float>();
    store.table = k_table;
    backend_.store_kv(store);
    store.src = V.as<float>();
    store.table = v_table;
    backend_.store_kv(store);

    const HeadClusters& hc = clusters_[size_t(l)];
    const int32_t* packed = static_cast<const int32_t*>(cluster_buffers_[size_t(l)]->get());
    AttentionParams ap;
    ap.q = Q.as<float>();
    ap.out = A.as<float>();
    ap.n_q = n;
    ap.n_heads = c.n_heads;
    ap.n_kv_heads = c.n_kv_heads;
    ap.head_dim = c.head_dim;
    ap.pos0 = pos0;
    ap.scale = scale;
    ap.pool = pool_.base();
    ap.page_tokens = pool_.page_tokens();
    ap.max_pages = kv_.max_pages();
    ap.k_table = k_table;
    ap.v_table = v_table;
    ap.n_clusters = hc.count();
    ap.reps = packed;
    ap.offsets = packed + hc.count();
    ap.members = packed + 2 * hc.count() + 1;
    ap.max_members = hc.max_members();
    backend_.attention(ap);

    backend_.matmul(A, w.wo, H);
    backend_.add(X, H);
    backend_.rmsnorm(X, w.ffn_norm, c.rms_eps, H);
    backend_.matmul(H, w.gate, G);
    backend_.matmul(H, w.up, U);
    backend_.swiglu(G, U);
    backend_.matmul(G, w.down, H);
    backend_.add(X, H);
  }
  const int out_rows = all_logits ? n : 1;
  const TensorView last = rows_of(x, out_rows, c.n_embd, n - out_rows);
  const TensorView normed = rows_of(h, out_rows, c.n_embd);
  backend_.rmsnorm(last, weights_.output_norm, c.rms_eps, normed);
  DeviceBuffer logits(backend_, size_t(out_rows) * c.n_vocab * 4);
  backend_.matmul(normed, weights_.output, rows_of(logits, out_rows, c.n_vocab));
  std::vector<float> out(size_t(out_rows) * c.n_vocab);
  backend_.download(out.data(), logits.get(), logits.bytes());
  kv_.set_tokens(pos0 + n);
  return out;
}

}  // namespace chai
