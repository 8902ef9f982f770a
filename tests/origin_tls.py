"""Envoy with the shipped HTTPS origin cluster (envoy/origin-https.yaml), and a recording
TLS server to point it at.

``https_origin_cluster`` takes the shipped cluster ``media`` and changes only what a test
must: where it connects (127.0.0.1 and a port, ``STATIC``: there is no DNS name for the test
store), the name it expects (``sni`` and the subject alt name, the shipped
s3.eu-west-1.amazonaws.com replaced by the test's name) and the CA bundle (the test CA
instead of the system's). Everything else, the transport socket's type, the validation
context and its matcher's shape, stays as shipped, so a test of it is a test of the file.

``HttpsOriginEnvoy`` is stack.Envoy (envoy/envoy.yaml rendered) with its cluster ``media``
replaced by that cluster, as a user merges the file into their bootstrap.
"""

from __future__ import annotations

import copy
import socket
import ssl
import threading
from pathlib import Path
from typing import Callable

import yaml

from stack import REPO_ROOT, Envoy

ORIGIN_HTTPS_EXAMPLE = REPO_ROOT / "envoy" / "origin-https.yaml"
# The host the shipped file is written for, in its address, sni and subject alt name.
SHIPPED_HOST = "s3.eu-west-1.amazonaws.com"
TLS_SOCKET = "envoy.transport_sockets.tls"


def shipped_cluster() -> dict:
    """envoy/origin-https.yaml's one cluster, as loaded from YAML."""
    [cluster] = yaml.safe_load(ORIGIN_HTTPS_EXAMPLE.read_text())["clusters"]
    return cluster


def tls_context(cluster: dict) -> dict:
    """The UpstreamTlsContext of ``cluster``'s transport socket."""
    socket_ = cluster["transport_socket"]
    assert socket_["name"] == TLS_SOCKET, socket_
    return socket_["typed_config"]


def https_origin_cluster(port: int, name: str, ca_file: Path | str) -> dict:
    """The shipped cluster pointed at 127.0.0.1:``port``, expecting ``name`` (SNI and the
    DNS subject alt name) and trusting ``ca_file``.  Fails if the file's shape is not the one
    this adapts (one endpoint, the shipped host in sni and in one exact DNS matcher)."""
    cluster = copy.deepcopy(shipped_cluster())
    assert cluster["name"] == "media", cluster
    cluster["type"] = "STATIC"
    cluster.pop("dns_lookup_family", None)
    [[endpoint]] = [group["lb_endpoints"] for group in cluster["load_assignment"]["endpoints"]]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address == {"address": SHIPPED_HOST, "port_value": 443}, address
    endpoint["endpoint"]["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": port}}
    context = tls_context(cluster)
    assert context["sni"] == SHIPPED_HOST, context
    context["sni"] = name
    validation = context["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": "/etc/ssl/certs/ca-certificates.crt"}, validation
    validation["trusted_ca"] = {"filename": str(ca_file)}
    [san] = validation["match_typed_subject_alt_names"]
    assert san == {"san_type": "DNS", "matcher": {"exact": SHIPPED_HOST}}, san
    san["matcher"]["exact"] = name
    return cluster


def with_cluster(rendered: str, cluster: dict) -> str:
    """A rendered Envoy config (YAML text) with its cluster of the same name replaced."""
    config = yaml.safe_load(rendered)
    clusters = config["static_resources"]["clusters"]
    [at] = [i for i, item in enumerate(clusters) if item["name"] == cluster["name"]]
    clusters[at] = cluster
    return yaml.safe_dump(config, sort_keys=False)


class HttpsOriginEnvoy(Envoy):
    """stack.Envoy whose cluster ``media`` is ``https_origin_cluster(origin_port, name,
    ca_file)``: the origin's https port, the name the filter signs for, the test CA."""

    def __init__(self, *args, tls_name: str, ca_file: Path | str,
                 cluster_edit: Callable[[dict], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.tls_name = tls_name
        self.ca_file = Path(ca_file)
        # Tests only: changes the cluster after adapting it (a check taken out, to show
        # what it refuses).
        self.cluster_edit = cluster_edit

    def render(self) -> str:
        cluster = https_origin_cluster(self.origin_port, self.tls_name, self.ca_file)
        if self.cluster_edit:
            self.cluster_edit(cluster)
        return with_cluster(super().render(), cluster)


class RecordingTlsServer:
    """A TLS server on a loopback port presenting one certificate, from a thread.

    Counts every TCP connection it accepts (``accepted``), records the SNI of every TLS hello
    (``server_names``, None for a hello without one), every handshake that failed with
    the reason its ssl module gave (``handshake_errors``: the client's alert), every one that
    completed (``handshakes``), and records the request line of every HTTP request it reads
    (``requests``). Each request gets ``200`` with ``body`` and the connection is closed; it
    forwards nothing anywhere.
    """

    def __init__(self, cert: Path | str, key: Path | str, body: bytes = b"recorded\n"):
        self.body = body
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.context.sni_callback = self._sni
        self.server_names: list[str | None] = []
        self.accepted = 0
        self.handshakes = 0
        self.handshake_errors: list[str] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _sni(self, _sslobj, server_name: str | None, _context) -> None:
        with self._lock:
            self.server_names.append(server_name)

    def snapshot(self) -> dict:
        with self._lock:
            return {"accepted": self.accepted, "handshakes": self.handshakes, "server_names": list(self.server_names),
                    "handshake_errors": list(self.handshake_errors), "requests": list(self.requests)}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as error:  # the handshake failed
            with self._lock:
                self.handshake_errors.append(getattr(error, "reason", None) or f"{type(error).__name__}: {error}")
            conn.close()
            return
        with self._lock:
            self.handshakes += 1
        with tls:
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    head += chunk
            except OSError:
                pass
            if not head:
                return
            with self._lock:
                self.requests.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(self.body) + self.body)

    def __enter__(self) -> "RecordingTlsServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
