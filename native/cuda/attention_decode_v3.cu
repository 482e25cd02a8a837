// Clustered attention, version 3 for sequences of one query: split-KV decoding built to keep the
// memory system busy (the review of version 2 in issue 18: one 16-byte load in flight per thread,
// a page-table load and a division per load, V rows reloaded by every GQA head, a merge with one
// block per head). The plan is version 2's (tasks, chunks, partial slots; see attention_plan.h),
// with tasks balanced by member-head count: a task with few members covers `span` chunks.
//
// One block of kThreads per (task, span of chunks, sequence). The block streams its keys in tiles
// of kTile; each tile is 1 + n_v "units" of kTile rows: the task's K head, then each distinct V
// head its member heads read (GQA heads of one KV head share the unit, so a V row is loaded once
// for all of them). Units go global -> shared memory by cp.async, kStages buffers deep: while the
// block computes unit u, units u+1 and u+2 are in flight (up to 2 × kTile × row bytes per block).
// The page indices of a unit are read from the page table once per unit (one load per page the
// tile touches, not one per 16-byte copy) into a small ring, one unit before its copies are
// issued, and page/offset come from shift and mask where page_tokens is a power of two (the
// general path divides; page sizes are the user's choice and the CPU twin and version 2 take any).
// Copies of rows past the chunk, of missing pages and of the padding of a short row are
// zero-fill cp.async (no global read): a missing V page contributes zeros; a missing K row is
// masked by k_valid_s.
// Per unit: K -> the representatives' scores of the tile (lanes_per_key threads per row, a
// shuffle sums them), the online softmax (one warp per representative), the accumulators
// rescaled; V -> each member head of that V head adds p · V into registers.
// A block writes its output (one chunk) or its partial (accumulator, max, sum) to the first slot
// of its span and marks the rest of the span empty (max -inf); merge_v3_kernel, one thread per
// (head, dimension, sequence), reads each chunk's partials once with an online rescale.
// Twin: attend_split in native/cpu/ops.cpp (the same spans and empty slots).
//
// Synchronisation (the simulator runs warps in lockstep and cp.async synchronously, so it cannot
// see a missing barrier here; compute-sanitizer racecheck/synccheck can, on a GPU):
//  (1) after member_v_s (the members' V heads) is written: the bitmap words are built from it.
//  (2) after the bitmap words are written: the V-head ranks and v_heads_s read all of them.
//  (3) after v_heads_s is written: the page-table reads of the V units look their head up there.
//      q_s and max_s/sum_s, written before (1), are read after it too.
//  (4) after the page ring of units 0..kStages-1 is written: the prologue's copies read it.
//  (A) top of each unit: cp_async_wait<kStages - 2> makes this thread's copies of unit u
//      complete (at most the kStages - 2 younger groups stay pending; every iteration commits
//      exactly one group, empty past the last unit, so the count is exact), and the barrier makes
//      every thread's copies of unit u visible to all. The same barrier ends the computation of
//      unit u - 1, whose buffer ((u - 1) % kStages = (u + kStages - 1) % kStages) the copies of
//      unit u + kStages - 1 issued right after it overwrite, together with its k_valid_s row; and
//      it publishes the page ring slot of unit u + kStages - 1, written one iteration earlier.
//      The ring slot written in this iteration (unit u + kStages, slot u % kStages) was last read
//      when unit u was issued, two barriers ago.
//  (B) after the scores: the softmax warps read p_s rows written by other warps.
//  (C) after the softmax: corr_s and the weights p_s are read by every thread (rescale, P·V).
//      p_s and corr_s are next written at the next K unit, after at least one (A).
//  (D) after the loop (cp_async_wait<0> first: only empty groups are left, but none may write
//      shared memory afterwards): the stage buffers become the key-group sums.
//  (E) after the key-group sums are stored: key group 0 reads the other groups' rows.
#include <cuda_fp16.h>

#include "cuda_check.h"
#include "kernels.h"
#include "mma.cuh"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

constexpr int kThreads = kDecodeThreads;
constexpr int kTile = kDecodeV3Tile;  // keys per unit; the softmax gives one key to each lane of a warp
constexpr int kStages = 3;            // unit buffers: one computed, two in flight
constexpr int kMaxKvHeads = 1024;     // the bitmap of V heads a task reads
static_assert(kTile == 32, "the online softmax gives one key of a tile to each lane");

// Page and offset of a token: shift and mask when page_tokens is a power of two (shift >= 0).
struct PageMath {
  int tokens, shift;
  __device__ __forceinline__ int page(int t) const { return shift >= 0 ? t >> shift : t / tokens; }
  __device__ __forceinline__ int offset(int t) const { return shift >= 0 ? t & (tokens - 1) : t % tokens; }
};

int page_shift(int page_tokens) {
  if (page_tokens <= 0 || (page_tokens & (page_tokens - 1)) != 0) return -1;
  int shift = 0;
  while ((1 << shift) < page_tokens) ++shift;
  return shift;
}

__device__ __forceinline__ void unpack16(const uint4& raw, float (&out)[4], float) {
  out[0] = __uint_as_float(raw.x), out[1] = __uint_as_float(raw.y), out[2] = __uint_as_float(raw.z), out[3] = __uint_as_float(raw.w);
}
__device__ __forceinline__ void unpack16(const uint4& raw, float (&out)[8], __half) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

// The block's shared memory, all of it one dynamic buffer carved at 16-byte boundaries (as in the
// prefill kernel): the unit buffers [kStages][kTile][kLanes] 16-byte pieces (reused at the end for
// the key-group sums), then the small arrays. (With the small arrays as static __shared__ beside
// the extern unit buffers, the simulated GPU computed wrong results; this layout passes there.)
constexpr size_t align16(size_t bytes) { return (bytes + 15) / 16 * 16; }
template <typename T, int kLanes>
struct SharedLayout {
  static constexpr int kVec = 16 / sizeof(T);                        // elements per 16-byte piece
  static constexpr int kRow = kLanes * kVec;                         // row length the pieces cover (>= head_dim)
  static constexpr int kRows = kThreads / kLanes;                    // rows the block reads at once
  static constexpr int kPieces = kTile * kLanes;                     // 16-byte pieces of one unit
  static constexpr int kMaxMembers = kDecodeAssignments * kRows;     // a task's member heads are at most this
  static constexpr size_t kUnits = size_t(kStages) * kPieces * 16, kSums = size_t(kThreads) * kVec * sizeof(float);
  static constexpr size_t q = align16(kUnits > kSums ? kUnits : kSums);  // float [kDecodeMaxReps][kRow]: queries, scaled
  static constexpr size_t p = q + align16(kDecodeMaxReps * kRow * 4);   // float [kDecodeMaxReps][kTile]: scores, weights
  static constexpr size_t stats = p + align16(kDecodeMaxReps * kTile * 4);  // float max, sum, corr [kDecodeMaxReps] each
  static constexpr size_t pages = stats + align16(3 * kDecodeMaxReps * 4);  // int32 [kStages][kTile]: page ring
  static constexpr size_t k_valid = pages + align16(kStages * kTile * 4);   // uint8 [kStages][kTile]: K row present
  static constexpr size_t member_v = k_valid + align16(kStages * kTile);    // int32 [kMaxMembers]: each member's V head
  static constexpr size_t v_bits = member_v + align16(kMaxMembers * 4);     // uint32 [kMaxKvHeads / 32]: the task's V heads
  static constexpr size_t v_heads = v_bits + align16(kMaxKvHeads / 32 * 4); // int32 [kMaxMembers]: ... in increasing order
  static constexpr size_t bytes = v_heads + align16(kMaxMembers * 4);
};

// T: the cache's element type; kLanes: threads per K/V row (decode_shape().lanes_per_key).
template <typename T, int kLanes>
__global__ void __launch_bounds__(kThreads, 4) decode_v3_kernel(AttentionParams b, int page_shift) {
  using L = SharedLayout<T, kLanes>;
  constexpr int kVec = L::kVec, kRow = L::kRow, kRows = L::kRows, kPieces = L::kPieces;
  extern __shared__ __align__(16) unsigned char smem[];
  uint4* stage_s = reinterpret_cast<uint4*>(smem);
  auto q_s = reinterpret_cast<float (*)[kRow]>(smem + L::q);
  auto p_s = reinterpret_cast<float (*)[kTile]>(smem + L::p);
  float* max_s = reinterpret_cast<float*>(smem + L::stats);
  float* sum_s = max_s + kDecodeMaxReps;
  float* corr_s = sum_s + kDecodeMaxReps;
  auto pages_s = reinterpret_cast<int32_t (*)[kTile]>(smem + L::pages);
  auto k_valid_s = reinterpret_cast<uint8_t (*)[kTile]>(smem + L::k_valid);
  int32_t* member_v_s = reinterpret_cast<int32_t*>(smem + L::member_v);
  uint32_t* v_bits_s = reinterpret_cast<uint32_t*>(smem + L::v_bits);
  int32_t* v_heads_s = reinterpret_cast<int32_t*>(smem + L::v_heads);

  const SequenceAttention p = b.seqs[blockIdx.z];
  if (p.n_chunks == 0 || int(blockIdx.y) >= p.n_tasks) return;
  const DecodeTask task = p.tasks[blockIdx.y];
  const int n_reps = task.rep_end - task.rep_begin, n_members = task.member_end - task.member_begin;
  const int span = decode_task_span(b.version, p, n_members), chunk = int(blockIdx.x) * span;
  if (chunk >= p.n_chunks) return;
  const int hd = b.head_dim, group = b.n_heads / b.n_kv_heads, lanes = hd / kVec;
  const int tid = threadIdx.x, lane = tid % kLanes, row = tid / kLanes, warp = tid / 32, wlane = tid % 32;
  const int j_begin = chunk * p.kv_chunk, j_end = min(p.pos0 + 1, j_begin + span * p.kv_chunk);
  const size_t q_base = size_t(p.q_row) * b.n_heads * hd;
  const T* pool = static_cast<const T*>(b.pool);
  const PageMath pages{b.page_tokens, page_shift};

  for (int e = tid; e < n_reps * kRow; e += kThreads) {
    const int r = e / kRow, d = e % kRow;
    q_s[r][d] = d < hd ? b.q[q_base + size_t(p.task_reps[task.rep_begin + r]) * hd + d] * b.scale : 0.f;
  }
  if (tid < n_reps) max_s[tid] = -INFINITY, sum_s[tid] = 0.f;
  for (int m = tid; m < n_members; m += kThreads) member_v_s[m] = p.task_members[task.member_begin + m] / group;
  __syncthreads();  // (1)
  // The task's V heads without atomics: one thread per bitmap word, then per word its heads in order.
  const int bit_words = (b.n_kv_heads + 31) / 32;
  for (int w = tid; w < bit_words; w += kThreads) {
    uint32_t bits = 0u;
    for (int m = 0; m < n_members; ++m)
      if (member_v_s[m] / 32 == w) bits |= 1u << (member_v_s[m] % 32);
    v_bits_s[w] = bits;
  }
  __syncthreads();  // (2)
  auto v_rank = [&](int v) {  // the V heads of the task below v
    int rank = __popc(v_bits_s[v / 32] & ((1u << (v % 32)) - 1u));
    for (int w = 0; w < v / 32; ++w) rank += __popc(v_bits_s[w]);
    return rank;
  };
  int n_v = 0;
  for (int w = 0; w < bit_words; ++w) n_v += __popc(v_bits_s[w]);
  for (int w = tid; w < bit_words; w += kThreads) {
    int at = v_rank(32 * w);
    for (int i = 0; i < 32; ++i)
      if (v_bits_s[w] >> i & 1u) v_heads_s[at++] = 32 * w + i;
  }

  // P·V work of this thread (as in version 2): with many members, member row, row + kRows, ...
  // over every key; with few, `key_groups` threads per member row share the keys, summed at the end.
  const int key_groups = n_members >= kRows ? 1 : kRows / n_members;
  const int key_group = n_members >= kRows ? 0 : row / n_members;
  const int first_member = n_members >= kRows ? row : row % n_members;
  int head[kDecodeAssignments], rep[kDecodeAssignments], unit[kDecodeAssignments];
  float acc[kDecodeAssignments][kVec];
  int n_assigned = 0;
#pragma unroll
  for (int a = 0; a < kDecodeAssignments; ++a) {
    const int m = first_member + a * kRows;
    const bool mine = key_group < key_groups && m < n_members && (a == 0 || key_groups == 1);
    head[a] = mine ? p.task_members[task.member_begin + m] : 0;
    rep[a] = mine ? p.task_member_rep[task.member_begin + m] : 0;
    unit[a] = mine ? 1 + v_rank(head[a] / group) : -1;
    n_assigned += mine;
#pragma unroll
    for (int e = 0; e < kVec; ++e) acc[a][e] = 0.f;
  }

  const int units_per_tile = 1 + n_v;
  const int n_units = (j_end - j_begin + kTile - 1) / kTile * units_per_tile;
  // Unit u: tile u / units_per_tile of the keys, rows of the K head (u % units_per_tile == 0) or
  // of V head v_heads_s[u % units_per_tile - 1].
  auto unit_table = [&](int k) {
    return k == 0 ? p.k_table + size_t(task.kv_head) * p.max_pages : p.v_table + size_t(v_heads_s[k - 1]) * p.max_pages;
  };
  auto fetch_pages = [&](int u) {  // the page-table entries of unit u, into its ring slot
    if (u >= n_units) return;
    const int t0 = j_begin + u / units_per_tile * kTile, n = min(kTile, j_end - t0);
    const int first = pages.page(t0), count = pages.page(t0 + n - 1) - first + 1;
    const int32_t* table = unit_table(u % units_per_tile);
    for (int i = tid; i < count; i += kThreads) pages_s[u % kStages][i] = table[first + i];
  };
  auto issue = [&](int u) {  // the copies of unit u into buffer u % kStages, as one commit group
    if (u < n_units) {
      const int t0 = j_begin + u / units_per_tile * kTile, n = min(kTile, j_end - t0), off0 = pages.offset(t0);
      const bool is_k = u % units_per_tile == 0;
      const int slot = u % kStages;
      uint4* dst = stage_s + size_t(slot) * kPieces;
      // Rolled, as is the score loop (unrolled, ptxas spills on sm_90).
#pragma unroll 1
      for (int e = tid; e < kPieces; e += kThreads) {
        const int j = e / kLanes, piece = e % kLanes;
        const int at = off0 + j;  // token t0 + j, counted from the start of t0's page
        const int32_t page = j < n ? pages_s[slot][pages.page(at)] : -1;
        const bool present = page >= 0;
        const bool copy = present && piece < lanes;
        const T* src = copy ? pool + (int64_t(page) * b.page_tokens + pages.offset(at)) * hd + piece * kVec : pool;
        cp_async16(dst + e, src, copy ? 16 : 0);
        if (is_k && piece == 0) k_valid_s[slot][j] = uint8_t(present);
      }
    }
    cp_async_commit();
  };

  __syncthreads();  // (3)
  for (int u = 0; u < kStages; ++u) fetch_pages(u);
  __syncthreads();  // (4)
  for (int u = 0; u < kStages - 1; ++u) issue(u);

  for (int u = 0; u < n_units; ++u) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // (A)
    issue(u + kStages - 1);
    fetch_pages(u + kStages);
    const int slot = u % kStages, k = u % units_per_tile;
    const uint4* rows = stage_s + size_t(slot) * kPieces;
    const int n = min(kTile, j_end - (j_begin + u / units_per_tile * kTile));
    if (k == 0) {
      // Scores of the tile's keys (rows `row`, `row + kRows`, ...; uniform across each warp).
#pragma unroll 1
      for (int jj = row; jj < kTile; jj += kRows) {
        float key[kVec], dot[kDecodeMaxReps];
        unpack16(rows[jj * kLanes + lane], key, T());
#pragma unroll
        for (int r = 0; r < kDecodeMaxReps; ++r) {
          dot[r] = 0.f;
          if (r >= n_reps) continue;
#pragma unroll
          for (int e = 0; e < kVec; ++e) dot[r] += q_s[r][lane * kVec + e] * key[e];
          dot[r] = row_sum<kLanes>(dot[r]);  // n_reps is the same for the whole block
        }
        if (lane == 0) {
          const bool valid = jj < n && k_valid_s[slot][jj] != 0;
#pragma unroll
          for (int r = 0; r < kDecodeMaxReps; ++r)
            if (r < n_reps) p_s[r][jj] = valid ? dot[r] : -INFINITY;  // a missing page: the key is skipped
        }
      }
      __syncthreads();  // (B)
      // Online softmax, one warp per representative, one key per lane.
      for (int r = warp; r < n_reps; r += kThreads / 32) {
        const float s = p_s[r][wlane];
        const float old_max = max_s[r];
        const float new_max = fmaxf(old_max, warp_reduce(s, MaxOp{}));
        const float base = new_max == -INFINITY ? 0.f : new_max;  // no key yet: nothing to rescale
        const float e = expf(s - base);
        p_s[r][wlane] = e;
        const float tile_sum = warp_reduce(e, SumOp{});
        if (wlane == 0) {
          const float corr = expf(old_max - base);
          corr_s[r] = corr;
          sum_s[r] = sum_s[r] * corr + tile_sum;
          max_s[r] = new_max;
        }
      }
      __syncthreads();  // (C)
#pragma unroll
      for (int a = 0; a < kDecodeAssignments; ++a) {
        if (a >= n_assigned) break;
        const float corr = corr_s[rep[a]];
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[a][e] *= corr;
      }
    } else {
      // P·V: the member heads of this unit's V head, from the shared tile.
#pragma unroll
      for (int a = 0; a < kDecodeAssignments; ++a) {
        if (a >= n_assigned) break;
        if (unit[a] != k) continue;
        const float* w = p_s[rep[a]];
#pragma unroll 2
        for (int jj = key_group; jj < n; jj += key_groups) {
          float v[kVec];
          unpack16(rows[jj * kLanes + lane], v, T());
          const float wj = w[jj];
#pragma unroll
          for (int e = 0; e < kVec; ++e) acc[a][e] += wj * v[e];
        }
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // (D)

  if (key_groups > 1) {  // block-uniform: one assignment per thread, key groups added in shared memory
    float* sums = reinterpret_cast<float*>(stage_s);
    if (n_assigned > 0) {
#pragma unroll
      for (int e = 0; e < kVec; ++e) sums[row * kRow + lane * kVec + e] = acc[0][e];
    }
    __syncthreads();  // (E)
    if (n_assigned > 0 && key_group == 0) {
      for (int g = 1; g < key_groups; ++g) {
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[0][e] += sums[(first_member + g * n_members) * kRow + lane * kVec + e];
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
      continue;
    }
    float* part = b.partials + partial_floats(p.partial_slot + chunk, b.n_heads, hd) + size_t(head[a]) * (hd + 2);
#pragma unroll
    for (int e = 0; e < kVec; ++e) part[lane * kVec + e] = acc[a][e];
    if (lane != 0) continue;
    part[hd] = max_s[r], part[hd + 1] = sum_s[r];
    for (int c = chunk + 1; c < min(chunk + span, p.n_chunks); ++c) {  // the rest of the span: empty
      float* empty = b.partials + partial_floats(p.partial_slot + c, b.n_heads, hd) + size_t(head[a]) * (hd + 2);
      empty[hd] = -INFINITY, empty[hd + 1] = 0.f;
    }
  }
}

// One thread per (head, dimension) of a split sequence, one pass over its chunks with an online
// rescale: out = Σ e^(m_c - M) acc_c / Σ e^(m_c - M) l_c. Empty chunks (max -inf) are skipped
// before their accumulator is read (version 3 leaves the accumulators of empty span slots unwritten).
__global__ void __launch_bounds__(kThreads) merge_v3_kernel(AttentionParams b) {
  const SequenceAttention p = b.seqs[blockIdx.y];
  const int hd = b.head_dim, e = int(blockIdx.x) * kThreads + int(threadIdx.x);
  if (p.n_chunks <= 1 || e >= b.n_heads * hd) return;
  const int h = e / hd, d = e % hd;
  const size_t stride = partial_floats(1, b.n_heads, hd);
  const float* part = b.partials + partial_floats(p.partial_slot, b.n_heads, hd) + size_t(h) * (hd + 2);
  float top = -INFINITY, acc = 0.f, total = 0.f;
  for (int c = 0; c < p.n_chunks; ++c, part += stride) {
    const float m = part[hd];
    if (m == -INFINITY) continue;
    if (m > top) {
      const float rescale = expf(top - m);  // 0 for the first chunk with a key
      acc *= rescale, total *= rescale, top = m;
    }
    const float w = expf(m - top);
    acc += w * part[d];
    total += w * part[hd + 1];
  }
  b.out[size_t(p.q_row) * b.n_heads * hd + size_t(h) * hd + d] = total > 0.f ? acc / total : 0.f;
}

// Calls fn(kernel, dynamic shared bytes) with the decode kernel for this cache type and lane count.
template <typename Fn>
void with_decode_kernel(DType kv_dtype, int lanes, Fn&& fn) {
  auto pick = [&](auto type) {
    using T = decltype(type);
    switch (lanes) {
      case 1: return fn(decode_v3_kernel<T, 1>, SharedLayout<T, 1>::bytes);
      case 2: return fn(decode_v3_kernel<T, 2>, SharedLayout<T, 2>::bytes);
      case 4: return fn(decode_v3_kernel<T, 4>, SharedLayout<T, 4>::bytes);
      case 8: return fn(decode_v3_kernel<T, 8>, SharedLayout<T, 8>::bytes);
      case 16: return fn(decode_v3_kernel<T, 16>, SharedLayout<T, 16>::bytes);
      case 32: return fn(decode_v3_kernel<T, 32>, SharedLayout<T, 32>::bytes);
      default: fail(ErrorCode::Internal, "decode attention v3: no kernel for " + std::to_string(lanes) + " lanes per row");
    }
  };
  if (kv_dtype == DType::F16) pick(__half());
  else pick(float());
}

}  // namespace

int attention_decode_v3_blocks_per_sm(int head_dim, DType kv_dtype) {
  const DecodeShape shape = decode_shape(head_dim, kv_dtype);
  if (!shape.supported) return 0;
  int blocks = 0;
  with_decode_kernel(kv_dtype, shape.lanes_per_key, [&](auto kernel, size_t smem) {
    fit_shared_memory(kernel, smem, "attention (version 3, decode)");  // the opt-in the occupancy counts on
    cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, smem), "decode attention occupancy");
  });
  return blocks;
}

void attention_decode_v3(const AttentionParams& p, cudaStream_t stream) {
  const DecodeShape shape = decode_shape(p.head_dim, p.kv_dtype);
  CHAI_REQUIRE(shape.supported, ErrorCode::Internal, "decode attention v3: the plan split a head size the kernel cannot read");
  CHAI_REQUIRE(p.max_chunks <= 65535 && p.max_tasks <= 65535 && p.n_seqs <= 65535, ErrorCode::Unsupported,
               "CUDA attention takes at most 65535 chunks, tasks and sequences per call");
  CHAI_REQUIRE(p.n_kv_heads <= kMaxKvHeads, ErrorCode::Unsupported,
               "attention version 3 takes at most " + std::to_string(kMaxKvHeads) + " KV heads (the model has " +
                   std::to_string(p.n_kv_heads) + "): use CHAI_ATTENTION_VERSION=2");
  const int shift = page_shift(p.page_tokens);
  with_decode_kernel(p.kv_dtype, shape.lanes_per_key, [&](auto kernel, size_t smem) {
    fit_shared_memory(kernel, smem, "attention (version 3, decode)");
    kernel<<<dim3(unsigned(p.max_chunks), unsigned(p.max_tasks), unsigned(p.n_seqs)), kThreads, smem, stream>>>(p, shift);
    cuda_check(cudaGetLastError(), "decode attention v3 kernel launch");
  });
  if (p.partial_slots == 0) return;  // every split sequence fit in one chunk
  const unsigned blocks = unsigned(ceil_div(p.n_heads * p.head_dim, kThreads));
  merge_v3_kernel<<<dim3(blocks, unsigned(p.n_seqs)), kThreads, 0, stream>>>(p);
  cuda_check(cudaGetLastError(), "decode attention v3 merge launch");
}

}  // namespace chai::cuda
