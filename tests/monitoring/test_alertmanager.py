"""envoy/alertmanager/alertmanager.yml: which receiver each alert reaches (amtool config
routes test, the way an operator checks a change) and which alerts a critical one silences (a
real Alertmanager, since amtool cannot evaluate inhibition)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import yaml
from conftest import require

from promstack import ALERTMANAGER_CONFIG, PROMETHEUS_DIR, Alertmanager


def alerts_in_rules() -> dict[str, str]:
    """alertname -> severity, for every alert of rules.yml."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    return {r["alert"]: r["labels"]["severity"] for g in groups for r in g["rules"] if "alert" in r}


def route(*labels: str) -> str:
    """The receiver(s) amtool routes these labels to."""
    done = subprocess.run([require("amtool", "prometheus-alertmanager"), "config", "routes", "test",
                           f"--config.file={ALERTMANAGER_CONFIG}", *labels],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("labels, receiver", [
    (["severity=critical", "alertname=EnvoyPresignHighErrorRate", "origin=media"], "critical"),
    (["severity=warning", "alertname=EnvoyPresignTrafficAnomaly", "origin=media"], "warning"),
    (["severity=info", "alertname=EnvoyPresignLatencyRegression", "origin=media"], "info"),
    (["severity=critical", "alertname=EnvoyPresignCredentialsUnavailable", "instance=e1"], "critical"),
    (["severity=warning", "alertname=EnvoyPresignCredentialRefreshFailing", "instance=e1", "source=imds",
      "result=timeout"], "warning"),
    # No (or an unknown) severity: looked at, not paged, not lost in the digest.
    (["alertname=SomethingElse"], "warning"),
    (["severity=page", "alertname=SomethingElse"], "warning"),
])
def test_routes(labels, receiver):
    assert route(*labels) == receiver


def test_every_alert_of_the_rules_reaches_its_severitys_receiver():
    alerts = alerts_in_rules()
    assert {"critical", "warning", "info"} == set(alerts.values())
    got = {name: route(f"alertname={name}", f"severity={sev}", "origin=media")
             for name, sev in alerts.items()}
    assert got == alerts


def test_routes_with_verify_receivers_fail_on_a_wrong_receiver():
    """The amtool check itself can fail (so test_routes would see a wrong route)."""
    done = subprocess.run(["amtool", "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                           "--verify.receivers=critical", "severity=info"], capture_output=True, text=True)
    assert done.returncode != 0


def test_inhibit_rules_name_real_alerts():
    """A renamed alert would silently stop an inhibition."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    names = set(alerts_in_rules())
    for rule in config["inhibit_rules"]:
        for matcher in rule["source_matchers"] + rule["target_matchers"]:
            if matcher.startswith("alertname"):
                pattern = re.fullmatch(r'alertname=~?"(.*)"', matcher).group(1)
                assert any(re.fullmatch(pattern, n) for n in names), matcher


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    with Alertmanager(tmp_path_factory.mktemp("alertmanager"),
                      require("prometheus-alertmanager", "prometheus-alertmanager")) as am:
        yield am


def alert(name: str, severity: str, origin: str) -> dict:
    return {"labels": {"alertname": name, "severity": severity, "origin": origin},
            "annotations": {"summary": f"{name} on {origin}"}}


def instance_alert(name: str, severity: str, instance: str, **labels: str) -> dict:
    """An alert per Envoy (the credential alerts: label instance, no origin)."""
    return {"labels": {"alertname": name, "severity": severity, "instance": instance, **labels},
            "annotations": {"summary": f"{name} on {instance}"}}


def where(labels: dict) -> str:
    return labels.get("origin", labels.get("instance", ""))


def inhibited(am: Alertmanager, sent: list[dict]) -> dict[tuple[str, str], bool]:
    """(alertname, origin or instance) -> silenced by another alert, once Alertmanager has all
    of ``sent`` (those of another test of the module, still active there, are left out)."""
    am.post_alerts(sent)
    wanted = {(a["labels"]["alertname"], where(a["labels"])) for a in sent}
    deadline = time.monotonic() + 10
    while True:
        got = {(a["labels"]["alertname"], where(a["labels"])): bool(a["status"]["inhibitedBy"])
               for a in am.alerts() if (a["labels"]["alertname"], where(a["labels"])) in wanted}
        if len(got) == len(wanted) or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_a_critical_alert_silences_the_warnings_it_explains_on_its_origin_only(alertmanager):
    got = inhibited(alertmanager, [
        alert("EnvoyPresignHighErrorRate", "critical", "media"),
        alert("EnvoyPresignErrorRateAnomaly", "warning", "media"),  # explained: silenced
        alert("EnvoyPresignErrorRateAnomaly", "warning", "thumbs"),  # another origin: news
        alert("EnvoyPresignTrafficAnomaly", "warning", "media"),  # not explained by errors
        alert("EnvoyPresignHighLatency", "critical", "thumbs"),
        alert("EnvoyPresignLatencyAnomaly", "warning", "thumbs"),  # explained
        alert("EnvoyPresignLatencyRegression", "info", "thumbs"),  # explained (and info)
        alert("EnvoyPresignUrlsExpiring", "critical", "fresh"),
        alert("EnvoyPresignLowHitRate", "warning", "fresh"),  # explained
        alert("EnvoyPresignLatencyRegression", "info", "media"),  # any critical holds info
        alert("EnvoyPresignLatencyRegression", "info", "quiet"),  # no critical there
    ])
    assert got == {
        ("EnvoyPresignHighErrorRate", "media"): False,
        ("EnvoyPresignErrorRateAnomaly", "media"): True,
        ("EnvoyPresignErrorRateAnomaly", "thumbs"): False,
        ("EnvoyPresignTrafficAnomaly", "media"): False,
        ("EnvoyPresignHighLatency", "thumbs"): False,
        ("EnvoyPresignLatencyAnomaly", "thumbs"): True,
        ("EnvoyPresignLatencyRegression", "thumbs"): True,
        ("EnvoyPresignUrlsExpiring", "fresh"): False,
        ("EnvoyPresignLowHitRate", "fresh"): True,
        ("EnvoyPresignLatencyRegression", "media"): True,
        ("EnvoyPresignLatencyRegression", "quiet"): False,
    }


def test_credential_alerts_silence_what_they_explain_on_their_envoy_only(alertmanager):
    failing = {"source": "imds", "result": "timeout"}
    got = inhibited(alertmanager, [
        # e1: no credentials at all: the expiry and the failing refreshes are explained.
        instance_alert("EnvoyPresignCredentialsUnavailable", "critical", "e1"),
        instance_alert("EnvoyPresignCredentialsExpiring", "critical", "e1"),
        instance_alert("EnvoyPresignCredentialRefreshFailing", "warning", "e1", **failing),
        # e2: expiring: the failing refreshes are explained.
        instance_alert("EnvoyPresignCredentialsExpiring", "critical", "e2"),
        instance_alert("EnvoyPresignCredentialRefreshFailing", "warning", "e2", **failing),
        # e3: failing refreshes, nothing worse yet: news.
        instance_alert("EnvoyPresignCredentialRefreshFailing", "warning", "e3", **failing),
        # Another Envoy's, and an origin's alerts, are not held by e1's (no origin label there).
        instance_alert("EnvoyPresignCredentialsExpiring", "critical", "e4"),
        alert("EnvoyPresignLowHitRate", "warning", "creds"),
        alert("EnvoyPresignLatencyRegression", "info", "creds"),
    ])
    assert got == {
        ("EnvoyPresignCredentialsUnavailable", "e1"): False,
        ("EnvoyPresignCredentialsExpiring", "e1"): True,
        ("EnvoyPresignCredentialRefreshFailing", "e1"): True,
        ("EnvoyPresignCredentialsExpiring", "e2"): False,
        ("EnvoyPresignCredentialRefreshFailing", "e2"): True,
        ("EnvoyPresignCredentialRefreshFailing", "e3"): False,
        ("EnvoyPresignCredentialsExpiring", "e4"): False,
        ("EnvoyPresignLowHitRate", "creds"): False,
        ("EnvoyPresignLatencyRegression", "creds"): False,
    }
