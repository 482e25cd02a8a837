// Microbenchmark of the matrix multiply on every available backend: decode-shaped (one token,
// bandwidth-bound) and prefill-shaped (many tokens). Prints time, GB/s and GFLOP/s against a
// bandwidth ceiling measured in the same run, and writes JSON.
//   bench_ops [--out FILE.json] [--threads N] [--quick]
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/backend.h"
#include "cpu/simd.h"
#include "op_runner.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {




struct Row {
  std::string backend, op, dtype;
  int n, m, k;
  double seconds, gbps, gflops, ceiling_gbps;
};

}  // namespace

int main(int argc, char** argv) {
  bench::Args args;
  if (!bench::parse_args(argc, argv, "bench_ops", &args)) return 2;
  const std::string& out_path = args.out_path;
  const int threads = args.threads;
  const bool quick = args.quick;

  const auto backends = bench::available_backends(threads);

  const int reps = quick ? 3 : 15;
  const std::vector<MatmulShape> shapes = quick ? std::vector<MatmulShape>{{1, 1024, 1024}, {32, 1024, 1024}}
                                                : std::vector<MatmulShape>{{1, 4096, 4096}, {64, 4096, 4096}};
  std::vector<Row> rows;
  for (auto& be : backends) {
    const double ceiling = bench::copy_ceiling_gbps(*be);
    std::vector<DType> types = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};
    types.insert(types.end(), quant_types().begin(), quant_types().end());
    for (DType dt : types) {
      for (const auto& s : shapes) {
        const auto x = random_nonzero(size_t(s.n) * s.k, 1);
        const int64_t count = int64_t(s.m) * s.k;
        const HostWeights w = dtype_uses_quant_dot(dt) ? HostWeights(dt, random_quant_blocks(dt, count, 2), count)
                                                       : HostWeights(random_nonzero(size_t(count), 2), dt);
        DeviceBuffer dx(*be, x.size() * 4), dw(*be, w.bytes()), dy(*be, size_t(s.n) * s.m * 4);
        be->upload(dx.get(), x.data(), dx.bytes());
        be->upload(dw.get(), w.data(), dw.bytes());
        const double sec = bench::median_seconds(
            [&] {
              be->matmul({dx.get(), DType::F32, s.n, s.k}, {dw.get(), dt, s.m, s.k}, {dy.get(), DType::F32, s.n, s.m});
              be->synchronize();
            },
            reps);
        const double bytes = double(w.bytes() + dx.bytes() + dy.bytes());
        rows.push_back({be->name(), "matmul", dtype_name(dt), s.n, s.m, s.k, sec, bytes / sec / 1e9,
                        2.0 * s.n * s.m * s.k / sec / 1e9, ceiling});
      }
    }
  }

  std::printf("\n%-8s %-7s %-6s %6s %6s %6s %10s %9s %9s %11s\n", "backend", "op", "dtype", "n", "m", "k", "time(us)",
              "GB/s", "GFLOP/s", "%copy-bw");
  for (const auto& r : rows)
    std::printf("%-8s %-7s %-6s %6d %6d %6d %10.1f %9.2f %9.2f %10s\n", r.backend.c_str(), r.op.c_str(), r.dtype.c_str(),
                r.n, r.m, r.k, r.seconds * 1e6, r.gbps, r.gflops, (std::to_string(int(100 * r.gbps / r.ceiling_gbps)) + "%").c_str());
  if (!out_path.empty()) {
    std::ofstream f(out_path);
    f << "{\"cpu\":\"" << cpu_features() << "\",\"simd\":\"" << simd_level_name(simd_level()) << "\",\"rows\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      f << (i ? "," : "") << "{\"backend\":\"" << r.backend << "\",\"op\":\"" << r.op << "\",\"dtype\":\"" << r.dtype
        << "\",\"n\":" << r.n << ",\"m\":" << r.m << ",\"k\":" << r.k << ",\"seconds\":" << r.seconds
        << ",\"gbps\":" << r.gbps << ",\"gflops\":" << r.gflops << ",\"copyCeilingGbps\":" << r.ceiling_gbps << "}";
    }
    f << "]}\n";
    std::printf("wrote %s\n", out_path.c_str());
  }
  return 0;
}
