"""Draw docs/img/benchmarks.png from a results payload (benchmarks/results/latest.json).

Left: every target as headroom, measured against its target on one log axis (right of the
line passes, whatever the target's direction). Right: what one request costs on each path,
from the same run, so the cache's point is visible at a glance.

    python benchmarks/chart.py [results.json] [out.png]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PASS, MISS, GREY = "#2e7d32", "#c62828", "#607d8b"


def _headroom(row: dict[str, Any]) -> float:
    t, v = row["target"], row["value"]
    return t["value"] / v if t["op"] == "<=" else v / t["value"]


def _measured(row: dict[str, Any]) -> str:
    v = row["value"]
    if row["unit"] == "bytes":
        return f"{v:,.0f} B"
    return f"{v:.3g}×" if v < 100 else f"{v:.0f}×"  # noqa: RUF001 - it is a multiplication sign


def _costs(m: dict[str, list[dict[str, Any]]]) -> list[tuple[str, float]]:
    """Per-request time on each path (µs), all from the same run."""
    by_id = {r["id"]: r for rows in m.values() for r in rows}
    out: list[tuple[str, float]] = []

    def add(label: str, row_id: str, side: str) -> None:
        row = by_id.get(row_id)
        if row and row.get("details", {}).get(side):
            out.append((label, row["details"][side]))

    add("floor: SHA-256 + dict look-up", "cached_hit.header", "baseline_us")
    add("mtlsauth, cached hit (header)", "cached_hit.header", "subject_us")
    add("mtlsauth, cached hit + CRL + policy", "cached_hit.header_crl_policy", "subject_us")
    add("cryptography ClientVerifier alone", "uncached.ec", "baseline_us")
    add("mtlsauth, uncached (CRL + policy)", "uncached.ec", "subject_us")
    add("naive: decode + verify per request", "peers.naive", "subject_us")
    add("pyhanko-certvalidator", "peers.pyhanko", "subject_us")
    add("pyhanko-certvalidator, 10k CRL", "peers.pyhanko_crl10k", "subject_us")
    return out


def draw(payload: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = payload["measurements"]
    targeted = [
        r for rows in m.values() for r in rows if r.get("target") and r["value"] is not None
    ]
    costs = _costs(m)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(15, max(5.5, 0.42 * len(targeted) + 2)), width_ratios=(1.25, 1)
    )

    labels = [r["label"] for r in targeted][::-1]
    scores = [_headroom(r) for r in targeted][::-1]
    colours = [PASS if s >= 1 else MISS for s in scores]
    y = list(range(len(scores)))
    # Bars grow from the target line (1) to the headroom factor, on a log axis: right of the
    # line passes, left misses, and the bar's length is by how much.
    left.barh(y, [sc - 1 for sc in scores], left=1, color=colours, height=0.6)
    left.axvline(1, color="black", linewidth=1.2)
    left.set_xscale("log")
    low, high = min([*scores, 1.0]), max([*scores, 1.0])
    left.set_xlim(low / 6, high * 6)
    left.set_yticks(y, labels, fontsize=8.5)
    for yi, sc, row in zip(y, scores, targeted[::-1], strict=True):
        t = row["target"]
        op = "\N{LESS-THAN OR EQUAL TO}" if t["op"] == "<=" else "\N{GREATER-THAN OR EQUAL TO}"
        text = f" {_measured(row)} (target {op} {t['value']:g}) "
        left.text(sc, yi, text, va="center", ha="left" if sc >= 1 else "right", fontsize=7.5)
    left.set_xlabel("headroom against the target (log scale): right of the line passes")
    s = payload.get("summary", {})
    left.set_title(
        f"Targets: {s.get('PASS', 0)} pass, {s.get('MISS', 0)} miss", fontsize=11, loc="left"
    )
    left.grid(axis="x", alpha=0.3)

    if costs:
        names = [c[0] for c in costs][::-1]
        values = [c[1] for c in costs][::-1]
        colour = [PASS if "mtlsauth" in n else GREY for n in names]
        right.barh(names, values, color=colour)
        right.set_xscale("log")
        for yi, v in enumerate(values):
            label = f" {v / 1000:.2f} ms" if v >= 1000 else f" {v:.1f} µs"
            right.text(v, yi, label, va="center", fontsize=8)
        right.set_xlim(min(values) / 2, max(values) * 8)
        right.set_xlabel("time per request, µs (log scale), same run")
        right.set_title("What one request costs on each path", fontsize=11, loc="left")
        right.tick_params(axis="y", labelsize=8.5)
        right.grid(axis="x", alpha=0.3)

    machine = payload.get("machine", {})
    fig.suptitle(
        f"mtlsauth benchmarks, {payload.get('mode', '?')} run, {payload.get('date', '')[:10]}, "
        f"{machine.get('cores', '?')} cores, Python {machine.get('python', '?')}, "
        f"cryptography {machine.get('cryptography', '?')}",
        fontsize=12,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "latest.json"
    dst = (
        Path(sys.argv[2]) if len(sys.argv) > 2 else HERE.parent / "docs" / "img" / "benchmarks.png"
    )
    draw(json.loads(src.read_text()), dst)
    print(f"wrote {dst}")
