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
