// Random clustered-attention problems over a paged cache, their float64 reference, and a runner
// that drives any backend through the same pages. Shared by the CPU and CUDA tests and benches.
#pragma once
#include <algorithm>
#include <cmath>
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
  std::vector<int32_t> k_table, v_table;  // pages in a shuffled pool; K absent for unused KV heads
  int pool_pages = 0;
};

// How sharp the softmax is: queries scaled by q_scale (30: a few keys take almost all the weight),
// and the keys of tokens [boost_begin, boost_end) scaled by key_boost (chunks of split-KV decoding
// whose maxima differ by far more than e^80).
struct ProblemOptions {
  float q_scale = 1.0f;
  int boost_begin = 0, boost_end = 0;
  float key_boost = 1.0f;
  bool uneven_clusters = false;  // n_clusters - 1 clusters of one head, one cluster of all the others
};

inline AttentionProblem make_attention_problem(const AttentionShape& s, uint32_t seed, DType kv_dtype = DType::F32,
                                               const ProblemOptions& options = {}) {
  AttentionProblem p;
  p.shape = s;
  p.kv_dtype = kv_dtype;
  p.tokens = s.pos0 + s.n_q;
  p.max_pages = (p.tokens + s.page_tokens - 1) / s.page_tokens;
  p.q = random_nonzero(size_t(s.n_q) * s.n_heads * s.head_dim, seed, options.q_scale);
  p.keys = random_nonzero(size_t(p.tokens) * s.n_kv_heads * s.head_dim, seed + 1);
  const size_t kv_row = size_t(s.n_kv_heads) * s.head_dim;
  for (int t = options.boost_begin; t < std::min(options.boost_end, p.tokens); ++t)
    for (size_t e = 0; e < kv_row; ++e) p.keys[size_t(t) * kv_row + e] *= options.key_boost;
  p.values = random_nonzero(size_t(p.tokens) * s.n_kv_heads * s.head_dim, seed + 2);
  if (kv_dtype == DType::F16)  // what the cache will hold, so that the reference sees the same values
    for (auto* rows : {&p.keys, &p.values})
      for (float& x : *rows) x = f16_to_f32(f32_to_f16(x));

  // Random clusters (each non-empty), random representative inside each.
  std::mt19937 rng(seed + 3);
  std::vector<int> cluster_of(static_cast<size_t>(s.n_heads));
  for (int h = 0; h < s.n_heads; ++h)
    cluster_of[size_t(h)] = h < s.n_clusters ? h : options.uneven_clusters ? s.n_clusters - 1 : int(rng() % unsigned(s.n_clusters));
  std::shuffle(cluster_of.begin(), cluster_of.end(), rng);
  p.offsets.push_back(0);
  for (int c = 0; c < s.n_clusters; ++c) {
    std::vector<int32_t> members;
    for (int h = 0; h < s.n_heads; ++h)
      if (cluster_of[size_t(h)] == c) members.push_back(h);
    p.reps.push_back(members[rng() % members.size()]);
    p.members.insert(p.members.end(), members.begin(), members.end());
    p.offsets.push_back(int32_t(p.members.size()));
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

// out[i, h, :] = Σ_j softmax_j(q[i, rep(h)] · k[j, kv(rep(h))] · scale) v[j, kv(h)], j ≤ pos0 + i,
// over the keys whose K page exists (a missing K page masks its keys; a row with no key left is
// zeros, in every version and backend).
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
      std::vector<bool> visible(static_cast<size_t>(n_keys));
      double max = -INFINITY, sum = 0;
      for (int j = 0; j < n_keys; ++j) {
        visible[size_t(j)] = p.k_table[size_t(rep / group) * p.max_pages + size_t(j / s.page_tokens)] >= 0;
        if (!visible[size_t(j)]) continue;
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += double(p.q[i * qrow + size_t(rep) * hd + d]) * p.keys[j * kvrow + size_t(rep / group) * hd + d];
        w[size_t(j)] = dot * scale;
        max = std::max(max, w[size_t(j)]);
      }
      for (int j = 0; j < n_keys; ++j) sum += w[size_t(j)] = visible[size_t(j)] ? std::exp(w[size_t(j)] - max) : 0.0;
      for (int m = p.offsets[size_t(c)]; m < p.offsets[size_t(c) + 1]; ++m) {
        const int h = p.members[size_t(m)];
        for (int d = 0; d < hd; ++d) {
          double acc = 0;
          for (int j = 0; j < n_keys; ++j) acc += w[size_t(j)] * p.values[j * kvrow + size_t(h / group) * hd + d];
          out[i * qrow + size_t(h) * hd + d] = sum > 0 ? acc / sum : 0.0;
        }
      }
    }
  }
  return out;
}

// How a call is planned: the kernel version, and for versions 2 and 3 the keys per chunk (0: the
// planner's choice for this backend).
struct AttentionRun {
  int version = 1;
  int forced_chunk = 0;
  std::string name() const {
    return "v" + std::to_string(version) + (forced_chunk ? " chunk=" + std::to_string(forced_chunk) : std::string());
  }
};

// Stores every problem's keys and values through the backend's store_kv into one shared pool,
// then runs all of them as one batched attention call, planned as the engine plans it. The
// problems must agree on heads, head size and page size. Returns each problem's output.
inline std::vector<std::vector<float>> run_attention_batch(Backend& be, const std::vector<const AttentionProblem*>& problems,
                                                           float scale, const AttentionRun& run = {}) {
  const AttentionShape& s0 = problems[0]->shape;
  auto upload = [&](const void* data, size_t bytes) {
    auto b = std::make_unique<DeviceBuffer>(be, bytes);
    be.upload(b->get(), data, bytes);
    return b;
  };
  int pool_pages = 0, rows = 0;
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
    const PackedClusters packed =
        pack_clusters(p->reps, p->offsets, p->members, s.n_heads, s.n_kv_heads, s.head_dim, p->kv_dtype);
    keep.push_back(upload(packed.data.data(), packed.data.size() * 4));

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
    point_clusters(sa, packed, static_cast<const int32_t*>(keep.back()->get()));
    sa.q_row = rows;
    sa.n_q = s.n_q;
    sa.pos0 = s.pos0;
    sa.max_pages = p->max_pages;
    seqs.push_back(sa);
    q.insert(q.end(), p->q.begin(), p->q.end());
    rows += s.n_q;
  }
  AttentionParams a;
  a.version = run.version;
  a.n_heads = s0.n_heads;
  a.n_kv_heads = s0.n_kv_heads;
  a.head_dim = s0.head_dim;
  a.kv_dtype = problems[0]->kv_dtype;
  a.page_tokens = s0.page_tokens;
  plan_attention_call(seqs.data(), int(seqs.size()), be.attention_fill_blocks(a), run.forced_chunk, a);
  auto q_dev = upload(q.data(), q.size() * 4);
  std::vector<float> poisoned_out(q.size(), NAN);
  auto out = upload(poisoned_out.data(), poisoned_out.size() * 4);
  auto seq_dev = upload(seqs.data(), seqs.size() * sizeof(SequenceAttention));
  std::unique_ptr<DeviceBuffer> partials;
  if (a.partial_slots > 0) {
    std::vector<float> poison(partial_floats(a.partial_slots, s0.n_heads, s0.head_dim), NAN);
    partials = upload(poison.data(), poison.size() * 4);
    a.partials = static_cast<float*>(partials->get());
  }

  a.q = static_cast<const float*>(q_dev->get());
  a.out = static_cast<float*>(out->get());
  a.scale = scale;
  a.pool = pool->get();
  a.seqs = static_cast<const SequenceAttention*>(seq_dev->get());
  a.n_seqs = int(seqs.size());
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

inline std::vector<float> run_attention(Backend& be, const AttentionProblem& p, float scale, const AttentionRun& run = {}) {
  return run_attention_batch(be, {&p}, scale, run)[0];
}

// Sequences of one model (32 heads / 8 KV heads of 64; 8 / 2 on the simulator): prefill and decode
// rows of unequal lengths and clusterings (a ragged batch), for the batched call.
inline std::vector<AttentionShape> attention_batch_shapes(ShapeScale scale = ShapeScale::Full) {
  if (scale == ShapeScale::Simulator)
    return {{1, 150, 8, 2, 64, 16, 4}, {7, 0, 8, 2, 64, 16, 8}, {1, 0, 8, 2, 64, 16, 1},
            {33, 40, 8, 2, 64, 16, 3}, {1, 17, 8, 2, 64, 16, 2}, {70, 5, 8, 2, 64, 16, 8}};
  return {{1, 300, 32, 8, 64, 16, 4}, {7, 0, 32, 8, 64, 16, 32}, {1, 0, 32, 8, 64, 16, 1}, {33, 40, 32, 8, 64, 16, 8},
          {1, 17, 32, 8, 64, 16, 2}};
}

// Awkward on purpose: one token, GQA and MQA, odd page sizes, 1 and 128 heads, big clusters.
inline std::vector<AttentionShape> attention_shapes(ShapeScale scale = ShapeScale::Full) {
  if (scale == ShapeScale::Simulator)
    return {{1, 0, 1, 1, 8, 16, 1},   {1, 37, 8, 4, 8, 16, 8},  {13, 0, 8, 8, 64, 16, 3}, {5, 40, 8, 8, 128, 16, 4},
            {17, 20, 6, 3, 16, 7, 6}, {3, 70, 4, 1, 96, 32, 2}, {1, 129, 8, 2, 128, 16, 8}, {9, 0, 8, 8, 128, 16, 1},
            {130, 0, 4, 4, 8, 16, 4}};  // keys past the first tile of 128
  return {
      {1, 0, 1, 1, 8, 16, 1},       {1, 37, 8, 4, 8, 16, 8},      {13, 0, 8, 8, 64, 16, 3},
      {5, 100, 32, 32, 128, 16, 4}, {1, 300, 128, 128, 64, 16, 8}, {17, 20, 6, 3, 16, 7, 6},
      {3, 200, 4, 1, 96, 32, 2},    {1, 129, 32, 8, 128, 16, 32}, {9, 0, 32, 32, 128, 16, 1},
      {1100, 0, 16, 16, 8, 16, 16},  // the CPU takes queries in blocks here (score scratch bound)
  };
}

// One query each (split-KV decoding), awkward on purpose: one key, pages of one token, clusters
// of one, every head in one cluster (cut into several decode tasks where it exceeds a block),
// odd head counts, GQA and MQA, head sizes from 4 to 256 (with f32 and f16 caches, every lane
// count of decode_shape(): 1, 2, 4, 8, 16, 32 threads per row).
inline std::vector<AttentionShape> decode_shapes(ShapeScale scale = ShapeScale::Full) {
  if (scale == ShapeScale::Simulator)
    return {{1, 0, 1, 1, 8, 16, 1},      {1, 37, 8, 4, 8, 16, 8},   {1, 64, 7, 7, 16, 1, 3},  {1, 100, 8, 2, 128, 16, 8},
            {1, 40, 32, 32, 128, 16, 1}, {1, 60, 6, 3, 96, 7, 6},   {1, 90, 4, 1, 32, 32, 2}, {1, 45, 4, 4, 4, 16, 2},
            {1, 70, 8, 8, 256, 16, 1},   {1, 255, 4, 4, 32, 16, 2}};
  return {
      {1, 0, 1, 1, 8, 16, 1},        {1, 37, 8, 4, 8, 16, 8},      {1, 64, 7, 7, 16, 1, 3},
      {1, 129, 32, 8, 128, 16, 32},  {1, 300, 32, 32, 128, 16, 1}, {1, 200, 6, 3, 96, 7, 6},
      {1, 500, 4, 1, 64, 32, 2},     {1, 1000, 128, 128, 64, 16, 8}, {1, 70, 32, 32, 256, 16, 1},
      {1, 255, 32, 32, 128, 16, 4},  {1, 90, 4, 1, 32, 32, 2},     {1, 45, 4, 4, 4, 16, 2},
  };
}

// Version 3's own awkward decode cases beside decode_shapes(): uneven clusters (one of most heads
// and singletons, so that light tasks cover spans of chunks), every head in one cluster, GQA and
// MQA, page sizes that are and are not powers of two, key counts around the 32-key tile.
inline std::vector<AttentionShape> decode_v3_uneven_shapes(ShapeScale scale = ShapeScale::Full) {
  if (scale == ShapeScale::Simulator)
    return {{1, 100, 8, 8, 64, 16, 3}, {1, 64, 8, 2, 128, 7, 3}, {1, 95, 4, 1, 64, 32, 2}, {1, 31, 6, 6, 32, 8, 4}};
  return {{1, 1000, 32, 32, 128, 16, 4}, {1, 300, 32, 8, 128, 7, 5}, {1, 200, 8, 1, 64, 32, 3},
          {1, 31, 6, 6, 32, 8, 4},       {1, 513, 16, 16, 64, 1, 2}};
}

// The runs of an edge case for version 3: its version-2 runs (split-KV decoding with the same
// chunk sizes; prompts take version 3's prefill).
inline std::vector<AttentionRun> version3_runs(const std::vector<AttentionRun>& runs) {
  std::vector<AttentionRun> v3;
  for (const AttentionRun& run : runs)
    if (run.version == 2) v3.push_back({3, run.forced_chunk});
  return v3;
}

// Prompts for the tensor-core tiles of version 2 (f16 cache, head size 64 or 128): row counts
// around the 64-row tile and the 16-row warp tile, pages of one token, clusters of one and of
// every head (cut into slices), odd head counts, GQA and MQA, prompts after a cached context.
inline std::vector<AttentionShape> prefill_shapes(ShapeScale scale = ShapeScale::Full) {
  if (scale == ShapeScale::Simulator)
    return {{2, 0, 4, 4, 64, 16, 2},   {63, 0, 4, 4, 128, 16, 4},  {65, 10, 4, 2, 64, 1, 3}, {70, 0, 5, 5, 64, 7, 5},
            {40, 30, 8, 8, 128, 16, 1}, {80, 20, 8, 2, 128, 16, 8}, {17, 0, 4, 1, 64, 32, 2}};
  return {
      {2, 0, 4, 4, 64, 16, 2},      {63, 0, 8, 8, 128, 16, 8},    {65, 10, 8, 4, 64, 1, 3},
      {130, 0, 7, 7, 64, 7, 3},     {77, 300, 32, 32, 128, 16, 1}, {200, 50, 32, 8, 128, 16, 32},
      {129, 0, 4, 1, 64, 32, 2},    {17, 0, 32, 32, 128, 16, 4},
  };
}

// Prompts for version 3's tiles (f16 cache, head size 64 or 128; 32 rows and 32 keys per tile
// for CHAI, 64 rows for full attention): 7, 33 and 70 tokens, prompts after cached tokens, pages
// of 1, 7 and 16 tokens, GQA and MQA, clusters of one head (full attention), clusters larger than
// one block's members (8 of 64 dimensions, 4 of 128: scores once per pass) and one cluster of all
// heads. One-token prompts are decoded (split-KV): the mixed batches cover them.
inline std::vector<AttentionShape> prefill_v3_shapes(ShapeScale scale = ShapeScale::Full) {
  if (scale == ShapeScale::Simulator)
    return {{7, 0, 4, 4, 64, 16, 4},    {33, 0, 8, 2, 128, 16, 2},  {70, 5, 4, 1, 64, 7, 4},
            {70, 40, 10, 5, 64, 16, 1}, {40, 30, 8, 8, 128, 16, 1}, {65, 10, 4, 2, 128, 1, 4}};
  return {
      {7, 0, 4, 4, 64, 16, 4},        {33, 0, 8, 2, 128, 16, 2},      {70, 5, 4, 1, 64, 7, 4},
      {70, 40, 10, 5, 64, 16, 1},     {40, 30, 8, 8, 128, 16, 1},     {65, 10, 4, 2, 128, 1, 4},
      {130, 0, 7, 7, 64, 7, 3},       {77, 300, 32, 32, 128, 16, 1},  {200, 50, 32, 8, 128, 16, 32},
      {129, 0, 4, 1, 64, 32, 2},      {257, 100, 32, 8, 64, 16, 4},   {33, 500, 32, 32, 128, 16, 8},
  };
}

// Unallocates page `page` of KV head 0's V (table entry -1) and zeroes the values it would hold,
// which is what a backend that never reads a missing page must compute.
inline void drop_value_page(AttentionProblem& p, int page) {
  const AttentionShape& s = p.shape;
  p.v_table[size_t(page)] = -1;
  for (int t = page * s.page_tokens; t < std::min(p.tokens, (page + 1) * s.page_tokens); ++t)
    std::fill_n(p.values.begin() + std::ptrdiff_t(size_t(t) * s.n_kv_heads * s.head_dim), s.head_dim, 0.0f);
}

// Unallocates pages [first, last) of K for KV head `kv_head` (table entries -1): their keys are
// masked for every representative reading that head (attention_ref skips them too).
inline void drop_key_pages(AttentionProblem& p, int kv_head, int first, int last) {
  for (int page = first; page < std::min(last, p.max_pages); ++page) p.k_table[size_t(kv_head) * p.max_pages + page] = -1;
}

// The edge cases of softmax and paging, the same for every backend and version: each problem is
// run with every AttentionRun listed (version 1, version 2 planned by the backend or with a
// forced chunk size that puts the edge inside one chunk, and version 3 for prompts).
struct AttentionEdgeCase {
  std::string name;
  AttentionProblem problem;
  std::vector<AttentionRun> runs;
};

inline std::vector<AttentionEdgeCase> attention_edge_cases(DType kv, uint32_t seed) {
  std::vector<AttentionEdgeCase> cases;
  const std::vector<AttentionRun> decode_runs = {{1, 0}, {2, 0}, {2, 16}, {2, 64}};
  const std::vector<AttentionRun> prefill_runs = {{1, 0}, {2, 0}, {3, 0}};
  auto add = [&](std::string name, AttentionShape shape, std::vector<AttentionRun> runs, ProblemOptions options = {}) {
    cases.push_back({std::move(name), make_attention_problem(shape, seed++, kv, options), std::move(runs)});
    return &cases.back().problem;
  };
  auto rep_kv_head = [](const AttentionProblem& p, int c) { return p.reps[size_t(c)] / (p.shape.n_heads / p.shape.n_kv_heads); };
  add("sharp softmax (q x 30), decode", {1, 200, 8, 4, 64, 16, 2}, decode_runs, {30.0f});
  add("sharp softmax (q x 30), prompt", {70, 10, 4, 4, 64, 16, 2}, prefill_runs, {30.0f});
  // Keys 64..127 scaled by 8: with chunks of 64, one chunk's maximum is about e^170 above the
  // others' (past f32's e^88: a merge rescaled to the wrong maximum overflows).
  add("split-KV chunks with very different maxima", {1, 191, 4, 4, 64, 16, 2}, {{1, 0}, {2, 64}, {2, 7}},
      {30.0f, 64, 128, 8.0f});
  {  // K pages 4..7 (tokens 64..127) of every KV head missing: with chunks of 64, chunk 1 has no key.
    AttentionProblem* p = add("a chunk made only of missing K pages", {1, 150, 4, 4, 64, 16, 2}, decode_runs);
    for (int g = 0; g < p->shape.n_kv_heads; ++g) drop_key_pages(*p, g, 4, 8);
  }
  {  // No K page of the first representative's head: its members' rows see no key at all.
    AttentionProblem* p = add("a fully masked row, decode", {1, 40, 4, 4, 64, 16, 2}, decode_runs);
    drop_key_pages(*p, rep_kv_head(*p, 0), 0, p->max_pages);
  }
  {  // K page 0 of the first representative's head missing: prompt rows 0..15 see no key, later
     // rows part of their keys; and a V page missing (its values count as zeros).
    AttentionProblem* p = add("fully masked prompt rows, a missing V page", {70, 0, 4, 4, 64, 16, 2}, prefill_runs);
    drop_key_pages(*p, rep_kv_head(*p, 0), 0, 1);
    drop_value_page(*p, 2);
  }
  {  // K pages 1..2 (tokens 16..47) of the first representative's head missing after 40 cached
     // tokens: key tiles below the diagonal have absent keys (masked though not diagonal). Not
     // sharp: an absent key read as a zero score must carry visible weight if it leaks in.
    AttentionProblem* p = add("missing K pages below the diagonal", {40, 40, 4, 4, 128, 16, 2}, prefill_runs);
    drop_key_pages(*p, rep_kv_head(*p, 0), 1, 3);
  }
  {
    AttentionProblem* p = add("a missing V page, decode", {1, 100, 8, 4, 64, 16, 2}, decode_runs);
    drop_value_page(*p, 2);
  }
  return cases;
}

// Relative error allowed between a GPU version and the f32 CPU twin: rounding of f32 sums in
// another order, or f16 rounding of Q and P where version 2 or 3 runs a prompt on tensor cores.
inline double attention_tolerance(const AttentionShape& s, DType kv, int version) {
  return version >= 2 && s.n_q > 1 && tensor_core_prefill(s.head_dim, kv) ? 2e-3 : 1e-5;
}

// Keys per chunk that put chunk boundaries in awkward places for a sequence of n_keys keys:
// one key per chunk, odd sizes, one short of the whole, the whole, and the planner's choice (on
// the simulator, one key per chunk only for short sequences, and no whole tile of 64).
inline std::vector<int> awkward_chunks(int n_keys, ShapeScale scale = ShapeScale::Full) {
  std::vector<int> chunks = {0, 7, std::max(1, n_keys - 1), n_keys};
  if (scale == ShapeScale::Full || n_keys <= 64) chunks.push_back(1);
  if (scale == ShapeScale::Full) chunks.push_back(64);
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  return chunks;
}

}  // namespace chai::testing
