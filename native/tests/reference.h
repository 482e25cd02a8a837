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

}  // namespace chai::testing
