"""The report on a real Prometheus holding 35 days of synthetic history (history.py),
backfilled with `promtool tsdb create-blocks-from openmetrics`: its numbers must be the ones
the generator put in, its planted regression (media's last week) flagged and nothing else;
and every query of the dashboard's history and anomaly rows must return data there (the
anomaly rows read recording rules, backfilled with `promtool tsdb create-blocks-from rules`
in the order they depend on each other)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from conftest import require

import history as h
import report
from promstack import PROMETHEUS_DIR, Prometheus, dashboard_queries, recorded_names

END = int(time.time()) // h.DAY * h.DAY  # the last midnight UTC: the history's end
HISTORY_ROWS = {"Historical trends", "Anomaly signals"}
# The anomaly chain of rules.yml, each step read by the next, and the period rules:
# (records, backfilled window).
ANOMALY_PASSES = [
    (["origin_signal:envoy_presign_anomaly:value30m", "origin:envoy_presign_origin_ttfb_ms:p95_rate1d",
      "origin:envoy_presign_cache_hit:ratio_rate1d"], 2 * h.DAY + 3600),
    (["origin_signal:envoy_presign_anomaly:baseline30m"], h.DAY + 3600),
    (["origin_signal:envoy_presign_anomaly:deviation30m", "origin_signal:envoy_presign_anomaly:min_spread30m"],
     h.DAY + 3600),
    (["origin_signal:envoy_presign_anomaly:zscore30m"], 1800),
]


def promtool(*args: str) -> None:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def backfill_rules(prom: Prometheus, work: Path, records: list[str], seconds: int) -> None:
    """Backfill ``records`` (their rules only) over the last ``seconds`` of the history from
    ``prom``, then restart it on the new blocks (it reads blocks at startup). Every minute:
    promtool offsets a group's evaluations within the interval (as Prometheus does), and an
    instant query at the history's end sees only the last 5 minutes; to 5 minutes past the
    end, as far as an instant selector still sees the last 10-minute sample."""
    rules = [r for g in yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
             for r in g["rules"] if r.get("record") in records]
    rules_file, out = work / "backfill-rules.yml", work / "rule-blocks"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "backfill", "rules": rules}]}))
    promtool("tsdb", "create-blocks-from", "rules", f"--url={prom.url('')}", f"--start={END - seconds}",
             f"--end={END + 300}", "--eval-interval=1m", f"--output-dir={out}", "-q", str(rules_file))
    prom.stop()
    for block in out.iterdir():
        block.rename(prom.data_dir / block.name)
    prom.start()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The history, backfilled into a data dir (about 36 promtool runs, 2 at a time)."""
    work = tmp_path_factory.mktemp("history")
    history = h.History(END)
    files = history.write(work)
    data = work / "data"
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda f: promtool("tsdb", "create-blocks-from", "openmetrics", "-q", str(f), str(data)),
                      files))
    for f in files:
        f.unlink()
    return history, work, data


@pytest.fixture(scope="module")
def prometheus(generated):
    history, work, data = generated
    prom = Prometheus(work, require("prometheus", "prometheus"), targets=[], data_dir=data)
    prom.start()
    try:
        for records, seconds in ANOMALY_PASSES:
            backfill_rules(prom, work, records, seconds)
        yield prom
    finally:
        prom.stop()


@pytest.fixture(scope="module")
def week_report(prometheus, generated, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    end = datetime.fromtimestamp(END, timezone.utc).strftime("%Y-%m-%d")
    directory = report.main(["--prometheus", prometheus.url(""), "--period", "week", "--end", end,
                             "--out", str(out)])
    sample = os.environ.get("ENVOY_PRESIGN_SAMPLE_REPORT")  # README.md's sample: docs/sample-report
    if sample:
        shutil.rmtree(sample, ignore_errors=True)
        shutil.copytree(directory, sample)
    return directory, json.loads((directory / "report.json").read_text())


def expected(history: h.History, origin: str, start: int, end: int) -> dict[str, float | None]:
    """The report's measures, from what the generator put in (definitions of README.md)."""
    t = history.totals(origin, start, end)
    if not t:
        return {}

    def total(name: str, **labels: str) -> float:
        return sum(v for k, v in t.items() if k[0] == name and all((l, x) in k[1:] for l, x in labels.items()))

    hits = total("envoy_presign_cache_hits") + total("envoy_presign_cache_refreshes")
    lookups = hits + total("envoy_presign_cache_misses")
    signed, errors = total("envoy_presign_urls_signed"), total("envoy_presign_sign_errors")
    origin_requests = total("envoy_presign_origin_requests")
    regressed = history.regressed(origin, end)
    ttfb = h.TTFB_REGRESSED if regressed else h.TTFB_NORMAL
    numbers = {
        "requests": total("envoy_presign_requests"),
        "hit_rate": hits / lookups,
        "refresh_rate": total("envoy_presign_cache_refreshes") / hits,
        "sign_error_rate": errors / (signed + errors),
        "origin_5xx_rate": total("envoy_presign_origin_requests", code="503") / origin_requests,
        "kv_error_rate": total("envoy_presign_store_ops", op="get_error") / total("envoy_presign_store_ops"),
        "fallback_rate": total("envoy_presign_requests", outcome="fallback") / total("envoy_presign_requests"),
        "e2e_avg": total("envoy_presign_origin_ttfb_ms_sum") / total("envoy_presign_origin_ttfb_ms_count"),
        "signatures_per_min": signed / ((end - start) / 60),
        "cache_bytes_peak": history.peak_gauge(origin, "envoy_presign_cache_bytes", start, end),
        "cache_entries_peak": history.peak_gauge(origin, "envoy_presign_cache_entries", start, end),
    }
    for q in (0.5, 0.95, 0.99):
        numbers[f"e2e_p{int(q * 100)}"] = h.quantile_of(h.TTFB_BOUNDS_MS, ttfb, q)
        numbers[f"sign_p{int(q * 100)}"] = h.quantile_of(h.SIGN_BOUNDS_US, h.SIGN_SHAPE, q)
    return numbers


def test_history_is_35_days(prometheus, generated):
    history = generated[0]
    first = prometheus.query('min(timestamp(envoy_presign_requests{origin="media",outcome="hit"}))',
                             time=history.start + 300)
    assert first and first[0][1] == history.start
    assert history.end - history.start == 35 * h.DAY


def test_report_numbers_are_the_generators(week_report, generated):
    history = generated[0]
    directory, data = week_report
    assert sorted(data["origins"]) == ["fresh", "media", "thumbs"]
    start = END - 7 * h.DAY
    for origin, got in data["origins"].items():
        for slot, (a, b) in (("now", (start, END)), ("before", (start - 7 * h.DAY, start))):
            want = expected(history, origin, a, b)
            measures = {k: v[slot] for k, v in got["measures"].items()}
            if not want:  # "fresh" has no previous week
                assert set(measures.values()) == {None}, (origin, slot, measures)
                continue
            assert set(measures) == set(want), (origin, set(measures) ^ set(want))
            wrong = {k: (measures[k], want[k]) for k in want
                     if measures[k] is None or not math.isclose(measures[k], want[k], rel_tol=1e-9, abs_tol=1e-12)}
            assert not wrong, f"{origin} {slot}: (report, generator) {wrong}"
            alerts = {name: a[slot] for name, a in got["alerts"].items() if a[slot]}
            assert alerts == history.alert_minutes(origin, a, b), (origin, slot)
        assert (directory / got["chart"]).stat().st_size > 10_000, f"{origin}: chart missing or empty"


def test_planted_regression_is_flagged_and_nothing_else(week_report):
    directory, data = week_report
    flagged = sorted((o, k) for o, d in data["origins"].items() for k, row in d["measures"].items()
                     if row["regression"])
    # media's last week: hit rate 90/98 -> 80/98, 5xx 2 -> 6 per busy sample, first bytes later.
    assert flagged == [("media", k) for k in
                       ("e2e_avg", "e2e_p50", "e2e_p95", "e2e_p99", "hit_rate", "origin_5xx_rate")]
    text = (directory / "report.md").read_text()
    assert "| End-to-end p95 (to first byte) | 100.0 ms | 50.0 ms | **+100.0 % REGRESSION** |" in text
    assert "| Cache hit rate | 81.63 % | 91.84 % | **-10.20 pts REGRESSION** |" in text


def test_dashboard_history_and_anomaly_rows_have_data(prometheus):
    queries = dashboard_queries(rows=HISTORY_ROWS)
    assert len(queries) >= 10, queries
    empty = [f"{title}: {expr}" for title, expr in queries if not prometheus.query(expr, time=END)]
    assert not empty, "dashboard queries without data at the history's end:\n" + "\n".join(empty)
    # Every rule of the anomaly and period groups was backfilled (a rule the passes miss fails).
    groups = recorded_names("envoy_presign.anomaly", "envoy_presign.period")
    assert groups == {r for records, _ in ANOMALY_PASSES for r in records}
    empty = sorted(r for r in groups if not prometheus.query(r, time=END))
    assert not empty, empty
    # The anomaly chain reached its end: media's z-scores exist, and are small (the history
    # ends at midnight, a quiet hour that repeats every day).
    z = prometheus.query('origin_signal:envoy_presign_anomaly:zscore30m{origin="media"}', time=END)
    assert {labels["signal"] for labels, _ in z} == {"traffic", "latency", "errors"}, z
