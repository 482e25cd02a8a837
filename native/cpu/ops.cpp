#include "ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/error.h"

#include "gemm.h"
#include "packed_quant.h"
#include "quant_dot.h"
#include "simd.h"

namespace chai::cpu {
namespace {

// A tile of output: kTileW weight rows against kTileX activation rows, so that a block of
// weights is read from memory once and reused from cache for many tokens during prefill.
constexpr int64_t kTileW = 16;
constexpr int64_t kTileX = 32;

// row_stride: WeightT elements per weight row (k, or k / 32 blocks for Q8_0), x_stride: XT elements
// per row of x (k floats, or the bytes of a quantized activation row). Rows of x go four at
// a time against each weight row (each weight loaded once for four tokens), the rest one by one.
// (Four weight rows against one token was tried for decoding: faster on cache-resident weights,
// slower from DRAM on one thread on an AMD EPYC, so decoding streams one weight row at a time here.
// On an Ice Lake Xeon four rows side by side read 1.6x faster: gemm.cpp's AVX-512 decoding form for
// float weights does that.)
template <typename XT, typename WeightT, typename Dot, typename Dot4x>
void matmul_tiles(ThreadPool& pool, const XT* x, int64_t x_stride, const WeightT* w, float* y, int64_t n, int64_t m,
                  int64_t k, int64_t row_stride, Dot dot, Dot4x dot4x) {
  const int64_t tiles_w = (m + kTileW - 1) / kTileW;
  const int64_t tiles_x = (n + kTileX - 1) / kTileX;
  // Below about 32k multiply-adds, handing work to other threads costs more than it saves.
  const int64_t grain = n * m * k < (int64_t(1) << 15) ? tiles_w * tiles_x : 1;
  pool.parallel_for(tiles_w * tiles_x, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = (t % tiles_w) * kTileW, i0 = (t / tiles_w) * kTileX;
      const int64_t j1 = std::min(m, j0 + kTileW), i1 = std::min(n, i0 + kTileX);
      int64_t i = i0;
      for (; i + 4 <= i1; i += 4)
        for (int64_t j = j0; j < j1; ++j) {
          float out[4];
          dot4x(x + i * x_stride, x_stride, w + j * row_stride, k, out);
          for (int r = 0; r < 4; ++r) y[(i + r) * m + j] = out[r];
        }
      for (; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) y[i * m + j] = dot(x + i * x_stride, w + j * row_stride, k);
    }
  });
}

// Q4_0 .. IQ4_XS: each row of x is quantized to 8-bit blocks once (as llama.cpp does), then the
// tiles run integer dot products against the packed weight rows.
void matmul_quantized(ThreadPool& pool, const TensorView& x, const TensorView& w, const TensorView& y) {
  const int64_t n = x.rows, m = w.rows, k = x.cols;
  const size_t w_row = dtype_row_bytes(w.dtype, k);  // throws unless k holds whole blocks
  const size_t x_row = activation_row_bytes(w.dtype, k);
  // Reused across calls: one forward pass must not allocate per matmul.
  thread_local std::vector<uint8_t> quantized;
  if (quantized.size() < x_row * size_t(n)) quantized.resize(x_row * size_t(n));
  uint8_t* xq = quantized.data();
  pool.parallel_for(n, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) quantize_activation_row(w.dtype, x.as<float>() + i * k, xq + size_t(i) * x_row, k);
  });
  if (w.packed != nullptr) return matmul_packed_quant(pool, xq, int64_t(x_row), w, y.as<float>(), n);
  const QuantDotKernels& q = quant_dot_kernels(w.dtype, simd_level());
  matmul_tiles(pool, static_cast<const uint8_t*>(xq), int64_t(x_row), w.as<uint8_t>(), y.as<float>(), n, m, k,
               int64_t(w_row), q.dot, q.dot4x);
}

}  // namespace

void matmul(ThreadPool& pool, const TensorView& x, const TensorView& w, const TensorView& y) {
  const VectorKernels& dot = vector_kernels();
  const int64_t n = x.rows, m = w.rows, k = x.cols;
  const float* xf = x.as<float>();
  // With AVX-512, float weights go through the cache-blocked GEMM and its decoding form (same
  // results bit for bit as the dot kernels below).
  const bool float_weights = w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16;
  if (float_weights && gemm_available(simd_level()))
    return gemm_float_weights(pool, xf, w.data, w.dtype, y.as<float>(), n, m, k);
  switch (w.dtype) {
    case DType::F32:
      return matmul_tiles(pool, xf, k, w.as<float>(), y.as<float>(), n, m, k, k, dot.f32, dot.dot4x_f32);
    case DType::F16:
      return matmul_tiles(pool, xf, k, w.as<uint16_t>(), y.as<float>(), n, m, k, k, dot.f16, dot.dot4x_f16);
    case DType::BF16:
      return matmul_tiles(pool, xf, k, w.as<uint16_t>(), y.as<float>(), n, m, k, k, dot.bf16, dot.dot4x_bf16);
    case DType::Q8_0:
      return matmul_tiles(pool, xf, k, w.as<BlockQ8_0>(), y.as<float>(), n, m, k, k / kQ8Block, dot.q8_0, dot.dot4x_q8_0);
    default: return matmul_quantized(pool, x, w, y);
  }
}

void rmsnorm(ThreadPool& pool, const TensorView& x, const TensorView& weight, float eps, const TensorView& y) {
  const int64_t d = x.cols;
  const float* g = weight.as<float>();
  pool.parallel_for(x.rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* xi = x.as<float>() + i * d;
      float* yi = y.as<float>() + i * d;
      double sum = 0;  // double, as llama.cpp sums squares
      for (int64_t c = 0; c < d; ++c) sum += double(xi[c]) * xi[c];
      const float scale = float(1.0 / std::sqrt(sum / double(d) + eps));
      for (int64_t c = 0; c < d; ++c) yi[c] = xi[c] * scale * g[c];
    }
  });
}

void softmax_rows(ThreadPool& pool, const TensorView& x) {
  const int64_t d = x.cols;
  pool.parallel_for(x.rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = x.as<float>() + i * d;
      const float max = *std::max_element(row, row + d);
      double sum = 0;
      for (int64_t c = 0; c < d; ++c) {
        row[c] = std::exp(row[c] - max);
        sum += row[c];
      }
      const float inv = float(1.0 / sum);
      for (int64_t c = 0; c < d; ++c) row[c] *= inv;
    }
  });
}

void embed(ThreadPool& pool, const TensorView& table, const int32_t* tokens, const TensorView& out) {
  const size_t row_bytes = dtype_row_bytes(table.dtype, table.cols);
  for (int64_t i = 0; i < out.rows; ++i)
    CHAI_REQUIRE(tokens[i] >= 0 && tokens[i] < table.rows, ErrorCode::InvalidArgument,
            "token id " + std::to_string(tokens[i]) + " is outside the vocabulary (0.." + std::to_string(table.rows - 1) + ")");
  pool.parallel_for(out.rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      dequantize_row(table.dtype, table.as<const uint8_t>() + size_t(tokens[i]) * row_bytes,
                     out.as<float>() + i * out.cols, out.cols);
  });
}

void rope(ThreadPool& pool, const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
          const float* freq_factors) {
  const int half = head_dim / 2;
  // Pair i is (2i, 2i+1) in the normal style and (i, i + half) in NeoX's.
  const int first_stride = style == RopeStyle::Neox ? 1 : 2;
  const int partner = style == RopeStyle::Neox ? half : 1;
  std::vector<double> frequency(static_cast<size_t>(half));  // once per call, not per row
  for (int i = 0; i < half; ++i) frequency[size_t(i)] = std::pow(double(base), -2.0 * i / head_dim);
  pool.parallel_for(x.rows, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
    for (int64_t r = begin; r < end; ++r) {
      const double pos = double(positions[r]);
      for (int i = 0; i < half; ++i) {
        double theta = pos * frequency[size_t(i)];
        if (freq_factors) theta /= double(freq_factors[i]);
        cos_t[size_t(i)] = float(std::cos(theta));
        sin_t[size_t(i)] = float(std::sin(theta));
      }
      float* row = x.as<float>() + r * x.cols;
      for (int64_t h = 0; h < x.cols / head_dim; ++h) {
        float* v = row + h * head_dim;
        for (int i = 0; i < half; ++i) {
          float& a = v[first_stride * i];
          float& b = v[first_stride * i + partner];
          const float a0 = a, b0 = b;
          a = a0 * cos_t[size_t(i)] - b0 * sin_t[size_t(i)];
          b = a0 * sin_t[size_t(i)] + b0 * cos_t[size_t(i)];
        }
      }
    }
  });
}

void swiglu(ThreadPool& pool, const TensorView& gate, const TensorView& up) {
  const int64_t n = gate.numel();
  pool.parallel_for(n, 4096, [&](int64_t begin, int64_t end) {
    float* g = gate.as<float>();
    const float* u = up.as<float>();
    for (int64_t i = begin; i < end; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  });
}

void add(ThreadPool& pool, const TensorView& x, const TensorView& y) {
  pool.parallel_for(x.numel(), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x.as<float>()[i] += y.as<float>()[i];
  });
}

void add_bias(ThreadPool& pool, const TensorView& x, const TensorView& bias) {
  const int64_t d = x.cols;
  pool.parallel_for(x.rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      for (int64_t c = 0; c < d; ++c) x.as<float>()[i * d + c] += bias.as<float>()[c];
  });
}

// Two phases per block of queries, so that decoding (one query) still spreads over all threads:
//  1. scores: for every (cluster, query, chunk of keys), the representative's q · k · scale;
//     then per (cluster, query) the softmax (max and sum, in place);
//  2. outputs: for every (head, query), P of its cluster times the head's own V rows.
// Keys of dropped heads are never read: only representatives' KV heads appear in phase 1.
// A missing page (table entry -1) is never read, as on the GPU: its keys are masked (score -inf),
// its values count as zeros, and a row left with no key is zeros.
namespace {

// A K or V row of the cache through the shared accessor; null on a missing page.
const void* cache_row(const AttentionParams& b, const SequenceAttention& p, const int32_t* table, int kv_head, int token) {
  const int64_t slot = kv_slot(table, p.max_pages, b.page_tokens, kv_head, token);
  if (slot < 0) return nullptr;
  return static_cast<const uint8_t*>(b.pool) + size_t(slot) * b.head_dim * (b.kv_dtype == DType::F16 ? 2 : 4);
}

// The rows of keys / values [j0, j1) of one KV head go page by page: a page's rows are contiguous
// (rows is null for a missing page).
template <typename Fn>
void for_page_runs(const AttentionParams& b, const SequenceAttention& p, const int32_t* table, int kv_head, int j0,
                   int j1, Fn&& run) {
  for (int j = j0; j < j1;) {
    const int n = std::min(j1, (j / b.page_tokens + 1) * b.page_tokens) - j;
    run(j, n, cache_row(b, p, table, kv_head, j));
    j += n;
  }
}

// scores[j - j0] = q · k_j · scale for keys [j0, j1), four keys per kernel call.
void key_scores(const VectorKernels& dot, const AttentionParams& b, const SequenceAttention& p, int kv_head,
                const float* q, int j0, int j1, float* scores) {
  const bool half = b.kv_dtype == DType::F16;
  const int hd = b.head_dim;
  for_page_runs(b, p, p.k_table, kv_head, j0, j1, [&](int j, int n, const void* rows) {
    float* out = scores + (j - j0);
    if (rows == nullptr) {
      std::fill_n(out, n, -INFINITY);
      return;
    }
    int r = 0;
    for (; r + 4 <= n; r += 4) {
      if (half) dot.dot1x4_f16(q, static_cast<const uint16_t*>(rows) + int64_t(r) * hd, hd, hd, out + r);
      else dot.dot1x4_f32(q, static_cast<const float*>(rows) + int64_t(r) * hd, hd, hd, out + r);
    }
    for (; r < n; ++r)
      out[r] = half ? dot.f16(q, static_cast<const uint16_t*>(rows) + int64_t(r) * hd, hd)
                    : dot.f32(q, static_cast<const float*>(rows) + int64_t(r) * hd, hd);
    for (r = 0; r < n; ++r) out[r] *= b.scale;
  });
}

// acc += Σ w[j - j0] · v_j over values [j0, j1), in key order.
void weighted_values(const VectorKernels& dot, const AttentionParams& b, const SequenceAttention& p, int kv_head,
                     const float* w, int j0, int j1, float* acc) {
  const int hd = b.head_dim;
  for_page_runs(b, p, p.v_table, kv_head, j0, j1, [&](int j, int n, const void* rows) {
    if (rows == nullptr) return;
    if (b.kv_dtype == DType::F16) dot.axpy_rows_f16(acc, w + (j - j0), static_cast<const uint16_t*>(rows), hd, n, hd);
    else dot.axpy_rows_f32(acc, w + (j - j0), static_cast<const float*>(rows), hd, n, hd);
  });
}

// w[j] = exp(w[j] - max w) in place; returns the sum. Masked keys (-inf) become 0; when every
// key is masked, all of them (and the sum) are 0.
double exp_shifted(float* w, int n) {
  const float max = *std::max_element(w, w + n);
  const float base = max == -INFINITY ? 0.0f : max;
  double sum = 0;
  for (int j = 0; j < n; ++j) sum += w[j] = std::exp(w[j] - base);
  return sum;
}

void attend_sequence(ThreadPool& pool, const AttentionParams& b, const SequenceAttention& p) {
  const VectorKernels& dot = vector_kernels();
  const int group = b.n_heads / b.n_kv_heads, hd = b.head_dim;
  const int64_t row = int64_t(b.n_heads) * hd;
  const int max_keys = p.pos0 + p.n_q;
  const float* q_base = b.q + int64_t(p.q_row) * row;
  float* out_base = b.out + int64_t(p.q_row) * row;
  std::vector<int> cluster_of(size_t(b.n_heads), 0);
  for (int c = 0; c < p.n_clusters; ++c)
    for (int m = p.offsets[c]; m < p.offsets[c + 1]; ++m) cluster_of[size_t(p.members[m])] = c;

  // Bound the score scratch to about 16M floats by taking queries in blocks.
  const int64_t per_query = int64_t(p.n_clusters) * max_keys;
  const int block = int(std::max<int64_t>(1, std::min<int64_t>(p.n_q, (int64_t(1) << 24) / per_query)));
  std::vector<float> probs(size_t(int64_t(block) * per_query));
  std::vector<float> inv_sum(size_t(block) * p.n_clusters);
  constexpr int kKeyChunk = 256;
  const int chunks = (max_keys + kKeyChunk - 1) / kKeyChunk;
  // Small problems run inline: waking other threads would cost more than the work.
  const bool tiny = int64_t(max_keys) * hd * b.n_heads < (int64_t(1) << 14);

  for (int q0 = 0; q0 < p.n_q; q0 += block) {
    const int nq = std::min(block, p.n_q - q0);
    auto prob_row = [&](int c, int i) { return probs.data() + (int64_t(i - q0) * p.n_clusters + c) * max_keys; };
    const int64_t score_items = int64_t(p.n_clusters) * nq * chunks;
    pool.parallel_for(score_items, tiny ? score_items : 1, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int chunk = int(item % chunks), c = int(item / chunks % p.n_clusters), i = q0 + int(item / chunks / p.n_clusters);
        const int n_keys = p.pos0 + i + 1, j0 = chunk * kKeyChunk, j1 = std::min(n_keys, j0 + kKeyChunk);
        const float* q = q_base + i * row + int64_t(p.reps[c]) * hd;
        key_scores(dot, b, p, p.reps[c] / group, q, j0, j1, prob_row(c, i) + j0);
      }
    });
    const int64_t rows = int64_t(p.n_clusters) * nq;
    pool.parallel_for(rows, tiny ? rows : 4, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int c = int(r % p.n_clusters), i = q0 + int(r / p.n_clusters), n_keys = p.pos0 + i + 1;
        float* w = prob_row(c, i);
        const double sum = exp_shifted(w, n_keys);
        inv_sum[size_t(r)] = sum > 0 ? float(1.0 / sum) : 0.0f;
      }
    });
    const int64_t out_items = int64_t(b.n_heads) * nq;
    pool.parallel_for(out_items, tiny ? out_items : 1, [&](int64_t begin, int64_t end) {
      std::vector<float> acc(static_cast<size_t>(hd));
      for (int64_t item = begin; item < end; ++item) {
        const int h = int(item % b.n_heads), i = q0 + int(item / b.n_heads), c = cluster_of[size_t(h)];
        const int n_keys = p.pos0 + i + 1;
        const float* w = prob_row(c, i);
        std::fill(acc.begin(), acc.end(), 0.0f);
        weighted_values(dot, b, p, h / group, w, 0, n_keys, acc.data());
        const float inv = inv_sum[size_t(int64_t(i - q0) * p.n_clusters + c)];
        float* o = out_base + i * row + int64_t(h) * hd;
        for (int d = 0; d < hd; ++d) o[d] = acc[size_t(d)] * inv;
      }
    });
  }
}

// Versions 2 and 3, the twin of native/cuda/attention_decode.cu and attention_decode_v3.cu:
// split-KV decoding of every sequence of one query. Per (sequence, task, chunk of keys): each
// representative's scores over the chunk, their max m and sum l of exp(score - m), and every
// member head's accumulator Σ exp(score - m) v. A sequence of one chunk writes acc / l; otherwise
// the partials go to their slots and a merge rescales them to the largest max:
// out = Σ e^(m_c - M) acc_c / Σ e^(m_c - M) l_c. In version 3 a task takes `span` chunks at once
// (decode_task_span) and marks the other slots of its span empty.
struct SplitItem {
  int seq, task, block;  // the block covers chunks block * span .. of its task
};

int task_span(const AttentionParams& b, const SequenceAttention& p, int task_index) {
  const DecodeTask& task = p.tasks[task_index];
  return decode_task_span(b.version, p, task.member_end - task.member_begin);
}

void decode_chunk(const AttentionParams& b, const SequenceAttention& p, int task_index, int block, std::vector<float>& scores,
                  std::vector<float>& acc) {
  const VectorKernels& dot = vector_kernels();
  const int hd = b.head_dim, group = b.n_heads / b.n_kv_heads;
  const int64_t row = int64_t(b.n_heads) * hd;
  const DecodeTask& task = p.tasks[task_index];
  const int span = task_span(b, p, task_index), chunk = block * span;
  const int j0 = chunk * p.kv_chunk, j1 = std::min(p.pos0 + 1, j0 + span * p.kv_chunk), n = j1 - j0;
  const int n_reps = task.rep_end - task.rep_begin;
  scores.resize(size_t(n_reps) * n);
  std::vector<float> top(static_cast<size_t>(n_reps)), sum(static_cast<size_t>(n_reps));
  for (int r = 0; r < n_reps; ++r) {
    const float* q = b.q + p.q_row * row + int64_t(p.task_reps[task.rep_begin + r]) * hd;
    float* s = scores.data() + size_t(r) * n;
    key_scores(dot, b, p, task.kv_head, q, j0, j1, s);
    top[size_t(r)] = *std::max_element(s, s + n);
    sum[size_t(r)] = float(exp_shifted(s, n));
  }
  acc.resize(size_t(hd));
  for (int m = task.member_begin; m < task.member_end; ++m) {
    const int h = p.task_members[m], r = p.task_member_rep[m];
    const float* w = scores.data() + size_t(r) * n;
    std::fill(acc.begin(), acc.end(), 0.0f);
    weighted_values(dot, b, p, h / group, w, j0, j1, acc.data());
    if (p.n_chunks == 1) {
      float* o = b.out + p.q_row * row + int64_t(h) * hd;
      const float inv = sum[size_t(r)] > 0 ? 1.0f / sum[size_t(r)] : 0.0f;
      for (int d = 0; d < hd; ++d) o[d] = acc[size_t(d)] * inv;
    } else {
      float* slot = b.partials + partial_floats(p.partial_slot + chunk, b.n_heads, hd) + size_t(h) * (hd + 2);
      std::copy(acc.begin(), acc.end(), slot);
      slot[hd] = top[size_t(r)];
      slot[hd + 1] = sum[size_t(r)];
      for (int c = chunk + 1; c < std::min(chunk + span, p.n_chunks); ++c) {  // the rest of the span: empty
        float* empty = b.partials + partial_floats(p.partial_slot + c, b.n_heads, hd) + size_t(h) * (hd + 2);
        empty[hd] = -INFINITY;
        empty[hd + 1] = 0.0f;
      }
    }
  }
}

void merge_chunks(const AttentionParams& b, const SequenceAttention& p, int h) {
  const int hd = b.head_dim;
  const size_t stride = partial_floats(1, b.n_heads, hd);
  const float* first = b.partials + partial_floats(p.partial_slot, b.n_heads, hd) + size_t(h) * (hd + 2);
  float top = -INFINITY;
  for (int c = 0; c < p.n_chunks; ++c) top = std::max(top, first[c * stride + hd]);
  const double base = top == -INFINITY ? 0.0 : top;  // no chunk saw a key: every weight is 0
  std::vector<double> acc(size_t(hd), 0.0);
  double total = 0;
  for (int c = 0; c < p.n_chunks; ++c) {
    const float* part = first + c * stride;
    const double weight = std::exp(double(part[hd]) - base);
    if (weight == 0) continue;  // a chunk without keys (version 3: an empty slot, its accumulator unwritten)
    total += weight * part[hd + 1];
    for (int d = 0; d < hd; ++d) acc[size_t(d)] += weight * part[d];
  }
  float* o = b.out + int64_t(p.q_row) * b.n_heads * hd + int64_t(h) * hd;
  for (int d = 0; d < hd; ++d) o[d] = total > 0 ? float(acc[size_t(d)] / total) : 0.0f;
}

void attend_split(ThreadPool& pool, const AttentionParams& b) {
  std::vector<SplitItem> items;
  std::vector<std::pair<int, int>> merges;  // (sequence, head)
  for (int s = 0; s < b.n_seqs; ++s) {
    const SequenceAttention& p = b.seqs[s];
    if (p.n_chunks == 0) continue;
    for (int t = 0; t < p.n_tasks; ++t)
      for (int c = 0; c < ceil_div(p.n_chunks, task_span(b, p, t)); ++c) items.push_back({s, t, c});
    if (p.n_chunks > 1)
      for (int h = 0; h < b.n_heads; ++h) merges.push_back({s, h});
  }
  pool.parallel_for(int64_t(items.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, acc;
    for (int64_t i = begin; i < end; ++i) {
      const SplitItem& it = items[size_t(i)];
      decode_chunk(b, b.seqs[it.seq], it.task, it.block, scores, acc);
    }
  });
  pool.parallel_for(int64_t(merges.size()), 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) merge_chunks(b, b.seqs[merges[size_t(i)].first], merges[size_t(i)].second);
  });
}

}  // namespace

// Sequences one after another, each spread over all threads (versions 2 and 3: sequences of one query
// all at once, split by chunks of keys). Their fields are host memory here, so they are checked
// before any row is read.
void attention(ThreadPool& pool, const AttentionParams& p) {
  for (int s = 0; s < p.n_seqs; ++s) {
    const SequenceAttention& q = p.seqs[s];
    CHAI_REQUIRE(q.k_table && q.v_table && q.reps && q.offsets && q.members && q.n_q >= 1 && q.n_q <= p.max_n_q &&
                q.pos0 >= 0 && q.q_row >= 0 && q.max_pages * p.page_tokens >= q.pos0 + q.n_q && q.n_clusters >= 1 &&
                q.n_clusters <= p.max_clusters,
            ErrorCode::InvalidArgument, "attention: sequence " + std::to_string(s) + " has inconsistent sizes");
    CHAI_REQUIRE(q.n_chunks == 0 || (q.n_q == 1 && q.kv_chunk > 0 && q.n_tasks > 0 && q.n_chunks == ceil_div(q.pos0 + 1, q.kv_chunk) &&
                                     (q.n_chunks == 1 || q.partial_slot + q.n_chunks <= p.partial_slots)),
            ErrorCode::InvalidArgument, "attention: sequence " + std::to_string(s) + " has an inconsistent split-KV plan");
    if (q.n_chunks == 0) attend_sequence(pool, p, q);
  }
  if (p.split_seqs > 0) attend_split(pool, p);
}

void store_kv(ThreadPool& pool, const KvStoreParams& p) {
  pool.parallel_for(p.n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int t = p.pos0 + int(i);
      for (int g = 0; g < p.n_heads; ++g) {
        const int64_t slot = kv_slot(p.table, p.max_pages, p.page_tokens, g, t);
        if (slot < 0) continue;
        const float* src = p.src + (i * p.n_heads + g) * p.head_dim;
        if (p.kv_dtype == DType::F16) {
          uint16_t* dst = static_cast<uint16_t*>(p.pool) + slot * p.head_dim;
          for (int d = 0; d < p.head_dim; ++d) dst[d] = f32_to_f16(src[d]);
        } else {
          std::copy_n(src, p.head_dim, static_cast<float*>(p.pool) + slot * p.head_dim);
        }
      }
    }
  });
}

void head_features(ThreadPool& pool, const HeadFeatureParams& p) {
  const VectorKernels& dot = vector_kernels();
  const int group = p.n_heads / p.n_kv_heads, len = feature_length(p.t0);
  const int64_t q_row = int64_t(p.n_heads) * p.head_dim, k_row = int64_t(p.n_kv_heads) * p.head_dim;
  pool.parallel_for(p.n_heads, p.n_heads, [&](int64_t begin, int64_t end) {
    for (int64_t h = begin; h < end; ++h) {
      float* out = p.out + h * len;
      for (int i = 0; i < p.t0; ++i) {
        float* row = out + feature_length(i);  // the rows before i hold 1 + 2 + ... + i entries
        float max = -INFINITY;
        for (int j = 0; j <= i; ++j) {
          row[j] = dot.f32(p.q + i * q_row + h * p.head_dim, p.k + j * k_row + (h / group) * p.head_dim, p.head_dim) * p.scale;
          max = std::max(max, row[j]);
        }
        double sum = 0;
        for (int j = 0; j <= i; ++j) sum += row[j] = std::exp(row[j] - max);
        for (int j = 0; j <= i; ++j) row[j] = float(row[j] / sum);
      }
    }
  });
}

}  // namespace chai::cpu
