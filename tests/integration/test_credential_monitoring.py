"""The rotating credentials' monitoring on a real Envoy: the filter fetches from an IMDS
stand-in (tests/credstub.py) credentials that live 20 s, a real Prometheus scrapes Envoy
every second with envoy/prometheus/rules.yml, and the dashboard's "Credentials" row and the
credential alerts are read from it while the endpoint works, fails (500) and recovers.

The credentials live far less than 300 s, so EnvoyPresignCredentialsExpiring fires all along
(as docs/runbook.md says of short-lived credentials): the test relies on it to see that rule
match the series Envoy really serves."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from promstack import Prometheus, dashboard_queries
from stack import filter_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/
from credstub import CredStub  # noqa: E402

ACCESS_KEY, SECRET_KEY = "AKIDMONITORINGROT001", "monitoring-rotating/SECRET+1"
LIFETIME_S = 20
CREDENTIAL_ROWS = {"Credentials"}
CREDENTIAL_ALERTS = {"EnvoyPresignCredentialsUnavailable", "EnvoyPresignCredentialsExpiring",
                     "EnvoyPresignCredentialRefreshFailing"}


def imds_cluster(port: int) -> dict:
    return {"name": "presign_imds", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "presign_imds", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def test_credentials_row_and_alerts_follow_a_failing_and_recovering_endpoint(start_envoy, seaweedfs,
                                                                             tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        message = "Debian's `prometheus` is not installed (`make setup` installs it)"
        if os.environ.get("ENVOY_PRESIGN_REQUIRE_WASM"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with CredStub({ACCESS_KEY: SECRET_KEY}, lifetime_s=LIFETIME_S) as stub:
        # Short URLs and a short margin, so that 20 s credentials sign (with the defaults,
        # signing stops 205 s before expiry and they would count as expired on arrival).
        config = filter_config(seaweedfs.s3_port, credentials={
            "source": "imds", "imds": {"timeout_ms": 500},
            "refresh": {"retry_max_ms": 2000, "expiry_margin": 2}},
            expires_in=60, refresh_before=10, min_remaining=2)
        envoy = start_envoy(config, extra_list_items={"clusters": [imds_cluster(stub.port("imds"))]})
        instance = f"127.0.0.1:{envoy.admin_port}"
        prom = Prometheus(tmp_path_factory.mktemp("prometheus"), binary, [instance])
        prom.start()
        try:
            def alerts() -> dict[str, str]:
                return {a["labels"]["alertname"]: a["state"] for a in prom.api("/api/v1/alerts")["alerts"]
                        if a["labels"]["alertname"] in CREDENTIAL_ALERTS and a["labels"]["instance"] == instance}

            def value(expr: str) -> float | None:
                return prom.scalar(f'{expr}{{instance="{instance}"}}')

            queries = dashboard_queries(rows=CREDENTIAL_ROWS)
            assert len(queries) == 4, queries

            # Working: a refresh every half-life (10 s). Every query of the row has data, the
            # last failure is none, and only the short life's Expiring alert fires.
            prom.wait_until("every query of the Credentials row has data",
                            lambda: all(prom.query(expr) for _, expr in queries), timeout=60)
            assert 0 < value("envoy_presign_credential_expiry_seconds") <= LIFETIME_S
            assert value("envoy_presign_credential_last_failure") == 0
            prom.wait_until("Expiring firing, alone", lambda: alerts() == {
                "EnvoyPresignCredentialsExpiring": "firing"})

            # The endpoint answers 500: http_5xx failures (category 5), the credentials run out
            # (gauge 0), Unavailable pends for its minute and Expiring keeps firing at 0.
            stub.set_mode("imds", "500")
            prom.wait_until("the credentials expired, the last failure http_5xx", lambda: (
                value("envoy_presign_credential_expiry_seconds") == 0
                and value("envoy_presign_credential_last_failure") == 5), timeout=LIFETIME_S + 20)
            refreshes = next(expr for title, expr in queries if "refreshes" in title)
            assert {(m["source"], m["result"]) for m, _ in prom.query(refreshes)} >= {("imds", "http_5xx")}
            prom.wait_until("Unavailable pending, Expiring firing", lambda: alerts() == {
                "EnvoyPresignCredentialsUnavailable": "pending", "EnvoyPresignCredentialsExpiring": "firing"})

            # Back: the next attempt (back-off at most 2 s here) succeeds; Unavailable is gone.
            stub.set_mode("imds", "ok")
            prom.wait_until("new credentials", lambda: (
                (value("envoy_presign_credential_expiry_seconds") or 0) > 0
                and value("envoy_presign_credential_last_failure") == 0), timeout=20)
            prom.wait_until("Unavailable resolved", lambda: alerts() == {
                "EnvoyPresignCredentialsExpiring": "firing"})
        finally:
            prom.stop()
