// Prefix caching: a request that starts from cached pages computes what an uncached one does
// (full attention and CHAI), shared pages are copied before they are written, and a capped pool
// evicts cached pages least recently used first, never pages a sequence holds.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "engine/prefix_cache.h"
#include "engine/session.h"
#include "model/llama.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

std::vector<int32_t> random_tokens(size_t n, uint32_t seed, int vocab) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(3, vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = id(rng);
  return t;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

int argmax(const std::vector<float>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

// Greedy continuation: the logits after each of `steps` tokens, and the tokens.
struct Run {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};
Run greedy(Session& s, const std::vector<int32_t>& rest, int steps) {
  Run r;
  r.logits.push_back(s.evaluate(rest, false));
  for (int i = 0; i < steps; ++i) {
    r.tokens.push_back(argmax(r.logits.back()));
    r.logits.push_back(s.evaluate({r.tokens.back()}, false));
  }
  return r;
}

double worst_error(const Run& a, const Run& b) {
  double worst = 0;
  for (size_t i = 0; i < a.logits.size(); ++i) worst = std::max(worst, relative_error(a.logits[i], b.logits[i]));
  return worst;
}

// The bytes of the pages of the cached prefix `tokens` (one more holder taken and given back).
std::string cached_bytes(PrefixCache& cache, KvPool& pool, const std::string& scope, const std::vector<int32_t>& tokens) {
  const PrefixMatch m = cache.match(scope, concat(tokens, {0}), 1, int(tokens.size()));
  std::string bytes;
  for (const PageColumn& c : m.columns) {
    for (const std::vector<int32_t>* ids : {&c.k, &c.v})
      for (int32_t id : *ids)
        if (id >= 0) bytes.append(static_cast<const char*>(pool.base()) + size_t(id) * pool.page_bytes(), pool.page_bytes());
    pool.release(c.k);
    pool.release(c.v);
  }
  return bytes;
}

int cached_tokens(PrefixCache& cache, KvPool& pool, const std::string& scope, const std::vector<int32_t>& tokens) {
  const PrefixMatch m = cache.match(scope, concat(tokens, {0}), 1, int(tokens.size()));
  for (const PageColumn& c : m.columns) {
    pool.release(c.k);
    pool.release(c.v);
  }
  return m.tokens;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // failures show even if a later step throws out of main
  Suite suite("prefix_cache");
  auto cpu = make_cpu_backend(2);
  std::shared_ptr<LlamaModel> gqa, mha;
  try {
    gqa = LlamaModel::load(GgufFile::open(models_dir() + "stories260K.gguf"));
    mha = LlamaModel::load(GgufFile::open(models_dir() + "stories260K-mha.gguf"));
  } catch (const Error& e) {
    std::printf("FAIL cannot load the test models (%s): %s\n", error_code_name(e.code()), e.what());
    return 1;
  }
  ChaiPlan plan;
  plan.clustering.method = ClusterMethod::KMeans;
  plan.clustering.seed = 3;
  plan.clusters = {8, 8, 8, 4, 2};

  // A second request sharing a long prefix (5 whole pages, then one that diverges inside a page,
  // then the whole prompt of the first) computes the logits and greedy tokens of an uncached run.
  for (const bool chai : {false, true}) {
    const LlamaModel& model = chai ? *mha : *gqa;
    const LlamaConfig& c = model.config();
    const std::optional<ChaiPlan> p = chai ? std::optional<ChaiPlan>(plan) : std::nullopt;
    const std::string name = chai ? "stories260K-mha, CHAI" : "stories260K";
    KvPool pool(*cpu, c.head_dim, 16);
    PrefixCache cache(pool);
    const std::vector<int32_t> prefix = concat({1}, random_tokens(84, 11, c.n_vocab));  // 85 tokens: 5 pages + 5
    const std::vector<int32_t> first = concat(prefix, random_tokens(40, 12, c.n_vocab));
    Session donor(c, model.weights(), *cpu, pool, 256, p, nullptr, &cache);
    suite.check(donor.reuse_prefix(first) == 0, name + ": an empty cache has nothing to reuse");
    const Run donor_run = greedy(donor, first, 8);
    const std::string scope = donor.prefix_scope();
    const std::string before = cached_bytes(cache, pool, scope, std::vector<int32_t>(first.begin(), first.begin() + 112));
    suite.check(cache.stats().nodes == 8 && before.size() > 0, name + ": the donor's 8 whole pages are cached");

    struct Case {
      std::string what;
      std::vector<int32_t> prompt;
      int cached;
    };
    const std::vector<Case> cases = {
        {"diverging after 5 whole pages", concat(std::vector<int32_t>(prefix.begin(), prefix.begin() + 80), random_tokens(30, 13, c.n_vocab)), 80},
        {"diverging inside a page", concat(prefix, random_tokens(30, 14, c.n_vocab)), 85},
        {"the same prompt", first, int(first.size()) - 1},
    };
    for (const Case& k : cases) {
      Session cached(c, model.weights(), *cpu, pool, 256, p, nullptr, &cache);
      const int reused = cached.reuse_prefix(k.prompt);
      suite.check(reused == k.cached && cached.cached_tokens() == reused && cached.n_past() == reused,
                  name + ", " + k.what + ": " + std::to_string(reused) + " tokens cached, expected " + std::to_string(k.cached));
      const Run hit = greedy(cached, std::vector<int32_t>(k.prompt.begin() + reused, k.prompt.end()), 8);
      Session fresh(c, model.weights(), *cpu, pool, 256, p);
      const Run miss = greedy(fresh, k.prompt, 8);
      suite.check_close(worst_error(hit, miss), 1e-4, name + ", " + k.what + ": logits vs uncached");
      suite.check(hit.tokens == miss.tokens, name + ", " + k.what + ": greedy tokens equal the uncached run's");
      if (chai)
        for (int l = 0; l < c.n_layers; ++l) {
          const auto a = cached.assignment(l), b = donor.assignment(l);
          suite.check(a.has_value() == b.has_value() && (!a || (a->membership == b->membership && a->representatives == b->representatives)),
                      name + ": the cached request takes the donor's clusters, layer " + std::to_string(l));
        }
    }
    suite.check(cached_bytes(cache, pool, scope, std::vector<int32_t>(first.begin(), first.begin() + 112)) == before,
                name + ": the cached pages read back unchanged after requests wrote past them");
    const Run again = greedy(donor, {donor_run.tokens.back()}, 1);
    suite.check(!again.logits.empty(), name + ": the donor goes on after others shared its pages");

    // Rewinding into a cached page and writing other tokens there copies the page first.
    donor.rewind(100);
    donor.evaluate(random_tokens(20, 15, c.n_vocab), false);
    suite.check(cached_bytes(cache, pool, scope, std::vector<int32_t>(first.begin(), first.begin() + 112)) == before,
                name + ": writing into a rewound, cached page leaves the cached copy unchanged");
  }

  // With CHAI, only prefixes of at least t0 tokens are shared, and only from requests that
  // clustered before their first attention (a first evaluation of at least t0 tokens).
  {
    const LlamaConfig& c = mha->config();
    KvPool pool(*cpu, c.head_dim, 16);
    PrefixCache cache(pool);
    const std::vector<int32_t> prompt = random_tokens(40, 21, c.n_vocab);
    Session stepwise(c, mha->weights(), *cpu, pool, 96, plan, nullptr, &cache);
    for (int32_t t : prompt) stepwise.evaluate({t}, false);
    suite.check(cache.stats().nodes == 0, "CHAI: a request that ran full attention until t0 offers no pages");
    Session donor(c, mha->weights(), *cpu, pool, 64, plan, nullptr, &cache);
    donor.evaluate(prompt, false);
    suite.check(cache.stats().nodes == 2, "CHAI: a prompt of t0 tokens or more offers its whole pages");
    // The next request of that session starts from the cache, so it offers its pages again.
    stepwise.rewind(0);
    const std::vector<int32_t> longer = concat(prompt, random_tokens(30, 22, c.n_vocab));
    suite.check(stepwise.reuse_prefix(longer) == 32, "CHAI: the next request on that session reuses the donor's pages");
    stepwise.evaluate(std::vector<int32_t>(longer.begin() + 32, longer.end()), false);
    suite.check(cache.stats().nodes == 4, "CHAI: ... and offers its own whole pages after them");
    Session short_match(c, mha->weights(), *cpu, pool, 64, plan, nullptr, &cache);
    suite.check(short_match.reuse_prefix({prompt[0], prompt[1], prompt[2], prompt[3], 7}) == 0,
                "CHAI: a shared prefix shorter than t0 is not reused");
    ChaiPlan other = plan;
    other.clustering.seed = 4;
    Session other_seed(c, mha->weights(), *cpu, pool, 64, other, nullptr, &cache);
    suite.check(other_seed.reuse_prefix(prompt) == 0, "CHAI: another clustering seed is another cache key");
    Session full(c, mha->weights(), *cpu, pool, 64, std::nullopt, nullptr, &cache);
    suite.check(full.reuse_prefix(prompt) == 0, "full attention does not reuse CHAI pages");
  }

  // Eviction under a cap: pages only the cache holds go, least recently used first; pages a
  // sequence holds stay, and past what eviction can free the pool is DeviceOom.
  {
    const LlamaConfig& c = gqa->config();
    const size_t row = size_t(c.n_layers) * c.n_kv_heads * 2;  // the pages of 16 tokens
    KvPool pool(*cpu, c.head_dim, 16, DType::F32, 4 * row);
    PrefixCache cache(pool);
    const std::string scope = Session(c, gqa->weights(), *cpu, pool, 32).prefix_scope();
    const auto x = random_tokens(16, 31, c.n_vocab), y = random_tokens(16, 32, c.n_vocab), z = random_tokens(16, 33, c.n_vocab);
    for (const auto* t : {&x, &y, &z}) {
      Session s(c, gqa->weights(), *cpu, pool, 32, std::nullopt, nullptr, &cache);
      s.evaluate(concat(*t, {5}), false);  // 17 tokens: two pages held, the first one cached
    }
    suite.check(cache.stats().pages == 3 * row && pool.pages_in_use() == 3 * row, "three cached pages of tokens, nothing else held");
    {
      Session touch(c, gqa->weights(), *cpu, pool, 32, std::nullopt, nullptr, &cache);
      suite.check(touch.reuse_prefix(concat(x, {9})) == 16, "x is reused (and so recently used)");
    }
    {
      Session w(c, gqa->weights(), *cpu, pool, 32, std::nullopt, nullptr, &cache);
      w.evaluate(random_tokens(17, 34, c.n_vocab), false);  // two pages: one cached page must go
      suite.check(cache.stats().evicted_pages == row, "one cached page of tokens is evicted for a new request");
    }
    suite.check(cached_tokens(cache, pool, scope, y) == 0, "the least recently used prefix (y) is the one evicted");
    suite.check(cached_tokens(cache, pool, scope, z) == 16 && cached_tokens(cache, pool, scope, x) == 16,
                "the more recently used prefixes (x, z) stay");

    // x is held by a running sequence; then z and w's page are used after it, so x is least recent.
    Session holder(c, gqa->weights(), *cpu, pool, 32, std::nullopt, nullptr, &cache);
    suite.check(holder.reuse_prefix(concat(x, {9})) == 16, "a sequence holds x");
    const std::string x_bytes = cached_bytes(cache, pool, scope, x);
    const auto w_page = random_tokens(17, 34, c.n_vocab);
    suite.check(cached_tokens(cache, pool, scope, z) == 16 && cached_tokens(cache, pool, scope, {w_page.begin(), w_page.begin() + 16}) == 16,
                "z and w's first page are cached");
    {
      Session big(c, gqa->weights(), *cpu, pool, 128, std::nullopt, nullptr, &cache);
      suite.check(throws_code([&] { big.evaluate(random_tokens(60, 35, c.n_vocab), false); }, ErrorCode::DeviceOom),
                  "a request that needs the pages of a running sequence is DeviceOom");
      suite.check(cached_tokens(cache, pool, scope, x) == 16 && cached_bytes(cache, pool, scope, x) == x_bytes,
                  "the pages in use (x) were not evicted, though least recently used");
      suite.check(cache.stats().nodes == 1, "every page not in use was evicted trying");
      big.evaluate(random_tokens(40, 36, c.n_vocab), false);  // three pages: what is free
      suite.check(big.n_past() == 40, "what eviction frees serves the request");
    }
    const auto logits = holder.evaluate({9, 10}, false);
    Session fresh(c, gqa->weights(), *cpu, pool, 32);
    suite.check_close(relative_error(logits, fresh.evaluate(concat(x, {9, 10}), false)), 1e-4,
                      "the sequence holding x computes what an uncached one does");
  }

  // Misuse: typed errors, nothing changed.
  {
    const LlamaConfig& c = gqa->config();
    KvPool pool(*cpu, c.head_dim, 16);
    PrefixCache cache(pool);
    Session plain(c, gqa->weights(), *cpu, pool, 32);
    suite.check(throws_code([&] { plain.reuse_prefix({1, 2, 3}); }, ErrorCode::InvalidArgument),
                "reuse_prefix on a session without a prefix cache is InvalidArgument");
    Session s(c, gqa->weights(), *cpu, pool, 32, std::nullopt, nullptr, &cache);
    suite.check(throws_code([&] { s.reuse_prefix({1, c.n_vocab}); }, ErrorCode::InvalidArgument),
                "a token id outside the vocabulary is InvalidArgument");
    s.evaluate({1, 2}, false);
    suite.check(throws_code([&] { s.reuse_prefix({1, 2, 3}); }, ErrorCode::InvalidArgument) && s.n_past() == 2,
                "reuse_prefix on a session holding tokens is InvalidArgument");
    KvPool other(*cpu, c.head_dim, 16);
    suite.check(throws_code([&] { Session bad(c, gqa->weights(), *cpu, other, 32, std::nullopt, nullptr, &cache); }, ErrorCode::Internal),
                "a prefix cache of another pool is refused");
  }
  return suite.finish();
}
