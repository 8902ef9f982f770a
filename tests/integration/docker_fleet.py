"""Containers for tests/integration/test_docker.py: images built here, one private network,
and everything started labelled with the run's id so that exactly that is removed after.

The Docker engine's CLI (`docker`) is driven with subprocess; no Python Docker client.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "docker"))

import standin_images  # noqa: E402

LABEL = "envoy-presign-test"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    """Run `docker args...` and return its stdout; raise with its stderr on failure."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip()


def http_get(url: str, timeout: float = 5, headers: dict[str, str] | None = None,
             method: str = "GET", data: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {}, method=method, data=data)
    try:
        with _NO_PROXY.open(request, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def wait_until(what: str, probe, timeout: float = 60, interval: float = 0.25):
    """Call `probe` until it returns a truthy value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as error:  # noqa: BLE001 ("not yet", kept for the message)
            last = error
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout} s (last: {last!r})")


class Run:
    """One test run's images, network and containers, all removed by `close()`."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.network = f"ep-{self.id}"
        self.images: list[str] = []
        self.build_seconds: dict[str, float] = {}

    # -- images ---------------------------------------------------------------------
    def build_images(self, wasm: Path) -> dict[str, str]:
        """Stand-in bases from this machine's binaries, then the project's two images."""
        if not wasm.is_file():
            raise FileNotFoundError(f"{wasm}: run `make build` first")
        started = time.monotonic()
        tags = {name: standin_images.build(image) for name, image in standin_images.standins().items()}
        self.build_seconds["stand-ins"] = time.monotonic() - started
        for name, dockerfile, args in [
                ("envoy", "docker/Dockerfile", ["--build-arg", f"ENVOY_IMAGE={tags['envoy']}"]),
                ("plugin", "docker/plugin.Dockerfile", [])]:
            tag = f"envoy-presign-test-{name}:{self.id}"
            started = time.monotonic()
            docker("build", "-q", "-f", str(REPO_ROOT / dockerfile), "-t", tag, *args, str(REPO_ROOT))
            self.build_seconds[name] = time.monotonic() - started
            self.images.append(tag)
            tags[f"project-{name}"] = tag
        return tags

    # -- network and containers --------------------------------------------------------
    def create_network(self) -> str:
        docker("network", "create", "--label", f"{LABEL}={self.id}", self.network)
        return self.gateway()

    def gateway(self) -> str:
        """The host's address on the run's network (what a container dials to reach
        a server the test runs on the host)."""
        info = json.loads(docker("network", "inspect", self.network))[0]
        return info["IPAM"]["Config"][0]["Gateway"]

    def container(self, name: str) -> str:
        return f"ep-{self.id}-{name}"

    def run(self, name: str, image: str, args: list[str], env: dict[str, str] | None = None,
            mounts: dict[Path, str] | None = None, aliases: list[str] | None = None,
            publish: list[int] | None = None) -> str:
        """Start a detached container on the run's network; returns its address. Each port
        of `publish` is published on a free port of the host's 127.0.0.1 (`published()`)."""
        argv = ["run", "-d", "--name", self.container(name), "--label", f"{LABEL}={self.id}",
                "--network", self.network, "--network-alias", name]
        for alias in aliases or []:
            argv += ["--network-alias", alias]
        for port in publish or []:
            argv += ["-p", f"127.0.0.1::{port}"]
        for key, value in (env or {}).items():
            argv += ["-e", f"{key}={value}"]
        for source, target in (mounts or {}).items():
            argv += ["-v", f"{source}:{target}:ro"]
        docker(*argv, image, *args)
        return self.address(name)

    def address(self, name: str) -> str:
        return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                      self.container(name))

    def published(self, name: str, port: int) -> str:
        """host:port where the container's `port` is published."""
        return docker("port", self.container(name), f"{port}/tcp").splitlines()[0]

    def running(self, name: str) -> bool:
        return docker("inspect", "-f", "{{.State.Running}}", self.container(name)) == "true"

    def logs(self, name: str) -> str:
        out = subprocess.run(["docker", "logs", self.container(name)], capture_output=True, text=True)
        return out.stdout + out.stderr

    def close(self) -> None:
        """Remove what this run made: its containers, its network, its project images."""
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}={self.id}", check=False).split()
        if ids:
            docker("rm", "-f", "-v", *ids, check=False)
        docker("network", "rm", self.network, check=False)
        for tag in self.images:
            docker("rmi", "-f", tag, check=False)
