#!/usr/bin/env python3
"""Run make targets one after another as timed stages (`make test`).

Each stage is `<make> <stage>`, run in order; its output goes straight to the terminal. After
each stage a line gives its status and duration; the run stops at the first stage that fails.
At the end (or at that failure, or on Ctrl-C) a table gives every stage's seconds and status,
the stages not run included, and the total. The exit status is the failed stage's (make's 2),
130 on Ctrl-C, else 0.

Usage (from the Makefile, so that `make -n test` and -j reach the stages):
    python3 scripts/stages.py --make "$(MAKE)" --name test -- lint unit ...
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time


def fmt(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def table(name: str, stages: list[str], results: dict[str, tuple[float, str]], outcome: str) -> str:
    width = max([len(s) for s in stages] + [len("total"), len("stage")])
    lines = [f"{name}: stage timings", f"  {'stage':<{width}}  {'seconds':>8}  status"]
    for stage in stages:
        seconds, status = results.get(stage, (None, "not run"))
        shown = "-" if seconds is None else f"{seconds:.1f}"
        lines.append(f"  {stage:<{width}}  {shown:>8}  {status}")
    total = sum(seconds for seconds, _ in results.values())
    lines.append(f"  {'total':<{width}}  {total:>8.1f}  {outcome} ({fmt(total)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--make", default="make", help="the make command ($(MAKE))")
    parser.add_argument("--name", default="stages", help="what the stages make up, for the messages")
    parser.add_argument("stages", nargs="+")
    args = parser.parse_args(argv)
    make = shlex.split(args.make)

    results: dict[str, tuple[float, str]] = {}
    outcome, code = "ok", 0
    for n, stage in enumerate(args.stages, 1):
        print(f"==> {args.name} [{n}/{len(args.stages)}]: {stage}", flush=True)
        start = time.monotonic()
        try:
            # close_fds=False: make's jobserver descriptors reach the stage's make.
            rc = subprocess.run([*make, "--no-print-directory", stage], close_fds=False).returncode
        except KeyboardInterrupt:
            rc = 130
        seconds = time.monotonic() - start
        if rc == 0:
            results[stage] = (seconds, "ok")
            print(f"<== {stage}: ok in {fmt(seconds)}", flush=True)
            continue
        status = "interrupted" if rc in (130, -2) else f"FAILED (exit {rc})"
        results[stage] = (seconds, status)
        print(f"<== {stage}: {status} after {fmt(seconds)}", flush=True)
        outcome = f"{'interrupted' if rc in (130, -2) else 'FAILED'} at {stage}"
        code = 130 if rc in (130, -2) else (rc if rc > 0 else 1)
        break
    print(flush=True)
    print(table(args.name, args.stages, results, outcome), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
