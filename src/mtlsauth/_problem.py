"""The RFC 9457 ``application/problem+json`` answer every adapter gives a refusal."""

from __future__ import annotations

import json

from mtlsauth._errors import MTLSAuthError

__all__ = ["PROBLEM_TYPE_PREFIX", "problem_body", "problem_headers", "refusal_status"]

PROBLEM_TYPE_PREFIX = "urn:mtlsauth:error:"
"""Problem ``type`` URIs are this prefix plus the error code (RFC 9457 section 3.1.1)."""


def refusal_status(error: MTLSAuthError) -> int:
    """The HTTP status a refusal is answered with: ``error.status`` when it is a client or
    server error (400-599), else 401.

    An error's ``status`` is read-only, yet code in the process that is handed the error
    (``on_decision``, ``on_error``) can still write to its ``__dict__``; whatever it
    writes, a refusal is never answered with a success (which a proxy's
    ``auth_request`` or a cache would take as one) nor a redirect."""
    status = error.status
    if type(status) is int and 400 <= status <= 599:
        return status
    return 401


def problem_body(error: MTLSAuthError) -> bytes:
    """The RFC 9457 ``application/problem+json`` body for a refusal.

    Members: ``type`` (``urn:mtlsauth:error:<code>``), ``title``, ``status``, ``detail``
    and the extension member ``code``. Never a certificate, a header value or a traceback.
    """
    doc = {
        "type": PROBLEM_TYPE_PREFIX + error.code,
        "title": error.title,
        "status": refusal_status(error),
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
    elif refusal_status(error) == 401:
        headers.append(("www-authenticate", f'MutualTLS error="{error.code}"'))
    elif refusal_status(error) == 503:
        headers.append(("retry-after", "1"))
    return headers
