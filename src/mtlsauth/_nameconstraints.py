"""Name constraints applied to the names an identity is read from, not only to SANs.

See ``_pathvalidation``'s docstring: the subject's emailAddress values, a commonName that
reads as a DNS name, an e-mail address or an IP address (as written, and as IDNA folds it),
and the IPv4 form of IPv4-mapped IPv6 SANs, against every CA on the validated path (RFC 5280
4.2.1.10).
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Sequence
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mtlsauth._errors import CertificateInvalid
from mtlsauth._memo import ObjectTable
from mtlsauth._tbs import _NAME_CONSTRAINTS_OID, _extension_flags

_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # IDNA label separators
# RFC 3454 table B.1: characters IDNA's nameprep maps to nothing (soft hyphen, zero-width
# space and joiners, word joiner, variation selectors, ...); Python's ``idna`` codec drops them.
_B1 = dict.fromkeys(
    (0x00AD, 0x034F, 0x1806, 0x180B, 0x180C, 0x180D, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)
) | dict.fromkeys(range(0xFE00, 0xFE10))


def _folded(text: str) -> str:
    """``text`` as IDNA reads it before its labels are split: the nameprep characters that
    map to nothing removed, compatibility forms folded (NFKC: U+FE52 SMALL FULL STOP, U+2024
    ONE DOT LEADER and U+FF0E FULLWIDTH FULL STOP are dots, U+FF20 and U+FE6B are ``@``,
    fullwidth digits are digits, U+2488 DIGIT ONE FULL STOP is ``1.``), and the ideographic
    full stops read as dots."""
    text = unicodedata.normalize("NFKC", text.translate(_B1)).translate(_DOTS)
    return text.translate(_B1)


def _fold(text: str) -> str:
    return _folded(text).casefold().rstrip(".")


def _cn_as_ip(cn: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = cn.strip()
    if not text or not (text[0].isdigit() or text[0] == ":" or ":" in text):
        return None  # every IPv4 form starts with a digit; IPv6 has a colon
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(ch in "0123456789abcdefxABCDEFX." for ch in text):
        try:  # what lenient parsers make of "010.1", "0x7f.1", "2130706433"
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _cn_host(cn: str) -> str:
    """The host part of a CN written as a URL, ``user@host``, ``host:port``, ``[v6]`` or
    ``[v6]:port``, without a trailing dot (else the CN itself, stripped)."""
    text = cn.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    for sep in "/?#":
        text = text.split(sep, 1)[0]
    text = text.rsplit("@", 1)[-1]
    if text.startswith("[") and "]" in text:
        return text[1 : text.index("]")]
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def _cn_as_decimal_ipv4(cn: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a dotted CN of decimal parts with leading zeros reads as when the
    zeros are dropped (``010.0.0.1`` is 10.0.0.1 to Python's ``ipaddress`` before 3.9.5, Go's
    ``net.ParseIP`` before 1.17 and many others), where ``inet_aton`` reads them as octal
    (8.0.0.1). None for any other text."""
    text = cn.strip()
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    if not any(len(p) > 1 and p[0] == "0" for p in parts):
        return None  # no leading zero: the one reading is _cn_as_ip's
    try:
        return ipaddress.IPv4Address(socket.inet_aton(".".join(str(int(p)) for p in parts)))
    except OSError:
        return None


def _cn_ips(cn: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every IP address a CN reads as: itself, without its trailing dots, or its host, each
    also with the leading zeros of its decimal parts dropped (``_cn_as_decimal_ipv4``)."""
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for text in (cn, cn.strip().rstrip("."), _cn_host(cn)):
        for ip in (_cn_as_ip(text), _cn_as_decimal_ipv4(text)):
            if ip is not None:
                found.add(ip)
    return found


def _cn_as_dns(cn: str) -> str | None:
    """The host a CN names when it reads as a DNS name (or a URL, or host:port), else None.
    As written: the IDNA label separators are dots in its folded form (``_folded``)."""
    text = cn.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    for sep in "/?#":
        text = text.split(sep, 1)[0]
    text = text.rsplit("@", 1)[-1]
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    text = text.rstrip(".")
    if "." not in text or any(ch.isspace() for ch in text):
        return None
    return text


def _cn_as_email(cn: str) -> str | None:
    text = cn.strip()
    local, at, host = text.rpartition("@")
    if not at or not local or "." not in host or any(ch.isspace() for ch in text):
        return None
    return text


_Name = tuple[type[x509.GeneralName], object]


def _cn_names(cn: str) -> list[_Name]:
    """The names a commonName reads as: an IP address; else an e-mail address and a DNS
    name (each as it reads); and, apart, every IP address it reads as (``_cn_ips``)."""
    names: list[_Name] = []
    ip = _cn_as_ip(cn)
    if ip is not None:
        names.append((x509.IPAddress, ip))
    else:
        email = _cn_as_email(cn)
        if email is not None:
            names.append((x509.RFC822Name, email))
        dns = _cn_as_dns(cn)
        if dns is not None:
            names.append((x509.DNSName, dns))
    names.extend((x509.IPAddress, extra) for extra in _cn_ips(cn) if extra != ip)
    return names


def _dns_within(name: str, base: str, *, strict: bool) -> bool:
    """RFC 5280 4.2.1.10 dNSName matching; ``strict`` = only exact ASCII (permitted subtrees)."""
    if strict:
        if not name.isascii():
            return False
        name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    else:
        name, base = _fold(name), _fold(base)
    if not base:
        return True
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _email_within(address: str, base: str, *, strict: bool) -> bool:
    """RFC 5280 4.2.1.10 rfc822Name matching: a mailbox, a host, or '.domain' for subdomains."""
    if strict and not address.isascii():
        return False
    if not strict:
        address = _folded(address)  # a fullwidth or small "@" is an "@" to whoever folds
    local, at, host = address.rpartition("@")
    if not at:
        return False
    if "@" in base:
        b_local, _, b_host = base.rpartition("@")
        if strict:
            return local == b_local and host.lower() == b_host.lower()
        return _fold(local) == _fold(b_local) and _fold(host) == _fold(b_host)
    if base.startswith("."):
        return _dns_within(host, base, strict=strict) and (
            _fold(host) != _fold(base[1:]) if not strict else host.lower() != base[1:].lower()
        )
    if strict:
        return host.lower() == base.lower()
    return _fold(host) == _fold(base)


def _c_readings(value: str) -> tuple[str, ...]:
    """``value``, and when it holds a NUL also what a reader of C strings takes it for: the
    text before the first NUL (``evil.com\x00.good.com`` is ``evil.com`` to it)."""
    if "\x00" not in value:
        return (value,)
    return value, value.split("\x00", 1)[0]


def _a_label_readings(name: object) -> set[str]:
    """A non-ASCII DNS name (or the domain of an e-mail address) in A-labels: as Python's
    ``idna`` codec (IDNA 2003: nameprep, then punycode) writes it, and as each label is
    written when only lower-cased and punycoded (IDNA 2008's reading of ``ß``, for one).
    Empty for an ASCII name, or one neither reading can write."""
    if not isinstance(name, str) or name.isascii():
        return set()
    local, at, host = name.rpartition("@")
    prefix = local + at
    found: set[str] = set()
    try:
        found.add(prefix + host.encode("idna").decode("ascii"))
    except UnicodeError:
        pass
    try:
        labels = [
            label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii")
            for label in host.lower().split(".")
        ]
        found.add(prefix + ".".join(labels))
    except UnicodeError:
        pass
    return {reading for reading in found if reading != name}


def _angle_address(value: str) -> str:
    """The text inside the last ``<...>`` of ``value``, else ``value`` without ``<`` and ``>``."""
    start = value.rfind("<")
    end = value.find(">", start + 1)
    if start >= 0 and end > start:
        return value[start + 1 : end]
    return value.replace("<", "").replace(">", "")


def _identity_names(leaf: x509.Certificate) -> list[tuple[type[x509.GeneralName], object, bool]]:
    """Names an identity is read from that cryptography's constraint checks do not see, each
    with whether it may be inside a permitted subtree (False: read only from a folded form).

    A commonName is read as it is and as IDNA folds it (``_folded``): ``admin.evil.com``
    written with U+FE52 SMALL FULL STOP, ``10.0.0.1`` in fullwidth digits, or ``evil.com``
    with a zero-width space in it name what their folded forms name, to Python's ``idna``
    codec and to whoever reads them so. A name found only in the folded form was written
    with other characters, so it is never inside a permitted subtree (exact ASCII), and is
    matched against excluded ones as folded."""
    names: list[tuple[type[x509.GeneralName], object, bool]] = []
    subject = leaf.subject
    for attr in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        names.extend((x509.RFC822Name, text, True) for text in _c_readings(value))
        if "<" in value or ">" in value:
            names.append((x509.RFC822Name, _angle_address(value), False))
    for attr in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        for text in _c_readings(value)[1:]:
            names.extend((kind, name, True) for kind, name in _cn_names(text))
        as_written = _cn_names(value)
        names.extend((kind, name, True) for kind, name in as_written)
        # Other readings of the same text, each found only by rewriting what was written:
        # as IDNA folds it; a mailbox with a display name or in angle brackets (``Evil
        # <x@evil.test>``) as a mail reader takes its address (``email.utils.parseaddr``);
        # a URL's host percent-decoded, as WHATWG URL parsers and Go's net/url read it
        # (``https://evil%2Etest/`` names evil.test).
        readings = [_folded(value)]
        if "<" in value or ">" in value:
            readings.append(_angle_address(value))
        if "%" in value and "://" in value:
            readings.append(unquote(value))
        readings = [r for r in dict.fromkeys(readings) if r != value]  # in order, each once
        names.extend(
            (kind, name, False)
            for reading in readings
            for kind, name in _cn_names(reading)
            if (kind, name) not in as_written
        )
    # A DNS name or mail domain with non-ASCII labels is, to a resolver, its A-labels
    # (``évil.test`` is ``xn--vil-9la.test``), which is how a CA's constraints are written.
    names.extend(
        (kind, a_labels, False)
        for kind, name, _ in list(names)
        if kind is x509.DNSName or kind is x509.RFC822Name
        for a_labels in _a_label_readings(name)
    )
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    for address in san.get_values_for_type(x509.IPAddress):
        # Policies match ::ffff:a.b.c.d as a.b.c.d: so must the IPv4 constraints.
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None:
            names.append((x509.IPAddress, mapped, True))
    return names


def _within(
    kind: type[x509.GeneralName], name: object, subtree: x509.GeneralName, *, strict: bool
) -> bool:
    if kind is x509.IPAddress:
        net = subtree.value
        if not isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            return False
        candidates: list[object] = [name]
        if not strict and isinstance(name, ipaddress.IPv6Address) and name.ipv4_mapped:
            candidates.append(name.ipv4_mapped)  # an exclusion also covers the mapped form
        return any(
            isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and a.version == net.version
            and a in net
            for a in candidates
        )
    value = subtree.value
    if not isinstance(name, str) or not isinstance(value, str):
        return False
    if kind is x509.DNSName:
        return _dns_within(name, value, strict=strict)
    return _email_within(name, value, strict=strict)


# A CA's name constraints, by certificate object; the object is held in the value, so a match
# by ``is`` is that very certificate. The trust store's CAs, configured intermediates and
# presented ones that ``_encoding`` remembers by their bytes are the same objects request
# after request, so their extensions are read once, not on every request.
_BY_CA: ObjectTable[tuple[x509.Certificate, x509.NameConstraints | None]] = ObjectTable(512)


def _constraints(ca: x509.Certificate) -> x509.NameConstraints | None:
    known = _BY_CA.get(id(ca))
    if known is not None and known[0] is ca:
        return known[1]
    nc = None
    if _NAME_CONSTRAINTS_OID in _extension_flags(ca):
        nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    _BY_CA.put(id(ca), (ca, nc))
    return nc


_NC_DETAIL = "certificate violates a CA's name constraints (a name in its subject)"
_DIRNAME_DETAIL = "a CA uses directoryName name constraints, which are not supported"


def check_identity_name_constraints(chain: Sequence[x509.Certificate]) -> None:
    """Apply every CA's name constraints to the names an identity is read from beyond the SANs
    cryptography checks: the subject's emailAddress values, commonNames that read as an IP
    address, an e-mail address or a DNS name (a URL's or ``host:port``'s host), as written
    and as IDNA folds them (``_identity_names``), and the IPv4 form of an IPv4-mapped IPv6
    SAN (policies match ``::ffff:10.1.2.3`` as ``10.1.2.3``).

    Raises:
        CertificateInvalid: ``untrusted_issuer`` when a name falls outside a CA's permitted
            subtrees of its kind, or inside an excluded one, or when a CA constrains
            directoryNames (not supported: refused whatever the engine does with them).
    """
    if len(chain) < 2:
        return
    try:
        constraints = [nc for nc in map(_constraints, chain[1:]) if nc is not None]
        if not constraints:
            return
        unsupported = any(
            isinstance(t, x509.DirectoryName)
            for nc in constraints
            for t in (*(nc.permitted_subtrees or ()), *(nc.excluded_subtrees or ()))
        )
        # A throwaway copy of the leaf: cryptography caches a parsed subject and extensions
        # inside the certificate object, and the identity keeps the leaf while it is cached.
        names = _identity_names(x509.load_der_x509_certificate(chain[0].public_bytes(Encoding.DER)))
    except Exception:  # noqa: BLE001 - unreadable names cannot be shown to satisfy constraints
        raise CertificateInvalid(
            "certificate names cannot be read", code="certificate_malformed"
        ) from None
    if unsupported:
        # Whatever the engine does: cryptography 45 ignores them (a leaf outside a permitted
        # directoryName passed), later releases refuse them as unsupported, as here.
        raise CertificateInvalid(_DIRNAME_DETAIL, code="untrusted_issuer")
    if not names:
        return
    for nc in constraints:
        for kind, name, as_written in names:
            permitted = [t for t in nc.permitted_subtrees or () if isinstance(t, kind)]
            if permitted and not (
                as_written and any(_within(kind, name, t, strict=True) for t in permitted)
            ):
                raise CertificateInvalid(_NC_DETAIL, code="untrusted_issuer")
            excluded = [t for t in nc.excluded_subtrees or () if isinstance(t, kind)]
            if any(_within(kind, name, t, strict=False) for t in excluded):
                raise CertificateInvalid(_NC_DETAIL, code="untrusted_issuer")
