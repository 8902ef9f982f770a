"""Hardening: no secret, signature or presigned URL leaves Envoy except towards the origin.

Three Envoys get traffic of every kind, then every surface an operator or a client can
see is scanned: Envoy's log file and console output, the shipped-format access log,
``/stats``, ``/stats?format=json``, ``/stats/prometheus`` and the other admin pages, and
every response's status line, headers and body (local replies included).

* ``signing``: env credentials with a session token, in front of a stand-in origin
  (``conftest.StubOrigin``: SeaweedFS refuses session tokens it did not issue).
  Misses, hits, HEAD, Range, a 404, client credentials to strip, a 400, a 405, an
  unmatched path (Envoy's 404).
* ``unsigned``: no credentials, ``on_error: deny`` -> 503 ``signing_unavailable``.
* ``wrong_keys``: inline credentials with a wrong secret, in front of the session's
  strict SeaweedFS -> its 403 ``SignatureDoesNotMatch`` (the body replaced by Envoy's).
* ``rotating``: rotating credentials from the credentials stand-in (tests/credstub.py):
  ``assume_role`` signed with credentials from ``web_identity`` (IRSA: the token file is
  read by envoy/credentials.yaml's Lua listener), in front of the session's SeaweedFS. The
  first requests, before any credentials, get 503 ``credentials_unavailable``; then the
  signing traffic. Every secret key and session token the stand-in issued, and every
  web-identity token, is a needle.
* ``redirecting``: ``signing``'s credentials with ``delivery: redirect``: misses, hits,
  HEAD, Range, a CORS request, client credentials, a 400, a 405, unmatched paths. The
  presigned URL is handed to the client here, in ``Location`` of the 307 to a matched GET
  or HEAD, and must appear nowhere else (the scan reads each 307 without its ``Location``).

A presigned URL is only visible inside Envoy, so ``signing`` and ``wrong_keys`` get a
second, test-only access log with ``%REQ(:PATH)%`` (the rewritten path): it teaches the
test every signature and URL, which must then appear nowhere else.  The shipped access
log format, kept as the first access log, must not hold them either.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from conftest import ACCESS_KEY, SECRET_KEY, StubOrigin, media_path, poll

from credenv import SESSION_KEK, write_sds
from credstub import CredStub, ProjectedToken, SeaweedFSSessions
from stack import Envoy, Response, env_credentials, filter_config, raw_request

# Distinctive, so that any copy is found; only characters JSON and YAML leave alone.
SIGNING_ACCESS_KEY = "AKIDSECRETSCAN000001"
ENV_SECRET = "sEcReT-scan/env+secret=c81f2d9a"
SESSION_TOKEN = "ToKeN-scan/session+token=5e0a8f13" + "Zz" * 40
INLINE_SECRET = "sEcReT-scan/inline+wrong=7a3be640"

OBJECTS = {"secrets/a.txt": b"alpha " * 40, "secrets/b.bin": bytes(range(256))}
ADMIN_PAGES = ["/stats", "/stats?format=json", "/stats/prometheus", "/stats?usedonly",
               "/server_info", "/clusters", "/listeners", "/runtime", "/certs", "/config_dump"]


def learning_log(path: Path) -> dict[str, list[dict]]:
    """``extra_list_items`` adding a test-only access log of the rewritten :path."""
    return {"access_log": [{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": str(path),
            "log_format": {"text_format_source": {"inline_string": "%REQ(:PATH)%\n"}},
        },
    }]}


WEB_IDENTITY_TOKENS = ["eyJ.secrets-scan.web-identity/ONE+token", "eyJ.secrets-scan.web-identity/TWO+token"]
ROTATING_ROLE = "arn:aws:iam::123456789012:role/secrets-scan"


@dataclass
class Surfaces:
    """What each Envoy shows, by a name for failure reports."""

    texts: dict[str, str] = field(default_factory=dict)
    config_dumps: dict[str, str] = field(default_factory=dict)
    presigned: list[str] = field(default_factory=list)  # learned rewritten paths
    origin_paths: list[str] = field(default_factory=list)  # what the stand-in origin got
    responses: dict[str, Response] = field(default_factory=dict)
    locations: dict[str, str] = field(default_factory=dict)  # redirect response name -> Location
    issued_secrets: list[str] = field(default_factory=list)  # rotating: every secret and token handed out

    def add_responses(self, envoy_name: str, exchanges: list[tuple[str, str, dict, Response]]) -> None:
        for n, (method, path, _, resp) in enumerate(exchanges):
            name = f"{envoy_name} response #{n} ({method} {path} -> {resp.status})"
            self.responses[name] = resp
            if resp.status == 307 and envoy_name == "redirecting":
                self.locations[name] = resp.headers["location"]
            # A redirect's Location is where its URL belongs; everything else is scanned.
            shown = {k: v for k, v in resp.headers.items() if name not in self.locations or k != "location"}
            head = f"{resp.status}\n" + "\n".join(f"{k}: {v}" for k, v in shown.items())
            self.texts[name] = head + "\n\n" + resp.body.decode("latin-1")

    def add_envoy(self, name: str, envoy: Envoy) -> None:
        """Admin pages while it runs; logs once stopped (flushed)."""
        for page in ADMIN_PAGES:
            text = envoy._admin_get(page)
            if page == "/config_dump":
                self.config_dumps[name] = text
            else:
                self.texts[f"{name} {page}"] = text
        envoy.stop()
        self.texts[f"{name} envoy log + console"] = envoy.log_text()
        self.texts[f"{name} access log (shipped format)"] = envoy.access_log_text()


def exchange(envoy: Envoy, requests: list[tuple[str, str, dict]]) -> list[tuple[str, str, dict, Response]]:
    return [(method, path, headers, raw_request(envoy.port, method, path, headers=headers))
            for method, path, headers in requests]


def learned(path: Path, count: int) -> list[str]:
    """The test log's paths once it holds ``count`` lines."""
    lines = poll(lambda: path.read_text().splitlines() if path.exists() else [], lambda l: len(l) >= count)
    assert len(lines) == count, f"{path.name}: {len(lines)} lines, expected {count}"
    return lines


SIGNING_TRAFFIC = [
    ("GET", media_path("secrets/a.txt"), {}),  # miss
    ("GET", media_path("secrets/a.txt"), {}),  # hit
    ("GET", media_path("secrets/a.txt"), {}),  # hit
    ("HEAD", media_path("secrets/a.txt"), {}),  # miss (HEAD is signed apart)
    ("HEAD", media_path("secrets/a.txt"), {}),  # hit
    ("GET", media_path("secrets/b.bin"), {"Range": "bytes=10-19"}),  # miss, 206
    ("GET", media_path("secrets/b.bin"), {"Range": "bytes=0-"}),  # hit, 206
    ("GET", media_path("secrets/b.bin") + "?X-Amz-Signature=client&versionId=v1",  # stripped / allowed
     {"Authorization": "AWS4-HMAC-SHA256 Credential=client/x", "x-amz-security-token": "client"}),
    ("GET", media_path("secrets/missing.txt"), {}),  # origin 404
    ("GET", "/media/bad%zzescape", {}),  # 400 invalid_path_encoding
    ("POST", media_path("secrets/a.txt"), {}),  # 405 method_not_allowed
    ("DELETE", media_path("secrets/a.txt"), {}),  # 405
    ("GET", "/unmatched/x", {}),  # bypass: no origin route, Envoy's 404
]
SIGNED = 9  # requests of SIGNING_TRAFFIC the filter presigned
REDIRECT_TRAFFIC = SIGNING_TRAFFIC + [
    ("GET", media_path("secrets/a.txt"), {"Origin": "http://app.example.test"}),  # hit, CORS
    ("GET", "/unmatched/x?X-Amz-Signature=client", {"x-envoy-presign-origin": "media"}),  # 404
]
REDIRECTED = 10  # requests of REDIRECT_TRAFFIC answered with a 307
REDIRECT_STATUSES = [307] * 9 + [400, 405, 405, 404, 307, 404]
EXPECTED_STATUSES = [200, 200, 200, 200, 200, 206, 206, 200, 404, 400, 405, 405, 404]


@pytest.fixture(scope="module")
def surfaces(start_envoy, seaweedfs, tmp_path_factory) -> Surfaces:
    found = Surfaces()
    logs = tmp_path_factory.mktemp("learned")

    with StubOrigin(OBJECTS) as stub:
        signing = start_envoy(
            filter_config(stub.port), env_credentials(SIGNING_ACCESS_KEY, ENV_SECRET, SESSION_TOKEN),
            origin_port=stub.port, extra_list_items=learning_log(logs / "signing.log"))
        exchanges = exchange(signing, SIGNING_TRAFFIC)
        assert [resp.status for *_, resp in exchanges] == EXPECTED_STATUSES, exchanges
        found.add_responses("signing", exchanges)
        found.presigned += [p for p in learned(logs / "signing.log", len(SIGNING_TRAFFIC))
                            if "X-Amz-Signature=" in p]
        found.origin_paths = list(stub.paths)
        # Every matched request is counted before the stats are read.
        matched = len(SIGNING_TRAFFIC) - 1
        counted = poll(lambda: sum(v for k, v in signing.stats().items()
                                   if k.startswith("wasmcustom.envoy_presign.requests.origin.media.")),
                       lambda n: n == matched)
        assert counted == matched, f"{counted} of {matched} matched requests counted"
        found.add_envoy("signing", signing)

    unsigned = start_envoy(filter_config(seaweedfs.s3_port, on_error="deny"), {})
    exchanges = exchange(unsigned, [("GET", media_path("secrets/a.txt"), {}),
                                    ("HEAD", media_path("secrets/a.txt"), {})])
    assert [resp.status for *_, resp in exchanges] == [503, 503], exchanges
    assert all(resp.headers.get("x-presign-error") == "signing_unavailable" for *_, resp in exchanges)
    found.add_responses("unsigned", exchanges)
    found.add_envoy("unsigned", unsigned)

    with CredStub(SeaweedFSSessions(SESSION_KEK), lifetime_s=900, region="eu-west-1",
                  web_identity_token_file=(web := ProjectedToken(logs / "irsa", WEB_IDENTITY_TOKENS[0])).path,
                  ) as creds:
        creds.set_mode("sts", "down")
        credentials = {"source": "assume_role",
                       "assume_role": {"region": "eu-west-1", "role_arn": ROTATING_ROLE, "base": "web_identity"},
                       "web_identity": {"region": "eu-west-1", "role_arn": ROTATING_ROLE}}
        rotating = start_envoy(
            filter_config(seaweedfs.s3_port, credentials=credentials),
            {"AWS_WEB_IDENTITY_TOKEN_FILE": str(web.path)},
            credentials=(creds, write_sds(logs, web.path)),
            extra_list_items=learning_log(logs / "rotating.log"))
        refused = exchange(rotating, [("GET", media_path("my file(1).mp4"), {})])
        assert refused[0][3].status == 503, refused
        creds.set_mode("sts", "ok")
        web.write(WEB_IDENTITY_TOKENS[1])
        poll(lambda: raw_request(rotating.port, "GET", media_path("my file(1).mp4")).status,
             lambda status: status == 200, timeout=15)
        exchanges = refused + exchange(rotating, [("GET", media_path("my file(1).mp4"), {}),
                                                  ("HEAD", media_path("my file(1).mp4"), {}),
                                                  ("GET", media_path("missing.txt"), {})])
        assert [resp.status for *_, resp in exchanges] == [503, 200, 200, 404], exchanges
        found.add_responses("rotating", exchanges)
        found.presigned += [p for p in rotating_paths(logs / "rotating.log") if "X-Amz-Signature=" in p]
        found.issued_secrets = [value for i in creds.issued() for value in (i.secret_key, i.token)]
        assert {i.endpoint for i in creds.issued()} == {"sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"}
        found.add_envoy("rotating", rotating)

    redirecting = start_envoy(
        filter_config(stub.port, delivery="redirect", cors_origins=["http://app.example.test"]),
        env_credentials(SIGNING_ACCESS_KEY, ENV_SECRET, SESSION_TOKEN), origin_port=stub.port)
    exchanges = exchange(redirecting, REDIRECT_TRAFFIC)
    assert [resp.status for *_, resp in exchanges] == REDIRECT_STATUSES, exchanges
    found.add_responses("redirecting", exchanges)
    found.add_envoy("redirecting", redirecting)

    wrong_keys = start_envoy(
        filter_config(seaweedfs.s3_port, credentials={
            "source": "inline", "access_key_id": ACCESS_KEY, "secret_access_key": INLINE_SECRET}),
        extra_list_items=learning_log(logs / "wrong_keys.log"))
    exchanges = exchange(wrong_keys, [("GET", media_path("my file(1).mp4"), {}),
                                      ("HEAD", media_path("my file(1).mp4"), {})])
    assert [resp.status for *_, resp in exchanges] == [403, 403], exchanges
    # SeaweedFS's SignatureDoesNotMatch body is replaced on the origin route, the status kept
    # (test_routing.py checks it against AWS's shape, with its canonical request).
    assert exchanges[0][3].body == b'{"error":"origin_error"}', exchanges
    found.add_responses("wrong_keys", exchanges)
    found.presigned += learned(logs / "wrong_keys.log", 2)
    found.add_envoy("wrong_keys", wrong_keys)
    return found


def rotating_paths(path: Path) -> list[str]:
    """The rotating Envoy's learned paths, once its three signed requests are logged."""
    return poll(lambda: path.read_text().splitlines() if path.exists() else [],
                lambda lines: len([p for p in lines if "X-Amz-Signature=" in p]) >= 4)


def signatures(paths: list[str]) -> set[str]:
    return {parse_qs(p.partition("?")[2])["X-Amz-Signature"][0] for p in paths}


def redirect_paths(found: Surfaces) -> list[str]:
    """The path and query of every Location handed out."""
    return [urlsplit(url)._replace(scheme="", netloc="").geturl() for url in found.locations.values()]


def needles(found: Surfaces) -> dict[str, str]:
    """What must appear on no surface, by a name that does not reveal it."""
    result = {
        "the env secret key": ENV_SECRET,
        "the session token": SESSION_TOKEN,
        "the session token, URL-encoded": quote(SESSION_TOKEN, safe=""),
        "the inline secret key": INLINE_SECRET,
        "X-Amz-Credential": "X-Amz-Credential",
        "x-amz-credential": "x-amz-credential",
    }
    for n, secret in enumerate(found.issued_secrets):
        result[f"issued secret or session token #{n}"] = secret
        result[f"issued secret or session token #{n}, URL-encoded"] = quote(secret, safe="")
    for n, token in enumerate(WEB_IDENTITY_TOKENS):
        result[f"web identity token #{n}"] = token
        result[f"web identity token #{n}, URL-encoded"] = quote(token, safe="")
    for n, signature in enumerate(sorted(signatures(found.presigned))):
        result[f"signature #{n}"] = signature
    for n, signature in enumerate(sorted(signatures(redirect_paths(found)))):
        result[f"redirect signature #{n}"] = signature
    for n, path in enumerate(sorted(set(found.presigned + redirect_paths(found)))):
        result[f"presigned URL #{n}"] = path
        result[f"presigned URL #{n}'s query"] = path.partition("?")[2]
    return result


def test_the_learning_logs_saw_every_presigned_url(surfaces: Surfaces):
    """The needles are complete: every URL the origin received was learned, and
    each distinct request (GET, HEAD, per key) has its own signature."""
    signing_paths = [p for p in surfaces.presigned if SIGNING_ACCESS_KEY in p]
    assert len(signing_paths) == SIGNED
    assert sorted(p for p in surfaces.origin_paths if "X-Amz-Signature=" in p) == sorted(signing_paths)
    assert len(signatures(signing_paths)) == 5  # GET a, HEAD a, GET b, GET b?versionId, GET missing
    # and wrong_keys' GET, HEAD; rotating's GET, HEAD, GET missing
    assert len(signatures(surfaces.presigned)) == 10
    assert all(quote(SESSION_TOKEN, safe="") in p for p in signing_paths), "the token is signed into the URL"


def test_no_secret_signature_or_url_on_any_surface(surfaces: Surfaces):
    leaks = [(what, where) for what, needle in needles(surfaces).items()
             for where, text in surfaces.texts.items() if needle in text]
    assert not leaks, "\n".join(f"{what} in {where}" for what, where in leaks)
    scanned = set(surfaces.texts)
    for name in ("signing", "unsigned", "wrong_keys", "redirecting", "rotating"):
        assert {f"{name} envoy log + console", f"{name} access log (shipped format)",
                f"{name} /stats", f"{name} /stats/prometheus", f"{name} /stats?format=json"} <= scanned
    assert len(surfaces.responses) == len(SIGNING_TRAFFIC) + 4 + len(REDIRECT_TRAFFIC) + 4
    assert len(surfaces.issued_secrets) >= 4  # a secret and a token from each STS call


def test_local_replies_carry_only_their_code(surfaces: Surfaces):
    local = {name: resp for name, resp in surfaces.responses.items() if "x-presign-error" in resp.headers}
    assert sorted(resp.status for resp in local.values()) == [400, 400, 405, 405, 405, 405, 503, 503, 503]
    for name, resp in local.items():
        code = resp.headers["x-presign-error"]
        if resp.body:  # HEAD replies have none
            assert json.loads(resp.body) == {"error": code}, name


def test_shipped_access_log_format_logs_no_url(surfaces: Surfaces):
    """The shipped format logs each request (method, status, flags, upstream, id)
    and nothing of its path: not the client's, not the presigned one."""
    log = surfaces.texts["signing access log (shipped format)"].splitlines()
    assert len(log) == len(SIGNING_TRAFFIC)
    assert not [line for line in log if "/" in line or "X-Amz" in line], log


def test_redirect_urls_only_in_the_location_of_a_matched_request(surfaces: Surfaces):
    """Each 307 to a matched GET or HEAD carries its presigned URL (session token signed
    in) in Location and nowhere else in the reply (the scan above covers every other
    surface); no other reply has a Location; the shipped access log holds none of it."""
    redirects = {name: resp for name, resp in surfaces.responses.items() if resp.status == 307}
    assert set(redirects) == set(surfaces.locations) and len(redirects) == REDIRECTED
    paths = redirect_paths(surfaces)
    assert len(signatures(paths)) == 5  # GET a, HEAD a, GET b, GET b?versionId, GET missing
    for name, resp in redirects.items():
        url = surfaces.locations[name]
        assert quote(SESSION_TOKEN, safe="") in url and "X-Amz-Signature=" in url, name
        assert resp.body == b"" and not any(url in v for k, v in resp.headers.items() if k != "location"), name
        assert "/media/" in name, name  # only matched requests
    others = [name for name, resp in surfaces.responses.items() if resp.status != 307]
    assert not [name for name in others if "location" in surfaces.responses[name].headers]
    log = surfaces.texts["redirecting access log (shipped format)"].splitlines()
    assert len(log) == len(REDIRECT_TRAFFIC)
    assert not [line for line in log if "/" in line or "X-Amz" in line], log


def test_config_dump_holds_inline_secrets_but_never_env_ones(surfaces: Surfaces):
    """Env credentials stay out of /config_dump (only the variable names are
    configured); inline credentials are part of the filter's configuration and so
    are shown to anyone who can read the admin endpoint: the documented risk of
    ``"source": "inline"``."""
    for dump in surfaces.config_dumps.values():
        for secret in (ENV_SECRET, SESSION_TOKEN):
            assert secret not in dump
        for signature in signatures(surfaces.presigned):
            assert signature not in dump
    # Rotating credentials live only in the VMs and shared data; the web-identity token only
    # in its file (envoy/credentials.yaml's Lua listener reads it on each call).
    for name, dump in surfaces.config_dumps.items():
        for secret in surfaces.issued_secrets + WEB_IDENTITY_TOKENS:
            assert secret not in dump, name
    assert "AWS_SECRET_ACCESS_KEY" in surfaces.config_dumps["signing"]
    assert INLINE_SECRET in surfaces.config_dumps["wrong_keys"]
    assert INLINE_SECRET not in surfaces.config_dumps["signing"] + surfaces.config_dumps["unsigned"]


def test_router_debug_logging_writes_the_presigned_url(start_envoy, seaweedfs):
    """README's warning about debug logging, shown: with Envoy's `router` logger at debug,
    the log holds the presigned URL (its signature included); at the default level it does
    not. The filter cannot prevent it: keep those loggers off debug in production."""
    client = seaweedfs.client()
    client.put_object(Bucket=seaweedfs.bucket, Key="debug-log.txt", Body=b"x")
    envoy = start_envoy(filter_config(seaweedfs.s3_port), env_credentials(ACCESS_KEY, SECRET_KEY))
    assert raw_request(envoy.port, "GET", "/media/debug-log.txt").status == 200
    time.sleep(0.5)  # Envoy flushes its log every 100 ms here
    before = len(envoy.log_text())
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        urllib.request.Request(f"http://127.0.0.1:{envoy.admin_port}/logging?router=debug", method="POST"),
        timeout=5).read()
    assert raw_request(envoy.port, "GET", "/media/debug-log.txt").status == 200
    envoy.stop()  # flush the log
    log = envoy.log_text()
    # The first request, at the default level, left no URL in the log; the second, with the
    # router at debug, did (its record spans several lines: the upstream request's headers).
    assert "X-Amz-Signature=" not in log[:before]
    assert "[debug][router]" in log[before:] and "X-Amz-Signature=" in log[before:]
