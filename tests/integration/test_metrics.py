"""The monitoring plan as Envoy native stats, end to end.

Three fresh Envoys get a known traffic pattern: one signs (cache scanned every second), one
has no credentials (``on_error: deny`` on /media/, ``passthrough`` on /open/), one signs for
an origin ("slow") that holds some requests: a client gives up on one, the route timeout ends
another. Their admin ``/stats/prometheus`` must then show exactly the counters and histogram
sample counts the pattern implies, the filter's and those Envoy keeps of each origin (its
stats access logger: requests by code and flags, time to first byte). A real Prometheus
(Debian's ``prometheus``), started before the traffic and scraping the Envoys every second
with ``envoy/prometheus/rules.yml``, must give every recording rule and every query of
``envoy/grafana/envoy-presign.json`` data, the hit rate the traffic implies, and exactly the
expected pending alerts: the abandoned and timed-out requests make the latency alert pend.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass

import pytest
from conftest import ACCESS_KEY, SECRET_KEY, StubOrigin, clear_of_window_boundary, poll

from promstack import PROMETHEUS_RECORDING_GROUP, Prometheus, dashboard_queries, http_get, recorded_names
from stack import Envoy, env_credentials, filter_config, origin_config, raw_request

# Dashboard rows that need days of history (offset 1d, 1w): proven on 35 backfilled days
# by tests/monitoring/test_report.py instead.
HISTORY_ROWS = {"Historical trends", "Anomaly signals"}
# The rotating credentials' row: these Envoys have static keys, which define none of its
# series; tests/integration/test_credential_monitoring.py checks it on a rotating Envoy.
CREDENTIAL_ROWS = {"Credentials"}

K, M = 5, 4  # distinct keys, GETs of each
KEYS = [f"metrics/key-{i}.txt" for i in range(K)]
MISSING_KEY = "metrics/missing.txt"
CAPACITY = 10_000  # cache.max_entries (the default), published as cache_capacity

# ---------------------------------------------------------------------------
# Envoy's /stats/prometheus
# ---------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = tuple[str, frozenset]  # (name, {(label, value)})


def series(name: str, **labels: str) -> Series:
    return name, frozenset(labels.items())


def scrape(envoy: Envoy) -> dict[Series, float]:
    """The filter's samples from Envoy's admin /stats/prometheus, by name and labels."""
    text = http_get(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus")
    samples: dict[Series, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1).startswith("envoy_presign_"):
            labels = frozenset(_LABEL.findall(match.group(2)))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def counters_and_counts(samples: dict[Series, float]) -> dict[Series, float]:
    """Counters and histogram sample counts: what a traffic pattern determines exactly
    (gauges come from the periodic scan, bucket and sum values from timing)."""
    gauges = ("envoy_presign_cache_entries", "envoy_presign_cache_bytes", "envoy_presign_cache_capacity")
    return {key: value for key, value in samples.items()
            if key[0] not in gauges and not key[0].endswith(("_bucket", "_sum"))}


def expect_exactly(samples: dict[Series, float], nonzero: dict[Series, float]) -> dict[Series, float]:
    """``samples`` with every value 0 except ``nonzero`` (which must all exist)."""
    missing = set(nonzero) - set(samples)
    assert not missing, f"series not in /stats/prometheus: {sorted(missing)}"
    return {key: nonzero.get(key, 0.0) for key in samples}


def describe_diff(got: dict[Series, float], want: dict[Series, float]) -> str:
    def show(key: Series) -> str:
        return key[0] + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(key[1])) + "}"
    return "\n".join(f"  {show(k)}: got {got.get(k)}, want {want.get(k)}"
                     for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))


def wait_for_stats(envoy: Envoy, nonzero: dict[Series, float], timeout: float = 20.0) -> dict[Series, float]:
    """Poll until the counters and histogram counts are exactly ``nonzero`` (others 0).

    Counters reach Envoy on the filter's next tick (1 s: they are batched per worker),
    histogram samples on Envoy's next stats flush (5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(envoy)
        got = counters_and_counts(samples)
        want = expect_exactly(got, nonzero)
        if got == want:
            return samples
        if time.monotonic() > deadline:
            pytest.fail("Envoy's stats never matched the traffic sent:\n" + describe_diff(got, want))
        time.sleep(0.25)


# ---------------------------------------------------------------------------
# Fixtures: two Envoys, Prometheus (when installed), then the traffic
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing_envoy(start_envoy, seaweedfs):
    """Env credentials, the cache on, its size scanned every second."""
    clear_of_window_boundary(180)  # the module counts signatures exactly: no refresh in it
    client = seaweedfs.client()
    for key in KEYS:
        client.put_object(Bucket=seaweedfs.bucket, Key=key, Body=f"body of {key}".encode())
    config = filter_config(seaweedfs.s3_port)
    # Every hit reads shared data (no per-worker copy), so store_ops are exact; every
    # request's time in the filter is recorded, so its sample count is exact.
    config["cache"] = {"scan_interval": 1, "local_entries": 0}
    config["metrics"] = EVERY_REQUEST_TIMED
    envoy = start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY))
    yield envoy
    envoy.stop()  # now, not at session end: its scan runs every second


@pytest.fixture(scope="module")
def unsigned_envoy(start_envoy, seaweedfs):
    """No credentials: /media/ denies (503), /open/ forwards unsigned (fallback)."""
    config = filter_config(seaweedfs.s3_port)
    config["origins"].append(origin_config(seaweedfs.s3_port, name="open", match={"prefix": "/open/"},
                                           strip_prefix="/open/", on_error="passthrough"))
    config["metrics"] = EVERY_REQUEST_TIMED
    envoy = start_envoy(config, env={})
    # Before Prometheus scrapes: Envoy creates a per-code counter at its first count, and
    # rate() cannot see a counter's first count (see prime_slow_envoy).
    assert raw_request(envoy.port, "GET", f"/open/{KEYS[0]}").status == 403
    yield envoy
    envoy.stop()


SLOW_ORIGIN_OBJECTS = {"fast.txt": b"fast", "held/abandoned.txt": b"never sent", "held/timeout.txt": b"never sent"}
SLOW_ROUTE_IDLE_TIMEOUT = "1s"


@pytest.fixture(scope="module")
def slow_origin():
    """A stand-in origin that holds every key under held/ until the client goes away."""
    with StubOrigin(SLOW_ORIGIN_OBJECTS, hold_prefix="held/") as stub:
        yield stub


@pytest.fixture(scope="module")
def slow_envoy(start_envoy, slow_origin):
    """Origin "slow" (cluster "slow"), a 1 s route idle timeout, env credentials."""
    config = filter_config(slow_origin.port, name="slow")
    config["cache"] = {"local_entries": 0}
    config["metrics"] = EVERY_REQUEST_TIMED
    envoy = start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY), origin_port=slow_origin.port,
                        extra_substitutions={"ROUTE_IDLE_TIMEOUT": SLOW_ROUTE_IDLE_TIMEOUT})
    slow_requests(envoy, slow_origin, fast=1)
    # Histograms reach /stats/prometheus at Envoy's stats flush (5 s): wait for this one,
    # so Prometheus's first scrape has it too.
    ttfb = series("envoy_presign_origin_ttfb_ms_count", origin="slow")
    assert poll(lambda: scrape(envoy).get(ttfb), lambda n: n == 1, timeout=15) == 1
    yield envoy
    envoy.stop()


def slow_requests(envoy: Envoy, origin: StubOrigin, fast: int) -> None:
    """``fast`` GETs the origin answers, one it holds until the client gives up (Envoy then
    answers nobody: code 0, flag DC), one it holds until the route's idle timeout (504, flag SI).

    The slow Envoy gets them once before Prometheus first scrapes it: Envoy's stats access
    logger creates a counter per code and flags at its first count, which rate() cannot see
    (no earlier sample), so the rules' rates start from the second."""
    for _ in range(fast):
        assert raw_request(envoy.port, "GET", "/media/fast.txt").status == 200
    held, cancelled = origin.count("held"), origin.count("cancelled")
    with socket.create_connection(("127.0.0.1", envoy.port), timeout=5) as sock:
        sock.sendall(b"GET /media/held/abandoned.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert poll(lambda: origin.count("held"), lambda n: n == held + 1) == held + 1
    assert poll(lambda: origin.count("cancelled"), lambda n: n == cancelled + 1) == cancelled + 1, \
        "Envoy kept the abandoned request open"
    resp = raw_request(envoy.port, "GET", "/media/held/timeout.txt")
    assert resp.status == 504, resp


@dataclass(frozen=True)
class Unavailable:
    reason: str
    installed: bool


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, signing_envoy, unsigned_envoy, slow_envoy):
    """A Prometheus that has scraped both Envoys before any traffic; or, when it is not
    installed or does not start, the reason (the Prometheus test reports it, the exact
    counters test runs anyway)."""
    binary = shutil.which("prometheus")
    if binary is None:
        yield Unavailable("Debian's `prometheus` is not installed (`make setup` installs it)", installed=False)
        return
    targets = [f"127.0.0.1:{e.admin_port}" for e in (signing_envoy, unsigned_envoy, slow_envoy)]
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), binary, targets)
    try:
        prom.start()
        # Both targets up, and a first sample of every counter taken while it is 0: rate()
        # then needs no extrapolation at the start of the window, and ratios are exact.
        prom.wait_until("every Envoy scraped", lambda: len(prom.query(
            'count by (instance) (envoy_presign_requests{job="envoy-presign"})')) == len(targets))
    except Exception as error:  # noqa: BLE001 - reported by test_prometheus_rules_and_dashboard
        prom.stop()
        yield Unavailable(f"Prometheus did not start: {error}", installed=True)
        return
    yield prom
    prom.stop()


@pytest.fixture(scope="module")
def traffic(signing_envoy, unsigned_envoy, slow_envoy, slow_origin, prometheus):
    """Sends the pattern, checking each answer; returns nothing, the tests know it."""
    def get(envoy, path, expected, method="GET", headers=None):
        resp = raw_request(envoy.port, method, path, headers=headers)
        assert expected is None or resp.status == expected, \
            f"{method} {path} -> {resp.status} {resp.headers.get('x-presign-error', '')} {resp.body[:200]!r}"
        return resp

    # Sequential, so every first GET of a key is the miss and the others hit.
    for _ in range(M):
        for key in KEYS:
            get(signing_envoy, f"/media/{key}", 200)
    get(signing_envoy, f"/media/{KEYS[0]}", 405, method="POST")
    get(signing_envoy, "/media/a%zz", 400)
    get(signing_envoy, f"/media/{KEYS[0]}?response-content-type=text%2Fhtml", 400)  # not allowed
    get(signing_envoy, f"/media/{MISSING_KEY}", 404)
    resp = get(signing_envoy, "/elsewhere/x", None)  # no origin: bypass, unsigned
    assert "x-presign-error" not in resp.headers
    get(signing_envoy, f"/media/{KEYS[0]}?X-Amz-Signature=forged", 200,
        headers={"Authorization": "AWS4-HMAC-SHA256 Credential=forged"})

    for _ in range(2):
        get(unsigned_envoy, f"/media/{KEYS[0]}", 503)
    get(unsigned_envoy, f"/open/{KEYS[0]}", 403)  # unsigned fallback, refused by the origin

    slow_requests(slow_envoy, slow_origin, fast=SLOW_FAST)


# Requests of the signing Envoy's pattern, per outcome.
HITS = K * (M - 1) + 1  # + the request whose forged signature and Authorization were stripped
MISSES = K + 1  # + the missing key (signed, then 404 at the origin)
DENIED = 3  # POST (405), bad escape (400), a response override the origin does not allow (400)
FORWARDED = HITS + MISSES
# The slow Envoy's: once before the scrapes, then in the traffic, fast GETs of one key and
# the two held keys; the first round's three requests signed (misses), the rest hit.
SLOW_FAST = 20
SLOW_MISSES = 3
SLOW_HITS = SLOW_FAST + 2
# Time in the filter of every request, so its sample counts are exact (the default is 1 in 16).
EVERY_REQUEST_TIMED = {"latency_sample_every": 1}


def signing_expected() -> dict[Series, float]:
    media = {"origin": "media"}
    return {
        series("envoy_presign_requests", outcome="hit", **media): HITS,
        series("envoy_presign_requests", outcome="miss", **media): MISSES,
        series("envoy_presign_requests", outcome="denied", **media): DENIED,
        series("envoy_presign_requests", origin="_unmatched", outcome="bypass"): 1,
        series("envoy_presign_cache_hits", **media): HITS,
        series("envoy_presign_cache_misses", **media): MISSES,
        series("envoy_presign_urls_signed", **media): MISSES,
        series("envoy_presign_store_ops", op="get_ok", **media): HITS + MISSES,
        series("envoy_presign_store_ops", op="set_ok", **media): MISSES,
        series("envoy_presign_auth_stripped", **media): 2,
        series("envoy_presign_overrides_refused", category="override_not_allowed", **media): 1,
        # Envoy's own, per origin cluster: the origin's answers (the missing key's 404
        # included: its body is replaced, its status and first byte are the origin's) ...
        series("envoy_presign_origin_requests", code="200", flags="-", **media): K * M + 1,
        series("envoy_presign_origin_requests", code="404", flags="-", **media): 1,
        series("envoy_presign_origin_ttfb_ms_count", **media): FORWARDED,
        # ... and, with no origin (origin=""), the replies no origin sent: the filter's 405
        # and 400s, the 404 of the request no origin matched.
        series("envoy_presign_origin_requests", origin="", code="405", flags="-"): 1,
        series("envoy_presign_origin_requests", origin="", code="400", flags="-"): 2,
        series("envoy_presign_origin_requests", origin="", code="404", flags="-"): 1,
        # Every request reaching the filter's request-headers callback, matched or not.
        series("envoy_presign_filter_duration_us_count", **media): HITS + MISSES + DENIED,
        series("envoy_presign_filter_duration_us_count", origin="_unmatched"): 1,
        # One sample per request that signed.
        series("envoy_presign_sign_duration_us_count", **media): MISSES,
    }


def unsigned_expected() -> dict[Series, float]:
    media, open_ = {"origin": "media"}, {"origin": "open"}
    return {
        series("envoy_presign_requests", outcome="denied", **media): 2,
        series("envoy_presign_sign_errors", category="no_credentials", **media): 2,
        series("envoy_presign_filter_duration_us_count", **media): 2,
        # The fallback to /open/ was sent twice, once before Prometheus started.
        series("envoy_presign_requests", outcome="fallback", **open_): 2,
        series("envoy_presign_sign_errors", category="no_credentials", **open_): 2,
        series("envoy_presign_filter_duration_us_count", **open_): 2,
        series("envoy_presign_origin_requests", origin="", code="503", flags="-"): 2,
        series("envoy_presign_origin_requests", code="403", flags="-", **open_): 2,
        series("envoy_presign_origin_ttfb_ms_count", **open_): 2,
    }


def slow_expected() -> dict[Series, float]:
    slow = {"origin": "slow"}
    return {
        series("envoy_presign_requests", outcome="hit", **slow): SLOW_HITS,
        series("envoy_presign_requests", outcome="miss", **slow): SLOW_MISSES,
        series("envoy_presign_cache_hits", **slow): SLOW_HITS,
        series("envoy_presign_cache_misses", **slow): SLOW_MISSES,
        series("envoy_presign_urls_signed", **slow): SLOW_MISSES,
        series("envoy_presign_store_ops", op="get_ok", **slow): SLOW_HITS + SLOW_MISSES,
        series("envoy_presign_store_ops", op="set_ok", **slow): SLOW_MISSES,
        series("envoy_presign_filter_duration_us_count", **slow): SLOW_HITS + SLOW_MISSES,
        series("envoy_presign_sign_duration_us_count", **slow): SLOW_MISSES,
        # The origin answered the fast ones; nobody answered the abandoned requests (code 0,
        # DC: the client went away) and Envoy answered the others at the route's idle timeout
        # (504, SI). Neither kind has a first byte from the origin.
        series("envoy_presign_origin_requests", code="200", flags="-", **slow): SLOW_FAST + 1,
        series("envoy_presign_origin_requests", code="0", flags="DC", **slow): 2,
        series("envoy_presign_origin_requests", code="504", flags="SI", **slow): 2,
        series("envoy_presign_origin_ttfb_ms_count", **slow): SLOW_FAST + 1,
    }


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_counters_and_histogram_counts_are_exact(signing_envoy, unsigned_envoy, slow_envoy, traffic):
    samples = wait_for_stats(signing_envoy, signing_expected())
    wait_for_stats(unsigned_envoy, unsigned_expected())
    wait_for_stats(slow_envoy, slow_expected())
    # Every latency threshold of the plan is a bucket bound: of the origin's time to first byte
    # in milliseconds (the latency rules read le="300"), of the filter's histograms in µs.
    def bounds(name: str) -> set[str]:
        return {dict(labels)["le"] for metric, labels in samples
                if metric == name and dict(labels).get("origin") == "media"}
    assert {"100", "150", "200", "300", "500", "800"} <= bounds("envoy_presign_origin_ttfb_ms_bucket")
    for histogram in ("envoy_presign_filter_duration_us_bucket", "envoy_presign_sign_duration_us_bucket"):
        assert {"1", "2", "100000", "150000", "200000", "300000", "500000", "800000"} <= bounds(histogram), histogram

    # The cache gauges come from the scan (every second here): K keys + the missing one.
    deadline = time.monotonic() + 10
    while samples[series("envoy_presign_cache_entries", origin="media")] != MISSES:
        assert time.monotonic() < deadline, "cache_entries never reached the keys cached"
        time.sleep(0.25)
        samples = scrape(signing_envoy)
    assert samples[series("envoy_presign_cache_capacity", origin="media")] == CAPACITY
    # Each entry holds its identity and its presigned path: a few hundred bytes.
    assert 100 * MISSES < samples[series("envoy_presign_cache_bytes", origin="media")] < 2000 * MISSES
    # Counters nothing in the pattern increments still exist, at 0, with the labels the
    # stats_tags of envoy/envoy.yaml give them (the dashboard and the rules query them).
    for key in (series("envoy_presign_cache_evictions", origin="media"),
                series("envoy_presign_overrides_refused", origin="media", category="invalid_content_type"),
                series("envoy_presign_overrides_refused", origin="media", category="invalid_content_disposition"),
                series("envoy_presign_hostcall_errors", origin="media", call="set_header"),
                series("envoy_presign_hostcall_errors", origin="media", call="local_reply")):
        assert samples.get(key) == 0, f"{key} not in /stats/prometheus at 0: {samples.get(key)}"

    # The same counters in the JSON /stats under their Envoy names.
    stats = signing_envoy.stats()
    assert stats["wasmcustom.envoy_presign.requests.origin.media.outcome.hit"] == HITS
    assert stats["wasmcustom.envoy_presign.requests.origin._unmatched.outcome.bypass"] == 1


def _recorded_names() -> list[str]:
    """The 5-minute recording rules; the anomaly and period groups need days of history and
    are checked on 35 backfilled days (tests/monitoring/test_report.py)."""
    return sorted(recorded_names(PROMETHEUS_RECORDING_GROUP))


def test_prometheus_rules_and_dashboard(prometheus, signing_envoy, traffic):
    if isinstance(prometheus, Unavailable):
        if prometheus.installed:
            pytest.fail(prometheus.reason, pytrace=False)
        if os.environ.get("ENVOY_PRESIGN_REQUIRE_WASM"):
            pytest.fail(prometheus.reason + " (ENVOY_PRESIGN_REQUIRE_WASM is set)", pytrace=False)
        pytest.skip(prometheus.reason)
    prom: Prometheus = prometheus
    wait_for_stats(signing_envoy, signing_expected())

    # Prometheus has scraped the final counts, histogram samples included ...
    prom.wait_until("the final counts scraped", lambda: (
        prom.scalar('sum(envoy_presign_requests{origin="media",outcome="hit"})') == HITS
        and prom.scalar('sum(envoy_presign_origin_ttfb_ms_count{origin="media"})') == FORWARDED
        and prom.scalar('sum(envoy_presign_origin_ttfb_ms_count{origin="open"})') == 2
        and prom.scalar('sum(envoy_presign_origin_requests{origin="slow"})') == SLOW_FAST + 5
        and prom.scalar('sum(envoy_presign_cache_entries{origin="media"})') == MISSES))
    # ... at least 10 times each (rate() extrapolates by up to one scrape interval, so the
    # longer the window's samples, the closer ratios across the two Envoys get) ...
    prom.wait_until("10 scrapes of each Envoy", lambda: (prom.scalar(
        'min(count_over_time(envoy_presign_urls_signed{origin="media"}[5m]))') or 0) >= 10)
    # ... and evaluated the rules over them: hits / (hits + refreshes + misses), exactly,
    # since every counter's first sample was 0 and all share the scrape times.
    expected_hit_rate = HITS / (HITS + MISSES)
    prom.wait_until("the hit rate of the traffic", lambda: math.isclose(
        prom.scalar('origin:envoy_presign_cache_hit:ratio_rate5m{origin="media"}') or -1,
        expected_hit_rate, rel_tol=1e-9))

    empty = [name for name in _recorded_names()
             if not any(math.isfinite(v) for _, v in prom.query(name))]
    assert not empty, f"recording rules without a finite value: {empty}"

    assert prom.scalar('origin:envoy_presign_cache_refresh:ratio_rate5m{origin="media"}') == 0
    assert prom.scalar('origin:envoy_presign_store_success:ratio_rate5m{origin="media"}') == 1
    assert prom.scalar('origin:envoy_presign_fallback:ratio_rate5m{origin="open"}') == 1
    assert prom.scalar('origin:envoy_presign_sign_error:ratio_rate5m{origin="open"}') == 1
    # media: 2 no_credentials errors (unsigned Envoy) / (MISSES signings + those 2). The two
    # Envoys are scraped at different instants, so rate() extrapolates each a little
    # differently (at most 1.1 s over 10+ s): approximately.
    assert math.isclose(prom.scalar('origin:envoy_presign_sign_error:ratio_rate5m{origin="media"}'),
                        2 / (MISSES + 2), rel_tol=0.15)
    # MISSES keys in CAPACITY slots: none evicts another.
    assert prom.scalar('origin:envoy_presign_cache_eviction:ratio_rate5m{origin="media"}') == 0
    cache_bytes = prom.scalar(
        f'instance:envoy_presign_cache_bytes:sum{{instance="127.0.0.1:{signing_envoy.admin_port}"}}')
    assert 100 * MISSES < cache_bytes < 2000 * MISSES

    no_data = [f"{title}: {expr}" for title, expr in dashboard_queries(exclude_rows=HISTORY_ROWS | CREDENTIAL_ROWS)
               if not prom.query(expr)]
    assert not no_data, "dashboard queries without data:\n" + "\n".join(no_data)
    # Static keys define no credential series: that row stays empty, and no credential alert
    # can fire (the pending alerts below are the only ones).
    assert not any(prom.query(expr) for _, expr in dashboard_queries(rows=CREDENTIAL_ROWS))
    origins = prom.api("/api/v1/label/origin/values",
                       **{"match[]": 'envoy_presign_requests{origin!="_unmatched"}'})
    assert sorted(origins) == ["media", "open", "slow"], "the dashboard's $origin variable"

    # The origins from Envoy's own stats: "open" answered its request with a 403; "slow"
    # left 2 of its SLOW_FAST + 2 requests unanswered (counted as slow), the others fast.
    # (media's come from counters Envoy created during the traffic, between two scrapes:
    # rate() sees no increase of a series before its first sample, so media has no rate
    # yet; docs/observability.md, Metrics, says so.)
    assert prom.scalar('origin:envoy_presign_origin_403:increase5m{origin="open"}') >= 1
    prom.wait_until("the slow origin's share of slow or unanswered requests", lambda: math.isclose(
        prom.scalar('origin:envoy_presign_origin_slow:ratio_rate5m{origin="slow"}') or -1,
        2 / (SLOW_FAST + 2), rel_tol=1e-9))
    # The stub answers in milliseconds: the p99 of its first bytes is far below 300 ms.
    prom.wait_until("the slow origin's first-byte p99", lambda: 0 < (prom.scalar(
        'origin:envoy_presign_origin_ttfb_ms:quantile_rate5m{origin="slow",quantile="0.99"}') or -1) < 300)
    # Alerts: a 75 % hit rate and signing errors are pending (for: 15m / 5m), and the slow
    # origin's latency (2 of 22 requests never answered: 9 % > 5 %), nothing else.
    def active():
        alerts = prom.api("/api/v1/alerts")["alerts"]
        return sorted((a["labels"]["alertname"], a["labels"].get("origin", ""), a["state"]) for a in alerts)
    want = [("EnvoyPresignHighErrorRate", "media", "pending"), ("EnvoyPresignHighErrorRate", "open", "pending"),
            ("EnvoyPresignHighLatency", "slow", "pending"), ("EnvoyPresignLowHitRate", "media", "pending")]
    prom.wait_until(f"alerts {want}", lambda: active() == want, timeout=10)


def test_latencies_are_sampled_one_request_in_sixteen_by_default(start_envoy, seaweedfs):
    """The default configuration (one worker, so one sampling sequence): requests 0, 16, 32
    record their time in the filter; of the two that sign (0 and 1), only the sampled one
    records its signing time, while urls_signed counts both."""
    clear_of_window_boundary(30)
    client = seaweedfs.client()
    for key in ("sampling/a.txt", "sampling/b.txt"):
        client.put_object(Bucket=seaweedfs.bucket, Key=key, Body=key.encode())
    envoy = start_envoy(filter_config(seaweedfs.s3_port), env_credentials(ACCESS_KEY, SECRET_KEY), concurrency=1)
    paths = ["/media/sampling/a.txt", "/media/sampling/b.txt"] + ["/media/sampling/a.txt"] * 31
    for path in paths:
        assert raw_request(envoy.port, "GET", path).status == 200, path
    media = {"origin": "media"}
    wanted = {
        series("envoy_presign_requests", outcome="miss", **media): 2,
        series("envoy_presign_requests", outcome="hit", **media): len(paths) - 2,
        series("envoy_presign_urls_signed", **media): 2,
        series("envoy_presign_filter_duration_us_count", **media): 3,
        series("envoy_presign_sign_duration_us_count", **media): 1,
    }
    deadline = time.monotonic() + 20
    while True:
        got = {key: scrape(envoy).get(key) for key in wanted}
        if got == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert got == wanted


def test_client_input_never_becomes_a_label(start_envoy, seaweedfs):
    """Whatever a client sends (Host, path, a forged origin marker, methods), the stats keep
    their label sets: no label value comes from the request."""
    envoy = start_envoy(filter_config(seaweedfs.s3_port), env_credentials(ACCESS_KEY, SECRET_KEY))
    token = "evilclientlabel"
    for method, path, headers, host in (("GET", f"/{token}/x", {}, "localhost"),
                                        ("GET", f"/media/{token}.bin", {"x-envoy-presign-origin": token}, "localhost"),
                                        ("GET", "/media/x", {}, f"{token}.example"),
                                        (token.upper(), f"/media/{token}", {}, "localhost"),
                                        ("GET", f"/media/a%zz{token}", {"x-request-id": token}, "localhost")):
        raw_request(envoy.port, method, path, headers=headers, host=host)
    time.sleep(6)  # counters (1 s tick) and histograms (5 s flush) reach the output
    text = http_get(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus")
    labelled = [line for line in text.splitlines() if line.startswith("envoy_presign") and token in line.lower()]
    assert not labelled, labelled[:5]
