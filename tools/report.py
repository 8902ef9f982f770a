#!/usr/bin/env python3
"""envoy-presign's period report (the plan's daily performance report, weekly usage
statistics and monthly trend analysis), per origin, from a Prometheus that scrapes Envoy.

    tools/report.py --prometheus http://prometheus:9090 --period week [--end 2026-11-29] --out reports

A period is a day, a week (7 days) or a month (30 days, so that two months compare) ending at
--end, a midnight UTC (default: the last one). For each origin with traffic in it, the report
gives the measures of report_queries.MEASURES, the change against the previous period of the
same length (REGRESSION where it crosses a measure's threshold), the alerts that fired, and a
PNG of the trends (report_charts). Writes <out>/<period>-<end>/report.md, report.json (the same
numbers, for machines and tests) and one PNG per origin.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_queries import ALERT_MINUTES, MEASURES, ORIGINS, BY_KEY, CHARTS, Prometheus, fill  # noqa: E402

DAY = 86400
PERIODS = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY}
# Chart resolution: points per period.
STEPS = {"day": 3600, "week": 3 * 3600, "month": DAY}


def last_midnight(now: float | None = None) -> int:
    return int(now if now is not None else time.time()) // DAY * DAY


def measure_origin(prom: Prometheus, origin: str, end: int, seconds: int) -> dict:
    """The origin's numbers for the period ending at ``end`` and the one before it."""
    rows = {}
    for m in MEASURES:
        now = prom.value(m.query(origin, seconds), end)
        before = prom.value(m.query(origin, seconds), end - seconds)
        rows[m.key] = {"now": now, "before": before, "regression": m.regressed(now, before)}
    alerts = {}
    for at, slot in ((end, "now"), (end - seconds, "before")):
        for labels, minutes in prom.instant(fill(ALERT_MINUTES, origin, seconds), at):
            entry = alerts.setdefault(labels["alertname"], {"severity": labels.get("severity", ""),
                                                            "now": 0, "before": 0})
            entry[slot] = int(minutes)
    return {"measures": rows, "alerts": alerts}


def chart_points(prom: Prometheus, origin: str, start: int, end: int, step: int) -> dict:
    keys = {k for keys in CHARTS.values() for k in keys}
    return {k: prom.series(BY_KEY[k].query(origin, step), start + step, end, step) for k in sorted(keys)}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.2f} %"
    if unit in ("ms", "us"):
        return f"{value:.1f} {unit.replace('us', 'µs')}"
    if unit == "/min":
        return f"{value:.1f}/min"
    return f"{value:,.0f}" + (f" {unit}" if unit not in ("requests", "keys") else "")


def _change(row: dict, unit: str, relative: bool) -> str:
    now, before = row["now"], row["before"]
    if now is None or before is None:
        return "n/a"
    if unit == "%":
        text = f"{(now - before) * 100:+.2f} pts"
    elif before:
        text = f"{(now - before) / before * 100:+.1f} %"
    else:
        text = "new" if now else "±0"
    return f"**{text} REGRESSION**" if row["regression"] else text


def markdown(period: str, start: int, end: int, origins: dict) -> str:
    day = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")  # noqa: E731
    lines = [f"# envoy-presign {period} report: {day(start)} to {day(end)} (UTC, end excluded)", "",
             f"Compared with the {period} before ({day(2 * start - end)} to {day(start)}). "
             "REGRESSION marks a change past its threshold (tools/report_queries.py).", ""]
    flagged = [(o, BY_KEY[k].title) for o, data in origins.items()
               for k, row in data["measures"].items() if row["regression"]]
    lines += ["## Regressions", ""]
    lines += [f"- {o}: {title}" for o, title in flagged] or ["- none"]
    for origin, data in origins.items():
        lines += ["", f"## {origin}", "", f"![{origin}]({data['chart']})", "",
                  "| measure | this period | previous | change |", "|---|---|---|---|"]
        for m in MEASURES:
            row = data["measures"][m.key]
            lines.append(f"| {m.title} | {_fmt(row['now'], m.unit)} | {_fmt(row['before'], m.unit)} | "
                         f"{_change(row, m.unit, m.relative)} |")
        lines += ["", "Alerts that fired (minutes firing):", ""]
        if data["alerts"]:
            lines += ["| alert | severity | this period | previous |", "|---|---|---|---|"]
            lines += [f"| {name} | {a['severity']} | {a['now']} | {a['before']} |"
                      for name, a in sorted(data["alerts"].items())]
        else:
            lines.append("none")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--period", choices=PERIODS, default="week")
    parser.add_argument("--end", help="YYYY-MM-DD, the first day not in the report (default: today, UTC)")
    parser.add_argument("--out", default="reports", help="directory for <period>-<end>/")
    args = parser.parse_args(argv)

    seconds = PERIODS[args.period]
    end = (int(datetime.strptime(args.end, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())
           if args.end else last_midnight())
    start = end - seconds
    prom = Prometheus(args.prometheus)
    out = Path(args.out) / f"{args.period}-{datetime.fromtimestamp(end, timezone.utc):%Y-%m-%d}"
    out.mkdir(parents=True, exist_ok=True)

    from report_charts import draw  # matplotlib is slow to import: only when writing

    origins = {}
    for labels, _ in sorted(prom.instant(fill(ORIGINS, "", seconds), end), key=lambda r: r[0]["origin"]):
        origin = labels["origin"]
        data = measure_origin(prom, origin, end, seconds)
        step = STEPS[args.period]
        chart = f"{origin}.png"
        draw(out / chart, origin, args.period, chart_points(prom, origin, start, end, step),
             chart_points(prom, origin, start - seconds, start, step), seconds)
        origins[origin] = {**data, "chart": chart}
    (out / "report.json").write_text(json.dumps(
        {"period": args.period, "start": start, "end": end, "origins": origins}, indent=1, sort_keys=True) + "\n")
    (out / "report.md").write_text(markdown(args.period, start, end, origins))
    print(out / "report.md")
    return out


if __name__ == "__main__":
    main()
