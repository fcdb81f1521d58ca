"""Composing revocation checkers: ``Verifier(revocation=(crls, ocsp))`` needs every one to pass."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from cryptography import x509

from mtlsauth._errors import MTLSAuthError, RevocationUnavailable
from mtlsauth._hooks import hook_log_limiter, report_unexpected
from mtlsauth._types import HealthReporting, Reloadable, RevocationChecker

__all__ = ["AllOf", "fail_closed", "reload_part"]

logger = logging.getLogger("mtlsauth")

Check = Callable[[Sequence[x509.Certificate], datetime], "datetime | None"]

# Lines about revocation sources that failed unexpectedly, for the whole process: a client
# that can provoke such a failure must not be able to flood the log with it.
unexpected_log_limiter = hook_log_limiter()


def _certificates(chain: Sequence[object]) -> bool:
    """True when every item is a certificate (a loop: ``all()`` over a generator costs a
    quarter of a microsecond more per verification)."""
    for c in chain:  # noqa: SIM110 - see above
        if not isinstance(c, x509.Certificate):
            return False
    return True


def fail_closed(
    check: Check, chain: Sequence[x509.Certificate], at: datetime, *, what: str, detail: str
) -> datetime | None:
    """Run a revocation source's check so that only ``MTLSAuthError`` leaves it: anything
    unexpected is logged (its type at ERROR once a minute, the traceback at DEBUG, texts
    escaped) and becomes ``RevocationUnavailable(detail)``.

    A chain that holds no certificate, or anything but certificates, is refused the same
    way: with nothing in scope a check would otherwise pass without looking at anything.
    """
    if not isinstance(chain, list | tuple) or not chain or not _certificates(chain):
        logger.error("mtlsauth: %s check given no certificate chain", what)
        raise RevocationUnavailable(detail)
    try:
        return check(chain, at)
    except MTLSAuthError:
        raise
    except Exception as exc:  # noqa: BLE001 - a source's bug must deny, not 500
        report_unexpected(f"{what} check", exc, unexpected_log_limiter)
        raise RevocationUnavailable(detail) from None


class AllOf:
    """Several revocation checkers, all of which must pass."""

    __slots__ = ("_checkers", "_last", "_ordered")

    def __init__(self, checkers: Sequence[RevocationChecker]) -> None:
        self._checkers = tuple(checkers)
        if not self._checkers:  # every one of none passes: it would admit everything
            raise ValueError("AllOf needs at least one revocation checker")
        self._last: tuple[object, ...] = ()
        # Those that need no network first (a stable sort keeps the given order otherwise).
        self._ordered = tuple(sorted(self._checkers, key=lambda c: bool(c.may_block)))

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime) -> datetime | None:
        """Every checker must pass. A revocation outranks "cannot tell": once one checker
        fails with ``RevocationUnavailable``, the remaining ones that need no network are
        still asked, and a ``CertificateRevoked`` from any of them is the answer (the
        certificate is refused either way; the code and the negative cache differ).
        Checkers that need no network run first, so a revoked certificate costs no fetch."""
        until: datetime | None = None
        unavailable: RevocationUnavailable | None = None
        for c in self._ordered:
            if unavailable is not None and c.may_block:
                continue  # refused already: no network wait just to name the reason
            try:
                u = c.check(chain, at=at)
            except RevocationUnavailable as exc:
                unavailable = unavailable or exc
                continue
            if u is not None and (until is None or u < until):
                until = u
        if unavailable is not None:
            raise unavailable
        return until

    @property
    def token(self) -> object:
        # Return the same tuple object while every part's token is unchanged, so callers can
        # compare tokens by identity.
        toks = tuple(c.token for c in self._checkers)
        last = self._last
        if len(last) == len(toks) and all(a is b for a, b in zip(last, toks, strict=True)):
            return last
        self._last = toks
        return toks

    @property
    def may_block(self) -> bool:
        return any(c.may_block for c in self._checkers)

    def reload(self) -> bool:
        return any([reload_part(c) for c in self._checkers])

    def health(self) -> list[object]:
        out: list[object] = []
        for c in self._checkers:
            if isinstance(c, HealthReporting):
                status = c.health()
                out.extend(status if isinstance(status, list) else [status])
        return out


def reload_part(obj: object) -> bool:
    return bool(obj.reload()) if isinstance(obj, Reloadable) else False
