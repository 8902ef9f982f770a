#!/usr/bin/env python3
"""`make help`: the Makefile's documented targets, from its own `## target: ...` comments.

A documented target is a comment `## <target>[ <usage>]: <description>` whose <target> the
Makefile defines as a rule; the `## ` lines right after it continue the description. Targets
are listed in the Makefile's order, each with its description on one logical line (wrapped
to the terminal). There is no other list to keep in sync.

Usage: python3 scripts/make_help.py [--default GOAL] Makefile...
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import textwrap
from pathlib import Path

ENTRY = re.compile(r"^## ([A-Za-z0-9][\w.-]*)((?: [^:]*)?): (.*)$")
RULE = re.compile(r"^([A-Za-z0-9][\w.-]*(?:\s+[A-Za-z0-9][\w.-]*)*)\s*::?(?!=)")


def rules(text: str) -> set[str]:
    """The targets the Makefile text defines as rules (`name:` or `a b:` at a line's start)."""
    found: set[str] = set()
    for line in text.splitlines():
        m = RULE.match(line)
        if m:
            found.update(m.group(1).split())
    return found


def documented(text: str) -> list[tuple[str, str, str]]:
    """(target, usage, description) for each `## target: ...` comment naming a rule."""
    targets = rules(text)
    entries: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        m = ENTRY.match(line)
        if m and m.group(1) in targets:
            current = [m.group(1), m.group(2).strip(), m.group(3).strip()]
            entries.append(current)
        elif current is not None and line.startswith("## "):
            current[2] += " " + line[3:].strip()
        else:
            current = None
    return [(t, u, d) for t, u, d in entries]


def render(entries: list[tuple[str, str, str]], width: int, default: str | None) -> str:
    out = ["Usage: make <target> [VAR=value ...]" + (f"; no target: make {default}" if default else "")]
    out.append("Targets (from the Makefile's `## target: ...` comments):")
    names = [f"{t} {u}".strip() for t, u, _ in entries]
    column = min(max(len(n) for n in names), 20) + 4
    for name, (_, _, description) in zip(names, entries):
        indent = " " * column
        lines = textwrap.wrap(description, width=max(width - column, 30))
        if len(name) + 4 > column or not lines:
            out.append(f"  {name}")
            out.extend(indent + line for line in lines)
        else:
            out.append(f"  {name}".ljust(column) + lines[0])
            out.extend(indent + line for line in lines[1:])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--default", help="the default goal, to say so")
    parser.add_argument("makefiles", nargs="+", type=Path)
    args = parser.parse_args(argv)
    entries = []
    for makefile in args.makefiles:
        entries += documented(makefile.read_text())
    if not entries:
        print("no documented targets (`## target: description` comments) found", file=sys.stderr)
        return 1
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    print(render(entries, width, args.default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
