// CPU kernels. They are the reference twins of the CUDA kernels and the engine's CPU path:
// multithreaded over rows/columns, vectorised through the dispatched dot products.
#pragma once
#include "../core/backend.h"
#include "../core/tensor.h"
#include "../core/thread_pool.h"

namespace chai::cpu {

void matmul(ThreadPool& pool, const TensorView& x, const TensorView& w, const TensorView& y);
void rmsnorm(ThreadPool& pool, const TensorView& x, const TensorView& weight, float eps, const TensorView& y);
void softmax_rows(ThreadPool& pool, const TensorView& x);
void embed(ThreadPool& pool, const TensorView& table, const int32_t* tokens, const TensorView& out);
void rope(ThreadPool& pool, const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
          const float* freq_factors);
void swiglu(ThreadPool& pool, const TensorView& gate, const TensorView& up);
void add(ThreadPool& pool, const TensorView& x, const TensorView& y);
void add_bias(ThreadPool& pool, const TensorView& x, const TensorView& bias);
void attention(ThreadPool& pool, const AttentionParams& p);
void store_kv(ThreadPool& pool, const KvStoreParams& p);
void head_features(ThreadPool& pool, const HeadFeatureParams& p);

}  // namespace chai::cpu
