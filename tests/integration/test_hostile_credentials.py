"""A hostile or broken credential provider, in real Envoy (the review's findings 6 to 8).

The credentials stand-in (tests/credstub.py) answers the filter's container-endpoint calls
(ECS relative URI, cluster presign_container of envoy/credentials.yaml) in its hostile
modes: a 60,000-character AccessKeyId, a 50 MB answer, an AccessKeyId holding U+2028 and a
forged log line, an Expiration in year 9999. Before the fix the first was adopted and
copied into every cache entry, the second was buffered by Envoy (32 MiB each) before the
filter's own 64 KiB check, the third was adopted and logged raw, the fourth pinned the key
until restart.

What must hold: no hostile answer is ever adopted; every one is counted, under `parse`
(the filter refused it: `bad_field`, `expiration_too_far`) or, for the 50 MB answer,
`transport` (Envoy gives up on the answer past 64 KiB, the runtime key of
envoy/credentials.yaml, and the filter sees the call fail); the filter keeps signing with
the last good credentials, or answers 503 credentials_unavailable when it never had any;
it recovers as soon as the endpoint behaves; Envoy's memory stays flat; and no hostile
value reaches Envoy's log.

The Envoy here is credenv.RotatingEnvoy: the shipped template with envoy/credentials.yaml's
parts merged, its `layered_runtime` (the answer-size limit) included.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/

from conftest import PATH_LOG, Forwarded, poll, settled_rss  # noqa: E402
from credenv import SESSION_KEK, RotatingEnvoy, write_sds  # noqa: E402
from credstub import (  # noqa: E402
    ECS_RELATIVE_PATH,
    FAR_EXPIRATION_EPOCH,
    FORGED_LINE,
    HOSTILE_KEY_ID,
    HOSTILE_KEY_ID_LEN,
    HOSTILE_MODES,
    HUGE_ANSWER_BYTES,
    IMDS_CREDENTIALS_PATH,
    IMDS_TOKEN_HEADER,
    IMDS_TOKEN_PATH,
    IMDS_TTL_HEADER,
    CredStub,
    KeyPool,
    ProjectedToken,
    SeaweedFSSessions,
)
from stack import BUCKET, TEMPLATE_PATH, filter_config, raw_request  # noqa: E402

PREFIX = "wasmcustom.envoy_presign."
KEY = "hostile/object.txt"
BODY = b"served with the last good credentials\n"
PATH = "/media/" + urllib.parse.quote(KEY)
MIB = 1024 * 1024
# What each hostile answer is counted as (see the module docstring).
RESULT = {"long_key_id": "parse", "line_separator_key_id": "parse", "far_expiration": "parse",
          "huge_answer": "transport"}
# credential_last_failure: Failure::code (src/rotation/failure.rs), 2 transport, 6 parse.
LAST_FAILURE = {"parse": 6, "transport": 2}
# Envoy's RSS may grow this much over the hostile phase (measured: 0.1 to 0.2 MiB; before the
# fix the three 50 MB answers alone grew it by 28.5 MiB, each buffered to 32 MiB).
RSS_ALLOWANCE = 16 * MIB
HUGE_ANSWERS = 3
# Bytes Envoy may read of one 50 MB answer before giving up (measured: 0.38 MiB for all three,
# what the sockets held; without the runtime key it read 98 MiB of three).
HUGE_READ_MAX = 4 * MIB
RECEIVED = "cluster.presign_container.upstream_cx_rx_bytes_total"
FAST_RETRY = {"retry_min_ms": 300, "retry_max_ms": 1000}
# URLs end 2 s before the credentials, keep min_remaining 2 s and need 1 s of life: the last
# good credentials sign until 5 s before they expire; a refresh is due at half their life.
LIFETIME_S = 20
SERVE_UNTIL_S = LIFETIME_S - 5


@pytest.fixture(scope="module")
def origin(seaweedfs):
    seaweedfs.client().put_object(Bucket=BUCKET, Key=KEY, Body=BODY)
    return seaweedfs


@pytest.fixture
def stub():
    with CredStub(SeaweedFSSessions(SESSION_KEK), lifetime_s=LIFETIME_S) as s:
        yield s


@pytest.fixture
def start(tmp_path_factory, wasm_path, origin, stub):
    started: list[RotatingEnvoy] = []

    def make() -> RotatingEnvoy:
        tmp = tmp_path_factory.mktemp("hostile-credentials")
        token = ProjectedToken(tmp / "pod", "eyJ.pod-identity.unused\n", name="eks-pod-identity-token")
        config = filter_config(origin.s3_port, credentials={
            "source": "container", "refresh": {"expiry_margin": 2, **FAST_RETRY}},
            expires_in=60, refresh_before=10, min_remaining=2)
        envoy = RotatingEnvoy(tmp, TEMPLATE_PATH, wasm_path, config, origin.s3_port,
                                    env={"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ECS_RELATIVE_PATH},
                                    extra_substitutions=PATH_LOG, stub=stub,
                                    sds_path=write_sds(tmp, token.path))
        started.append(envoy)
        return envoy.start()

    yield make
    for envoy in started:
        envoy.stop()


def counters(envoy) -> dict[str, int]:
    """Refresh results through the container source, the zero ones left out."""
    prefix = f"{PREFIX}credential_refreshes.source.container.result."
    return {k.removeprefix(prefix): v for k, v in envoy.stats().items() if k.startswith(prefix) and v}


def hostile_answers(stub: CredStub, mode: str) -> int:
    """Credentials answers the stand-in gave (or began to give) in ``mode``."""
    return sum(1 for r in stub.requests("container") if r.mode == mode and r.issued)


def good_answers(stub: CredStub, since: float = 0.0) -> set[str]:
    """Access keys the stand-in handed out in mode ok (from ``since``, Unix seconds)."""
    return {r.issued for r in stub.requests("container") if r.mode == "ok" and r.issued and r.time >= since}


def forwarded(envoy) -> list[Forwarded]:
    out = []
    for line in envoy.access_log_text().splitlines():
        start_s, status, method, path, tag = line.split(" ")
        out.append(Forwarded(float(start_s), int(status), method, path, tag))
    return out


def get(envoy):
    return raw_request(envoy.port, "GET", PATH)


def assert_no_hostile_value_in(log: str, stub: CredStub) -> None:
    assert HOSTILE_KEY_ID[:40] not in log and "K" * 64 not in log
    assert FORGED_LINE not in log and "\u2028" not in log
    assert "9999-12-31" not in log and "253402300799" not in log
    for issued in stub.issued():
        assert issued.secret_key not in log and issued.token not in log


def test_hostile_answers_before_any_credentials_get_503_then_recover(start, stub):
    """Never a good answer yet: each hostile mode in turn is refused and counted (nothing
    adopted, matched requests get 503 credentials_unavailable), then the first good answer
    serves."""
    stub.set_mode("container", HOSTILE_MODES[0])
    envoy = start()
    for mode in HOSTILE_MODES:
        stub.set_mode("container", mode)
        result = RESULT[mode]
        before = counters(envoy).get(result, 0)
        assert poll(lambda: hostile_answers(stub, mode), lambda n: n >= 2, timeout=10) >= 2, mode
        assert poll(lambda: counters(envoy).get(result, 0), lambda n: n >= before + 2, timeout=5) >= before + 2, (
            mode, counters(envoy))
        resp = get(envoy)
        assert (resp.status, resp.headers.get("x-presign-error")) == (503, "credentials_unavailable"), (mode, resp)
        stats = envoy.stats()
        assert stats[f"{PREFIX}credential_expiry_seconds"] == 0, mode
        assert stats[f"{PREFIX}credential_last_failure"] == LAST_FAILURE[result], mode
    # Every hostile answer counted once, under its category, and nothing else: once no more
    # come (a 500 is counted http_5xx, apart).
    stub.set_mode("container", "500")

    def tally():
        got = counters(envoy)
        got.pop("http_5xx", None)
        want = {result: sum(hostile_answers(stub, m) for m in HOSTILE_MODES if RESULT[m] == result)
                for result in set(RESULT.values())}
        return got, want

    got, want = poll(tally, lambda gw: gw[0] == gw[1])
    assert got == want, (got, want)
    stub.set_mode("container", "ok")
    resp = poll(lambda: get(envoy), lambda r: r.status == 200, timeout=10)
    assert (resp.status, resp.body) == (200, BODY), resp
    good = good_answers(stub)
    sent = poll(lambda: [f for f in forwarded(envoy) if f.status == 200], bool)
    assert sent and {f.access_key for f in sent} <= good, ([f.access_key for f in sent], good)
    envoy.stop()
    assert_no_hostile_value_in(envoy.log_text(), stub)


def test_hostile_answers_keep_the_last_good_credentials_and_memory_flat(start, stub):
    """Good credentials first; then, at each refresh, one hostile mode: the refresh fails
    (counted, one per hostile answer), requests keep being served with the last good key,
    and the next good answer is adopted. Envoy's RSS after every mode (three 50 MB answers
    among them) stays within RSS_ALLOWANCE of the well-behaved run's."""
    envoy = start()
    resp = poll(lambda: get(envoy), lambda r: r.status == 200, timeout=10)
    assert resp.status == 200, resp
    # A well-behaved rotation first: RSS measured once Envoy has served and refreshed.
    poll(lambda: len(stub.issued()), lambda n: n >= 2, timeout=LIFETIME_S)
    for _ in range(20):
        assert get(envoy).status == 200
    before = settled_rss(envoy.proc.pid)
    timings = []
    for mode in HOSTILE_MODES:
        # The credentials the filter holds: the last good answer.
        good = stub.issued()[-1]
        assert good.access_key in good_answers(stub)
        due = good.issued_at + LIFETIME_S / 2
        result = RESULT[mode]
        counted = counters(envoy).get(result, 0)
        # Every good answer so far counted (counters reach Envoy on the tick after).
        successes = poll(lambda: counters(envoy).get("success", 0), lambda n: n == len(good_answers(stub)))
        assert successes == len(good_answers(stub)), (mode, counters(envoy))
        received = envoy.stats()[RECEIVED]
        stub.set_mode("container", mode)
        want = HUGE_ANSWERS if mode == "huge_answer" else 2
        n, adopted = poll(lambda: (hostile_answers(stub, mode), counters(envoy).get("success", 0) - successes),
                          lambda got: got[0] >= want or got[1], timeout=LIFETIME_S)
        assert not adopted, f"{mode}: a hostile answer was adopted"
        assert n >= want, (mode, n)
        t = time.time()
        assert t < good.issued_at + SERVE_UNTIL_S, f"{mode}: the hostile answers came too late to test serving"
        # Still served, with the last good key (nothing hostile adopted).
        resp = get(envoy)
        assert (resp.status, resp.body) == (200, BODY), (mode, resp)
        sent = poll(lambda: [f for f in forwarded(envoy) if f.status == 200 and f.start >= t - 0.5], bool)
        assert sent and {f.access_key for f in sent} == {good.access_key}, (mode, [f.access_key for f in sent])
        time.sleep(1.2)  # the counters of the last answer reach Envoy on the next tick
        assert counters(envoy).get("success", 0) == successes, f"{mode}: a hostile answer was adopted"
        stats = envoy.stats()
        assert 0 < stats[f"{PREFIX}credential_expiry_seconds"] <= LIFETIME_S, (mode, stats)
        recovered_at = time.time()
        stub.set_mode("container", "ok")
        # Recovery: the next good answer is adopted and signs.
        fresh = poll(lambda: good_answers(stub, recovered_at), bool, timeout=5)
        assert len(fresh) == 1, (mode, fresh)
        signed = poll(lambda: (get(envoy), {f.access_key for f in forwarded(envoy)}),
                      lambda rs: rs[0].status == 200 and fresh <= rs[1], timeout=5)
        assert signed[0].status == 200 and fresh <= signed[1], (mode, signed[0])
        # Every hostile answer counted once, under its category.
        answers = hostile_answers(stub, mode)
        got = poll(lambda: counters(envoy).get(result, 0) - counted, lambda d: d == answers, timeout=5)
        assert got == answers, (mode, got, answers, counters(envoy))
        # What Envoy read of the answers (and the good one after): refused early.
        read = envoy.stats()[RECEIVED] - received
        timings.append(f"{mode}: {answers} answers, {t - due:.1f} s after due, {read / MIB:.2f} MiB read")
        if mode == "huge_answer":
            assert read < answers * HUGE_READ_MAX, f"Envoy read {read / MIB:.1f} MiB of {answers} answers"
    after = settled_rss(envoy.proc.pid)
    growth = after - before
    print(f"hostile modes ({'; '.join(timings)}): RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB, "
          f"growth {growth / MIB:.1f} MiB")
    assert growth < RSS_ALLOWANCE, f"RSS grew {growth / MIB:.1f} MiB over the hostile answers"
    # No hostile key was ever used, and the expiry gauge follows honest credentials only.
    assert {f.access_key for f in forwarded(envoy) if f.status == 200} <= good_answers(stub)
    assert HOSTILE_KEY_ID not in envoy.access_log_text()
    envoy.stop()
    assert_no_hostile_value_in(envoy.log_text(), stub)


def test_the_stand_ins_hostile_answers(tmp_path):
    """The stand-in's hostile modes, without Envoy: every kind's credentials answer (IMDS,
    container, STS JSON and XML) carries the hostile value; the other IMDS steps do not."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    token_file = tmp_path / "web-identity-token"
    token_file.write_text("eyJ.web-identity\n")

    def fetch(stub: CredStub, kind: str, path: str, method: str = "GET", **headers: str) -> bytes:
        request = urllib.request.Request(stub.endpoint(kind) + path, method=method, headers=headers)
        with opener.open(request, timeout=30) as resp:
            return resp.read()

    def answers(stub: CredStub) -> dict[str, bytes]:
        token = fetch(stub, "imds", IMDS_TOKEN_PATH, "PUT", **{IMDS_TTL_HEADER: "60"}).decode()
        role = fetch(stub, "imds", IMDS_CREDENTIALS_PATH, **{IMDS_TOKEN_HEADER: token}).decode()
        assert role == stub.role_name  # the role name step is never hostile
        sts = "/?" + urllib.parse.urlencode({
            "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": "arn:aws:iam::1:role/r",
            "RoleSessionName": "s", "WebIdentityToken": "eyJ.web-identity"})
        return {"imds": fetch(stub, "imds", IMDS_CREDENTIALS_PATH + role, **{IMDS_TOKEN_HEADER: token}),
                "container": fetch(stub, "container", ECS_RELATIVE_PATH),
                "sts-json": fetch(stub, "sts", sts, Accept="application/json"),
                "sts-xml": fetch(stub, "sts", sts)}

    def credentials(kind: str, body: bytes) -> tuple[str, str]:
        """(AccessKeyId, Expiration as text) of an answer."""
        if kind == "sts-xml":
            text = body.decode()
            cut = lambda name: text.split(f"<{name}>")[1].split(f"</{name}>")[0]  # noqa: E731
            return cut("AccessKeyId"), cut("Expiration")
        doc = json.loads(body)
        if kind == "sts-json":
            doc = doc["AssumeRoleWithWebIdentityResponse"]["AssumeRoleWithWebIdentityResult"]["Credentials"]
        return doc["AccessKeyId"], str(doc["Expiration"])

    with CredStub(KeyPool({"AKIDSTANDIN0001": "standin/SECRET+1"}), web_identity_token_file=token_file) as s:
        for kind, body in answers(s).items():
            assert credentials(kind, body)[0] == "AKIDSTANDIN0001", kind
        for mode in HOSTILE_MODES:
            s.set_mode("all", mode)
            for kind, body in answers(s).items():
                if mode == "huge_answer":
                    assert len(body) >= HUGE_ANSWER_BYTES - 64, kind
                    continue
                key_id, expiration = credentials(kind, body)
                if mode == "long_key_id":
                    assert key_id == HOSTILE_KEY_ID and len(key_id) == HOSTILE_KEY_ID_LEN, kind
                elif mode == "line_separator_key_id":
                    assert key_id == "AKIDSTANDIN0001\u2028" + FORGED_LINE, kind
                else:
                    assert expiration in (str(FAR_EXPIRATION_EPOCH), "9999-12-31T23:59:59Z",
                                          "9999-12-31T23:59:59.000Z"), (kind, expiration)
