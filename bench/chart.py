"""Bar chart of kvcy/peer ratios from a bench/peers.py JSON file.

    python bench/chart.py results.json [-o results.png] [--peers plyvel,lmdb]
        [--workloads fillseq,readrandom] [--all-figures]

One group of bars per workload, one bar per peer: the median ops/s of kvcy
divided by the peer's, on a log scale with a line at 1 (above it kvcy is
faster).  The amplification figures (wamp, samp, disk_bytes), where lower
is better, are left out unless --all-figures is given, so every bar in the
default chart reads the same way.  The title names the command, the number
of keys and repeats, and the machine; nothing is measured here.

Needs matplotlib (`pip install -e '.[bench]'`).
"""
import argparse
import json
import math
import os
import sys


def load_matplotlib():
    try:
        import matplotlib
    except ImportError:
        sys.exit("bench/chart.py needs matplotlib: pip install matplotlib "
                 "(or pip install -e '.[bench]')")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def chart(doc, out, peers=None, workloads=None, all_figures=False):
    """Draw doc's kvcy/peer ratios into the PNG file out."""
    plt = load_matplotlib()
    ratios = doc["ratios"]
    lower = set(doc["params"].get("lower_is_better", ()))
    columns = [c for c in ratios if peers is None or c.split("/", 1)[1] in peers]
    figures = workloads or [f for f in doc["params"]["workloads"] + ["disk_bytes"]
                            if any(ratios[c].get(f) for c in columns)]
    if not all_figures:
        figures = [f for f in figures if f not in lower]
    figures = list(dict.fromkeys(figures))
    if not columns or not figures:
        sys.exit("nothing to draw: no ratios for those peers and workloads")

    fig, ax = plt.subplots(figsize=(min(16, max(8, 0.18 * len(figures) * len(columns) + 3)), 5.5))
    width = 0.8 / len(columns)
    for j, c in enumerate(columns):
        xs, ys = [], []
        for i, f in enumerate(figures):
            r = ratios[c].get(f)
            if r:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r)
        ax.bar(xs, ys, width, label=c)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(figures)))
    ax.set_xticklabels(figures, rotation=35, ha="right")
    ax.set_ylabel("kvcy / peer (median; log scale)")
    values = [ratios[c][f] for c in columns for f in figures if ratios[c].get(f)]
    lo, hi = min(values + [1.0]), max(values + [1.0])
    ax.set_ylim(10 ** math.floor(math.log10(lo) - 0.05), 10 ** math.ceil(math.log10(hi) + 0.05))
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    p, m = doc["params"], doc["machine"]
    note = ("above 1: kvcy faster" if not all_figures else
            "ops/s above 1: kvcy faster; %s below 1: kvcy less" % ", ".join(sorted(lower)))
    ax.set_title("kvcy / peer, %s keys, %s ops, %d repeat(s); %s\n%s, %s CPUs, Python %s"
                 % (format(p["num"], ","), format(p["ops"], ","), p["repeat"], note,
                    m.get("cpu_model") or m.get("machine", ""), m.get("cpu_count"),
                    m.get("python", "").split()[0]), fontsize="medium")
    fig.text(0.01, 0.01, doc.get("command", ""), fontsize="x-small", color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a file written by bench/peers.py --json")
    parser.add_argument("-o", "--output", help="PNG to write (default: the JSON's name, .png)")
    parser.add_argument("--peers", help="comma-separated peers to show (default: all)")
    parser.add_argument("--workloads", help="comma-separated workloads to show (default: all)")
    parser.add_argument("--all-figures", action="store_true",
                        help="also show wamp, samp and disk_bytes (lower is better)")
    args = parser.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    out = args.output or os.path.splitext(args.json)[0] + ".png"
    chart(doc, out, peers=args.peers.split(",") if args.peers else None,
          workloads=args.workloads.split(",") if args.workloads else None,
          all_figures=args.all_figures)
    print("wrote %s" % out)


if __name__ == "__main__":
    main()
