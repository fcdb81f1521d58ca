"""Normalised names for policy matching: DN attributes, DNS names, URIs (pure, no I/O).

DNs are compared as parsed attributes, never as strings: case-folded, whitespace
normalised, multi-valued RDNs as sets and RDN order ignored (RFC 5280 section 7.1 asks for
RFC 4518 string preparation; this is a documented subset of it). Configured DNs may be
written in RFC 4514 form, in OpenSSL's display form (``C = US, O = Acme, CN = x``) or in its
legacy ``/C=../CN=..`` form; a string that could be read two ways is refused.

Host names, URIs and mail domains are held to their standards' syntax (``is_host_name``,
``is_uri``, ``is_mail_domain``, as RFC 5280 4.2.1.6 asks of SANs): a SAN that is none
matches no allow-list entry, and an entry that is none is refused at configuration.

No non-ASCII character ever folds into ASCII here: not through case folding, NFC, ``lower``,
nor whitespace trimming (only the ASCII space is layout).

Why one module of this size: the one owner of attribute keywords and both DN parsers, on purpose
(two tables drifted apart before).
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

from mtlsauth import _der
from mtlsauth._der import DERError

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
        # as openssl x509 -subject prints an EV certificate's jurisdiction
        "JURISDICTIONC": NameOID.JURISDICTION_COUNTRY_NAME,
        "JURISDICTIONST": NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME,
        "JURISDICTIONL": NameOID.JURISDICTION_LOCALITY_NAME,
        "UNSTRUCTUREDNAME": NameOID.UNSTRUCTURED_NAME,
    }
)
_OID_RE = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")  # ASCII digits only
# DER string tags a "#hex" value may carry (Java prints emailAddress that way), and codecs.
# A TeletexString is read as cryptography reads it in a certificate, as UTF-8: the configured
# octets then name exactly the certificates that carry them (as Latin-1, the octets of "é"
# in UTF-8 would have named "Ã©", another certificate's text).
_DER_STRINGS = {0x0C: "utf-8", 0x12: "ascii", 0x13: "ascii", 0x14: "utf-8", 0x16: "ascii"}
_DER_STRINGS |= {0x1A: "ascii", 0x1C: "utf-32-be", 0x1E: "utf-16-be"}
_HEX = frozenset(string.hexdigits)
_MAX_HEX_STRING = 0xFFFF  # a configured "#hex" value: at most two length octets
_URI_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)(?::(?://([^/?#]*))|:)")


def colon_hex(text: str) -> str | None:
    """The hex digits of colon-separated bytes (``"0a:1b"`` is ``"0a1b"``), or ``None`` when
    a group is not two characters: ``"1f:2"`` (a printer that dropped the zero of 02) is
    0x1f02 to whoever wrote it, and read as the digits run together it would be 0x1f2."""
    groups = text.split(":")
    return "".join(groups) if all(len(g) == 2 for g in groups) else None


def _norm(value: str) -> str:
    """Case-fold, compose (NFC), trim and collapse runs of ASCII spaces to one space.

    A non-ASCII character never folds into ASCII: full case folding and NFC map long s
    (U+017F) to ``s``, the Kelvin sign to ``k``, ``ß`` to ``ss`` and the ffi ligature to
    ``ffi``, so a certificate for U+017F ``taff`` (a different name to whoever registered it)
    would match ``staff``. Such a character is kept as it is, unequal to any ASCII spelling.
    Only the ASCII space is insignificant at the ends and in runs: a no-break space, an
    ideographic space or a zero-width space is a character like any other, so ``ops`` with
    a trailing U+00A0 is not ``ops``. Other ASCII whitespace (tab, newline) is significant.
    """
    if value.isascii():
        return " ".join(filter(None, value.lower().split(" ")))
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
    return " ".join(filter(None, "".join(out).split(" ")))


def _reaches_ascii(text: str) -> bool:
    return any(ch.isascii() for ch in unicodedata.normalize("NFC", text))


def _attr_value(value: str | bytes) -> str:
    # A BIT STRING value (x500UniqueIdentifier) as " #<hex>": no text value equals it, since
    # ``_norm`` never leaves a leading space (the text "#abcd" is not the bits 0xabcd).
    return _norm(value) if isinstance(value, str) else " #" + value.hex()


# Presented values repeat request after request (the Verifier caches identities), so the
# normalised forms are memoised: a hit costs a hash look-up instead of Unicode work.
_norm_presented = functools.lru_cache(maxsize=4096)(_norm)
_ORG_OID = NameOID.ORGANIZATION_NAME.dotted_string
_COUNTRY = NameOID.COUNTRY_NAME.dotted_string


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


_RDNs = list[list[tuple[str, str]]]
_SPECIALS = '\\ #=",+;<>'  # RFC 4514 section 3: what a backslash may escape
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*|(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
# "O=" (a known type, or an OID) inside a value: the sign of a mixed or mistyped separator.
_TYPE_IN_VALUE = re.compile(r"(?:^|[ ,/+;])([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+) *=")


def _der_string(value: str, keyword: str) -> str:
    """The text of a ``#hex`` value: the DER encoding of one directory string."""
    body = value[1:]
    if not body or len(body) % 2 or not set(body) <= _HEX:
        raise ValueError(f"{keyword}: '#' must be followed by hex pairs (a DER encoding)")
    raw = bytes.fromhex(body)
    try:
        tag, start, stop = _der.item(raw, 0, len(raw))
    except DERError:
        tag = start = stop = -1
    codec = _DER_STRINGS.get(tag)
    if codec is None or stop != len(raw) or stop - start > _MAX_HEX_STRING:
        raise ValueError(
            f"{keyword}: {value!r} is not a DER string (UTF8String, PrintableString, "
            "IA5String, TeletexString, UniversalString or BMPString)"
        )
    try:
        return raw[start:].decode(codec)
    except UnicodeDecodeError:
        raise ValueError(f"{keyword}: {value!r} does not decode as its string type") from None


def _oid_for(keyword: str) -> str:
    keyword = keyword.strip(" ")
    if _OID_RE.fullmatch(keyword):
        return keyword
    oid = _ATTR_NAMES.get(keyword)
    if oid is None:
        if keyword.lower() in ("subject", "issuer"):
            raise ValueError(f"remove the {keyword!r}= that openssl prints before the name")
        raise ValueError(
            f"unknown attribute type {keyword!r} (use CN, O, OU, C, ST, L, DC, UID, "
            "emailAddress, serialNumber, ... or a dotted OID such as 2.5.4.3)"
        )
    return str(oid.dotted_string)


def _refuse_types_in_value(keyword: str, value: str, form: str) -> None:
    """A value holding ``X=`` for a known type X: a mixed form or a missing separator."""
    for match in _TYPE_IN_VALUE.finditer(value):
        word = match.group(1)
        if not (_OID_RE.fullmatch(word) or _ATTR_NAMES.get(word) is not None):
            continue
        if form == "comma" and match.start(1) == 0:
            # 'CN=C=x' is what cryptography's rfc4514_string() prints for a CN "C=x":
            # nothing can be missing before the value's first character.
            continue
        before = value[match.start()] if match.start() < match.start(1) else ""
        if form == "slash" or before == "/":
            escaped = "\\," if form == "slash" else "\\2F"
            why = (
                "a DN is written either '/O=x/CN=y' or 'CN=y,O=x', not both; if it belongs to "
                f"the value, escape the {'/' if form == 'comma' else ','!r} as {escaped}"
            )
        else:
            why = (
                "is a ',' missing before it? If it belongs to the value, quote the value "
                f"({keyword}=\"...\") or escape the '=' as \\="
            )
        raise ValueError(f"the {keyword} value {value!r} contains {word + '='!r}: {why}")


def _parse_slash(text: str, *, strict: bool) -> _RDNs:
    """OpenSSL's ``compat``/Apache legacy form ``/C=US/O=Acme/CN=x`` (forward order)."""
    rdns: _RDNs = []
    rdn: list[tuple[str, str]] = []
    keyword: str | None = None
    buf = bytearray()
    raw_value: list[str] = []  # the value as written, unescaped separators only
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
                raw_value.append("\0")  # an escaped character never looks like a separator
                i += 2
            else:
                buf += b"\\"
                raw_value.append("\\")
                i += 1
            continue
        if c == "=" and keyword is None:
            keyword = buf.decode("utf-8").strip(" ")
            if not keyword:
                raise ValueError("an attribute type is missing before '='")
            buf, raw_value = bytearray(), []
        elif c in "/+":
            if keyword is None:
                if i == n and not buf and not rdn:  # tolerate one trailing "/"
                    break
                what = buf.decode("utf-8", "replace").strip(" ")
                raise ValueError(
                    f"{what!r} has no '=' (a '/' or '+' inside a value must be escaped as \\/ "
                    "or \\+)"
                    if what
                    else f"an empty RDN (a doubled or stray {c!r})"
                )
            try:
                value = buf.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"the {keyword} value's \\x escapes are not UTF-8") from None
            if not value.strip(" "):
                raise ValueError(f"empty value for {keyword!r}")
            if strict:
                _refuse_types_in_value(keyword, "".join(raw_value), "slash")
            rdn.append((_oid_for(keyword), value))
            keyword, buf, raw_value = None, bytearray(), []
            if c == "/":
                rdns.append(rdn)
                rdn = []
        else:
            buf += c.encode("utf-8", "surrogatepass")
            raw_value.append(c)
        i += 1
    return rdns


def _parse_comma(text: str, *, strict: bool) -> _RDNs:
    """RFC 4514 (``CN=x,O=y``) and OpenSSL's display form (``C = US, O = "A, Inc.", CN = x``).

    Attribute types are case-insensitive; spaces around ``=``, ``,`` and ``+`` are allowed; a
    value may be double-quoted (as OpenSSL prints one holding special characters), ``#hex``
    (a DER string) or plain with RFC 4514 escapes (``\\,``, ``\\C3\\A9``). Anything else that
    could be read two ways is refused with the reason.
    """
    rdns: _RDNs = []
    rdn: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        match = _KEYWORD.match(text, i)
        if match is None:
            if i >= n:
                raise ValueError(f"a trailing {text.rstrip(' ')[-1:]!r} with nothing after it")
            raise ValueError(f"an attribute type is expected at {text[i : i + 12]!r}")
        keyword = match.group()
        i = match.end()
        while i < n and text[i] == " ":
            i += 1
        if i >= n or text[i] != "=":
            raise ValueError(f"'=' is expected after the attribute type {keyword!r}")
        oid = _oid_for(keyword)
        i += 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == '"':
            value, i = _quoted_value(text, i + 1, keyword)
            while i < n and text[i] == " ":
                i += 1
        elif i < n and text[i] == "#":
            end = i
            while end < n and text[end] not in ",+ ":
                end += 1
            value, i = _der_string(text[i:end], keyword), end
            while i < n and text[i] == " ":
                i += 1
        else:
            value, plain, i = _plain_value(text, i, keyword)
            if strict:
                _refuse_types_in_value(keyword, plain, "comma")
        if not value.strip(" "):
            raise ValueError(f"empty value for {keyword!r}")
        rdn.append((oid, value))
        if i >= n:
            rdns.append(rdn)
            return rdns
        sep = text[i]
        i += 1
        if sep == ",":
            rdns.append(rdn)
            rdn = []
        elif sep != "+":
            raise ValueError(f"{sep!r} after the {keyword} value (separate attributes with ',')")


def _hex_pairs(text: str, i: int, keyword: str) -> tuple[str, int]:
    """Decode a run of ``\\XX`` escapes at ``text[i]`` (one UTF-8 sequence or more)."""
    raw = bytearray()
    while text[i : i + 1] == "\\" and len(pair := text[i + 1 : i + 3]) == 2 and set(pair) <= _HEX:
        raw.append(int(pair, 16))
        i += 3
    try:
        return raw.decode("utf-8"), i
    except UnicodeDecodeError:
        raise ValueError(f"the {keyword} value's \\XX escapes are not UTF-8") from None


def _escape(text: str, i: int, keyword: str) -> tuple[str, int]:
    """One escape at ``text[i] == '\\'``: a special character or hex pairs."""
    nxt = text[i + 1 : i + 2]
    if nxt and nxt in _SPECIALS:
        return nxt, i + 2
    if len(text[i + 1 : i + 3]) == 2 and set(text[i + 1 : i + 3]) <= _HEX:
        return _hex_pairs(text, i, keyword)
    raise ValueError(
        f"in the {keyword} value, a backslash must be followed by one of {_SPECIALS!r} "
        "or two hex digits"
    )


def _scan(text: str, i: int, keyword: str, stops: str) -> tuple[str, str, int]:
    """The value from ``i`` to the first unescaped character of ``stops`` (or the end), its
    escapes resolved; also the value as written with each escaped piece masked as ``\0``."""
    out: list[str] = []
    plain: list[str] = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            piece, i = _escape(text, i, keyword)
            out.append(piece)
            plain.append("\0" * len(piece))
            continue
        if c in stops:
            break
        out.append(c)
        plain.append(c)
        i += 1
    return "".join(out), "".join(plain), i


def _quoted_value(text: str, i: int, keyword: str) -> tuple[str, int]:
    value, _, i = _scan(text, i, keyword, '"')
    if i == len(text):
        raise ValueError(f"the quoted {keyword} value has no closing '\"'")
    i += 1
    # Looked at in place: a copy of the rest of the DN for each quoted value made a proxy's
    # DN of many quoted values cost the square of its length.
    after, n = i, len(text)
    while after < n and text[after] == " ":
        after += 1
    if after < n and text[after] not in ",+":
        raise ValueError(f"text after the quoted {keyword} value: {text[after : after + 12]!r}")
    return value, i


def _plain_value(text: str, i: int, keyword: str) -> tuple[str, str, int]:
    """An unquoted value up to an unescaped ',' or '+'; also the value as written."""
    value, plain, i = _scan(text, i, keyword, ',+";<>')
    if i < len(text) and text[i] in '";<>':
        c = text[i]
        what = "';' (an old RDN separator)" if c == ";" else repr(c)
        raise ValueError(
            f"an unescaped {what} in the {keyword} value: escape it with a backslash "
            "or quote the whole value"
        )
    # Unescaped spaces before a separator are layout (OpenSSL prints "CN = x, O = y").
    trailing = len(plain) - len(plain.rstrip(" "))
    return value[: len(value) - trailing], plain, i


def _strip_blanks(text: str) -> str:
    """``text`` without the spaces around it, keeping a final space that a backslash escapes.

    RFC 4514 (and every RFC 2253 printer) writes a value's trailing space as ``\\ ``: when that
    value is printed last, the DN string ends in it, and that space is part of the value.
    """
    text = text.lstrip(" ")
    stripped = text.rstrip(" ")
    if len(stripped) < len(text):
        run = len(stripped) - len(stripped.rstrip("\\"))
        if run % 2:  # an odd run of backslashes escapes the first space after it
            stripped += " "
    return stripped


def _parse_rdns(text: str, *, strict: bool = True) -> _RDNs:
    """Parse a DN string into RDNs of (dotted OID, value), in the order written.

    ``strict`` (configuration) also refuses values that hold another ``TYPE=``: the sign of
    a mixed form such as ``/CN=alice,O=Example Corp``. Raises ValueError naming the problem.
    """
    text = _strip_blanks(text)
    if not text:
        raise ValueError("empty DN")
    rdns = (
        _parse_slash(text, strict=strict)
        if text.startswith("/")
        else _parse_comma(text, strict=strict)
    )
    if not rdns:
        raise ValueError("empty DN")
    return rdns


def _parse_dn(text: str) -> _DNKey:
    """Parse a configured DN string (any accepted form) into its comparison key."""
    rdns = _parse_rdns(text, strict=True)
    for rdn in rdns:
        for oid, value in rdn:
            if oid == _COUNTRY and not (len(value) == 2 and value.isascii() and value.isalpha()):
                raise ValueError(f"C={value!r}: countryName is a two-letter code (ISO 3166)")
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
    if authority is None:  # the ":" stays: "urn:foo" and "urnf:oo" are two URIs
        return scheme.lower() + ":" + uri[match.end() :]
    if "@" not in authority:
        authority = _ascii_lower(authority)
    return scheme.lower() + "://" + authority + uri[match.end() :]


def _ascii_lower(text: str) -> str:
    """Lower-case A-Z only: ``str.lower`` turns the Kelvin sign into ``k``."""
    return text if text.isascii() and text.islower() else text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _under_prefix(value: str, prefix: str) -> bool:
    if len(value) <= len(prefix) or not value.startswith(prefix):
        return False
    # "x/../admin" starts with "x/" yet names something else: refuse dot segments. The
    # query and fragment are cut where the URI has them, before decoding: an encoded "?" or
    # "#" is part of the path, and "a%3F/../../admin" climbs out of the prefix.
    path = value[len(prefix) :].split("#", 1)[0].split("?", 1)[0]
    # Decoded until nothing changes, as a server that decodes twice would read
    # "%252e%252e"; a name still changing after a few rounds is refused.
    for _ in range(_MAX_DECODES):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return False
    # "\\" separates segments too for WHATWG URL parsers (http and https), and servers that
    # read path parameters (Tomcat, Jetty) take "..;x" for "..".
    return not any(
        seg.split(";", 1)[0] in (".", "..") for seg in path.replace("\\", "/").split("/")
    )


_MAX_DECODES = 4


# RFC 1034 3.5 "preferred name syntax" as RFC 1123 2.1 relaxes it (a label may begin with a
# digit): labels of letters, digits and "-" (never first or last), 1 to 63 octets. "_" is
# accepted too, as Go's crypto/x509 accepts it: it is common in names outside the Web PKI,
# and no reader takes it for a separator. Read on lower-case text.
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# A last label that is all digits (or 0x-hex) makes the name an IPv4 address to URL parsers
# (WHATWG "ends in a number"), and RFC 1123 2.1 rules such host names out.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_MAX_HOST_NAME = 253  # octets without the final dot: 255 on the wire (RFC 1034 3.1)


def is_host_name(name: str) -> bool:
    """Whether ``name`` (lower-case ASCII, no final dot) is a DNS host name a resolver, a URL
    parser and RFC 5280's dNSName rule (4.2.1.6) all read as written.

    Not one: an empty label (``a..b``, a leading dot), a label over 63 octets or a name over
    253, a character outside letters, digits, ``-`` and ``_`` (a space, ``/``, ``@``, ``:``,
    ``%``, ``*``, NUL), a label beginning or ending with ``-``, a last label of digits, and an
    ``xn--`` label that is no A-label (``_a_label``).
    """
    # Judged by length before the memo: a dNSName or URI host of 30 KB is no host name, and
    # kept as a memo key it would hold that much memory for as long as it stays there.
    return 0 < len(name) <= _MAX_HOST_NAME and _host_name(name)


@functools.lru_cache(maxsize=4096)
def _host_name(name: str) -> bool:
    labels = name.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return False
    return all(
        _HOST_LABEL.fullmatch(label) is not None and (label[:4] != "xn--" or _a_label(label))
        for label in labels
    )


def _a_label(label: str) -> bool:
    """Whether an ``xn--`` label is an A-label (RFC 5890 2.3.2.1): Punycode that decodes to a
    non-ASCII string of letters, marks, digits and ``-`` and encodes back to the same label.

    ``xn--``, ``xn--zz-`` (which decodes to ``zz``) and ``xn--a`` (a control character) are
    not: no IDNA reader gives them a Unicode form. Code points are judged by their Unicode
    category, an approximation of IDNA 2008's tables that refuses controls, spaces,
    punctuation and symbols.
    """
    body = label[4:]
    try:
        decoded = body.encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, OverflowError):
        return False
    if decoded.isascii() or decoded.encode("punycode") != body.encode("ascii"):
        return False
    return all(
        (c.isalnum() or c == "-") if c.isascii() else unicodedata.category(c)[0] in "LMN"
        for c in decoded
    )


# RFC 3986 (appendix A): a scheme, ":", then an optional "//" authority, a path, a query and
# a fragment of unreserved, reserved and percent-encoded characters; "[" and "]" only around
# an IPv6 host, "#" only once. The URI is cut into its parts at their delimiters first and
# each part matched alone: one pattern for the whole (an optional authority of any
# characters, then a path) backtracks through every split of a long URI that fails late,
# quadratic work (a 30 KB URI SAN took minutes). The authority is read apart
# (``_authority_ok``).
_PCHAR = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_PATH = re.compile(rf"(?:{_PCHAR}|/)*")
_QUERY = re.compile(rf"(?:{_PCHAR}|[/?])*")  # a fragment too
_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*")


def is_uri(text: str) -> bool:
    """Whether ``text`` is a URI as RFC 5280 (4.2.1.6) asks of a uniformResourceIdentifier:
    absolute (a scheme and something after it), in RFC 3986's syntax, and with a host, where
    it has an authority, that is a DNS host name (``is_host_name``) or an IP address.

    Not one: a relative reference, a space, NUL, ``\\``, ``<``, ``"`` or any other character
    RFC 3986 leaves out, a ``%`` not followed by two hex digits, a second ``#``, a host that is
    percent-encoded (``%67ood.example``), empty or no host name (``a..b``), a port that is
    not digits, an ``@`` in the userinfo. An empty authority only in ``file:///...``.

    Remembered for URIs up to ``_MAX_MEMO_URI`` characters: a longer one (a leaf may carry
    one of 30 KB) is judged anew, in linear time, rather than kept as a memo key.
    """
    return _uri_memo(text) if len(text) <= _MAX_MEMO_URI else _uri(text)


_MAX_MEMO_URI = 2048


def _uri(text: str) -> bool:
    scheme, colon, rest = text.partition(":")
    if not colon or not rest or _SCHEME.fullmatch(scheme) is None:
        return False
    rest, hash_mark, fragment = rest.partition("#")
    if hash_mark and _QUERY.fullmatch(fragment) is None:  # a second "#" is refused here
        return False
    rest, question, query = rest.partition("?")
    if question and _QUERY.fullmatch(query) is None:
        return False
    if rest[:2] == "//":
        authority, slash, path = rest[2:].partition("/")
        if not _authority_ok(scheme.lower(), authority):
            return False
        rest = slash + path
    return _PATH.fullmatch(rest) is not None


_uri_memo = functools.lru_cache(maxsize=4096)(_uri)


def _authority_ok(scheme: str, authority: str) -> bool:
    """RFC 3986 3.2: ``[userinfo "@"] host [":" port]``, the host as RFC 5280 asks."""
    userinfo, at, hostport = authority.rpartition("@")
    if at and _USERINFO.fullmatch(userinfo) is None:
        return False
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or not _ipv6_literal(host) or rest[:1] not in ("", ":"):
            return False
        port = rest[1:]
    else:
        host, _, port = hostport.partition(":")
        if not host:  # "file:///etc/x" names no host; "https:///x" is read as host "x"
            return scheme == "file" and authority == ""
        host = _ascii_lower(host)
        host = host[:-1] if host.endswith(".") else host
        if not is_host_name(host) and not _ipv4_literal(host):
            return False
    return port == "" or (port.isascii() and port.isdigit())


def is_mail_domain(domain: str) -> bool:
    """Whether ``domain`` (lower-case, no final dot) is the domain of an RFC 5321 Mailbox
    (4.1.2), as an rfc822Name carries it: a host name, or an address literal ``[192.0.2.1]``
    or ``[ipv6:2001:db8::1]`` (no general address literal: none is registered)."""
    if domain[:1] == "[" and domain[-1:] == "]":
        inner = domain[1:-1]
        return _ipv6_literal(inner[5:]) if inner[:5] == "ipv6:" else _ipv4_literal(inner)
    return domain.isascii() and is_host_name(domain)


def _ipv4_literal(text: str) -> bool:
    """Dotted-quad IPv4 (RFC 3986 IPv4address: no leading zeros, four decimal octets)."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return text.isascii()


def _ipv6_literal(text: str) -> bool:
    """An IPv6 address in brackets (no zone: RFC 6874's ``%25`` is not read here)."""
    if not text.isascii() or "%" in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _dns_norm(name: str) -> str:
    if not name.isascii():  # str.lower() maps the Kelvin sign to "k": no folding into ASCII
        return name
    name = name.lower()
    return name[:-1] if name.endswith(".") else name
