"""Metrics for mtlsauth decisions: Prometheus and OpenTelemetry, wired through ``on_decision``.

Both back-ends export the same series (names shown for Prometheus, with the default
``mtlsauth`` namespace):

``mtlsauth_decisions_total{outcome, code}`` (counter)
    Every decision: ``outcome`` is ``allowed`` or ``denied``; ``code`` is ``ok``,
    ``no_certificate``, ``skipped`` or the error code of the refusal. Both label sets are
    closed (error codes are a fixed list), so a client cannot create new series.
``mtlsauth_verification_seconds{cache}`` (histogram)
    The time the certificate check took, ``cache="hit"`` or ``"miss"``.
``mtlsauth_cache_entries`` (gauge)
    Verified identities held by the Verifier's cache.
``mtlsauth_crl_next_update_seconds`` (gauge)
    Seconds until the earliest CRL ``nextUpdate`` (negative: a CRL is stale); absent without
    CRLs.
``mtlsauth_trust_last_load_age_seconds`` (gauge)
    Seconds since the oldest file-backed trust source was last loaded.
``mtlsauth_reload_errors`` (gauge)
    How many trust, pin and revocation sources report a failed last reload (the reason is in
    ``verifier.health()`` and the log).
``mtlsauth_trust_anchors`` (gauge)
    CA anchors in force in the trust store (0 after its files were emptied or deleted: every
    client without a pin is refused); absent without a trust store.

The gauges are read from ``verifier.health()`` when scraped, never on the request path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mtlsauth._guard import Decision
    from mtlsauth._verifier import Verifier

__all__ = ["decision_labels", "health_gauges"]


def decision_labels(decision: Decision) -> tuple[str, str]:
    """``(outcome, code)`` for the decisions counter."""
    return ("allowed" if decision.allowed else "denied"), decision.code


def _walk(value: object) -> Iterator[Mapping[str, object]]:
    if isinstance(value, Mapping):
        yield value
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v)


def _timestamp(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def health_gauges(verifier: Verifier, *, now: float | None = None) -> dict[str, float]:
    """The gauge values, from ``verifier.health()``; a gauge with nothing to report is absent."""
    health = verifier.health()
    now = time.time() if now is None else now
    out: dict[str, float] = {}
    cache = health.get("cache")
    if isinstance(cache, Mapping) and isinstance(cache.get("entries"), int):
        out["cache_entries"] = float(cache["entries"])
    errors = health.get("errors")
    out["reload_errors"] = float(len(errors)) if isinstance(errors, list) else 0.0
    anchors = health.get("anchors")
    if isinstance(anchors, int) and not isinstance(anchors, bool):
        out["trust_anchors"] = float(anchors)
    nexts = [
        t
        for part in _walk(health.get("revocation"))
        if (t := _timestamp(part.get("earliest_next_update"))) is not None
    ]
    if nexts:
        out["crl_next_update_seconds"] = min(nexts) - now
    loads = [
        t
        for part in _walk(health.get("trust_store"))
        if (t := _timestamp(part.get("last_loaded"))) is not None
    ]
    if loads:
        out["trust_last_load_age_seconds"] = now - min(loads)
    return out
