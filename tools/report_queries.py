"""What the report measures: one PromQL query per number, over a whole period, from the raw
series Envoy serves (no recording rule, so the report also works on a Prometheus that never
loaded envoy/prometheus/rules.yml, or on history older than the rules). The definitions are
those of rules.yml (README.md, "Metrics"), over the period instead of 5 minutes."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass

# Loopback or not: never through an HTTP(S)_PROXY the environment may set for other tools.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Prometheus:
    """The two HTTP API calls the report needs."""

    def __init__(self, url: str, timeout: float = 60):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, **params) -> dict:
        with _HTTP.open(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=self.timeout) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def instant(self, expr: str, at: int) -> list[tuple[dict, float]]:
        data = self._get("/api/v1/query", query=expr, time=at)
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def value(self, expr: str, at: int) -> float | None:
        """The single value of ``expr`` at ``at``, None when it has none (or is NaN)."""
        result = self.instant(expr, at)
        if not result or result[0][1] != result[0][1]:
            return None
        return result[0][1]

    def series(self, expr: str, start: int, end: int, step: int) -> list[tuple[int, float]]:
        data = self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)
        values = data["result"][0]["values"] if data["result"] else []
        return [(int(t), float(v)) for t, v in values if v not in ("NaN", "+Inf", "-Inf")]


def fill(expr: str, origin: str, seconds: int) -> str:
    """``expr`` for one origin over a window of ``seconds`` ending at the query's time."""
    return expr.replace("$o", origin).replace("$minutes", f"{seconds / 60:g}").replace("$w", f"{seconds}s")


def _inc(metric: str, selector: str = "") -> str:
    """The increase of every series of ``metric`` of the origin over the window, summed."""
    return f'sum(increase({metric}{{origin="$o"{selector}}}[$w]))'


def _ratio(numerator: str, denominator: str) -> str:
    return f"({numerator}) / (({denominator}) > 0)"


def _quantile(q: float, histogram: str) -> str:
    return f'histogram_quantile({q}, sum by (le) (increase({histogram}_bucket{{origin="$o"}}[$w])))'


LOOKUPS = " + ".join(_inc(m) for m in ("envoy_presign_cache_hits", "envoy_presign_cache_refreshes",
                                       "envoy_presign_cache_misses"))
HITS = f'{_inc("envoy_presign_cache_hits")} + {_inc("envoy_presign_cache_refreshes")}'
ATTEMPTS = f'{_inc("envoy_presign_urls_signed")} + {_inc("envoy_presign_sign_errors")}'


@dataclass(frozen=True)
class Measure:
    """One number of the report. ``worse`` says when a change against the previous period is
    flagged as a regression: a rise (or, with ``lower_is_worse``, a drop) beyond ``by``,
    absolute for ratios (percentage points) or relative for everything else (``relative``)."""

    key: str
    title: str
    unit: str  # "%", "ms", "us", "/min", "B", "requests"
    expr: str  # $o: origin, $w: the window (the period)
    by: float | None = None
    relative: bool = False
    lower_is_worse: bool = False

    def query(self, origin: str, seconds: int) -> str:
        return fill(self.expr, origin, seconds)

    def regressed(self, now: float | None, before: float | None) -> bool:
        if self.by is None or now is None or before is None:
            return False
        change = (now - before) / before if self.relative and before else now - before
        return -change > self.by if self.lower_is_worse else change > self.by


# Thresholds of a regression: the plan's targets where it has one (errors 0.1 %), a fifth for
# latencies (as the informational alert EnvoyPresignLatencyRegression in rules.yml), 5 points
# for the cache ratios (the gap between the plan's hit-rate target, 90 %, and its warning, 85 %).
MEASURES = [
    Measure("requests", "Requests", "requests", _inc("envoy_presign_requests")),
    Measure("hit_rate", "Cache hit rate", "%", _ratio(HITS, LOOKUPS), by=0.05, lower_is_worse=True),
    Measure("refresh_rate", "URL refresh rate", "%",
            _ratio(_inc("envoy_presign_cache_refreshes"), HITS), by=0.05),
    Measure("sign_error_rate", "Signing error rate", "%",
            _ratio(_inc("envoy_presign_sign_errors"), ATTEMPTS), by=0.001),
    Measure("origin_5xx_rate", "Origin 5xx rate", "%",
            _ratio(_inc("envoy_presign_origin_requests", ',code=~"5.."'), _inc("envoy_presign_origin_requests")),
            by=0.001),
    Measure("kv_error_rate", "Shared-data (KV) error rate", "%",
            _ratio(_inc("envoy_presign_store_ops", ',op=~"get_error|set_error"'), _inc("envoy_presign_store_ops")),
            by=0.001),
    Measure("fallback_rate", "Fallback rate", "%",
            _ratio(_inc("envoy_presign_requests", ',outcome="fallback"'), _inc("envoy_presign_requests")),
            by=0.005),
    *(Measure(f"sign_p{int(q * 100)}", f"URL generation p{int(q * 100)}", "us",
              _quantile(q, "envoy_presign_sign_duration_us"), by=0.2, relative=True) for q in (0.5, 0.95, 0.99)),
    *(Measure(f"e2e_p{int(q * 100)}", f"End-to-end p{int(q * 100)} (to first byte)", "ms",
              _quantile(q, "envoy_presign_origin_ttfb_ms"), by=0.2, relative=True) for q in (0.5, 0.95, 0.99)),
    Measure("e2e_avg", "End-to-end average", "ms",
            _ratio(_inc("envoy_presign_origin_ttfb_ms_sum"), _inc("envoy_presign_origin_ttfb_ms_count")),
            by=0.2, relative=True),
    Measure("signatures_per_min", "Signatures per minute", "/min", f'{_inc("envoy_presign_urls_signed")} / $minutes'),
    Measure("cache_bytes_peak", "Cache size, peak", "B", 'sum(max_over_time(envoy_presign_cache_bytes{origin="$o"}[$w]))'),
    Measure("cache_entries_peak", "Live keys, peak", "keys",
            'sum(max_over_time(envoy_presign_cache_entries{origin="$o"}[$w]))'),
]

# Minutes each alert fired for the origin: one per minute that has a firing ALERTS sample
# (Prometheus writes one per rule evaluation), so the count does not depend on the interval.
ALERT_MINUTES = ('sum by (alertname, severity) (count_over_time(max_over_time('
                 'ALERTS{alertstate="firing",origin="$o"}[1m])[$w:1m]))')
ORIGINS = 'group by (origin) (max_over_time(envoy_presign_requests{origin!~"_unmatched|"}[$w]))'

# Charts: the same measures over each step of the period (the window is the step).
CHARTS = {
    "Cache": ["hit_rate", "refresh_rate"],
    "Errors": ["sign_error_rate", "origin_5xx_rate", "kv_error_rate", "fallback_rate"],
    "End-to-end latency (ms)": ["e2e_p50", "e2e_p95", "e2e_p99"],
    "URL generation (us) and signatures/min": ["sign_p95", "signatures_per_min"],
}
BY_KEY = {m.key: m for m in MEASURES}
