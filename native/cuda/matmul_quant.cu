// Quantized weights (Q4_0 .. IQ4_XS) on the GPU: the decode GEMV and the embedding lookup, both
// dequantizing blocks in registers with quant.cuh. Activations stay f32 (the CPU twin quantizes
// them to 8 bits; tests compare both with the dequantized weights' exact product).
#include "../core/error.h"
#include "cuda_check.h"
#include "kernels.h"
#include "quant.cuh"
#include "reduce.cuh"

namespace chai::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kRows = 4;

// One warp per weight row and group of kRows tokens: lane l takes the 8-value chunks l, l + 32, ...
// of the row, dequantizes each once and multiplies it by the kRows activation rows. Any n works;
// it is bandwidth-bound by design (decoding). Prefill tiles come with the tensor-core GEMM.
template <typename Block>
__global__ void gemv_quant(const float* __restrict__ x, const Block* __restrict__ w, float* __restrict__ y, int n, int m,
                           int k) {
  constexpr int kParts = kBlockValues<Block> / 8;
  const int lane = threadIdx.x & 31;
  const int j = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int i0 = blockIdx.y * kRows;
  if (j >= m) return;
  const int rows = min(kRows, n - i0);
  const Block* wj = w + size_t(j) * (k / kBlockValues<Block>);
  const float* xi = x + size_t(i0) * k;
  float acc[kRows] = {};
  for (int c = lane; c < k / 8; c += 32) {
    float v[8];
    dequant8(wj[c / kParts], c % kParts, v);
#pragma unroll
    for (int r = 0; r < kRows; ++r)
      if (r < rows) {
        const float* xr = xi + size_t(r) * k + 8 * c;
#pragma unroll
        for (int t = 0; t < 8; ++t) acc[r] += xr[t] * v[t];
      }
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warp_reduce(acc[r], SumOp{});
    if (lane == 0 && r < rows) y[size_t(i0 + r) * m + j] = sum;
  }
}

// One CUDA block per token: threads take 8-value chunks of the row. Rows of bad ids become zeros.
template <typename Block>
__global__ void embed_quant(const Block* __restrict__ table, const int32_t* __restrict__ tokens, float* __restrict__ out,
                            int vocab, int cols) {
  constexpr int kParts = kBlockValues<Block> / 8;
  const int row = blockIdx.x, token = tokens[row];
  const bool valid = token >= 0 && token < vocab;
  const Block* src = table + size_t(valid ? token : 0) * (cols / kBlockValues<Block>);
  for (int c = threadIdx.x; c < cols / 8; c += blockDim.x) {
    float v[8];
    dequant8(src[c / kParts], c % kParts, v);
#pragma unroll
    for (int t = 0; t < 8; ++t) out[size_t(row) * cols + 8 * c + t] = valid ? v[t] : 0.f;
  }
}

template <typename Block>
void launch_gemv(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  const int n = int(x.rows), m = int(w.rows), k = int(x.cols);
  CHAI_REQUIRE(k % kBlockValues<Block> == 0, ErrorCode::InvalidArgument,
               std::string("matmul: ") + dtype_name(w.dtype) + " rows must hold whole blocks, got k=" + std::to_string(k));
  const dim3 grid((m + kWarpsPerBlock - 1) / kWarpsPerBlock, (n + kRows - 1) / kRows);
  CHAI_REQUIRE(grid.y <= 65535u, ErrorCode::Unsupported, "matmul: too many rows for one launch (" + std::to_string(n) + ")");
  gemv_quant<Block><<<grid, kWarpsPerBlock * 32, 0, stream>>>(x.as<float>(), w.as<Block>(), y.as<float>(), n, m, k);
  cuda_check(cudaGetLastError(), "quantized matmul kernel launch");
}

template <typename Block>
void launch_embed(const TensorView& table, const int32_t* tokens, const TensorView& out, cudaStream_t stream) {
  CHAI_REQUIRE(out.cols % kBlockValues<Block> == 0, ErrorCode::InvalidArgument,
               std::string("embed: ") + dtype_name(table.dtype) + " rows must hold whole blocks");
  embed_quant<Block><<<unsigned(out.rows), 256, 0, stream>>>(table.as<const Block>(), tokens, out.as<float>(),
                                                              int(table.rows), int(out.cols));
}

// Calls f.template operator()<Block>() for the block type of `dtype`.
template <typename F>
void with_block_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Q4_0: return f(BlockQ4_0{});
    case DType::Q4_1: return f(BlockQ4_1{});
    case DType::Q5_0: return f(BlockQ5_0{});
    case DType::Q5_1: return f(BlockQ5_1{});
    case DType::IQ4_NL: return f(BlockIQ4_NL{});
    case DType::Q2_K: return f(BlockQ2_K{});
    case DType::Q3_K: return f(BlockQ3_K{});
    case DType::Q4_K: return f(BlockQ4_K{});
    case DType::Q5_K: return f(BlockQ5_K{});
    case DType::Q6_K: return f(BlockQ6_K{});
    case DType::IQ4_XS: return f(BlockIQ4_XS{});
    default: fail(ErrorCode::InvalidArgument, std::string("no quantized CUDA kernel for ") + dtype_name(dtype));
  }
}

}  // namespace

void matmul_quantized(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream) {
  with_block_type(w.dtype, [&](auto block) { launch_gemv<decltype(block)>(x, w, y, stream); });
}

void embed_quantized(const TensorView& table, const int32_t* tokens, const TensorView& out, cudaStream_t stream) {
  with_block_type(table.dtype, [&](auto block) { launch_embed<decltype(block)>(table, tokens, out, stream); });
  cuda_check(cudaGetLastError(), "quantized embed kernel launch");
}

}  // namespace chai::cuda
