// Offline CHAI calibration (SPEC section 1): the per-head features of one calibration window and
// the K-Means inertia of every layer for k = 1..n_heads. lib/plan.ts sums the curves over windows
// and picks each layer's cluster count at the knee.
#pragma once
#include <vector>

#include "chai/clustering.h"
#include "engine/session.h"

namespace chai {

// inertia[l][k - 1] for one window (its first t0 tokens). `session` must be full attention;
// `kmeans.method` must be KMeans.
std::vector<std::vector<double>> window_inertia(Session& session, const std::vector<int32_t>& window, int t0,
                                                const ClusteringOptions& kmeans, int n_heads);

}  // namespace chai
