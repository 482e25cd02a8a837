// Each binding file adds its functions to the module's exports.
#pragma once
#include <napi.h>

namespace chai::binding {

void register_ops(Napi::Env env, Napi::Object exports);
void register_engine(Napi::Env env, Napi::Object exports);

}  // namespace chai::binding
