// Microbenchmark of the matrix multiply. Writes JSON with --out.
//   bench_ops [--out FILE.json] [--threads N] [--quick] [--version N]
// CPU backend: decode- (one token) and prefill-shaped products against the CPU copy ceiling.
// CUDA, matmul version N (default: CHAI_MATMUL_VERSION, else 1), inputs generated on the device:
// - the ceiling: a streaming-read kernel over 1 GiB (2 GiB without --quick), in GB/s of bytes read;
// - GEMM 4096³ with F16 weights (x f32, as the engine has it; also BF16 and Q8_0 without
//   --quick) in TFLOP/s;
// - decode GEMV (one token, and 8 without --quick; LLaMA-7B's 4096×4096 and 11008×4096; F16,
//   Q8_0, Q4_0, Q4_K, Q6_K: the types bench_device.h generates) in GB/s of the bytes it must read
//   and % of the read ceiling.
// Every CUDA product is first checked against the CPU twin on its first rows, within the bound
// of its path (matmul_bounds.h); one that fails is reported, not timed, and the exit status is 1.
// CUDA times are event times of graph replays (cuda/graph_timing.h) cycling over weight copies
// that together exceed the L2 cache three times, so that decode rows read device memory, not the
// cache.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "core/backend.h"
#include "cpu/simd.h"
#include "matmul_bounds.h"
#include "op_runner.h"
#include "testing.h"

#if CHAI_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/bench_device.h"
#include "cuda/cuda_check.h"
#include "cuda/graph_timing.h"
#include "cuda/kernels.h"
#include "cuda/matmul_v2.h"
#endif

using namespace chai;
using namespace chai::testing;

namespace {

struct Row {
  std::string backend, op, dtype;
  int version, n, m, k;
  double ms, bytes, gbps, tflops, ceiling_gbps;
  double rel_err = -1, bound = -1;  // the pre-timing check (CUDA rows)
  bool checked = true;
};

// The CPU backend through the Backend interface; its ceiling is a copy (bytes read and written).
std::vector<Row> cpu_rows(int threads, bool quick) {
  auto cpu = make_cpu_backend(threads);
  const double ceiling = bench::copy_ceiling_gbps(*cpu);
  const int reps = quick ? 3 : 15;
  const std::vector<MatmulShape> shapes = quick ? std::vector<MatmulShape>{{1, 1024, 1024}, {32, 1024, 1024}}
                                                : std::vector<MatmulShape>{{1, 4096, 4096}, {64, 4096, 4096}};
  std::vector<Row> rows;
  std::vector<DType> types = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};
  types.insert(types.end(), quant_types().begin(), quant_types().end());
  for (DType dt : types) {
    for (const auto& s : shapes) {
      const auto x = random_nonzero(size_t(s.n) * s.k, 1);
      const int64_t count = int64_t(s.m) * s.k;
      const HostWeights w = dtype_uses_quant_dot(dt) ? HostWeights(dt, random_quant_blocks(dt, count, 2), count)
                                                     : HostWeights(random_nonzero(size_t(count), 2), dt);
      DeviceBuffer dx(*cpu, x.size() * 4), dw(*cpu, w.bytes()), dy(*cpu, size_t(s.n) * s.m * 4);
      cpu->upload(dx.get(), x.data(), dx.bytes());
      cpu->upload(dw.get(), w.data(), dw.bytes());
      const double sec = cpu->seconds_per_call(
          [&](int) { cpu->matmul({dx.get(), DType::F32, s.n, s.k}, {dw.get(), dt, s.m, s.k}, {dy.get(), DType::F32, s.n, s.m}); },
          1, reps);
      const double bytes = double(w.bytes() + dx.bytes() + dy.bytes());
      rows.push_back({cpu->name(), "matmul", dtype_name(dt), 0, s.n, s.m, s.k, sec * 1e3, bytes, bytes / sec / 1e9,
                      2.0 * s.n * s.m * s.k / sec / 1e12, ceiling});
    }
  }
  return rows;
}

#if CHAI_WITH_CUDA

// A device allocation freed on scope exit.
struct GpuBuffer {
  void* ptr = nullptr;
  explicit GpuBuffer(size_t bytes) { cuda_check(cudaMalloc(&ptr, bytes), "cudaMalloc (bench)"); }
  ~GpuBuffer() { cudaFree(ptr); }
  GpuBuffer(const GpuBuffer&) = delete;
  GpuBuffer& operator=(const GpuBuffer&) = delete;
};

class GpuBench {
 public:
  static constexpr int kReplays = 5;  // timed replays of each graph; rows take the median

  GpuBench(int version, int cpu_threads) : version_(version), cpu_(make_cpu_backend(cpu_threads)) {
    cuda_check(cudaSetDevice(0), "cudaSetDevice");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    name_ = prop.name;
    l2_bytes_ = size_t(prop.l2CacheSize);
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~GpuBench() { cudaStreamDestroy(stream_); }

  const std::string& device_name() const { return name_; }
  double read_gbps() const { return read_gbps_; }
  size_t read_bytes() const { return read_bytes_; }

  // The ceiling every other CUDA row is compared with.
  void measure_read(size_t bytes) {
    GpuBuffer src(bytes), sink(sizeof(uint32_t));
    cuda::bench::fill_random(src.ptr, DType::F32, 1, int64_t(bytes / 4), 7, 1.0f, stream_);
    const double seconds = cuda::graph_seconds_per_call(
        [&](int) { cuda::bench::read_all(src.ptr, bytes, static_cast<uint32_t*>(sink.ptr), stream_); }, 10, kReplays, stream_);
    read_bytes_ = bytes;
    read_gbps_ = double(bytes) / seconds / 1e9;
  }

  // y[n, m] = x[n, k] · w[m, k]ᵀ: checked on up to 64 rows against the CPU twin, then timed.
  Row matmul(const char* op, DType dt, int n, int m, int k) {
    const size_t w_bytes = dtype_row_bytes(dt, k) * size_t(m);
    const size_t copies = std::max<size_t>(1, (3 * l2_bytes_ + w_bytes - 1) / w_bytes);
    std::vector<std::unique_ptr<GpuBuffer>> weights;
    for (size_t c = 0; c < copies; ++c) {
      weights.push_back(std::make_unique<GpuBuffer>(w_bytes));
      cuda::bench::fill_random(weights.back()->ptr, dt, m, k, uint32_t(11 + c), 0.05f, stream_);
    }
    GpuBuffer x(size_t(n) * k * 4), y(size_t(n) * m * 4);
    cuda::bench::fill_random(x.ptr, DType::F32, n, k, 3, 1.0f, stream_);
    auto run = [&](int i) {
      const TensorView xv{x.ptr, DType::F32, n, k}, wv{weights[size_t(i) % copies]->ptr, dt, m, k}, yv{y.ptr, DType::F32, n, m};
      if (version_ == 3) cuda::matmul_v3(xv, wv, yv, scratch_, stream_);
      else if (version_ == 2) cuda::matmul_v2(xv, wv, yv, scratch_, stream_);
      else cuda::matmul(xv, wv, yv, stream_);
    };
    Row row{"cuda:0", op, dtype_name(dt), version_, n, m, k, 0, 0, 0, 0, read_gbps_};
    row.bound = matmul_error_bound(version_, dt, n, k);
    run(0);
    row.rel_err = error_against_cpu(x.ptr, weights[0]->ptr, y.ptr, dt, std::min(n, 64), m, k);
    row.checked = std::isfinite(row.rel_err) && row.rel_err <= row.bound;
    if (!row.checked) return row;
    const int launches = int(std::max<size_t>(copies, 20) / copies * copies);
    row.ms = 1e3 * cuda::graph_seconds_per_call(run, launches, kReplays, stream_);
    row.bytes = double(w_bytes) + double(n) * k * 4 + double(n) * m * 4;
    row.gbps = row.bytes / (row.ms * 1e-3) / 1e9;
    row.tflops = 2.0 * n * m * k / (row.ms * 1e-3) / 1e12;
    return row;
  }

 private:
  // The CPU twin on the first `rows` rows of x, against the same rows of y. The CPU's quantized
  // types round activations to 8 bits where CUDA keeps them f32, so their twin multiplies the
  // decoded weights in f32 (the bounds of matmul_bounds.h are against that).
  double error_against_cpu(const void* x, const void* w, const void* y, DType dt, int rows, int m, int k) {
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    const size_t w_bytes = dtype_row_bytes(dt, k) * size_t(m);
    const DType twin_dt = dtype_uses_quant_dot(dt) ? DType::F32 : dt;
    DeviceBuffer hx(*cpu_, size_t(rows) * k * 4), hw(*cpu_, dtype_row_bytes(twin_dt, k) * size_t(m)), hy(*cpu_, size_t(rows) * m * 4);
    cuda_check(cudaMemcpy(hx.get(), x, hx.bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy");
    if (twin_dt == dt) {
      cuda_check(cudaMemcpy(hw.get(), w, w_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
    } else {
      std::vector<uint8_t> stored(w_bytes);
      cuda_check(cudaMemcpy(stored.data(), w, w_bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
      dequantize_row(dt, stored.data(), static_cast<float*>(hw.get()), int64_t(m) * k);
    }
    std::vector<float> got(size_t(rows) * m), want(size_t(rows) * m);
    cuda_check(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cpu_->matmul({hx.get(), DType::F32, rows, k}, {hw.get(), twin_dt, m, k}, {hy.get(), DType::F32, rows, m});
    cpu_->download(want.data(), hy.get(), want.size() * 4);
    return relative_error(got, want);
  }

  int version_;
  std::unique_ptr<Backend> cpu_;
  std::string name_;
  size_t l2_bytes_ = 0;
  cudaStream_t stream_ = nullptr;
  cuda::DeviceScratch scratch_;
  double read_gbps_ = 0;
  size_t read_bytes_ = 0;
};

#endif

std::string json_string(const std::string& s) { return "\"" + s + "\""; }
// JSON has no NaN or infinity: a failed check's error may be either.
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args;
  if (!bench::parse_args(argc, argv, "bench_ops", &args)) return 2;
  std::vector<Row> rows = cpu_rows(args.threads, args.quick);
  std::string device = "cpu";
  double read_gbps = 0;
  size_t read_bytes = 0;
  int version = 0;

  const CudaStatus cuda = cuda_status();
  if (!cuda.available) {
    std::printf("CUDA not benchmarked: %s\n", cuda.reason.c_str());
  } else {
#if CHAI_WITH_CUDA
    version = args.version != 0 ? args.version : cuda::matmul_version_from_env();
    if (version < 1 || version > 3) {
      std::fprintf(stderr, "bench_ops: --version must be 1, 2 or 3\n");
      return 2;
    }
    GpuBench gpu(version, args.threads);
    device = gpu.device_name();
    gpu.measure_read(size_t(args.quick ? 1 : 2) << 30);
    read_gbps = gpu.read_gbps();
    read_bytes = gpu.read_bytes();
    rows.push_back(gpu.matmul("gemm", DType::F16, 4096, 4096, 4096));
    if (!args.quick) {
      rows.push_back(gpu.matmul("gemm", DType::BF16, 4096, 4096, 4096));
      rows.push_back(gpu.matmul("gemm", DType::Q8_0, 4096, 4096, 4096));
    }
    for (DType dt : {DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K})
      for (int m : {4096, 11008}) {
        rows.push_back(gpu.matmul("gemv", dt, 1, m, 4096));
        if (!args.quick) rows.push_back(gpu.matmul("gemv", dt, 8, m, 4096));
      }
#endif
  }

  bool all_checked = true;
  std::printf("\n%-8s %-6s %-6s %3s %5s %6s %6s %10s %9s %8s %9s %10s\n", "backend", "op", "dtype", "v", "n", "m", "k",
              "time(ms)", "GB/s", "TFLOP/s", "%ceiling", "rel.err");
  for (const auto& r : rows) {
    all_checked = all_checked && r.checked;
    if (!r.checked) {
      std::printf("%-8s %-6s %-6s %3d %5d %6d %6d  CHECK FAILED: rel.err %.3e > bound %.0e (not timed)\n", r.backend.c_str(),
                  r.op.c_str(), r.dtype.c_str(), r.version, r.n, r.m, r.k, r.rel_err, r.bound);
      continue;
    }
    char err[16] = "-";
    if (r.rel_err >= 0) std::snprintf(err, sizeof err, "%.2e", r.rel_err);
    std::printf("%-8s %-6s %-6s %3d %5d %6d %6d %10.4f %9.1f %8.2f %8.0f%% %10s\n", r.backend.c_str(), r.op.c_str(),
                r.dtype.c_str(), r.version, r.n, r.m, r.k, r.ms, r.gbps, r.tflops, 100 * r.gbps / r.ceiling_gbps, err);
  }
  if (read_gbps > 0)
    std::printf("CUDA ceiling: streaming read of %.2f GiB at %.1f GB/s (%% of it above)\n", double(read_bytes) / (1 << 30), read_gbps);

  if (!args.out_path.empty()) {
    std::ofstream f(args.out_path);
    f << "{\"bench\":\"ops\",\"device\":" << json_string(device) << ",\"cpu\":" << json_string(cpu_features())
      << ",\"simd\":" << json_string(simd_level_name(simd_level())) << ",\"quick\":" << (args.quick ? "true" : "false")
      << ",\"version\":" << version << ",\"readGbps\":" << json_number(read_gbps) << ",\"readBytes\":" << read_bytes << ",\"rows\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      f << (i ? "," : "") << "{\"backend\":" << json_string(r.backend) << ",\"op\":" << json_string(r.op)
        << ",\"dtype\":" << json_string(r.dtype) << ",\"version\":" << r.version << ",\"n\":" << r.n << ",\"m\":" << r.m
        << ",\"k\":" << r.k << ",\"checked\":" << (r.checked ? "true" : "false") << ",\"relErr\":" << json_number(r.rel_err)
        << ",\"bound\":" << json_number(r.bound) << ",\"ms\":" << json_number(r.ms) << ",\"bytes\":" << json_number(r.bytes) << ",\"gbps\":" << json_number(r.gbps)
        << ",\"tflops\":" << json_number(r.tflops) << ",\"ceilingGbps\":" << json_number(r.ceiling_gbps)
        << ",\"pctOfCeiling\":" << json_number(100 * r.gbps / r.ceiling_gbps) << "}";
    }
    f << "]}\n";
    std::printf("wrote %s\n", args.out_path.c_str());
  }
  return all_checked ? 0 : 1;
}
