// One CUDA matmul version against the CPU twin at awkward shapes, for every weight type:
//   test_cuda_matmul VERSION        (1: matmul.cu; 2: gemm_mma.cu from 16 rows, gemv.cu below;
//                                    3: gemm_v3.cu from 16 rows, gemv_quant_v3.cu for Q8_0 and
//                                       the block-quantized types, version 2's GEMV otherwise)
// Shapes straddle the GEMM/GEMV switch (15, 16, 17 rows), the GEMM tile (128) and the GEMV's
// token groups, with odd k and m off every tile multiple (smaller m and k on the simulated GPU,
// the same paths); then inputs of large magnitude (activations up to 1e5, past f16's 65504; BF16
// weights outside f16's range); for version 3, every block-quantized type against the f32
// product with its dequantized weights. Exits 77 (ctest: skipped) with the reason when no device.
#include <cstdlib>
#include <string>
#include <vector>

#include "core/backend.h"
#include "matmul_bounds.h"
#include "op_runner.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

const std::vector<MatmulShape> kShapes = {
    {1, 1, 1},      {1, 7, 13},     {1, 300, 1000}, {1, 129, 4104}, {2, 65, 264},   {3, 17, 33},   {5, 300, 512},
    {8, 129, 1000}, {9, 7, 40},     {15, 300, 1024}, {15, 97, 255}, {16, 129, 40},  {16, 1, 8},    {17, 65, 129},
    {17, 300, 1000}, {33, 172, 64}, {70, 97, 255},  {130, 257, 520}, {200, 129, 4104}};
// Q8_0 rows hold whole blocks of 32; an odd number of blocks (96, 160) takes version 1's GEMV.
const std::vector<MatmulShape> kQ8Shapes = {
    {1, 1, 32},    {1, 7, 64},     {1, 300, 1024}, {2, 129, 4096}, {3, 17, 96},    {5, 65, 160}, {8, 300, 2048},
    {9, 33, 128},  {15, 300, 1024}, {16, 65, 160}, {17, 129, 96},  {33, 172, 64}, {130, 257, 4096}};
// The same paths at simulator scale: every token group of the GEMV (1, 2, 4, 8 rows), the GEMM's
// edge tiles and a second tile in both directions, k off the vector loads' multiples.
const std::vector<MatmulShape> kSimShapes = {
    {1, 1, 1},    {1, 7, 13},   {1, 129, 1032}, {2, 65, 264},  {3, 17, 33},   {4, 33, 64},   {5, 40, 512},  {8, 33, 264},
    {9, 7, 40},   {15, 97, 255}, {16, 129, 40}, {16, 1, 8},    {17, 65, 129}, {33, 172, 64}, {130, 136, 72}};
const std::vector<MatmulShape> kSimQ8Shapes = {
    {1, 1, 32},  {1, 7, 64},   {1, 129, 1024}, {2, 33, 256}, {3, 17, 96}, {4, 33, 128}, {5, 65, 160}, {8, 40, 512},
    {9, 33, 128}, {15, 40, 256}, {16, 65, 160}, {17, 33, 96}, {33, 172, 64}, {130, 136, 128}};
// Version 3's quantized GEMV for blocks of v values: one token (2048-value slices) and groups of
// eight (512-value slices; 2, 15, 16, 17 and 130 rows: partial groups, several groups), k of one
// block, of a few, and of 2048 + v (a slice and one block more: a last partial slice); m off the
// block's 8 rows. Rows of 18-, 34- or 210-byte blocks start off 16 bytes, so the copies' first
// and last granules are partial.
std::vector<MatmulShape> quant_shapes(int v, bool simulated) {
  if (simulated) return {{1, 1, v}, {1, 9, 2048 + v}, {2, 7, 3 * v}, {17, 9, 2048 + v}};
  return {{1, 1, v}, {1, 300, 2048 + v}, {2, 7, 3 * v}, {15, 17, 2048 + v}, {16, 65, 3 * v}, {17, 9, 2048 + v}, {130, 33, 5 * v}};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string version_arg = argc == 2 ? argv[1] : "";
  if (version_arg != "1" && version_arg != "2" && version_arg != "3") {
    std::fprintf(stderr, "usage: test_cuda_matmul 1|2|3\n");
    return 2;
  }
  const CudaStatus status = cuda_status();
  if (!status.available) {
    std::printf("SKIPPED: no usable CUDA device: %s\n", status.reason.c_str());
    return 77;
  }
  const int version = std::stoi(version_arg);
  setenv("CHAI_MATMUL_VERSION", version_arg.c_str(), 1);  // read by the CUDA backend when made
  Suite suite("cuda_matmul_v" + version_arg);
  const auto& dev = status.devices[0];
  std::printf("device: %s (sm_%d%d), matmul version %d\n", dev.name.c_str(), dev.compute_major, dev.compute_minor, version);
  const bool simulated = shape_scale_for(dev.name) == ShapeScale::Simulator;
  auto cpu = make_cpu_backend(0);
  auto gpu = make_cuda_backend(0);

  uint32_t seed = 300;
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
    // Version 3 runs F32 weights on version 2's kernels; the simulator checks those in the v2 job.
    if (dt == DType::F32 && version == 3 && simulated) continue;
    for (const auto& s : dt == DType::Q8_0 ? (simulated ? kSimQ8Shapes : kQ8Shapes) : (simulated ? kSimShapes : kShapes)) {
      const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
      const HostWeights w(random_nonzero(size_t(s.m) * s.k, seed++), dt);
      const auto want = run_matmul(*cpu, x, w, s.n, s.m, s.k);
      const auto got = run_matmul(*gpu, x, w, s.n, s.m, s.k);
      suite.check_close(relative_error(got, want), matmul_error_bound(version, dt, s.n, s.k),
                        "v" + version_arg + " matmul " + dtype_name(dt) + " n=" + std::to_string(s.n) +
                            " m=" + std::to_string(s.m) + " k=" + std::to_string(s.k));
    }
  }
  // Large magnitudes, on the GEMV (1 row) and the GEMM (17 and 130 rows): activations up to 1e5, and
  // BF16 weights far outside f16's range (1e5 and 1e-6). Nothing may overflow or flush to zero.
  for (auto [x_scale, w_scale] : {std::pair{1e5f, 1.0f}, {1.0f, 1e5f}, {1.0f, 1e-6f}})
    for (DType dt : {DType::F16, DType::BF16, DType::Q8_0}) {
      if (w_scale != 1.0f && dt != DType::BF16) continue;  // F16 and Q8_0 weights cannot hold such values
      for (const MatmulShape& s : {MatmulShape{1, 65, 256}, MatmulShape{17, 65, 256}, MatmulShape{130, 33, 96}}) {
        const auto x = random_nonzero(size_t(s.n) * s.k, seed++, x_scale);
        const HostWeights w(random_nonzero(size_t(s.m) * s.k, seed++, w_scale), dt);
        const auto want = run_matmul(*cpu, x, w, s.n, s.m, s.k);
        const auto got = run_matmul(*gpu, x, w, s.n, s.m, s.k);
        char what[160];
        std::snprintf(what, sizeof what, "v%s matmul %s n=%d m=%d k=%d, |x| to %g, |w| to %g", version_arg.c_str(), dtype_name(dt),
                      s.n, s.m, s.k, double(x_scale), double(w_scale));
        suite.check_close(relative_error(got, want), matmul_error_bound(version, dt, s.n, s.k), what);
      }
    }
  // Block-quantized weights on version 3's GEMV (versions 1 and 2 run them in matmul_quant.cu,
  // checked by test_cuda_ops): the twin is the CPU's f32 product with the dequantized weights
  // (its own quantized path rounds activations to 8 bits).
  if (version == 3)
    for (DType dt : quant_types())
      for (const MatmulShape& s : quant_shapes(int(dtype_block_values(dt)), simulated)) {
        const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
        const HostWeights w(dt, random_quant_blocks(dt, int64_t(s.m) * s.k, seed++), int64_t(s.m) * s.k);
        const HostWeights exact(w.decoded, DType::F32);
        suite.check_close(relative_error(run_matmul(*gpu, x, w, s.n, s.m, s.k), run_matmul(*cpu, x, exact, s.n, s.m, s.k)),
                          matmul_error_bound(version, dt, s.n, s.k),
                          "v3 matmul " + std::string(dtype_name(dt)) + " n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) +
                              " k=" + std::to_string(s.k));
      }
  return suite.finish();
}
