"""scripts/mutants_base.py (make mutants-diff's base) on throwaway git repositories whose
commits are made at chosen times (GIT_COMMITTER_DATE)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutants_base.py"
HOUR = 3600
T0 = 1_795_910_400  # 2026-11-29 00:00 UTC: the times below are offsets from it


def env(when: int | None = None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    e.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t",
             GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
             GIT_COMMITTER_EMAIL="t@example.invalid", TZ="UTC")
    if when is not None:
        e["GIT_AUTHOR_DATE"] = e["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    return e


def git(repo: Path, *args: str, when: int | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=env(when), check=True,
                          capture_output=True, text=True).stdout.strip()


class Repo:
    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", "main")
        (path / "src").mkdir()
        self.n = 0

    def commit(self, when: int, path: str = "src/lib.rs") -> str:
        """A commit at T0 + when adding one line to path; its hash."""
        self.n += 1
        file = self.path / path
        file.parent.mkdir(parents=True, exist_ok=True)
        with file.open("a") as f:
            f.write(f"fn f{self.n}() {{}}\n")
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", f"commit {self.n}", when=T0 + when)
        return git(self.path, "rev-parse", "HEAD")

    def commits(self, *times: float) -> list[str]:
        return [self.commit(int(t)) for t in times]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=self.path, env=env(),
                              capture_output=True, text=True)

    def base(self, *args: str) -> str:
        proc = self.run("--print", *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def test_the_base_is_the_commit_before_the_newest_pause(repo: Repo, tmp_path: Path):
    # Two earlier sessions, then the latest: 09:00-11:00, a 7 h pause, 18:00-19:00, a day's pause, 10:00-11:30.
    first = repo.commits(9 * HOUR, 10 * HOUR, 11 * HOUR)
    second = repo.commits(18 * HOUR, 18.5 * HOUR, 19 * HOUR)
    repo.commits(34 * HOUR, 34.75 * HOUR, 35.5 * HOUR)
    assert repo.base() == second[-1]
    proc = repo.run("--diff", str(tmp_path / "d.diff"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"base {second[-1][:7]} (2026-11-29 19:00 UTC) \"commit 6\"" in out
    assert "newest pause of more than 1 h" in out and "(15 h 00 min, from 2026-11-29 19:00 UTC" in out
    assert "the change is the 3 commits since" in out
    assert ("3 added or changed lines (0 of them moved unchanged, left out) and 0 removed (0 of them moved, "
            "left out), in 1 file of src") in out
    diff = (tmp_path / "d.diff").read_text()
    assert "+fn f7() {}" in diff and "+fn f9() {}" in diff and "+fn f6" not in diff
    assert first  # the older session is not the base


def test_a_pause_of_exactly_the_threshold_does_not_end_a_burst(repo: Repo):
    a, b, c, d, e = repo.commits(0, 5 * HOUR, 6 * HOUR, 7 * HOUR, 7.5 * HOUR)  # pauses 5, 1, 1, 0.5 h
    assert repo.base() == a  # "more than 1 h" (the default): only the 5 h pause
    assert repo.base("--gap-hours", "0.9") == c


def test_the_threshold_is_a_setting(repo: Repo):
    a, b, c = repo.commits(0, 2 * HOUR, 2.5 * HOUR)  # pauses 2 h, then 30 min
    assert repo.base("--gap-hours", "0.25") == b
    assert repo.base("--gap-hours", "1") == a
    assert repo.base("--gap-hours", "3") == git(repo.path, "hash-object", "-t", "tree", "/dev/null")


def test_sessions_closer_than_the_threshold_are_one_change(repo: Repo):
    # A session starting 45 min after the previous one ended is taken with it (more mutants,
    # never fewer); one starting exactly an hour after, too ("more than 1 h").
    before = repo.commits(0)
    repo.commits(20 * HOUR, 20.5 * HOUR, 21.25 * HOUR, 21.5 * HOUR, 22.5 * HOUR)
    assert repo.base() == before[0]


def test_committer_times_that_go_backwards_are_no_pause(repo: Repo):
    before = repo.commits(0)
    repo.commits(10 * HOUR, 5 * HOUR, 10.5 * HOUR)  # a clock set back mid-burst, then right again
    assert repo.base() == before[0]  # not the commit "at 5 h", 5.5 h before the next one


def test_first_parent_history_only(repo: Repo):
    # A branch with commits from long ago merged into the latest burst: its old times make no
    # pause, and its lines are part of the change.
    base = repo.commits(0)[0]
    git(repo.path, "checkout", "-q", "-b", "side")
    repo.commit(1 * HOUR, "src/side.rs")
    git(repo.path, "checkout", "-q", "main")
    repo.commits(30 * HOUR)
    git(repo.path, "merge", "-q", "--no-ff", "-m", "merge", "side", when=T0 + 31 * HOUR)
    repo.commits(31.5 * HOUR)
    proc = repo.run("--diff", str(repo.path / "d.diff"))
    # The pause is 1 h -> 30 h on main's own line (0 -> 30 h); the side commit at 1 h is not on it.
    assert repo.base() == base
    assert "the change is the 3 commits since" in proc.stdout
    assert "+fn f2() {}" in (repo.path / "d.diff").read_text()


def test_no_pause_at_all_is_the_whole_history_from_the_empty_tree(repo: Repo, tmp_path: Path):
    repo.commits(0, 1 * HOUR, 2 * HOUR)
    empty_tree = git(repo.path, "hash-object", "-t", "tree", "/dev/null")
    assert repo.base() == empty_tree
    proc = repo.run("--diff", str(tmp_path / "d.diff"))
    assert "no pause of more than 1 h in the whole first-parent history (3 commits back to the root)" in proc.stdout
    assert "the same mutants as `make mutants`" in proc.stdout
    assert "3 added or changed lines" in proc.stdout


def test_uncommitted_and_untracked_changes_count(repo: Repo, tmp_path: Path):
    before = repo.commits(0)[0]
    repo.commits(10 * HOUR)
    with (repo.path / "src/lib.rs").open("a") as f:
        f.write("fn edited() {}\n")
    (repo.path / "src/new.rs").write_text("fn new_a() {}\nfn new_b() {}\n")
    (repo.path / "README").write_text("not in src\n")
    proc = repo.run("--diff", str(tmp_path / "d.diff"))
    assert proc.returncode == 0, proc.stderr
    assert f"base {before[:7]}" in proc.stdout
    assert "4 added or changed lines (0 of them moved unchanged, left out) and 0 removed" in proc.stdout
    assert "in 2 files of src" in proc.stdout
    diff = (tmp_path / "d.diff").read_text()
    assert "+++ b/src/new.rs" in diff and "+fn edited() {}" in diff and "not in src" not in diff


def test_mutants_base_overrides(repo: Repo):
    a = repo.commits(0, 10 * HOUR, 11 * HOUR)
    assert repo.base("--base", a[0]) == a[0]
    assert repo.base("--base", "HEAD~2") == a[0]
    proc = repo.run("--base", "HEAD~1")
    assert "given by MUTANTS_BASE=HEAD~1; the change is the 1 first-parent commit since" in proc.stdout
    bad = repo.run("--base", "no-such-commit")
    assert bad.returncode == 1
    assert "MUTANTS_BASE=no-such-commit names no commit in this clone" in bad.stderr


def test_a_shallow_clone_without_the_pause_fails_and_says_what_to_do(repo: Repo, tmp_path: Path):
    repo.commits(0, 10 * HOUR, 11 * HOUR, 12 * HOUR)
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{repo.path}", str(shallow)],
                   env=env(), check=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--print"], cwd=shallow, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "this clone is shallow (2 first-parent commits)" in proc.stderr
    assert "git fetch --unshallow" in proc.stderr and "MUTANTS_BASE" in proc.stderr
    assert "make mutants" in proc.stderr


def test_a_shallow_clone_deep_enough_has_its_base(repo: Repo, tmp_path: Path):
    a = repo.commits(-20 * HOUR, 0, 10 * HOUR, 11 * HOUR, 12 * HOUR)[1:]
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "4", f"file://{repo.path}", str(shallow)],
                   env=env(), check=True)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--print"], cwd=shallow, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == a[0]


# Code moved unchanged: left out of the diff (git's move detection: blocks of at least 20
# alphanumeric characters, a change of indentation allowed).

HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
KEEP = "pub fn keep() -> u32 {\n    1\n}\n"
STAYS = """\
pub fn stays(limit: u32) -> u32 {
    debug_assert!(limit < 1_000_000);
    limit * 2 + 1
}
"""
CHECKSUM = """\
fn checksum(bytes: &[u8]) -> u32 {
    let mut total: u32 = 0;
    for byte in bytes {
        total = total.wrapping_mul(31).wrapping_add(u32::from(*byte));
    }
    let folded = total ^ (total >> 16);
    folded.rotate_left(5)
}
"""
CLAMP = """\
pub fn clamp_expiry(requested: u64, ceiling: u64) -> u64 {
    if requested == 0 {
        return ceiling.min(3600);
    }
    requested.min(ceiling)
}
"""
TEST_CLAMP = """\
#[test]
fn zero_takes_the_ceiling_up_to_an_hour() {
    assert_eq!(super::clamp_expiry(0, 7200), 3600);
    assert_eq!(super::clamp_expiry(10, 7200), 10);
}
"""


def indent(text: str) -> str:
    return "".join("    " + line if line.strip() else line for line in text.splitlines(True))


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def change(repo: Repo, files: dict[str, str | None], when: int | None = None) -> str:
    """Writes (None: deletes) files; commits them at T0 + when if given; HEAD's hash."""
    for path, text in files.items():
        file = repo.path / path
        if text is None:
            file.unlink()
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(text)
    if when is not None:
        git(repo.path, "add", "-A")
        git(repo.path, "commit", "-q", "-m", f"at {when}", when=T0 + when)
    return git(repo.path, "rev-parse", "HEAD")


@dataclass
class Written:
    stdout: str
    text: str
    added: list[tuple[str, str]]  # (path, text) of the '+' lines
    removed: list[str]  # text of the '-' lines
    affected: dict[str, list[int]]  # lines cargo-mutants counts as changed, by path


def check_diff(root: Path, text: str) -> tuple[list[tuple[str, str]], list[str], dict[str, list[int]]]:
    """What cargo-mutants 27.1.0 (src/in_diff.rs, parsing with flickzeug) makes of a diff, strictly:
    each hunk's lines are exactly as many as its header says (read by the counts, the next line
    starts a hunk or a file, or ends the diff), hunks are in order without overlap, and the new
    side's text (context and added lines) equals the working tree's lines at their new-side line
    numbers (check_diff_new_text_matches/partial_new_file). Returns the added lines, the removed
    lines and, by path, the lines counted as changed (affected_lines): added lines and the lines
    either side of removed ones."""
    lines = text.split("\n")
    assert lines.pop() == "", "a diff ends with a newline"
    added: list[tuple[str, str]] = []
    removed: list[str] = []
    affected: dict[str, list[int]] = {}
    path: str | None = None
    source: list[str] = []
    ends: tuple[int, int] | None = None  # the previous hunk's old and new ends
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("diff --git "):
            path, ends = None, None
            continue
        if line.startswith("+++ "):
            path = None if line == "+++ /dev/null" else line[4:].removeprefix("b/")
            file = root / path if path else None
            # As cargo-mutants reads a source file (Rust's str::lines).
            source = [s.removesuffix("\r") for s in file.read_text().split("\n")] if file and file.exists() else []
            if source and source[-1] == "":
                source.pop()
            continue
        if not line.startswith("@@ "):
            continue
        match = HUNK.match(line)
        assert match, line
        old_start, new_start = int(match[1]), int(match[3])
        old_len, new_len = (1 if n is None else int(n) for n in (match[2], match[4]))
        if ends is not None:
            assert ends[0] <= old_start and ends[1] <= new_start, f"hunks out of order: {line}"
        ends = (old_start + old_len, new_start + new_len)
        old_seen = new_seen = 0
        lineno = new_start
        prev_removed = False
        sign = ""
        ended = ""  # as flickzeug: after "\\ No newline at end of file", no more "+" (or "-") lines,
        # or none at all after a context line
        touched = affected.setdefault(path or "/dev/null", [])
        while old_seen < old_len or new_seen < new_len or (i < len(lines) and lines[i].startswith("\\")):
            assert i < len(lines), f"the hunk {line} runs past the end of the diff"
            body = lines[i]
            i += 1
            assert ended != " ", f"{body!r} after a context line with no newline at its end, in the hunk {line}"
            if body.startswith("\\"):
                assert sign, f"{body!r} first in the hunk {line}"
                ended += sign
                continue
            sign, content = body[:1], body[1:]
            assert sign in " +-", f"{body!r} in the hunk {line}: the counts are wrong"
            assert sign not in ended, f"{body!r} after a {sign!r} line with no newline at its end, in the hunk {line}"
            if sign == "-":
                old_seen += 1
                removed.append(content)
                if lineno > 1 and (not touched or touched[-1] != lineno - 1):
                    touched.append(lineno - 1)
                prev_removed = True
                continue
            if prev_removed:
                if not touched or touched[-1] != lineno:
                    touched.append(lineno)
                prev_removed = False
            if path is not None and (root / path).exists():
                have = source[lineno - 1] if lineno <= len(source) else ""
                assert content == have, f"{path} line {lineno}: diff has {content!r}, source has {have!r}"
            if sign == "+":
                added.append((path or "/dev/null", content))
                if not touched or touched[-1] != lineno:
                    touched.append(lineno)
            else:
                old_seen += 1
            new_seen += 1
            lineno += 1
        assert (old_seen, new_seen) == (old_len, new_len), f"the hunk {line} has {old_seen}, {new_seen} lines"
        assert i == len(lines) or lines[i].startswith(("@@ ", "diff --git ")), (
            f"the hunk {line} is followed by {lines[i]!r}: its counts are too small")
    return added, removed, {p: a for p, a in affected.items() if a}


def written(repo: Repo, tmp_path: Path, *args: str) -> Written:
    out = tmp_path / "d.diff"
    proc = repo.run("--diff", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    return Written(proc.stdout, text, *check_diff(repo.path, text))


def plain_diff(repo: Repo, base: str) -> str:
    """The diff as it was written before moved code was left out (tracked files)."""
    return subprocess.run(["git", "diff", "--no-color", "--no-ext-diff", "--src-prefix=a/", "--dst-prefix=b/",
                           base, "--", "src"], cwd=repo.path, env=env(), check=True, capture_output=True,
                          text=True).stdout


def test_a_function_moved_verbatim_to_another_file_is_left_out(repo: Repo, tmp_path: Path):
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM}, when=0)
    change(repo, {"src/lib.rs": "mod checks;\n\n" + KEEP + "\n" + STAYS, "src/checks.rs": CHECKSUM}, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base)
    # Only the `mod` line and a blank line are added; the blank line before the moved function
    # was not moved (src/checks.rs starts with the function) and is still removed.
    assert w.added == [("src/lib.rs", "mod checks;"), ("src/lib.rs", "")]
    assert w.removed == [""]
    assert "checksum" not in w.text  # src/checks.rs, all moved, is left out, and so are its old lines
    assert ("10 added or changed lines (8 of them moved unchanged, left out) and 9 removed "
            "(8 of them moved, left out), in 2 files of src") in w.stdout
    assert "src/checks.rs" not in w.affected


def test_a_function_moved_with_a_change_of_indentation_is_left_out(repo: Repo, tmp_path: Path):
    # Into a module (indented), and an inline test module to a file of its own (dedented).
    inline_tests = "#[cfg(test)]\nmod tests {\n" + indent(TEST_CLAMP) + "}\n"
    base = change(repo, {"src/lib.rs": KEEP + "\n" + CLAMP + "\n" + inline_tests}, when=0)
    change(repo, {
        "src/lib.rs": "mod expiry;\n\n" + KEEP + "\n#[cfg(test)]\nmod tests;\n",
        "src/expiry.rs": "pub mod policy {\n" + indent(CLAMP) + "}\n",
        "src/tests.rs": TEST_CLAMP,
    }, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base)
    added = [text for _, text in w.added]
    assert "mod expiry;" in added and "mod tests;" in added and "pub mod policy {" in added
    assert not [text for text in added if "clamp" in text or "assert_eq" in text or "requested" in text]
    assert not [text for text in w.removed if "clamp" in text or "assert_eq" in text or "requested" in text]
    assert "src/tests.rs" not in w.text  # all moved
    # In src/expiry.rs only the module's own lines count as changed, not the function's.
    assert w.affected["src/expiry.rs"] == [1, len(lines_of(CLAMP)) + 2]
    assert f"({len(lines_of(CLAMP)) + len(lines_of(TEST_CLAMP))} of them moved unchanged, left out)" in w.stdout


def test_a_moved_function_with_one_changed_line_keeps_that_line(repo: Repo, tmp_path: Path):
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM}, when=0)
    edited = CHECKSUM.replace("wrapping_mul(31)", "wrapping_mul(37)")
    change(repo, {"src/lib.rs": "mod checks;\n\n" + KEEP + "\n" + STAYS, "src/checks.rs": edited}, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base)
    changed_line = "        total = total.wrapping_mul(37).wrapping_add(u32::from(*byte));"
    assert ("src/checks.rs", changed_line) in w.added
    assert [a for a in w.added if a[0] == "src/checks.rs"] == [("src/checks.rs", changed_line)]
    assert w.affected["src/checks.rs"] == [4]  # that line alone, at its place in the new file
    assert "        total = total.wrapping_mul(31).wrapping_add(u32::from(*byte));" in w.removed
    assert "7 of them moved unchanged, left out" in w.stdout


def test_a_deleted_line_that_was_not_moved_still_appears(repo: Repo, tmp_path: Path):
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM}, when=0)
    change(repo, {
        "src/lib.rs": "mod checks;\n\n" + KEEP + "\n" + STAYS.replace("    debug_assert!(limit < 1_000_000);\n", ""),
        "src/checks.rs": CHECKSUM,
    }, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base)
    assert "-    debug_assert!(limit < 1_000_000);" in w.text.splitlines()
    # Its neighbours in the new file (`pub fn stays` at line 7, `limit * 2 + 1` at 8) count as changed.
    assert {7, 8} <= set(w.affected["src/lib.rs"])
    new = (repo.path / "src/lib.rs").read_text().splitlines()
    assert new[6].startswith("pub fn stays") and new[7] == "    limit * 2 + 1"


def test_a_move_only_change_gives_no_changed_line(repo: Repo, tmp_path: Path):
    # A function moved from the end of one file to the end of another (with the blank line before
    # it) and a file moved into a folder unchanged (a rename).
    other = "pub fn other() -> u32 {\n    3\n}\n"
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM, "src/other.rs": other,
                         "src/util.rs": CLAMP}, when=0)
    change(repo, {"src/lib.rs": KEEP + "\n" + STAYS, "src/other.rs": other + "\n" + CHECKSUM,
                  "src/util.rs": None, "src/util/mod.rs": CLAMP}, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base)
    assert w.added == [] and w.removed == [] and w.affected == {}
    assert "@@" not in w.text
    assert "rename from src/util.rs\nrename to src/util/mod.rs\n" in w.text  # as git prints it
    assert "9 added or changed lines (9 of them moved unchanged, left out) and 9 removed (9 of them moved" in w.stdout


def test_the_rewritten_hunks_are_consistent_and_match_the_working_tree(repo: Repo, tmp_path: Path):
    # Several hunks in one file, functions moved within it, a file renamed and edited, files with
    # no newline at their end, and uncommitted edits: check_diff (in written) reads every hunk by
    # its counts and compares its new side with the working tree.
    filler = "".join(f"pub fn filler_{n}() -> u32 {{\n    {n}\n}}\n\n" for n in range(8))
    alpha = "pub fn alpha_value() -> u64 {\n    u64::from(u32::MAX) * 3\n}\n"
    beta = "pub fn beta_value() -> u64 {\n    u64::from(u16::MAX) + 7\n}\n"
    gamma = "pub fn gamma_value() -> u64 {\n    u64::from(u8::MAX) << 9\n}\n"
    base = change(repo, {
        "src/lib.rs": CHECKSUM + "\n" + filler + CLAMP + "\n" + filler.replace("filler", "more") + STAYS + "\n"
                      + filler.replace("filler", "last") + alpha + beta,
        "src/old_name.rs": KEEP + "\n" + TEST_CLAMP,
        "src/tail.rs": "pub fn tail() -> u32 {\n    4\n}",
        "src/end.rs": KEEP + "\n" + gamma.rstrip("\n"),
        "src/other.rs": "pub fn x() {}\n",
    }, when=0)
    change(repo, {
        "src/lib.rs": CLAMP + "\n" + filler + "pub fn added() {}\n\n" + CHECKSUM + "\n"
                      + filler.replace("filler", "more") + STAYS.replace("* 2", "* 3") + "\n"
                      + filler.replace("filler", "last") + beta + alpha,
        "src/old_name.rs": None,
        "src/new_name.rs": KEEP.replace("1", "10") + "\n" + TEST_CLAMP,
        "src/tail.rs": "pub fn tail() -> u32 {\n    5\n}",
        "src/end.rs": KEEP,  # its last line, moved, had no newline: the marker goes with it
        "src/other.rs": "pub fn x() {}\n" + gamma,
    }, when=10 * HOUR)
    sum = "fn sum(values: &[u32]) -> u32 {\n    values.iter().sum()\n}\n"
    change(repo, {"src/tail.rs": "pub fn tail() -> u32 {\n    6\n}\n" + sum})  # not committed
    w = written(repo, tmp_path, "--base", base)
    plain = plain_diff(repo, base)
    assert w.added == [
        # Its old place's line alone has fewer than 20 alphanumeric characters: not a move.
        ("src/lib.rs", "    requested.min(ceiling)"),
        ("src/lib.rs", "pub fn added() {}"), ("src/lib.rs", ""),
        ("src/lib.rs", "    limit * 3 + 1"),
        ("src/new_name.rs", "    10"),
        ("src/tail.rs", "    6"), ("src/tail.rs", "}"), *(("src/tail.rs", line) for line in lines_of(sum)),
    ]
    # The hunk of lib.rs that swapped alpha and beta and that of other.rs, all moves, are left out.
    assert "alpha" in plain and "alpha" not in w.text
    assert "gamma" not in w.text and "src/other.rs" not in w.text
    assert w.text.count("\n@@ ") == plain.count("\n@@ ") - 2 == 6
    assert "rename from src/old_name.rs\nrename to src/new_name.rs\n" in w.text
    assert w.text.count("\\ No newline at end of file") == 1 and plain.count("\\ No newline at end of file") == 2
    # The plain diff's new side, for comparison: the lines counted as changed are among its.
    plain_added, _, plain_affected = check_diff(repo.path, plain)
    assert set(w.added) < set(plain_added)
    for path, lines in w.affected.items():
        assert set(lines) <= set(plain_affected[path])


def test_a_function_moved_up_past_a_nearby_change_gives_hunks_that_do_not_overlap(repo: Repo, tmp_path: Path):
    # A function moved from the end to the top lands in the first hunk, next to a change there;
    # made context, its lines stretched that hunk's old side past the start git gave the next
    # hunk, a few lines on, and cargo-mutants refused the diff ("hunks not in order or
    # overlap"; CI, 2026-12-06). The long middle stays in place, so git moves the function.
    moved = "pub fn long_sum() -> u64 {\n" + "".join(f"    let v{n} = {n}u64 * 3 + 1;\n" for n in range(12)) \
        + "    " + " + ".join(f"v{n}" for n in range(12)) + "\n}\n"
    near = "".join(f"pub fn near_{n}() -> u32 {{\n    {n}\n}}\n\n" for n in range(2))
    middle = "".join(f"pub fn middle_{n}() -> u32 {{\n    {n}\n}}\n\n" for n in range(10))
    base = change(repo, {"src/lib.rs": KEEP + "\n" + near + STAYS + "\n" + middle + moved}, when=0)
    change(repo, {"src/lib.rs": moved + "\n" + KEEP.replace("1", "10") + "\n" + near
                  + STAYS.replace("* 2", "* 3") + "\n" + middle}, when=10 * HOUR)
    plain = plain_diff(repo, base)
    assert plain.count("\n@@ ") == 3 and "+pub fn long_sum" in plain  # git moved the function up
    w = written(repo, tmp_path, "--base", base)  # check_diff: in order, counts right, new side = tree
    assert w.added == [("src/lib.rs", ""), ("src/lib.rs", "    10"), ("src/lib.rs", "    limit * 3 + 1")]
    assert w.text.count("\n@@ ") == 2  # the hunk that only removed the function's old place is gone


def test_keep_moved_writes_the_plain_diff(repo: Repo, tmp_path: Path):
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM}, when=0)
    change(repo, {"src/lib.rs": "mod checks;\n\n" + KEEP + "\n" + STAYS, "src/checks.rs": CHECKSUM}, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base, "--keep-moved")
    assert w.text == plain_diff(repo, base)
    assert [("src/checks.rs", line) for line in lines_of(CHECKSUM)] == [a for a in w.added if a[0] == "src/checks.rs"]
    assert "10 added or changed lines and 9 removed, in 2 files of src" in w.stdout
    assert "moved code kept (--keep-moved)" in w.stdout


def test_code_moved_into_an_untracked_file_is_added_whole(repo: Repo, tmp_path: Path):
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM}, when=0)
    change(repo, {"src/lib.rs": KEEP + "\n" + STAYS, "src/checks.rs": CHECKSUM})  # not committed, not added
    w = written(repo, tmp_path, "--base", base)
    assert [a for a in w.added if a[0] == "src/checks.rs"] == [("src/checks.rs", line) for line in lines_of(CHECKSUM)]
    assert "fn checksum(bytes: &[u8]) -> u32 {" in w.removed  # its old place: no move seen
    assert "(0 of them moved unchanged, left out)" in w.stdout


def test_a_coloured_diff_that_does_not_line_up_gives_the_plain_diff(repo: Repo, tmp_path: Path):
    # A line holding an escape sequence of its own cannot be told from git's colours: the plain
    # diff is written, moved code and all, and the script says why.
    base = change(repo, {"src/lib.rs": KEEP + "\n" + STAYS + "\n" + CHECKSUM}, when=0)
    change(repo, {"src/lib.rs": 'const BOLD: &str = "\x1b[1m";\n\n' + KEEP + "\n" + STAYS,
                  "src/checks.rs": CHECKSUM}, when=10 * HOUR)
    w = written(repo, tmp_path, "--base", base)
    assert "moved code kept: git's move detection did not line up with the plain diff (line" in w.stdout
    assert "the plain diff is written" in w.stdout
    assert w.text == subprocess.run(["git", "diff", "-M", "--no-color", "--no-ext-diff", "--src-prefix=a/",
                                     "--dst-prefix=b/", base, "--", "src"], cwd=repo.path, env=env(),
                                    check=True, capture_output=True, text=True).stdout
    assert ("src/checks.rs", "fn checksum(bytes: &[u8]) -> u32 {") in w.added


def move_out_of_glue(repo: Repo, tmp_path: Path, excluded: str) -> Written:
    """A function moved from src/glue.rs to src/core.rs, with `excluded` the one file that
    .cargo/mutants.toml leaves out of mutation testing."""
    base = change(repo, {
        "src/lib.rs": KEEP,
        "src/glue.rs": STAYS + "\n" + CHECKSUM,
        ".cargo/mutants.toml": f'exclude_globs = ["{excluded}"]\n',
    }, when=0)
    change(repo, {"src/glue.rs": STAYS, "src/core.rs": CHECKSUM}, when=10 * HOUR)
    return written(repo, tmp_path, "--base", base)


def test_code_moved_out_of_an_untested_file_counts_as_added(repo: Repo, tmp_path: Path):
    # The glue was left out of mutation testing at the base; the same function moved into the
    # tested core was never tested, so it counts as added there. The glue itself (excluded now
    # too) is left out of the diff on both sides.
    w = move_out_of_glue(repo, tmp_path, "src/glue.rs")
    assert "src/glue.rs" not in w.text
    assert w.added == [("src/core.rs", line) for line in lines_of(CHECKSUM)]


def test_code_moved_between_tested_files_is_still_left_out(repo: Repo, tmp_path: Path):
    # The same move with the old file tested: left out as moved (the counterpart of the above).
    w = move_out_of_glue(repo, tmp_path, "src/other.rs")
    assert not [text for _, text in w.added if "checksum" in text]
