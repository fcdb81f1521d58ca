"""``verdict``: a verification's answer as one string, for tests that compare answers."""

from __future__ import annotations

import datetime as dt

from mtlsauth import MTLSAuthError, Verifier


def verdict(verifier: Verifier, chain: object, at: dt.datetime | None = None) -> str:
    """``"accepted"``, or the code of the refusal ``verifier.verify(chain, at=at)`` raises."""
    try:
        verifier.verify(chain, at=at)
    except MTLSAuthError as exc:
        return exc.code
    return "accepted"
