"""Long responses: a slow client streams to the end, a stalled origin is cut at the idle timeout.

The origin route of envoy/envoy.yaml has no whole-response timeout (``timeout: 0s``) and an
``idle_timeout`` (the ROUTE_IDLE_TIMEOUT placeholder, 30 s shipped): a stream is cut only once
no byte moved in either direction for that long. Here the idle timeout is shortened to
IDLE_TIMEOUT, and:

- a client behind a slow link reads an object from SeaweedFS for more than twice the idle
  timeout, over HTTP/1.1 and over HTTP/2, and gets every byte; the same download through a
  route with the old whole-response timeout (shorter than the transfer) is cut, which is what
  the shipped config used to do to every response lasting over 30 s;
- a stand-in origin that sends its headers and part of the body, then nothing (keeping its
  connection open), is cut at the idle timeout (code 200, flag SI), and one that sends
  nothing gets Envoy's 504 (flag SI); Envoy's connection-manager stats and the origin-stats
  access logger's ``envoy_presign_origin_requests{code,flags}`` count both, with the labels
  the alert rules' gave-up share counts.

The slow link (SlowLink) is a loopback TCP relay that reads from Envoy at a fixed rate into a
fixed socket receive buffer, as a client on a slow network does. Not curl ``--limit-rate``
straight at Envoy: on loopback, curl's kernel autotunes its receive buffer and takes many MiB
in the first tenth of a second (17 MB of a 38 MiB object in one run here, 4 MB of them in
Envoy's socket send buffer); Envoy, its write buffer above the high
watermark, then sees no progress until curl has read that backlog at its limited rate, and its
stream idle timer (reset only by stream events: headers and data passing its filters, not by
socket writes) cuts the stream once that takes longer than the idle timeout. To Envoy that
client stopped reading, and idle_timeout is meant to cut those.

Clients are curl (Debian's, with nghttp2: ``--http2-prior-knowledge`` speaks h2c to the
listener); the access log gets a test-only format that tags every line with the client's
X-Test-Tag header.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ACCESS_KEY, SECRET_KEY, StubOrigin, poll

from promstack import PROMETHEUS_DIR, http_get
from stack import (
    BUCKET,
    TEMPLATE_PATH,
    WASM_PATH,
    Envoy,
    SeaweedFS,
    access_log_format,
    env_credentials,
    filter_config,
)

CREDENTIALS = env_credentials(ACCESS_KEY, SECRET_KEY)
IDLE_TIMEOUT = 2.0  # seconds: the route's idle_timeout in every Envoy of this module
# Tag, protocol, status, flags, details, body bytes sent to the client, stream duration (ms).
# "|"-separated: the details are empty on a reply whose body custom_response replaced.
TAGGED_LOG = access_log_format(
    "%REQ(X-TEST-TAG)%|%PROTOCOL%|%RESPONSE_CODE%|%RESPONSE_FLAGS%|%RESPONSE_CODE_DETAILS%|"
    "%BYTES_SENT%|%DURATION%\n")
SUBSTITUTIONS = {"ROUTE_IDLE_TIMEOUT": f"{IDLE_TIMEOUT:g}s", **TAGGED_LOG}
# Envoy's access-log %DURATION% (ms, truncated) of a stream its timer ended may read a
# millisecond or two under the timeout (seen: 1998 and 1999 ms for 2 s).
TIMER_SLACK_MS = 50
PROTOCOLS = {"http1.1": ["--http1.1"], "http2": ["--http2-prior-knowledge"]}
CURL_HTTP_VERSION = {"http1.1": "1.1", "http2": "2"}
LOG_PROTOCOL = {"http1.1": "HTTP/1.1", "http2": "HTTP/2"}


# ---------------------------------------------------------------------------
# Helpers: curl, the tagged access log, Envoy's origin stats
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    exit_code: int
    status: int
    size: int  # body bytes received
    http_version: str
    elapsed: float  # seconds, wall clock around the whole curl run
    stderr: str


def curl(port: int, path: str, tag: str, protocol: str, out: Path | None = None,
         max_time: float = 30.0) -> Download:
    """GET ``path`` from ``port`` with curl (``protocol`` a PROTOCOLS key), body to ``out``."""
    argv = ["curl", "-sS", "--noproxy", "*", *PROTOCOLS[protocol], "--max-time", f"{max_time:g}",
            "-H", f"X-Test-Tag: {tag}", "-o", str(out) if out else "/dev/null",
            "-w", "%{http_code} %{size_download} %{http_version}", f"http://127.0.0.1:{port}{path}"]
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=max_time + 10)
    elapsed = time.monotonic() - started
    status, size, version = result.stdout.split()
    return Download(result.returncode, int(status), int(size), version, elapsed, result.stderr.strip())


@dataclass(frozen=True)
class LogLine:
    tag: str
    protocol: str
    status: int
    flags: str
    details: str
    bytes_sent: int
    duration_ms: int


def logged(envoy: Envoy, tags: list[str], timeout: float = 5.0) -> dict[str, LogLine]:
    """The TAGGED_LOG line of each tag, once every one is there (a line is written when its
    stream ends; Envoy flushes the file every 100 ms). Fails on a missing or repeated tag."""
    def read() -> dict[str, list[LogLine]]:
        lines: dict[str, list[LogLine]] = {}
        for text in envoy.access_log_text().splitlines(keepends=True):
            if not text.endswith("\n"):
                continue
            tag, protocol, status, flags, details, sent, duration = text.rstrip("\n").split("|")
            lines.setdefault(tag, []).append(LogLine(tag, protocol, int(status), flags, details,
                                                     int(sent), int(duration)))
        return lines

    lines = poll(read, lambda lines: all(tag in lines for tag in tags), timeout=timeout)
    assert all(len(lines.get(tag, [])) == 1 for tag in tags), f"access log lines by tag: {lines}"
    return {tag: lines[tag][0] for tag in tags}


_ORIGIN_REQUESTS = re.compile(r"^envoy_presign_origin_requests\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def origin_requests(envoy: Envoy, origin: str = "media") -> dict[tuple[str, str], float]:
    """``envoy_presign_origin_requests{origin=...}`` of Envoy's /stats/prometheus (the origin
    stats access logger of envoy/envoy.yaml), by (code, flags). A series exists from its
    first count on, so an absent one is 0."""
    text = http_get(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus")
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if match := _ORIGIN_REQUESTS.match(line):
            labels = dict(_LABEL.findall(match.group(1)))
            if labels.get("origin") == origin:
                samples[(labels["code"], labels["flags"])] = float(match.group(2))
    return samples


def gave_up_flags_regex() -> str:
    """The flags matcher of envoy/prometheus/rules.yml's origin:envoy_presign_origin_gave_up:rate5m
    (the requests the origin never answered, or not to the end, in time)."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    expr = next(rule["expr"] for group in groups for rule in group["rules"]
                if rule.get("record") == "origin:envoy_presign_origin_gave_up:rate5m")
    matchers = re.findall(r'flags=~"([^"]*)"', expr)
    assert len(matchers) == 1, f"expected one flags=~ matcher in the gave-up rule:\n{expr}"
    # A PromQL string: backslashes escaped. Prometheus anchors the regex (re.fullmatch).
    return matchers[0].encode().decode("unicode_escape")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------
# A slow client over a long transfer
# ---------------------------------------------------------------------------


class SlowLink:
    """A slow network link between a client and Envoy: a TCP relay on a free loopback port that
    forwards each accepted connection to ``target_port``, the client's bytes as they come and
    Envoy's at ``rate`` bytes/s, read into a socket receive buffer fixed at ``rcvbuf`` (set
    before connecting, so the kernel does not autotune it). Stopped, with every socket closed
    and every thread joined, on leaving the ``with`` block."""

    CHUNK = 16 * 1024

    def __init__(self, target_port: int, rate: float, rcvbuf: int = 64 * 1024):
        self.target_port, self.rate, self.rcvbuf = target_port, rate, rcvbuf
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            with self._lock:
                self._sockets += [client, upstream]
            try:
                upstream.connect(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._spawn(self._copy, client, upstream, None)
            self._spawn(self._copy, upstream, client, self.rate)

    def _copy(self, source: socket.socket, sink: socket.socket, rate: float | None) -> None:
        """``source`` to ``sink`` until EOF or an error, at most ``rate`` bytes/s on average
        from the first byte on; then half-close ``sink`` (EOF, or Envoy's cut, passes on)."""
        first, moved = None, 0
        try:
            while data := source.recv(self.CHUNK):
                sink.sendall(data)
                moved += len(data)
                if rate:
                    first = first or time.monotonic()
                    time.sleep(max(0.0, first + moved / rate - time.monotonic()))
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def __enter__(self) -> "SlowLink":
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        for sock in [self._listener, *sockets]:
            sock.close()
        assert not any(thread.is_alive() for thread in threads), "a SlowLink thread did not stop"


BIG_KEY = "streaming/slow-client.bin"
BIG_SIZE = 14 * 1024 * 1024
# 14 MiB at 1.5 MiB/s: about 9 s for the client. Envoy's own stream ends earlier, once the
# rest of the body fits in its buffers and its socket's send buffer (about 5 MiB here); it
# still lasts over twice IDLE_TIMEOUT. Envoy resumes reading the origin (a stream event, which
# resets the idle timer) whenever its write buffer falls below the low watermark (half of the
# 1 MiB per-connection buffer), which here took about 1.4 MiB read off the link (the kernel
# only takes more once its send buffer has room): every 0.9 s or so at this rate. A link much
# slower than that per idle timeout would be cut: to Envoy, that client stops reading.
SLOW_RATE = 1.5 * 1024 * 1024


@pytest.fixture(scope="module")
def big_object(seaweedfs: SeaweedFS) -> bytes:
    body = random.Random(20250611).randbytes(BIG_SIZE)
    seaweedfs.client().put_object(Bucket=BUCKET, Key=BIG_KEY, Body=body)
    return body


@pytest.fixture(scope="module")
def streaming_envoy(start_envoy, seaweedfs: SeaweedFS, big_object: bytes):
    """The shipped config in front of SeaweedFS, the idle timeout shortened to IDLE_TIMEOUT."""
    envoy = start_envoy(filter_config(seaweedfs.s3_port), CREDENTIALS, extra_substitutions=SUBSTITUTIONS)
    yield envoy
    envoy.stop()


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_slow_client_gets_every_byte_of_a_long_download(streaming_envoy: Envoy, big_object: bytes,
                                                        protocol: str, tmp_path: Path):
    """A viewer on a slow link downloading an object for more than twice the route's idle
    timeout gets all of it, byte for byte, over HTTP/1.1 and HTTP/2: bytes keep moving, so
    the idle timeout never fires, and no whole-response timeout cuts the transfer. Envoy's
    own stream outlasts two idle timeouts too, and it logs a complete 200 (no SI flag) and
    counts no idle timeout."""
    envoy = streaming_envoy
    idle_before = envoy.stats().get("http.media.downstream_rq_idle_timeout", 0)
    out = tmp_path / "download.bin"
    tag = f"slow-{protocol}"
    with SlowLink(envoy.port, SLOW_RATE) as link:
        got = curl(link.port, f"/media/{BIG_KEY}", tag, protocol, out=out, max_time=60)
    line = logged(envoy, [tag])[tag]
    print(f"{protocol}: {got.size} bytes in {got.elapsed:.2f} s, Envoy's stream {line.duration_ms} ms "
          f"(idle timeout {IDLE_TIMEOUT:g} s)")

    assert (got.exit_code, got.status, got.http_version) == (0, 200, CURL_HTTP_VERSION[protocol]), got
    body = out.read_bytes()
    assert (len(body), sha256(body)) == (len(big_object), sha256(big_object))
    # The transfer really outlasted the idle timeout twice over, for the client and for
    # Envoy's stream (else this proves nothing).
    assert got.elapsed >= 2 * IDLE_TIMEOUT, got
    assert line.duration_ms >= 2 * IDLE_TIMEOUT * 1000, line
    assert (line.protocol, line.status, line.flags, line.details, line.bytes_sent) == \
        (LOG_PROTOCOL[protocol], 200, "-", "via_upstream", BIG_SIZE), line
    assert envoy.stats().get("http.media.downstream_rq_idle_timeout", 0) == idle_before


class WholeResponseTimeoutEnvoy(Envoy):
    """The config as it was: the origin route with a whole-response ``timeout`` instead of
    ``timeout: 0s`` (its idle_timeout stays)."""

    def __init__(self, *args, route_timeout: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.route_timeout = route_timeout

    def render(self) -> str:
        text = super().render()
        route = "route: { cluster: media, timeout: 0s,"
        assert text.count(route) == 1, f"envoy/envoy.yaml's origin route no longer reads {route!r}"
        return text.replace(route, f"route: {{ cluster: media, timeout: {self.route_timeout},")


def test_a_whole_response_timeout_would_cut_the_same_download(tmp_path: Path, seaweedfs: SeaweedFS,
                                                               big_object: bytes):
    """The failure the shipped config no longer has: with a whole-response route timeout
    shorter than the transfer (the old ``timeout: 30s``; here IDLE_TIMEOUT), the same slow
    download is cut at that timeout although bytes were moving all along (code 200, flag UT):
    the client gets a truncated object."""
    with WholeResponseTimeoutEnvoy(tmp_path, TEMPLATE_PATH, WASM_PATH, filter_config(seaweedfs.s3_port),
                                   seaweedfs.s3_port, env=CREDENTIALS, extra_substitutions=SUBSTITUTIONS,
                                   route_timeout=f"{IDLE_TIMEOUT:g}s") as envoy:
        with SlowLink(envoy.port, SLOW_RATE) as link:
            got = curl(link.port, f"/media/{BIG_KEY}", "whole-response-timeout", "http1.1", max_time=60)
        line = logged(envoy, ["whole-response-timeout"])["whole-response-timeout"]
    print(f"whole-response timeout {IDLE_TIMEOUT:g} s: {got.size} of {BIG_SIZE} bytes in {got.elapsed:.2f} s, "
          f"Envoy's stream {line.duration_ms} ms")

    # curl: exit 18, "transfer closed with n bytes remaining to read" (after reading what
    # Envoy had written to the link before the cut).
    assert (got.exit_code, got.status) == (18, 200), got
    assert 0 < got.size < BIG_SIZE, got
    assert (line.status, line.flags, line.details) == (200, "UT", "response_timeout"), line
    assert IDLE_TIMEOUT * 1000 - TIMER_SLACK_MS <= line.duration_ms < (IDLE_TIMEOUT + 1) * 1000, line


# ---------------------------------------------------------------------------
# An origin that stops sending
# ---------------------------------------------------------------------------

STALL_PREFIX = "stall-body/"  # 200, Content-Length, STALL_AFTER bytes, then nothing
HOLD_PREFIX = "stall-head/"  # nothing at all (StubOrigin's hold_prefix)
STALL_SIZE = 1024 * 1024
STALL_AFTER = 100 * 1024
# How long the stand-in would stay silent if nobody closed the connection: far beyond the
# idle timeout and beyond curl's --max-time below.
STALL_SECONDS = 60.0
CUT_MARGIN = 1.5  # seconds a cut may come later than expected (a loaded machine)
# When the client sees the cut, after the origin's last byte: at the idle timeout over HTTP/2
# (RST_STREAM); over HTTP/1.1 Envoy closes the connection, after waiting up to the connection
# manager's delayed_close_timeout (1 s by default) for the client to close it first.
CLIENT_SEES_CUT = {"http1.1": IDLE_TIMEOUT + 1.0, "http2": IDLE_TIMEOUT}


class StallingOrigin(StubOrigin):
    """StubOrigin, plus: a GET of a key under ``stall_prefix`` gets the 200 headers with the
    object's full Content-Length and its first ``stall_after`` bytes, then nothing, the
    connection kept open, until the client (Envoy) closes it (event ``"cut"``), ``release()``
    or STALL_SECONDS. Events ``"stalled"`` / ``"cut"`` are recorded with the key."""

    def __init__(self, objects: dict[str, bytes], stall_prefix: str, stall_after: int, **kwargs):
        self.stall_prefix = stall_prefix
        self.stall_after = stall_after
        super().__init__(objects, **kwargs)

    def _handler(self):
        stub = self

        class Handler(super()._handler()):
            def do_GET(self) -> None:  # noqa: N802
                key = self.path.partition("?")[0].removeprefix(f"/{stub.bucket}/")
                if not key.startswith(stub.stall_prefix) or key not in stub.objects:
                    return super().do_GET()
                with stub._lock:
                    stub.paths.append(self.path)
                body = stub.objects[key]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "video/mp4")
                self.end_headers()
                self.wfile.write(body[:stub.stall_after])
                self.wfile.flush()
                stub.record("stalled", key)
                self.close_connection = True  # whatever happens, this connection is done
                deadline = time.monotonic() + STALL_SECONDS
                while not stub._released.wait(0.02) and time.monotonic() < deadline:
                    if self._closed_by_peer():
                        stub.record("cut", key)
                        return

        return Handler


@pytest.fixture(scope="module")
def stalling_origin():
    objects = {"complete.bin": random.Random(1).randbytes(STALL_SIZE),
               f"{STALL_PREFIX}http1.1.bin": random.Random(2).randbytes(STALL_SIZE),
               f"{STALL_PREFIX}http2.bin": random.Random(3).randbytes(STALL_SIZE),
               f"{HOLD_PREFIX}nothing.bin": b"never sent"}
    with StallingOrigin(objects, stall_prefix=STALL_PREFIX, stall_after=STALL_AFTER,
                        hold_prefix=HOLD_PREFIX) as stub:
        yield stub


@pytest.fixture(scope="module")
def stalling_envoy(start_envoy, stalling_origin: StallingOrigin):
    envoy = start_envoy(filter_config(stalling_origin.port), CREDENTIALS, origin_port=stalling_origin.port,
                        extra_substitutions=SUBSTITUTIONS)
    yield envoy
    envoy.stop()


def test_an_origin_that_stops_sending_is_cut_at_the_idle_timeout(stalling_envoy: Envoy,
                                                                 stalling_origin: StallingOrigin):
    """A client whose origin stops sending mid-body (headers and 100 KiB of 1 MiB sent, the
    connection left open) is not left hanging for as long as the origin stays silent: at the
    route's idle timeout Envoy ends the response (HTTP/1.1: closes the connection; HTTP/2:
    resets the stream), so the client sees a short body and can retry, and Envoy closes its
    connection to the origin. An origin that sends nothing at all gets the client Envoy's
    504 at the same timeout.

    Operators see it: Envoy's ``http.media.downstream_rq_idle_timeout`` counts each cut, and
    the origin-stats access logger counts them as
    ``envoy_presign_origin_requests{origin="media",code="200",flags="SI"}`` (mid-body) and
    ``{code="504",flags="SI"}`` (no headers), exactly once per request, a complete response
    staying ``flags="-"``. Those are the series envoy/prometheus/rules_test.yml's "stalled"
    case feeds to ``origin:envoy_presign_origin_gave_up:rate5m`` (whose flags matcher, read
    from rules.yml here, must take SI) and through it to the slow share and
    EnvoyPresignHighLatency."""
    envoy, stub = stalling_envoy, stalling_origin
    idle_before = envoy.stats().get("http.media.downstream_rq_idle_timeout", 0)
    before = origin_requests(envoy)

    # A complete response first: same origin, same route, not cut.
    complete = curl(envoy.port, "/media/complete.bin", "complete", "http1.1")
    assert (complete.exit_code, complete.status, complete.size) == (0, 200, STALL_SIZE), complete

    max_time = IDLE_TIMEOUT + 10  # curl's own limit, far below STALL_SECONDS
    with ThreadPoolExecutor(max_workers=3) as pool:
        mid_body = {protocol: pool.submit(curl, envoy.port, f"/media/{STALL_PREFIX}{protocol}.bin",
                                          f"stall-{protocol}", protocol, max_time=max_time)
                    for protocol in PROTOCOLS}
        no_headers = pool.submit(curl, envoy.port, f"/media/{HOLD_PREFIX}nothing.bin", "nothing", "http1.1",
                                 max_time=max_time)
        cut = {protocol: future.result() for protocol, future in mid_body.items()}
        unanswered = no_headers.result()
    for protocol, got in cut.items():
        print(f"mid-body stall, {protocol}: {got.size} of {STALL_SIZE} bytes, cut after {got.elapsed:.2f} s "
              f"(curl exit {got.exit_code}: {got.stderr})")
    print(f"no headers: {unanswered.status} after {unanswered.elapsed:.2f} s")

    for protocol, got in cut.items():
        assert (got.status, got.http_version) == (200, CURL_HTTP_VERSION[protocol]), got
        # HTTP/1.1: 18, transfer closed with bytes remaining; HTTP/2: 92, stream not closed
        # cleanly (RST_STREAM). 28 would be curl's own --max-time: Envoy never cut it.
        assert got.exit_code == {"http1.1": 18, "http2": 92}[protocol], got
        assert got.size == STALL_AFTER, got
        assert CLIENT_SEES_CUT[protocol] <= got.elapsed < CLIENT_SEES_CUT[protocol] + CUT_MARGIN, got
    assert (unanswered.exit_code, unanswered.status) == (0, 504), unanswered
    assert IDLE_TIMEOUT <= unanswered.elapsed < IDLE_TIMEOUT + CUT_MARGIN, unanswered

    # Envoy let go of the origin too: each silent upstream connection was closed.
    assert poll(lambda: stub.count("cut"), lambda n: n == 2) == 2, stub.events
    assert poll(lambda: stub.count("cancelled"), lambda n: n == 1) == 1, stub.events
    assert stub.count("stalled") == 2 and stub.count("held") == 1, stub.events

    lines = logged(envoy, ["complete", "stall-http1.1", "stall-http2", "nothing"])
    assert [(lines[t].status, lines[t].flags, lines[t].details) for t in lines] == [
        (200, "-", "via_upstream"),
        (200, "SI", "stream_idle_timeout"),
        (200, "SI", "stream_idle_timeout"),
        # Envoy's own 504, its body replaced by custom_response (which leaves no details).
        (504, "SI", ""),
    ], lines
    assert (lines["stall-http1.1"].protocol, lines["stall-http2"].protocol) == ("HTTP/1.1", "HTTP/2"), lines
    # Envoy ended each stream at the idle timeout after the origin's last byte (the stalls
    # began within milliseconds of each request).
    for tag in ("stall-http1.1", "stall-http2", "nothing"):
        assert IDLE_TIMEOUT * 1000 - TIMER_SLACK_MS <= lines[tag].duration_ms < (IDLE_TIMEOUT + CUT_MARGIN) * 1000, lines[tag]

    idle = poll(lambda: envoy.stats().get("http.media.downstream_rq_idle_timeout", 0) - idle_before,
                lambda n: n >= 3)
    assert idle == 3, f"http.media.downstream_rq_idle_timeout went up by {idle}, expected 3"

    expected = {("200", "-"): 1, ("200", "SI"): 2, ("504", "SI"): 1}

    def delta() -> dict[tuple[str, str], float]:
        after = origin_requests(envoy)
        return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}

    counted = poll(delta, lambda d: d == expected)
    assert counted == expected, f"envoy_presign_origin_requests{{origin=\"media\"}} by (code, flags) went up by {counted}"

    # The gave-up rule (rules.yml) counts both SI series, and not the complete response.
    flags = gave_up_flags_regex()
    assert re.fullmatch(flags, "SI") and not re.fullmatch(flags, "-"), \
        f"rules.yml's gave-up matcher flags=~{flags!r} does not count SI (or counts '-')"
