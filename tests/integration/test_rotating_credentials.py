"""Rotating credentials in real Envoy, end to end against the strict origin.

The filter fetches credentials with dispatch_http_call from the clusters of
envoy/credentials.yaml, pointed at the credentials stand-in (tests/credstub.py), which
speaks IMDSv2, the container endpoint (ECS and EKS Pod Identity), and STS AssumeRole
(its SigV4 signature checked with botocore) and AssumeRoleWithWebIdentity. What the stand-in
hands out are session credentials of the session's SeaweedFS (credstub.SeaweedFSSessions),
which the origin accepts until their expiry and refuses from then on: every request here is
checked by a strict S3 server, and a URL signed with expired credentials would fail.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import ACCESS_KEY, BUCKET, SECRET_KEY, PATH_LOG, Forwarded, hammer, poll

from credenv import SESSION_KEK, write_sds
from credstub import ECS_RELATIVE_PATH, POD_IDENTITY_PATH, CredStub, ProjectedToken, SeaweedFSSessions
from stack import Envoy, env_credentials, filter_config, raw_request

ROLE_ARN = "arn:aws:iam::123456789012:role/presign-target"
OBJECTS = {
    "rotating/a.txt": b"alpha " * 50,
    "rotating/ünï cødé+1.txt": "ünï".encode() * 30,
    "rotating/clip.bin": bytes(range(256)) * 1024,
}
MARGIN_S = 3
# Short URLs for short-lived credentials: a URL must keep min_remaining of life.
ORIGIN = {"expires_in": 60, "refresh_before": 10, "min_remaining": 2}
FAST_RETRY = {"retry_min_ms": 300, "retry_max_ms": 1000}
PREFIX = "wasmcustom.envoy_presign."


def path_of(key: str) -> str:
    return "/media/" + urllib.parse.quote(key, safe="/")


@pytest.fixture(scope="module")
def objects(seaweedfs):
    client = seaweedfs.client()
    for key, body in OBJECTS.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return OBJECTS


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokens")
    return {"pod": ProjectedToken(tmp / "pod", "eyJ.pod-identity.token-1\n", name="eks-pod-identity-token"),
            "web": ProjectedToken(tmp / "irsa", "eyJ.web-identity.token-1\n"),
            "dir": tmp}


@pytest.fixture
def stub(tokens):
    with CredStub(SeaweedFSSessions(SESSION_KEK), lifetime_s=900,
                  pod_identity_token_file=tokens["pod"].path,
                  web_identity_token_file=tokens["web"].path,
                  base_credentials={ACCESS_KEY: SECRET_KEY}, region="eu-west-1") as s:
        yield s


def start(start_envoy, seaweedfs, stub, tokens, credentials: dict, env: dict | None = None, **kw) -> Envoy:
    config = filter_config(seaweedfs.s3_port, credentials=credentials, **{**ORIGIN, **kw})
    sds = write_sds(tokens["dir"], tokens["pod"].path)
    vm_env = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(tokens["web"].path), **(env or {})}
    return start_envoy(config, vm_env, credentials=(stub, sds), extra_substitutions=PATH_LOG)


def forwarded(envoy: Envoy) -> list[Forwarded]:
    out = []
    for line in envoy.access_log_text().splitlines():
        start_s, status, method, path, tag = line.split(" ")
        out.append(Forwarded(float(start_s), int(status), method, path, tag))
    return out


def first_200(envoy: Envoy, path: str, timeout: float = 10.0):
    """Requests ``path`` until it is served (the first refresh runs on the first tick)."""
    return poll(lambda: raw_request(envoy.port, "GET", path), lambda r: r.status == 200, timeout)


def counters(envoy: Envoy, source: str) -> dict[str, int]:
    """Refresh results through ``source``, the zero ones left out."""
    prefix = f"{PREFIX}credential_refreshes.source.{source}.result."
    return {k.removeprefix(prefix): v for k, v in envoy.stats().items() if k.startswith(prefix) and v}


SOURCES = {
    "imds": ({"source": "imds"}, {}, "imds:presign-role"),
    "container (ECS relative URI)": (
        {"source": "container"}, {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ECS_RELATIVE_PATH},
        f"container:{ECS_RELATIVE_PATH}"),
    "container (EKS Pod Identity)": (
        {"source": "container", "container": {"cluster": "presign_pod_identity",
                                              "full_uri": "http://169.254.170.23" + POD_IDENTITY_PATH}},
        {}, f"container:{POD_IDENTITY_PATH}"),
    "web_identity (IRSA)": (
        {"source": "web_identity", "web_identity": {"region": "eu-west-1"}}, {"AWS_ROLE_ARN": ROLE_ARN},
        "sts:AssumeRoleWithWebIdentity"),
    "assume_role (base: env keys)": (
        {"source": "assume_role", "assume_role": {"region": "eu-west-1", "role_arn": ROLE_ARN,
                                                  "external_id": "ext-42"}},
        env_credentials(ACCESS_KEY, SECRET_KEY), "sts:AssumeRole"),
    "assume_role (base: imds)": (
        {"source": "assume_role", "assume_role": {"region": "eu-west-1", "role_arn": ROLE_ARN,
                                                  "base": "imds"}},
        {}, "sts:AssumeRole"),
}


@pytest.mark.parametrize("name", list(SOURCES))
def test_each_source_signs_with_the_credentials_it_fetched(name, start_envoy, seaweedfs, stub, tokens, objects):
    """Every source end to end: the filter fetches, the origin serves every object, and
    every URL carries the fetched access key, with an expiry inside the credentials'."""
    credentials, env, endpoint = SOURCES[name]
    stub.lifetime_s = 600
    envoy = start(start_envoy, seaweedfs, stub, tokens, {**credentials, "refresh": {"expiry_margin": MARGIN_S}},
                  env)
    r = first_200(envoy, path_of("rotating/a.txt"))
    assert r.status == 200, r
    for key, body in objects.items():
        resp = raw_request(envoy.port, "GET", path_of(key))
        assert (resp.status, resp.body) == (200, body), key
    resp = raw_request(envoy.port, "GET", path_of("rotating/clip.bin"), headers={"Range": "bytes=100-199"})
    assert (resp.status, resp.body) == (206, objects["rotating/clip.bin"][100:200])
    issued = [i for i in stub.issued() if i.endpoint == endpoint]
    assert issued, [i.endpoint for i in stub.issued()]
    by_key = {i.access_key: i for i in issued}
    # first_200's request, each object, the Range request.
    sent = poll(lambda: [f for f in forwarded(envoy) if f.status < 300], lambda fs: len(fs) >= len(objects) + 2)
    assert len(sent) == len(objects) + 2, sent
    assert sent and all(f.access_key in by_key for f in sent), [f.access_key for f in sent]
    for f in sent:
        assert f.expires_at <= by_key[f.access_key].expires_at - MARGIN_S, f
        assert "X-Amz-Security-Token" in f.query
    # Counters reach Envoy on the next tick (batched per worker).
    label = credentials["source"]
    assert poll(lambda: counters(envoy, label), lambda c: c.get("success", 0) >= 1).get("success", 0) >= 1
    assert envoy.stats()[f"{PREFIX}credential_expiry_seconds"] > 500
    if name.startswith("assume_role (base: env"):
        # The stand-in verified the SigV4 signature with botocore (it refuses a bad one)
        # and required nothing else: the base access key signed the call.
        assert [r.caller for r in stub.requests("sts")] == [ACCESS_KEY] * len(stub.requests("sts"))
        assert "ExternalId=ext-42" in stub.requests("sts")[0].path
    if name == "assume_role (base: imds)":
        imds_keys = {i.access_key for i in stub.issued() if i.endpoint.startswith("imds")}
        assert {r.caller for r in stub.requests("sts")} <= imds_keys


def test_the_default_chain_on_eks_signs_with_pod_identity_through_a_failure(start_envoy, seaweedfs, stub,
                                                                            tokens, objects):
    """The default chain on an EKS-like pod: Pod Identity's variable set (as EKS sets it) and
    IMDS reachable too. The filter asks the Pod Identity agent, through the listener that adds
    the pod's token, and while the agent fails it answers 503 and asks the agent again after
    each back-off: never IMDS, whose node role would sign instead for hours (the review's
    finding). Once the agent answers, every URL carries the Pod Identity key."""
    stub.lifetime_s = 600
    stub.set_mode("container", "500")
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23" + POD_IDENTITY_PATH}
    envoy = start(start_envoy, seaweedfs, stub, tokens,
                  {"source": "chain", "refresh": {**FAST_RETRY, "expiry_margin": MARGIN_S}}, env)
    failed = poll(lambda: counters(envoy, "container"), lambda c: c.get("http_5xx", 0) >= 2, timeout=15)
    assert failed.get("http_5xx", 0) >= 2, failed
    resp = raw_request(envoy.port, "GET", path_of("rotating/a.txt"))
    assert (resp.status, resp.headers.get("x-presign-error")) == (503, "credentials_unavailable"), resp
    stub.set_mode("container", "ok")
    assert first_200(envoy, path_of("rotating/a.txt")).status == 200
    assert stub.requests("imds") == [], "the chain fell through to IMDS"
    assert counters(envoy, "imds") == {}
    pod = {i.access_key for i in stub.issued() if i.endpoint == f"container:{POD_IDENTITY_PATH}"}
    assert pod, [i.endpoint for i in stub.issued()]
    for key, body in objects.items():
        resp = raw_request(envoy.port, "GET", path_of(key))
        assert (resp.status, resp.body) == (200, body), key
    sent = poll(lambda: [f for f in forwarded(envoy) if f.status < 300], lambda fs: len(fs) >= len(objects) + 1)
    assert sent and all(f.access_key in pod for f in sent), [f.access_key for f in sent]
    # Every call reached the agent's path with the pod's token (the stand-in checks it).
    assert all(r.path == POD_IDENTITY_PATH for r in stub.requests("container")), stub.requests("container")
    assert "credential chain, not used: env (" in envoy.log_text()


def test_an_outage_under_load_writes_a_few_lines_not_one_per_request(start_envoy, seaweedfs, stub, tokens):
    """40 s without credentials under load (4 clients over both workers): every request gets
    its 503 and is counted, yet Envoy's log grows by a few KB, not by a line per request (the
    review measured 173 MB in 40 s): one line per kind and 10 s interval, carrying how many
    like it were held back, and a summary once a flood stops. The held-back counts add up to
    every request refused."""
    stub.set_mode("imds", "down")
    envoy = start(start_envoy, seaweedfs, stub, tokens, {"source": "imds", "refresh": FAST_RETRY})
    path = path_of("rotating/a.txt")
    first = poll(lambda: raw_request(envoy.port, "GET", path), lambda r: r.status == 503)
    assert first.headers.get("x-presign-error") == "credentials_unavailable", first
    before = len(envoy.log_text())

    def refused(_key: str) -> str | None:
        resp = raw_request(envoy.port, "GET", path)
        return None if resp.status == 503 else f"{resp.status}"

    sent, failures = hammer(refused, lambda n, i: path, clients=4, seconds=40)
    assert not failures and sent > 1_000, (sent, failures[:5])
    grown = len(envoy.log_text()) - before
    assert grown < 20_000, f"the log grew by {grown} bytes for {sent} refused requests"
    total = sent + 1
    name = f"{PREFIX}sign_errors.origin.media.category.no_credentials"
    assert poll(envoy.stats, lambda s: s.get(name) == total)[name] == total

    def logged() -> int:
        lines = [json.loads(line[line.index("{"):]) for line in envoy.log_text().splitlines()
                 if '"event":"presign_rejected"' in line and '"category":"no_credentials"' in line]
        return sum(1 + line.get("held_back", 0) for line in lines if "status" in line) + \
            sum(line["held_back"] for line in lines if "status" not in line)

    # The last interval's count is reported once it ends (10 s), on a tick.
    assert poll(logged, lambda n: n == total, timeout=15) == total
    text = envoy.log_text()
    assert "while they last" not in text
    assert "credential refresh failed; next attempt in" in text
    assert "no credentials yet: matched requests get 503 credentials_unavailable" in text


def test_before_any_credentials_matched_requests_get_503_with_retry_after(start_envoy, seaweedfs, stub, tokens,
                                                                          objects):
    """While no credentials were ever obtained: 503 credentials_unavailable with
    Retry-After, counted; unmatched requests are untouched; the first success ends it."""
    stub.set_mode("imds", "down")
    envoy = start(start_envoy, seaweedfs, stub, tokens, {"source": "imds", "refresh": FAST_RETRY})
    time.sleep(1.5)
    resp = raw_request(envoy.port, "GET", path_of("rotating/a.txt"))
    assert resp.status == 503 and resp.headers["x-presign-error"] == "credentials_unavailable", resp
    assert 1 <= int(resp.headers["retry-after"]) <= 2
    assert raw_request(envoy.port, "HEAD", path_of("rotating/a.txt")).status == 503
    assert raw_request(envoy.port, "GET", "/unmatched/x").status == 404
    stats = poll(envoy.stats, lambda s: s.get(f"{PREFIX}sign_errors.origin.media.category.no_credentials") == 2)
    assert stats[f"{PREFIX}sign_errors.origin.media.category.no_credentials"] == 2
    assert stats[f"{PREFIX}requests.origin.media.outcome.denied"] == 2
    assert poll(lambda: counters(envoy, "imds"), lambda c: c.get("transport", 0) >= 1).get("transport", 0) >= 1
    assert stats[f"{PREFIX}credential_expiry_seconds"] == 0
    assert stats[f"{PREFIX}credential_last_failure"] == 2  # transport
    stub.set_mode("imds", "ok")
    assert first_200(envoy, path_of("rotating/a.txt")).status == 200
    stats = poll(envoy.stats, lambda s: s.get(f"{PREFIX}credential_last_failure") == 0)
    assert stats[f"{PREFIX}credential_last_failure"] == 0


def test_a_cluster_envoy_does_not_know_is_a_dispatch_error(start_envoy, seaweedfs, stub, tokens, objects):
    """Envoy refuses a call to an unknown cluster (Istio: no ServiceEntry): counted as
    dispatch_error, the requests get the 503, and nothing stalls."""
    envoy = start(start_envoy, seaweedfs, stub, tokens,
                  {"source": "imds", "imds": {"cluster": "outbound|80||169.254.169.254"}, "refresh": FAST_RETRY})
    found = poll(lambda: counters(envoy, "imds"), lambda c: c.get("dispatch_error", 0) >= 2)
    assert set(found) == {"dispatch_error"}, found
    resp = raw_request(envoy.port, "GET", path_of("rotating/a.txt"))
    assert (resp.status, resp.headers["x-presign-error"]) == (503, "credentials_unavailable")
    assert envoy.stats()[f"{PREFIX}credential_last_failure"] == 1
    assert not stub.requests()


def test_rotation_under_load(start_envoy, seaweedfs, stub, tokens, objects):
    """Credentials living 20 s, rotated about every 10 s during 45 s of mixed traffic
    through 2 workers: every response 2xx, every URL signed by credentials that were
    valid for its whole life, one refresh per rotation (the lease), and the origin
    refusing each key once it expired."""
    stub.lifetime_s = 20
    envoy = start(start_envoy, seaweedfs, stub, tokens,
                  {"source": "imds", "refresh": {"expiry_margin": MARGIN_S, **FAST_RETRY}})
    assert first_200(envoy, path_of("rotating/a.txt")).status == 200
    keys = list(objects)

    def check(n: int):
        key = keys[n % len(keys)]
        if n % 5 == 3:
            resp = raw_request(envoy.port, "GET", path_of(key), headers={"Range": "bytes=0-9"})
            return None if resp.status == 206 and resp.body == objects[key][:10] else f"{key}: {resp.status}"
        method = "HEAD" if n % 5 == 4 else "GET"
        resp = raw_request(envoy.port, method, path_of(key))
        want = b"" if method == "HEAD" else objects[key]
        return None if resp.status == 200 and resp.body == want else f"{time.time():.3f} {method} {key}: {resp.status} {resp.body[:80]}"

    sent, failures = hammer(check, lambda client, i: client * 7 + i, clients=4, seconds=45)
    assert sent > 400 and not failures, (failures[:5], [(i.access_key, i.issued_at, i.expires_at) for i in stub.issued("imds")], envoy.log_path)
    issued = stub.issued("imds")
    assert len(issued) >= 5, [(i.access_key, i.issued_at) for i in issued]  # 4 rotations
    # One refresh per rotation: never two issuances close together (both workers).
    gaps = [b.issued_at - a.issued_at for a, b in zip(issued, issued[1:])]
    assert min(gaps) >= 5, gaps
    by_key = {i.access_key: i for i in issued}
    # Every request of the run, and first_200's, was signed.
    signed = poll(lambda: [f for f in forwarded(envoy) if "X-Amz-Signature" in f.path],
                  lambda fs: len(fs) >= sent + 1)
    assert len(signed) == sent + 1
    used = set()
    for f in signed:
        creds = by_key[f.access_key]
        used.add(f.access_key)
        assert f.start < creds.expires_at - MARGIN_S, (f, creds.expires_at)
        assert f.expires_at <= creds.expires_at - MARGIN_S, (f, creds.expires_at)
    assert len(used) >= 4, used
    stats = envoy.stats()
    # Every issuance counted once: compared with the stub's count read at the same time, since
    # rotations go on after the load (a snapshot taken before the log was read can be one short).
    counted, answered = poll(lambda: (counters(envoy, "imds"), len(stub.issued("imds"))),
                             lambda c: c[0] == {"success": c[1]})
    assert counted == {"success": answered} and answered >= len(issued), (counted, answered, len(issued))
    # Keys past their expiry are refused by the origin (revoked), the current one works.
    expired = [i for i in issued if i.expires_at < time.time()]
    assert expired
    assert origin_status(seaweedfs, expired[0]) == 403
    assert origin_status(seaweedfs, stub.issued("imds")[-1]) == 200
    assert stats[f"{PREFIX}credential_expiry_seconds"] > 0


def origin_status(seaweedfs, creds) -> int:
    """What the origin answers a boto3-presigned GET made with issued credentials."""
    import boto3
    import urllib.error
    import urllib.request
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=seaweedfs.endpoint, region_name="us-east-1",
                          aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
                          aws_session_token=creds.token,
                          config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "rotating/a.txt"})
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as error:
        return error.code


FAULTS = ["down", "slow", "garbage", "500"]
FAULT_RESULT = {"down": "transport", "slow": "timeout", "garbage": "parse", "500": "http_5xx"}


def test_faults_keep_the_last_good_credentials_then_refuse_then_recover(start_envoy, seaweedfs, stub, tokens,
                                                                        objects):
    """For each fault of the endpoint (down, slow past the timeout, garbage, 500): no
    worker stalls, requests keep being served with the last good credentials while they
    are valid, then get 503 credentials_unavailable with Retry-After, and are served again
    once the endpoint recovers; the failure counters match what happened."""
    stub.lifetime_s = 10
    stub.slow_s = 3
    envoy = start(start_envoy, seaweedfs, stub, tokens,
                  {"source": "imds", "imds": {"timeout_ms": 500},
                   "refresh": {"expiry_margin": 2, **FAST_RETRY}})
    path = path_of("rotating/a.txt")
    assert first_200(envoy, path).status == 200
    for fault in FAULTS:
        # Start from fresh credentials: 10 s of life, refreshed from 5 s on.
        fetched = len(stub.issued("imds"))
        poll(lambda: len(stub.issued("imds")), lambda n: n > fetched, timeout=8)
        expires = stub.issued("imds")[-1].expires_at
        before = counters(envoy, "imds").get(FAULT_RESULT[fault], 0)
        stub.set_mode("imds", fault)
        served, refused, slowest = [], [], 0.0
        while time.time() < expires + 1:
            t0 = time.monotonic()
            resp = raw_request(envoy.port, "GET", path)
            slowest = max(slowest, time.monotonic() - t0)
            (served if resp.status == 200 else refused).append((time.time(), resp))
            time.sleep(0.05)
        assert slowest < 1.0, f"{fault}: a request took {slowest:.2f} s"
        # Last good credentials until expiry - margin - min_remaining (- 1 s of URL life).
        # (URLs end 2 s before the credentials, must keep min_remaining = 2 s, and need a
        # whole second of life: the last is served 5 s before the credentials expire.)
        assert served and served[-1][0] < expires - 4, fault
        assert served[-1][0] >= expires - 6.5, f"{fault}: stopped serving too early"
        assert refused, fault
        for _, resp in refused:
            assert resp.status == 503 and resp.headers["x-presign-error"] == "credentials_unavailable", resp
            assert 1 <= int(resp.headers["retry-after"]) <= 2
        stub.set_mode("imds", "ok")
        # Every failed attempt is counted under its category. Each reached the endpoint
        # (one token PUT each, except when it was down): the counter and the stand-in's
        # log agree once the last slow answer is logged and the counters are flushed.
        time.sleep(stub.slow_s + 1.5 if fault == "slow" else 1.5)
        failed = counters(envoy, "imds").get(FAULT_RESULT[fault], 0) - before
        assert failed >= 1, (fault, counters(envoy, "imds"))
        if fault != "down":
            attempts = [r for r in stub.requests("imds") if r.mode == fault and r.method == "PUT"]
            assert failed == len(attempts), (fault, failed, len(attempts))
        assert first_200(envoy, path, timeout=5).status == 200, fault
