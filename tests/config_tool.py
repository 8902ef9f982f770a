"""The host command ``envoy-presign-config`` (src/bin), for the tests that compare what it
says with what the filter does in Envoy (test_config_tool.py, test_manifests.py).

It is built with cargo on first use (a debug build: the code is the filter's core, the
same in any profile, and the debug build is the one ``cargo clippy``/``cargo test`` have
already compiled most of).  It gets only the AWS_* variables a test passes, never the
developer's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / "target" / "debug" / "envoy-presign-config"

_built = False


def build() -> Path:
    """``cargo build --bin envoy-presign-config`` once per session; RuntimeError with
    cargo's output tail if it fails."""
    global _built
    if not _built:
        result = subprocess.run(["cargo", "build", "--bin", TOOL.name], cwd=REPO_ROOT,
                                capture_output=True, text=True)
        if result.returncode != 0 or not TOOL.is_file():
            raise RuntimeError(f"building {TOOL.name} failed (exit {result.returncode}):\n"
                               + "\n".join((result.stdout + result.stderr).splitlines()[-30:]))
        _built = True
    return TOOL


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the tool with ``args``; its environment is ours minus AWS_*, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    clean.update(env or {})
    return subprocess.run([str(build()), *args], env=clean, capture_output=True, text=True, timeout=60)
