// CPU kernels. They are the reference twins of the CUDA kernels and the engine's CPU path:
// multithreaded over rows/columns, vectorised through the dispatched dot products.
#pragma once
#include "../core/tensor.h"
#include "../core/thread_pool.h"

namespace chai::cpu {

void matmul(ThreadPool& pool, const TensorView& x, const TensorView& w, const TensorView& y);
void rmsnorm(ThreadPool& pool, const TensorView& x, const TensorView& weight, float eps, const TensorView& y);
void softmax_rows(ThreadPool& pool, const TensorView& x);

}  // namespace chai::cpu
