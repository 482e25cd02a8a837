// Quantized weights (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q3_K..Q6_K, IQ4_XS) repacked for AVX-512 VNNI and
// AVX2 matrix products: 16 weight rows interleaved per 4 values ("panels"), so one vpdpbusd
// multiplies 4 values of one activation row (broadcast) with the same 4 values of 16 weight rows
// (AVX2: one maddubs, 8 rows), and a panel's outputs leave as one vector: no decoding of packed
// fields per row and no horizontal sums. llama.cpp repacks its weights for the same reason
// (ggml-cpu's repack); this layout is our own. Packing happens once at model load; the CPU matmul
// uses a packed copy when the weight has one (TensorView::packed).
#pragma once
#include <cstdint>
#include <memory>

#include "../core/tensor.h"
#include "simd.h"

namespace chai {

class ThreadPool;

constexpr int64_t kPanelRows = 16;

// A packed copy of w (rows × cols) in rows / 16 whole panels, or nullptr where packing does not
// apply: types other than those above (Q2_K, Q8_0, floats), fewer than 16 rows, or a CPU without AVX2
// (`level`; IQ4_NL and IQ4_XS need AVX-512).
std::shared_ptr<const void> pack_quant_weight(const TensorView& w, SimdLevel level = simd_level());

// y[n, m] = x[n, k] · wᵀ with w's packed copy (the rows past its last panel: the row kernels of
// quant_dot.h); x_rows are activation rows quantized for w.dtype, x_row_bytes apart. Each output is computed the same way whatever n and the
// thread count are, and the AVX2 and AVX-512 panel kernels give the same bits.
void matmul_packed_quant(ThreadPool& pool, const uint8_t* x_rows, int64_t x_row_bytes, const TensorView& w, float* y,
                         int64_t n, SimdLevel level = simd_level());

}  // namespace chai
