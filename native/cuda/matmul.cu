// y[n, m] = x[n, k] · w[m, k]ᵀ with weights in their stored type.
// Version 1 (this file): one warp per weight row and group of kRows tokens; lanes stride over k
// so the weight row is read once, coalesced, for all kRows tokens. It is bandwidth-bound by
// design (the decode case, n small). Tensor-core tiles for large n come with the engine.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../core/error.h"
#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"
#include "weights.cuh"

namespace chai::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRows = 4;

template <typename W>
__global__ void matmul_warp_per_row(const float* __restrict__ x, const W* __restrict__ w, float* __restrict__ y,
                                    int n, int m, int k) {
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int i0 = blockIdx.y * kRows;
  if (j >= m) return;
  const int rows = min(kRows, n - i0);
  const W* wj = w + size_t(j) * row_stride<W>(k);
  const float* xi = x + size_t(i0) * k;
  float acc[kRows] = {};
  for (int c = lane; c < k; c += 32) {
    const float wv = weight_at(wj, c);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (r < rows) acc[r] += xi[size_t(r) * k + c] * wv;
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warp_reduce(acc[r], SumOp{});
    if (lane == 0 && r < rows) y[size_t(i0 + r) * m + j] = sum;
  }
}

template <typename W>
void launch(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  const dim3 grid((m + kWarpsPerBlock - 1) / kWarpsPerBlock, (n + kRows - 1) / kRows);
  CHAI_REQUIRE(grid.y <= 65535u, ErrorCode::Unsupported, "matmul: too many rows for one launch (" + std::to_string(n) + ")");
  matmul_warp_per_row<W><<<grid, kWarpsPerBlock * 32, 0, stream>>>(x.as<float>(), w.as<W>(), y.as<float>(), n, m, k);
  cuda_check(cudaGetLastError(), "matmul kernel launch");
}

}  // namespace

void matmul(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  switch (w.dtype) {
    case DType::F32: return launch<float>(x, w, y, stream);
    case DType::F16: return launch<__half>(x, w, y, stream);
    case DType::BF16: return launch<__nv_bfloat16>(x, w, y, stream);
    case DType::Q8_0: return launch<BlockQ8_0>(x, w, y, stream);
    default: return matmul_quantized(x, w, y, stream);
  }
}

}  // namespace chai::cuda
