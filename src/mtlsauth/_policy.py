"""Policy: allow-lists and deny-lists over a verified ClientIdentity (pure, no I/O).

INTERFACE STUB: replaced by the full implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mtlsauth._identity import ClientIdentity

__all__ = ["Policy"]


class Policy:
    """Allow-lists: within a field any entry may match; across fields all must match."""

    def __init__(
        self,
        *,
        subjects: Iterable[str] | None = None,
        common_names: Iterable[str] | None = None,
        organizations: Iterable[str] | None = None,
        organizational_units: Iterable[str] | None = None,
        issuers: Iterable[str] | None = None,
        dns_names: Iterable[str] | None = None,
        uris: Iterable[str] | None = None,
        spiffe_ids: Iterable[str] | None = None,
        emails: Iterable[str] | None = None,
        ip_addresses: Iterable[str] | None = None,
        fingerprints: Iterable[str] | None = None,
        deny_fingerprints: Iterable[str] | None = None,
        deny_serials: Iterable[int | str] | None = None,
    ) -> None:
        raise NotImplementedError

    @property
    def is_empty(self) -> bool:
        """True when the policy admits every verified certificate (fast path)."""
        raise NotImplementedError

    def check(self, identity: ClientIdentity) -> None:
        """Raise PolicyDenied (code ``<field>_not_allowed`` / ``certificate_denied``) or return."""
        raise NotImplementedError

    @classmethod
    def any_of(cls, *policies: Policy) -> Policy:
        raise NotImplementedError

    @classmethod
    def from_rfc8705(cls, metadata: Mapping[str, object]) -> Policy:
        raise NotImplementedError
