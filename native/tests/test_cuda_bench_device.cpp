// The benchmarks' device-side helpers (cuda/bench_device.h): fill_random of every type it
// generates decodes (the library's dequantize_row) to finite values within its stated range, not
// zeros; read_all reads every 16-byte vector of a buffer, in its unrolled loop and its tail.
// Small buffers, so that it runs in seconds on the simulator. Exits 77 (ctest: skipped) with the
// reason when no device.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/dtype.h"
#include "testing.h"

#if CHAI_WITH_CUDA
#include "cuda/bench_device.h"
#include "cuda/cuda_check.h"
#endif

using namespace chai;
using namespace chai::testing;

#if CHAI_WITH_CUDA
namespace {

constexpr float kScale = 0.5f;  // not 1, so that a generator ignoring it shows

// rows × cols of `dtype` from fill_random, decoded on the host.
std::vector<float> generated(Backend& gpu, DType dtype, int rows, int cols, uint32_t seed) {
  DeviceBuffer buffer(gpu, dtype_row_bytes(dtype, cols) * size_t(rows));
  cuda::bench::fill_random(buffer.get(), dtype, rows, cols, seed, kScale, nullptr);
  cuda_check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");  // the backend downloads on its own stream
  std::vector<uint8_t> stored(buffer.bytes());
  gpu.download(stored.data(), buffer.get(), stored.size());
  std::vector<float> values(size_t(rows) * cols);
  dequantize_row(dtype, stored.data(), values.data(), int64_t(values.size()));
  return values;
}

void check_generated(Suite& suite, Backend& gpu, DType dtype, int rows, int cols) {
  const std::string what = std::string("fill_random ") + dtype_name(dtype) + " " + std::to_string(rows) + "x" + std::to_string(cols);
  const std::vector<float> values = generated(gpu, dtype, rows, cols, 5);
  bool finite = true, within = true;
  size_t zeros = 0;
  float largest = 0, smallest = INFINITY;
  for (float v : values) {
    finite = finite && std::isfinite(v);
    within = within && std::fabs(v) <= kScale * (1 + 1e-6f);  // the bound up to float rounding of the decode
    zeros += v == 0;
    largest = std::fmax(largest, std::fabs(v));
    smallest = std::fmin(smallest, std::fabs(v));
  }
  suite.check(finite, what + ": every value finite");
  suite.check(within, what + ": every value within ±" + std::to_string(kScale) + " (largest " + std::to_string(largest) + ")");
  if (dtype_block_values(dtype) == 1) {
    // ±[0.05, 1) · scale, less bf16's rounding (2^-9 relative).
    suite.check(smallest >= 0.05f * kScale * (1 - 1.0f / 256), what + ": no value below 0.05 · scale (smallest " +
                                                                   std::to_string(smallest) + ")");
  } else {
    // Random quants: a few decode to zero (Q4_0's nibble 8 in 16), not many; the scales reach far.
    suite.check(zeros * 8 <= values.size(), what + ": at most 1/8 zeros (" + std::to_string(zeros) + " of " +
                                                std::to_string(values.size()) + ")");
    suite.check(largest >= kScale / 8, what + ": values reach scale / 8 (largest " + std::to_string(largest) + ")");
  }
  suite.check(values != generated(gpu, dtype, rows, cols, 6), what + ": another seed gives other values");
}

// read_all over a zero buffer with the one word that makes its reader write the sink.
void check_read_all(Suite& suite, Backend& gpu, size_t vectors, size_t marked) {
  const uint32_t kMark = 0x9e3779b9u;  // the accumulator value read_all writes out (bench_device.cu)
  std::vector<uint32_t> words(vectors * 4, 0);
  words[marked * 4 + 2] = kMark;
  DeviceBuffer src(gpu, words.size() * 4), sink(gpu, 4);
  const uint32_t unset = 0;
  gpu.upload(src.get(), words.data(), src.bytes());
  gpu.upload(sink.get(), &unset, 4);
  cuda::bench::read_all(src.get(), src.bytes(), static_cast<uint32_t*>(sink.get()), nullptr);
  cuda_check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
  uint32_t got = 0;
  gpu.download(&got, sink.get(), 4);
  suite.check(got == kMark, "read_all over " + std::to_string(vectors) + " vectors reads vector " + std::to_string(marked));
}

}  // namespace
#endif

int main() {
  const CudaStatus status = cuda_status();
  if (!status.available) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", status.reason.c_str());
    return 77;
  }
#if CHAI_WITH_CUDA
  Suite suite("cuda_bench_device");
  const auto& dev = status.devices[0];
  std::printf("device: %s (sm_%d%d)\n", dev.name.c_str(), dev.compute_major, dev.compute_minor);
  auto gpu = make_cuda_backend(0);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) check_generated(suite, *gpu, dt, 3, 100);
  for (DType dt : {DType::Q8_0, DType::Q4_0}) check_generated(suite, *gpu, dt, 4, 64);
  for (DType dt : {DType::Q4_K, DType::Q6_K}) check_generated(suite, *gpu, dt, 2, 512);
  DeviceBuffer spare(*gpu, 1024);
  suite.check_throws([&] { cuda::bench::fill_random(spare.get(), DType::Q4_K, 1, 100, 1, kScale, nullptr); },
                     "fill_random of Q4_K rows of part of a block");
  suite.check_throws([&] { cuda::bench::fill_random(spare.get(), DType::Q5_K, 1, 256, 1, kScale, nullptr); },
                     "fill_random of a type it has no generator for");
  // 5000 vectors take 3 blocks of 512 threads: threads below 392 read 4 vectors in the unrolled
  // loop (0 and 4999 among them), the others theirs in the tail loop (2500 among them).
  const size_t vectors = 5000;
  for (size_t marked : {size_t(0), size_t(2500), vectors - 1}) check_read_all(suite, *gpu, vectors, marked);
  return suite.finish();
#else
  return 77;  // not reached: without CUDA, cuda_status() says unavailable
#endif
}
