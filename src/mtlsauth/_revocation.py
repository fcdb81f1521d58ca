"""Revocation: CRLSet (and OCSPChecker). INTERFACE STUB: replaced by the full implementation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

__all__ = ["CRLSet"]


class CRLSet:
    """Verified, indexed CRLs; satisfies ``mtlsauth._types.RevocationChecker``."""

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime) -> datetime | None:
        raise NotImplementedError

    @property
    def token(self) -> object:
        raise NotImplementedError

    @property
    def may_block(self) -> bool:
        return False
