"""bench/run.py's table of issue 25's targets against their floors: which verdict a run's
figures get (met, missed where a floor meets the target, or out of reach in that run)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run  # noqa: E402  (path set above)


def at_least(target: float):
    return lambda v: v >= target


def test_a_met_target_is_met_whatever_its_floors():
    assert run.verdict(0.96, [0.90], at_least(0.95)) == "met"
    assert run.verdict(0.95, [], at_least(0.95)) == "met"


def test_a_miss_is_out_of_reach_only_when_no_floor_meets_the_target():
    assert run.verdict(0.90, [0.94, 0.93], at_least(0.95)).startswith("missed; out of reach")
    assert run.verdict(0.90, [0.94, 0.96], at_least(0.95)) == "missed; a floor meets it"
    # No floor measured proves nothing.
    assert run.verdict(0.90, [None], at_least(0.95)) == "missed; a floor meets it"
    assert run.verdict(None, [0.99], at_least(0.95)) == "not measured"


def figures(c_e=0.96, m_e=0.97, l_e=0.98, c_b=1.25, m_b=1.3, l_b=1.3, d_b=1.06, n_b=1.1):
    return {"c/e": c_e, "m/e": m_e, "l/e": l_e, "c/b": c_b, "m/b": m_b, "l/b": l_b, "d/b": d_b,
            "n/b": n_b}


def rows(rps, cpu, p50, floor_p50):
    # The shape main() reads: quantiles by configuration, then by histogram.
    vm = {"d presign, sign every request": {"sign_duration_us": {"p50": p50, "p99": 30.0},
                                            "filter_duration_us": {"p50": 20.0, "p99": 60.0}},
          run.SIGNING_FLOOR: {"sign_duration_us": {"p50": floor_p50, "p99": 20.0}, "filter_duration_us": {}}}
    lines = run.targets_against_floors(rps, cpu, vm)
    return {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ")}


def test_the_table_judges_each_measure_apart():
    table = rows(figures(), figures(c_e=0.93, m_e=0.94, l_e=0.94), 4.5, 3.0)
    assert "| met | missed; out of reach in this run" in table["c/e ≥ 0.95"]
    assert table["c/b ≥ 1.20"].endswith("| met | met |")
    assert table["d/b ≥ 1.05"].endswith("| met | met |")
    assert "| met |" in table["signing p50 ≤ 5 µs"]


def test_a_signing_p50_of_five_is_a_miss_since_samples_are_truncated():
    # A recorded 5 took 5.0-5.99 µs: Envoy's interpolated p50 of such samples is 5.0x.
    assert "missed; a floor meets it" in rows(figures(), figures(), 5.04, 3.2)["signing p50 ≤ 5 µs"]
    assert "out of reach" in rows(figures(), figures(), 7.1, 5.03)["signing p50 ≤ 5 µs"]
    assert "| met |" in rows(figures(), figures(), 4.99, 3.2)["signing p50 ≤ 5 µs"]
    assert "not measured" in rows(figures(), figures(), None, 3.2)["signing p50 ≤ 5 µs"]
