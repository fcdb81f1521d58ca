"""The RFC 9457 ``application/problem+json`` answer every adapter gives a refusal."""

from __future__ import annotations

import json

from mtlsauth._errors import MTLSAuthError

__all__ = ["PROBLEM_TYPE_PREFIX", "problem_body", "problem_headers"]

PROBLEM_TYPE_PREFIX = "urn:mtlsauth:error:"
"""Problem ``type`` URIs are this prefix plus the error code (RFC 9457 section 3.1.1)."""


def problem_body(error: MTLSAuthError) -> bytes:
    """The RFC 9457 ``application/problem+json`` body for a refusal.

    Members: ``type`` (``urn:mtlsauth:error:<code>``), ``title``, ``status``, ``detail``
    and the extension member ``code``. Never a certificate, a header value or a traceback.
    """
    doc = {
        "type": PROBLEM_TYPE_PREFIX + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def problem_headers(error: MTLSAuthError, body_length: int) -> list[tuple[str, str]]:
    """Response headers for a refusal.

    A 401 carries ``WWW-Authenticate: MutualTLS error="<code>"``: RFC 9110 section 15.5.2
    requires a challenge on every 401 and no scheme is registered for TLS client
    certificates, so this names one that clients without support simply ignore.
    """
    headers = [
        ("content-type", "application/problem+json"),
        ("content-length", str(body_length)),
        ("cache-control", "no-store"),
    ]
    challenge = getattr(error, "challenge", None)  # bearer-token refusals (RFC 6750 section 3)
    if isinstance(challenge, str):
        headers.append(("www-authenticate", challenge))
    elif error.status == 401:
        headers.append(("www-authenticate", f'MutualTLS error="{error.code}"'))
    elif error.status == 503:
        headers.append(("retry-after", "1"))
    return headers
