"""ForwardedCert: certificates forwarded in headers by trusted proxies only.

INTERFACE STUB: replaced by the full implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mtlsauth._identity import ClientIdentity
from mtlsauth._types import Presented

__all__ = ["ForwardedCert", "ForwardedValue"]


@dataclass(frozen=True, slots=True)
class ForwardedValue:
    """A certificate header taken from a trusted proxy, not yet decoded.

    ``key`` is cheap cache-key material (header names and raw values); ``decode()`` does the
    real work and returns the DER chain (leaf first) or, for ``verified_by_proxy``, an identity.
    """

    source: str
    key: bytes
    decode: Callable[[], tuple[bytes, ...] | ClientIdentity]


class ForwardedCert:
    def header_names(self) -> frozenset[str]:
        """Lower-case names of every header this config reads (stripped from untrusted peers)."""
        raise NotImplementedError

    def is_trusted(self, peer: str | None) -> bool:
        raise NotImplementedError

    def extract(self, presented: Presented) -> ForwardedValue | None:
        """None when no certificate header is present (or a 'no certificate' sentinel, or an
        untrusted peer with on_untrusted="ignore"); raises UntrustedForwarder or
        CertificateInvalid(certificate_malformed)."""
        raise NotImplementedError
