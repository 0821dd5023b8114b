#!/usr/bin/env python3
"""Plots run.sh's connection sweep: throughput against connections, echo and HTTP side by side.

    python3 plot_sweep.py results/sweep.csv results/sweep.png "title"

The CSV is the one run.sh writes (scenario, title, kind, connections, throughput_per_s,
p99_us, errors, others_cpu0_pct, others_cpu1_pct). One line per server; the x axis is
logarithmic (1, 16, 64, 256 connections), the y axis starts at 0; the baselines are dashed,
the ceilings (bare C epoll, the load generator's limit) dotted. A point measured while
other processes took more than DISTURBED_PCT of either benchmark CPU is crossed out.
Needs matplotlib (run.sh installs it when missing).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")  # no display: write the file only
import matplotlib.pyplot as plt  # noqa: E402

DISTURBED_PCT = 10  # as in run.sh


def disturbed(row: dict[str, str]) -> bool:
    """Whether other processes took more than DISTURBED_PCT of either CPU for this point."""
    shares = [value for key, value in row.items() if key.startswith("others_cpu") and value]
    return any(float(share) > DISTURBED_PCT for share in shares)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    source, target, title = sys.argv[1:]

    # kind ("echo" or "http") -> scenario -> (title, [(connections, throughput, disturbed)])
    series: dict[str, dict[str, tuple[str, list[tuple[int, float, bool]]]]] = {"echo": {}, "http": {}}
    with open(source, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row["throughput_per_s"]:
                continue
            kind = "http" if row["kind"] == "http" else "echo"
            entry = series[kind].setdefault(row["scenario"], (row["title"], []))
            entry[1].append((int(row["connections"]), float(row["throughput_per_s"]), disturbed(row)))

    panels = [(kind, lines) for kind, lines in series.items() if lines]
    if not panels:
        print("plot_sweep.py: no data in " + source, file=sys.stderr)
        return 1
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for axis, (kind, lines) in zip(axes[0], panels):
        counts: set[int] = set()
        crossed = False
        for scenario, (label, points) in lines.items():
            points.sort()
            counts.update(count for count, _, _ in points)
            # The baselines dashed, the ceilings (bare C epoll: the load generator's limit) dotted.
            baseline = scenario in ("baseline", "http_baseline")
            ceiling = scenario in ("ceiling", "http_ceiling")
            axis.plot([c for c, _, _ in points], [t for _, t, _ in points], marker="o",
                      linestyle="--" if baseline else ":" if ceiling else "-",
                      linewidth=2 if baseline or ceiling else 1.5, label=label)
            bad = [(c, t) for c, t, d in points if d]
            if bad:
                axis.scatter([c for c, _ in bad], [t for _, t in bad], marker="x", s=80, color="black", zorder=3,
                             label=None if crossed else f"disturbed (others > {DISTURBED_PCT} % of a CPU)")
                crossed = True
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted(counts))
        axis.set_xticklabels([str(c) for c in sorted(counts)])
        axis.set_ylim(bottom=0)
        axis.set_xlabel("connections")
        axis.set_ylabel("requests/s (wrk)" if kind == "http" else "messages/s (swoop-load)")
        axis.set_title("HTTP GET /" if kind == "http" else "line echo")
        axis.grid(True, alpha=0.3)
        axis.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        # The servers first, the "disturbed" mark last.
        handles, labels = axis.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("disturbed"))
        axis.legend([handles[i] for i in order], [labels[i] for i in order], fontsize="small")
    figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
