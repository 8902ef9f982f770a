#!/usr/bin/env python3
"""In-VM signing time of several builds side by side: what `make bench`'s one p50 per run
cannot tell apart.

Each build named on the command line (``label=path.wasm``) runs in its own Envoy as `make
bench`'s row d (this filter signing every request, ``cache.enabled: false``); each one given
with ``--floor label=path.wasm`` is a floor filter build (bench/floor-filter) and runs as row n
(a signature's hashing alone). The loads are interleaved (every build once per round, ``--rounds`` rounds of
``--seconds``), then each Envoy's signing histogram is read with Envoy's detailed buckets
(``histogram_buckets=detailed``): the filter records whole microseconds, so each sample sits in
one bucket and the report gives, per build, the share of signatures in each whole microsecond,
the share under 5 µs (issue 25's target is a p50 of 5 µs), Envoy's p50, and the median of the
rounds' Envoy CPU per request. Used to choose the `.wasm`'s build flags
(docs/performance.md, sixth pass).

    .venv/bin/python bench/sign_ab.py old=old.wasm new=target/wasm32-wasip1/release/envoy_presign.wasm \\
        --floor n=bench/floor-filter/target/wasm32-wasip1/release/floor_filter.wasm

Results: a Markdown table printed and saved under bench/results/ (<time>-sign-ab.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (the bench's configurations and helpers)

HISTOGRAM = "envoy_presign.sign_duration_us"
PATH = "/media/video/clip-0001.mp4"
TARGET_US = 5


def parse_build(arg: str) -> tuple[str, Path]:
    """``label=path`` into its label and an existing path, made absolute (Envoy's
    ``filename`` is read from its own working directory)."""
    label, sep, path = arg.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"expected label=path.wasm, got {arg!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a file")
    return label, Path(path).resolve()


def whole_us_shares(buckets: list[dict]) -> dict[int, float]:
    """Envoy's detailed buckets (``lower_bound``, ``width``, ``count``) as the share of
    samples per whole microsecond (the filter records whole microseconds, so a bucket's
    lower bound rounded down is the sample's value)."""
    counts: dict[int, int] = {}
    for b in buckets:
        us = int(b["lower_bound"])
        counts[us] = counts.get(us, 0) + int(b["count"])
    total = sum(counts.values())
    return {us: c / total for us, c in sorted(counts.items())} if total else {}


def share_under(shares: dict[int, float], limit_us: int) -> float:
    """The share of samples below ``limit_us`` (a sample of ``limit_us`` took at least that)."""
    return sum(s for us, s in shares.items() if us < limit_us)


def detailed_buckets(envoy: run.Envoy) -> list[dict]:
    """The signing histogram's cumulative detailed buckets, from Envoy's admin."""
    data = json.loads(envoy._admin_get(
        f"/stats?format=json&filter={HISTOGRAM}&histogram_buckets=detailed"))
    for entry in data.get("stats", []):
        for detail in (entry.get("histograms") or {}).get("details", []):
            if detail.get("name", "").endswith(f"{HISTOGRAM}.origin.media"):
                return detail.get("totals", [])
    return []


def filters(wasm: Path, floor: bool, origin_port: int) -> list[dict]:
    """Row n's floor filter for a floor build, row d otherwise."""
    if floor:
        floor = run.hit_path_rewrite(origin_port, flags="sign time")
        return [run.wasm_filter("floor", wasm, floor), run.ROUTER]
    config = run.presign_config(origin_port, {"enabled": False})
    return [run.wasm_filter("envoy_presign", wasm, config), run.ROUTER]


def report(rows: dict[str, dict]) -> list[str]:
    """The Markdown table of the builds' signing times."""
    lines = [
        "| build | samples | under 5 µs | p50 (Envoy) | Envoy CPU per request | share per whole µs |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, r in rows.items():
        shares = r["shares"]
        spread = " ".join(f"{us}: {100 * s:.1f} %" for us, s in shares.items() if s >= 0.005)
        lines.append(f"| {label} | {r['samples']} | {100 * share_under(shares, TARGET_US):.1f} % | "
                     f"{run.fmt_us(r['p50'])} | {r['cpu_us']:.1f} µs | {spread} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", type=parse_build, help="label=path.wasm of this filter")
    ap.add_argument("--floor", action="append", default=[], type=parse_build,
                    help="label=path.wasm of a floor filter build (row n); repeatable")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    env = run.env_credentials(run.ACCESS_KEY, run.SECRET_KEY)
    with tempfile.TemporaryDirectory(prefix="envoy-presign-sign-ab-") as tmp:
        tmp = Path(tmp)
        origin = run.start_origin(tmp)
        run.pin(origin.proc.pid, run.LOAD_CPUS)
        proxies: dict[str, run.Envoy] = {}
        try:
            builds = [(label, wasm, False) for label, wasm in args.builds]
            builds += [(label, wasm, True) for label, wasm in args.floor]
            if len({label for label, _, _ in builds}) != len(builds):
                sys.exit("every build needs a label of its own")
            for label, wasm, floor in builds:
                proxies[label] = run.start_proxy(tmp, filters(wasm, floor, origin.port), origin.port, env)
            run.warm_up(proxies, PATH, args.connections)
            cpu: dict[str, list[float]] = {label: [] for label in proxies}
            for _ in range(args.rounds):
                for label, p in proxies.items():
                    cpu[label].append(run.measured(p, PATH, args.seconds, args.connections)["cpu_us"])
            rows = {}
            for label, p in proxies.items():
                buckets = detailed_buckets(p)
                rows[label] = {
                    "samples": sum(int(b["count"]) for b in buckets),
                    "shares": whole_us_shares(buckets),
                    "p50": run.vm_quantiles(p, HISTOGRAM).get("p50"),
                    "cpu_us": statistics.median(cpu[label]),
                }
        finally:
            for p in proxies.values():
                p.stop()
            origin.stop()
    lines = [f"# envoy-presign signing A/B, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Machine: {run.machine()}.", "",
             "Builds (row d): " + ", ".join(f"{label} = {wasm}" for label, wasm in args.builds) + ".",
             "Floor builds (row n): " + (", ".join(f"{label} = {wasm}" for label, wasm in args.floor)
                                         or "none") + ".",
             f"Load: wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} interleaved rounds.", ""]
    lines += report(rows)
    run.save_report(lines, "-sign-ab")
    return 0


if __name__ == "__main__":
    sys.exit(main())
