// Matmul version 3 for block-quantized weights (Q8_0, Q4_0 .. IQ4_XS; at any n, though the
// GEMM takes Q8_0 from kGemmMinRows rows): y[n, m] = x[n, k] · w[m, k]ᵀ with f32 activations
// and f32 arithmetic on the dequantized weights (the CPU twin is the f32 product with the
// weights dequantize_row gives; quant.cuh's dequant8 matches it exactly).
//
// Version 1 (matmul_quant.cu) has each lane read 8 weights as single bytes at a 32-byte lane
// stride, with 8 scalar activation loads per 8 weights. Here weights move as bytes, not values:
// a block owns kRowsPerBlock weight rows and kTok tokens and walks k in slices of kSlice values.
// For each slice every warp copies its rows' bytes (whole blocks, contiguous in memory) global →
// shared with 16-byte cp.async, lane l taking the 16-byte granules l, l + 32, ... of the byte
// range rounded out to 16 bytes (rows of 18- or 210-byte blocks start anywhere); the slice of x
// for the block's tokens is copied once per block with cp.async too. The copies of slice s + 1
// are issued before slice s is multiplied, so a slice of every row of the block is in flight
// while the block computes (bench/v3-matmul.md: bytes in flight). Each lane then dequantizes
// 8-value parts from shared memory, once per row, and multiplies them with the x part, read
// once for all of the warp's rows: Q4_0, Q4_K and Q6_K by decoders of their own (16-bit quant
// loads, no conversion instructions, the block scale applied once per part), the other types by
// quant.cuh's dequant8 (bench/v3-matmul.md: why the instruction count decides this kernel's speed).
//
// Synchronisation, per slice s: copies of x(s) into the one x buffer and of w(s + 1) into
// weight buffer (s + 1) % 2 are committed as two groups; cp.async.wait_group 1 waits for all but
// the newest (w(s + 1)), so this thread's x(s) and w(s) have landed; __syncthreads makes
// everyone's visible. After the products a second __syncthreads: the next iteration overwrites
// the x buffer and weight buffer s % 2, which other warps may still be reading.
#include <cstddef>
#include <string>

#include "../core/error.h"
#include "cuda_check.h"
#include "matmul_v2.h"
#include "mma.cuh"
#include "quant.cuh"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

constexpr int kWarps = 4;        // per block
constexpr int kRowsPerWarp = 2;  // weight rows per warp: each x part read from shared memory serves both
constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;

// Values of k per slice: x takes kTok · kSlice · 4 bytes of shared memory (8 KiB at one token,
// 16 KiB at eight), the weights twice kRowsPerBlock rows of the slice's bytes.
template <int kTok>
__host__ __device__ constexpr int slice_values() {
  return kTok == 1 ? 2048 : 512;
}
// Shared bytes per row and buffer: the slice's blocks plus up to 15 bytes of the granule before.
template <typename Block, int kTok>
__host__ __device__ constexpr int staged_row_bytes() {
  return (slice_values<kTok>() / kBlockValues<Block> * int(sizeof(Block)) + 15) / 16 * 16 + 16;
}

// One 8-value part of a weight row as w_t = scale · q_t - offset: the products sum q_t · x_t
// and apply scale and offset once per part (offset times Σ x_t, shared by the warp's rows; only
// for the types that have an offset, kHasOffset).
struct AffinePart {
  float q[8];
  float scale, offset;
};
template <typename Block>
constexpr bool kHasOffset = false;
template <>
constexpr bool kHasOffset<BlockQ4_K> = true;

// Types without a decoder of their own: quant.cuh's values, scale 1.
template <typename Block>
__device__ __forceinline__ void decode_part(const Block& b, int part, AffinePart& a) {
  dequant8(b, part, a.q);
  a.scale = 1.0f;
  a.offset = 0.0f;
}

// The decoders of the common 4- and 6-bit types below read the quants as 16-bit pairs (blocks
// of even size keep them 2-byte aligned in shared memory) and turn a small integer v into a
// float as the bits of 2^23 + v minus 2^23 + zero (one logic op and one add, exact; the
// conversion instruction runs at a quarter of the float rate on sm_80 and sm_90).
__device__ __forceinline__ float small_int(uint32_t v, float biased_zero) { return __uint_as_float(0x4b000000u | v) - biased_zero; }
constexpr float kTwo23 = 8388608.0f;

// Q4_0: value 8·part + t is nibble (part / 2) of byte 8·(part % 2) + t; w = d · (q - 8).
__device__ __forceinline__ void decode_part(const BlockQ4_0& b, int part, AffinePart& a) {
  const uint16_t* pairs = reinterpret_cast<const uint16_t*>(b.qs + 8 * (part & 1));
  const int shift = 4 * (part >> 1);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = uint32_t(pairs[i]) >> shift;
    a.q[2 * i] = small_int(v & 15u, kTwo23 + 8.0f);
    a.q[2 * i + 1] = small_int((v >> 8) & 15u, kTwo23 + 8.0f);
  }
  a.scale = half_at(b.d);
  a.offset = 0.0f;
}

// Q4_K: part p has sub-block p / 4 (its 6-bit scale and min), bytes 32·(p / 8) + 8·(p % 4) + t
// of qs at nibble (p / 4) % 2; w = d·sc · q - dmin·mn.
__device__ __forceinline__ void decode_part(const BlockQ4_K& b, int part, AffinePart& a) {
  const uint16_t* pairs = reinterpret_cast<const uint16_t*>(b.qs + 32 * (part >> 3) + 8 * (part & 3));
  const int shift = 4 * ((part >> 2) & 1);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = uint32_t(pairs[i]) >> shift;
    a.q[2 * i] = small_int(v & 15u, kTwo23);
    a.q[2 * i + 1] = small_int((v >> 8) & 15u, kTwo23);
  }
  k_scale_offset(b.d, b.dmin, b.scales, part >> 2, &a.scale, &a.offset);
}

// Q6_K: part p has h = p / 16, j = p % 16 / 4, l0 = 8·(p % 4): low bits from ql byte
// 64h + 32·(j % 2) + l0 + t at nibble j / 2, high bits from qh byte 32h + l0 + t at bits 2j;
// w = d·scales[p / 2] · (q - 32).
__device__ __forceinline__ void decode_part(const BlockQ6_K& b, int part, AffinePart& a) {
  const int h = part >> 4, j = (part >> 2) & 3, l0 = 8 * (part & 3);
  const uint16_t* low = reinterpret_cast<const uint16_t*>(b.ql + 64 * h + 32 * (j & 1) + l0);
  const uint16_t* high = reinterpret_cast<const uint16_t*>(b.qh + 32 * h + l0);
  const int low_shift = 4 * (j >> 1), high_shift = 2 * j;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t lo = uint32_t(low[i]) >> low_shift, hi = uint32_t(high[i]) >> high_shift;
    a.q[2 * i] = small_int((lo & 15u) | (hi & 3u) << 4, kTwo23 + 32.0f);
    a.q[2 * i + 1] = small_int(((lo >> 8) & 15u) | ((hi >> 8) & 3u) << 4, kTwo23 + 32.0f);
  }
  a.scale = half_at(b.d) * float(b.scales[part >> 1]);
  a.offset = 0.0f;
}

template <typename Block, int kTok>
__global__ void __launch_bounds__(kWarps * 32) gemv_quant_v3(const float* __restrict__ x, const Block* __restrict__ w,
                                                             float* __restrict__ y, int n, int m, int k) {
  constexpr int kSlice = slice_values<kTok>();
  constexpr int kValues = kBlockValues<Block>;
  constexpr int kParts = kValues / 8;  // dequant8 parts per block
  constexpr int kStaged = staged_row_bytes<Block, kTok>();
  static_assert(kSlice % kValues == 0, "slices hold whole blocks");
  __shared__ __align__(16) float xs[kTok * kSlice];
  __shared__ __align__(16) unsigned char ws[2][kRowsPerBlock][kStaged];

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int row0 = blockIdx.x * kRowsPerBlock;
  const int tok0 = blockIdx.y * kTok, toks = min(kTok, n - tok0);
  const size_t row_bytes = size_t(k / kValues) * sizeof(Block);
  const unsigned char* base = reinterpret_cast<const unsigned char*>(w);
  const unsigned char* end = base + size_t(m) * row_bytes;
  const int slices = (k + kSlice - 1) / kSlice;

  // Where slice s of the warp's row r starts in global memory (rows past m read row m - 1; their
  // sums are dropped).
  auto slice_start = [&](int r, int s) {
    const int row = min(row0 + warp * kRowsPerWarp + r, m - 1);
    return base + size_t(row) * row_bytes + size_t(s) * (kSlice / kValues) * sizeof(Block);
  };
  auto copy_weights = [&](int s) {
    const size_t bytes = size_t(min(kSlice, k - s * kSlice) / kValues) * sizeof(Block);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const unsigned char* start = slice_start(r, s);
      const unsigned char* first = base + (size_t(start - base) & ~size_t(15));  // w is 16-byte aligned
      const int granules = int((start + bytes - first + 15) / 16);
      unsigned char* dst = ws[s & 1][warp * kRowsPerWarp + r];
      for (int g = lane; g < granules; g += 32) {
        const unsigned char* src = first + 16 * g;
        // The last granule of the matrix may pass its end: copy only the bytes inside.
        cp_async16(dst + 16 * g, src, int(min(ptrdiff_t(16), end - src)));
      }
    }
  };
  auto copy_x = [&](int s) {
    const int quads = min(kSlice, k - s * kSlice) / 4;  // k % 32 == 0
    for (int i = threadIdx.x; i < toks * quads; i += blockDim.x) {
      const int t = i / quads, q = i % quads;
      cp_async16(xs + t * kSlice + 4 * q, x + size_t(tok0 + t) * k + size_t(s) * kSlice + 4 * q, 16);
    }
  };

  float acc[kRowsPerWarp][kTok] = {};
  copy_weights(0);
  cp_async_commit();
  for (int s = 0; s < slices; ++s) {
    copy_x(s);
    cp_async_commit();
    if (s + 1 < slices) copy_weights(s + 1);
    cp_async_commit();  // possibly empty, so that wait_group 1 always leaves exactly w(s + 1)
    cp_async_wait<1>();
    __syncthreads();

    const unsigned char* rows[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
      rows[r] = ws[s & 1][warp * kRowsPerWarp + r] + (size_t(slice_start(r, s) - base) & 15);
    const int parts = min(kSlice, k - s * kSlice) / 8;
    for (int p = lane; p < parts; p += 32) {
      AffinePart wv[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
        decode_part(*reinterpret_cast<const Block*>(rows[r] + (p / kParts) * sizeof(Block)), p % kParts, wv[r]);
#pragma unroll
      for (int t = 0; t < kTok; ++t) {
        if (t >= toks) continue;
        const float4* xv = reinterpret_cast<const float4*>(xs + t * kSlice + 8 * p);
        const float4 lo = xv[0], hi = xv[1];
        float x_sum = 0.0f;
        if constexpr (kHasOffset<Block>) x_sum = (lo.x + lo.y) + (lo.z + lo.w) + ((hi.x + hi.y) + (hi.z + hi.w));
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const float* q = wv[r].q;
          const float dot = q[0] * lo.x + q[1] * lo.y + q[2] * lo.z + q[3] * lo.w + q[4] * hi.x + q[5] * hi.y + q[6] * hi.z + q[7] * hi.w;
          if constexpr (kHasOffset<Block>) acc[r][t] += wv[r].scale * dot - wv[r].offset * x_sum;
          else acc[r][t] += wv[r].scale * dot;
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < kTok; ++t) {
      const float sum = warp_reduce(acc[r][t], SumOp{});
      const int row = row0 + warp * kRowsPerWarp + r;
      if (lane == 0 && t < toks && row < m) y[size_t(tok0 + t) * m + row] = sum;
    }
}

template <typename Block>
bool launch(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  // Whole blocks per row (version 1 reports the error otherwise); 16-byte copies need w and x aligned.
  if (k % kBlockValues<Block> != 0 || !aligned(w.data, 16) || !aligned(x.data, 16)) return false;
  auto run = [&](auto tok) {
    constexpr int kTok = decltype(tok)::value;
    const dim3 grid((m + kRowsPerBlock - 1) / kRowsPerBlock, (n + kTok - 1) / kTok);
    CHAI_REQUIRE(grid.y <= 65535u, ErrorCode::Unsupported, "matmul: too many rows for one launch (" + std::to_string(n) + ")");
    gemv_quant_v3<Block, kTok><<<grid, kWarps * 32, 0, stream>>>(x.as<float>(), w.as<Block>(), y.as<float>(), n, m, k);
  };
  // One token (decoding) gets the longest slices; more share one weight read between 8.
  if (n == 1) run(std::integral_constant<int, 1>{});
  else run(std::integral_constant<int, 8>{});
  cuda_check(cudaGetLastError(), "quantized gemv v3 kernel launch");
  return true;
}

}  // namespace

bool gemv_quant_v3(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  switch (w.dtype) {
    case DType::Q8_0: return launch<BlockQ8_0>(x, w, y, stream);
    case DType::Q4_0: return launch<BlockQ4_0>(x, w, y, stream);
    case DType::Q4_1: return launch<BlockQ4_1>(x, w, y, stream);
    case DType::Q5_0: return launch<BlockQ5_0>(x, w, y, stream);
    case DType::Q5_1: return launch<BlockQ5_1>(x, w, y, stream);
    case DType::IQ4_NL: return launch<BlockIQ4_NL>(x, w, y, stream);
    case DType::Q2_K: return launch<BlockQ2_K>(x, w, y, stream);
    case DType::Q3_K: return launch<BlockQ3_K>(x, w, y, stream);
    case DType::Q4_K: return launch<BlockQ4_K>(x, w, y, stream);
    case DType::Q5_K: return launch<BlockQ5_K>(x, w, y, stream);
    case DType::Q6_K: return launch<BlockQ6_K>(x, w, y, stream);
    case DType::IQ4_XS: return launch<BlockIQ4_XS>(x, w, y, stream);
    default: return false;
  }
}

}  // namespace chai::cuda
