// Clustered causal attention, version 2 for prompts (sequences of several queries): FlashAttention-2
// style tiles on tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulation).
// One block of 4 warps per (64 query rows, cluster, slice of kSlice member heads, sequence); each
// warp owns 16 query rows. For every tile of 64 keys at or below the diagonal (tiles above it are
// never visited):
//  1. the K tile of the representative's KV head and the V tiles of the slice's heads are copied
//     from their pages into shared memory by cp.async, the next tile while this one is computed
//     (16-byte copies; a missing page reads as a masked key);
//  2. S = Q_rep K_repᵀ on tensor cores, once for all heads of the slice (CHAI: one representative's
//     scores serve its members), causal mask, online softmax in registers (FA2: the S accumulators
//     become the f16 A operand of P·V without leaving registers);
//  3. O_m += P V_m for every head m of the slice, V read with ldmatrix.trans.
// Q and P are rounded to f16 for the tensor cores, so results differ from the f32 twin
// (cpu::attention) by f16 rounding, not more.
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda_check.h"
#include "kernels.h"
#include "mma.cuh"

namespace chai::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kRowsPerBlock = 64;  // 4 warps × 16 query rows
constexpr int kKeysPerTile = 64;

// Starts copying rows [key0, key0 + kKeysPerTile) of one head into dst (row stride kStride halfs)
// with cp.async (16 bytes per copy, no registers involved); rows past `n_keys` or on an
// unallocated page are filled with zeros and never read. ok (optional) records which keys exist.
template <int HD, int kStride>
__device__ __forceinline__ void load_tile_async(__half* dst, const __half* pool, const int32_t* table, int max_pages,
                                                int page_tokens, int head, int key0, int n_keys, int* ok) {
  constexpr int kChunks = HD / 8;  // 16-byte pieces per row
  for (int c = threadIdx.x; c < kKeysPerTile * kChunks; c += kThreads) {
    const int row = c / kChunks, piece = c % kChunks, key = key0 + row;
    const int64_t slot = key < n_keys ? kv_slot(table, max_pages, page_tokens, head, key) : -1;
    cp_async16(dst + row * kStride + piece * 8, slot >= 0 ? pool + slot * HD + piece * 8 : pool, slot >= 0 ? 16 : 0);
    if (ok && piece == 0) ok[row] = slot >= 0;
  }
}

template <int HD, int kSlice>
__global__ void __launch_bounds__(kThreads) prefill_kernel(AttentionParams b, int slices_per_cluster) {
  constexpr int kStride = HD + 8;  // padded rows: ldmatrix and fragment loads free of bank conflicts
  constexpr int kDimTiles = HD / 8, kSteps = HD / 16, kKeyTiles = kKeysPerTile / 8;
  constexpr int kTileHalfs = kKeysPerTile * kStride;
  // Two stages (the next tile is copied while this one is used), each: K tile, kSlice V tiles.
  extern __shared__ __align__(16) unsigned char smem[];
  __half* tiles = reinterpret_cast<__half*>(smem);                              // [2][1 + kSlice][kTileHalfs]
  int* key_ok_stages = reinterpret_cast<int*>(tiles + 2 * (1 + kSlice) * kTileHalfs);  // [2][kKeysPerTile]

  const SequenceAttention p = b.seqs[blockIdx.z];
  const int cluster = blockIdx.y / slices_per_cluster, slice = blockIdx.y % slices_per_cluster;
  const int q0 = blockIdx.x * kRowsPerBlock;
  if (p.n_chunks > 0 || cluster >= p.n_clusters || q0 >= p.n_q) return;  // split sequences are the decode kernel's
  const int first = p.offsets[cluster] + slice * kSlice;
  const int n_members = min(kSlice, p.offsets[cluster + 1] - first);
  if (n_members <= 0) return;

  const int group = b.n_heads / b.n_kv_heads, rep = p.reps[cluster];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int row0 = q0 + warp * 16 + g, row1 = row0 + 8;  // this thread's two query rows
  const size_t row_stride = size_t(b.n_heads) * HD;
  const __half* pool = static_cast<const __half*>(b.pool);
  int heads[kSlice];
#pragma unroll
  for (int m = 0; m < kSlice; ++m) heads[m] = p.members[first + min(m, n_members - 1)];

  // The representative's queries as A fragments, scaled so that exp2 gives e^(score · scale).
  const float q_scale = b.scale * 1.4426950408889634f;
  uint32_t qa[kSteps][4];
  {
    const float* q_rep = b.q + size_t(p.q_row) * row_stride + size_t(rep) * HD;
    auto q_pair = [&](int row, int col) {
      if (row >= p.n_q) return pack2<__half>(0.f, 0.f);
      const float2 v = *reinterpret_cast<const float2*>(q_rep + size_t(row) * row_stride + col);
      return pack2<__half>(v.x * q_scale, v.y * q_scale);
    };
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
      qa[kk][0] = q_pair(row0, kk * 16 + t4 * 2);
      qa[kk][1] = q_pair(row1, kk * 16 + t4 * 2);
      qa[kk][2] = q_pair(row0, kk * 16 + 8 + t4 * 2);
      qa[kk][3] = q_pair(row1, kk * 16 + 8 + t4 * 2);
    }
  }

  float o[kSlice][kDimTiles][4];
#pragma unroll
  for (int m = 0; m < kSlice; ++m)
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) o[m][dt][0] = o[m][dt][1] = o[m][dt][2] = o[m][dt][3] = 0.f;
  float max0 = -INFINITY, max1 = -INFINITY, sum0 = 0.f, sum1 = 0.f;  // per row; sums are this thread's share

  const int last_row = min(q0 + kRowsPerBlock, p.n_q) - 1;
  const int n_keys = p.pos0 + last_row + 1;  // the block's last row sees the most keys
  auto issue = [&](int stage, int key0) {
    __half* k_dst = tiles + stage * (1 + kSlice) * kTileHalfs;
    load_tile_async<HD, kStride>(k_dst, pool, p.k_table, p.max_pages, b.page_tokens, rep / group, key0, n_keys,
                                 key_ok_stages + stage * kKeysPerTile);
#pragma unroll
    for (int m = 0; m < kSlice; ++m)
      if (m < n_members)
        load_tile_async<HD, kStride>(k_dst + (1 + m) * kTileHalfs, pool, p.v_table, p.max_pages, b.page_tokens, heads[m] / group,
                                     key0, n_keys, nullptr);
    cp_async_commit();
  };
  issue(0, 0);
  for (int key0 = 0, stage = 0; key0 < n_keys; key0 += kKeysPerTile, stage ^= 1) {
    // The other stage was released by the barrier that ended the previous tile.
    if (key0 + kKeysPerTile < n_keys) {
      issue(stage ^ 1, key0 + kKeysPerTile);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const __half* k_s = tiles + stage * (1 + kSlice) * kTileHalfs;
    const __half* v_s = k_s + kTileHalfs;  // [kSlice][kTileHalfs]
    const int* key_ok = key_ok_stages + stage * kKeysPerTile;

    // S = Q Kᵀ for this warp's 16 rows × 64 keys.
    float s[kKeyTiles][4];
#pragma unroll
    for (int nt = 0; nt < kKeyTiles; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      const __half* k_row = k_s + (nt * 8 + g) * kStride + t4 * 2;
#pragma unroll
      for (int kk = 0; kk < kSteps; ++kk)
        mma_16816<__half>(s[nt], qa[kk], *reinterpret_cast<const uint32_t*>(k_row + kk * 16),
                  *reinterpret_cast<const uint32_t*>(k_row + kk * 16 + 8));
    }
    // Causal mask (key j visible to row i when j <= pos0 + i), missing keys, rows past the prompt.
    float tile_max0 = -INFINITY, tile_max1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kKeyTiles; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int col = nt * 8 + t4 * 2 + e, key = key0 + col;
        const bool ok = key_ok[col] != 0;
        if (!ok || row0 >= p.n_q || key > p.pos0 + row0) s[nt][e] = -INFINITY;
        if (!ok || row1 >= p.n_q || key > p.pos0 + row1) s[nt][2 + e] = -INFINITY;
        tile_max0 = fmaxf(tile_max0, s[nt][e]);
        tile_max1 = fmaxf(tile_max1, s[nt][2 + e]);
      }
#pragma unroll
    for (int offset = 1; offset < 4; offset <<= 1) {  // the four lanes of a quad hold one row
      tile_max0 = fmaxf(tile_max0, __shfl_xor_sync(0xffffffffu, tile_max0, offset));
      tile_max1 = fmaxf(tile_max1, __shfl_xor_sync(0xffffffffu, tile_max1, offset));
    }
    const float new0 = fmaxf(max0, tile_max0), new1 = fmaxf(max1, tile_max1);
    const float base0 = new0 == -INFINITY ? 0.f : new0, base1 = new1 == -INFINITY ? 0.f : new1;
    const float corr0 = exp2f(max0 - base0), corr1 = exp2f(max1 - base1);
    max0 = new0, max1 = new1;
    sum0 *= corr0, sum1 *= corr1;
#pragma unroll
    for (int m = 0; m < kSlice; ++m)
#pragma unroll
      for (int dt = 0; dt < kDimTiles; ++dt) {
        o[m][dt][0] *= corr0, o[m][dt][1] *= corr0;
        o[m][dt][2] *= corr1, o[m][dt][3] *= corr1;
      }
    // P in f16 as A fragments: the accumulators of key tiles 2k and 2k+1 form step k's operand.
    uint32_t pa[kKeysPerTile / 16][4];
#pragma unroll
    for (int nt = 0; nt < kKeyTiles; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - base0), s[nt][1] = exp2f(s[nt][1] - base0);
      s[nt][2] = exp2f(s[nt][2] - base1), s[nt][3] = exp2f(s[nt][3] - base1);
      sum0 += s[nt][0] + s[nt][1];
      sum1 += s[nt][2] + s[nt][3];
    }
#pragma unroll
    for (int kk = 0; kk < kKeysPerTile / 16; ++kk) {
      pa[kk][0] = pack2<__half>(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = pack2<__half>(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = pack2<__half>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = pack2<__half>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
    // O_m += P V_m.
#pragma unroll
    for (int m = 0; m < kSlice; ++m) {
      if (m >= n_members) continue;
      const __half* v_tile = v_s + m * kTileHalfs;
#pragma unroll
      for (int kk = 0; kk < kKeysPerTile / 16; ++kk)
#pragma unroll
        for (int dt = 0; dt < kDimTiles; dt += 2) {
          // Matrices: keys kk·16 + (0..7 | 8..15) × dims dt·8 and (dt+1)·8; lane l addresses row l % 8 of matrix l / 8.
          const int mat = lane / 8, r = lane % 8;
          uint32_t bv[4];
          ldmatrix_x4_trans(bv, v_tile + (kk * 16 + (mat & 1) * 8 + r) * kStride + (dt + (mat >> 1)) * 8);
          mma_16816<__half>(o[m][dt], pa[kk], bv[0], bv[1]);
          mma_16816<__half>(o[m][dt + 1], pa[kk], bv[2], bv[3]);
        }
    }
    __syncthreads();  // the tiles are overwritten next
  }

#pragma unroll
  for (int offset = 1; offset < 4; offset <<= 1) {
    sum0 += __shfl_xor_sync(0xffffffffu, sum0, offset);
    sum1 += __shfl_xor_sync(0xffffffffu, sum1, offset);
  }
  const float inv0 = sum0 > 0.f ? 1.f / sum0 : 0.f, inv1 = sum1 > 0.f ? 1.f / sum1 : 0.f;
  float* out = b.out + size_t(p.q_row) * row_stride;
#pragma unroll
  for (int m = 0; m < kSlice; ++m) {
    if (m >= n_members) continue;
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) {
      const int col = heads[m] * HD + dt * 8 + t4 * 2;
      if (row0 < p.n_q)
        *reinterpret_cast<float2*>(out + size_t(row0) * row_stride + col) = make_float2(o[m][dt][0] * inv0, o[m][dt][1] * inv0);
      if (row1 < p.n_q)
        *reinterpret_cast<float2*>(out + size_t(row1) * row_stride + col) = make_float2(o[m][dt][2] * inv1, o[m][dt][3] * inv1);
    }
  }
}

template <int HD, int kSlice>
void launch_prefill(const AttentionParams& p, cudaStream_t stream) {
  const auto kernel = prefill_kernel<HD, kSlice>;
  const size_t smem = 2 * (size_t(1 + kSlice) * kKeysPerTile * (HD + 8) * sizeof(__half) + kKeysPerTile * sizeof(int));
  fit_shared_memory(kernel, smem, "attention (version 2, prefill)");
  const int slices = (p.max_members + kSlice - 1) / kSlice;
  const dim3 grid(unsigned((p.max_n_q + kRowsPerBlock - 1) / kRowsPerBlock), unsigned(p.max_clusters * slices), unsigned(p.n_seqs));
  kernel<<<grid, kThreads, smem, stream>>>(p, slices);
  cuda_check(cudaGetLastError(), "prefill attention kernel launch");
}

}  // namespace

void attention_prefill(const AttentionParams& p, cudaStream_t stream) {
  CHAI_REQUIRE(tensor_core_prefill(p.head_dim, p.kv_dtype), ErrorCode::Internal,
               "prefill attention: no tensor-core kernel for this head size and cache type");
  CHAI_REQUIRE(p.n_seqs <= 65535 && size_t(p.max_clusters) * p.max_members <= 65535, ErrorCode::Unsupported,
               "CUDA attention takes at most 65535 sequences and cluster slices per call");
  // Full attention (clusters of one head) takes one head per block; CHAI clusters as many heads
  // per block as registers hold accumulators for (two of 128 dimensions, four of 64), so each
  // tile of a representative's scores serves that many heads.
  const bool clustered = p.max_members > 1;
  if (p.head_dim == 64) return clustered ? launch_prefill<64, 4>(p, stream) : launch_prefill<64, 1>(p, stream);
  return clustered ? launch_prefill<128, 2>(p, stream) : launch_prefill<128, 1>(p, stream);
}

}  // namespace chai::cuda
