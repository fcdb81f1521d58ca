"""The one error tree of mtlsauth.

Every refusal is an ``MTLSAuthError`` carrying a stable ``code`` (for logs, metrics and
API clients) and the HTTP ``status`` an adapter answers with::

    MTLSAuthError                      (status 401)
     +-- CertificateMissing            401  certificate_missing
     +-- CertificateInvalid            401  certificate_malformed, untrusted_issuer,
     |    |                                 certificate_expired, certificate_not_yet_valid,
     |    |                                 invalid_usage, chain_too_long, pin_mismatch,
     |    |                                 tls_verification_failed, weak_key
     |    +-- RevocationUnavailable    401  revocation_unavailable
     +-- CertificateRevoked            401  certificate_revoked
     +-- PolicyDenied                  403  <field>_not_allowed, certificate_denied
     +-- UntrustedForwarder            401  untrusted_forwarder
     +-- IdentityMissing               500  identity_missing (middleware not installed)
     +-- InternalError                 500  internal_error (the check itself failed: refused)
     +-- TokenError (_oauth)           401  token_missing, token_invalid, token_not_bound,
     |                                      token_binding_mismatch; 400 token_request_invalid;
     |                                      403 insufficient_scope
     +-- InvalidClient (_oauth_client) 401  invalid_client (token endpoint, RFC 8705)

Messages are written for an operator reading a log line: they never contain a PEM, a key,
or a header value, only names, fingerprints and short reasons.

Misuse of the API (bad configuration) raises ``ValueError`` or ``TypeError`` at
construction time, never one of these.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "CertificateInvalid",
    "CertificateMissing",
    "CertificateRevoked",
    "IdentityMissing",
    "InternalError",
    "MTLSAuthError",
    "PolicyDenied",
    "RevocationUnavailable",
    "UntrustedForwarder",
]


class MTLSAuthError(Exception):
    """Base class: access is refused.

    Attributes:
        code: A stable, machine-readable reason such as ``"certificate_expired"``.
        status: The HTTP status an adapter answers with (401 or 403).
        detail: A short human-readable explanation, free of secrets.
    """

    default_code: ClassVar[str] = "access_denied"
    codes: ClassVar[frozenset[str]] = frozenset({"access_denied"})
    status: int = 401
    title: ClassVar[str] = "Client certificate authentication failed"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        code = code or self.default_code
        if code not in self.codes:
            raise ValueError(f"{type(self).__name__} has no code {code!r}")
        self.code = code
        self.detail = detail or code.replace("_", " ")
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"

    def __reduce__(self) -> tuple[object, ...]:  # keep code across pickling (multiprocessing)
        return (_rebuild, (type(self), self.detail, self.code))


def _rebuild(cls: type[MTLSAuthError], detail: str, code: str) -> MTLSAuthError:
    return cls(detail, code=code)


class CertificateMissing(MTLSAuthError):
    """No client certificate was presented (or the input was empty)."""

    default_code = "certificate_missing"
    codes = frozenset({"certificate_missing"})
    title = "Client certificate required"


class CertificateInvalid(MTLSAuthError):
    """The certificate or chain is malformed, untrusted, expired or otherwise unusable."""

    default_code = "certificate_malformed"
    codes = frozenset(
        {
            "certificate_malformed",
            "untrusted_issuer",
            "certificate_expired",
            "certificate_not_yet_valid",
            "invalid_usage",
            "chain_too_long",
            "pin_mismatch",
            "tls_verification_failed",
            "weak_key",
        }
    )
    title = "Client certificate invalid"


class RevocationUnavailable(CertificateInvalid):
    """Revocation status could not be established, so the certificate is refused.

    Raised for a missing CRL for an issuer in scope, a stale or badly signed CRL, or an
    OCSP responder that cannot be reached in hard-fail mode.
    """

    default_code = "revocation_unavailable"
    codes = frozenset({"revocation_unavailable"})
    title = "Client certificate revocation status unavailable"


class CertificateRevoked(MTLSAuthError):
    """The certificate (or a CA in its chain) has been revoked."""

    default_code = "certificate_revoked"
    codes = frozenset({"certificate_revoked"})
    title = "Client certificate revoked"


POLICY_FIELDS = (
    "subject",
    "common_name",
    "organization",
    "organizational_unit",
    "issuer",
    "dns_name",
    "uri",
    "spiffe_id",
    "email",
    "ip_address",
    "fingerprint",
)


class PolicyDenied(MTLSAuthError):
    """The certificate is genuine but its holder is not allowed here (HTTP 403)."""

    default_code = "certificate_denied"
    codes = frozenset({f"{f}_not_allowed" for f in POLICY_FIELDS} | {"certificate_denied"})
    status = 403
    title = "Client certificate not allowed"


class UntrustedForwarder(MTLSAuthError):
    """A certificate header arrived from a peer that is not a configured trusted proxy."""

    default_code = "untrusted_forwarder"
    codes = frozenset({"untrusted_forwarder"})
    title = "Certificate header from an untrusted peer"


class IdentityMissing(MTLSAuthError):
    """An identity accessor was called but the mtlsauth middleware did not run.

    This is a deployment bug, not a client error, hence status 500.
    """

    default_code = "identity_missing"
    codes = frozenset({"identity_missing"})
    status = 500
    title = "mtlsauth middleware not installed"


class InternalError(MTLSAuthError):
    """The check itself failed (a bug or an unexpected exception): the request is refused.

    Status 500 because the client cannot fix it; the body says nothing about the cause.
    """

    default_code = "internal_error"
    codes = frozenset({"internal_error"})
    status = 500
    title = "Client certificate could not be checked"
