"""Policy rules: configuration entries parsed once into sets, and the checks built on them.

Each ``_*_entry`` parser raises ``ValueError``/``TypeError`` naming the field and entry; each
``_*_check`` closes over precomputed sets and returns ``None`` or a short refusal detail.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth._identity import (
    ClientIdentity,
    equivalent_fingerprints,
    identity_subject,
    is_spiffe_id,
    subject_organizations,
)
from mtlsauth._names import (
    _HEX,
    _URI_HEAD,
    _Address,
    _DNKey,
    _dns_norm,
    _identity_dn,
    _name_view,
    _Network,
    _norm,
    _norm_presented,
    _norm_uri,
    _parse_dn,
    _under_prefix,
    colon_hex,
    is_host_name,
    is_mail_domain,
    is_uri,
)

# A check returns None when the identity passes, else a short detail for PolicyDenied.
_Check = Callable[[ClientIdentity], "str | None"]
_Refusal = tuple[str, str]  # (PolicyDenied code, detail)

_FIELDS = (
    "subjects",
    "common_names",
    "organizations",
    "organizational_units",
    "issuers",
    "dns_names",
    "uris",
    "spiffe_ids",
    "emails",
    "ip_addresses",
    "fingerprints",
    "deny_fingerprints",
    "deny_serials",
)


# --- configuration parsing (each raises ValueError/TypeError naming the entry) -------------


def _entries(field: str, values: object) -> tuple[Any, ...]:
    if isinstance(values, str | bytes):
        raise TypeError(f"{field} must be an iterable of strings, not a single string: {values!r}")
    if not isinstance(values, Iterable):
        raise TypeError(f"{field} must be an iterable of strings, got {type(values).__name__}")
    items = tuple(dict.fromkeys(values))
    if not items:
        raise ValueError(
            f"{field} is empty, which would deny every certificate; omit it (or pass None) "
            "for no constraint"
        )
    return items


def _text(field: str, item: object) -> str:
    if not isinstance(item, str):
        raise TypeError(f"{field} entries must be strings, got {type(item).__name__}: {item!r}")
    if not item.strip():
        raise ValueError(f"{field} contains an empty entry")
    return item


def _dn_entry(field: str, item: object) -> _DNKey:
    text = _text(field, item)
    try:
        return _parse_dn(text)
    except (ValueError, UnicodeError) as exc:
        why = f": {exc}" if str(exc) else ""
        raise ValueError(
            f"{field} entry {text!r} is not a distinguished name{why} (accepted: RFC 4514 "
            "'CN=x,O=y', OpenSSL's 'O = y, CN = x' or '/O=y/CN=x')"
        ) from None


def _dns_entry(field: str, item: object) -> tuple[bool, str]:
    text = _text(field, item)
    wildcard = text.startswith("*.")
    name = _dns_norm(text[2:] if wildcard else text)
    if "*" in name:
        raise ValueError(f"{field} entry {text!r}: '*' is only allowed as a leading '*.' label")
    if not name.isascii():
        raise ValueError(f"{field} entry {text!r}: use the IDNA A-label form (xn--...)")
    if not is_host_name(name):
        # A certificate's name that is no host name matches nothing (``_dns_check``), so
        # such an entry could never match: say so now rather than refuse every client later.
        hint = ""
        try:
            ipaddress.ip_address(name)
            hint = " (an IP address belongs in ip_addresses)"
        except ValueError:
            pass
        raise ValueError(
            f"{field} entry {text!r} is not a DNS name{hint}: a host name has labels of 1 "
            "to 63 letters, digits, '-' (not first or last) and '_', 253 characters at most, "
            "a last label that is not all digits, and 'xn--' labels that are valid A-labels"
        )
    return wildcard, name


def _uri_entry(field: str, item: object, *, spiffe: bool) -> tuple[bool, str]:
    text = _text(field, item)
    if any(ch.isspace() for ch in text) or ":" not in text:
        raise ValueError(f"{field} entry {text!r} is not a URI")
    if spiffe and (not text[:9].lower() == "spiffe://" or len(text) <= len("spiffe://")):
        raise ValueError(f"{field} entry {text!r} must start with 'spiffe://<trust domain>'")
    prefix = text.endswith("/*")
    body = text[:-1] if prefix else text
    if "*" in body:
        raise ValueError(f"{field} entry {text!r}: '*' is only allowed as a trailing '/*'")
    head = _URI_HEAD.match(body)
    if prefix and (
        body.endswith("://")
        or (head is not None and head.group(2) is None and body[head.end() :] == "/")
    ):
        # "spiffe://*" or "https://*": a prefix that ends inside the authority admits every
        # trust domain or host, which an allow-list entry never means; so does "https:/*",
        # a slash short, as every "https://host/..." starts with "https:/".
        start = body if body.endswith("://") else body + "/"
        raise ValueError(
            f"{field} entry {text!r} admits every "
            f"{'trust domain' if spiffe else 'host'}: name it ('{start}example.org/*')"
        )
    if not spiffe and not is_uri(body):
        # A certificate's URI that is none matches nothing (``_uri_check``): so would this.
        raise ValueError(
            f"{field} entry {text!r} is not a URI as a certificate carries it (RFC 5280: "
            "RFC 3986 syntax, no space, '\\', '<' or '\"', a '%' only before two hex "
            "digits; a host, if any, is a DNS host name or an IP address)"
        )
    norm = _norm_uri(body)
    if spiffe and not is_spiffe_id(norm[:-1] if prefix else norm):
        # A certificate's ID that is not valid is no SPIFFE ID (``spiffe_id_of``), so such
        # an entry could never match: say so now rather than refuse every client later.
        # (The scheme and trust domain of an entry are read case-insensitively.)
        raise ValueError(
            f"{field} entry {text!r} is not a SPIFFE ID: the trust domain is lower-case "
            "letters, digits, '.', '-' and '_' (no port or userinfo), each path segment "
            "letters, digits, '.', '-' and '_' (not '.' or '..', no '%', '?', '#' or '//')"
        )
    return prefix, norm


def _email_entry(field: str, item: object) -> tuple[str, str]:
    text = _text(field, item)
    local, at, domain = text.rpartition("@")
    if not at or not domain or "*" in text or any(ch.isspace() for ch in text):
        raise ValueError(f"{field} entry {text!r}: use 'user@example.com' or '@example.com'")
    # An rfc822Name SAN is an IA5String: a non-ASCII entry would never match anything.
    if not domain.isascii():
        raise ValueError(f"{field} entry {text!r}: write the domain in its IDNA A-label form "
                         "(xn--...), as certificates carry it")  # fmt: skip
    if not local.isascii():
        raise ValueError(f"{field} entry {text!r}: e-mail SANs are ASCII (rfc822Name)")
    if local and not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"{field} entry {text!r}: the local part is not an RFC 5321 "
                         "dot-string or quoted string")  # fmt: skip
    if not is_mail_domain(_dns_norm(domain)):
        raise ValueError(f"{field} entry {text!r}: the domain is not a DNS host name (labels "
                         "of letters, digits, '-' and '_') or an address literal such as "
                         "'[192.0.2.1]' or '[IPv6:2001:db8::1]'")  # fmt: skip
    return local, _dns_norm(domain)


def _ip_entry(field: str, item: object) -> _Network:
    if isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
        network = ipaddress.ip_network(item)
    elif isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
        network = item
    else:
        text = _text(field, item)
        try:
            network = ipaddress.ip_network(text.strip(" "))
        except ValueError as exc:
            raise ValueError(
                f"{field} entry {text!r} is not an IP address or CIDR: {exc}"
            ) from None
    # An iPAddress SAN is 4 or 16 octets: a zone ("%eth0") is never part of it, so such an
    # entry would match nothing while looking like an address.
    if getattr(network.network_address, "scope_id", None) is not None:
        raise ValueError(f"{field} entry {str(item)!r}: an IPv6 zone ('%...') is not part of a "
                         "certificate's address; leave it out")  # fmt: skip
    return network


def _fingerprint_entry(field: str, item: object) -> str:
    text = _text(field, item)
    hexed = text.replace(":", "").replace(" ", "").lower()
    # What `openssl x509 -noout -fingerprint -sha256` prints: "sha256 Fingerprint=AB:CD:..."
    # (OpenSSL 3), "SHA256 Fingerprint=..." (1.1).
    hexed = hexed.removeprefix("sha256fingerprint=")
    if len(hexed) != 64 or not set(hexed) <= _HEX:
        raise ValueError(
            f"{field} entry {text!r} is not a SHA-256 fingerprint (64 hex digits, colons optional)"
        )
    return hexed


def _serial_entry(field: str, item: object) -> int:
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise TypeError(f"{field} entries must be int or hex str, got {type(item).__name__}")
    if isinstance(item, int):
        serial = item
    else:
        text = item.strip(" ")
        if text[:2].lower() == "0x":
            hexed: str | None = text[2:]
        else:  # colon-separated bytes, two digits each (a bare string has no colon)
            hexed = colon_hex(text) if ":" in text else None
        if not hexed or not set(hexed) <= _HEX:
            raise ValueError(
                f"{field} entry {item!r}: give an int, '0x'-prefixed hex or colon-separated hex "
                "bytes of two digits each (a bare digit string is ambiguous between decimal "
                "and hex)"
            )
        serial = int(hexed, 16)
    if serial <= 0:
        # Certificates with such serials are refused before any policy: the entry would deny
        # nothing, while the certificate meant (its serial misread as signed) passes.
        raise ValueError(
            f"{field} entry {item!r}: serial numbers are positive (RFC 5280 4.1.2.2); read the "
            "serial's bytes as an unsigned number"
        )
    return serial


# --- checks: each closes over precomputed sets and returns None or a short detail ----------


def _dn_check(label: str, allowed: frozenset[_DNKey], *, issuer: bool) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if issuer:
            key = _identity_dn(identity.issuer_name, identity.issuer)
        else:
            key = _identity_dn(identity_subject(identity), identity.subject)
        if key is None:
            return f"{label} DN could not be read"
        return None if key in allowed else f"{label} DN not in the allow-list"

    return check


def _cn_check(allowed: frozenset[str]) -> _Check:
    # The first CN only: the one ClientIdentity.common_name exposes and applications read.
    def check(identity: ClientIdentity) -> str | None:
        cn = identity.common_name
        if cn is None:
            return "certificate has no common name"
        return None if _norm_presented(cn) in allowed else "common name not in the allow-list"

    return check


_NO_ORG_MATCH = "organization not in the allow-list"


def _org_check(allowed: frozenset[str]) -> _Check:
    # Every O must be allowed: with "any", O=evil + O=ops passed an "ops" policy while
    # ClientIdentity.organization (the first) told the application "evil".
    def check(identity: ClientIdentity) -> str | None:
        # Read from the certificate's subject as text when the identity was built so (the
        # normalised set is the one parsing the subject again would give); else parse it.
        known = subject_organizations(identity)
        if known is not None and len(known) == 1:  # the common case: one O
            return None if _norm_presented(known[0]) in allowed else _NO_ORG_MATCH
        subject = identity_subject(identity) if known is None else None
        if known is not None:
            values = frozenset(_norm_presented(o) for o in known)
        elif subject is not None:
            values = _name_view(subject)[1]
        else:
            names = identity.organizations or (
                () if identity.organization is None else (identity.organization,)
            )
            values = frozenset(_norm_presented(o) for o in names)
        if not values:
            return "certificate has no organization"
        if values <= allowed:
            return None
        if values.isdisjoint(allowed):
            return _NO_ORG_MATCH
        return "certificate has several organizations and not all are in the allow-list"

    return check


def _ou_check(allowed: frozenset[str]) -> _Check:
    # Any OU may match: OUs are memberships (eng and ops), and the identity exposes them only
    # as the whole tuple (there is no "first OU" accessor an application could be misled by).
    def check(identity: ClientIdentity) -> str | None:
        units = identity.organizational_units
        if not units:
            return "certificate has no organizational unit"
        if any(_norm_presented(u) in allowed for u in units):
            return None
        return "no organizational unit in the allow-list"

    return check


def _dns_check(exact: frozenset[str], parents: frozenset[str]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if not identity.dns_names:
            return "certificate has no DNS name SAN"
        for raw in identity.dns_names:
            if not raw.isascii():  # a dNSName is IA5String: anything else matches nothing
                continue
            name = raw.lower()  # _dns_norm, inline: ASCII here
            if name[-1:] == ".":
                name = name[:-1]
            # A dNSName is a host name in RFC 1034's preferred syntax (RFC 5280 4.2.1.6):
            # "a/b.example.com", "evil\0.example.com" or "a..example.com" is none, and
            # whoever reads it as a host may read another one; it matches no entry.
            if not is_host_name(name):
                continue
            if name in exact:
                return None
            head, dot, rest = name.partition(".")
            # "*.svc.example" covers exactly one label, and never a presented wildcard.
            if dot and head and "*" not in head and rest in parents:
                return None
        return "no DNS name SAN in the allow-list"

    return check


def _uri_check(label: str, exact: frozenset[str], prefixes: tuple[str, ...]) -> _Check:
    spiffe = label == "SPIFFE ID"

    def check(identity: ClientIdentity) -> str | None:
        if spiffe:
            values: tuple[str, ...] = () if identity.spiffe_id is None else (identity.spiffe_id,)
        else:
            values = identity.uris
        if not values:
            return (
                "certificate has no single valid SPIFFE ID"
                if spiffe
                else "certificate has no URI SAN"
            )
        for raw in values:
            # A URI SAN is an absolute URI in RFC 3986's syntax whose host is a host name or
            # an address (RFC 5280 4.2.1.6): "https://a/x y", ".../x\0y" or
            # "https://%67ood.example/" is none, and is read differently by different
            # parsers; it matches no entry. (A SPIFFE ID was held to its own rule already.)
            if not spiffe and not is_uri(raw):
                continue
            uri = _norm_uri(raw)
            if uri in exact or any(_under_prefix(uri, p) for p in prefixes):
                return None
        return f"{'SPIFFE ID' if spiffe else 'no URI SAN'} not in the allow-list"

    return check


# RFC 5321 4.1.2: a Local-part is a Dot-string of atext atoms, or a Quoted-string.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf'{_ATOM}(?:\.{_ATOM})*|"(?:[ !#-\[\]-~]|\\[ -~])*"')


def _email_check(exact: frozenset[tuple[str, str]], domains: frozenset[str]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if not identity.emails:
            return "certificate has no email SAN"
        for raw in identity.emails:
            local, at, domain = raw.rpartition("@")
            # Only a single mailbox matches: "eve@evil.test,x@example.com" ends in
            # "@example.com", but a mailer may read two recipients (or a route via evil.test).
            if at and _LOCAL_PART.fullmatch(local):
                domain = _dns_norm(domain)
                # The domain of a Mailbox (RFC 5321 4.1.2) is a host name or an address
                # literal: "a..example.com" or "evil.test%example.com" is neither.
                if not is_mail_domain(domain):
                    continue
                if domain in domains or (local, domain) in exact:
                    return None
        return "no email SAN in the allow-list"

    return check


def _ip_check(exact: frozenset[_Address], networks: tuple[_Network, ...]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if not identity.ip_addresses:
            return "certificate has no IP address SAN"
        for ip in identity.ip_addresses:
            candidates: tuple[_Address, ...] = (ip,)
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                candidates = (ip, ip.ipv4_mapped)  # ::ffff:10.0.0.1 is 10.0.0.1
            for addr in candidates:
                if addr in exact or any(addr in net for net in networks):
                    return None
        return "no IP address SAN in the allow-list"

    return check


def _fingerprint_check(allowed: frozenset[str]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        fp = identity.fingerprint_sha256
        if fp is None:
            return "certificate fingerprint unknown"
        return None if fp.lower() in allowed else "fingerprint not in the allow-list"

    return check


def _deny_fingerprint_check(denied: frozenset[str]) -> _Check:
    # A deny-list names a certificate, not one encoding of it: every re-encoding that still
    # validates (ECDSA s -> n - s, signature padding bits) is denied with the original.
    def check(identity: ClientIdentity) -> str | None:
        fp = identity.fingerprint_sha256
        if fp is None:  # fail closed: cannot prove the certificate is not the denied one
            return "certificate fingerprint unknown, deny-list cannot be checked"
        if fp.lower() in denied:
            return "certificate fingerprint is deny-listed"
        cert = identity.certificate
        if cert is None:
            # A proxy's hash is of the bytes it was shown: a denied certificate's ECDSA twin
            # has another, and without the certificate no twin can be ruled out.
            return "certificate unknown (proxy-verified), fingerprint deny-list cannot be checked"
        twins = equivalent_fingerprints(cert.public_bytes(Encoding.DER))
        if not twins.isdisjoint(denied):
            return "certificate fingerprint is deny-listed (a re-encoding of it)"
        return None

    return check


def _deny_serial_check(denied: frozenset[int]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        serial = identity.serial_number
        if serial is None:
            return "certificate serial unknown, deny-list cannot be checked"
        return "certificate serial is deny-listed" if serial in denied else None

    return check


def _compile(field: str, items: tuple[Any, ...]) -> tuple[str, _Check]:
    """Turn one configured field into (PolicyDenied code, check)."""
    if field in ("subjects", "issuers"):
        keys = frozenset(_dn_entry(field, i) for i in items)
        is_issuer = field == "issuers"
        label = "issuer" if is_issuer else "subject"
        return f"{label}_not_allowed", _dn_check(label, keys, issuer=is_issuer)
    if field in ("common_names", "organizations", "organizational_units"):
        names = frozenset(_norm(_text(field, i)) for i in items)
        if field == "common_names":
            return "common_name_not_allowed", _cn_check(names)
        if field == "organizations":
            return "organization_not_allowed", _org_check(names)
        return "organizational_unit_not_allowed", _ou_check(names)
    if field == "dns_names":
        dns = [_dns_entry(field, i) for i in items]
        return "dns_name_not_allowed", _dns_check(
            frozenset(n for w, n in dns if not w), frozenset(n for w, n in dns if w)
        )
    if field in ("uris", "spiffe_ids"):
        spiffe = field == "spiffe_ids"
        uris = [_uri_entry(field, i, spiffe=spiffe) for i in items]
        exact = frozenset(u for p, u in uris if not p)
        prefixes = tuple(u for p, u in uris if p)
        if spiffe:
            return "spiffe_id_not_allowed", _uri_check("SPIFFE ID", exact, prefixes)
        return "uri_not_allowed", _uri_check("URI", exact, prefixes)
    if field == "emails":
        emails = [_email_entry(field, i) for i in items]
        return "email_not_allowed", _email_check(
            frozenset((lp, d) for lp, d in emails if lp), frozenset(d for lp, d in emails if not lp)
        )
    if field == "ip_addresses":
        nets = [_ip_entry(field, i) for i in items]
        single = frozenset(n.network_address for n in nets if n.num_addresses == 1)
        return "ip_address_not_allowed", _ip_check(
            single, tuple(n for n in nets if n.num_addresses > 1)
        )
    if field == "fingerprints":
        fps = frozenset(_fingerprint_entry(field, i) for i in items)
        return "fingerprint_not_allowed", _fingerprint_check(fps)
    if field == "deny_fingerprints":
        fps = frozenset(_fingerprint_entry(field, i) for i in items)
        return "certificate_denied", _deny_fingerprint_check(fps)
    serials = frozenset(_serial_entry(field, i) for i in items)
    return "certificate_denied", _deny_serial_check(serials)


def _failure(checks: tuple[tuple[str, _Check], ...], identity: ClientIdentity) -> _Refusal | None:
    """The first failing check's (code, detail), or None; never raises."""
    for code, check in checks:
        try:
            detail = check(identity)
        except Exception:  # noqa: BLE001 -- fail closed: a surprise while matching is a refusal
            detail = "certificate could not be checked against the policy"
        if detail is not None:
            return code, detail
    return None
