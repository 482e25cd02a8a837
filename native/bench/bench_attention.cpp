// Attention microbenchmark: CHAI (k clusters) against full attention on a LLaMA-7B head shape
// (32 heads of 128), decode (one query over a context) and prefill (every position of a prompt),
// on every available backend. Prints time, GB/s (decode: K and V bytes read) or GFLOP/s (prefill),
// % of a copy-bandwidth ceiling measured in the same run, and the full/CHAI time ratio beside the
// ideal 2H/(k+H) of memory-bound decoding. Writes JSON.
//   bench_attention [--out FILE.json] [--threads N] [--quick]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/backend.h"
#include "cpu/simd.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

constexpr int kHeads = 32, kHeadDim = 128, kPage = 16;



// `batch` sequences of `context` tokens on a backend, each with its own pages: V pages for every
// head, K pages for the representatives only (clusters of consecutive heads; k = 32 is full
// attention), all queried in one attention call.
struct Problem {
  int context, n_q, clusters, batch;
  DType kv;
  std::unique_ptr<DeviceBuffer> pool, tables, q, out, csr, seqs;
  AttentionParams params;
  size_t kv_bytes_read = 0;
  double flops = 0;
};

Problem make_problem(Backend& be, int context, int n_q, int clusters, int batch, DType kv) {
  Problem p{context, n_q, clusters, batch, kv, {}, {}, {}, {}, {}, {}, {}, 0, 0};
  const int pages = (context + kPage - 1) / kPage;
  const size_t table_ints = size_t(kHeads) * pages;
  std::vector<int32_t> tables(2 * table_ints * batch, -1);  // per sequence: K table, then V table
  std::vector<int32_t> csr;
  int32_t next = 0;
  for (int c = 0; c < clusters; ++c) csr.push_back(c * kHeads / clusters);
  for (int c = 0; c <= clusters; ++c) csr.push_back(c * kHeads / clusters);
  for (int h = 0; h < kHeads; ++h) csr.push_back(h);
  for (int b = 0; b < batch; ++b) {
    int32_t* k_table = tables.data() + 2 * table_ints * b;
    int32_t* v_table = k_table + table_ints;
    for (int c = 0; c < clusters; ++c)
      for (int pg = 0; pg < pages; ++pg) k_table[size_t(csr[size_t(c)]) * pages + pg] = next++;
    for (int h = 0; h < kHeads; ++h)
      for (int pg = 0; pg < pages; ++pg) v_table[size_t(h) * pages + pg] = next++;
  }
  auto pool_values = random_nonzero(size_t(next) * kPage * kHeadDim, 1);
  std::vector<uint16_t> pool_half;
  if (kv == DType::F16)
    for (float v : pool_values) pool_half.push_back(f32_to_f16(v));
  const auto q_host = random_nonzero(size_t(batch) * n_q * kHeads * kHeadDim, 2);
  auto up = [&](const void* data, size_t bytes) {
    auto buffer = std::make_unique<DeviceBuffer>(be, bytes);
    be.upload(buffer->get(), data, bytes);
    return buffer;
  };
  p.pool = kv == DType::F16 ? up(pool_half.data(), pool_half.size() * 2) : up(pool_values.data(), pool_values.size() * 4);
  p.tables = up(tables.data(), tables.size() * 4);
  p.q = up(q_host.data(), q_host.size() * 4);
  p.out = std::make_unique<DeviceBuffer>(be, q_host.size() * 4);
  p.csr = up(csr.data(), csr.size() * 4);
  const int32_t* csr_dev = static_cast<const int32_t*>(p.csr->get());
  std::vector<SequenceAttention> seqs(static_cast<size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    SequenceAttention& sa = seqs[size_t(b)];
    sa.k_table = static_cast<const int32_t*>(p.tables->get()) + 2 * table_ints * b;
    sa.v_table = sa.k_table + table_ints;
    sa.reps = csr_dev;
    sa.offsets = csr_dev + clusters;
    sa.members = csr_dev + 2 * clusters + 1;
    sa.q_row = b * n_q;
    sa.n_q = n_q;
    sa.pos0 = context - n_q;
    sa.max_pages = pages;
    sa.n_clusters = clusters;
  }
  p.seqs = up(seqs.data(), seqs.size() * sizeof(SequenceAttention));
  AttentionParams& a = p.params;
  a.q = static_cast<const float*>(p.q->get());
  a.out = static_cast<float*>(p.out->get());
  a.n_heads = kHeads;
  a.n_kv_heads = kHeads;
  a.head_dim = kHeadDim;
  a.scale = 1.0f / std::sqrt(float(kHeadDim));
  a.pool = p.pool->get();
  a.kv_dtype = kv;
  a.page_tokens = kPage;
  a.seqs = static_cast<const SequenceAttention*>(p.seqs->get());
  a.n_seqs = batch;
  a.max_n_q = n_q;
  a.max_clusters = clusters;
  a.max_members = kHeads / clusters + (kHeads % clusters ? 1 : 0);
  // Keys visited by all queries of one sequence: Σ_i (pos0 + i + 1).
  const double keys = double(n_q) * (context - n_q) + double(n_q) * (n_q + 1) / 2;
  p.kv_bytes_read = size_t(double(clusters + kHeads) * context * dtype_row_bytes(kv, kHeadDim) * batch);
  p.flops = 2.0 * keys * kHeadDim * (clusters + kHeads) * batch;  // q·k per cluster, p·v per head
  return p;
}

struct Row {
  std::string backend, phase, kv;
  int context, n_q, clusters, batch;
  double seconds, gbps, gflops, ceiling_pct, full_over_chai, ideal;
};

}  // namespace

int main(int argc, char** argv) {
  bench::Args args;
  if (!bench::parse_args(argc, argv, "bench_attention", &args)) return 2;
  const std::string& out_path = args.out_path;
  const int threads = args.threads;
  const bool quick = args.quick;
  const auto backends = bench::available_backends(threads);

  const std::vector<int> decode_contexts = quick ? std::vector<int>{512, 2048} : std::vector<int>{512, 1024, 2048, 4096, 8192, 16384, 32768};
  const std::vector<int> prefill_lengths = quick ? std::vector<int>{256} : std::vector<int>{512, 1024, 2048};
  const std::vector<int> cluster_counts = {1, 2, 4, 8, 16};
  std::vector<Row> rows;
  for (auto& be : backends) {
    const bool gpu = be->name() != "cpu";
    const double ceiling = bench::copy_ceiling_gbps(*be);
    auto run = [&](const char* phase, int context, int n_q, int batch, DType kv) {
      Problem full = make_problem(*be, context, n_q, kHeads, batch, kv);
      const int reps = gpu ? 50 : (n_q > 1 ? 3 : context >= 8192 ? 9 : 15);
      auto time_of = [&](Problem& p) {
        return bench::median_seconds([&] { be->attention(p.params), be->synchronize(); }, reps);
      };
      const double full_s = time_of(full);
      auto add = [&](const Problem& p, double s, double full_seconds) {
        const double gbps = double(p.kv_bytes_read) / s / 1e9;
        rows.push_back({be->name(), phase, dtype_name(kv), context, n_q, p.clusters, batch, s, gbps, p.flops / s / 1e9,
                        100 * gbps / ceiling, full_seconds / s, 2.0 * kHeads / (p.clusters + kHeads)});
      };
      add(full, full_s, full_s);
      for (int k : cluster_counts) {
        if (!gpu && k != 4 && !quick && std::string(phase) == "prefill") continue;
        Problem chai = make_problem(*be, context, n_q, k, batch, kv);
        add(chai, time_of(chai), full_s);
      }
    };
    for (int ctx : decode_contexts) run("decode", ctx, 1, 1, DType::F32);
    // An f16 cache reads half the bytes.
    for (int ctx : quick ? std::vector<int>{2048} : std::vector<int>{2048, 8192, 32768}) run("decode", ctx, 1, 1, DType::F16);
    // Many sequences decoding at once, in one call: on the GPU the batch fills the chip.
    for (int batch : gpu ? std::vector<int>{8, 32, 64} : std::vector<int>{8})
      for (int ctx : gpu ? std::vector<int>{1024, 8192} : std::vector<int>{2048}) run("decode", ctx, 1, batch, DType::F32);
    for (int len : prefill_lengths) run("prefill", len, len, 1, DType::F32);
  }

  std::printf("\n%-7s %-7s %-4s %7s %5s %5s %8s %11s %8s %9s %7s %11s %7s\n", "backend", "phase", "kv", "context", "n_q",
              "batch", "clusters", "time(us)", "GB/s", "GFLOP/s", "%copy", "full/CHAI", "ideal");
  for (const auto& r : rows)
    std::printf("%-7s %-7s %-4s %7d %5d %5d %8d %11.1f %8.2f %9.2f %6.0f%% %11.2f %7.2f\n", r.backend.c_str(), r.phase.c_str(),
                r.kv.c_str(), r.context, r.n_q, r.batch, r.clusters, r.seconds * 1e6, r.gbps, r.gflops, r.ceiling_pct,
                r.full_over_chai, r.ideal);
  std::printf("\nSummary (decode, k = 4 of 32 heads): full/CHAI time ratio vs the ideal %.2f\n", 2.0 * kHeads / (4 + kHeads));
  for (const auto& r : rows)
    if (r.phase == "decode" && r.clusters == 4)
      std::printf("  %-7s %s cache, context %6d, batch %2d: %.2fx (%.0f%% of ideal)\n", r.backend.c_str(), r.kv.c_str(),
                  r.context, r.batch, r.full_over_chai, 100 * r.full_over_chai / r.ideal);
  if (!out_path.empty()) {
    std::ofstream f(out_path);
    f << "{\"cpu\":\"" << cpu_features() << "\",\"heads\":" << kHeads << ",\"headDim\":" << kHeadDim << ",\"rows\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      f << (i ? "," : "") << "{\"backend\":\"" << r.backend << "\",\"benchmark\":\"attention-" << r.phase
        << "\",\"kvCache\":\"" << r.kv << "\",\"context\":" << r.context << ",\"queries\":" << r.n_q << ",\"batch\":" << r.batch << ",\"clusters\":" << r.clusters
        << ",\"seconds\":" << r.seconds << ",\"gbps\":" << r.gbps << ",\"gflops\":" << r.gflops
        << ",\"percentOfCopyCeiling\":" << r.ceiling_pct << ",\"fullOverChai\":" << r.full_over_chai
        << ",\"idealRatio\":" << r.ideal << "}";
    }
    f << "]}\n";
    std::printf("wrote %s\n", out_path.c_str());
  }
  return 0;
}
