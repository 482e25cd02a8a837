// Plain float64 references of the ops, written for reading, not speed.
#pragma once
#include <cmath>
#include <vector>

namespace chai::testing {

// y[n, m] = x[n, k] · w[m, k]ᵀ, with w already decoded to float.
inline std::vector<double> matmul_ref(const std::vector<float>& x, const std::vector<float>& w, int n, int m, int k) {
  std::vector<double> y(size_t(n) * m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      double s = 0;
      for (int c = 0; c < k; ++c) s += double(x[size_t(i) * k + c]) * double(w[size_t(j) * k + c]);
      y[size_t(i) * m + j] = s;
    }
  return y;
}

inline std::vector<double> rmsnorm_ref(const std::vector<float>& x, const std::vector<float>& g, int n, int d, double eps) {
  std::vector<double> y(x.size());
  for (int i = 0; i < n; ++i) {
    double ss = 0;
    for (int c = 0; c < d; ++c) ss += double(x[size_t(i) * d + c]) * x[size_t(i) * d + c];
    const double scale = 1.0 / std::sqrt(ss / d + eps);
    for (int c = 0; c < d; ++c) y[size_t(i) * d + c] = x[size_t(i) * d + c] * scale * g[c];
  }
  return y;
}

inline std::vector<double> softmax_ref(const std::vector<float>& x, int n, int d) {
  std::vector<double> y(x.size());
  for (int i = 0; i < n; ++i) {
    double max = x[size_t(i) * d];
    for (int c = 1; c < d; ++c) max = std::fmax(max, x[size_t(i) * d + c]);
    double sum = 0;
    for (int c = 0; c < d; ++c) sum += y[size_t(i) * d + c] = std::exp(x[size_t(i) * d + c] - max);
    for (int c = 0; c < d; ++c) y[size_t(i) * d + c] /= sum;
  }
  return y;
}

// llama.cpp's RoPE for the llama architecture: adjacent pairs in each head.
inline std::vector<double> rope_ref(const std::vector<float>& x, int n, int cols, int head_dim, int pos0, double base) {
  std::vector<double> y(x.begin(), x.end());
  for (int r = 0; r < n; ++r)
    for (int h = 0; h < cols / head_dim; ++h)
      for (int i = 0; i < head_dim / 2; ++i) {
        const double theta = double(pos0 + r) * std::pow(base, -2.0 * i / head_dim);
        const size_t at = size_t(r) * cols + size_t(h) * head_dim + 2 * i;
        y[at] = x[at] * std::cos(theta) - x[at + 1] * std::sin(theta);
        y[at + 1] = x[at] * std::sin(theta) + x[at + 1] * std::cos(theta);
      }
  return y;
}

inline std::vector<double> swiglu_ref(const std::vector<float>& g, const std::vector<float>& u) {
  std::vector<double> y(g.size());
  for (size_t i = 0; i < g.size(); ++i) y[i] = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
  return y;
}

}  // namespace chai::testing
