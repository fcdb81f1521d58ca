"""Normalised names for policy matching: DN attributes, DNS names, URIs (pure, no I/O).

DNs are compared as parsed attributes, never as strings: case-folded, whitespace
normalised, multi-valued RDNs as sets and RDN order ignored (RFC 5280 section 7.1 asks for
RFC 4518 string preparation; this is a documented subset of it). Configured DNs may be
written in RFC 4514 order or in OpenSSL's legacy ``/C=../CN=..`` form.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import string
import unicodedata
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_DNKey = tuple[tuple[tuple[str, str], ...], ...]


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
