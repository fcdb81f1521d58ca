"""Failures the fuzzers found that are recorded and awaiting a fix in the library.

Each entry is keyed by a signature: the exception type and the innermost ``mtlsauth`` frame it
passed through. A failure with a known signature is counted, not reported as new, so a long run
keeps exploring past it. Every entry has a strict ``xfail`` regression case in
``tests/test_fuzz_smoke.py`` built from the committed input in ``fuzz/regressions/``: when the fix
lands that case passes, the strict ``xfail`` fails the suite, and the entry is removed here.
"""

from __future__ import annotations

import traceback

PENDING: dict[tuple[str, str], str] = {
    ("InvalidVersion", "_encoding.load_der"): (
        "a certificate whose version is not v1-v3 raises x509.InvalidVersion (a 500)"
    ),
    ("UnsupportedAlgorithm", "_pathvalidation.check_leaf_key"): (
        "a leaf whose EC key names an unknown curve raises UnsupportedAlgorithm (a 500)"
    ),
    ("ValueError", "_identity.identity_from_certificate"): (
        "a leaf whose subjectKeyIdentifier holds trailing data passes path validation, then"
        " reading its extensions for the identity raises ValueError (a 500)"
    ),
    ("ValueError", "_pathvalidation.check_leaf_key"): (
        "a leaf whose EC public key is not a point on its curve raises ValueError (a 500)"
    ),
    ("TypeError", "_identity.identity_from_certificate"): (
        "a leaf whose subject holds an attribute encoded as a BIT STRING passes path validation,"
        " then reading its subject for the identity raises TypeError (a 500)"
    ),
    ("DuplicateExtension", "_revocation._index_crl"): (
        "a CRL with a duplicate extension raises x509.DuplicateExtension, not ValueError"
    ),
    ("InvalidVersion", "_revocation._parse"): (
        "a CRL whose version is not v1/v2 raises x509.InvalidVersion, not ValueError"
    ),
}


def signature(exc: BaseException) -> tuple[str, str]:
    """(exception type, innermost mtlsauth module.function it went through)."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        parts = frame.filename.replace("\\", "/").split("/mtlsauth/")
        if len(parts) > 1 and "/fuzz/" not in frame.filename:
            module = parts[-1].removesuffix(".py").replace("/", ".")
            where = f"{module}.{frame.name}"
    return type(exc).__name__, where
