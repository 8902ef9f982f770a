"""Whatever clients send, Envoy's memory stays within the bounds docs/cache.md documents
("Bounded memory"): hostile query strings and paths cannot make the filter store
more than its caps allow, in shared data or in a worker's own copy.

Each test starts its own Envoy in front of a stub origin, measures Envoy's RSS after
a warm-up, sends the hostile traffic over keep-alive connections, and compares the
growth with the bound the caps give for what was sent (plus a fixed allowance for
Envoy's own buffers and allocator). Before the caps, the first case grew Envoy by
about 410 MB and the second by about 80 MB.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import ACCESS_KEY, SECRET_KEY, StubOrigin, poll, settled_rss  # noqa: E402
from stack import HttpConnection, env_credentials, filter_config  # noqa: E402

MIB = 1024 * 1024
# Envoy's own allowance: connection buffers for 60 KB request heads, allocator
# slack, V8 heap growth from ordinary garbage. Not the filter's storage.
ALLOWANCE = 24 * MIB
# docs/cache.md's per-entry bounds (see src/sigv4/canonical.rs, src/cache/local.rs): a shared
# entry holds the encoded key (<= 3 x 1024) and query (<= 2048) twice plus about
# 1 KiB of fixed fields and X-Amz parameters (no session token here); a local entry
# holds at most 4 KiB plus its slot.
SHARED_ENTRY_MAX = 2 * (3 * 1024 + 2048) + 1024
LOCAL_ENTRY_MAX = 4096 + 256


def send(port: int, paths, connections: int = 4) -> dict[int, int]:
    """Sends GET ``paths`` over ``connections`` keep-alive connections; statuses seen."""
    paths = list(paths)
    counts: dict[int, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def client(share: list[str]) -> None:
        conn = HttpConnection(port)
        try:
            for path in share:
                resp = conn.request("GET", path)
                with lock:
                    counts[resp.status] = counts.get(resp.status, 0) + 1
                if resp.headers.get("connection") == "close":  # Envoy closes after a local reply
                    conn.close()
                    conn = HttpConnection(port)
        except BaseException as error:  # noqa: BLE001 - reported below, never lost
            errors.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(paths[i::connections],)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return counts


def gauge(envoy, name: str) -> int | None:
    return envoy.stats().get(f"wasmcustom.envoy_presign.{name}.origin.media")


def start_for(start_envoy, stub: StubOrigin, concurrency: int, **origin):
    config = filter_config(stub.port, **origin)
    config["cache"] = {"scan_interval": 1, **config.get("cache", {})}
    return start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY),
                       concurrency=concurrency, origin_port=stub.port)


def test_huge_allowed_query_values_are_refused_and_store_nothing(start_envoy):
    with StubOrigin({"warm": b"w"}) as stub:
        envoy = start_for(start_envoy, stub, concurrency=1, allow_query=["versionId"])
        send(envoy.port, ["/media/warm"] * 50, connections=1)
        before = settled_rss(envoy.proc.pid)
        value = "v" * 50_000
        counts = send(envoy.port, (f"/media/key-{i}?versionId={value}" for i in range(1000)))
        assert counts == {400: 1000}, counts
        with HttpConnection(envoy.port) as conn:
            resp = conn.request("GET", f"/media/k?versionId={value}")
        assert resp.headers.get("x-presign-error") == "query_too_long"
        growth = settled_rss(envoy.proc.pid) - before
        print(f"50 KB versionId x 1000: RSS {before / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB")
        assert growth < ALLOWANCE, f"RSS grew {growth / MIB:.1f} MiB for 1000 refused requests"
        # The gauges come from a scan pass over the table (3 one-second ticks here): wait for
        # the first pass that saw the warm-up entry. Only that entry is stored.
        assert poll(lambda: gauge(envoy, "cache_entries"), lambda n: (n or 0) >= 1, timeout=30) == 1
        assert gauge(envoy, "cache_bytes") < SHARED_ENTRY_MAX


def test_junk_queries_on_cache_hits_are_not_kept_per_worker(start_envoy):
    with StubOrigin({"hot": b"hot object"}) as stub:
        envoy = start_for(start_envoy, stub, concurrency=2)
        send(envoy.port, ["/media/hot"] * 50)
        before = settled_rss(envoy.proc.pid)
        junk = "j" * 58_000
        counts = send(envoy.port, (f"/media/hot?junk{i}={junk}" for i in range(2600)))
        assert counts == {200: 2600}, counts
        growth = settled_rss(envoy.proc.pid) - before
        print(f"58 KB junk x 2600 hits: RSS {before / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB")
        assert growth < ALLOWANCE, f"RSS grew {growth / MIB:.1f} MiB for 2600 hits with junk queries"


def test_largest_local_table_stays_within_its_entry_bound(start_envoy):
    keys = [f"k{i:05d}-" + "x" * 900 for i in range(4000)]
    with StubOrigin({k: b"." for k in keys}) as stub:
        config = filter_config(stub.port)
        config["cache"] = {"scan_interval": 1, "local_entries": 65_536, "max_entries": 100_000}
        envoy = start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY), concurrency=2,
                            origin_port=stub.port)
        send(envoy.port, ["/media/" + keys[0]] * 50)
        before = settled_rss(envoy.proc.pid)
        # Each key twice: a miss that stores, then hits that fill the local copies.
        counts = send(envoy.port, ["/media/" + k for k in keys] * 2)
        assert counts == {200: 8000}, counts
        growth = settled_rss(envoy.proc.pid) - before
        bound = len(keys) * (SHARED_ENTRY_MAX + 2 * LOCAL_ENTRY_MAX) + ALLOWANCE
        print(f"4000 keys, local_entries 65536: growth {growth / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB")
        assert growth < bound, f"RSS grew {growth / MIB:.1f} MiB, bound {bound / MIB:.1f} MiB"
        # 4,000 keys in 100,000 slots share about 80 slots (birthday bound). A scan pass over
        # 100,000 slots takes 25 ticks (4,096 slots a tick), and the pass under way when the
        # last key was stored may have gone by its slot: up to two passes.
        entries = poll(lambda: gauge(envoy, "cache_entries"), lambda n: (n or 0) > 3700, timeout=90)
        assert 3700 < entries <= len(keys), entries
        assert gauge(envoy, "cache_bytes") <= entries * SHARED_ENTRY_MAX
