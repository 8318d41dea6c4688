"""Presenting `seqchat eval`'s scores: a terminal table and a grouped bar chart."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from seqchat.evaluate.scores import METRIC_KEYS, MetricReport

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rich.table import Table

_TABLE_SUFFIXES = (".tsv", ".jsonl", ".json", ".ndjson", ".txt")


def _label(key: str | os.PathLike[str]) -> str:
    """File stem for path-like keys (``runs/a.tsv`` -> ``a``), the key itself otherwise."""
    text = os.fspath(key) if isinstance(key, os.PathLike) else str(key)
    name = Path(text).name if ("/" in text or os.sep in text) else text
    for suffix in _TABLE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or text


def plot_reports(
    reports: Mapping[str, MetricReport],
    out_png: str | os.PathLike[str],
    *,
    title: str | None = "seqchat eval",
) -> Path:
    """Grouped bar chart (PNG): one group per metric, one bar colour per prediction set.

    Keys of ``reports`` label the bars (a path-like key is shortened to its stem).
    Metrics that are ``None`` in every report are left out; a ``None`` bar is drawn
    as an empty slot.  Returns the written path.
    """
    # A bare Figure renders with the Agg canvas and never touches pyplot's global
    # backend/state, so this works headless and inside other programs.
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    if not reports:
        raise ValueError("no reports to plot")
    names = list(reports)
    metrics = [m for m in METRIC_KEYS if any(reports[n].scores.get(m) is not None for n in names)]
    if not metrics:
        raise ValueError("no metric has a value in any report")
    x = np.arange(len(metrics))
    width = 0.8 / len(names)
    fig = Figure(figsize=(max(8.0, 0.9 * len(metrics) + 0.4 * len(names)), 4.8))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    for i, name in enumerate(names):
        vals = [reports[name].scores.get(m) for m in metrics]
        heights = [v if v is not None else math.nan for v in vals]
        xs = x - 0.4 + width * (i + 0.5)
        for xpos, v in zip(xs, vals):
            if v is None:
                ax.text(xpos, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.bar(
            xs,
            heights,
            width,
            label=f"{_label(name)} (n={reports[name].n_pairs})",
            color=cmap(i % cmap.N),
        )
    ax.set_xticks(x, metrics, rotation=30, ha="right")
    ax.set_ylabel("score")
    lo = min(0.0, *(reports[n].scores.get(m) or 0.0 for n in names for m in metrics))
    ax.set_ylim(lo, 1.0)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format="png")
    return out


def format_table(reports: Mapping[str, MetricReport], *, digits: int = 4) -> Table:
    """A rich Table: one row per metric, one column per prediction set; best value bold."""
    from rich.table import Table

    names = list(reports)
    table = Table(title="seqchat eval", show_lines=False)
    table.add_column("metric", style="cyan", no_wrap=True)
    for name in names:
        table.add_column(_label(name), justify="right")
    table.add_row("pairs", *(str(reports[n].n_pairs) for n in names), end_section=True)
    for metric in METRIC_KEYS:
        vals = [reports[n].scores.get(metric) for n in names]
        present = [v for v in vals if v is not None]
        best = max(present) if len(present) > 1 else None
        cells = []
        for v in vals:
            if v is None:
                cells.append("[dim]n/a[/dim]")
            elif best is not None and v == best:
                cells.append(f"[bold]{v:.{digits}f}[/bold]")
            else:
                cells.append(f"{v:.{digits}f}")
        table.add_row(metric, *cells)
    return table
