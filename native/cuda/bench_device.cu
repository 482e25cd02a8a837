// Device-side helpers of the microbenchmarks (see bench_device.h).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "../core/quant_blocks.h"
#include "bench_device.h"
#include "cuda_check.h"
#include "weights.cuh"

namespace chai::cuda::bench {
namespace {

// A 32-bit integer hash (lowbias32): consecutive indices give unrelated values.
__device__ __forceinline__ uint32_t hash(uint32_t v) {
  v ^= v >> 16;
  v *= 0x7feb352du;
  v ^= v >> 15;
  v *= 0x846ca68bu;
  v ^= v >> 16;
  return v;
}

// 32 random bits from (seed, index).
__device__ __forceinline__ uint32_t random_bits(uint32_t seed, size_t i) {
  return hash(seed * 0x9e3779b9u ^ hash(uint32_t(i)) ^ uint32_t(i >> 32));
}

__device__ __forceinline__ float random_value(uint32_t seed, size_t i, float scale) {
  const uint32_t h = random_bits(seed, i);
  const float magnitude = 0.05f + 0.95f * float(h >> 8) * (1.0f / 16777216.0f);
  return (h & 1u ? -magnitude : magnitude) * scale;
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __ushort_as_bfloat16(bf16_bits_rn(v)); }

template <typename T>
__global__ void fill_values(T* dst, size_t count, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<T>(random_value(seed, i, scale));
}

// An f16 scale field ±[0.05, 1) · bound, rounded toward zero so that it never exceeds the bound.
__device__ __forceinline__ uint16_t random_half(uint32_t seed, size_t i, float bound) {
  return __half_as_ushort(__float2half_rz(random_value(seed, i, bound)));
}

// The scale fields of block i, each bounded by `scale` over the largest quant term it multiplies.
__device__ __forceinline__ void set_scales(BlockQ8_0& b, uint32_t seed, size_t i, float scale) {
  b.d = random_half(seed, i, scale / 128);  // |q| <= 128
}
__device__ __forceinline__ void set_scales(BlockQ4_0& b, uint32_t seed, size_t i, float scale) {
  b.d = random_half(seed, i, scale / 8);  // |nibble - 8| <= 8
}
// d · sc · q - dmin · mn with 6-bit sc and mn and 4-bit q: each term within half of scale.
__device__ __forceinline__ void set_scales(BlockQ4_K& b, uint32_t seed, size_t i, float scale) {
  b.d = random_half(seed, 2 * i, scale / (2 * 63 * 15));
  b.dmin = random_half(seed, 2 * i + 1, scale / (2 * 63));
}
__device__ __forceinline__ void set_scales(BlockQ6_K& b, uint32_t seed, size_t i, float scale) {
  b.d = random_half(seed, i, scale / (128 * 32));  // |scales[g] · (q6 - 32)| <= 128 · 32
}

// Random bytes in every block, then its scale fields (from another stream of the seed).
template <typename Block>
__global__ void fill_blocks(Block* dst, size_t blocks, uint32_t seed, float scale) {
  constexpr int kWords = (sizeof(Block) + 3) / 4;
  for (size_t b = blockIdx.x * size_t(blockDim.x) + threadIdx.x; b < blocks; b += size_t(gridDim.x) * blockDim.x) {
    Block block;
    auto* bytes = reinterpret_cast<uint8_t*>(&block);
    for (int w = 0; w < kWords; ++w) {
      const uint32_t bits = random_bits(seed, b * kWords + w);
      for (int j = 0; j < 4 && 4 * w + j < int(sizeof(Block)); ++j) bytes[4 * w + j] = uint8_t(bits >> (8 * j));
    }
    set_scales(block, ~seed, b, scale);
    dst[b] = block;
  }
}

constexpr int kReadUnroll = 4;

__global__ void read_kernel(const uint4* __restrict__ src, size_t vectors, uint32_t* sink) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  uint32_t acc = 0;
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  for (; i + (kReadUnroll - 1) * stride < vectors; i += kReadUnroll * stride) {
    uint4 v[kReadUnroll];
#pragma unroll
    for (int u = 0; u < kReadUnroll; ++u) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < kReadUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < vectors; i += stride) {
    const uint4 v = __ldcs(src + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x9e3779b9u) *sink = acc;  // practically never true, but the compiler cannot know
}

// Blocks of `threads` for `work` grid-stride items: one full wave of the GPU at most.
int grid_for(size_t work, int threads) {
  int device = 0, sms = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  const size_t wanted = (work + threads - 1) / threads, resident = size_t(sms) * (2048 / threads);  // one wave
  return int(wanted < resident ? wanted : resident);
}

}  // namespace

void fill_random(void* dst, DType dtype, int64_t rows, int64_t cols, uint32_t seed, float scale, cudaStream_t stream) {
  const size_t count = size_t(rows) * size_t(cols);
  const int threads = 256;
  auto values = [&](auto* typed) {
    fill_values<<<grid_for(count, threads), threads, 0, stream>>>(typed, count, seed, scale);
  };
  auto blocks = [&](auto* typed) {
    CHAI_REQUIRE(cols % dtype_block_values(dtype) == 0, ErrorCode::InvalidArgument,
                 std::string("fill_random: ") + dtype_name(dtype) + " rows must hold whole blocks, got " + std::to_string(cols) +
                     " values");
    const size_t n = count / size_t(dtype_block_values(dtype));
    fill_blocks<<<grid_for(n, threads), threads, 0, stream>>>(typed, n, seed, scale);
  };
  switch (dtype) {
    case DType::F32: values(static_cast<float*>(dst)); break;
    case DType::F16: values(static_cast<__half*>(dst)); break;
    case DType::BF16: values(static_cast<__nv_bfloat16*>(dst)); break;
    case DType::Q8_0: blocks(static_cast<BlockQ8_0*>(dst)); break;
    case DType::Q4_0: blocks(static_cast<BlockQ4_0*>(dst)); break;
    case DType::Q4_K: blocks(static_cast<BlockQ4_K*>(dst)); break;
    case DType::Q6_K: blocks(static_cast<BlockQ6_K*>(dst)); break;
    default: fail(ErrorCode::Unsupported, std::string("fill_random: no generator for ") + dtype_name(dtype));
  }
  cuda_check(cudaGetLastError(), "fill_random kernel launch");
}

void read_all(const void* src, size_t bytes, uint32_t* sink, cudaStream_t stream) {
  const size_t vectors = bytes / 16;
  const int threads = 512;
  read_kernel<<<grid_for(vectors / kReadUnroll, threads), threads, 0, stream>>>(static_cast<const uint4*>(src), vectors, sink);
  cuda_check(cudaGetLastError(), "read kernel launch");
}

}  // namespace chai::cuda::bench
