#!/usr/bin/env bash
# One command for a GPU machine (cmake, a C++ compiler and nvcc; no Node, no npm):
#   scripts/gpu-check.sh OUTDIR
# builds the native core and its tests with CUDA, writes the compiler's resource report of every
# kernel (spills, local memory), runs the C++ tests (CUDA tests included), then compute-sanitizer
# memcheck and racecheck on the CUDA tests where the tool works, then the microbenchmarks, and a
# comparison with PyTorch's scaled_dot_product_attention where PyTorch is installed. Logs and JSON
# go to OUTDIR; a summary is printed last. Exit status: non-zero when a test or sanitizer failed.
set -uo pipefail
out="${1:?usage: scripts/gpu-check.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$root/build-gpu"
status=0
summary=()
note() { summary+=("$1"); echo "== $1"; }

{ nvidia-smi || true; nvcc --version; cmake --version | head -1; } > "$out/device.txt" 2>&1
archs="${CHAI_CUDA_ARCHS:-80-real;90}"
if ! cmake -S "$root" -B "$build" -DCHAI_NODE=OFF -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$archs" > "$out/configure.log" 2>&1 ||
   ! cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1; then
  note "BUILD FAILED (see build.log)"; tail -30 "$out/build.log"; exit 1
fi
note "built for CUDA architectures $archs"

# Resource report: registers, shared memory, stack frames and spills of every kernel.
for f in "$root"/native/cuda/*.cu; do
  nvcc -std=c++17 -O3 -arch=sm_90 -Xptxas -v -I"$root/native" -DCHAI_CUDA_ARCHS='"90"' -c "$f" -o /dev/null 2>&1 |
    sed "s|^|$(basename "$f"): |"
done > "$out/ptxas.txt"
spills=$(grep -c "[1-9][0-9]* bytes spill" "$out/ptxas.txt" || true)
note "ptxas: $spills kernels with spills (ptxas.txt)"

if ctest --test-dir "$build" --output-on-failure > "$out/ctest.log" 2>&1; then
  note "ctest: $(grep -E 'tests passed' "$out/ctest.log")"
else
  status=1; note "ctest FAILED: $(grep -E 'tests passed|tests failed' "$out/ctest.log")"
fi
grep -q "test_cuda_ops .*Skipped" "$out/ctest.log" && note "WARNING: the CUDA tests were skipped: $(grep -h SKIPPED "$build"/Testing/Temporary/LastTest.log | head -1)"

if command -v compute-sanitizer > /dev/null; then
  for tool in memcheck racecheck; do
    for t in test_cuda_ops test_cuda_engine; do
      log="$out/sanitizer-$tool-$t.log"
      compute-sanitizer --tool "$tool" --error-exitcode 99 "$build/native/tests/$t" > "$log" 2>&1
      rc=$?
      if [ $rc -eq 0 ]; then note "compute-sanitizer $tool $t: clean"
      else status=1; note "compute-sanitizer $tool $t: exit $rc ($(grep -m1 -E 'ERROR SUMMARY|Error' "$log"))"; fi
    done
  done
else
  note "compute-sanitizer not found: sanitizers not run"
fi

# CHAI_BENCH_ARGS=--quick shortens the microbenchmarks (for a dry run of this script).
"$build/native/bench/bench_ops" --out "$out/ops.json" ${CHAI_BENCH_ARGS:-} > "$out/bench_ops.log" 2>&1 || { status=1; note "bench_ops FAILED"; }
"$build/native/bench/bench_attention" --out "$out/attention.json" ${CHAI_BENCH_ARGS:-} > "$out/bench_attention.log" 2>&1 || { status=1; note "bench_attention FAILED"; }
if python3 -c "import torch; assert torch.cuda.is_available()" > /dev/null 2>&1; then
  python3 "$root/scripts/sdpa_compare.py" --ours "$out/attention.json" --out "$out/sdpa.json" > "$out/sdpa.log" 2>&1 ||
    { status=1; note "sdpa comparison FAILED (sdpa.log)"; }
else
  note "PyTorch with CUDA not found: no SDPA comparison"
fi

echo; echo "---- bench_attention summary"; sed -n '/^Summary/,$p' "$out/bench_attention.log"
echo; echo "---- SDPA comparison"; tail -15 "$out/sdpa.log" 2>/dev/null
echo; echo "---- gpu-check summary ($out)"; printf '%s\n' "${summary[@]}"
exit $status
