"""envoy/credentials.yaml on the real Envoy: it validates as shipped, and its clusters and
internal listeners work end to end against the credentials stand-in (tests/credstub.py),
with kubelet-style token rotation.

The Envoy here runs envoy/credentials.yaml itself, changed only where a test must: its
upstreams (169.254.x, sts.eu-west-1.amazonaws.com over TLS) point at the stub over plain
HTTP on loopback, the SDS file and the token files live in a temp dir, and an ordinary
HTTP listener is added in front, routing each request to the cluster named in its
``x-presign-cluster`` header, as the filter's dispatch_http_call names a cluster.  The
filter itself is not needed.
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/

from credstub import (  # noqa: E402
    ECS_RELATIVE_PATH,
    POD_IDENTITY_PATH,
    CredStub,
    KeyPool,
    ProjectedToken,
    sign_get,
)
from credenv import by_name, credential_parts  # noqa: E402
from stack import REPO_ROOT, Envoy, _binary, raw_request  # noqa: E402

EXAMPLE = REPO_ROOT / "envoy" / "credentials.yaml"
SDS_EXAMPLE = REPO_ROOT / "envoy" / "pod-identity-sds.yaml"
SDS_PATH_IN_EXAMPLE = "/etc/envoy/pod-identity-sds.yaml"
STS_HOST = "sts.eu-west-1.amazonaws.com"
ROLE_ARN = "arn:aws:iam::123456789012:role/presign-target"
BASE_ACCESS_KEY, BASE_SECRET_KEY = "AKIDLISTENERSBASE01", "listeners-base/SECRET+01"
CLUSTER_HEADER = "x-presign-cluster"
# Every token value any test writes: none may show in /config_dump, /stats or the log.
POD_TOKENS = ["eyJ.pod-identity.first", "eyJ.pod-identity.second", "eyJ.pod-identity.third"]
WEB_TOKENS = ["eyJ.web-identity.first", "eyJ.web+identity/second=", "eyJ.web-identity.third"]


@pytest.fixture(scope="module")
def wasm_path():
    """Overrides the suite's autouse fixture: the filter is not needed here."""
    return None


def validate(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_binary("envoy"), "--mode", "validate", "-c", str(config), "-l", "warning"],
                          capture_output=True, text=True, timeout=60)


def test_example_validates(tmp_path: Path):
    """As shipped, but for the SDS file's location (validation wants it to exist)."""
    config = tmp_path / "credentials.yaml"
    config.write_text(EXAMPLE.read_text().replace(SDS_PATH_IN_EXAMPLE, str(SDS_EXAMPLE)))
    result = validate(config)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr
    # The internal listeners see tokens (:path, Authorization): no access log there.
    listeners = yaml.safe_load(EXAMPLE.read_text())["static_resources"]["listeners"]
    for name in ("presign_pod_identity", "presign_web_identity"):
        listener = by_name(listeners, name)
        assert "internal_listener" in listener and "access_log" not in str(listener), name


def adapted_config(example: dict, stub: CredStub, sds_path: Path, listen_port: int, admin_port: int) -> dict:
    config = copy.deepcopy(example)
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    resources = config["static_resources"]
    parts = credential_parts(stub, sds_path)
    resources["clusters"] = parts["clusters"]
    resources["listeners"] = parts["listeners"]
    resources["listeners"].append({
        "name": "entry",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
                "stat_prefix": "entry",
                "route_config": {"virtual_hosts": [{"name": "any", "domains": ["*"], "routes": [
                    {"match": {"prefix": "/"}, "route": {"cluster_header": CLUSTER_HEADER}}]}]},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    })
    return config


class CredentialsEnvoy(Envoy):
    """stack.Envoy (ports, readiness, retries, logs) running the adapted example."""

    def __init__(self, workdir: Path, build, env: dict[str, str]):
        super().__init__(workdir, EXAMPLE, wasm_path="", filter_config={}, origin_port=0, env=env,
                         concurrency=2)
        self.build = build

    def render(self) -> str:
        return yaml.safe_dump(self.build(self.port, self.admin_port), sort_keys=False)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("credential-listeners")
    pod = ProjectedToken(tmp / "pod-identity", POD_TOKENS[0] + "\n", name="eks-pod-identity-token")
    web = ProjectedToken(tmp / "irsa", WEB_TOKENS[0] + "\n")
    sds = tmp / "pod-identity-sds.yaml"
    sds.write_text(SDS_EXAMPLE.read_text().replace(
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token", str(pod.path)))
    example = yaml.safe_load(EXAMPLE.read_text())
    with CredStub(KeyPool({"AKIDLISTENERSPOOL01": "listeners-pool/SECRET+01"}), lifetime_s=900,
                  pod_identity_token_file=pod.path, web_identity_token_file=web.path,
                  base_credentials={BASE_ACCESS_KEY: BASE_SECRET_KEY}, region="eu-west-1") as stub:
        envoy = CredentialsEnvoy(tmp, lambda port, admin: adapted_config(example, stub, sds, port, admin),
                                 env={"AWS_WEB_IDENTITY_TOKEN_FILE": str(web.path)})
        with envoy:
            yield {"envoy": envoy, "stub": stub, "pod": pod, "web": web}


def via(envoy: Envoy, cluster: str, method: str, path: str, headers: dict[str, str] | None = None):
    return raw_request(envoy.port, method, path, headers={CLUSTER_HEADER: cluster, **(headers or {})},
                       host=STS_HOST if "sts" in cluster or "web" in cluster else "localhost", timeout=10)


WEB_IDENTITY_PATH = "/?" + urllib.parse.urlencode({
    "Action": "AssumeRoleWithWebIdentity", "Version": "2011-06-15", "RoleArn": ROLE_ARN,
    "RoleSessionName": "envoy-presign"}, quote_via=urllib.parse.quote)


def web_identity(envoy: Envoy):
    return via(envoy, "presign_web_identity", "GET", WEB_IDENTITY_PATH, {"accept": "application/json"})


def test_every_cluster_reaches_its_endpoint(rig):
    envoy, stub = rig["envoy"], rig["stub"]
    ttl = {"x-aws-ec2-metadata-token-ttl-seconds": "21600"}
    token = via(envoy, "presign_imds", "PUT", "/latest/api/token", ttl)
    assert token.status == 200, token
    role = via(envoy, "presign_imds", "GET", "/latest/meta-data/iam/security-credentials/",
               {"x-aws-ec2-metadata-token": token.body.decode()})
    assert (role.status, role.body) == (200, b"presign-role")
    creds = via(envoy, "presign_imds", "GET", "/latest/meta-data/iam/security-credentials/presign-role",
                {"x-aws-ec2-metadata-token": token.body.decode()})
    assert creds.status == 200, creds
    assert via(envoy, "presign_container", "GET", ECS_RELATIVE_PATH).status == 200
    # The client sends no Authorization: the injector adds the pod identity token.
    assert via(envoy, "presign_pod_identity", "GET", POD_IDENTITY_PATH).status == 200
    # AssumeRole signed for the real STS host goes through Envoy with its signature intact.
    params = {"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ROLE_ARN,
              "RoleSessionName": "envoy-presign"}
    amz_date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    [(path, headers)] = sign_get(STS_HOST, params, BASE_ACCESS_KEY, BASE_SECRET_KEY, None, amz_date).items()
    resp = via(envoy, "presign_sts", "GET", path, {k: v for k, v in headers.items() if k != "host"})
    assert resp.status == 200, resp.body
    assert stub.requests("sts")[-1].caller == BASE_ACCESS_KEY
    assert web_identity(envoy).status == 200
    assert [i.endpoint for i in stub.issued()][-5:] == [
        "imds:presign-role", f"container:{ECS_RELATIVE_PATH}", f"container:{POD_IDENTITY_PATH}",
        "sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"]


def test_pod_identity_token_rotation(rig):
    envoy, pod = rig["envoy"], rig["pod"]
    assert via(envoy, "presign_pod_identity", "GET", POD_IDENTITY_PATH).status == 200
    # The injector overwrites whatever Authorization a caller sent.
    assert via(envoy, "presign_pod_identity", "GET", POD_IDENTITY_PATH,
               {"authorization": "forged"}).status == 200
    for token in POD_TOKENS[1:]:
        pod.write(token + "\n")
        started = time.monotonic()
        statuses = []
        while True:
            statuses.append(via(envoy, "presign_pod_identity", "GET", POD_IDENTITY_PATH).status)
            if statuses[-1] == 200 or time.monotonic() - started > 5:
                break
            time.sleep(0.01)
        assert statuses[-1] == 200, f"the stub never saw {token!r}: {statuses}"
        # SDS re-reads the file on the rename's inotify event, asynchronously: at most a
        # request or two may still carry the old token.
        assert time.monotonic() - started < 1.0, statuses
    stats = envoy.stats()
    assert stats.get("sds.pod_identity_token.update_rejected", 0) == 0


def test_web_identity_token_rotation_next_request(rig):
    envoy, web, stub = rig["envoy"], rig["web"], rig["stub"]
    assert web_identity(envoy).status == 200
    for token in WEB_TOKENS[1:]:  # the second one needs percent-encoding
        web.write(token + "\n")
        resp = web_identity(envoy)  # the very next request carries the new token
        assert resp.status == 200, resp.body
    assert stub.requests("sts")[-1].path.endswith("&WebIdentityToken=REDACTED")


def test_web_identity_token_unreadable_is_a_local_503(rig):
    envoy, web, stub = rig["envoy"], rig["web"], rig["stub"]
    before = len(stub.requests("sts"))
    (web.dir / "..data").unlink()  # the token symlink now dangles
    try:
        resp = web_identity(envoy)
        assert (resp.status, resp.body) == (503, b"web identity token file unreadable")
        assert len(stub.requests("sts")) == before  # nothing went upstream
    finally:
        web.write(WEB_TOKENS[-1] + "\n")
    assert web_identity(envoy).status == 200


def test_tokens_appear_in_no_admin_output_or_log(rig):
    envoy = rig["envoy"]
    assert web_identity(envoy).status == 200
    assert via(envoy, "presign_pod_identity", "GET", POD_IDENTITY_PATH).status == 200
    dumps = {path: envoy._admin_get(path) for path in (
        "/config_dump", "/config_dump?include_eds", "/config_dump?resource=dynamic_active_secrets",
        "/stats", "/clusters", "/listeners")}
    assert str(rig["pod"].path) in dumps["/config_dump"] or "pod_identity_token" in dumps["/config_dump"]
    time.sleep(0.3)  # the log is flushed every 100 ms
    texts = {**dumps, "log": envoy.log_text()}
    for token in POD_TOKENS + WEB_TOKENS:
        for variant in {token, urllib.parse.quote(token, safe="-_.~")}:
            leaks = [name for name, text in texts.items() if variant in text]
            assert not leaks, f"{variant!r} in {leaks}"
