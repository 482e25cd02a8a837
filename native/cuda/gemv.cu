// Matmul version 2 for decode (fewer than kGemmMinRows token rows): y[n, m] = x[n, k] · w[m, k]ᵀ,
// bound by reading w once. Each warp owns kRowsPerWarp weight rows and up to kTok tokens;
// its lanes stride over k so that every weight read is coalesced, with several independent
// 16-byte loads per lane in flight.
// - F32, F16, BF16 weights: 16-byte loads of w, f32 arithmetic (same result as version 1 up to
//   summation order).
// - Q8_0 weights: x is first quantized to int8 per block of 32 (scale max|x| / 127, as ggml's
//   Q8 activations), then each pair of weight blocks (68 bytes, 4-byte aligned when a row holds
//   an even number of blocks) is seventeen 4-byte loads and sixteen dp4a.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "../core/error.h"
#include "cuda_check.h"
#include "matmul_v2.h"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

constexpr int kWarps = 4;        // per block
constexpr int kRowsPerWarp = 2;  // weight rows per warp
constexpr int kUnroll = 4;       // 16-byte chunks per lane and row loaded before any is used
constexpr int kQ8Pair = 2 * kQ8Block;  // values per pair of Q8_0 blocks
constexpr int kQ8PairWords = 2 * int(sizeof(BlockQ8_0)) / 4;
static_assert(2 * sizeof(BlockQ8_0) == 4 * kQ8PairWords, "a pair of Q8_0 blocks is whole 32-bit words");

// 16 bytes of weights as floats.
template <typename W>
struct Chunk;
template <>
struct Chunk<float> {
  static constexpr int kValues = 4;
  static __device__ __forceinline__ void decode(const uint4& raw, float (&f)[kValues]) {
    f[0] = __uint_as_float(raw.x), f[1] = __uint_as_float(raw.y), f[2] = __uint_as_float(raw.z), f[3] = __uint_as_float(raw.w);
  }
};

__device__ __forceinline__ float2 to_float2(__half2 v) { return __half22float2(v); }
__device__ __forceinline__ float2 to_float2(__nv_bfloat162 v) { return __bfloat1622float2(v); }

// 16-bit types: eight values, read as four pairs.
template <typename Pair>
struct Chunk16 {
  static constexpr int kValues = 8;
  static __device__ __forceinline__ void decode(const uint4& raw, float (&f)[kValues]) {
    const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 pair = to_float2(*reinterpret_cast<const Pair*>(&words[i]));
      f[2 * i] = pair.x, f[2 * i + 1] = pair.y;
    }
  }
};
template <>
struct Chunk<__half> : Chunk16<__half2> {};
template <>
struct Chunk<__nv_bfloat16> : Chunk16<__nv_bfloat162> {};

// Sums each accumulator over the warp; lane 0 writes those inside y.
template <int kTok>
__device__ __forceinline__ void write_sums(float (&acc)[kRowsPerWarp][kTok], float* y, int row0, int tok0, int toks, int m) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < kTok; ++t) {
      const float sum = warp_reduce(acc[r][t], SumOp{});
      if (lane == 0 && t < toks && row0 + r < m) y[size_t(tok0 + t) * m + row0 + r] = sum;
    }
}

// Adds the dot products of one 16-byte chunk of each row with x for every token.
template <typename W, int kTok>
__device__ __forceinline__ void accumulate_chunk(const uint4 (&raw)[kRowsPerWarp], const float* x, int chunk, int tok0,
                                                 int toks, int k, float (&acc)[kRowsPerWarp][kTok]) {
  constexpr int kValues = Chunk<W>::kValues;
  float wv[kRowsPerWarp][kValues];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) Chunk<W>::decode(raw[r], wv[r]);
#pragma unroll
  for (int t = 0; t < kTok; ++t) {
    if (t >= toks) continue;
    const float4* xv = reinterpret_cast<const float4*>(x + size_t(tok0 + t) * k + size_t(chunk) * kValues);
#pragma unroll
    for (int q = 0; q < kValues / 4; ++q) {
      const float4 xq = __ldg(xv + q);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        acc[r][t] += wv[r][4 * q] * xq.x + wv[r][4 * q + 1] * xq.y + wv[r][4 * q + 2] * xq.z + wv[r][4 * q + 3] * xq.w;
    }
  }
}

// Rows of k values as k / kValues chunks of 16 bytes (k % kValues == 0, rows 16-byte aligned).
template <typename W, int kTok>
__global__ void __launch_bounds__(kWarps * 32) gemv_vec16(const float* __restrict__ x, const W* __restrict__ w,
                                                          float* __restrict__ y, int n, int m, int k) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;
  const int tok0 = blockIdx.y * kTok, toks = min(kTok, n - tok0);
  if (row0 >= m) return;
  const int chunks = k / Chunk<W>::kValues;
  const uint4* rows[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)  // rows past m read the last row; their sums are dropped
    rows[r] = reinterpret_cast<const uint4*>(w + size_t(min(row0 + r, m - 1)) * k);
  float acc[kRowsPerWarp][kTok] = {};
  int c = lane;
  for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
    uint4 raw[kUnroll][kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) raw[u][r] = __ldg(rows[r] + c + 32 * u);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) accumulate_chunk<W, kTok>(raw[u], x, c + 32 * u, tok0, toks, k, acc);
  }
  for (; c < chunks; c += 32) {
    uint4 raw[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) raw[r] = __ldg(rows[r] + c);
    accumulate_chunk<W, kTok>(raw, x, c, tok0, toks, k, acc);
  }
  write_sums<kTok>(acc, y, row0, tok0, toks, m);
}

// One warp per block of 32 values of x (k % 32 == 0, so blocks never straddle rows).
__global__ void quantize_q8(const float* __restrict__ x, int8_t* __restrict__ xq, float* __restrict__ xd, int blocks) {
  const int lane = threadIdx.x & 31;
  const int b = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (b >= blocks) return;
  const float v = x[size_t(b) * kQ8Block + lane];
  const float d = warp_reduce(fabsf(v), MaxOp{}) / 127.0f;
  xq[size_t(b) * kQ8Block + lane] = int8_t(d > 0.0f ? __float2int_rn(v / d) : 0);
  if (lane == 0) xd[b] = d;
}

// Σ over 32 values of int8 q_w · q_x, four at a time; `w` gives eight little-endian words.
__device__ __forceinline__ int dot32(const uint32_t (&w)[8], const int4& x0, const int4& x1) {
  int s = __dp4a(int(w[0]), x0.x, 0);
  s = __dp4a(int(w[1]), x0.y, s);
  s = __dp4a(int(w[2]), x0.z, s);
  s = __dp4a(int(w[3]), x0.w, s);
  s = __dp4a(int(w[4]), x1.x, s);
  s = __dp4a(int(w[5]), x1.y, s);
  s = __dp4a(int(w[6]), x1.z, s);
  return __dp4a(int(w[7]), x1.w, s);
}

// Rows of k / 64 pairs of Q8_0 blocks. In a pair's 17 words: d0 is the low half of word 0, the
// q of block 0 start at byte 2 (funnel shifts of words 0..8), d1 is the high half of word 8 and
// the q of block 1 are words 9..16.
template <int kTok>
__global__ void __launch_bounds__(kWarps * 32) gemv_q8_dp4a(const int8_t* __restrict__ xq, const float* __restrict__ xd,
                                                            const BlockQ8_0* __restrict__ w, float* __restrict__ y,
                                                            int n, int m, int k) {
  const int lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRowsPerWarp;
  const int tok0 = blockIdx.y * kTok, toks = min(kTok, n - tok0);
  if (row0 >= m) return;
  const int pairs = k / kQ8Pair, blocks = k / kQ8Block;
  const uint32_t* rows[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
    rows[r] = reinterpret_cast<const uint32_t*>(w + size_t(min(row0 + r, m - 1)) * blocks);
  float acc[kRowsPerWarp][kTok] = {};
  for (int p = lane; p < pairs; p += 32) {
    uint32_t words[kRowsPerWarp][kQ8PairWords];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int i = 0; i < kQ8PairWords; ++i) words[r][i] = __ldg(rows[r] + size_t(p) * kQ8PairWords + i);
    float d0[kRowsPerWarp], d1[kRowsPerWarp];
    uint32_t q0[kRowsPerWarp][8], q1[kRowsPerWarp][8];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      d0[r] = __half2float(__ushort_as_half(uint16_t(words[r][0] & 0xffffu)));
      d1[r] = __half2float(__ushort_as_half(uint16_t(words[r][8] >> 16)));
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        q0[r][i] = __funnelshift_r(words[r][i], words[r][i + 1], 16);
        q1[r][i] = words[r][9 + i];
      }
    }
#pragma unroll
    for (int t = 0; t < kTok; ++t) {
      if (t >= toks) continue;
      const int4* xv = reinterpret_cast<const int4*>(xq + size_t(tok0 + t) * k + size_t(p) * kQ8Pair);
      const int4 x0 = __ldg(xv), x1 = __ldg(xv + 1), x2 = __ldg(xv + 2), x3 = __ldg(xv + 3);
      const float2 scales = __ldg(reinterpret_cast<const float2*>(xd + size_t(tok0 + t) * blocks + 2 * p));
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        acc[r][t] += d0[r] * scales.x * float(dot32(q0[r], x0, x1)) + d1[r] * scales.y * float(dot32(q1[r], x2, x3));
    }
  }
  write_sums<kTok>(acc, y, row0, tok0, toks, m);
}

// Calls launch(std::integral_constant<int, kTok>) with the smallest kTok of 1, 2, 4, 8 that
// covers n tokens (8 for more, in several groups).
template <typename Launch>
void with_token_group(int n, Launch launch) {
  if (n <= 1) launch(std::integral_constant<int, 1>{});
  else if (n <= 2) launch(std::integral_constant<int, 2>{});
  else if (n <= 4) launch(std::integral_constant<int, 4>{});
  else launch(std::integral_constant<int, 8>{});
}

dim3 gemv_grid(int n, int m) {
  const int group = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8;
  return dim3((m + kWarps * kRowsPerWarp - 1) / (kWarps * kRowsPerWarp), (n + group - 1) / group);
}

template <typename W>
bool launch_vec16(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  if (k % Chunk<W>::kValues != 0 || !aligned(x.data, 16) || !aligned(w.data, 16)) return false;
  with_token_group(n, [&](auto tok) {
    gemv_vec16<W, decltype(tok)::value><<<gemv_grid(n, m), kWarps * 32, 0, stream>>>(x.as<float>(), w.as<W>(), y.as<float>(), n, m, k);
  });
  cuda_check(cudaGetLastError(), "gemv kernel launch");
  return true;
}

bool launch_q8(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  if (k % kQ8Pair != 0 || !aligned(w.data, 4)) return false;
  const size_t q_bytes = round_up(size_t(n) * k, 256);
  char* buffer = static_cast<char*>(scratch.reserve(q_bytes + size_t(n) * (k / kQ8Block) * sizeof(float)));
  int8_t* xq = reinterpret_cast<int8_t*>(buffer);
  float* xd = reinterpret_cast<float*>(buffer + q_bytes);
  const int blocks = n * (k / kQ8Block);
  quantize_q8<<<(blocks + 7) / 8, 256, 0, stream>>>(x.as<float>(), xq, xd, blocks);
  cuda_check(cudaGetLastError(), "quantize_q8 kernel launch");
  with_token_group(n, [&](auto tok) {
    gemv_q8_dp4a<decltype(tok)::value><<<gemv_grid(n, m), kWarps * 32, 0, stream>>>(xq, xd, w.as<BlockQ8_0>(), y.as<float>(), n, m, k);
  });
  cuda_check(cudaGetLastError(), "gemv_q8 kernel launch");
  return true;
}

}  // namespace

bool gemv(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  switch (w.dtype) {
    case DType::F32: return launch_vec16<float>(x, w, y, stream);
    case DType::F16: return launch_vec16<__half>(x, w, y, stream);
    case DType::BF16: return launch_vec16<__nv_bfloat16>(x, w, y, stream);
    case DType::Q8_0: return launch_q8(x, w, y, scratch, stream);
    default: return false;
  }
}

}  // namespace chai::cuda
