#!/usr/bin/python3
"""Plots `parakeet parity --summary-json` output: max/mean abs error per tensor over chunks (log scale)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(summary_path, png_path):
    with open(summary_path) as f:
        report = json.load(f)
    chunks = report["chunks"]
    names = sorted(chunks[0]["tensors"]) if chunks else []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in names:
        xs = [c["chunk"] for c in chunks]
        ax.semilogy(xs, [max(c["tensors"][name]["max_abs"], 1e-12) for c in chunks], marker="o", label=f"{name} max")
        ax.semilogy(xs, [max(c["tensors"][name]["mean_abs"], 1e-12) for c in chunks], ls="--", label=f"{name} mean")
    ax.set_xlabel("chunk")
    ax.set_ylabel("absolute error")
    ax.set_title("parity: " + ("PASS" if report["pass"] else f"FAIL at chunk {report['first_failing_chunk']}"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
