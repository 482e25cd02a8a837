// Bindings of the single ops, the devices and the build: conversion and dispatch only.
#include <thread>

#include "binding.h"
#include "exports.h"

namespace chai::binding {
namespace {

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
    const chai::CpuStatus cpu_status = chai::cpu_status();
    cpu.Set("features", Napi::String::New(env, cpu_status.features));
    cpu.Set("simd", Napi::String::New(env, cpu_status.kernels));

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

}  // namespace

void register_ops(Napi::Env env, Napi::Object exports) {
  exports.Set("devices", Napi::Function::New(env, Devices));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("rmsnorm", Napi::Function::New(env, RmsNorm));
  exports.Set("softmax", Napi::Function::New(env, Softmax));
  exports.Set("toHalf", Napi::Function::New(env, ToHalf));
  exports.Set("fromHalf", Napi::Function::New(env, FromHalf));
}

}  // namespace chai::binding
