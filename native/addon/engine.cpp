// Bindings of models and sessions: handles are Externals around shared owners, so a session keeps
// its model alive and a job keeps its session alive even if JS disposes them meanwhile.
#include <atomic>

#include "binding.h"
#include "chai/calibration.h"
#include "engine/kv_cache.h"
#include "engine/prefix_cache.h"
#include "engine/resident_weights.h"
#include "engine/session.h"
#include "exports.h"
#include "model/llama.h"
#include "model/safetensors.h"

namespace chai::binding {
namespace {

constexpr int kPageTokens = 16;

struct LoadedModel {
  std::shared_ptr<LlamaModel> model;
  std::shared_ptr<Backend> backend;
  std::unique_ptr<ResidentWeights> resident;  // device copies or the mapped file, with packed copies
  std::unique_ptr<KvPool> pool;               // one pool for all of this model's sessions
  std::unique_ptr<PrefixCache> prefix_cache;  // pages of computed prompts, in that pool (after it: freed first)
  std::unique_ptr<Workspace> workspace;       // scratch of their forward passes (one at a time)

  const LlamaWeights& weights() const { return resident ? resident->weights() : model->weights(); }
};

struct ModelHandle {
  std::shared_ptr<LoadedModel> loaded;  // empty once disposed
};

struct SessionState {
  std::shared_ptr<LoadedModel> loaded;
  std::unique_ptr<Session> session;
  std::atomic<bool> busy{false};
};

struct SessionHandle {
  std::shared_ptr<SessionState> state;  // empty once disposed
};

template <typename Handle>
Handle& handle_arg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (!info[i].IsExternal()) invalid(std::string(what) + " handle expected");
  return *info[i].As<Napi::External<Handle>>().Data();
}

std::shared_ptr<LoadedModel> live_model(const Napi::CallbackInfo& info, size_t i) {
  auto loaded = handle_arg<ModelHandle>(info, i, "model").loaded;
  if (!loaded) invalid("the model has been disposed");
  return loaded;
}

std::shared_ptr<SessionState> live_session(const Napi::CallbackInfo& info, size_t i) {
  auto state = handle_arg<SessionHandle>(info, i, "session").state;
  if (!state) invalid("the session has been disposed");
  return state;
}

// Marks a session busy for the lifetime of a job: one call at a time per session.
class BusyGuard {
 public:
  explicit BusyGuard(std::shared_ptr<SessionState> s) : state_(std::move(s)) {
    bool expected = false;
    if (!state_->busy.compare_exchange_strong(expected, true))
      invalid("the session is busy with another call; await it before starting the next");
  }
  ~BusyGuard() { state_->busy = false; }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  std::shared_ptr<SessionState> state_;
};

Napi::Value value_to_js(Napi::Env env, const GgufValue& v) {
  switch (v.kind) {
    case GgufValue::Kind::UInt: return Napi::Number::New(env, double(v.u));
    case GgufValue::Kind::Int: return Napi::Number::New(env, double(v.i));
    case GgufValue::Kind::Float: return Napi::Number::New(env, v.f);
    case GgufValue::Kind::Bool: return Napi::Boolean::New(env, v.b);
    case GgufValue::Kind::String: return Napi::String::New(env, v.s);
    case GgufValue::Kind::Array: {
      const bool strings = !v.items.empty() && v.items[0].kind == GgufValue::Kind::String;
      if (strings || v.items.empty() || v.items[0].kind == GgufValue::Kind::Bool) {
        Napi::Array a = Napi::Array::New(env, v.items.size());
        for (size_t i = 0; i < v.items.size(); ++i) a.Set(uint32_t(i), value_to_js(env, v.items[i]));
        return a;
      }
      // Numeric arrays (token scores, token types) as Float64Array: exact for every 32-bit value.
      auto a = Napi::Float64Array::New(env, v.items.size());
      for (size_t i = 0; i < v.items.size(); ++i) a[i] = v.items[i].as_float();
      return a;
    }
  }
  return env.Undefined();
}

Napi::Object config_to_js(Napi::Env env, const LlamaConfig& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("layers", c.n_layers);
  o.Set("embeddingLength", c.n_embd);
  o.Set("heads", c.n_heads);
  o.Set("kvHeads", c.n_kv_heads);
  o.Set("headDim", c.head_dim);
  o.Set("feedForwardLength", c.n_ff);
  o.Set("vocabSize", c.n_vocab);
  o.Set("contextLength", c.n_ctx_train);
  o.Set("rmsEps", c.rms_eps);
  o.Set("ropeFreqBase", c.rope_base);
  o.Set("ropeStyle", c.rope_style == RopeStyle::Neox ? "neox" : "normal");
  o.Set("slidingWindow", c.sliding_window);
  return o;
}

// loadModel(path, device, threads, kvCacheType, kvCacheBytes) → Promise<{ handle, metadata, tensors, config, version, tiedOutput, weightBytes }>
// kvCacheBytes caps the model's KV pool (0: no cap).
Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const std::string path = string_arg(info, 0, "path");
    const std::string device = string_arg(info, 1, "device");
    const int threads = info[2].IsNumber() ? info[2].As<Napi::Number>().Int32Value() : 0;
    if (threads < 0 || threads > 1024) invalid("threads must be between 0 (all) and 1024");
    const DType kv_dtype = dtype_from_name(string_arg(info, 3, "kvCacheType"));
    if (kv_dtype != DType::F32 && kv_dtype != DType::F16) invalid("kvCacheType must be 'f32' or 'f16'");
    const double cap_bytes = info[4].IsNumber() ? info[4].As<Napi::Number>().DoubleValue() : 0;
    if (!(cap_bytes >= 0) || cap_bytes > 9e15) invalid("kvCacheBytes must be a number of bytes >= 0 (0: no cap)");
    return queue_job<std::shared_ptr<LoadedModel>>(
        info.Env(),
        [path, device, threads, kv_dtype, cap_bytes] {
          auto loaded = std::make_shared<LoadedModel>();
          loaded->model = LlamaModel::load(open_model_description(path));
          const int head_dim = loaded->model->config().head_dim;
          const size_t page_bytes = size_t(kPageTokens) * dtype_row_bytes(kv_dtype, head_dim);
          const size_t max_pages = size_t(cap_bytes) / page_bytes;
          CHAI_REQUIRE(cap_bytes == 0 || max_pages > 0, ErrorCode::InvalidArgument,
                       "kvCacheBytes (" + std::to_string(size_t(cap_bytes)) + ") is less than one KV page of this model (" +
                           std::to_string(page_bytes) + " bytes)");
          loaded->backend = backend_for(device, threads);
          loaded->resident = std::make_unique<ResidentWeights>(
              loaded->model->weights(), *loaded->backend,
              device == "cpu" ? ResidentWeights::Placement::InPlace : ResidentWeights::Placement::Copy);
          // Packing read those weights from the mapped file; their packed copies serve from now on,
          // so the process need not keep both in memory (a tied embedding re-reads its few rows).
          for (const TensorView& w : loaded->resident->packed_sources()) loaded->model->file().release_pages(w.data, w.bytes());
          loaded->pool = std::make_unique<KvPool>(*loaded->backend, head_dim, kPageTokens, kv_dtype, max_pages);
          loaded->prefix_cache = std::make_unique<PrefixCache>(*loaded->pool);
          loaded->workspace = std::make_unique<Workspace>(*loaded->backend);
          return loaded;
        },
        [](Napi::Env env, std::shared_ptr<LoadedModel>& loaded) -> Napi::Value {
          const GgufFile& f = loaded->model->file();
          Napi::Object out = Napi::Object::New(env);
          Napi::Object metadata = Napi::Object::New(env);
          for (const auto& [key, value] : f.metadata()) metadata.Set(key, value_to_js(env, value));
          Napi::Array tensors = Napi::Array::New(env, f.tensors().size());
          for (size_t i = 0; i < f.tensors().size(); ++i) {
            const GgufTensor& t = f.tensors()[i];
            Napi::Object o = Napi::Object::New(env);
            o.Set("name", t.name);
            Napi::Array dims = Napi::Array::New(env, t.dims.size());
            for (size_t d = 0; d < t.dims.size(); ++d) dims.Set(uint32_t(d), double(t.dims[d]));
            o.Set("dims", dims);
            o.Set("type", ggml_type_name(t.ggml_type));
            o.Set("bytes", double(t.bytes));
            tensors.Set(uint32_t(i), o);
          }
          out.Set("metadata", metadata);
          out.Set("tensors", tensors);
          out.Set("version", f.version());
          out.Set("config", config_to_js(env, loaded->model->config()));
          out.Set("tiedOutput", loaded->model->weights().tied_output);
          out.Set("weightBytes", double(loaded->model->weight_bytes()));
          out.Set("handle", Napi::External<ModelHandle>::New(env, new ModelHandle{loaded},
                                                             [](Napi::Env, ModelHandle* h) { delete h; }));
          return out;
        });
  });
}

Napi::Value DisposeModel(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    handle_arg<ModelHandle>(info, 0, "model").loaded.reset();
    return info.Env().Undefined();
  });
}

double number_field(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsNumber()) invalid(std::string("plan.") + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

std::string string_field(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsString()) invalid(std::string("plan.") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// { t0, method, representative, seed, restarts, clusters: number[] } (validated in TypeScript first)
ChaiPlan plan_arg(const Napi::Value& value) {
  if (!value.IsObject()) invalid("plan must be an object");
  const Napi::Object o = value.As<Napi::Object>();
  ChaiPlan plan;
  plan.t0 = int(number_field(o, "t0"));
  plan.clustering.method = cluster_method_from_name(string_field(o, "method"));
  plan.clustering.representative = representative_rule_from_name(string_field(o, "representative"));
  plan.clustering.seed = uint64_t(number_field(o, "seed"));
  plan.clustering.restarts = int(number_field(o, "restarts"));
  const Napi::Value clusters = o.Get("clusters");
  if (!clusters.IsArray()) invalid("plan.clusters must be an array");
  const Napi::Array list = clusters.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    const Napi::Value k = list.Get(i);
    if (!k.IsNumber()) invalid("plan.clusters must hold numbers");
    plan.clusters.push_back(k.As<Napi::Number>().Int32Value());
  }
  return plan;
}

Napi::Array ints_to_js(Napi::Env env, const std::vector<int32_t>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(uint32_t(i), v[i]);
  return a;
}

// createSession(model, maxTokens, plan | undefined, prefixCache: boolean) → session handle
Napi::Value CreateSession(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto loaded = live_model(info, 0);
    const int64_t max_tokens = int_arg(info, 1, "maxTokens");
    std::optional<ChaiPlan> plan;
    if (!info[2].IsUndefined() && !info[2].IsNull()) plan = plan_arg(info[2]);
    if (!info[3].IsUndefined() && !info[3].IsBoolean()) invalid("prefixCache must be a boolean");
    PrefixCache* prefix_cache = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value() ? loaded->prefix_cache.get() : nullptr;
    auto state = std::make_shared<SessionState>();
    state->loaded = loaded;
    const LlamaModel& m = *loaded->model;
    state->session =
        std::make_unique<Session>(m.config(), loaded->weights(), *loaded->backend, *loaded->pool, int(max_tokens), plan,
                                  loaded->workspace.get(), prefix_cache);
    return Napi::External<SessionHandle>::New(info.Env(), new SessionHandle{state},
                                              [](Napi::Env, SessionHandle* h) { delete h; });
  });
}

// evaluateBatch(sessions: handle[], tokens: Int32Array[], allLogits: boolean[])
//   → Promise<(Float32Array | { code, message })[]>
// The sessions (of one model) run in one forward pass; each request gets its logits or its error.
Napi::Value EvaluateBatch(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    if (!info[0].IsArray() || !info[1].IsArray() || !info[2].IsArray()) invalid("evaluateBatch takes three arrays");
    const Napi::Array handles = info[0].As<Napi::Array>(), token_lists = info[1].As<Napi::Array>(),
                      flags = info[2].As<Napi::Array>();
    const uint32_t n = handles.Length();
    if (n == 0 || token_lists.Length() != n || flags.Length() != n) invalid("evaluateBatch needs equally long, non-empty arrays");
    std::vector<std::shared_ptr<SessionState>> states;
    std::vector<std::shared_ptr<BusyGuard>> guards;
    auto items = std::make_shared<std::vector<Session::BatchItem>>(n);
    for (uint32_t i = 0; i < n; ++i) {
      const Napi::Value h = handles.Get(i), t = token_lists.Get(i);
      if (!h.IsExternal()) invalid("session handle expected");
      auto state = h.As<Napi::External<SessionHandle>>().Data()->state;
      if (!state) invalid("a session in the batch has been disposed");
      if (!t.IsTypedArray() || t.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) invalid("tokens must be Int32Arrays");
      if (!states.empty() && state->loaded != states[0]->loaded) invalid("a batch must hold sessions of one model");
      const auto arr = t.As<Napi::Int32Array>();
      guards.push_back(std::make_shared<BusyGuard>(state));
      (*items)[i].session = state->session.get();
      (*items)[i].tokens.assign(arr.Data(), arr.Data() + arr.ElementLength());
      (*items)[i].all_logits = flags.Get(i).ToBoolean();
      states.push_back(std::move(state));
    }
    using Done = std::shared_ptr<std::vector<Session::BatchItem>>;
    return queue_job<Done>(
        info.Env(),
        [items, states, guards] {
          Session::evaluate_batch(*items);
          return items;
        },
        [](Napi::Env env, Done& done) -> Napi::Value {
          Napi::Array out = Napi::Array::New(env, done->size());
          for (size_t i = 0; i < done->size(); ++i) {
            Session::BatchItem& item = (*done)[i];
            if (!item.error) {
              out.Set(uint32_t(i), floats_to_js(env, item.logits));
              continue;
            }
            Napi::Object e = Napi::Object::New(env);
            try {
              std::rethrow_exception(item.error);
            } catch (const chai::Error& err) {
              e.Set("code", error_code_name(err.code()));
              e.Set("message", err.what());
            } catch (const std::exception& err) {
              e.Set("code", "E_INTERNAL");
              e.Set("message", err.what());
            }
            out.Set(uint32_t(i), e);
          }
          return out;
        });
  });
}

// reusePrefix(session, prompt: Int32Array) → tokens taken from the prefix cache (the session must be empty)
Napi::Value ReusePrefix(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto state = live_session(info, 0);
    const std::vector<int32_t> prompt = int32s_arg(info, 1, "prompt");
    BusyGuard guard(state);
    return Napi::Number::New(info.Env(), state->session->reuse_prefix(prompt));
  });
}

// prefixCacheInfo(model) → { lookups, hits, lookupTokens, hitTokens, evictedPages, nodes, pages }
Napi::Value PrefixCacheInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const PrefixCacheStats s = live_model(info, 0)->prefix_cache->stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("lookups", double(s.lookups));
    o.Set("hits", double(s.hits));
    o.Set("lookupTokens", double(s.lookup_tokens));
    o.Set("hitTokens", double(s.hit_tokens));
    o.Set("evictedPages", double(s.evicted_pages));
    o.Set("nodes", double(s.nodes));
    o.Set("pages", double(s.pages));
    return o;
  });
}

Napi::Value ClearPrefixCache(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    live_model(info, 0)->prefix_cache->clear();
    return info.Env().Undefined();
  });
}

Napi::Value Rewind(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto state = live_session(info, 0);
    if (!info[1].IsNumber()) invalid("rewind needs a token count");
    BusyGuard guard(state);
    state->session->rewind(info[1].As<Napi::Number>().Int32Value());
    return info.Env().Undefined();
  });
}

Napi::Value SessionInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto state = live_session(info, 0);
    Napi::Env env = info.Env();
    const KvStats s = state->session->cache_stats();
    Napi::Object o = Napi::Object::New(env);
    o.Set("nPast", state->session->n_past());
    o.Set("cachedTokens", state->session->cached_tokens());
    o.Set("maxTokens", state->session->max_tokens());
    o.Set("kBytes", double(s.k_bytes));
    o.Set("vBytes", double(s.v_bytes));
    o.Set("kBytesFull", double(s.k_bytes_full));
    o.Set("vBytesFull", double(s.v_bytes_full));
    o.Set("poolPagesInUse", double(state->loaded->pool->pages_in_use()));
    o.Set("poolPageBytes", double(state->loaded->pool->page_bytes()));
    return o;
  });
}

// kvPoolInfo(model) → { pageTokens, pageBytes, pagesInUse, capacityPages, maxPages }
Napi::Value KvPoolInfo(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    const KvPool& pool = *live_model(info, 0)->pool;
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("pageTokens", pool.page_tokens());
    o.Set("pageBytes", double(pool.page_bytes()));
    o.Set("pagesInUse", double(pool.pages_in_use()));
    o.Set("capacityPages", double(pool.capacity_pages()));
    o.Set("maxPages", double(pool.max_pages()));
    return o;
  });
}

// assignment(session, layer) → null | { membership, representatives }
Napi::Value Assignment(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto state = live_session(info, 0);
    if (!info[1].IsNumber()) invalid("assignment needs a layer index");
    const std::optional<Clustering> a = state->session->assignment(info[1].As<Napi::Number>().Int32Value());
    if (!a) return info.Env().Null();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("membership", ints_to_js(info.Env(), a->membership));
    o.Set("representatives", ints_to_js(info.Env(), a->representatives));
    return o;
  });
}

// windowInertia(session, tokens: Int32Array, t0, seed, restarts) → Promise<Float64Array[layers × heads]>
Napi::Value WindowInertia(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    auto state = live_session(info, 0);
    std::vector<int32_t> tokens = int32s_arg(info, 1, "tokens");
    const int t0 = int(int_arg(info, 2, "t0"));
    ClusteringOptions kmeans;
    kmeans.method = ClusterMethod::KMeans;
    kmeans.seed = uint64_t(info[3].ToNumber().DoubleValue());
    kmeans.restarts = int(int_arg(info, 4, "restarts"));
    auto guard = std::make_shared<BusyGuard>(state);
    using Curves = std::vector<std::vector<double>>;
    return queue_job<Curves>(
        info.Env(),
        [state, guard, tokens = std::move(tokens), t0, kmeans] {
          return window_inertia(*state->session, tokens, t0, kmeans, state->loaded->model->config().n_heads);
        },
        [](Napi::Env env, Curves& curves) -> Napi::Value {
          const size_t heads = curves.empty() ? 0 : curves[0].size();
          auto out = Napi::Float64Array::New(env, curves.size() * heads);
          for (size_t l = 0; l < curves.size(); ++l)
            for (size_t k = 0; k < heads; ++k) out[l * heads + k] = curves[l][k];
          return out;
        });
  });
}

Napi::Value DisposeSession(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    handle_arg<SessionHandle>(info, 0, "session").state.reset();
    return info.Env().Undefined();
  });
}

}  // namespace

void register_engine(Napi::Env env, Napi::Object exports) {
  exports.Set("loadModel", Napi::Function::New(env, LoadModel));
  exports.Set("disposeModel", Napi::Function::New(env, DisposeModel));
  exports.Set("kvPoolInfo", Napi::Function::New(env, KvPoolInfo));
  exports.Set("createSession", Napi::Function::New(env, CreateSession));
  exports.Set("evaluateBatch", Napi::Function::New(env, EvaluateBatch));
  exports.Set("rewind", Napi::Function::New(env, Rewind));
  exports.Set("reusePrefix", Napi::Function::New(env, ReusePrefix));
  exports.Set("prefixCacheInfo", Napi::Function::New(env, PrefixCacheInfo));
  exports.Set("clearPrefixCache", Napi::Function::New(env, ClearPrefixCache));
  exports.Set("sessionInfo", Napi::Function::New(env, SessionInfo));
  exports.Set("disposeSession", Napi::Function::New(env, DisposeSession));
  exports.Set("assignment", Napi::Function::New(env, Assignment));
  exports.Set("windowInertia", Napi::Function::New(env, WindowInertia));
}

}  // namespace chai::binding
