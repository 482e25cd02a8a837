// CUDA ops against their CPU twins, in sections:
//   test_cuda_ops [matmul] [rows] [attention] [decode] [decode-v3] [prefill] [prefill-v3] [masked]     (none: all of them)
// On the simulated GPU (npm run test:gpu-sim) the attention shapes are the small set that takes the
// same paths (ShapeScale::Simulator). Exits 77 (ctest: skipped) with the reason when no device.
#include <algorithm>
#include <array>
#include <cmath>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "attention_case.h"
#include "op_runner.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

int main(int argc, char** argv) {
  const std::vector<std::string> sections(argv + 1, argv + argc);
  for (const std::string& name : sections)
    if (name != "matmul" && name != "rows" && name != "attention" && name != "decode" && name != "decode-v3" && name != "prefill" &&
        name != "prefill-v3" && name != "masked") {
      std::fprintf(stderr, "usage: test_cuda_ops [matmul] [rows] [attention] [decode] [decode-v3] [prefill] [prefill-v3] [masked]\n");
      return 2;
    }
  auto section = [&](const char* name) { return sections.empty() || std::count(sections.begin(), sections.end(), name) > 0; };
  const CudaStatus status = cuda_status();
  if (!status.available) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", status.reason.c_str());
    return 77;
  }
  Suite suite("cuda_ops");
  const auto& dev = status.devices[0];
  std::printf("device: %s (sm_%d%d)\n", dev.name.c_str(), dev.compute_major, dev.compute_minor);
  const ShapeScale shape_scale = shape_scale_for(dev.name);
  auto cpu = make_cpu_backend(0);
  auto gpu = make_cuda_backend(0);

  uint32_t seed = 100;
  if (section("matmul")) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
      for (const auto& s : dt == DType::Q8_0 ? q8_matmul_shapes() : matmul_shapes()) {
        const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
        const HostWeights w(random_nonzero(size_t(s.m) * s.k, seed++), dt);
        const auto want = run_matmul(*cpu, x, w, s.n, s.m, s.k);
        const auto got = run_matmul(*gpu, x, w, s.n, s.m, s.k);
        // Same inputs, fp32 accumulation in another order: only rounding differs.
        suite.check_close(relative_error(got, want), 1e-5,
                          std::string("matmul ") + dtype_name(dt) + " n=" + std::to_string(s.n) +
                              " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k));
      }
    }
    // Quantized weights: the GPU keeps activations f32, so its twin is the CPU's f32 matmul with the
    // dequantized weights (the CPU's own quantized path rounds activations to 8 bits).
    for (DType dt : quant_types()) {
      const int v = int(dtype_block_values(dt));
      for (const auto& s : quant_matmul_shapes(v)) {
        const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
        const HostWeights w(dt, random_quant_blocks(dt, int64_t(s.m) * s.k, seed++), int64_t(s.m) * s.k);
        const HostWeights exact(w.decoded, DType::F32);
        suite.check_close(relative_error(run_matmul(*gpu, x, w, s.n, s.m, s.k), run_matmul(*cpu, x, exact, s.n, s.m, s.k)), 1e-5,
                          std::string("matmul ") + dtype_name(dt) + " n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) +
                              " k=" + std::to_string(s.k));
      }
      const HostWeights table(dt, random_quant_blocks(dt, int64_t(11) * 2 * v, seed++), int64_t(11) * 2 * v);
      const std::vector<int32_t> tokens = {0, 10, 3, 3};
      suite.check(run_embed(*gpu, table, 11, 2 * v, tokens) == run_embed(*cpu, table, 11, 2 * v, tokens),
                  std::string("embed ") + dtype_name(dt) + " equals the CPU exactly");
    }
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
      const HostWeights table(random_nonzero(size_t(37) * 64, seed++), dt);
      const std::vector<int32_t> tokens = {0, 36, 5, 5, 17};
      suite.check(run_embed(*gpu, table, 37, 64, tokens) == run_embed(*cpu, table, 37, 64, tokens),
                  std::string("embed ") + dtype_name(dt) + " equals the CPU exactly");
    }
  }

  if (section("rows")) {
    for (auto [n, d] : {std::pair{1, 1}, {1, 64}, {3, 7}, {17, 172}, {64, 1000}, {5, 4097}}) {
      const auto x = random_nonzero(size_t(n) * d, seed++, 3.0f);
      const auto g = random_nonzero(size_t(d), seed++);
      const std::string shape = " n=" + std::to_string(n) + " d=" + std::to_string(d);
      suite.check_close(relative_error(run_rmsnorm(*gpu, x, g, n, d, 1e-5f), run_rmsnorm(*cpu, x, g, n, d, 1e-5f)), 1e-5,
                        "rmsnorm" + shape);
      suite.check_close(relative_error(run_softmax(*gpu, x, n, d), run_softmax(*cpu, x, n, d)), 1e-5, "softmax" + shape);
    }
    for (auto [n, heads, hd, pos0] : {std::array<int, 4>{1, 1, 2, 0}, {1, 8, 8, 41}, {7, 3, 64, 0}, {33, 32, 128, 1000}}) {
      const auto x = random_nonzero(size_t(n) * heads * hd, seed++);
      suite.check_close(relative_error(run_rope(*gpu, x, n, heads * hd, hd, pos0, 10000.f),
                                       run_rope(*cpu, x, n, heads * hd, hd, pos0, 10000.f)),
                        1e-6, "rope n=" + std::to_string(n) + " hd=" + std::to_string(hd) + " pos0=" + std::to_string(pos0));
    }
    for (auto [n, heads, hd, pos0] : {std::array<int, 4>{1, 1, 2, 0}, {1, 4, 16, 77}, {5, 3, 10, 3}, {33, 2, 128, 1000}}) {
      const auto x = random_nonzero(size_t(n) * heads * hd, seed++);
      auto factors = random_nonzero(size_t(hd / 2), seed++, 4.f);
      for (float& f : factors) f = 1.0f + std::fabs(f);
      for (RopeStyle style : {RopeStyle::Normal, RopeStyle::Neox})
        for (bool with_factors : {false, true}) {
          const std::vector<float> ff = with_factors ? factors : std::vector<float>{};
          suite.check_close(relative_error(run_rope(*gpu, x, n, heads * hd, hd, pos0, 5e5f, style, ff),
                                           run_rope(*cpu, x, n, heads * hd, hd, pos0, 5e5f, style, ff)),
                            1e-6, std::string("rope ") + (style == RopeStyle::Neox ? "neox" : "normal") +
                                      (with_factors ? " with factors" : "") + " n=" + std::to_string(n) +
                                      " hd=" + std::to_string(hd) + " pos0=" + std::to_string(pos0));
        }
    }
    for (auto [n, d] : {std::pair{1, 1}, {1, 16}, {3, 7}, {17, 33}}) {
      const auto x = random_nonzero(size_t(n) * d, seed++), bias = random_nonzero(size_t(d), seed++);
      suite.check_close(relative_error(run_add_bias(*gpu, x, bias, n, d), run_add_bias(*cpu, x, bias, n, d)), 1e-7,
                        "add_bias n=" + std::to_string(n) + " d=" + std::to_string(d));
    }
    for (auto [n, heads, hd] : {std::array<int, 3>{1, 1, 2}, {1, 4, 16}, {7, 3, 10}, {33, 8, 128}}) {
      const auto x = random_nonzero(size_t(n) * heads * hd, seed++, 3.0f), g = random_nonzero(size_t(hd), seed++);
      suite.check_close(relative_error(run_head_rmsnorm(*gpu, x, g, n, heads, hd, 1e-6f),
                                       run_head_rmsnorm(*cpu, x, g, n, heads, hd, 1e-6f)),
                        1e-5, "per-head rmsnorm in place n=" + std::to_string(n) + " heads=" + std::to_string(heads) +
                                  " hd=" + std::to_string(hd));
    }
    {
      const auto g = random_nonzero(3 * 173, seed++, 4.f), u = random_nonzero(3 * 173, seed++);
      suite.check_close(relative_error(run_binary(*gpu, true, g, u, 3, 173), run_binary(*cpu, true, g, u, 3, 173)), 1e-6, "swiglu");
      suite.check_close(relative_error(run_binary(*gpu, false, g, u, 3, 173), run_binary(*cpu, false, g, u, 3, 173)), 1e-7, "add");
    }
    for (auto [t0, heads, kv, hd] : {std::array<int, 4>{1, 1, 1, 8}, {5, 8, 4, 8}, {5, 32, 32, 128}, {7, 6, 2, 16}}) {
      const auto q = random_nonzero(size_t(t0) * heads * hd, seed++), k = random_nonzero(size_t(t0) * kv * hd, seed++);
      suite.check_close(relative_error(run_head_features(*gpu, q, k, t0, heads, kv, hd),
                                       run_head_features(*cpu, q, k, t0, heads, kv, hd)),
                        1e-5,
                        "head features t0=" + std::to_string(t0) + " heads=" + std::to_string(heads) + "/" + std::to_string(kv));
    }
  }

  if (section("attention")) {
    for (DType kv : {DType::F32, DType::F16})
      for (const auto& shape : attention_shapes(shape_scale)) {
        const auto problem = make_attention_problem(shape, seed++, kv);
        const float scale = 1.0f / std::sqrt(float(shape.head_dim));
        suite.check_close(relative_error(run_attention(*gpu, problem, scale), run_attention(*cpu, problem, scale)), 1e-5,
                          std::string("attention, ") + dtype_name(kv) + " cache, " + shape.name());
      }

    {
      std::vector<AttentionProblem> problems;
      for (const auto& shape : attention_batch_shapes(shape_scale)) problems.push_back(make_attention_problem(shape, seed++));
      std::vector<const AttentionProblem*> batch;
      for (const auto& p : problems) batch.push_back(&p);
      const auto gpu_out = run_attention_batch(*gpu, batch, 0.125f), cpu_out = run_attention_batch(*cpu, batch, 0.125f);
      for (size_t i = 0; i < problems.size(); ++i)
        suite.check_close(relative_error(gpu_out[i], cpu_out[i]), 1e-5,
                          "batched attention in one launch, sequence " + std::to_string(i) + ": " + problems[i].shape.name());
    }
  }
  // Every attention version against the CPU twin (version 1) at the awkward decode shapes;
  // version 2 with chunk boundaries in awkward places, then in a mixed batch.
  if (section("decode")) {
    for (DType kv : {DType::F32, DType::F16})
      for (const auto& shape : decode_shapes(shape_scale)) {
        const auto problem = make_attention_problem(shape, seed++, kv);
        const float scale = 1.0f / std::sqrt(float(shape.head_dim));
        const auto want = run_attention(*cpu, problem, scale);
        const std::string what = std::string(", ") + dtype_name(kv) + " cache, " + shape.name();
        suite.check_close(relative_error(run_attention(*gpu, problem, scale), want), 1e-5, "decode v1" + what);
        for (int chunk : awkward_chunks(shape.pos0 + 1, shape_scale)) {
          const AttentionRun run{2, chunk};
          suite.check_close(relative_error(run_attention(*gpu, problem, scale, run), want), 1e-5, "decode " + run.name() + what);
        }
      }
  }
  // Version 3 decoding against the float64 reference and the CPU twin (which runs the same plan:
  // spans, empty slots) at the awkward decode shapes with chunk boundaries in awkward places, with
  // uneven clusters (light tasks spanning several chunks), at the softmax and paging edge cases,
  // and in a mixed batch (its prompts take version 3's prefill tiles). On the simulator fewer chunk
  // sizes: 7 (many chunks, light tasks spanning several) and the whole sequence (one chunk).
  if (section("decode-v3")) {
    const bool simulated = shape_scale == ShapeScale::Simulator;
    auto check_v3 = [&](const AttentionProblem& problem, const AttentionRun& run, const std::string& what) {
      const float scale = 1.0f / std::sqrt(float(problem.shape.head_dim));
      const auto got = run_attention(*gpu, problem, scale, run);
      const double bound = attention_tolerance(problem.shape, problem.kv_dtype, run.version);
      const std::string name = what + ", " + run.name() + ", " + dtype_name(problem.kv_dtype) + " cache, " + problem.shape.name();
      suite.check_close(relative_error(got, attention_ref(problem, scale)), bound, name);
      suite.check_close(relative_error(got, run_attention(*cpu, problem, scale, run)), bound, name + " (vs CPU)");
    };
    for (DType kv : {DType::F32, DType::F16}) {
      for (const auto& shape : decode_shapes(shape_scale)) {
        const auto problem = make_attention_problem(shape, seed++, kv);
        const std::vector<int> chunks = simulated ? std::vector<int>{7, shape.pos0 + 1} : awkward_chunks(shape.pos0 + 1);
        for (int chunk : chunks) check_v3(problem, {3, chunk}, "decode");
      }
      ProblemOptions uneven;
      uneven.uneven_clusters = true;
      for (const auto& shape : decode_v3_uneven_shapes(shape_scale)) {
        const auto problem = make_attention_problem(shape, seed++, kv, uneven);
        for (int chunk : simulated ? std::vector<int>{7, 32} : std::vector<int>{0, 7, 32})
          check_v3(problem, {3, chunk}, "uneven clusters");
      }
      for (const AttentionEdgeCase& edge : attention_edge_cases(kv, seed += 100))
        if (edge.problem.shape.n_q == 1)
          for (const AttentionRun& run : version3_runs(edge.runs))
            if (!simulated || run.forced_chunk > 0) check_v3(edge.problem, run, edge.name);
    }
    std::vector<AttentionProblem> problems;
    for (const auto& shape : attention_batch_shapes(shape_scale)) problems.push_back(make_attention_problem(shape, seed++, DType::F16));
    std::vector<const AttentionProblem*> batch;
    for (const auto& p : problems) batch.push_back(&p);
    for (int chunk : {0, 5}) {
      const AttentionRun run{3, chunk};
      const auto gpu_out = run_attention_batch(*gpu, batch, 0.125f, run), cpu_out = run_attention_batch(*cpu, batch, 0.125f, run);
      for (size_t i = 0; i < problems.size(); ++i) {
        const double bound = attention_tolerance(problems[i].shape, DType::F16, 3);
        const std::string what = "mixed batch " + run.name() + ", sequence " + std::to_string(i) + ": " + problems[i].shape.name();
        suite.check_close(relative_error(gpu_out[i], attention_ref(problems[i], 0.125f)), bound, what);
        suite.check_close(relative_error(gpu_out[i], cpu_out[i]), bound, what + " (vs CPU)");
      }
    }
  }

  // (On the simulator f16 caches only: version 2 runs f32 prompts on version 1, which the
  // attention section covers, and its split-KV decoding, which the decode section does.)
  if (section("prefill")) {
    for (DType kv : {DType::F32, DType::F16})
      for (const auto& shapes : {attention_shapes(shape_scale), prefill_shapes(shape_scale)})
        if (kv == DType::F16 || shape_scale == ShapeScale::Full)
        for (const auto& shape : shapes) {
          const auto problem = make_attention_problem(shape, seed++, kv);
          const float scale = 1.0f / std::sqrt(float(shape.head_dim));
          const AttentionRun run{2, 0};
          suite.check_close(relative_error(run_attention(*gpu, problem, scale, run), run_attention(*cpu, problem, scale)),
                            attention_tolerance(shape, kv, 2),
                            std::string("attention v2, ") + dtype_name(kv) + " cache, " + shape.name());
        }
    for (DType kv : {DType::F32, DType::F16}) {
      if (kv == DType::F32 && shape_scale == ShapeScale::Simulator) continue;
      std::vector<AttentionProblem> problems;
      for (const auto& shape : attention_batch_shapes(shape_scale)) problems.push_back(make_attention_problem(shape, seed++, kv));
      std::vector<const AttentionProblem*> batch;
      for (const auto& p : problems) batch.push_back(&p);
      const auto cpu_out = run_attention_batch(*cpu, batch, 0.125f);
      for (int chunk : {0, 5, 64}) {
        const AttentionRun run{2, chunk};
        const auto gpu_out = run_attention_batch(*gpu, batch, 0.125f, run);
        for (size_t i = 0; i < problems.size(); ++i)
          suite.check_close(relative_error(gpu_out[i], cpu_out[i]), attention_tolerance(problems[i].shape, kv, 2),
                            "mixed batch " + run.name() + ", " + dtype_name(kv) + ", sequence " + std::to_string(i) + ": " +
                                problems[i].shape.name());
      }
    }

  }

  // Version 3's prompt tiles against the float64 reference and the CPU twin (f16 caches: other
  // caches take version 1, which the attention section covers), alone and in ragged batches that
  // mix prompts with decoded sequences; its edge cases (sharp softmax, missing pages, rows that see
  // no key) run in the masked section with every version.
  if (section("prefill-v3")) {
    const AttentionRun run{3, 0};
    for (const auto& shape : prefill_v3_shapes(shape_scale)) {
      const auto problem = make_attention_problem(shape, seed++, DType::F16);
      const float scale = 1.0f / std::sqrt(float(shape.head_dim));
      const auto got = run_attention(*gpu, problem, scale, run);
      const double bound = attention_tolerance(shape, DType::F16, run.version);
      const std::string what = "attention v3, f16 cache, " + shape.name();
      suite.check_close(relative_error(got, attention_ref(problem, scale)), bound, what);
      suite.check_close(relative_error(got, run_attention(*cpu, problem, scale)), bound, what + " (vs CPU)");
    }
    for (int head_dim : {64, 128}) {
      std::vector<AttentionProblem> problems;
      for (AttentionShape shape : attention_batch_shapes(shape_scale)) {
        shape.head_dim = head_dim;
        problems.push_back(make_attention_problem(shape, seed++, DType::F16));
      }
      std::vector<const AttentionProblem*> batch;
      for (const auto& p : problems) batch.push_back(&p);
      const auto gpu_out = run_attention_batch(*gpu, batch, 0.125f, run), cpu_out = run_attention_batch(*cpu, batch, 0.125f);
      for (size_t i = 0; i < problems.size(); ++i)
        suite.check_close(relative_error(gpu_out[i], cpu_out[i]), attention_tolerance(problems[i].shape, DType::F16, 3),
                          "mixed batch v3, f16, sequence " + std::to_string(i) + ": " + problems[i].shape.name());
    }
  }

  // Sharp softmax, chunks with far-apart maxima, missing K and V pages, rows that see no key: every
  // version against the float64 reference (which defines them) and against the CPU twin.
  if (section("masked"))
    for (DType kv : {DType::F32, DType::F16})
      for (const AttentionEdgeCase& edge : attention_edge_cases(kv, seed += 100)) {
        const AttentionProblem& problem = edge.problem;
        const float scale = 1.0f / std::sqrt(float(problem.shape.head_dim));
        const auto want_ref = attention_ref(problem, scale);
        const auto cpu_out = run_attention(*cpu, problem, scale);
        for (const AttentionRun& run : edge.runs) {
          const auto got = run_attention(*gpu, problem, scale, run);
          const std::string what = edge.name + ", " + run.name() + ", " + dtype_name(kv) + " cache, " + problem.shape.name();
          const double bound = attention_tolerance(problem.shape, kv, run.version);
          suite.check_close(relative_error(got, want_ref), bound, what);
          suite.check_close(relative_error(got, cpu_out), bound, what + " (vs CPU)");
        }
      }

  // Errors are typed and leave the device usable. (Not the allocation on the simulated GPU: there a
  // cudaMalloc of 1 PiB succeeds, and later kernels compute garbage.)
  if (!section("rows")) return suite.finish();
  if (shape_scale == ShapeScale::Full) {
    bool oom_typed = false;
    try {
      DeviceBuffer huge(*gpu, size_t(1) << 50);
    } catch (const Error& e) {
      oom_typed = e.code() == ErrorCode::DeviceOom;
    }
    suite.check(oom_typed, "a 1 PiB allocation throws DeviceOom");
    const auto x = random_nonzero(64, seed++);
    suite.check_close(relative_error(run_softmax(*gpu, x, 1, 64), run_softmax(*cpu, x, 1, 64)), 1e-5,
                      "device usable after the failed allocation");
  }
  bool missing_typed = false;
  try {
    make_cuda_backend(int(status.devices.size()));
  } catch (const Error& e) {
    missing_typed = e.code() == ErrorCode::DeviceUnavailable;
  }
  suite.check(missing_typed, "a device index past the last throws DeviceUnavailable");
  return suite.finish();
}
