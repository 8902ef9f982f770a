"""README.md's Envoy snippets are the shipped files' nodes: each yaml block of "The Envoy
configuration to paste" equals the node of envoy/envoy.yaml (placeholders filled with the
README's example values, the filter configuration being the README's minimal one) or of
envoy/origin-https.yaml that it shows, compared as parsed YAML (comments left out)."""

from __future__ import annotations

import json
import re

import yaml

from docs_text import README, REPO_ROOT

SHIPPED = REPO_ROOT / "envoy" / "envoy.yaml"
ORIGIN_HTTPS = REPO_ROOT / "envoy" / "origin-https.yaml"

# The README's example values for envoy/envoy.yaml's placeholders in the blocks it shows.
EXAMPLE_VALUES = {
    "WASM_PATH": "/etc/envoy/envoy_presign.wasm",
    "ROUTE_IDLE_TIMEOUT": "30s",
    "ORIGIN_CLUSTER_TYPE": "STRICT_DNS",
    "ORIGIN_ADDRESS": "s3.internal.example",
    "ORIGIN_PORT": "9000",
}


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def minimal_configuration() -> str:
    blocks = re.findall(r"```json\n(.*?)```", section("Minimal configuration"), re.S)
    assert len(blocks) == 1, blocks
    return blocks[0].rstrip("\n")


def filled(text: str, values: dict[str, str]) -> str:
    """``text`` with each ${NAME} replaced; a multi-line value is indented like its placeholder."""
    def fill(m: re.Match) -> str:
        indent = re.match(r" *", text[text.rfind("\n", 0, m.start()) + 1:]).group(0)
        return values[m.group(1)].replace("\n", "\n" + indent)
    return re.sub(r"\$\{([A-Z_]+)\}", fill, text)


def shipped() -> dict:
    values = {**EXAMPLE_VALUES, "FILTER_CONFIG": minimal_configuration()}
    used = set(re.findall(r"\$\{([A-Z_]+)\}", SHIPPED.read_text()))
    # The placeholders outside the blocks the README shows get values that only keep it YAML.
    for name in used - set(values):
        values[name] = '"x"'
    return yaml.safe_load(filled(SHIPPED.read_text(), values))


def snippets() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", section("The Envoy configuration to paste"), re.S)
    return [yaml.safe_load(b) for b in blocks]


def test_each_readme_snippet_is_the_shipped_node():
    config = shipped()
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm_part, filters, routes, cluster, https_cluster = snippets()
    # The connection manager's settings the README shows, each as shipped.
    assert set(hcm_part) == {"normalize_path", "merge_slashes", "early_header_mutation_extensions"}
    assert hcm_part == {k: hcm[k] for k in hcm_part}
    assert filters == {"http_filters": hcm["http_filters"]}
    assert routes == {"route_config": hcm["route_config"]}
    assert cluster == {"clusters": config["static_resources"]["clusters"]}
    assert https_cluster == {"clusters": yaml.safe_load(ORIGIN_HTTPS.read_text())["clusters"]}


def test_the_wasm_filter_carries_the_minimal_configuration():
    (wasm,) = [f for f in snippets()[1]["http_filters"] if f["name"] == "envoy.filters.http.wasm"]
    value = wasm["typed_config"]["config"]["configuration"]["value"]
    assert json.loads(value) == json.loads(minimal_configuration())
    origin = json.loads(value)["origins"][0]
    cluster = snippets()[3]["clusters"][0]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    # The cluster shown reaches the endpoint the configuration signs for, under the origin's name.
    assert origin["endpoint"] == f"http://{address['address']}:{address['port_value']}"
    assert cluster["name"] == origin["name"] == "media"
