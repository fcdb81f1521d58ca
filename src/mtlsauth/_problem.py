"""The RFC 9457 ``application/problem+json`` answer every adapter gives a refusal."""

from __future__ import annotations

import json
from typing import NamedTuple

from mtlsauth._errors import MTLSAuthError

__all__ = [
    "PROBLEM_TYPE_PREFIX",
    "Answer",
    "answer_of",
    "problem_body",
    "problem_headers",
    "refusal_status",
]

PROBLEM_TYPE_PREFIX = "urn:mtlsauth:error:"
"""Problem ``type`` URIs are this prefix plus the error code (RFC 9457 section 3.1.1)."""


def _read(error: MTLSAuthError, name: str) -> object:
    try:
        return getattr(error, name)
    except Exception:  # noqa: BLE001 - a field that cannot be read is one not given
        return None


def refusal_status(error: MTLSAuthError) -> int:
    """The HTTP status a refusal is answered with: ``error.status`` when it is a client or
    server error (400-599), else 401.

    An error's ``status`` is read-only, yet code in the process that is handed the error
    (``on_decision``, ``on_error``) can still write to its ``__dict__``; whatever it
    writes, a refusal is never answered with a success (which a proxy's
    ``auth_request`` or a cache would take as one) nor a redirect."""
    status = _read(error, "status")
    if type(status) is int and 400 <= status <= 599:
        return status
    return 401


class Answer(NamedTuple):
    """What a refusal is answered with (see ``answer_of``)."""

    status: int
    code: str
    title: str
    detail: str
    challenge: str | None  # a bearer refusal's WWW-Authenticate value


def answer_of(error: MTLSAuthError) -> Answer:
    """The fields of ``error`` an answer is made of, each one only when it is what the
    error's class could hold: a ``code`` of its ``codes`` (else its ``default_code``),
    text for ``title`` and ``detail`` (else the class's title, the code in words), a
    bearer challenge of printable ASCII computed by the class. Like ``refusal_status``,
    for an error whose ``__dict__`` a hook wrote to: the refusal is answered, never
    turned into a 500 or a header of the hook's making."""
    cls = type(error)
    codes: frozenset[str] = getattr(cls, "codes", frozenset())
    default = getattr(cls, "default_code", "access_denied")
    if type(default) is not str:
        default = "access_denied"
    code = _read(error, "code")
    if type(code) is not str or code not in codes:
        code = default
    title = _read(error, "title")
    if type(title) is not str:
        title = getattr(cls, "title", None)
        if type(title) is not str:
            title = MTLSAuthError.title
    detail = _read(error, "detail")
    if type(detail) is not str:
        detail = code.replace("_", " ")
    challenge = None
    if isinstance(getattr(cls, "challenge", None), property):  # computed, not stored
        found = _read(error, "challenge")
        if type(found) is str and found.isascii() and found.isprintable():
            challenge = found
    return Answer(refusal_status(error), code, title, detail, challenge)


def problem_body(error: MTLSAuthError) -> bytes:
    """The RFC 9457 ``application/problem+json`` body for a refusal.

    Members: ``type`` (``urn:mtlsauth:error:<code>``), ``title``, ``status``, ``detail``
    and the extension member ``code``. Never a certificate, a header value or a traceback.
    """
    answer = answer_of(error)
    doc = {
        "type": PROBLEM_TYPE_PREFIX + answer.code,
        "title": answer.title,
        "status": answer.status,
        "detail": answer.detail,
        "code": answer.code,
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
    answer = answer_of(error)
    if answer.challenge is not None:  # bearer-token refusals (RFC 6750 section 3)
        headers.append(("www-authenticate", answer.challenge))
    elif answer.status == 401:
        headers.append(("www-authenticate", f'MutualTLS error="{answer.code}"'))
    elif answer.status == 503:
        headers.append(("retry-after", "1"))
    return headers
