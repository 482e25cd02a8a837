#!/usr/bin/env python3
"""Assembles what one scripts/gpu-check.sh run measured into ONE results JSON, and prints the
targets of the GPU-speed issue with pass or fail. Reads from WORK (missing files are reported
as missing, never invented):
  stages.tsv                 name, status, seconds, note of every stage
  device.json                the probe: name, computeCapability, driver, runtime
  ctest.log                  ctest's output (test names and results)
  ptxas.json                 scripts/ptxas_table.py --json of the build
  sanitizers.tsv             tool, test, status, note
  ops-v<N>.json              bench_ops --version N (N from --versions)
  attention-v<N>.json        bench_attention --version N (rows: name, version, shape {context,
                             queries, batch, heads, headDim, causal}, ms, bytes, gb_per_s,
                             tflops, ratio_vs_full, copies, l2_resident)
  torch.json                 scripts/sdpa_compare.py (SDPA flash at each prefill context of
                             bench_attention, torch.matmul; the same shapes)
Decode rows marked l2_resident (their bytes fit in the L2 cache) are listed but kept out of the
decode targets, which are about device-memory bandwidth. Each prefill row is compared with the
SDPA row of the same shape (context, batch, heads, head size, causal), or is 'not measured'.
    python3 scripts/gpu_results.py --work WORK --out bench/results/DATE-DEVICE.json
"""
import argparse
import datetime
import json
import os
import re

# Targets of the GPU-speed issue (bandwidth: bytes a kernel must read per second over the
# streaming-read ceiling of the same run).
DECODE_FULL_MIN_PCT = 80.0
CHAI_OVER_FULL_MIN = 1.6
PREFILL_OVER_SDPA_MIN = 0.9
GEMM_OVER_TORCH_MIN = 0.5
GEMV_MIN_PCT = 75.0        # f16/bf16/f32 weights
QUANT_GEMV_MIN_PCT = 60.0  # block-quantized weights (Q4_0 … Q8_0): more work per byte
DECODE_TARGET_MIN_CONTEXT = 8192  # shorter decode rows are listed, not held to the bandwidth target
FLOAT_DTYPES = ("f16", "bf16", "f32")

CTEST_LINE = re.compile(r"Test\s+#\d+: (\S+) \.*\s*(?:\*+)?(Passed|Failed|Skipped|Not Run|Exception|Timeout)")
VERSIONED_TEST = re.compile(r"^test_cuda_(\w+?)_v(\d+)$")


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_tsv(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except OSError:
        return []


def ctest_results(path):
    try:
        text = open(path).read()
    except OSError:
        return {}
    return {m.group(1): m.group(2) for m in CTEST_LINE.finditer(text)}


def versions_passed(tests):
    """{kernel: {version: 'passed' | result}} from tests named test_cuda_<kernel>_v<N>."""
    out = {}
    for name, result in tests.items():
        m = VERSIONED_TEST.match(name)
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = "passed" if result == "Passed" else result.lower()
    return out


def target(targets, name, value, threshold, at_least=True, note=""):
    measured = value is not None
    ok = measured and (value >= threshold if at_least else value <= threshold)
    targets.append({"target": name, "value": value, "threshold": threshold,
                    "result": "pass" if ok else ("fail" if measured else "not measured"), "note": note})


def text_of(row):
    return " ".join(str(row.get(key, "")) for key in ("name", "shape", "benchmark")).lower()


# What a prefill row and an SDPA row must share to be compared (bench_attention's shape keys).
SHAPE_KEYS = ("context", "batch", "heads", "headDim", "causal")


def shape_of(row):
    shape = row.get("shape")
    return shape if isinstance(shape, dict) else {}


def label_of(row):
    """A row's name with its context and batch (one name covers many shapes) and version."""
    shape = shape_of(row)
    return f"{row.get('name')} T={shape.get('context')} B={shape.get('batch')} v{row['version']}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", default="quick")
    parser.add_argument("--versions", default="1,2,3", help="kernel versions gpu-check.sh benchmarked")
    args = parser.parse_args()
    w = lambda name: os.path.join(args.work, name)
    versions = [int(v) for v in args.versions.split(",")]

    device = load_json(w("device.json")) or {}
    tests = ctest_results(w("ctest.log"))
    ptxas = load_json(w("ptxas.json"))
    result = {
        "date": datetime.date.today().isoformat(),
        "device": device.get("name"),
        "computeCapability": device.get("computeCapability"),
        "driver": device.get("driver"),
        "runtime": device.get("runtime"),
        "kernelRelease": device.get("kernelRelease"),
        "mode": args.mode,
        "stages": [dict(zip(("name", "status", "seconds", "note"), row)) for row in read_tsv(w("stages.tsv"))],
        "ctest": tests,
        "kernelVersionsPassed": versions_passed(tests),
        "sanitizers": [dict(zip(("tool", "test", "status", "note"), row)) for row in read_tsv(w("sanitizers.tsv"))],
    }
    if ptxas is not None:
        spilling = [k for k in ptxas if k["spillStores"] or k["spillLoads"]]
        result["ptxas"] = {"kernels": len(ptxas), "withSpills": spilling}
    targets = []

    # The ceiling: the streaming read of the first bench_ops run that measured one.
    ops = {v: load_json(w(f"ops-v{v}.json")) for v in versions}
    read_gbps = next((o["readGbps"] for o in ops.values() if o and o.get("readGbps")), None)
    result["readGbps"] = read_gbps
    result["copyGbps"] = read_gbps  # the bandwidth every GB/s below is a percentage of
    torch = load_json(w("torch.json")) or {}
    result["torch"] = torch or None
    torch_tflops = (torch.get("matmul") or {}).get("tflops")

    matmul_rows = []
    for v, o in ops.items():
        for r in (o or {}).get("rows", []):
            if r.get("backend", "").startswith("cuda"):
                r = dict(r, pctOfRead=100 * r["gbps"] / read_gbps if read_gbps and r.get("gbps") else None)
                if r["op"] == "gemm" and torch_tflops and r.get("tflops"):
                    r["ratioVsTorchMatmul"] = r["tflops"] / torch_tflops
                matmul_rows.append(r)
    result["matmul"] = matmul_rows
    for v in versions:
        rows = [r for r in matmul_rows if r["version"] == v]
        if not rows:
            target(targets, f"matmul v{v}: measured", None, 1, note="no bench_ops rows")
            continue
        for r in rows:
            if r["op"] == "gemm" and r["dtype"] == "f16":
                target(targets, f"GEMM 4096^3 f16 v{v} >= {GEMM_OVER_TORCH_MIN}x torch.matmul", r.get("ratioVsTorchMatmul"),
                       GEMM_OVER_TORCH_MIN, note=f"{r.get('tflops')} TFLOP/s vs torch {torch_tflops}")
            if r["op"] == "gemv" and r["n"] == 1:
                minimum = GEMV_MIN_PCT if r["dtype"] in FLOAT_DTYPES else QUANT_GEMV_MIN_PCT
                target(targets, f"GEMV {r['dtype']} {r['m']}x{r['k']} v{v} >= {minimum}% of read bandwidth",
                       r.get("pctOfRead") if r.get("checked") else None, minimum,
                       note="" if r.get("checked") else f"correctness check failed (rel.err {r.get('relErr')})")

    attention_rows = []
    for v in versions:
        a = load_json(w(f"attention-v{v}.json"))
        for r in (a or {}).get("rows", []):
            if "version" not in r:
                if v != 1:
                    continue  # a bench_attention without versions ran v1 whatever --version said
                r = dict(r, version=1)
            if str(r.get("backend", "cuda")).startswith("cpu"):
                continue
            gbps = r.get("gb_per_s")
            r = dict(r, pctOfRead=100 * gbps / read_gbps if read_gbps and gbps else None)
            attention_rows.append(r)
    result["attention"] = attention_rows
    for r in attention_rows:
        t = text_of(r)
        if "decode" not in t or r.get("l2_resident"):
            continue
        if "full" in t and (shape_of(r).get("context") or 0) >= DECODE_TARGET_MIN_CONTEXT:
            target(targets, f"decode full attention {label_of(r)} >= {DECODE_FULL_MIN_PCT}% of read bandwidth", r["pctOfRead"],
                   DECODE_FULL_MIN_PCT)
        if "chai" in t:
            target(targets, f"decode CHAI/full {label_of(r)} >= {CHAI_OVER_FULL_MIN}", r.get("ratio_vs_full"),
                   CHAI_OVER_FULL_MIN)
    result["l2ResidentRows"] = [label_of(r) for r in attention_rows if r.get("l2_resident")]
    sdpa = torch.get("sdpa") or []
    prefill_full = [r for r in attention_rows if "prefill" in text_of(r) and "full" in text_of(r) and r.get("ms")]
    for r in prefill_full:
        shape = shape_of(r)
        same = [s for s in sdpa if all(s.get(key) == shape.get(key) for key in SHAPE_KEYS)]
        name = f"prefill {label_of(r)} >= {PREFILL_OVER_SDPA_MIN}x SDPA at its shape"
        if not same:
            target(targets, name, None, PREFILL_OVER_SDPA_MIN,
                   note=f"no SDPA row of {', '.join(f'{key}={shape.get(key)}' for key in SHAPE_KEYS)} in torch.json")
            continue
        s = same[0]
        r["ratioVsSdpa"] = s["ms"] / r["ms"]
        target(targets, name, r["ratioVsSdpa"], PREFILL_OVER_SDPA_MIN,
               note=f"ours {r['ms']:.3f} ms, SDPA ({s['backend']}, {s['dtype']}) {s['ms']:.3f} ms")
    if not prefill_full:
        target(targets, f"prefill full attention >= {PREFILL_OVER_SDPA_MIN}x SDPA", None, PREFILL_OVER_SDPA_MIN,
               note="no bench_attention prefill row of full attention")
    if not any("decode" in text_of(r) for r in attention_rows):
        target(targets, "decode attention targets", None, 1, note="no bench_attention decode rows with name/version")
    result["targets"] = targets
    result["failedStages"] = [s["name"] for s in result["stages"] if s.get("status") == "fail"]

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{'target':<96} {'value':>10} {'result':>13}")
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        print(f"{t['target']:<96} {value:>10} {t['result']:>13}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
