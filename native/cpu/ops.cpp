#include "ops.h"

#include <algorithm>
#include <cmath>

#include "simd.h"

namespace chai::cpu {
namespace {

// A tile of output: kTileW weight rows against kTileX activation rows, so that a block of
// weights is read from memory once and reused from cache for many tokens during prefill.
constexpr int64_t kTileW = 16;
constexpr int64_t kTileX = 32;

template <typename WeightT, typename Dot>
void matmul_tiles(ThreadPool& pool, const float* x, const WeightT* w, float* y, int64_t n, int64_t m, int64_t k,
                  Dot dot) {
  const int64_t tiles_w = (m + kTileW - 1) / kTileW;
  const int64_t tiles_x = (n + kTileX - 1) / kTileX;
  pool.parallel_for(tiles_w * tiles_x, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = (t % tiles_w) * kTileW, i0 = (t / tiles_w) * kTileX;
      const int64_t j1 = std::min(m, j0 + kTileW), i1 = std::min(n, i0 + kTileX);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) y[i * m + j] = dot(x + i * k, w + j * k, k);
    }
  });
}

}  // namespace

void matmul(ThreadPool& pool, const TensorView& x, const TensorView& w, const TensorView& y) {
  const DotKernels& dot = dot_kernels();
  const int64_t n = x.rows, m = w.rows, k = x.cols;
  switch (w.dtype) {
    case DType::F32: return matmul_tiles(pool, x.as<float>(), w.as<float>(), y.as<float>(), n, m, k, dot.f32);
    case DType::F16: return matmul_tiles(pool, x.as<float>(), w.as<uint16_t>(), y.as<float>(), n, m, k, dot.f16);
    case DType::BF16: return matmul_tiles(pool, x.as<float>(), w.as<uint16_t>(), y.as<float>(), n, m, k, dot.bf16);
  }
}

void rmsnorm(ThreadPool& pool, const TensorView& x, const TensorView& weight, float eps, const TensorView& y) {
  const int64_t d = x.cols;
  const float* g = weight.as<float>();
  pool.parallel_for(x.rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* xi = x.as<float>() + i * d;
      float* yi = y.as<float>() + i * d;
      double sum = 0;  // double, as llama.cpp sums squares
      for (int64_t c = 0; c < d; ++c) sum += double(xi[c]) * xi[c];
      const float scale = float(1.0 / std::sqrt(sum / double(d) + eps));
      for (int64_t c = 0; c < d; ++c) yi[c] = xi[c] * scale * g[c];
    }
  });
}

void softmax_rows(ThreadPool& pool, const TensorView& x) {
  const int64_t d = x.cols;
  pool.parallel_for(x.rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = x.as<float>() + i * d;
      const float max = *std::max_element(row, row + d);
      double sum = 0;
      for (int64_t c = 0; c < d; ++c) {
        row[c] = std::exp(row[c] - max);
        sum += row[c];
      }
      const float inv = float(1.0 / sum);
      for (int64_t c = 0; c < d; ++c) row[c] *= inv;
    }
  });
}

}  // namespace chai::cpu
