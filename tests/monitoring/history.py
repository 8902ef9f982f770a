"""Synthetic envoy-presign history: 35 days of the series Envoy serves, one sample every
10 minutes, written as OpenMetrics for `promtool tsdb create-blocks-from openmetrics`.

Every number is chosen so that the report's can be checked exactly: requests per sample are
multiples of 100 and split by whole percentages, and the latency histograms put exactly 50,
95 and 99 % of each sample's observations at or below a bucket bound, so the period's
p50/p95/p99 are those bounds (histogram_quantile lands on a bound when the rank equals the
bucket's count). A sample at time t holds what happened in (t - 10 min, t].

Origins:
- "media": 35 days; 300 requests per 10 minutes at night, 1200 from 06:00 to 18:00 UTC. In
  the last week (the REGRESSION) its hit rate, latency and 5xx get worse.
- "thumbs": 35 days, half of media's day traffic, no change.
- "fresh": only the last 3 days (no previous period to compare with).
ALERTS samples (one a minute, at :30 seconds, while firing) plant alerts in both weeks.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

STEP = 600  # seconds between samples
DAY = 86400
WEEK = 7 * DAY
DAYS = 35
INSTANCE = {"instance": "envoy-1:9901", "job": "envoy-presign"}

# Shares of a sample's requests, in %: hit, miss, refresh, fallback, denied.
NORMAL_SPLIT = {"hit": 85, "miss": 8, "refresh": 5, "fallback": 2, "denied": 0}
REGRESSED_SPLIT = {"hit": 75, "miss": 18, "refresh": 5, "fallback": 2, "denied": 0}

# Cumulative % of a sample's observations at or below each bound (the rest in +Inf).
TTFB_BOUNDS_MS = [10, 25, 50, 100, 150, 300, 500]
TTFB_NORMAL = [0, 50, 95, 99, 100, 100, 100]  # p50 25 ms, p95 50 ms, p99 100 ms
TTFB_REGRESSED = [0, 20, 80, 95, 99, 100, 100]  # p50 37.5 ms, p95 100 ms, p99 150 ms
SIGN_BOUNDS_US = [25, 50, 100, 250, 500, 1000]
SIGN_SHAPE = [0, 50, 95, 99, 100, 100]  # p50 50 us, p95 100 us, p99 250 us
TTFB_MEAN_MS = {False: 30, True: 55}  # sum / count, normal and regressed
SIGN_MEAN_US = 60


def quantile_of(bounds: list[float], cumulative_pct: list[int], q: float) -> float:
    """The quantile histogram_quantile gives for this shape (linear within a bucket)."""
    rank, lower, below = q * 100, 0.0, 0
    for bound, cum in zip(bounds, cumulative_pct):
        if cum >= rank:
            return lower + (bound - lower) * (rank - below) / (cum - below)
        lower, below = bound, cum
    raise ValueError("rank above the last finite bound")


@dataclass
class Alert:
    alertname: str
    severity: str
    origin: str
    start: int  # seconds after the history's start
    minutes: int
    extra: dict = field(default_factory=dict)


@dataclass
class History:
    """The generator, and what it put in (``totals``) for the test to compare with."""

    end: int  # unix seconds, a midnight UTC: the last sample's time

    def __post_init__(self) -> None:
        self.start = self.end - DAYS * DAY
        self.origins = {"media": self.start, "thumbs": self.start, "fresh": self.end - 3 * DAY}
        self.regression_start = self.end - WEEK
        self.alerts = [
            Alert("EnvoyPresignLatencyAnomaly", "warning", "media", DAYS * DAY - 5 * DAY + 12 * 3600, 180,
                  {"signal": "latency"}),
            Alert("EnvoyPresignLowHitRate", "warning", "media", DAYS * DAY - 3 * DAY + 9 * 3600, 120),
            Alert("EnvoyPresignTrafficAnomaly", "warning", "thumbs", DAYS * DAY - 10 * DAY + 14 * 3600, 60,
                  {"signal": "traffic"}),
        ]

    # --- What one sample holds ---------------------------------------------------------
    def regressed(self, origin: str, t: int) -> bool:
        return origin == "media" and t - STEP >= self.regression_start

    def increments(self, origin: str, t: int) -> dict[tuple, float]:
        """Counter increments of the sample at ``t`` (the 10 minutes before it)."""
        hour = ((t - STEP) % DAY) // 3600
        daytime = 6 <= hour < 18
        requests = (1200 if daytime else 300) // (2 if origin == "thumbs" and daytime else 1)
        bad = self.regressed(origin, t)
        split = {k: requests * pct // 100 for k, pct in (REGRESSED_SPLIT if bad else NORMAL_SPLIT).items()}
        sign_errors = 1 if daytime and origin == "media" else 0
        origin_5xx = (6 if bad else 2) if daytime else 0
        forwarded = requests - split["denied"]
        sign_count = requests // 3
        inc: dict[tuple, float] = {}
        for outcome, n in split.items():
            inc[("envoy_presign_requests", ("outcome", outcome))] = n
        inc[("envoy_presign_cache_hits",)] = split["hit"]
        inc[("envoy_presign_cache_misses",)] = split["miss"]
        inc[("envoy_presign_cache_refreshes",)] = split["refresh"]
        inc[("envoy_presign_urls_signed",)] = split["miss"] + split["refresh"] - sign_errors
        inc[("envoy_presign_sign_errors", ("category", "signer"))] = sign_errors
        inc[("envoy_presign_store_ops", ("op", "get_ok"))] = split["hit"] + split["miss"] + split["refresh"]
        inc[("envoy_presign_store_ops", ("op", "get_error"))] = 0
        inc[("envoy_presign_store_ops", ("op", "set_ok"))] = split["miss"] + split["refresh"]
        inc[("envoy_presign_origin_requests", ("code", "200"), ("flags", "-"))] = forwarded - origin_5xx
        inc[("envoy_presign_origin_requests", ("code", "503"), ("flags", "-"))] = origin_5xx
        self._histogram(inc, "envoy_presign_origin_ttfb_ms", TTFB_BOUNDS_MS,
                        TTFB_REGRESSED if bad else TTFB_NORMAL, forwarded, TTFB_MEAN_MS[bad])
        self._histogram(inc, "envoy_presign_sign_duration_us", SIGN_BOUNDS_US, SIGN_SHAPE, sign_count,
                        SIGN_MEAN_US)
        return inc

    @staticmethod
    def _histogram(inc: dict, name: str, bounds: list, shape: list, count: int, mean: float) -> None:
        for bound, pct in zip(bounds, shape):
            inc[(f"{name}_bucket", ("le", str(bound)))] = count * pct // 100
        inc[(f"{name}_bucket", ("le", "+Inf"))] = count
        inc[(f"{name}_count",)] = count
        inc[(f"{name}_sum",)] = count * mean

    @staticmethod
    def gauges(origin: str, t: int) -> dict[tuple, float]:
        entries = 5000 if 6 <= (t % DAY) // 3600 < 18 else 2000
        return {("envoy_presign_cache_entries",): entries, ("envoy_presign_cache_bytes",): 400 * entries,
                ("envoy_presign_cache_capacity",): 10000}

    def times(self, origin: str) -> range:
        return range(self.origins[origin], self.end + 1, STEP)

    # --- What the test compares with ------------------------------------------------------
    def totals(self, origin: str, start: int, end: int) -> dict[tuple, float]:
        """Sum of the increments of the samples in (start, end]."""
        sums: dict[tuple, float] = defaultdict(float)
        for t in self.times(origin):
            if start < t <= end and t > self.origins[origin]:
                for key, value in self.increments(origin, t).items():
                    sums[key] += value
        return sums

    def peak_gauge(self, origin: str, name: str, start: int, end: int) -> float:
        return max(self.gauges(origin, t)[(name,)] for t in self.times(origin) if start <= t <= end)

    def alert_minutes(self, origin: str, start: int, end: int) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for alert in self.alerts:
            for minute in range(alert.minutes):
                if alert.origin == origin and start < self.start + alert.start + minute * 60 + 30 <= end:
                    out[alert.alertname] += 1
        return dict(out)

    # --- OpenMetrics ----------------------------------------------------------------------
    def write(self, directory: Path) -> list[Path]:
        """One OpenMetrics file per day, series by series (promtool wants each series' samples
        in time order). promtool 2.42 re-reads its whole input for every 2-hour block it
        writes, so one file of 35 days would be read 420 times: a day per file is read 12
        times. Every value is a whole number, written exactly."""
        days: dict[int, list[str]] = defaultdict(list)
        for origin, first in self.origins.items():
            labels = {"origin": origin, **INSTANCE}
            columns: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
            totals: dict[tuple, float] = defaultdict(float)
            for t in self.times(origin):
                if t > first:
                    for key, value in self.increments(origin, t).items():
                        totals[key] += value
                else:  # the first sample: every counter at 0
                    totals.update(dict.fromkeys(self.increments(origin, t + STEP), 0))
                for key, value in (*totals.items(), *self.gauges(origin, t).items()):
                    columns[key].append((t, value))
            for key, samples in columns.items():
                prefix = f"{key[0]}{{{_labels({**labels, **dict(key[1:])})}}} "
                for t, value in samples:
                    days[self._day(t)].append(f"{prefix}{value:.0f} {t}\n")
        for alert in self.alerts:
            text = _labels({"alertname": alert.alertname, "alertstate": "firing", "origin": alert.origin,
                            "severity": alert.severity, **alert.extra, **INSTANCE})
            for minute in range(alert.minutes):
                t = self.start + alert.start + minute * 60 + 30
                days[self._day(t)].append(f"ALERTS{{{text}}} 1 {t}\n")
        paths = []
        for day, lines in sorted(days.items()):
            path = directory / f"history-{day:02d}.om"
            path.write_text("".join(lines) + "# EOF\n")
            paths.append(path)
        return paths

    def _day(self, t: int) -> int:
        return (t - self.start) // DAY


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
