// Launchers of the CUDA kernels; each one computes what its twin in native/cpu/ops.h computes.
// All pointers are device pointers; launches go to `stream` and are checked for launch errors.
#pragma once
#include <cuda_runtime.h>

#include "../core/tensor.h"

namespace chai::cuda {

void matmul(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream);
void rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y, cudaStream_t stream);
void softmax_rows(const TensorView& x, cudaStream_t stream);

}  // namespace chai::cuda
