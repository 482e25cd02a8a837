// Clustered causal attention, version 3 for prompts (sequences of several queries): tensor-core
// tiles (mma.sync m16n8k16, f16 inputs, f32 accumulation) where a representative's scores are
// computed once for as many member heads as the block holds (design: bench/v3-attention-prefill.md).
//
// A block takes (kRowGroups × 16 query rows, cluster, pass over kMembers member heads, sequence)
// and has kRowGroups × kMemberWarps warps. The warps of one row group share its 16 rows: for a tile
// of kKeys keys each computes the scores of its own kKeys / kMemberWarps keys (K fragments read
// with ldmatrix), the row maxima are combined through shared memory, each writes its part of P
// (f16) to shared memory, and then each warp multiplies the whole P of its rows by the V tiles of
// its own kWarpMembers member heads (O in registers). So the representative's Q·Kᵀ of a tile is
// computed once for kMembers = kMemberWarps × kWarpMembers heads (4 of 128 dimensions or 8 of 64;
// version 2: 2 or 4), and once per cluster when the cluster is not larger. Full attention takes a
// block of one warp per row group (kMemberWarps 1, 64 rows), whose Q and P stay in registers.
// Only tiles at or below the diagonal of the block's last row are visited, and the causal mask is
// evaluated only on a warp's diagonal tiles (and on a tile with a key past the prompt or on a
// missing page, known from the tile's 32-bit key mask).
//
// Pipeline (one K buffer and one V buffer per block, cp.async, FlashAttention-2 order):
//   prologue: the members' KV heads and (CHAI) Q -> shared memory, read only after B1 of tile 0;
//             copy K(0) and its key mask, commit.
//   per tile t:
//     wait_group 0     this thread's copies of K(t) landed (the only group still in flight: V(t-1)
//                      was waited for in tile t-1).
//     __syncthreads B1 K(t) and its key mask are visible to every warp; every warp has finished
//                      tile t-1's P·V, so the V buffer and P may be overwritten (and the maxima
//                      of tile t-1 were read before its B3).
//     copy V(t), commit (overlaps the scores below).
//     scores, mask, row maxima of this warp's keys -> shared memory (CHAI).
//     __syncthreads B2 the maxima of all warps are visible; every warp has finished reading K(t)
//                      and the key mask, so both may be overwritten.
//     copy K(t+1) and its key mask, commit (overlaps the softmax and P·V of this tile).
//     combined maxima, P -> shared memory (CHAI), row sums.
//     wait_group 1 (0 on the last tile)  V(t) landed; K(t+1), committed after it, may still fly.
//     __syncthreads B3 P of all warps and V(t) of all threads are visible.
//     O *= correction; O += P V.
//   end: row sums -> shared memory (their own buffer: nothing else is written there),
//        __syncthreads, totals, O / sum -> out.
// The simulated GPU cannot check this (its warps run in lockstep and cp.async completes at once),
// so every barrier above is argued here; compute-sanitizer racecheck/synccheck on a GPU checks it.
// Q and P are rounded to f16 for the tensor cores, so results differ from the f32 twin
// (cpu::attention) by f16 rounding, as in version 2.
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda_check.h"
#include "kernels.h"
#include "mma.cuh"

namespace chai::cuda {
namespace {

constexpr int kKeys = 32;  // keys per tile: one bit each in the tile's key mask

template <int HD, int kRowGroups, int kMemberWarps, int kWarpMembers>
struct PrefillShape {
  static constexpr int kWarps = kRowGroups * kMemberWarps, kThreads = kWarps * 32;
  static constexpr int kRows = kRowGroups * 16, kMembers = kMemberWarps * kWarpMembers;
  static constexpr int kWarpKeys = kKeys / kMemberWarps;  // the scores one warp computes per tile
  static constexpr int kStride = HD + 8;                  // padded K/V rows: ldmatrix free of bank conflicts
  static constexpr int kPStride = kKeys + 8;              // padded P rows, the same reason
  static constexpr int kTileHalfs = kKeys * kStride;
  // Scores split over several warps per row group (CHAI): Q is read from shared memory, which
  // leaves the registers to O (128 at most for two blocks of 256 threads per SM), and P goes
  // through shared memory to every warp of the row group. Otherwise (full attention) Q and P stay
  // in registers, as in FlashAttention-2.
  static constexpr bool kSplitScores = kMemberWarps > 1;
  // Bytes of dynamic shared memory: K tile, kMembers V tiles, Q and P (kSplitScores), row maxima
  // and sums, the members' KV heads, key mask.
  static constexpr size_t kSmem =
      (size_t(1 + kMembers) * kTileHalfs + (kSplitScores ? kRows * (kStride + kPStride) : 0)) * sizeof(__half) +
      2 * size_t(kRows) * kMemberWarps * sizeof(float) + (kMembers + 1) * sizeof(int);
  static_assert(kWarpKeys % 8 == 0, "each warp scores whole 8-key mma tiles");
};

// Starts copying rows [key0, key0 + kKeys) of one KV head into dst (row stride kStride halfs) with
// cp.async, 16 bytes per copy, spread over the block's threads; keys past n_keys or on a missing
// page become zeros (never used: their scores are masked).
template <int HD, int kStride, int kThreads>
__device__ __forceinline__ void copy_tile(__half* dst, const __half* pool, const int32_t* table, int max_pages, int page_tokens,
                                          int kv_head, int key0, int n_keys) {
  constexpr int kPieces = HD / 8;
  for (int c = threadIdx.x; c < kKeys * kPieces; c += kThreads) {
    const int row = c / kPieces, piece = c % kPieces, key = key0 + row;
    const int64_t slot = key < n_keys ? kv_slot(table, max_pages, page_tokens, kv_head, key) : -1;
    cp_async16(dst + row * kStride + piece * 8, slot >= 0 ? pool + slot * HD + piece * 8 : pool, slot >= 0 ? 16 : 0);
  }
}

template <int HD, int kRowGroups, int kMemberWarps, int kWarpMembers>
__global__ void __launch_bounds__(PrefillShape<HD, kRowGroups, kMemberWarps, kWarpMembers>::kThreads, 2)
    prefill_v3_kernel(AttentionParams b, int passes) {
  using Shape = PrefillShape<HD, kRowGroups, kMemberWarps, kWarpMembers>;
  constexpr int kThreads = Shape::kThreads, kRows = Shape::kRows, kMembers = Shape::kMembers, kWarpKeys = Shape::kWarpKeys;
  constexpr int kStride = Shape::kStride, kPStride = Shape::kPStride, kTileHalfs = Shape::kTileHalfs;
  constexpr int kDimTiles = HD / 8, kSteps = HD / 16, kWarpKeyTiles = kWarpKeys / 8;
  constexpr bool kSplitScores = Shape::kSplitScores;
  extern __shared__ __align__(16) unsigned char smem[];
  __half* k_s = reinterpret_cast<__half*>(smem);                 // [kKeys][kStride]
  __half* v_s = k_s + kTileHalfs;                                // [kMembers][kKeys][kStride]
  __half* q_s = v_s + kMembers * kTileHalfs;                     // [kRows][kStride] when kSplitScores, else empty
  __half* p_s = q_s + (kSplitScores ? kRows * kStride : 0);        // [kRows][kPStride] when kSplitScores, else empty
  float* max_s = reinterpret_cast<float*>(p_s + (kSplitScores ? kRows * kPStride : 0));  // [kRows][kMemberWarps]
  float* sum_s = max_s + kRows * kMemberWarps;                      // [kRows][kMemberWarps]
  int* member_kv_s = reinterpret_cast<int*>(sum_s + kRows * kMemberWarps);        // [kMembers]: KV head of each member's V
  uint32_t* key_mask_s = reinterpret_cast<uint32_t*>(member_kv_s + kMembers);      // bit j: key key0 + j exists

  const SequenceAttention p = b.seqs[blockIdx.z];
  const int cluster = blockIdx.y / passes, pass = blockIdx.y % passes;
  // Row tiles in reverse: the blocks with the most keys start first, for a shorter tail (as
  // FlashAttention-2 schedules causal prompts).
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kRows;
  // Every early return depends on the block's indices only, so a block leaves whole (no barrier waits on absent warps).
  if (p.n_chunks > 0 || cluster >= p.n_clusters || q0 >= p.n_q) return;  // split sequences are the decode kernel's
  const int first = p.offsets[cluster] + pass * kMembers;
  const int n_members = min(kMembers, p.offsets[cluster + 1] - first);
  if (n_members <= 0) return;

  const int group = b.n_heads / b.n_kv_heads, rep = p.reps[cluster];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int row_group = warp / kMemberWarps, member_warp = warp % kMemberWarps;
  const int warp_row0 = q0 + row_group * 16;                     // this warp's first query row
  const int local0 = row_group * 16 + g, local1 = local0 + 8;    // this thread's two rows within the block
  const int row0 = q0 + local0, row1 = q0 + local1;
  const int warp_key0 = member_warp * kWarpKeys;                 // this warp's keys within a tile
  const size_t row_stride = size_t(b.n_heads) * HD;
  const __half* pool = static_cast<const __half*>(b.pool);
  int heads[kWarpMembers];  // this warp's member heads (-1: none)
#pragma unroll
  for (int j = 0; j < kWarpMembers; ++j) {
    const int m = member_warp * kWarpMembers + j;
    heads[j] = m < n_members ? p.members[first + m] : -1;
  }

  // The representative's queries in f16, scaled so that exp2 gives e^(score · scale): as A fragments
  // in registers, or (kSplitScores) in shared memory, written by the first warp of each row group
  // and read by all of them only after B1 of tile 0.
  const float q_scale = b.scale * 1.4426950408889634f;
  uint32_t qa[kSplitScores ? 1 : kSteps][4];
  {
    const float* q_rep = b.q + size_t(p.q_row) * row_stride + size_t(rep) * HD;
    auto q_pair = [&](int row, int col) {
      if (row >= p.n_q) return pack2<__half>(0.f, 0.f);
      const float2 v = *reinterpret_cast<const float2*>(q_rep + size_t(row) * row_stride + col);
      return pack2<__half>(v.x * q_scale, v.y * q_scale);
    };
    if (kSplitScores) {
      if (member_warp == 0)
        for (int col = t4 * 2; col < HD; col += 8) {
          *reinterpret_cast<uint32_t*>(q_s + local0 * kStride + col) = q_pair(row0, col);
          *reinterpret_cast<uint32_t*>(q_s + local1 * kStride + col) = q_pair(row1, col);
        }
    } else {
#pragma unroll
      for (int kk = 0; kk < (kSplitScores ? 0 : kSteps); ++kk) {
        qa[kk][0] = q_pair(row0, kk * 16 + t4 * 2);
        qa[kk][1] = q_pair(row1, kk * 16 + t4 * 2);
        qa[kk][2] = q_pair(row0, kk * 16 + 8 + t4 * 2);
        qa[kk][3] = q_pair(row1, kk * 16 + 8 + t4 * 2);
      }
    }
  }
  // This warp's A fragment of Q for k-step kk (rows 0..7 | 8..15 × dims kk·16 + 0 | 8 as ldmatrix's four matrices).
  auto q_fragment = [&](int kk) -> const uint32_t(&)[4] {
    if (kSplitScores) ldmatrix_x4(qa[0], q_s + (row_group * 16 + (lane / 8 % 2) * 8 + lane % 8) * kStride + kk * 16 + (lane / 16) * 8);
    return qa[kSplitScores ? 0 : kk];
  };

  float o[kWarpMembers][kDimTiles][4];
#pragma unroll
  for (int j = 0; j < kWarpMembers; ++j)
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) o[j][dt][0] = o[j][dt][1] = o[j][dt][2] = o[j][dt][3] = 0.f;
  float max0 = -INFINITY, max1 = -INFINITY, sum0 = 0.f, sum1 = 0.f;  // per row; sums over this thread's keys

  const int last_row = min(q0 + kRows, p.n_q) - 1;
  const int n_keys = p.pos0 + last_row + 1;  // the block's last row sees the most keys
  const int k_head = rep / group;
  if (threadIdx.x < n_members) member_kv_s[threadIdx.x] = p.members[first + threadIdx.x] / group;  // read after B1
  // K of a tile, and its key mask (warp 0: one key per lane, whether it is inside the prompt's
  // keys and on an allocated page).
  auto copy_keys = [&](int key0) {
    copy_tile<HD, kStride, kThreads>(k_s, pool, p.k_table, p.max_pages, b.page_tokens, k_head, key0, n_keys);
    cp_async_commit();
    if (warp == 0) {
      const int key = key0 + lane;
      const bool present = key < n_keys && p.k_table[int64_t(k_head) * p.max_pages + key / b.page_tokens] >= 0;
      const uint32_t mask = __ballot_sync(0xffffffffu, present);
      if (lane == 0) *key_mask_s = mask;
    }
  };
  copy_keys(0);
  for (int key0 = 0; key0 < n_keys; key0 += kKeys) {
    const bool more = key0 + kKeys < n_keys;
    cp_async_wait<0>();
    __syncthreads();  // B1
    for (int m = 0; m < n_members; ++m)
      copy_tile<HD, kStride, kThreads>(v_s + m * kTileHalfs, pool, p.v_table, p.max_pages, b.page_tokens, member_kv_s[m], key0,
                                       n_keys);
    cp_async_commit();

    // S = Q Kᵀ for this warp's 16 rows × kWarpKeys keys; one ldmatrix_x4 gives the B fragments of two k-steps.
    float s[kWarpKeyTiles][4];
#pragma unroll
    for (int nt = 0; nt < kWarpKeyTiles; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      const __half* k_rows = k_s + (warp_key0 + nt * 8 + lane % 8) * kStride + (lane / 8) * 8;
#pragma unroll
      for (int kk = 0; kk < kSteps; kk += 2) {
        uint32_t kb[4];
        ldmatrix_x4(kb, k_rows + kk * 16);  // matrices: dims kk·16 + 0, +8, +16, +24
        mma_16816<__half>(s[nt], q_fragment(kk), kb[0], kb[1]);
        mma_16816<__half>(s[nt], q_fragment(kk + 1), kb[2], kb[3]);
      }
    }
    // Causal mask and missing keys, only where the tile reaches past this warp's first row's
    // diagonal or has a key that is absent (beyond the prompt or on a missing page).
    const uint32_t present = *key_mask_s;
    if (key0 + kKeys - 1 > p.pos0 + warp_row0 || present != 0xffffffffu) {
#pragma unroll
      for (int nt = 0; nt < kWarpKeyTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = warp_key0 + nt * 8 + t4 * 2 + e, key = key0 + col;
          const bool ok = (present >> col) & 1u;
          if (!ok || key > p.pos0 + row0) s[nt][e] = -INFINITY;
          if (!ok || key > p.pos0 + row1) s[nt][2 + e] = -INFINITY;
        }
    }
    float tile_max0 = -INFINITY, tile_max1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kWarpKeyTiles; ++nt) {
      tile_max0 = fmaxf(tile_max0, fmaxf(s[nt][0], s[nt][1]));
      tile_max1 = fmaxf(tile_max1, fmaxf(s[nt][2], s[nt][3]));
    }
#pragma unroll
    for (int offset = 1; offset < 4; offset <<= 1) {  // the four lanes of a quad hold one row
      tile_max0 = fmaxf(tile_max0, __shfl_xor_sync(0xffffffffu, tile_max0, offset));
      tile_max1 = fmaxf(tile_max1, __shfl_xor_sync(0xffffffffu, tile_max1, offset));
    }
    if (kMemberWarps > 1 && t4 == 0) {
      max_s[local0 * kMemberWarps + member_warp] = tile_max0;
      max_s[local1 * kMemberWarps + member_warp] = tile_max1;
    }
    __syncthreads();  // B2
    if (more) copy_keys(key0 + kKeys);
    if (kMemberWarps > 1) {
#pragma unroll
      for (int w = 0; w < kMemberWarps; ++w) {
        tile_max0 = fmaxf(tile_max0, max_s[local0 * kMemberWarps + w]);
        tile_max1 = fmaxf(tile_max1, max_s[local1 * kMemberWarps + w]);
      }
    }
    // Every warp of the row group reaches the same maxima, so their corrections agree.
    const float new0 = fmaxf(max0, tile_max0), new1 = fmaxf(max1, tile_max1);
    const float base0 = new0 == -INFINITY ? 0.f : new0, base1 = new1 == -INFINITY ? 0.f : new1;
    const float corr0 = exp2f(max0 - base0), corr1 = exp2f(max1 - base1);
    max0 = new0, max1 = new1;
    sum0 *= corr0, sum1 *= corr1;
#pragma unroll
    for (int nt = 0; nt < kWarpKeyTiles; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - base0), s[nt][1] = exp2f(s[nt][1] - base0);
      s[nt][2] = exp2f(s[nt][2] - base1), s[nt][3] = exp2f(s[nt][3] - base1);
      sum0 += s[nt][0] + s[nt][1];
      sum1 += s[nt][2] + s[nt][3];
      if (kSplitScores) {
        const int col = warp_key0 + nt * 8 + t4 * 2;
        *reinterpret_cast<uint32_t*>(p_s + local0 * kPStride + col) = pack2<__half>(s[nt][0], s[nt][1]);
        *reinterpret_cast<uint32_t*>(p_s + local1 * kPStride + col) = pack2<__half>(s[nt][2], s[nt][3]);
      }
    }
    if (more) cp_async_wait<1>();
    else cp_async_wait<0>();
    __syncthreads();  // B3

    // O_j = O_j · correction + P V_j: P of the row group's 16 rows × kKeys keys as A fragments (from
    // shared memory by ldmatrix, or without kSplitScores from this warp's own accumulators, as in
    // FlashAttention-2: those of key tiles 2kk and 2kk+1 form step kk's operand), V with
    // ldmatrix.trans as in version 2.
#pragma unroll
    for (int j = 0; j < kWarpMembers; ++j)
#pragma unroll
      for (int dt = 0; dt < kDimTiles; ++dt) {
        o[j][dt][0] *= corr0, o[j][dt][1] *= corr0;
        o[j][dt][2] *= corr1, o[j][dt][3] *= corr1;
      }
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      // Matrices: rows 0..7 | 8..15 of the row group × keys kk·16 + 0 | 8; lane l addresses row l % 8 of matrix l / 8.
      uint32_t pa[4];
      if (kSplitScores) {
        ldmatrix_x4(pa, p_s + (row_group * 16 + (lane / 8 % 2) * 8 + lane % 8) * kPStride + kk * 16 + (lane / 16) * 8);
      } else {
        // (min: indices stay in range in the instantiations that never take this branch)
        const int lo = min(2 * kk, kWarpKeyTiles - 1), hi = min(2 * kk + 1, kWarpKeyTiles - 1);
        pa[0] = pack2<__half>(s[lo][0], s[lo][1]);
        pa[1] = pack2<__half>(s[lo][2], s[lo][3]);
        pa[2] = pack2<__half>(s[hi][0], s[hi][1]);
        pa[3] = pack2<__half>(s[hi][2], s[hi][3]);
      }
#pragma unroll
      for (int j = 0; j < kWarpMembers; ++j) {
        if (heads[j] < 0) continue;
        const __half* v_tile = v_s + (member_warp * kWarpMembers + j) * kTileHalfs;
        const int mat = lane / 8, r = lane % 8;
#pragma unroll
        for (int dt = 0; dt < kDimTiles; dt += 2) {
          uint32_t bv[4];
          ldmatrix_x4_trans(bv, v_tile + (kk * 16 + (mat & 1) * 8 + r) * kStride + (dt + (mat >> 1)) * 8);
          mma_16816<__half>(o[j][dt], pa, bv[0], bv[1]);
          mma_16816<__half>(o[j][dt + 1], pa, bv[2], bv[3]);
        }
      }
    }
  }

#pragma unroll
  for (int offset = 1; offset < 4; offset <<= 1) {
    sum0 += __shfl_xor_sync(0xffffffffu, sum0, offset);
    sum1 += __shfl_xor_sync(0xffffffffu, sum1, offset);
  }
  if (kMemberWarps > 1) {  // each warp summed its own keys: the row's sum is over the row group's warps
    if (t4 == 0) {
      sum_s[local0 * kMemberWarps + member_warp] = sum0;
      sum_s[local1 * kMemberWarps + member_warp] = sum1;
    }
    __syncthreads();
    sum0 = sum1 = 0.f;
#pragma unroll
    for (int w = 0; w < kMemberWarps; ++w) {
      sum0 += sum_s[local0 * kMemberWarps + w];
      sum1 += sum_s[local1 * kMemberWarps + w];
    }
  }
  const float inv0 = sum0 > 0.f ? 1.f / sum0 : 0.f, inv1 = sum1 > 0.f ? 1.f / sum1 : 0.f;
  float* out = b.out + size_t(p.q_row) * row_stride;
#pragma unroll
  for (int j = 0; j < kWarpMembers; ++j) {
    if (heads[j] < 0) continue;
#pragma unroll
    for (int dt = 0; dt < kDimTiles; ++dt) {
      const int col = heads[j] * HD + dt * 8 + t4 * 2;
      if (row0 < p.n_q)
        *reinterpret_cast<float2*>(out + size_t(row0) * row_stride + col) = make_float2(o[j][dt][0] * inv0, o[j][dt][1] * inv0);
      if (row1 < p.n_q)
        *reinterpret_cast<float2*>(out + size_t(row1) * row_stride + col) = make_float2(o[j][dt][2] * inv1, o[j][dt][3] * inv1);
    }
  }
}

template <int HD, int kRowGroups, int kMemberWarps, int kWarpMembers>
void launch_prefill_v3(const AttentionParams& p, cudaStream_t stream) {
  using Shape = PrefillShape<HD, kRowGroups, kMemberWarps, kWarpMembers>;
  const auto kernel = prefill_v3_kernel<HD, kRowGroups, kMemberWarps, kWarpMembers>;
  fit_shared_memory(kernel, Shape::kSmem, "attention (version 3, prefill)");
  const int passes = (p.max_members + Shape::kMembers - 1) / Shape::kMembers;
  const dim3 grid(unsigned((p.max_n_q + Shape::kRows - 1) / Shape::kRows), unsigned(p.max_clusters * passes), unsigned(p.n_seqs));
  kernel<<<grid, Shape::kThreads, Shape::kSmem, stream>>>(p, passes);
  cuda_check(cudaGetLastError(), "prefill attention (version 3) kernel launch");
}

}  // namespace

void attention_prefill_v3(const AttentionParams& p, cudaStream_t stream) {
  CHAI_REQUIRE(tensor_core_prefill(p.head_dim, p.kv_dtype), ErrorCode::Internal,
               "prefill attention: no tensor-core kernel for this head size and cache type");
  CHAI_REQUIRE(p.n_seqs <= 65535 && size_t(p.max_clusters) * p.max_members <= 65535, ErrorCode::Unsupported,
               "CUDA attention takes at most 65535 sequences and cluster passes per call");
  // Full attention: one warp per 16 rows, 64 rows per block. CHAI: 32 rows per block, four warps
  // per 16 rows sharing the scores, each with the V of one head of 128 dimensions or two of 64.
  const bool clustered = p.max_members > 1;
  if (p.head_dim == 64) return clustered ? launch_prefill_v3<64, 2, 4, 2>(p, stream) : launch_prefill_v3<64, 4, 1, 1>(p, stream);
  return clustered ? launch_prefill_v3<128, 2, 4, 1>(p, stream) : launch_prefill_v3<128, 4, 1, 1>(p, stream);
}

}  // namespace chai::cuda
