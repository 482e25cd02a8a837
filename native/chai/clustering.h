// Grouping attention heads by the similarity of their attention patterns (CHAI, SPEC section 1).
// Points are per-head feature vectors; distance is cosine distance. Both methods are
// deterministic: the same features, k and seed give the same clusters on every machine.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace chai {

enum class ClusterMethod { KMeans, Agglomerative };
enum class RepresentativeRule { Medoid, First };

ClusterMethod cluster_method_from_name(const std::string& name);            // "kmeans" | "agglomerative"
RepresentativeRule representative_rule_from_name(const std::string& name);  // "medoid" | "first"

struct ClusteringOptions {
  ClusterMethod method = ClusterMethod::KMeans;
  RepresentativeRule representative = RepresentativeRule::Medoid;
  uint64_t seed = 0;
  int restarts = 10;  // K-Means runs from different k-means++ starts; the lowest inertia wins
};

struct Clustering {
  // membership[h] = cluster of point h; clusters are numbered by their lowest member.
  std::vector<int32_t> membership;
  // representatives[c] = the point whose scores cluster c uses.
  std::vector<int32_t> representatives;
  // Σ over points of the squared distance between its L2-normalised features and its cluster's
  // mean (the K-Means objective; reported for agglomerative clusterings too).
  double inertia = 0;
};

// features: n points × dim, row-major. 1 <= k <= n. Throws InvalidArgument on bad sizes.
Clustering cluster_points(const float* features, int n, int dim, int k, const ClusteringOptions& options);

}  // namespace chai
