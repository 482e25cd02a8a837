// Quantized weight types (Q4_0 .. IQ4_XS): decoding against an independent per-value reference
// written from ggml's formulas, the dot products (scalar and this CPU's SIMD level) against a
// float64 dequantize-then-dot reference, and matmul / embedding through the CPU backend.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/thread_pool.h"
#include "core/quant_blocks.h"
#include "cpu/packed_quant.h"
#include "cpu/quant_dot.h"
#include "cpu/simd.h"
#include "op_runner.h"
#include "reference.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

float half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Value i of one block, straight from the ggml layout (see quant_blocks.h), in double.
double reference_value(DType type, const uint8_t* b, int i) {
  auto nibble = [](const uint8_t* qs, int r) { return r < 16 ? qs[r] & 15 : qs[r - 16] >> 4; };  // per 32 values
  auto k_scale_min = [](const uint8_t* sc, int s, int* scale, int* min) {
    *scale = s < 4 ? sc[s] & 63 : (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
    *min = s < 4 ? sc[s + 4] & 63 : (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
  };
  switch (type) {
    case DType::Q4_0: return half(b) * (nibble(b + 2, i) - 8);
    case DType::Q4_1: return half(b) * nibble(b + 4, i) + half(b + 2);
    case DType::IQ4_NL: return half(b) * kIq4nlValues[nibble(b + 2, i)];
    case DType::Q5_0:
    case DType::Q5_1: {
      const bool with_min = type == DType::Q5_1;
      const uint8_t* qh = b + (with_min ? 4 : 2);
      const int v = nibble(qh + 4, i) | ((qh[i / 8] >> (i % 8)) & 1) << 4;
      return with_min ? half(b) * v + half(b + 2) : half(b) * (v - 16);
    }
    case DType::Q2_K: {
      const int h = i / 128, s = i % 128 / 32, l = i % 32, g = i / 16;
      const int q = (b[16 + 32 * h + l] >> (2 * s)) & 3;
      return half(b + 80) * (b[g] & 15) * q - half(b + 82) * (b[g] >> 4);
    }
    case DType::Q3_K: {
      const int h = i / 128, s = i % 128 / 32, l = i % 32, g = i / 16;
      const uint8_t* sc = b + 96;
      const int scale = ((g < 8 ? sc[g] & 15 : sc[g - 8] >> 4) | ((sc[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32;
      const int q = ((b[32 + 32 * h + l] >> (2 * s)) & 3) - (((b[l] >> (4 * h + s)) & 1) ? 0 : 4);
      return half(b + 108) * scale * q;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const bool five = type == DType::Q5_K;
      const uint8_t* qs = b + (five ? 48 : 16);
      const int c = i / 64, r = i % 64, l = r % 32;
      int q = r < 32 ? qs[32 * c + l] & 15 : qs[32 * c + l] >> 4;
      if (five) q |= ((b[16 + l] >> (2 * c + r / 32)) & 1) << 4;
      int scale, min;
      k_scale_min(b + 4, i / 32, &scale, &min);
      return half(b) * scale * q - half(b + 2) * min;
    }
    case DType::Q6_K: {
      const int h = i / 128, j = i % 128 / 32, l = i % 32;
      const uint8_t low = b[64 * h + l + 32 * (j % 2)];
      const int q = ((j < 2 ? low & 15 : low >> 4) | ((b[128 + 32 * h + l] >> (2 * j)) & 3) << 4) - 32;
      return half(b + 208) * static_cast<int8_t>(b[192 + i / 16]) * q;
    }
    case DType::IQ4_XS: {
      const int s = i / 32;
      uint16_t scales_h;
      std::memcpy(&scales_h, b + 2, 2);
      const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 15) | ((scales_h >> (2 * s)) & 3) << 4;
      return half(b) * (ls - 32) * kIq4nlValues[nibble(b + 8 + 16 * s, i % 32)];
    }
    default: return 0;
  }
}

}  // namespace

int main() {
  Suite suite("quant_dot");
  std::printf("cpu features: %s; kernels: %s\n", cpu_features().c_str(), simd_level_name(simd_level()));
  auto one = make_cpu_backend(1);
  auto many = make_cpu_backend(3);
  uint32_t seed = 100;

  for (DType type : quant_types()) {
    const std::string name = dtype_name(type);
    const int v = int(dtype_block_values(type));

    // Decoding: every value of 64 random blocks equals the reference formula.
    {
      const int64_t count = int64_t(v) * 64;
      const HostWeights w(type, random_quant_blocks(type, count, seed++), count);
      std::vector<double> want(size_t(count), 0.0);
      for (int64_t i = 0; i < count; ++i)
        want[size_t(i)] = reference_value(type, w.raw.data() + size_t(i / v) * dtype_block_bytes(type), int(i % v));
      suite.check_close(relative_error(w.decoded, want), 1e-7, "dequantize " + name + " vs ggml formulas");
    }

    // Dot products of 8 weight rows with 4 quantized activation rows, k = 3 blocks, against float64
    // math on the dequantized weights and dequantized activations; dot4x gives what dot gives.
    {
      const int k = 3 * v, rows = 8, xs = 4;
      const HostWeights w(type, random_quant_blocks(type, int64_t(rows) * k, seed++), int64_t(rows) * k);
      const auto x = random_nonzero(size_t(xs) * k, seed++);
      const size_t x_row = activation_row_bytes(type, k);
      std::vector<uint8_t> xq(x_row * xs);
      std::vector<float> x_decoded(x.size());
      for (int r = 0; r < xs; ++r) {
        quantize_activation_row(type, x.data() + r * k, xq.data() + r * x_row, k, SimdLevel::Scalar);
        // Activation blocks: d, sums, then q (quant_dot.h).
        for (int b = 0; b < k / v; ++b) {
          const uint8_t* blk = xq.data() + r * x_row + size_t(b) * (x_row / size_t(k / v));
          float d;
          std::memcpy(&d, blk, 4);
          const auto* q = reinterpret_cast<const int8_t*>(blk + 4 + 2 * (v / 16));
          for (int j = 0; j < v; ++j) x_decoded[size_t(r) * k + b * v + j] = d * float(q[j]);
        }
      }
      suite.check_close(relative_error(x_decoded, x), 1e-2, name + " activation quantization error");
      // Vector quantizers write the scalar one's bytes, also on ties: a row whose largest value is
      // 127 (scale 1) and whose others are odd halves rounds every value half away from zero.
      std::vector<float> ties(static_cast<size_t>(k));
      for (int j = 0; j < k; ++j) ties[size_t(j)] = j % 32 == 0 ? 127.0f : float((j * 7) % 253 - 126) + 0.5f;
      std::vector<uint8_t> ties_q(x_row);
      quantize_activation_row(type, ties.data(), ties_q.data(), k, SimdLevel::Scalar);
      const auto* first = reinterpret_cast<const int8_t*>(ties_q.data() + 4 + 2 * (v / 16));
      bool away = true;
      for (int j = 1; j < 32; ++j) {
        const int whole = (j * 7) % 253 - 126;  // x = whole + 0.5 rounds to whole + 1 above 0, to whole below
        away = away && first[j] == (whole >= 0 ? whole + 1 : whole);
      }
      suite.check(away, name + " activation ties round half away from zero");
      for (SimdLevel level : {SimdLevel::Avx2, SimdLevel::Avx512}) {
        if (simd_level() < level) continue;
        std::vector<uint8_t> vq(xq.size()), vt(x_row);
        for (int r = 0; r < xs; ++r) quantize_activation_row(type, x.data() + r * k, vq.data() + r * x_row, k, level);
        quantize_activation_row(type, ties.data(), vt.data(), k, level);
        suite.check(vq == xq && vt == ties_q, std::string(simd_level_name(level)) + " quantizes " + name + " activations to the same bytes");
      }
      const auto want = matmul_ref(x_decoded, w.decoded, xs, rows, k);
      const size_t w_row = dtype_row_bytes(type, k);
      std::vector<SimdLevel> levels = {SimdLevel::Scalar};
      if (simd_level() >= SimdLevel::Avx2) levels.push_back(SimdLevel::Avx2);
      if (simd_level() >= SimdLevel::Avx512) levels.push_back(SimdLevel::Avx512);
      for (SimdLevel level : levels) {
        const QuantDotKernels& kern = quant_dot_kernels(type, level);
        std::vector<float> got(size_t(xs) * rows);
        bool same = true;
        for (int j = 0; j < rows; ++j) {
          float four[4];
          kern.dot4x(xq.data(), int64_t(x_row), w.raw.data() + j * w_row, k, four);
          for (int r = 0; r < xs; ++r) {
            got[size_t(r) * rows + j] = kern.dot(xq.data() + r * x_row, w.raw.data() + j * w_row, k);
            same = same && four[r] == got[size_t(r) * rows + j];
          }
        }
        const std::string what = std::string(simd_level_name(level)) + " dot " + name;
        suite.check_close(relative_error(got, want), 2e-6, what + " vs float64");
        suite.check(same, what + ": dot4x equals four single dots");
      }
    }

    // matmul through the backend with f32 activations. The 8-bit activations err by up to 1/254 of
    // each block's largest value per term, so each output is measured against Σ|x·w| (a single
    // output's relative error is meaningless where the sum cancels).
    for (const auto& s : quant_matmul_shapes(v)) {
      const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
      const HostWeights w(type, random_quant_blocks(type, int64_t(s.m) * s.k, seed++), int64_t(s.m) * s.k);
      const std::string what = "matmul " + name + " n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) +
                               " k=" + std::to_string(s.k);
      const auto y1 = run_matmul(*one, x, w, s.n, s.m, s.k);
      std::vector<float> x_abs(x), w_abs(w.decoded);
      for (auto& a : x_abs) a = std::fabs(a);
      for (auto& a : w_abs) a = std::fabs(a);
      const auto want = matmul_ref(x, w.decoded, s.n, s.m, s.k), magnitude = matmul_ref(x_abs, w_abs, s.n, s.m, s.k);
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(y1[i] - want[i]) / magnitude[i]);
      suite.check_close(worst, 4e-3, what + " (error / Σ|x·w|)");
      suite.check(run_matmul(*many, x, w, s.n, s.m, s.k) == y1, what + " same with 3 threads");
    }

    // Packed panels (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q3_K..Q6_K, IQ4_XS; AVX-512 VNNI or AVX2): the row
    // kernels' products up to float rounding, on 40 rows (two panels and 8 rows that run the row
    // kernels); each row computed alike whatever the batch and thread count.
    {
      const bool lookup = type == DType::IQ4_NL || type == DType::IQ4_XS;  // AVX-512 only
      const bool packs = (type == DType::Q4_0 || type == DType::Q4_1 || type == DType::Q5_0 || type == DType::Q5_1 ||
                          type == DType::Q3_K || type == DType::Q4_K || type == DType::Q5_K || type == DType::Q6_K || lookup) &&
                         simd_level() >= (lookup ? SimdLevel::Avx512 : SimdLevel::Avx2);
      const int m = 40, k = 3 * v;
      const HostWeights w(type, random_quant_blocks(type, int64_t(m) * k, seed++), int64_t(m) * k);
      TensorView view{const_cast<uint8_t*>(w.raw.data()), type, m, k};
      suite.check((pack_quant_weight(view) != nullptr) == packs, name + (packs ? " packs" : " does not pack"));
      if (lookup) suite.check(pack_quant_weight(view, SimdLevel::Avx2) == nullptr, name + " does not pack for AVX2");
      view.rows = 8;
      suite.check(pack_quant_weight(view) == nullptr, name + ": 8 rows (less than a panel) do not pack");
      view.rows = m;
      for (int n : packs ? std::vector<int>{1, 3, 4, 5, 37} : std::vector<int>{}) {
        const auto x = random_nonzero(size_t(n) * k, seed++);
        const std::string what = "packed " + name + " n=" + std::to_string(n);
        const auto rows = run_matmul(*one, x, w, n, m, k), packed = run_matmul(*one, x, w, n, m, k, true);
        suite.check_close(relative_error(packed, rows), 2e-6, what + " vs the row kernels");
        suite.check(run_matmul(*many, x, w, n, m, k, true) == packed, what + " same with 3 threads");
        bool alike = true;
        for (int i = 0; i < n; ++i) {
          const std::vector<float> xi(x.begin() + i * k, x.begin() + (i + 1) * k);
          alike = alike && std::equal(packed.begin() + i * m, packed.begin() + (i + 1) * m, run_matmul(*one, xi, w, 1, m, k, true).begin());
        }
        suite.check(alike, what + ": each row equals that row alone");
        // The AVX2 panel kernel on the same packed copy gives the AVX-512 one's bits (the 8 tail rows
        // run each level's row kernels, which round differently).
        if (lookup) continue;
        const size_t x_row = activation_row_bytes(type, k);
        std::vector<uint8_t> xq(x_row * size_t(n));
        for (int i = 0; i < n; ++i) quantize_activation_row(type, x.data() + size_t(i) * k, xq.data() + i * x_row, k);
        const auto copy = pack_quant_weight(view);
        TensorView packed_view{const_cast<uint8_t*>(w.raw.data()), type, m, k};
        packed_view.packed = copy.get();
        ThreadPool single(1);
        std::vector<float> avx2(size_t(n) * m);
        matmul_packed_quant(single, xq.data(), int64_t(x_row), packed_view, avx2.data(), n, SimdLevel::Avx2);
        bool panels_same = true;
        std::vector<float> tail_avx2, tail_packed;
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < m; ++j) {
            const size_t at = size_t(i) * m + j;
            if (j < 32) panels_same = panels_same && avx2[at] == packed[at];
            else tail_avx2.push_back(avx2[at]), tail_packed.push_back(packed[at]);
          }
        suite.check(panels_same, what + ": AVX2 panel kernel gives the same bits");
        suite.check_close(relative_error(tail_avx2, tail_packed), 2e-6, what + ": AVX2 tail rows");
      }
    }

    // Embedding rows are the decoded table rows.
    {
      const int vocab = 11, cols = 2 * v;
      const HostWeights table(type, random_quant_blocks(type, int64_t(vocab) * cols, seed++), int64_t(vocab) * cols);
      const std::vector<int32_t> tokens = {0, 10, 3, 3};
      const auto y = run_embed(*many, table, vocab, cols, tokens);
      std::vector<float> want;
      for (int32_t t : tokens) want.insert(want.end(), table.decoded.begin() + t * cols, table.decoded.begin() + (t + 1) * cols);
      suite.check(y == want, "embed " + name + " rows equal the decoded table rows");
    }

    // Rows that are not whole blocks are refused with a typed error.
    suite.check_throws([&] { dtype_row_bytes(type, v + 1); }, "row of " + std::to_string(v + 1) + " " + name + " values");
  }
  return suite.finish();
}
