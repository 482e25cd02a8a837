// Matmul version 3 for prefill (kGemmMinRows token rows or more) on tensor cores (mma.sync
// m16n8k16): y[n, m] = x[n, k] · w[m, k]ᵀ with 16-bit operands and f32 accumulation. Version 2
// (gemm_mma.cu) first writes all of x in the operand type; here the f32 activations are
// converted while their tile is loaded, so x is read once per column of blocks as f32 and never
// written back.
//
// Operands as in version 2: F16 and Q8_0 weights multiply f16 activations scaled per row by a
// power of two (mma.cuh's f16_row_shift: |x| up to f32's range does not overflow f16, the scale is
// undone exactly on y); BF16 weights multiply bf16 activations (f32's range, no scale). The row
// shifts come from f16_row_shifts, a reduction that reads x once and writes 4 bytes per row: a
// tile sees 32 of a row's k values at a time, and the scale must be fixed before its first tile
// is converted; finding it inside the GEMM would make every column of blocks (m / 128 of them)
// re-read its 128 whole rows before its first mma.
//
// A block computes a 128 × 128 tile of y with 8 warps (each 64 × 32 as 4 × 4 m16n8
// accumulators, fragments by ldmatrix), walking k in steps of 32. Weight tiles in the operand
// type go global → shared by cp.async into a ring of kWStages buffers, issued kWStages - 1 steps
// ahead (one commit group per step). Activation tiles (and Q8_0 or unaligned weight tiles) go
// through registers: loaded two steps ahead, converted and stored to shared memory one step
// ahead, so the loads of step s + 2 are in flight during the mma of step s (XLoader: where the
// registers allow). Shared tiles have
// 64-byte rows with 16-byte chunks swizzled (chunk c of row r at c ^ (r / 2 % 4)), so the eight
// rows one ldmatrix reads fall on distinct banks without padding: 4 weight stages and 2 x stages
// are 48 KiB, two blocks per SM on sm_80 and sm_90 (bench/v3-matmul.md).
//
// Synchronisation (one __syncthreads per k step): at step s a thread writes x stage (s + 1) % 2
// and, by cp.async, weight stage (s + 3) % 4 (or (s + 1) % 4 from registers); each was last read
// at step s - 1 or before, and every warp finished those reads before the barrier that ended
// step s - 1.
// The step ends with cp.async.wait_group kWStages - 2 (this thread's copies for step s + 1 have
// landed; those for s + 2 and s + 3 stay in flight) and then __syncthreads (everyone's copies and
// register stores for step s + 1 are visible, and everyone is done reading step s's stages).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

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

constexpr int kTileM = 128;   // token rows per block
constexpr int kTileN = 128;   // weight rows per block
constexpr int kTileK = 32;    // k per step
constexpr int kSegment = 16;  // values one thread stages per tile and step
constexpr int kThreads = kTileM * kTileK / kSegment;
constexpr int kWarpM = 64, kWarpN = 32;  // output of one warp
constexpr int kFragM = kWarpM / 16, kFragN = kWarpN / 8;
constexpr int kWStages = 4;  // weight tiles: step s + 3 is copied while step s is multiplied
constexpr int kXStages = 2;  // activation tiles: step s + 1 stored, step s + 2 in registers
constexpr int kTileValues = kTileM * kTileK;
static_assert(kTileN == kTileM, "one segment per thread in the x tile and in the w tile");
static_assert((kTileM / kWarpM) * (kTileN / kWarpN) * 32 == kThreads, "the warps cover the tile");
static_assert(kTileK == 32, "swizzle() assumes four 16-byte chunks per row");

// Offset of (row, col) in a tile of 32-value rows, col a multiple of 8: the chunk col / 8 of row
// r is stored at chunk (col / 8) ^ (r / 2 % 4). Rows two apart would share banks unswizzled; with
// it, rows 8i .. 8i + 7 at one logical chunk take eight distinct 16-byte bank groups.
__device__ __forceinline__ int swizzle(int row, int col) { return row * kTileK + (((col >> 3) ^ ((row >> 1) & 3)) << 3); }

// 16 floats → operand type, as 8 registers of pairs.
template <typename Op>
__device__ __forceinline__ void pack_segment(const float (&v)[kSegment], uint32_t (&p)[kSegment / 2]) {
#pragma unroll
  for (int i = 0; i < kSegment / 2; ++i) p[i] = pack2<Op>(v[2 * i], v[2 * i + 1]);
}
// A packed segment as its two 16-byte chunks at tile + off and (the next chunk) tile + (off ^ 8):
// the chunks c, c + 1 of a segment (c even) swizzle to (c ^ x), (c ^ x) ^ 1.
template <typename Op>
__device__ __forceinline__ void store_chunks(Op* tile, int off, const uint32_t (&p)[kSegment / 2]) {
  *reinterpret_cast<uint4*>(tile + off) = make_uint4(p[0], p[1], p[2], p[3]);
  *reinterpret_cast<uint4*>(tile + (off ^ 8)) = make_uint4(p[4], p[5], p[6], p[7]);
}

// Activations: 16 f32 values [c0, c0 + 16) of row `row` (zeros outside the matrix), multiplied
// by the row's power of two and rounded to Op. kVector (k % 8 == 0, x 16-byte aligned): four
// float4 loads, else value by value. kHoldFloats: the floats are kept until stored, so the loads
// stay in flight during the step's mma; otherwise they are converted at once (8 registers
// instead of 16; this warp then waits for its loads while the SM's other warps multiply), as
// for odd k and for Q8_0 weights, whose register-held weight segment leaves no room for 16 floats
// at two blocks per SM.
template <typename Op, bool kVector, bool kHoldFloats>
struct XLoader {
  float v[kHoldFloats ? kSegment : 1];
  uint32_t p[kHoldFloats ? 1 : kSegment / 2];
  float scale = 1.0f;
  __device__ __forceinline__ void load(const float* x, int row, int n, int c0, int k) {
    float f[kSegment];
    const float* r = x + size_t(row) * k + c0;
    if constexpr (kVector) {
#pragma unroll
      for (int q = 0; q < kSegment / 4; ++q) {
        const float4 f4 = (row < n && c0 + 4 * q < k) ? __ldg(reinterpret_cast<const float4*>(r) + q) : make_float4(0, 0, 0, 0);
        f[4 * q] = f4.x, f[4 * q + 1] = f4.y, f[4 * q + 2] = f4.z, f[4 * q + 3] = f4.w;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kSegment; ++i) f[i] = (row < n && c0 + i < k) ? __ldg(r + i) : 0.0f;
    }
    if constexpr (kHoldFloats) {
#pragma unroll
      for (int i = 0; i < kSegment; ++i) v[i] = f[i];
    } else {
      pack(f, p);
    }
  }
  __device__ __forceinline__ void store(Op* tile, int off) {
    if constexpr (kHoldFloats) {
      uint32_t packed[kSegment / 2];
      pack(v, packed);
      store_chunks(tile, off, packed);
    } else {
      store_chunks(tile, off, p);
    }
  }
  __device__ __forceinline__ void pack(float (&f)[kSegment], uint32_t (&out)[kSegment / 2]) const {
    if constexpr (std::is_same_v<Op, __half>)
#pragma unroll
      for (int i = 0; i < kSegment; ++i) f[i] *= scale;  // a power of two: exact
    pack_segment<Op>(f, out);
  }
};

// Weight loaders: load(...) starts segment [c0, c0 + 16) of weight row `row` (zeros outside);
// kAsync ones copy straight into the tile, the others hold registers until store(...).
// The generic one: any k and alignment, value by value.
template <typename Op, typename W, bool kVector>
struct WLoader {
  static constexpr bool kAsync = false;
  uint32_t p[kSegment / 2];
  __device__ __forceinline__ void load(const W* w, int row, int m, int c0, int k, Op*, int) {
    const W* r = w + size_t(row) * row_stride<W>(k);
    float v[kSegment];
#pragma unroll
    for (int i = 0; i < kSegment; ++i) v[i] = (row < m && c0 + i < k) ? weight_at(r, c0 + i) : 0.0f;
    pack_segment<Op>(v, p);
  }
  __device__ __forceinline__ void store(Op* tile, int off) const { store_chunks(tile, off, p); }
};

// Rows already in the operand type, k % 8 == 0 and 16-byte aligned rows: two 16-byte cp.async,
// zero-filled outside the matrix.
template <typename Op>
struct WLoader<Op, Op, true> {
  static constexpr bool kAsync = true;
  __device__ __forceinline__ void load(const Op* w, int row, int m, int c0, int k, Op* tile, int off) {
    const Op* src = w + size_t(row) * k + c0;
    const bool in0 = row < m && c0 < k, in1 = row < m && c0 + 8 < k;
    cp_async16(tile + off, in0 ? src : w, in0 ? 16 : 0);
    cp_async16(tile + (off ^ 8), in1 ? src + 8 : w, in1 ? 16 : 0);
  }
  __device__ __forceinline__ void store(Op*, int) const {}
};

// Q8_0 into f16: a segment is half a block (k % 32 == 0), d · q for 16 int8 q, dequantized when
// stored. Blocks are 34 bytes, so q is only 2-byte aligned: eight 16-bit loads.
template <>
struct WLoader<__half, BlockQ8_0, true> {
  static constexpr bool kAsync = false;
  uint16_t d;
  uint16_t q[kSegment / 2];
  __device__ __forceinline__ void load(const BlockQ8_0* w, int row, int m, int c0, int k, __half*, int) {
    const bool inside = row < m && c0 < k;
    const BlockQ8_0* block = w + size_t(row) * (k / kQ8Block) + c0 / kQ8Block;
    const uint16_t* src = reinterpret_cast<const uint16_t*>(block->q + c0 % kQ8Block);
    d = inside ? __ldg(&block->d) : uint16_t(0);
#pragma unroll
    for (int i = 0; i < kSegment / 2; ++i) q[i] = inside ? __ldg(src + i) : uint16_t(0);
  }
  __device__ __forceinline__ void store(__half* tile, int off) const {
    const float scale = __half2float(__ushort_as_half(d));
    float f[kSegment];
#pragma unroll
    for (int i = 0; i < kSegment / 2; ++i) {
      f[2 * i] = scale * float(int8_t(q[i] & 0xff));
      f[2 * i + 1] = scale * float(int8_t(q[i] >> 8));
    }
    uint32_t p[kSegment / 2];
    pack_segment<__half>(f, p);
    store_chunks(tile, off, p);
  }
};

// shift[row] for f16 operands (mma.cuh): one block per row; inf and NaN are left out of the
// maximum (they propagate through the product as they would in f32).
__global__ void __launch_bounds__(256) f16_row_shifts(const float* __restrict__ x, int* __restrict__ shift, int k) {
  const float* row = x + size_t(blockIdx.x) * k;
  float top = 0.0f;
  for (int c = threadIdx.x; c < k; c += blockDim.x)
    if (isfinite(row[c])) top = fmaxf(top, fabsf(row[c]));
  top = block_reduce(top, MaxOp{}, 0.0f);
  if (threadIdx.x == 0) shift[blockIdx.x] = f16_row_shift(top);
}

// row_shift: per-row powers of two for f16 operands, nullptr for bf16.
template <typename Op, typename W, bool kVector>
__global__ void __launch_bounds__(kThreads, 2) gemm_v3_tiles(const float* __restrict__ x, const int* __restrict__ row_shift,
                                                          const W* __restrict__ w, float* __restrict__ y, int n, int m, int k) {
  __shared__ __align__(128) Op x_tiles[kXStages][kTileValues];
  __shared__ __align__(128) Op w_tiles[kWStages][kTileValues];
  using Weights = WLoader<Op, W, kVector>;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int row0 = blockIdx.y * kTileM, col0 = blockIdx.x * kTileN;
  const int seg_row = tid / (kTileK / kSegment), seg_col = (tid % (kTileK / kSegment)) * kSegment;
  const int off = swizzle(seg_row, seg_col);  // of the segment's first chunk; the second is at off ^ 8
  const int warp_m = (warp / (kTileN / kWarpN)) * kWarpM, warp_n = (warp % (kTileN / kWarpN)) * kWarpN;
  const int steps = (k + kTileK - 1) / kTileK;

  XLoader<Op, kVector, kVector && Weights::kAsync> xl;
  if (row_shift != nullptr && row0 + seg_row < n) xl.scale = ldexpf(1.0f, row_shift[row0 + seg_row]);
  Weights wl;
  auto load_x = [&](int step) { xl.load(x, row0 + seg_row, n, step * kTileK + seg_col, k); };
  auto load_w = [&](int step) {
    wl.load(w, col0 + seg_row, m, step * kTileK + seg_col, k, w_tiles[step % kWStages], off);
  };
  auto store_w = [&](int step) { wl.store(w_tiles[step % kWStages], off); };

  // Prologue: step 0 stored (or copying), step 1 in registers, weight copies of steps 1, 2 issued.
  load_x(0);
  xl.store(x_tiles[0], off);
  if (steps > 1) load_x(1);
  if constexpr (Weights::kAsync) {
#pragma unroll
    for (int t = 0; t < kWStages - 1; ++t) {
      if (t < steps) load_w(t);
      cp_async_commit();
    }
  } else {
    load_w(0);
    store_w(0);
    if (steps > 1) load_w(1);
  }
  cp_async_wait<kWStages - 2>();
  __syncthreads();

  float acc[kFragM][kFragN][4] = {};
  // ldmatrix addresses of this lane: A rows lane % 16 at k offset 8 · (lane / 16); B rows (weight
  // rows) 8 · (lane / 16) + lane % 8 at k offset 8 · (lane / 8 % 2), so that the four matrices are
  // the a0..a3 of an m16k16 fragment and the (b0, b1) of two n8 fragments.
  const int a_row = lane % 16, a_col = 8 * (lane / 16);
  const int b_row = 8 * (lane / 16) + lane % 8, b_col = 8 * (lane / 8 % 2);

  for (int s = 0; s < steps; ++s) {
    if (s + 1 < steps) {
      xl.store(x_tiles[(s + 1) % kXStages], off);
      if constexpr (!Weights::kAsync) store_w(s + 1);
    }
    if (s + 2 < steps) {
      load_x(s + 2);
      if constexpr (!Weights::kAsync) load_w(s + 2);
    }
    if constexpr (Weights::kAsync) {
      if (s + kWStages - 1 < steps) load_w(s + kWStages - 1);
      cp_async_commit();  // possibly empty: one group per step keeps wait_group's count right
    }
    const Op* xt = x_tiles[s % kXStages];
    const Op* wt = w_tiles[s % kWStages];
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      uint32_t b[kFragN][2];
#pragma unroll
      for (int j = 0; j < kFragN; j += 2) {
        uint32_t r[4];
        ldmatrix_x4(r, wt + swizzle(warp_n + 8 * j + b_row, kk + b_col));
        b[j][0] = r[0], b[j][1] = r[1], b[j + 1][0] = r[2], b[j + 1][1] = r[3];
      }
#pragma unroll
      for (int i = 0; i < kFragM; ++i) {
        uint32_t a[4];
        ldmatrix_x4(a, xt + swizzle(warp_m + 16 * i + a_row, kk + a_col));
#pragma unroll
        for (int j = 0; j < kFragN; ++j) mma_16816<Op>(acc[i][j], a, b[j][0], b[j][1]);
      }
    }
    cp_async_wait<kWStages - 2>();
    __syncthreads();
  }

  // Accumulator (i, j) holds rows warp_m + 16i + lane/4 (+ 8), columns warp_n + 8j + 2(lane%4) (+ 1).
#pragma unroll
  for (int i = 0; i < kFragM; ++i)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = row0 + warp_m + 16 * i + lane / 4 + 8 * half;
      if (r >= n) continue;
      const float unscale = row_shift != nullptr ? ldexpf(1.0f, -row_shift[r]) : 1.0f;
#pragma unroll
      for (int j = 0; j < kFragN; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = col0 + warp_n + 8 * j + 2 * (lane % 4) + e;
          if (c < m) y[size_t(r) * m + c] = acc[i][j][2 * half + e] * unscale;
        }
    }
}

// Op: the operand type (f16 for F16 and Q8_0 weights, bf16 for BF16 weights). kVector: k % 8 == 0
// and x, w 16-byte aligned (float4 activation loads, cp.async weight copies).
template <typename Op, typename W, bool kVector>
void launch(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  const dim3 grid((m + kTileN - 1) / kTileN, (n + kTileM - 1) / kTileM);
  CHAI_REQUIRE(grid.y <= 65535u, ErrorCode::Unsupported, "gemm: too many rows for one launch (" + std::to_string(n) + ")");
  int* shifts = nullptr;
  if constexpr (std::is_same_v<Op, __half>) {
    shifts = static_cast<int*>(scratch.reserve(size_t(n) * sizeof(int)));
    f16_row_shifts<<<unsigned(n), 256, 0, stream>>>(x.as<float>(), shifts, k);
    cuda_check(cudaGetLastError(), "gemm v3 row scale launch");
  }
  gemm_v3_tiles<Op, W, kVector><<<grid, kThreads, 0, stream>>>(x.as<float>(), shifts, w.as<W>(), y.as<float>(), n, m, k);
  cuda_check(cudaGetLastError(), "gemm v3 kernel launch");
}

template <typename Op>
void launch_16bit(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  if (x.cols % 8 == 0 && aligned(x.data, 16) && aligned(w.data, 16)) launch<Op, Op, true>(x, w, y, scratch, stream);
  else launch<Op, Op, false>(x, w, y, scratch, stream);
}

}  // namespace

bool gemm_v3(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream) {
  switch (w.dtype) {
    case DType::F16: launch_16bit<__half>(x, w, y, scratch, stream); return true;
    case DType::BF16: launch_16bit<__nv_bfloat16>(x, w, y, scratch, stream); return true;
    case DType::Q8_0:
      // Rows hold whole blocks (k % 32 == 0); the float4 activation loads need x aligned.
      if (!aligned(x.data, 16)) return false;
      launch<__half, BlockQ8_0, true>(x, w, y, scratch, stream);
      return true;
    default: return false;
  }
}

}  // namespace chai::cuda
