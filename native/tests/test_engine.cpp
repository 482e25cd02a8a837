// The CPU engine on the test model: loads, and the forward pass is consistent with itself
// (one prefill equals token-by-token decoding; rewinding replays exactly).
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "engine/session.h"
#include "model/llama.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

int main() {
  Suite suite("engine");
  const std::string models = models_dir();
  std::shared_ptr<LlamaModel> model;
  try {
    model = LlamaModel::load(GgufFile::open(models + "stories260K.gguf"));
  } catch (const Error& e) {
    std::printf("FAIL cannot load the test model (%s): %s\n", error_code_name(e.code()), e.what());
    return 1;
  }
  const LlamaConfig& c = model->config();
  suite.check(c.n_layers == 5 && c.n_embd == 64 && c.n_heads == 8 && c.n_kv_heads == 4 && c.head_dim == 8 &&
                  c.n_ff == 172 && c.n_vocab == 512,
              "stories260K hyperparameters");

  // Dropping the pages of mapped weights (as the addon does for packed ones) loses nothing: the
  // whole pages inside the tensor go, and its bytes read back the same.
  {
    const GgufTensor* embd = model->file().tensor("token_embd.weight");
    const auto* bytes = static_cast<const uint8_t*>(embd->data);
    const std::vector<uint8_t> before(bytes, bytes + embd->bytes);
    const uint64_t dropped = model->file().release_pages(embd->data, embd->bytes);
    suite.check(dropped > 0 && dropped <= embd->bytes && dropped % 4096 == 0, "the embedding's whole pages are released");
    suite.check(std::equal(before.begin(), before.end(), bytes), "released weights read back the file's bytes");
    int stack = 0;
    suite.check(model->file().release_pages(&stack, sizeof stack) == 0, "memory outside the mapping is never released");
  }

  auto cpu = make_cpu_backend(2);
  KvPool pool(*cpu, c.head_dim, 16);
  const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401};

  Session batch(c, model->weights(), *cpu, pool, 64);
  const auto all = batch.evaluate(prompt, true);
  Session stepwise(c, model->weights(), *cpu, pool, 64);
  std::vector<float> last;
  double worst = 0;
  for (size_t i = 0; i < prompt.size(); ++i) {
    last = stepwise.evaluate({prompt[i]}, false);
    std::vector<float> row(all.begin() + std::ptrdiff_t(i * c.n_vocab), all.begin() + std::ptrdiff_t((i + 1) * c.n_vocab));
    worst = std::max(worst, relative_error(last, row));
  }
  suite.check_close(worst, 1e-5, "prefill logits == token-by-token decode logits (all positions)");

  stepwise.rewind(5);
  const auto replay = stepwise.evaluate(std::vector<int32_t>(prompt.begin() + 5, prompt.end()), false);
  suite.check_close(relative_error(replay, last), 1e-6, "rewind then re-evaluate gives the same logits");

  const KvStats s = batch.cache_stats();
  suite.check(s.tokens == prompt.size() && s.k_bytes == s.k_bytes_full && s.v_bytes == s.v_bytes_full &&
                  s.k_bytes == size_t(c.n_layers) * c.n_kv_heads * 2 * 16 * c.head_dim * 4,
              "full attention keeps K and V pages for every KV head");

  bool overflow = false;
  try {
    Session tiny(c, model->weights(), *cpu, pool, 4);
    tiny.evaluate(prompt, false);
  } catch (const Error& e) {
    overflow = e.code() == ErrorCode::ContextOverflow;
  }
  suite.check(overflow, "a prompt longer than maxTokens is ContextOverflow");
  bool bad_token = false;
  try {
    batch.evaluate({512}, false);
  } catch (const Error& e) {
    bad_token = e.code() == ErrorCode::InvalidArgument;
  }
  suite.check(bad_token && batch.n_past() == int(prompt.size()), "an out-of-vocabulary token is rejected, session intact");

  // A batch of sessions (prefill and decode, full and CHAI, unequal lengths) equals running each
  // alone, bit for bit; a bad request in the batch fails alone.
  {
    ChaiPlan plan;
    plan.clustering.method = ClusterMethod::Agglomerative;
    plan.clusters = {8, 8, 4, 2, 2};
    Session a1(c, model->weights(), *cpu, pool, 64), b1(c, model->weights(), *cpu, pool, 64, plan),
        c1(c, model->weights(), *cpu, pool, 64);
    Session a2(c, model->weights(), *cpu, pool, 64), b2(c, model->weights(), *cpu, pool, 64, plan),
        c2(c, model->weights(), *cpu, pool, 64), bad(c, model->weights(), *cpu, pool, 64);
    const std::vector<int32_t> pa(prompt.begin(), prompt.begin() + 11), pb(prompt.begin(), prompt.begin() + 7);
    c1.evaluate(pb, false);
    c2.evaluate(pb, false);
    std::vector<Session::BatchItem> items(4);
    items[0] = {&a2, pa, true, {}, nullptr};
    items[1] = {&b2, pb, false, {}, nullptr};
    items[2] = {&bad, {1, 999}, false, {}, nullptr};
    items[3] = {&c2, {prompt[7]}, false, {}, nullptr};
    Session::evaluate_batch(items);
    suite.check(items[0].logits == a1.evaluate(pa, true), "batched prefill (all logits) equals running alone");
    suite.check(items[1].logits == b1.evaluate(pb, false), "batched CHAI prefill equals running alone");
    suite.check(b2.assignment(3)->membership == b1.assignment(3)->membership, "batched CHAI chooses the same clusters");
    suite.check(items[3].logits == c1.evaluate({prompt[7]}, false), "batched decode equals running alone");
    suite.check(items[2].error != nullptr && items[2].logits.empty() && bad.n_past() == 0, "a bad request fails alone");
  }

  // Attention versions 2 and 3 (split-KV decoding on the CPU twin; version 3 balances tasks by
  // member heads) decode what version 1 decodes, for full attention and CHAI, and a bad version is
  // a typed error.
  {
    ChaiPlan plan;
    plan.clustering.method = ClusterMethod::Agglomerative;
    plan.clusters = {8, 8, 4, 2, 1};
    for (bool clustered : {false, true}) {
      std::vector<std::vector<float>> logits[kAttentionVersions];
      for (int version = 1; version <= kAttentionVersions; ++version) {
        setenv("CHAI_ATTENTION_VERSION", std::to_string(version).c_str(), 1);
        Session s(c, model->weights(), *cpu, pool, 64, clustered ? std::optional<ChaiPlan>(plan) : std::nullopt);
        logits[version - 1].push_back(s.evaluate(prompt, false));
        for (int i = 0; i < 20; ++i) logits[version - 1].push_back(s.evaluate({int32_t(100 + 7 * i)}, false));
      }
      for (int version = 2; version <= kAttentionVersions; ++version) {
        double worst = 0;
        for (size_t i = 0; i < logits[0].size(); ++i)
          worst = std::max(worst, relative_error(logits[version - 1][i], logits[0][i]));
        suite.check_close(worst, 1e-5, "attention v" + std::to_string(version) + " decode logits == v1, " +
                                           (clustered ? "CHAI" : "full"));
      }
    }
    setenv("CHAI_ATTENTION_VERSION", "7", 1);
    Session s(c, model->weights(), *cpu, pool, 64);
    bool typed = false;
    try {
      s.evaluate({1, 2}, false);
    } catch (const Error& e) {
      typed = e.code() == ErrorCode::InvalidArgument && s.n_past() == 0;
    }
    suite.check(typed, "CHAI_ATTENTION_VERSION=7 is InvalidArgument, session intact");
    unsetenv("CHAI_ATTENTION_VERSION");
  }

  const size_t in_use = pool.pages_in_use();
  { Session temp(c, model->weights(), *cpu, pool, 64); temp.evaluate({1, 2, 3}, false); }
  suite.check(pool.pages_in_use() == in_use, "a disposed session returns its pages");

  // A capped pool refuses what would pass its cap (DeviceOom, the session unchanged) and serves
  // the same request once another session has returned its pages.
  {
    const size_t per_page_row = size_t(c.n_layers) * c.n_kv_heads * 2;  // K and V of every KV head: 16 tokens
    KvPool capped(*cpu, c.head_dim, 16, DType::F32, per_page_row + per_page_row / 2);
    auto first = std::make_unique<Session>(c, model->weights(), *cpu, capped, 64);
    first->evaluate({1, 2, 3}, false);
    Session second(c, model->weights(), *cpu, capped, 64);
    bool full = false;
    try {
      second.evaluate({1, 2, 3}, false);
    } catch (const Error& e) {
      full = e.code() == ErrorCode::DeviceOom;
    }
    suite.check(full && second.n_past() == 0 && capped.pages_in_use() == per_page_row,
                "a full capped pool is DeviceOom and leaves the session as it was");
    suite.check(capped.capacity_pages() <= capped.max_pages(), "a capped pool never grows past its cap");
    first.reset();
    const auto logits = second.evaluate({1, 2, 3}, false);
    suite.check(!logits.empty() && capped.pages_in_use() == per_page_row, "pages returned to a capped pool serve the next session");
  }

  // Each architecture's extras (RoPE frequency factors, NeoX pairs, q/k/v biases, per-head q/k
  // norms) read from its description; prefill equals token-by-token decoding, full and CHAI.
  const std::vector<int32_t> text = {100, 2000, 30, 4000, 500, 60, 7000, 80};
  for (const char* file : {"synth-llama3.gguf", "synth-qwen2.gguf", "synth-qwen3.gguf"}) {
    auto arch_model = LlamaModel::load(GgufFile::open(models + file));
    const LlamaConfig& ac = arch_model->config();
    const LlamaWeights& aw = arch_model->weights();
    const bool qwen = ac.architecture != "llama";
    suite.check((ac.rope_style == RopeStyle::Neox) == qwen && (aw.rope_factors.data != nullptr) == !qwen &&
                    ac.qkv_bias == (ac.architecture == "qwen2") && ac.qk_norm == (ac.architecture == "qwen3"),
                std::string(file) + ": description fields");
    KvPool arch_pool(*cpu, ac.head_dim, 16);
    for (bool clustered : {false, true}) {
      std::optional<ChaiPlan> plan;
      if (clustered) {
        plan = ChaiPlan{};
        plan->clustering.method = ClusterMethod::Agglomerative;
        plan->clusters = {2, 1};
      }
      Session whole(ac, aw, *cpu, arch_pool, 16, plan), steps(ac, aw, *cpu, arch_pool, 16, plan);
      const auto prefill = whole.evaluate(text, false);
      steps.evaluate(std::vector<int32_t>(text.begin(), text.begin() + 5), false);
      std::vector<float> decoded;
      for (size_t i = 5; i < text.size(); ++i) decoded = steps.evaluate({text[i]}, false);
      suite.check_close(relative_error(decoded, prefill), 1e-5,
                        std::string(file) + (clustered ? " CHAI" : " full") + ": prefill equals decoding");
    }
  }
  return suite.finish();
}
