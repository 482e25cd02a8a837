// What every microbenchmark shares: the copy-bandwidth ceiling, the backends, the command line.
#pragma once
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/timing.h"

namespace chai::bench {

// A 256 MiB copy within the backend's memory, counting bytes read and written, in GB/s.
inline double copy_ceiling_gbps(Backend& be) {
  const size_t bytes = size_t(256) << 20;
  DeviceBuffer a(be, bytes), b(be, bytes);
  std::vector<char> host(bytes, 1);
  be.upload(a.get(), host.data(), bytes);
  // Host-timed: a copy synchronizes itself, so it cannot be captured for device timing.
  const double s = median_host_seconds(
      [&] {
        be.copy(b.get(), a.get(), bytes);
        be.synchronize();
      },
      5);
  return 2.0 * double(bytes) / s / 1e9;
}

// The CPU backend, and CUDA device 0 when one works (else a printed reason).
inline std::vector<std::unique_ptr<Backend>> available_backends(int cpu_threads) {
  std::vector<std::unique_ptr<Backend>> backends;
  backends.push_back(make_cpu_backend(cpu_threads));
  const CudaStatus cuda = cuda_status();
  if (cuda.available) backends.push_back(make_cuda_backend(0));
  else std::printf("CUDA not benchmarked: %s\n", cuda.reason.c_str());
  return backends;
}

struct Args {
  std::string out_path;
  int threads = 0;
  bool quick = false;
  int version = 0;  // kernel version to time (0: the default, or what the environment selects)
};

// [--out FILE.json] [--threads N] [--quick] [--version N]; returns false (after printing usage)
// on anything else.
inline bool parse_args(int argc, char** argv, const char* name, Args* args) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out" && i + 1 < argc) args->out_path = argv[++i];
    else if (a == "--threads" && i + 1 < argc) args->threads = std::stoi(argv[++i]);
    else if (a == "--quick") args->quick = true;
    else if (a == "--version" && i + 1 < argc) args->version = std::stoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: %s [--out FILE.json] [--threads N] [--quick] [--version N]\n", name);
      return false;
    }
  }
  return true;
}

}  // namespace chai::bench
