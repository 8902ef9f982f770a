"""Envoy's own remote loading of the filter: ``vm_config.code.remote`` over HTTP, pinned by
``sha256``.

The shipped configuration (envoy/envoy.yaml) with one change: the filter's code comes from an
HTTP server on loopback (``http_uri`` through a static cluster ``wasm_server``) instead of a
local file.  With the build's own digest Envoy loads it and requests are presigned through
SeaweedFS.  With any other digest, what Envoy 1.40 does (observed, and asserted here): it
fetches the module 1 + ``num_retries`` times, logs ``Retry limit exceeded for fetching data
from remote data source`` and ``Plugin envoy_presign failed to load`` (critical), and starts
anyway, its listener serving without the filter: with the shipped ``failure_policy:
FAIL_RELOAD`` every request gets Envoy's own 503 (empty body), and with ``FAIL_OPEN`` the
request goes on unsigned and unmarked, so the shipped routes answer it 404.  Either way nothing
reaches the origin.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import ACCESS_KEY, SECRET_KEY, poll
from test_routing import RecordingOrigin

from stack import TEMPLATE_PATH, Envoy, env_credentials, filter_config, raw_request

WASM_URL_PATH = "/envoy_presign.wasm"
NUM_RETRIES = 2
# The only lines the template changes: where the code comes from, and (for one test) the
# failure policy.
LOCAL_CODE = "local: { filename: ${WASM_PATH} }"
SHIPPED_POLICY = "failure_policy: FAIL_RELOAD"
CLUSTERS = "\n  clusters:\n"


class WasmServer:
    """Serves one file's bytes at WASM_URL_PATH on a free loopback port; counts the fetches."""

    def __init__(self, body: bytes):
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.fetches += 1
                found = self.path == WASM_URL_PATH
                payload = body if found else b""
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/wasm")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def remote_template(workdir: Path, server_port: int, sha256: str, failure_policy: str | None = None) -> Path:
    """envoy/envoy.yaml with the filter's code fetched from ``server_port`` (checked against
    ``sha256``) and a static cluster for that server; written to ``workdir``."""
    text = TEMPLATE_PATH.read_text()
    remote = {"http_uri": {"uri": f"http://127.0.0.1:{server_port}{WASM_URL_PATH}",
                           "cluster": "wasm_server", "timeout": "5s"},
              "sha256": sha256,
              "retry_policy": {"num_retries": NUM_RETRIES,
                               "retry_back_off": {"base_interval": "0.1s", "max_interval": "0.2s"}}}
    cluster = {"name": "wasm_server", "type": "STATIC", "connect_timeout": "1s",
               "load_assignment": {"cluster_name": "wasm_server", "endpoints": [{"lb_endpoints": [
                   {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                "port_value": server_port}}}}]}]}}
    replacements = [(LOCAL_CODE, "remote: " + json.dumps(remote)),
                    (CLUSTERS, CLUSTERS + "  - " + json.dumps(cluster) + "\n")]
    if failure_policy:
        replacements.append((SHIPPED_POLICY, f"failure_policy: {failure_policy}"))
    for old, new in replacements:
        assert text.count(old) == 1, f"{TEMPLATE_PATH} no longer has exactly one {old!r}"
        text = text.replace(old, new)
    path = workdir / "envoy-remote.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def wasm_server(wasm_path):
    server = WasmServer(wasm_path.read_bytes())
    yield server
    server.close()


@pytest.fixture(scope="module")
def start_remote_envoy(tmp_path_factory, wasm_path, wasm_server):
    """Factory: an Envoy whose filter is fetched from ``wasm_server`` with digest ``sha256``."""
    started: list[Envoy] = []

    def make(sha256: str, origin_port: int, failure_policy: str | None = None) -> Envoy:
        workdir = tmp_path_factory.mktemp("envoy-remote")
        template = remote_template(workdir, wasm_server.port, sha256, failure_policy)
        envoy = Envoy(workdir, template, wasm_path, filter_config(origin_port), origin_port,
                      env=env_credentials(ACCESS_KEY, SECRET_KEY))
        started.append(envoy)
        return envoy.start()

    yield make
    for envoy in started:
        envoy.stop()


def test_right_digest_loads_and_signs(start_remote_envoy, wasm_server, wasm_path, seaweedfs, corpus):
    before = wasm_server.fetches
    envoy = start_remote_envoy(hashlib.sha256(wasm_path.read_bytes()).hexdigest(), seaweedfs.s3_port)
    assert wasm_server.fetches - before == 1
    stats = envoy.stats()
    assert (stats["wasm.remote_load_fetch_successes"], stats["wasm.remote_load_fetch_failures"]) == (1, 0)
    key = sorted(corpus.objects)[0]
    resp = raw_request(envoy.port, "GET", "/media/" + "".join(f"%{b:02X}" for b in key.encode()))
    assert (resp.status, resp.body) == (200, corpus.objects[key])
    signing = "envoy-presign: signing with access key " + ACCESS_KEY
    # Envoy flushes its log every 100 ms: wait for the line rather than read once.
    log = poll(envoy.log_text, lambda text: signing in text)
    assert signing in log
    # Envoy 1.40 warns about the feature itself, on every remote load (README.md says so).
    assert "Wasm remote code fetch is unstable and may cause a crash" in log


@pytest.mark.parametrize("failure_policy,status", [(None, 503), ("FAIL_OPEN", 404)],
                         ids=["shipped-FAIL_RELOAD", "FAIL_OPEN"])
def test_wrong_digest_is_refused_and_nothing_reaches_the_origin(start_remote_envoy, wasm_server,
                                                                failure_policy, status):
    wrong = hashlib.sha256(b"not the filter").hexdigest()
    with RecordingOrigin() as origin:
        before = wasm_server.fetches
        envoy = start_remote_envoy(wrong, origin.port, failure_policy)
        # Fetched, refused on the digest, retried, given up on.
        assert wasm_server.fetches - before == 1 + NUM_RETRIES
        stats = envoy.stats()
        assert (stats["wasm.remote_load_fetch_successes"], stats["wasm.remote_load_fetch_failures"]) == (0, 1)
        log = poll(envoy.log_text, lambda text: "Plugin envoy_presign failed to load" in text)
        assert "Retry limit exceeded for fetching data from remote data source" in log
        assert "[critical][wasm]" in log and "Plugin envoy_presign failed to load" in log
        assert "envoy-presign: signing with" not in log, "the filter ran"
        # Envoy serves the listener without the filter.
        assert stats["listener_manager.total_listeners_active"] == 1
        # FAIL_RELOAD fails closed on every request; FAIL_OPEN skips the filter, and with no
        # marker the shipped routes answer 404, a matched path included.
        for path in ("/media/a.txt", "/other"):
            resp = raw_request(envoy.port, "GET", path)
            assert resp.status == status and "x-presign-error" not in resp.headers, (path, resp)
            if status == 503:
                assert resp.body == b""
            else:
                assert json.loads(resp.body) == {"error": "not_found"}
        assert origin.snapshot() == []
