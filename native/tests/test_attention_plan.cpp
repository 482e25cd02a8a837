// The attention plan and version 2 (split-KV decoding) on the CPU twin: the paged-KV accessor,
// decode tasks, the chunking decision, and split + merge against the float64 reference and
// version 1 at awkward shapes and chunk boundaries.
#include <cmath>
#include <set>
#include <string>

#include "attention_case.h"
#include "core/attention_plan.h"
#include "core/backend.h"
#include "core/error.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

void check_accessor(Suite& suite) {
  const std::vector<int32_t> table = {3, -1, 0, /* head 1 */ -1, 7, 2};
  suite.check(kv_slot(table.data(), 3, 4, 0, 0) == 12 && kv_slot(table.data(), 3, 4, 0, 9) == 1 &&
                  kv_slot(table.data(), 3, 4, 1, 5) == 29 && kv_slot(table.data(), 3, 1, 1, 2) == 2,
              "kv_slot: page * page_tokens + token % page_tokens of the head's table");
  suite.check(kv_slot(table.data(), 3, 4, 0, 5) == -1 && kv_slot(table.data(), 3, 4, 1, 0) == -1,
              "kv_slot: an unallocated page gives -1");
}

// Every head in exactly one task, with its own cluster's representative; the representatives of
// a task read its K head; tasks within the block's limits.
void check_tasks(Suite& suite, const AttentionShape& s, DType kv, uint32_t seed) {
  const AttentionProblem p = make_attention_problem(s, seed, kv);
  const PackedClusters packed = pack_clusters(p.reps, p.offsets, p.members, s.n_heads, s.n_kv_heads, s.head_dim, kv);
  const DecodeShape shape = decode_shape(s.head_dim, kv);
  const std::string what = std::string(dtype_name(kv)) + " " + s.name();
  if (!shape.supported) {
    suite.check(packed.n_tasks == 0, "no decode tasks for an unreadable head size, " + what);
    return;
  }
  const int group = s.n_heads / s.n_kv_heads;
  std::vector<int> rep_of(static_cast<size_t>(s.n_heads), -1), seen(static_cast<size_t>(s.n_heads), 0);
  for (int c = 0; c < s.n_clusters; ++c)
    for (int m = p.offsets[size_t(c)]; m < p.offsets[size_t(c) + 1]; ++m) rep_of[size_t(p.members[size_t(m)])] = p.reps[size_t(c)];
  const auto* tasks = reinterpret_cast<const DecodeTask*>(packed.data.data() + packed.at_tasks);
  bool ok = true;
  for (int t = 0; t < packed.n_tasks; ++t) {
    const DecodeTask& task = tasks[t];
    const int n_reps = task.rep_end - task.rep_begin, n_members = task.member_end - task.member_begin;
    ok &= n_reps >= 1 && n_reps <= kDecodeMaxReps && n_members >= 1 && n_members <= shape.max_members;
    for (int r = task.rep_begin; r < task.rep_end; ++r) ok &= packed.data[packed.at_task_reps + size_t(r)] / group == task.kv_head;
    for (int m = task.member_begin; m < task.member_end; ++m) {
      const int h = packed.data[packed.at_task_members + size_t(m)];
      const int slot = packed.data[packed.at_task_member_rep + size_t(m)];
      ok &= slot >= 0 && slot < n_reps && packed.data[packed.at_task_reps + size_t(task.rep_begin + slot)] == rep_of[size_t(h)];
      seen[size_t(h)]++;
    }
  }
  for (int h = 0; h < s.n_heads; ++h) ok &= seen[size_t(h)] == 1;
  suite.check(ok, "decode tasks cover every head once, representatives share the task's K head, " + what);
}

void check_chunking(Suite& suite) {
  suite.check(choose_kv_chunk({8192}, {32}, 1056) == 256, "full attention, 32 heads, 8k keys, 1056 blocks wanted: chunks of 256");
  suite.check(choose_kv_chunk({8192}, {4}, 1056) == kDecodeMinChunk, "CHAI k=4: chunks no smaller than the minimum");
  suite.check(choose_kv_chunk({100, 5000}, {64, 64}, 64) == 5000, "a batch that fills the device is not split");
  suite.check(choose_kv_chunk({8192}, {32}, 1056, 7) == 7, "a forced chunk size wins");
  const int chunk = choose_kv_chunk({8192}, {8}, 96);  // 12 parts of 683 keys, rounded to tiles
  suite.check(chunk % kDecodeTile == 0 && ceil_div(8192, chunk) == 12, "chunks are even, whole tiles: got " + std::to_string(chunk));

  // The plan: one-query sequences are split (v2 only), prompts are not; partial slots do not overlap.
  std::vector<SequenceAttention> seqs(3);
  seqs[0].n_q = 1, seqs[0].pos0 = 999, seqs[0].n_tasks = 4, seqs[0].n_clusters = 4, seqs[0].max_members = 8;
  seqs[1].n_q = 9, seqs[1].pos0 = 0, seqs[1].n_tasks = 32, seqs[1].n_clusters = 32, seqs[1].max_members = 1;
  seqs[2].n_q = 1, seqs[2].pos0 = 99, seqs[2].n_tasks = 4, seqs[2].n_clusters = 4, seqs[2].max_members = 8;
  AttentionParams v1, v2;
  v2.version = 2;
  plan_attention_call(seqs.data(), 3, 64, 100, v1);
  suite.check(v1.split_seqs == 0 && seqs[0].n_chunks == 0 && v1.max_n_q == 9 && v1.max_clusters == 32 && v1.max_members == 8,
              "version 1 plans no split and bounds the batch");
  plan_attention_call(seqs.data(), 3, 64, 100, v2);
  suite.check(v2.split_seqs == 2 && seqs[0].n_chunks == 10 && seqs[1].n_chunks == 0 && seqs[2].n_chunks == 1 &&
                  seqs[0].partial_slot == 0 && v2.partial_slots == 10 && v2.max_chunks == 10 && v2.max_tasks == 4,
              "version 2 splits one-query sequences into chunks with their own partial slots");
  AttentionParams v3;
  v3.version = 3;
  plan_attention_call(seqs.data(), 3, 64, 100, v3);
  suite.check(v3.split_seqs == 2 && seqs[0].n_chunks == 10 && seqs[1].n_chunks == 0 && v3.partial_slots == 10 && v3.max_chunks == 10,
              "version 3 plans one-query sequences as version 2 does");
}

}  // namespace

int main() {
  Suite suite("attention_plan");
  check_accessor(suite);
  check_chunking(suite);
  uint32_t seed = 500;
  for (DType kv : {DType::F32, DType::F16}) {
    for (const auto& s : decode_shapes()) check_tasks(suite, s, kv, seed++);
    check_tasks(suite, {1, 10, 32, 32, 256, 16, 4}, kv, seed++);  // f32 rows of 1 KiB: no decode kernel
  }

  auto cpu = make_cpu_backend(0);
  for (DType kv : {DType::F32, DType::F16})
    for (const auto& s : decode_shapes()) {
      const auto problem = make_attention_problem(s, seed++, kv);
      const float scale = 1.0f / std::sqrt(float(s.head_dim));
      const auto want = attention_ref(problem, scale);
      const auto v1 = run_attention(*cpu, problem, scale);
      for (int chunk : awkward_chunks(s.pos0 + 1)) {
        const AttentionRun run{2, chunk};
        const auto v2 = run_attention(*cpu, problem, scale, run);
        const std::string what = run.name() + ", " + dtype_name(kv) + " cache, " + s.name();
        suite.check_close(relative_error(v2, want), 1e-5, "split-KV " + what);
        suite.check_close(relative_error(v2, v1), 1e-5, "split-KV = version 1, " + what);
      }
    }

  // A mixed batch under version 2: prompts take version 1, one-query sequences are split.
  {
    std::vector<AttentionProblem> problems;
    for (const auto& shape : attention_batch_shapes()) problems.push_back(make_attention_problem(shape, seed++, DType::F16));
    std::vector<const AttentionProblem*> batch;
    for (const auto& p : problems) batch.push_back(&p);
    for (int chunk : {0, 5, 64}) {
      const AttentionRun run{2, chunk};
      const auto outs = run_attention_batch(*cpu, batch, 0.125f, run);
      for (size_t i = 0; i < problems.size(); ++i)
        suite.check_close(relative_error(outs[i], attention_ref(problems[i], 0.125f)), 1e-5,
                          "mixed batch " + run.name() + ", sequence " + std::to_string(i) + ": " + problems[i].shape.name());
    }
  }

  // Sharp softmax, chunks with far-apart maxima, missing K and V pages (never read: masked keys,
  // zero values) and rows that see no key (zeros), in every version.
  for (DType kv : {DType::F32, DType::F16})
    for (const AttentionEdgeCase& edge : attention_edge_cases(kv, seed += 100)) {
      const float scale = 1.0f / std::sqrt(float(edge.problem.shape.head_dim));
      const auto want = attention_ref(edge.problem, scale);
      for (const AttentionRun& run : edge.runs)
        suite.check_close(relative_error(run_attention(*cpu, edge.problem, scale, run), want), attention_tolerance(edge.problem.shape, kv, 1),
                          edge.name + ", " + run.name() + ", " + dtype_name(kv) + " cache, " + edge.problem.shape.name());
    }

  // A split plan without its partials buffer is refused before any kernel runs.
  {
    const auto problem = make_attention_problem({1, 300, 8, 8, 64, 16, 2}, seed++);
    bool typed = false;
    try {
      AttentionParams a;
      a.version = 2;
      a.split_seqs = 1;
      a.partial_slots = 3;
      a.q = problem.q.data();
      a.out = const_cast<float*>(problem.q.data());
      a.pool = problem.q.data();
      SequenceAttention sa;
      a.seqs = &sa;
      a.n_seqs = 1, a.n_heads = 8, a.n_kv_heads = 8, a.head_dim = 64, a.page_tokens = 16;
      a.max_n_q = 1, a.max_clusters = 2, a.max_members = 4;
      cpu->attention(a);
    } catch (const Error& e) {
      typed = e.code() == ErrorCode::InvalidArgument;
    }
    suite.check(typed, "a split plan without partials throws InvalidArgument");
  }
  return suite.finish();
}
