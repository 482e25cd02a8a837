// Attention microbenchmark: CHAI (k clusters) against full attention on a LLaMA-7B head shape
// (32 heads of 128, f16 cache), decode (one query over a context, batch 1 and 16) and causal
// prefill, for one attention version on the GPU (the CPU when no GPU is usable). The version is
// first checked against the CPU twin on a small batch; then each row prints time, the bytes the
// kernel must read (K of the representatives and V of every head), GB/s and % of a copy ceiling
// measured in the same run (decode) or TFLOP/s (prefill), and the full/CHAI time ratio.
// Times are the backend's (Backend::seconds_per_call): on the GPU kernel time from CUDA events
// around graph replays, without launch or synchronization; on the CPU the host clock. A decode
// row's calls cycle over copies of its problem that together hold at least 4x the L2 cache, so
// that every call reads its K and V from device memory; a row whose bytes fit in L2 is marked
// l2_resident (such a call lasts a few microseconds, much of it ramp-up and tail) and is kept out
// of the HBM targets (scripts/gpu_results.py). Prefill rows time one problem, warm, as
// scripts/sdpa_compare.py times SDPA.
// KV pools are filled on the device (a random block copied over itself), never from host loops.
//   bench_attention [--version N | --attention-version N] [--quick] [--out FILE.json] [--threads N]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "attention_case.h"
#include "bench_common.h"
#include "core/backend.h"
#include "core/error.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

constexpr int kHeads = 32, kHeadDim = 128, kPage = 16;
constexpr DType kCache = DType::F16;

// Fills `bytes` of backend memory with f16 values in ±[0.05, 1): one random MiB uploaded, then
// doubled in place by device copies (log2(bytes / 1 MiB) copies instead of a host loop).
void fill_on_device(Backend& be, void* dst, size_t bytes, uint32_t seed) {
  const size_t block = std::min(bytes, size_t(1) << 20) / 2 * 2;
  std::vector<uint16_t> half(block / 2);
  const auto values = random_nonzero(half.size(), seed);
  for (size_t i = 0; i < half.size(); ++i) half[i] = f32_to_f16(values[i]);
  be.upload(dst, half.data(), block);
  for (size_t done = block; done < bytes;) {
    const size_t n = std::min(done, bytes - done);
    be.copy(static_cast<char*>(dst) + done, dst, n);
    done += n;
  }
}

// `batch` sequences of `context` tokens sharing one pool, each with its own pages: V pages for
// every head, K pages for the representatives only (clusters of consecutive heads; k = 32 is full
// attention), all queried in one attention call planned as the engine plans it.
struct Problem {
  std::unique_ptr<DeviceBuffer> pool, tables, q, out, clusters, seqs, partials;
  AttentionParams params;
  double bytes = 0, flops = 0;
};

Problem make_problem(Backend& be, int version, int context, int n_q, int clusters, int batch) {
  Problem p;
  const int pages = (context + kPage - 1) / kPage;
  const size_t table_ints = size_t(kHeads) * pages;
  std::vector<int32_t> reps, offsets, members;
  for (int c = 0; c < clusters; ++c) reps.push_back(c * kHeads / clusters);
  for (int c = 0; c <= clusters; ++c) offsets.push_back(c * kHeads / clusters);
  for (int h = 0; h < kHeads; ++h) members.push_back(h);
  const PackedClusters packed = pack_clusters(reps, offsets, members, kHeads, kHeads, kHeadDim, kCache);
  std::vector<int32_t> tables(2 * table_ints * batch, -1);  // per sequence: K table, then V table
  int32_t next = 0;
  for (int b = 0; b < batch; ++b) {
    int32_t* k_table = tables.data() + 2 * table_ints * b;
    int32_t* v_table = k_table + table_ints;
    for (int32_t rep : reps)
      for (int pg = 0; pg < pages; ++pg) k_table[size_t(rep) * pages + pg] = next++;
    for (int h = 0; h < kHeads; ++h)
      for (int pg = 0; pg < pages; ++pg) v_table[size_t(h) * pages + pg] = next++;
  }
  auto up = [&](const void* data, size_t bytes) {
    auto buffer = std::make_unique<DeviceBuffer>(be, bytes);
    be.upload(buffer->get(), data, bytes);
    return buffer;
  };
  const size_t row_bytes = dtype_row_bytes(kCache, kHeadDim);
  p.pool = std::make_unique<DeviceBuffer>(be, size_t(next) * kPage * row_bytes);
  fill_on_device(be, p.pool->get(), p.pool->bytes(), 1);
  p.tables = up(tables.data(), tables.size() * 4);
  const size_t q_floats = size_t(batch) * n_q * kHeads * kHeadDim;
  p.q = up(random_nonzero(q_floats, 2).data(), q_floats * 4);
  p.out = std::make_unique<DeviceBuffer>(be, q_floats * 4);
  p.clusters = up(packed.data.data(), packed.data.size() * 4);
  std::vector<SequenceAttention> seqs(static_cast<size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    SequenceAttention& sa = seqs[size_t(b)];
    sa.k_table = static_cast<const int32_t*>(p.tables->get()) + 2 * table_ints * b;
    sa.v_table = sa.k_table + table_ints;
    point_clusters(sa, packed, static_cast<const int32_t*>(p.clusters->get()));
    sa.q_row = b * n_q;
    sa.n_q = n_q;
    sa.pos0 = context - n_q;
    sa.max_pages = pages;
  }
  AttentionParams& a = p.params;
  a.version = version;
  a.n_heads = kHeads;
  a.n_kv_heads = kHeads;
  a.head_dim = kHeadDim;
  a.kv_dtype = kCache;
  a.page_tokens = kPage;
  plan_attention_call(seqs.data(), batch, be.attention_fill_blocks(a), 0, a);
  p.seqs = up(seqs.data(), seqs.size() * sizeof(SequenceAttention));
  if (a.partial_slots > 0) {
    p.partials = std::make_unique<DeviceBuffer>(be, partial_floats(a.partial_slots, kHeads, kHeadDim) * 4);
    a.partials = static_cast<float*>(p.partials->get());
  }
  a.q = static_cast<const float*>(p.q->get());
  a.out = static_cast<float*>(p.out->get());
  a.scale = 1.0f / std::sqrt(float(kHeadDim));
  a.pool = p.pool->get();
  a.seqs = static_cast<const SequenceAttention*>(p.seqs->get());
  a.n_seqs = batch;
  // Every K row of the representatives and every V row, once; and the flops of the causal
  // rows: q·k per cluster and p·v per head over Σ_i (pos0 + i + 1) keys.
  p.bytes = double(clusters + kHeads) * context * row_bytes * batch;
  const double keys = double(n_q) * (context - n_q) + double(n_q) * (n_q + 1) / 2;
  p.flops = 2.0 * keys * kHeadDim * (clusters + kHeads) * batch;
  return p;
}

// The version under test against the CPU twin (version 1) on small problems of one phase
// (decode: one query; prefill: a prompt), so that a failing kernel keeps only its own rows untimed.
bool check_against_cpu(Backend& be, int version, bool decode) {
  auto cpu = make_cpu_backend(0);
  bool ok = true;
  uint32_t seed = decode ? 10 : 20;
  const std::vector<AttentionShape> shapes =
      decode ? std::vector<AttentionShape>{{1, 999, kHeads, kHeads, kHeadDim, kPage, 4}, {1, 2047, kHeads, kHeads, kHeadDim, kPage, kHeads}}
             : std::vector<AttentionShape>{{77, 50, kHeads, kHeads, kHeadDim, kPage, 4}, {130, 0, kHeads, kHeads, kHeadDim, kPage, kHeads}};
  for (const AttentionShape& s : shapes) {
    const auto problem = make_attention_problem(s, seed++, kCache);
    const float scale = 1.0f / std::sqrt(float(kHeadDim));
    const double err = relative_error(run_attention(be, problem, scale, AttentionRun{version, 0}),
                                      run_attention(*cpu, problem, scale));
    const bool pass = std::isfinite(err) && err <= attention_tolerance(s, kCache, version);
    std::printf("%s version %d on %s vs the CPU twin, %s: rel.err %.2e\n", pass ? "ok  " : "FAIL", version, be.name().c_str(),
                s.name().c_str(), err);
    ok &= pass;
  }
  return ok;
}

struct Row {
  std::string name, phase;
  int context, n_q, batch, clusters;
  double ms, bytes, gb_per_s, tflops, percent_of_copy, ratio_vs_full;
  int copies;        // problems the timed calls cycled over
  bool l2_resident;  // one call's bytes fit in the device's L2 cache
};

// Decode calls cycle over copies of their problem holding this many times the L2 cache, and a
// graph replay reads at least kReplayBytes, so that one replay's start and end weigh little.
constexpr double kL2Multiple = 4;
constexpr double kReplayBytes = double(size_t(1) << 30);
constexpr int kGpuReplays = 5, kCpuRepeats = 3;

struct Options {
  int version = 1;
  bool quick = false;
  int threads = 0;
  std::string out;
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--version" || a == "--attention-version") && i + 1 < argc) o->version = std::atoi(argv[++i]);
    else if (a == "--out" && i + 1 < argc) o->out = argv[++i];
    else if (a == "--threads" && i + 1 < argc) o->threads = std::atoi(argv[++i]);
    else if (a == "--quick") o->quick = true;
    else return false;
  }
  return o->version >= 1 && o->version <= kAttentionVersions;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, &opt)) {
    std::fprintf(stderr, "usage: bench_attention [--version 1..%d | --attention-version N] [--quick] [--out FILE.json] [--threads N]\n",
                 kAttentionVersions);
    return 2;
  }
  try {
    const CudaStatus cuda = cuda_status();
    std::unique_ptr<Backend> be;
    if (cuda.available) be = make_cuda_backend(0);
    else {
      std::printf("CUDA not usable (%s): benchmarking the CPU at reduced sizes\n", cuda.reason.c_str());
      be = make_cpu_backend(opt.threads);
    }
    const bool gpu = cuda.available;
    const size_t l2_bytes = gpu ? cuda.devices[0].l2_cache_bytes : 0;
    const bool decode_ok = check_against_cpu(*be, opt.version, true), prefill_ok = check_against_cpu(*be, opt.version, false);
    for (const char* phase : {decode_ok ? nullptr : "decode", prefill_ok ? nullptr : "prefill"})
      if (phase) std::fprintf(stderr, "attention version %d disagrees with its CPU twin on %s: not timed\n", opt.version, phase);
    const double ceiling = bench::copy_ceiling_gbps(*be);
    std::printf("copy ceiling (read + write): %.1f GB/s\n", ceiling);

    std::vector<int> contexts, batches, cluster_counts = {kHeads, 4}, prompts;
    if (gpu) {
      contexts = opt.quick ? std::vector<int>{8192, 32768} : std::vector<int>{2048, 8192, 16384, 32768};
      batches = opt.quick ? std::vector<int>{1, 16} : std::vector<int>{1, 16, 64};
      prompts = opt.quick ? std::vector<int>{4096} : std::vector<int>{1024, 4096, 8192};
      if (!opt.quick) cluster_counts = {kHeads, 1, 2, 4, 8, 16};
    } else {
      contexts = opt.quick ? std::vector<int>{2048} : std::vector<int>{2048, 8192};
      batches = {1, 4};
      prompts = {opt.quick ? 256 : 512};
    }
    std::vector<Row> rows;
    auto run = [&](const char* phase, int context, int n_q, int batch) {
      const bool decode = n_q == 1;
      double full_ms = 0;
      for (int k : cluster_counts) {
        std::vector<Problem> problems;
        problems.push_back(make_problem(*be, opt.version, context, n_q, k, batch));
        const double bytes = problems[0].bytes;
        const int copies = decode && gpu ? std::max(1, int(std::ceil(kL2Multiple * double(l2_bytes) / bytes))) : 1;
        while (int(problems.size()) < copies) problems.push_back(make_problem(*be, opt.version, context, n_q, k, batch));
        const int calls = gpu ? copies * int(std::ceil(kReplayBytes / (bytes * copies))) : 1;
        const double s = be->seconds_per_call([&](int i) { be->attention(problems[size_t(i % copies)].params); }, calls,
                                              gpu ? kGpuReplays : kCpuRepeats);
        if (k == kHeads) full_ms = s * 1e3;
        const double gbps = bytes / s / 1e9;
        const std::string name = std::string("attention-") + phase + (k == kHeads ? "-full" : "-chai-k" + std::to_string(k));
        rows.push_back({name, phase, context, n_q, batch, k, s * 1e3, bytes, gbps, problems[0].flops / s / 1e12,
                        100 * gbps / ceiling, full_ms / (s * 1e3), copies, bytes <= double(l2_bytes)});
      }
    };
    if (decode_ok)
      for (int batch : batches)
        for (int ctx : contexts) run("decode", ctx, 1, batch);
    if (prefill_ok)
      for (int len : prompts) run("prefill", len, len, 1);

    std::printf("\n%-26s %7s %5s %5s %9s %10s %8s %7s %8s %9s %6s %3s\n", "name", "context", "n_q", "batch", "ms", "MB read",
                "GB/s", "%copy", "TFLOP/s", "full/this", "copies", "L2");
    for (const Row& r : rows)
      std::printf("%-26s %7d %5d %5d %9.3f %10.1f %8.1f %6.0f%% %8.2f %9.2f %6d %3s\n", r.name.c_str(), r.context, r.n_q, r.batch,
                  r.ms, r.bytes / 1e6, r.gb_per_s, r.percent_of_copy, r.tflops, r.ratio_vs_full, r.copies,
                  r.l2_resident ? "yes" : "");
    if (gpu)
      std::printf("L2 cache %.1f MB: rows marked L2 fit in it and are not HBM measurements\n", double(l2_bytes) / 1e6);
    std::printf("\nCHAI k=4 / full speed (decode; memory-bound ideal %.2f):\n", 2.0 * kHeads / (4 + kHeads));
    for (const Row& r : rows)
      if (r.phase == "decode" && r.clusters == 4)
        std::printf("  context %6d, batch %2d: %.2fx\n", r.context, r.batch, r.ratio_vs_full);

    if (!opt.out.empty()) {
      std::ofstream f(opt.out);
      f << "{\"backend\":\"" << be->name() << "\",\"version\":" << opt.version << ",\"heads\":" << kHeads
        << ",\"headDim\":" << kHeadDim << ",\"kvCache\":\"" << dtype_name(kCache) << "\",\"copyCeilingGbps\":" << ceiling
        << ",\"l2CacheBytes\":" << l2_bytes << ",\"rows\":[";
      for (size_t i = 0; i < rows.size(); ++i) {
        const Row& r = rows[i];
        f << (i ? "," : "") << "{\"name\":\"" << r.name << "\",\"backend\":\"" << be->name() << "\",\"version\":" << opt.version
          << ",\"shape\":{\"context\":" << r.context
          << ",\"queries\":" << r.n_q << ",\"batch\":" << r.batch << ",\"heads\":" << kHeads << ",\"clusters\":" << r.clusters
          << ",\"headDim\":" << kHeadDim << ",\"causal\":true},\"ms\":" << r.ms << ",\"bytes\":" << r.bytes
          << ",\"gb_per_s\":" << r.gb_per_s << ",\"tflops\":" << r.tflops << ",\"percent_of_copy\":" << r.percent_of_copy
          << ",\"ratio_vs_full\":" << r.ratio_vs_full << ",\"copies\":" << r.copies
          << ",\"l2_resident\":" << (r.l2_resident ? "true" : "false") << "}";
      }
      f << "]}\n";
      std::printf("wrote %s\n", opt.out.c_str());
    }
    if (!decode_ok || !prefill_ok) return 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_attention: %s (%s)\n", e.what(), error_code_name(e.code()));
    return 1;
  }
  return 0;
}
