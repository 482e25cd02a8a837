// A minimal check harness for the C++ tests (no framework needed on a bare GPU machine), and
// the random inputs and error measures shared by tests and benchmarks.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace chai::testing {

// The test models' folder, ending in '/': $CHAI_MODELS where it is set (a machine without
// ../shared, such as a lent GPU), else ../shared/models (CHAI_SHARED_DIR, set for every test by
// native/tests/CMakeLists.txt).
inline std::string models_dir() {
  const char* env = std::getenv("CHAI_MODELS");
  return env && *env ? std::string(env) + "/" : std::string(CHAI_SHARED_DIR) + "/models/";
}

// Test shapes at full size, or small enough for the simulated GPU (GPGPU-Sim runs about 2-3 million
// thread-instructions a second) while taking the same code paths.
enum class ShapeScale { Full, Simulator };
inline ShapeScale shape_scale_for(const std::string& device_name) {
  return device_name.rfind("GPGPU-Sim", 0) == 0 ? ShapeScale::Simulator : ShapeScale::Full;
}

// Uniform in ±[0.05, 1): random and never zero, so no term of a sum vanishes by accident.
inline std::vector<float> random_nonzero(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> magnitude(0.05f, 1.0f);
  std::bernoulli_distribution negative(0.5);
  std::vector<float> v(n);
  for (auto& x : v) x = (negative(rng) ? -1.0f : 1.0f) * magnitude(rng) * scale;
  return v;
}

// ‖a − ref‖₂ / ‖ref‖₂: one number per output tensor, insensitive to single values near zero.
template <typename A, typename B>
double relative_error(const std::vector<A>& a, const std::vector<B>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(a[i]) - double(ref[i]);
    diff += d * d;
    norm += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(diff / (norm > 0 ? norm : 1));
}

class Suite {
 public:
  explicit Suite(std::string name) : name_(std::move(name)) {}

  void check(bool ok, const std::string& what) {
    (ok ? passed_ : failed_)++;
    if (!ok) std::printf("FAIL %s: %s\n", name_.c_str(), what.c_str());
  }

  // Records a relative error against its bound and prints it, so logs show the margins.
  void check_close(double error, double bound, const std::string& what) {
    const bool ok = std::isfinite(error) && error <= bound;
    std::printf("%s %-58s rel.err %.3e (bound %.0e)\n", ok ? "ok  " : "FAIL", what.c_str(), error, bound);
    (ok ? passed_ : failed_)++;
  }

  template <typename Fn>
  void check_throws(Fn fn, const std::string& what) {
    bool threw = false;
    try {
      fn();
    } catch (...) {
      threw = true;
    }
    check(threw, what + " should throw");
  }

  int finish() const {
    std::printf("%s: %d passed, %d failed\n", name_.c_str(), passed_, failed_);
    return failed_ == 0 ? 0 : 1;
  }

 private:
  std::string name_;
  int passed_ = 0;
  int failed_ = 0;
};

// True when fn throws chai::Error with this code (the stable codes the addon maps to E_*).
template <typename Fn>
bool throws_code(Fn fn, ErrorCode code) {
  try {
    fn();
  } catch (const Error& e) {
    return e.code() == code;
  }
  return false;
}

}  // namespace chai::testing
