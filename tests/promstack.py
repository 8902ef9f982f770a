"""Prometheus and Alertmanager (Debian's packages) for the tests, on free loopback ports,
stopped by PID: shared by tests/integration/test_metrics.py (Prometheus scraping real
Envoys) and tests/monitoring (a Prometheus on backfilled history, an Alertmanager)."""

from __future__ import annotations

import json
import shutil
import string
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from stack import REPO_ROOT, _clean_env, _ManagedProcess, free_port

PROMETHEUS_DIR = REPO_ROOT / "envoy" / "prometheus"
ALERTMANAGER_CONFIG = REPO_ROOT / "envoy" / "alertmanager" / "alertmanager.yml"
DASHBOARD_PATH = REPO_ROOT / "envoy" / "grafana" / "envoy-presign.json"
PROMETHEUS_RECORDING_GROUP = "envoy_presign.recording"  # the 5-minute rules

# Loopback only: never through an HTTP(S)_PROXY.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5) -> str:
    with _HTTP.open(url, timeout=timeout) as resp:
        return resp.read().decode()


def http_post_json(url: str, body, timeout: float = 5) -> str:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with _HTTP.open(request, timeout=timeout) as resp:
        return resp.read().decode()


class _Server(_ManagedProcess):
    """A process with an HTTP API on a free loopback port, ready when ``ready_path`` answers."""

    ready_path = "/-/ready"

    def __init__(self, workdir: Path, binary: str, startup_timeout: float = 60.0):
        super().__init__()
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name.lower()}-", dir=workdir))
        self.port: int | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Before each start attempt (a retry gets a new port)."""

    def start(self):
        def attempt() -> None:
            self.port = free_port()
            self.prepare()
            self._spawn(self.argv(), _clean_env(), self.dir / f"{self.name.lower()}.log", cwd=self.dir)
            self.wait_ready(lambda: http_get(self.url(self.ready_path), timeout=1) is not None,
                            self.startup_timeout, self.ready_path)

        self.start_retrying(attempt)
        return self

    def url(self, path: str, **params) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def __enter__(self):
        return self.start()


class Prometheus(_Server):
    """``prometheus`` with envoy/prometheus/prometheus.yml rendered for ``targets``.

    Without ``data_dir`` it gets a fresh one per start; with one (backfilled blocks) it keeps
    it, and its retention is long enough for any backfilled history."""

    name = "Prometheus"

    def __init__(self, workdir: Path, binary: str, targets: list[str], startup_timeout: float = 60.0,
                 data_dir: Path | None = None):
        super().__init__(workdir, binary, startup_timeout)
        self.targets = targets
        self.config_path = self.dir / "prometheus.yml"
        self.keep_data = data_dir is not None
        self.data_dir = data_dir or self.dir / "data"

    def render(self) -> str:
        values = {
            "SCRAPE_INTERVAL": "1s",
            "EVALUATION_INTERVAL": "1s",
            "RULES_FILE": json.dumps(str(PROMETHEUS_DIR / "rules.yml")),
            "ENVOY_ADMIN_TARGETS": ", ".join(json.dumps(t) for t in self.targets),
        }
        return string.Template((PROMETHEUS_DIR / "prometheus.yml").read_text()).substitute(values)

    def prepare(self) -> None:
        self.config_path.write_text(self.render())
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def argv(self) -> list[str]:
        return [self.binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=3650d", f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn"]

    def api(self, path: str, **params):
        try:
            body = json.loads(http_get(self.url(path, **params), timeout=30))
        except urllib.error.HTTPError as error:
            body = json.loads(error.read() or b"{}")
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, **params) -> list[tuple[dict, float]]:
        """An instant query: (labels, value) per series."""
        data = self.api("/api/v1/query", query=expr, **params)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {result}"
        return result[0][1] if result else None

    def wait_until(self, what: str, check, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus: {what} not reached in {timeout:.0f}s\n--- log ---\n{self.log_text()[-3000:]}")
            time.sleep(0.25)


class Alertmanager(_Server):
    """Debian's ``prometheus-alertmanager`` with envoy/alertmanager/alertmanager.yml, no
    cluster listener (the tests run one instance)."""

    name = "Alertmanager"

    def argv(self) -> list[str]:
        return [self.binary, f"--config.file={ALERTMANAGER_CONFIG}", f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn"]

    def post_alerts(self, alerts: list[dict]) -> None:
        http_post_json(self.url("/api/v2/alerts"), alerts)

    def alerts(self) -> list[dict]:
        return json.loads(http_get(self.url("/api/v2/alerts")))


def recorded_names(*groups: str) -> set[str]:
    """The recorded series of rules.yml's ``groups``."""
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())["groups"]
    return {r["record"] for g in rules if g["name"] in groups for r in g["rules"] if "record" in r}


def dashboard_queries(rows: set[str] | None = None, exclude_rows: set[str] = frozenset()) -> list[tuple[str, str]]:
    """(panel title, expr) of every query in the dashboard (of ``rows`` only, if given, and
    not of ``exclude_rows``), variables filled in as Grafana does for its default, all origins
    (the variable's allValue ".*"), the dashboard range a week."""
    dashboard = json.loads(DASHBOARD_PATH.read_text())
    found, row = [], None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            row = panel["title"]
            continue
        if (rows is not None and row not in rows) or row in exclude_rows:
            continue
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$__rate_interval", "1m").replace("$__range", "7d")
                    .replace("$origin", ".*"))
            assert "$" not in expr, f"{panel['title']}: unfilled variable in {expr}"
            found.append((panel["title"], expr))
    return found
