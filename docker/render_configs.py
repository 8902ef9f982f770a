#!/usr/bin/env python3
"""Render the containers' configuration from the project's templates.

`envoy/envoy.yaml` and `envoy/prometheus/prometheus.yml` are templates the tests fill with
loopback ports. A container needs the same configuration with fixed addresses: this script
fills them for the compose network (`seaweedfs:8333`, Envoy's stats listener on
`envoy:9902`, Alertmanager on `alertmanager:9093`) and writes `docker/envoy/envoy.yaml` and
`docker/prometheus/prometheus.yml`, complete files with no placeholders, readable as
examples.

In the container config Envoy's admin listens on 127.0.0.1:9901 only: from the network it
could stop Envoy (POST /quitquitquit), fail its health check or raise the log level. A
separate stats listener on 0.0.0.0:9902 serves `GET /stats/prometheus` (with any query:
the Prometheus config sends `filter`) and `GET /ready` by proxying them to the admin on the
loopback; every other path or method gets a 404 there (STATS_LISTENER below). `tests/integration/test_docker.py` checks that the committed files equal a fresh
rendering, so they never drift from the templates, and renders its own variants with
`envoy_config()`.

`docker/envoy/envoy-https.yaml` is the same configuration with the store behind TLS, for
`make up-https` (docker/compose.https.yaml): the origin cluster is envoy/origin-https.yaml's,
changed only in address and port (`seaweedfs:8443`), the name it expects (`sni` and the
subject alt name: `seaweedfs`, the name of the certificate `make up-https` makes) and
`trusted_ca` (the test CA compose mounts); the filter's endpoint is `https://seaweedfs:8443`.

Usage: docker/render_configs.py            (rewrites the three files)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from stack import (  # noqa: E402  (after the path change)
    BUCKET, DEFAULT_ROUTE_IDLE_TIMEOUT, REGION, SAFE_ACCESS_LOG_FORMAT, TEMPLATE_PATH, access_log_format,
    fill_template, filter_config, origin_names, with_origin_routes)

ENVOY_OUT = REPO_ROOT / "docker" / "envoy" / "envoy.yaml"
ENVOY_HTTPS_OUT = REPO_ROOT / "docker" / "envoy" / "envoy-https.yaml"
ORIGIN_HTTPS_EXAMPLE = REPO_ROOT / "envoy" / "origin-https.yaml"
PROMETHEUS_TEMPLATE = REPO_ROOT / "envoy" / "prometheus" / "prometheus.yml"
PROMETHEUS_OUT = REPO_ROOT / "docker" / "prometheus" / "prometheus.yml"

# Where the images put things (docker/Dockerfile, compose.yaml).
WASM_IN_IMAGE = "/etc/envoy/envoy_presign.wasm"
RULES_IN_IMAGE = "/etc/prometheus/rules.yml"
LISTEN_PORT = 10000
ADMIN_PORT = 9901
ADMIN_ADDRESS = "127.0.0.1"  # the container's admin: loopback only
STATS_PORT = 9902
S3_PORT = 8333
# `make up-https` (docker/compose.https.yaml): SeaweedFS serves S3 over https on this port too,
# with a certificate for its compose name made at run time; Envoy trusts the test CA mounted
# at CA_IN_ENVOY. The override's mounts and ports use the same values (the test checks).
S3_HTTPS_PORT = 8443
STORE_TLS_NAME = "seaweedfs"
CA_IN_ENVOY = "/etc/envoy/tls/ca.crt"
STORE_CERT_IN_SEAWEEDFS = "/etc/seaweedfs/tls/store.crt"
STORE_KEY_IN_SEAWEEDFS = "/etc/seaweedfs/tls/store.key"
# What envoy/origin-https.yaml is written for, replaced by the values above.
SHIPPED_HOST = "s3.eu-west-1.amazonaws.com"
SHIPPED_PORT = 443
SHIPPED_CA = "/etc/ssl/certs/ca-certificates.crt"
# The documented opt-in (docs/deploying.md, "Deploying with Docker") for a setup that needs the admin
# on the network: Envoy merges this over the bootstrap (`--config-yaml`), keeping the port.
ADMIN_ON_NETWORK_OPT_IN = "{admin: {address: {socket_address: {address: 0.0.0.0}}}}"

# The admin block as the template renders it with BIND_ADDRESS 0.0.0.0, and what the
# container config has instead.
_ADMIN_ALL_ADDRESSES = f"""admin:
  address:
    socket_address: {{ address: 0.0.0.0, port_value: {ADMIN_PORT} }}
"""
_ADMIN_LOOPBACK = f"""# In the container (docker/render_configs.py) the admin listens on the loopback only:
# from the network anyone could stop Envoy (POST /quitquitquit), fail its health check
# (POST /healthcheck/fail) or raise the log level (POST /logging). The stats listener below
# serves GET /stats/prometheus and GET /ready to the network. A setup that needs the admin on
# the network opts in (docs/deploying.md, "Deploying with Docker"):
#   envoy -c /etc/envoy/envoy.yaml --config-yaml '{ADMIN_ON_NETWORK_OPT_IN}'
admin:
  address:
    socket_address: {{ address: {ADMIN_ADDRESS}, port_value: {ADMIN_PORT} }}
"""

# Container config only: the listener that exposes the admin's read-only pages a platform
# needs, and the cluster it proxies them to.
STATS_LISTENER = f"""  # The stats listener (container config only, docker/render_configs.py): on every address
  # of the container, GET /stats/prometheus (any query; Prometheus sends `filter`) and
  # GET /ready (a platform's readiness probe or load balancer health check) go to the admin
  # on the loopback. The paths match exactly, without the query; any other path or method,
  # /stats/prometheus/.. or /quitquitquit included, gets a 404 here and never reaches the
  # admin. No access log: nothing here is logged.
  - name: stats
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {STATS_PORT} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: stats
          route_config:
            name: stats
            virtual_hosts:
            - name: stats
              domains: ["*"]
              routes:
              - name: prometheus
                match:
                  path: /stats/prometheus
                  headers: [{{ name: ":method", string_match: {{ exact: GET }} }}]
                route: {{ cluster: admin_loopback }}
              - name: ready
                match:
                  path: /ready
                  headers: [{{ name: ":method", string_match: {{ exact: GET }} }}]
                route: {{ cluster: admin_loopback }}
              - name: not_found
                match: {{ prefix: "/" }}
                direct_response:
                  status: 404
                  body: {{ inline_string: '{{"error":"not_found"}}' }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"""
ADMIN_CLUSTER = f"""  # The stats listener's upstream: this Envoy's own admin, on the loopback.
  - name: admin_loopback
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: admin_loopback
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {ADMIN_ADDRESS}, port_value: {ADMIN_PORT} }}
"""


def _replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"the rendered template no longer has exactly one {old!r}")
    return text.replace(old, new)


def container_admin(text: str) -> str:
    """The rendered template (BIND_ADDRESS 0.0.0.0) with the admin moved to the loopback,
    and the stats listener and its cluster added (the clusters are the file's last list)."""
    text = _replace_once(text, _ADMIN_ALL_ADDRESSES, _ADMIN_LOOPBACK)
    text = _replace_once(text, "\n\n  clusters:\n", "\n" + STATS_LISTENER + "\n  clusters:\n")
    return text.rstrip("\n") + "\n" + ADMIN_CLUSTER


def compose_filter_config() -> dict:
    """The filter's configuration in compose: origin `media` at SeaweedFS's S3 port,
    credentials from Envoy's environment (the compose file sets them)."""
    return filter_config(S3_PORT, endpoint=f"http://seaweedfs:{S3_PORT}")


def compose_https_filter_config() -> dict:
    """`make up-https`'s filter configuration: the same origin, its endpoint the store's
    https port under the certificate's name."""
    return filter_config(S3_HTTPS_PORT, endpoint=f"https://{STORE_TLS_NAME}:{S3_HTTPS_PORT}")


def https_cluster_text() -> str:
    """envoy/origin-https.yaml's cluster as text (its own comments kept), indented for the
    rendered file's `clusters:` list, with the shipped host, port and CA bundle replaced by
    the compose store's. Nothing else of the cluster changes: `https_cluster()` says so."""
    text = ORIGIN_HTTPS_EXAMPLE.read_text()
    body = text[text.index("\nclusters:\n") + len("\nclusters:\n"):]
    for old, new in [
            (f"{{ address: {SHIPPED_HOST}, port_value: {SHIPPED_PORT} }}",
             f"{{ address: {STORE_TLS_NAME}, port_value: {S3_HTTPS_PORT} }}"),
            (f"sni: {SHIPPED_HOST}\n", f"sni: {STORE_TLS_NAME}\n"),
            (f"trusted_ca: {{ filename: {SHIPPED_CA} }}", f"trusted_ca: {{ filename: {CA_IN_ENVOY} }}"),
            (f"matcher: {{ exact: {SHIPPED_HOST} }}", f"matcher: {{ exact: {STORE_TLS_NAME} }}")]:
        body = _replace_once(body, old, new)
    comment = ("# envoy/origin-https.yaml's cluster, changed only in address and port, the name it\n"
               f"# expects (sni, subject alt name: {STORE_TLS_NAME}, the name of the certificate\n"
               f"# `make up-https` makes) and trusted_ca (the test CA docker/compose.https.yaml mounts).\n")
    return "".join("  " + line if line else line for line in (comment + body).splitlines(True))


def https_cluster() -> dict:
    """The cluster `https_cluster_text()` must parse to: the shipped one (as loaded) with
    exactly the address, port, sni, subject alt name and trusted_ca replaced."""
    import copy

    import yaml

    [shipped] = yaml.safe_load(ORIGIN_HTTPS_EXAMPLE.read_text())["clusters"]
    cluster = copy.deepcopy(shipped)
    [[endpoint]] = [group["lb_endpoints"] for group in cluster["load_assignment"]["endpoints"]]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address == {"address": SHIPPED_HOST, "port_value": SHIPPED_PORT}, address
    address.update({"address": STORE_TLS_NAME, "port_value": S3_HTTPS_PORT})
    context = cluster["transport_socket"]["typed_config"]
    assert context["sni"] == SHIPPED_HOST, context
    context["sni"] = STORE_TLS_NAME
    validation = context["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": SHIPPED_CA}, validation
    validation["trusted_ca"] = {"filename": CA_IN_ENVOY}
    [san] = validation["match_typed_subject_alt_names"]
    assert san == {"san_type": "DNS", "matcher": {"exact": SHIPPED_HOST}}, san
    san["matcher"]["exact"] = STORE_TLS_NAME
    return cluster


def with_https_cluster(text: str) -> str:
    """A rendered container config with its cluster `media` (plain HTTP, STRICT_DNS)
    replaced by `https_cluster_text()`; checked to parse to `https_cluster()`."""
    import yaml

    start = text.index("\n  clusters:\n")
    start = text.index("\n  - name: media\n", start) + 1
    end = text.index("\n  - name: ", start) + 1  # the next cluster, or its comment
    while text[text.rindex("\n", 0, end - 1) + 1:end].startswith("  #"):
        end = text.rindex("\n", 0, end - 1) + 1
    out = text[:start] + https_cluster_text() + text[end:]
    clusters = yaml.safe_load(out)["static_resources"]["clusters"]
    [media] = [c for c in clusters if c["name"] == "media"]
    if media != https_cluster():
        raise ValueError(f"the https cluster rendered as {media!r}, not as envoy/origin-https.yaml's")
    return out


def envoy_config(config: dict, origin_address: str = "seaweedfs", origin_port: int = S3_PORT,
                 route_idle_timeout: str = DEFAULT_ROUTE_IDLE_TIMEOUT,
                 log_format: str = SAFE_ACCESS_LOG_FORMAT) -> str:
    """envoy/envoy.yaml filled for a container: listener :10000 on every address of the
    container, admin :9901 on its loopback only, the stats listener :9902 (GET
    /stats/prometheus and /ready from the admin) on every address, the origin cluster
    resolved by name (STRICT_DNS), the access log on stdout (the shipped format never
    holds the presigned URL; only tests pass a `log_format` with %REQ(:PATH)%)."""
    values = {
        "BIND_ADDRESS": "0.0.0.0",
        "LISTEN_PORT": LISTEN_PORT,
        "ADMIN_PORT": ADMIN_PORT,
        "ORIGIN_ADDRESS": origin_address,
        "ORIGIN_PORT": origin_port,
        "ORIGIN_CLUSTER_TYPE": "STRICT_DNS",
        "ACCESS_LOG": json.dumps("/dev/stdout"),
        "FILTER_CONFIG": json.dumps(config, separators=(",", ":")),
        "WASM_PATH": json.dumps(WASM_IN_IMAGE),
        **access_log_format(log_format),
        "ROUTE_IDLE_TIMEOUT": route_idle_timeout,
    }
    return container_admin(with_origin_routes(fill_template(TEMPLATE_PATH, values), origin_names(config)))


def prometheus_config(envoy_targets: list[str], alertmanagers: list[str],
                      interval: str = "15s") -> str:
    """envoy/prometheus/prometheus.yml filled for containers, plus where to send alerts."""
    values = {
        "SCRAPE_INTERVAL": interval,
        "EVALUATION_INTERVAL": interval,
        "RULES_FILE": RULES_IN_IMAGE,
        "ENVOY_ADMIN_TARGETS": ", ".join(json.dumps(t) for t in envoy_targets),
    }
    alerting = ("\nalerting:\n  alertmanagers:\n    - static_configs:\n"
                f"        - targets: [{', '.join(json.dumps(a) for a in alertmanagers)}]\n")
    return fill_template(PROMETHEUS_TEMPLATE, values) + alerting


def _generated(source: str, note: str = "") -> str:
    return (f"# GENERATED by docker/render_configs.py from {source}: edit the template (or the\n"
            f"# script) and re-run it. Bucket `{BUCKET}` in {REGION} on SeaweedFS; see docker/compose.yaml.\n"
            + note)


_PROMETHEUS_NOTE = (
    f"# Here Prometheus scrapes envoy:{STATS_PORT}, the container config's stats listener (it\n"
    f"# proxies GET /stats/prometheus and /ready to the admin, which listens on 127.0.0.1:{ADMIN_PORT}\n"
    "# only, and answers 404 to everything else), not the admin port itself.\n")


_HTTPS_NOTE = (
    "# `make up-https` (docker/compose.https.yaml) runs Envoy with this file: docker/envoy/envoy.yaml\n"
    f"# with the store behind TLS. The filter signs for https://{STORE_TLS_NAME}:{S3_HTTPS_PORT}; the cluster\n"
    "# `media` is envoy/origin-https.yaml's, verifying the store's certificate against the test CA\n"
    "# made at run time (tests/testca.py) and mounted read-only.\n")


def rendered() -> dict[Path, str]:
    """Each committed file and what it must contain."""
    return {
        ENVOY_OUT: _generated("envoy/envoy.yaml") + envoy_config(compose_filter_config()),
        ENVOY_HTTPS_OUT: _generated("envoy/envoy.yaml and envoy/origin-https.yaml", _HTTPS_NOTE)
        + with_https_cluster(envoy_config(compose_https_filter_config())),
        PROMETHEUS_OUT: _generated("envoy/prometheus/prometheus.yml", _PROMETHEUS_NOTE)
        + prometheus_config([f"envoy:{STATS_PORT}"], ["alertmanager:9093"]),
    }


def main() -> int:
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
