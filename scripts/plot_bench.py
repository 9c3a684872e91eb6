#!/usr/bin/env python3
"""Plots Mpps against the number of flows from scripts/bench.sh --sweep.

    python3 scripts/plot_bench.py /tmp/synshare-bench/sweep.tsv docs/bench-flows.png

Needs matplotlib (pip install matplotlib).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    flows = [int(r["table_flows"]) for r in rows]
    synshare = [float(r["synshare_mpps"]) for r in rows]
    testpmd = [float(r["testpmd_mpps"]) if r["testpmd_mpps"] != "nan" else None for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(flows, testpmd, "s--", color="grey", label="dpdk-testpmd io (same vdevs, no decisions)")
    ax.plot(flows, synshare, "o-", color="tab:blue", label="synshare worker (parse, hash, view, flow table)")
    for x, y in zip(flows, synshare):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("flows in the flow table")
    ax.set_ylabel("Mpps, one core")
    ax.set_ylim(bottom=0)
    ax.set_title("64-byte frames from net_pcap (infinite_rx) to net_null, hugepages")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, "2 shared vCPUs; beyond 1M, the traffic's 1M flows plus untouched ones", fontsize=7, color="grey")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
