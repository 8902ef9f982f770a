"""scripts/mutants_base.py (make mutants-diff's base) on throwaway git repositories whose
commits are made at chosen times (GIT_COMMITTER_DATE)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    assert "newest pause of more than 3 h" in out and "(15 h 00 min, from 2026-11-29 19:00 UTC" in out
    assert "the change is the 3 commits since" in out
    assert "3 added or changed lines and 0 removed, in 1 file of src" in out
    diff = (tmp_path / "d.diff").read_text()
    assert "+fn f7() {}" in diff and "+fn f9() {}" in diff and "+fn f6" not in diff
    assert first  # the older session is not the base


def test_a_pause_of_exactly_the_threshold_does_not_end_a_burst(repo: Repo):
    a, b, c, d, e = repo.commits(0, 5 * HOUR, 8 * HOUR, 11 * HOUR, 13 * HOUR)  # pauses 5, 3, 3, 2 h
    assert repo.base() == a  # "more than 3 h": only the 5 h pause
    assert repo.base("--gap-hours", "2.9") == c


def test_the_threshold_is_a_setting(repo: Repo):
    a, b, c = repo.commits(0, 2 * HOUR, 2.5 * HOUR)  # pauses 2 h, then 30 min
    assert repo.base("--gap-hours", "0.25") == b
    assert repo.base("--gap-hours", "1") == a
    assert repo.base("--gap-hours", "3") == git(repo.path, "hash-object", "-t", "tree", "/dev/null")


def test_sessions_closer_than_the_threshold_are_one_change(repo: Repo):
    # Said in README: a session starting 30 min after the previous one ended is taken with it
    # (more mutants, never fewer).
    before = repo.commits(0)
    repo.commits(20 * HOUR, 21 * HOUR, 21.5 * HOUR, 22 * HOUR)
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
    assert "no pause of more than 3 h in the whole first-parent history (3 commits back to the root)" in proc.stdout
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
    assert "4 added or changed lines and 0 removed, in 2 files of src" in proc.stdout
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
