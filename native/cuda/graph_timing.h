// Kernel time measured on the device: CUDA events around replays of a captured graph, so that no
// launch latency and no host synchronization is counted (the CUDA backend's seconds_per_call,
// and bench_ops' CUDA rows).
#pragma once
#include <cuda_runtime.h>

#include <functional>

namespace chai::cuda {

// Seconds per call of call(i), i = 0 .. calls - 1, each of which must only queue work on `stream`.
// call(0) runs once first, uncaptured: module loading, one-time attribute queries and scratch
// growth happen there, since nothing may allocate or synchronize while a graph is captured. Then
// the calls are captured into one graph, replayed once to warm up and `repeats` times between
// two events; the median replay over `calls`.
double graph_seconds_per_call(const std::function<void(int)>& call, int calls, int repeats, cudaStream_t stream);

}  // namespace chai::cuda
