#include "attention_plan.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "error.h"

namespace chai {

int attention_version_from_env() {
  const char* text = std::getenv("CHAI_ATTENTION_VERSION");
  if (!text || !*text) return 1;
  const std::string value(text);
  const bool valid = value.size() == 1 && value[0] >= '1' && value[0] < char('1' + kAttentionVersions);
  CHAI_REQUIRE(valid, ErrorCode::InvalidArgument,
               "CHAI_ATTENTION_VERSION must be 1 (the default), 2 (split-KV decoding) or 3 (version 2 with new prompt tiles "
                   "and split-KV decoding rebuilt for memory bandwidth); 2 and 3 are not yet verified on a GPU. Got '" +
                   value + "': unset it or pick one of those");
  return value[0] - '0';
}

DecodeShape decode_shape(int head_dim, DType kv_dtype) {
  DecodeShape shape;
  const int bytes = head_dim * (kv_dtype == DType::F16 ? 2 : 4);
  if (head_dim <= 0 || bytes % 16 != 0) return shape;
  int lanes = 1;
  while (lanes < bytes / 16) lanes *= 2;
  if (lanes > 32) return shape;
  shape.supported = true;
  shape.lanes_per_key = lanes;
  shape.max_members = kDecodeAssignments * (kDecodeThreads / lanes);
  return shape;
}

namespace {

struct TaskBuilder {
  std::vector<DecodeTask> tasks;
  std::vector<int32_t> reps, members, member_rep;
  bool open = false;

  void start(int32_t kv_head) {
    tasks.push_back({kv_head, int32_t(reps.size()), int32_t(reps.size()), int32_t(members.size()), int32_t(members.size())});
    open = true;
  }
  DecodeTask& last() { return tasks.back(); }
  int n_reps() const { return open ? tasks.back().rep_end - tasks.back().rep_begin : 0; }
  int n_members() const { return open ? tasks.back().member_end - tasks.back().member_begin : 0; }
  void add(int32_t rep, const int32_t* heads, int count) {
    const int32_t slot = int32_t(n_reps());
    reps.push_back(rep);
    last().rep_end++;
    for (int i = 0; i < count; ++i) {
      members.push_back(heads[i]);
      member_rep.push_back(slot);
    }
    last().member_end += count;
  }
};

}  // namespace

PackedClusters pack_clusters(const std::vector<int32_t>& reps, const std::vector<int32_t>& offsets,
                             const std::vector<int32_t>& members, int n_heads, int n_kv_heads, int head_dim, DType kv_dtype) {
  CHAI_REQUIRE(!reps.empty() && offsets.size() == reps.size() + 1 && int(members.size()) == n_heads && n_kv_heads > 0 &&
                   n_heads % n_kv_heads == 0,
               ErrorCode::Internal, "pack_clusters: inconsistent clusters");
  PackedClusters packed;
  packed.n_clusters = int(reps.size());
  for (size_t c = 0; c < reps.size(); ++c) packed.max_members = std::max(packed.max_members, offsets[c + 1] - offsets[c]);

  TaskBuilder b;
  const DecodeShape shape = decode_shape(head_dim, kv_dtype);
  if (shape.supported) {
    const int group = n_heads / n_kv_heads, cap = shape.max_members;
    // Representatives that read the same K head share tasks, so each K row is read once for them.
    for (int g = 0; g < n_kv_heads; ++g) {
      b.open = false;
      for (size_t c = 0; c < reps.size(); ++c) {
        if (reps[c] / group != g) continue;
        const int count = offsets[c + 1] - offsets[c];
        const int32_t* heads = members.data() + offsets[c];
        if (count > cap) {  // a cluster too large for one block: its own tasks, a slice of heads each
          for (int first = 0; first < count; first += cap) {
            b.start(g);
            b.add(reps[c], heads + first, std::min(cap, count - first));
          }
          b.open = false;
          continue;
        }
        if (!b.open || b.n_reps() == kDecodeMaxReps || b.n_members() + count > cap) b.start(g);
        b.add(reps[c], heads, count);
      }
    }
  }
  packed.n_tasks = int(b.tasks.size());
  for (const DecodeTask& t : b.tasks) packed.max_task_members = std::max(packed.max_task_members, t.member_end - t.member_begin);

  auto& d = packed.data;
  d = reps;
  packed.at_offsets = d.size();
  d.insert(d.end(), offsets.begin(), offsets.end());
  packed.at_members = d.size();
  d.insert(d.end(), members.begin(), members.end());
  packed.at_tasks = d.size();
  for (const DecodeTask& t : b.tasks) d.insert(d.end(), {t.kv_head, t.rep_begin, t.rep_end, t.member_begin, t.member_end});
  packed.at_task_reps = d.size();
  d.insert(d.end(), b.reps.begin(), b.reps.end());
  packed.at_task_members = d.size();
  d.insert(d.end(), b.members.begin(), b.members.end());
  packed.at_task_member_rep = d.size();
  d.insert(d.end(), b.member_rep.begin(), b.member_rep.end());
  return packed;
}

void point_clusters(SequenceAttention& sa, const PackedClusters& packed, const int32_t* base) {
  sa.reps = base;
  sa.offsets = base + packed.at_offsets;
  sa.members = base + packed.at_members;
  sa.n_clusters = packed.n_clusters;
  sa.max_members = packed.max_members;
  sa.tasks = reinterpret_cast<const DecodeTask*>(base + packed.at_tasks);
  sa.task_reps = base + packed.at_task_reps;
  sa.task_members = base + packed.at_task_members;
  sa.task_member_rep = base + packed.at_task_member_rep;
  sa.n_tasks = packed.n_tasks;
  sa.max_task_members = packed.max_task_members;
}

namespace {

// Keys per chunk for `work` (in key-rows of the heaviest task) spread over target_blocks blocks,
// where `blocks` tasks exist without splitting: even chunks, whole tiles, at least kDecodeMinChunk.
int even_chunk(int64_t work, int64_t blocks, int longest, int target_blocks, int tile) {
  if (blocks >= target_blocks) return longest;  // the batch fills the device without splitting
  const int64_t per_block = std::max<int64_t>(kDecodeMinChunk, (work + target_blocks - 1) / std::max(1, target_blocks));
  if (per_block >= longest) return longest;
  // Even chunks: the longest sequence cut into equal parts, rounded up to whole tiles.
  const int64_t parts = (longest + per_block - 1) / per_block;
  const int64_t chunk = ((longest + parts - 1) / parts + tile - 1) / tile * tile;
  return int(std::min<int64_t>(longest, chunk));
}

}  // namespace

int choose_kv_chunk(const std::vector<int>& n_keys, const std::vector<int>& n_tasks, int target_blocks, int forced_chunk) {
  if (forced_chunk > 0) return forced_chunk;
  int64_t blocks = 0, work = 0;
  int longest = 1;
  for (size_t s = 0; s < n_keys.size(); ++s) {
    blocks += n_tasks[s];
    work += int64_t(n_tasks[s]) * n_keys[s];
    longest = std::max(longest, n_keys[s]);
  }
  return even_chunk(work, blocks, longest, target_blocks, kDecodeTile);
}

int choose_kv_chunk_balanced(const std::vector<int>& n_keys, const std::vector<int>& n_tasks, const std::vector<int>& task_rows,
                             int heaviest, int target_blocks, int forced_chunk) {
  if (forced_chunk > 0) return forced_chunk;
  int64_t blocks = 0, rows = 0;
  int longest = 1;
  for (size_t s = 0; s < n_keys.size(); ++s) {
    blocks += n_tasks[s];
    rows += int64_t(task_rows[s]) * n_keys[s];
    longest = std::max(longest, n_keys[s]);
  }
  // In keys of the heaviest task: a block of it then does the average block's work.
  const int64_t work = (rows + heaviest - 1) / std::max(1, heaviest);
  return even_chunk(work, blocks, longest, target_blocks, kDecodeV3Tile);
}

void plan_attention_call(SequenceAttention* seqs, int n_seqs, int target_blocks, int forced_chunk, AttentionParams& params) {
  params.max_n_q = params.max_clusters = params.max_members = params.max_tasks = params.max_chunks = params.partial_slots = params.split_seqs = 0;
  std::vector<int> keys, tasks, task_rows;
  int heaviest = 1;
  for (int s = 0; s < n_seqs; ++s) {
    SequenceAttention& sa = seqs[s];
    sa.kv_chunk = sa.n_chunks = sa.partial_slot = 0;
    params.max_n_q = std::max(params.max_n_q, sa.n_q);
    params.max_clusters = std::max(params.max_clusters, sa.n_clusters);
    params.max_members = std::max(params.max_members, sa.max_members);
    if (params.version >= 2 && sa.n_q == 1 && sa.n_tasks > 0) {
      keys.push_back(sa.pos0 + 1);
      tasks.push_back(sa.n_tasks);
      task_rows.push_back(sa.n_tasks + params.n_heads);  // a K row per task, a V row per member head
      heaviest = std::max(heaviest, 1 + sa.max_task_members);
    }
  }
  if (keys.empty()) return;
  CHAI_REQUIRE(params.version < 3 || params.n_heads > 0, ErrorCode::Internal, "plan_attention_call: version 3 needs n_heads");
  const int chunk = params.version >= 3 ? choose_kv_chunk_balanced(keys, tasks, task_rows, heaviest, target_blocks, forced_chunk)
                                        : choose_kv_chunk(keys, tasks, target_blocks, forced_chunk);
  for (int s = 0; s < n_seqs; ++s) {
    SequenceAttention& sa = seqs[s];
    if (sa.n_q != 1 || sa.n_tasks == 0) continue;
    sa.kv_chunk = chunk;
    sa.n_chunks = ceil_div(sa.pos0 + 1, chunk);
    if (sa.n_chunks > 1) {
      sa.partial_slot = params.partial_slots;
      params.partial_slots += sa.n_chunks;
    }
    params.max_tasks = std::max(params.max_tasks, sa.n_tasks);
    params.max_chunks = std::max(params.max_chunks, sa.n_chunks);
    params.split_seqs++;
  }
}

}  // namespace chai
