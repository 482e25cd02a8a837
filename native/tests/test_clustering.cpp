// CHAI's clustering (SPEC section 1) on hand-made features: planted groups, numbering by lowest
// member, representatives, determinism, inertia; and the head features against float64.
#include <array>
#include <cmath>
#include <string>

#include "chai/clustering.h"
#include "core/backend.h"
#include "core/error.h"
#include "op_runner.h"
#include "testing.h"

using namespace chai;
using namespace chai::testing;

namespace {

// Points in `groups`: members of a group are the same direction scaled differently (cosine
// distance 0), groups are random directions far apart.
std::vector<float> planted(const std::vector<int>& group_of, int dim, uint32_t seed) {
  int groups = 0;
  for (int g : group_of) groups = std::max(groups, g + 1);
  const auto directions = random_nonzero(size_t(groups) * dim, seed);
  std::vector<float> x(group_of.size() * size_t(dim));
  for (size_t i = 0; i < group_of.size(); ++i)
    for (int d = 0; d < dim; ++d) x[i * dim + d] = directions[size_t(group_of[i]) * dim + d] * float(1 + i % 3);
  return x;
}

std::vector<double> features_ref(const std::vector<float>& q, const std::vector<float>& k, int t0, int heads, int kv_heads, int hd) {
  const int group = heads / kv_heads, len = t0 * (t0 + 1) / 2;
  std::vector<double> out(size_t(heads) * len);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < t0; ++i) {
      std::vector<double> s(static_cast<size_t>(i + 1));
      double max = -1e300, sum = 0;
      for (int j = 0; j <= i; ++j) {
        double dot = 0;
        for (int d = 0; d < hd; ++d)
          dot += double(q[(size_t(i) * heads + h) * hd + d]) * k[(size_t(j) * kv_heads + h / group) * hd + d];
        s[size_t(j)] = dot / std::sqrt(double(hd));
        max = std::max(max, s[size_t(j)]);
      }
      for (auto& v : s) sum += v = std::exp(v - max);
      for (int j = 0; j <= i; ++j) out[size_t(h) * len + i * (i + 1) / 2 + j] = s[size_t(j)] / sum;
    }
  return out;
}

}  // namespace

int main() {
  Suite suite("clustering");
  const std::vector<int> groups = {2, 0, 1, 0, 2, 2, 1, 3, 0};  // 9 points, 4 groups
  const auto x = planted(groups, 15, 5);
  const std::vector<int32_t> expected = {0, 1, 2, 1, 0, 0, 2, 3, 1};  // renumbered by lowest member
  for (ClusterMethod method : {ClusterMethod::KMeans, ClusterMethod::Agglomerative}) {
    const std::string name = method == ClusterMethod::KMeans ? "kmeans" : "agglomerative";
    ClusteringOptions o;
    o.method = method;
    o.seed = 3;
    o.representative = RepresentativeRule::First;
    const Clustering c = cluster_points(x.data(), 9, 15, 4, o);
    suite.check(c.membership == expected, name + ": planted groups recovered and numbered by lowest member");
    suite.check(c.representatives == std::vector<int32_t>({0, 1, 2, 7}), name + ": 'first' picks the lowest member");
    suite.check(c.inertia < 1e-12, name + ": zero inertia for exact groups");
    o.representative = RepresentativeRule::Medoid;
    const Clustering m = cluster_points(x.data(), 9, 15, 4, o);
    suite.check(m.representatives == std::vector<int32_t>({0, 1, 2, 7}), name + ": exact medoid ties go to the lowest member");
    suite.check(cluster_points(x.data(), 9, 15, 9, o).membership == std::vector<int32_t>({0, 1, 2, 3, 4, 5, 6, 7, 8}),
                name + ": k = n gives singletons in order");
    suite.check(cluster_points(x.data(), 9, 15, 1, o).membership == std::vector<int32_t>(9, 0), name + ": k = 1");
  }

  // Medoid on a known geometry: three unit vectors at angles 0, 10 and 50 degrees in a plane;
  // the one at 10 degrees has the smallest sum of cosine distances.
  {
    const double a[] = {0.0, 10.0, 50.0};
    std::vector<float> pts;
    for (double deg : a) {
      pts.push_back(float(std::cos(deg * M_PI / 180)));
      pts.push_back(float(std::sin(deg * M_PI / 180)));
    }
    ClusteringOptions o;
    o.representative = RepresentativeRule::Medoid;
    suite.check(cluster_points(pts.data(), 3, 2, 1, o).representatives == std::vector<int32_t>({1}), "medoid of three directions");
    o.method = ClusterMethod::Agglomerative;
    // Average linkage merges the two closest first (0 and 1), then the third.
    suite.check(cluster_points(pts.data(), 3, 2, 2, o).membership == std::vector<int32_t>({0, 0, 1}), "average linkage order");
  }

  // K-Means on random points: deterministic for a seed, and inertia falls as k grows.
  {
    const auto r = random_nonzero(32 * 15, 77);
    ClusteringOptions o;
    o.seed = 123;
    const Clustering a = cluster_points(r.data(), 32, 15, 4, o), b = cluster_points(r.data(), 32, 15, 4, o);
    suite.check(a.membership == b.membership && a.inertia == b.inertia, "kmeans is deterministic for a seed");
    double previous = 1e300;
    bool falling = true;
    for (int k = 1; k <= 32; ++k) {
      const double inertia = cluster_points(r.data(), 32, 15, k, o).inertia;
      falling = falling && inertia <= previous + 1e-12;
      previous = inertia;
    }
    suite.check(falling && previous < 1e-12, "kmeans inertia does not grow with k and reaches 0 at k = n");
  }
  // More clusters than distinct points (heads with equal features): every cluster still gets a
  // member and a representative, and the inertia stays 0.
  for (ClusterMethod method : {ClusterMethod::KMeans, ClusterMethod::Agglomerative}) {
    ClusteringOptions o;
    o.method = method;
    for (int k = 4; k <= 8; ++k) {
      const Clustering c = cluster_points(x.data(), 9, 15, k, o);
      int clusters = 0;
      for (int32_t m : c.membership) clusters = std::max(clusters, m + 1);
      bool valid = clusters == k && int(c.representatives.size()) == k;
      for (int cl = 0; valid && cl < k; ++cl) valid = c.representatives[size_t(cl)] >= 0 && c.membership[size_t(c.representatives[size_t(cl)])] == cl;
      suite.check(valid && c.inertia < 1e-12, std::string(method == ClusterMethod::KMeans ? "kmeans" : "agglomerative") +
                                                  ": k = " + std::to_string(k) + " > 4 distinct points gives k valid clusters");
    }
  }
  suite.check_throws([&] { cluster_points(x.data(), 9, 15, 10, ClusteringOptions{}); }, "k > n");
  suite.check_throws([&] { cluster_points(x.data(), 9, 15, 0, ClusteringOptions{}); }, "k = 0");
  suite.check_throws([] { cluster_method_from_name("spectral"); }, "an unknown method name");

  // Head features (CPU) against float64, GQA included.
  auto cpu = make_cpu_backend(2);
  for (auto [t0, heads, kv, hd] : {std::array<int, 4>{1, 1, 1, 8}, {5, 8, 4, 8}, {5, 32, 32, 128}, {7, 6, 2, 16}}) {
    const auto q = random_nonzero(size_t(t0) * heads * hd, 9), k = random_nonzero(size_t(t0) * kv * hd, 10);
    const auto got = run_head_features(*cpu, q, k, t0, heads, kv, hd);
    suite.check_close(relative_error(got, features_ref(q, k, t0, heads, kv, hd)), 1e-6,
                      "head features t0=" + std::to_string(t0) + " heads=" + std::to_string(heads) + "/" + std::to_string(kv));
  }
  return suite.finish();
}
