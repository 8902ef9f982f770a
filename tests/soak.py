#!/usr/bin/env python3
"""Soak test: envoy-presign under sustained mixed traffic (``make soak``).

SeaweedFS and Envoy (2 workers, the filter with a small cache of SOAK_MAX_ENTRIES slots) run
for SOAK_SECONDS (default 60; ``make soak SOAK_SECONDS=10`` is the quick variant) under a
closed-loop Python load generator: SOAK_PROCESSES processes x SOAK_THREADS threads, each on
a kept-alive connection (re-opened every few hundred requests), sending a weighted mix:

  hot_get, hot_head  a few hot keys (cache hits)             200
  range              Range GETs of a hot 256 KiB object       206
  cold_get           many distinct keys (> max_entries)       200 (misses, slot evictions)
  bad_path           bad %-escape or a dot segment             400 from the filter
  unknown            /other/... (no origin: bypass)            404 from Envoy (no route)
  post               POST on /media/                           405 from the filter

Exact accounting is why the generator is Python and not wrk: every request sent is answered
before the run ends, so Envoy's counters must equal what was sent, class by class.

Checks at the end (exit status 1 if any fails):
  * every response had its class's status and exactly its object's bytes (each object's bytes
    derive from its key, so another key's object of the same size does not pass); no 5xx
    (none is provoked), no transport error;
  * Envoy's own counts: downstream requests completed == sent, no 5xx downstream or upstream,
    access-log lines == sent, the Wasm VM never reloaded (Envoy's four vm_reload* counters
    exist and are 0), Envoy still running;
  * the filter's counters == what was sent, per class: hit+miss+refresh == signed classes,
    denied == bad_path + post, bypass (origin _unmatched) == unknown, no fallback, no sign
    or store errors, no origin 403; cache lookups and origin responses add up;
  * cache_entries <= max_entries (cache_capacity == max_entries) after a scan pass, and, read
    from outside the filter by the test-only shared-data writer, no slot key at or beyond
    max_entries (up to 4 x) exists in shared data;
  * Envoy's RSS (/proc/<pid>/status VmRSS, sampled every SOAK_SAMPLE_SECONDS) grew by no more
    than SOAK_RSS_GROWTH_PCT % (default 10) from the first sample after the warm-up (the
    first quarter of the run, at least 5 s) to the last.  Relative, because the baseline
    (V8 plus two worker VMs) is what the allocator's noise scales with; the bytes-per-request
    slope is printed too, so a small steady leak is visible even when under the limit.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import (  # noqa: E402
    BUCKET,
    TEMPLATE_PATH,
    WASM_PATH,
    Envoy,
    HttpConnection,
    SeaweedFS,
    build_writer,
    env_credentials,
    filter_config,
    read_slot,
    slot_key,
    writer_filter,
)

ACCESS_KEY = "AKIDSOAKTEST00000001"
SECRET_KEY = "soak-secret-" + "0" * 28  # local-only

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
PROCESSES = int(os.environ.get("SOAK_PROCESSES", "2"))
THREADS = int(os.environ.get("SOAK_THREADS", "4"))
MAX_ENTRIES = int(os.environ.get("SOAK_MAX_ENTRIES", "64"))
SAMPLE_SECONDS = float(os.environ.get("SOAK_SAMPLE_SECONDS", "2"))
RSS_GROWTH_PCT = float(os.environ.get("SOAK_RSS_GROWTH_PCT", "10"))

HOT_KEYS = [f"hot/k{i}.bin" for i in range(4)]
HOT_SIZE = 1024
RANGE_KEY = "hot/video.bin"
RANGE_SIZE = 256 * 1024
RANGE_LENGTH = 1024
COLD_KEYS = [f"cold/obj-{i:04d}.bin" for i in range(max(512, 8 * MAX_ENTRIES))]
COLD_SIZE = 256
BAD_PATHS = ["/media/bad%zzescape.bin", "/media/a/../b.bin", "/media/%2e%2e/x.bin", "/media/x%4"]

# class: (weight, statuses expected)
CLASSES: dict[str, tuple[int, frozenset[int]]] = {
    "hot_get": (40, frozenset({200})),
    "hot_head": (10, frozenset({200})),
    "range": (10, frozenset({206})),
    "cold_get": (20, frozenset({200})),
    "bad_path": (5, frozenset({400})),
    "unknown": (10, frozenset({404})),
    "post": (5, frozenset({405})),
}
SIGNED = ("hot_get", "hot_head", "range", "cold_get")


def object_body(key: str, size: int) -> bytes:
    """The bytes stored under ``key``: derived from the key, so that a response carrying
    another key's object (a rewrite or cache mix-up) never matches, even at the same size."""
    block = hashlib.sha256(key.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def _request(cls: str, rng: random.Random) -> tuple[str, str, dict[str, str], bytes, bytes | None]:
    """(method, raw path, headers, body, exact expected response body or None) of one request."""
    if cls == "hot_get":
        key = rng.choice(HOT_KEYS)
        return "GET", f"/media/{key}", {}, b"", object_body(key, HOT_SIZE)
    if cls == "hot_head":
        return "HEAD", f"/media/{rng.choice(HOT_KEYS)}", {}, b"", b""
    if cls == "range":
        first = rng.randrange(0, RANGE_SIZE - RANGE_LENGTH)
        expected = object_body(RANGE_KEY, RANGE_SIZE)[first:first + RANGE_LENGTH]
        return "GET", f"/media/{RANGE_KEY}", {"Range": f"bytes={first}-{first + RANGE_LENGTH - 1}"}, b"", expected
    if cls == "cold_get":
        key = rng.choice(COLD_KEYS)
        return "GET", f"/media/{key}", {}, b"", object_body(key, COLD_SIZE)
    if cls == "bad_path":
        return "GET", rng.choice(BAD_PATHS), {}, b"", None
    if cls == "unknown":
        return "GET", f"/other/{rng.randrange(1000)}.bin", {}, b"", None
    if cls == "post":
        return "POST", f"/media/{rng.choice(HOT_KEYS)}", {"Content-Type": "application/octet-stream"}, b"x" * 64, None
    raise ValueError(cls)


def _client_thread(port: int, deadline: float, seed: int) -> dict:
    """One connection's worth of load until ``deadline`` (wall clock)."""
    rng = random.Random(seed)
    names = list(CLASSES)
    weights = [CLASSES[n][0] for n in names]
    sent: Counter = Counter()
    statuses: Counter = Counter()  # (class, status)
    problems: list[str] = []
    reconnects = 0
    conn: HttpConnection | None = None
    until_reconnect = 0
    while time.time() < deadline:
        if conn is None or conn.closed or until_reconnect <= 0:
            if conn is not None:
                conn.close()
                reconnects += 1
            conn = HttpConnection(port, timeout=30)
            until_reconnect = rng.randint(100, 400)
        cls = rng.choices(names, weights)[0]
        method, path, headers, body, expected = _request(cls, rng)
        sent[cls] += 1
        until_reconnect -= 1
        try:
            resp = conn.request(method, path, headers, body)
        except (OSError, ValueError, IndexError) as error:
            problems.append(f"{cls} {method} {path}: {error!r}")
            conn.closed = True
            continue
        statuses[(cls, resp.status)] += 1
        if resp.status not in CLASSES[cls][1]:
            problems.append(f"{cls} {method} {path} -> {resp.status} {resp.body[:120]!r}")
        elif expected is not None and resp.body != expected:
            problems.append(f"{cls} {method} {path} -> {len(resp.body)} bytes, not the object's "
                            f"{len(expected)} expected bytes")
    if conn is not None:
        conn.close()
    return {"sent": sent, "statuses": statuses, "problems": problems, "reconnects": reconnects}


def _client_process(port: int, deadline: float, threads: int, seed: int) -> dict:
    """A load process: ``threads`` connections; returns the merged tallies."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda n: _client_thread(port, deadline, seed * 1000 + n), range(threads)))
    merged = {"sent": Counter(), "statuses": Counter(), "problems": [], "reconnects": 0}
    for result in results:
        merged["sent"].update(result["sent"])
        merged["statuses"].update(result["statuses"])
        merged["problems"].extend(result["problems"])
        merged["reconnects"] += result["reconnects"]
    return merged


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def memory_allocated(envoy: Envoy) -> int:
    """Envoy's heap in use (tcmalloc), bytes; Wasm VM memory is outside it, in RSS."""
    data = json.loads(envoy._admin_get("/stats?format=json&filter=^server\\.memory_allocated$"))
    return next(s["value"] for s in data["stats"] if s.get("name") == "server.memory_allocated")


def seed_objects(origin: SeaweedFS) -> None:
    objects = {key: object_body(key, HOT_SIZE) for key in HOT_KEYS}
    objects[RANGE_KEY] = object_body(RANGE_KEY, RANGE_SIZE)
    objects.update({key: object_body(key, COLD_SIZE) for key in COLD_KEYS})
    client = origin.client()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), objects.items()))


FILTER = "wasmcustom.envoy_presign."


def filter_counters(stats: dict) -> dict[str, int]:
    """The filter's stats as ``<metric>[.<label>.<value>]@<origin>``."""
    result = {}
    for name, value in stats.items():
        if not name.startswith(FILTER):
            continue
        metric, _, rest = name[len(FILTER):].partition(".origin.")
        origin, _, label = rest.partition(".")
        result[f"{metric}{'.' + label if label else ''}@{origin}"] = value
    return result


def total(counters: dict[str, int], prefix: str, origin: str = "media") -> int:
    return sum(v for k, v in counters.items() if k.startswith(prefix) and k.endswith(f"@{origin}"))


def settle(envoy: Envoy, expected: int, timeout: float = 20.0) -> dict:
    """Envoy's stats once the filter's request counters add up to ``expected`` and
    stopped moving (they are flushed once a second per worker)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        stats = envoy.stats()
        counters = filter_counters(stats)
        counted = total(counters, "requests.outcome.") + total(counters, "requests.outcome.", "_unmatched")
        if counted == expected and counters == last:
            return stats
        if time.monotonic() > deadline:
            return stats
        last = counters
        time.sleep(1.0)


def main() -> int:
    if not WASM_PATH.is_file():
        print(f"missing {WASM_PATH}; run `make build`", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="envoy-presign-soak-"))
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")
        if not ok:
            failures.append(what)

    try:
        with SeaweedFS(workdir, ACCESS_KEY, SECRET_KEY) as origin:
            print(f"seeding {len(HOT_KEYS) + 1 + len(COLD_KEYS)} objects ...", flush=True)
            seed_objects(origin)
            config = filter_config(origin.s3_port)
            config["cache"] = {"enabled": True, "max_entries": MAX_ENTRIES, "scan_interval": 2}
            # The test-only shared-data writer rides along (it answers only requests with its
            # x-test-* headers): at the end it reads slots beyond max_entries, which the filter
            # must never have written.
            writer = writer_filter(build_writer())
            with Envoy(workdir, TEMPLATE_PATH, WASM_PATH, config, origin.s3_port,
                       env=env_credentials(ACCESS_KEY, SECRET_KEY), concurrency=2,
                       extra_list_items={"http_filters": [writer]}) as envoy:
                pid = envoy.proc.pid
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
                if comm != "envoy":
                    raise RuntimeError(f"pid {pid} is {comm!r}, not envoy: RSS would measure the wrong process")
                rss_start = rss_kib(pid)
                print(f"Envoy pid {pid} on :{envoy.port} (2 workers, {MAX_ENTRIES} cache slots), RSS "
                      f"{rss_start / 1024:.1f} MiB; {PROCESSES}x{THREADS} connections for {SECONDS:.0f} s", flush=True)

                started = time.time()
                deadline = started + SECONDS
                samples: list[tuple[float, int]] = []  # (time, VmRSS KiB)
                heap: dict[float, int] = {}  # time -> server.memory_allocated (Envoy's heap)
                spawn = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=PROCESSES, mp_context=spawn) as pool:
                    futures = [pool.submit(_client_process, envoy.port, deadline, THREADS, n + 1)
                               for n in range(PROCESSES)]
                    while not all(f.done() for f in futures):
                        now = time.time()
                        if not samples or now - samples[-1][0] >= SAMPLE_SECONDS:
                            if envoy.alive:
                                samples.append((now, rss_kib(pid)))
                                heap[now] = memory_allocated(envoy)
                        time.sleep(0.2)
                    results = [f.result() for f in futures]
                elapsed = time.time() - started
                now = time.time()
                samples.append((now, rss_kib(pid)))
                heap[now] = memory_allocated(envoy)

                sent, statuses, problems, reconnects = Counter(), Counter(), [], 0
                for result in results:
                    sent.update(result["sent"])
                    statuses.update(result["statuses"])
                    problems.extend(result["problems"])
                    reconnects += result["reconnects"]
                requests = sum(sent.values())
                stats = settle(envoy, requests)
                time.sleep(2.5)  # one more cache scan pass (scan_interval 2) for the gauges
                stats = envoy.stats()
                counters = filter_counters(stats)
                access_lines = envoy.access_log_text().count("\n")
                access_5xx = sum(1 for line in envoy.access_log_text().splitlines() if line.split(" ")[1:2]
                                 and line.split(" ")[1].startswith("5"))
                alive = envoy.alive

                # ---------------- summary ----------------
                print(f"\n{requests} requests in {elapsed:.1f} s = {requests / elapsed:.0f} req/s "
                      f"({reconnects} reconnects)")
                print("  class       sent  statuses")
                for cls in CLASSES:
                    got = {s: n for (c, s), n in sorted(statuses.items()) if c == cls}
                    print(f"  {cls:<10} {sent[cls]:>6}  {got}")
                warmup = max(5.0, SECONDS / 4)
                after_warmup = [(t, r) for t, r in samples if t - started >= warmup]
                base_t, base = after_warmup[0] if after_warmup else samples[0]
                last_t, last = samples[-1]
                growth = last - base
                per_request = growth * 1024 / max(1, requests * (last_t - base_t) / elapsed)
                print(f"RSS: start {rss_start / 1024:.1f} MiB, after {warmup:.0f} s warm-up {base / 1024:.1f} MiB, "
                      f"end {last / 1024:.1f} MiB, growth {growth / 1024:+.2f} MiB ({100 * growth / base:+.1f} %, "
                      f"{per_request:+.1f} B/request), peak {max(r for _, r in samples) / 1024:.1f} MiB")
                print("RSS samples (s, MiB): " + " ".join(f"{t - started:.0f}:{r / 1024:.1f}" for t, r in samples))
                print(f"Envoy heap (server.memory_allocated): after warm-up {heap[base_t] / 2**20:.2f} MiB, "
                      f"end {heap[last_t] / 2**20:.2f} MiB ({(heap[last_t] - heap[base_t]) / 2**20:+.2f} MiB)")
                shown = {k: v for k, v in sorted(counters.items()) if v and not k.startswith(("sign_duration",
                         "filter_duration"))}
                print("filter stats: " + json.dumps(shown, indent=None))

                # ---------------- checks ----------------
                print("\nchecks:")
                check(not problems, f"every response as expected, no transport error ({len(problems)} problems)"
                      + "".join(f"\n      {p}" for p in problems[:15]))
                check(not any(s >= 500 for (_, s) in statuses), "no 5xx answered to the load generator")
                check(alive, "Envoy still running")
                check(stats.get("http.media.downstream_rq_completed") == requests,
                      f"Envoy completed exactly the requests sent ({stats.get('http.media.downstream_rq_completed')}"
                      f" == {requests})")
                check(stats.get("http.media.downstream_rq_5xx", 0) == 0 and access_5xx == 0,
                      f"no 5xx in Envoy's downstream stats ({stats.get('http.media.downstream_rq_5xx', 0)}) "
                      f"or access log ({access_5xx})")
                check(stats.get("cluster.media.upstream_rq_5xx", 0) == 0, "no 5xx from the origin")
                check(access_lines == requests, f"access log lines == requests ({access_lines} == {requests})")
                # Envoy 1.40's reload counters of the filter's VM (FAIL_RELOAD); each must exist,
                # so a renamed stat fails here instead of reading as 0.
                reloads = {name: stats.get(f"wasm.envoy_presign.{name}")
                           for name in ("vm_reload", "vm_reload_success", "vm_reload_failure", "vm_reload_backoff")}
                check(all(v == 0 for v in reloads.values()), f"the Wasm VM never failed or reloaded {reloads}")

                signed = sum(sent[c] for c in SIGNED)
                outcome = {o: counters.get(f"requests.outcome.{o}@media", 0)
                           for o in ("hit", "miss", "refresh", "fallback", "denied", "bypass")}
                check(outcome["hit"] + outcome["miss"] + outcome["refresh"] == signed,
                      f"hit + miss + refresh == signed requests ({outcome['hit']} + {outcome['miss']} + "
                      f"{outcome['refresh']} == {signed})")
                check(outcome["denied"] == sent["bad_path"] + sent["post"],
                      f"denied == bad_path + post ({outcome['denied']} == {sent['bad_path']} + {sent['post']})")
                unmatched = counters.get("requests.outcome.bypass@_unmatched", 0)
                check(unmatched == sent["unknown"],
                      f"bypass (_unmatched) == unknown ({unmatched} == {sent['unknown']})")
                check(outcome["fallback"] == 0 and outcome["bypass"] == 0, f"no fallback or bypass on media {outcome}")
                lookups = sum(counters.get(f"cache_{k}@media", 0) for k in ("hits", "misses", "refreshes"))
                check(lookups == signed, f"cache hits + misses + refreshes == signed ({lookups} == {signed})")
                signed_urls = counters.get("urls_signed@media", 0)
                check(signed_urls == outcome["miss"] + outcome["refresh"],
                      f"urls_signed == miss + refresh ({signed_urls} == {outcome['miss'] + outcome['refresh']})")
                # The origin's answers, as Envoy counts them for the origin's cluster.
                responses = sum(stats.get(f"cluster.media.upstream_rq_{n}xx", 0) for n in range(1, 6))
                ok_responses = stats.get("cluster.media.upstream_rq_2xx", 0)
                check(responses == ok_responses == signed,
                      f"origin responses (all 2xx) == signed ({responses}, {ok_responses}, {signed})")
                check(stats.get("cluster.media.upstream_rq_403", 0) == 0, "no 403 from the origin")
                errors = {k: v for k, v in counters.items() if v and (
                    k.startswith(("sign_errors", "cache_corrupt"))
                    or k.startswith(("store_ops.op.get_error", "store_ops.op.set_error")))}
                check(not errors, f"no sign or store errors {errors}")
                entries = counters.get("cache_entries@media")
                capacity = counters.get("cache_capacity@media")
                check(capacity == MAX_ENTRIES and entries is not None and 0 < entries <= MAX_ENTRIES,
                      f"0 < cache_entries ({entries}) <= max_entries ({MAX_ENTRIES}), capacity {capacity}")
                # The slots themselves, read from outside the filter: entries below the bound
                # (the probe works), none at or beyond it, up to 4 x max_entries.
                below = sum(read_slot(envoy, slot_key(n)) is not None for n in range(MAX_ENTRIES))
                beyond = [n for n in range(MAX_ENTRIES, 4 * MAX_ENTRIES) if read_slot(envoy, slot_key(n)) is not None]
                check(below > 0 and not beyond,
                      f"shared data holds {below} slots below max_entries and none of the "
                      f"{3 * MAX_ENTRIES} beyond it (found {beyond[:10]})")
                check(100 * growth / base <= RSS_GROWTH_PCT,
                      f"RSS growth after warm-up {100 * growth / base:+.1f} % <= {RSS_GROWTH_PCT:.0f} %")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nsoak {'FAILED: ' + str(len(failures)) + ' check(s)' if failures else 'passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
