"""What a few microseconds of Python per request cost a uvicorn server (a profiling aid, not
a measurement with a target).

The HTTP rows of measurement 5 compare server CPU per request with and without the
middleware. Work added to a request costs the server more than the work itself: a slower
handler changes how many requests each turn of the event loop serves, so system calls and
wake-ups are shared by fewer requests. This script measures that factor with work that is
nothing but a Python loop: the bare hello world, and the same app after a loop that takes N
µs in a loop of its own (``http_apps.py``, mode ``spin``), alternated with ``wrk`` (else a Python
client) as in measurement 5, CPU per request read from the server process.

    .venv/bin/python benchmarks/amplification.py                  # 1, 2, 4 µs
    .venv/bin/python benchmarks/amplification.py --micros 0.5 3 --rounds 5

Printed per N: the median CPU per request, what it adds to the bare server's, and that
addition divided by N (the factor by which in-process work is multiplied in the server).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _pki import Hierarchy
from bench_http import _LUA, HERE, Server, _load
from bench_verify import HEADER, header_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--micros", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    h = Hierarchy.create("ec")
    _, value = header_request(h, h.leaf())
    with tempfile.TemporaryDirectory(prefix="mtlsauth-amplification-") as tmp:
        script: Path | None = None  # without wrk, measurement 5's Python client
        if shutil.which("wrk") is not None:
            script = Path(tmp, "header.lua")
            script.write_text(_LUA.format(header=HEADER, value=value))
        base_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        servers: dict[float, Server] = {}
        try:
            for micros in (0.0, *args.micros):
                env = {**base_env, "MTLSAUTH_BENCH_SPIN_US": str(micros)}
                servers[micros] = Server("asgi", "spin", env)
            for server in servers.values():
                server.wait_ready(value)
                _load(server, value, 1.0, 8, script)  # warm-up
            cpu: dict[float, list[float]] = {m: [] for m in servers}
            for _ in range(args.rounds):
                for micros, server in servers.items():
                    run = _load(server, value, args.seconds, 8, script)
                    cpu[micros].append(run.cpu_per_request_us)
        finally:
            for server in servers.values():
                server.stop()
    bare = statistics.median(cpu[0.0])
    print(f"uvicorn hello world, {args.rounds} rounds of {args.seconds:g} s (median µs)")
    print(f"  {'Python work per request':28s} {'CPU/request':>12s} {'added':>8s} {'factor':>7s}")
    print(f"  {'none':28s} {bare:12.1f}")
    for micros in args.micros:
        median = statistics.median(cpu[micros])
        added = median - bare
        print(f"  {f'{micros:g} µs':28s} {median:12.1f} {added:8.1f} {added / micros:7.2f}")


if __name__ == "__main__":
    main()
