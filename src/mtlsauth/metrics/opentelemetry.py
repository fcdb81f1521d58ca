"""OpenTelemetry metrics (``pip install "mtlsauth[opentelemetry]"``).

Example::

    from mtlsauth.metrics.opentelemetry import OpenTelemetryMetrics

    metrics = OpenTelemetryMetrics(verifier)      # uses the global MeterProvider
    app.add_middleware(MTLSMiddleware, verifier=verifier, on_decision=metrics.on_decision)

Instruments (see ``mtlsauth.metrics`` for their meaning): the counter
``mtlsauth.decisions`` (attributes ``outcome``, ``code``), the histogram
``mtlsauth.verification.duration`` in seconds (attribute ``cache``: ``hit`` or ``miss``), and
observable gauges ``mtlsauth.cache.entries``, ``mtlsauth.crl.next_update``,
``mtlsauth.trust.last_load_age`` and ``mtlsauth.reload.errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics as otel_metrics

from mtlsauth import __version__
from mtlsauth.metrics import decision_labels, health_gauges

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

    from mtlsauth._guard import Decision
    from mtlsauth._verifier import Verifier

__all__ = ["OpenTelemetryMetrics"]

_GAUGES = {
    "cache_entries": ("mtlsauth.cache.entries", "{entry}", "Verified identities cached."),
    "crl_next_update_seconds": (
        "mtlsauth.crl.next_update",
        "s",
        "Seconds until the earliest CRL nextUpdate (negative: stale).",
    ),
    "trust_last_load_age_seconds": (
        "mtlsauth.trust.last_load_age",
        "s",
        "Seconds since the oldest trust source was last loaded.",
    ),
    "reload_errors": ("mtlsauth.reload.errors", "{source}", "Sources whose last reload failed."),
    "trust_anchors": (
        "mtlsauth.trust.anchors",
        "{certificate}",
        "CA anchors in force in the trust store (0: every unpinned client refused).",
    ),
}


class OpenTelemetryMetrics:
    """Instruments fed by ``on_decision``; gauges observed from ``health()`` at collection.

    Args:
        verifier: The Verifier whose health the gauges report (``None``: no gauges).
        meter: The ``Meter`` to create instruments with (default: the global provider's
            ``mtlsauth`` meter).
        on_decision: Another hook to call after recording.
    """

    def __init__(
        self,
        verifier: Verifier | None = None,
        *,
        meter: Meter | None = None,
        on_decision: Callable[[Decision], object] | None = None,
    ) -> None:
        self._meter = meter or otel_metrics.get_meter("mtlsauth", __version__)
        self.decisions = self._meter.create_counter(
            "mtlsauth.decisions", unit="{decision}", description="Decisions by outcome and code."
        )
        self.duration = self._meter.create_histogram(
            "mtlsauth.verification.duration",
            unit="s",
            description="Time spent checking a client certificate, by cache outcome.",
        )
        self._next = on_decision
        self._verifier = verifier
        if verifier is not None:
            for key, (name, unit, doc) in _GAUGES.items():
                self._meter.create_observable_gauge(
                    name, callbacks=[self._observer(key)], unit=unit, description=doc
                )

    def _observer(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            assert self._verifier is not None
            value = health_gauges(self._verifier).get(key)
            return [] if value is None else [Observation(value)]

        return observe

    def on_decision(self, decision: Decision) -> None:
        """The ``on_decision`` hook: count the decision and record the verification time.
        The next hook is called even when recording fails."""
        try:
            outcome, code = decision_labels(decision)
            self.decisions.add(1, {"outcome": outcome, "code": code})
            if decision.elapsed is not None and decision.cached is not None:
                cache = "hit" if decision.cached else "miss"
                self.duration.record(decision.elapsed, {"cache": cache})
        finally:
            if self._next is not None:
                self._next(decision)

    __call__ = on_decision
