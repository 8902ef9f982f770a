"""Configuration reload without a restart, end to end.

Envoy starts from envoy/envoy-lds.yaml: its listener (the HTTP connection manager and the
envoy-presign filter with its JSON configuration) is an LDS file rendered from envoy/lds.yaml
in a directory Envoy watches.  A change is a whole new file renamed onto the live one
(``LdsEnvoy.update``), as an operator would do it.  Envoy builds the new filter chain (a new
root context runs ``on_configure``), swaps it into every worker, and drains the old one.

Every request carries an ``X-Test-Tag`` naming when its connection was opened: ``before``
the update was published, ``during`` (published, not yet reported active) or ``after``
Envoy reported it active on every worker (``LdsEnvoy.wait_for_lds``).  The access log
(conftest.PATH_LOG) shows the presigned URL each request reached the origin with, so the
tests check that every ``after`` request carries the new settings, none a URL signed (or
cached) with the old ones, and that nothing failed while the listener was swapped.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

import pytest
from conftest import (
    ACCESS_KEY,
    ALT_ACCESS_KEY,
    ALT_SECRET_KEY,
    PATH_LOG,
    SECRET_KEY,
    Corpus,
    Forwarded,
    Stats,
    describe,
    forwarded,
    media_path,
    poll,
)

from stack import Envoy, HttpConnection, LdsEnvoy, Response, SeaweedFS, filter_config, raw_request

KEYS = ["my file(1).mp4", "emoji/😀🎬.mp4", "all !$&'()*+,;=:@~ subdelims.bin"]
# Drain the old filter chain quickly and close its kept-alive connections at their next
# response (the default is a gradual drain over 600 s).
DRAIN_SECONDS = 5
DRAIN_ARGS = ["--drain-strategy", "immediate", "--drain-time-s", str(DRAIN_SECONDS)]


def inline(access_key: str, secret_key: str) -> dict:
    return {"source": "inline", "access_key_id": access_key, "secret_access_key": secret_key}


def config(seaweedfs: SeaweedFS, credentials: dict | None = None, **origin) -> dict:
    """The filter's configuration: inline credentials (the first identity unless
    given), the documented cache defaults, one ``media`` origin with ``origin``."""
    return filter_config(seaweedfs.s3_port, credentials or inline(ACCESS_KEY, SECRET_KEY), **origin)


def signed_with(access_key: str, expires_in: int):
    """A predicate: the line's URL is signed with this key and lifetime, in an aligned
    window of the default refresh (``expires_in - expires_in / 5`` seconds)."""
    def check(line: Forwarded) -> bool:
        return (line.status in (200, 206) and line.access_key == access_key
                and line.query.get("X-Amz-Expires") == str(expires_in)
                and line.signed_at % (expires_in - expires_in // 5) == 0)
    check.__name__ = f"signed_with({access_key}, {expires_in})"
    return check


def start_reloadable(start_lds_envoy, seaweedfs: SeaweedFS, **settings) -> LdsEnvoy:
    return start_lds_envoy(config(seaweedfs, **settings), extra_substitutions=PATH_LOG, extra_args=DRAIN_ARGS)


def listener_delta(before: dict, after: dict, name: str) -> int:
    return after.get(f"listener_manager.{name}", 0) - before.get(f"listener_manager.{name}", 0)


class TaggedTraffic:
    """GET/HEAD requests for ``KEYS``, each tagged with the phase in force when its
    connection was opened (read before connecting), and checked: 200 and the object's
    exact bytes.  ``background()`` keeps threads sending, each on a new connection."""

    def __init__(self, envoy: Envoy, objects: dict[str, bytes]):
        self.envoy = envoy
        self.objects = objects
        self.phase = "before"
        self.sent: list[str] = []  # tags, one per request sent
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def request(self, key: str, method: str = "GET", connection: HttpConnection | None = None,
                tag: str | None = None) -> Response | None:
        tag = tag or self.phase
        path, headers = media_path(key), {"X-Test-Tag": tag}
        with self._lock:
            self.sent.append(tag)
        try:
            if connection is None:
                resp = raw_request(self.envoy.port, method, path, headers)
            else:
                resp = connection.request(method, path, headers)
        except Exception as error:  # noqa: BLE001 - any failure of a request is a finding, never lost
            with self._lock:
                self.failures.append(f"[{tag}] {method} {key!r}: {error!r}")
            return None
        expected = b"" if method == "HEAD" else self.objects[key]
        if resp.status != 200 or resp.body != expected:
            with self._lock:
                self.failures.append(f"[{tag}] {describe(method, path, resp)}")
        return resp

    def count(self, tag: str) -> int:
        with self._lock:
            return self.sent.count(tag)

    @contextmanager
    def background(self, threads: int = 2):
        stop = threading.Event()

        def run(n: int) -> None:
            i = n
            while not stop.is_set():
                self.request(KEYS[i % len(KEYS)], "HEAD" if i % 3 == 2 else "GET")
                i += 1

        workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.join()


def tagged(lines: list[Forwarded], tag: str) -> list[Forwarded]:
    return [line for line in lines if line.tag == tag]


def assert_all(lines: list[Forwarded], check, what: str) -> None:
    wrong = [line for line in lines if not check(line)]
    assert lines, f"no {what} requests"
    assert not wrong, f"{len(wrong)}/{len(lines)} {what} requests not {check.__name__}:\n" + \
        "\n".join(f"{line.tag} {line.status} {line.method} {line.path}" for line in wrong[:10])


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_lds_bootstrap_loads_the_same_config_as_the_static_one(start_envoy, start_lds_envoy, seaweedfs):
    """envoy/envoy-lds.yaml + envoy/lds.yaml and envoy/envoy.yaml load the same listener,
    clusters and stats_config (as Envoy sees them in /config_dump), so one can replace
    the other; only the listener's port and access-log path differ per instance."""
    cfg = config(seaweedfs)
    static, dynamic = start_envoy(cfg), start_lds_envoy(cfg)

    def dump(envoy: Envoy) -> dict:
        configs = json.loads(envoy._admin_get("/config_dump"))["configs"]
        by_type = {c["@type"].rpartition(".")[2]: c for c in configs}
        listeners = by_type["ListenersConfigDump"]
        [listener] = ([entry["listener"] for entry in listeners.get("static_listeners", [])]
                      + [entry["active_state"]["listener"] for entry in listeners.get("dynamic_listeners", [])])
        listener.pop("@type", None)
        listener["address"]["socket_address"]["port_value"] = "LISTEN_PORT"
        text = json.dumps(listener).replace(json.dumps(str(envoy.access_log_path))[1:-1], "ACCESS_LOG")
        return {
            "listener": json.loads(text),
            "clusters": [c["cluster"] for c in by_type["ClustersConfigDump"]["static_clusters"]],
            "stats_config": by_type["BootstrapConfigDump"]["bootstrap"]["stats_config"],
        }

    want, got = dump(static), dump(dynamic)
    for part in want:
        assert got[part] == want[part], f"{part} differs between envoy.yaml and envoy-lds.yaml + lds.yaml"


CHANGES = {
    # (the origin overrides or credentials of the new config, what its URLs look like)
    "expires_in": ({"expires_in": 1800}, signed_with(ACCESS_KEY, 1800)),
    "credentials": ({"credentials": inline(ALT_ACCESS_KEY, ALT_SECRET_KEY)}, signed_with(ALT_ACCESS_KEY, 3600)),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_live_change_reaches_every_new_connection(start_lds_envoy, seaweedfs, corpus: Corpus, change: str):
    """Traffic flows while the filter's configuration changes through LDS: every request on
    a connection opened after Envoy reports the update reaches the origin with the new
    settings, though the old settings' URLs are still cached; every request gets 200; a
    kept-alive connection from before finishes on the old filter chain and is closed."""
    envoy = start_reloadable(start_lds_envoy, seaweedfs)
    stats = Stats(envoy)
    traffic = TaggedTraffic(envoy, corpus.objects)
    old = signed_with(ACCESS_KEY, 3600)
    settings, new = CHANGES[change]

    kept_alive = HttpConnection(envoy.port)
    for key in KEYS:  # cache every key's URL under the old settings
        traffic.request(key)
        traffic.request(key, "HEAD", connection=kept_alive)
    with traffic.background():
        assert poll(lambda: traffic.count("before"), lambda n: n >= 20) >= 20, "no traffic before the update"
        before = envoy.stats()
        traffic.phase = "during"
        envoy.update(config(seaweedfs, **settings))
        after = envoy.wait_for_lds(before)
        traffic.phase = "after"
        old_connection = traffic.request(KEYS[0], connection=kept_alive, tag="kept-alive")
        for key in KEYS:
            for method in ("GET", "HEAD"):
                traffic.request(key, method)
        assert poll(lambda: traffic.count("after"), lambda n: n >= 40) >= 40, "too little traffic after the update"
    kept_alive.close()
    assert not traffic.failures, f"{len(traffic.failures)}/{len(traffic.sent)} requests failed:\n" + \
        "\n".join(traffic.failures[:20])

    assert (listener_delta(before, after, "lds.update_success"), listener_delta(before, after, "lds.update_rejected"),
            listener_delta(before, after, "listener_in_place_updated")) == (1, 0, 1)
    lines = forwarded(envoy, len(traffic.sent))
    assert_all(tagged(lines, "before"), old, "before")
    assert_all(tagged(lines, "during"), lambda line: old(line) or new(line), "during")
    assert_all(tagged(lines, "after"), new, "after")
    assert_all(tagged(lines, "kept-alive"), old, "kept-alive")
    assert old_connection.headers.get("connection") == "close", old_connection.headers

    # Every request counted once, across both filter chains (their root contexts share
    # the workers' VMs and counter batches); the origin refused none.
    delta = stats.wait(len(traffic.sent))
    assert delta.get("cluster.upstream_rq_403", 0) == 0 and delta.get("requests.outcome.denied", 0) == 0, delta
    # The old filter chain is gone once drained.
    draining = poll(lambda: envoy.stats()["listener_manager.total_filter_chains_draining"], lambda n: n == 0,
                    timeout=DRAIN_SECONDS + 10)
    assert draining == 0
    assert envoy.stats()["listener_manager.total_listeners_draining"] == 0


INVALID = {
    # field named in the log: the config that has it wrong
    "origins[0].expires_in": {"expires_in": 0},
    "credentials.secret_access_key": {"credentials": inline(ALT_ACCESS_KEY, "")},
}


@pytest.mark.parametrize("field", list(INVALID))
def test_invalid_update_is_rejected_and_the_last_good_config_serves(start_lds_envoy, seaweedfs,
                                                                   corpus: Corpus, field: str):
    envoy = start_reloadable(start_lds_envoy, seaweedfs)
    traffic = TaggedTraffic(envoy, corpus.objects)
    good = {"credentials": inline(ALT_ACCESS_KEY, ALT_SECRET_KEY), "expires_in": 1800}
    before = envoy.stats()
    good_version = envoy.update(config(seaweedfs, **good))
    envoy.wait_for_lds(before)

    before = envoy.stats()
    with traffic.background():
        envoy.update(config(seaweedfs, **{**good, **INVALID[field]}))
        after = envoy.wait_for_lds(before, accepted=False)
        traffic.phase = "after"
        for key in KEYS:
            traffic.request(key)
        assert poll(lambda: traffic.count("after"), lambda n: n >= 20) >= 20, "too little traffic after the update"
    assert not traffic.failures, "\n".join(traffic.failures[:20])
    assert (listener_delta(before, after, "lds.update_rejected"), listener_delta(before, after, "lds.update_success"),
            after["listener_manager.lds.version_text"]) == (1, 0, good_version)
    log = poll(envoy.log_text, lambda text: "config rejected" in text)
    assert f"envoy-presign: invalid configuration: {field}: " in log
    assert "lds: listener 'media' config rejected" in log
    assert ALT_SECRET_KEY not in log and SECRET_KEY not in log
    lines = forwarded(envoy, len(traffic.sent))
    assert_all(lines, signed_with(ALT_ACCESS_KEY, 1800), "all")
    # The rejected file stays where it was published, and a restart reads it: Envoy comes up
    # without the listener (connection refused) until the file is fixed.
    assert envoy.lds_path.read_text() == envoy.render_lds()
    envoy.stop()
    envoy.start()
    assert envoy.stats().get("listener_manager.total_listeners_active") == 0
    with pytest.raises(OSError):
        raw_request(envoy.port, "GET", media_path(KEYS[0]), timeout=5)

    # The watch goes on: the next good file is taken.
    before = envoy.stats()
    envoy.update(config(seaweedfs, **{**good, "expires_in": 900}))
    envoy.wait_for_lds(before)
    traffic.phase = "fixed"
    for key in KEYS:
        traffic.request(key)
    assert not traffic.failures, "\n".join(traffic.failures)
    assert_all(tagged(forwarded(envoy, len(traffic.sent)), "fixed"), signed_with(ALT_ACCESS_KEY, 900), "fixed")


def test_editing_the_live_file_in_place_is_not_picked_up(start_lds_envoy, seaweedfs):
    """Envoy watches the directory for a rename onto the live path (see README.md): a new
    listener written into the live file in place, a complete and valid one, is not loaded."""
    envoy = start_reloadable(start_lds_envoy, seaweedfs)
    before = envoy.stats()
    envoy.filter_config = config(seaweedfs, expires_in=1800)
    envoy.version += 1
    with open(envoy.lds_path, "w") as live:  # in place: same inode, no rename
        live.write(envoy.render_lds())
    time.sleep(3)
    after = envoy.stats()
    assert listener_delta(before, after, "lds.update_success") == 0, after
    assert listener_delta(before, after, "lds.update_rejected") == 0, "Envoy read the half-written file"
    assert after["listener_manager.lds.version_text"] == before["listener_manager.lds.version_text"]
