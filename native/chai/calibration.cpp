#include "calibration.h"

#include "core/backend.h"  // feature_length
#include "core/error.h"

namespace chai {

std::vector<std::vector<double>> window_inertia(HeadFeatureSource& source, const std::vector<int32_t>& window, int t0,
                                                const ClusteringOptions& kmeans, int n_heads) {
  CHAI_REQUIRE(kmeans.method == ClusterMethod::KMeans, ErrorCode::InvalidArgument, "calibration measures K-Means inertia");
  const std::vector<std::vector<float>> features = source.features_of(window, t0);
  std::vector<std::vector<double>> inertia(features.size(), std::vector<double>(static_cast<size_t>(n_heads)));
  for (size_t l = 0; l < features.size(); ++l)
    for (int k = 1; k <= n_heads; ++k)
      inertia[l][size_t(k - 1)] = cluster_points(features[l].data(), n_heads, feature_length(t0), k, kmeans).inertia;
  return inertia;
}

}  // namespace chai
