"""Every relative link of README.md and docs/**/*.md resolves: the file exists, and an anchor
(`#...`) names a heading of that file, with GitHub's anchors (lower-case, punctuation dropped,
spaces to '-', a repeated heading getting -1, -2, ...)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from docs_text import REPO_ROOT, anchor, files

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", prose_keep_headings(path.read_text()), re.M):
        base = anchor(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def prose_keep_headings(text: str) -> str:
    """``text`` without fenced code blocks (whose `#` lines are comments, not headings)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_there_are_links_to_check():
    assert len(files()) >= 10
    assert sum(len(links(p)) for p in files()) >= 100


@pytest.mark.parametrize("path", files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path: Path):
    broken = []
    for target in links(path):
        file, _, frag = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif frag and dest.suffix == ".md" and frag not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{frag} in {dest.relative_to(REPO_ROOT)}")
        elif frag and dest.suffix != ".md":
            broken.append(f"{target}: anchor into a non-Markdown file")
    assert not broken, broken


def test_anchor_is_githubs():
    assert anchor("If the filter's VM dies") == "if-the-filters-vm-dies"
    assert anchor("Deploying on Kubernetes (Istio, Envoy Gateway)") == "deploying-on-kubernetes-istio-envoy-gateway"
    assert anchor("Reports, alert routing and the runbook") == "reports-alert-routing-and-the-runbook"
