"""``server_ssl_context``: a server-side ``ssl.SSLContext`` that asks for client certificates.

It trusts the same CAs as the Verifier's ``TrustStore`` so the TLS layer and mtlsauth agree;
mtlsauth still verifies every certificate itself (policy, revocation, key strength, EKU),
because Python's ``ssl`` can only accept or abort a handshake and exposes no detail.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Sequence
from typing import Any, Literal

from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth._logfields import RefusalLogLimiter, escape_log_value
from mtlsauth._reload import refuse_pem_text
from mtlsauth._truststore import TrustStore, is_end_entity, not_a_trust_store, refuse_end_entities
from mtlsauth._verifier import _parse_certs

__all__ = ["peer_chain", "server_ssl_context", "unrequested_hint"]


def server_ssl_context(
    *,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    trust_store: TrustStore,
    mode: Literal["mandatory", "optional"] = "mandatory",
    password: str | bytes | None = None,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    alpn_protocols: Sequence[str] | None = None,
    pinned: Sequence[object] = (),
    session_tickets: bool = False,
) -> ssl.SSLContext:
    """Build a server ``SSLContext`` for direct mutual TLS.

    Args:
        certfile, keyfile, password: The server's own certificate chain and key
            (``SSLContext.load_cert_chain``).
        trust_store: The CAs that issue client certificates; the same ``TrustStore`` as
            the Verifier's. Its certificates are loaded with
            ``load_verify_locations(cadata=...)`` at call time: after a trust reload, build a
            new context (servers read it once at start).
        mode: ``"mandatory"`` (``CERT_REQUIRED``: the handshake fails without a valid
            certificate) or ``"optional"`` (``CERT_OPTIONAL``: no certificate is fine, but a
            certificate that does not chain to ``trust_store`` still fails the handshake;
            Python's ``ssl`` has no equivalent of nginx ``optional_no_ca``).
        minimum_version: TLS 1.2 by default; never lower.
        alpn_protocols: e.g. ``["http/1.1"]``.
        pinned: Exact certificates the handshake must also accept without a CA (the
            Verifier's ``pinned=``, e.g. RFC 8705 ``self_signed_tls_client_auth`` clients):
            PEM or DER bytes, ``x509.Certificate`` objects, or file paths. Each is trusted
            only as itself (partial-chain verification); the Verifier still decides.
        session_tickets: Off by default (``OP_NO_TICKET``): sessions resume only from
            this context's own cache (TLS 1.2 session IDs, TLS 1.3 stateful tickets),
            which keeps the client's chain. A stateless ticket carries the leaf only: on
            Python 3.13+ ``get_unverified_chain()`` is empty on a connection resumed from
            one, and a client whose intermediates come from its own handshake would be
            refused on those connections. Turn tickets on only with
            ``Verifier(intermediates=...)`` holding every intermediate CA; each request is
            verified again either way.

    Returns:
        The context, with ``VERIFY_X509_PARTIAL_CHAIN`` set (every CA certificate in the
        trust store is a handshake anchor, intermediates included, so that a client
        sending its leaf alone completes the handshake), ``VERIFY_X509_STRICT`` *not* set, and
        ``OP_NO_RENEGOTIATION`` set: a TLS 1.2 client cannot renegotiate, so a connection
        keeps the certificate of its handshake (OpenSSL 3 refuses a client's renegotiation
        by default; 1.1.1 accepts it).

    Raises:
        ValueError: bad mode, empty trust store, a trust store holding end-entity
            certificates, TLS below 1.2, or a ``certfile``/``keyfile`` that is missing or
            unusable (the message names the file).

    A client certificate refused here never reaches the application: the handshake fails,
    and the context logs the reason (``"mtlsauth"`` logger, WARNING, rate-limited) because
    asyncio servers such as uvicorn and aiohttp do not.

    Security note: this context proves that the client holds the key; the decision stays
    with the Verifier, which verifies every request's chain itself. A completed handshake
    is no verification: an intermediate of the trust store anchors the handshake, while
    the Verifier anchors only the certificates no other one of the store issued and holds a
    chain through that intermediate to its root's validity and constraints (an expired
    root, name or path-length constraints), besides revocation and policy. ``VERIFY_X509_STRICT`` is left off on purpose: Python 3.13's
    ``create_default_context`` enables it and then refuses CA certificates without a key
    usage extension (common in hand-made PKIs) with an opaque handshake failure, while
    mtlsauth's own verification applies RFC 5280 checks anyway and reports them with a code.

    Example:
        >>> from mtlsauth.testing import CA  # doctest: +SKIP
        >>> ctx = server_ssl_context(certfile="server.pem", keyfile="server.key",
        ...                          trust_store=ca.trust_store())  # doctest: +SKIP
    """

    if mode not in ("mandatory", "optional"):
        raise ValueError("mode must be 'mandatory' or 'optional' (for 'off' use no client CA)")
    if not isinstance(trust_store, TrustStore):
        raise not_a_trust_store(trust_store)
    if minimum_version < ssl.TLSVersion.TLSv1_2:
        raise ValueError("minimum_version below TLS 1.2 is not supported")
    refuse_end_entities(trust_store, "trust_store")
    anchors = [c for c in trust_store.certificates if not is_end_entity(c)]
    if not anchors:
        raise ValueError("trust_store holds no certificates")
    if not isinstance(session_tickets, bool):
        raise TypeError("session_tickets must be a bool")
    if isinstance(pinned, str | bytes) or not isinstance(pinned, Sequence):
        raise TypeError("pinned must be a sequence of certificates")
    if pinned:
        anchors += list(_parse_certs(pinned, "pinned"))
    for what, name in (("certfile", certfile), ("keyfile", keyfile)):
        refuse_pem_text(name, what)
        if name is not None and not os.path.isfile(name):
            state = "is a directory" if os.path.isdir(name) else "does not exist"
            raise ValueError(f"{what} {os.fspath(name)!r} {state}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sslobject_class = _logging_class(ctx.sslobject_class)
    ctx.sslsocket_class = _logging_class(ctx.sslsocket_class)
    ctx.minimum_version = minimum_version
    try:
        ctx.load_cert_chain(certfile, keyfile, password)
    except ssl.SSLError as exc:
        why = (
            "the key does not match the certificate"
            if "KEY_VALUES_MISMATCH" in str(exc)
            else (exc.reason or str(exc))
        )
        raise ValueError(
            f"certfile {os.fspath(certfile)!r}, keyfile "
            f"{os.fspath(keyfile) if keyfile is not None else None!r}: cannot load: {why}"
        ) from None
    except OSError as exc:
        raise ValueError(
            f"certfile {os.fspath(certfile)!r}: cannot read: {exc.strerror or exc}"
        ) from None
    ctx.load_verify_locations(
        cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in anchors)
    )
    ctx.verify_mode = ssl.CERT_REQUIRED if mode == "mandatory" else ssl.CERT_OPTIONAL
    ctx.verify_flags = (ctx.verify_flags | ssl.VERIFY_X509_PARTIAL_CHAIN) & ~ssl.VERIFY_X509_STRICT
    # One certificate per connection: no renegotiation (which could change it mid-connection,
    # while adapters such as MTLSH11Protocol read it once). Sessions resume from the
    # context's own cache, which keeps the chain; a stateless ticket holds the leaf only.
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    if not session_tickets:
        ctx.options |= ssl.OP_NO_TICKET  # TLS 1.2 session IDs, TLS 1.3 stateful tickets
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    return ctx


# -- handshake failures in the log --------------------------------------------------------
logger = logging.getLogger("mtlsauth")

# One line per reason and peer a minute (repeats counted into the next), 100 lines a minute
# in all: one client failing its handshakes never hides another's first failure.
_handshake_limiter = RefusalLogLimiter(interval=60.0, budget=100, max_keys=1024)


def _log_handshake_failure(exc: ssl.SSLError, peer: str | None) -> None:
    """One WARNING per reason and peer a minute; the rest are counted into the next line."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"client certificate refused: {exc.verify_message or exc.reason}"
    elif exc.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        reason = "no client certificate (this context requires one)"
    else:
        return  # not about the client certificate (a port scan, a protocol mismatch...)
    reason = escape_log_value(reason)
    admitted, suppressed, dropped = _handshake_limiter.admit(reason, None, peer)
    if not admitted:
        return
    if dropped:
        logger.warning(
            "mtlsauth: %d TLS handshake failure lines were dropped in the last minute (flood)",
            dropped,
        )
    logger.warning(
        "mtlsauth TLS handshake failed: %s peer=%s suppressed=%d",
        reason,
        escape_log_value(peer or "-"),
        suppressed,
        extra={"mtlsauth": {"outcome": "handshake_failed", "reason": reason, "peer": peer}},
    )


_LOGGING_CLASSES: dict[type, type] = {}


def _logging_class(base: type) -> type:
    """``base`` (an ``SSLObject`` or ``SSLSocket`` class) with a ``do_handshake`` that logs
    why a handshake failed. Built from the context's own class, so a patched ``ssl``
    (gevent's cooperative sockets) keeps its behaviour."""
    cls = _LOGGING_CLASSES.get(base)
    if cls is not None:
        return cls

    def do_handshake(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return base.do_handshake(self, *args, **kwargs)  # type: ignore[attr-defined]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            peer: str | None = None
            getpeername = getattr(self, "getpeername", None)  # sockets; asyncio's objects: no
            if getpeername is not None:
                try:
                    peer = str(getpeername()[0])
                except (OSError, IndexError, TypeError):
                    peer = None
            _log_handshake_failure(exc, peer)
            raise

    cls = type(base.__name__, (base,), {"do_handshake": do_handshake, "__module__": __name__})
    _LOGGING_CLASSES[base] = cls
    return cls


def unrequested_hint(ssl_object: object) -> str | None:
    """What to say when a TLS connection carries no client certificate because the server's
    context never asked for one (``verify_mode`` ``CERT_NONE``); ``None`` otherwise."""
    if ssl_object is None:
        return None
    try:
        if ssl_object.context.verify_mode == ssl.CERT_NONE:  # type: ignore[attr-defined]
            return (
                "the connection is TLS, but the server's SSLContext does not ask for a client "
                "certificate (verify_mode CERT_NONE): build it with mtlsauth.server_ssl_context"
            )
    except AttributeError:
        return None
    return None


def peer_chain(ssl_object: object) -> tuple[bytes, ...]:
    """The client's certificates as DER, leaf first, from an ``SSLObject``/``SSLSocket``.

    Python 3.13+ gives what the client sent (``get_unverified_chain()``); earlier versions
    give the leaf only (``getpeercert(binary_form=True)``), so intermediates must then come
    from ``Verifier(intermediates=...)``. Empty when there is no TLS or no certificate.
    """
    if ssl_object is None:
        return ()
    try:
        leaf = ssl_object.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    except (ValueError, AttributeError, OSError):  # handshake not done, or not TLS
        return ()
    if not leaf:
        return ()
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is not None:  # Python 3.13+: a list of DER bytes, leaf first (server side)
        try:
            chain = tuple(bytes(c) for c in getter() if isinstance(c, bytes | bytearray))
        except Exception:  # noqa: BLE001 - degrade to the leaf (still verified), never a 500
            chain = ()
        if chain and chain[0] == leaf:
            return chain
    return (leaf,)
