// Wall-clock timing on the host: what backends whose ops finish on the calling thread time with,
// and what the benchmarks time host-side work (copies through the Backend interface) with.
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

namespace chai {

// Median wall time of fn in seconds over `repeats` runs, after one warm-up run.
template <typename Fn>
double median_host_seconds(Fn fn, int repeats) {
  fn();
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace chai
