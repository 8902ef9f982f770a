"""Routing after the rewrite, and what the origin's replies may show the client.

The shipped configuration (envoy/envoy.yaml) routes a request to origin ``media``'s cluster
only when it carries ``x-envoy-presign-origin: media``, which the filter sets on every
request it forwards (and removes when a client sends it); everything else gets a 404 from
Envoy.  The origin's 3xx (but 304), 4xx (but 416) and 5xx replies are replaced by
``{"error":"origin_error"}`` with the same status, and ``Location`` is removed.

The origin here is a recording stand-in (``RecordingOrigin``) that answers like S3's
documented error shapes: a 403 ``SignatureDoesNotMatch`` whose body repeats the access key
id, the string to sign (credential scope), the canonical request (the presigned query,
session token included) and the signature provided; a 307 ``TemporaryRedirect`` whose
``Location`` and body repeat the presigned URL.  The filter signs with a session token, so
the token case is covered.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import pytest
from conftest import Stats, poll

from stack import (ORIGIN_MARKER_HEADER, TEMPLATE_PATH, Envoy, env_credentials, filter_config, origin_config,
                   raw_request)

ACCESS_KEY = "AKIDROUTINGTEST00001"
SECRET = "sEcReT-routing/test+key=3b9c0e71"
SESSION_TOKEN = "ToKeN-routing/session+token=a4d2" + "Qq" * 40
OBJECT = bytes(range(256)) * 4
ETAG = '"routing-etag"'
CLIENT_SIGNATURE = "c1e4f00dc1e4f00dc1e4f00dc1e4f00dc1e4f00dc1e4f00dc1e4f00dc1e4f00d"
CLIENT_AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=AKIDCLIENTOWN0000001/20260101/us-east-1/s3/"
                        "aws4_request, SignedHeaders=host, Signature=" + CLIENT_SIGNATURE)
CLIENT_QUERY = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDCLIENTOWN0000001%2F20260101%2F"
                "us-east-1%2Fs3%2Faws4_request&X-Amz-Signature=" + CLIENT_SIGNATURE)


class Received(NamedTuple):
    method: str
    target: str  # the request target, path and query, as sent
    headers: dict[str, str]  # lower-case names

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.target.partition("?")[2], keep_blank_values=True))


def signature_does_not_match(request: Received, host: str) -> bytes:
    """S3's 403 SignatureDoesNotMatch for a presigned request, as AWS documents and sends it:
    the canonical request and string to sign the server computed, and what the client sent."""
    query = request.query
    credential = query.get("X-Amz-Credential", "")
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted(query.items()) if k != "X-Amz-Signature")
    canonical = (f"{request.method}\n{request.target.partition('?')[0]}\n{canonical_query}\n"
                 f"host:{host}\n\nhost\nUNSIGNED-PAYLOAD")
    string_to_sign = (f"AWS4-HMAC-SHA256\n{query.get('X-Amz-Date', '')}\n{credential.partition('/')[2]}\n"
                      f"{hashlib.sha256(canonical.encode()).hexdigest()}")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
        "<Message>The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.</Message>"
        f"<AWSAccessKeyId>{credential.partition('/')[0]}</AWSAccessKeyId>"
        f"<StringToSign>{string_to_sign}</StringToSign>"
        f"<SignatureProvided>{query.get('X-Amz-Signature', '')}</SignatureProvided>"
        f"<StringToSignBytes>{string_to_sign.encode().hex(' ')}</StringToSignBytes>"
        f"<CanonicalRequest>{canonical}</CanonicalRequest>"
        f"<CanonicalRequestBytes>{canonical.encode().hex(' ')}</CanonicalRequestBytes>"
        "<RequestId>4442587FB7D0A2F9</RequestId><HostId>routing-test</HostId></Error>"
    ).encode()


class RecordingOrigin:
    """A stand-in S3 origin on a free loopback port that records every request line and its
    headers.  Keys (after ``/<bucket>/``) choose the answer: ``err/403...`` a 403
    SignatureDoesNotMatch, ``err/307...`` a 307 TemporaryRedirect to ``other-host`` with the
    same path and query, ``err/500...`` a 500 InternalError; anything else is the object
    ``OBJECT`` (206 for a satisfiable ``Range``, 416 InvalidRange otherwise, 304 for a
    matching ``If-None-Match``).  A PUT gets 200 with a ``Location`` repeating its target."""

    def __init__(self):
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _handler(self):
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                request = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                with origin._lock:
                    origin.received.append(request)
                key = self.path.partition("?")[0].split("/", 2)[-1]
                headers: dict[str, str] = {"x-amz-request-id": "4442587FB7D0A2F9"}
                if self.command == "PUT":
                    status, body = 200, b""
                    headers["Location"] = f"http://other-host{self.path}"
                elif key.startswith("err/403"):
                    status, body = 403, signature_does_not_match(request, self.headers.get("Host", ""))
                    headers["Content-Type"] = "application/xml"
                elif key.startswith("err/307"):
                    status = 307
                    headers["Location"] = f"http://other-host{self.path}"
                    body = (f"<Error><Code>TemporaryRedirect</Code><Message>Please re-send this request to "
                            f"the specified temporary endpoint.</Message><Endpoint>other-host</Endpoint>"
                            f"<Location>http://other-host{self.path}</Location></Error>").encode()
                elif key.startswith("err/500"):
                    status, body = 500, b"<Error><Code>InternalError</Code><Resource>" + self.path.encode() + b"</Resource></Error>"
                elif self.headers.get("If-None-Match") == ETAG:
                    status, body = 304, b""
                    headers["ETag"] = ETAG
                elif (rng := self.headers.get("Range", "")).startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    first, last = int(first), min(int(last or len(OBJECT) - 1), len(OBJECT) - 1)
                    if first >= len(OBJECT):
                        status = 416
                        body = (f"<Error><Code>InvalidRange</Code><Message>The requested range is not "
                                f"satisfiable</Message><RangeRequested>{rng}</RangeRequested>"
                                f"<ActualObjectSize>{len(OBJECT)}</ActualObjectSize></Error>").encode()
                        headers["Content-Range"] = f"bytes */{len(OBJECT)}"
                    else:
                        status, body = 206, OBJECT[first:last + 1]
                        headers["Content-Range"] = f"bytes {first}-{last}/{len(OBJECT)}"
                else:
                    status, body = 200, OBJECT
                    headers["ETag"] = ETAG
                self.send_response(status)
                headers["Content-Length"] = str(len(body))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD" and status != 304:
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

        return Handler

    def __enter__(self) -> "RecordingOrigin":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def origin():
    with RecordingOrigin() as recording:
        yield recording


@pytest.fixture(scope="module")
def envoy(start_envoy, origin):
    """The shipped config with env credentials and a session token: ``/media/`` signs
    (other methods denied), ``/uploads/`` signs GET/HEAD and passes other methods through."""
    config = filter_config(origin.port)
    config["origins"].append(origin_config(origin.port, name="uploads", match={"prefix": "/uploads/"},
                                           strip_prefix="/uploads/", bucket="uploads",
                                           other_methods="passthrough"))
    envoy = start_envoy(config, env_credentials(ACCESS_KEY, SECRET, SESSION_TOKEN), origin_port=origin.port)
    yield envoy
    envoy.stop()


def forwarded(origin: RecordingOrigin, before: int, count: int) -> list[Received]:
    """The requests the origin got after the first ``before`` (it records a request before
    answering it, so they are all there once the client has its answer)."""
    received = origin.snapshot()[before:]
    assert len(received) == count, received
    return received


def assert_not_found(resp) -> None:
    """Envoy's own 404 for a request no origin route took (not the filter's, not the origin's)."""
    assert resp.status == 404, resp
    assert json.loads(resp.body) == {"error": "not_found"}, resp
    assert resp.headers.get("content-type") == "application/json", resp
    assert "x-presign-error" not in resp.headers, resp


def client_visible(resp) -> str:
    return "\n".join(f"{k}: {v}" for k, v in resp.headers.items()) + "\n" + resp.body.decode("latin-1")


# ---------------------------------------------------------------------------
# A. Only marked requests reach the origin
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/other/x", "/mediax/y", "/", "/media"])
def test_unmatched_path_with_client_credentials_gets_404(envoy, origin, path: str):
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, "GET", f"{path}?{CLIENT_QUERY}",
                       headers={"Authorization": CLIENT_AUTHORIZATION, "x-amz-security-token": "client"})
    assert_not_found(resp)
    forwarded(origin, before, 0)


@pytest.mark.parametrize("marker", ["media", "uploads", "MEDIA", "other"])
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_client_marker_on_unmatched_path_gets_404(envoy, origin, marker: str, method: str):
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, method, "/other/x", headers={ORIGIN_MARKER_HEADER: marker},
                       body=b"payload" if method == "PUT" else b"")
    assert resp.status == 404, resp
    if method != "HEAD":
        assert json.loads(resp.body) == {"error": "not_found"}
    forwarded(origin, before, 0)


def test_client_marker_on_matched_path_is_replaced(envoy, origin):
    """A client claiming another origin on /media/ is signed for media and routed to it."""
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, "GET", "/media/ok/marker.bin", headers={ORIGIN_MARKER_HEADER: "uploads"})
    assert (resp.status, resp.body) == (200, OBJECT), resp
    (got,) = forwarded(origin, before, 1)
    assert got.target.startswith("/media/ok/marker.bin?") and "X-Amz-Signature" in got.query
    assert ORIGIN_MARKER_HEADER not in got.headers


@pytest.mark.parametrize("method,path", [("GET", "/media/ok/creds.bin"), ("PUT", "/uploads/up/creds.bin")],
                         ids=["signed", "passthrough"])
def test_client_credentials_of_every_kind_never_reach_the_origin(envoy, origin, method: str, path: str):
    """Proxy-Authorization, Cookie, a client's own Authorization and x-amz-* headers, and the
    underscore spelling Envoy accepts (x_amz_security_token): none reaches the origin, on a
    signed request or on a method passed through."""
    sent = {"Authorization": CLIENT_AUTHORIZATION, "Proxy-Authorization": "Basic dXNlcjpwYXNz",
            "Cookie": "session=client-cookie", "x-amz-security-token": "client-token",
            "x_amz_security_token": "client-token-underscore", "x-amz-date": "20260101T000000Z"}
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, method, path, headers=sent, body=b"x" if method == "PUT" else b"")
    assert resp.status == 200, resp
    (got,) = forwarded(origin, before, 1)
    leaked = {name: value for name, value in got.headers.items()
              if name in ("authorization", "proxy-authorization", "cookie")
              or name.replace("_", "-").startswith("x-amz-")}
    assert not leaked, leaked
    for value in ("client-token", "client-cookie", "dXNlcjpwYXNz", "AKIDCLIENTOWN"):
        assert value not in got.target and value not in json.dumps(got.headers), value


def test_other_methods_passthrough_strips_client_credentials(envoy, origin):
    bypass = "wasmcustom.envoy_presign.requests.origin.uploads.outcome.bypass"
    # Counters reach Envoy on the filter's 1 s tick: wait for earlier tests' to land first.
    bypassed = envoy.stats().get(bypass, 0)
    time.sleep(1.2)
    while (now := envoy.stats().get(bypass, 0)) != bypassed:
        bypassed = now
        time.sleep(1.2)
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, "PUT", f"/uploads/up/file.bin?{CLIENT_QUERY}&versionId=v1",
                       headers={"Authorization": CLIENT_AUTHORIZATION, "x-amz-security-token": "client",
                                "x-amz-content-sha256": "UNSIGNED-PAYLOAD"},
                       body=b"uploaded bytes")
    assert resp.status == 200, resp
    (got,) = forwarded(origin, before, 1)
    assert got.method == "PUT" and got.target.startswith("/uploads/up/file.bin"), got
    assert "x-amz-" not in got.target.lower(), got.target
    assert CLIENT_SIGNATURE not in got.target
    assert "authorization" not in got.headers, got.headers
    assert not [name for name in got.headers if name.startswith("x-amz-")], got.headers
    assert ORIGIN_MARKER_HEADER not in got.headers
    # The route removes Location from every origin reply.
    assert "location" not in resp.headers, resp.headers
    # Not signed by design: counted as a bypass of its origin (counters flush every second).
    assert poll(lambda: envoy.stats().get(bypass, 0), lambda n: n == bypassed + 1) == bypassed + 1


# (query the client sends, query the origin must get, X-Amz-* parameters removed): S3
# percent-decodes query names (``+`` as a space) before it reads them, so an encoded
# X-Amz-* name is SigV4 material as much as a raw one.
ENCODED_CLIENT_QUERIES = [
    ("X%2DAmz-Signature=forged&x%2damz-credential=a&keep=1", "keep=1", 2),
    ("%58-Amz-Date=20260101T000000Z&a=%41&&b=c+d&X-Amz%2DSecurity-Token=t&%78%2d%61%6d%7a%2dalgorithm=x&c",
     "a=%41&&b=c+d&c", 3),
    ("first=1&X%2DAMZ%2DCREDENTIAL=AKIDCLIENTOWN0000001%2Fx&last=%zz", "first=1&last=%zz", 1),
    # A name that is not valid percent-encoding is removed: what the origin would make of it
    # cannot be known.
    ("X-Amz%zz=1&keep=2", "keep=2", 1),
]


def settled(envoy: Envoy, name: str) -> int:
    """The counter ``name`` once earlier requests' increments have reached Envoy (the filter
    flushes its counters on a 1 s tick)."""
    value = envoy.stats().get(name, 0)
    time.sleep(1.2)
    while (now := envoy.stats().get(name, 0)) != value:
        value = now
        time.sleep(1.2)
    return value


def test_passthrough_strips_percent_encoded_client_sigv4_parameters(envoy, origin):
    """A method passed through unsigned never forwards client SigV4 query parameters, however
    their names are percent-encoded (upper- or lower-case hex, any letter case); the other
    parameters reach the origin byte for byte and in order, and each removed one is counted
    in ``auth_stripped``."""
    stripped = "wasmcustom.envoy_presign.auth_stripped.origin.uploads"
    before_count = settled(envoy, stripped)
    for query, kept, _ in ENCODED_CLIENT_QUERIES:
        before = len(origin.snapshot())
        resp = raw_request(envoy.port, "PUT", f"/uploads/up/encoded.bin?{query}", body=b"uploaded bytes")
        assert resp.status == 200, (query, resp)
        (got,) = forwarded(origin, before, 1)
        assert got.method == "PUT", got
        assert got.target == f"/uploads/up/encoded.bin?{kept}", (query, got.target)
        # As S3 reads the names: none is an X-Amz-* parameter.
        names = [urllib.parse.unquote_plus(pair.partition("=")[0]) for pair in kept.split("&")]
        assert not [n for n in names if n.lower().startswith("x-amz-")], names
        assert "forged" not in got.target and "AKIDCLIENTOWN" not in got.target, got.target
    removed = sum(n for _, _, n in ENCODED_CLIENT_QUERIES)
    total = before_count + removed
    assert poll(lambda: envoy.stats().get(stripped, 0), lambda n: n == total) == total


def test_ordinary_client_headers_reach_the_signed_origin_request(envoy, origin):
    """Only credentials are stripped: conditional, content-negotiation and tracing headers
    reach the origin with the signed request, as docs/configuration.md says."""
    sent = {"If-Modified-Since": "Sat, 28 Nov 2026 00:00:00 GMT", "Accept-Encoding": "gzip",
            "User-Agent": "presign-test/1.0", "X-Forwarded-For": "203.0.113.7", "x-request-id": "rid-headers-1"}
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, "GET", "/media/ok/object.bin", headers=sent)
    assert resp.status == 200, resp
    (got,) = forwarded(origin, before, 1)
    assert "X-Amz-Signature=" in got.target, got.target
    for name, value in sent.items():
        # Envoy may append its own hop to X-Forwarded-For; the client's value stays first.
        assert got.headers.get(name.lower(), "").startswith(value), (name, got.headers)


def test_shipped_config_reloads_a_failed_vm_and_times_out_origin_routes(envoy):
    """envoy/envoy.yaml as Envoy loaded it: the filter's failure_policy is FAIL_RELOAD, the
    origin route has no whole-response timeout (a long video must not be cut) and the
    documented 30 s idle timeout, and the origin cluster a 2 s connect timeout."""
    dump = json.loads(envoy._admin_get("/config_dump"))
    text = json.dumps(dump)
    assert '"failure_policy": "FAIL_RELOAD"' in text
    routes = [route for config in dump["configs"] if "static_route_configs" in config
              for static in config["static_route_configs"]
              for host in static["route_config"]["virtual_hosts"] for route in host["routes"]]
    media = [route for route in routes if route.get("name") == "media"]
    assert media and media[0]["route"]["timeout"] == "0s", media
    assert media[0]["route"]["idle_timeout"] == "30s", media
    clusters = [c["cluster"] for config in dump["configs"] if "static_clusters" in config
                for c in config["static_clusters"]]
    assert [c["connect_timeout"] for c in clusters if c["name"] == "media"] == ["2s"], clusters


def test_marker_never_reaches_origin(envoy, origin):
    before = len(origin.snapshot())
    exchanges = [("GET", "/media/ok/a.bin", {}), ("HEAD", "/media/ok/a.bin", {}),
                 ("GET", "/uploads/ok/b.bin", {ORIGIN_MARKER_HEADER: "media"}),
                 ("PUT", "/uploads/up/c.bin", {ORIGIN_MARKER_HEADER: "uploads"}),
                 ("GET", "/media/err/403-x", {ORIGIN_MARKER_HEADER: "media"})]
    for method, path, headers in exchanges:
        raw_request(envoy.port, method, path, headers=headers, body=b"x" if method == "PUT" else b"")
    received = forwarded(origin, before, len(exchanges))
    assert [r.method for r in received] == [m for m, _, _ in exchanges]
    assert not [r for r in received if ORIGIN_MARKER_HEADER in r.headers], received


def test_filter_local_replies_are_unchanged(envoy, origin):
    before = len(origin.snapshot())
    for method, path, status, code in [("POST", "/media/ok/a.bin", 405, "method_not_allowed"),
                                       ("GET", "/media/a%zz", 400, "invalid_path_encoding"),
                                       ("GET", "/media/a/../b", 400, "invalid_object_key")]:
        resp = raw_request(envoy.port, method, path, headers={ORIGIN_MARKER_HEADER: "media"},
                           body=b"x" if method == "POST" else b"")
        assert resp.status == status, resp
        assert resp.headers.get("x-presign-error") == code, resp.headers
        assert json.loads(resp.body) == {"error": code}
        if status == 405:
            assert resp.headers.get("allow") == "GET, HEAD"
    forwarded(origin, before, 0)


# ---------------------------------------------------------------------------
# B. The origin's replies never hand out signing material
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("key,status", [("err/403-sig.bin", 403), ("err/307-moved.bin", 307),
                                        ("err/500-boom.bin", 500)])
def test_origin_error_replies_hide_the_presigned_query(envoy, origin, key: str, status: int, method: str):
    stats = Stats(envoy)
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, method, f"/media/{key}")
    (got,) = forwarded(origin, before, 1)
    signature, credential = got.query["X-Amz-Signature"], got.query["X-Amz-Credential"]
    # The origin did send it all (so the test would see a leak) ...
    assert got.query.get("X-Amz-Security-Token") == SESSION_TOKEN
    assert credential.startswith(ACCESS_KEY + "/")
    # ... and the client gets the status, none of it.
    assert resp.status == status, resp
    visible = client_visible(resp)
    for secret in (signature, ACCESS_KEY, SESSION_TOKEN, urllib.parse.quote(SESSION_TOKEN, safe=""),
                   credential.partition("/")[2], urllib.parse.quote(credential, safe=""), SECRET):
        assert secret not in visible, (secret, visible)
    assert "x-amz-" not in visible.lower(), visible
    assert "other-host" not in visible and "location" not in resp.headers, visible
    assert "x-presign-error" not in resp.headers
    if method == "GET":
        assert json.loads(resp.body) == {"error": "origin_error"}
        assert resp.headers.get("content-type") == "application/json"
    else:
        assert resp.body == b""
    # Envoy's stats of the origin's cluster still count the origin's own status
    # (the router charges it before custom_response replaces the reply).
    delta = stats.delta()
    assert delta.get(f"cluster.upstream_rq_{status // 100}xx", 0) == 1, delta
    assert delta.get(f"cluster.upstream_rq_{status}", 0) == 1, delta


def test_success_and_conditional_replies_are_untouched(envoy, origin):
    resp = raw_request(envoy.port, "GET", "/media/ok/object.bin")
    assert (resp.status, resp.body, resp.headers.get("etag")) == (200, OBJECT, ETAG), resp
    resp = raw_request(envoy.port, "GET", "/media/ok/object.bin", headers={"Range": "bytes=10-19"})
    assert (resp.status, resp.body) == (206, OBJECT[10:20]), resp
    assert resp.headers.get("content-range") == f"bytes 10-19/{len(OBJECT)}"
    resp = raw_request(envoy.port, "GET", "/media/ok/object.bin", headers={"If-None-Match": ETAG})
    assert resp.status == 304 and resp.body == b"", resp
    resp = raw_request(envoy.port, "GET", "/media/ok/object.bin", headers={"Range": "bytes=5000-"})
    assert resp.status == 416, resp
    assert b"<Code>InvalidRange</Code>" in resp.body and b"<ActualObjectSize>1024<" in resp.body, resp
    assert resp.headers.get("content-range") == f"bytes */{len(OBJECT)}"


def test_raw_non_ascii_paths_are_refused_by_envoy_before_the_filter(envoy, origin):
    """Over HTTP/1.1, Envoy's own codec refuses a raw byte above 0x7F in the request target
    with its 400 "Bad Request" before any filter runs, on an origin's prefix or not: the
    filter's own handling of non-UTF-8 paths (unit-tested) is a second line behind it."""
    before = len(origin.snapshot())
    for path in (b"/other/\xe9t\xe9.bin", b"/media/\xe9t\xe9.bin"):
        resp = raw_request(envoy.port, "GET", path)
        assert (resp.status, resp.body) == (400, b"Bad Request"), resp
        assert "x-presign-error" not in resp.headers, resp
    assert len(origin.snapshot()) == before


def test_host_match_strip_prefix_key_prefix_and_virtual_addressing_end_to_end(start_envoy, origin):
    """match.host (case and a trailing dot ignored), strip_prefix apart from match.prefix,
    key_prefix and addressing: virtual, through Envoy: the origin gets the bucket in Host and
    the prefixed key in the path, signed; another Host gets Envoy's 404 and reaches nothing."""
    config = filter_config(origin.port, match={"prefix": "/v/media/", "host": "cdn.example.com"},
                           strip_prefix="/v/", key_prefix="videos/", addressing="virtual",
                           bucket="vbucket", endpoint=f"http://localhost:{origin.port}")
    envoy = start_envoy(config, env_credentials(ACCESS_KEY, SECRET), origin_port=origin.port)
    before = len(origin.snapshot())
    resp = raw_request(envoy.port, "GET", "/v/media/a%20b.bin", host="CDN.Example.com.")
    assert (resp.status, resp.body) == (200, OBJECT), resp
    (got,) = forwarded(origin, before, 1)
    assert got.headers.get("host") == f"vbucket.localhost:{origin.port}", got.headers
    assert got.target.startswith("/videos/media/a%20b.bin?X-Amz-Algorithm="), got.target
    assert "X-Amz-Signature" in got.query
    assert_not_found(raw_request(envoy.port, "GET", "/v/media/a%20b.bin", host="other.example.com"))
    assert len(origin.snapshot()) == before + 1


def test_startup_log_names_the_access_key_and_no_secret(envoy):
    """docs/operations.md, "What is never exposed": the filter logs only the access key id. At start it
    says which key it signs with (from the VM environment); the secret and the session token
    it was given appear nowhere in Envoy's log."""
    line = f"envoy-presign: signing with access key {ACCESS_KEY} from the VM environment"
    log = poll(envoy.log_text, lambda text: line in text)
    assert line in log, log[-3000:]
    assert SECRET not in log
    assert SESSION_TOKEN not in log


# The first line of the envoy-presign Wasm filter's entry in envoy/envoy.yaml's http_filters,
# and of the connection manager's early header mutation.
WASM_FILTER_ENTRY = "- name: envoy.filters.http.wasm"
EARLY_MUTATION_KEY = "early_header_mutation_extensions:"


def without_yaml_block(text: str, first_line: str) -> str:
    """Rendered YAML ``text`` without the block starting at its one line equal to ``first_line``
    (stripped): a block list item (``- name: ...``) with everything indented deeper, or a key
    with its value, including a block list written at the key's own indent."""
    lines = text.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.strip() == first_line]
    assert len(at) == 1, (first_line, at)
    start = at[0]

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    base, is_key = indent(lines[start]), not first_line.startswith("- ")
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or indent(lines[end]) > base
                                or (is_key and indent(lines[end]) == base and lines[end].lstrip().startswith("- "))):
        end += 1
    return "".join(lines[:start] + lines[end:])


class ShippedEnvoyWithout(Envoy):
    """envoy/envoy.yaml rendered as shipped, then with the blocks starting at ``remove`` taken
    out (the envoy-presign filter, the early header mutation)."""

    def __init__(self, *args, remove: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.remove = remove

    def render(self) -> str:
        text = super().render()
        for first_line in self.remove:
            text = without_yaml_block(text, first_line)
        return text


def test_early_header_mutation_alone_keeps_a_forged_marker_from_the_origin(tmp_path, wasm_path, origin):
    """docs/configuration.md, Routing: a client's own x-envoy-presign-origin "is removed before Envoy chooses
    any route (the connection manager's early_header_mutation_extensions), and by the filter
    too". The first half alone: the shipped config with the envoy-presign filter taken out
    answers a forged marker with the 404, on any path, and nothing reaches the origin.  The same
    config without the early mutation as well routes the forged marker to the origin: the 404
    is the early mutation's doing."""
    config = filter_config(origin.port)

    def shipped_without(remove: list[str]) -> ShippedEnvoyWithout:
        envoy = ShippedEnvoyWithout(tmp_path, TEMPLATE_PATH, wasm_path, config, origin.port,
                                    concurrency=1, remove=remove)
        return envoy.start()

    forged = {ORIGIN_MARKER_HEADER: "media"}
    with shipped_without([WASM_FILTER_ENTRY]) as envoy:
        rendered = envoy.config_path.read_text()
        assert "envoy.filters.http.wasm" not in rendered
        assert "vm_id: envoy_presign" not in rendered
        assert "- remove: x-envoy-presign-origin" in rendered
        for method, path in [("GET", "/other/x"), ("GET", "/media/x"), ("HEAD", "/other/x"), ("PUT", "/media/x")]:
            before = len(origin.snapshot())
            resp = raw_request(envoy.port, method, path, headers=forged, body=b"x" if method == "PUT" else b"")
            if method == "HEAD":
                assert resp.status == 404, resp
            else:
                assert_not_found(resp)
            forwarded(origin, before, 0)
    # Without the early mutation too, the forged marker matches the origin route.
    with shipped_without([WASM_FILTER_ENTRY, EARLY_MUTATION_KEY]) as bare:
        assert "x-envoy-presign-origin" in bare.config_path.read_text()  # the route still needs it
        assert EARLY_MUTATION_KEY not in bare.config_path.read_text()
        before = len(origin.snapshot())
        resp = raw_request(bare.port, "GET", "/other/x", headers=forged)
        assert (resp.status, resp.body) == (200, OBJECT), resp
        (got,) = forwarded(origin, before, 1)
        assert got.target == "/other/x", got
        assert_not_found(raw_request(bare.port, "GET", "/other/x"))
