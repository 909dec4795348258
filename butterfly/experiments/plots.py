"""The demo's figures, drawn on matplotlib Figures (no pyplot: the caller's backend, inline
in a notebook, is left alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import costmodel


def plot_tables(tables: dict, path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # matplotlib only where a figure is drawn

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    keys = list(costmodel.networks)
    width = 0.27
    for ax, obj, unit in ((axes[0], "latency", "ms"), (axes[1], "energy", "mJ")):
        xs = np.arange(len(keys))
        vals = [[tables[k]["best"][obj][f] for k in keys]
                for f in ("cloud_only", "mobile_only", "value")]
        for j, (v, lab) in enumerate(zip(vals, ("cloud-only", "mobile-only", "butterfly (best)"))):
            ax.bar(xs + (j - 1) * width, v, width, label=lab)
        ax.set_xticks(xs, [tables[k]["network"] for k in keys])
        ax.set_yscale("log")
        ax.set_ylabel(f"{obj} per image ({unit})")
        ax.set_title(obj)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_splits(tables: dict, path: Path, title: str) -> None:
    from matplotlib.figure import Figure  # matplotlib only where a figure is drawn

    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for ax, obj, unit in ((axes[0], "latency", "ms"), (axes[1], "energy", "mJ")):
        for k in costmodel.networks:
            rows = [r for r in tables[k]["rows"] if r["kind"] == "split"]
            ax.plot([r["name"] for r in rows], [r[f"{obj}_{unit.lower()}"] for r in rows],
                    marker="o", label=tables[k]["network"])
        ax.set_yscale("log")
        ax.set_ylabel(f"{obj} ({unit})")
        ax.set_xlabel("butterfly unit after")
        ax.tick_params(axis="x", rotation=60)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_live(report: dict, path: Path | None = None,
              title: str = "runtime switching on a live link"):
    """The live run of experiments.live.live_switching: the adaptive client's latency per
    request over time (each point coloured by the option that served it), each fixed
    choice's running median (thin lines), the uplink's rate behind (shaded, right axis), and
    below, the option in use as a colour band (the first round where there are several).
    Returns the Figure (saved to `path` if given).
    """
    from matplotlib.figure import Figure  # matplotlib only where a figure is drawn
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    options = list(report["options"])
    colour = {name: f"C{k % 10}" for k, name in enumerate(options)}
    phases = report["config"]["trace"]
    runs = {mode: [r for r in rows if r.get("round", 0) == 0]  # the first round's
            for mode, rows in report["runs"].items()}
    fig = Figure(figsize=(11, 5.2))
    ax, band = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [6, 1]})
    # the link's rate, behind
    rate_ax = ax.twinx()
    edges = [p["start"] for p in phases] + [phases[-1]["end"]]
    rates = [p["mbps"] for p in phases]
    rate_ax.fill_between(edges, rates + rates[-1:], step="post", color="0.85", zorder=0,
                         label="uplink rate")
    rate_ax.set_yscale("log")
    rate_ax.set_ylabel("uplink (Mbit/s)", color="0.45")
    rate_ax.tick_params(axis="y", colors="0.45")
    ax.set_zorder(rate_ax.get_zorder() + 1)
    ax.patch.set_visible(False)
    # each fixed choice's running median (5 requests), then the adaptive client's points
    for mode, rows in runs.items():
        if mode == "adaptive" or not rows:
            continue
        t = np.array([r["t"] for r in rows])
        lat = np.array([r["latency_ms"] for r in rows])
        k = min(5, len(lat))
        med = np.array([np.median(lat[max(0, i - k + 1):i + 1]) for i in range(len(lat))])
        ax.plot(t, med, lw=0.9, alpha=0.55, color=colour.get(mode, "0.5"), label=f"{mode} (fixed)")
    rows = runs.get("adaptive", [])
    if rows:
        for name in options:
            pts = [r for r in rows if r["option"] == name]
            if pts:
                ax.scatter([r["t"] for r in pts], [r["latency_ms"] for r in pts], s=9,
                           color=colour[name], edgecolor="black", linewidth=0.3, zorder=3,
                           label=f"adaptive via {name}")
        step = 1.0 / report["config"]["rate"]
        for name in options:
            spans = [(r["t"], step) for r in rows if r["option"] == name]
            if spans:
                band.broken_barh(spans, (0, 1), color=colour[name])
    ax.set_yscale("log")
    for axis in (ax.yaxis, rate_ax.yaxis):  # 20, not 2 x 10^1
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("latency per image (ms)")
    ax.set_title(title)
    for x in edges[1:-1]:
        ax.axvline(x, color="0.6", lw=0.6, ls=":")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    band.set_yticks([])
    band.set_ylabel("split", rotation=0, ha="right", va="center")
    band.set_xlabel("time (s)")
    band.set_xlim(0, edges[-1])
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
