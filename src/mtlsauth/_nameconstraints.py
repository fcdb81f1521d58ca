"""Name constraints applied to the names an identity is read from, not only to SANs.

See ``_pathvalidation``'s docstring: the subject's emailAddress values, a commonName that
reads as a DNS name, an e-mail address or an IP address, and the IPv4 form of IPv4-mapped
IPv6 SANs, against every CA on the validated path (RFC 5280 4.2.1.10).
"""

from __future__ import annotations

import ipaddress
import socket
import unicodedata
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mtlsauth._errors import CertificateInvalid
from mtlsauth._memo import ObjectTable
from mtlsauth._tbs import _NAME_CONSTRAINTS_OID, _extension_flags

_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})  # IDNA label separators


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text.translate(_DOTS)).casefold().rstrip(".")


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


def _cn_as_dns(cn: str) -> str | None:
    """The host a CN names when it reads as a DNS name (or a URL, or host:port), else None."""
    text = cn.strip().translate(_DOTS)
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


def _identity_names(leaf: x509.Certificate) -> list[tuple[type[x509.GeneralName], object]]:
    """Names an identity is read from that cryptography's constraint checks do not see."""
    names: list[tuple[type[x509.GeneralName], object]] = []
    subject = leaf.subject
    for attr in subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        names.append((x509.RFC822Name, value))
    for attr in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attr.value if isinstance(attr.value, str) else attr.value.decode("latin-1")
        ip = _cn_as_ip(value)
        if ip is not None:
            names.append((x509.IPAddress, ip))
            continue
        email = _cn_as_email(value)
        if email is not None:
            names.append((x509.RFC822Name, email))
        dns = _cn_as_dns(value)
        if dns is not None:
            names.append((x509.DNSName, dns))
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return names
    for address in san.get_values_for_type(x509.IPAddress):
        # Policies match ::ffff:a.b.c.d as a.b.c.d: so must the IPv4 constraints.
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None:
            names.append((x509.IPAddress, mapped))
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
    address, an e-mail address or a DNS name (a URL's or ``host:port``'s host), and the IPv4
    form of an IPv4-mapped IPv6 SAN (policies match ``::ffff:10.1.2.3`` as ``10.1.2.3``).

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
        for kind, name in names:
            permitted = [t for t in nc.permitted_subtrees or () if isinstance(t, kind)]
            if permitted and not any(_within(kind, name, t, strict=True) for t in permitted):
                raise CertificateInvalid(_NC_DETAIL, code="untrusted_issuer")
            excluded = [t for t in nc.excluded_subtrees or () if isinstance(t, kind)]
            if any(_within(kind, name, t, strict=False) for t in excluded):
                raise CertificateInvalid(_NC_DETAIL, code="untrusted_issuer")
