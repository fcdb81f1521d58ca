"""Run every mtlsauth benchmark; write benchmarks/results/latest.json, print the table, draw the chart.

    python benchmarks/run.py            # full run (make bench), a few minutes on 2 cores
    python benchmarks/run.py --quick    # smoke run for CI (make bench-quick): seconds
    python benchmarks/run.py --only cached_hit,crl

Every result is a ratio against a baseline timed in the same process, interleaved with it
(see _timing.py); docs/benchmarks.md explains each measurement and its target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _context import Context  # noqa: E402
from _report import Row, markdown, missing_row, table  # noqa: E402

# measurement key -> (title, module that produces it)
MEASUREMENTS = {
    "cached_hit": ("1. cached hit vs floor (SHA-256 + dict look-up)", "bench_verify"),
    "uncached": ("2. uncached verification vs cryptography's ClientVerifier", "bench_verify"),
    "crl": ("3. CRL look-up and load", "bench_crl"),
    "headers": ("4. header parsing per format (vs one verification)", "bench_headers"),
    "http": ("5. HTTP overhead (mtls vs bare)", "bench_http"),
    "peers": ("6. peers, same run (how many times faster mtlsauth is)", "bench_peers"),
    "memory": ("7. memory per cached identity", "bench_memory"),
    "hostile": ("8. hostile chain vs a genuine verification", "bench_verify"),
}
TITLES = {k: v[0] for k, v in MEASUREMENTS.items()}


def _machine() -> dict[str, object]:
    try:
        import cryptography

        crypto = cryptography.__version__
    except ImportError:  # pragma: no cover
        crypto = "?"
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cryptography": crypto,
        "servers": _servers(),
    }


def _servers() -> dict[str, str]:
    """Versions of the HTTP servers measured, and which HTTP parser uvicorn picks."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for name in ("uvicorn", "httptools", "h11", "uvloop", "gunicorn", "flask", "aiohttp"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    if "uvicorn" in found:  # uvicorn's "auto" takes httptools and uvloop when installed
        found["uvicorn_http"] = "httptools" if "httptools" in found else "h11"
        found["uvicorn_loop"] = "uvloop" if "uvloop" in found else "asyncio"
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
        found["wrk"] = (out.stdout or out.stderr).split()[1] if (out.stdout or out.stderr) else "?"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke mode: seconds, not minutes")
    parser.add_argument("--only", default="", help="comma-separated measurement keys")
    parser.add_argument(
        "--output", type=Path, help="results JSON (default: results/latest.json, quick.json)"
    )
    parser.add_argument(
        "--chart", type=Path, help="chart PNG (default: docs/img/benchmarks.png, quick.png)"
    )
    parser.add_argument("--no-chart", action="store_true")
    args = parser.parse_args(argv)
    # A quick run never overwrites the published numbers and chart of the last full run.
    if args.output is None:
        args.output = HERE / "results" / ("quick.json" if args.quick else "latest.json")
    if args.chart is None:
        args.chart = (
            HERE / "results" / "quick.png"
            if args.quick
            else HERE.parent / "docs" / "img" / "benchmarks.png"
        )

    keys = [k.strip() for k in args.only.split(",") if k.strip()] or list(MEASUREMENTS)
    unknown = set(keys) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {list(MEASUREMENTS)}")

    ctx = Context(quick=args.quick)
    started = time.time()
    results: dict[str, list[Row]] = {}
    done_modules: set[str] = set()
    for key in keys:
        module_name = MEASUREMENTS[key][1]
        if module_name in done_modules:
            continue
        done_modules.add(module_name)
        ctx.log(f"== {module_name}")
        try:
            produced = importlib.import_module(module_name).run(ctx)
        except Exception as exc:  # noqa: BLE001 - report the measurement as missing, go on
            traceback.print_exc()
            why = f"{type(exc).__name__}: {exc}"
            produced = {
                k: [missing_row(f"{k}.error", TITLES[k], why)]
                for k, (_, m) in MEASUREMENTS.items()
                if m == module_name
            }
        for k, rows in produced.items():
            if k in keys:
                results[k] = rows

    sections = [(TITLES[k], results[k]) for k in keys if k in results]
    print()
    print(table(sections))
    rows = [r for _, rs in sections for r in rs]
    counts = {s: sum(r.status == s for r in rows) for s in ("PASS", "MISS", "MISSING", "INFO")}
    print(
        f"\n{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['MISSING']} MISSING, "
        f"{counts['INFO']} INFO ({'quick' if args.quick else 'full'} mode, "
        f"{time.time() - started:.0f} s)"
    )

    payload = {
        "mode": "quick" if args.quick else "full",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "machine": _machine(),
        "summary": counts,
        "measurements": {k: [r.as_dict() for r in results[k]] for k in keys if k in results},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(args.output)
    md = args.output.with_suffix(".md")
    md.write_text(markdown(payload, TITLES) + "\n")
    print(f"wrote {args.output} and {md.name}")

    if not args.no_chart:
        try:
            import chart

            chart.draw(payload, args.chart)
            print(f"wrote {args.chart}")
        except ImportError as exc:
            print(f"chart skipped: {exc} (pip install -e '.[bench]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
