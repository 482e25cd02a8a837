// CHAI's clustering features on the device: one warp per (head, query row i); lane j < = i scores
// key j, then a warp softmax. t0 is small (5 by default, at most 32 here), so a row fits a warp.
// Twin: cpu::head_features in native/cpu/ops.cpp.
#include "../core/error.h"
#include "cuda_check.h"
#include "kernels.h"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

__global__ void head_features_kernel(HeadFeatureParams p) {
  const int h = blockIdx.x, i = threadIdx.x >> 5, j = threadIdx.x & 31;
  if (i >= p.t0) return;
  const int group = p.n_heads / p.n_kv_heads;
  const float* q = p.q + size_t(i) * p.n_heads * p.head_dim + size_t(h) * p.head_dim;
  const float* k = p.k + size_t(j) * p.n_kv_heads * p.head_dim + size_t(h / group) * p.head_dim;
  float score = -INFINITY;
  if (j <= i) {
    float s = 0.f;
    for (int d = 0; d < p.head_dim; ++d) s += q[d] * k[d];
    score = s * p.scale;
  }
  const float max = warp_reduce(score, MaxOp{});
  const float e = j <= i ? expf(score - max) : 0.f;
  const float sum = warp_reduce(e, SumOp{});
  if (j <= i) p.out[size_t(h) * (p.t0 * (p.t0 + 1) / 2) + i * (i + 1) / 2 + j] = e / sum;
}

}  // namespace

void head_features(const HeadFeatureParams& p, cudaStream_t stream) {
  CHAI_REQUIRE(p.t0 <= 32, ErrorCode::Unsupported, "CUDA head features support t0 <= 32, got " + std::to_string(p.t0));
  head_features_kernel<<<unsigned(p.n_heads), unsigned(p.t0 * 32), 0, stream>>>(p);
  cuda_check(cudaGetLastError(), "head_features kernel launch");
}

}  // namespace chai::cuda
