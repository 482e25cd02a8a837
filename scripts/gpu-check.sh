#!/usr/bin/env bash
# The check a lent GPU runs (needs cmake, a C++ compiler, nvcc; python3 for the results; PyTorch
# for the torch comparisons; no Node):
#   scripts/gpu-check.sh [--quick] [--no-models] [--out DIR]
# 1. finds nvcc (PATH, else /usr/local/cuda/bin) and a CUDA device: stops at once, loudly, without
#    one; 2. builds the C++ core, tests and benchmarks with CUDA (--quick: sm_90 only, -j all
#    cores) with ptxas's resource report of every kernel; 3. runs every C++ test: any failed or
#    SKIPPED test fails the check; 4. bench_ops and bench_attention for each kernel version;
#    5. PyTorch's SDPA (flash) at every prefill context bench_attention ran, and torch.matmul, on
#    the same shapes; 6. compute-sanitizer: racecheck and synccheck on the version-3 kernels'
#    tests, memcheck on every CUDA test (full mode: racecheck and synccheck on every CUDA test
#    too; --report-api-errors no: the deliberate huge-allocation test is not an error); where the
#    machine refuses the tool (gVisor) that is reported, not failed; 7. ONE results JSON,
#    bench/results/<date>-<device>.json, with each target of the GPU-speed issues as pass/fail
#    (scripts/gpu_results.py).
# Models for the GPU = CPU parity tests: $CHAI_MODELS, else gpu-models/ in the checkout
# (git-ignored: copy ../shared/models/stories260K*.gguf there and carry it to the GPU machine),
# else ../shared/models. Without them the check fails, unless --no-models (parity tests not run).
# Logs go to bench/results/tmp/gpu-check/; --out DIR receives the results JSON, summary.txt,
# ptxas.txt and logs.tar.gz (four files). A failing stage is recorded and the next ones still
# run; the exit status is non-zero if any stage failed. Targets missed are reported, not failed.
set -euo pipefail

# Kernel versions benchmarked (CHAI_MATMUL_VERSION / CHAI_ATTENTION_VERSION numbers), and the
# tests of the version-3 kernels (binary and sections) that racecheck and synccheck must pass.
kernel_versions=(1 2 3)
v3_sanitizer_runs=("test_cuda_ops decode-v3" "test_cuda_ops prefill-v3" "test_cuda_matmul 3")

quick=0
no_models=0
out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --no-models) no_models=1; shift ;;
    --out) out_dir="${2:?--out needs a folder}"; shift 2 ;;
    *) echo "usage: scripts/gpu-check.sh [--quick] [--no-models] [--out DIR]" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/bench/results/tmp/gpu-check"
build="$root/build-gpu"
rm -rf "$work"
mkdir -p "$work"
: > "$work/stages.tsv"
: > "$work/sanitizers.tsv"
failures=()
summary=()
start_all=$(date +%s)

# A time budget (--quick: 8 minutes, inside a 10-minute device call; else 1 hour): stages after the
# build get what is left, so the results JSON is always written; a stage cut short fails.
budget=$([ $quick -eq 1 ] && echo 480 || echo 3600)
# stage_timeout MAX: seconds a stage may take now (MAX at most; 30 s stay for the results).
stage_timeout() {
  local left=$(( start_all + budget - 30 - $(date +%s) ))
  [ "$left" -ge 1 ] || left=1  # timeout 0 would mean no limit at all
  [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "== [$(date -u +%H:%M:%S) +$(( $(date +%s) - start_all ))s] $*"; }
# record NAME STATUS(pass|fail|skip|note) SECONDS NOTE
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$work/stages.tsv"
  summary+=("$(printf '%-5s %-28s %7ss  %s' "$2" "$1" "$3" "$4")")
  if [ "$2" = fail ]; then failures+=("$1: $4"); echo "!! FAILED: $1: $4" >&2; fi
}
# run_logged LOG CMD...: runs CMD with its output in LOG; returns CMD's status (never exits).
run_logged() {
  local logfile="$1"; shift
  local rc=0
  "$@" > "$logfile" 2>&1 || rc=$?
  return $rc
}
finish() {
  local status=0
  [ ${#failures[@]} -eq 0 ] || status=1
  echo
  echo "---- gpu-check summary ($(( $(date +%s) - start_all )) s; logs in ${work#"$root"/})"
  printf '%s\n' "${summary[@]}"
  if [ -n "$out_dir" ]; then
    mkdir -p "$out_dir"
    printf '%s\n' "${summary[@]}" > "$out_dir/summary.txt"
    [ -z "${results:-}" ] || [ ! -f "$results" ] || cp "$results" "$out_dir/"
    [ ! -f "$work/ptxas.txt" ] || cp "$work/ptxas.txt" "$out_dir/"
    tar -czf "$out_dir/logs.tar.gz" -C "$(dirname "$work")" "$(basename "$work")" || true
  fi
  if [ $status -ne 0 ]; then
    echo
    echo "GPU CHECK FAILED (${#failures[@]}):"
    printf '  - %s\n' "${failures[@]}"
  else
    echo "gpu-check: every stage passed"
  fi
  exit $status
}

# ---- 1. toolchain and device: nothing below means anything without them.
t=$(now)
nvcc_bin="$(command -v nvcc || true)"
[ -n "$nvcc_bin" ] || nvcc_bin=/usr/local/cuda/bin/nvcc
if [ ! -x "$nvcc_bin" ]; then
  record toolchain fail "$(since "$t")" "nvcc not found on PATH or in /usr/local/cuda/bin"
  finish
fi
export PATH="$(dirname "$nvcc_bin"):$PATH"
record toolchain pass "$(since "$t")" "$nvcc_bin: $("$nvcc_bin" --version | tail -2 | head -1); $(cmake --version | head -1)"

t=$(now)
{ command -v nvidia-smi > /dev/null && nvidia-smi; uname -a; } > "$work/nvidia-smi.log" 2>&1 || true
cat > "$work/probe.cu" <<'EOF'
#include <cstdio>
#include <cuda_runtime.h>
int main() {
  int count = 0, driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("no CUDA device: %s\n", err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports 0 devices");
    return 1;
  }
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, 0);
  std::printf("{\"name\":\"%s\",\"computeCapability\":\"%d.%d\",\"arch\":%d%d,\"driver\":%d,\"runtime\":%d,\"sms\":%d,"
              "\"l2Bytes\":%d,\"memoryBytes\":%zu}\n",
              p.name, p.major, p.minor, p.major, p.minor, driver, runtime, p.multiProcessorCount, p.l2CacheSize, p.totalGlobalMem);
  return 0;
}
EOF
if ! run_logged "$work/probe.log" "$nvcc_bin" -o "$work/probe" "$work/probe.cu"; then
  record device fail "$(since "$t")" "could not compile the device probe (probe.log): $(tail -1 "$work/probe.log")"
  finish
fi
if ! "$work/probe" > "$work/device.raw" 2>&1; then
  record device fail "$(since "$t")" "NO CUDA DEVICE VISIBLE: $(cat "$work/device.raw"); nothing can be checked here"
  finish
fi
python3 - "$work/device.raw" "$work/device.json" <<'EOF'
import json, platform, sys
d = json.load(open(sys.argv[1]))
d["kernelRelease"] = platform.release()
json.dump(d, open(sys.argv[2], "w"))
EOF
device_name="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["name"])' "$work/device.json")"
device_arch="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["arch"])' "$work/device.json")"
record device pass "$(since "$t")" "$device_name (sm_$device_arch), kernel $(uname -r)"

# ---- 2. build, with ptxas's report of every kernel in the build log.
if [ $quick -eq 1 ]; then
  archs=90
  [ "$device_arch" = 90 ] || { archs="$device_arch"; log "--quick builds for this device's sm_$device_arch (not sm_90)"; }
else
  archs="80-real;90"
  case ";$archs;" in *";$device_arch"*) ;; *) archs="$archs;$device_arch" ;; esac
fi
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
t=$(now)
log "configure and build for CUDA architectures $archs"
rm -rf "$build"
if run_logged "$work/configure.log" cmake -S "$root" -B "$build" "${generator[@]}" -DCHAI_NODE=OFF -DCMAKE_BUILD_TYPE=Release \
     "-DCMAKE_CUDA_ARCHITECTURES=$archs" "-DCMAKE_CUDA_COMPILER=$nvcc_bin" "-DCMAKE_CUDA_FLAGS=-Xptxas=-v" &&
   run_logged "$work/build.log" cmake --build "$build" -j "$(nproc)"; then
  if grep -q "Building CUDA object" "$work/build.log"; then
    record build pass "$(since "$t")" "CUDA architectures $archs, $(nproc) jobs"
  else
    record build fail "$(since "$t")" "CMake did not enable CUDA (configure.log)"
  fi
else
  tail -30 "$work/build.log" 2> /dev/null || tail -30 "$work/configure.log"
  record build fail "$(since "$t")" "the build failed (configure.log, build.log); nothing else can run"
  finish
fi

t=$(now)
if python3 "$root/scripts/ptxas_table.py" --json "$work/ptxas.json" < "$work/build.log" > "$work/ptxas.txt" 2> "$work/ptxas.err"; then
  spilling=$(python3 -c 'import json,sys; print(sum(1 for k in json.load(open(sys.argv[1])) if k["spillStores"] or k["spillLoads"]))' "$work/ptxas.json")
  attention_spills=$(python3 -c 'import json,sys; print(sum(1 for k in json.load(open(sys.argv[1])) if "attention" in (k["file"] + k["kernel"]).lower() and (k["spillStores"] or k["spillLoads"])))' "$work/ptxas.json")
  if [ "$attention_spills" -eq 0 ]; then
    record ptxas pass "$(since "$t")" "$(tail -1 "$work/ptxas.txt" | sed 's/^# //'); attention kernels: 0 with spills"
  else
    record ptxas fail "$(since "$t")" "$attention_spills attention kernels spill (ptxas.txt); $spilling kernels in all"
  fi
else
  record ptxas fail "$(since "$t")" "no ptxas report in build.log ($(cat "$work/ptxas.err"))"
fi

# ---- 3. every C++ test; a skipped test is a failure here.
models=""
for candidate in "${CHAI_MODELS:-}" "$root/gpu-models" "$root/../shared/models"; do
  if [ -n "$candidate" ] && [ -f "$candidate/stories260K.gguf" ]; then models="$(cd "$candidate" && pwd)"; break; fi
done
exclude=()
if [ -n "$models" ]; then
  export CHAI_MODELS="$models"
  record models pass 0 "$models"
  # test_cuda_engine's synthetic section (tensor-core GEMM and prefill end to end) reads this one;
  # without it that section fails: node scripts/write-synthetic-model.js gpu-models/synthetic-hd64.gguf
  [ -f "$models/synthetic-hd64.gguf" ] && export CHAI_SYNTHETIC_MODEL="$models/synthetic-hd64.gguf"
elif [ $no_models -eq 1 ]; then
  exclude=(-E '^(test_engine|test_cuda_engine)$')
  record models note 0 "--no-models: the GPU = CPU engine parity tests (test_cuda_engine, test_engine) NOT run"
else
  record models fail 0 "no models: set CHAI_MODELS or copy ../shared/models/stories260K*.gguf to gpu-models/ (and carry it); the engine parity tests will fail; --no-models skips them"
fi
t=$(now)
ctest_rc=0
timeout "$(stage_timeout 300)" ctest --test-dir "$build" --output-on-failure --timeout 240 "${exclude[@]}" > "$work/ctest.log" 2>&1 || ctest_rc=$?
ctest_line="$(grep -E 'tests passed|tests failed' "$work/ctest.log" | tail -1 || true)"
skipped="$(grep -E '\*\*\*Skipped|Not Run' "$work/ctest.log" | sed -E 's/.*Test +#[0-9]+: ([^ ]+).*/\1/' | sort -u | tr '\n' ' ' || true)"
if [ -n "$skipped" ]; then
  reason="$(grep -m1 -h '^SKIPPED' "$build"/Testing/Temporary/LastTest.log 2> /dev/null || true)"
  record ctest fail "$(since "$t")" "TESTS SKIPPED: $skipped($reason)"
elif [ $ctest_rc -ne 0 ] || [ -z "$ctest_line" ]; then
  record ctest fail "$(since "$t")" "${ctest_line:-ctest produced no summary} (ctest.log)"
else
  record ctest pass "$(since "$t")" "$ctest_line"
fi

# ---- 4. benchmarks, each kernel version (each checks itself against the CPU twin first).
quick_arg=()
bench_max=600
[ $quick -eq 0 ] || { quick_arg=(--quick); bench_max=120; }
for bench in ops attention; do
  for version in "${kernel_versions[@]}"; do
    t=$(now)
    json="$work/$bench-v$version.json"
    blog="$work/bench_$bench-v$version.log"
    limit=$(stage_timeout $bench_max)
    rc=0
    run_logged "$blog" timeout "$limit" "$build/native/bench/bench_$bench" "${quick_arg[@]}" --version "$version" --out "$json" || rc=$?
    if [ $rc -eq 124 ]; then
      record "bench_$bench v$version" fail "$(since "$t")" "timed out after $limit s"
    elif [ $rc -ne 0 ]; then
      record "bench_$bench v$version" fail "$(since "$t")" "exit status $rc: $(tail -2 "$blog" | tr '\n' ' ')"
    elif python3 -c 'import json,sys; sys.exit(not any(not str(r.get("backend", "cuda")).startswith("cpu") for r in json.load(open(sys.argv[1]))["rows"]))' "$json"; then
      record "bench_$bench v$version" pass "$(since "$t")" "${json#"$root"/}"
    else
      record "bench_$bench v$version" fail "$(since "$t")" "no CUDA rows: $(grep -m1 'not benchmarked' "$blog" || true)"
    fi
  done
done

# ---- 5. PyTorch on the same shapes: SDPA flash (B=1, H=32, d=128, causal, f16) at each context of
# bench_attention's prefill rows (gpu_results.py compares them context by context) and
# torch.matmul 4096^3 f16.
t=$(now)
contexts="$(python3 - "$work"/attention-v*.json <<'EOF'
import json, sys
contexts = set()
for path in sys.argv[1:]:
    try:
        rows = json.load(open(path)).get("rows", [])
    except (OSError, ValueError):
        continue  # that benchmark failed: its stage says so
    for r in rows:
        if "prefill" in r.get("name", "") and isinstance(r.get("shape"), dict):
            contexts.add(r["shape"]["context"])
print(" ".join(str(c) for c in sorted(contexts)))
EOF
)"
if python3 -c "import torch; assert torch.cuda.is_available()" > /dev/null 2>&1; then
  # $contexts unquoted: one argument per context, none when no prefill row ran.
  # shellcheck disable=SC2086
  if run_logged "$work/torch.log" timeout "$(stage_timeout 180)" python3 "$root/scripts/sdpa_compare.py" --out "$work/torch.json" \
       --batch 1 --heads 32 --head-dim 128 --context $contexts --dtype f16 --matmul 4096; then
    record torch pass "$(since "$t")" "$(tr '\n' ';' < "$work/torch.log")"
  else
    record torch fail "$(since "$t")" "sdpa_compare.py failed: $(tail -1 "$work/torch.log")"
  fi
else
  record torch fail "$(since "$t")" "PyTorch with CUDA not importable: no SDPA / torch.matmul ratios"
fi

# ---- 6. compute-sanitizer (after the benchmarks, so that a slow sanitizer cannot starve the targets).
t=$(now)
sanitizer="$(command -v compute-sanitizer || true)"
[ -n "$sanitizer" ] || [ ! -x "$(dirname "$nvcc_bin")/compute-sanitizer" ] || sanitizer="$(dirname "$nvcc_bin")/compute-sanitizer"
if [ -z "$sanitizer" ]; then
  record sanitizers fail "$(since "$t")" "compute-sanitizer not found"
else
  ctest --test-dir "$build" --show-only=json-v1 > "$work/tests.json"
  # One line per run: tool, label, command. memcheck runs every CUDA test (the engine test takes
  # minutes under it: full mode only); racecheck and synccheck run the version-3 kernels' own tests,
  # first, as their cp.async pipelines and shared tiles are what the simulator cannot check (it runs
  # warps in lockstep and cp.async synchronously), and, in full mode, every CUDA test after memcheck.
  python3 - "$work/tests.json" "$quick" "$build/native/tests" "${v3_sanitizer_runs[@]}" > "$work/sanitize.list" <<'EOF'
import json, os, sys
tests_json, quick, test_dir, v3_runs = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4:]
cuda = [t for t in json.load(open(tests_json))["tests"] if t["name"].startswith("test_cuda_")]
whole = [(t["name"], t["command"]) for t in cuda if not (quick and t["name"] == "test_cuda_engine")]
v3 = [(run.replace(" ", "-"), [os.path.join(test_dir, run.split()[0])] + run.split()[1:]) for run in v3_runs]
runs = [(tool, name, cmd) for tool in ("racecheck", "synccheck") for name, cmd in v3]
runs += [("memcheck", name, cmd) for name, cmd in whole]
if not quick:
    runs += [(tool, name, cmd) for tool in ("racecheck", "synccheck") for name, cmd in whole]
for tool, name, cmd in runs:
    print("\t".join([tool, name] + cmd))
EOF
  refused=""
  sanitizer_failures=0
  while IFS=$'\t' read -r tool name cmd; do
    [ -z "$refused" ] || break
    slog="$work/sanitizer-$tool-$name.log"
    rc=0
    IFS=$'\t' read -r -a argv <<< "$cmd"
    limit=$(stage_timeout "$([ $quick -eq 1 ] && echo 120 || echo 600)")
    if [ "$limit" -lt 10 ]; then
      printf '%s\t%s\t%s\t%s\n' "$tool" "$name" fail "not run: the time budget is spent" >> "$work/sanitizers.tsv"
      sanitizer_failures=$((sanitizer_failures + 1))
      continue
    fi
    timeout "$limit" "$sanitizer" --tool "$tool" --report-api-errors no --error-exitcode 99 "${argv[@]}" < /dev/null > "$slog" 2>&1 || rc=$?
    if grep -qiE "device not supported|unable to (initialize|find)|not supported on this (device|platform)" "$slog"; then
      refused="$(grep -m1 -iE "device not supported|unable to|not supported" "$slog")"
      break
    fi
    if [ $rc -eq 0 ]; then status=clean
    elif [ $rc -eq 124 ]; then status="timed out ($limit s)"
    elif [ $rc -eq 99 ]; then status="errors: $(grep -m1 'ERROR SUMMARY' "$slog" || true)"
    else status="exit $rc: $(grep -m1 -E 'FAIL|Error' "$slog" || tail -1 "$slog")"; fi
    printf '%s\t%s\t%s\t%s\n' "$tool" "$name" "$([ $rc -eq 0 ] && echo pass || echo fail)" "$status" >> "$work/sanitizers.tsv"
    [ $rc -eq 0 ] || sanitizer_failures=$((sanitizer_failures + 1))
    log "compute-sanitizer $tool $name: $status"
  done < "$work/sanitize.list"
  if [ -n "$refused" ]; then
    printf '%s\t%s\t%s\t%s\n' all all unsupported "$refused" >> "$work/sanitizers.tsv"
    record sanitizers note "$(since "$t")" "compute-sanitizer refused the device (kernel $(uname -r)$(uname -r | grep -q '^4\.4\.0' && echo ', gVisor')): $refused"
  elif [ $sanitizer_failures -eq 0 ]; then
    record sanitizers pass "$(since "$t")" "$(wc -l < "$work/sanitize.list") runs clean (memcheck on the CUDA tests; racecheck and synccheck on the v3 kernels' tests$([ $quick -eq 1 ] || echo ' and every CUDA test'))"
  else
    record sanitizers fail "$(since "$t")" "$sanitizer_failures sanitizer runs not clean (sanitizers.tsv)"
  fi
fi

# ---- 7. one results JSON.
t=$(now)
slug="$(echo "$device_name" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g')"
results="$root/bench/results/$(date -u +%Y-%m-%d)-$slug.json"
if python3 "$root/scripts/gpu_results.py" --work "$work" --out "$results" --mode "$([ $quick -eq 1 ] && echo quick || echo full)" \
     --versions "$(IFS=,; echo "${kernel_versions[*]}")" \
     > "$work/results.log" 2>&1; then
  cat "$work/results.log"
  record results pass "$(since "$t")" "${results#"$root"/}"
else
  cat "$work/results.log"
  record results fail "$(since "$t")" "gpu_results.py failed (results.log)"
fi
finish
