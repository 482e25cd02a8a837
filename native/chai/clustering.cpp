#include "clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace chai {
namespace {

using Matrix = std::vector<std::vector<double>>;

// splitmix64: a small generator whose stream is fixed by the seed on every platform (the
// standard distributions are not), turned into doubles in [0, 1).
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  double uniform() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return double(z >> 11) * 0x1.0p-53;
  }

 private:
  uint64_t state_;
};

Matrix normalised(const float* features, int n, int dim) {
  Matrix x(static_cast<size_t>(n), std::vector<double>(static_cast<size_t>(dim)));
  for (int i = 0; i < n; ++i) {
    double norm = 0;
    for (int d = 0; d < dim; ++d) norm += double(features[size_t(i) * dim + d]) * features[size_t(i) * dim + d];
    norm = std::sqrt(norm);
    for (int d = 0; d < dim; ++d) x[size_t(i)][size_t(d)] = norm > 0 ? features[size_t(i) * dim + d] / norm : 0.0;
  }
  return x;
}

double squared_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t d = 0; d < a.size(); ++d) s += (a[d] - b[d]) * (a[d] - b[d]);
  return s;
}

// Cosine distance between unit vectors.
Matrix cosine_distances(const Matrix& x) {
  const size_t n = x.size();
  Matrix dist(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      double dot = 0;
      for (size_t d = 0; d < x[i].size(); ++d) dot += x[i][d] * x[j][d];
      dist[i][j] = dist[j][i] = 1.0 - dot;
    }
  return dist;
}

// Renumbers labels so that clusters are numbered by their lowest member.
std::vector<int32_t> canonical(const std::vector<int>& labels) {
  std::vector<int> rename(labels.size(), -1);
  std::vector<int32_t> out(labels.size());
  int next = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    int& r = rename[size_t(labels[i])];
    if (r < 0) r = next++;
    out[i] = r;
  }
  return out;
}

// K-Means can leave clusters empty when there are fewer distinct points than k (heads with equal
// features). Every cluster must have a member (it needs a representative), so while fewer than k
// exist, the largest cluster (lowest number on ties) gives its highest-index member a cluster of
// its own; moving a duplicate point this way leaves the inertia as it was.
void fill_empty_clusters(std::vector<int32_t>& membership, int k) {
  int used = 0;
  for (int32_t c : membership) used = std::max(used, c + 1);
  for (; used < k; ++used) {
    std::vector<int> size(size_t(used), 0);
    for (int32_t c : membership) size[size_t(c)]++;
    const int32_t largest = int32_t(std::max_element(size.begin(), size.end()) - size.begin());
    for (size_t i = membership.size(); i-- > 0;)
      if (membership[i] == largest) {
        membership[i] = used;
        break;
      }
  }
}

double inertia_of(const Matrix& x, const std::vector<int32_t>& membership, int k) {
  const size_t dim = x[0].size();
  Matrix mean(size_t(k), std::vector<double>(dim, 0.0));
  std::vector<int> count(size_t(k), 0);
  for (size_t i = 0; i < x.size(); ++i) {
    count[size_t(membership[i])]++;
    for (size_t d = 0; d < dim; ++d) mean[size_t(membership[i])][d] += x[i][d];
  }
  for (int c = 0; c < k; ++c)
    for (auto& v : mean[size_t(c)]) v /= count[size_t(c)];
  double total = 0;
  for (size_t i = 0; i < x.size(); ++i) total += squared_distance(x[i], mean[size_t(membership[i])]);
  return total;
}

// One K-Means run: k-means++ seeding, then Lloyd iterations until no assignment changes.
std::vector<int> kmeans_once(const Matrix& x, int k, Random& rng) {
  const int n = int(x.size());
  Matrix centroids;
  std::vector<double> nearest(size_t(n), std::numeric_limits<double>::infinity());
  std::vector<bool> chosen(size_t(n), false);
  int first = std::min(n - 1, int(rng.uniform() * n));
  for (;;) {
    chosen[size_t(first)] = true;
    centroids.push_back(x[size_t(first)]);
    if (int(centroids.size()) == k) break;
    double total = 0;
    for (int i = 0; i < n; ++i) {
      nearest[size_t(i)] = std::min(nearest[size_t(i)], squared_distance(x[size_t(i)], centroids.back()));
      total += nearest[size_t(i)];
    }
    if (total <= 0) {  // every point sits on a centroid already: take the lowest unused point
      first = int(std::find(chosen.begin(), chosen.end(), false) - chosen.begin());
      continue;
    }
    double target = rng.uniform() * total;
    first = -1;
    for (int i = 0; i < n && first < 0; ++i) {
      target -= nearest[size_t(i)];
      if (target < 0 && nearest[size_t(i)] > 0) first = i;
    }
    if (first < 0)  // rounding left target >= 0: take the last point with weight
      for (int i = n - 1; i >= 0 && first < 0; --i)
        if (nearest[size_t(i)] > 0) first = i;
  }

  std::vector<int> labels(size_t(n), -1);
  for (int iteration = 0; iteration < 1000; ++iteration) {
    bool changed = false;
    for (int i = 0; i < n; ++i) {
      int best = 0;
      double best_d = squared_distance(x[size_t(i)], centroids[0]);
      for (int c = 1; c < k; ++c) {
        const double d = squared_distance(x[size_t(i)], centroids[size_t(c)]);
        if (d < best_d) best_d = d, best = c;  // ties keep the lower centroid
      }
      if (labels[size_t(i)] != best) labels[size_t(i)] = best, changed = true;
    }
    if (!changed) break;
    std::vector<int> count(size_t(k), 0);
    for (auto& c : centroids) std::fill(c.begin(), c.end(), 0.0);
    for (int i = 0; i < n; ++i) {
      count[size_t(labels[size_t(i)])]++;
      for (size_t d = 0; d < x[0].size(); ++d) centroids[size_t(labels[size_t(i)])][d] += x[size_t(i)][d];
    }
    for (int c = 0; c < k; ++c) {
      if (count[size_t(c)] > 0) {
        for (auto& v : centroids[size_t(c)]) v /= count[size_t(c)];
        continue;
      }
      // An empty cluster takes the point farthest from its own centroid (lowest index on ties).
      int far = 0;
      double far_d = -1;
      for (int i = 0; i < n; ++i) {
        const double d = squared_distance(x[size_t(i)], centroids[size_t(labels[size_t(i)])]);
        if (d > far_d) far_d = d, far = i;
      }
      centroids[size_t(c)] = x[size_t(far)];
      labels[size_t(far)] = c;
    }
  }
  return labels;
}

// Average linkage: merge the two clusters with the smallest mean pairwise distance until k remain;
// ties go to the pair with the lowest head indices.
std::vector<int> agglomerative(const Matrix& dist, int k) {
  const int n = int(dist.size());
  std::vector<std::vector<int>> clusters(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) clusters[size_t(i)] = {i};
  // link[a][b] = Σ distances between members of a and b (clusters kept ordered by lowest member).
  Matrix link = dist;
  while (int(clusters.size()) > k) {
    size_t best_a = 0, best_b = 1;
    double best = std::numeric_limits<double>::infinity();
    for (size_t a = 0; a < clusters.size(); ++a)
      for (size_t b = a + 1; b < clusters.size(); ++b) {
        const double mean = link[a][b] / double(clusters[a].size() * clusters[b].size());
        if (mean < best) best = mean, best_a = a, best_b = b;
      }
    clusters[best_a].insert(clusters[best_a].end(), clusters[best_b].begin(), clusters[best_b].end());
    for (size_t c = 0; c < clusters.size(); ++c) {
      link[best_a][c] += link[best_b][c];
      link[c][best_a] = link[best_a][c];
    }
    link[best_a][best_a] = 0;
    clusters.erase(clusters.begin() + std::ptrdiff_t(best_b));
    link.erase(link.begin() + std::ptrdiff_t(best_b));
    for (auto& row : link) row.erase(row.begin() + std::ptrdiff_t(best_b));
  }
  std::vector<int> labels(static_cast<size_t>(n));
  for (size_t c = 0; c < clusters.size(); ++c)
    for (int h : clusters[c]) labels[size_t(h)] = int(c);
  return labels;
}

}  // namespace

ClusterMethod cluster_method_from_name(const std::string& name) {
  if (name == "kmeans") return ClusterMethod::KMeans;
  if (name == "agglomerative") return ClusterMethod::Agglomerative;
  fail(ErrorCode::InvalidArgument, "unknown clustering method '" + name + "': use 'kmeans' or 'agglomerative'");
}

RepresentativeRule representative_rule_from_name(const std::string& name) {
  if (name == "medoid") return RepresentativeRule::Medoid;
  if (name == "first") return RepresentativeRule::First;
  fail(ErrorCode::InvalidArgument, "unknown representative rule '" + name + "': use 'medoid' or 'first'");
}

Clustering cluster_points(const float* features, int n, int dim, int k, const ClusteringOptions& options) {
  CHAI_REQUIRE(n >= 1 && dim >= 1 && k >= 1 && k <= n, ErrorCode::InvalidArgument,
          "clustering needs 1 <= k <= points (k " + std::to_string(k) + ", points " + std::to_string(n) + ")");
  CHAI_REQUIRE(options.restarts >= 1, ErrorCode::InvalidArgument, "clustering needs at least one K-Means run");
  const Matrix x = normalised(features, n, dim);
  const Matrix dist = cosine_distances(x);

  Clustering result;
  if (k == n) {  // every point alone: the only zero-inertia answer, even with duplicate points
    result.membership.resize(size_t(n));
    std::iota(result.membership.begin(), result.membership.end(), 0);
  } else if (options.method == ClusterMethod::Agglomerative) {
    result.membership = canonical(agglomerative(dist, k));
    result.inertia = inertia_of(x, result.membership, k);
  } else {
    Random rng(options.seed);
    result.inertia = std::numeric_limits<double>::infinity();
    for (int run = 0; run < options.restarts; ++run) {
      std::vector<int32_t> membership = canonical(kmeans_once(x, k, rng));
      fill_empty_clusters(membership, k);
      membership = canonical(std::vector<int>(membership.begin(), membership.end()));
      const double inertia = inertia_of(x, membership, k);
      if (inertia < result.inertia) result.inertia = inertia, result.membership = std::move(membership);
    }
  }

  result.representatives.assign(size_t(k), -1);
  std::vector<double> best(size_t(k), std::numeric_limits<double>::infinity());
  for (int h = 0; h < n; ++h) {
    const int c = result.membership[size_t(h)];
    double score = 0;  // First: the lowest member wins; Medoid: the smallest sum of distances
    if (options.representative == RepresentativeRule::Medoid)
      for (int g = 0; g < n; ++g)
        if (result.membership[size_t(g)] == c) score += dist[size_t(h)][size_t(g)];
    if (result.representatives[size_t(c)] < 0 || score < best[size_t(c)]) {
      result.representatives[size_t(c)] = h;
      best[size_t(c)] = score;
    }
  }
  return result;
}

}  // namespace chai
