#!/usr/bin/env python3
"""A stand-in for the AWS credential endpoints, on loopback, for envoy-presign's tests.

``CredStub`` serves three endpoint kinds, each on its own free port of 127.0.0.1 (as in
AWS, where they are different hosts), speaking the real protocols
(docs/design/rotating-credentials.md §2-4):

``imds``
    EC2 IMDSv2: ``PUT /latest/api/token`` (TTL header 1..21600, else 400; a request
    with ``X-Forwarded-For`` gets 403), then ``GET /latest/meta-data/iam/security-
    credentials/`` (the role name) and ``.../<role>`` (the credentials JSON), both 401
    without a live token, an unknown role 404.
``container``
    The container credentials endpoint: ``GET <path>`` for each configured path.  A path
    mapped to a token file (EKS Pod Identity's ``/v1/credentials``) needs
    ``Authorization`` equal to that file's *current* content (trailing CR/LF stripped),
    else 401; a path mapped to None (an ECS relative URI) needs nothing.
``sts``
    ``Action=AssumeRole`` (GET with a query string, or POST with a form body as boto3
    sends it): the SigV4 ``Authorization`` header is verified independently with
    botocore against the secret of the caller's access key (a base credential, or one
    this stub issued), with the request's own ``x-amz-date`` (at most 5 min off) and,
    for temporary base credentials, their session token.  ``Action=
    AssumeRoleWithWebIdentity``: unsigned; ``WebIdentityToken`` must equal the *current*
    content of the web-identity token file.  JSON when ``Accept: application/json``
    (``Expiration`` in epoch seconds, as Envoy's providers read it), XML otherwise
    (RFC 3339 with milliseconds); errors are the query protocol's ``<ErrorResponse>``.

Every credentials answer is a fresh issuance from the stub's *issuer*, valid for
``lifetime_s`` (changeable at run time); issuances and requests are logged.
Issuers:

``SeaweedFSSessions(kek)``
    Temporary credentials that a SeaweedFS started with ``WEED_S3_SSE_KEK=<kek>``
    (``stack.SeaweedFS(..., sse_kek=kek)``) accepts: the stub mints SeaweedFS STS
    session tokens itself, with the stub's own expiry, so the origin refuses the keys
    (403 InvalidAccessKeyId) the second they expire.  Use this one end to end:
    SeaweedFS 4.48 refuses every ``X-Amz-Security-Token`` it did not issue.
``KeyPool(pairs)``
    Long-term (access key, secret) pairs handed out in turn, each with a random
    session token.  For origins that ignore the token; SeaweedFS does not.

Faults, per kind or for all: ``set_mode(kind, mode)`` with ``ok``, ``down`` (the
listener is really closed, and live connections cut: connections are refused; ``ok``
binds the same port again), ``slow`` (answers after ``slow_s``), ``garbage`` (200
with a body that is neither JSON nor XML) and ``500``.

Hostile modes (``HOSTILE_MODES``): the endpoint answers as usual (the IMDS token and
role name too), but its credentials answer (IMDS role credentials, container, STS JSON
or XML) is made hostile: ``long_key_id`` (an ``AccessKeyId`` of ``HOSTILE_KEY_ID_LEN``
characters), ``huge_answer`` (the answer padded to ``HUGE_ANSWER_BYTES``),
``line_separator_key_id`` (the issued key id + U+2028 + ``FORGED_LINE``: a log consumer
that splits lines on U+2028 would see a forged line) and ``far_expiration`` (an
``Expiration`` in year 9999).  The credentials are still issued (``issued()``).

    with CredStub(SeaweedFSSessions(kek), lifetime_s=30,
                  web_identity_token_file=token_path) as stub:
        stub.endpoint("sts")           # http://127.0.0.1:<port>
        stub.set_mode("sts", "down")
        stub.issued(), stub.requests()

Also here, for the tests' clients: ``ProjectedToken`` (a token file rotated as kubelet
does) and ``sign_get`` (an STS GET signed by hand, as the filter signs AssumeRole).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol
from xml.sax.saxutils import escape

KINDS = ("imds", "container", "sts")
HOSTILE_MODES = ("long_key_id", "huge_answer", "line_separator_key_id", "far_expiration")
MODES = ("ok", "down", "slow", "garbage", "500") + HOSTILE_MODES

IMDS_TOKEN_PATH = "/latest/api/token"
IMDS_CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
IMDS_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds"
IMDS_TOKEN_HEADER = "x-aws-ec2-metadata-token"
IMDS_MAX_TTL = 21600

ECS_RELATIVE_PATH = "/v2/credentials/credstub-task"
POD_IDENTITY_PATH = "/v1/credentials"

STS_VERSION = "2011-06-15"
STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
STS_MAX_SKEW_S = 300
ACCOUNT = "123456789012"

# A body that no JSON or XML parser accepts (the "garbage" fault).
GARBAGE = b"\x00<<garbage>> {not json, not xml \xff\xfe"

# The hostile modes' values (see the module docstring).
HOSTILE_KEY_ID_LEN = 60_000
HOSTILE_KEY_ID = "ASIAHOSTILE" + "K" * (HOSTILE_KEY_ID_LEN - len("ASIAHOSTILE"))
HUGE_ANSWER_BYTES = 50 * 1024 * 1024
FORGED_LINE = "FORGED-LOG-LINE level=info credentials=ok"
FAR_EXPIRATION_EPOCH = 253402300799  # 9999-12-31T23:59:59Z


# ---------------------------------------------------------------------------
# Time formats
# ---------------------------------------------------------------------------


def rfc3339(epoch: float, millis: bool = False) -> str:
    """``2026-01-02T03:04:05Z`` (IMDS, container) or ``...05.000Z`` (STS XML)."""
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def hostile_answer(mode: str, payload: bytes) -> bytes:
    """A credentials answer (JSON of IMDS, container or STS; STS XML) made hostile by
    ``mode``, one of HOSTILE_MODES."""
    if mode == "huge_answer":
        pad = max(0, HUGE_ANSWER_BYTES - len(payload))
        if payload.lstrip().startswith(b"{"):
            # The same document with one more member: a "Padding" string.
            end = payload.rindex(b"}")
            extra = b',"Padding":"' + b"x" * max(0, pad - 14) + b'"'
            return payload[:end] + extra + payload[end:]
        return b"<!--" + b"x" * max(0, pad - 7) + b"-->" + payload
    if payload.lstrip().startswith(b"{"):
        doc = json.loads(payload)
        creds = doc
        for name, value in doc.items():
            if name.endswith("Response") and isinstance(value, dict):
                creds = value[name.removesuffix("Response") + "Result"]["Credentials"]
        if mode == "long_key_id":
            creds["AccessKeyId"] = HOSTILE_KEY_ID
        elif mode == "line_separator_key_id":
            creds["AccessKeyId"] += "\u2028" + FORGED_LINE
        elif mode == "far_expiration":
            numeric = isinstance(creds["Expiration"], (int, float))
            creds["Expiration"] = FAR_EXPIRATION_EPOCH if numeric else rfc3339(FAR_EXPIRATION_EPOCH)
        else:
            raise ValueError(f"not a hostile mode: {mode!r}")
        # Raw UTF-8 (a U+2028 unescaped, as JSON allows).
        return json.dumps(doc, ensure_ascii=False).encode()
    text = payload.decode()
    if mode == "long_key_id":
        value = HOSTILE_KEY_ID
    elif mode == "line_separator_key_id":
        start = text.index("<AccessKeyId>") + len("<AccessKeyId>")
        value = text[start:text.index("</AccessKeyId>")] + "\u2028" + FORGED_LINE
    elif mode == "far_expiration":
        start = text.index("<Expiration>")
        end = text.index("</Expiration>") + len("</Expiration>")
        return (text[:start] + f"<Expiration>{rfc3339(FAR_EXPIRATION_EPOCH, millis=True)}</Expiration>"
                + text[end:]).encode()
    else:
        raise ValueError(f"not a hostile mode: {mode!r}")
    start = text.index("<AccessKeyId>")
    end = text.index("</AccessKeyId>") + len("</AccessKeyId>")
    return (text[:start] + f"<AccessKeyId>{escape(value)}</AccessKeyId>" + text[end:]).encode()


# ---------------------------------------------------------------------------
# Issuers
# ---------------------------------------------------------------------------


class Issuer(Protocol):
    def issue(self, issued_at: int, expires_at: int) -> tuple[str, str, str]:
        """(access key, secret, session token) valid from ``issued_at`` to ``expires_at``."""


class KeyPool:
    """Long-term (access key, secret) pairs, handed out in turn, each with a fresh random
    session token.  An origin that checks session tokens (SeaweedFS does) refuses them."""

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]]):
        self.pairs = list(pairs.items() if isinstance(pairs, Mapping) else pairs)
        if not self.pairs:
            raise ValueError("KeyPool needs at least one (access key, secret) pair")
        self._next = itertools.cycle(self.pairs)
        self._lock = threading.Lock()

    def issue(self, issued_at: int, expires_at: int) -> tuple[str, str, str]:
        with self._lock:
            access_key, secret = next(self._next)
        return access_key, secret, "IQoJ" + secrets.token_urlsafe(96)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hkdf_sha256(key: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-SHA256 with no salt (Go's ``hkdf.New(sha256.New, key, nil, info)``)."""
    prk = hmac.new(b"\0" * 32, key, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out, counter = out + block, counter + 1
    return out[:length]


# What a presigning filter needs: GET/HEAD of objects (and versions), bucket listing.
READ_ONLY_SESSION_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow",
                   "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
                              "s3:GetBucketLocation"],
                   "Resource": ["arn:aws:s3:::*"]}],
}


class SeaweedFSSessions:
    """Temporary credentials minted the way SeaweedFS's own STS mints them (checked
    against weed 4.48 by test_credstub.py), so that SeaweedFS accepts them until their
    expiry and refuses them from then on (403 InvalidAccessKeyId):

    * STS signing key = HKDF-SHA256(SSE-S3 KEK, info "seaweedfs-sts-signing-key"); the
      KEK is the hex ``WEED_S3_SSE_KEK`` the origin was started with;
    * session token = an HS256 JWT (iss ``seaweedfs-sts``, ``sid``, ``exp``, ...);
    * access key = "ASIA" + hex(SHA-256("access-key:" + sid))[:16];
    * secret = base64(HMAC-SHA256(signing key, "secret-key:" + sid)).

    The session is an admin session narrowed by ``session_policy`` (read-only by
    default): SeaweedFS denies a non-admin session whose role it does not know.
    """

    ISSUER = "seaweedfs-sts"

    def __init__(self, sse_kek_hex: str, role_name: str = "envoy-presign",
                 session_policy: dict | None = READ_ONLY_SESSION_POLICY, account: str = "000000000000"):
        self.signing_key = _hkdf_sha256(bytes.fromhex(sse_kek_hex), b"seaweedfs-sts-signing-key")
        self.role_name = role_name
        self.session_policy = session_policy
        self.account = account

    def issue(self, issued_at: int, expires_at: int) -> tuple[str, str, str]:
        sid = secrets.token_hex(16)
        session_name = f"credstub-{sid[:8]}"
        claims = {
            "iss": self.ISSUER, "sub": sid, "exp": expires_at, "nbf": issued_at, "iat": issued_at,
            "jti": sid, "sid": sid, "snam": session_name, "typ": "session",
            "role": f"arn:aws:iam::{self.account}:user/{self.role_name}",
            "assumed": f"{self.role_name}:{session_name}",
            "principal": f"arn:aws:sts::{self.account}:assumed-role/{self.role_name}/{session_name}",
            "idp": "", "ext_uid": "", "prov_iss": "",
            "req_ctx": {"is_admin": True},
            "assumed_at": rfc3339(issued_at),
        }
        if self.session_policy is not None:
            claims["spol"] = json.dumps(self.session_policy, separators=(",", ":"))
        signing_input = (_b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        token = signing_input + "." + _b64url(
            hmac.new(self.signing_key, signing_input.encode(), hashlib.sha256).digest())
        access_key = "ASIA" + hashlib.sha256(f"access-key:{sid}".encode()).hexdigest()[:16]
        secret = base64.b64encode(
            hmac.new(self.signing_key, f"secret-key:{sid}".encode(), hashlib.sha256).digest()).decode()
        return access_key, secret, token


# ---------------------------------------------------------------------------
# Token files as kubelet projects them
# ---------------------------------------------------------------------------


class ProjectedToken:
    """A service-account token file laid out and rotated as kubelet does it:
    ``<dir>/<name>`` -> ``..data/<name>``, ``..data`` -> ``..<timestamp>/``; a rotation
    writes a new ``..<timestamp>/`` directory, points ``..data_tmp`` at it and renames
    that onto ``..data`` (one atomic rename), then removes the old directory.  ``path``
    is what AWS_WEB_IDENTITY_TOKEN_FILE / AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE name."""

    def __init__(self, directory: str | Path, content: str, name: str = "token"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.path = self.dir / name
        self._generation = 0
        self.write(content)
        self.path.symlink_to(Path("..data") / name)

    def write(self, content: str) -> None:
        """Publish ``content`` atomically (the kubelet's AtomicWriter steps)."""
        self._generation += 1
        stamp = self.dir / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self._generation}"
        stamp.mkdir()
        (stamp / self.name).write_text(content)
        data, tmp = self.dir / "..data", self.dir / "..data_tmp"
        old = data.resolve() if data.is_symlink() else None
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(stamp.name)
        os.rename(tmp, data)
        if old is not None and old != stamp.resolve():
            for child in old.iterdir():
                child.unlink()
            old.rmdir()

    def read(self) -> str:
        return self.path.read_text()


# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """One credentials answer.  ``endpoint`` is the kind and what was asked:
    ``imds:<role>``, ``container:<path>``, ``sts:AssumeRole``,
    ``sts:AssumeRoleWithWebIdentity``."""
    access_key: str
    secret_key: str = field(repr=False)
    token: str = field(repr=False)
    issued_at: int
    expires_at: int
    endpoint: str

    @property
    def kind(self) -> str:
        return self.endpoint.split(":", 1)[0]


@dataclass(frozen=True)
class RequestRecord:
    """One request the stub answered (a ``down`` listener answers none).  ``path`` has
    secrets (WebIdentityToken) redacted; ``error`` is the error code or reason;
    ``caller`` the access key that signed an AssumeRole; ``issued`` the access key
    handed out."""
    time: float
    kind: str
    method: str
    path: str
    status: int
    mode: str
    error: str | None = None
    caller: str | None = None
    issued: str | None = None


_SECRET_PARAMS = ("WebIdentityToken",)


def redact(path: str) -> str:
    """``path`` with the value of every secret query parameter replaced by ``REDACTED``."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    parts = []
    for pair in query.split("&"):
        name, eq, _ = pair.partition("=")
        parts.append(f"{name}=REDACTED" if eq and urllib.parse.unquote(name) in _SECRET_PARAMS else pair)
    return base + "?" + "&".join(parts)


# ---------------------------------------------------------------------------
# SigV4 verification (botocore)
# ---------------------------------------------------------------------------


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    """SigV4's canonical query: each name and value percent-encoded (RFC 3986, unreserved
    characters kept), sorted by name then value."""
    def enc(text: str) -> str:
        return urllib.parse.quote(text, safe="-_.~")
    return "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in pairs))


def parse_query(query: str) -> list[tuple[str, str]]:
    """A query string's (name, value) pairs, percent-decoded; unlike form decoding, a
    literal '+' stays '+' (SigV4 canonicalization then encodes it as %2B)."""
    pairs = []
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


class SignatureError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def parse_authorization(value: str) -> dict[str, str]:
    """``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` -> fields."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise SignatureError(400, "IncompleteSignature", f"unsupported algorithm {algorithm!r}")
    fields = {}
    for part in rest.split(","):
        name, eq, val = part.strip().partition("=")
        if eq:
            fields[name] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise SignatureError(400, "IncompleteSignature",
                             "Authorization header requires Credential, SignedHeaders and Signature")
    return fields


def sigv4_signature(method: str, host: str, path: str, query_pairs: list[tuple[str, str]],
                    headers: Mapping[str, str], body: bytes, amz_date: str, access_key: str,
                    secret_key: str, region: str, service: str) -> str:
    """The SigV4 signature botocore computes for this request, signed at ``amz_date``
    over exactly ``headers`` (lower-case names), with ``host`` as the host header."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://{host}{path}" + (f"?{_canonical_query(query_pairs)}" if query_pairs else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body or None)
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(access_key, secret_key), service, region)
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request)


def sign_get(host: str, params: Mapping[str, str], access_key: str, secret_key: str, token: str | None,
             amz_date: str, region: str = "eu-west-1", service: str = "sts") -> dict[str, dict[str, str]]:
    """A client's SigV4-signed ``GET /?<params>`` as the filter sends STS AssumeRole:
    ``{path: headers}`` (host, x-amz-date[, x-amz-security-token], authorization, accept
    JSON).  Written from the SigV4 specification with hashlib, not botocore, so a test
    signing with it checks the stub's botocore verification against a second
    implementation."""
    def enc(text: str) -> str:
        return urllib.parse.quote(text, safe="-_.~")
    query = "&".join(f"{k}={v}" for k, v in sorted((enc(k), enc(v)) for k, v in params.items()))
    headers = {"host": host, "x-amz-date": amz_date}
    if token is not None:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join(["GET", "/", query, "".join(f"{n}:{headers[n]}\n" for n in names), ";".join(names),
                           hashlib.sha256(b"").hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    headers["accept"] = "application/json"
    return {"/?" + query: headers}


# ---------------------------------------------------------------------------
# The stub
# ---------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default 5 drops SYNs of a burst (a 1 s retransmit)

    def __init__(self, address, handler, stub: "CredStub", kind: str):
        self.stub, self.kind = stub, kind
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        # ThreadingMixIn's, keeping the thread so stop() can join it.
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  daemon=True, name=f"credstub-{self.kind}")
        with self.conn_lock:
            self.connections.add(request)
            self.threads.add(thread)
        thread.start()

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.conn_lock:
                self.connections.discard(request)
                self.threads.discard(threading.current_thread())

    def cut_connections(self) -> list[threading.Thread]:
        with self.conn_lock:
            connections, threads = list(self.connections), list(self.threads)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return threads


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self.server.stub._handle(self)

    do_PUT = do_POST = do_HEAD = do_DELETE = do_GET


class CredStub:
    """The three credential endpoints on loopback; see the module docstring.

    ``issuer``: a ``SeaweedFSSessions``, a ``KeyPool``, a mapping or list of
    (access key, secret) pairs (made a KeyPool) or any object with
    ``issue(issued_at, expires_at) -> (access_key, secret, token)``.
    ``lifetime_s``: validity of each issuance (an attribute; change it any time).
    ``role_name``: the IMDS role (other names 404) and the role of container answers.
    ``container_paths``: path -> token file (its current content is the required
    ``Authorization``) or None (no auth); default: the ECS relative path
    ``ECS_RELATIVE_PATH`` without auth, plus ``/v1/credentials`` with
    ``pod_identity_token_file`` if that is given.
    ``web_identity_token_file``: what AssumeRoleWithWebIdentity compares with.
    ``base_credentials``: access key -> secret, or (secret, session token or None,
    expiry epoch or None), that may sign AssumeRole (besides what the stub issued).
    ``external_id``: if set, AssumeRole requires this ExternalId (else 403 AccessDenied).
    ``region``: the credential scope region AssumeRole must be signed for.
    ``slow_s``: the delay of the ``slow`` fault.  ``clock``: epoch seconds.
    """

    def __init__(self, issuer: Issuer | Mapping[str, str] | Iterable[tuple[str, str]], *,
                 lifetime_s: float = 900.0, role_name: str = "presign-role",
                 container_paths: Mapping[str, str | Path | None] | None = None,
                 pod_identity_token_file: str | Path | None = None,
                 web_identity_token_file: str | Path | None = None,
                 base_credentials: Mapping[str, str | tuple[str, str | None, float | None]] | None = None,
                 external_id: str | None = None, region: str = "eu-west-1",
                 slow_s: float = 3.0, clock: Callable[[], float] = time.time,
                 host: str = "127.0.0.1"):
        self.issuer = issuer if hasattr(issuer, "issue") else KeyPool(issuer)
        self.lifetime_s = lifetime_s
        self.role_name = role_name
        paths = dict(container_paths) if container_paths is not None else {ECS_RELATIVE_PATH: None}
        if pod_identity_token_file is not None:
            paths[POD_IDENTITY_PATH] = pod_identity_token_file
        self.container_paths = {p: (Path(f) if f is not None else None) for p, f in paths.items()}
        self.web_identity_token_file = Path(web_identity_token_file) if web_identity_token_file else None
        self.base_credentials: dict[str, tuple[str, str | None, float | None]] = {}
        for access_key, value in (base_credentials or {}).items():
            self.base_credentials[access_key] = (value, None, None) if isinstance(value, str) else tuple(value)
        self.external_id = external_id
        self.region = region
        self.slow_s = slow_s
        self.clock = clock
        self.host = host
        self.ports: dict[str, int] = {}
        self._servers: dict[str, _Server] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._modes = {kind: "ok" for kind in KINDS}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._issued: list[Issued] = []
        self._by_key: dict[str, Issued] = {}
        self._requests: list[RequestRecord] = []
        self._imds_tokens: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------

    def start(self) -> "CredStub":
        self._stopping.clear()
        for kind in KINDS:
            self._modes[kind] = "ok"
            self._listen(kind, 0)
        return self

    def stop(self) -> None:
        """Close every listener and connection, wake sleeping handlers, join threads."""
        self._stopping.set()
        threads: list[threading.Thread] = []
        for kind in KINDS:
            threads += self._close(kind)
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> "CredStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _listen(self, kind: str, port: int) -> None:
        server = _Server((self.host, port), _Handler, self, kind)
        self.ports[kind] = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                  daemon=True, name=f"credstub-{kind}-accept")
        with self._lock:
            self._servers[kind], self._threads[kind] = server, thread
        thread.start()

    def _close(self, kind: str) -> list[threading.Thread]:
        with self._lock:
            server, thread = self._servers.pop(kind, None), self._threads.pop(kind, None)
        if server is None:
            return []
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        return server.cut_connections()

    # -- addresses --------------------------------------------------------

    def port(self, kind: str) -> int:
        return self.ports[kind]

    def endpoint(self, kind: str) -> str:
        """``http://127.0.0.1:<port>`` of ``kind`` (imds, container, sts)."""
        return f"http://{self.host}:{self.ports[kind]}"

    # -- faults -----------------------------------------------------------

    def set_mode(self, kind: str, mode: str, slow_s: float | None = None) -> None:
        """Switch ``kind`` ("imds", "container", "sts" or "all") to ``mode``: "ok", "down",
        "slow" (``slow_s``, else the stub's), "garbage", "500" or one of HOSTILE_MODES
        (only the credentials answer is hostile; see the module docstring).  "down" closes the
        listener and cuts its connections; leaving "down" binds the same port again
        (OSError if something took it meanwhile)."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        kinds = KINDS if kind == "all" else (kind,)
        if any(k not in KINDS for k in kinds):
            raise ValueError(f"kind {kind!r} not in {KINDS} or 'all'")
        if slow_s is not None:
            self.slow_s = slow_s
        for k in kinds:
            with self._lock:
                previous, self._modes[k] = self._modes[k], mode
            if mode == "down" and previous != "down":
                self._close(k)
            elif mode != "down" and previous == "down":
                self._listen(k, self.ports[k])

    def mode(self, kind: str) -> str:
        with self._lock:
            return self._modes[kind]

    # -- logs -------------------------------------------------------------

    def issued(self, kind: str | None = None) -> list[Issued]:
        """Every issuance so far (of ``kind`` only, if given), oldest first."""
        with self._lock:
            return [i for i in self._issued if kind is None or i.kind == kind]

    def requests(self, kind: str | None = None) -> list[RequestRecord]:
        """Every request answered so far (of ``kind`` only, if given), oldest first."""
        with self._lock:
            return [r for r in self._requests if kind is None or r.kind == kind]

    def clear_logs(self) -> None:
        """Forget the request log (issued credentials stay valid for AssumeRole)."""
        with self._lock:
            self._requests.clear()

    def _issue(self, endpoint: str) -> Issued:
        now = self.clock()
        issued_at = int(now)
        expires_at = int(now + self.lifetime_s)
        access_key, secret, token = self.issuer.issue(issued_at, expires_at)
        record = Issued(access_key, secret, token, issued_at, expires_at, endpoint)
        with self._lock:
            self._issued.append(record)
            self._by_key[access_key] = record
        return record

    # -- dispatch ---------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        kind = h.server.kind
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        mode = self.mode(kind)
        if mode == "slow":
            self._stopping.wait(self.slow_s)
        if self._stopping.is_set():
            h.close_connection = True
            return
        record = {"error": None, "caller": None, "issued": None}
        if mode == "garbage":
            status, headers, payload = 200, {"Content-Type": "text/plain"}, GARBAGE
        elif mode == "500":
            status, headers, payload = 500, {"Content-Type": "text/plain"}, b"stub fault: 500\n"
            record["error"] = "fault 500"
        else:
            try:
                status, headers, payload = getattr(self, f"_{kind}")(h, body, record)
            except Exception as error:  # noqa: BLE001 - a stub bug must show, not hang the client
                status, headers, payload = 500, {"Content-Type": "text/plain"}, f"stub error: {error!r}\n".encode()
                record["error"] = repr(error)
        hostile = mode in HOSTILE_MODES and status == 200 and record["issued"] is not None
        if hostile:
            payload = hostile_answer(mode, payload)
        with self._lock:
            self._requests.append(RequestRecord(self.clock(), kind, h.command, redact(h.path), status, mode,
                                                **record))
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if h.command != "HEAD":
            if not hostile:
                h.wfile.write(payload)
                return
            try:
                h.wfile.write(payload)
            except OSError:
                # The client may well hang up on a hostile answer (Envoy resets a call
                # whose answer passes its buffer limit): expected, not a stub error.
                h.close_connection = True

    @staticmethod
    def _text(status: int, text: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "text/plain", **headers}, text.encode()

    @staticmethod
    def _json(status: int, doc: dict) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()

    # -- IMDSv2 -----------------------------------------------------------

    def _imds(self, h: _Handler, body: bytes, record: dict):
        path = urllib.parse.urlsplit(h.path).path
        now = self.clock()
        if path == IMDS_TOKEN_PATH:
            if h.command != "PUT":
                record["error"] = "method"
                return self._text(405, "Method Not Allowed\n", Allow="PUT")
            if h.headers.get("X-Forwarded-For") is not None:
                record["error"] = "X-Forwarded-For"
                return self._text(403, "Forbidden\n")
            ttl_text = h.headers.get(IMDS_TTL_HEADER, "")
            if not ttl_text.strip().isdigit() or not 1 <= int(ttl_text) <= IMDS_MAX_TTL:
                record["error"] = "ttl"
                return self._text(400, "Bad Request\n")
            ttl = int(ttl_text)
            token = "AQAEA" + secrets.token_urlsafe(42)
            with self._lock:
                self._imds_tokens = {t: e for t, e in self._imds_tokens.items() if e > now}
                self._imds_tokens[token] = now + ttl
            return self._text(200, token, **{IMDS_TTL_HEADER: str(ttl)})
        if h.command != "GET":
            record["error"] = "method"
            return self._text(405, "Method Not Allowed\n", Allow="GET")
        token = h.headers.get(IMDS_TOKEN_HEADER)
        with self._lock:
            valid = token is not None and self._imds_tokens.get(token, 0) > now
        if not valid:
            record["error"] = "token"
            return self._text(401, "Unauthorized\n")
        if path == IMDS_CREDENTIALS_PATH:
            return self._text(200, self.role_name)
        if path.startswith(IMDS_CREDENTIALS_PATH):
            role = path[len(IMDS_CREDENTIALS_PATH):]
            if role != self.role_name:
                record["error"] = "role"
                return self._text(404, "Not Found\n")
            issued = self._issue(f"imds:{role}")
            record["issued"] = issued.access_key
            return self._json(200, {
                "Code": "Success", "LastUpdated": rfc3339(issued.issued_at), "Type": "AWS-HMAC",
                "AccessKeyId": issued.access_key, "SecretAccessKey": issued.secret_key,
                "Token": issued.token, "Expiration": rfc3339(issued.expires_at),
            })
        record["error"] = "path"
        return self._text(404, "Not Found\n")

    # -- container --------------------------------------------------------

    def _container(self, h: _Handler, body: bytes, record: dict):
        path = urllib.parse.urlsplit(h.path).path
        if path not in self.container_paths:
            record["error"] = "path"
            return self._json(404, {"code": "NotFound", "message": f"no credentials at {path}"})
        if h.command != "GET":
            record["error"] = "method"
            return self._json(405, {"code": "MethodNotAllowed", "message": "GET only"})
        token_file = self.container_paths[path]
        if token_file is not None:
            try:
                expected = token_file.read_text().rstrip("\r\n")
            except OSError:
                expected = None
            if not expected or h.headers.get("Authorization") != expected:
                record["error"] = "authorization"
                return self._json(401, {"code": "AccessDenied", "message": "invalid Authorization token"})
        issued = self._issue(f"container:{path}")
        record["issued"] = issued.access_key
        return self._json(200, {
            "AccessKeyId": issued.access_key, "SecretAccessKey": issued.secret_key, "Token": issued.token,
            "Expiration": rfc3339(issued.expires_at),
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/{self.role_name}",
        })

    # -- STS --------------------------------------------------------------

    @staticmethod
    def _sts_error(status: int, code: str, message: str, kind: str = "Sender"):
        doc = (f'<ErrorResponse xmlns="{STS_XMLNS}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
               f"<Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
               "</ErrorResponse>")
        return status, {"Content-Type": "text/xml"}, doc.encode()

    def _sts(self, h: _Handler, body: bytes, record: dict):
        split = urllib.parse.urlsplit(h.path)
        if split.path != "/":
            record["error"] = "path"
            return self._sts_error(404, "NotFound", f"no such path {split.path}")
        query_pairs = parse_query(split.query)
        params = dict(query_pairs)
        if h.command == "POST":
            if not h.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                record["error"] = "content-type"
                return self._sts_error(400, "InvalidParameterValue", "POST needs a form body")
            params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif h.command != "GET":
            record["error"] = "method"
            return self._sts_error(405, "MethodNotAllowed", f"{h.command} not allowed")
        action = params.get("Action")
        if action not in ("AssumeRole", "AssumeRoleWithWebIdentity"):
            record["error"] = "InvalidAction"
            return self._sts_error(400, "InvalidAction", f"Could not find operation {action} for version "
                                   f"{params.get('Version')}")
        if params.get("Version") != STS_VERSION:
            record["error"] = "InvalidAction"
            return self._sts_error(400, "InvalidAction", f"Could not find operation {action} for version "
                                   f"{params.get('Version')}")
        for name in ("RoleArn", "RoleSessionName"):
            if not params.get(name):
                record["error"] = "MissingParameter"
                return self._sts_error(400, "ValidationError", f"{name} is required")
        duration = params.get("DurationSeconds")
        if duration is not None and (not duration.isdigit() or not 900 <= int(duration) <= 43200):
            record["error"] = "ValidationError"
            return self._sts_error(400, "ValidationError", "DurationSeconds must be in 900..43200")

        if action == "AssumeRole":
            try:
                record["caller"] = self._verify_sigv4(h, split.path, query_pairs, body)
            except SignatureError as error:
                record["error"] = error.code
                return self._sts_error(error.status, error.code, error.message)
            if self.external_id is not None and params.get("ExternalId") != self.external_id:
                record["error"] = "AccessDenied"
                return self._sts_error(403, "AccessDenied", f"User: {record['caller']} is not authorized to "
                                       f"perform: sts:AssumeRole on resource: {params['RoleArn']}")
        else:
            expected = None
            if self.web_identity_token_file is not None:
                try:
                    expected = self.web_identity_token_file.read_text().rstrip("\r\n")
                except OSError:
                    expected = None
            if not params.get("WebIdentityToken"):
                record["error"] = "MissingParameter"
                return self._sts_error(400, "ValidationError", "WebIdentityToken is required")
            if not expected or params["WebIdentityToken"] != expected:
                record["error"] = "InvalidIdentityToken"
                return self._sts_error(400, "InvalidIdentityToken", "The web identity token that was passed "
                                       "could not be validated by AWS. Get a new identity token.")

        issued = self._issue(f"sts:{action}")
        record["issued"] = issued.access_key
        session = params["RoleSessionName"]
        role = params["RoleArn"].rsplit("/", 1)[-1]
        user = {"Arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
                "AssumedRoleId": f"AROA{hashlib.sha256(role.encode()).hexdigest()[:17].upper()}:{session}"}
        request_id = str(uuid.uuid4())
        if "application/json" in h.headers.get("Accept", "").lower():
            result = {"AssumedRoleUser": user,
                      "Credentials": {"AccessKeyId": issued.access_key, "SecretAccessKey": issued.secret_key,
                                      "SessionToken": issued.token, "Expiration": issued.expires_at},
                      "PackedPolicySize": None, "SourceIdentity": None}
            if action == "AssumeRoleWithWebIdentity":
                result.update(Audience="sts.amazonaws.com", Provider="credstub",
                              SubjectFromWebIdentityToken="system:serviceaccount:default:envoy-presign")
            return self._json(200, {f"{action}Response": {f"{action}Result": result,
                                                          "ResponseMetadata": {"RequestId": request_id}}})
        extra = ""
        if action == "AssumeRoleWithWebIdentity":
            extra = ("<SubjectFromWebIdentityToken>system:serviceaccount:default:envoy-presign"
                     "</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience>"
                     "<Provider>credstub</Provider>")
        doc = (f'<{action}Response xmlns="{STS_XMLNS}"><{action}Result>{extra}'
               f"<AssumedRoleUser><AssumedRoleId>{escape(user['AssumedRoleId'])}</AssumedRoleId>"
               f"<Arn>{escape(user['Arn'])}</Arn></AssumedRoleUser>"
               f"<Credentials><AccessKeyId>{issued.access_key}</AccessKeyId>"
               f"<SecretAccessKey>{escape(issued.secret_key)}</SecretAccessKey>"
               f"<SessionToken>{escape(issued.token)}</SessionToken>"
               f"<Expiration>{rfc3339(issued.expires_at, millis=True)}</Expiration></Credentials>"
               f"</{action}Result><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
               f"</{action}Response>")
        return 200, {"Content-Type": "text/xml"}, doc.encode()

    def _secret_of(self, access_key: str) -> tuple[str, str | None, float | None]:
        """(secret, session token or None, expiry or None) of a caller's access key."""
        with self._lock:
            issued = self._by_key.get(access_key)
        if issued is not None:
            return issued.secret_key, issued.token, issued.expires_at
        if access_key in self.base_credentials:
            return self.base_credentials[access_key]
        raise SignatureError(403, "InvalidClientTokenId", "The security token included in the request is invalid.")

    def _verify_sigv4(self, h: _Handler, path: str, query_pairs: list[tuple[str, str]], body: bytes) -> str:
        """The access key that signed the request; SignatureError otherwise."""
        authorization = h.headers.get("Authorization")
        if not authorization:
            raise SignatureError(400, "MissingAuthenticationToken", "Request is missing Authentication Token")
        fields = parse_authorization(authorization)
        scope = fields["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise SignatureError(400, "IncompleteSignature", f"malformed Credential {fields['Credential']!r}")
        access_key, date, region, service, _ = scope
        amz_date = h.headers.get("X-Amz-Date", "")
        try:
            signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            raise SignatureError(400, "IncompleteSignature", f"bad or missing X-Amz-Date {amz_date!r}") from None
        skew = abs(signed_at.timestamp() - self.clock())
        if skew > STS_MAX_SKEW_S:
            raise SignatureError(403, "SignatureDoesNotMatch", f"Signature expired: {amz_date} is more than "
                                 f"{STS_MAX_SKEW_S // 60} min from the server's time")
        if date != amz_date[:8] or region != self.region or service != "sts":
            raise SignatureError(403, "SignatureDoesNotMatch", f"Credential should be scoped to "
                                 f"{amz_date[:8]}/{self.region}/sts/aws4_request, not {date}/{region}/{service}")
        secret, token, expires_at = self._secret_of(access_key)
        if expires_at is not None and expires_at <= self.clock():
            raise SignatureError(403, "ExpiredToken", "The security token included in the request is expired")
        if h.headers.get("X-Amz-Security-Token") != token:
            raise SignatureError(403, "InvalidClientTokenId",
                                 "The security token included in the request is invalid.")
        signed_names = fields["SignedHeaders"].split(";")
        if "host" not in signed_names or "x-amz-date" not in signed_names or (
                token is not None and "x-amz-security-token" not in signed_names):
            raise SignatureError(403, "SignatureDoesNotMatch", "host, x-amz-date (and x-amz-security-token) "
                                 "must be signed")
        headers = {}
        for name in signed_names:
            values = h.headers.get_all(name)
            if values is None:
                raise SignatureError(403, "SignatureDoesNotMatch", f"signed header {name!r} is missing")
            headers[name] = ",".join(values)
        expected = sigv4_signature(h.command, headers["host"], path, query_pairs, headers, body, amz_date,
                                   access_key, secret, self.region, "sts")
        if not hmac.compare_digest(expected, fields["Signature"]):
            raise SignatureError(403, "SignatureDoesNotMatch", "The request signature we calculated does not "
                                 "match the signature you provided. Check your AWS Secret Access Key and "
                                 "signing method.")
        return access_key
