"""Prometheus metrics (``pip install "mtlsauth[prometheus]"``).

Example::

    from prometheus_client import make_asgi_app
    from mtlsauth.metrics.prometheus import PrometheusMetrics

    metrics = PrometheusMetrics(verifier)
    app.add_middleware(MTLSMiddleware, verifier=verifier, on_decision=metrics.on_decision,
                       exempt_paths={"/metrics"})
    app.mount("/metrics", make_asgi_app())

The series are listed in ``mtlsauth.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from mtlsauth.metrics import decision_labels, health_gauges

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from mtlsauth._guard import Decision
    from mtlsauth._verifier import Verifier

__all__ = ["DEFAULT_BUCKETS", "PrometheusMetrics"]

DEFAULT_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
"""From 10 µs (a cache hit) to 5 s (an OCSP fetch at its deadline)."""

_GAUGES = {
    "cache_entries": "Verified identities held by the verification cache.",
    "crl_next_update_seconds": "Seconds until the earliest CRL nextUpdate (negative: stale).",
    "trust_last_load_age_seconds": "Seconds since the oldest trust source was last loaded.",
    "reload_errors": "Trust, pin and revocation sources whose last reload failed.",
    "trust_anchors": "CA anchors in force in the trust store (0: every unpinned client refused).",
}


class _HealthCollector(Collector):
    def __init__(self, verifier: Verifier, namespace: str) -> None:
        self._verifier = verifier
        self._namespace = namespace

    def collect(self) -> Iterable[Metric]:
        values = health_gauges(self._verifier)
        for name, doc in _GAUGES.items():
            if name in values:
                family = GaugeMetricFamily(f"{self._namespace}_{name}", doc)
                family.add_metric([], values[name])
                yield family

    def describe(self) -> Iterable[Metric]:
        return []


class PrometheusMetrics:
    """Counters and a histogram fed by ``on_decision``, gauges read from ``health()``.

    Args:
        verifier: The Verifier whose cache and trust/CRL health the gauges report (``None``:
            no gauges).
        registry: Where to register (default: prometheus_client's global ``REGISTRY``).
        namespace: Prefix of every series name.
        buckets: Histogram buckets, in seconds.
        on_decision: Another hook to call after recording (chaining, e.g. an ``AuditLog``).
    """

    def __init__(
        self,
        verifier: Verifier | None = None,
        *,
        registry: CollectorRegistry | None = REGISTRY,
        namespace: str = "mtlsauth",
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        on_decision: Callable[[Decision], object] | None = None,
    ) -> None:
        self.decisions = Counter(
            "decisions",
            "mtlsauth decisions by outcome and code.",
            ["outcome", "code"],
            namespace=namespace,
            registry=registry,
        )
        self.verification_seconds = Histogram(
            "verification_seconds",
            "Time spent checking a client certificate, by cache outcome.",
            ["cache"],
            namespace=namespace,
            registry=registry,
            buckets=tuple(buckets),
        )
        self._next = on_decision
        self.collector: _HealthCollector | None = None
        if verifier is not None:
            self.collector = _HealthCollector(verifier, namespace)
            if registry is not None:
                registry.register(self.collector)

    def on_decision(self, decision: Decision) -> None:
        """The ``on_decision`` hook: count the decision and time the verification. The
        next hook is called even when recording fails (whose exception then reaches the
        Guard, which logs it)."""
        try:
            self.decisions.labels(*decision_labels(decision)).inc()
            if decision.elapsed is not None and decision.cached is not None:
                cache = "hit" if decision.cached else "miss"
                self.verification_seconds.labels(cache).observe(decision.elapsed)
        finally:
            if self._next is not None:
                self._next(decision)

    __call__ = on_decision
