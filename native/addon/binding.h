// Helpers shared by the binding files: JS errors with stable codes, Promise-returning jobs on
// libuv's pool, argument conversion (copying, so JS may reuse its arrays while a job runs), and
// the per-device backends. No compute here.
#pragma once
#include <napi.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"

namespace chai::binding {

using chai::ErrorCode;

inline Napi::Error make_error(Napi::Env env, const char* code, const std::string& message) {
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

// One backend per device (and, for the CPU, per thread count; 0 = all hardware threads),
// created on first use (inside a worker) and kept.
inline std::shared_ptr<chai::Backend> backend_for(const std::string& device, int cpu_threads = 0) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<chai::Backend>> backends;
  std::lock_guard<std::mutex> lock(mutex);
  const std::string key = device == "cpu" ? "cpu/" + std::to_string(cpu_threads) : device;
  auto found = backends.find(key);
  if (found != backends.end()) return found->second;
  std::shared_ptr<chai::Backend> backend;
  if (device == "cpu") {
    backend = chai::make_cpu_backend(cpu_threads);
  } else if (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
             device.find_first_not_of("0123456789", 5) == std::string::npos) {
    backend = chai::make_cuda_backend(std::stoi(device.substr(5)));
  } else {
    chai::fail(ErrorCode::InvalidArgument, "unknown device '" + device + "': use 'cpu' or 'cuda:N'");
  }
  backends.emplace(key, backend);
  return backend;
}

// A Promise-returning job: `work` runs on libuv's pool, `to_js` turns its result into a JS value
// on the JS thread. chai::Error becomes a rejection whose `code` is the stable error code.
template <typename Result>
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<Result()> work, std::function<Napi::Value(Napi::Env, Result&)> to_js)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)), to_js_(std::move(to_js)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      result_ = work_();
    } catch (const chai::Error& e) {
      code_ = chai::error_code_name(e.code());
      SetError(e.what());
    } catch (const std::bad_alloc&) {
      code_ = "E_DEVICE_OOM";
      SetError("out of host memory");
    } catch (const std::exception& e) {
      code_ = "E_INTERNAL";
      SetError(e.what());
    }
  }
  void OnOK() override {
    try {
      deferred_.Resolve(to_js_(Env(), result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& error) override {
    deferred_.Reject(make_error(Env(), code_.c_str(), error.Message()).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<Result()> work_;
  std::function<Napi::Value(Napi::Env, Result&)> to_js_;
  Result result_{};
  std::string code_ = "E_INTERNAL";
};

template <typename Result>
Napi::Value queue_job(Napi::Env env, std::function<Result()> work, std::function<Napi::Value(Napi::Env, Result&)> to_js) {
  auto* job = new Job<Result>(env, std::move(work), std::move(to_js));  // deletes itself when done
  Napi::Promise promise = job->promise();
  job->Queue();
  return promise;
}

inline Napi::Value floats_to_js(Napi::Env env, std::vector<float>& v) {
  auto out = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), out.Data());
  return out;
}

inline Napi::Value queue(Napi::Env env, std::function<std::vector<float>()> work) {
  return queue_job<std::vector<float>>(env, std::move(work), floats_to_js);
}

// --- argument conversion (copies, so JS may reuse its arrays while the job runs) -----------

[[noreturn]] inline void invalid(const std::string& message) { chai::fail(ErrorCode::InvalidArgument, message); }

inline std::string string_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) invalid(std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) invalid(std::string(name) + " must be a number");
  const double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 1 && v <= 2147483647.0) || v != double(int64_t(v)))
    invalid(std::string(name) + " must be a positive integer, got " + std::to_string(v));
  return int64_t(v);
}

inline std::vector<float> floats_arg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t expected) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    invalid(std::string(name) + " must be a Float32Array");
  auto a = info[i].As<Napi::Float32Array>();
  if (int64_t(a.ElementLength()) != expected)
    invalid(std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
            std::to_string(expected));
  return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

inline std::vector<int32_t> int32s_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsTypedArray() || info[i].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    invalid(std::string(name) + " must be an Int32Array");
  auto a = info[i].As<Napi::Int32Array>();
  return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
}

// Weights: Float32Array for f32, Uint16Array of raw bits for f16 / bf16. Kept as bytes.
inline std::vector<uint8_t> weights_arg(const Napi::CallbackInfo& info, size_t i, chai::DType dtype, int64_t expected) {
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

inline std::vector<float> download(chai::Backend& be, const chai::DeviceBuffer& buffer) {
  std::vector<float> out(buffer.bytes() / sizeof(float));
  be.download(out.data(), buffer.get(), buffer.bytes());
  return out;
}

}  // namespace chai::binding
