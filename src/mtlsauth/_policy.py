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
import binascii
import functools
import ipaddress
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from mtlsauth._errors import PolicyDenied
from mtlsauth._identity import ClientIdentity

__all__ = ["Policy", "pinned_from_rfc8705"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DNKey = tuple[tuple[tuple[str, str], ...], ...]
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


class _AttrNames(dict[str, x509.ObjectIdentifier]):
    """Attribute keywords, looked up case-insensitively (RFC 4514 section 3).

    cryptography's parser consults its ``attr_name_overrides`` with ``.get``; should that
    ever change, lower-case keywords stop parsing: a loud ValueError at construction.
    """

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.upper(), default)


# OpenSSL's short and long names; "SN" is surname there and in LDAP (RFC 4519), not serialNumber.
_ATTR_NAMES = _AttrNames(
    {
        "CN": NameOID.COMMON_NAME,
        "C": NameOID.COUNTRY_NAME,
        "L": NameOID.LOCALITY_NAME,
        "ST": NameOID.STATE_OR_PROVINCE_NAME,
        "STREET": NameOID.STREET_ADDRESS,
        "O": NameOID.ORGANIZATION_NAME,
        "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
        "DC": NameOID.DOMAIN_COMPONENT,
        "UID": NameOID.USER_ID,
        "USERID": NameOID.USER_ID,
        "E": NameOID.EMAIL_ADDRESS,
        "EMAIL": NameOID.EMAIL_ADDRESS,
        "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
        "SERIALNUMBER": NameOID.SERIAL_NUMBER,
        "SN": NameOID.SURNAME,
        "SURNAME": NameOID.SURNAME,
        "GN": NameOID.GIVEN_NAME,
        "GIVENNAME": NameOID.GIVEN_NAME,
        "TITLE": NameOID.TITLE,
        "INITIALS": NameOID.INITIALS,
        "GENERATIONQUALIFIER": NameOID.GENERATION_QUALIFIER,
        "DNQUALIFIER": NameOID.DN_QUALIFIER,
        "PSEUDONYM": NameOID.PSEUDONYM,
        "POSTALCODE": NameOID.POSTAL_CODE,
        "BUSINESSCATEGORY": NameOID.BUSINESS_CATEGORY,
        "ORGANIZATIONIDENTIFIER": NameOID.ORGANIZATION_IDENTIFIER,
    }
)
_OID_RE = re.compile(r"(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))+")
# DER string tags a "#hex" value may carry (Java prints emailAddress that way), and codecs.
_DER_STRINGS = {0x0C: "utf-8", 0x12: "ascii", 0x13: "ascii", 0x14: "latin-1", 0x16: "ascii"}
_DER_STRINGS |= {0x1A: "ascii", 0x1C: "utf-32-be", 0x1E: "utf-16-be"}
_HEX = frozenset(string.hexdigits)
_URI_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)(?::(?://([^/?#]*))|:)")


def _norm(value: str) -> str:
    """Case-fold, compose (NFC), trim and collapse internal whitespace runs to one space.

    A non-ASCII character never folds into ASCII: full case folding and NFC map long s
    (U+017F) to ``s``, the Kelvin sign to ``k``, ``ß`` to ``ss`` and the ffi ligature to
    ``ffi``, so a certificate for U+017F ``taff`` (a different name to whoever registered it)
    would match ``staff``. Such a character is kept as it is, unequal to any ASCII spelling.
    """
    if value.isascii():
        return " ".join(value.lower().split())
    out: list[str] = []
    segment: list[str] = []
    for c in value:
        if c.isascii():
            segment.append(c.lower())
            continue
        folded = c.casefold()
        if not _reaches_ascii(folded):
            segment.append(folded)
            continue
        folded = c.lower()  # capital sharp s lower-cases to "ß", which stays non-ASCII
        if not _reaches_ascii(folded):
            segment.append(folded)
            continue
        # Kept verbatim, outside NFC: NFC alone turns the Kelvin sign into "K".
        out.append(unicodedata.normalize("NFC", "".join(segment)))
        out.append(c)
        segment = []
    out.append(unicodedata.normalize("NFC", "".join(segment)))
    return " ".join("".join(out).split())


def _reaches_ascii(text: str) -> bool:
    return any(ch.isascii() for ch in unicodedata.normalize("NFC", text))


def _attr_value(value: str | bytes) -> str:
    return _norm(value) if isinstance(value, str) else "#" + value.hex()


# Presented values repeat request after request (the Verifier caches identities), so the
# normalised forms are memoised: a hit costs a hash look-up instead of Unicode work.
_norm_presented = functools.lru_cache(maxsize=4096)(_norm)
_ORG_OID = NameOID.ORGANIZATION_NAME.dotted_string


@functools.lru_cache(maxsize=2048)
def _name_view(name: x509.Name) -> tuple[_DNKey, frozenset[str]]:
    """A parsed Name's comparison key, and its normalised organizationName values."""
    key = tuple(
        sorted(
            tuple(sorted((a.oid.dotted_string, _attr_value(a.value)) for a in rdn))
            for rdn in name.rdns
        )
    )
    return key, frozenset(v for rdn in key for oid, v in rdn if oid == _ORG_OID)


def _unwrap_der(value: str) -> str:
    # cryptography turns "#0c0161" into the raw TLV text "\x0c\x01a"; recover the string.
    if not value or ord(value[0]) not in _DER_STRINGS:
        return value
    raw = value.encode("utf-8")
    if len(raw) < 2:
        return value
    length, body = raw[1], raw[2:]
    if length == 0x81 and body:
        length, body = body[0], body[1:]
    elif length == 0x82 and len(body) >= 2:
        length, body = int.from_bytes(body[:2], "big"), body[2:]
    if length != len(body):
        return value
    return body.decode(_DER_STRINGS[raw[0]])


def _oid_for(keyword: str) -> str:
    keyword = keyword.strip()
    if _OID_RE.fullmatch(keyword):
        return keyword
    oid = _ATTR_NAMES.get(keyword)
    if oid is None:
        raise ValueError(f"unknown attribute type {keyword!r}")
    return str(oid.dotted_string)


def _parse_slash(text: str) -> list[list[tuple[str, str]]]:
    """OpenSSL ``compat``/Apache legacy form ``/C=US/O=Acme/CN=x`` (forward order)."""
    rdns: list[list[tuple[str, str]]] = []
    rdn: list[tuple[str, str]] = []
    keyword: str | None = None
    buf = bytearray()
    i, n = 1, len(text)
    while i <= n:
        c = text[i] if i < n else "/"
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            hx = text[i + 2 : i + 4]
            if nxt == "x" and len(hx) == 2 and set(hx) <= _HEX:  # OpenSSL's \xC3\xA9
                buf += bytes.fromhex(hx)
                i += 4
            elif nxt in '/+=,\\"':
                buf += nxt.encode()
                i += 2
            else:
                buf += b"\\"
                i += 1
            continue
        if c == "=" and keyword is None:
            keyword = buf.decode("utf-8")
            buf = bytearray()
        elif c in "/+":
            if keyword is None:
                if i == n and not buf and not rdn:  # tolerate one trailing "/"
                    break
                raise ValueError("an RDN without '=' (empty or stray '/' or '+')")
            value = buf.decode("utf-8")
            if not value.strip():
                raise ValueError(f"empty value for {keyword!r}")
            rdn.append((_oid_for(keyword), value))
            keyword, buf = None, bytearray()
            if c == "/":
                rdns.append(rdn)
                rdn = []
        else:
            buf += c.encode("utf-8")
        i += 1
    return rdns


def _parse_dn(text: str) -> _DNKey:
    """Parse an RFC 4514 DN, or the legacy slash form, into its comparison key."""
    if text.startswith("/"):
        rdns = _parse_slash(text)
    else:
        name = x509.Name.from_rfc4514_string(text, _ATTR_NAMES)
        rdns = [
            [(a.oid.dotted_string, _unwrap_der(str(a.value))) for a in rdn] for rdn in name.rdns
        ]
    if not rdns:
        raise ValueError("empty DN")
    return tuple(sorted(tuple(sorted((oid, _norm(v)) for oid, v in rdn)) for rdn in rdns))


def _identity_dn(name: x509.Name | None, text: str) -> _DNKey | None:
    if name is not None:
        return _name_view(name)[0]
    try:  # proxy-verified identity: only the string came; unparseable fails closed
        return _parse_dn(text)
    except (ValueError, TypeError, UnicodeError):
        return None


@functools.lru_cache(maxsize=4096)
def _norm_uri(uri: str) -> str:
    """Lower-case the scheme and (without userinfo) the host; the rest compares exactly."""
    match = _URI_HEAD.match(uri)
    if match is None:
        return uri
    scheme, authority = match.group(1, 2)
    if authority is None:
        return scheme.lower() + uri[match.end() :]
    if "@" not in authority:
        authority = authority.lower()
    return scheme.lower() + "://" + authority + uri[match.end() :]


def _under_prefix(value: str, prefix: str) -> bool:
    if len(value) <= len(prefix) or not value.startswith(prefix):
        return False
    # "x/../admin" starts with "x/" yet names something else: refuse dot segments.
    path = unquote(value[len(prefix) :]).split("?", 1)[0].split("#", 1)[0]
    return not any(seg in (".", "..") for seg in path.split("/"))


def _dns_norm(name: str) -> str:
    if not name.isascii():  # str.lower() maps the Kelvin sign to "k": no folding into ASCII
        return name
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


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
            f"{field} entry {text!r} is not a distinguished name (use RFC 4514 'CN=x,O=y' "
            f"or OpenSSL '/O=y/CN=x'){why}"
        ) from None


def _dns_entry(field: str, item: object) -> tuple[bool, str]:
    text = _text(field, item)
    wildcard = text.startswith("*.")
    name = _dns_norm(text[2:] if wildcard else text)
    if "*" in name:
        raise ValueError(f"{field} entry {text!r}: '*' is only allowed as a leading '*.' label")
    if not name.isascii():
        raise ValueError(f"{field} entry {text!r}: use the IDNA A-label form (xn--...)")
    if any(not label or label != label.strip() for label in name.split(".")):
        raise ValueError(f"{field} entry {text!r} is not a DNS name")
    return wildcard, name


def _uri_entry(field: str, item: object, *, spiffe: bool) -> tuple[bool, str]:
    text = _text(field, item)
    if any(ch.isspace() for ch in text) or ":" not in text:
        raise ValueError(f"{field} entry {text!r} is not a URI")
    if spiffe and (not text.lower().startswith("spiffe://") or len(text) <= len("spiffe://")):
        raise ValueError(f"{field} entry {text!r} must start with 'spiffe://<trust domain>'")
    prefix = text.endswith("/*")
    body = text[:-1] if prefix else text
    if "*" in body:
        raise ValueError(f"{field} entry {text!r}: '*' is only allowed as a trailing '/*'")
    return prefix, _norm_uri(body)


def _email_entry(field: str, item: object) -> tuple[str, str]:
    text = _text(field, item)
    local, at, domain = text.rpartition("@")
    if not at or not domain or "*" in text or any(ch.isspace() for ch in text):
        raise ValueError(f"{field} entry {text!r}: use 'user@example.com' or '@example.com'")
    return local, _dns_norm(domain)


def _ip_entry(field: str, item: object) -> _Network:
    if isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ipaddress.ip_network(item)
    if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return item
    text = _text(field, item)
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise ValueError(f"{field} entry {text!r} is not an IP address or CIDR: {exc}") from None


def _fingerprint_entry(field: str, item: object) -> str:
    text = _text(field, item)
    hexed = text.replace(":", "").replace(" ", "").lower()
    if len(hexed) != 64 or not set(hexed) <= _HEX:
        raise ValueError(
            f"{field} entry {text!r} is not a SHA-256 fingerprint (64 hex digits, colons optional)"
        )
    return hexed


def _serial_entry(field: str, item: object) -> int:
    if isinstance(item, bool) or not isinstance(item, int | str):
        raise TypeError(f"{field} entries must be int or hex str, got {type(item).__name__}")
    if isinstance(item, int):
        return item
    text = item.strip()
    hexed = text[2:] if text[:2].lower() == "0x" else text.replace(":", "")
    if not hexed or not set(hexed) <= _HEX or hexed == text:
        raise ValueError(
            f"{field} entry {item!r}: give an int, '0x'-prefixed hex or colon-separated hex "
            "(a bare digit string is ambiguous between decimal and hex)"
        )
    return int(hexed, 16)


# --- checks: each closes over precomputed sets and returns None or a short detail ----------


def _dn_check(label: str, allowed: frozenset[_DNKey], *, issuer: bool) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if issuer:
            key = _identity_dn(identity.issuer_name, identity.issuer)
        else:
            key = _identity_dn(identity.subject_name, identity.subject)
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


def _org_check(allowed: frozenset[str]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if identity.subject_name is not None:
            values = _name_view(identity.subject_name)[1]
        elif identity.organization is not None:
            values = frozenset((_norm_presented(identity.organization),))
        else:
            values = frozenset()
        if not values:
            return "certificate has no organization"
        return None if not values.isdisjoint(allowed) else "organization not in the allow-list"

    return check


def _ou_check(allowed: frozenset[str]) -> _Check:
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
            name = _dns_norm(raw)
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
            return "certificate has no single SPIFFE ID" if spiffe else "certificate has no URI SAN"
        for raw in values:
            uri = _norm_uri(raw)
            if uri in exact or any(_under_prefix(uri, p) for p in prefixes):
                return None
        return f"{'SPIFFE ID' if spiffe else 'no URI SAN'} not in the allow-list"

    return check


def _email_check(exact: frozenset[tuple[str, str]], domains: frozenset[str]) -> _Check:
    def check(identity: ClientIdentity) -> str | None:
        if not identity.emails:
            return "certificate has no email SAN"
        for raw in identity.emails:
            local, at, domain = raw.rpartition("@")
            if at and local:
                domain = _dns_norm(domain)
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
    def check(identity: ClientIdentity) -> str | None:
        fp = identity.fingerprint_sha256
        if fp is None:  # fail closed: cannot prove the certificate is not the denied one
            return "certificate fingerprint unknown, deny-list cannot be checked"
        return "certificate fingerprint is deny-listed" if fp.lower() in denied else None

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


class Policy:
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
        deny_fingerprints: SHA-256 fingerprints refused outright.
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

    __slots__ = ("_allow", "_alternatives", "_config", "_deny", "_empty", "_parts")

    _allow: tuple[tuple[str, _Check], ...]
    _deny: tuple[tuple[str, _Check], ...]
    _alternatives: tuple[Policy, ...]
    _empty: bool
    _config: tuple[tuple[str, tuple[Any, ...]], ...]
    _parts: tuple[Policy, ...]

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
    ) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "_allow", allow)
        setattr_(self, "_deny", deny)
        setattr_(self, "_alternatives", alternatives)
        setattr_(self, "_config", config)
        setattr_(self, "_parts", parts)
        setattr_(self, "_empty", not (allow or deny or alternatives))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Policy is immutable; build a new one instead of setting {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Policy is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        if self._parts:
            return (_rebuild_any_of, self._parts)
        return (_rebuild, (self._config,))

    def __repr__(self) -> str:
        if self._parts:
            return f"Policy.any_of({', '.join(map(repr, self._parts))})"
        return f"Policy({', '.join(f'{f}={list(v)!r}' for f, v in self._config)})"

    @property
    def is_empty(self) -> bool:
        """True when the policy admits every verified certificate (``check`` is a no-op)."""
        return self._empty

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
            ValueError: No policies given.
            TypeError: An argument is not a Policy.
        """
        if not policies:
            raise ValueError("Policy.any_of() needs at least one policy")
        for p in policies:
            if not isinstance(p, Policy):
                raise TypeError(f"Policy.any_of() takes Policy objects, got {type(p).__name__}")
        if len(policies) == 1:
            return policies[0]
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
        addresses.

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
                ipaddress.ip_address(value.strip())
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
        except (binascii.Error, ValueError):
            raise ValueError(f"jwks key {index}: x5c[0] is not a base64 DER certificate") from None
        if cert not in certs:
            certs.append(cert)
    if not certs:
        raise ValueError("jwks holds no certificate (no key has an 'x5c' member)")
    return tuple(certs)
