"""bench/instructions.py's reading of callgrind's dumps: every event of the `events:` line,
summed over the dumps, which are removed after."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import instructions  # noqa: E402  (path set above)

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
cmd: envoy
part: {part}

positions: line
events: {events}
summary: {totals}
totals: {totals}

fn=(1) main
0 {totals}
"""


def dump(directory: Path, part: int, events: str, totals: str) -> None:
    (directory / f"callgrind.out.{part}").write_text(DUMP.format(part=part, events=events, totals=totals))


def test_instructions_alone_are_summed_over_the_dumps(tmp_path):
    dump(tmp_path, 1, "Ir", "1000")
    dump(tmp_path, 2, "Ir", "234")
    assert instructions.totals(tmp_path, "callgrind.out") == {"Ir": 1234}
    assert not list(tmp_path.iterdir())


def test_with_the_cache_simulation_every_event_is_named(tmp_path):
    events = "Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw"
    dump(tmp_path, 1, events, "100 50 40 9 8 7 3 2 1")
    dump(tmp_path, 2, events, "100 50 40 1 2 3 7 8 9")
    assert instructions.totals(tmp_path, "callgrind.out") == {
        "Ir": 200, "Dr": 100, "Dw": 80, "I1mr": 10, "D1mr": 10, "D1mw": 10, "ILmr": 10, "DLmr": 10, "DLmw": 10}


def test_no_dump_counts_nothing(tmp_path):
    assert instructions.totals(tmp_path, "callgrind.out") == {}


def test_the_second_level_cache_is_read_as_callgrind_takes_it():
    l2 = instructions.second_level_cache()
    if l2 is None:  # a machine that does not describe its caches: --cache-sim refuses to run
        return
    size, ways, line = (int(x) for x in l2.split(","))
    sets = size // (ways * line)
    # callgrind takes a cache whose size is sets x ways x line, with a power of two of sets.
    assert sets * ways * line == size and sets & (sets - 1) == 0
    assert line in (32, 64, 128)
