// The attention plan (FlashInfer's plan/run split): everything a batched attention call needs to
// know about the batch, worked out once per step on the host, so that kernels only run.
//  - kv_slot(): the one paged-KV accessor (page table -> row of the pool) that the KV store and
//    attention of both backends use; an unallocated page (-1) gives -1 and is never dereferenced.
//  - the split-KV (flash-decoding) decisions of attention version 2: which query heads share a
//    GPU block (DecodeTask), and how many chunks each sequence's keys are cut into.
// The structs are plain arrays and integers so that the CPU and CUDA kernels read them alike.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dtype.h"
#include "host_device.h"

namespace chai {

// Row of the pool holding token `token` of KV head `kv_head`, whose pages are listed in
// table[kv_head * max_pages ..]; -1 when that page is not allocated.
CHAI_HOST_DEVICE inline int64_t kv_slot(const int32_t* table, int max_pages, int page_tokens, int kv_head, int token) {
  const int32_t page = table[int64_t(kv_head) * max_pages + token / page_tokens];
  return page < 0 ? -1 : int64_t(page) * page_tokens + token % page_tokens;
}

// Attention kernel versions (numbered as in llm.c). 1: one block per (cluster, query, sequence),
// the default. 2: split-KV decoding for one-query sequences (DecodeTask blocks over chunks of
// keys, partial results merged), tensor-core tiles for prompts on the GPU. 3: version 2, with
// prompts on tiles that score a representative once for up to 8 member heads, and the decode side
// rebuilt for memory bandwidth (attention_decode_v3.cu: K/V tiles by cp.async, several in flight,
// page indices staged per tile, GQA heads sharing V tiles, a merge parallel over the head
// dimension) with decode tasks balanced by their member-head count (decode_task_span).
constexpr int kAttentionVersions = 3;
// CHAI_ATTENTION_VERSION from the environment (1 when unset); InvalidArgument if not 1..3.
int attention_version_from_env();

// Versions 2 and 3 run prompts (sequences of several queries) on tensor cores for f16 caches with head
// size 64 or 128 (version 1 otherwise). Q and P are rounded to f16 there, so its results differ
// from the f32 CPU twin by f16 rounding (relative error about 1e-3).
CHAI_HOST_DEVICE inline bool tensor_core_prefill(int head_dim, DType kv_dtype) {
  return kv_dtype == DType::F16 && (head_dim == 64 || head_dim == 128);
}

// One block of split-KV decoding: the representatives it scores (all read the same K head, so
// a K row is loaded once for all of them: with GQA, every query head of a KV head) and the heads
// whose outputs it accumulates, each with its own V rows.
struct DecodeTask {
  int32_t kv_head;                   // the K head of every representative of the task
  int32_t rep_begin, rep_end;        // task_reps[rep_begin .. rep_end): query heads of the representatives
  int32_t member_begin, member_end;  // task_members[..]: heads; task_member_rep[..]: index of the head's representative in the task
};
static_assert(sizeof(DecodeTask) == 5 * sizeof(int32_t), "DecodeTask is packed into int32 arrays");

// The shape of the version-2 decode block, shared by the planner and the kernels: lanes_per_key
// threads read one K or V row with 16-byte loads (a power of two, at most a warp);
// kDecodeThreads / lanes_per_key rows are read at once; a thread accumulates at most
// kDecodeAssignments heads, so a task holds at most max_members heads.
constexpr int kDecodeThreads = 128;
constexpr int kDecodeAssignments = 4;
constexpr int kDecodeMaxReps = 8;
constexpr int kDecodeTile = 64;        // keys scored per step of the online softmax
constexpr int kDecodeMinChunk = 64;    // fewest keys a chunk holds when keys are split
constexpr int kDecodeV3Tile = 32;     // version 3: keys per K/V tile moved by cp.async
struct DecodeShape {
  bool supported = false;  // head_dim × element size a multiple of 16 bytes, a row within 32 lanes
  int lanes_per_key = 0;
  int max_members = 0;
};
DecodeShape decode_shape(int head_dim, DType kv_dtype);

// A layer's head clusters in backend-ready form: the CSR clusters (reps | offsets | members)
// followed by their decode tasks, in one int32 array uploaded once per clustering.
struct PackedClusters {
  std::vector<int32_t> data;
  int n_clusters = 0, n_tasks = 0, max_members = 0;
  int max_task_members = 0;  // the most member heads of one decode task
  size_t at_offsets = 0, at_members = 0, at_tasks = 0, at_task_reps = 0, at_task_members = 0, at_task_member_rep = 0;
};
// reps/offsets/members: CSR clusters over n_heads query heads (see SequenceAttention). Tasks group
// clusters whose representatives share a K head, at most kDecodeMaxReps representatives and
// decode_shape().max_members heads per task (a larger cluster is cut into several tasks).
PackedClusters pack_clusters(const std::vector<int32_t>& reps, const std::vector<int32_t>& offsets,
                             const std::vector<int32_t>& members, int n_heads, int n_kv_heads, int head_dim, DType kv_dtype);

// One chunking decision per layer: enough blocks (tasks × chunks over all one-query sequences)
// to fill `target_blocks`, chunks of at least kDecodeMinChunk keys, a multiple of kDecodeTile.
// n_keys[s] and n_tasks[s] describe the decoding sequences. forced_chunk > 0 overrides (tests).
int choose_kv_chunk(const std::vector<int>& n_keys, const std::vector<int>& n_tasks, int target_blocks, int forced_chunk = 0);

// One sequence's part of a batched attention call. Its query rows are q_row .. q_row + n_q - 1 of
// the batch, at positions pos0 .. pos0 + n_q - 1; row i sees keys 0 .. pos0 + i. Heads come in
// clusters (CSR arrays): cluster c takes its scores from query head reps[c] and applies them to the
// values of every head in members[offsets[c] .. offsets[c+1]); full attention is the identity
// clustering. K and V rows live in pages of page_tokens × head_dim values inside one pool;
// k_table[g * max_pages + t / page_tokens] is the page of KV head g holding token t (-1 where K of
// that head is not stored). All pointers are in the backend's memory.
struct SequenceAttention {
  const int32_t* k_table = nullptr;  // [n_kv_heads, max_pages]
  const int32_t* v_table = nullptr;  // [n_kv_heads, max_pages]
  const int32_t* reps = nullptr;     // [n_clusters]
  const int32_t* offsets = nullptr;  // [n_clusters + 1]
  const int32_t* members = nullptr;  // [n_heads]
  int q_row = 0;
  int n_q = 0;
  int pos0 = 0;
  int max_pages = 0;
  int n_clusters = 0;
  int max_members = 0;  // the largest cluster
  // Split-KV decoding (version 2, sequences of one query; the plan fills these).
  const DecodeTask* tasks = nullptr;  // [n_tasks]
  const int32_t* task_reps = nullptr;
  const int32_t* task_members = nullptr;
  const int32_t* task_member_rep = nullptr;
  int n_tasks = 0;
  int kv_chunk = 0;      // keys per chunk
  int n_chunks = 0;      // 0: this sequence is not on the split-KV path
  int partial_slot = 0;  // its first slot in AttentionParams::partials when n_chunks > 1
  int max_task_members = 0;  // the most member heads of one of its tasks (version 3 balancing)
};

// Version 3 balances decode tasks by their member-head count: per key, a task reads one K row
// and (at most) one V row per member head, so a task with few members takes `span` consecutive
// chunks of kv_chunk keys in one block, where the heaviest task takes one. Its block writes its
// partial result to the first slot of its span and marks the others empty (max -inf, sum 0),
// which the merge skips. Versions 1 and 2: a span of 1.
CHAI_HOST_DEVICE inline int decode_task_span(int version, const SequenceAttention& sa, int task_members) {
  const int span = version >= 3 ? (1 + sa.max_task_members) / (1 + task_members) : 1;
  return span > 1 ? span : 1;  // at least one chunk, whatever max_task_members says
}

// Points the cluster fields of `sa` into `base`, a backend copy of packed.data.
void point_clusters(SequenceAttention& sa, const PackedClusters& packed, const int32_t* base);

// Clustered causal attention for a batch of sequences in one call (one launch on the GPU), each
// with its own cache pages and clusters; FlashInfer-style plain pointers and integer tables.
struct AttentionParams {
  const float* q = nullptr;  // [rows of all sequences, n_heads * head_dim]
  float* out = nullptr;      // same shape
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;
  const void* pool = nullptr;
  DType kv_dtype = DType::F32;  // the cache's element type: F32 or F16
  int page_tokens = 0;
  const SequenceAttention* seqs = nullptr;  // [n_seqs], backend memory
  int n_seqs = 0;
  int version = 1;  // see kAttentionVersions
  // Bounds over the batch, known on the host: they size the launch grid and scratch space.
  int max_n_q = 0;
  int max_clusters = 0;
  int max_members = 0;  // the largest cluster of any sequence
  int max_tasks = 0;    // version 2: the most decode tasks of a sequence
  int max_chunks = 0;   // version 2: the most key chunks of a sequence
  // Version 2: partial results of split sequences, [partial_slots, n_heads, head_dim + 2] floats
  // (accumulator, then running max and sum), backend memory owned by the caller.
  float* partials = nullptr;
  int partial_slots = 0;
  int split_seqs = 0;  // version 2: sequences on the split-KV path (the others take version 1)
};

// Floats of the partials buffer a call with `slots` partial slots needs.
CHAI_HOST_DEVICE inline size_t partial_floats(int slots, int n_heads, int head_dim) { return size_t(slots) * n_heads * (head_dim + 2); }

// Version 3's chunking: like choose_kv_chunk, but the work of a sequence counts one K row per task
// and one V row per member head (task_rows[s]: n_tasks + n_heads) and the chunk is sized for the
// heaviest task (heaviest: 1 + its member heads), lighter ones taking spans of chunks
// (decode_task_span); chunks are whole kDecodeV3Tile tiles.
int choose_kv_chunk_balanced(const std::vector<int>& n_keys, const std::vector<int>& n_tasks, const std::vector<int>& task_rows,
                             int heaviest, int target_blocks, int forced_chunk = 0);

// Fills the split-KV fields of one call's sequence descriptors (host copies: seqs[s].tasks etc.
// already point into backend memory) and its bounds in `params`: for versions 2 and 3, sequences of
// one query are cut into chunks (choose_kv_chunk, choose_kv_chunk_balanced for version 3, which
// needs params.n_heads) and get partial slots; the rest keep n_chunks = 0.
void plan_attention_call(SequenceAttention* seqs, int n_seqs, int target_blocks, int forced_chunk, AttentionParams& params);

// One step of a forward pass, planned: every layer's sequence descriptors in one host array
// ([n_layers][n_seqs], pointers into backend memory) and each layer's call (version and bounds;
// q, out, pool, seqs and partials are filled in when the call is made).
struct AttentionPlan {
  int n_layers = 0, n_seqs = 0;
  std::vector<SequenceAttention> seqs;
  std::vector<AttentionParams> calls;
  SequenceAttention* layer(int l) { return seqs.data() + size_t(l) * n_seqs; }
  int max_partial_slots() const {
    int most = 0;
    for (const AttentionParams& c : calls) most = most > c.partial_slots ? most : c.partial_slots;
    return most;
  }
};

// Stores rows src[i, g*head_dim ..] (token pos0 + i, KV head g) into the pool pages named by
// table[g * max_pages + token / page_tokens]; heads whose entry is -1 are skipped.
struct KvStoreParams {
  const float* src = nullptr;  // [n, n_heads * head_dim]
  int n = 0;
  int n_heads = 0;
  int head_dim = 0;
  int pos0 = 0;
  void* pool = nullptr;
  DType kv_dtype = DType::F32;  // rows are converted to the cache's type (F32 or F16) when stored
  int page_tokens = 0;
  int max_pages = 0;
  const int32_t* table = nullptr;  // [n_heads, max_pages]
};

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace chai
