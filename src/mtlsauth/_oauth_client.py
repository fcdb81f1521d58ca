"""OAuth 2.0 on mutual TLS, authorization-server side (RFC 8705 section 2 and 3.1).

At a token endpoint behind an mtlsauth middleware, ``authenticate_client`` decides whether
the certificate the request authenticated with authenticates the OAuth client whose
registered metadata is given, and ``certificate_cnf`` is the ``cnf`` claim that binds the
access token issued to that certificate. No I/O: a ``jwks_uri`` is fetched by the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth._errors import MTLSAuthError, PolicyDenied
from mtlsauth._oauth import certificate_thumbprint

if TYPE_CHECKING:
    from mtlsauth._identity import ClientIdentity

__all__ = ["InvalidClient", "authenticate_client", "certificate_cnf"]

logger = logging.getLogger("mtlsauth")


class InvalidClient(MTLSAuthError):
    """The client certificate does not authenticate this OAuth client (RFC 6749 5.2).

    A token endpoint answers it with HTTP 401 and ``{"error": "invalid_client"}``.
    """

    default_code = "invalid_client"
    codes: ClassVar[frozenset[str]] = frozenset({"invalid_client"})
    title = "OAuth client authentication failed"


def authenticate_client(
    client_metadata: Mapping[str, Any],
    identity: ClientIdentity | None,
    /,
    *,
    jwks: Mapping[str, Any] | None = None,
) -> ClientIdentity:
    """Authenticate an OAuth client at the token endpoint by its TLS client certificate.

    ``token_endpoint_auth_method`` in ``client_metadata`` selects the method:

    * ``tls_client_auth`` (RFC 8705 2.1): the certificate must have been validated to one
      of the Verifier's trust anchors (a pinned certificate does not count) and match the
      single registered ``tls_client_auth_subject_dn`` or ``tls_client_auth_san_*`` value
      (``Policy.from_rfc8705``).
    * ``self_signed_tls_client_auth`` (RFC 8705 2.2): the certificate must be, byte for
      byte, the first ``x5c`` certificate of a key in the client's registered ``jwks``,
      or in ``jwks`` passed here (the document behind its ``jwks_uri``, which this
      function does not fetch). Let the middleware's Verifier accept these certificates
      with ``Verifier(pinned=...)``.

    Args:
        client_metadata: The client's registered metadata (RFC 7591 names).
        identity: The identity the middleware verified for this request
            (``identity_from_scope`` and friends); ``None`` when none was presented.
        jwks: The client's JWK Set fetched from its ``jwks_uri``.

    Returns:
        ``identity``, now known to authenticate this client.

    Raises:
        InvalidClient: no certificate, no certificate mtlsauth verified itself (a
            proxy-verified identity cannot be bound), another method, unusable metadata,
            or a certificate that does not match the registration.
    """
    if identity is None or identity.certificate is None or certificate_thumbprint(identity) is None:
        raise InvalidClient("the client presented no certificate verified by mtlsauth")
    if not isinstance(client_metadata, Mapping):
        raise InvalidClient("no usable client registration")
    try:
        method = client_metadata.get("token_endpoint_auth_method")
        if method == "tls_client_auth":
            _pki(client_metadata, identity)
        elif method == "self_signed_tls_client_auth":
            _self_signed(client_metadata, identity, jwks)
        else:
            raise InvalidClient("the client is not registered for mutual-TLS authentication")
    except MTLSAuthError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreadable registration refuses the client
        logger.error("mtlsauth unusable client registration: %s", type(exc).__name__)
        raise InvalidClient("no usable client registration") from None
    return identity


def _pki(client_metadata: Mapping[str, Any], identity: ClientIdentity) -> None:
    from mtlsauth._policy._policy import Policy

    # A pinned certificate verifies as a one-element chain; tls_client_auth trusts the PKI
    # only, or a self-signed certificate copying a registered subject DN would pass.
    chain = identity.chain
    if len(chain) < 2 or chain[0] == chain[-1]:
        raise InvalidClient("tls_client_auth needs a certificate issued by a trusted CA")
    try:
        policy = Policy.from_rfc8705(client_metadata)
    except (TypeError, ValueError) as exc:
        logger.error("mtlsauth unusable tls_client_auth registration: %s", exc)
        raise InvalidClient("no usable client registration") from None
    try:
        policy.check(identity)
    except PolicyDenied:
        raise InvalidClient("the certificate does not match the registered client") from None
    # RFC 8705 2.1.2 compares tls_client_auth_san_ip in binary form: a Policy reads the
    # IPv4-mapped ::ffff:10.0.0.7 as 10.0.0.7, but a certificate naming only that 16-octet
    # address does not carry the 4-octet one registered.
    address = client_metadata.get("tls_client_auth_san_ip")
    if address is not None and _address(address) not in identity.ip_addresses:
        raise InvalidClient("the certificate does not match the registered client")


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The registered ``tls_client_auth_san_ip`` (``Policy.from_rfc8705`` checked it)."""
    return ipaddress.ip_address(value.strip(" "))


def _self_signed(
    client_metadata: Mapping[str, Any], identity: ClientIdentity, jwks: Mapping[str, Any] | None
) -> None:
    from mtlsauth._policy._policy import pinned_from_rfc8705

    document = jwks if jwks is not None else client_metadata.get("jwks")
    if document is None:
        raise InvalidClient("no registered certificate (fetch the jwks_uri and pass jwks=)")
    try:
        registered = pinned_from_rfc8705({"jwks": document})
    except (TypeError, ValueError) as exc:
        logger.error("mtlsauth unusable self_signed_tls_client_auth registration: %s", exc)
        raise InvalidClient("no usable client registration") from None
    mine = certificate_thumbprint(identity)
    if mine is None:
        raise InvalidClient("the client presented no certificate verified by mtlsauth")
    found = False
    for cert in registered:
        theirs = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
        found |= hmac.compare_digest(mine, theirs)
    if not found:
        raise InvalidClient("the certificate is not one the client registered")


def certificate_cnf(identity: ClientIdentity) -> dict[str, str]:
    """The ``cnf`` claim that binds an access token to ``identity``'s certificate.

    ``{"x5t#S256": <base64url SHA-256 of the DER leaf>}`` (RFC 8705 section 3.1), for a
    JWT access token or an introspection response.

    Raises:
        InvalidClient: the identity has no certificate mtlsauth verified (a proxy-verified
            identity): no token can be bound to it.
    """
    x5t = identity.x5t_s256() if certificate_thumbprint(identity) is not None else None
    if x5t is None:
        raise InvalidClient("no verified certificate to bind the token to")
    return {"x5t#S256": x5t}
