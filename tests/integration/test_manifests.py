"""The Kubernetes examples in deploy/ (Istio WasmPlugin, Envoy Gateway EnvoyExtensionPolicy).

No cluster here: these check what can be checked without one. The filter configuration each
embeds must pass ``envoy-presign-config check`` (the filter's own on_configure code); the
fields the README relies on must be there with the names the Istio and Envoy Gateway APIs
define: kind and apiVersion, an OCI image pinned by digest, fail-closed-or-reload, and the AWS
credentials taken from the proxy's environment, never inline.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

import config_tool
from stack import REPO_ROOT

ISTIO = REPO_ROOT / "deploy" / "istio" / "wasmplugin.yaml"
ENVOY_GATEWAY = REPO_ROOT / "deploy" / "envoy-gateway" / "extension-policy.yaml"
AWS_KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
DIGEST = r"[0-9a-f]{64}"


def load(path) -> dict:
    (doc,) = list(yaml.safe_load_all(path.read_text()))
    return doc


def istio_config(doc: dict) -> dict:
    return doc["spec"]["pluginConfig"]


def envoy_gateway_config(doc: dict) -> dict:
    (wasm,) = doc["spec"]["wasm"]
    return wasm["config"]


@pytest.mark.parametrize("path,extract", [(ISTIO, istio_config), (ENVOY_GATEWAY, envoy_gateway_config)],
                         ids=["istio", "envoy-gateway"])
def test_embedded_configuration_passes_check(path, extract, tmp_path):
    config = extract(load(path))
    assert config["credentials"] == {"source": "env"}, "credentials must come from the environment"
    file = tmp_path / "filter.json"
    file.write_text(json.dumps(config))
    # No AWS_* here: the configuration is valid, the filter would warn that it cannot sign yet.
    result = config_tool.run("check", str(file))
    assert result.returncode == 0, result
    assert result.stdout.startswith("OK ")
    assert "  origin media: /media/ (host cdn.example.com) -> https://s3.eu-west-1.amazonaws.com/my-media/<key>" \
        in result.stdout
    assert "[warn] envoy-presign: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set" \
        in result.stdout


def test_both_manifests_embed_the_same_configuration():
    assert istio_config(load(ISTIO)) == envoy_gateway_config(load(ENVOY_GATEWAY))


def test_istio_wasmplugin_fields():
    doc = load(ISTIO)
    assert (doc["apiVersion"], doc["kind"]) == ("extensions.istio.io/v1alpha1", "WasmPlugin")
    spec = doc["spec"]
    assert re.fullmatch(rf"oci://[^/@]+/envoy-presign-plugin@sha256:{DIGEST}", spec["url"]), spec["url"]
    assert spec["failStrategy"] == "FAIL_RELOAD"
    assert spec["phase"] in ("AUTHN", "AUTHZ", "STATS")
    assert spec["vmConfig"]["env"] == [{"name": key, "valueFrom": "HOST"} for key in AWS_KEYS]
    assert set(spec) <= {"selector", "targetRefs", "url", "sha256", "imagePullPolicy", "imagePullSecret",
                         "pluginConfig", "pluginName", "phase", "priority", "failStrategy", "vmConfig",
                         "match", "type"}, "a field the WasmPlugin API does not define"


def test_envoy_gateway_extension_policy_fields():
    doc = load(ENVOY_GATEWAY)
    assert (doc["apiVersion"], doc["kind"]) == ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy")
    (target,) = doc["spec"]["targetRefs"]
    assert (target["group"], target["kind"]) == ("gateway.networking.k8s.io", "Gateway")
    (wasm,) = doc["spec"]["wasm"]
    assert set(wasm) <= {"name", "rootID", "code", "config", "failOpen", "env"}
    code = wasm["code"]
    assert code["type"] == "Image" and set(code) == {"type", "image"}
    image = code["image"]
    match = re.fullmatch(rf"[^/@]+/envoy-presign-plugin@sha256:({DIGEST})", image["url"])
    assert match, image["url"]
    assert image["sha256"] == match.group(1), "sha256 must repeat the digest the URL is pinned by"
    assert wasm["failOpen"] is False
    assert wasm["env"] == {"hostKeys": AWS_KEYS}
