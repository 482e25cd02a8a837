// Matmul version 2 for prefill (kGemmMinRows token rows or more) on tensor cores:
// y[n, m] = x[n, k] · w[m, k]ᵀ with f16 operands and f32 accumulation.
//
// x is first converted to f16 once (into the matmul scratch), so that its tiles are plain
// copies. A block computes a 128 × 128 tile of y (128 tokens × 128 weight rows), walking k in
// steps of 32 through two shared-memory buffers: while the warps multiply one, the next k step
// is loaded into the other. Its 8 warps each own 64 × 32 of the tile as 4 × 2 wmma 16×16×16
// fragments. Each thread loads one segment of 16 values of the x tile and one of the w tile:
// f16 segments by cp.async straight into shared memory; BF16 and Q8_0 segments through
// registers, converted or dequantized to f16 on the way (cp.async cannot). Values outside the
// matrix are zero, so any n, m and k work. A new weight type is one more SegmentLoader.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <algorithm>
#include <string>

#include "../core/error.h"
#include "cuda_check.h"
#include "matmul_v2.h"
#include "weights.cuh"

namespace chai::cuda {
namespace {

using namespace nvcuda;

constexpr int kTileM = 128;        // token rows per block
constexpr int kTileN = 128;        // weight rows per block
constexpr int kTileK = 32;         // k per step
constexpr int kLd = kTileK + 8;    // shared row pitch in halves: 80 bytes keeps ldmatrix rows on distinct banks
constexpr int kSegment = 16;       // values one thread stages per tile and step
constexpr int kThreads = kTileM * kTileK / kSegment;
constexpr int kWarpM = 64, kWarpN = 32;  // output of one warp
constexpr int kFragM = kWarpM / 16, kFragN = kWarpN / 16;
static_assert(kTileN == kTileM, "one segment per thread in the x tile and in the w tile");
static_assert((kTileM / kWarpM) * (kTileN / kWarpN) * 32 == kThreads, "the warps cover the tile");

// Packs 16 floats into f16 and writes them to 32 aligned bytes of shared memory.
__device__ __forceinline__ void store_halves(__half* dst, const float (&v)[kSegment]) {
  uint32_t packed[kSegment / 2];
#pragma unroll
  for (int i = 0; i < kSegment / 2; ++i) {
    const __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
    packed[i] = *reinterpret_cast<const uint32_t*>(&h);
  }
  uint4* out = reinterpret_cast<uint4*>(dst);
  out[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
  out[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
}

// Loads values [c0, c0 + 16) of row `row` of a rows × k matrix (zeros outside it) for the
// shared-memory segment dst: load() starts it, store() completes it once the buffer is free
// (the kernel waits for cp.async before its barrier). The generic loader works for any k and
// alignment, value by value through registers.
template <typename W, bool kVector>
struct SegmentLoader {
  float v[kSegment];
  __device__ __forceinline__ void load(const W* base, int row, int rows, int c0, int k, __half*) {
    const W* r = base + size_t(row) * row_stride<W>(k);
#pragma unroll
    for (int i = 0; i < kSegment; ++i) v[i] = (row < rows && c0 + i < k) ? weight_at(r, c0 + i) : 0.0f;
  }
  __device__ __forceinline__ void store(__half* dst) const { store_halves(dst, v); }
};

// The vector loaders need k % 8 == 0 and 16-byte aligned rows: each group of 8 values is then
// wholly inside or outside the matrix and one 16-byte load.
// f16 (x, and F16 weights): two 16-byte cp.async, the source size 0 (zero fill) outside.
template <>
struct SegmentLoader<__half, true> {
  __device__ __forceinline__ void load(const __half* base, int row, int rows, int c0, int k, __half* dst) {
    const __half* src = base + size_t(row) * k + c0;
    const uint32_t to = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
#pragma unroll
    for (int g = 0; g < 2; ++g) {
      const bool inside = row < rows && c0 + 8 * g < k;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(to + 16 * g),
                   "l"(inside ? src + 8 * g : base), "r"(inside ? 16 : 0)
                   : "memory");
    }
  }
  __device__ __forceinline__ void store(__half*) const {}
};

__device__ __forceinline__ void wait_async_copies() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// BF16: two 16-byte loads of 8 values, converted to f16 in store().
template <>
struct SegmentLoader<__nv_bfloat16, true> {
  uint4 v[2];
  __device__ __forceinline__ void load(const __nv_bfloat16* base, int row, int rows, int c0, int k, __half*) {
    const uint4* r = reinterpret_cast<const uint4*>(base + size_t(row) * k + c0);
#pragma unroll
    for (int g = 0; g < 2; ++g) v[g] = (row < rows && c0 + 8 * g < k) ? __ldg(r + g) : make_uint4(0, 0, 0, 0);
  }
  __device__ __forceinline__ void store(__half* dst) const {
    float f[kSegment];
#pragma unroll
    for (int g = 0; g < 2; ++g) {
      const uint32_t words[4] = {v[g].x, v[g].y, v[g].z, v[g].w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        f[8 * g + 2 * i] = __uint_as_float(words[i] << 16);
        f[8 * g + 2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      }
    }
    store_halves(dst, f);
  }
};

// Q8_0 (k % 32 == 0 always): a segment is half a block, d * q for 16 int8 q. Blocks are 34
// bytes, so q is only 2-byte aligned: eight 16-bit loads.
template <bool kVector>
struct SegmentLoader<BlockQ8_0, kVector> {
  uint16_t d;
  uint16_t q[kSegment / 2];
  __device__ __forceinline__ void load(const BlockQ8_0* base, int row, int rows, int c0, int k, __half*) {
    const bool inside = row < rows && c0 < k;
    const BlockQ8_0* block = base + size_t(row) * (k / kQ8Block) + c0 / kQ8Block;
    const uint16_t* src = reinterpret_cast<const uint16_t*>(block->q + c0 % kQ8Block);
    d = inside ? __ldg(&block->d) : uint16_t(0);
#pragma unroll
    for (int i = 0; i < kSegment / 2; ++i) q[i] = inside ? __ldg(src + i) : uint16_t(0);
  }
  __device__ __forceinline__ void store(__half* dst) const {
    const float scale = __half2float(__ushort_as_half(d));
    float f[kSegment];
#pragma unroll
    for (int i = 0; i < kSegment / 2; ++i) {
      f[2 * i] = scale * float(int8_t(q[i] & 0xff));
      f[2 * i + 1] = scale * float(int8_t(q[i] >> 8));
    }
    store_halves(dst, f);
  }
};

template <typename W, bool kVector>
__global__ void __launch_bounds__(kThreads, 1) gemm_f16_tiles(const __half* __restrict__ x, const W* __restrict__ w,
                                                           float* __restrict__ y, int n, int m, int k) {
  // Two buffers, each the x tile then the w tile; reused as per-warp output staging at the end.
  __shared__ __align__(128) __half smem[2 * (kTileM + kTileN) * kLd];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row0 = blockIdx.y * kTileM, col0 = blockIdx.x * kTileN;
  const int seg_row = tid / (kTileK / kSegment), seg_col = (tid % (kTileK / kSegment)) * kSegment;
  const int warp_m = (warp / (kTileN / kWarpN)) * kWarpM, warp_n = (warp % (kTileN / kWarpN)) * kWarpN;
  auto tile_x = [&](int buf) { return smem + buf * (kTileM + kTileN) * kLd; };
  auto tile_w = [&](int buf) { return smem + buf * (kTileM + kTileN) * kLd + kTileM * kLd; };

  SegmentLoader<__half, kVector> xs;
  SegmentLoader<W, kVector> ws;
  xs.load(x, row0 + seg_row, n, seg_col, k, tile_x(0) + seg_row * kLd + seg_col);
  ws.load(w, col0 + seg_row, m, seg_col, k, tile_w(0) + seg_row * kLd + seg_col);
  xs.store(tile_x(0) + seg_row * kLd + seg_col);
  ws.store(tile_w(0) + seg_row * kLd + seg_col);
  wait_async_copies();
  __syncthreads();

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kFragM][kFragN];
#pragma unroll
  for (int i = 0; i < kFragM; ++i)
#pragma unroll
    for (int j = 0; j < kFragN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  const int steps = (k + kTileK - 1) / kTileK;
  for (int s = 0; s < steps; ++s) {
    const int cur = s & 1;
    const bool more = s + 1 < steps;
    // Issued before the math so that the loads are in flight during it; cp.async may write the
    // other buffer at once: it was last read before the previous barrier.
    if (more) {
      xs.load(x, row0 + seg_row, n, (s + 1) * kTileK + seg_col, k, tile_x(cur ^ 1) + seg_row * kLd + seg_col);
      ws.load(w, col0 + seg_row, m, (s + 1) * kTileK + seg_col, k, tile_w(cur ^ 1) + seg_row * kLd + seg_col);
    }
    const __half* xt = tile_x(cur);
    const __half* wt = tile_w(cur);
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      // w tile rows are output columns: as matrix_b it is column-major.
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b[kFragN];
#pragma unroll
      for (int j = 0; j < kFragN; ++j) wmma::load_matrix_sync(b[j], wt + (warp_n + 16 * j) * kLd + kk, kLd);
#pragma unroll
      for (int i = 0; i < kFragM; ++i) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
        wmma::load_matrix_sync(a, xt + (warp_m + 16 * i) * kLd + kk, kLd);
#pragma unroll
        for (int j = 0; j < kFragN; ++j) wmma::mma_sync(acc[i][j], a, b[j], acc[i][j]);
      }
    }
    if (more) {
      xs.store(tile_x(cur ^ 1) + seg_row * kLd + seg_col);
      ws.store(tile_w(cur ^ 1) + seg_row * kLd + seg_col);
    }
    wait_async_copies();
    __syncthreads();
  }

  // Fragments go through 1 KB of shared memory per warp so that edge tiles store only what is
  // inside y (and y rows need no particular alignment).
  float* staging = reinterpret_cast<float*>(smem) + warp * 256;
#pragma unroll
  for (int i = 0; i < kFragM; ++i)
#pragma unroll
    for (int j = 0; j < kFragN; ++j) {
      wmma::store_matrix_sync(staging, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const int r0 = row0 + warp_m + 16 * i, c0 = col0 + warp_n + 16 * j;
#pragma unroll
      for (int e = lane; e < 256; e += 32) {
        const int r = r0 + e / 16, c = c0 + e % 16;
        if (r < n && c < m) y[size_t(r) * m + c] = staging[e];
      }
      __syncwarp();
    }
}

__global__ void to_f16(const float* __restrict__ x, __half* __restrict__ out, size_t count) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count; i += size_t(gridDim.x) * blockDim.x)
    out[i] = __float2half_rn(x[i]);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename W>
void launch(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  const dim3 grid((m + kTileN - 1) / kTileN, (n + kTileM - 1) / kTileM);
  CHAI_REQUIRE(grid.y <= 65535u, ErrorCode::Unsupported, "gemm: too many rows for one launch (" + std::to_string(n) + ")");
  const size_t count = size_t(n) * size_t(k);
  __half* xh = static_cast<__half*>(scratch.reserve(count * sizeof(__half)));
  const int blocks = int(std::min<size_t>((count + 255) / 256, 4096));
  to_f16<<<blocks, 256, 0, stream>>>(x.as<float>(), xh, count);
  cuda_check(cudaGetLastError(), "to_f16 kernel launch");
  const bool vector = k % 8 == 0 && aligned16(w.data);  // the scratch is 256-byte aligned
  if (vector)
    gemm_f16_tiles<W, true><<<grid, kThreads, 0, stream>>>(xh, w.as<W>(), y.as<float>(), n, m, k);
  else
    gemm_f16_tiles<W, false><<<grid, kThreads, 0, stream>>>(xh, w.as<W>(), y.as<float>(), n, m, k);
  cuda_check(cudaGetLastError(), "gemm kernel launch");
}

}  // namespace

bool gemm_f16(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  switch (w.dtype) {
    case DType::F16: launch<__half>(x, w, y, scratch, stream); return true;
    case DType::BF16: launch<__nv_bfloat16>(x, w, y, scratch, stream); return true;
    case DType::Q8_0: launch<BlockQ8_0>(x, w, y, scratch, stream); return true;
    default: return false;  // no SegmentLoader for this type (f32 weights keep f32 arithmetic)
  }
}

}  // namespace chai::cuda
