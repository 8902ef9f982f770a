"""End-to-end: client -> Envoy + envoy-presign -> SeaweedFS with strict SigV4 auth.

SeaweedFS rejects every unsigned or badly signed request, so a 200 with the
exact bytes proves the filter decoded the client's path to the right key and
signed the canonical request exactly as the origin recomputes it.
"""

from __future__ import annotations

import json
import random
import time
from urllib.parse import quote

import pytest
from conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    UNRESERVED,
    VERSIONED_BUCKET,
    Corpus,
    assert_each,
    describe,
    encode_full,
    media_path,
    pct,
)

from stack import ProcessExited, env_credentials, filter_config, origin_config, raw_request

# What RFC 3986 lets a path segment carry literally (pchar) plus the separator.
PATH_LITERAL = UNRESERVED | frozenset("!$&'()*+,;=:@/")


def encode_raw(key: str) -> str:
    """Encode only what the request line forces (space, %, #, ?, non-ASCII, controls, ...)."""
    return "".join(c if c in PATH_LITERAL else pct(c) for c in key)


def encode_mixed(key: str) -> str:
    """A deterministic per-key blend: some optional characters encoded, some
    literal, hex digits in either case (as sloppy real clients do)."""
    rng = random.Random(key)
    out = []
    for c in key:
        if c == "/":
            out.append(c)
        elif c not in PATH_LITERAL or rng.random() < 0.4:
            out.append(pct(c, lower=rng.random() < 0.5))
        else:
            out.append(c)
    return "".join(out)


ENCODERS = {"raw": encode_raw, "full": encode_full, "mixed": encode_mixed}


def assert_local_reply(resp, status: int, code: str) -> None:
    assert resp.status == status, resp
    assert resp.headers.get("x-presign-error") == code, resp.headers
    assert json.loads(resp.body) == {"error": code}


# ---------------------------------------------------------------------------
# The corpus, three path encodings each
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(ENCODERS))
def test_get_every_key(envoy, corpus: Corpus, variant: str):
    encoder = ENCODERS[variant]

    def check(key: str):
        path = media_path(key, encoder)
        resp = raw_request(envoy.port, "GET", path)
        if resp.status != 200 or resp.body != corpus.objects[key]:
            return f"{key!r}: {describe('GET', path, resp)} ({len(resp.body)} of {len(corpus.objects[key])} bytes)"
        return None

    assert_each(corpus.keys, check, f"{variant}-encoded GETs")


@pytest.mark.parametrize(
    "path, key",
    [
        ("/media/my%20file(1).mp4", "my file(1).mp4"),
        ("/media/my%20file%281%29.mp4", "my file(1).mp4"),
        ("/media/my%20file%28%31%29%2emp4", "my file(1).mp4"),
        ("/media/clips/my%20file(1)%2Emp4", "clips/my file(1).mp4"),
        ("/media/caf%c3%A9.txt", "café.txt"),
        ("/media/plus+sign.txt", "plus+sign.txt"),
        ("/media/plus%2bsign.txt", "plus+sign.txt"),
        ("/media/literal%2525percent.txt", "literal%25percent.txt"),
        ("/media/%252e%252e/literal-dot-escape.txt", "%2e%2e/literal-dot-escape.txt"),
        ("/media/dbl//slash.txt", "dbl//slash.txt"),
        ("/media//leading-slash.txt", "/leading-slash.txt"),
    ],
)
def test_get_hand_written_paths(envoy, corpus: Corpus, path: str, key: str):
    resp = raw_request(envoy.port, "GET", path)
    assert resp.status == 200, describe("GET", path, resp)
    assert resp.body == corpus.objects[key]


def test_head_every_key(envoy, corpus: Corpus):
    def check(key: str):
        path = media_path(key)
        resp = raw_request(envoy.port, "HEAD", path)
        length = resp.headers.get("content-length")
        if resp.status != 200 or resp.body or length != str(len(corpus.objects[key])):
            return f"{key!r}: {describe('HEAD', path, resp)} content-length={length} body={len(resp.body)} bytes"
        return None

    assert_each(corpus.keys, check, "HEADs")


def test_range_every_large_key(envoy, corpus: Corpus):
    def check(key: str):
        path = media_path(key, encode_raw)
        data = corpus.objects[key]
        resp = raw_request(envoy.port, "GET", path, headers={"Range": "bytes=0-99"})
        expected = (206, data[:100], f"bytes 0-99/{len(data)}")
        if (resp.status, resp.body, resp.headers.get("content-range")) != expected:
            return f"{key!r}: {describe('GET', path, resp)} content-range={resp.headers.get('content-range')}"
        return None

    keys = corpus.with_min_size(200)
    assert len(keys) >= 10
    assert_each(keys, check, "Range GETs")


# ---------------------------------------------------------------------------
# Client-supplied auth and query parameters never reach the origin
# ---------------------------------------------------------------------------

FORGED_HEADERS = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=bogus",
    "x-amz-security-token": "bogus",
}


@pytest.mark.parametrize(
    "query",
    [
        "X-Amz-Signature=deadbeef&X-Amz-Credential=x",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20000101T000000Z&X-Amz-Expires=1"
        "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=bogus&X-Amz-Signature=deadbeef",
        # Unlisted names are dropped (a response-* override is refused instead: test_overrides.py).
        "foo=bar&partNumber=1&VersionId=x",
    ],
)
@pytest.mark.parametrize("key", ["my file(1).mp4", "all !$&'()*+,;=:@~ subdelims.bin", "emoji/😀🎬.mp4"])
def test_client_auth_and_unlisted_query_are_dropped(envoy, corpus: Corpus, key: str, query: str):
    path = f"{media_path(key, encode_raw)}?{query}"
    resp = raw_request(envoy.port, "GET", path, headers=FORGED_HEADERS)
    assert resp.status == 200, describe("GET", path, resp)
    assert resp.body == corpus.objects[key]


@pytest.fixture(scope="session")
def versions(seaweedfs) -> list[tuple[str, bytes]]:
    """Two versions of one object in a versioning-enabled bucket: [(version id, body)]."""
    client = seaweedfs.client()
    client.create_bucket(Bucket=VERSIONED_BUCKET)
    client.put_bucket_versioning(Bucket=VERSIONED_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    result = []
    for body in (b"first version", b"second version"):
        put = client.put_object(Bucket=VERSIONED_BUCKET, Key="doc/my file(1).txt", Body=body)
        # SeaweedFS (pinned) returns one: without it this test would prove nothing, so it
        # fails rather than skip.
        assert put.get("VersionId"), f"the origin returned no VersionId: {put}"
        result.append((put["VersionId"], body))
    return result


def test_version_id_is_forwarded_and_signed(envoy, versions):
    (old_id, old_body), (_, new_body) = versions
    latest = raw_request(envoy.port, "GET", "/versioned/doc/my%20file(1).txt")
    assert (latest.status, latest.body) == (200, new_body), latest
    path = f"/versioned/doc/my%20file(1).txt?versionId={quote(old_id, safe='')}"
    resp = raw_request(envoy.port, "GET", path)
    assert (resp.status, resp.body) == (200, old_body), describe("GET", path, resp)


# ---------------------------------------------------------------------------
# Credentials problems
# ---------------------------------------------------------------------------


def test_wrong_inline_keys_surface_the_origin_403(start_envoy, seaweedfs):
    wrong_secret = "wrong-secret-7d0c2b1e/+="
    config = filter_config(seaweedfs.s3_port, credentials={
        "source": "inline", "access_key_id": ACCESS_KEY, "secret_access_key": wrong_secret,
        "session_token": None})
    envoy = start_envoy(config)
    resp = raw_request(envoy.port, "GET", media_path("my file(1).mp4"))
    assert resp.status == 403, resp
    assert "x-presign-error" not in resp.headers
    # SeaweedFS's SignatureDoesNotMatch body is replaced, the status kept (see test_routing.py).
    assert json.loads(resp.body) == {"error": "origin_error"}
    envoy.stop()  # flush the logs before asserting on what is absent
    assert wrong_secret not in envoy.log_text()


def test_missing_env_credentials_deny_without_leaking(start_envoy, seaweedfs):
    """The secret and token are present but the access key id is not: the
    filter must refuse to sign and must not echo what it did find."""
    secret, token = "sEcReT-only-9b2e61d0/+=", "ToKeN-only-5a8c3f47/+="
    env = {"AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}
    envoy = start_envoy(filter_config(seaweedfs.s3_port, on_error="deny"), env)
    resp = raw_request(envoy.port, "GET", media_path("my file(1).mp4"))
    assert resp.status == 503, resp
    assert resp.headers.get("x-presign-error") == "signing_unavailable"
    assert b"signing_unavailable" in resp.body
    envoy.stop()  # flush the logs before asserting on what is absent
    assert " 503 " in envoy.access_log_text()
    for text in (resp.body.decode("utf-8", "replace"), str(resp.headers), envoy.log_text(), envoy.access_log_text()):
        assert secret not in text and token not in text


@pytest.mark.parametrize("field, value", [("region", ""), ("expires_in", 0), ("expires_in", 604801)])
def test_invalid_config_makes_envoy_exit(start_envoy, seaweedfs, field: str, value):
    envoy = start_envoy(filter_config(seaweedfs.s3_port, **{field: value}),
                        env_credentials(ACCESS_KEY, SECRET_KEY), start=False)
    with pytest.raises(ProcessExited) as excinfo:
        envoy.start()
    assert excinfo.value.returncode != 0
    assert f"origins[0].{field}" in excinfo.value.log
    assert SECRET_KEY not in excinfo.value.log


# ---------------------------------------------------------------------------
# Local replies and pass-through
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_are_refused(envoy, method: str):
    resp = raw_request(envoy.port, method, media_path("my file(1).mp4"), body=b"payload")
    assert_local_reply(resp, 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/media/a%zz", "/media/a%2", "/media/%", "/media/a%G0b"])
def test_invalid_percent_encoding(envoy, path: str):
    assert_local_reply(raw_request(envoy.port, "GET", path), 400, "invalid_path_encoding")


@pytest.mark.parametrize(
    "path",
    ["/media/a/../b", "/media/%2e%2e/x", "/media/%2E%2E/x", "/media/./x", "/media/a/%2e/b",
     "/media/a/.%2E/b", "/media/..", "/media/"],
)
def test_dot_segments_and_empty_key_are_refused(envoy, path: str):
    assert_local_reply(raw_request(envoy.port, "GET", path), 400, "invalid_object_key")


@pytest.mark.parametrize("path", ["/other/x", "/mediax/y", "/"])
def test_unmatched_paths_get_404_from_envoy(envoy, path: str):
    """No origin matched: the filter leaves the request alone and no origin route takes it
    (only the filter's x-envoy-presign-origin does), so Envoy answers 404 itself
    (tests/integration/test_routing.py checks the origin gets nothing)."""
    resp = raw_request(envoy.port, "GET", path)
    assert "x-presign-error" not in resp.headers, resp
    assert resp.status == 404, resp
    assert json.loads(resp.body) == {"error": "not_found"}


def test_stats_and_logs(envoy):
    """Signed traffic is counted, and neither the secret nor a presigned URL (a
    bearer token until it expires) is logged.  Placed last so the logs hold the
    whole session's traffic."""
    assert raw_request(envoy.port, "GET", media_path("my file(1).mp4")).status == 200
    time.sleep(0.5)  # > Envoy's 100 ms log flush interval
    assert envoy.stats().get("http.media.downstream_rq_2xx", 0) > 0
    for text in (envoy.log_text(), envoy.access_log_text()):
        assert SECRET_KEY not in text
        assert "X-Amz-Signature" not in text


def test_refusals_and_fallbacks_log_one_json_line_and_client_errors_none(start_envoy, seaweedfs):
    """At Envoy's default (info) level: a signing refusal (503) and an unsigned fallback each
    log one warning-level JSON line with the request id as correlation id; client mistakes
    (400, 405) log nothing there, so bad traffic cannot flood the log."""
    config = filter_config(seaweedfs.s3_port, on_error="deny")
    config["origins"].append(origin_config(seaweedfs.s3_port, name="open", match={"prefix": "/open/"},
                                           strip_prefix="/open/", on_error="passthrough"))
    envoy = start_envoy(config, env={})
    for method, path, rid, status in (("GET", media_path("a.txt"), "rid-log-503", 503),
                                      ("GET", "/open/a.txt", "rid-log-fallback", 403),
                                      ("POST", media_path("a.txt"), "rid-log-405", 405),
                                      ("GET", "/media/a%zz", "rid-log-400", 400)):
        resp = raw_request(envoy.port, method, path, headers={"x-request-id": rid})
        assert resp.status == status, describe(method, path, resp)
    envoy.stop()  # flush the log
    lines = [line for line in envoy.log_text().splitlines() if '"event":"presign_' in line]
    logged = {}
    for line in lines:
        event = json.loads(line[line.index('{"'):])
        logged[event["request_id"]] = (line, event)
    assert set(logged) == {"rid-log-503", "rid-log-fallback"}, lines
    line, event = logged["rid-log-503"]
    assert "[warning]" in line, line
    assert event == {"event": "presign_rejected", "category": "no_credentials", "status": 503,
                     "origin": "media", "method": "GET", "request_id": "rid-log-503"}
    line, event = logged["rid-log-fallback"]
    assert "[warning]" in line, line
    assert event == {"event": "presign_fallback", "category": "no_credentials", "status": 0,
                     "origin": "open", "method": "GET", "request_id": "rid-log-fallback"}
