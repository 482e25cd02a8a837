// Launchers of the CUDA kernels; each one computes what its twin in native/cpu/ops.h computes.
// All pointers are device pointers; launches go to `stream` and are checked for launch errors.
#pragma once
#include <cuda_runtime.h>

#include "../core/backend.h"
#include "../core/tensor.h"

namespace chai::cuda {

void matmul(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream);
// Q4_0 .. IQ4_XS weights (matmul_quant.cu); matmul and embed route those types there.
void matmul_quantized(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream);
void embed_quantized(const TensorView& table, const int32_t* tokens, const TensorView& out, cudaStream_t stream);
void rmsnorm(const TensorView& x, const TensorView& weight, float eps, const TensorView& y, cudaStream_t stream);
void softmax_rows(const TensorView& x, cudaStream_t stream);
// Token ids must be inside the table (callers check on the host); rows of bad ids become zeros.
void embed(const TensorView& table, const int32_t* tokens, const TensorView& out, cudaStream_t stream);
void rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
          const float* freq_factors, cudaStream_t stream);
void swiglu(const TensorView& gate, const TensorView& up, cudaStream_t stream);
void add(const TensorView& x, const TensorView& y, cudaStream_t stream);
void add_bias(const TensorView& x, const TensorView& bias, cudaStream_t stream);
void attention(const AttentionParams& p, cudaStream_t stream);
// Attention version 2, the sequences with n_chunks > 0: split-KV decoding, then the merge.
void attention_decode(const AttentionParams& p, cudaStream_t stream);
// Attention version 3, the sequences with n_chunks > 0: the decode kernel of attention_decode_v3.cu,
// then its merge; and how many blocks of that kernel (for this head size and cache type) one
// multiprocessor holds (0 where decode_shape() does not support the shape).
void attention_decode_v3(const AttentionParams& p, cudaStream_t stream);
int attention_decode_v3_blocks_per_sm(int head_dim, DType kv_dtype);
// Attention version 2, the other sequences: tensor-core tiles (tensor_core_prefill() shapes only).
void attention_prefill(const AttentionParams& p, cudaStream_t stream);
// Attention version 3 for the same sequences and shapes: scores once per kMembers heads, K by ldmatrix.
void attention_prefill_v3(const AttentionParams& p, cudaStream_t stream);
void store_kv(const KvStoreParams& p, cudaStream_t stream);
void head_features(const HeadFeatureParams& p, cudaStream_t stream);

}  // namespace chai::cuda
