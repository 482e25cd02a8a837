// The read bandwidth of one CPU thread: a streaming read of a buffer far larger than the caches,
// in GB/s of bytes read, by wall time and by the thread's CPU time. It is the ceiling of decoding on one thread (every weight and cached key
// and value is read once per token), which scripts/bench-llama-cpp.mjs compares decode with.
//   bench_read [--mib N]   (default 1024)
// The read is the dispatched f32 dot product of the buffer with itself: one stream of loads.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <ctime>
#include <vector>

#include "core/timing.h"
#include "cpu/simd.h"

namespace {
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}
}  // namespace

int main(int argc, char** argv) {
  size_t mib = 1024;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--mib" && i + 1 < argc) {
      mib = size_t(std::strtoull(argv[++i], nullptr, 10));
    } else {
      std::fprintf(stderr, "usage: bench_read [--mib N]\n");
      return 2;
    }
  }
  if (mib < 64) {
    std::fprintf(stderr, "bench_read: --mib must be at least 64 (a buffer far larger than the caches)\n");
    return 2;
  }
  const size_t floats = (mib << 20) / sizeof(float);
  std::vector<float> buffer(floats, 1.0f);
  const chai::VectorKernels& kernels = chai::vector_kernels();
  volatile float sink = 0;  // keeps the reads from being optimized away
  const auto read = [&] { sink = sink + kernels.f32(buffer.data(), buffer.data(), int64_t(floats)); };
  // Wall time, and the thread's CPU time: on a shared machine the second is the time the read ran.
  const double wall = chai::median_host_seconds(read, 7);
  std::vector<double> cpu;
  for (int r = 0; r < 7; ++r) {
    const double start = thread_cpu_seconds();
    read();
    cpu.push_back(thread_cpu_seconds() - start);
  }
  std::sort(cpu.begin(), cpu.end());
  const double bytes = double(floats * sizeof(float));
  std::printf("{\"readGbps\":%.2f,\"readGbpsCpuTime\":%.2f,\"bytes\":%.0f,\"threads\":1,\"kernels\":\"%s\"}\n", bytes / wall / 1e9,
              bytes / cpu[cpu.size() / 2] / 1e9, bytes, chai::simd_level_name(chai::simd_level()));
  return 0;
}
