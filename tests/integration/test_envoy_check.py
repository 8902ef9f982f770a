"""`envoy-presign-config check --envoy` (src/cli/envoy_check/) on the shipped Envoy
configurations: clean on every one of them, and each rule firing, exit 1 for an error, on a
copy with that one mistake in it.

Shipped: envoy/envoy.yaml (rendered as the tests run it), the same with the store over HTTPS
(envoy/origin-https.yaml's cluster), the LDS pair envoy/envoy-lds.yaml + envoy/lds.yaml,
docker/envoy/envoy.yaml as the image has it and the https variant `make up-https` runs, and what the Kubernetes manifests make of
Envoy (tests/platforms.py).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/

import config_tool  # noqa: E402
import docs_text  # noqa: E402
import platforms  # noqa: E402
from credenv import by_name  # noqa: E402
from stack import REPO_ROOT, TEMPLATE_PATH, Envoy, LdsEnvoy, filter_config  # noqa: E402

HTTPS_ENDPOINT = "https://s3.eu-west-1.amazonaws.com"
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDCHECK", "AWS_SECRET_ACCESS_KEY": "check-secret"}
IRSA = {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/media-reader", "AWS_REGION": "eu-west-1"}
HCM_PATH = "static_resources.listeners[media].filter_chains[].filters[envoy.filters.network.http_connection_manager]"
ROUTE_PATH = f"{HCM_PATH}.route_config.virtual_hosts[origin].routes[media]"


def check(path: Path, env: dict[str, str] = KEYS):
    return config_tool.run("check", "--envoy", str(path), env=env)


def rendered(tmp_path: Path, config: dict | None = None) -> dict:
    """envoy/envoy.yaml as the tests run it (ports, paths and the filter's configuration filled)."""
    envoy = Envoy(tmp_path, TEMPLATE_PATH, tmp_path / "envoy_presign.wasm", config or filter_config(8333), 8333)
    envoy.port, envoy.admin_port = 10000, 9901
    return yaml.safe_load(envoy.render())


def https_rendered(tmp_path: Path) -> dict:
    """The same, for an https store: the filter signs for it, the cluster is envoy/origin-https.yaml's."""
    config = filter_config(8333)
    config["origins"][0]["endpoint"] = HTTPS_ENDPOINT
    bootstrap = rendered(tmp_path, config)
    [tls_cluster] = yaml.safe_load((REPO_ROOT / "envoy" / "origin-https.yaml").read_text())["clusters"]
    clusters = bootstrap["static_resources"]["clusters"]
    clusters[clusters.index(by_name(clusters, "media"))] = tls_cluster
    return bootstrap


def write(tmp_path: Path, bootstrap: dict, name: str = "envoy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
    return path


def hcm(bootstrap: dict) -> dict:
    return by_name(bootstrap["static_resources"]["listeners"], "media")["filter_chains"][0]["filters"][0]["typed_config"]


def media_route(bootstrap: dict) -> dict:
    return by_name(hcm(bootstrap)["route_config"]["virtual_hosts"][0]["routes"], "media")


def assert_clean(result, origins: str = "media", warnings: int = 0) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].endswith(f": envoy-presign origins {origins}")
    assert result.stdout.endswith(f"OK: 0 error(s), {warnings} warning(s)\n"), result.stdout


def test_clean_on_the_shipped_template(tmp_path):
    assert_clean(check(write(tmp_path, rendered(tmp_path))))


def test_clean_on_the_https_store(tmp_path):
    assert_clean(check(write(tmp_path, https_rendered(tmp_path))))


def test_clean_on_the_lds_pair(tmp_path):
    envoy = LdsEnvoy(tmp_path, tmp_path / "envoy_presign.wasm", filter_config(8333), 8333)
    envoy.port, envoy.admin_port = 10000, 9901
    envoy.lds_dir.mkdir(parents=True)
    envoy.lds_path.write_text(envoy.render_lds())
    bootstrap = tmp_path / "bootstrap.yaml"
    bootstrap.write_text(envoy.render())
    assert_clean(check(bootstrap))


@pytest.mark.parametrize("name", ["envoy.yaml", "envoy-https.yaml"])
def test_clean_on_the_docker_configs(name):
    assert_clean(check(REPO_ROOT / "docker" / "envoy" / name))


@pytest.mark.parametrize("platform", platforms.PLATFORMS)
def test_what_the_manifests_make_of_envoy_has_only_the_documented_warnings(platform, tmp_path):
    """No error; per origin route (one per virtual host), the two README says: no route idle
    timeout in either API, and clusters the platform names."""
    docs = platforms.load(REPO_ROOT / "deploy" / platform / "envoy-presign.yaml")
    bootstrap = platforms.PLATFORMS[platform](docs, tmp_path / "envoy_presign.wasm", 10000, 9901)
    result = check(write(tmp_path, bootstrap), env=IRSA)
    assert_clean(result, warnings=4)
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning")]
    assert sum(".route.idle_timeout: not set" in w for w in warnings) == 2, warnings
    assert sum("not named like the origin media" in w for w in warnings) == 2, warnings


def drop_timeout(b):
    del media_route(b)["route"]["timeout"]


def long_timeout(b):
    media_route(b)["route"]["timeout"] = "300s"


def catch_all_to_origin(b):
    routes = hcm(b)["route_config"]["virtual_hosts"][0]["routes"]
    not_found = by_name(routes, "not_found")
    del not_found["direct_response"]
    not_found["route"] = {"cluster": "media"}


def no_marker_route(b):
    routes = hcm(b)["route_config"]["virtual_hosts"][0]["routes"]
    routes.remove(media_route(b))


def no_scrub_filter(b):
    filters = hcm(b)["http_filters"]
    filters.remove(by_name(filters, "envoy.filters.http.custom_response"))


def no_scrub_on_route(b):
    del media_route(b)["typed_per_filter_config"]


def path_in_access_log(b):
    log = hcm(b)["access_log"][0]["typed_config"]["log_format"]["text_format_source"]
    log["inline_string"] = "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%\n"


def default_access_log_format(b):
    del hcm(b)["access_log"][0]["typed_config"]["log_format"]


def cluster_renamed(b):
    by_name(b["static_resources"]["clusters"], "media")["name"] = "s3"


def tls_removed(b):
    del by_name(b["static_resources"]["clusters"], "media")["transport_socket"]


def tls_context(b) -> dict:
    return by_name(b["static_resources"]["clusters"], "media")["transport_socket"]["typed_config"]


def unverified(b):
    del tls_context(b)["common_tls_context"]["validation_context"]


def wrong_sni(b):
    tls_context(b)["sni"] = "s3.amazonaws.com"


def no_name_check(b):
    del tls_context(b)["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"]


def wasm_config(b) -> dict:
    return by_name(hcm(b)["http_filters"], "envoy.filters.http.wasm")["typed_config"]["config"]


def refused_configuration(b):
    config = json.loads(wasm_config(b)["configuration"]["value"])
    config["origins"][0]["expires_in"] = 1
    wasm_config(b)["configuration"]["value"] = json.dumps(config)


def no_failure_policy(b):
    del wasm_config(b)["failure_policy"]


# name: (https store?, mistake, level, where, what the line says)
MISTAKES = {
    "whole-response timeout unset": (False, drop_timeout, "error", f"{ROUTE_PATH}.route.timeout", "default of 15 s"),
    "whole-response timeout set": (False, long_timeout, "error", f"{ROUTE_PATH}.route.timeout", "300s: a whole-response"),
    "unmarked route to the origin": (False, catch_all_to_origin, "error",
                                     f"{HCM_PATH}.route_config.virtual_hosts[origin].routes[not_found]",
                                     "did not mark to the origin's cluster media"),
    "no marker route": (False, no_marker_route, "error", f"{HCM_PATH}.route_config",
                        "origin media has no route matching x-envoy-presign-origin: media"),
    "no scrub filter": (False, no_scrub_filter, "error", f"{HCM_PATH}.http_filters", "error bodies reach clients"),
    "no scrub on the route": (False, no_scrub_on_route, "error", f"{ROUTE_PATH}.typed_per_filter_config",
                              "error bodies reach clients"),
    "path in the access log": (False, path_in_access_log, "error", f"{HCM_PATH}.access_log[envoy.access_loggers.file]",
                               "prints the request path"),
    "default access log format": (False, default_access_log_format, "error",
                                  f"{HCM_PATH}.access_log[envoy.access_loggers.file]", "no format"),
    "cluster not named like the origin": (False, cluster_renamed, "error", f"{ROUTE_PATH}.route.cluster",
                                          "media: no such cluster"),
    "refused filter configuration": (False, refused_configuration, "error", f"{HCM_PATH}.http_filters[envoy.filters.http.wasm]",
                                     "origins[0].expires_in"),
    "no failure policy": (False, no_failure_policy, "warning",
                          f"{HCM_PATH}.http_filters[envoy.filters.http.wasm].typed_config.config.failure_policy",
                          "not set"),
    "plaintext to an https store": (True, tls_removed, "error", "static_resources.clusters[media].transport_socket",
                                    "speaks plaintext"),
    "certificate not verified": (True, unverified, "error",
                                 "static_resources.clusters[media].transport_socket.typed_config.common_tls_context",
                                 "no trusted_ca"),
    "SNI not the signed host": (True, wrong_sni, "error",
                                "static_resources.clusters[media].transport_socket.typed_config.sni",
                                "the filter signs for s3.eu-west-1.amazonaws.com"),
    "certificate name not checked": (True, no_name_check, "error",
                                     "static_resources.clusters[media].transport_socket.typed_config."
                                     "common_tls_context.validation_context",
                                     "no subject alt name matcher"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_rule_fires_on_a_broken_copy(mistake, tmp_path):
    https, breaks, level, where, says = MISTAKES[mistake]
    bootstrap = copy.deepcopy(https_rendered(tmp_path) if https else rendered(tmp_path))
    breaks(bootstrap)
    result = check(write(tmp_path, bootstrap))
    lines = [line for line in result.stdout.splitlines() if line.startswith(level)]
    assert any(f" {where}: " in line and says in line for line in lines), result.stdout
    assert result.returncode == (1 if level == "error" else 0), result.stdout


def test_readme_example_is_what_the_command_prints(tmp_path):
    bootstrap = https_rendered(tmp_path)
    tls_removed(bootstrap)
    result = check(write(tmp_path, bootstrap))
    readme = docs_text.text()  # README.md and docs/*.md
    example = readme[readme.index("```text\nenvoy.yaml: envoy-presign origins media\n") + len("```text\n"):]
    example = example[:example.index("```")]
    assert result.stdout.replace(str(tmp_path / "envoy.yaml"), "envoy.yaml") == example
    assert result.returncode == 1
