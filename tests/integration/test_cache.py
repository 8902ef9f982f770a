"""Shared-data URL cache, end to end: Envoy with two workers in front of strict SeaweedFS.

Every Envoy here logs the rewritten ``:path`` (the presigned URL the origin
received) with the request's start time and status, so the tests read exactly
which URL each request carried.  The shipped config never logs it (see the
ACCESS_LOG_FORMAT comment in envoy/envoy.yaml).

Counter assertions wait for the request's counters to reach Envoy first
(``Stats.wait``): the filter may batch counter increments per worker.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import (
    ACCESS_KEY,
    PATH_LOG,
    SECRET_KEY,
    Corpus,
    Forwarded,
    Stats,
    assert_each,
    clear_of_window_boundary,
    connections_per_worker,
    describe,
    forwarded,
    get_ok,
    hammer,
    media_path,
    poll,
)

from stack import BUCKET, Envoy, SeaweedFS, env_credentials, filter_config, raw_request

KEYS = ["my file(1).mp4", "emoji/😀🎬.mp4", "all !$&'()*+,;=:@~ subdelims.bin"]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def start_cache_envoy(start_envoy, seaweedfs: SeaweedFS, cache: dict | None = None, **origin) -> Envoy:
    """An Envoy logging presigned paths, with the cache settings given (merged
    over the documented defaults) and env credentials."""
    config = filter_config(seaweedfs.s3_port, **origin)
    config["cache"] = {"enabled": True, "max_entries": 10000, "align": True, "scan_interval": 10,
                       **(cache or {})}
    return start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY), extra_substitutions=PATH_LOG)


def sleep_into_next_window(window: int, margin: float = 0.25) -> float:
    """Sleep until ``margin`` seconds after the next multiple of ``window`` seconds
    since the epoch (an aligned window start); return that window's start."""
    start = (int(time.time()) // window + 1) * window
    time.sleep(max(0.0, start + margin - time.time()))
    return start


def urls_by_key(lines: list[Forwarded]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for line in lines:
        result.setdefault(line.key, set()).add(line.path)
    return result


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("local_entries", [0, 1024], ids=["shared-only", "with-local-copy"])
def test_sequential_requests_are_one_miss_then_hits(start_envoy, seaweedfs, corpus: Corpus, local_entries: int):
    """One miss, then hits with the same URL. Without the per-worker copy every
    hit reads shared data; with it, each worker reads shared data once and then
    serves its fresh copy (2 workers: at most 2 reads)."""
    clear_of_window_boundary(30)  # the counts below assume no refresh
    envoy = start_cache_envoy(start_envoy, seaweedfs, cache={"local_entries": local_entries})
    stats = Stats(envoy)
    count = 20
    for _ in range(count):
        assert get_ok(envoy, corpus.objects)(KEYS[0]) is None

    expected = {
        "cache_misses": 1, "cache_hits": count - 1, "cache_refreshes": 0, "cache_expired": 0,
        "urls_signed": 1, "cluster.upstream_rq_403": 0,
        "requests.outcome.miss": 1, "requests.outcome.hit": count - 1, "requests.outcome.refresh": 0,
        "store_ops.op.set_ok": 1, "store_ops.op.set_cas_conflict": 0,
    }
    delta = stats.wait(count)
    assert {name: delta.get(name, 0) for name in expected} == expected
    shared_reads = delta["store_ops.op.get_ok"]
    if local_entries:
        assert 1 <= shared_reads <= 2, delta
    else:
        assert shared_reads == count, delta
    lines = forwarded(envoy, count)
    assert len({line.path for line in lines}) == 1, "every hit carries the URL the miss signed"
    assert lines[0].key == KEYS[0]


def test_one_url_per_key_per_window_across_workers(start_envoy, seaweedfs, corpus: Corpus):
    """200 requests over 200 connections (both workers) reach the origin with one
    URL per key and window, signed at most once per worker; the next window brings
    a new URL per key, made by exactly one refresh each."""
    window = 4
    envoy = start_cache_envoy(start_envoy, seaweedfs, expires_in=2 * window, refresh_before=window)
    stats = Stats(envoy)
    keys = [KEYS[i % len(KEYS)] for i in range(200)]

    sleep_into_next_window(window)
    assert_each(keys, get_ok(envoy, corpus.objects), "GETs")
    workers = connections_per_worker(envoy)
    assert len(workers) == 2 and all(workers.values()), f"connections per worker: {workers}"
    delta = stats.wait(len(keys))
    burst = forwarded(envoy, len(keys))

    windows = {(line.key, line.signed_at) for line in burst}
    for key, urls in urls_by_key(burst).items():
        assert len(urls) == len({signed_at for k, signed_at in windows if k == key}), \
            f"{key!r}: more than one URL in a window:\n" + "\n".join(sorted(urls))
    assert {(line.signed_at % window, line.query["X-Amz-Expires"]) for line in burst} == {(0, str(2 * window))}
    # A worker signs a key at most once per window (the second worker may race
    # the first to an empty slot); everything else is a hit.
    assert delta["urls_signed"] <= 2 * len(windows), delta
    assert delta["cache_hits"] >= len(keys) - 2 * len(windows), delta

    stats = Stats(envoy)
    window_start = sleep_into_next_window(window)
    for key in KEYS:
        assert get_ok(envoy, corpus.objects)(key) is None
    delta = stats.wait(len(KEYS))
    after = forwarded(envoy, len(keys) + len(KEYS))[len(keys):]
    old = urls_by_key(burst)
    for line in after:
        assert line.path not in old[line.key], f"{line.key!r}: same URL after the window"
        assert line.signed_at == window_start, line
    assert (delta["cache_refreshes"], delta["urls_signed"]) == (len(KEYS), len(KEYS)), delta


def test_short_lived_urls_are_refreshed_before_expiry(start_envoy, seaweedfs, corpus: Corpus):
    """2 s windows for ~10 s of continuous traffic: URLs are replaced before they
    expire, the origin never refuses one, and no request is sent with less than
    min_remaining of lifetime left."""
    expires_in, refresh_before, min_remaining, run_for = 4, 2, 1, 10.0
    envoy = start_cache_envoy(start_envoy, seaweedfs, expires_in=expires_in,
                              refresh_before=refresh_before, min_remaining=min_remaining)
    stats = Stats(envoy)
    # 4 clients, paced (~300 requests/s in all), cycling over the keys.
    total, failures = hammer(get_ok(envoy, corpus.objects), lambda n, i: KEYS[(n + i) % len(KEYS)],
                             clients=4, seconds=run_for, pause=0.01)
    assert not failures, f"{len(failures)}/{total} GETs failed:\n" + "\n".join(failures[:20])

    delta = stats.wait(total)
    lines = forwarded(envoy, total)
    assert delta.get("cluster.upstream_rq_403", 0) == 0 and {line.status for line in lines} == {200}
    too_short = [line for line in lines if line.expires_at < line.start + min_remaining]
    assert not too_short, f"{len(too_short)} requests sent with < {min_remaining} s left:\n" + \
        "\n".join(f"start={line.start} {line.path}" for line in too_short[:10])
    assert delta["cache_refreshes"] > 0, delta
    windows = run_for / (expires_in - refresh_before)
    for key, urls in urls_by_key(lines).items():
        assert len(urls) >= windows - 1, f"{key!r}: {len(urls)} URLs in {run_for} s"


def test_hits_cross_from_the_tick_clock_to_the_hosts_clock_and_refresh_in_time(start_envoy, seaweedfs,
                                                                                corpus: Corpus):
    """URLs living 36 s (refreshed 2 s before): a worker's hits on its local copy more than
    30 s (TICK_CLOCK_MARGIN_MS) before the refresh point are judged by the tick clock, without
    reading the host's clock; later ones by the host's clock. Under steady traffic through
    the whole window, each key's first URL serves requests in both zones, is replaced at its
    refresh point, and no request carries a URL with less than min_remaining left: a tick
    clock that stopped advancing would keep serving the first URL past its expiry."""
    expires_in, refresh_before, min_remaining, margin = 36, 2, 1, 30
    envoy = start_cache_envoy(start_envoy, seaweedfs, cache={"align": False}, expires_in=expires_in,
                              refresh_before=refresh_before, min_remaining=min_remaining)
    stats = Stats(envoy)
    total, failures = hammer(get_ok(envoy, corpus.objects), lambda n, i: KEYS[(n + i) % len(KEYS)],
                             clients=2, seconds=expires_in - refresh_before + 3.0, pause=0.02)
    assert not failures, f"{len(failures)}/{total} GETs failed:\n" + "\n".join(failures[:20])

    delta = stats.wait(total)
    lines = forwarded(envoy, total)
    assert delta.get("cluster.upstream_rq_403", 0) == 0 and {line.status for line in lines} == {200}
    too_short = [line for line in lines if line.start >= line.expires_at - min_remaining]
    assert not too_short, f"{len(too_short)} requests sent with < {min_remaining} s left:\n" + \
        "\n".join(f"start={line.start} {line.path}" for line in too_short[:10])
    assert delta["cache_refreshes"] > 0, delta
    for key in KEYS:
        mine = [line for line in lines if line.key == key]
        first = min(line.signed_at for line in mine)
        refresh_at = first + expires_in - refresh_before
        served = [line.start - first for line in mine if line.signed_at == first]
        # The tick clock's zone (more than the margin before the refresh point), then the
        # host clock's, then a new URL.
        assert min(served) < refresh_at - margin - first - 1, (key, min(served))
        assert max(served) > refresh_at - first - 2, (key, max(served))
        assert any(line.signed_at > first and line.start >= refresh_at for line in mine), key


MAX_ENTRIES = 16


@pytest.fixture(scope="module")
def many_objects(seaweedfs) -> dict[str, bytes]:
    """200 small objects: far more keys than MAX_ENTRIES."""
    rng = random.Random(16)
    objects = {f"cache-bound/obj-{i:03d}.bin": rng.randbytes(rng.randint(1, 64)) for i in range(200)}
    client = seaweedfs.client()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]),
                      objects.items()))
    return objects


def test_more_keys_than_slots_stay_bounded(start_envoy, seaweedfs, many_objects: dict[str, bytes]):
    envoy = start_cache_envoy(start_envoy, seaweedfs, cache={"max_entries": MAX_ENTRIES, "scan_interval": 1})
    stats = Stats(envoy)
    keys = list(many_objects)
    assert_each(keys, get_ok(envoy, many_objects), "GETs through a 16-slot cache")

    delta = stats.wait(len(keys))
    assert delta["urls_signed"] == delta["cache_misses"] == delta["requests.outcome.miss"], delta
    assert delta["cache_hits"] + delta["cache_misses"] == len(keys), delta
    # Once the 16 slots are taken, every new key evicts another: a slot read as
    # empty at most once per worker.
    assert delta["cache_collisions"] >= len(keys) - 2 * MAX_ENTRIES, delta
    assert len({line.path for line in forwarded(envoy, len(keys))}) == len(keys)

    time.sleep(2.5)  # a scan pass completes every second (scan_interval 1)
    gauges = poll(stats.read, lambda g: g["cache_entries"] > 0)
    assert gauges["cache_capacity"] == MAX_ENTRIES, gauges
    assert 0 < gauges["cache_entries"] <= MAX_ENTRIES, gauges
    assert gauges["cache_bytes"] > 0, gauges


def test_two_envoys_sign_byte_identical_urls(start_envoy, seaweedfs, corpus: Corpus):
    """Same config and credentials, separate processes (separate shared data):
    the same URL for the same request in the same window, though the second
    Envoy signs it a second or more later than the first."""
    envoys = [start_cache_envoy(start_envoy, seaweedfs) for _ in range(2)]
    requests = [(method, key) for key in KEYS for method in ("GET", "HEAD")]
    for attempt in range(2):
        logged = []
        for envoy in envoys:
            sleep_into_next_window(1)  # without alignment, a new second is a new URL
            for method, key in requests:
                resp = raw_request(envoy.port, method, media_path(key))
                assert resp.status == 200, describe(method, media_path(key), resp)
            logged.append(forwarded(envoy, len(requests) * (attempt + 1))[-len(requests):])
        if len({line.signed_at for lines in logged for line in lines}) == 1:
            break  # else a window boundary fell between the requests: retry once

    window = 3600 - 3600 // 5  # expires_in - refresh_before, the defaults
    assert {line.signed_at % window for lines in logged for line in lines} == {0}
    first, second = ([(line.method, line.key, line.path) for line in lines] for lines in logged)
    assert [line[:2] for line in first] == requests
    assert first == second
    assert len({line[2] for line in first}) == len(requests), "GET and HEAD are signed apart"


def test_cache_gauges_fall_when_a_burst_expires(start_envoy, seaweedfs, many_objects: dict[str, bytes]):
    """The gauges count entries that can still be served: after a burst of
    distinct keys, entries and bytes fall back to 0 once their URLs are within
    min_remaining of expiry, though the slots still hold them."""
    envoy = start_cache_envoy(start_envoy, seaweedfs, expires_in=5,
                              cache={"max_entries": 64, "scan_interval": 1, "align": False})
    stats = Stats(envoy)
    keys = list(many_objects)[:MAX_ENTRIES]
    assert_each(keys, get_ok(envoy, many_objects), "a burst of distinct keys")
    burst = poll(stats.read, lambda g: g["cache_entries"] > 0, timeout=5)
    assert burst["cache_entries"] > 0 and burst["cache_bytes"] > 0, burst
    # 5 s URLs with 200 ms min_remaining: unservable 4.8 s after signing.
    after = poll(stats.read, lambda g: g["cache_entries"] == 0, timeout=12)
    assert after["cache_entries"] == 0 and after["cache_bytes"] == 0, after
