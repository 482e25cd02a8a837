// The N-API binding: converts JS values to core types, runs work on libuv's pool through
// AsyncWorker, and turns chai::Error into JS errors with a stable `code`. No compute here.
#include <napi.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "cpu/simd.h"

namespace {

using chai::ErrorCode;

Napi::Error make_error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

// Runs fn and converts any C++ exception into a JS exception, so nothing escapes into N-API.
template <typename Fn>
Napi::Value guarded(Napi::Env env, Fn fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const chai::Error& e) {
    throw make_error(env, chai::error_code_name(e.code()), e.what());
  } catch (const std::exception& e) {
    throw make_error(env, "E_INTERNAL", e.what());
  }
}

// One backend per device string, created on first use (inside a worker) and kept.
std::shared_ptr<chai::Backend> backend_for(const std::string& device) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<chai::Backend>> backends;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = backends.find(device);
  if (found != backends.end()) return found->second;
  std::shared_ptr<chai::Backend> backend;
  if (device == "cpu") {
    backend = chai::make_cpu_backend(0);
  } else if (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
             device.find_first_not_of("0123456789", 5) == std::string::npos) {
    backend = chai::make_cuda_backend(std::stoi(device.substr(5)));
  } else {
    chai::fail(ErrorCode::InvalidArgument, "unknown device '" + device + "': use 'cpu' or 'cuda:N'");
  }
  backends.emplace(device, backend);
  return backend;
}

// A Promise-returning job that produces a float vector off the JS thread.
class FloatJob : public Napi::AsyncWorker {
 public:
  FloatJob(Napi::Env env, std::function<std::vector<float>()> work)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = work_();
    } catch (const chai::Error& e) {
      code_ = chai::error_code_name(e.code());
      SetError(e.what());
    } catch (const std::exception& e) {
      code_ = "E_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    auto out = Napi::Float32Array::New(Env(), result_.size());
    std::copy(result_.begin(), result_.end(), out.Data());
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& error) override {
    deferred_.Reject(make_error(Env(), code_.c_str(), error.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<std::vector<float>()> work_;
  std::vector<float> result_;
  std::string code_ = "E_INTERNAL";
};

Napi::Value queue(Napi::Env env, std::function<std::vector<float>()> work) {
  auto* job = new FloatJob(env, std::move(work));  // AsyncWorker deletes itself when done
  Napi::Promise promise = job->promise();
  job->Queue();
  return promise;
}

// --- argument conversion (copies, so JS may reuse its arrays while the job runs) -----------

void invalid(const std::string& message) { chai::fail(ErrorCode::InvalidArgument, message); }

std::string string_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) invalid(std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) invalid(std::string(name) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 1 && v <= 2147483647.0) || v != double(int64_t(v)))
    invalid(std::string(name) + " must be a positive integer, got " + std::to_string(v));
  return int64_t(v);
}

std::vector<float> floats_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expected) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    invalid(std::string(name) + " must be a Float32Array");
  auto a = info[i].As<Napi::Float32Array>();
  if (int64_t(a.ElementLength()) != expected)
    invalid(std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
            std::to_string(expected));
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

// Weights: Float32Array for f32, Uint16Array of raw bits for f16 / bf16. Kept as bytes.
std::vector<uint8_t> weights_arg(const Napi::CallbackInfo& info, size_t i, chai::DType dtype, int64_t expected) {
  const napi_typedarray_type want = dtype == chai::DType::F32 ? napi_float32_array : napi_uint16_array;
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != want)
    invalid(std::string("weights of dtype ") + chai::dtype_name(dtype) + " must be a " +
            (dtype == chai::DType::F32 ? "Float32Array" : "Uint16Array of raw bits"));
  auto a = info[i].As<Napi::TypedArray>();
  if (int64_t(a.ElementLength()) != expected)
    invalid("weights have " + std::to_string(a.ElementLength()) + " elements, expected " + std::to_string(expected));
  const auto* bytes = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  return std::vector<uint8_t>(bytes, bytes + a.ByteLength());
}

template <typename T>
std::unique_ptr<chai::DeviceBuffer> upload(chai::Backend& be, const std::vector<T>& host) {
  auto buffer = std::make_unique<chai::DeviceBuffer>(be, host.size() * sizeof(T));
  be.upload(buffer->get(), host.data(), buffer->bytes());
  return buffer;
}

std::vector<float> download(chai::Backend& be, const chai::DeviceBuffer& buffer) {
  std::vector<float> out(buffer.bytes() / sizeof(float));
  be.download(out.data(), buffer.get(), buffer.bytes());
  return out;
}

// --- exported functions ---------------------------------------------------------------------

// matmul(device, x: Float32Array, n, k, w: Float32Array | Uint16Array, wDtype, m) → Promise<Float32Array[n*m]>
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string device = string_arg(info, 0, "device");
    const int64_t n = int_arg(info, 2, "n"), k = int_arg(info, 3, "k"), m = int_arg(info, 6, "m");
    auto x = floats_arg(info, 1, "x", n * k);
    const chai::DType dtype = chai::dtype_from_name(string_arg(info, 5, "weight dtype"));
    auto w = weights_arg(info, 4, dtype, m * k);
    return queue(info.Env(), [device, x = std::move(x), w = std::move(w), dtype, n, k, m] {
      auto be = backend_for(device);
      auto dx = upload(*be, x), dw = upload(*be, w);
      chai::DeviceBuffer dy(*be, size_t(n * m) * sizeof(float));
      be->matmul({dx->get(), chai::DType::F32, n, k}, {dw->get(), dtype, m, k}, {dy.get(), chai::DType::F32, n, m});
      return download(*be, dy);
    });
  });
}

// rmsnorm(device, x: Float32Array, n, d, weight: Float32Array[d], eps) → Promise<Float32Array>
Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string device = string_arg(info, 0, "device");
    const int64_t n = int_arg(info, 2, "n"), d = int_arg(info, 3, "d");
    auto x = floats_arg(info, 1, "x", n * d);
    auto g = floats_arg(info, 4, "weight", d);
    if (!info[5].IsNumber()) invalid("eps must be a number");
    const float eps = info[5].As<Napi::Number>().FloatValue();
    if (!(eps >= 0)) invalid("eps must be >= 0");
    return queue(info.Env(), [device, x = std::move(x), g = std::move(g), n, d, eps] {
      auto be = backend_for(device);
      auto dx = upload(*be, x), dg = upload(*be, g);
      chai::DeviceBuffer dy(*be, x.size() * sizeof(float));
      be->rmsnorm({dx->get(), chai::DType::F32, n, d}, {dg->get(), chai::DType::F32, 1, d}, eps,
                  {dy.get(), chai::DType::F32, n, d});
      return download(*be, dy);
    });
  });
}

// softmax(device, x: Float32Array, n, d) → Promise<Float32Array> (row-wise)
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string device = string_arg(info, 0, "device");
    const int64_t n = int_arg(info, 2, "n"), d = int_arg(info, 3, "d");
    auto x = floats_arg(info, 1, "x", n * d);
    return queue(info.Env(), [device, x = std::move(x), n, d] {
      auto be = backend_for(device);
      auto dx = upload(*be, x);
      be->softmax_rows({dx->get(), chai::DType::F32, n, d});
      return download(*be, *dx);
    });
  });
}

// toHalf(values: Float32Array, dtype: 'f16' | 'bf16') → Uint16Array of raw bits (round to nearest even)
Napi::Value ToHalf(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      invalid("values must be a Float32Array");
    auto values = info[0].As<Napi::Float32Array>();
    const chai::DType dtype = chai::dtype_from_name(string_arg(info, 1, "dtype"));
    if (dtype == chai::DType::F32) invalid("toHalf converts to 'f16' or 'bf16'");
    auto out = Napi::Uint16Array::New(info.Env(), values.ElementLength());
    for (size_t i = 0; i < values.ElementLength(); ++i)
      out[i] = dtype == chai::DType::F16 ? chai::f32_to_f16(values[i]) : chai::f32_to_bf16(values[i]);
    return out;
  });
}

// fromHalf(bits: Uint16Array, dtype: 'f16' | 'bf16') → Float32Array
Napi::Value FromHalf(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint16_array)
      invalid("bits must be a Uint16Array");
    auto bits = info[0].As<Napi::Uint16Array>();
    const chai::DType dtype = chai::dtype_from_name(string_arg(info, 1, "dtype"));
    if (dtype == chai::DType::F32) invalid("fromHalf converts from 'f16' or 'bf16'");
    auto out = Napi::Float32Array::New(info.Env(), bits.ElementLength());
    for (size_t i = 0; i < bits.ElementLength(); ++i)
      out[i] = dtype == chai::DType::F16 ? chai::f16_to_f32(bits[i]) : chai::bf16_to_f32(bits[i]);
    return out;
  });
}

Napi::Value Devices(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("threads", Napi::Number::New(env, std::max(1u, std::thread::hardware_concurrency())));
    cpu.Set("features", Napi::String::New(env, chai::cpu_features()));
    cpu.Set("simd", Napi::String::New(env, chai::simd_level_name(chai::simd_level())));

    const chai::CudaStatus status = chai::cuda_status();
    Napi::Object cuda = Napi::Object::New(env);
    cuda.Set("compiled", Napi::Boolean::New(env, status.compiled));
    cuda.Set("available", Napi::Boolean::New(env, status.available));
    cuda.Set("reason", status.available ? env.Null() : Napi::String::New(env, status.reason));
    cuda.Set("driverVersion", Napi::Number::New(env, status.driver_version));
    cuda.Set("runtimeVersion", Napi::Number::New(env, status.runtime_version));
    Napi::Array list = Napi::Array::New(env, status.devices.size());
    for (size_t i = 0; i < status.devices.size(); ++i) {
      const auto& d = status.devices[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", d.index);
      o.Set("name", d.name);
      o.Set("computeCapability", std::to_string(d.compute_major) + "." + std::to_string(d.compute_minor));
      o.Set("totalMemory", Napi::Number::New(env, double(d.total_memory)));
      o.Set("multiprocessors", d.multiprocessors);
      list.Set(uint32_t(i), o);
    }
    cuda.Set("devices", list);

    Napi::Object out = Napi::Object::New(env);
    out.Set("cpu", cpu);
    out.Set("cuda", cuda);
    return out;
  });
}

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    Napi::Array backends = Napi::Array::New(env);
    backends.Set(0u, "cpu");
    if (CHAI_WITH_CUDA) backends.Set(1u, "cuda");
    out.Set("backends", backends);
    const std::vector<int> archs = chai::cuda_architectures();
    Napi::Array arch_list = Napi::Array::New(env, archs.size());
    for (size_t i = 0; i < archs.size(); ++i) arch_list.Set(uint32_t(i), archs[i]);
    out.Set("cudaArchitectures", arch_list);
    out.Set("compiler", "g++ " __VERSION__);
    out.Set("napiVersion", NAPI_VERSION);
    return out;
  });
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("devices", Napi::Function::New(env, Devices));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("rmsnorm", Napi::Function::New(env, RmsNorm));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("toHalf", Napi::Function::New(env, ToHalf));
  exports.Set("fromHalf", Napi::Function::New(env, FromHalf));
  return exports;
}

}  // namespace

NODE_API_MODULE(chai_attention, Init)
