// Kernel time from graph replays (see graph_timing.h).
#include <algorithm>
#include <vector>

#include "cuda_check.h"
#include "graph_timing.h"

namespace chai::cuda {
namespace {

// A captured graph, its executable form and the two events around a replay, released however
// the timing ends.
struct TimedGraph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;

  TimedGraph() = default;
  TimedGraph(const TimedGraph&) = delete;
  TimedGraph& operator=(const TimedGraph&) = delete;
  ~TimedGraph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  }
};

}  // namespace

double graph_seconds_per_call(const std::function<void(int)>& call, int calls, int repeats, cudaStream_t stream) {
  call(0);
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize (timing warm-up)");
  TimedGraph timed;
  cuda_check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    for (int i = 0; i < calls; ++i) call(i);
  } catch (...) {
    cudaStreamEndCapture(stream, &timed.graph);  // the stream must leave capture mode to be usable again
    throw;
  }
  cuda_check(cudaStreamEndCapture(stream, &timed.graph), "cudaStreamEndCapture");
  cuda_check(cudaGraphInstantiate(&timed.exec, timed.graph, 0), "cudaGraphInstantiate");
  cuda_check(cudaEventCreate(&timed.start), "cudaEventCreate");
  cuda_check(cudaEventCreate(&timed.stop), "cudaEventCreate");
  cuda_check(cudaGraphLaunch(timed.exec, stream), "cudaGraphLaunch (warm-up replay)");
  std::vector<double> seconds;
  for (int r = 0; r < repeats; ++r) {
    cuda_check(cudaEventRecord(timed.start, stream), "cudaEventRecord");
    cuda_check(cudaGraphLaunch(timed.exec, stream), "cudaGraphLaunch");
    cuda_check(cudaEventRecord(timed.stop, stream), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(timed.stop), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, timed.start, timed.stop), "cudaEventElapsedTime");
    seconds.push_back(double(ms) * 1e-3 / calls);
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace chai::cuda
