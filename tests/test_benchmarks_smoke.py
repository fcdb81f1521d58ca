"""The benchmark suite runs end to end in quick mode and reports every measurement.

Only that it runs and reports is checked: timings on a shared CI machine are not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEASUREMENTS = ("cached_hit", "uncached", "crl", "headers", "http", "peers", "memory", "hostile")


def test_quick_benchmark_run_reports_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--output",
            str(out),
            "--chart",
            str(tmp_path / "quick.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
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
