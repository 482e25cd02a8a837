// The pool visits each index once, propagates exceptions and serves concurrent callers.
#include <atomic>
#include <stdexcept>
#include <thread>

#include "core/thread_pool.h"
#include "testing.h"

using namespace chai;

int main() {
  testing::Suite suite("thread_pool");
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 64, 1001}) {
      for (int64_t grain : {1, 3, 64}) {
        std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) visits[size_t(i)]++;
        });
        bool once = true;
        for (auto& v : visits) once = once && v.load() == 1;
        suite.check(once, "threads=" + std::to_string(threads) + " n=" + std::to_string(n) + " grain=" +
                              std::to_string(grain) + ": every index exactly once");
      }
    }
    suite.check_throws(
        [&] {
          pool.parallel_for(100, 1, [](int64_t b, int64_t e) {
            if (b <= 42 && 42 < e) throw std::runtime_error("boom");
          });
        },
        "an exception inside a chunk");
    // The pool still works after an exception.
    std::atomic<int64_t> sum{0};
    pool.parallel_for(100, 7, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    suite.check(sum.load() == 4950, "pool usable after an exception");
  }
  {
    ThreadPool pool(3);
    std::atomic<int64_t> total{0};
    std::vector<std::thread> callers;
    for (int c = 0; c < 4; ++c)
      callers.emplace_back([&] {
        for (int rep = 0; rep < 50; ++rep)
          pool.parallel_for(257, 5, [&](int64_t b, int64_t e) { total += e - b; });
      });
    for (auto& t : callers) t.join();
    suite.check(total.load() == 4 * 50 * 257, "concurrent callers each get their whole range");
  }
  return suite.finish();
}
