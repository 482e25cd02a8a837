// Runs one op on a backend from host vectors: upload, call, download. Tests and benchmarks use
// it so that the CPU and CUDA paths are driven by the very same code.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <stdexcept>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/dtype.h"
#include "core/quant_blocks.h"

namespace chai::testing {

// Weights stored in `dtype`, from float values (rounded or quantized to that type).
struct HostWeights {
  DType dtype;
  std::vector<uint8_t> raw;    // the stored bytes
  std::vector<float> decoded;  // what the kernel will see, as float

  // Q8_0 as the test models were made: d = max|x| / 127 per block of 32, q = round(x / d).
  HostWeights(const std::vector<float>& values, DType type) : dtype(type) {
    if (type == DType::Q8_0) {
      for (size_t b = 0; b < values.size() / kQ8Block; ++b) {
        BlockQ8_0 block{};
        float amax = 0;
        for (int64_t j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(values[b * kQ8Block + j]));
        block.d = f32_to_f16(amax / 127.0f);
        const float d = f16_to_f32(block.d);
        for (int64_t j = 0; j < kQ8Block; ++j) block.q[j] = int8_t(std::lround(d > 0 ? values[b * kQ8Block + j] / d : 0));
        const auto* bytes = reinterpret_cast<const uint8_t*>(&block);
        raw.insert(raw.end(), bytes, bytes + sizeof block);
      }
    } else {
      for (float v : values) {
        if (type == DType::F32) {
          const auto* bytes = reinterpret_cast<const uint8_t*>(&v);
          raw.insert(raw.end(), bytes, bytes + 4);
          continue;
        }
        const uint16_t bits = type == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        raw.push_back(uint8_t(bits & 0xff));
        raw.push_back(uint8_t(bits >> 8));
      }
    }
    decoded.resize(values.size());
    dequantize_row(type, raw.data(), decoded.data(), int64_t(values.size()));
  }
  // Already-packed blocks (quantized types), decoded by the library's dequantize_row.
  HostWeights(DType type, std::vector<uint8_t> bytes, int64_t count) : dtype(type), raw(std::move(bytes)) {
    decoded.resize(size_t(count));
    dequantize_row(type, raw.data(), decoded.data(), count);
  }
  const void* data() const { return raw.data(); }
  size_t bytes() const { return raw.size(); }
  const uint16_t* half_bits() const { return reinterpret_cast<const uint16_t*>(raw.data()); }
};

// packed: multiply with the backend's packed copy of w (Backend::pack_matmul_weight), which must exist.
inline std::vector<float> run_matmul(Backend& be, const std::vector<float>& x, const HostWeights& w, int n, int m, int k,
                                     bool packed = false) {
  DeviceBuffer dx(be, x.size() * 4), dw(be, w.bytes()), dy(be, size_t(n) * m * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  be.upload(dw.get(), w.data(), dw.bytes());
  std::vector<float> y(size_t(n) * m, std::nanf(""));  // poison: an output the kernel missed stays NaN
  be.upload(dy.get(), y.data(), dy.bytes());
  TensorView weight{dw.get(), w.dtype, m, k};
  std::shared_ptr<const void> copy = packed ? be.pack_matmul_weight(weight) : nullptr;
  if (packed && copy == nullptr) throw std::runtime_error("the backend made no packed copy of this weight");
  weight.packed = copy.get();
  be.matmul({dx.get(), DType::F32, n, k}, weight, {dy.get(), DType::F32, n, m});
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

inline std::vector<float> run_embed(Backend& be, const HostWeights& table, int vocab, int cols, const std::vector<int32_t>& tokens) {
  DeviceBuffer dt(be, table.bytes()), dtok(be, tokens.size() * 4), dy(be, tokens.size() * size_t(cols) * 4);
  be.upload(dt.get(), table.data(), dt.bytes());
  be.upload(dtok.get(), tokens.data(), dtok.bytes());
  be.embed({dt.get(), table.dtype, vocab, cols}, static_cast<const int32_t*>(dtok.get()),
           {dy.get(), DType::F32, int64_t(tokens.size()), cols});
  std::vector<float> y(tokens.size() * size_t(cols));
  be.download(y.data(), dy.get(), dy.bytes());
  return y;
}

// Rows at positions pos0, pos0 + 1, ... (as one sequence's prompt); freq_factors empty: none.
inline std::vector<float> run_rope(Backend& be, const std::vector<float>& x, int n, int cols, int head_dim, int pos0, float base,
                                   RopeStyle style = RopeStyle::Normal, const std::vector<float>& freq_factors = {}) {
  DeviceBuffer dx(be, x.size() * 4), dpos(be, size_t(n) * 4), dff(be, std::max<size_t>(freq_factors.size(), 1) * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  std::vector<int32_t> positions(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) positions[size_t(i)] = pos0 + i;
  be.upload(dpos.get(), positions.data(), dpos.bytes());
  if (!freq_factors.empty()) be.upload(dff.get(), freq_factors.data(), freq_factors.size() * 4);
  be.rope({dx.get(), DType::F32, n, cols}, head_dim, static_cast<const int32_t*>(dpos.get()), base, style,
          freq_factors.empty() ? nullptr : static_cast<const float*>(dff.get()));
  std::vector<float> y(x.size());
  be.download(y.data(), dx.get(), dx.bytes());
  return y;
}

// x[n, d] += bias[d] on every row.
inline std::vector<float> run_add_bias(Backend& be, const std::vector<float>& x, const std::vector<float>& bias, int n, int d) {
  DeviceBuffer dx(be, x.size() * 4), db(be, bias.size() * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  be.upload(db.get(), bias.data(), db.bytes());
  be.add_bias({dx.get(), DType::F32, n, d}, {db.get(), DType::F32, 1, d});
  std::vector<float> y(x.size());
  be.download(y.data(), dx.get(), dx.bytes());
  return y;
}

// Per-head RMSNorm in place, as Qwen3 normalises q and k: x[n, heads * head_dim] viewed as
// [n * heads, head_dim], every head scaled by the same head_dim weights.
inline std::vector<float> run_head_rmsnorm(Backend& be, const std::vector<float>& x, const std::vector<float>& g, int n, int heads,
                                           int head_dim, float eps) {
  DeviceBuffer dx(be, x.size() * 4), dg(be, g.size() * 4);
  be.upload(dx.get(), x.data(), dx.bytes());
  be.upload(dg.get(), g.data(), dg.bytes());
  const TensorView heads_view{dx.get(), DType::F32, int64_t(n) * heads, head_dim};
  be.rmsnorm(heads_view, {dg.get(), DType::F32, 1, head_dim}, eps, heads_view);
  std::vector<float> y(x.size());
  be.download(y.data(), dx.get(), dx.bytes());
  return y;
}

// swiglu (op = true) or add (op = false) of two equal-shaped tensors; returns the first.
inline std::vector<float> run_binary(Backend& be, bool swiglu, const std::vector<float>& a, const std::vector<float>& b, int n, int d) {
  DeviceBuffer da(be, a.size() * 4), db(be, b.size() * 4);
  be.upload(da.get(), a.data(), da.bytes());
  be.upload(db.get(), b.data(), db.bytes());
  const TensorView ta{da.get(), DType::F32, n, d}, tb{db.get(), DType::F32, n, d};
  if (swiglu) be.swiglu(ta, tb);
  else be.add(ta, tb);
  std::vector<float> y(a.size());
  be.download(y.data(), da.get(), da.bytes());
  return y;
}

inline std::vector<float> run_head_features(Backend& be, const std::vector<float>& q, const std::vector<float>& k, int t0,
                                            int heads, int kv_heads, int head_dim) {
  DeviceBuffer dq(be, q.size() * 4), dk(be, k.size() * 4), out(be, size_t(heads) * feature_length(t0) * 4);
  be.upload(dq.get(), q.data(), dq.bytes());
  be.upload(dk.get(), k.data(), dk.bytes());
  HeadFeatureParams p;
  p.q = static_cast<const float*>(dq.get());
  p.k = static_cast<const float*>(dk.get());
  p.out = static_cast<float*>(out.get());
  p.t0 = t0;
  p.n_heads = heads;
  p.n_kv_heads = kv_heads;
  p.head_dim = head_dim;
  p.scale = 1.0f / std::sqrt(float(head_dim));
  be.head_features(p);
  std::vector<float> got(size_t(heads) * feature_length(t0));
  be.download(got.data(), out.get(), out.bytes());
  return got;
}

// Random blocks of a quantized type: random bytes, with every f16 scale field set to a random
// value of moderate size (so no block decodes to inf or NaN).
inline std::vector<uint8_t> random_quant_blocks(DType type, int64_t values, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t block = dtype_block_bytes(type);
  std::vector<uint8_t> bytes(size_t(values / dtype_block_values(type)) * block);
  for (auto& b : bytes) b = uint8_t(rng());
  std::vector<size_t> halves;  // byte offsets of the f16 fields in a block
  switch (type) {
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: halves = {0, 2}; break;
    case DType::Q2_K: halves = {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)}; break;
    case DType::Q3_K: halves = {offsetof(BlockQ3_K, d)}; break;
    case DType::Q6_K: halves = {offsetof(BlockQ6_K, d)}; break;
    default: halves = {0}; break;
  }
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  for (size_t b = 0; b < bytes.size(); b += block)
    for (size_t at : halves) {
      const uint16_t h = f32_to_f16(scale(rng));
      std::memcpy(&bytes[b + at], &h, 2);
    }
  return bytes;
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

// Q8_0 rows hold whole blocks of 32.
inline const std::vector<MatmulShape>& q8_matmul_shapes() {
  static const std::vector<MatmulShape> shapes = {{1, 1, 32}, {1, 7, 64}, {3, 17, 96}, {37, 65, 160}, {1, 300, 1024}, {33, 172, 64}};
  return shapes;
}

// Rows of whole blocks of `block_values` (32 or 256) values.
inline std::vector<MatmulShape> quant_matmul_shapes(int block_values) {
  const int v = block_values;
  return {{1, 1, v}, {1, 7, 2 * v}, {3, 17, 3 * v}, {37, 65, v}, {1, 300, 4 * v}, {33, 20, 2 * v}};
}

// The weight types whose matmul runs the 8-bit-activation dot products.
inline const std::vector<DType>& quant_types() {
  static const std::vector<DType> types = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL, DType::Q2_K,
                                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ4_XS};
  return types;
}

}  // namespace chai::testing
