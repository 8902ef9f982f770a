#!/usr/bin/env python3
"""The start of the change under test, for `make mutants-diff`, computed from git alone.

Sessions commit straight to main in bursts: many commits within a few hours, then nothing
until the next session; sessions here are separated by at least an hour. The change under test
is the latest burst. Walking first-parent history from HEAD, the base is the commit before the
newest pause of more than an hour (--gap-hours, 1) between consecutive commits' committer
times; the diff is from that base to the working tree, so uncommitted changes count as part of
the latest burst, and so do untracked files under the diffed paths.

- A base given with --base (MUTANTS_BASE=<rev> in make) wins; it must name a commit.
- No such pause in the whole history: the change is everything, the base is the empty tree
  (the same mutants as the full `make mutants`), and the script says so.
- A shallow clone whose history ends before such a pause: the start of the change is not in
  the clone, so the script fails with a message (fetch the full history, give a base, or run
  the full `make mutants`) rather than test a part of the change, or everything, unasked.
- A pause shorter than the threshold does not separate two sessions: two sessions less
  than --gap-hours apart are one change (more mutants, never fewer).

Code moved unchanged is left out of the diff. Moving files into folders, inline test modules
into sibling files or splitting a big file changes no behaviour, yet a plain diff shows every
moved line as added, and cargo-mutants would test nearly every mutant of the crate. So the diff
is made with rename detection (-M) and git's move detection
(`--color-moved=zebra --color-moved-ws=allow-indentation-change`): a line is moved when git
colours it as part of a block of at least 20 alphanumeric characters deleted in one place of
the diff and added without change in another (a change of indentation allowed, as when an
inline `mod tests` goes to a file of its own; a block added in two places, copies of one
deleted block, is moved in both). git runs twice on the same arguments, once plain and once
coloured with colours set here, one colour per kind of line; each added or removed line of the
plain diff takes its coloured twin's verdict (if the two ever fail to line up, the plain diff
is written and the script says so). A moved added line becomes a context line (same text, same
new-side line number: all that cargo-mutants checks, and it no longer counts as changed); a
moved removed line is left out; hunk headers' counts are recomputed; a hunk, or a file, left
with no change is left out. Safe: a moved block's own mutants were tested where it was before
the move; lines changed inside or around it still count, as do removed lines that were not
moved (they mark their neighbours); and the full `make mutants` still tests everything.
Untracked files are added whole, moved code or not. --keep-moved writes the plain diff, as
before.

Code that mutation testing left out counts as new wherever it lands: the files that
`.cargo/mutants.toml`'s `exclude_globs` name, at the base or now (the wasm-only glue, the
binary's `main`), are left out of the diff on both sides, so a block moved from one of them
into the tested core (the request pipeline taken out of the glue, say) has no deleted twin and
is tested as added.

Prints the base, why it was chosen and how many lines changed (and how many of them were moved,
left out); writes the diff (for `cargo mutants --in-diff`) to --diff. --print prints only the
base's full hash.

Usage:
    python3 scripts/mutants_base.py --diff target/mutants-change.diff [--base REV] [--gap-hours 1]
        [--keep-moved]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
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


FIXED = ("--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/")

# The coloured twin's colours, one per kind of line, so that an added or removed line's colour
# says whether git found it moved: added green, removed red, added moved cyan, removed moved
# magenta (zebra's alternative and dimmed colours the same).
COLOURS = {
    "new": "green", "old": "red",
    "newMoved": "cyan", "newMovedAlternative": "cyan",
    "newMovedDimmed": "cyan", "newMovedAlternativeDimmed": "cyan",
    "oldMoved": "magenta", "oldMovedAlternative": "magenta",
    "oldMovedDimmed": "magenta", "oldMovedAlternativeDimmed": "magenta",
    "context": "normal", "frag": "blue", "func": "normal", "meta": "bold",
    "commit": "normal", "whitespace": "normal",
}
SGR = {"green": "32", "red": "31", "cyan": "36", "magenta": "35"}  # their ANSI codes
MOVED_BY_CODE = {  # sign -> {the code its line starts with: whether moved}
    "+": {SGR[COLOURS["new"]]: False, SGR[COLOURS["newMoved"]]: True},
    "-": {SGR[COLOURS["old"]]: False, SGR[COLOURS["oldMoved"]]: True},
}
MOVE_DETECTION = ("--color=always", "--color-moved=zebra", "--color-moved-ws=allow-indentation-change",
                  "--ws-error-highlight=none")
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
LEADING_ESCAPES = re.compile(r"(?:\x1b\[[0-9;]*m)*")
HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)", re.DOTALL)


class Mismatch(Exception):
    """The coloured diff does not line up with the plain one, or the plain one is not as expected."""


@dataclass
class Change:
    text: str  # the diff to write
    added: int  # added or changed lines of the change, moved ones included
    removed: int
    files: int
    moved_added: int = 0  # of them, moved unchanged: left out of text
    moved_removed: int = 0
    moves: str = "left out"  # or what was done with moved code, and why


def git_raw(*args: str, cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> str:
    """git's output as it is: no newline translation, bytes that are not UTF-8 kept (written back
    as they were)."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if proc.returncode not in ok:
        raise Failure(f"`git {' '.join(args)}` failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode("utf-8", "surrogateescape")


def split(text: str) -> list[str]:
    """A diff's lines, split at newlines only (a carriage return or form feed is text)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def twin_codes(plain: list[str], coloured: list[str]) -> list[str]:
    """For each line of the plain diff, the ANSI codes its coloured twin starts with, ";"-joined;
    Mismatch unless the twin is the same line once its colours are taken out."""
    if len(plain) != len(coloured):
        raise Mismatch(f"{len(plain)} lines plain, {len(coloured)} coloured")
    codes = []
    for number, (line, twin) in enumerate(zip(plain, coloured), 1):
        if ESCAPE.sub("", twin) != line:
            raise Mismatch(f"line {number} is {line[:60]!r} plain, {twin[:60]!r} coloured")
        lead = LEADING_ESCAPES.match(twin).group(0)
        codes.append(";".join(code for code in re.findall(r"[0-9;]+", lead)))
    return codes


def is_moved(line: str, codes: str, number: int) -> bool:
    """Whether an added or removed line was coloured as moved."""
    known = MOVED_BY_CODE[line[0]]
    verdicts = {known[code] for code in codes.split(";") if code in known}
    if len(verdicts) != 1:
        raise Mismatch(f"line {number} ({line[:60]!r}) is coloured {codes!r}: neither moved nor not")
    return verdicts.pop()


def leave_out_moved(plain: list[str], codes: list[str]) -> tuple[list[str], int, int]:
    """The plain diff's lines with moved added lines made context lines and moved removed lines
    dropped, each hunk's counts recomputed, hunks and files left with no change dropped; and how
    many added and removed lines were moved.

    A hunk's new side is kept as it is (its start, and its lines as the working tree has them).
    Its old side is the file as the rewritten diff describes it (moved added lines now context,
    moved removed lines gone), so its start is recomputed from the new start and the lines the
    file's earlier kept hunks added and removed: with the starts git gave, a hunk whose moved
    added lines became context could reach past the next hunk's old start, and cargo-mutants
    refuses overlapping hunks."""
    out: list[str] = []
    moved_added = moved_removed = 0
    header: list[str] = []  # the current file's lines before its first hunk
    hunks: list[str] = []  # its hunks, rewritten
    had_hunks = False
    offset = 0  # lines the current file's kept hunks so far added, less those they removed

    def flush() -> None:
        if hunks or not had_hunks:  # a file all of whose hunks were moves is left out
            out.extend(header + hunks)

    i = 0
    while i < len(plain):
        line = plain[i]
        if line.startswith("diff --git "):
            flush()
            header, hunks, had_hunks = [line], [], False
            offset = 0  # lines the file's kept hunks so far added, less those they removed
            i += 1
            continue
        match = HUNK.fullmatch(line) if line.startswith("@@ ") else None
        if match is None:
            if had_hunks:
                raise Mismatch(f"line {i + 1} ({line[:60]!r}) follows a hunk")
            header.append(line)
            i += 1
            continue
        had_hunks = True
        old_start, old_len, new_start, new_len, tail = match.groups()
        old_len = 1 if old_len is None else int(old_len)
        new_len = 1 if new_len is None else int(new_len)
        old_seen = new_seen = context = removed = added = 0
        body: list[str] = []
        kept = True  # whether the line before a "\ No newline at end of file" was kept
        i += 1
        while i < len(plain) and (old_seen < old_len or new_seen < new_len or plain[i].startswith("\\")):
            line = plain[i]
            sign = line[:1]
            if sign == "\\":
                if kept:
                    body.append(line)
            elif sign in (" ", ""):
                old_seen, new_seen, context, kept = old_seen + 1, new_seen + 1, context + 1, True
                body.append(line)
            elif sign == "+":
                new_seen += 1
                kept = True
                if is_moved(line, codes[i], i + 1):
                    moved_added += 1
                    context += 1
                    body.append(" " + line[1:])
                else:
                    added += 1
                    body.append(line)
            elif sign == "-":
                old_seen += 1
                kept = not is_moved(line, codes[i], i + 1)
                if kept:
                    removed += 1
                    body.append(line)
                else:
                    moved_removed += 1
            else:
                raise Mismatch(f"line {i + 1} ({line[:60]!r}) in a hunk")
            i += 1
        if (old_seen, new_seen) != (old_len, new_len):
            raise Mismatch(f"the hunk ending at line {i} does not match its header")
        if added or removed:
            old_count, new_count = context + removed, context + added
            # A range's start is its first line, or the line before it when it is empty.
            first_new = int(new_start) + (0 if new_len else 1)
            first_old = first_new - offset
            old_from = first_old if old_count else first_old - 1
            new_from = first_new if new_count else first_new - 1
            hunks.append(f"@@ -{old_from},{old_count} +{new_from},{new_count} @@{tail}")
            hunks.extend(body)
            offset += added - removed
    flush()
    return out, moved_added, moved_removed


def untested(base: str, cwd: Path | None = None) -> list[str]:
    """The `exclude_globs` of .cargo/mutants.toml at base and in the working tree (either may be
    missing), as exclusion pathspecs: code cargo-mutants did not test, or does not test now."""
    import tomllib

    texts = [git("show", f"{base}:.cargo/mutants.toml", cwd=cwd, ok=(0, 128))]
    current = (cwd or Path(".")) / ".cargo" / "mutants.toml"
    if current.is_file():
        texts.append(current.read_text())
    globs: list[str] = []
    for text in texts:
        try:
            found = tomllib.loads(text).get("exclude_globs", []) if text.strip() else []
        except tomllib.TOMLDecodeError as e:
            raise Failure(f".cargo/mutants.toml does not parse: {e}") from e
        globs += [g for g in found if isinstance(g, str) and g not in globs]
    return [f":(glob,exclude){g}" for g in globs]


def diff(base: str, paths: list[str], cwd: Path | None = None, keep_moved: bool = False) -> Change:
    """From base to the working tree, untracked files under paths included (as new files); code
    moved unchanged left out unless keep_moved; the files mutation testing leaves out (at base or
    now) left out on both sides."""
    paths = [*paths, *untested(base, cwd)]
    if keep_moved:
        plain = git_raw("diff", "--no-color", *FIXED, base, "--", *paths, cwd=cwd)
        written, moved_added, moved_removed, moves = plain, 0, 0, "kept (--keep-moved)"
    else:
        args = (*FIXED, "-M", base, "--", *paths)
        plain = git_raw("diff", "--no-color", *args, cwd=cwd)
        colours = [arg for slot, colour in COLOURS.items() for arg in ("-c", f"color.diff.{slot}={colour}")]
        coloured = git_raw(*colours, "diff", *MOVE_DETECTION, *args, cwd=cwd)
        try:
            lines = split(plain)
            kept_lines, moved_added, moved_removed = leave_out_moved(lines, twin_codes(lines, split(coloured)))
            written, moves = "".join(line + "\n" for line in kept_lines), "left out"
        except Mismatch as why:
            written, moved_added, moved_removed = plain, 0, 0
            moves = f"kept: git's move detection did not line up with the plain diff ({why}); the plain diff is written"
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", "--", *paths, cwd=cwd)
    for path in filter(None, untracked.split("\0")):
        new_file = git_raw("diff", "--no-color", *FIXED, "--no-index", "--", "/dev/null", path, cwd=cwd, ok=(0, 1))
        plain += new_file
        written += new_file
    added, removed, files = count(plain)
    return Change(written, added, removed, files, moved_added, moved_removed, moves)


def count(diff_text: str) -> tuple[int, int, int]:
    """Added or changed lines, removed lines, files."""
    added = removed = files = 0
    in_hunk = False
    for line in split(diff_text):
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
    parser.add_argument("--gap-hours", type=float, default=1.0, help="a longer pause ends a burst (1)")
    parser.add_argument("--diff", type=Path, help="write the diff from the base here")
    parser.add_argument("--paths", nargs="+", default=["src"], help="paths to diff (src)")
    parser.add_argument("--print", action="store_true", help="print only the base's full hash")
    parser.add_argument("--keep-moved", action="store_true",
                        help="keep code moved unchanged in the diff (the plain diff, as before)")
    args = parser.parse_args(argv)
    try:
        choice = choose(args.gap_hours, args.base or None)
        if args.print:
            print(choice.base)
            return 0
        print(f"{PREFIX} base {describe(choice.base)}")
        print(f"{PREFIX}   why: {choice.reason}")
        if args.diff:
            change = diff(choice.base, args.paths, keep_moved=args.keep_moved)
            args.diff.parent.mkdir(parents=True, exist_ok=True)
            args.diff.write_bytes(change.text.encode("utf-8", "surrogateescape"))
            where = (f"in {change.files} file{'' if change.files == 1 else 's'} of {' '.join(args.paths)} "
                     f"({args.diff})")
            if change.moves == "left out":
                print(
                    f"{PREFIX} {change.added} added or changed lines ({change.moved_added} of them moved "
                    f"unchanged, left out) and {change.removed} removed ({change.moved_removed} of them moved, "
                    f"left out), {where}"
                )
            else:
                print(f"{PREFIX} {change.added} added or changed lines and {change.removed} removed, {where}")
                print(f"{PREFIX}   moved code {change.moves}")
        return 0
    except Failure as failure:
        print(f"{PREFIX} {failure}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
