"""envoy-presign as users deploy it: images built here from nothing, a registry, and a
fleet of three Envoy containers on their own network.

One private Docker network holds SeaweedFS (`seaweedfs`), three Envoys with the filter and
the same configuration (`envoy-1..3`), a front Envoy balancing over them with health checks
(`front`, as a platform's load balancer would), Prometheus scraping the three, and
Alertmanager sending to a webhook receiver this test runs on the host. Every image is built
by the test (docker/standin_images.py, docker/Dockerfile, docker/plugin.Dockerfile); every
container, the network and the project's images are removed after.

Needs the Docker engine (CI's machine has it): without it, these tests fail, never skip.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

import docs_text
from docker_fleet import REPO_ROOT, Run, docker, http_get, wait_until
from stack import BUCKET, WASM_PATH, demo_objects, env_credentials, filter_config, free_port, origin_config
from render_configs import (ADMIN_ON_NETWORK_OPT_IN, ADMIN_PORT, CA_IN_ENVOY, ENVOY_HTTPS_OUT, LISTEN_PORT,
                            S3_HTTPS_PORT, S3_PORT, STATS_PORT, STORE_CERT_IN_SEAWEEDFS, STORE_KEY_IN_SEAWEEDFS,
                            STORE_TLS_NAME, envoy_config, prometheus_config, rendered)

ACCESS_KEY = "AKIDDOCKERFLEET0001"
SECRET_KEY = "sEcReT-docker/DO+NOT=LEAK-b7e2"
# The test's access log: what each Envoy forwarded (test only: it holds presigned URLs).
PATH_LOG = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"
FLEET = ["envoy-1", "envoy-2", "envoy-3"]
LOCKED_BUCKET = "locked"  # exists, but the signing identity may not read it: 403
ROUTE_IDLE_TIMEOUT_S = 3
OBJECTS = {
    "hello.txt": b"hello from the fleet\n",
    "clips/a b+c.mp4": bytes(range(256)) * 64,
    "images/%41~weird'(1).png": b"\x89PNG" + b"\x00" * 1000,
    "deep/dir/ü-ñ.bin": b"unicode key",
}


def _quote(key: str) -> str:
    import urllib.parse
    return urllib.parse.quote(key, safe="/~")


def fleet_filter_config() -> dict:
    """media (readable) and locked (the identity may not read it) on the same SeaweedFS."""
    config = filter_config(S3_PORT, endpoint=f"http://seaweedfs:{S3_PORT}")
    config["origins"].append(origin_config(S3_PORT, name="locked", match={"prefix": "/locked/"},
                                           strip_prefix="/locked/", bucket=LOCKED_BUCKET,
                                           endpoint=f"http://seaweedfs:{S3_PORT}"))
    return config


def front_config() -> dict:
    """A plain Envoy balancing over the fleet: active health checks on each Envoy's
    /ready (the stats listener's, which is the admin's), and retries of requests that never
    reached a fleet Envoy."""
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    retry = {"retry_on": "connect-failure,refused-stream,reset", "num_retries": 3,
             "retry_host_predicate": [{
                 "name": "envoy.retry_host_predicates.previous_hosts",
                 "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
             "host_selection_retry_max_attempts": 5}
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": "front", "http_filters": [router],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": "fleet", "timeout": "10s", "retry_policy": retry}}]}]}}
    endpoints = [{"endpoint": {"address": {"socket_address": {"address": name, "port_value": LISTEN_PORT}},
                               "health_check_config": {"port_value": STATS_PORT}}} for name in FLEET]
    return {
        "admin": {"address": {"socket_address": {"address": "0.0.0.0", "port_value": ADMIN_PORT}}},
        "static_resources": {
            "listeners": [{"name": "front", "address": {"socket_address": {"address": "0.0.0.0", "port_value": LISTEN_PORT}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                           "typed_config": hcm}]}]}],
            "clusters": [{"name": "fleet", "type": "STRICT_DNS", "dns_refresh_rate": "1s", "connect_timeout": "1s",
                          "load_assignment": {"cluster_name": "fleet", "endpoints": [{"lb_endpoints": endpoints}]},
                          "health_checks": [{"timeout": "1s", "interval": "0.5s", "no_traffic_interval": "0.5s",
                                             "unhealthy_threshold": 1,
                                             "healthy_threshold": 1, "http_health_check": {"path": "/ready"}}]}]}}


class WebhookReceiver:
    """Alertmanager's webhook target, on the host: keeps every alert it is sent."""

    def __init__(self, address: str) -> None:
        received = self.alerts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.extend(json.loads(body).get("alerts", []))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Fleet:
    """The running containers, their addresses, and what the test knows of them."""

    def __init__(self, run: Run, images: dict[str, str], workdir: Path) -> None:
        self.run, self.images, self.workdir = run, images, workdir
        self.addresses: dict[str, str] = {}
        self.envoy_config = workdir / "envoy.yaml"
        self.envoy_config.write_text(envoy_config(fleet_filter_config(), route_idle_timeout=f"{ROUTE_IDLE_TIMEOUT_S}s",
                                                  log_format=PATH_LOG))

    def start_envoy(self, name: str) -> str:
        """A fleet Envoy, with the documented opt-in that puts its admin on the network: the
        rolling restart drives it (/healthcheck/fail, /drain_listeners) from outside."""
        address = self.run.run(
            name, self.images["project-envoy"],
            ["-c", "/etc/envoy/envoy.yaml", "--concurrency", "2", "--drain-time-s", "2",
             "--config-yaml", ADMIN_ON_NETWORK_OPT_IN],
            env=env_credentials(ACCESS_KEY, SECRET_KEY), mounts={self.envoy_config: "/etc/envoy/envoy.yaml"})
        wait_until(f"{name} ready", lambda: http_get(f"http://{address}:{STATS_PORT}/ready")[0] == 200)
        self.addresses[name] = address
        return address

    def url(self, name: str, path: str) -> str:
        return f"http://{self.addresses[name]}:{LISTEN_PORT}{path}"

    def admin(self, name: str, path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
        return http_get(f"http://{self.addresses[name]}:{ADMIN_PORT}{path}", method=method,
                        data=b"" if method == "POST" else None)

    def forwarded(self, name: str) -> list[tuple[str, str, str]]:
        """(path, status, flags) of each request `name` has logged, in order."""
        rows = []
        for line in self.run.logs(name).splitlines():
            parts = line.split(" ")
            if len(parts) == 3 and parts[0].startswith("/") and parts[1].isdigit():
                rows.append((parts[0], parts[1], parts[2]))
        return rows


@pytest.fixture(scope="module")
def fleet():
    if shutil.which("docker") is None:
        pytest.fail("the Docker tests need the docker CLI and engine")
    run = Run()
    workdir = Path(tempfile.mkdtemp(prefix="envoy-presign-docker-"))
    receiver = None
    try:
        images = run.build_images(WASM_PATH)
        print(f"\nimages built: {', '.join(f'{k} {v:.1f} s' for k, v in run.build_seconds.items())}")
        gateway = run.create_network()
        fleet = Fleet(run, images, workdir)

        s3_json = workdir / "s3.json"
        s3_json.write_text(json.dumps({"identities": [{
            "name": "fleet", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": [f"Read:{BUCKET}", f"Write:{BUCKET}", f"List:{BUCKET}"]}]}))
        fleet.addresses["seaweedfs"] = run.run(
            "seaweedfs", images["seaweedfs"],
            ["-logtostderr", "mini", "-dir=/data", "-ip=seaweedfs", "-ip.bind=0.0.0.0",
             "-s3.config=/etc/seaweedfs/s3.json", f"-bucket={BUCKET},{LOCKED_BUCKET}",
             "-master.telemetry=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"],
            mounts={s3_json: "/etc/seaweedfs/s3.json"})
        s3 = s3_client(fleet.addresses["seaweedfs"])
        wait_until("SeaweedFS bucket", lambda: s3.head_bucket(Bucket=BUCKET) or True, timeout=90)
        for key, body in OBJECTS.items():
            wait_until(f"upload {key}", lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=body) or True)

        for name in FLEET:
            fleet.start_envoy(name)
        front_yaml = workdir / "front.yaml"
        front_yaml.write_text(json.dumps(front_config()))
        fleet.addresses["front"] = run.run("front", images["envoy"], ["-c", "/etc/envoy/front.yaml"],
                                           mounts={front_yaml: "/etc/envoy/front.yaml"})

        receiver = WebhookReceiver(gateway)
        fleet.receiver = receiver
        alertmanager_yml = workdir / "alertmanager.yml"
        alertmanager_yml.write_text(yaml.safe_dump({
            "route": {"receiver": "test", "group_by": ["alertname", "origin"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "test", "webhook_configs": [{"url": receiver.url}]}]}))
        run.run("alertmanager", images["alertmanager"],
                ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
                 "--cluster.listen-address="],
                mounts={alertmanager_yml: "/etc/alertmanager/alertmanager.yml"})
        prometheus_yml = workdir / "prometheus.yml"
        prometheus_yml.write_text(prometheus_config([f"{n}:{STATS_PORT}" for n in FLEET],
                                                    ["alertmanager:9093"], interval="1s"))
        fleet.addresses["prometheus"] = run.run(
            "prometheus", images["prometheus"],
            ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"],
            mounts={prometheus_yml: "/etc/prometheus/prometheus.yml",
                    REPO_ROOT / "envoy" / "prometheus" / "rules.yml": "/etc/prometheus/rules.yml"})
        wait_until("front Envoy sees the fleet healthy",
                   lambda: http_get(f"http://{fleet.addresses['front']}:{ADMIN_PORT}/clusters")[1]
                   .decode().count("health_flags::healthy") == len(FLEET))
        yield fleet
    finally:
        if receiver is not None:
            receiver.close()
        run.close()
        shutil.rmtree(workdir, ignore_errors=True)


def s3_client(address: str):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=f"http://{address}:{S3_PORT}", region_name="us-east-1",
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


# --- the configuration files shipped for compose ------------------------------------------

def test_compose_files_are_the_templates_rendered():
    """docker/envoy/envoy.yaml and docker/prometheus/prometheus.yml equal a fresh rendering
    of envoy/envoy.yaml and envoy/prometheus/prometheus.yml, and compose's demo
    credentials are SeaweedFS's identity: the example files cannot drift."""
    for path, text in rendered().items():
        assert path.read_text() == text, f"{path} is stale: run docker/render_configs.py"
    compose = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())
    identity = json.loads((REPO_ROOT / "docker" / "seaweedfs" / "s3.json").read_text())["identities"][0]
    env = compose["services"]["envoy"]["environment"]
    assert [env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]] == [
        identity["credentials"][0]["accessKey"], identity["credentials"][0]["secretKey"]]
    for service in compose["services"].values():
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", [])), service
    # Envoy's admin is neither published nor exposed; the stats listener is.
    envoy_ports = [str(p).rsplit(":", 1)[1] for p in compose["services"]["envoy"]["ports"]]
    assert envoy_ports == [str(LISTEN_PORT), str(STATS_PORT)], envoy_ports
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if line.startswith("EXPOSE")] == [
        f"EXPOSE {LISTEN_PORT} {STATS_PORT}"]
    # The opt-in the README documents is the one the tests run.
    readme = docs_text.text()  # README.md and docs/*.md
    assert f"--config-yaml '{ADMIN_ON_NETWORK_OPT_IN}'" in readme


def test_compose_https_override_is_compose_with_the_shipped_tls_cluster():
    """docker/compose.https.yaml (`make up-https`) changes only what TLS needs: SeaweedFS runs
    compose.yaml's command plus the https port and the certificate, mounted read-only; Envoy
    runs docker/envoy/envoy-https.yaml, whose cluster `media` is envoy/origin-https.yaml's with
    only the address, port, names and CA changed, and whose filter signs for that store."""
    from origin_tls import shipped_cluster

    base = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())["services"]
    https = yaml.safe_load((REPO_ROOT / "docker" / "compose.https.yaml").read_text())["services"]
    assert set(https) == {"seaweedfs", "envoy"}, set(https)
    tls_flags = [f"-s3.port.https={S3_HTTPS_PORT}", f"-s3.cert.file={STORE_CERT_IN_SEAWEEDFS}",
                 f"-s3.key.file={STORE_KEY_IN_SEAWEEDFS}"]
    assert https["seaweedfs"]["command"] == base["seaweedfs"]["command"] + tls_flags
    assert https["seaweedfs"]["ports"] == [f"127.0.0.1:${{S3_HTTPS_PORT:-{S3_HTTPS_PORT}}}:{S3_HTTPS_PORT}"]
    tls_dir = "${COMPOSE_TLS_DIR:?set by make up-https}"
    assert https["seaweedfs"]["volumes"] == [f"{tls_dir}/store.crt:{STORE_CERT_IN_SEAWEEDFS}:ro",
                                             f"{tls_dir}/store.key:{STORE_KEY_IN_SEAWEEDFS}:ro"]
    assert https["envoy"] == {"command": ["-c", "/etc/envoy/envoy-https.yaml"], "volumes": [
        f"./envoy/{ENVOY_HTTPS_OUT.name}:/etc/envoy/envoy-https.yaml:ro", f"{tls_dir}/ca.crt:{CA_IN_ENVOY}:ro"]}

    # The committed file equals a fresh rendering (test_compose_files_are_the_templates_rendered);
    # here, what it holds: the shipped cluster, changed in exactly these places.
    config = yaml.safe_load(ENVOY_HTTPS_OUT.read_text())
    [media] = [c for c in config["static_resources"]["clusters"] if c["name"] == "media"]
    expected = shipped_cluster()
    expected["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] = {
        "address": STORE_TLS_NAME, "port_value": S3_HTTPS_PORT}
    context = expected["transport_socket"]["typed_config"]
    context["sni"] = STORE_TLS_NAME
    context["common_tls_context"]["validation_context"] = {
        "trusted_ca": {"filename": CA_IN_ENVOY},
        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": STORE_TLS_NAME}}]}
    assert media == expected
    assert f'"endpoint":"https://{STORE_TLS_NAME}:{S3_HTTPS_PORT}"' in ENVOY_HTTPS_OUT.read_text()
    # Nothing else differs from the plain compose config but the filter's endpoint.
    plain = yaml.safe_load((REPO_ROOT / "docker" / "envoy" / "envoy.yaml").read_text())
    for part in (config, plain):
        part["static_resources"]["clusters"] = [c for c in part["static_resources"]["clusters"]
                                                if c["name"] != "media"]
    assert json.dumps(config).replace(f"https://{STORE_TLS_NAME}:{S3_HTTPS_PORT}", "X") == \
        json.dumps(plain).replace(f"http://seaweedfs:{S3_PORT}", "X")


def _verified_tls_get(port: int, ca: Path, name: str, path: str) -> int:
    """The status of an unsigned GET to 127.0.0.1:`port` over TLS, the certificate verified
    against `ca` for `name` (sent as SNI and Host)."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            connection = http.client.HTTPConnection(name, port, timeout=5)
            connection.sock = tls
            connection.request("GET", path)
            return connection.getresponse().status


def test_make_up_https_serves_through_verified_tls_then_make_down_removes_it():
    """`make up-https` (free ports, its own project name and image tag): a test CA and a
    certificate made at run time, SeaweedFS serving S3 over https, Envoy with
    docker/envoy/envoy-https.yaml. The demo objects come back byte for byte through TLS with the
    certificate verified (handshakes counted, no verify failure), the store's https port
    speaks only TLS, and `make down` leaves nothing of the project behind, the CA included."""
    run_id = uuid.uuid4().hex[:8]
    ports = {name: str(free_port()) for name in
             ("ENVOY_PORT", "ENVOY_STATS_PORT", "S3_PORT", "S3_HTTPS_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT")}
    project = f"ep-{run_id}-https"
    tls_dir = REPO_ROOT / "target" / "compose-https" / project
    env = {**os.environ, **ports, "ENVOY_PRESIGN_TAG": f"test-{run_id}"}
    make = ["make", "--no-print-directory", "-C", str(REPO_ROOT), f"COMPOSE_PROJECT={project}"]
    try:
        started = time.monotonic()
        up = subprocess.run([*make, "up-https"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        print(f"\nmake up-https: {time.monotonic() - started:.1f} s")
        stats = f"http://127.0.0.1:{ports['ENVOY_STATS_PORT']}"
        assert "Try:" in up.stdout and f"127.0.0.1:{ports['ENVOY_PORT']}/media/hello.txt" in up.stdout
        assert f"'{stats}/stats/prometheus?filter=cluster.media.ssl'" in up.stdout
        assert f"--cacert {tls_dir / 'ca.crt'}" in up.stdout

        # Made now, outside git: the CA, the store's certificate and its (demo) key.
        assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.crt", "store.crt", "store.key"]
        assert tls_dir.stat().st_mode & 0o777 == 0o700
        assert all(p.stat().st_mode & 0o022 == 0 for p in tls_dir.iterdir())  # nothing group/world-writable

        base = f"http://127.0.0.1:{ports['ENVOY_PORT']}/media"
        for key in ("hello.txt", "images/gradient.png"):
            status, body, _ = http_get(f"{base}/{key}")
            assert (status, body) == (200, demo_objects()[key][0]), (key, status, body[:200])
        status, body, headers = http_get(f"{base}/video.mp4", headers={"Range": "bytes=0-99"})
        content_range = {name.lower(): value for name, value in headers.items()}["content-range"]
        assert (status, len(body), content_range) == (206, 100, f"bytes 0-99/{300 * 1024}")

        # Prometheus format, from the published stats port: the handshakes with the store,
        # and no certificate refused.
        status, text, _ = http_get(f"{stats}/stats/prometheus")
        assert status == 200
        samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
                   if line and not line.startswith("#")}
        media = '{envoy_cluster_name="media"}'
        handshakes = samples[f"envoy_cluster_ssl_handshake{media}"]
        fail_verify = {name: value for name, value in samples.items()
                       if name.startswith("envoy_cluster_ssl_fail_verify_") and name.endswith(media)}
        print(f"ssl handshakes {handshakes:.0f}, {fail_verify}")
        assert handshakes > 0
        assert len(fail_verify) >= 3 and set(fail_verify.values()) == {0}, fail_verify
        assert samples['envoy_cluster_ssl_versions{envoy_ssl_version="TLSv1.2",envoy_cluster_name="media"}'] > 0

        # The store's https port: only TLS (a plain request is refused), and its certificate is
        # the test CA's for `seaweedfs` (an unsigned GET, verified: the store's own 403).
        https_port = int(ports["S3_HTTPS_PORT"])
        status, body, _ = http_get(f"http://127.0.0.1:{https_port}/{BUCKET}/hello.txt")
        assert status == 400 and b"HTTP request to an HTTPS server" in body, (status, body)
        assert _verified_tls_get(https_port, tls_dir / "ca.crt", STORE_TLS_NAME, f"/{BUCKET}/hello.txt") == 403
        with pytest.raises(ssl.SSLCertVerificationError):
            _verified_tls_get(https_port, tls_dir / "ca.crt", "other.test.internal", f"/{BUCKET}/hello.txt")
    finally:
        down = make_down(make, env, run_id)
    assert_project_gone(down, project)
    assert not tls_dir.exists()


def make_down(make: list[str], env: dict[str, str], run_id: str) -> subprocess.CompletedProcess:
    """`make down` for a test's compose project, and the Envoy image it built removed."""
    down = subprocess.run([*make, "down"], env=env, capture_output=True, text=True, timeout=300)
    docker("rmi", "-f", f"envoy-presign:test-{run_id}", check=False)
    return down


def assert_project_gone(down: subprocess.CompletedProcess, project: str) -> None:
    """`make down` succeeded and left no container, network or volume of the project."""
    assert down.returncode == 0, down.stderr[-3000:]
    assert docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}") == ""
    assert project not in docker("network", "ls", "--format", "{{.Name}}")
    assert project not in docker("volume", "ls", "--format", "{{.Name}}")


def rules_evaluated(prometheus: str, interval_s: float) -> bool:
    """No rule of `prometheus` is in error, and every rule of the groups evaluated at most
    every `interval_s` has run (a slower group, the 10-minute `period` one, may not yet)."""
    groups = json.loads(http_get(f"{prometheus}/api/v1/rules")[1])["data"]["groups"]
    errors = [r["name"] for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not errors, errors
    return bool(groups) and all(r["health"] == "ok" for g in groups if g["interval"] <= interval_s
                                for r in g["rules"])


def test_make_up_serves_then_make_down_removes_it(tmp_path):
    """What a new user runs: `make up` (on free ports, its own project name and image tag),
    the objects it prints curl commands for, Prometheus with the rules and Alertmanager,
    then `make down` leaves nothing of the project behind."""
    run_id = uuid.uuid4().hex[:8]
    ports = {name: str(free_port()) for name in
             ("ENVOY_PORT", "ENVOY_STATS_PORT", "S3_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT")}
    project = f"ep-{run_id}-compose"
    env = {**os.environ, **ports, "ENVOY_PRESIGN_TAG": f"test-{run_id}"}
    make = ["make", "--no-print-directory", "-C", str(REPO_ROOT), f"COMPOSE_PROJECT={project}"]
    try:
        up = subprocess.run([*make, "up"], env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "Try:" in up.stdout and f"127.0.0.1:{ports['ENVOY_PORT']}/media/hello.txt" in up.stdout
        base = f"http://127.0.0.1:{ports['ENVOY_PORT']}/media"
        assert http_get(f"{base}/hello.txt")[0] == 200
        assert http_get(f"{base}/video.mp4", headers={"Range": "bytes=0-99"})[:1] == (206,)
        assert http_get(f"{base}/hello.txt", method="POST", data=b"")[0] == 405
        # The published stats port: the filter's metrics, and none of the admin's actions.
        stats = f"http://127.0.0.1:{ports['ENVOY_STATS_PORT']}"
        assert f"curl -sS '{stats}/stats/prometheus?filter=envoy_presign'" in up.stdout
        status, body, _ = http_get(f"{stats}/stats/prometheus?filter=envoy_presign")
        assert status == 200 and b'envoy_presign_requests{origin="media",' in body, body[:300]
        assert http_get(f"{stats}/quitquitquit", method="POST", data=b"")[0] == 404
        prometheus = f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}"

        def rules_and_alertmanager_ready():
            managers = json.loads(http_get(f"{prometheus}/api/v1/alertmanagers")[1])["data"]
            return rules_evaluated(prometheus, 15) and len(managers["activeAlertmanagers"]) == 1

        def scraping_the_stats_port():
            targets = json.loads(http_get(f"{prometheus}/api/v1/targets")[1])["data"]["activeTargets"]
            return [(t["labels"]["instance"], t["health"]) for t in targets] == [(f"envoy:{STATS_PORT}", "up")]

        wait_until("Prometheus with the rules and Alertmanager", rules_and_alertmanager_ready, timeout=60)
        wait_until("Prometheus scraping envoy:9902", scraping_the_stats_port, timeout=60)
    finally:
        down = make_down(make, env, run_id)
    assert_project_gone(down, project)


# --- images ------------------------------------------------------------------------------

def test_images_run_as_non_root_with_the_official_layout(fleet):
    for key in ("envoy", "seaweedfs", "prometheus", "alertmanager", "project-envoy"):
        user = docker("image", "inspect", "-f", "{{.Config.User}}", fleet.images[key])
        assert user and not user.startswith("0") and user != "root", (key, user)
    # The stand-in base has the official image's layout; the filter image adds to it.
    files = docker("run", "--rm", "--entrypoint", "/usr/local/bin/envoy", fleet.images["project-envoy"],
                   "--version")
    assert "1.40.0" in files
    for name in FLEET:
        processes = docker("top", fleet.run.container(name), "-o", "pid,uid,comm")
        assert all(line.split()[1] == "101" for line in processes.splitlines()[1:]), processes


# What the admin could do from the network, each sent to the stats port: every one must get
# the stats listener's 404 and leave Envoy as it was.
ADMIN_ACTIONS = [("POST", "/quitquitquit"), ("GET", "/quitquitquit"), ("POST", "/healthcheck/fail"),
                 ("POST", "/logging?level=debug"), ("POST", "/logging?paths=http:debug"),
                 ("GET", "/config_dump"), ("GET", "/config_dump?include_eds"), ("GET", "/server_info"),
                 ("GET", "/stats"), ("GET", "/clusters"), ("POST", "/runtime_modify?a=b"),
                 ("POST", "/drain_listeners"), ("POST", "/stats/prometheus"), ("HEAD", "/stats/prometheus"),
                 ("GET", "/stats/prometheus/"), ("GET", "/stats/prometheus/../../quitquitquit"),
                 ("GET", "/ready/../config_dump"), ("GET", "/stats%2Fprometheus"), ("GET", "/STATS/PROMETHEUS"),
                 ("POST", "/ready")]


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except ConnectionRefusedError:
        return True
    return False


def test_image_as_built_keeps_the_admin_on_loopback_and_serves_only_stats(fleet):
    """The image with its own configuration (no -c, no mount), on the fleet's network with
    9901 and 9902 published: the admin listens on the container's loopback only, so its
    port refuses connections from outside the container (the host, over the network) and the
    published one answers nothing; the stats port serves /stats/prometheus (with a query) and
    /ready, and a 404 to every admin action, after which Envoy runs on unchanged."""
    name = "as-built"
    address = fleet.run.run(name, fleet.images["project-envoy"], [],
                            env=env_credentials(ACCESS_KEY, SECRET_KEY), publish=[ADMIN_PORT, STATS_PORT])
    try:
        stats = f"http://{address}:{STATS_PORT}"
        wait_until(f"{name} ready", lambda: http_get(f"{stats}/ready")[:2] == (200, b"LIVE\n"))
        assert f"admin address: 127.0.0.1:{ADMIN_PORT}" in fleet.run.logs(name)
        assert http_get(f"http://{address}:{LISTEN_PORT}/media/hello.txt")[:2] == (200, OBJECTS["hello.txt"])

        assert _refused(address, ADMIN_PORT)
        published_admin = fleet.run.published(name, ADMIN_PORT)
        with pytest.raises((OSError, http.client.HTTPException)):
            http_get(f"http://{published_admin}/ready", timeout=3)

        for base in (stats, f"http://{fleet.run.published(name, STATS_PORT)}"):
            status, body, _ = http_get(f"{base}/stats/prometheus")
            assert status == 200 and b'envoy_presign_requests{origin="media",' in body, body[:300]
            assert http_get(f"{base}/ready")[:2] == (200, b"LIVE\n")
        # Prometheus's own query (the shipped prometheus.yml sends `filter`) reaches the admin.
        status, body, _ = http_get(f"{stats}/stats/prometheus?filter=envoy_presign")
        assert status == 200 and b"envoy_presign_requests{" in body
        assert b"envoy_server_live" not in body and b"envoy_cluster_" not in body
        # Envoy compiles `filter` as an RE2 regex (linear time): a bad one is a 400, nothing more.
        status, body, _ = http_get(f"{stats}/stats/prometheus?filter=(")
        assert status == 400 and b"re2" in body, (status, body[:200])

        for method, path in ADMIN_ACTIONS:
            status, body, _ = http_get(f"{stats}{path}", method=method,
                                       data=b"" if method == "POST" else None)
            assert status == 404, (method, path, status, body[:200])
            assert method == "HEAD" or body == b'{"error":"not_found"}', (method, path, body[:200])
        # Still running, still ready (no /healthcheck/fail), still at the info level: a request
        # through the filter adds no debug line to the log.
        time.sleep(1)
        assert fleet.run.running(name)
        assert http_get(f"{stats}/ready")[:2] == (200, b"LIVE\n")
        assert http_get(f"http://{address}:{LISTEN_PORT}/media/hello.txt")[0] == 200
        logs = fleet.run.logs(name)
        assert "][debug][" not in logs and SECRET_KEY not in logs
        print(f"\nimage as built: admin 127.0.0.1:{ADMIN_PORT} (refused from outside), "
              f"{len(ADMIN_ACTIONS)} admin actions on :{STATS_PORT} answered 404")
    finally:
        docker("rm", "-f", "-v", fleet.run.container(name))


def test_the_documented_opt_in_puts_the_admin_on_the_network(fleet):
    """`--config-yaml` with the README's override: Envoy merges it over the image's bootstrap,
    so the admin listens on every address, same port; and then anyone on the network can
    stop Envoy, which is the risk the README states."""
    name = "admin-opt-in"
    address = fleet.run.run(name, fleet.images["project-envoy"],
                            ["-c", "/etc/envoy/envoy.yaml", "--config-yaml", ADMIN_ON_NETWORK_OPT_IN],
                            env=env_credentials(ACCESS_KEY, SECRET_KEY))
    try:
        admin = f"http://{address}:{ADMIN_PORT}"
        wait_until(f"{name} admin on the network", lambda: http_get(f"{admin}/ready")[:2] == (200, b"LIVE\n"))
        assert f"admin address: 0.0.0.0:{ADMIN_PORT}" in fleet.run.logs(name)
        assert http_get(f"http://{address}:{STATS_PORT}/stats/prometheus")[0] == 200
        assert http_get(f"http://{address}:{LISTEN_PORT}/media/hello.txt")[:2] == (200, OBJECTS["hello.txt"])
        assert http_get(f"{admin}/quitquitquit", method="POST", data=b"")[0] == 200
        wait_until(f"{name} stopped by /quitquitquit from the network", lambda: not fleet.run.running(name))
    finally:
        docker("rm", "-f", "-v", fleet.run.container(name))


def test_plugin_image_round_trips_through_a_registry(fleet, tmp_path):
    """The plugin image, pushed to a real registry (Debian's docker-registry) and read
    back as Istio's and Envoy Gateway's fetchers read it: one layer, plugin.wasm, the
    Wasm magic; then pulled back by digest."""
    registry = shutil.which("docker-registry")
    assert registry, "install Debian's docker-registry (make setup does)"
    port = free_port()
    (tmp_path / "config.yml").write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"}}))
    proc = subprocess.Popen([registry, "serve", str(tmp_path / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "registry.log", "w"))
    pushed = f"127.0.0.1:{port}/envoy-presign-plugin:{fleet.run.id}"
    try:
        wait_until("registry", lambda: http_get(f"http://127.0.0.1:{port}/v2/")[0] == 200)
        docker("tag", fleet.images["project-plugin"], pushed)
        docker("push", pushed)
        status, body, headers = http_get(
            f"http://127.0.0.1:{port}/v2/envoy-presign-plugin/manifests/{fleet.run.id}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.docker.distribution.manifest.v2+json"})
        assert status == 200, body
        manifest = json.loads(body)
        digest = headers["Docker-Content-Digest"]
        assert digest == "sha256:" + hashlib.sha256(body).hexdigest()
        assert len(manifest["layers"]) == 1, manifest
        layer = manifest["layers"][0]
        status, blob, _ = http_get(f"http://127.0.0.1:{port}/v2/envoy-presign-plugin/blobs/{layer['digest']}")
        assert status == 200 and "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
            assert names == ["plugin.wasm"], names
            wasm = tar.extractfile("plugin.wasm").read()
        assert wasm[:4] == b"\0asm" and wasm == WASM_PATH.read_bytes()
        print(f"\nplugin image pushed; pin it as {pushed.rsplit(':', 1)[0]}@{digest}")
        docker("rmi", pushed)
        docker("pull", f"{pushed.rsplit(':', 1)[0]}@{digest}")
        docker("rmi", f"{pushed.rsplit(':', 1)[0]}@{digest}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the fleet -----------------------------------------------------------------------

def _clear_of_window_boundary(margin_s: float = 20) -> None:
    """Wait until the current alignment window (expires_in 3600 - refresh_before 720 s)
    has at least `margin_s` left, so that one pass cannot straddle two windows."""
    window = 3600 - 720
    left = window - time.time() % window
    if left < margin_s:
        time.sleep(left + 1)


def test_three_envoys_forward_byte_identical_urls(fleet):
    """Every object through each of the three Envoys: the exact bytes, and the URL each
    Envoy forwarded (read from its test-only access log) is the same on all three."""
    _clear_of_window_boundary()
    seen: dict[str, dict[str, str]] = {}
    for name in FLEET:
        before = len(fleet.forwarded(name))
        for key, body in OBJECTS.items():
            status, got, _ = http_get(fleet.url(name, f"/media/{_quote(key)}"))
            assert (status, got) == (200, body), (name, key, status)
        rows = wait_until(f"{name} access log", lambda: (r := fleet.forwarded(name)[before:]) and
                          len(r) == len(OBJECTS) and r)
        seen[name] = {key: path for key, (path, status, _) in zip(OBJECTS, rows)}
        assert all(status == "200" for _, status, _ in rows)
    for key in OBJECTS:
        urls = {seen[name][key] for name in FLEET}
        assert len(urls) == 1, (key, urls)
        assert "X-Amz-Signature=" in urls.pop()


def test_prometheus_scrapes_the_fleet_and_an_origin_403_burst_reaches_the_webhook(fleet):
    prometheus = f"http://{fleet.addresses['prometheus']}:9090"

    def targets_up():
        _, body, _ = http_get(f"{prometheus}/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"]
        return len(active) == len(FLEET) and all(t["health"] == "up" for t in active)

    wait_until("Prometheus scraping all three Envoys", targets_up, timeout=60)
    wait_until("every rule of the 1 s groups evaluated", lambda: rules_evaluated(prometheus, 1), timeout=30)

    # The first 403 creates the {code="403"} counter, which rate() and increase() cannot
    # count; the burst that follows is what the alert sees.
    assert http_get(fleet.url("envoy-2", "/locked/secret.txt"))[0] == 403
    wait_until("the 403 series in Prometheus", lambda: json.loads(http_get(
        f"{prometheus}/api/v1/query?query=envoy_presign_origin_requests%7Bcode%3D%22403%22%7D")[1])
        ["data"]["result"], timeout=30)
    time.sleep(2)
    for _ in range(10):
        assert http_get(fleet.url("envoy-2", "/locked/secret.txt"))[0] == 403

    def burst_alert():
        return [a for a in fleet.receiver.alerts if a["labels"].get("alertname") == "EnvoyPresignOrigin403Burst"]

    alerts = wait_until("EnvoyPresignOrigin403Burst at the webhook", burst_alert, timeout=60)
    alert = alerts[0]
    assert alert["labels"]["origin"] == "locked" and alert["labels"]["severity"] == "critical"
    assert alert["annotations"].get("runbook"), alert["annotations"]
    assert SECRET_KEY not in json.dumps(fleet.receiver.alerts)


def test_origin_container_stopped_is_503_uf_or_uh_then_recovers(fleet):
    name = "envoy-1"
    # A clean stop (SIGTERM, up to 10 s before SIGKILL). With `-t 1` (SIGKILL if not gone after
    # 1 s), a slow machine once saw the store come back still answering 404 for some key after
    # 90 s; a kill mid-shutdown is the likely cause, not a proven one.
    docker("stop", "-t", "10", fleet.run.container("seaweedfs"))
    try:
        before = len(fleet.forwarded(name))
        statuses = [http_get(fleet.url(name, "/media/hello.txt"), timeout=10)[0] for _ in range(3)]
        assert statuses == [503] * 3
        rows = wait_until("access log", lambda: (r := fleet.forwarded(name)[before:]) and len(r) == 3 and r)
        # UF while Envoy still holds the container's address (refused), UH once the name has
        # left Docker's DNS and STRICT_DNS has no host left: both a clear 503.
        assert all(flags in ("UF", "UH") for _, _, flags in rows), rows
        print(f"\norigin stopped: 503 with flags {[flags for _, _, flags in rows]}")
    finally:
        docker("start", fleet.run.container("seaweedfs"))
    _wait_for_every_envoy_to_serve(fleet, "recovery after the origin is back")


def _serves_every_object(fleet, envoy: str) -> bool:
    return all(http_get(fleet.url(envoy, f"/media/{_quote(key)}"))[:2] == (200, body)
               for key, body in OBJECTS.items())


def _wait_for_every_envoy_to_serve(fleet, what: str) -> None:
    """Each fleet Envoy serves every object again (each re-resolves and reconnects on its own;
    a store that came back serves some objects before others: one run saw hello.txt back while
    another key still answered 404, which the next test then counted as failed requests)."""
    for envoy in FLEET:
        try:
            wait_until(f"{what} ({envoy})", lambda: _serves_every_object(fleet, envoy),
                       timeout=90, interval=1)
        except TimeoutError as error:
            # What the store and the Envoy were doing, for the post-mortem.
            seaweedfs = fleet.run.container("seaweedfs")
            state = docker("inspect", "-f", "{{json .State}} {{json .NetworkSettings.Networks}}", seaweedfs,
                           check=False)
            raise TimeoutError(f"{error}\n--- seaweedfs {state}\n{fleet.run.logs('seaweedfs')[-6000:]}"
                               f"\n--- {envoy}\n{fleet.run.logs(envoy)[-3000:]}") from None


def test_origin_cut_off_times_out_without_stalling_envoy_then_recovers(fleet):
    name = "envoy-3"
    container = fleet.run.container("seaweedfs")
    # A warm connection to the origin first, so the cut hits an open connection too.
    assert http_get(fleet.url(name, "/media/hello.txt"))[0] == 200
    docker("network", "disconnect", fleet.run.network, container)
    try:
        results: list[tuple[int, float]] = []

        def slow_request():
            started = time.monotonic()
            status = http_get(fleet.url(name, "/media/hello.txt"), timeout=ROUTE_IDLE_TIMEOUT_S + 10)[0]
            results.append((status, time.monotonic() - started))

        threads = [threading.Thread(target=slow_request) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        # Meanwhile Envoy answers everything else at once: no worker is stuck.
        started = time.monotonic()
        assert http_get(fleet.url(name, "/elsewhere"), timeout=2)[0] == 404
        assert fleet.admin(name, "/ready")[0] == 200
        assert time.monotonic() - started < 1.5
        for t in threads:
            t.join()
        # Connect timeout (2 s: 503 UF) or the route idle timeout (3 s: 504 SI), never a hang.
        assert all(status in (503, 504) and elapsed < ROUTE_IDLE_TIMEOUT_S + 2 for status, elapsed in results), results
    finally:
        docker("network", "connect", "--alias", "seaweedfs", fleet.run.network, container)
    _wait_for_every_envoy_to_serve(fleet, "recovery after the origin is reconnected")


def test_rolling_restart_under_steady_load_fails_no_request(fleet):
    """Clients go through the front Envoy. Each fleet Envoy in turn fails its health check
    (/healthcheck/fail), drains its listener, stops and is replaced by a new container."""
    front = f"http://{fleet.addresses['front']}:{LISTEN_PORT}"
    stop = threading.Event()
    outcomes: Counter = Counter()
    phase = ["start"]

    def load():
        while not stop.is_set():
            key = list(OBJECTS)[outcomes.total() % len(OBJECTS)]
            try:
                status, body, headers = http_get(f"{front}/media/{_quote(key)}", timeout=10)
                if (status, body) == (200, OBJECTS[key]):
                    outcomes["ok"] += 1
                else:
                    outcomes[f"bad {status} {body[:80]!r} {headers.get('server')} {phase[0]}"] += 1
            except Exception as error:  # noqa: BLE001 (any failure is a failed request)
                outcomes[f"error {type(error).__name__}: {error}"] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for name in FLEET:
            time.sleep(1)
            phase[0] = f"{name} hc-fail"
            assert fleet.admin(name, "/healthcheck/fail", method="POST")[0] == 200
            time.sleep(1.5)  # the front's health check (every 0.5 s) takes it out
            phase[0] = f"{name} drain"
            fleet.admin(name, "/drain_listeners?graceful", method="POST")
            time.sleep(2.5)  # --drain-time-s 2
            phase[0] = f"{name} rm"
            docker("rm", "-f", fleet.run.container(name))
            phase[0] = f"{name} start"
            fleet.start_envoy(name)
            phase[0] = f"{name} started"
            wait_until(f"front sees {name} healthy again",
                       lambda: http_get(f"http://{fleet.addresses['front']}:{ADMIN_PORT}/clusters")[1]
                       .decode().count("health_flags::healthy") == len(FLEET))
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    front_stats = http_get(f"http://{fleet.addresses['front']}:{ADMIN_PORT}/stats?filter=cluster.fleet.(upstream_rq_retry|upstream_rq_5|upstream_cx_destroy|retry_or_shadow|upstream_rq_pending_overflow|upstream_rq_tx_reset|upstream_cx_connect_fail)")[1].decode()
    print(f"\nrolling restart under load: {dict(outcomes)}\n{front_stats}")
    assert outcomes["ok"] > 100 and set(outcomes) == {"ok"}, dict(outcomes)


TEST_ONLY_WASM = REPO_ROOT / "target" / "test-only" / "wasm32-wasip1" / "release" / "envoy_presign.wasm"
SKEW_MS = 800


def test_a_clock_skew_of_s_makes_two_envoys_disagree_for_s_after_a_boundary(fleet):
    """Two Envoys with the same configuration, one with its clock 0.8 s ahead (the test-only
    `test-clock-offset` build): around a window boundary each switches to the new URL at
    its own boundary, so for the same object they forward different URLs for exactly the
    skew, and the same URL the rest of the time. Both URLs are accepted by the origin."""
    assert TEST_ONLY_WASM.is_file(), "make integration builds target/test-only"
    config = fleet_filter_config()
    config["origins"] = [dict(config["origins"][0], expires_in=10)]  # 8 s windows
    window_s = 8
    text = envoy_config(config, log_format=PATH_LOG).replace(
        "host_env_keys: [AWS_ACCESS_KEY_ID,",
        "host_env_keys: [ENVOY_PRESIGN_TEST_CLOCK_OFFSET_MS, AWS_ACCESS_KEY_ID,", 1)
    assert "host_env_keys: [ENVOY_PRESIGN_TEST_CLOCK_OFFSET_MS," in text
    path = fleet.workdir / "clock.yaml"
    path.write_text(text)
    for name, offset in (("clock-a", 0), ("clock-b", SKEW_MS)):
        address = fleet.run.run(
            name, fleet.images["project-envoy"], ["-c", "/etc/envoy/envoy.yaml", "--concurrency", "1"],
            env={**env_credentials(ACCESS_KEY, SECRET_KEY), "ENVOY_PRESIGN_TEST_CLOCK_OFFSET_MS": str(offset)},
            mounts={path: "/etc/envoy/envoy.yaml", TEST_ONLY_WASM: "/etc/envoy/envoy_presign.wasm"})
        fleet.addresses[name] = address
        wait_until(f"{name} ready", lambda: http_get(f"http://{address}:{STATS_PORT}/ready")[0] == 200)

    # Start 2 s before a boundary (of the real clock, which clock-a keeps), run 4 s.
    boundary = (time.time() // window_s + 1) * window_s
    if boundary - time.time() < 2.5:
        boundary += window_s
    time.sleep(boundary - 2 - time.time())
    sent: list[float] = []
    while time.time() < boundary + 2:
        sent.append(time.time())
        for name in ("clock-a", "clock-b"):
            assert http_get(fleet.url(name, "/media/hello.txt"))[:2] == (200, OBJECTS["hello.txt"])
        time.sleep(0.02)
    logged = {name: wait_until(f"{name} access log", lambda: len(r := fleet.forwarded(name)) == len(sent) and r)
              for name in ("clock-a", "clock-b")}
    assert all(status == "200" for rows in logged.values() for _, status, _ in rows)

    def switch_time(rows) -> float:
        changes = [sent[i] for i in range(1, len(rows)) if rows[i][0] != rows[i - 1][0]]
        assert len(changes) == 1, f"one URL change per boundary, got {len(changes)}"
        return changes[0]

    a_switch, b_switch = switch_time(logged["clock-a"]), switch_time(logged["clock-b"])
    disagree = [sent[i] for i in range(len(sent)) if logged["clock-a"][i][0] != logged["clock-b"][i][0]]
    print(f"\nclock skew {SKEW_MS} ms: clock-b switched {boundary - b_switch:.2f} s before the boundary, "
          f"clock-a {a_switch - boundary:+.2f} s after it; {len(disagree)} of {len(sent)} request pairs "
          f"disagreed, over {disagree[-1] - disagree[0]:.2f} s")
    # Each switches at its own boundary, to within the sampling step (the longest gap between
    # two pairs sent, about 0.03 s on a quiet machine); they disagree exactly between the two
    # switches and agree before and after.
    step = max(b - a for a, b in zip(sent, sent[1:])) + 0.05
    assert step < 0.4, f"pairs {step:.2f} s apart cannot resolve a {SKEW_MS} ms skew"
    assert abs(a_switch - boundary) < step and abs(boundary - SKEW_MS / 1000 - b_switch) < step
    assert disagree and b_switch <= disagree[0] and disagree[-1] < a_switch
    assert (disagree[-1] - disagree[0]) == pytest.approx(SKEW_MS / 1000, abs=2 * step)
