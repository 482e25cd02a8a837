#!/usr/bin/env bash
# Registers, shared memory, stack and spills of every CUDA kernel, from ptxas (nvcc -Xptxas -v),
# compiled as the CMake build compiles native/cuda/*.cu. Regenerates the committed report:
#   scripts/ptxas-report.sh [--arch 90] [--out bench/ptxas-sm90.txt]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
arch=90
out="$root/bench/ptxas-sm90.txt"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "usage: scripts/ptxas-report.sh [--arch 90] [--out FILE]" >&2; exit 2 ;;
  esac
done
nvcc="$(command -v nvcc || true)"
[ -n "$nvcc" ] || nvcc=/usr/local/cuda/bin/nvcc
[ -x "$nvcc" ] || { echo "ptxas-report: nvcc not found on PATH or in /usr/local/cuda/bin" >&2; exit 1; }

log="$(mktemp)"
trap 'rm -f "$log" "$log".*' EXIT
jobs="$(nproc)"
# One nvcc per file, in parallel; each output is prefixed with its file name for the parser.
export nvcc arch root log
ls "$root"/native/cuda/*.cu | xargs -P "$jobs" -I{} bash -c '
  f="{}"; name="$(basename "$f")"
  "$nvcc" -std=c++17 -O3 -lineinfo -arch=sm_$arch -Xptxas -v -I"$root/native" -DCHAI_CUDA_ARCHS="\"$arch\"" \
    -c "$f" -o /dev/null > "$log.$name" 2>&1 || { cat "$log.$name" >&2; exit 255; }
  sed "s|^|$name: |" "$log.$name" > "$log.$name.prefixed"'
cat "$log".*.prefixed > "$log"
{
  echo "# ptxas resource usage per kernel for sm_$arch: $("$nvcc" --version | tail -2 | head -1)"
  echo "# regenerate: scripts/ptxas-report.sh --arch $arch --out ${out#"$root"/}"
  echo "# smem: static shared memory in bytes (dynamic shared memory is set at launch)"
  python3 "$root/scripts/ptxas_table.py" < "$log"
} > "$out"
tail -1 "$out"
echo "wrote $out"
