// CUDA ops against their CPU twins. Exits 77 (ctest: skipped) with the reason when no device.
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "op_runner.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

int main() {
  const CudaStatus status = cuda_status();
  if (!status.available) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", status.reason.c_str());
    return 77;
  }
  Suite suite("cuda_ops");
  const auto& dev = status.devices[0];
  std::printf("device: %s (sm_%d%d)\n", dev.name.c_str(), dev.compute_major, dev.compute_minor);
  auto cpu = make_cpu_backend(0);
  auto gpu = make_cuda_backend(0);

  uint32_t seed = 100;
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    for (const auto& s : matmul_shapes()) {
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
  for (auto [n, d] : {std::pair{1, 1}, {1, 64}, {3, 7}, {17, 172}, {64, 1000}, {5, 4097}}) {
    const auto x = random_nonzero(size_t(n) * d, seed++, 3.0f);
    const auto g = random_nonzero(size_t(d), seed++);
    const std::string shape = " n=" + std::to_string(n) + " d=" + std::to_string(d);
    suite.check_close(relative_error(run_rmsnorm(*gpu, x, g, n, d, 1e-5f), run_rmsnorm(*cpu, x, g, n, d, 1e-5f)), 1e-5,
                      "rmsnorm" + shape);
    suite.check_close(relative_error(run_softmax(*gpu, x, n, d), run_softmax(*cpu, x, n, d)), 1e-5, "softmax" + shape);
  }

  // Errors are typed and leave the device usable.
  bool oom_typed = false;
  try {
    DeviceBuffer huge(*gpu, size_t(1) << 50);
  } catch (const Error& e) {
    oom_typed = e.code() == ErrorCode::DeviceOom;
  }
  suite.check(oom_typed, "a 1 PiB allocation throws DeviceOom");
  {
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
