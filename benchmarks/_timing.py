"""Interleaved timing: every subject is timed next to its baseline, in the same process.

The machines these run on are shared, so absolute times drift by tens of percent within a
minute. A ratio survives that only if subject and baseline see the same conditions, so each
round times one batch of every case back to back, alternating the order (A B, then B A) to
cancel slow drifts. Results are the median per-operation time of each case and the median of
the per-round ratios; a lone absolute time is never the result.

Micro-benchmarks use ``timeit.Timer`` with the statement compiled inline, so the floor (a hash
and a dict look-up) pays no extra Python call that the subject would hide behind.
"""

from __future__ import annotations

import gc
import statistics
import time
import timeit
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# A case is "run `number` operations, return elapsed seconds".
Runner = Callable[[int], float]


@dataclass(frozen=True)
class Budget:
    """How long to spend: rounds per comparison and seconds per batch."""

    rounds: int
    batch_s: float
    warmup_s: float

    def scaled(self, factor: float) -> Budget:
        return Budget(self.rounds, self.batch_s * factor, self.warmup_s * factor)


QUICK = Budget(rounds=3, batch_s=0.004, warmup_s=0.002)
FULL = Budget(rounds=15, batch_s=0.05, warmup_s=0.05)


@dataclass(frozen=True)
class Comparison:
    """Per-operation medians (seconds) and the median of per-round ratios subject/baseline."""

    subject_s: float
    baseline_s: float
    ratio: float
    ratio_spread: tuple[float, float]  # 25th and 75th percentile of the per-round ratios
    rounds: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject_us": self.subject_s * 1e6,
            "baseline_us": self.baseline_s * 1e6,
            "ratio": self.ratio,
            "ratio_p25": self.ratio_spread[0],
            "ratio_p75": self.ratio_spread[1],
            "rounds": self.rounds,
        }


def stmt_runner(stmt: str, namespace: Mapping[str, Any], setup: str = "pass") -> Runner:
    """A runner for an inline statement (``timeit`` compiles it into its loop)."""
    timer = timeit.Timer(stmt, setup=setup, globals=dict(namespace))
    return timer.timeit


def pool_runner(fn: Callable[[Any], object], items: list[Any]) -> Runner:
    """A runner that feeds ``fn`` fresh items; item ``i`` is never reused (for uncached work).

    The batch size is then bounded by the pool: callers size pools to rounds x batch.
    """
    position = [0]

    def run(number: int) -> float:
        start = position[0]
        end = start + number
        if end > len(items):
            raise RuntimeError(f"pool of {len(items)} items exhausted (asked for item {end})")
        batch = items[start:end]
        position[0] = end
        t0 = time.perf_counter()
        for item in batch:
            fn(item)
        return time.perf_counter() - t0

    return run


def paired_pool_runners(
    fns: Mapping[str, Callable[[Any], object]], items: list[Any]
) -> dict[str, Runner]:
    """Runners that each walk the same items in the same order (round r: the same slice).

    Each runner keeps its own cursor, so in round r every case sees the same new items.
    """
    return {name: pool_runner(fn, items) for name, fn in fns.items()}


def calibrate(run: Runner, batch_s: float, *, cap: int | None = None) -> int:
    """How many operations fill ``batch_s`` seconds (at least 1, at most ``cap``)."""
    number = 1
    while True:
        elapsed = run(number)
        if elapsed >= batch_s / 4 or (cap is not None and number >= cap):
            break
        number *= 4 if elapsed < batch_s / 40 else 2
        if cap is not None:
            number = min(number, cap)
    estimate = max(1, int(number * batch_s / max(elapsed, 1e-9)))
    return min(estimate, cap) if cap is not None else estimate


def interleave(
    runners: Mapping[str, Runner],
    *,
    rounds: int,
    numbers: Mapping[str, int],
) -> dict[str, list[float]]:
    """Time every runner once per round, alternating the order; per-op seconds per round."""
    names = list(runners)
    samples: dict[str, list[float]] = {n: [] for n in names}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection landing in one case's batch would bias that case
    try:
        for r in range(rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for name in order:
                n = numbers[name]
                samples[name].append(runners[name](n) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def summarise(samples: Mapping[str, list[float]], subject: str, baseline: str) -> Comparison:
    ratios = [s / b for s, b in zip(samples[subject], samples[baseline], strict=True)]
    return Comparison(
        subject_s=statistics.median(samples[subject]),
        baseline_s=statistics.median(samples[baseline]),
        ratio=statistics.median(ratios),
        ratio_spread=(_quantile(ratios, 0.25), _quantile(ratios, 0.75)),
        rounds=len(ratios),
    )


def compare(
    runners: Mapping[str, Runner],
    budget: Budget,
    *,
    caps: Mapping[str, int] | None = None,
    numbers: Mapping[str, int] | None = None,
) -> dict[str, list[float]]:
    """Warm up, size batches, then interleave; returns per-op samples for every runner."""
    if numbers is None:
        numbers = {}
        for name, run in runners.items():
            cap = (caps or {}).get(name)
            numbers[name] = calibrate(run, budget.batch_s, cap=cap)  # also warms up
    else:
        for name, run in runners.items():
            run(max(1, numbers[name] // 4))  # warm-up
    return interleave(runners, rounds=budget.rounds, numbers=numbers)
