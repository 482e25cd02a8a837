// Runs one op on a backend from host vectors: upload, call, download. Tests and benchmarks use
// it so that the CPU and CUDA paths are driven by the very same code.
#pragma once
#include <cstdint>
#include <vector>

#include "core/backend.h"
#include "core/dtype.h"

namespace chai::testing {

// Weights stored in `dtype`, from float values (rounded to that type).
struct HostWeights {
  DType dtype;
  std::vector<uint16_t> half;  // f16 / bf16 bits
  std::vector<float> full;     // f32 values
  std::vector<float> decoded;  // what the kernel will see, as float

  HostWeights(const std::vector<float>& values, DType type) : dtype(type) {
    if (type == DType::F32) {
      full = decoded = values;
      return;
    }
    for (float v : values) {
      const uint16_t bits = type == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      half.push_back(bits);
      decoded.push_back(type == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits));
    }
  }
  const void* data() const { return dtype == DType::F32 ? static_cast<const void*>(full.data()) : half.data(); }
  size_t bytes() const { return dtype == DType::F32 ? full.size() * 4 : half.size() * 2; }
};

inline std::vector<float> run_matmul(Backend& be, const std::vector<float>& x, const HostWeights& w, int n, int m, int k) {
  DeviceBuffer dx(be, x.size() * 4), dw(be, w.bytes()), dy(be, size_t(n) * m * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  be.upload(dw.get(), w.data(), dw.bytes());
  be.matmul({dx.get(), DType::F32, n, k}, {dw.get(), w.dtype, m, k}, {dy.get(), DType::F32, n, m});
  std::vector<float> y(size_t(n) * m);
  be.download(y.data(), dy.get(), dy.bytes());
  return y;
}

inline std::vector<float> run_rmsnorm(Backend& be, const std::vector<float>& x, const std::vector<float>& g, int n, int d,
                                      float eps) {
  DeviceBuffer dx(be, x.size() * 4), dg(be, g.size() * 4), dy(be, x.size() * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  be.upload(dg.get(), g.data(), dg.bytes());
  be.rmsnorm({dx.get(), DType::F32, n, d}, {dg.get(), DType::F32, 1, d}, eps, {dy.get(), DType::F32, n, d});
  std::vector<float> y(x.size());
  be.download(y.data(), dy.get(), dy.bytes());
  return y;
}

inline std::vector<float> run_softmax(Backend& be, const std::vector<float>& x, int n, int d) {
  DeviceBuffer dx(be, x.size() * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  be.softmax_rows({dx.get(), DType::F32, n, d});
  std::vector<float> y(x.size());
  be.download(y.data(), dx.get(), dx.bytes());
  return y;
}

struct MatmulShape {
  int n, m, k;
};

// Awkward on purpose: one token, odd and prime sizes, sizes just past tile and warp multiples.
inline const std::vector<MatmulShape>& matmul_shapes() {
  static const std::vector<MatmulShape> shapes = {{1, 1, 1},    {1, 7, 13},   {3, 17, 33},   {5, 64, 64},
                                                  {37, 65, 129}, {1, 300, 1000}, {33, 172, 64}, {70, 97, 255}};
  return shapes;
}

}  // namespace chai::testing
