"""Policy: allow-lists and deny-lists over a verified ClientIdentity (pure, no I/O).

Every configured string is parsed once, at construction, into frozensets and tuples, so
``Policy.check`` (which runs on every request, cache hits included) is a handful of set
look-ups, and an empty ``Policy()`` costs one attribute read.

Matching rules, in short (``docs/policies.md`` has the long form):

* within one field any entry may match; across fields all must match;
* deny-lists are checked first and always win, also inside ``Policy.any_of``;
* DNs are compared as parsed attributes, never as strings: case-folded, whitespace
  normalised, multi-valued RDNs as sets, RDN order ignored (RFC 5280 section 7.1 asks for
  RFC 4518 string preparation; this is a documented subset of it);
* ``check`` fails closed: whatever goes wrong inside it surfaces as ``PolicyDenied``.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509

from mtlsauth._errors import PolicyDenied
from mtlsauth._identity import ClientIdentity
from mtlsauth._policy._rules import _FIELDS, _Check, _compile, _entries, _failure
from mtlsauth._types import Immutable

__all__ = ["Policy", "pinned_from_rfc8705"]


class Policy(Immutable):
    """Who may call, once a certificate is verified: allow-lists and deny-lists.

    Each keyword takes an iterable of strings; an omitted (or ``None``) field is no
    constraint. Within a field any entry may match; across fields all must match. Deny-lists
    are checked first and always win. ``Policy()`` admits every trusted certificate.

    Args:
        subjects: Subject DNs, RFC 4514 (``"CN=ledger,O=Payments"``) or OpenSSL slash form
            (``"/O=Payments/CN=ledger"``). Compared as parsed attributes: case-insensitive,
            whitespace-normalised, in any RDN order.
        common_names: The certificate's (first) commonName; case-insensitive.
        organizations: Any organizationName of the subject; case-insensitive.
        organizational_units: Any organizationalUnitName of the subject; case-insensitive.
        issuers: Issuer DNs of the leaf, same rules as ``subjects``.
        dns_names: DNS SANs: exact (case-insensitive, trailing dot ignored) or ``*.parent``
            for exactly one extra label.
        uris: URI SANs: exact (scheme and host case-insensitive) or a ``.../*`` prefix.
        spiffe_ids: The certificate's single SPIFFE ID (``spiffe://...``), exact or ``/*``.
        emails: Email SANs: ``user@example.com`` (local part exact, domain
            case-insensitive) or ``@example.com`` for the whole domain.
        ip_addresses: IP SANs: addresses or CIDR networks, IPv4 or IPv6.
        fingerprints: SHA-256 of the leaf's DER, hex in any case, colons or spaces optional.
            Exact bytes: a re-encoding of an allowed certificate is not admitted.
        deny_fingerprints: SHA-256 fingerprints refused outright. A listed certificate is
            refused in every encoding that validates (an ECDSA signature's ``s`` replaced by
            ``n - s``, signature padding bits), whichever of them was fingerprinted.
        deny_serials: Serial numbers refused outright: ``int``, ``"0x1f2e"`` or
            ``"1f:2e"`` (a bare digit string is refused as ambiguous). Any issuer's.

    Raises:
        TypeError: A single ``str`` where an iterable belongs, or an entry of the wrong type.
        ValueError: An empty iterable (it would deny everything), or an entry that does not
            parse; the message names the field and the entry.

    Example::

        policy = Policy(organizations={"payments"}, dns_names={"*.payments.svc"})
        policy.check(identity)  # raises PolicyDenied(code="dns_name_not_allowed"), or None

    Security note: ``check`` fails closed; a missing attribute never matches, and an
    identity whose fingerprint or serial is unknown is refused by a deny-list.
    """

    __slots__ = ("_allow", "_alternatives", "_config", "_deny", "_empty", "_kept", "_parts")

    _allow: tuple[tuple[str, _Check], ...]
    _deny: tuple[tuple[str, _Check], ...]
    _alternatives: tuple[Policy, ...]
    _empty: bool
    _config: tuple[tuple[str, tuple[Any, ...]], ...]
    _parts: tuple[Policy, ...]
    _kept: tuple[Policy, Policy] | None  # (policy, source of added deny-lists)

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
        values = (
            subjects,
            common_names,
            organizations,
            organizational_units,
            issuers,
            dns_names,
            uris,
            spiffe_ids,
            emails,
            ip_addresses,
            fingerprints,
            deny_fingerprints,
            deny_serials,
        )
        config = tuple(
            (f, _entries(f, v)) for f, v in zip(_FIELDS, values, strict=True) if v is not None
        )
        allow: list[tuple[str, _Check]] = []
        deny: list[tuple[str, _Check]] = []
        for field, items in config:
            (deny if field.startswith("deny_") else allow).append(_compile(field, items))
        self._init(tuple(allow), tuple(deny), (), config, ())

    def _init(
        self,
        allow: tuple[tuple[str, _Check], ...],
        deny: tuple[tuple[str, _Check], ...],
        alternatives: tuple[Policy, ...],
        config: tuple[tuple[str, tuple[Any, ...]], ...],
        parts: tuple[Policy, ...],
        kept: tuple[Policy, Policy] | None = None,
    ) -> None:
        self._freeze(
            _allow=allow,
            _deny=deny,
            _alternatives=alternatives,
            _config=config,
            _parts=parts,
            _kept=kept,
            _empty=not (allow or deny or alternatives),
        )

    def _with_deny_lists_of(self, other: Policy) -> Policy:
        """This policy with ``other``'s deny-lists added (checked first, as all deny-lists).

        A route's policy replaces the Verifier's allow-lists, but a certificate the
        Verifier's policy deny-lists stays refused on every route.
        """
        if other is self or not other._deny:
            return self
        combined = Policy.__new__(Policy)
        combined._init(
            self._allow,
            (*other._deny, *self._deny),
            self._alternatives,
            self._config,
            self._parts,
            (self, other),
        )
        return combined

    def __reduce__(self) -> tuple[Any, ...]:
        if self._kept is not None:
            return (_rebuild_with_deny_lists, self._kept)
        if self._parts:
            return (_rebuild_any_of, self._parts)
        return (_rebuild, (self._config,))

    def __repr__(self) -> str:
        if self._kept is not None:
            policy, other = self._kept
            return f"{policy!r} with the deny-lists of {other!r}"
        if self._parts:
            return f"Policy.any_of({', '.join(map(repr, self._parts))})"
        return f"Policy({', '.join(f'{f}={list(v)!r}' for f, v in self._config)})"

    @property
    def is_empty(self) -> bool:
        """True when the policy admits every verified certificate (``check`` is a no-op)."""
        return self._empty

    @property
    def _only_denies(self) -> bool:
        """Deny-lists and no allow-list: "everyone but these", which next to a policy with
        allow-lists (an ``any_of`` alternative, a route's replacement) widens it."""
        return bool(self._deny) and not (self._allow or self._alternatives or self._parts)

    def check(self, identity: ClientIdentity) -> None:
        """Allow the identity (return ``None``) or refuse it.

        Args:
            identity: The verified client.

        Raises:
            PolicyDenied: ``certificate_denied`` for a deny-list hit, else
                ``<field>_not_allowed`` for the first failing field (in keyword order).
        """
        if self._empty:
            return
        refusal = _failure(self._deny, identity) if self._deny else None
        if refusal is None and self._alternatives:
            for alternative in self._alternatives:
                failed = _failure(alternative._allow, identity)
                if failed is None:
                    return
                refusal = refusal or failed  # report the first alternative's reason
        elif refusal is None:
            refusal = _failure(self._allow, identity)
        if refusal is not None:
            raise PolicyDenied(refusal[1], code=refusal[0])

    @classmethod
    def any_of(cls, *policies: Policy) -> Policy:
        """A policy that admits an identity when any one of ``policies`` does.

        Like Envoy RBAC ``principals``. Deny-lists of every sub-policy apply to the whole
        (a deny-listed certificate is refused even if another alternative would admit it).
        When every alternative refuses, the first sub-policy's ``PolicyDenied`` is raised.

        Raises:
            ValueError: No policies given, or one of several has only deny-lists (it
                would admit every certificate it does not deny).
            TypeError: An argument is not a Policy.
        """
        if not policies:
            raise ValueError("Policy.any_of() needs at least one policy")
        for p in policies:
            if not isinstance(p, Policy):
                raise TypeError(f"Policy.any_of() takes Policy objects, got {type(p).__name__}")
        if len(policies) == 1:
            return policies[0]
        # A deny-only alternative widens the combination to everyone it does not deny, unless
        # another alternative (``Policy()``) admits everyone anyway.
        anyone = any(p.is_empty for p in policies)
        for index, p in enumerate(policies, 1):
            if not anyone and p._only_denies:
                raise ValueError(
                    f"Policy.any_of(): policy {index} has only deny-lists, and an alternative "
                    "without allow-lists admits every certificate it does not deny; put the "
                    "deny-lists into an alternative that has allow-lists (they apply to all)"
                )
        flat: list[Policy] = []
        for p in policies:
            flat.extend(p._alternatives or (p,))
        deny = tuple(d for p in policies for d in p._deny)
        # One unconstrained alternative admits everyone the deny-lists let through.
        alternatives = () if any(not p._allow for p in flat) else tuple(flat)
        combined = cls.__new__(cls)
        combined._init((), deny, alternatives, (), policies)
        return combined

    @classmethod
    def from_rfc8705(cls, client_metadata: Mapping[str, Any], /) -> Policy:
        """The Policy for an OAuth client registered for ``tls_client_auth`` (RFC 8705).

        RFC 8705 section 2.1.2: exactly one of ``tls_client_auth_subject_dn``,
        ``tls_client_auth_san_dns``, ``tls_client_auth_san_uri``, ``tls_client_auth_san_ip``
        or ``tls_client_auth_san_email`` names the certificate the client must present.
        Values compare exactly (no wildcards or prefixes); the DN structurally, IPs as
        addresses (as in every Policy, an IPv4-mapped IPv6 SAN counts as its IPv4 address;
        ``authenticate_client`` also requires the binary form RFC 8705 compares).

        Raises:
            TypeError: ``client_metadata`` is not a mapping, or a value is not a string.
            ValueError: Zero or several of the keys, a bad value, or a client registered
                for ``self_signed_tls_client_auth`` (use :func:`pinned_from_rfc8705`).
        """
        if not isinstance(client_metadata, Mapping):
            raise TypeError("client_metadata must be a mapping (the client's registered metadata)")
        method = client_metadata.get("token_endpoint_auth_method")
        if method == "self_signed_tls_client_auth":
            raise ValueError(
                "self_signed_tls_client_auth clients are matched by their registered "
                "certificates: use pinned_from_rfc8705(metadata) with Verifier(pinned=...)"
            )
        if method is not None and method != "tls_client_auth":
            raise ValueError(f"token_endpoint_auth_method is {method!r}, not 'tls_client_auth'")
        found = [(k, v) for k, v in client_metadata.items() if k in _RFC8705 and v is not None]
        if len(found) != 1:
            names = ", ".join(k for k, _ in found) or "none"
            raise ValueError(
                "RFC 8705 tls_client_auth metadata must contain exactly one of "
                f"{', '.join(_RFC8705)} (found: {names})"
            )
        key, value = found[0]
        if not isinstance(value, str):
            raise TypeError(f"{key} must be a string, got {type(value).__name__}")
        field = _RFC8705[key]
        if field in ("dns_names", "uris") and "*" in value:
            raise ValueError(f"{key} {value!r}: RFC 8705 values compare exactly, no wildcards")
        if field == "emails" and value.startswith("@"):
            raise ValueError(f"{key} {value!r} must be a full email address")
        if field == "ip_addresses":
            try:
                ipaddress.ip_address(value.strip(" "))
            except ValueError:
                raise ValueError(f"{key} {value!r} is not a single IP address") from None
        return cls(**{field: [value]})


_RFC8705 = {
    "tls_client_auth_subject_dn": "subjects",
    "tls_client_auth_san_dns": "dns_names",
    "tls_client_auth_san_uri": "uris",
    "tls_client_auth_san_ip": "ip_addresses",
    "tls_client_auth_san_email": "emails",
}


def _rebuild(config: tuple[tuple[str, tuple[Any, ...]], ...]) -> Policy:
    return Policy(**dict(config))


def _rebuild_any_of(*parts: Policy) -> Policy:
    return Policy.any_of(*parts)


def _rebuild_with_deny_lists(policy: Policy, other: Policy) -> Policy:
    return policy._with_deny_lists_of(other)


def pinned_from_rfc8705(client_metadata: Mapping[str, Any], /) -> tuple[x509.Certificate, ...]:
    """The certificates a ``self_signed_tls_client_auth`` client registered (RFC 8705 2.2).

    Reads the ``jwks`` member: each key's ``x5c`` is a list of base64 (not base64url) DER
    certificates, the first being the key's own certificate. Keys without ``x5c`` are
    skipped. Pass the result to ``Verifier(pinned=...)``. ``jwks_uri`` is not fetched (no
    I/O here): fetch it yourself and pass ``{"jwks": document}``.

    Raises:
        TypeError: ``client_metadata`` or ``jwks`` is not a mapping.
        ValueError: No certificate found, or an ``x5c`` entry that is not a certificate.
    """
    if not isinstance(client_metadata, Mapping):
        raise TypeError("client_metadata must be a mapping (the client's registered metadata)")
    jwks = client_metadata.get("jwks")
    if jwks is None:
        hint = " (jwks_uri is not fetched; pass the document as 'jwks')" * (
            "jwks_uri" in client_metadata
        )
        raise ValueError(f"client metadata has no 'jwks'{hint}")
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list | tuple):
        raise TypeError("jwks must be a mapping with a 'keys' list")
    certs: list[x509.Certificate] = []
    for index, jwk in enumerate(jwks["keys"]):
        chain = jwk.get("x5c") if isinstance(jwk, Mapping) else None
        if not chain:
            continue
        if not isinstance(chain, list | tuple) or not isinstance(chain[0], str):
            raise ValueError(f"jwks key {index}: x5c must be a list of base64 strings")
        try:
            der = base64.b64decode("".join(chain[0].split()), validate=True)
            cert = x509.load_der_x509_certificate(der)
        except Exception:  # noqa: BLE001 - binascii.Error, ValueError, x509.InvalidVersion
            raise ValueError(f"jwks key {index}: x5c[0] is not a base64 DER certificate") from None
        if cert not in certs:
            certs.append(cert)
    if not certs:
        raise ValueError("jwks holds no certificate (no key has an 'x5c' member)")
    return tuple(certs)
