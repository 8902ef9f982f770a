"""bench/sign_ab.py's reading of Envoy's detailed histogram buckets: the share of signatures
per whole microsecond and under the 5 µs target, and its command-line builds."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import sign_ab  # noqa: E402  (path set above)


def bucket(lower: float, count: int) -> dict:
    return {"lower_bound": lower, "width": 0.1, "count": count}


def test_buckets_of_one_whole_microsecond_add_up_and_shares_sum_to_one():
    shares = sign_ab.whole_us_shares([bucket(2.0, 30), bucket(3.0, 50), bucket(3.05, 10), bucket(5.0, 10)])
    assert shares == {2: 0.3, 3: 0.6, 5: 0.1}
    assert list(shares) == [2, 3, 5]


def test_a_sample_of_five_microseconds_is_not_under_five():
    shares = {3: 0.25, 4: 0.25, 5: 0.5}
    assert sign_ab.share_under(shares, 5) == 0.5
    assert sign_ab.share_under(shares, 6) == 1.0
    assert sign_ab.share_under({}, 5) == 0


def test_no_samples_give_no_shares():
    assert sign_ab.whole_us_shares([]) == {}
    assert sign_ab.whole_us_shares([bucket(4.0, 0)]) == {}


def test_the_report_names_every_build_with_its_share_under_the_target():
    rows = {"A": {"samples": 100, "shares": {4: 0.4, 5: 0.6}, "p50": 5.1, "cpu_us": 90.0},
            "n": {"samples": 50, "shares": {2: 1.0}, "p50": 2.0, "cpu_us": 80.25}}
    a, n = sign_ab.report(rows)[2:]
    assert a.startswith("| A | 100 | 40.0 % | 5.1 µs | 90.0 µs |") and "4: 40.0 % 5: 60.0 %" in a
    assert n.startswith("| n | 50 | 100.0 % | 2.0 µs | 80.2 µs |")


def test_builds_are_label_equals_an_existing_file_made_absolute(tmp_path, monkeypatch):
    wasm = tmp_path / "a.wasm"
    wasm.write_bytes(b"\0asm")
    assert sign_ab.parse_build(f"A={wasm}") == ("A", wasm)
    monkeypatch.chdir(tmp_path)
    assert sign_ab.parse_build("B=a.wasm") == ("B", wasm)
    for bad in ("A", f"={wasm}", "A=", f"A={tmp_path / 'missing.wasm'}"):
        with pytest.raises(argparse.ArgumentTypeError):
            sign_ab.parse_build(bad)


def test_floor_builds_run_the_floor_filter_and_the_others_this_filter(tmp_path):
    wasm = tmp_path / "x.wasm"

    def plugin(floor: bool) -> dict:
        return sign_ab.filters(wasm, floor, 9000)[0]["typed_config"]["config"]

    floor, filter_ = plugin(True), plugin(False)
    assert floor["name"] == "floor" and "sign time" in floor["configuration"]["value"]
    assert filter_["name"] == "envoy_presign" and '"enabled": false' in filter_["configuration"]["value"]
