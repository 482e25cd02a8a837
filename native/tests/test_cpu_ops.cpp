// CPU ops against float64 references, every SIMD level this CPU has, and 1 vs several threads.
#include <array>
#include <cmath>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "cpu/gemm.h"
#include "cpu/simd.h"
#include "attention_case.h"
#include "op_runner.h"
#include "reference.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

std::string shape_name(const char* op, DType dt, const MatmulShape& s) {
  return std::string(op) + " " + dtype_name(dt) + " n=" + std::to_string(s.n) + " m=" + std::to_string(s.m) +
         " k=" + std::to_string(s.k);
}

}  // namespace

int main() {
  Suite suite("cpu_ops");
  std::printf("cpu features: %s; kernels: %s\n", cpu_features().c_str(), simd_level_name(simd_level()));
  auto one = make_cpu_backend(1);
  auto many = make_cpu_backend(3);

  uint32_t seed = 1;
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    for (const auto& s : matmul_shapes()) {
      const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
      const HostWeights w(random_nonzero(size_t(s.m) * s.k, seed++), dt);
      const auto ref = matmul_ref(x, w.decoded, s.n, s.m, s.k);
      const auto y1 = run_matmul(*one, x, w, s.n, s.m, s.k);
      suite.check_close(relative_error(y1, ref), 1e-5, shape_name("matmul", dt, s));
      suite.check(run_matmul(*many, x, w, s.n, s.m, s.k) == y1, shape_name("matmul", dt, s) + " same with 3 threads");
    }
  }

  for (const auto& s : q8_matmul_shapes()) {
    const auto x = random_nonzero(size_t(s.n) * s.k, seed++);
    const HostWeights w(random_nonzero(size_t(s.m) * s.k, seed++), DType::Q8_0);
    const auto y = run_matmul(*many, x, w, s.n, s.m, s.k);
    suite.check_close(relative_error(y, matmul_ref(x, w.decoded, s.n, s.m, s.k)), 1e-5, shape_name("matmul", DType::Q8_0, s));
  }

  // The GPU's large-magnitude checks compare with these: activations up to 1e5 and BF16 weights far
  // outside f16's range stay exact f32 arithmetic here.
  for (auto [x_scale, w_scale, dt] : {std::tuple{1e5f, 1.0f, DType::F16}, {1e5f, 1.0f, DType::BF16}, {1e5f, 1.0f, DType::Q8_0},
                                      {1.0f, 1e5f, DType::BF16}, {1.0f, 1e-6f, DType::BF16}})
    for (const MatmulShape& s : {MatmulShape{1, 65, 256}, MatmulShape{17, 65, 256}}) {
      const auto x = random_nonzero(size_t(s.n) * s.k, seed++, x_scale);
      const HostWeights w(random_nonzero(size_t(s.m) * s.k, seed++, w_scale), dt);
      char magnitudes[64];
      std::snprintf(magnitudes, sizeof magnitudes, ", |x| to %g, |w| to %g", double(x_scale), double(w_scale));
      suite.check_close(relative_error(run_matmul(*many, x, w, s.n, s.m, s.k), matmul_ref(x, w.decoded, s.n, s.m, s.k)), 1e-5,
                        shape_name("matmul", dt, s) + magnitudes);
    }

  // The scalar kernels are what a CPU without AVX2 runs: check them directly too.
  const VectorKernels& scalar = vector_kernels_for(SimdLevel::Scalar);
  for (int k : {1, 7, 8, 17, 100, 1001}) {
    const auto x = random_nonzero(size_t(k), seed++);
    const HostWeights w16(random_nonzero(size_t(k), seed++), DType::F16);
    const HostWeights wb(random_nonzero(size_t(k), seed++), DType::BF16);
    const auto r16 = matmul_ref(x, w16.decoded, 1, 1, k);
    const auto rb = matmul_ref(x, wb.decoded, 1, 1, k);
    const auto r32 = matmul_ref(x, w16.decoded, 1, 1, k);
    suite.check_close(relative_error(std::vector<float>{scalar.f16(x.data(), w16.half_bits(), k)}, r16), 1e-5,
                      "scalar dot f16 k=" + std::to_string(k));
    suite.check_close(relative_error(std::vector<float>{scalar.bf16(x.data(), wb.half_bits(), k)}, rb), 1e-5,
                      "scalar dot bf16 k=" + std::to_string(k));
    if (k % kQ8Block == 0 || k == 1001) {
      const int kq = (k + kQ8Block - 1) / kQ8Block * kQ8Block;
      const auto xq = random_nonzero(size_t(kq), seed++);
      const HostWeights wq(random_nonzero(size_t(kq), seed++), DType::Q8_0);
      suite.check_close(relative_error(std::vector<float>{scalar.q8_0(xq.data(), reinterpret_cast<const BlockQ8_0*>(wq.data()), kq)},
                                       matmul_ref(xq, wq.decoded, 1, 1, kq)),
                        1e-5, "scalar dot q8_0 k=" + std::to_string(kq));
    }
    suite.check_close(relative_error(std::vector<float>{scalar.f32(x.data(), w16.decoded.data(), k)}, r32), 1e-5,
                      "scalar dot f32 k=" + std::to_string(k));
  }

  // Four-row kernels give each row exactly what the one-row kernel gives (batching rows must not
  // change results), for every kernel level this CPU runs.
  for (SimdLevel level : {SimdLevel::Scalar, simd_level()}) {
    const VectorKernels& v = vector_kernels_for(level);
    for (int k : {1, 7, 8, 15, 16, 33, 1000}) {
      const auto x = random_nonzero(size_t(4) * k, seed++);
      const HostWeights w32(random_nonzero(size_t(k), seed++), DType::F32), w16(random_nonzero(size_t(k), seed++), DType::F16),
          wb(random_nonzero(size_t(k), seed++), DType::BF16);
      bool same = true;
      float out[4];
      v.dot4x_f32(x.data(), k, w32.decoded.data(), k, out);
      for (int r = 0; r < 4; ++r) same = same && out[r] == v.f32(x.data() + r * k, w32.decoded.data(), k);
      v.dot4x_f16(x.data(), k, w16.half_bits(), k, out);
      for (int r = 0; r < 4; ++r) same = same && out[r] == v.f16(x.data() + r * k, w16.half_bits(), k);
      v.dot4x_bf16(x.data(), k, wb.half_bits(), k, out);
      for (int r = 0; r < 4; ++r) same = same && out[r] == v.bf16(x.data() + r * k, wb.half_bits(), k);
      suite.check(same, std::string(simd_level_name(level)) + " dot4x equals four single dots, k=" + std::to_string(k));
      // Attention's page kernels: a query against four key rows (stride k + 3), and Σ w_j v_j over
      // five value rows, each equal to the one-row kernels' results.
      const int stride = k + 3;
      const auto rows = random_nonzero(size_t(5) * stride, seed++);
      std::vector<uint16_t> rows16(rows.size());
      for (size_t i = 0; i < rows.size(); ++i) rows16[i] = f32_to_f16(rows[i]);
      bool page_same = true;
      v.dot1x4_f32(x.data(), rows.data(), stride, k, out);
      for (int r = 0; r < 4; ++r) page_same = page_same && out[r] == v.f32(x.data(), rows.data() + r * stride, k);
      v.dot1x4_f16(x.data(), rows16.data(), stride, k, out);
      for (int r = 0; r < 4; ++r) page_same = page_same && out[r] == v.f16(x.data(), rows16.data() + r * stride, k);
      const float weights[5] = {0.5f, -1.25f, 0.3f, 2.0f, -0.7f};
      std::vector<float> acc_rows(x.begin(), x.begin() + k), acc_one(acc_rows), acc16_rows(acc_rows), acc16_one(acc_rows);
      v.axpy_rows_f32(acc_rows.data(), weights, rows.data(), stride, 5, k);
      v.axpy_rows_f16(acc16_rows.data(), weights, rows16.data(), stride, 5, k);
      for (int j = 0; j < 5; ++j) {
        v.axpy_f32(acc_one.data(), weights[j], rows.data() + j * stride, k);
        v.axpy_f16(acc16_one.data(), weights[j], rows16.data() + j * stride, k);
      }
      page_same = page_same && acc_rows == acc_one && acc16_rows == acc16_one;
      suite.check(page_same, std::string(simd_level_name(level)) + " page kernels equal the one-row kernels, k=" + std::to_string(k));
    }
  }

  // The AVX-512 GEMM (float weights) gives every output bit for bit what the AVX2 dot kernel gives
  // (so the path, the batch and the thread count never change a result), and is close to the
  // scalar twin and to float64: 1-3 rows (its decoding form), 4, 15, 16, 17 rows and more; k below,
  // at and past the 16-lane step and the k block of 512; weight rows off the tiles and panels.
  if (cpu::gemm_available(simd_level())) {
    const VectorKernels& avx2 = vector_kernels_for(SimdLevel::Avx2);
    auto pool = std::make_unique<ThreadPool>(3);
    for (DType dt : {DType::F32, DType::F16, DType::BF16})
      for (int n : {1, 2, 3, 4, 15, 16, 17, 70})
        for (auto [m, k] : {std::pair{1, 1}, {7, 8}, {25, 15}, {6, 17}, {49, 24}, {13, 513}, {30, 1047}}) {
          const auto x = random_nonzero(size_t(n) * k, seed++);
          const HostWeights w(random_nonzero(size_t(m) * k, seed++), dt);
          std::vector<float> y(size_t(n) * m), twin(size_t(n) * m), scalar_y(size_t(n) * m);
          const void* raw = dt == DType::F32 ? static_cast<const void*>(w.decoded.data()) : static_cast<const void*>(w.half_bits());
          cpu::gemm_float_weights(*pool, x.data(), raw, dt, y.data(), n, m, k);
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < m; ++j) {
              const float* xi = x.data() + size_t(i) * k;
              const size_t o = size_t(i) * m + j;
              if (dt == DType::F32) {
                twin[o] = avx2.f32(xi, w.decoded.data() + size_t(j) * k, k);
                scalar_y[o] = scalar.f32(xi, w.decoded.data() + size_t(j) * k, k);
              } else {
                const uint16_t* wj = w.half_bits() + size_t(j) * k;
                twin[o] = dt == DType::F16 ? avx2.f16(xi, wj, k) : avx2.bf16(xi, wj, k);
                scalar_y[o] = dt == DType::F16 ? scalar.f16(xi, wj, k) : scalar.bf16(xi, wj, k);
              }
            }
          const std::string name = std::string("gemm ") + dtype_name(dt) + " n=" + std::to_string(n) + " m=" + std::to_string(m) +
                                   " k=" + std::to_string(k);
          suite.check(y == twin, name + " equals the AVX2 dot kernel bit for bit");
          suite.check_close(relative_error(y, scalar_y), 1e-5, name + " vs the scalar twin");
          suite.check_close(relative_error(y, matmul_ref(x, w.decoded, n, m, k)), 1e-5, name + " vs float64");
        }
  } else {
    std::printf("gemm: not run, kernels '%s' (the GEMM needs AVX-512)\n", simd_level_name(simd_level()));
  }

  for (auto [n, d] : {std::pair{1, 1}, {1, 64}, {3, 7}, {17, 172}, {64, 1000}}) {
    const auto x = random_nonzero(size_t(n) * d, seed++, 3.0f);
    const auto g = random_nonzero(size_t(d), seed++);
    const std::string shape = " n=" + std::to_string(n) + " d=" + std::to_string(d);
    suite.check_close(relative_error(run_rmsnorm(*many, x, g, n, d, 1e-5f), rmsnorm_ref(x, g, n, d, 1e-5)), 1e-6,
                      "rmsnorm" + shape);
    suite.check_close(relative_error(run_softmax(*many, x, n, d), softmax_ref(x, n, d)), 1e-6, "softmax" + shape);
  }
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
    const int vocab = 37, cols = 64;
    const HostWeights table(random_nonzero(size_t(vocab) * cols, seed++), dt);
    const std::vector<int32_t> tokens = {0, 36, 5, 5, 17};
    const auto y = run_embed(*many, table, vocab, cols, tokens);
    std::vector<float> want;
    for (int32_t t : tokens) want.insert(want.end(), table.decoded.begin() + t * cols, table.decoded.begin() + (t + 1) * cols);
    suite.check(y == want, std::string("embed ") + dtype_name(dt) + " rows equal the decoded table rows");
  }
  for (auto [n, heads, hd, pos0] : {std::array<int, 4>{1, 1, 2, 0}, {1, 8, 8, 41}, {7, 3, 64, 0}, {33, 32, 128, 1000}}) {
    const auto x = random_nonzero(size_t(n) * heads * hd, seed++);
    suite.check_close(relative_error(run_rope(*many, x, n, heads * hd, hd, pos0, 10000.f),
                                     rope_ref(x, n, heads * hd, hd, pos0, 10000.0)),
                      1e-6, "rope n=" + std::to_string(n) + " heads=" + std::to_string(heads) + " hd=" + std::to_string(hd) +
                                " pos0=" + std::to_string(pos0));
  }
  // NeoX pairs and Llama 3.1 frequency factors (factors > 1 slow a frequency down, as rope_freqs does).
  for (auto [n, heads, hd, pos0] : {std::array<int, 4>{1, 1, 2, 0}, {1, 4, 16, 77}, {5, 3, 10, 3}, {33, 2, 128, 1000}}) {
    const auto x = random_nonzero(size_t(n) * heads * hd, seed++);
    auto factors = random_nonzero(size_t(hd / 2), seed++, 4.f);
    for (float& f : factors) f = 1.0f + std::fabs(f);
    const std::string shape = " n=" + std::to_string(n) + " heads=" + std::to_string(heads) + " hd=" + std::to_string(hd) +
                              " pos0=" + std::to_string(pos0);
    for (bool neox : {false, true}) {
      const RopeStyle style = neox ? RopeStyle::Neox : RopeStyle::Normal;
      const std::string name = std::string(neox ? "rope neox" : "rope normal");
      suite.check_close(relative_error(run_rope(*many, x, n, heads * hd, hd, pos0, 5e5f, style),
                                       rope_ref(x, n, heads * hd, hd, pos0, 5e5, neox)),
                        1e-6, name + shape);
      suite.check_close(relative_error(run_rope(*many, x, n, heads * hd, hd, pos0, 5e5f, style, factors),
                                       rope_ref(x, n, heads * hd, hd, pos0, 5e5, neox, factors)),
                        1e-6, name + " with frequency factors" + shape);
    }
  }
  for (auto [n, d] : {std::pair{1, 1}, {1, 16}, {3, 7}, {17, 33}}) {
    const auto x = random_nonzero(size_t(n) * d, seed++), bias = random_nonzero(size_t(d), seed++);
    std::vector<double> want(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = double(x[i]) + bias[i % size_t(d)];
    suite.check_close(relative_error(run_add_bias(*many, x, bias, n, d), want), 1e-7,
                      "add_bias n=" + std::to_string(n) + " d=" + std::to_string(d));
  }
  // Per-head RMSNorm (Qwen3's q/k norms): rmsnorm in place on a [rows · heads, head_dim] view.
  for (auto [n, heads, hd] : {std::array<int, 3>{1, 1, 2}, {1, 4, 16}, {7, 3, 10}, {33, 8, 128}}) {
    const auto x = random_nonzero(size_t(n) * heads * hd, seed++, 3.0f), g = random_nonzero(size_t(hd), seed++);
    suite.check_close(relative_error(run_head_rmsnorm(*many, x, g, n, heads, hd, 1e-6f), rmsnorm_ref(x, g, n * heads, hd, 1e-6)),
                      1e-6, "per-head rmsnorm in place n=" + std::to_string(n) + " heads=" + std::to_string(heads) +
                                " hd=" + std::to_string(hd));
  }
  {
    const auto g = random_nonzero(3 * 173, seed++, 4.f), u = random_nonzero(3 * 173, seed++);
    suite.check_close(relative_error(run_binary(*many, true, g, u, 3, 173), swiglu_ref(g, u)), 1e-6, "swiglu 3x173");
    std::vector<double> sum(g.size());
    for (size_t i = 0; i < g.size(); ++i) sum[i] = double(g[i]) + u[i];
    suite.check_close(relative_error(run_binary(*many, false, g, u, 3, 173), sum), 1e-7, "add 3x173");
  }
  for (DType kv : {DType::F32, DType::F16})
    for (const auto& shape : attention_shapes()) {
      const auto problem = make_attention_problem(shape, seed++, kv);
      const float scale = 1.0f / std::sqrt(float(shape.head_dim));
      const auto got = run_attention(*many, problem, scale);
      suite.check_close(relative_error(got, attention_ref(problem, scale)), 1e-5,
                        std::string("attention, ") + dtype_name(kv) + " cache, " + shape.name());
    }

  {
    std::vector<AttentionProblem> problems;
    for (const auto& shape : attention_batch_shapes()) problems.push_back(make_attention_problem(shape, seed++));
    std::vector<const AttentionProblem*> batch;
    for (const auto& p : problems) batch.push_back(&p);
    const float scale = 0.125f;
    const auto outs = run_attention_batch(*many, batch, scale);
    for (size_t i = 0; i < problems.size(); ++i)
      suite.check_close(relative_error(outs[i], attention_ref(problems[i], scale)), 1e-5,
                        "batched attention, sequence " + std::to_string(i) + ": " + problems[i].shape.name());
  }

  // Large logits must not overflow exp().
  {
    std::vector<float> big = {1000.f, 999.f, -1000.f, 998.5f};
    suite.check_close(relative_error(run_softmax(*one, big, 1, 4), softmax_ref(big, 1, 4)), 1e-6, "softmax large logits");
  }

  // Bad shapes are typed errors, not crashes.
  {
    DeviceBuffer a(*one, 64), b(*one, 64), c(*one, 64);
    bool typed = false;
    try {
      one->matmul({a.get(), DType::F32, 2, 3}, {b.get(), DType::F32, 2, 4}, {c.get(), DType::F32, 2, 2});
    } catch (const Error& e) {
      typed = e.code() == ErrorCode::InvalidArgument;
    }
    suite.check(typed, "matmul with mismatched k throws InvalidArgument");
    suite.check_throws([&] { one->softmax_rows({a.get(), DType::F16, 2, 3}); }, "softmax of f16");
  }
  return suite.finish();
}
