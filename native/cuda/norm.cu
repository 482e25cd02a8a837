// Row-wise RMSNorm and softmax: one block per row, block reductions in shared memory.
#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ y,
                               int d, float eps) {
  const float* xi = x + size_t(blockIdx.x) * d;
  float* yi = y + size_t(blockIdx.x) * d;
  float sum = 0.f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) sum += xi[c] * xi[c];
  sum = block_reduce(sum, SumOp{}, 0.f);
  const float scale = rsqrtf(sum / float(d) + eps);
  for (int c = threadIdx.x; c < d; c += blockDim.x) yi[c] = xi[c] * scale * weight[c];
}

__global__ void softmax_kernel(float* __restrict__ x, int d) {
  float* row = x + size_t(blockIdx.x) * d;
  float max = -INFINITY;
  for (int c = threadIdx.x; c < d; c += blockDim.x) max = fmaxf(max, row[c]);
  max = block_reduce(max, MaxOp{}, -INFINITY);
  float sum = 0.f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    const float e = expf(row[c] - max);
    row[c] = e;
    sum += e;
  }
  const float inv = 1.f / block_reduce(sum, SumOp{}, 0.f);
  for (int c = threadIdx.x; c < d; c += blockDim.x) row[c] *= inv;
}

}  // namespace

void rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y, cudaStream_t stream) {
  rmsnorm_kernel<<<unsigned(x.rows), kThreads, 0, stream>>>(x.as<float>(), weight.as<float>(), y.as<float>(),
                                                             int(x.cols), eps);
  cuda_check(cudaGetLastError(), "rmsnorm kernel launch");
}

void softmax_rows(const TensorView& x, cudaStream_t stream) {
  softmax_kernel<<<unsigned(x.rows), kThreads, 0, stream>>>(x.as<float>(), int(x.cols));
  cuda_check(cudaGetLastError(), "softmax kernel launch");
}

}  // namespace chai::cuda
