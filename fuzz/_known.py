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
    # Empty: every failure found so far is fixed, and replayed as a regression.
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
