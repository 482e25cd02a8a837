// Engine ops that touch each element once: embedding lookup, RoPE, SwiGLU, residual add and the
// KV-cache store. Twins of the CPU functions of the same names in native/cpu/ops.cpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_check.h"
#include "kernels.h"
#include "weights.cuh"

namespace chai::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) { return unsigned((n + kThreads - 1) / kThreads); }

template <typename W>
__global__ void embed_kernel(const W* __restrict__ table, const int32_t* __restrict__ tokens, float* __restrict__ out,
                             int vocab, int cols) {
  const int row = blockIdx.x;
  const int token = tokens[row];
  const bool valid = token >= 0 && token < vocab;
  const W* src = table + size_t(valid ? token : 0) * row_stride<W>(cols);
  for (int c = threadIdx.x; c < cols; c += blockDim.x) out[size_t(row) * cols + c] = valid ? weight_at(src, c) : 0.f;
}

template <typename W>
void launch_embed(const TensorView& table, const int32_t* tokens, const TensorView& out, cudaStream_t stream) {
  embed_kernel<W><<<unsigned(out.rows), kThreads, 0, stream>>>(table.as<const W>(), tokens, out.as<float>(),
                                                                int(table.rows), int(out.cols));
}

// One thread per rotated pair; the angle in double so that it matches the CPU to float precision.
// Pair i of a head is (2i, 2i+1) in the normal style and (i, i + head_dim/2) in NeoX's.
__global__ void rope_kernel(float* __restrict__ x, const int32_t* __restrict__ positions, int64_t pairs, int cols,
                            int head_dim, double log_base, bool neox, const float* __restrict__ freq_factors) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= pairs) return;
  const int half = head_dim / 2;
  const int64_t row = idx / (cols / 2);
  const int pair_in_row = int(idx % (cols / 2));
  const int head = pair_in_row / half, i = pair_in_row % half;
  double theta = double(positions[row]) * exp(-2.0 * i / head_dim * log_base);
  if (freq_factors) theta /= double(freq_factors[i]);
  const float c = float(cos(theta)), s = float(sin(theta));
  float* v = x + row * cols + int64_t(head) * head_dim;
  float* a = neox ? v + i : v + 2 * i;
  float* b = neox ? v + i + half : v + 2 * i + 1;
  const float a0 = *a, b0 = *b;
  *a = a0 * c - b0 * s;
  *b = a0 * s + b0 * c;
}

__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void add_bias_kernel(float* __restrict__ x, const float* __restrict__ bias, int64_t n, int cols) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += bias[i % cols];
}

__device__ __forceinline__ void store(float* dst, float v) { *dst = v; }
__device__ __forceinline__ void store(__half* dst, float v) { *dst = __float2half_rn(v); }

// One thread per kStoreGroup consecutive values of a (token, head) row, stored into the row's page
// slot in the cache's type T (no idle threads whatever head_dim is).
constexpr int kStoreGroup = 4;

template <typename T>
__global__ void store_kv_kernel(KvStoreParams p) {
  const int groups = (p.head_dim + kStoreGroup - 1) / kStoreGroup;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= int64_t(p.n) * p.n_heads * groups) return;
  const int64_t row = idx / groups;  // token i, head g
  const int i = int(row / p.n_heads), g = int(row % p.n_heads), d0 = int(idx % groups) * kStoreGroup;
  const int64_t slot = kv_slot(p.table, p.max_pages, p.page_tokens, g, p.pos0 + i);
  if (slot < 0) return;  // K of a head this sequence does not keep
  const float* src = p.src + row * p.head_dim;
  T* dst = static_cast<T*>(p.pool) + slot * p.head_dim;
#pragma unroll
  for (int d = d0; d < d0 + kStoreGroup; ++d)
    if (d < p.head_dim) store(dst + d, src[d]);
}

}  // namespace

void embed(const TensorView& table, const int32_t* tokens, const TensorView& out, cudaStream_t stream) {
  switch (table.dtype) {
    case DType::F32: launch_embed<float>(table, tokens, out, stream); break;
    case DType::F16: launch_embed<__half>(table, tokens, out, stream); break;
    case DType::BF16: launch_embed<__nv_bfloat16>(table, tokens, out, stream); break;
    case DType::Q8_0: launch_embed<BlockQ8_0>(table, tokens, out, stream); break;
    default: return embed_quantized(table, tokens, out, stream);
  }
  cuda_check(cudaGetLastError(), "embed kernel launch");
}

void rope(const TensorView& x, int head_dim, const int32_t* positions, float base, RopeStyle style,
          const float* freq_factors, cudaStream_t stream) {
  const int64_t pairs = x.numel() / 2;
  rope_kernel<<<blocks_for(pairs), kThreads, 0, stream>>>(x.as<float>(), positions, pairs, int(x.cols), head_dim,
                                                          std::log(double(base)), style == RopeStyle::Neox, freq_factors);
  cuda_check(cudaGetLastError(), "rope kernel launch");
}

void swiglu(const TensorView& gate, const TensorView& up, cudaStream_t stream) {
  swiglu_kernel<<<blocks_for(gate.numel()), kThreads, 0, stream>>>(gate.as<float>(), up.as<float>(), gate.numel());
  cuda_check(cudaGetLastError(), "swiglu kernel launch");
}

void add(const TensorView& x, const TensorView& y, cudaStream_t stream) {
  add_kernel<<<blocks_for(x.numel()), kThreads, 0, stream>>>(x.as<float>(), y.as<float>(), x.numel());
  cuda_check(cudaGetLastError(), "add kernel launch");
}

void add_bias(const TensorView& x, const TensorView& bias, cudaStream_t stream) {
  add_bias_kernel<<<blocks_for(x.numel()), kThreads, 0, stream>>>(x.as<float>(), bias.as<float>(), x.numel(), int(x.cols));
  cuda_check(cudaGetLastError(), "add_bias kernel launch");
}

void store_kv(const KvStoreParams& p, cudaStream_t stream) {
  const unsigned blocks = blocks_for(int64_t(p.n) * p.n_heads * ((p.head_dim + kStoreGroup - 1) / kStoreGroup));
  if (p.kv_dtype == DType::F16) store_kv_kernel<__half><<<blocks, kThreads, 0, stream>>>(p);
  else store_kv_kernel<float><<<blocks, kThreads, 0, stream>>>(p);
  cuda_check(cudaGetLastError(), "store_kv kernel launch");
}

}  // namespace chai::cuda
