"""README.md's minimal configuration is one the filter accepts: `envoy-presign-config check`
(the function `on_configure` calls) prints OK for it, with and without keys in the
environment, and reports the origin it describes."""

from __future__ import annotations

import re

import config_tool
from stack import REPO_ROOT


def minimal_configuration() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("\n## Minimal configuration\n")
    section = text[start:text.index("\n## ", start + 1)]
    (block,) = re.findall(r"```json\n(.*?)```", section, re.S)
    return block


def test_readme_minimal_configuration_passes_check(tmp_path):
    path = tmp_path / "filter.json"
    path.write_text(minimal_configuration())
    keys = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    for env in (keys, {}):
        result = config_tool.run("check", str(path), env=env)
        assert result.returncode == 0, result
        assert result.stdout.startswith("OK "), result.stdout
        assert "  origin media: /media/ (any host) -> " in result.stdout, result.stdout
        assert "s3.internal.example:9000" in result.stdout, result.stdout
