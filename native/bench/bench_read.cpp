// The read bandwidth of one CPU thread: a streaming read of a buffer far larger than the caches,
// in GB/s of bytes read, by wall time and by the thread's CPU time. It is the ceiling of decoding on one thread (every weight and cached key
// and value is read once per token), which scripts/bench-llama-cpp.mjs compares decode with.
//   bench_read [--mib N]   (default 1024)
// Two reads, the faster counts: the dispatched f32 dot product of the buffer with itself (one
// stream of loads), and the sum of its four quarters read side by side (four streams, as a
// matrix-vector product reading four weight rows at once does; more streams in flight keep more
// prefetches going).
#include <algorithm>
#include <chrono>
#include <utility>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <ctime>
#include <vector>

#include "cpu/simd.h"
#include "cpu/x86.h"

namespace {
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}
#if CHAI_X86
CHAI_AVX2 float sum_quarters(const float* v, int64_t n) {
  const int64_t q = n / 4;
  __m256 a[8];
  for (auto& r : a) r = _mm256_setzero_ps();
  for (int64_t i = 0; i + 16 <= q; i += 16)
    for (int s = 0; s < 4; ++s) {
      a[2 * s] = _mm256_add_ps(a[2 * s], _mm256_loadu_ps(v + s * q + i));
      a[2 * s + 1] = _mm256_add_ps(a[2 * s + 1], _mm256_loadu_ps(v + s * q + i + 8));
    }
  for (int r = 1; r < 8; ++r) a[0] = _mm256_add_ps(a[0], a[r]);
  return chai::hsum256(a[0]);
}
#else
float sum_quarters(const float* v, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += v[i];
  return s;
}
#endif

// Median wall and CPU seconds of `repeats` runs of fn, after one warm-up run.
template <typename Fn>
std::pair<double, double> median_seconds(Fn fn, int repeats) {
  fn();
  std::vector<double> wall, cpu;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = thread_cpu_seconds();
    fn();
    cpu.push_back(thread_cpu_seconds() - cpu_start);
    wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
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
  const auto one = median_seconds([&] { sink = sink + kernels.f32(buffer.data(), buffer.data(), int64_t(floats)); }, 7);
  const auto four = median_seconds([&] { sink = sink + sum_quarters(buffer.data(), int64_t(floats)); }, 7);
  // Wall time, and the thread's CPU time: on a shared machine the second is the time the read ran.
  const double bytes = double(floats * sizeof(float));
  std::printf("{\"readGbps\":%.2f,\"readGbpsCpuTime\":%.2f,\"oneStreamGbpsCpuTime\":%.2f,\"fourStreamsGbpsCpuTime\":%.2f,"
              "\"bytes\":%.0f,\"threads\":1,\"kernels\":\"%s\"}\n",
              bytes / std::min(one.first, four.first) / 1e9, bytes / std::min(one.second, four.second) / 1e9, bytes / one.second / 1e9,
              bytes / four.second / 1e9, bytes, chai::simd_level_name(chai::simd_level()));
  return 0;
}
