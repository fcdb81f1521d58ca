"""mtlsauth: mutual-TLS client authentication for Python web apps.

The core (this package) imports no web framework; adapters live in ``mtlsauth.adapters.*``.
"""

from __future__ import annotations

from mtlsauth._config import Config, load_config
from mtlsauth._errors import (
    AmbiguousRequest,
    CertificateInvalid,
    CertificateMissing,
    CertificateRevoked,
    IdentityMissing,
    InternalError,
    MTLSAuthError,
    PolicyDenied,
    RevocationUnavailable,
    UntrustedForwarder,
    VerificationBusy,
)
from mtlsauth._forwarded import ForwardedCert
from mtlsauth._guard import Decision, Route
from mtlsauth._identity import ClientIdentity
from mtlsauth._oauth import TokenCheck, TokenError
from mtlsauth._oauth_client import InvalidClient, authenticate_client, certificate_cnf
from mtlsauth._policy import Policy, pinned_from_rfc8705
from mtlsauth._revocation import CRLSet, OCSPChecker
from mtlsauth._sslcontext import server_ssl_context
from mtlsauth._truststore import TrustStore
from mtlsauth._types import Presented, RevocationChecker
from mtlsauth._verifier import Verifier

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRequest",
    "CRLSet",
    "CertificateInvalid",
    "CertificateMissing",
    "CertificateRevoked",
    "ClientIdentity",
    "Config",
    "Decision",
    "ForwardedCert",
    "IdentityMissing",
    "InternalError",
    "InvalidClient",
    "MTLSAuthError",
    "OCSPChecker",
    "Policy",
    "PolicyDenied",
    "Presented",
    "RevocationChecker",
    "RevocationUnavailable",
    "Route",
    "TokenCheck",
    "TokenError",
    "TrustStore",
    "UntrustedForwarder",
    "VerificationBusy",
    "Verifier",
    "__version__",
    "authenticate_client",
    "certificate_cnf",
    "load_config",
    "pinned_from_rfc8705",
    "server_ssl_context",
]
