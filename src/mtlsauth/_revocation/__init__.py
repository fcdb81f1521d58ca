"""Revocation: is a validated chain still good?

The public face: ``CRLSet`` (``_crl``: CRL loading, indexing and the reloadable snapshot),
``OCSPChecker`` (``_ocsp``) and the ``RevocationChecker`` protocol every source meets
(``mtlsauth._types``), which ``_compose.AllOf`` combines.
"""

from __future__ import annotations

from mtlsauth._revocation._crl import CRLSet
from mtlsauth._revocation._ocsp import OCSPChecker
from mtlsauth._types import RevocationChecker

__all__ = ["CRLSet", "OCSPChecker", "RevocationChecker"]
