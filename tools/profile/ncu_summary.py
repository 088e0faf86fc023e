#!/usr/bin/env python3
"""Kernel-time shares from `ncu --metrics gpu__time_duration.sum --print-summary per-kernel` output.

    python3 tools/profile/ncu_summary.py NCU_OUTPUT.txt [--top N]

Groups kernels by function name (cuBLAS/cuBLASLt/CUTLASS GEMM kernels as one group) and prints each group's share
of the profiled kernel time, its invocation count and mean duration.
"""
import argparse
import re


def parse(path):
    rows, cur = [], None
    for line in open(path, errors="replace"):
        m = re.match(r"\s{2}(\S.*?) \(\d+, \d+, \d+\)x\(\d+, \d+, \d+\).*Invocations (\d+)", line)
        if m:
            cur = [m.group(1), int(m.group(2))]
            continue
        m = re.match(r"\s+gpu__time_duration.sum\s+(\w+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)", line)
        if m and cur:
            scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(m.group(1), 1.0)
            rows.append((cur[0], cur[1], float(m.group(4).replace(",", "")) * scale))  # the Average column
            cur = None
    return rows


def group(name):
    k = re.sub(r"^void ", "", name.split("(")[0])
    for prefix in ("parakeet::cuda::kernels::", "(anonymous namespace)::", "parakeet::<unnamed>::", "parakeet::cuda::"):
        k = k.replace(prefix, "")
    if k.startswith("nvjet") or "cublas" in k or "cutlass" in k:
        return "cuBLAS GEMM (incl. split-K reduce)"
    return k


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=14)
    a = ap.parse_args()
    rows = parse(a.path)
    total = sum(n * t for _, n, t in rows)
    agg = {}
    for name, n, t in rows:
        g = agg.setdefault(group(name), [0, 0.0])
        g[0] += n
        g[1] += n * t
    print(f"profiled kernel time {total:.0f} us over {sum(n for _, n, _ in rows)} kernels")
    print(f"{'share':>6} {'time_us':>9} {'calls':>6} {'mean_us':>8}  kernel")
    for k, (n, t) in sorted(agg.items(), key=lambda x: -x[1][1])[: a.top]:
        print(f"{100 * t / total:5.1f}% {t:9.0f} {n:6d} {t / n:8.1f}  {k}")


if __name__ == "__main__":
    main()
