"""tests/monitoring: the monitoring files against Debian's prometheus, promtool,
prometheus-alertmanager and amtool (make alerting, make report-test); no Envoy needed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS.parent / "tools")]  # `import stack, promstack`; the report tool


def require(binary: str, package: str) -> str:
    """The binary's path; a failure naming the package (make setup installs it) if missing."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"`{binary}` is not installed: Debian's {package} (`make setup` installs it)", pytrace=False)
    return path
