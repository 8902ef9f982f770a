#!/usr/bin/env python3
"""`make bench-instructions`: Envoy's instructions per request under callgrind, for the
bench's configurations (bench/run.py): a count that does not move with the machine's
load or speed, where `make bench`'s timings swing by several per cent between runs.

Each configuration's proxy runs alone under `valgrind --tool=callgrind` (V8's code is
generated at run time: `--smc-check=all-non-file`), with counting switched on only around
the measured requests: after start-up and a warm-up, one keep-alive connection sends
`--requests` GETs, and every instruction Envoy's process executes meanwhile (all threads:
the worker, the main thread, the filter's VM) is divided by their number, once what the
process executes per second with no request (its timers: the stats flush, the filter's
tick), counted right after for as long, is taken off. The
origin is the bench's direct-response Envoy, run normally. Instructions are not time
(native C++ retires several per cycle where a call into V8 stalls), so these ratios
bound, not predict, the timed ones; what they show without noise is how far a filter is
from the floors of its hostcalls (rows l, m, n) and what a change saves.

With `--cache-sim`, callgrind also simulates the caches (its first level as this machine's,
its last level sized as this machine's second-level cache, read from /sys) and the report
adds each row's first-level instruction-cache misses and second-level misses per request:
what a request's code and data cost beyond their instructions when Envoy's own work has
evicted them since the last request. Slower (about twice) and not the default.

Results: a Markdown table printed and saved under bench/results/ (<time>-instructions.md).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (the bench's configurations and helpers)
from stack import free_port  # noqa: E402  (tests/, on the path run.py set)

# The rows counted: the targets' references (a, b, e), the filter (c, d) and the floors of
# its hostcalls (l, m, n). c keeps 16 shared slots: the cache-size scan reads
# max_entries / scan_interval slots on each one-second tick, and under callgrind a second
# holds ~40 times fewer requests than natively, which would charge them the scan's cost.
ROWS = "abcdelmn"
C_CACHE = {"max_entries": 16}
PATH = "/media/video/clip-0001.mp4"


def envoy_binary() -> Path:
    """The Envoy executable itself (`.venv/bin/envoy` is a Python launcher that valgrind
    would count instead)."""
    found = sorted((ROOT / ".venv" / "lib").glob("python3*/site-packages/envoy/_bin/envoy"))
    if not found:
        sys.exit("Envoy's binary is missing from .venv: run `make setup`")
    return found[-1]


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def totals(out_dir: Path, prefix: str) -> dict[str, int]:
    """The events callgrind counted (`Ir`, and with the cache simulation `I1mr`, `ILmr`, ...),
    summed over the dumps it wrote (one per dump), which are removed after."""
    total: dict[str, int] = {}
    for f in sorted(out_dir.glob(prefix + ".*")):
        events: list[str] = []
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("totals:"):
                for event, value in zip(events, line.split()[1:]):
                    total[event] = total.get(event, 0) + int(value)
                break
        f.unlink()
    return total


def second_level_cache() -> str | None:
    """This machine's second-level cache as callgrind's `size,associativity,line size`, from
    /sys (None where it is not described)."""
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2" or "Instruction" == (index / "type").read_text().strip():
                continue
            size = (index / "size").read_text().strip()
            kib = int(size.rstrip("K")) if size.endswith("K") else int(size.rstrip("M")) * 1024
            ways = int((index / "ways_of_associativity").read_text())
            line = int((index / "coherency_line_size").read_text())
            return f"{kib * 1024},{ways},{line}"
        except (OSError, ValueError):
            continue
    return None


def get(conn: http.client.HTTPConnection, status: int) -> None:
    conn.request("GET", PATH)
    r = conn.getresponse()
    r.read()
    if r.status != status:
        raise RuntimeError(f"expected {status}, got {r.status}")


def connect(port: int, deadline: float, proc: subprocess.Popen, log: Path) -> http.client.HTTPConnection:
    """A connection that got its first 200: Envoy under valgrind takes a minute to start
    (V8 compiles the module under instrumentation)."""
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            get(conn, 200)
            return conn
        except (OSError, RuntimeError, http.client.HTTPException):
            conn.close()
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"Envoy under callgrind did not answer 200:\n{tail}")
        time.sleep(1)


def count(tmp: Path, name: str, filters: list[dict], origin_port: int, env: dict, requests: int,
          cache_sim: list[str]) -> dict[str, float]:
    """Events per request of one proxy configuration (instructions: `Ir`); ``cache_sim``:
    callgrind's cache simulation options, or none."""
    work = tmp / name[0]
    work.mkdir()
    proxy = run.Envoy(work, run.BENCH_TEMPLATE, run.WASM_PATH, {}, origin_port, env=env, concurrency=1,
                      extra_substitutions={"HTTP_FILTERS": json.dumps(filters)})
    proxy.port, proxy.admin_port = free_port(), free_port()
    proxy.write_config()
    prefix = "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no", *cache_sim,
            f"--callgrind-out-file={work / prefix}", str(envoy_binary()), "-c", str(proxy.config_path),
            "--concurrency", "1", "--base-id", str(os.getpid() % 100000 * 10 + ROWS.index(name[0])),
            "-l", "warning"]
    log = work / "valgrind.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        conn = connect(proxy.port, time.monotonic() + 600, proc, log)
        for _ in range(200):
            get(conn, 200)
        totals(work, prefix)  # nothing yet: instrumentation was off

        def window(load) -> tuple[dict[str, int], float]:
            """Events counted while `load` runs, and its seconds."""
            callgrind(proc.pid, "--instr=on")
            started = time.monotonic()
            load()
            seconds = time.monotonic() - started
            callgrind(proc.pid, "--instr=off")
            callgrind(proc.pid, "--dump")
            deadline = time.monotonic() + 60
            while not list(work.glob(prefix + ".*")) and time.monotonic() < deadline:
                time.sleep(0.5)
            return totals(work, prefix), seconds

        executed, seconds = window(lambda: [get(conn, 200) for _ in range(requests)])
        # What Envoy does per second whatever the load (timers: the stats flush, the
        # filter's tick), measured with no request and taken off: under callgrind the
        # requests are slow, and slower still on a busy machine, so those seconds would
        # otherwise count as request work.
        idle, idle_seconds = window(lambda: time.sleep(max(5.0, seconds)))
        conn.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if executed.get("Ir", 0) <= 0 or idle_seconds <= 0:
        raise RuntimeError(f"{name}: callgrind counted nothing")
    return {event: (n - idle.get(event, 0) / idle_seconds * seconds) / requests for event, n in executed.items()}


# With the cache simulation: first-level instruction misses, and second-level misses of
# instructions, data reads and data writes (callgrind's `LL`, sized here as the L2).
MISSES = (("I1 misses", ("I1mr",)), ("L2 misses", ("ILmr", "DLmr", "DLmw")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rows", default=ROWS,
                    help=f"which of the rows {ROWS} to count (default: all; only a full run is saved)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches (L1 as this machine's, the last level as its L2)")
    args = ap.parse_args()
    cache_sim: list[str] = []
    if args.cache_sim:
        l2 = second_level_cache()
        if l2 is None:
            sys.exit("--cache-sim: this machine's L2 cache is not described under /sys/devices/system/cpu")
        cache_sim = ["--cache-sim=yes", f"--LL={l2}"]
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run `make bench-instructions`, which installs Debian's valgrind")
    for path in (run.PRESIGN_WASM, run.NOOP_WASM, run.FLOOR_WASM):
        if not path.exists():
            sys.exit(f"{path} is missing: run `make bench-instructions`, which builds it")
    env = run.env_credentials(run.ACCESS_KEY, run.SECRET_KEY)
    per_request: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="envoy-presign-instructions-") as tmp:
        tmp = Path(tmp)
        origin = run.start_origin(tmp)
        try:
            rows = {n: f for n, f in run.configurations(origin.port).items() if n[0] in ROWS and n[0] in args.rows}
            for c in (n for n in rows if n.startswith("c ")):
                rows[c] = [run.wasm_filter("envoy_presign", run.PRESIGN_WASM,
                                           run.presign_config(origin.port, C_CACHE)), run.ROUTER]
            for name, filters in rows.items():
                per_request[name] = count(tmp, name, filters, origin.port, env, args.requests, cache_sim)
                misses = "".join(f", {label} {sum(per_request[name].get(e, 0) for e in events):,.0f}"
                                 for label, events in MISSES if cache_sim)
                print(f"{name}: {per_request[name]['Ir']:,.0f} instructions per request{misses}", flush=True)
        finally:
            origin.stop()
    ins = {n[0]: v["Ir"] for n, v in per_request.items()}
    if "a" not in ins:
        return 0  # a subset (--rows) without passthrough: the lines above are the result
    lines = [f"# envoy-presign instructions per request, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n",
             f"Machine: {run.machine()}; valgrind {valgrind_version()} (callgrind).",
             f"Filter under test: {run.PRESIGN_WASM}.",
             f"Each proxy alone under callgrind, {args.requests} GETs on one keep-alive connection after a "
             f"warm-up of 200; every instruction of Envoy's process in between, less its idle rate (counted "
             f"right after, for as long) over that time, divided by the requests. "
             f"Row c with {C_CACHE['max_entries']} shared slots (see bench/instructions.py)."
             + (f" Caches simulated ({' '.join(cache_sim)}): misses per request, the last level "
                "standing for this machine's L2." if cache_sim else "") + "\n",
             "| configuration | instructions per request | over passthrough (a) |"
             + "".join(f" {label} |" for label, _ in MISSES if cache_sim),
             "|---|---:|---:|" + "---:|" * (len(MISSES) if cache_sim else 0)]
    for n, v in per_request.items():
        misses = "".join(f" {sum(v.get(e, 0) for e in events):,.0f} |" for _, events in MISSES if cache_sim)
        lines.append(f"| {n} | {v['Ir']:,.0f} | {v['Ir'] - ins['a']:+,.0f} |{misses}")
    pairs = (("c", "e"), ("c", "b"), ("d", "b"), ("c", "m"), ("m", "e"), ("l", "e"), ("d", "n"), ("n", "b"))
    lines.append("")
    counted = [(x, y) for x, y in pairs if x in ins and y in ins]
    if counted:
        lines.append("Capacity ratios if time followed instructions (y's instructions over x's, for x/y; "
                     "the timed targets: c/e ≥ 0.95, c/b ≥ 1.20, d/b ≥ 1.05): "
                     + ", ".join(f"{x}/{y} = {ins[y] / ins[x]:.3f}" for x, y in counted) + ".")
    if set(ROWS) <= set(args.rows):
        run.save_report(lines, "-cachesim" if cache_sim else "-instructions")
    else:
        print("\n" + "\n".join(lines) + "\n\n(a subset of the rows: not saved)")
    return 0


def valgrind_version() -> str:
    return subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
