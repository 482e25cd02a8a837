// Versions 2 and 3 of the matrix multiply y[n, m] = x[n, k] · w[m, k]ᵀ (version 1 is matmul.cu,
// the default until a GPU run has passed a later one). Version 2: tensor-core tiles for prefill
// (gemm_mma.cu), a GEMV with 16-byte loads and int8 dot products for decode (gemv.cu). Version 3:
// tensor-core tiles that convert x while loading it, with a deeper cp.async pipeline
// (gemm_v3.cu), and a GEMV for block-quantized weights streaming whole blocks through shared
// memory (gemv_quant_v3.cu). Selected per backend by CHAI_MATMUL_VERSION.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../core/tensor.h"

namespace chai::cuda {

// Token rows from which the tensor-core GEMM runs; fewer rows go to the GEMV.
constexpr int kGemmMinRows = 16;

// CHAI_MATMUL_VERSION: unset or "1" gives 1, "2" and "3" give 2 and 3; anything else throws InvalidArgument.
int matmul_version_from_env();

// Device memory that grows to the largest request and is reused (x in f16 or bf16 with its row
// scales for the GEMM, in int8 for the Q8_0 GEMV):
// no allocation per call once a model's largest product has run. Use on one stream only.
class DeviceScratch {
 public:
  DeviceScratch() = default;
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  ~DeviceScratch();
  void* reserve(size_t bytes);

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Host helpers of the launchers that carve the scratch and pick their loads.
inline bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }
inline size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

// Version 2: the GEMM from kGemmMinRows rows, the GEMV below; what neither takes (f32 weights
// from kGemmMinRows rows, rows the GEMV cannot load 16 bytes at a time) runs version 1.
void matmul_v2(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream);

// The pieces, for matmul_v2; each returns false, launching nothing, when it does not take w's
// type. gemm_tensor_core takes F16, BF16 and Q8_0 weights (one SegmentLoader each), any n, m, k; BF16
// weights run on bf16 tensor cores (x rounded to bf16), the others on f16 (x scaled per row).
bool gemm_tensor_core(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream);
// gemv also returns false when the alignment of x, w or k does not suit its loads.
bool gemv(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream);

// Version 3: the GEMM from kGemmMinRows rows for the weight types it takes, the quantized GEMV
// for block-quantized weights at any n; the rest (f32 weights, F16/BF16 below kGemmMinRows rows,
// and what either kernel declines) runs version 2.
void matmul_v3(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream);
// Its pieces, each returning false, launching nothing, when it does not take w's type or the
// alignment of x and w. gemm_v3 takes F16, BF16 and Q8_0 weights (x 16-byte aligned for Q8_0)
// and any n, m, k, with version 2's operand types and scaling; the scratch holds the row scales.
bool gemm_v3(const TensorView& x, const TensorView& w, const TensorView& y, DeviceScratch& scratch, cudaStream_t stream);
// gemv_quant_v3 takes Q8_0 and Q4_0 .. IQ4_XS weights with k a whole number of blocks, x and w
// 16-byte aligned; f32 arithmetic.
bool gemv_quant_v3(const TensorView& x, const TensorView& w, const TensorView& y, cudaStream_t stream);

}  // namespace chai::cuda
