"""Hardening: the origin failing, the shared cache holding bad bytes, a hot key under load.

Real Envoy (two workers, four for the hot key) in front of a real SeaweedFS or of a
stand-in origin (conftest.StubOrigin).  Counter assertions wait for the counters to
reach Envoy (``Stats.wait``): the filter batches them per worker and flushes each second.

Bad cache entries are planted with a test-only proxy-wasm filter,
``tests/fixtures/shared-data-writer`` (built here with cargo), placed before
envoy-presign in the same ``vm_id``: Envoy scopes shared data by ``vm_id``, not by
plugin or code, so the writer reads and writes the cache's slots
(``test_writer_shares_the_cache_shared_data`` checks that first).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    ACCESS_KEY,
    PATH_LOG,
    SECRET_KEY,
    Corpus,
    Stats,
    StubOrigin,
    clear_of_window_boundary,
    connections_per_worker,
    describe,
    forwarded,
    get_ok,
    hammer,
    media_path,
    poll,
)

from stack import (
    BUCKET,
    REPO_ROOT,
    Envoy,
    SeaweedFS,
    build_writer,
    env_credentials,
    filter_config,
    raw_request,
    read_slot,
    slot_key,
    write_slot,
    writer_filter,
)

KEY = "my file(1).mp4"  # in the session corpus
CREDENTIALS = env_credentials(ACCESS_KEY, SECRET_KEY)


def access_log_lines(envoy: Envoy, count: int) -> list[list[str]]:
    """The shipped-format access log's fields (method, status, flags, upstream host,
    request id), once it holds ``count`` lines (Envoy flushes it every 100 ms)."""
    lines = poll(lambda: envoy.access_log_text().splitlines(), lambda lines: len(lines) >= count)
    assert len(lines) == count, f"expected {count} access-log lines, got {len(lines)}"
    return [line.split(" ") for line in lines]


# The body of every 3xx (but 304), 4xx (but 416) and 5xx reply on an origin's route, Envoy's
# own 503/504 included (the custom_response filter of envoy/envoy.yaml; see test_routing.py).
ORIGIN_ERROR = b'{"error":"origin_error"}'


def assert_envoy_error(resp, status: int, body: bytes) -> None:
    """A reply made by Envoy's router, not by the filter (which always sets x-presign-error);
    the access log's flag (UF, UT) tells which failure it was."""
    assert resp.status == status, resp
    assert "x-presign-error" not in resp.headers, resp.headers
    assert body in resp.body, resp.body


# ---------------------------------------------------------------------------
# Origin down, then back
# ---------------------------------------------------------------------------


@pytest.fixture
def own_seaweedfs(tmp_path):
    """A SeaweedFS of this test's own (the test stops and restarts it) holding KEY."""
    with SeaweedFS(tmp_path, ACCESS_KEY, SECRET_KEY) as origin:
        origin.client().put_object(Bucket=BUCKET, Key=KEY, Body=b"outage test body")
        yield origin


def test_origin_down_is_a_clear_503_then_recovers(start_envoy, own_seaweedfs: SeaweedFS):
    """With the origin stopped, each request gets Envoy's own 503 (connection refused:
    response flag UF), counted as an origin 5xx and never as a 403; once the origin
    is back on the same port with the same data, requests succeed again."""
    origin = own_seaweedfs
    envoy = start_envoy(filter_config(origin.s3_port), CREDENTIALS, origin_port=origin.s3_port)
    stats = Stats(envoy)
    path = media_path(KEY)
    resp = raw_request(envoy.port, "GET", path)
    assert (resp.status, resp.body) == (200, b"outage test body"), describe("GET", path, resp)
    stats.wait(1)

    stats = Stats(envoy)
    unanswered = "presign_origin.requests.origin.media.code.503.flags.UF"  # envoy/envoy.yaml's logger
    before_uf = envoy.stats().get(unanswered, 0)
    origin.stop()
    requests = [("GET", path), ("HEAD", path)] * 3
    for method, target in requests:
        resp = raw_request(envoy.port, method, target)
        assert_envoy_error(resp, 503, b"" if method == "HEAD" else ORIGIN_ERROR)
    delta = stats.wait(len(requests))
    # Envoy's router answered 503 for the origin's cluster: its own stats count them.
    responses = {n: delta.get(f"cluster.upstream_rq_{n}xx", 0) for n in range(1, 6)}
    assert responses == {1: 0, 2: 0, 3: 0, 4: 0, 5: len(requests)}, delta
    assert delta.get("cluster.upstream_rq_503", 0) == len(requests), delta
    # ... and so does the shipped origin-stats access logger, with the flag.
    assert envoy.stats().get(unanswered, 0) - before_uf == len(requests)
    # The cache still answers: the URLs are fine, the origin is not there.
    assert delta["requests.outcome.hit"] + delta["requests.outcome.miss"] == len(requests), delta
    logged = access_log_lines(envoy, 1 + len(requests))[1:]
    assert {(fields[1], fields[2]) for fields in logged} == {("503", "UF")}, logged

    port = origin.s3_port
    origin.restart()
    assert origin.s3_port == port
    stats = Stats(envoy)
    for method in ("GET", "HEAD", "GET"):
        resp = raw_request(envoy.port, method, path)
        assert resp.status == 200, describe(method, path, resp)
    assert resp.body == b"outage test body"
    delta = stats.wait(3)
    assert (delta.get("cluster.upstream_rq_2xx", 0), delta.get("cluster.upstream_rq_5xx", 0)) == (3, 0), delta


# ---------------------------------------------------------------------------
# Origin slower than the route timeout
# ---------------------------------------------------------------------------

SLOW, FAST = 6, 4


def test_slow_origin_times_out_without_stalling_workers(start_envoy):
    """Requests the origin never answers get Envoy's 504 at the route's idle timeout
    (response flag SI: no byte moved for that long) and Envoy drops their upstream connections; while they are
    pending, and after, other requests on both workers are served."""
    objects = {"fast.txt": b"fast", **{f"slow/{i}.txt": b"never sent" for i in range(SLOW)}}
    with StubOrigin(objects, hold_prefix="slow/") as stub:
        envoy = start_envoy(filter_config(stub.port), CREDENTIALS, origin_port=stub.port,
                            extra_substitutions={"ROUTE_IDLE_TIMEOUT": "2s"})
        stats = Stats(envoy)
        fast = media_path("fast.txt")
        with ThreadPoolExecutor(max_workers=SLOW) as pool:
            slow = [pool.submit(raw_request, envoy.port, "GET", media_path(f"slow/{i}.txt")) for i in range(SLOW)]
            held = poll(lambda: stub.count("held"), lambda n: n == SLOW, timeout=10)
            assert held == SLOW, f"the origin got {held} of {SLOW} slow requests"
            during = [raw_request(envoy.port, "GET", fast) for _ in range(FAST)]
            slow_responses = [future.result() for future in slow]
        after = [raw_request(envoy.port, "GET", fast) for _ in range(FAST)]
        cancelled = poll(lambda: stub.count("cancelled"), lambda n: n == SLOW)
        events = list(stub.events)

    for resp in during + after:
        assert (resp.status, resp.body) == (200, b"fast"), describe("GET", fast, resp)
    for resp in slow_responses:
        assert_envoy_error(resp, 504, ORIGIN_ERROR)
    assert cancelled == SLOW, f"Envoy dropped {cancelled} of {SLOW} timed-out upstream requests"
    # The fast requests sent while the slow ones were held were answered before
    # Envoy gave up on any slow one (the idle timeout is 2 s; they take ms).
    first_cancel = events.index(next(e for e in events if e[0] == "cancelled"))
    assert events[:first_cancel].count(("served", "fast.txt")) >= FAST, events
    assert all("X-Amz-Signature=" in p for p in stub.paths), "the origin got an unsigned request"

    # The origin answered only the fast ones; the idle timeout is the connection manager's
    # (http.media.downstream_rq_idle_timeout); the held requests' connections were closed
    # (`cancelled` above).
    def counted(d: dict[str, int]) -> tuple[int, int]:
        return sum(v for k, v in d.items() if k.startswith("requests.outcome.")), d.get("cluster.upstream_rq_2xx", 0)

    delta = poll(stats.delta, lambda d: counted(d) == (SLOW + 2 * FAST, 2 * FAST))
    assert counted(delta) == (SLOW + 2 * FAST, 2 * FAST), delta
    assert delta.get("cluster.upstream_rq_5xx", 0) == 0 and delta.get("cluster.upstream_rq_403", 0) == 0, delta
    assert envoy.stats().get("http.media.downstream_rq_idle_timeout") == SLOW
    statuses = [(fields[1], fields[2]) for fields in access_log_lines(envoy, SLOW + 2 * FAST)]
    assert statuses.count(("504", "SI")) == SLOW and statuses.count(("200", "-")) == 2 * FAST, statuses
    workers = connections_per_worker(envoy)
    assert len(workers) == 2 and all(workers.values()), f"connections per worker: {workers}"


# ---------------------------------------------------------------------------
# Corrupt and older-format entries in the shared cache
# ---------------------------------------------------------------------------

SLOTS = 4  # cache.max_entries: small enough to overwrite every slot
GARBAGE = bytes(range(256)) + b"\x00not an entry\xff"
# The current layout (three u64, identity, path) under the previous magic.
OLDER_FORMAT = b"EPC0" + bytes(24) + (4).to_bytes(4, "big") + b"id\n\n" + (2).to_bytes(4, "big") + b"/x"


@pytest.fixture(scope="session")
def writer_wasm() -> Path:
    """The shared-data writer fixture, built once per session."""
    try:
        return build_writer()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="module")
def writer_envoy(start_envoy, seaweedfs, writer_wasm: Path) -> Envoy:
    """envoy-presign with a SLOTS-slot cache, behind the writer in the same vm_id."""
    config = filter_config(seaweedfs.s3_port)
    # No per-worker copy: these tests are about what happens to the shared entries
    # (a worker's local copy would rightly keep serving its still-fresh rewrite).
    config["cache"] = {"enabled": True, "max_entries": SLOTS, "local_entries": 0}
    return start_envoy(config, CREDENTIALS, extra_list_items={"http_filters": [writer_filter(writer_wasm)]})


def test_writer_shares_the_cache_shared_data(writer_envoy: Envoy, corpus: Corpus):
    """What the filter stores, the writer reads: both plugins see one shared-data
    namespace, that of their common vm_id (Envoy keys shared data by vm_id only)."""
    stats = Stats(writer_envoy)
    assert get_ok(writer_envoy, corpus.objects)(KEY) is None
    stats.wait(1)  # before the next test takes its baseline
    slots = [read_slot(writer_envoy, slot_key(n)) for n in range(SLOTS)]
    entries = [value for value in slots if value is not None and value.startswith(b"EPC1")]
    assert len(entries) == 1, slots
    assert f"/{BUCKET}/my%20file%281%29.mp4?".encode() in entries[0]
    assert read_slot(writer_envoy, slot_key(SLOTS)) is None, "the filter wrote beyond max_entries"


@pytest.mark.parametrize("planted", [GARBAGE, OLDER_FORMAT], ids=["garbage", "older-format"])
def test_corrupt_or_older_entries_are_misses_and_replaced(writer_envoy: Envoy, corpus: Corpus, planted: bytes):
    clear_of_window_boundary(30)  # the counts below assume no refresh
    check = get_ok(writer_envoy, corpus.objects)
    stats = Stats(writer_envoy)
    assert check(KEY) is None  # the key is cached now (a miss or a hit)
    stats.wait(1)
    for n in range(SLOTS):
        write_slot(writer_envoy, slot_key(n), planted)
    assert {read_slot(writer_envoy, slot_key(n)) for n in range(SLOTS)} == {planted}

    stats = Stats(writer_envoy)
    assert check(KEY) is None
    delta = stats.wait(1)
    expected = {"cache_misses": 1, "cache_corrupt": 1, "urls_signed": 1, "cache_hits": 0,
                "cache_collisions": 0, "requests.outcome.miss": 1, "store_ops.op.set_ok": 1}
    assert {name: delta[name] for name in expected} == expected, delta

    stats = Stats(writer_envoy)
    assert check(KEY) is None
    delta = stats.wait(1)
    expected = {"cache_hits": 1, "cache_misses": 0, "cache_corrupt": 0, "urls_signed": 0}
    assert {name: delta[name] for name in expected} == expected, delta
    slots = [read_slot(writer_envoy, slot_key(n)) for n in range(SLOTS)]
    assert sum(value.startswith(b"EPC1") for value in slots) == 1 and slots.count(planted) == SLOTS - 1, slots


# ---------------------------------------------------------------------------
# One hot key, many workers, short windows
# ---------------------------------------------------------------------------


def test_hot_key_is_signed_once_per_window_by_many_workers(start_envoy, seaweedfs, corpus: Corpus):
    """16 clients hammer one key for ~8 s through 4 workers with 2 s windows
    (expires_in 4, refresh_before 2, min_remaining 1): no 5xx, no 403, and one
    signature per window (the first window may see one per worker racing the first
    miss), the CAS conflicts bounded the same way.

    Every URL's X-Amz-Date is a multiple of the window: signing on a window
    boundary is the aligned case.  Exact boundaries (a request 1 ms before or at
    the window start) are covered by the unit test
    ``cache::tests::window_alignment_at_boundaries`` in src/cache/tests.rs; an
    integration test cannot place a request on a millisecond."""
    concurrency, clients, run_for = 4, 16, 8.0
    expires_in, refresh_before, min_remaining = 4, 2, 1
    window = expires_in - refresh_before
    config = filter_config(seaweedfs.s3_port, expires_in=expires_in, refresh_before=refresh_before,
                           min_remaining=min_remaining)
    config["cache"] = {"enabled": True, "align": True}
    envoy = start_envoy(config, CREDENTIALS, extra_substitutions=PATH_LOG, concurrency=concurrency)
    stats = Stats(envoy)
    started = time.time()
    total, failures = hammer(get_ok(envoy, corpus.objects), lambda n, i: KEY, clients=clients, seconds=run_for)
    ended = time.time()
    assert not failures, f"{len(failures)}/{total} GETs failed:\n" + "\n".join(failures[:20])

    delta = stats.wait(total)
    lines = forwarded(envoy, total)
    windows = int(ended // window) - int(started // window) + 1
    report = (f"{total} GETs over {windows} windows: urls_signed={delta['urls_signed']} "
              f"set_cas_conflict={delta['store_ops.op.set_cas_conflict']} "
              f"misses={delta['cache_misses']} refreshes={delta['cache_refreshes']} "
              f"expired={delta['cache_expired']} "
              f"workers={connections_per_worker(envoy)}")
    print(report)
    assert {line.status for line in lines} == {200}
    assert delta.get("cluster.upstream_rq_5xx", 0) == delta.get("cluster.upstream_rq_403", 0) == 0, report
    workers = connections_per_worker(envoy)
    assert len(workers) == concurrency and all(workers.values()), report
    # One signature per window; the first miss may race on every worker (+1 slack).
    # Envoy's shared data has no create-if-absent: two workers missing on the never
    # written slot both store (no CAS conflict); aligned, they stored the same URL.
    assert delta["urls_signed"] <= windows + concurrency, report
    assert delta["store_ops.op.set_cas_conflict"] <= (concurrency - 1) * (windows + 1), report
    # Aligned: every X-Amz-Date starts a window and lifetimes are expires_in.
    assert {(line.signed_at % window, line.query["X-Amz-Expires"]) for line in lines} == {(0, str(expires_in))}
    assert len({line.path for line in lines}) == len({line.signed_at for line in lines}) <= windows, report


# ---------------------------------------------------------------------------
# A dead VM (FAIL_RELOAD)
# ---------------------------------------------------------------------------

# The filter built with the `test-panic` feature (make integration builds it): a request with
# this header panics the VM.
PANIC_WASM = REPO_ROOT / "target" / "test-only" / "wasm32-wasip1" / "release" / "envoy_presign.wasm"
PANIC_HEADER = "x-envoy-presign-test-panic"


def test_a_panicking_vm_is_reloaded_and_its_cause_logged(start_envoy, seaweedfs, corpus: Corpus):
    """The shipped failure_policy FAIL_RELOAD: after a panic kills the worker's VM, Envoy
    answers 503 until its reload backoff has passed, then a fresh VM serves signed requests;
    Envoy counts the reload, and the panic hook logged the cause at error level."""
    if not PANIC_WASM.is_file():
        pytest.fail(f"{PANIC_WASM} is missing: `make integration` builds it")
    envoy = start_envoy(filter_config(seaweedfs.s3_port), env_credentials(ACCESS_KEY, SECRET_KEY),
                        concurrency=1, wasm=PANIC_WASM)
    check = get_ok(envoy, corpus.objects)
    assert check(KEY) is None
    died = raw_request(envoy.port, "GET", media_path(KEY), headers={PANIC_HEADER: "1"})
    assert died.status >= 500, died
    # Until Envoy's reload backoff (1 s by default) has passed, the worker answers 503 itself
    # (fail closed, never unsigned); then a fresh VM serves, signed.
    started, failed = time.monotonic(), []
    while (resp := raw_request(envoy.port, "GET", media_path(KEY))).status != 200:
        failed.append(resp.status)
        assert time.monotonic() - started < 10, f"no fresh VM after 10 s: {failed}"
        time.sleep(0.05)
    assert set(failed) <= {503}, failed
    assert resp.body == corpus.objects[KEY]
    print(f"served again after {time.monotonic() - started:.2f} s; {len(failed)} requests got 503 meanwhile")
    reloads = poll(lambda: envoy.stats().get("wasm.envoy_presign.vm_reload_success", 0), lambda n: n >= 1)
    assert reloads >= 1, envoy.stats()
    envoy.stop()  # flush the log
    panics = [line for line in envoy.log_text().splitlines()
              if "envoy-presign: panic (worker VM will be restarted)" in line]
    assert panics and all("[error]" in line or "[critical]" in line for line in panics), panics


def test_a_corrupt_entry_is_noticed_once_the_local_copy_is_due(start_envoy, seaweedfs, writer_wasm: Path,
                                                               corpus: Corpus):
    """With the per-worker copy on (one worker), a slot corrupted under a fresh local copy is
    not read: the copy serves until its refresh point. The first request after it reads the
    slot, counts it corrupt, signs and replaces it."""
    expires_in, window = 5, 4  # refresh_before defaults to 1 s: aligned windows of 4 s
    config = filter_config(seaweedfs.s3_port, expires_in=expires_in)
    config["cache"] = {"enabled": True, "max_entries": SLOTS, "local_entries": 1024}
    envoy = start_envoy(config, CREDENTIALS, concurrency=1,
                        extra_list_items={"http_filters": [writer_filter(writer_wasm)]})
    check = get_ok(envoy, corpus.objects)
    start = (int(time.time()) // window + 1) * window
    time.sleep(max(0.0, start + 0.2 - time.time()))  # just after a window starts: 3.8 s of freshness
    stats = Stats(envoy)
    assert check(KEY) is None  # a miss: signed, stored, kept in the local copy
    for n in range(SLOTS):
        write_slot(envoy, slot_key(n), GARBAGE)
    assert check(KEY) is None  # served by the fresh local copy
    delta = stats.wait(2)
    assert (delta["cache_misses"], delta["cache_hits"], delta["cache_corrupt"]) == (1, 1, 0), delta
    time.sleep(max(0.0, start + window + 0.2 - time.time()))  # the copy is due now
    stats = Stats(envoy)
    assert check(KEY) is None
    delta = stats.wait(1)
    assert (delta["cache_corrupt"], delta["cache_misses"], delta["urls_signed"]) == (1, 1, 1), delta
