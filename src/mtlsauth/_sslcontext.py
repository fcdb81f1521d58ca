"""``server_ssl_context``: a server-side ``ssl.SSLContext`` that asks for client certificates.

It trusts the same CAs as the Verifier's ``TrustStore`` so the TLS layer and mtlsauth agree;
mtlsauth still verifies every certificate itself (policy, revocation, key strength, EKU),
because Python's ``ssl`` can only accept or abort a handshake and exposes no detail.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from cryptography.hazmat.primitives.serialization import Encoding

if TYPE_CHECKING:
    from mtlsauth._truststore import TrustStore

__all__ = ["server_ssl_context"]


def server_ssl_context(
    *,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None = None,
    trust_store: TrustStore,
    mode: Literal["mandatory", "optional"] = "mandatory",
    password: str | bytes | None = None,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    alpn_protocols: Sequence[str] | None = None,
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

    Returns:
        The context, with ``VERIFY_X509_PARTIAL_CHAIN`` set (any certificate in the trust
        store is an anchor, as for the Verifier) and ``VERIFY_X509_STRICT`` *not* set.

    Raises:
        ValueError: bad mode, empty trust store, or TLS below 1.2.

    Security note: this context proves that the client holds the key; the decision stays
    with the Verifier. ``VERIFY_X509_STRICT`` is left off on purpose: Python 3.13's
    ``create_default_context`` enables it and then refuses CA certificates without a key
    usage extension (common in hand-made PKIs) with an opaque handshake failure, while
    mtlsauth's own verification applies RFC 5280 checks anyway and reports them with a code.

    Example:
        >>> from mtlsauth.testing import CA  # doctest: +SKIP
        >>> ctx = server_ssl_context(certfile="server.pem", keyfile="server.key",
        ...                          trust_store=ca.trust_store())  # doctest: +SKIP
    """
    from mtlsauth._truststore import TrustStore

    if mode not in ("mandatory", "optional"):
        raise ValueError("mode must be 'mandatory' or 'optional' (for 'off' use no client CA)")
    if not isinstance(trust_store, TrustStore):
        raise TypeError("trust_store must be a TrustStore")
    if minimum_version < ssl.TLSVersion.TLSv1_2:
        raise ValueError("minimum_version below TLS 1.2 is not supported")
    anchors = trust_store.certificates
    if not anchors:
        raise ValueError("trust_store holds no certificates")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum_version
    ctx.load_cert_chain(certfile, keyfile, password)
    ctx.load_verify_locations(
        cadata="".join(c.public_bytes(Encoding.PEM).decode() for c in anchors)
    )
    ctx.verify_mode = ssl.CERT_REQUIRED if mode == "mandatory" else ssl.CERT_OPTIONAL
    ctx.verify_flags = (ctx.verify_flags | ssl.VERIFY_X509_PARTIAL_CHAIN) & ~ssl.VERIFY_X509_STRICT
    if alpn_protocols:
        ctx.set_alpn_protocols(list(alpn_protocols))
    return ctx


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
