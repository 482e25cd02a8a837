// Offline CHAI calibration (SPEC section 1): the per-head features of one calibration window and
// the K-Means inertia of every layer for k = 1..n_heads (the paper's elbow rule; lib/calibrate.ts
// sums the curves over windows and picks each layer's knee). The model is reached through an
// interface, so this code knows nothing of sessions or the engine.
#pragma once
#include <cstdint>
#include <vector>

#include "chai/clustering.h"

namespace chai {

// What calibration needs of a model run.
class HeadFeatureSource {
 public:
  virtual ~HeadFeatureSource() = default;
  // Runs the first t0 tokens of `tokens` with full attention as a new request and returns every
  // layer's head features ([n_layers][n_heads × t0(t0+1)/2]).
  virtual std::vector<std::vector<float>> features_of(const std::vector<int32_t>& tokens, int t0) = 0;
};

// inertia[l][k - 1] for one window (its first t0 tokens). `kmeans.method` must be KMeans.
std::vector<std::vector<double>> window_inertia(HeadFeatureSource& source, const std::vector<int32_t>& window, int t0,
                                                const ClusteringOptions& kmeans, int n_heads);

}  // namespace chai
