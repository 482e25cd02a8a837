// The KV cache's page tables: bounded, grown with use, and never sized by maxTokens up front.
#include <climits>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "engine/kv_cache.h"
#include "engine/session.h"
#include "model/llama.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

}  // namespace

int main() {
  Suite suite("kv_cache");
  auto cpu = make_cpu_backend(2);
  KvPool pool(*cpu, 8, 16);

  // maxTokens near INT_MAX once overflowed (max_tokens + page_tokens - 1) and sized tables by it.
  suite.check(throws_code([&] { SequenceKv kv(pool, 2, 4, INT_MAX); }, ErrorCode::InvalidArgument),
              "maxTokens past the stated limit is InvalidArgument");
  suite.check(throws_code([&] { SequenceKv kv(pool, 2, 4, 0); }, ErrorCode::InvalidArgument), "maxTokens 0 is InvalidArgument");
  {
    SequenceKv kv(pool, 32, 32, SequenceKv::kMaxTokens);
    suite.check(kv.k_tables().empty() && kv.v_tables().empty() && kv.max_pages() == 0,
                "the largest maxTokens allocates no page table up front");
    kv.reserve(1);
    suite.check(kv.max_pages() == 1 && kv.k_tables().size() == size_t(32) * 32, "one token: one page per row");
    const int32_t first_page = kv.v_tables()[0];
    kv.reserve(16 * 3);
    suite.check(kv.max_pages() == 3 && kv.v_tables()[0] == first_page, "tables grow to what is reserved, pages kept");
    kv.reserve(16 * 4 + 1);
    suite.check(kv.max_pages() == 6, "growth doubles the rows");
    suite.check(kv.v_tables()[size_t(5)] == -1 && kv.v_tables()[size_t(4)] >= 0, "entries past the reserved pages are -1");
    suite.check(throws_code([&] { kv.reserve(SequenceKv::kMaxTokens + 1); }, ErrorCode::ContextOverflow),
                "reserving past maxTokens is ContextOverflow");
  }
  suite.check(pool.pages_in_use() == 0, "a destroyed sequence returns every page");

  // A session whose tables grow step by step computes exactly what one with small tables does.
  const std::string models = models_dir();
  std::shared_ptr<LlamaModel> model;
  try {
    model = LlamaModel::load(GgufFile::open(models + "stories260K-mha.gguf"));
  } catch (const Error& e) {
    std::printf("FAIL cannot load the test model (%s): %s\n", error_code_name(e.code()), e.what());
    return 1;
  }
  const LlamaConfig& c = model->config();
  KvPool model_pool(*cpu, c.head_dim, 16);
  suite.check(throws_code([&] { Session s(c, model->weights(), *cpu, model_pool, c.n_ctx_train + 1); }, ErrorCode::InvalidArgument),
              "maxTokens past the model's context is InvalidArgument");
  ChaiPlan plan;
  plan.clustering.method = ClusterMethod::Agglomerative;
  plan.clusters = {8, 8, 8, 4, 2};
  for (const bool chai : {false, true}) {
    std::optional<ChaiPlan> p = chai ? std::optional<ChaiPlan>(plan) : std::nullopt;
    Session wide(c, model->weights(), *cpu, model_pool, c.n_ctx_train, p);
    Session narrow(c, model->weights(), *cpu, model_pool, 80, p);
    bool same = true;
    for (int32_t t = 0; t < 70; ++t) {
      const std::vector<int32_t> token = {int32_t(1 + (t * 37) % (c.n_vocab - 1))};
      same = same && wide.evaluate(token, false) == narrow.evaluate(token, false);
    }
    suite.check(same, std::string(chai ? "CHAI" : "full attention") +
                          ": page tables grown to different lengths give the same logits");
  }
  return suite.finish();
}
