"""Verified TLS to the store: envoy/origin-https.yaml's cluster in a real Envoy.

The request Envoy sends the store carries a presigned URL, a bearer credential for that object
until it expires. So the shipped https cluster verifies the store's certificate: against a CA
bundle, for the name the filter signs for (SNI and subject alt name). Here that cluster, changed
only where a test must (tests/origin_tls.py: 127.0.0.1 and a port, the name s3.test.internal,
a test CA made at run time by tests/testca.py), is merged into the rendered envoy/envoy.yaml:

- in front of SeaweedFS serving S3 over TLS with a certificate of that CA, every key of the
  integration corpus comes back 200 with its exact bytes, path-style (the filter signs for
  s3.test.internal:<port>) and virtual-hosted (media.s3.test.internal, through the
  certificate's *.s3.test.internal);
- in front of a recording TLS server presenting a certificate for another name, an expired one
  or one from an unknown CA, Envoy refuses the connection: 503, response flag UF, the TLS
  failure in %UPSTREAM_TRANSPORT_FAILURE_REASON%, counted in the cluster's ssl stats, and the
  server never reads a request; with the good certificate the same server reads it (the control).

Also: README.md's subsection shows the file's cluster verbatim, and ``make run-https``'s demo
(tests/stack.py run-https) serves an object through it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import ACCESS_KEY, SECRET_KEY, Corpus, assert_each, get_ok, media_path, poll

from origin_tls import (
    ORIGIN_HTTPS_EXAMPLE,
    HttpsOriginEnvoy,
    RecordingTlsServer,
    https_origin_cluster,
    tls_context,
)
from stack import (
    BUCKET,
    REPO_ROOT,
    TEMPLATE_PATH,
    SeaweedFS,
    access_log_format,
    env_credentials,
    filter_config,
    raw_request,
)
from testca import Pki, make_pki

CREDENTIALS = env_credentials(ACCESS_KEY, SECRET_KEY)
# The code, the flags and why the upstream connection failed (Envoy's TLS error text).
TLS_LOG = access_log_format("%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_TRANSPORT_FAILURE_REASON%\n")
# envoy/envoy.yaml's origin-stats access logger, for Envoy's 503 with flag UF.
ORIGIN_503_UF = "presign_origin.requests.origin.media.code.503.flags.UF"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_store(tmp_path_factory, pki: Pki, corpus: Corpus):
    """SeaweedFS serving S3 over TLS (pki.good: s3.test.internal and *.s3.test.internal) beside
    its plain port, virtual-hosted names under s3.test.internal, holding the corpus."""
    with SeaweedFS(tmp_path_factory.mktemp("tls-origin"), ACCESS_KEY, SECRET_KEY,
                   tls=(pki.good.cert, pki.good.key), domain_name=pki.name) as origin:
        client = origin.client()  # seeded over the plain port
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]),
                          corpus.objects.items()))
        yield origin


@pytest.fixture
def start_https_envoy(tmp_path, wasm_path: Path, pki: Pki):
    """Factory: an HttpsOriginEnvoy to 127.0.0.1:``port``, expecting ``tls_name`` (default the
    test name), trusting the test CA; stopped after the test."""
    started: list[HttpsOriginEnvoy] = []

    def make(config: dict, port: int, tls_name: str | None = None, cluster_edit=None) -> HttpsOriginEnvoy:
        envoy = HttpsOriginEnvoy(tmp_path, TEMPLATE_PATH, wasm_path, config, port, env=CREDENTIALS,
                                 extra_substitutions=TLS_LOG, tls_name=tls_name or pki.name, ca_file=pki.ca,
                                 cluster_edit=cluster_edit)
        started.append(envoy)
        return envoy.start()

    yield make
    for envoy in started:
        envoy.stop()


def rendered_cluster(envoy: HttpsOriginEnvoy) -> dict:
    [cluster] = [c for c in yaml.safe_load(envoy.config_path.read_text())["static_resources"]["clusters"]
                 if c["name"] == "media"]
    return cluster


def cluster_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The cluster media's stats (and the origin-stats logger's) that moved, as deltas."""
    return {name: value - before.get(name, 0) for name, value in after.items()
            if (name.startswith("cluster.media.") or name.startswith("presign_origin."))
            and value != before.get(name, 0)}


# ---------------------------------------------------------------------------
# The corpus through verified TLS
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("addressing", ["path", "virtual"])
def test_every_key_through_verified_tls(start_https_envoy, tls_store: SeaweedFS, pki: Pki, corpus: Corpus,
                                        addressing: str):
    """Path style: the filter signs for s3.test.internal:<https port>, Envoy sends that name as
    SNI and checks it in the certificate. Virtual-hosted: the filter signs for
    media.s3.test.internal:<https port>, and Envoy expects media.s3.test.internal, matched by
    the certificate's *.s3.test.internal (Envoy's exact DNS matcher follows wildcard rules).
    SeaweedFS checks every signature against the Host it got: a 200 with the exact bytes means
    the URL was signed for the name Envoy verified, and the request went over TLS."""
    endpoint = f"https://{pki.name}:{tls_store.https_port}"
    tls_name = pki.name if addressing == "path" else f"{BUCKET}.{pki.name}"
    config = filter_config(tls_store.https_port, endpoint=endpoint, addressing=addressing)
    envoy = start_https_envoy(config, tls_store.https_port, tls_name=tls_name)

    cluster = rendered_cluster(envoy)
    assert cluster == https_origin_cluster(tls_store.https_port, tls_name, pki.ca)
    assert tls_context(cluster)["sni"] == tls_name
    before = envoy.stats()
    assert_each(corpus.keys, get_ok(envoy, corpus.objects), f"GETs through verified TLS ({addressing})")

    delta = cluster_delta(before, envoy.stats())
    assert delta.get("cluster.media.upstream_rq_200", 0) == len(corpus.keys), delta
    assert delta.get("cluster.media.ssl.handshake", 0) >= 1, delta
    assert not {name: n for name, n in delta.items() if ".ssl.fail_" in name or "connect_fail" in name}, delta
    assert delta.get("cluster.media.ssl.versions.TLSv1.2", 0) == delta["cluster.media.ssl.handshake"], delta


# ---------------------------------------------------------------------------
# Certificates Envoy must refuse, and the control
# ---------------------------------------------------------------------------

# The certificate case -> (the ssl counter that counts it, the failure reason Envoy logs, the
# alert Envoy sent the server), as Envoy 1.40 shows them.
REFUSED = {
    "wrong_name": ("ssl.fail_verify_san",
                   "CERTIFICATE_VERIFY_FAILED:verify_cert_failed:_SAN_matcher,"
                   "_certificate_SANs_are_[other.test.internal]",
                   "SSLV3_ALERT_CERTIFICATE_UNKNOWN"),
    "expired": ("ssl.fail_verify_error",
                "CERTIFICATE_VERIFY_FAILED:verify_cert_failed:_X509_verify_cert:"
                "_certificate_verification_error_at_depth_0:_certificate_has_expired",
                "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
    "unknown_ca": ("ssl.fail_verify_error",
                   "CERTIFICATE_VERIFY_FAILED:verify_cert_failed:_X509_verify_cert:"
                   "_certificate_verification_error_at_depth_0:_unable_to_get_local_issuer_certificate",
                   "TLSV1_ALERT_UNKNOWN_CA"),
}
REQUESTS = 2


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_bad_certificate_is_refused_before_any_request(start_https_envoy, pki: Pki, case: str):
    counter, reason, alert = REFUSED[case]
    pair = pki.bad()[case]
    with RecordingTlsServer(pair.cert, pair.key) as server:
        config = filter_config(server.port, endpoint=f"https://{pki.name}:{server.port}")
        envoy = start_https_envoy(config, server.port)
        before = envoy.stats()
        for _ in range(REQUESTS):
            resp = raw_request(envoy.port, "GET", media_path("any.txt"))
            # Envoy's own 503, its body replaced like every origin error (envoy/envoy.yaml).
            assert (resp.status, resp.body) == (503, b'{"error":"origin_error"}'), resp
            assert "x-presign-error" not in resp.headers, resp.headers

        lines = poll(lambda: envoy.access_log_text().splitlines(), lambda lines: len(lines) >= REQUESTS)
        assert len(lines) == REQUESTS, lines
        for line in lines:
            code, flags, failure = line.split(" ", 2)
            assert (code, flags) == ("503", "UF"), line
            assert failure.startswith("TLS_error:") and reason in failure, line

        delta = poll(lambda: cluster_delta(before, envoy.stats()),
                     lambda d: d.get(ORIGIN_503_UF, 0) >= REQUESTS and d.get(f"cluster.media.{counter}", 0) >= REQUESTS)
        fails = {name: n for name, n in delta.items() if ".ssl.fail_" in name}
        assert fails == {f"cluster.media.{counter}": REQUESTS}, delta
        assert delta.get("cluster.media.upstream_cx_connect_fail", 0) == REQUESTS, delta
        assert delta.get("cluster.media.upstream_rq_503", 0) == REQUESTS, delta
        assert delta.get(ORIGIN_503_UF, 0) == REQUESTS, delta
        assert "cluster.media.ssl.handshake" not in delta, delta

        seen = poll(server.snapshot, lambda seen: len(seen["handshake_errors"]) >= REQUESTS)
        # Envoy connected and started TLS each time (so the refusal is the certificate's, not
        # an unreachable port), sent an alert, and never a byte of a request.
        assert seen["accepted"] == REQUESTS, seen
        assert seen["handshakes"] == 0 and seen["requests"] == [], seen
        assert seen["handshake_errors"] == [alert] * REQUESTS, seen
        assert seen["server_names"] == [pki.name] * REQUESTS, seen


def test_the_recording_server_with_the_good_certificate_gets_the_request(start_https_envoy, pki: Pki):
    """The control for the test above: the same server and Envoy, the certificate right."""
    with RecordingTlsServer(pki.good.cert, pki.good.key, body=b"from the recorder\n") as server:
        config = filter_config(server.port, endpoint=f"https://{pki.name}:{server.port}")
        envoy = start_https_envoy(config, server.port)
        before = envoy.stats()
        resp = raw_request(envoy.port, "GET", media_path("any.txt"))
        assert (resp.status, resp.body) == (200, b"from the recorder\n"), resp
        seen = server.snapshot()
        assert (seen["accepted"], seen["handshakes"], seen["handshake_errors"]) == (1, 1, []), seen
        assert seen["server_names"] == [pki.name], seen
        [line] = seen["requests"]
        assert re.fullmatch(rf"GET /{BUCKET}/any\.txt\?X-Amz-Algorithm=AWS4-HMAC-SHA256&\S*"
                            r"X-Amz-Signature=[0-9a-f]{64} HTTP/1\.1", line), line
        delta = poll(lambda: cluster_delta(before, envoy.stats()),
                     lambda d: d.get("cluster.media.upstream_rq_200", 0) >= 1)
        assert delta.get("cluster.media.ssl.handshake") == 1, delta
        assert not {name: n for name, n in delta.items() if ".ssl.fail_" in name}, delta


def without_san_matcher(cluster: dict) -> None:
    del tls_context(cluster)["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]


def without_validation_context(cluster: dict) -> None:
    del tls_context(cluster)["common_tls_context"]["validation_context"]


@pytest.mark.parametrize("edit, accepted", [
    (without_san_matcher, ["wrong_name"]),
    (without_validation_context, ["wrong_name", "expired", "unknown_ca"]),
], ids=["no-san-matcher", "no-validation-context"])
def test_without_the_shipped_checks_envoy_hands_the_url_to_a_bad_certificate(start_https_envoy, pki: Pki,
                                                                            edit, accepted: list[str]):
    """What the shipped checks are for, shown by taking them out: without the subject alt
    name matcher, Envoy accepts a certificate of a trusted CA issued for another name (Envoy
    does not compare SNI with the certificate by itself); without validation_context, any
    certificate at all. The server then reads the presigned URL. (With the matcher in place
    but validation_context's CA, an expired or unknown-CA certificate is still refused: the
    first case keeps those.)"""
    for case, pair in pki.bad().items():
        with RecordingTlsServer(pair.cert, pair.key) as server:
            config = filter_config(server.port, endpoint=f"https://{pki.name}:{server.port}")
            envoy = start_https_envoy(config, server.port, cluster_edit=edit)
            resp = raw_request(envoy.port, "GET", media_path("any.txt"))
            seen = server.snapshot()
            if case in accepted:
                assert resp.status == 200, (case, resp)
                [line] = seen["requests"]
                assert "X-Amz-Signature=" in line, (case, line)
            else:
                assert resp.status == 503 and seen["requests"] == [], (case, resp, seen)
            envoy.stop()


# ---------------------------------------------------------------------------
# README and make run-https
# ---------------------------------------------------------------------------


def readme_section(title: str) -> str:
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()  # README.md's section moved there
    start = text.index(f"\n### {title}\n")
    end = re.search(r"\n##+ ", text[start + 1:])
    return text[start:start + 1 + end.start()] if end else text[start:]


def test_readme_shows_the_shipped_cluster_verbatim():
    section = readme_section("The origin over HTTPS")
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    shipped = ORIGIN_HTTPS_EXAMPLE.read_text()
    cluster = shipped[shipped.index("clusters:\n"):]
    assert blocks and blocks[0] == cluster, "README's first yaml block of the section is not the file's cluster"


def test_make_run_https_serves_through_verified_tls(tmp_path):
    """tests/stack.py run-https (what `make run-https` runs, after the build): the printed
    curl command fetches hello.txt through Envoy, the printed direct one gets the store's
    own 403 over TLS checked with the printed CA, Envoy counts handshakes and no failure, and
    Ctrl-C stops it all with exit 0, its temp dir (the CA, the keys) removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out_path = tmp_path / "demo.out"
    with open(out_path, "wb") as out:
        demo = subprocess.Popen([sys.executable, str(REPO_ROOT / "tests" / "stack.py"), "run-https"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)
    try:
        text = poll(out_path.read_text, lambda t: "Ctrl-C to stop." in t or demo.poll() is not None, timeout=120)
        assert "Ctrl-C to stop." in text, text
        curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl ")]
        fetch = next(c for c in curls if c.endswith("/media/hello.txt"))
        result = subprocess.run(fetch, shell=True, capture_output=True, timeout=30)
        hello = b"Hello from SeaweedFS, served through envoy-presign.\n"
        assert (result.returncode, result.stdout) == (0, hello), result
        direct = next(c for c in curls if "--cacert" in c).partition("#")[0]
        result = subprocess.run(direct, shell=True, capture_output=True, timeout=30)
        assert (result.returncode, result.stdout) == (0, b"403\n"), result
        stats_curl = next(c for c in curls if "cluster.media.ssl" in c).partition("#")[0]
        stats = subprocess.run(stats_curl, shell=True, capture_output=True, text=True, timeout=30).stdout
        counted = dict(line.split(": ", 1) for line in stats.splitlines() if ": " in line)
        assert int(counted["cluster.media.ssl.handshake"]) >= 1, stats
        assert all(int(counted[f"cluster.media.ssl.{name}"]) == 0
                   for name in ("fail_verify_san", "fail_verify_error", "connection_error")), stats
        workdir = Path(re.search(r"test CA made now \((\S+)/pki/ca\.crt\)", text).group(1))
        assert workdir.is_dir() and oct((workdir / "pki" / "good.key").stat().st_mode & 0o777) == "0o600"
    finally:
        if demo.poll() is None:
            os.kill(demo.pid, signal.SIGINT)
        code = demo.wait(timeout=60)
    assert code == 0, out_path.read_text()
    assert not workdir.exists()
