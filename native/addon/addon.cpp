// The N-API module: binding files register their functions here.
#include "exports.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  chai::binding::register_ops(env, exports);
  chai::binding::register_engine(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(chai_attention, Init)
