"""The Kubernetes manifests in deploy/ (Istio 1.30, Envoy Gateway v1.9), without a cluster.

1. Every document validates, strictly, against the schemas of the kinds it uses: the
   platforms' resources against deploy/schemas/ (written from their CRDs; unknown fields,
   wrong types and enums, missing required fields and unknown kinds are errors), Kubernetes'
   own kinds against the kubernetes-validate package's schemas (tests/k8s_schema.py).
2. What they embed for Envoy is envoy/credentials.yaml's and envoy/envoy.yaml's, unchanged.
3. A real Envoy loads what each platform would hand it (tests/platforms.py: the embedded
   fragments verbatim, the platform's own translation stood in for), the filter configured
   from the configuration as the platform passes it (Istio: a protobuf Struct written as JSON),
   under IRSA and under Pod Identity; and the assembled gateway serves: the filter fetches
   credentials through the manifests' own internal listeners, the marker route reaches the
   store, everything else gets the 404, the store's error bodies are scrubbed.
Each check is shown to fail on a scratch copy with one mistake in it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/

import config_tool  # noqa: E402
import k8s_schema  # noqa: E402
import platforms  # noqa: E402
from conftest import poll  # noqa: E402
from credenv import SESSION_KEK, by_name, point_at  # noqa: E402
from credstub import POD_IDENTITY_PATH, CredStub, ProjectedToken, SeaweedFSSessions  # noqa: E402
from stack import REPO_ROOT, Envoy, _binary, raw_request  # noqa: E402

MANIFESTS = {"istio": REPO_ROOT / "deploy" / "istio" / "envoy-presign.yaml",
             "envoy-gateway": REPO_ROOT / "deploy" / "envoy-gateway" / "envoy-presign.yaml"}
SCHEMAS = sorted((REPO_ROOT / "deploy" / "schemas").glob("*.yaml"))
CREDENTIALS = yaml.safe_load((REPO_ROOT / "envoy" / "credentials.yaml").read_text())
# The shipped template, its placeholders made plain words.
SHIPPED = yaml.safe_load(re.sub(r"\$\{(\w+)\}", r"__\1__", (REPO_ROOT / "envoy" / "envoy.yaml").read_text()))
SDS_PATH = "/etc/envoy/pod-identity-sds.yaml"
ROLE_ARN = "arn:aws:iam::123456789012:role/media-reader"
# The environment EKS gives the proxy's container, per identity.
IDENTITIES = {
    "irsa": {"AWS_ROLE_ARN": ROLE_ARN, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1"},
    "pod-identity": {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23" + POD_IDENTITY_PATH},
}
STORE_HOST = "s3.eu-west-1.amazonaws.com"
CLIENT_HOST = "cdn.example.com"
BUCKET = "my-media"


def documents(platform: str) -> list[dict]:
    return platforms.load(MANIFESTS[platform])


def schema_errors(path: Path) -> list[str]:
    schemas = k8s_schema.load_schemas(SCHEMAS)
    errors = []
    for doc in platforms.load(path):
        errors += [f"{doc['kind']}: {e}" for e in k8s_schema.validate(doc, schemas).errors]
    return errors


def filter_config(platform: str) -> dict:
    docs = documents(platform)
    if platform == "istio":
        return platforms.one(docs, "WasmPlugin")["spec"]["pluginConfig"]
    [wasm] = platforms.one(docs, "EnvoyExtensionPolicy")["spec"]["wasm"]
    return wasm["config"]


def patched_resources(platform: str) -> dict[str, dict]:
    """The clusters and listeners a manifest adds to Envoy, by name."""
    docs = documents(platform)
    if platform == "istio":
        values = [p["patch"]["value"] for p in platforms.one(docs, "EnvoyFilter")["spec"]["configPatches"]
                  if p["patch"]["operation"] == "ADD"]
    else:
        values = [p["operation"]["value"] for p in platforms.one(docs, "EnvoyPatchPolicy")["spec"]["jsonPatches"]]
    return {v["name"]: v for v in values}


# --- 1. schemas ---------------------------------------------------------------------------

@pytest.mark.parametrize("platform", MANIFESTS)
def test_every_document_validates_against_its_schema(platform):
    assert schema_errors(MANIFESTS[platform]) == []
    kinds = {d["kind"] for d in documents(platform)}
    expected = {"istio": {"ServiceAccount", "ConfigMap", "Deployment", "Service", "Gateway", "VirtualService",
                          "ServiceEntry", "DestinationRule", "WasmPlugin", "EnvoyFilter"},
                "envoy-gateway": {"EnvoyProxy", "ConfigMap", "Gateway", "ClientTrafficPolicy", "HTTPRoute",
                                  "HTTPRouteFilter", "Backend", "BackendTLSPolicy", "BackendTrafficPolicy",
                                  "EnvoyExtensionPolicy", "EnvoyPatchPolicy"}}[platform]
    assert kinds == expected


MISTAKES = {
    # platform, (text replaced, by), what the report says
    "istio misspelled field": ("istio", ("failStrategy: FAIL_RELOAD", "failStrategey: FAIL_RELOAD"),
                               "WasmPlugin: WasmPlugin.spec.failStrategey: unknown field"),
    "istio wrong kind": ("istio", ("kind: DestinationRule", "kind: DestinationRules"),
                         "no schema for apiVersion 'networking.istio.io/v1' kind 'DestinationRules'"),
    "istio bad enum": ("istio", ("operation: INSERT_BEFORE", "operation: INSERT_BEFOR"),
                       "'INSERT_BEFOR' is not one of"),
    "istio core kind field": ("istio", ("volumeMounts:", "volumeMount:"), "'volumeMount' was unexpected"),
    "eg misspelled field": ("envoy-gateway", ("wellKnownCACertificates: System", "wellKnownCACertificate: System"),
                            "BackendTLSPolicy.spec.validation.wellKnownCACertificate: unknown field"),
    "eg wrong kind": ("envoy-gateway", ("kind: HTTPRouteFilter\nmetadata", "kind: HttpRouteFilter\nmetadata"),
                      "kind 'HttpRouteFilter'"),
    "eg wrong type": ("envoy-gateway", ("statusCode: 404", "statusCode: \"404\""), "expected integer, got str"),
    "eg missing required": ("envoy-gateway", ("    hostname: s3.eu-west-1.amazonaws.com\n    wellKnown", "    wellKnown"),
                            "missing required field 'hostname'"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_fails_the_schema_check(mistake, tmp_path):
    platform, (old, new), message = MISTAKES[mistake]
    text = MANIFESTS[platform].read_text()
    assert old in text
    copy_path = tmp_path / "manifest.yaml"
    copy_path.write_text(text.replace(old, new, 1))
    errors = schema_errors(copy_path)
    assert errors and any(message in e for e in errors), errors


def test_the_checker_evaluates_cel_rules_of_full_crds(tmp_path):
    """What `make manifests-crd-check` does with a CRD's CEL rules: defaults applied first,
    a failing rule reported with its message, a transition rule (oldSelf) only counted."""
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "spec": {"group": "example.com", "names": {"kind": "Window"}, "versions": [{
               "name": "v1", "served": True, "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                   "spec": {"type": "object",
                            "x-kubernetes-validations": [
                                {"rule": "self.start <= self.end", "message": "start after end"},
                                {"rule": "self.end == oldSelf.end", "message": "immutable"}],
                            "properties": {"start": {"type": "integer", "default": 0},
                                           "end": {"type": "integer"}}}}}}}]}}
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    schemas = k8s_schema.load_schemas([path])
    doc = {"apiVersion": "example.com/v1", "kind": "Window", "metadata": {"name": "w"}}
    good = k8s_schema.validate({**doc, "spec": {"end": 5}}, schemas)
    assert (good.errors, good.cel_evaluated, good.cel_rules) == ([], 1, 1)
    bad = k8s_schema.validate({**doc, "spec": {"end": -1}}, schemas)
    assert bad.errors == ["Window.spec: CEL rule failed: start after end"]


@pytest.mark.skipif(not os.environ.get("ENVOY_PRESIGN_CRDS"),
                    reason="set ENVOY_PRESIGN_CRDS to a directory of the platforms' full CRD files")
def test_schemas_agree_with_the_full_crds():
    """deploy/schemas/ against the real CRDs, and the manifests validated by them directly
    (`make manifests-crd-check CRDS=<dir>`)."""
    crds = sorted(Path(os.environ["ENVOY_PRESIGN_CRDS"]).glob("*.yaml"))
    assert k8s_schema.cross_check(SCHEMAS, crds) == 0
    schemas = k8s_schema.load_schemas(crds)
    for path in MANIFESTS.values():
        for doc in platforms.load(path):
            assert k8s_schema.validate(doc, schemas).errors == [], doc["kind"]


# --- 2. the Envoy parts are the shipped ones ------------------------------------------------

CREDENTIAL_PARTS = ["presign_pod_identity", "presign_pod_identity_agent", "presign_sts", "presign_web_identity"]


@pytest.mark.parametrize("platform", MANIFESTS)
def test_envoy_fragments_are_the_shipped_ones(platform):
    added = patched_resources(platform)
    resources = CREDENTIALS["static_resources"]
    shipped = {**{c["name"]: c for c in resources["clusters"] if c["name"] in CREDENTIAL_PARTS},
               **{x["name"]: x for x in resources["listeners"]}}
    assert added == shipped
    sds = yaml.safe_load(platforms.one(documents(platform), "ConfigMap")["data"]["pod-identity-sds.yaml"])
    assert sds == yaml.safe_load((REPO_ROOT / "envoy" / "pod-identity-sds.yaml").read_text())
    if platform == "istio":
        [route_patch] = [p for p in platforms.one(documents(platform), "EnvoyFilter")["spec"]["configPatches"]
                         if p["applyTo"] == "HTTP_ROUTE"]
        shipped_route = by_name(SHIPPED["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"]["route_config"]["virtual_hosts"][0]["routes"], "media")
        assert route_patch["patch"]["value"]["typed_per_filter_config"] == shipped_route["typed_per_filter_config"]
    else:
        bootstrap = yaml.safe_load(platforms.one(documents(platform), "EnvoyProxy")["spec"]["bootstrap"]["value"])
        assert bootstrap["bootstrap_extensions"] == CREDENTIALS["bootstrap_extensions"]
        assert by_name(bootstrap["layered_runtime"]["layers"], "presign_static") == \
            by_name(CREDENTIALS["layered_runtime"]["layers"], "presign_static")


@pytest.mark.parametrize("platform", MANIFESTS)
def test_no_static_credentials_and_the_same_filter_configuration(platform):
    config = filter_config(platform)
    assert config["credentials"] == {"source": "chain", "chain": ["web_identity", "container"]}
    assert config == filter_config("istio")
    text = MANIFESTS[platform].read_text()
    for secret in ("AWS_SESSION_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "session_token",
                   "secret_access_key"):
        assert secret not in text
    readme = (REPO_ROOT / "docs" / "deploying.md").read_text() + "\n## "  # the section is the file's last
    section = readme[readme.index("## Deploying on Kubernetes"):]
    section = section[:section.index("\n## ", 3)]
    assert "AWS_SESSION_TOKEN" not in section


# --- 3. a real Envoy loads them --------------------------------------------------------------

def bootstrap_text(platform: str, wasm_path: Path, port: int, admin_port: int, sds_path: Path,
                   adapt=None) -> str:
    config = platforms.PLATFORMS[platform](documents(platform), wasm_path, port, admin_port)
    if adapt:
        adapt(config)
    return yaml.safe_dump(config, sort_keys=False).replace(SDS_PATH, str(sds_path))


def validate(text: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(text)
    return subprocess.run([_binary("envoy"), "--mode", "validate", "-c", str(path), "-l", "warning"],
                          capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"], **env})


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("platform", MANIFESTS)
def test_envoy_accepts_the_assembled_configuration(platform, identity, wasm_path, tmp_path):
    """`envoy --mode validate` with every fragment in place, TLS clusters included: the filter's
    on_configure runs on the configuration as the platform passes it, under each identity."""
    text = bootstrap_text(platform, wasm_path, 10000, 9901, REPO_ROOT / "envoy" / "pod-identity-sds.yaml")
    result = validate(text, tmp_path, IDENTITIES[identity])
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr[-3000:]


@pytest.mark.parametrize("platform", MANIFESTS)
def test_without_an_eks_identity_the_filter_refuses_to_start(platform, wasm_path, tmp_path):
    text = bootstrap_text(platform, wasm_path, 10000, 9901, REPO_ROOT / "envoy" / "pod-identity-sds.yaml")
    result = validate(text, tmp_path, {})
    assert result.returncode != 0
    assert "credentials.chain: no source is configured" in result.stderr


FRAGMENT_MISTAKES = {
    "istio cluster field": ("istio", ("connect_timeout: 2s\n        per_connection",
                                      "connect_timout: 2s\n        per_connection"),
                            "connect_timout"),
    "istio route merge": ("istio", ("append_action: OVERWRITE_IF_EXISTS_OR_ADD\n", "append_action: OVERWRITE\n"),
                          "OVERWRITE"),
    "eg listener filter": ("envoy-gateway", ("stat_prefix: presign_web_identity", "stat_prefx: presign_web_identity"),
                           "stat_prefx"),
    "eg bootstrap merge": ("envoy-gateway", ("http.async_response_buffer_limit: 65536",
                                             "http.async_response_buffer_limit: [65536]"),
                           "Invalid runtime entry value for http.async_response_buffer_limit"),
}


@pytest.mark.parametrize("mistake", FRAGMENT_MISTAKES)
def test_a_fragment_envoy_rejects_fails(mistake, wasm_path, tmp_path, monkeypatch):
    platform, (old, new), message = FRAGMENT_MISTAKES[mistake]
    text = MANIFESTS[platform].read_text()
    assert old in text
    broken = tmp_path / "manifest.yaml"
    broken.write_text(text.replace(old, new, 1))
    monkeypatch.setitem(MANIFESTS, platform, broken)
    assert schema_errors(broken) == [], "the schemas leave Envoy's fragments to Envoy"
    result = validate(bootstrap_text(platform, wasm_path, 10000, 9901, REPO_ROOT / "envoy" / "pod-identity-sds.yaml"),
                      tmp_path, IDENTITIES["irsa"])
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr[-3000:]


def test_istio_hands_the_filter_json_it_accepts(tmp_path):
    """Istio's pluginConfig is a protobuf Struct: every number a double, written back as JSON
    without a fraction when it has none. The filter's own check takes that JSON as it is."""
    rendered = platforms.protojson_struct(filter_config("istio"))
    assert '"expires_in":3600' in rendered
    assert platforms.protojson_struct({"n": 2 ** 53 + 1}) == '{"n":9007199254740992}', "doubles round"
    assert platforms.protojson_struct({"n": 1.5, "big": 1e21}) == '{"n":1.5,"big":1e+21}'
    path = tmp_path / "istio.json"
    path.write_text(rendered)
    result = config_tool.run("check", str(path), env=IDENTITIES["irsa"])
    assert result.returncode == 0, result
    assert f"origin media: /media/ (host {CLIENT_HOST}) -> https://{STORE_HOST}/{BUCKET}/<key>" in result.stdout


# --- the assembled gateway, serving ----------------------------------------------------------

class GatewayEnvoy(Envoy):
    """stack.Envoy (ports, readiness, logs) running a platform's assembled configuration."""

    def __init__(self, workdir: Path, build, env: dict[str, str]):
        super().__init__(workdir, REPO_ROOT / "envoy" / "envoy.yaml", wasm_path="", filter_config={},
                         origin_port=0, env=env, concurrency=2)
        self.build = build

    def render(self) -> str:
        return self.build(self.port, self.admin_port)


@pytest.fixture(scope="module")
def store(seaweedfs):
    """The session's SeaweedFS with the manifests' bucket and two objects."""
    client = seaweedfs.client()
    client.create_bucket(Bucket=BUCKET)
    objects = {"clip ü.mp4": os.urandom(70_000), "poster.jpg": b"\xff\xd8jpeg"}
    for key, body in objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return objects


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("platform", MANIFESTS)
def test_the_assembled_gateway_serves(platform, identity, wasm_path, seaweedfs, store, tmp_path):
    """Changed only where a test must: the credential endpoints and the store's cluster point
    at local stand-ins over plain HTTP (STS and S3 have no test TLS here), the SDS file and
    the token files live in a temp dir."""
    pod = ProjectedToken(tmp_path / "pod", "eyJ.pod-identity.manifests\n", name="eks-pod-identity-token")
    web = ProjectedToken(tmp_path / "irsa", "eyJ.web-identity.manifests\n")
    sds = tmp_path / "pod-identity-sds.yaml"
    sds.write_text((REPO_ROOT / "envoy" / "pod-identity-sds.yaml").read_text().replace(
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token", str(pod.path)))
    with CredStub(SeaweedFSSessions(SESSION_KEK), lifetime_s=900, pod_identity_token_file=pod.path,
                  web_identity_token_file=web.path, region="eu-west-1") as stub:
        def adapt(config: dict) -> None:
            clusters = config["static_resources"]["clusters"]
            point_at(by_name(clusters, "presign_sts"), stub.port("sts"))
            point_at(by_name(clusters, "presign_pod_identity_agent"), stub.port("container"))
            [store_cluster] = [c for c in clusters if STORE_HOST in json.dumps(c["load_assignment"])]
            point_at(store_cluster, seaweedfs.s3_port)

        env = {**IDENTITIES[identity], "AWS_WEB_IDENTITY_TOKEN_FILE": str(web.path)}
        with GatewayEnvoy(tmp_path, lambda port, admin: bootstrap_text(platform, wasm_path, port, admin, sds, adapt),
                          env) as envoy:
            def get(path: str, host: str = CLIENT_HOST, headers: dict | None = None):
                return raw_request(envoy.port, "GET", path, host=host, headers=headers, timeout=10)

            first = poll(lambda: get("/media/poster.jpg"), lambda r: r.status == 200, timeout=15)
            assert (first.status, first.body) == (200, store["poster.jpg"]), first
            clip = get("/media/clip%20%C3%BC.mp4", headers={"Range": "bytes=10-99"})
            assert (clip.status, clip.body) == (206, store["clip ü.mp4"][10:100])
            endpoint = {"irsa": "sts:AssumeRoleWithWebIdentity", "pod-identity": f"container:{POD_IDENTITY_PATH}"}
            assert {i.endpoint for i in stub.issued()} == {endpoint[identity]}
            # The store's own error reply (404 NoSuchKey, XML echoing the key) is scrubbed.
            missing = get("/media/nothing-here.mp4")
            assert (missing.status, missing.body) == (404, b'{"error":"origin_error"}'), missing
            # Not the filter's, or a client's own marker: the 404 route, nothing reaches the store.
            for path, host, headers in [("/other/x", CLIENT_HOST, None),
                                        (f"/{BUCKET}/poster.jpg", STORE_HOST, {"x-envoy-presign-origin": "media"}),
                                        ("/other/x", CLIENT_HOST, {"x-envoy-presign-origin": "media"})]:
                resp = get(path, host, headers)
                assert (resp.status, resp.body) == (404, b'{"error":"not_found"}'), (path, host, resp)
            log = envoy.log_text()
            for token in ("eyJ.pod-identity.manifests", "eyJ.web-identity.manifests"):
                assert token not in log


def test_manifest_comments_name_every_placeholder():
    """Each manifest lists its placeholders; each one appears in the manifest."""
    for path in MANIFESTS.values():
        text = path.read_text()
        header = text[:text.index("\n---")]
        for placeholder in ("media-gateway", "registry.example.com", "cdn.example.com", "eu-west-1", "my-media"):
            assert placeholder in header and text.count(placeholder) > 1, (path, placeholder)
        assert re.search(r"@sha256:0{64}", text)
