#!/usr/bin/env python3
"""PyTorch's references for the GPU targets, timed on the same device in the same run as ours:
- scaled_dot_product_attention with its flash backend on bench_attention's prefill shapes, one
  row per context (batch, heads, head_dim, causal, f16 by default: 1, 32, 128, causal; contexts
  by default bench_attention's prompts on a GPU, 1024 4096 8192; gpu-check.sh passes the contexts
  the benchmark ran, and scripts/gpu_results.py compares each prefill row with the SDPA row of
  its context);
- torch.matmul of N x N x N f16 (N = 4096), for the GEMM ratio.
Inputs are random (never zeros), times are medians of CUDA-event timings after warm-up.
    python3 scripts/sdpa_compare.py --out torch.json [--batch 1] [--heads 32] [--head-dim 128]
        [--context [T ...]] [--no-causal] [--dtype f16] [--matmul 4096]
"""
import argparse
import json

import torch
import torch.nn.functional as F

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}


def median_ms(fn, reps=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def sdpa_row(batch, heads, head_dim, context, causal, dtype_name):
    gen = torch.Generator(device="cuda").manual_seed(0)
    shape = (batch, heads, context, head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=DTYPES[dtype_name], generator=gen) for _ in range(3))
    backend, error = "flash", None
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    except (ImportError, RuntimeError) as e:  # no flash kernel for this dtype or device
        backend, error = "default", str(e).splitlines()[0]
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    flops = 4.0 * batch * heads * context * context * head_dim * (0.5 if causal else 1.0)
    return {"backend": backend, "flashError": error, "batch": batch, "heads": heads, "headDim": head_dim,
            "context": context, "causal": causal, "dtype": dtype_name, "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12}


def matmul_row(n, dtype_name):
    gen = torch.Generator(device="cuda").manual_seed(1)
    a = torch.randn(n, n, device="cuda", dtype=DTYPES[dtype_name], generator=gen)
    b = torch.randn(n, n, device="cuda", dtype=DTYPES[dtype_name], generator=gen)
    ms = median_ms(lambda: torch.matmul(a, b))
    return {"n": n, "dtype": dtype_name, "ms": ms, "tflops": 2.0 * n ** 3 / (ms * 1e-3) / 1e12}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--context", type=int, nargs="*", default=[1024, 4096, 8192])
    parser.add_argument("--no-causal", dest="causal", action="store_false")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f16")
    parser.add_argument("--matmul", type=int, default=4096)
    args = parser.parse_args()
    result = {"torch": torch.__version__, "device": torch.cuda.get_device_name(),
              "sdpa": [sdpa_row(args.batch, args.heads, args.head_dim, t, args.causal, args.dtype) for t in args.context],
              "matmul": matmul_row(args.matmul, args.dtype)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    for s in result["sdpa"]:
        print(f"SDPA ({s['backend']}) B={s['batch']} H={s['heads']} d={s['headDim']} T={s['context']} "
              f"causal={s['causal']} {s['dtype']}: {s['ms']:.3f} ms, {s['tflops']:.1f} TFLOP/s")
    m = result["matmul"]
    print(f"torch.matmul {m['n']}^3 {m['dtype']}: {m['ms']:.3f} ms, {m['tflops']:.1f} TFLOP/s")


if __name__ == "__main__":
    main()
