"""health-check time against N, omni and Ansible: ``python bench/plot.py RESULTS.json OUT.png``.

Runs in the bench's own venv (``.bench/venv``, which has matplotlib), not omni's.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    results = json.loads(Path(sys.argv[1]).read_text())
    rows = results.get("health") or []
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for key, label, marker in (("omni_wall", "omni health-check", "o"),
                               ("ansible_wall", "Ansible playbook, same checks", "s")):
        points = [(r["n"], r[key]) for r in rows if r.get(key)]
        if not points:
            continue
        ns = [n for n, _ in points]
        med = [s["median"] for _, s in points]
        lo = [s["median"] - s["min"] for _, s in points]
        hi = [s["max"] - s["median"] for _, s in points]
        ax.errorbar(ns, med, yerr=[lo, hi], marker=marker, capsize=3, label=label)
        for n, m in zip(ns, med, strict=True):
            ax.annotate(f"{m:.1f}s", (n, m), textcoords="offset points", xytext=(4, 6),
                        fontsize=8)
    all_n = sorted({r["n"] for r in rows})
    if all_n and all_n[-1] >= 5 * all_n[0]:
        ax.set_xscale("log")
    ax.set_xticks(all_n, [str(n) for n in all_n])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("tenants checked (N, both hosts)")
    ax.set_ylabel("wall time, s (median; bars: min-max)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_title(textwrap.fill(f"health-check of N tenants: {results.get('label', '')}, "
                               f"{results['machine']['date'][:10]}", 80), fontsize=9)
    ax.margins(x=0.12, y=0.15)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
