"""Measurement 5: HTTP overhead of the middleware, bare server vs the same server with mtlsauth.

Three servers, each started twice (bare and with the adapter), all on 127.0.0.1:

* a pure-ASGI hello world under uvicorn (one worker),
* a Flask hello world under gunicorn (one sync worker),
* an aiohttp hello world.

Every request carries the nginx header ``X-SSL-Client-Cert`` (the same bytes for bare and
mtls, so both parse the same request); the cache is warmed before timing, so this is the
steady state of a client that keeps calling. The load generator is ``wrk`` (one thread, a
small Lua script adds the header and reports percentiles), else a Python asyncio client.
Runs alternate bare, mtls, mtls, bare... for a fixed duration each; the server's CPU time
(process and children, from psutil) is read before and after every run. With ``wrk``, two
cores or more and ``taskset``, the server runs on one core and ``wrk`` on another, so neither
takes the other's time slices (``MTLSAUTH_BENCH_PIN=0`` leaves them to the scheduler).

Reported per server: requests/s, p50/p99 latency, CPU per request, each as a median over
runs, and the ratios mtls/bare of throughput and of CPU per request (median of per-pair
ratios). uvicorn and aiohttp are also started with an empty pass-through middleware
(``empty``), timed in the same rotation: empty/bare is what the server charges for having any
middleware at all, mtls/empty what mtlsauth adds on top of that.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _context import Context
from _report import Row, Target, missing_row
from bench_verify import HEADER, header_request

HERE = Path(__file__).resolve().parent
SERVERS = {
    # name: (label, throughput target, connections)
    "asgi": ("pure ASGI under uvicorn", 0.90, 8),
    "flask": ("Flask under gunicorn (sync)", 0.95, 4),
    "aiohttp": ("aiohttp", 0.85, 8),
}
# Modes per server: bare and mtls everywhere; uvicorn and aiohttp also with an empty
# middleware (a WSGI wrapper is a plain function call: nothing to separate there).
MODES = {
    "asgi": ("bare", "empty", "mtls"),
    "flask": ("bare", "mtls"),
    "aiohttp": ("bare", "empty", "mtls"),
}
CPU_TARGET = Target("<=", 1.10)

_LUA = """
wrk.method = "GET"
wrk.headers["{header}"] = "{value}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{{"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, "p50_us": %d, "p99_us": %d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class Run:
    requests: int
    seconds: float
    errors: int
    p50_us: float
    p99_us: float
    cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request_us(self) -> float:
        return self.cpu_s / max(self.requests, 1) * 1e6


def _cpus() -> tuple[str, str] | None:
    """(server's CPU, load generator's CPU) for ``taskset -c``: one core each, so neither
    steals the other's time slice and the server's CPU per request is its own. ``None`` (no
    pinning) with fewer than two cores, without ``taskset``, or with ``MTLSAUTH_BENCH_PIN=0``."""
    if os.environ.get("MTLSAUTH_BENCH_PIN", "1") == "0" or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or shutil.which("taskset") is None:
        return None
    return str(allowed[0]), str(allowed[1])


def _pin(cmd: list[str], cpu: str | None) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", cpu, *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One server process; ``cpu()`` sums user+system time of it and its children."""

    def __init__(self, kind: str, mode: str, env: dict[str, str]) -> None:
        self.kind, self.mode = kind, mode
        self.port = _free_port()
        env = {**env, "MTLSAUTH_BENCH_MODE": mode}
        if kind == "flask":
            cmd = [
                sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "--workers", "1",
                "--worker-class", "sync", "--bind", f"127.0.0.1:{self.port}",
                "--log-level", "warning", "http_apps:flask_app()",
            ]  # fmt: skip
        else:
            cmd = [sys.executable, str(HERE / "http_apps.py"), kind, "--port", str(self.port)]
        cpus = _cpus()
        self.proc = subprocess.Popen(
            _pin(cmd, cpus[0] if cpus else None),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_ready(self, header_value: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"{self.kind}/{self.mode} server exited: {err[-2000:]}")
            try:
                status = _get(self.url, {HEADER: header_value})
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.kind}/{self.mode} server did not start") from None
                time.sleep(0.1)
                continue
            if status != 200:
                raise RuntimeError(f"{self.kind}/{self.mode} answered {status} to a good request")
            return

    def cpu(self) -> float:
        return _tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its descendants (gunicorn's worker)."""
    try:
        import psutil
    except ImportError:  # the bench extra is not installed: read /proc directly (Linux)
        return _proc_tree_cpu(pid)
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def _proc_tree_cpu(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    wanted, total, frontier = {pid}, 0.0, [pid]
    while frontier:
        parent = frontier.pop()
        total += stats.get(parent, (0, 0.0))[1]
        for child, (ppid, _) in stats.items():
            if ppid == parent and child not in wanted:
                wanted.add(child)
                frontier.append(child)
    return total


def _get(url: str, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _wrk(
    url: str, header_value: str, seconds: float, connections: int, script: Path
) -> dict[str, Any]:
    cpus = _cpus()
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url]
    out = subprocess.run(
        _pin(cmd, cpus[1] if cpus else None),
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)  # type: ignore[no-any-return]


async def _py_client(
    url: str, header_value: str, seconds: float, connections: int
) -> dict[str, Any]:
    """Fallback load generator: keep-alive HTTP/1.1 connections in a loop (reconnects on close)."""
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))
    request = (f"GET / HTTP/1.1\r\nHost: {host}\r\n{HEADER}: {header_value}\r\n\r\n").encode(
        "latin-1"
    )
    latencies: list[float] = []
    errors = non2xx = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, non2xx
        reader = writer = None
        while time.perf_counter() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                assert reader is not None
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next(
                    (
                        int(x.split(":", 1)[1])
                        for x in lines
                        if x.lower().startswith("content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not lines[0].split()[1].startswith("2"):
                    non2xx += 1
                if any(x.lower() == "connection: close" for x in lines):
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                reader = writer = None

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6  # noqa: E731
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "errors": errors,
        "non2xx": non2xx,
        "p50_us": pick(0.5) if latencies else 0,
        "p99_us": pick(0.99) if latencies else 0,
    }


def _load(server: Server, value: str, seconds: float, connections: int, script: Path | None) -> Run:
    cpu0 = server.cpu()
    if script is not None:
        out = _wrk(server.url, value, seconds, connections, script)
    else:
        out = asyncio.run(_py_client(server.url, value, seconds, connections))
    cpu1 = server.cpu()
    if out["non2xx"] or out["requests"] == 0:
        raise RuntimeError(
            f"{server.kind}/{server.mode}: {out['non2xx']} non-2xx of {out['requests']}"
        )
    return Run(
        out["requests"],
        out["duration_us"] / 1e6,
        out["errors"],
        out["p50_us"],
        out["p99_us"],
        cpu1 - cpu0,
    )


def _ratios(
    runs: dict[str, list[Run]], subject: str, baseline: str
) -> tuple[float, float, dict[str, Any]]:
    """Median per-pair ratios (throughput, CPU per request) of ``subject`` against ``baseline``."""
    base, subj = runs[baseline], runs[subject]
    rps_ratio = statistics.median(m.rps / b.rps for b, m in zip(base, subj, strict=True))
    cpu_ratio = statistics.median(
        m.cpu_per_request_us / b.cpu_per_request_us for b, m in zip(base, subj, strict=True)
    )
    med = lambda rs, f: statistics.median(f(r) for r in rs)  # noqa: E731
    details = {
        f"{mode}_{what}": med(runs[mode], f)
        for mode in (baseline, subject)
        for what, f in (
            ("rps", lambda r: r.rps),
            ("p50_us", lambda r: r.p50_us),
            ("p99_us", lambda r: r.p99_us),
            ("cpu_per_request_us", lambda r: r.cpu_per_request_us),
        )
    }
    return rps_ratio, cpu_ratio, details


def _empty_rows(kind: str, runs: dict[str, list[Run]], tool: str, seconds: float) -> list[Row]:
    """What any middleware costs the server (empty vs none), and what mtlsauth adds on top of
    that (mtls vs empty): throughput and CPU per request, both INFO."""
    name = "uvicorn" if kind == "asgi" else kind
    rows = []
    for slug, what, subject, baseline in (
        ("empty_vs_bare", "empty middleware vs none", "empty", "bare"),
        ("mtls_vs_empty", "mtlsauth vs an empty middleware", "mtls", "empty"),
    ):
        rps, cpu, d = _ratios(runs, subject, baseline)
        common = {**d, "tool": tool, "seconds_per_run": seconds, "cpu_ratio": cpu, "rps_ratio": rps}
        rows.append(
            Row(
                f"http.{kind}.{slug}",
                f"{name}: {what}, requests/s",
                rps,
                f"x {baseline}",
                None,
                subject=subject,
                baseline=baseline,
                details={
                    **common,
                    "subject_text": f"{d[subject + '_rps']:,.0f}/s",
                    "baseline_text": f"{d[baseline + '_rps']:,.0f}/s",
                },
            )
        )
        rows.append(
            Row(
                f"http.{kind}.{slug}_cpu",
                f"{name}: {what}, server CPU per request",
                cpu,
                f"x {baseline}",
                None,
                subject=subject,
                baseline=baseline,
                details={
                    **common,
                    "subject_text": f"{d[subject + '_cpu_per_request_us']:.0f} µs",
                    "baseline_text": f"{d[baseline + '_cpu_per_request_us']:.0f} µs",
                },
            )
        )
    return rows


def _rows(kind: str, runs: dict[str, list[Run]], tool: str, seconds: float) -> list[Row]:
    label, target, connections = SERVERS[kind]
    bare = runs["bare"]
    rps_ratio, cpu_ratio, details = _ratios(runs, "mtls", "bare")
    details.update(
        tool=tool,
        pinned=_cpus() is not None and tool == "wrk",
        connections=connections,
        seconds_per_run=seconds,
        runs=len(bare),
        socket_errors=sum(r.errors for rs in runs.values() for r in rs),
    )
    d = details
    return [
        Row(
            f"http.{kind}.throughput",
            f"{label}: requests/s",
            rps_ratio,
            "x bare",
            Target(">=", target),
            subject="with the mtlsauth middleware, warm cache",
            baseline="the same app without it",
            details={
                **details,
                "subject_text": f"{d['mtls_rps']:,.0f}/s",
                "baseline_text": f"{d['bare_rps']:,.0f}/s",
            },
        ),
        Row(
            f"http.{kind}.cpu",
            f"{label}: server CPU per request",
            cpu_ratio,
            "x bare",
            CPU_TARGET,
            subject="with the mtlsauth middleware, warm cache",
            baseline="the same app without it",
            details={
                **details,
                "subject_text": f"{d['mtls_cpu_per_request_us']:.0f} µs",
                "baseline_text": f"{d['bare_cpu_per_request_us']:.0f} µs",
            },
        ),
        Row(
            f"http.{kind}.latency",
            f"{label}: p50 / p99 latency",
            d["mtls_p50_us"] / d["bare_p50_us"],
            "x bare (p50)",
            None,
            details={
                **details,
                "subject_text": f"{d['mtls_p50_us'] / 1000:.2f} / {d['mtls_p99_us'] / 1000:.2f} ms",
                "baseline_text": f"{d['bare_p50_us'] / 1000:.2f} / {d['bare_p99_us'] / 1000:.2f} ms",
            },
        ),
    ]


def run(ctx: Context) -> dict[str, list[Row]]:
    h = ctx.ec
    _, header_value = header_request(h, h.leaf())
    seconds = 1.0 if ctx.quick else 4.0
    pairs = 1 if ctx.quick else 5
    wrk = shutil.which("wrk")
    tool = "wrk" if wrk else "python asyncio client"
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="mtlsauth-bench-") as tmp:
        root = Path(tmp, "root.pem")
        root.write_bytes(h.root_pem)
        inter = Path(tmp, "intermediate.pem")
        inter.write_bytes(h.intermediate.cert_pem.bytes())
        script: Path | None = None
        if wrk:
            script = Path(tmp, "header.lua")
            script.write_text(_LUA.format(header=HEADER, value=header_value))
        env = {
            **os.environ,
            "MTLSAUTH_BENCH_ROOT": str(root),
            "MTLSAUTH_BENCH_INTERMEDIATE": str(inter),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        for kind, (label, _, connections) in SERVERS.items():
            modes = MODES[kind]
            ctx.log(f"http: {label}, {pairs} x {modes} x {seconds:g}s with {tool}")
            servers: dict[str, Server] = {}
            try:
                for mode in modes:
                    servers[mode] = Server(kind, mode, env)
                for server in servers.values():
                    server.wait_ready(header_value)
                # the middleware is really in front: no header, no entry
                if _get(servers["mtls"].url, {}) != 401:
                    raise RuntimeError(
                        f"{kind}: the mtls server admitted a request without a certificate"
                    )
                if not ctx.quick:  # warm-up outside the timed runs
                    for server in servers.values():
                        _load(server, header_value, 1.0, connections, script)
                runs: dict[str, list[Run]] = {mode: [] for mode in modes}
                for i in range(pairs):
                    order = modes if i % 2 == 0 else tuple(reversed(modes))
                    for mode in order:
                        runs[mode].append(
                            _load(servers[mode], header_value, seconds, connections, script)
                        )
                rows += _rows(kind, runs, tool, seconds)
                if "empty" in modes:
                    rows += _empty_rows(kind, runs, tool, seconds)
            except (RuntimeError, OSError, subprocess.SubprocessError, ImportError) as exc:
                why = f"{type(exc).__name__}: {exc}"
                ctx.log(f"http: {kind} failed: {why}")
                rows.append(
                    missing_row(
                        f"http.{kind}.throughput",
                        f"{label}: requests/s",
                        why,
                        Target(">=", SERVERS[kind][1]),
                    )
                )
                rows.append(
                    missing_row(
                        f"http.{kind}.cpu", f"{label}: server CPU per request", why, CPU_TARGET
                    )
                )
            finally:
                for server in servers.values():
                    server.stop()
    return {"http": rows}
