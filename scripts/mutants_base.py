#!/usr/bin/env python3
"""The start of the change under test, for `make mutants-diff`, computed from git alone.

Sessions commit straight to main in bursts: many commits within a few hours, then nothing
until the next session. The change under test is the latest burst. Walking first-parent
history from HEAD, the base is the commit before the newest pause of more than
--gap-hours (3) between consecutive commits' committer times; the diff is from that base
to the working tree, so uncommitted changes count as part of the latest burst, and so do
untracked files under the diffed paths.

- A base given with --base (MUTANTS_BASE=<rev> in make) wins; it must name a commit.
- No such pause in the whole history: the change is everything, the base is the empty tree
  (the same mutants as the full `make mutants`), and the script says so.
- A shallow clone whose history ends before such a pause: the start of the change is not in
  the clone, so the script fails with a message (fetch the full history, give a base, or run
  the full `make mutants`) rather than test a part of the change, or everything, unasked.
- A pause shorter than the threshold does not separate two sessions: two sessions less
  than --gap-hours apart are one change (more mutants, never fewer).

Prints the base, why it was chosen and how many lines changed; writes the diff (for
`cargo mutants --in-diff`) to --diff. --print prints only the base's full hash.

Usage:
    python3 scripts/mutants_base.py --diff target/mutants-change.diff [--base REV] [--gap-hours 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PREFIX = "mutants-diff:"


class Failure(Exception):
    """A message for the user; exit 1."""


def git(*args: str, cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode not in ok:
        raise Failure(f"`git {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Commit:
    sha: str
    time: int  # committer time, Unix seconds
    subject: str


@dataclass(frozen=True)
class Choice:
    base: str  # a commit, or the empty tree
    reason: str
    commits: int  # commits in the change (first-parent)


def first_parent_history(cwd: Path | None = None) -> list[Commit]:
    """HEAD's first-parent history, newest first."""
    out = git("log", "--first-parent", "--format=%H %ct %s", "HEAD", cwd=cwd)
    commits = []
    for line in out.splitlines():
        sha, time, subject = (line.split(" ", 2) + [""])[:3]
        commits.append(Commit(sha, int(time), subject))
    return commits


def newest_gap(commits: list[Commit], gap_seconds: float) -> tuple[int, int] | None:
    """(i, t): the newest pause, commits[i] made more than gap_seconds after t, the latest time
    among the older commits (a commit is landed after its parent, so a clock set back mid-burst
    makes no pause: the times are taken as never going backwards)."""
    latest_older = [0] * len(commits)
    latest = -(2**63)
    for j in range(len(commits) - 1, -1, -1):
        latest_older[j] = latest
        latest = max(latest, commits[j].time)
    for i in range(len(commits) - 1):
        if commits[i].time - latest_older[i] > gap_seconds:
            return i, latest_older[i]
    return None


def when(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def span(seconds: float) -> str:
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min"


def hours(h: float) -> str:
    return f"{h:g} h"


def choose(gap_hours: float, base: str | None = None, cwd: Path | None = None) -> Choice:
    if base:
        resolved = git("rev-parse", "--verify", "--quiet", f"{base}^{{commit}}", cwd=cwd, ok=(0, 1)).strip()
        if not resolved:
            raise Failure(
                f"MUTANTS_BASE={base} names no commit in this clone (a shallow clone? fetch the full "
                "history), or leave MUTANTS_BASE unset to compute the base"
            )
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", resolved, "HEAD"], cwd=cwd).returncode == 0
        count = int(git("rev-list", "--count", "--first-parent", f"{resolved}..HEAD", cwd=cwd))
        note = "" if ancestor else " (not an ancestor of HEAD: the diff is still from it to the working tree)"
        since = f"{count} first-parent commit{'' if count == 1 else 's'} since, and any uncommitted change"
        return Choice(resolved, f"given by MUTANTS_BASE={base}{note}; the change is the {since}", count)

    commits = first_parent_history(cwd)
    gap = newest_gap(commits, gap_hours * 3600)
    if gap is not None:
        i, start = gap
        older, newer, head = commits[i + 1], commits[i], commits[0]
        reason = (
            f"the commit before the newest pause of more than {hours(gap_hours)} in first-parent history "
            f"({span(newer.time - start)}, from {when(start)} to {when(newer.time)}); "
            f"the change is the {i + 1} commit{'s' if i else ''} since ({when(newer.time)} to {when(head.time)}) "
            "and any uncommitted change"
        )
        return Choice(older.sha, reason, i + 1)

    shallow = git("rev-parse", "--is-shallow-repository", cwd=cwd).strip() == "true"
    if shallow:
        raise Failure(
            f"this clone is shallow ({len(commits)} first-parent commits) and has no pause of more than "
            f"{hours(gap_hours)}: the change may start before its history. Fetch the full history "
            "(`git fetch --unshallow`), set MUTANTS_BASE=<commit>, or run the full `make mutants`"
        )
    empty_tree = git("hash-object", "-t", "tree", "--stdin", cwd=cwd).strip()
    reason = (
        f"no pause of more than {hours(gap_hours)} in the whole first-parent history ({len(commits)} commits "
        "back to the root): the change is everything, the empty tree is the base (the same mutants as "
        "`make mutants`); set MUTANTS_BASE=<commit> for less"
    )
    return Choice(empty_tree, reason, len(commits))


def diff(base: str, paths: list[str], cwd: Path | None = None) -> str:
    """From base to the working tree, untracked files under paths included (as new files)."""
    fixed = ["--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/"]
    text = git("diff", *fixed, base, "--", *paths, cwd=cwd)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", *paths, cwd=cwd)
    for path in filter(None, untracked.split("\0")):
        text += git("diff", *fixed, "--no-index", "--", "/dev/null", path, cwd=cwd, ok=(0, 1))
    return text


def count(diff_text: str) -> tuple[int, int, int]:
    """Added or changed lines, removed lines, files."""
    added = removed = files = 0
    in_hunk = False
    for line in diff_text.splitlines():
        if line.startswith("diff --git "):
            files += 1
            in_hunk = False
        elif line.startswith("@@"):
            in_hunk = True
        elif in_hunk and line.startswith("+"):
            added += 1
        elif in_hunk and line.startswith("-"):
            removed += 1
    return added, removed, files


def describe(base: str, cwd: Path | None = None) -> str:
    """`<short hash> <committer time> "<subject>"`, or the empty tree's hash and what it is."""
    out = git("log", "-1", "--format=%h%x00%ct%x00%s", base, cwd=cwd, ok=(0, 128))
    if not out.strip():
        return f"{base[:7]} (the empty tree)"
    short, time, subject = out.rstrip("\n").split("\0", 2)
    return f'{short} ({when(int(time))}) "{subject}"'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="", help="a commit to use instead (MUTANTS_BASE)")
    parser.add_argument("--gap-hours", type=float, default=3.0, help="a longer pause ends a burst (3)")
    parser.add_argument("--diff", type=Path, help="write the diff from the base here")
    parser.add_argument("--paths", nargs="+", default=["src"], help="paths to diff (src)")
    parser.add_argument("--print", action="store_true", help="print only the base's full hash")
    args = parser.parse_args(argv)
    try:
        choice = choose(args.gap_hours, args.base or None)
        if args.print:
            print(choice.base)
            return 0
        print(f"{PREFIX} base {describe(choice.base)}")
        print(f"{PREFIX}   why: {choice.reason}")
        if args.diff:
            text = diff(choice.base, args.paths)
            args.diff.parent.mkdir(parents=True, exist_ok=True)
            args.diff.write_text(text)
            added, removed, files = count(text)
            print(
                f"{PREFIX} {added} added or changed lines and {removed} removed, in {files} "
                f"file{'' if files == 1 else 's'} of {' '.join(args.paths)} ({args.diff})"
            )
        return 0
    except Failure as failure:
        print(f"{PREFIX} {failure}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
