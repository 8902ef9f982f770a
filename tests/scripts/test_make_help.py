"""`make help` (scripts/make_help.py): the Makefile's `## target: ...` comments are the one list."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import make_help  # noqa: E402


def test_documented_targets_and_their_continuation_lines():
    text = """\
## alpha: first line
## second line
alpha: beta
\tdo it
# not documented: a single hash
beta:
\t@true
## gamma ARG=<x>: takes ARG
## gamma's second line: with a colon
gamma:
## nothing: names no rule, so it is no entry
VAR := 1
"""
    entries = make_help.documented(text)
    assert entries == [("alpha", "", "first line second line"),
                       ("gamma", "ARG=<x>", "takes ARG gamma's second line: with a colon")]
    out = make_help.render(entries, 80, "alpha")
    assert out.splitlines()[0].endswith("no target: make alpha")
    assert re.search(r"^  alpha +first line second line$", out, re.M)
    assert re.search(r"^  gamma ARG=<x> +takes ARG", out, re.M)
    assert "beta" not in out and "nothing" not in out


def test_make_help_lists_the_project_s_documented_targets():
    proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"^  (\S+)", proc.stdout, re.M)
    for target in ("help", "check", "test", "build", "unit", "lint", "mutants", "mutants-diff", "scripts-test"):
        assert target in listed, f"{target} missing from make help:\n{proc.stdout}"
    assert "no target: make build" in proc.stdout.splitlines()[0]


def test_every_entry_names_a_rule_and_every_stage_of_make_test_is_documented():
    text = (ROOT / "Makefile").read_text()
    rules = make_help.rules(text)
    lines = text.splitlines()
    for n, line in enumerate(lines):
        m = make_help.ENTRY.match(line)
        first = n == 0 or not lines[n - 1].startswith("## ")
        if m and first:
            assert m.group(1) in rules, f"`{line}` documents no rule (a typo?)"
    documented = {t for t, _, _ in make_help.documented(text)}
    stages = re.search(r"^TEST_STAGES\s*:?=\s*(.+)$", text, re.M).group(1).split()
    assert stages and not set(stages) - documented, set(stages) - documented
