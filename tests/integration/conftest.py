"""Session fixtures for the end-to-end tests: one SeaweedFS with a hard-key corpus,
one Envoy running the filter in front of it, and a factory for extra Envoys.

The corpus is the point of these tests: every character class that has ever
broken an S3 signer (sub-delims, '%', '+', unicode, empty path segments, the
1024-byte limit) is uploaded with boto3 and must come back byte-identical
through Envoy, whatever encoding the client used for the path.
"""

from __future__ import annotations

import calendar
import itertools
import os
import random
import re
import select
import shutil
import socket
import string
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `import stack`

from credenv import SESSION_KEK, RotatingEnvoy  # noqa: E402
from credstub import CredStub  # noqa: E402
from stack import (  # noqa: E402
    BUCKET,
    PORT_CLAIMS_ENV,
    TEMPLATE_PATH,
    WASM_PATH,
    Envoy,
    LdsEnvoy,
    SeaweedFS,
    access_log_format,
    env_credentials,
    filter_config,
    origin_config,
    raw_request,
)

ACCESS_KEY = "AKIDPRESIGNTEST0001"
# Distinctive so a leak into a response or a log can be grepped for.
SECRET_KEY = "sEcReT-e2e/DO+NOT=LEAK-4f1c9a7e"
# A second, read-only identity of the session's SeaweedFS: the credentials a live
# configuration change (test_reload.py) rotates to.
ALT_ACCESS_KEY = "AKIDPRESIGNTEST0002"
ALT_SECRET_KEY = "sEcReT-alt/DO+NOT=LEAK-90d2b3c8"
VERSIONED_BUCKET = "versioned"


def get_ok(envoy: Envoy, objects: dict[str, bytes]):
    """A check for assert_each: GET the key, expect 200 and its exact bytes."""
    def check(key: str) -> str | None:
        path = media_path(key)
        resp = raw_request(envoy.port, "GET", path)
        if resp.status != 200 or resp.body != objects[key]:
            return f"{key!r}: {describe('GET', path, resp)} ({len(resp.body)} of {len(objects[key])} bytes)"
        return None
    return check


def connections_per_worker(envoy: Envoy) -> dict[str, int]:
    """Downstream connections each worker accepted on the media listener."""
    pattern = re.compile(rf"^listener\.127\.0\.0\.1_{envoy.port}\.(worker_\d+)\.downstream_cx_total$")
    return {m.group(1): v for name, v in envoy.stats().items() if (m := pattern.match(name))}


def hammer(check, key_of, clients: int, seconds: float, pause: float = 0.0) -> tuple[int, list[str]]:
    """``clients`` threads calling ``check(key) -> failure | None`` in a loop for
    ``seconds``, the i-th request of client n asking for ``key_of(n, i)``.
    Returns how many requests were sent and every failure (an exception counts)."""
    deadline = time.monotonic() + seconds
    sent = [0] * clients
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        while time.monotonic() < deadline:
            key = key_of(n, sent[n])
            try:
                failure = check(key)
            except Exception as error:  # noqa: BLE001 - any failure is a finding, never lost in a thread
                failure = f"{key!r}: {error!r}"
            sent[n] += 1
            if failure:
                with lock:
                    failures.append(failure)
            if pause:
                time.sleep(pause)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(sent), failures


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------


def sized_key(prefix: str, unit: str, total: int = 1024, segment_bytes: int = 200) -> str:
    """A key of exactly ``total`` UTF-8 bytes (S3's limit is 1024).

    Split into segments of about ``segment_bytes``: SeaweedFS stores keys as
    filer paths and refuses a single path component longer than 255 bytes.
    """
    key, segment = prefix, 0
    unit_len = len(unit.encode())
    while len(key.encode()) < total:
        room = total - len(key.encode())
        if segment + unit_len > segment_bytes and room > 1:
            key, segment = key + "/", 0
        elif unit_len <= room:
            key, segment = key + unit, segment + unit_len
        else:
            key, segment = key + "x", segment + 1
    assert len(key.encode()) == total and not key.endswith("/")
    return key


HARD_KEYS = [
    "my file(1).mp4",
    "clips/my file(1).mp4",
    "space in name.txt",
    " leading and trailing space ",
    "plus+sign.txt",
    "a+b+c/d+e.txt",
    "tilde~file~.txt",
    "~home/user.txt",
    "at@sign.txt",
    "user@example.com/avatar.png",
    "paren(s).txt",
    "bang!.txt",
    "star*.txt",
    "quote'single.txt",
    "eq=als.txt",
    "k=v&x=y.txt",
    "com,ma.txt",
    "semi;colon.txt",
    "literal%25percent.txt",
    "bare%percent.txt",
    "50% off.txt",
    "%2e%2e/literal-dot-escape.txt",  # a literal "%2e%2e" segment is not ".."
    "%2F-literal-escaped-slash.txt",
    "amp&ersand.txt",
    "dollar$ign.txt",
    "co:lon.txt",
    "12:30:00.log",
    "question?mark.txt",
    "hash#tag.txt",
    "brack[et]s.txt",
    "all !$&'()*+,;=:@~ subdelims.bin",
    'unsafe "quotes" <angle> {brace} |pipe| ^caret^ `tick`.txt',
    "café.txt",
    "unicode/é/ñ/ü.txt",
    "中文/文件名.txt",
    "emoji/😀🎬.mp4",
    "mixed/Ünïcödé + spaces (and) 中.txt",
    "nested/a/b/c/d/e.txt",
    "dbl//slash.txt",
    "dbl2/x//y///z.txt",
    "/leading-slash.txt",
    "dots/trailing.dot.",
    "dots/...three.txt",
    "dots/.hidden",
    "dots/..double-prefix",
    "UPPER/lower/MiXeD.TXT",
    "-dash_underscore.txt",
    sized_key("long-ascii/", "x"),
    sized_key("long-utf8/", "é中"),
]
ZERO_BYTE_KEY = "empty/zero-bytes.bin"
BIG_KEY = "big/multi-chunk.bin"  # above weed's 4 MiB chunk size, so it spans chunks
FILLER_SEPARATORS = [" ", "+", "~", "@", "(", ")", "!", "*", "'", "=", ",", ";", "&",
                     "$", ":", "?", "#", "[", "]", "%", "%25", "é", "中", "😀", "-", "."]


def _filler_keys(count: int) -> list[str]:
    """Extra keys to pass 100, each mixing one separator into a nested path."""
    separators = itertools.cycle(FILLER_SEPARATORS)
    return [f"gen/{i % 7}/file{sep}{i:03d}{sep}end.bin" for i, sep in zip(range(count), separators)]


def _seaweed_path(key: str) -> str:
    """How SeaweedFS files a key: empty segments (``a//b``, leading ``/``) collapse."""
    return "/".join(part for part in key.split("/") if part)


def _check_corpus(keys: list[str]) -> None:
    """Keys must stay distinct after SeaweedFS's path collapsing, and no key may
    be a directory of another (the filer cannot hold both)."""
    paths = [_seaweed_path(k) for k in keys]
    assert len(set(paths)) == len(paths), "two keys collapse to the same SeaweedFS path"
    directories = {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}
    clashes = directories.intersection(paths)
    assert not clashes, f"keys that are also directories: {sorted(clashes)}"
    too_long = [k for k in keys if len(k.encode()) > 1024]
    assert not too_long, "keys longer than S3's 1024 bytes"


@dataclass(frozen=True)
class Corpus:
    objects: dict[str, bytes]

    @property
    def keys(self) -> list[str]:
        return list(self.objects)

    def with_min_size(self, size: int) -> list[str]:
        return [k for k, v in self.objects.items() if len(v) >= size]


def build_corpus(seed: int = 20241128) -> Corpus:
    """Deterministic keys and random bodies of varied sizes (some < 200 bytes)."""
    rng = random.Random(seed)
    keys = HARD_KEYS + _filler_keys(60)
    _check_corpus(keys + [ZERO_BYTE_KEY, BIG_KEY])
    objects = {key: rng.randbytes(rng.choice([rng.randint(1, 199), rng.randint(200, 8192)])) for key in keys}
    objects[ZERO_BYTE_KEY] = b""
    objects[BIG_KEY] = rng.randbytes(5 * 1024 * 1024 + 123)
    return Corpus(objects)


# ---------------------------------------------------------------------------
# Request helpers shared by the test modules
# ---------------------------------------------------------------------------

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def pct(char: str, lower: bool = False) -> str:
    return "".join(("%{:02x}" if lower else "%{:02X}").format(b) for b in char.encode())


def encode_full(key: str) -> str:
    """Encode every byte except unreserved characters and '/' (as S3 and the filter do)."""
    return "".join(c if c in UNRESERVED or c == "/" else pct(c) for c in key)


def media_path(key: str, encoder=encode_full) -> str:
    return "/media/" + encoder(key)


def describe(method: str, path: str, resp) -> str:
    """The exact request and the gist of the response, for failure reports."""
    text = f"{method} {path if len(path) <= 200 else path[:200] + '...'} -> {resp.status}"
    if "x-presign-error" in resp.headers:
        text += f" x-presign-error={resp.headers['x-presign-error']}"
    if resp.status >= 300:
        text += f" body={resp.body[:160]!r}"
    return text


def assert_each(keys: list[str], check, what: str, workers: int = 8) -> None:
    """Run ``check(key) -> failure message | None`` for every key concurrently and
    report all failures at once, so one broken character class doesn't hide another."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        failures = [message for message in pool.map(check, keys) if message]
    assert not failures, f"{len(failures)}/{len(keys)} {what} failed:\n" + "\n".join(failures)


# ---------------------------------------------------------------------------
# A stand-in origin
# ---------------------------------------------------------------------------


class StubOrigin:
    """A stand-in S3 origin on a loopback port, served from a thread.

    Answers GET and HEAD of ``objects`` (by key, under ``/<bucket>/``; one
    ``Range: bytes=a-b`` honoured with a 206) without checking signatures, 404
    otherwise, and records every request target it gets in ``paths``.  A request
    whose key starts with ``hold_prefix`` is held unanswered until ``release()``
    or until the client (Envoy) closes the connection.  ``events`` lists, in
    order, ``("held" | "cancelled" | "served", key)``.
    """

    def __init__(self, objects: dict[str, bytes], hold_prefix: str | None = None, bucket: str = BUCKET):
        self.objects = objects
        self.hold_prefix = hold_prefix
        self.bucket = bucket
        self.paths: list[str] = []
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def record(self, event: str, key: str) -> None:
        with self._lock:
            self.events.append((event, key))

    def count(self, event: str) -> int:
        with self._lock:
            return sum(1 for e, _ in self.events if e == event)

    def release(self) -> None:
        self._released.set()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY: the head and the body are two writes, and with Nagle the body
            # waited for Envoy's delayed ACK of the head (40 ms per response on a kept-alive
            # upstream connection).
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # quiet
                pass

            def _closed_by_peer(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                try:
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _answer(self, head: bool) -> None:
                with stub._lock:
                    stub.paths.append(self.path)
                raw_key = self.path.partition("?")[0].removeprefix(f"/{stub.bucket}/")
                key = urllib.parse.unquote(raw_key)
                if stub.hold_prefix is not None and key.startswith(stub.hold_prefix):
                    stub.record("held", key)
                    while not stub._released.wait(0.02):
                        if self._closed_by_peer():
                            stub.record("cancelled", key)
                            self.close_connection = True
                            return
                body = stub.objects.get(key)
                status, extra = 200, {}
                if body is None:
                    status, body = 404, b"<Error><Code>NoSuchKey</Code></Error>"
                elif (m := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))):
                    first = int(m.group(1))
                    last = min(int(m.group(2)) if m.group(2) else len(body) - 1, len(body) - 1)
                    extra["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                    status, body = 206, body[first:last + 1]
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), "ETag": '"stub"', **extra}.items():
                    self.send_header(name, value)
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                stub.record("served", key)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(head=True)

        return Handler

    def __enter__(self) -> "StubOrigin":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


# ---------------------------------------------------------------------------
# The access log (the URL the origin got) and the filter's stats
# ---------------------------------------------------------------------------

# A test-only access log format (stack.access_log_format): the request's start time, status
# and method, the :path the origin received (the presigned URL), and the client's X-Test-Tag
# header ("-" without one). The shipped config never logs :path (see envoy/envoy.yaml).
PATH_LOG = access_log_format(
    "%START_TIME(%s.%3f)% %RESPONSE_CODE% %REQ(:METHOD)% %REQ(:PATH)% %REQ(X-TEST-TAG)%\n")


@dataclass(frozen=True)
class Forwarded:
    """One PATH_LOG line: a request and the presigned path the origin received."""

    start: float  # request start, Unix seconds (ms precision)
    status: int
    method: str
    path: str
    tag: str = "-"

    @property
    def key(self) -> str:
        return urllib.parse.unquote(self.path.partition("?")[0].removeprefix(f"/{BUCKET}/"))

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.path.partition("?")[2], keep_blank_values=True))

    @property
    def signed_at(self) -> int:
        """X-Amz-Date as Unix seconds."""
        return calendar.timegm(time.strptime(self.query["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))

    @property
    def expires_at(self) -> int:
        return self.signed_at + int(self.query["X-Amz-Expires"])

    @property
    def access_key(self) -> str:
        """The access key id the URL was signed with (first part of X-Amz-Credential)."""
        return self.query.get("X-Amz-Credential", "").partition("/")[0]


def poll(read, done, timeout: float = 5.0):
    """``read()`` until ``done(value)`` or the timeout; the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


# The aligned signing window of the default settings (expires_in 3600 s - refresh_before
# 720 s): entries are refreshed at each multiple of it since the epoch.
DEFAULT_WINDOW_SECONDS = 3600 - 3600 // 5


def clear_of_window_boundary(seconds: float, window: int = DEFAULT_WINDOW_SECONDS) -> None:
    """Sleep past the next aligned window start if it falls within the next ``seconds``, so
    a test that counts signatures exactly cannot see a refresh mid-test, whatever the clock."""
    to_boundary = window - time.time() % window
    if to_boundary < seconds:
        time.sleep(to_boundary + 0.25)


def forwarded(envoy: Envoy, count: int) -> list[Forwarded]:
    """The PATH_LOG lines once the log holds ``count`` (Envoy flushes it every 100 ms)."""
    lines = poll(lambda: [line for line in envoy.access_log_text().splitlines(keepends=True)
                          if line.endswith("\n")],
                 lambda lines: len(lines) >= count)
    assert len(lines) == count, f"expected {count} access-log lines, got {len(lines)}"
    result = []
    for line in lines:
        start, status, method, rest = line.rstrip("\n").split(" ", 3)
        path, _, tag = rest.rpartition(" ") if rest.count(" ") else (rest, "", "-")
        result.append(Forwarded(float(start), int(status), method, path, tag))
    return result


def rss(pid: int) -> int:
    """Resident memory of process ``pid``, in bytes (/proc/<pid>/status VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settled_rss(pid: int) -> int:
    """RSS once it stops moving (the largest of a few samples a tick apart)."""
    samples = []
    for _ in range(4):
        samples.append(rss(pid))
        time.sleep(0.3)
    return max(samples)


class Stats:
    """The filter's stats of origin ``media`` by short name (``cache_hits``,
    ``requests.outcome.hit``, ``store_ops.op.get_ok``), and Envoy's own stats of
    the origin's cluster ``media`` as ``cluster.<stat>`` (``cluster.upstream_rq_2xx``,
    ``cluster.upstream_rq_403``: the origin's responses), as deltas from creation.
    Envoy creates a per-code counter on its first use: read them with ``.get``."""

    PREFIX = "wasmcustom.envoy_presign."
    ORIGIN = ".origin.media"
    CLUSTER = "cluster.media."

    def __init__(self, envoy: Envoy):
        self.envoy = envoy
        self.base = self.read()

    def read(self) -> dict[str, int]:
        stats = self.envoy.stats()
        own = {name[len(self.PREFIX):].replace(self.ORIGIN, "", 1): value
               for name, value in stats.items() if name.startswith(self.PREFIX) and self.ORIGIN in name}
        cluster = {"cluster." + name[len(self.CLUSTER):]: value
                   for name, value in stats.items() if name.startswith(self.CLUSTER)}
        return own | cluster

    def delta(self) -> dict[str, int]:
        return {name: value - self.base.get(name, 0) for name, value in self.read().items()}

    def wait(self, requests: int) -> dict[str, int]:
        """Deltas once every counter of ``requests`` requests, each answered by
        the origin, has reached Envoy (counters are flushed once a second)."""
        def counted(delta: dict[str, int]) -> tuple[int, int]:
            return (sum(v for k, v in delta.items() if k.startswith("requests.outcome.")),
                    sum(delta.get(f"cluster.upstream_rq_{n}xx", 0) for n in range(1, 6)))

        delta = poll(self.delta, lambda d: counted(d) == (requests, requests))
        assert counted(delta) == (requests, requests), f"(requests, origin responses) counted:\n{delta}"
        return delta


# ---------------------------------------------------------------------------
# pytest-xdist workers: the order modules are handed out, the ports they share
# ---------------------------------------------------------------------------

# Rough wall seconds of each module on a loaded 2-core machine (three workers), for
# scheduling only: `make integration` runs the modules on pytest-xdist workers, whole
# modules each (--dist loadfile, so module fixtures are made once), in collection order
# (--no-loadscope-reorder). Handing out the longest first lets the workers end together
# instead of one starting a long module last. A module missing here counts as short; a
# wrong figure costs time, never a test.
MODULE_SECONDS = {
    "test_rotating_credentials.py": 215, "test_docker.py": 180, "test_hostile_credentials.py": 95,
    "test_media.py": 70, "test_faults.py": 55, "test_cache.py": 50, "test_hostile_memory.py": 45,
    "test_metrics.py": 45, "test_origin_tls.py": 40, "test_config_tool.py": 40,  # with the tool's build
    "test_manifests.py": 40, "test_credential_monitoring.py": 35, "test_reload.py": 35,
    "test_streaming.py": 35, "test_redirect.py": 25, "test_secrets.py": 20, "test_presign_e2e.py": 15,
    "test_routing.py": 15, "test_overrides.py": 10, "test_runbook_commands.py": 10,
}


def pytest_configure(config) -> None:
    """The run's port claims directory (stack.PORT_CLAIMS_ENV), made by the process that
    starts the run; the xdist workers it spawns afterwards inherit its environment."""
    if not os.environ.get(PORT_CLAIMS_ENV):
        os.environ[PORT_CLAIMS_ENV] = config._envoy_presign_port_claims = tempfile.mkdtemp(
            prefix="envoy-presign-ports-")


def pytest_unconfigure(config) -> None:
    claims = getattr(config, "_envoy_presign_port_claims", None)
    if claims:
        shutil.rmtree(claims, ignore_errors=True)
        os.environ.pop(PORT_CLAIMS_ENV, None)


def pytest_collection_modifyitems(config, items) -> None:
    """On an xdist worker: the modules longest first (MODULE_SECONDS), each module's tests
    in their own order. A plain run keeps pytest's order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(item.path.name, len(first_seen))
    items.sort(key=lambda item: (-MODULE_SECONDS.get(item.path.name, 0), first_seen[item.path.name]))


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def wasm_path() -> Path:
    """The built filter; without it the suite skips, unless CI demands it."""
    if not WASM_PATH.is_file():
        message = (f"{WASM_PATH} is missing; build it with "
                   "`cargo build --release --target wasm32-wasip1`")
        if os.environ.get("ENVOY_PRESIGN_REQUIRE_WASM"):
            pytest.fail(message + " (ENVOY_PRESIGN_REQUIRE_WASM is set)", pytrace=False)
        pytest.skip(message)
    return WASM_PATH


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return build_corpus()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory, corpus: Corpus):
    """One strict-auth SeaweedFS holding the corpus in bucket ``media``."""
    with SeaweedFS(tmp_path_factory.mktemp("origin"), ACCESS_KEY, SECRET_KEY,
                   extra_identities={ALT_ACCESS_KEY: ALT_SECRET_KEY}, sse_kek=SESSION_KEK) as origin:
        client = origin.client()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]),
                          corpus.objects.items()))
        yield origin


@pytest.fixture(scope="session")
def start_envoy(tmp_path_factory, wasm_path: Path, seaweedfs: SeaweedFS):
    """Factory: ``start_envoy(config, env)`` -> a started Envoy, stopped at session end.

    ``start=False`` returns it unstarted, for tests that expect ``start()`` to fail;
    ``extra_substitutions`` fills or overrides template placeholders (see stack.Envoy);
    ``origin_port`` points it at another origin than the session's SeaweedFS;
    ``extra_list_items`` adds test-only list items (see stack.prepend_list_items);
    ``wasm`` loads another build of the filter (the test-panic one);
    ``credentials`` = (stub, sds_path) adds envoy/credentials.yaml's listeners and clusters
    pointed at a credentials stand-in (see credenv.RotatingEnvoy).
    """
    started: list[Envoy] = []

    def make(config: dict, env: dict[str, str] | None = None, start: bool = True,
             extra_substitutions: dict[str, object] | None = None, concurrency: int = 2,
             origin_port: int | None = None,
             extra_list_items: dict[str, list[dict]] | None = None, wasm: Path | None = None,
             credentials: tuple[CredStub, Path] | None = None) -> Envoy:
        args = (tmp_path_factory.mktemp("envoy"), TEMPLATE_PATH, wasm or wasm_path, config,
                origin_port or seaweedfs.s3_port)
        kwargs = dict(env=env or {}, concurrency=concurrency,
                      extra_substitutions=extra_substitutions, extra_list_items=extra_list_items)
        if credentials:
            stub, sds_path = credentials
            envoy = RotatingEnvoy(*args, stub=stub, sds_path=sds_path, **kwargs)
        else:
            envoy = Envoy(*args, **kwargs)
        started.append(envoy)
        return envoy.start() if start else envoy

    yield make
    for envoy in started:
        envoy.stop()


@pytest.fixture(scope="session")
def envoy(start_envoy, seaweedfs: SeaweedFS) -> Envoy:
    """The filter with env credentials: ``/media/`` and ``/versioned/`` origins."""
    config = filter_config(seaweedfs.s3_port)
    config["origins"].append(origin_config(
        seaweedfs.s3_port, name="versioned", match={"prefix": "/versioned/"},
        bucket=VERSIONED_BUCKET, strip_prefix="/versioned/"))
    return start_envoy(config, env_credentials(ACCESS_KEY, SECRET_KEY))


@pytest.fixture(scope="session")
def start_lds_envoy(tmp_path_factory, wasm_path: Path, seaweedfs: SeaweedFS):
    """Factory like start_envoy for a stack.LdsEnvoy: the listener, with the filter's
    configuration, in a watched LDS file that ``envoy.update(config)`` replaces live.
    ``extra_args`` adds Envoy flags (e.g. ``--drain-time-s``)."""
    started: list[LdsEnvoy] = []

    def make(config: dict, env: dict[str, str] | None = None,
             extra_substitutions: dict[str, object] | None = None,
             extra_args: list[str] | None = None, concurrency: int = 2) -> LdsEnvoy:
        envoy = LdsEnvoy(tmp_path_factory.mktemp("envoy-lds"), wasm_path, config, seaweedfs.s3_port,
                         env=env or {}, concurrency=concurrency,
                         extra_substitutions=extra_substitutions, extra_args=extra_args)
        started.append(envoy)
        return envoy.start()

    yield make
    for envoy in started:
        envoy.stop()
