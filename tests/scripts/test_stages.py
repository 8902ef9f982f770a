"""scripts/stages.py (make test's stage runner) on a throwaway Makefile with fake stages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "stages.py"

MAKEFILE = f"""\
test:
\t@{sys.executable} {SCRIPT} --make "$(MAKE)" --name test -- $(STAGES)
quick:
\t@echo quick ran; touch quick.done
slow:
\t@sleep 0.5; echo slow ran; touch slow.done
broken:
\t@echo broken ran; touch broken.done; exit 3
after:
\t@echo after ran; touch after.done
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "Makefile").write_text(MAKEFILE)
    return tmp_path


def make(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=work, capture_output=True, text=True)


def row(out: str, stage: str) -> tuple[str, str]:
    m = re.search(rf"^  {re.escape(stage)} +(\S+)  (.+)$", out, re.M)
    assert m, f"no row for {stage} in:\n{out}"
    return m.group(1), m.group(2)


def test_every_stage_timed_in_order_then_a_table(work: Path):
    proc = make(work, "test", "STAGES=quick slow after")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    order = [out.index(s) for s in ("==> test [1/3]: quick", "quick ran", "<== quick: ok in",
                                     "==> test [2/3]: slow", "slow ran", "<== slow: ok in",
                                     "==> test [3/3]: after", "<== after: ok in", "test: stage timings")]
    assert order == sorted(order)
    assert float(row(out, "slow")[0]) >= 0.5 and row(out, "slow")[1] == "ok"
    assert row(out, "quick")[1] == "ok" and row(out, "after")[1] == "ok"
    seconds, status = row(out, "total")
    assert status.startswith("ok (") and float(seconds) >= 0.5


def test_the_first_failure_stops_the_run_with_its_time_and_make_s_exit_status(work: Path):
    proc = make(work, "test", "STAGES=quick broken after")
    assert proc.returncode == 2  # the runner's exit (make's 2 for a failed stage), through make
    out = proc.stdout
    assert "<== broken: FAILED (exit 2) after" in out
    assert row(out, "broken")[1] == "FAILED (exit 2)"
    float(row(out, "broken")[0])
    assert row(out, "after") == ("-", "not run")
    assert row(out, "total")[1].startswith("FAILED at broken (")
    assert (work / "broken.done").exists() and not (work / "after.done").exists()
    assert "after ran" not in out


def test_a_dry_run_reaches_the_stages_without_running_them(work: Path):
    proc = make(work, "-n", "test", "STAGES=quick broken after")
    assert proc.returncode == 0, proc.stderr
    assert "touch quick.done" in proc.stdout and "touch after.done" in proc.stdout
    assert "<== broken: ok in" in proc.stdout
    assert not list(work.glob("*.done"))


def test_the_project_s_make_test_runs_its_stages_through_the_runner():
    root = SCRIPT.parents[1]
    proc = subprocess.run(["make", "--no-print-directory", "-n", "test"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stages = re.findall(r"^==> test \[\d+/\d+\]: (\S+)$", proc.stdout, re.M)
    assert stages[:2] == ["lint", "unit"] and "mutants-diff" in stages and "integration" in stages
    assert "scripts-test" in stages
    assert "test: stage timings" in proc.stdout
