#!/usr/bin/env python3
"""Checks scripts/gpu_results.py (the results JSON of gpu-check.sh) on made-up inputs: versions
passed from ctest lines, ratios against the read ceiling and PyTorch, each prefill row against
the SDPA row of its own context, L2-resident decode rows kept out of the targets, pass/fail of
each target, and that missing inputs show as 'not measured' rather than passes. Run by ctest (no
GPU needed).
    python3 scripts/test_gpu_results.py
"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CTEST_LOG = """\
1/6 Test #1: test_dtype .......................   Passed    0.01 sec
2/6 Test #2: test_cuda_ops ....................   Passed    2.10 sec
3/6 Test #3: test_cuda_matmul_v1 ..............   Passed    0.51 sec
4/6 Test #4: test_cuda_matmul_v2 ..............***Failed    0.62 sec
5/6 Test #5: test_cuda_attention_v1 ...........***Skipped   0.01 sec
6/6 Test #6: test_cuda_attention_v2 ...........   Passed    0.40 sec
"""


def ops(version, gemm_tflops, gemv_gbps, checked=True, f16_gemv_gbps=3200.0):
    rows = [{"backend": "cpu", "op": "matmul", "dtype": "f32", "version": 0, "n": 1, "m": 1024, "k": 1024, "gbps": 20.0},
            {"backend": "cuda:0", "op": "gemm", "dtype": "f16", "version": version, "n": 4096, "m": 4096, "k": 4096,
             "checked": True, "relErr": 3e-4, "tflops": gemm_tflops, "gbps": 100.0, "ms": 0.5},
            {"backend": "cuda:0", "op": "gemv", "dtype": "q8_0", "version": version, "n": 1, "m": 4096, "k": 4096,
             "checked": checked, "relErr": 4e-3 if checked else 0.5, "tflops": 0.0, "gbps": gemv_gbps, "ms": 0.01},
            {"backend": "cuda:0", "op": "gemv", "dtype": "f16", "version": version, "n": 1, "m": 4096, "k": 4096,
             "checked": True, "relErr": 1e-4, "tflops": 0.0, "gbps": f16_gemv_gbps, "ms": 0.01}]
    return {"bench": "ops", "device": "Fake GPU", "readGbps": 4000.0, "rows": rows}


def row(name, version, context, queries, batch, ms, **fields):
    """A bench_attention row as it writes them."""
    shape = {"context": context, "queries": queries, "batch": batch, "heads": 32, "clusters": 4 if "chai" in name else 32,
             "headDim": 128, "causal": True}
    return dict({"name": name, "backend": "cuda:0", "version": version, "shape": shape, "ms": ms}, **fields)


# Prefill at 1024 and 4096 against SDPA rows of different speeds (a row compared with the wrong
# context would get another ratio), and at 8192 where SDPA has no row.
SDPA_MS = {1024: 0.2, 4096: 1.0}
PREFILL_MS = {1: {1024: 0.25, 4096: 2.0, 8192: 7.0}, 2: {1024: 0.1, 4096: 1.0, 8192: 3.0},
              3: {1024: 0.1, 4096: 1.0, 8192: 3.0}}


def attention(version):
    return {"rows": [
        row("attention-decode-full", version, 8192, 1, 1, 0.1, gb_per_s=3400.0, ratio_vs_full=1.0, l2_resident=False),
        row("attention-decode-chai-k4", version, 8192, 1, 1, 0.06, gb_per_s=3000.0, ratio_vs_full=1.3 + 0.2 * version,
            l2_resident=False),
        # Fits in L2: far from every target, and not counted against them.
        row("attention-decode-full", version, 2048, 1, 1, 0.05, gb_per_s=700.0, ratio_vs_full=1.0, l2_resident=True),
        row("attention-decode-chai-k4", version, 2048, 1, 1, 0.05, gb_per_s=400.0, ratio_vs_full=1.0, l2_resident=True),
        # In device memory but shorter than the decode target's 8k keys: listed, not a target.
        row("attention-decode-full", version, 4096, 1, 1, 0.05, gb_per_s=900.0, ratio_vs_full=1.0, l2_resident=False),
    ] + [row("attention-prefill-full", version, t, t, 1, ms, gb_per_s=10.0, tflops=100.0, ratio_vs_full=1.0)
         for t, ms in PREFILL_MS[version].items()]}


def run(work, files):
    for name, content in files.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
    out = os.path.join(work, "results.json")
    subprocess.run([sys.executable, os.path.join(HERE, "gpu_results.py"), "--work", work, "--out", out], check=True,
                   capture_output=True, text=True)
    with open(out) as f:
        return json.load(f)


def result_of(results, prefix):
    matches = [t["result"] for t in results["targets"] if t["target"].startswith(prefix)]
    assert matches, f"no target starting with {prefix!r} in {[t['target'] for t in results['targets']]}"
    return matches


def main():
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    with tempfile.TemporaryDirectory() as work:
        r = run(work, {
            "ctest.log": CTEST_LOG,
            "stages.tsv": "build\tpass\t60.0\tsm_90\nctest\tfail\t5.0\t1 failed\n",
            "device.json": {"name": "Fake GPU", "computeCapability": "9.0"},
            "ops-v1.json": ops(1, 200.0, 3200.0),
            "ops-v2.json": ops(2, 400.0, 2000.0, checked=False),
            # Quantized GEMV at 65% passes its 60% target; f16 GEMV at 70% fails its 75%.
            "ops-v3.json": ops(3, 400.0, 2600.0, f16_gemv_gbps=2800.0),
            "attention-v1.json": attention(1),
            "attention-v2.json": attention(2),
            "attention-v3.json": attention(3),
            "torch.json": {"sdpa": [{"backend": "flash", "batch": 1, "heads": 32, "headDim": 128, "context": t, "causal": True,
                                     "dtype": "f16", "ms": ms} for t, ms in SDPA_MS.items()],
                           "matmul": {"n": 4096, "tflops": 600.0}},
        })
        check(r["kernelVersionsPassed"] == {"matmul": {"1": "passed", "2": "failed"},
                                            "attention": {"1": "skipped", "2": "passed"}},
              f"versions passed from ctest names: {r['kernelVersionsPassed']}")
        check(r["failedStages"] == ["ctest"], "failed stages listed")
        check(r["copyGbps"] == 4000.0, "the read ceiling of the run")
        check(all(not m["backend"].startswith("cpu") for m in r["matmul"]), "CPU rows left out")
        check(result_of(r, "GEMM 4096^3 f16 v1") == ["fail"], "GEMM 200/600 TFLOP/s fails 0.5x torch")
        check(result_of(r, "GEMM 4096^3 f16 v2") == ["pass"], "GEMM 400/600 TFLOP/s passes 0.5x torch")
        check(result_of(r, "GEMV q8_0 4096x4096 v1") == ["pass"], "GEMV at 80% of the ceiling passes")
        check(result_of(r, "GEMV q8_0 4096x4096 v2") == ["not measured"], "a GEMV that failed its check is not measured")
        check(result_of(r, "GEMV q8_0 4096x4096 v3 >= 60.0%") == ["pass"], "quantized GEMV at 65% passes 60%")
        check(result_of(r, "GEMV f16 4096x4096 v3 >= 75.0%") == ["fail"], "f16 GEMV at 70% fails 75%")
        check(result_of(r, "GEMV f16 4096x4096 v1 >= 75.0%") == ["pass"], "f16 GEMV at 80% passes 75%")
        check(not any("T=4096" in t["target"] and "decode" in t["target"] for t in r["targets"]),
              "decode rows under 8k keys are not held to the bandwidth target")
        check(result_of(r, "decode full attention attention-decode-full T=8192 B=1 v1") == ["pass"], "decode at 85% passes")
        check(result_of(r, "decode CHAI/full attention-decode-chai-k4 T=8192 B=1 v1") == ["fail"], "CHAI/full 1.5 fails 1.6")
        check(result_of(r, "decode CHAI/full attention-decode-chai-k4 T=8192 B=1 v2") == ["pass"], "CHAI/full 1.7 passes 1.6")
        check(not any("T=2048" in t["target"] for t in r["targets"]), "L2-resident decode rows are not targets")
        check(sorted(r["l2ResidentRows"]) == sorted(f"attention-decode-{kind} T=2048 B=1 v{v}" for kind in ("full", "chai-k4")
                                                    for v in (1, 2, 3)),
              f"L2-resident rows listed: {r['l2ResidentRows']}")
        for v in (1, 2, 3):
            for t, ms in PREFILL_MS[v].items():
                label = f"prefill attention-prefill-full T={t} B=1 v{v}"
                targets = [x for x in r["targets"] if x["target"].startswith(label)]
                want = SDPA_MS[t] / ms if t in SDPA_MS else None
                check(len(targets) == 1 and targets[0]["value"] == want,
                      f"{label}: one target, against SDPA at T={t} ({want}): {[x['value'] for x in targets]}")
        check(result_of(r, "prefill attention-prefill-full T=4096 B=1 v1") == ["fail"], "prefill at 0.5x SDPA fails")
        check(result_of(r, "prefill attention-prefill-full T=1024 B=1 v1") == ["fail"], "prefill at 0.8x SDPA fails")
        check(result_of(r, "prefill attention-prefill-full T=4096 B=1 v2") == ["pass"], "prefill at 1.0x SDPA passes")
        check(result_of(r, "prefill attention-prefill-full T=1024 B=1 v2") == ["pass"], "prefill at 2.0x SDPA passes")
        check(result_of(r, "prefill attention-prefill-full T=8192 B=1 v1") == ["not measured"],
              "prefill without an SDPA row at its context is not measured")
        check([a.get("ratioVsSdpa") for a in r["attention"] if a["name"] == "attention-prefill-full" and a["version"] == 1] ==
              [0.2 / 0.25, 1.0 / 2.0, None], "ratioVsSdpa of each prefill row from its own context")

    with tempfile.TemporaryDirectory() as work:
        r = run(work, {"attention-v2.json": {"rows": [{"backend": "cuda:0", "benchmark": "decode", "seconds": 1.0}]}})
        check(r["attention"] == [], "rows without a version in attention-v2.json are dropped")
        check(all(t["result"] == "not measured" for t in r["targets"]), "nothing measured: every target 'not measured'")
        check(result_of(r, "matmul v3: measured") == ["not measured"], "a version without bench_ops rows is 'not measured'")
        check(r["copyGbps"] is None and r["device"] is None, "no ceiling, no device")

    print(f"gpu_results: {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
