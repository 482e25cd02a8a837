#!/usr/bin/env python3
"""Full-attention time of PyTorch's scaled_dot_product_attention on the shapes bench_attention
measures (32 heads of 128, f32, decode over a context and causal prefill), beside our full-attention
rows from the same GPU run. Ours reads a paged cache; SDPA reads contiguous tensors.
    python3 scripts/sdpa_compare.py --ours attention.json --out sdpa.json
"""
import argparse
import json

import torch
import torch.nn.functional as F


def median_ms(fn, reps=50):
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ours", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    ours = json.load(open(args.ours))
    heads, head_dim = ours["heads"], ours["headDim"]
    rows = []
    for r in ours["rows"]:
        if r["backend"] == "cpu" or r["clusters"] != heads:
            continue
        ctx, n_q = r["context"], r["queries"]
        gen = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(1, heads, n_q, head_dim, device="cuda", generator=gen)
        k = torch.randn(1, heads, ctx, head_dim, device="cuda", generator=gen)
        v = torch.randn(1, heads, ctx, head_dim, device="cuda", generator=gen)
        causal = n_q > 1
        ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        rows.append({"benchmark": r["benchmark"], "context": ctx, "queries": n_q, "sdpaSeconds": ms / 1e3,
                     "oursSeconds": r["seconds"], "oursOverSdpa": r["seconds"] / (ms / 1e3)})
    json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "rows": rows}, open(args.out, "w"), indent=1)
    print(f"{'benchmark':<20}{'context':>8}{'queries':>8}{'SDPA us':>12}{'ours us':>12}{'ours/SDPA':>11}")
    for r in rows:
        print(f"{r['benchmark']:<20}{r['context']:>8}{r['queries']:>8}{r['sdpaSeconds'] * 1e6:>12.1f}"
              f"{r['oursSeconds'] * 1e6:>12.1f}{r['oursOverSdpa']:>11.2f}")


if __name__ == "__main__":
    main()
