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

// llama.cpp's RoPE: pair i of each head is (2i, 2i+1), or (i, i + head_dim/2) when neox, turned by
// position · base^(-2i/head_dim) / freq_factors[i] (no factors: 1).
inline std::vector<double> rope_ref(const std::vector<float>& x, int n, int cols, int head_dim, int pos0, double base,
                                    bool neox = false, const std::vector<float>& freq_factors = {}) {
  std::vector<double> y(x.begin(), x.end());
  const int half = head_dim / 2;
  for (int r = 0; r < n; ++r)
    for (int h = 0; h < cols / head_dim; ++h)
      for (int i = 0; i < half; ++i) {
        double theta = double(pos0 + r) * std::pow(base, -2.0 * i / head_dim);
        if (!freq_factors.empty()) theta /= double(freq_factors[size_t(i)]);
        const size_t head = size_t(r) * cols + size_t(h) * head_dim;
        const size_t a = head + (neox ? i : 2 * i), b = head + (neox ? i + half : 2 * i + 1);
        y[a] = x[a] * std::cos(theta) - x[b] * std::sin(theta);
        y[b] = x[a] * std::sin(theta) + x[b] * std::cos(theta);
      }
  return y;
}

inline std::vector<double> swiglu_ref(const std::vector<float>& g, const std::vector<float>& u) {
  std::vector<double> y(g.size());
  for (size_t i = 0; i < g.size(); ++i) y[i] = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
  return y;
}

}  // namespace chai::testing
