// Matmul version 2 for prefill (kGemmMinRows token rows or more) on tensor cores (mma.sync
// m16n8k16): y[n, m] = x[n, k] · w[m, k]ᵀ with 16-bit operands and f32 accumulation.
//
// Operands: F16 and Q8_0 weights multiply f16 activations, BF16 weights bf16 activations (BF16
// values do not fit f16's range). x is first written once in the operand type (into the matmul
// scratch) by prepare_rows. For f16 each row is scaled by a power of two that puts its largest
// |value| in [2^14, 2^15): nothing overflows f16's 65504, small values keep f16's 11 bits, and
// the scale is undone exactly on y. bf16 has f32's range and needs no scale.
//
// A block computes a 128 × 128 tile of y (128 tokens × 128 weight rows), walking k in steps of 32
// through two shared-memory buffers: while the warps multiply one, the next k step is loaded into
// the other. Its 8 warps each own 64 × 32 of the tile as 4 × 4 m16n8 accumulators; A and B
// fragments come from shared memory by ldmatrix. Each thread loads one segment of 16 values of
// the x tile and one of the w tile: segments already in the operand type by cp.async straight into
// shared memory; others (Q8_0, or rows the 16-byte copies cannot take) through registers,
// converted or dequantized on the way. Values outside the matrix are zero, so any n, m and k work.
// Synchronisation: a buffer is written (cp.async or st.shared) only after the barrier that ended
// the step which last read it; each step ends with cp.async.wait_all (this thread's copies into
// the next buffer have landed) and then __syncthreads (everyone's have, and everyone is done
// reading the current buffer), so the next step reads complete tiles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "../core/error.h"
#include "cuda_check.h"
#include "matmul_v2.h"
#include "mma.cuh"
#include "reduce.cuh"
#include "weights.cuh"

namespace chai::cuda {
namespace {

constexpr int kTileM = 128;        // token rows per block
constexpr int kTileN = 128;        // weight rows per block
constexpr int kTileK = 32;         // k per step
constexpr int kLd = kTileK + 8;    // shared row pitch in 16-bit values: 80 bytes keeps ldmatrix rows on distinct banks
constexpr int kSegment = 16;       // values one thread stages per tile and step
constexpr int kThreads = kTileM * kTileK / kSegment;
constexpr int kWarpM = 64, kWarpN = 32;  // output of one warp
constexpr int kFragM = kWarpM / 16, kFragN = kWarpN / 8;
static_assert(kTileN == kTileM, "one segment per thread in the x tile and in the w tile");
static_assert((kTileM / kWarpM) * (kTileN / kWarpN) * 32 == kThreads, "the warps cover the tile");

// Converts 16 floats to the operand type and writes them to 32 aligned bytes of shared memory.
template <typename Op>
__device__ __forceinline__ void store_segment(Op* dst, const float (&v)[kSegment]) {
  uint32_t packed[kSegment / 2];
#pragma unroll
  for (int i = 0; i < kSegment / 2; ++i) packed[i] = pack2<Op>(v[2 * i], v[2 * i + 1]);
  uint4* out = reinterpret_cast<uint4*>(dst);
  out[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
  out[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
}

// Loads values [c0, c0 + 16) of row `row` of a rows × k matrix of W (zeros outside it) into the
// shared-memory segment dst, as operand type Op: load() starts it, store() completes it once the
// buffer is free (the kernel waits for cp.async before its barrier). The generic loader works for
// any k and alignment, value by value through registers.
template <typename Op, typename W, bool kVector>
struct SegmentLoader {
  float v[kSegment];
  __device__ __forceinline__ void load(const W* base, int row, int rows, int c0, int k, Op*) {
    const W* r = base + size_t(row) * row_stride<W>(k);
#pragma unroll
    for (int i = 0; i < kSegment; ++i) v[i] = (row < rows && c0 + i < k) ? weight_at(r, c0 + i) : 0.0f;
  }
  __device__ __forceinline__ void store(Op* dst) const { store_segment(dst, v); }
};

// Rows already in the operand type, k % 8 == 0 and 16-byte aligned rows (each group of 8 values
// wholly inside or outside the matrix): two 16-byte cp.async, zero-filled outside.
template <typename Op>
struct SegmentLoader<Op, Op, true> {
  __device__ __forceinline__ void load(const Op* base, int row, int rows, int c0, int k, Op* dst) {
    const Op* src = base + size_t(row) * k + c0;
#pragma unroll
    for (int g = 0; g < 2; ++g) {
      const bool inside = row < rows && c0 + 8 * g < k;
      cp_async16(dst + 8 * g, inside ? src + 8 * g : base, inside ? 16 : 0);
    }
  }
  __device__ __forceinline__ void store(Op*) const {}
};

__device__ __forceinline__ void wait_async_copies() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Q8_0 (k % 32 == 0 always), into f16: a segment is half a block, d * q for 16 int8 q. Blocks
// are 34 bytes, so q is only 2-byte aligned: eight 16-bit loads.
template <>
struct SegmentLoader<__half, BlockQ8_0, true> {
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
    store_segment(dst, f);
  }
};

// x in the operand type, one block per row; for f16 the row is scaled by 2^s (s chosen so that
// its largest finite |value| lands in [2^14, 2^15)) and inv_scale[row] = 2^-s. inf and NaN are
// left out of the maximum (they propagate as they would in f32); rows of zeros keep s = 0.
template <typename Op>
__global__ void __launch_bounds__(256) prepare_rows(const float* __restrict__ x, Op* __restrict__ out,
                                                   float* __restrict__ inv_scale, int k) {
  const float* row = x + size_t(blockIdx.x) * k;
  Op* dst = out + size_t(blockIdx.x) * k;
  float scale = 1.0f;
  if constexpr (std::is_same_v<Op, __half>) {
    float top = 0.0f;
    for (int c = threadIdx.x; c < k; c += blockDim.x)
      if (isfinite(row[c])) top = fmaxf(top, fabsf(row[c]));
    const int shift = f16_row_shift(block_reduce(top, MaxOp{}, 0.0f));
    scale = ldexpf(1.0f, shift);
    if (threadIdx.x == 0) inv_scale[blockIdx.x] = ldexpf(1.0f, -shift);
  }
  for (int c = threadIdx.x; c < k; c += blockDim.x) {
    if constexpr (std::is_same_v<Op, __half>) dst[c] = __float2half_rn(row[c] * scale);
    else dst[c] = __ushort_as_bfloat16(bf16_bits_rn(row[c]));
  }
}

template <typename Op, typename W, bool kVector>
__global__ void __launch_bounds__(kThreads, 1) gemm_tiles(const Op* __restrict__ x, const float* __restrict__ row_inv_scale,
                                                       const W* __restrict__ w, float* __restrict__ y, int n, int m, int k) {
  // Two buffers, each the x tile then the w tile.
  __shared__ __align__(128) Op smem[2 * (kTileM + kTileN) * kLd];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row0 = blockIdx.y * kTileM, col0 = blockIdx.x * kTileN;
  const int seg_row = tid / (kTileK / kSegment), seg_col = (tid % (kTileK / kSegment)) * kSegment;
  const int warp_m = (warp / (kTileN / kWarpN)) * kWarpM, warp_n = (warp % (kTileN / kWarpN)) * kWarpN;
  auto tile_x = [&](int buf) { return smem + buf * (kTileM + kTileN) * kLd; };
  auto tile_w = [&](int buf) { return smem + buf * (kTileM + kTileN) * kLd + kTileM * kLd; };

  SegmentLoader<Op, Op, kVector> xs;
  SegmentLoader<Op, W, kVector> ws;
  xs.load(x, row0 + seg_row, n, seg_col, k, tile_x(0) + seg_row * kLd + seg_col);
  ws.load(w, col0 + seg_row, m, seg_col, k, tile_w(0) + seg_row * kLd + seg_col);
  xs.store(tile_x(0) + seg_row * kLd + seg_col);
  ws.store(tile_w(0) + seg_row * kLd + seg_col);
  wait_async_copies();
  __syncthreads();

  float acc[kFragM][kFragN][4] = {};
  // ldmatrix addresses of this lane: A rows lane % 16 at k offset 8 · (lane / 16); B rows (weight
  // rows) 8 · (lane / 16) + lane % 8 at k offset 8 · (lane / 8 % 2), so that the four matrices are
  // the a0..a3 of an m16k16 fragment and the (b0, b1) of two n8 fragments.
  const int a_row = lane % 16, a_col = 8 * (lane / 16);
  const int b_row = 8 * (lane / 16) + lane % 8, b_col = 8 * (lane / 8 % 2);

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
    const Op* xt = tile_x(cur);
    const Op* wt = tile_w(cur);
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      uint32_t b[kFragN][2];
#pragma unroll
      for (int j = 0; j < kFragN; j += 2) {
        uint32_t r[4];
        ldmatrix_x4(r, wt + (warp_n + 8 * j + b_row) * kLd + kk + b_col);
        b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < kFragM; ++i) {
        uint32_t a[4];
        ldmatrix_x4(a, xt + (warp_m + 16 * i + a_row) * kLd + kk + a_col);
#pragma unroll
        for (int j = 0; j < kFragN; ++j) mma_16816<Op>(acc[i][j], a, b[j][0], b[j][1]);
      }
    }
    if (more) {
      xs.store(tile_x(cur ^ 1) + seg_row * kLd + seg_col);
      ws.store(tile_w(cur ^ 1) + seg_row * kLd + seg_col);
    }
    wait_async_copies();
    __syncthreads();
  }

  // Accumulator (i, j) holds rows warp_m + 16i + lane/4 (+ 8), columns warp_n + 8j + 2(lane%4) (+ 1).
#pragma unroll
  for (int i = 0; i < kFragM; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = row0 + warp_m + 16 * i + lane / 4 + 8 * half;
      if (r >= n) continue;
      const float unscale = row_inv_scale ? row_inv_scale[r] : 1.0f;
#pragma unroll
      for (int j = 0; j < kFragN; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = col0 + warp_n + 8 * j + 2 * (lane % 4) + e;
          if (c < m) y[size_t(r) * m + c] = acc[i][j][2 * half + e] * unscale;
        }
    }
}

// Op: the operand type (f16 for F16 and Q8_0 weights, bf16 for BF16 weights).
template <typename Op, typename W>
void launch(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  const dim3 grid((m + kTileN - 1) / kTileN, (n + kTileM - 1) / kTileM);
  CHAI_REQUIRE(grid.y <= 65535u, ErrorCode::Unsupported, "gemm: too many rows for one launch (" + std::to_string(n) + ")");
  constexpr bool kScaled = std::is_same_v<Op, __half>;
  const size_t x_bytes = round_up(size_t(n) * size_t(k) * sizeof(Op), 256);
  char* buffer = static_cast<char*>(scratch.reserve(x_bytes + (kScaled ? size_t(n) * sizeof(float) : 0)));
  Op* xo = reinterpret_cast<Op*>(buffer);
  float* inv_scale = kScaled ? reinterpret_cast<float*>(buffer + x_bytes) : nullptr;
  prepare_rows<Op><<<unsigned(n), 256, 0, stream>>>(x.as<float>(), xo, inv_scale, k);
  cuda_check(cudaGetLastError(), "gemm row preparation launch");
  auto run = [&](auto vector) {
    gemm_tiles<Op, W, decltype(vector)::value><<<grid, kThreads, 0, stream>>>(xo, inv_scale, w.as<W>(), y.as<float>(), n, m, k);
  };
  // Q8_0 rows hold whole blocks (k % 32 == 0) and its loader needs no alignment; otherwise the
  // 16-byte copies need k % 8 == 0 and aligned weights (the scratch is 256-byte aligned).
  if constexpr (std::is_same_v<W, BlockQ8_0>) run(std::true_type{});
  else if (k % 8 == 0 && aligned(w.data, 16)) run(std::true_type{});
  else run(std::false_type{});
  cuda_check(cudaGetLastError(), "gemm kernel launch");
}

}  // namespace

bool gemm_tensor_core(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  switch (w.dtype) {
    case DType::F16: launch<__half, __half>(x, w, y, scratch, stream); return true;
    case DType::BF16: launch<__nv_bfloat16, __nv_bfloat16>(x, w, y, scratch, stream); return true;
    case DType::Q8_0: launch<__half, BlockQ8_0>(x, w, y, scratch, stream); return true;
    default: return false;  // no SegmentLoader for this type (f32 weights keep f32 arithmetic)
  }
}

}  // namespace chai::cuda
