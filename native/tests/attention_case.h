// Random clustered-attention problems over a paged cache, their float64 reference, and a runner
// that drives any backend through the same pages. Shared by the CPU and CUDA tests and benches.
#pragma once
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/backend.h"
#include "testing.h"

namespace chai::testing {

struct AttentionShape {
  int n_q, pos0, n_heads, n_kv_heads, head_dim, page_tokens, n_clusters;
  std::string name() const {
    return "q=" + std::to_string(n_q) + " pos0=" + std::to_string(pos0) + " heads=" + std::to_string(n_heads) + "/" +
           std::to_string(n_kv_heads) + " hd=" + std::to_string(head_dim) + " page=" + std::to_string(page_tokens) +
           " clusters=" + std::to_string(n_clusters);
  }
};

struct AttentionProblem {
  AttentionShape shape;
  DType kv_dtype = DType::F32;  // keys and values below are already rounded to it
  int tokens = 0, max_pages = 0;
  std::vector<float> q, keys, values;  // keys/values: [tokens, n_kv_heads * head_dim]
  std::vector<int32_t> reps, offsets, members;
  int max_members = 0;
  std::vector<int32_t> k_table, v_table;  // pages in a shuffled pool; K absent for unused KV heads
  int pool_pages = 0;
};

inline AttentionProblem make_attention_problem(const AttentionShape& s, uint32_t seed, DType kv_dtype = DType::F32) {
  AttentionProblem p;
  p.shape = s;
  p.kv_dtype = kv_dtype;
  p.tokens = s.pos0 + s.n_q;
  p.max_pages = (p.tokens + s.page_tokens - 1) / s.page_tokens;
  p.q = random_nonzero(size_t(s.n_q) * s.n_heads * s.head_dim, seed);
  p.keys = random_nonzero(size_t(p.tokens) * s.n_kv_heads * s.head_dim, seed + 1);
  p.values = random_nonzero(size_t(p.tokens) * s.n_kv_heads * s.head_dim, seed + 2);
  if (kv_dtype == DType::F16)  // what the cache will hold, so that the reference sees the same values
    for (auto* rows : {&p.keys, &p.values})
      for (float& x : *rows) x = f16_to_f32(f32_to_f16(x));

  // Random clusters (each non-empty), random representative inside each.
  std::mt19937 rng(seed + 3);
  std::vector<int> cluster_of(static_cast<size_t>(s.n_heads));
  for (int h = 0; h < s.n_heads; ++h) cluster_of[size_t(h)] = h < s.n_clusters ? h : int(rng() % unsigned(s.n_clusters));
  std::shuffle(cluster_of.begin(), cluster_of.end(), rng);
  p.offsets.push_back(0);
  for (int c = 0; c < s.n_clusters; ++c) {
    std::vector<int32_t> members;
    for (int h = 0; h < s.n_heads; ++h)
      if (cluster_of[size_t(h)] == c) members.push_back(h);
    p.reps.push_back(members[rng() % members.size()]);
    p.members.insert(p.members.end(), members.begin(), members.end());
    p.offsets.push_back(int32_t(p.members.size()));
    p.max_members = std::max(p.max_members, int(members.size()));
  }

  // Pages: V for every KV head, K only for KV heads some representative reads.
  const int group = s.n_heads / s.n_kv_heads;
  std::vector<bool> k_used(static_cast<size_t>(s.n_kv_heads), false);
  for (int32_t r : p.reps) k_used[size_t(r / group)] = true;
  p.k_table.assign(size_t(s.n_kv_heads) * p.max_pages, -1);
  p.v_table.assign(size_t(s.n_kv_heads) * p.max_pages, -1);
  std::vector<int32_t*> slots;
  for (int g = 0; g < s.n_kv_heads; ++g)
    for (int pg = 0; pg < p.max_pages; ++pg) {
      slots.push_back(&p.v_table[size_t(g) * p.max_pages + pg]);
      if (k_used[size_t(g)]) slots.push_back(&p.k_table[size_t(g) * p.max_pages + pg]);
    }
  p.pool_pages = int(slots.size()) + 3;  // a few pages nobody uses
  std::vector<int32_t> ids(static_cast<size_t>(p.pool_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  for (size_t i = 0; i < slots.size(); ++i) *slots[i] = ids[i];
  return p;
}

// out[i, h, :] = Σ_j softmax_j(q[i, rep(h)] · k[j, kv(rep(h))] · scale) v[j, kv(h)], j ≤ pos0 + i.
inline std::vector<double> attention_ref(const AttentionProblem& p, float scale) {
  const AttentionShape& s = p.shape;
  const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  const size_t qrow = size_t(s.n_heads) * hd, kvrow = size_t(s.n_kv_heads) * hd;
  std::vector<double> out(p.q.size());
  for (int c = 0; c < s.n_clusters; ++c) {
    const int rep = p.reps[size_t(c)];
    for (int i = 0; i < s.n_q; ++i) {
      const int n_keys = s.pos0 + i + 1;
      std::vector<double> w(static_cast<size_t>(n_keys));
      double max = -1e300, sum = 0;
      for (int j = 0; j < n_keys; ++j) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += double(p.q[i * qrow + size_t(rep) * hd + d]) * p.keys[j * kvrow + size_t(rep / group) * hd + d];
        w[size_t(j)] = dot * scale;
        max = std::max(max, w[size_t(j)]);
      }
      for (auto& x : w) sum += x = std::exp(x - max);
      for (int m = p.offsets[size_t(c)]; m < p.offsets[size_t(c) + 1]; ++m) {
        const int h = p.members[size_t(m)];
        for (int d = 0; d < hd; ++d) {
          double acc = 0;
          for (int j = 0; j < n_keys; ++j) acc += w[size_t(j)] * p.values[j * kvrow + size_t(h / group) * hd + d];
          out[i * qrow + size_t(h) * hd + d] = acc / sum;
        }
      }
    }
  }
  return out;
}

// Stores every problem's keys and values through the backend's store_kv into one shared pool,
// then runs all of them as one batched attention call. The problems must agree on heads, head
// size and page size. Returns each problem's output.
inline std::vector<std::vector<float>> run_attention_batch(Backend& be, const std::vector<const AttentionProblem*>& problems,
                                                           float scale) {
  const AttentionShape& s0 = problems[0]->shape;
  auto upload = [&](const void* data, size_t bytes) {
    auto b = std::make_unique<DeviceBuffer>(be, bytes);
    be.upload(b->get(), data, bytes);
    return b;
  };
  int pool_pages = 0, rows = 0, max_n_q = 0, max_clusters = 0, max_members = 0;
  for (const AttentionProblem* p : problems) pool_pages += p->pool_pages;
  // Unwritten slots would show: 0xFF bytes are NaN in f32 and in f16.
  const size_t page_bytes = size_t(s0.page_tokens) * dtype_row_bytes(problems[0]->kv_dtype, s0.head_dim);
  std::vector<uint8_t> poison(size_t(pool_pages) * page_bytes, 0xFF);
  auto pool = upload(poison.data(), poison.size());
  std::vector<std::unique_ptr<DeviceBuffer>> keep;
  std::vector<float> q;
  std::vector<SequenceAttention> seqs;
  int page_base = 0;
  for (const AttentionProblem* p : problems) {
    const AttentionShape& s = p->shape;
    // This problem's pages sit after the previous problems' pages in the shared pool.
    std::vector<int32_t> k_table(p->k_table), v_table(p->v_table);
    for (auto* table : {&k_table, &v_table})
      for (auto& id : *table)
        if (id >= 0) id += page_base;
    page_base += p->pool_pages;
    auto keys = upload(p->keys.data(), p->keys.size() * 4), values = upload(p->values.data(), p->values.size() * 4);
    keep.push_back(upload(k_table.data(), k_table.size() * 4));
    const int32_t* k_dev = static_cast<const int32_t*>(keep.back()->get());
    keep.push_back(upload(v_table.data(), v_table.size() * 4));
    const int32_t* v_dev = static_cast<const int32_t*>(keep.back()->get());
    std::vector<int32_t> csr(p->reps);
    csr.insert(csr.end(), p->offsets.begin(), p->offsets.end());
    csr.insert(csr.end(), p->members.begin(), p->members.end());
    keep.push_back(upload(csr.data(), csr.size() * 4));
    const int32_t* csr_dev = static_cast<const int32_t*>(keep.back()->get());

    KvStoreParams st;
    st.n = p->tokens;
    st.n_heads = s.n_kv_heads;
    st.head_dim = s.head_dim;
    st.pool = pool->get();
    st.kv_dtype = p->kv_dtype;
    st.page_tokens = s.page_tokens;
    st.max_pages = p->max_pages;
    st.src = static_cast<const float*>(keys->get());
    st.table = k_dev;
    be.store_kv(st);
    st.src = static_cast<const float*>(values->get());
    st.table = v_dev;
    be.store_kv(st);

    SequenceAttention sa;
    sa.k_table = k_dev;
    sa.v_table = v_dev;
    sa.reps = csr_dev;
    sa.offsets = csr_dev + s.n_clusters;
    sa.members = csr_dev + 2 * s.n_clusters + 1;
    sa.q_row = rows;
    sa.n_q = s.n_q;
    sa.pos0 = s.pos0;
    sa.max_pages = p->max_pages;
    sa.n_clusters = s.n_clusters;
    seqs.push_back(sa);
    q.insert(q.end(), p->q.begin(), p->q.end());
    rows += s.n_q;
    max_n_q = std::max(max_n_q, s.n_q);
    max_clusters = std::max(max_clusters, s.n_clusters);
    max_members = std::max(max_members, p->max_members);
  }
  auto q_dev = upload(q.data(), q.size() * 4);
  std::vector<float> poisoned_out(q.size(), NAN);
  auto out = upload(poisoned_out.data(), poisoned_out.size() * 4);
  auto seq_dev = upload(seqs.data(), seqs.size() * sizeof(SequenceAttention));

  AttentionParams a;
  a.q = static_cast<const float*>(q_dev->get());
  a.out = static_cast<float*>(out->get());
  a.n_heads = s0.n_heads;
  a.n_kv_heads = s0.n_kv_heads;
  a.head_dim = s0.head_dim;
  a.scale = scale;
  a.pool = pool->get();
  a.kv_dtype = problems[0]->kv_dtype;
  a.page_tokens = s0.page_tokens;
  a.seqs = static_cast<const SequenceAttention*>(seq_dev->get());
  a.n_seqs = int(seqs.size());
  a.max_n_q = max_n_q;
  a.max_clusters = max_clusters;
  a.max_members = max_members;
  be.attention(a);
  std::vector<float> all(q.size());
  be.download(all.data(), out->get(), out->bytes());
  std::vector<std::vector<float>> results;
  size_t at = 0;
  for (const AttentionProblem* p : problems) {
    results.emplace_back(all.begin() + std::ptrdiff_t(at), all.begin() + std::ptrdiff_t(at + p->q.size()));
    at += p->q.size();
  }
  return results;
}

inline std::vector<float> run_attention(Backend& be, const AttentionProblem& p, float scale) {
  return run_attention_batch(be, {&p}, scale)[0];
}

// Sequences of one model (32 heads / 8 KV heads of 64): prefill and decode rows of unequal
// lengths and clusterings, for the batched call.
inline const std::vector<AttentionShape>& attention_batch_shapes() {
  static const std::vector<AttentionShape> shapes = {
      {1, 300, 32, 8, 64, 16, 4}, {7, 0, 32, 8, 64, 16, 32}, {1, 0, 32, 8, 64, 16, 1}, {33, 40, 32, 8, 64, 16, 8}, {1, 17, 32, 8, 64, 16, 2},
  };
  return shapes;
}

// Awkward on purpose: one token, GQA and MQA, odd page sizes, 1 and 128 heads, big clusters.
inline const std::vector<AttentionShape>& attention_shapes() {
  static const std::vector<AttentionShape> shapes = {
      {1, 0, 1, 1, 8, 16, 1},       {1, 37, 8, 4, 8, 16, 8},      {13, 0, 8, 8, 64, 16, 3},
      {5, 100, 32, 32, 128, 16, 4}, {1, 300, 128, 128, 64, 16, 8}, {17, 20, 6, 3, 16, 7, 6},
      {3, 200, 4, 1, 96, 32, 2},    {1, 129, 32, 8, 128, 16, 32}, {9, 0, 32, 32, 128, 16, 1},
      {1100, 0, 16, 16, 8, 16, 16},  // the CPU takes queries in blocks here (score scratch bound)
  };
  return shapes;
}

}  // namespace chai::testing
