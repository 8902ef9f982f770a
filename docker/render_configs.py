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

Usage: docker/render_configs.py            (rewrites the two files)
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
# The documented opt-in (README.md, "Deploying with Docker") for a setup that needs the admin
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
# the network opts in (README.md, "Deploying with Docker"):
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


def rendered() -> dict[Path, str]:
    """Each committed file and what it must contain."""
    return {
        ENVOY_OUT: _generated("envoy/envoy.yaml") + envoy_config(compose_filter_config()),
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
