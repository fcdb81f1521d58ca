"""Result rows, targets and the printed table.

Every row carries the number its target is judged on (``value``), what that number means
(``unit``: "x floor", "x faster"...), and the raw medians it came from. A row without a target
is information (``INFO``); a row whose subject could not run is ``MISSING`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from _timing import Comparison

TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Target:
    op: str  # "<=" or ">="
    value: float

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {self.value:g}"


@dataclass
class Row:
    id: str
    label: str
    value: float | None
    unit: str
    target: Target | None = None
    subject: str = ""
    baseline: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    missing: str | None = None  # why the row could not be measured

    @property
    def status(self) -> str:
        if self.missing is not None or self.value is None:
            return "MISSING"
        if self.target is None:
            return "INFO"
        return "PASS" if self.target.met(self.value) else "MISS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "target": None
            if self.target is None
            else {"op": self.target.op, "value": self.target.value},
            "status": self.status,
            "subject": self.subject,
            "baseline": self.baseline,
            "details": self.details,
            "missing": self.missing,
        }


def ratio_row(
    id: str,
    label: str,
    comparison: Comparison,
    *,
    subject: str,
    baseline: str,
    target: Target | None = None,
    unit: str = "x baseline",
    invert: bool = False,
    **details: Any,
) -> Row:
    """A row from an interleaved comparison; ``invert`` reports baseline/subject (x faster)."""
    value = 1.0 / comparison.ratio if invert else comparison.ratio
    d = comparison.as_dict()
    if invert:
        d["ratio_p25"], d["ratio_p75"] = 1.0 / d["ratio_p75"], 1.0 / d["ratio_p25"]
    d.update(details)
    return Row(id, label, value, unit, target, subject, baseline, d)


def missing_row(id: str, label: str, why: str, target: Target | None = None) -> Row:
    return Row(id, label, None, "", target, missing=why)


def _fmt_time(us: float | None) -> str:
    if us is None:
        return ""
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    if us >= 100:
        return f"{us:.0f} µs"
    return f"{us:.2f} µs"


def _fmt_value(row: Row) -> str:
    if row.value is None:
        return "-"
    v = row.value
    if row.unit.startswith("x"):
        return f"{v:.3g}{TIMES}" if v < 100 else f"{v:.0f}{TIMES}"
    if row.unit == "bytes":
        return f"{v:,.0f} B"
    return f"{v:.3g} {row.unit}"


def _subject_baseline(row: Row) -> tuple[str, str]:
    d = row.details
    if "subject_us" in d:
        return _fmt_time(d.get("subject_us")), _fmt_time(d.get("baseline_us"))
    if "subject_text" in d:
        return str(d["subject_text"]), str(d.get("baseline_text", ""))
    return "", ""


def table(sections: list[tuple[str, list[Row]]]) -> str:
    """The human-readable table: every target next to its measured value and verdict."""
    header = ("measurement", "subject", "baseline", "measured", "target", "result")
    lines: list[tuple[str, ...]] = []
    for title, rows in sections:
        lines.append((title,))
        for row in rows:
            s, b = _subject_baseline(row)
            target = "" if row.target is None else str(row.target)
            lines.append(("  " + row.label, s, b, _fmt_value(row), target, row.status))
    widths = [len(h) for h in header]
    for line in lines:
        if len(line) == len(header):
            widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    out = []

    def fmt(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out.append(fmt(header))
    out.append("  ".join("-" * w for w in widths))
    for line in lines:
        out.append(line[0] if len(line) == 1 else fmt(line))
    return "\n".join(out)


def markdown(payload: dict[str, Any], titles: dict[str, str]) -> str:
    """The results as a Markdown table, for docs/benchmarks.md."""
    out = [
        "| measurement | subject | baseline | measured | target | result |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for key, rows in payload["measurements"].items():
        out.append(f"| **{titles.get(key, key)}** | | | | | |")
        for d in rows:
            row = Row(
                d["id"],
                d["label"],
                d["value"],
                d["unit"],
                Target(d["target"]["op"], d["target"]["value"]) if d["target"] else None,
                details=d["details"],
                missing=d["missing"],
            )
            s, b = _subject_baseline(row)
            target = "" if row.target is None else str(row.target)
            status = row.status if row.status != "MISSING" else f"MISSING: {row.missing}"
            out.append(f"| {row.label} | {s} | {b} | {_fmt_value(row)} | {target} | {status} |")
    return "\n".join(out)
