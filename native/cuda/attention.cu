// Clustered causal attention over the paged KV cache, version 1: one launch for a whole batch of
// sequences, one block per (cluster, query, sequence).
// Keys are visited in tiles of kTile, one key per thread: the representative's scores, an online
// softmax (running max and sum, as in flash attention, so no score row is ever stored whole),
// then P·V of the tile for every member head into accumulators in shared memory. Scores are
// computed once per cluster, whatever its size; full attention is the identity clustering.
// Twin: cpu::attention in native/cpu/ops.cpp.
#include <cuda_fp16.h>

#include <cfloat>

#include "../core/error.h"
#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

constexpr int kTile = 128;  // keys per tile = threads per block

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }

// T: the cache's element type (float or __half). Null for an unallocated page, never read.
template <typename T>
__device__ __forceinline__ const T* cache_row(const AttentionParams& b, const SequenceAttention& p, const int32_t* table,
                                              int kv_head, int token) {
  const int64_t slot = kv_slot(table, p.max_pages, b.page_tokens, kv_head, token);
  return slot < 0 ? nullptr : static_cast<const T*>(b.pool) + slot * b.head_dim;
}

template <typename T>
__global__ void __launch_bounds__(kTile) attention_kernel(AttentionParams b) {
  extern __shared__ float smem[];
  const SequenceAttention& p = b.seqs[blockIdx.z];
  const int c = blockIdx.x, i = blockIdx.y, tid = threadIdx.x;
  // The grid covers the batch's largest sequence; split-KV sequences (version 2) are not ours.
  if (c >= p.n_clusters || i >= p.n_q || p.n_chunks > 0) return;
  const int hd = b.head_dim, group = b.n_heads / b.n_kv_heads;
  const int rep = p.reps[c], first = p.offsets[c], n_members = p.offsets[c + 1] - first;
  const size_t row = size_t(b.n_heads) * hd;
  const float* q_rows = b.q + size_t(p.q_row) * row;
  float* out_rows = b.out + size_t(p.q_row) * row;
  float* q = smem;                // [hd]
  float* probs = q + hd;          // [kTile]
  float* acc = probs + kTile;     // [n_members * hd]

  for (int d = tid; d < hd; d += kTile) q[d] = q_rows[i * row + size_t(rep) * hd + d];
  for (int e = tid; e < n_members * hd; e += kTile) acc[e] = 0.f;
  __syncthreads();

  const int n_keys = p.pos0 + i + 1;
  const int k_head = rep / group;
  float run_max = -FLT_MAX, run_sum = 0.f;
  for (int t0 = 0; t0 < n_keys; t0 += kTile) {
    const int j = t0 + tid;
    float score = -FLT_MAX;
    const T* k = j < n_keys ? cache_row<T>(b, p, p.k_table, k_head, j) : nullptr;
    if (k) {
      float s = 0.f;
      for (int d = 0; d < hd; ++d) s += q[d] * to_f32(k[d]);
      score = s * b.scale;
    }
    const float new_max = fmaxf(run_max, block_reduce(score, MaxOp{}, -FLT_MAX));
    const float pj = k ? expf(score - new_max) : 0.f;
    probs[tid] = pj;
    const float tile_sum = block_reduce(pj, SumOp{}, 0.f);  // its barriers also publish probs
    const float correction = expf(run_max - new_max);
    run_sum = run_sum * correction + tile_sum;
    run_max = new_max;

    const int tile = min(kTile, n_keys - t0);
    for (int e = tid; e < n_members * hd; e += kTile) {
      const int h = p.members[first + e / hd], d = e % hd;
      float a = acc[e] * correction;
      for (int jj = 0; jj < tile; ++jj) {
        const T* v = cache_row<T>(b, p, p.v_table, h / group, t0 + jj);
        if (v) a += probs[jj] * to_f32(v[d]);
      }
      acc[e] = a;
    }
    __syncthreads();  // probs is rewritten by the next tile
  }
  const float inv = run_sum > 0.f ? 1.f / run_sum : 0.f;  // no key on an allocated page: zeros, as in every version
  for (int e = tid; e < n_members * hd; e += kTile) {
    const int h = p.members[first + e / hd], d = e % hd;
    out_rows[i * row + size_t(h) * hd + d] = acc[e] * inv;
  }
}

void attention_v1(const AttentionParams& p, cudaStream_t stream) {
  CHAI_REQUIRE(p.max_n_q <= 65535 && p.n_seqs <= 65535, ErrorCode::Unsupported,
          "CUDA attention takes at most 65535 queries per sequence and 65535 sequences per call");
  const size_t smem = (size_t(p.head_dim) + kTile + size_t(p.max_members) * p.head_dim) * sizeof(float);
  const auto kernel = p.kv_dtype == DType::F16 ? attention_kernel<__half> : attention_kernel<float>;
  fit_shared_memory(kernel, smem, "attention (version 1)");
  kernel<<<dim3(unsigned(p.max_clusters), unsigned(p.max_n_q), unsigned(p.n_seqs)), kTile, smem, stream>>>(p);
  cuda_check(cudaGetLastError(), "attention kernel launch");
}

}  // namespace

// Version 1 for everything, or version 2: split-KV decoding for the sequences the plan split,
// tensor-core tiles for the others where their shape allows (version 1 otherwise). Version 3:
// its own prompt tiles (attention_prefill_v3.cu) and its own split-KV decoding (attention_decode_v3.cu).
void attention(const AttentionParams& p, cudaStream_t stream) {
  if (p.split_seqs < p.n_seqs) {
    if (p.version >= 3 && tensor_core_prefill(p.head_dim, p.kv_dtype)) attention_prefill_v3(p, stream);
    else if (p.version == 2 && tensor_core_prefill(p.head_dim, p.kv_dtype)) attention_prefill(p, stream);
    else attention_v1(p, stream);
  }
  if (p.split_seqs > 0) {
    if (p.version >= 3) attention_decode_v3(p, stream);
    else attention_decode(p, stream);
  }
}

}  // namespace chai::cuda
