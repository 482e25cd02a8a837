// Clustered attention, version 2 for sequences of one query: split-KV decoding (flash-decoding).
// The host plan cuts every sequence's keys into chunks and groups its heads into tasks
// (DecodeTask: representatives that read one K head, with their member heads). One block per
// (chunk, task, sequence), so even one sequence fills the GPU. A block walks its chunk in tiles
// of kDecodeTile keys:
//  1. scores: lanes_per_key threads read one K row with 16-byte loads and dot it with every
//     representative's query (a K row is read once for all of them: with GQA, for every query
//     head of that KV head); a shuffle sums the lanes;
//  2. online softmax per representative (running max and sum, correction of the accumulators);
//  3. P·V: every member head accumulates its own V rows in registers, 16-byte loads again.
// A sequence of one chunk writes its output; otherwise each block writes (accumulator, max, sum)
// per head to its partial slot and merge_kernel combines the chunks. No atomics.
// Twin: attend_split in native/cpu/ops.cpp.
#include <cuda_fp16.h>

#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

__device__ __forceinline__ void load_row16(const float* p, float (&out)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}

__device__ __forceinline__ void load_row16(const __half* p, float (&out)[8]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

// T: the cache's element type; kLanes: threads per K/V row (decode_shape().lanes_per_key).
template <typename T, int kLanes>
__global__ void __launch_bounds__(kDecodeThreads) decode_kernel(AttentionParams b) {
  constexpr int kVec = 16 / sizeof(T);            // elements per 16-byte load
  constexpr int kRow = kLanes * kVec;             // row length the lanes cover (>= head_dim)
  constexpr int kRows = kDecodeThreads / kLanes;  // rows read at once by the block
  __shared__ float q_s[kDecodeMaxReps][kRow];     // queries of the representatives, scaled
  __shared__ float p_s[kDecodeMaxReps][kDecodeTile];
  __shared__ float max_s[kDecodeMaxReps], sum_s[kDecodeMaxReps], corr_s[kDecodeMaxReps];
  __shared__ float red_s[kRows * kRow];  // accumulators of key groups, added at the end

  const SequenceAttention p = b.seqs[blockIdx.z];
  const int chunk = blockIdx.x;
  if (p.n_chunks == 0 || int(blockIdx.y) >= p.n_tasks || chunk >= p.n_chunks) return;
  const DecodeTask task = p.tasks[blockIdx.y];
  const int n_reps = task.rep_end - task.rep_begin, n_members = task.member_end - task.member_begin;
  const int hd = b.head_dim, group = b.n_heads / b.n_kv_heads, lanes = hd / kVec;
  const int tid = threadIdx.x, lane = tid % kLanes, row = tid / kLanes, warp = tid / 32, wlane = tid % 32;
  const int j_begin = chunk * p.kv_chunk, j_end = min(p.pos0 + 1, j_begin + p.kv_chunk);
  const size_t q_base = size_t(p.q_row) * b.n_heads * hd;
  const T* pool = static_cast<const T*>(b.pool);

  for (int e = tid; e < n_reps * kRow; e += kDecodeThreads) {
    const int r = e / kRow, d = e % kRow;
    q_s[r][d] = d < hd ? b.q[q_base + size_t(p.task_reps[task.rep_begin + r]) * hd + d] * b.scale : 0.f;
  }
  if (tid < n_reps) max_s[tid] = -INFINITY, sum_s[tid] = 0.f;

  // P·V work of this thread: with many members, member row, row + kRows, ... over every key;
  // with few, `key_groups` threads per member row share the keys and are added at the end.
  const int key_groups = n_members >= kRows ? 1 : kRows / n_members;
  const int key_group = n_members >= kRows ? 0 : row / n_members;
  const int first_member = n_members >= kRows ? row : row % n_members;
  int head[kDecodeAssignments], rep[kDecodeAssignments];
  float acc[kDecodeAssignments][kVec];
  int n_assigned = 0;
#pragma unroll
  for (int a = 0; a < kDecodeAssignments; ++a) {
    const int m = first_member + a * kRows;
    const bool mine = key_group < key_groups && m < n_members && (a == 0 || key_groups == 1);
    head[a] = mine ? p.task_members[task.member_begin + m] : 0;
    rep[a] = mine ? p.task_member_rep[task.member_begin + m] : 0;
    n_assigned += mine;
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc[a][e] = 0.f;
  }
  __syncthreads();

  for (int t0 = j_begin; t0 < j_end; t0 += kDecodeTile) {
    const int tile = min(kDecodeTile, j_end - t0);
    // 1. Scores of the tile's keys (rows `row`, `row + kRows`, ...; uniform across each warp).
    for (int jj = row; jj < kDecodeTile; jj += kRows) {
      float dot[kDecodeMaxReps];
#pragma unroll
      for (int r = 0; r < kDecodeMaxReps; ++r) dot[r] = 0.f;
      const int64_t slot = jj < tile ? kv_slot(p.k_table, p.max_pages, b.page_tokens, task.kv_head, t0 + jj) : -1;
      if (slot >= 0 && lane < lanes) {
        float k[kVec];
        load_row16(pool + slot * hd + lane * kVec, k);
#pragma unroll
        for (int r = 0; r < kDecodeMaxReps; ++r) {
          if (r >= n_reps) break;
#pragma unroll
          for (int e = 0; e < kVec; ++e) dot[r] += q_s[r][lane * kVec + e] * k[e];
        }
      }
#pragma unroll
      for (int r = 0; r < kDecodeMaxReps; ++r)
        if (r < n_reps) dot[r] = row_sum<kLanes>(dot[r]);  // n_reps is the same for the whole block
      if (lane == 0 && jj < tile) {
#pragma unroll
        for (int r = 0; r < kDecodeMaxReps; ++r)
          if (r < n_reps) p_s[r][jj] = slot >= 0 ? dot[r] : -INFINITY;  // a missing page: the key is skipped
      }
    }
    __syncthreads();
    // 2. Online softmax, one warp per representative.
    for (int r = warp; r < n_reps; r += kDecodeThreads / 32) {
      const float s0 = wlane < tile ? p_s[r][wlane] : -INFINITY;
      const float s1 = wlane + 32 < tile ? p_s[r][wlane + 32] : -INFINITY;
      const float old_max = max_s[r];
      const float new_max = fmaxf(old_max, warp_reduce(fmaxf(s0, s1), MaxOp{}));
      const float base = new_max == -INFINITY ? 0.f : new_max;  // no key yet: nothing to rescale
      const float e0 = expf(s0 - base), e1 = expf(s1 - base);
      if (wlane < kDecodeTile) p_s[r][wlane] = e0;
      if (wlane + 32 < kDecodeTile) p_s[r][wlane + 32] = e1;
      const float tile_sum = warp_reduce(e0 + e1, SumOp{});
      if (wlane == 0) {
        const float corr = expf(old_max - base);
        corr_s[r] = corr;
        sum_s[r] = sum_s[r] * corr + tile_sum;
        max_s[r] = new_max;
      }
    }
    __syncthreads();
    // 3. P·V into registers.
#pragma unroll
    for (int a = 0; a < kDecodeAssignments; ++a) {
      if (a >= n_assigned) break;
      const float corr = corr_s[rep[a]];
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[a][e] *= corr;
      const float* w = p_s[rep[a]];
      const int v_head = head[a] / group;
#pragma unroll 4
      for (int jj = key_group; jj < tile; jj += key_groups) {
        const int64_t slot = kv_slot(p.v_table, p.max_pages, b.page_tokens, v_head, t0 + jj);
        if (slot < 0 || lane >= lanes) continue;
        float v[kVec];
        load_row16(pool + slot * hd + lane * kVec, v);
        const float wj = w[jj];
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[a][e] += wj * v[e];
      }
    }
    __syncthreads();  // p_s and corr_s are rewritten by the next tile
  }

  if (key_groups > 1) {  // block-uniform: one assignment per thread, key groups added in shared memory
    if (n_assigned > 0) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) red_s[row * kRow + lane * kVec + e] = acc[0][e];
    }
    __syncthreads();
    if (n_assigned > 0 && key_group == 0) {
      for (int g = 1; g < key_groups; ++g) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[0][e] += red_s[(first_member + g * n_members) * kRow + lane * kVec + e];
      }
    }
  }
  if (key_group != 0 || lane >= lanes) return;
#pragma unroll
  for (int a = 0; a < kDecodeAssignments; ++a) {
    if (a >= n_assigned) break;
    const int r = rep[a];
    if (p.n_chunks == 1) {
      const float inv = sum_s[r] > 0.f ? 1.f / sum_s[r] : 0.f;
      float* out = b.out + q_base + size_t(head[a]) * hd + lane * kVec;
#pragma unroll
      for (int e = 0; e < kVec; ++e) out[e] = acc[a][e] * inv;
    } else {
      float* part = b.partials + partial_floats(p.partial_slot + chunk, b.n_heads, hd) + size_t(head[a]) * (hd + 2);
#pragma unroll
      for (int e = 0; e < kVec; ++e) part[lane * kVec + e] = acc[a][e];
      if (lane == 0) part[hd] = max_s[r], part[hd + 1] = sum_s[r];
    }
  }
}

// One block per (head, sequence) of the split sequences: out = Σ e^(m_c - M) acc_c / Σ e^(m_c - M) l_c.
__global__ void __launch_bounds__(128) merge_kernel(AttentionParams b) {
  const SequenceAttention p = b.seqs[blockIdx.y];
  if (p.n_chunks <= 1) return;
  const int h = blockIdx.x, hd = b.head_dim;
  const size_t stride = partial_floats(1, b.n_heads, hd);
  const float* first = b.partials + partial_floats(p.partial_slot, b.n_heads, hd) + size_t(h) * (hd + 2);
  float top = -INFINITY;
  for (int c = 0; c < p.n_chunks; ++c) top = fmaxf(top, first[c * stride + hd]);
  const float base = top == -INFINITY ? 0.f : top;
  float* out = b.out + size_t(p.q_row) * b.n_heads * hd + size_t(h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float acc = 0.f, total = 0.f;
    for (int c = 0; c < p.n_chunks; ++c) {
      const float* part = first + c * stride;
      const float w = expf(part[hd] - base);
      acc += w * part[d];
      total += w * part[hd + 1];
    }
    out[d] = total > 0.f ? acc / total : 0.f;
  }
}

template <typename T, int kLanes>
void launch_decode(const AttentionParams& p, cudaStream_t stream) {
  const auto kernel = decode_kernel<T, kLanes>;
  fit_shared_memory(kernel, 0, "attention (version 2, decode)");
  kernel<<<dim3(unsigned(p.max_chunks), unsigned(p.max_tasks), unsigned(p.n_seqs)), kDecodeThreads, 0, stream>>>(p);
  cuda_check(cudaGetLastError(), "decode attention kernel launch");
}

template <typename T>
void launch_decode_for(const AttentionParams& p, int lanes, cudaStream_t stream) {
  switch (lanes) {
    case 1: return launch_decode<T, 1>(p, stream);
    case 2: return launch_decode<T, 2>(p, stream);
    case 4: return launch_decode<T, 4>(p, stream);
    case 8: return launch_decode<T, 8>(p, stream);
    case 16: return launch_decode<T, 16>(p, stream);
    case 32: return launch_decode<T, 32>(p, stream);
    default: fail(ErrorCode::Internal, "decode attention: no kernel for " + std::to_string(lanes) + " lanes per row");
  }
}

}  // namespace

void attention_decode(const AttentionParams& p, cudaStream_t stream) {
  const DecodeShape shape = decode_shape(p.head_dim, p.kv_dtype);
  CHAI_REQUIRE(shape.supported, ErrorCode::Internal, "decode attention: the plan split a head size the kernel cannot read");
  CHAI_REQUIRE(p.max_chunks <= 65535 && p.max_tasks <= 65535 && p.n_seqs <= 65535, ErrorCode::Unsupported,
               "CUDA attention takes at most 65535 chunks, tasks and sequences per call");
  if (p.kv_dtype == DType::F16) launch_decode_for<__half>(p, shape.lanes_per_key, stream);
  else launch_decode_for<float>(p, shape.lanes_per_key, stream);
  if (p.partial_slots == 0) return;  // every split sequence fit in one chunk
  merge_kernel<<<dim3(unsigned(p.n_heads), unsigned(p.n_seqs)), 128, 0, stream>>>(p);
  cuda_check(cudaGetLastError(), "decode attention merge launch");
}

}  // namespace chai::cuda
