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
     +-- AmbiguousRequest              400  ambiguous_path, request_malformed
     +-- VerificationBusy              503  verification_busy (Retry-After: 1)
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

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "AmbiguousRequest",
    "CertificateInvalid",
    "CertificateMissing",
    "CertificateRevoked",
    "IdentityMissing",
    "InternalError",
    "MTLSAuthError",
    "PolicyDenied",
    "RevocationUnavailable",
    "UntrustedForwarder",
    "VerificationBusy",
]


# What an answer to a refusal is made of: fixed once the error is made, so that a hook
# (``on_decision``, ``on_error``) or the application, which are handed the error, cannot
# change the answer the client gets. ``_made`` marks an error whose construction finished.
_FIXED = frozenset(
    {
        "code",
        "detail",
        "status",
        "title",
        "challenge",
        "bearer_error",
        "required_scope",
        "__class__",
        "_made",
    }
)


class _Made(type):
    """Marks each error as made once its class's ``__init__`` has returned."""

    # Any: type checkers then read the instance type from the class, as without a metaclass.
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        error = super().__call__(*args, **kwargs)
        object.__setattr__(error, "_made", True)
        return error


class MTLSAuthError(Exception, metaclass=_Made):
    """Base class: access is refused.

    Attributes:
        code: A stable, machine-readable reason such as ``"certificate_expired"``.
        status: The HTTP status an adapter answers with (401 or 403).
        detail: A short human-readable explanation, free of secrets.

    These, and whatever else the answer to the refusal is built from (``title``, a bearer
    ``challenge``), are read-only once the error is made (``AttributeError``): hooks and
    the application are handed the error the answer is sent from.
    """

    default_code: ClassVar[str] = "access_denied"
    explanations: ClassVar[Mapping[str, str]] = {
        "access_denied": "refused for a reason no subclass names",
    }
    """Each code with one line for an operator: what it usually means and what to try.

    A subclass that sets ``explanations`` gets its ``codes`` from them, so adding a code
    is one edit here (the CLI's ``verify`` prints these lines)."""
    codes: ClassVar[frozenset[str]] = frozenset({"access_denied"})
    status: int = 401
    title: ClassVar[str] = "Client certificate authentication failed"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "explanations" in cls.__dict__ and "codes" not in cls.__dict__:
            cls.codes = frozenset(cls.explanations)

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        code = code or self.default_code
        if code not in self.codes:
            raise ValueError(f"{type(self).__name__} has no code {code!r}")
        self.code = code
        self.detail = detail or code.replace("_", " ")
        super().__init__(self.detail)

    def __setattr__(self, name: str, value: object) -> None:
        if name in _FIXED and self.__dict__.get("_made"):
            raise AttributeError(f"{type(self).__name__}.{name} is read-only")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in _FIXED and self.__dict__.get("_made"):
            raise AttributeError(f"{type(self).__name__}.{name} is read-only")
        super().__delattr__(name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r})"

    def __copy__(self) -> MTLSAuthError:
        """The same refusal in a new object: every field (a subclass's own ones too, such
        as a bearer refusal's scope), the message, cause, context and traceback. Hooks are
        handed such a copy: ``__setattr__`` cannot stop a write to the instance's
        ``__dict__`` or through ``object.__setattr__``, so the answer is sent from an
        object no hook has seen."""
        cls = type(self)
        clone = cls.__new__(cls)
        clone.__dict__.update(self.__dict__)
        BaseException.__setattr__(clone, "args", self.args)
        BaseException.__setattr__(clone, "__cause__", self.__cause__)
        BaseException.__setattr__(clone, "__context__", self.__context__)
        BaseException.__setattr__(clone, "__suppress_context__", self.__suppress_context__)
        BaseException.__setattr__(clone, "__traceback__", self.__traceback__)
        return clone

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as the class, detail and code it is rebuilt from, and a subclass's own
        fields (a bearer refusal's scope): a refusal crosses processes unchanged."""
        extra = {k: v for k, v in self.__dict__.items() if k not in _REBUILT}
        return (_rebuild, (type(self), self.detail, self.code, extra))


# What the constructor sets again from the detail and the code (or marks) on unpickling.
_REBUILT = frozenset({"code", "detail", "_made"})


def _rebuild(
    cls: type[MTLSAuthError], detail: str, code: str, extra: dict[str, object] | None = None
) -> MTLSAuthError:
    error = cls(detail, code=code)
    if extra:  # the fields as they were when pickled (read-only afterwards, as before)
        error.__dict__.update(extra)
    return error


class CertificateMissing(MTLSAuthError):
    """No client certificate was presented (or the input was empty)."""

    default_code = "certificate_missing"
    explanations: ClassVar[Mapping[str, str]] = {
        "certificate_missing": "no certificate in the input",
    }
    title = "Client certificate required"


class CertificateInvalid(MTLSAuthError):
    """The certificate or chain is malformed, untrusted, expired or otherwise unusable."""

    default_code = "certificate_malformed"
    explanations: ClassVar[Mapping[str, str]] = {
        "certificate_malformed": "the input is not a certificate (or a damaged one)",
        "untrusted_issuer": "the chain does not lead to a CA given with --ca "
        "(wrong CA, or a missing intermediate: add --intermediate)",
        "certificate_expired": "the certificate (or a CA in its chain) is past its notAfter date",
        "certificate_not_yet_valid": "the certificate's notBefore date is in the future "
        "(or the clock is wrong)",
        "invalid_usage": "not usable for client authentication (a CA certificate, an "
        "extended key usage without clientAuth in it or in a CA above it, or an unknown "
        "critical extension)",
        "chain_too_long": "more intermediate CAs than max_depth allows",
        "pin_mismatch": "not one of the pinned certificates",
        "tls_verification_failed": "the TLS server reported a client-certificate error",
        "weak_key": "the certificate's key is too weak",
    }
    title = "Client certificate invalid"


class RevocationUnavailable(CertificateInvalid):
    """Revocation status could not be established, so the certificate is refused.

    Raised for a missing CRL for an issuer in scope, a stale or badly signed CRL, or an
    OCSP responder that cannot be reached in hard-fail mode.
    """

    default_code = "revocation_unavailable"
    explanations: ClassVar[Mapping[str, str]] = {
        "revocation_unavailable": "no usable CRL for an issuer in the chain "
        "(missing, stale or badly signed), or OCSP unreachable in hard-fail",
    }
    title = "Client certificate revocation status unavailable"


class CertificateRevoked(MTLSAuthError):
    """The certificate (or a CA in its chain) has been revoked."""

    default_code = "certificate_revoked"
    explanations: ClassVar[Mapping[str, str]] = {
        "certificate_revoked": "listed in a CRL: the certificate (or a CA above it) was revoked",
    }
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
    explanations: ClassVar[Mapping[str, str]] = {
        **{
            f"{f}_not_allowed": f"genuine certificate, but its {f.replace('_', ' ')} is not on "
            "the policy's allow-list"
            for f in POLICY_FIELDS
        },
        "certificate_denied": "on a deny-list (fingerprint or serial)",
    }
    status = 403
    title = "Client certificate not allowed"


class UntrustedForwarder(MTLSAuthError):
    """A certificate header arrived from a peer that is not a configured trusted proxy."""

    default_code = "untrusted_forwarder"
    explanations: ClassVar[Mapping[str, str]] = {
        "untrusted_forwarder": "a certificate header from a peer that is not a trusted proxy",
    }
    title = "Certificate header from an untrusted peer"


class IdentityMissing(MTLSAuthError):
    """An identity accessor was called but the mtlsauth middleware did not run.

    This is a deployment bug, not a client error, hence status 500.
    """

    default_code = "identity_missing"
    explanations: ClassVar[Mapping[str, str]] = {
        "identity_missing": "an identity accessor ran where the middleware did not: install it",
    }
    status = 500
    title = "mtlsauth middleware not installed"


class InternalError(MTLSAuthError):
    """The check itself failed (a bug or an unexpected exception): the request is refused.

    Status 500 because the client cannot fix it; the body says nothing about the cause.
    """

    default_code = "internal_error"
    explanations: ClassVar[Mapping[str, str]] = {
        "internal_error": "the check itself failed (see the ERROR log line): refused",
    }
    status = 500
    title = "Client certificate could not be checked"


class AmbiguousRequest(MTLSAuthError):
    """The request target could be read two ways, so it is refused (HTTP 400).

    ``ambiguous_path``: the raw target holds something that servers, proxies and routers
    read differently (an encoded ``/`` or ``\\``, a dot segment, double encoding, a ``;``
    parameter, an empty segment, a byte that is not UTF-8), while exempt paths or routes make
    the path matter. ``request_malformed``: the server handed over a request that cannot be
    read (a path or header that is not text, a scope entry of the wrong type).
    """

    default_code = "ambiguous_path"
    explanations: ClassVar[Mapping[str, str]] = {
        "ambiguous_path": "the request target could be routed two ways (an encoded '/', a dot "
        "segment, double encoding, ...) while routes or exempt paths make the path matter",
        "request_malformed": "the server handed over a request that cannot be read",
    }
    status = 400
    title = "Ambiguous or malformed request"


class VerificationBusy(MTLSAuthError):
    """Too many certificate verifications are already waiting: refused (HTTP 503).

    Only requests whose result is not cached can get this; answered with ``Retry-After``.
    """

    default_code = "verification_busy"
    explanations: ClassVar[Mapping[str, str]] = {
        "verification_busy": "too many uncached verifications were waiting: retry, or raise "
        "verification_threads / verification_queue",
    }
    status = 503
    title = "Certificate verification is busy"


def explain(code: str) -> str:
    """The operator's one-line explanation of an error ``code`` (from ``explanations``)."""
    pending: list[type[MTLSAuthError]] = [MTLSAuthError]
    while pending:
        cls = pending.pop()
        own: Mapping[str, str] = cls.__dict__.get("explanations", {})
        line = own.get(code)
        if line is not None:
            return line
        pending.extend(cls.__subclasses__())
    return code.replace("_", " ")
