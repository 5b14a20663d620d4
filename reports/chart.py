"""The trend chart: the main rates per period for a unit and its children (matplotlib)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: a file is drawn, whatever the environment

import matplotlib.pyplot as plt  # noqa: E402

from reports.metrics import RATE_BY_KEY  # noqa: E402
from reports.report import Trend  # noqa: E402

__all__ = ["CHARTED_RATES", "draw_trend"]

CHARTED_RATES = ("timely_acceptance", "on_schedule_completion", "satisfaction",
                 "one_time_resolution", "seven_day_reply", "three_month_settlement")


def draw_trend(trend: Trend, path: Path) -> Path:
    """One panel per rate, one line per unit; a period with nothing to measure is a gap."""
    labels = [p.label for p in trend.periods]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    for ax, key in zip(axes.flat, CHARTED_RATES, strict=True):
        rate = RATE_BY_KEY[key]
        measured = False
        for unit in trend.units:
            values = [figures[unit].rate(rate) for figures in trend.figures]
            measured = measured or any(v is not None for v in values)
            ys = [math.nan if v is None else 100 * v for v in values]
            style = {"linewidth": 2.5} if unit == trend.unit else {"linewidth": 1.2}
            ax.plot(labels, ys, marker="o", markersize=3, label=unit, **style)
        if not measured:
            ax.text(0.5, 0.5, "n/a: nothing to measure", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
        ax.set_title(rate.title)
        ax.set_ylim(-5, 105)
        ax.set_ylabel("%")
        ax.grid(True, alpha=0.3)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8)
    fig.suptitle(f"{trend.unit} and its units: assessment rates, {labels[0]} to {labels[-1]} "
                 "(petitions registered in each period)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
