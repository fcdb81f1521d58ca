"""The benchmark suite runs end to end in quick mode and reports every measurement.

Only that it runs and reports is checked: timings on a shared CI machine are not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = ("cached_hit", "uncached", "crl", "headers", "http", "peers", "memory", "hostile")


def _run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``benchmarks/<script>`` with ``args``; fail with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_quick_benchmark_run_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = _run(
        "run.py", "--quick", "--output", str(out), "--chart", str(tmp_path / "quick.png"),
        timeout=180,
    )  # fmt: skip
    payload = json.loads(out.read_text())
    assert payload["mode"] == "quick"
    assert set(payload["measurements"]) == set(MEASUREMENTS)
    counts = dict.fromkeys(("PASS", "MISS", "MISSING", "INFO"), 0)
    for key in MEASUREMENTS:
        rows = payload["measurements"][key]
        assert rows, f"{key}: no rows"
        for row in rows:
            counts[row["status"]] += 1
            if row["status"] == "MISSING":  # only a comparison library may be absent
                assert key == "peers", row
                continue
            # PASS or MISS against a target depends on the machine; a value must be there.
            assert row["status"] in {"PASS", "MISS", "INFO"}, row
            assert row["value"] is not None, row
            assert row["value"] > 0, row
    # the printed summary is the JSON's, row for row
    summary = (
        f"{counts['PASS']} PASS, {counts['MISS']} MISS, {counts['MISSING']} MISSING, "
        f"{counts['INFO']} INFO"
    )
    assert summary in proc.stdout, proc.stdout[-2000:]


def test_quick_http_run_reports_the_empty_middleware_rows(tmp_path: Path) -> None:
    """uvicorn and aiohttp are also timed with an empty middleware: what any middleware costs
    the server, and what mtlsauth adds on top, in throughput and CPU per request."""
    out = tmp_path / "http.json"
    _run("run.py", "--quick", "--only", "http", "--no-chart", "--output", str(out), timeout=180)
    payload = json.loads(out.read_text())
    rows = {row["id"]: row for row in payload["measurements"]["http"]}
    for kind in ("asgi", "aiohttp"):
        for slug in ("empty_vs_bare", "empty_vs_bare_cpu", "mtls_vs_empty", "mtls_vs_empty_cpu"):
            row = rows[f"http.{kind}.{slug}"]
            assert row["status"] == "INFO", row
            assert row["value"] > 0, row
    assert "flask" not in {i.split(".")[1] for i in rows if i.endswith("empty_vs_bare")}
    # which servers and parsers were measured is part of the record
    servers = payload["machine"]["servers"]
    assert servers["uvicorn_http"] in {"httptools", "h11"}, servers
    assert "aiohttp" in servers, servers
    assert "gunicorn" in servers, servers


def test_stage_probe_names_every_stage() -> None:
    """``benchmarks/stages.py`` times each stage of an uncached verification in place."""
    proc = _run("stages.py", "-n", "20", timeout=120)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import stages
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("P-256, 20 fresh chains"), proc.stdout
    labels = [label for _, _, label in stages.STAGES]
    labels += ["Verifier.verify, untimed", "cryptography ClientVerifier.verify alone"]
    assert len(lines) == 1 + len(labels), proc.stdout
    for label, line in zip(labels, lines[1:], strict=True):
        assert line.strip().startswith(label), (label, line)
        if label == "cryptography's full path validation" and line.endswith("not run"):
            continue  # every chain after the first took the vouched intermediate's path
        assert float(line.split()[-1]) > 0, line
    vouched = next(line for line in lines if "intermediate vouched for" in line)
    assert float(vouched.split()[-1]) > 0, proc.stdout


def test_interference_probe_reports_each_setting() -> None:
    proc = _run("stages.py", "--interference", "-n", "40", timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("cryptography ClientVerifier.verify alone, after"), proc.stdout
    settings = [ln.strip().rsplit(None, 1) for ln in lines[1:]]
    assert [label for label, _ in settings] == [
        "nothing (a tight loop)",
        "a whole mtlsauth verification",
        "reading 256 KiB of memory",
        "reading 4 MiB of memory",
    ], proc.stdout
    assert all(float(value) > 0 for _, value in settings), proc.stdout


def test_the_spinning_app_spends_its_time_and_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``http_apps.py``'s ``spin`` mode (``benchmarks/amplification.py``): a loop sized to
    take the given time, then the hello world's answer."""
    import asyncio

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import http_apps
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert len(http_apps._spin_loops(0)) == 0
    assert len(http_apps._spin_loops(50)) > len(http_apps._spin_loops(5)) > 0
    monkeypatch.setenv("MTLSAUTH_BENCH_MODE", "spin")
    monkeypatch.setenv("MTLSAUTH_BENCH_SPIN_US", "2")
    app = http_apps.asgi_app()
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(app({"type": "http"}, None, send))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == http_apps.BODY


def test_compare_runs_two_revisions_side_by_side() -> None:
    """``benchmarks/compare.py`` verifies with HEAD's package and the working tree's in turn."""
    proc = _run("compare.py", "-n", "100", timeout=120)
    lines = proc.stdout.splitlines()
    assert lines[0] == "P-256, 100 fresh chains each, base HEAD against the working tree"
    for line, label in zip(lines[1:4], ("base", "new", "alone"), strict=True):
        fields = line.split()
        assert fields[0] == label, proc.stdout
        assert float(fields[1]) > 0, proc.stdout
    assert lines[4].startswith("  new/base "), proc.stdout
    assert float(lines[4].split()[1]) > 0, proc.stdout


def test_compare_exports_a_revision_that_imports_only_itself(tmp_path: Path) -> None:
    """The exported revision is a package of its own: importing it and verifying with it
    loads nothing of the working tree's ``mtlsauth``."""
    code = (
        "import sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import compare\n"
        "for name in [m for m in sys.modules if m == 'mtlsauth' or m.startswith('mtlsauth.')]:\n"
        "    del sys.modules[name]\n"
        f"compare.export_base('HEAD', Path({str(tmp_path)!r}))\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import mtlsauth_base\n"
        "from mtlsauth_base.testing import CA\n"
        "ca = CA(); leaf = ca.issue_client_cert(common_name='svc')\n"
        "v = mtlsauth_base.Verifier(trust_store=ca.trust_store())\n"
        "assert v.verify(leaf.chain_pem.bytes()).common_name == 'svc'\n"
        "leaked = sorted(m for m in sys.modules if m == 'mtlsauth' or m.startswith('mtlsauth.'))\n"
        "assert not leaked, leaked\n"
        "print(mtlsauth_base.__file__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.strip() == str(tmp_path / "mtlsauth_base" / "__init__.py")
