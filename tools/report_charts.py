"""The report's pictures: one PNG per origin, a panel per group of measures, the period in
solid lines and the previous period, shifted onto it, dashed (a trend reads at a glance)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from report_queries import BY_KEY, CHARTS  # noqa: E402

Points = list[tuple[int, float]]


def _scale(key: str) -> float:
    return 100.0 if BY_KEY[key].unit == "%" else 1.0


def draw(path: Path, origin: str, period: str, current: dict[str, Points], previous: dict[str, Points],
         shift: int) -> None:
    """``current`` and ``previous``: points per measure key; ``shift``: the period in seconds."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 5.6), dpi=72, sharex=True)
    for ax, (title, keys) in zip(axes.flat, CHARTS.items()):
        for n, key in enumerate(keys):
            color = f"C{n}"
            for points, style, offset, suffix in ((current.get(key, []), "-", 0, ""),
                                                  (previous.get(key, []), "--", shift, " (previous)")):
                if points:
                    ax.plot([datetime.fromtimestamp(t + offset, timezone.utc) for t, _ in points],
                            [v * _scale(key) for _, v in points], style, color=color, linewidth=1.2,
                            label=BY_KEY[key].title + suffix if not suffix or n == 0 else None)
        ax.set_title(title + (" (%)" if BY_KEY[keys[0]].unit == "%" else ""), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M" if period == "day" else "%m-%d"))
    fig.suptitle(f"{origin}: the {period} (solid) and the {period} before (dashed)", fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, pil_kwargs={"optimize": True})
    plt.close(fig)
