"""What a refusal's log line says about the request: the refused leaf, and the hint that
names a misconfiguration the request shows. Best effort: nothing here raises."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cryptography import x509

from mtlsauth._encoding import chain_to_der
from mtlsauth._errors import CertificateMissing, MTLSAuthError, UntrustedForwarder
from mtlsauth._forwarded._presets import PRESETS
from mtlsauth._identity import ClientIdentity
from mtlsauth._logfields import RefusalLogLimiter, escape_log_value, logfmt_value
from mtlsauth._types import Presented

if TYPE_CHECKING:
    from mtlsauth._forwarded._cert import ForwardedCert
    from mtlsauth._guard import Decision

logger = logging.getLogger("mtlsauth")

_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


def _leaf_fingerprint(presented: Presented) -> str | None:
    """Best-effort SHA-256 of the TLS leaf, for logging refusals (never raises)."""
    if not presented.tls_chain:
        return None
    leaf = presented.tls_chain[0]
    try:
        if isinstance(leaf, bytes) and not leaf.lstrip().startswith(b"-----"):
            return hashlib.sha256(leaf).hexdigest()
        text = leaf.decode("ascii") if isinstance(leaf, bytes) else leaf
        start = text.index(_PEM_BEGIN) + len(_PEM_BEGIN)
        der = base64.b64decode("".join(text[start : text.index(_PEM_END, start)].split()))
        return hashlib.sha256(der).hexdigest()
    except Exception:  # noqa: BLE001 - for the log only: never turn a refusal into a 500
        return None


def _refused_leaf(
    presented: Presented, forwarded: ForwardedCert | None
) -> tuple[str | None, tuple[str | None, str | None] | None, Sequence[bytes]]:
    """(fingerprint, (subject, issuer) or ``None`` when they are still to be read from the
    DER chain, DER chain) of a refused certificate, for the log; never raises.

    The names are read (``leaf_names``) only for a log line that is written: a flood of
    refusals costs no certificate parsing for lines the limiter drops.

    A header is only decoded when its sender is a trusted proxy: from anyone else it is
    attacker text, and nothing of it goes into a log.
    """
    try:
        ders: Sequence[bytes] = ()
        if forwarded is not None and forwarded.is_trusted(presented.peer):
            value = forwarded.extract(presented)
            if value is not None:
                decoded = value.decode()
                if isinstance(decoded, ClientIdentity):
                    return decoded.fingerprint_sha256, (decoded.subject, decoded.issuer), ()
                ders = decoded
        elif presented.tls_chain:
            ders = chain_to_der(presented.tls_chain)
        if not ders:
            return None, (None, None), ()
        return hashlib.sha256(ders[0]).hexdigest(), None, ders
    except Exception:  # noqa: BLE001 - best effort: the refusal stands either way
        return _leaf_fingerprint(presented), (None, None), ()


def leaf_names(ders: Sequence[bytes]) -> tuple[str, str] | None:
    """(subject, issuer) of the first certificate, or ``None`` when they cannot be read
    (cryptography raises ValueError or TypeError, e.g. for a BIT STRING value): the
    fingerprint still identifies it. Never raises."""
    try:
        cert = x509.load_der_x509_certificate(ders[0])
        return cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    except Exception:  # noqa: BLE001 - for the log only
        return None


def _known_certificate_headers() -> frozenset[str]:
    names = {"x-forwarded-client-cert", "x-client-cert", "x-ssl-client-cert", "ssl-client-cert"}
    for cfg in PRESETS.values():
        for key in ("header", "chain_header"):
            value = cfg.get(key)
            if isinstance(value, str):
                names.add(value.lower())
    return frozenset(names)


_CERT_HEADERS = _known_certificate_headers()
_DIAGNOSTIC_HEADERS = _CERT_HEADERS | {"x-forwarded-for"}


def refusal_hint(
    error: MTLSAuthError, presented: Presented, forwarded: ForwardedCert | None
) -> str | None:
    """What the request shows is misconfigured, for the operator (the log line and
    ``Decision.hint``); ``None`` when it shows nothing. Never raises.

    Never part of the refusal the client gets: it names the header this server believes,
    whether the peer address was taken from ``X-Forwarded-For``, how the server's TLS is
    set up, which a client could otherwise learn by varying its request. Only names from
    fixed lists are quoted; never a header value.
    """
    try:
        xff = presented.header_values("x-forwarded-for")
        last = xff[-1].rsplit(",", 1)[-1].strip() if xff else ""
        rewritten = bool(presented.peer) and last == presented.peer
        if isinstance(error, UntrustedForwarder):
            return _REWRITTEN if rewritten else None
        if not isinstance(error, CertificateMissing) or presented.tls_chain:
            return None
        configured = forwarded.header_names() if forwarded is not None else frozenset()
        if forwarded is not None and any(k in configured for k, _v in presented.headers):
            # on_untrusted="ignore": the header was there, from a peer not trusted
            # The peer itself is in the log line only (see ForwardedCert._untrusted).
            where = "the peer" if presented.peer else "an unknown peer"
            why = _REWRITTEN if rewritten else f"{where} is not in trusted_proxies"
            return f"a {forwarded.header!r} header was ignored: {why}"
        seen = sorted({k for k, _v in presented.headers if k in _CERT_HEADERS} - configured)
        if seen:
            if forwarded is None:
                what = "no forwarded= is configured (ForwardedCert.preset(...))"
            else:
                what = f"forwarded= reads {forwarded.header!r}"
            return f"the request carries a {seen[0]!r} header, but {what}"
        if presented.tls_hint:
            return presented.tls_hint
    except Exception:  # noqa: BLE001 - a hint must never change the refusal
        return None
    return None


_REWRITTEN = (
    "the peer's address is the last hop of X-Forwarded-For: the server replaced the socket "
    "peer with it (uvicorn does by default: run it with --no-proxy-headers), or a "
    "proxy-headers middleware wraps the mtlsauth middleware (put it inside: with "
    "add_middleware, add it before MTLSMiddleware), so the trusted proxy cannot be recognised"
)


def log_allowed(decision: Decision) -> None:
    """A DEBUG line for an allowed request (fields escaped, in the line and in the dict a
    structured formatter prints)."""
    if logger.isEnabledFor(logging.DEBUG):
        peer = decision.peer
        fields = {
            "outcome": "allowed",
            "code": decision.code,
            "peer": None if peer is None else escape_log_value(peer),
            "fingerprint": decision.fingerprint,
            "path": escape_log_value(decision.path),
            "method": escape_log_value(decision.method, 16),
            "mode": decision.mode,
            "status": None,
        }
        logger.debug(
            "mtlsauth allowed code=%s peer=%s fingerprint=%s method=%s path=%s mode=%s",
            decision.code,
            logfmt_value(decision.peer or "-"),
            decision.fingerprint or "-",
            logfmt_value(decision.method, 16),
            logfmt_value(decision.path),
            decision.mode,
            extra={"mtlsauth": fields},
        )


LogDetails = Callable[[], tuple[tuple[str | None, str | None], str | None]]
"""Reads ((subject, issuer), hint) of a refusal when its log line is written."""


def log_refusal(
    decision: Decision,
    error: MTLSAuthError,
    details: LogDetails,
    limiter: RefusalLogLimiter,
) -> None:
    """One WARNING line per refusal (ERROR for a 500), rate-limited per code, fingerprint
    and peer. Every field is escaped; never a certificate or a header value."""
    level = logging.ERROR if error.status >= 500 else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    admitted, repeats, dropped = limiter.admit(error.code, decision.fingerprint, decision.peer)
    if not admitted:
        return
    try:
        (subject, issuer), hint = details()
    except Exception:  # noqa: BLE001 - for the log only: the line is written without them
        (subject, issuer), hint = (None, None), None

    def safe(value: str | None, limit: int = 256) -> str | None:
        return None if value is None else escape_log_value(value, limit)

    # Escaped here too: a formatter may print the dict as it is.
    fields: dict[str, object] = {
        "outcome": "denied",
        "code": error.code,
        "status": error.status,
        "detail": safe(error.detail, 512),
        "peer": safe(decision.peer),
        "method": safe(decision.method, 16),
        "path": safe(decision.path),
        "mode": decision.mode,
        "subject": safe(subject),
        "issuer": safe(issuer),
        "fingerprint": decision.fingerprint,
        "hint": safe(hint, 512),
        "suppressed": repeats,
    }
    if dropped:
        logger.warning(
            "mtlsauth: %d refusal log lines were dropped in the last minute (flood)", dropped
        )
    logger.log(
        level,
        "mtlsauth refused code=%s status=%d peer=%s method=%s path=%s subject=%s "
        "issuer=%s fingerprint=%s detail=%s%s%s",
        error.code,
        error.status,
        logfmt_value(decision.peer or "-"),
        logfmt_value(decision.method, 16),
        logfmt_value(decision.path),
        logfmt_value(subject) if subject is not None else "-",
        logfmt_value(issuer) if issuer is not None else "-",
        decision.fingerprint or "-",
        logfmt_value(error.detail, 512),
        f" hint={logfmt_value(hint, 512)}" if hint else "",
        f" (and {repeats} more like it since the last line)" if repeats else "",
        extra={"mtlsauth": fields},
    )
