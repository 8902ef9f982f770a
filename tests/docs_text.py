"""Where the project's documentation lives, for the tests that check what it says: README.md
and docs/*.md (README.md's sections moved to docs/). ``text()`` is all of it, each file's
relative links rewritten to repository paths (``(runbook.md)`` in docs/observability.md reads
``(docs/runbook.md)``), so a test can look for a sentence or a path wherever it now lives."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"

LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def files() -> list[Path]:
    """README.md, then every docs/**/*.md in path order."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower-case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def repo_relative(path: Path, text: str) -> str:
    """``text`` of ``path`` with each relative link target written from the repository root."""
    base = path.parent

    def rewrite(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return m.group(0)
        file, sep, frag = target.partition("#")
        resolved = (base / file).resolve()
        try:
            rel = resolved.relative_to(REPO_ROOT).as_posix()
        except ValueError:
            return m.group(0)
        return f"{m.group(1)}{rel}{sep}{frag}{m.group(3)}"

    return LINK.sub(rewrite, text)


def text() -> str:
    """README.md and docs/*.md, one after the other, links written from the repository root."""
    return "\n".join(repo_relative(p, p.read_text()) for p in files())
