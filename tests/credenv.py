"""Envoy with the filter fetching rotating credentials from the credentials stand-in.

``RotatingEnvoy`` renders the shipped template (envoy/envoy.yaml: the media listener with
the filter, the origin cluster) and adds the parts of envoy/credentials.yaml a user merges
in: the node, the internal-listener bootstrap extension, the two token-adding internal
listeners and the credential clusters, with their upstreams pointed at a ``CredStub``
over plain HTTP on loopback (instead of 169.254.x and STS over TLS).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import yaml

from credstub import CredStub
from stack import REPO_ROOT, Envoy

CREDENTIALS_EXAMPLE = REPO_ROOT / "envoy" / "credentials.yaml"
SDS_EXAMPLE = REPO_ROOT / "envoy" / "pod-identity-sds.yaml"
POD_IDENTITY_TOKEN_PATH_IN_EXAMPLE = (
    "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token")
# A key SeaweedFS derives its STS signing key from (WEED_S3_SSE_KEK), so that
# credstub.SeaweedFSSessions can mint session credentials the origin accepts.
SESSION_KEK = hashlib.sha256(b"envoy-presign test key-encryption key").hexdigest()


def by_name(items: list[dict], name: str) -> dict:
    [item] = [item for item in items if item["name"] == name]
    return item


def point_at(cluster: dict, port: int) -> None:
    """Send ``cluster`` to 127.0.0.1:``port`` over plain HTTP."""
    cluster["type"] = "STATIC"
    cluster.pop("dns_lookup_family", None)
    cluster.pop("transport_socket", None)
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    endpoint["endpoint"]["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def credential_parts(stub: CredStub, sds_path: Path) -> dict:
    """envoy/credentials.yaml's node, runtime (its answer-size limit), bootstrap extensions,
    listeners and clusters, its upstreams pointed at ``stub`` and its SDS file at ``sds_path``."""
    config = copy.deepcopy(yaml.safe_load(CREDENTIALS_EXAMPLE.read_text()))
    resources = config["static_resources"]
    clusters = resources["clusters"]
    point_at(by_name(clusters, "presign_imds"), stub.port("imds"))
    point_at(by_name(clusters, "presign_container"), stub.port("container"))
    point_at(by_name(clusters, "presign_pod_identity_agent"), stub.port("container"))
    point_at(by_name(clusters, "presign_sts"), stub.port("sts"))
    pod = by_name(resources["listeners"], "presign_pod_identity")
    injector = pod["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
    injector["typed_config"]["credential"]["typed_config"]["credential"]["sds_config"][
        "path_config_source"]["path"] = str(sds_path)
    return {"node": config["node"], "layered_runtime": config["layered_runtime"],
            "bootstrap_extensions": config["bootstrap_extensions"],
            "listeners": resources["listeners"], "clusters": clusters}


def write_sds(directory: Path, token_path: Path) -> Path:
    """The example SDS file, naming ``token_path`` as the Pod Identity token."""
    sds = directory / "pod-identity-sds.yaml"
    sds.write_text(SDS_EXAMPLE.read_text().replace(POD_IDENTITY_TOKEN_PATH_IN_EXAMPLE, str(token_path)))
    return sds


class RotatingEnvoy(Envoy):
    """stack.Envoy (the shipped template and the filter) plus ``credential_parts``."""

    def __init__(self, *args, stub: CredStub, sds_path: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.stub = stub
        self.sds_path = sds_path

    def render(self) -> str:
        config = yaml.safe_load(super().render())
        parts = credential_parts(self.stub, self.sds_path)
        config["node"] = parts["node"]
        assert "layered_runtime" not in config, "the template has its own layered_runtime now"
        config["layered_runtime"] = parts["layered_runtime"]
        config.setdefault("bootstrap_extensions", []).extend(parts["bootstrap_extensions"])
        resources = config["static_resources"]
        resources["listeners"].extend(parts["listeners"])
        resources["clusters"].extend(parts["clusters"])
        return yaml.safe_dump(config, sort_keys=False)
