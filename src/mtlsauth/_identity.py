"""ClientIdentity: who the verified client is, extracted from parsed attributes only.

Names are read as parsed attributes (never with a regex over a DN string), so an escaped
comma or an attribute value that contains ``CN=`` cannot confuse them: straight from the DER
where ``_leafder`` vouches that cryptography would read the same, else from cryptography's
parsed objects.

Why one module of this size: ``ClientIdentity`` and the one reading of a certificate into it,
the direct DER paths and the full parse they must agree with, change together; the RFC 8705
binding check lives here with the identity it binds (``_oauth`` re-exports it), so the
identity depends on nothing above it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mtlsauth._der import DERError, certificate_names, encode_oid, item, read_name
from mtlsauth._errors import CertificateInvalid
from mtlsauth._leafder import MEMO_MAX_KEY, LeafFacts, extensions_read
from mtlsauth._memo import BoundedMemo
from mtlsauth._tbs import _tbs_names
from mtlsauth._types import fast_init

__all__ = [
    "ClientIdentity",
    "binding_matches",
    "certificate_thumbprint",
    "equivalent_fingerprints",
    "identity_from_certificate",
    "identity_subject",
    "is_spiffe_id",
    "parse_x5t_s256",
    "spiffe_id_of",
    "subject_organizations",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@fast_init
@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The authenticated client, as established by a verified certificate.

    Attributes:
        subject: The subject DN as an RFC 4514 string (most specific RDN first).
        common_name: The first commonName of the subject, or ``None``.
        organization: The first organizationName, or ``None`` (kept for compatibility: a
            subject may hold several; read ``organizations``).
        organizational_units: Every organizationalUnitName, in certificate order.
        dns_names, uris, emails, ip_addresses: Subject Alternative Name entries by type.
        spiffe_id: The SPIFFE ID: the certificate's only URI SAN when it is a valid
            SPIFFE ID, else ``None`` (X.509-SVID: exactly one URI SAN; a lower-case
            ``spiffe://`` and trust domain, path segments of ``[A-Za-z0-9._-]``).
        issuer: The issuer DN as an RFC 4514 string.
        serial_number: The leaf's serial number.
        fingerprint_sha256: Lower-case hex SHA-256 of the leaf's DER encoding.
        not_before, not_after: The leaf's validity window (timezone-aware UTC).
        certificate: The leaf certificate; ``None`` only for a proxy-verified identity.
        chain: The validated chain, leaf first, ending at the trust anchor.
        source: ``"tls"`` or ``"header:<name>"``.
        verified_by: ``"mtlsauth"``, or ``"proxy"`` for an opt-in proxy-verified identity.
        organizations: Every organizationName, in certificate order. An ``organizations``
            policy admits a certificate only when every one of them is allowed.

    Security note: an identity with ``verified_by == "proxy"`` was *not* verified by
    mtlsauth; it is only as trustworthy as the proxy that produced it.
    """

    subject: str
    common_name: str | None
    organization: str | None
    organizational_units: tuple[str, ...]
    dns_names: tuple[str, ...]
    uris: tuple[str, ...]
    emails: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]
    spiffe_id: str | None
    issuer: str
    serial_number: int | None
    fingerprint_sha256: str | None
    not_before: datetime | None
    not_after: datetime | None
    certificate: x509.Certificate | None = field(repr=False, compare=False)
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False, compare=False)
    source: str = "tls"
    verified_by: Literal["mtlsauth", "proxy"] = "mtlsauth"
    # Parsed names for policy matching. ``subject_name`` is set only where no certificate
    # exists (proxy-verified identities); with a certificate, the policy parses the subject
    # from a throwaway copy (``identity_subject``), because a parsed Name costs about 1.4 KB
    # per cached identity and is read once per identity and policy (verdicts are memoised).
    # ``issuer_name`` is shared by every identity of one CA.
    subject_name: x509.Name | None = field(default=None, repr=False, compare=False)
    issuer_name: x509.Name | None = field(default=None, repr=False, compare=False)
    organizations: tuple[str, ...] = ()
    # (certificate, organizations) when ``organizations`` holds every organizationName of that
    # certificate's subject as text (none is a BIT STRING): the organizations rule of a policy
    # then reads them instead of parsing the subject again. Set by ``identity_from_certificate``;
    # an identity changed afterwards (``dataclasses.replace``) no longer matches it by ``is``.
    _organizations_from: tuple[x509.Certificate, tuple[str, ...]] | None = field(
        default=None, repr=False, compare=False
    )

    def x5t_s256(self) -> str | None:
        """The RFC 8705 ``x5t#S256`` thumbprint (base64url SHA-256 of the leaf DER).

        ``None`` for a proxy-verified identity: it has no certificate, only the proxy's
        word for a hash, and a token must never be bound to that.
        """
        if self.fingerprint_sha256 is None or self.certificate is None:
            return None
        raw = bytes.fromhex(self.fingerprint_sha256)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def matches_token_binding(self, cnf: object) -> bool:
        """Check an RFC 8705 certificate-bound token's ``cnf`` claim against this identity.

        Args:
            cnf: The token's ``cnf`` claim (a mapping holding ``"x5t#S256"``).

        Returns:
            True only if the claim holds ``x5t#S256`` and nothing else, and its thumbprint
            is the canonical base64url encoding (43 characters, no padding) of this leaf's
            SHA-256, compared in constant time. A ``cnf`` with another member as well (DPoP's
            ``jkt``, a ``jwk``) never matches: confirming the certificate alone would drop the
            issuer's other proof. Always False for a proxy-verified identity, which has no
            certificate to bind to.
        """
        return binding_matches(self, cnf)


# --- certificate-bound tokens (RFC 8705): the identity's side of the binding -----------

_B64URL = re.compile(r"[A-Za-z0-9_-]{43}")


def parse_x5t_s256(value: object) -> bytes:
    """Decode an ``x5t#S256`` value strictly: 43 base64url characters, no padding, 32 bytes.

    Anything else (padding, the ``+/`` alphabet, whitespace, a last character with non-zero
    unused bits) is refused, so one digest has exactly one accepted spelling.

    Raises:
        ValueError: ``value`` is not a canonical base64url SHA-256 digest.
    """
    if not isinstance(value, str) or _B64URL.fullmatch(value) is None:
        raise ValueError("x5t#S256 must be 43 base64url characters without padding")
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except (binascii.Error, ValueError):
        raise ValueError("x5t#S256 is not base64url") from None
    if len(raw) != 32 or base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != value:
        raise ValueError("x5t#S256 is not the canonical encoding of a SHA-256 digest")
    return raw


def certificate_thumbprint(identity: ClientIdentity | None) -> bytes | None:
    """SHA-256 of the DER leaf the request authenticated with; ``None`` without a certificate.

    Proxy-verified identities carry no certificate (only what the proxy said about it), so
    they have no thumbprint here, even when the proxy forwarded a hash.
    """
    if identity is None or identity.certificate is None or identity.verified_by != "mtlsauth":
        return None
    fingerprint = identity.fingerprint_sha256
    if fingerprint is None or len(fingerprint) != 64:
        return None
    return bytes.fromhex(fingerprint)


def binding_matches(identity: ClientIdentity | None, cnf: object) -> bool:
    """True only when ``cnf`` is ``{"x5t#S256": ...}`` naming the certificate ``identity``
    presented (no other confirmation member next to it, as ``TokenCheck`` requires)."""
    mine = certificate_thumbprint(identity)
    if mine is None or not isinstance(cnf, Mapping) or set(cnf) != {"x5t#S256"}:
        return False
    try:
        theirs = parse_x5t_s256(cnf["x5t#S256"])
    except ValueError:
        return False
    return hmac.compare_digest(mine, theirs)


def _attr_values(name: x509.Name, oid: x509.ObjectIdentifier) -> tuple[str, ...]:
    out = []
    for attr in name.get_attributes_for_oid(oid):
        value = attr.value
        out.append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return tuple(out)


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


# Issuer names repeat across every client of a CA: parse each distinct one once and share the
# Name and its string between identities (memory per cached identity, and ~20 us per miss).
# Keyed by the issuer's exact DER bytes, so a shared value is what parsing would have given.
_ISSUERS: BoundedMemo[bytes, tuple[x509.Name, str]] = BoundedMemo(1024, max_key_len=MEMO_MAX_KEY)


def _issuer(cert: x509.Certificate) -> tuple[x509.Name, str]:
    try:
        key = _tbs_names(cert)[0]
    except (IndexError, ValueError):  # cannot happen for a parsed certificate; stay correct
        name = cert.issuer
        return name, name.rfc4514_string()
    return _issuer_by_der(key, lambda: cert.issuer)


def _issuer_by_der(key: bytes, read: Callable[[], x509.Name]) -> tuple[x509.Name, str]:
    """The issuer Name and its RFC 4514 string for the issuer field's DER ``key``, from the
    memo or, the first time, from ``read`` (cryptography's parse of those same bytes)."""
    hit = _ISSUERS.get(key)
    if hit is None:
        name = read()
        hit = (name, name.rfc4514_string())
        _ISSUERS.put(key, hit)
    return hit


def identity_from_certificate(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...] = (),
    *,
    source: str = "tls",
    der: bytes | None = None,
    facts: LeafFacts | None = None,
    fingerprint: str | None = None,
) -> ClientIdentity:
    """Build a ClientIdentity from an already-verified leaf certificate.

    ``der`` is the leaf's DER when the caller has it, ``facts`` what ``_leafder.read_leaf``
    found in it, ``fingerprint`` its SHA-256 (hex); each only saves work.

    Raises:
        CertificateInvalid: ``certificate_malformed`` when a name or extension cannot be read
            (cryptography parses them lazily: invalid UTF-8, a duplicate extension, a bad SAN).
    """
    try:
        if facts is not None and der is not None:
            fast = _from_facts(leaf, chain, source, der, facts, fingerprint)
            if fast is not None:
                return fast
        return _identity(leaf, chain, source, der)
    except CertificateInvalid:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of outside bytes is malformed
        raise CertificateInvalid(
            f"certificate fields cannot be read ({type(exc).__name__})",
            code="certificate_malformed",
        ) from None


def _identity(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    source: str,
    der: bytes | None,
) -> ClientIdentity:
    raw = der if der is not None else leaf.public_bytes(Encoding.DER)
    # Read names and extensions from a throwaway parse of the same bytes: cryptography caches
    # parsed extensions and names inside the certificate object, and the identity keeps
    # ``leaf`` for as long as it is cached (about 2.5 KB per entry that nothing reads again).
    view = x509.load_der_x509_certificate(raw)
    try:
        fast = _direct(leaf, chain, source, raw, view)
    except Exception:  # noqa: BLE001 - the full reading below gives the exact answer or refusal
        fast = None
    if fast is not None:
        return fast
    return _parsed(leaf, chain, source, raw, view)


def _san_values(
    view: x509.Certificate,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[IPAddress, ...]]:
    """DNS names, URIs, e-mail addresses and IP addresses of the SAN, each in SAN order."""
    try:
        san = view.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), (), (), ()
    dns: list[str] = []
    uris: list[str] = []
    emails: list[str] = []
    ips: list[IPAddress] = []
    for general in san:
        kind = type(general)
        if kind is x509.DNSName:
            dns.append(general.value)
        elif kind is x509.UniformResourceIdentifier:
            uris.append(general.value)
        elif kind is x509.RFC822Name:
            emails.append(general.value)
        elif kind is x509.IPAddress:
            ip = general.value
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
                ips.append(ip)
    return tuple(dns), tuple(uris), tuple(emails), tuple(ips)


def _direct(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    source: str,
    raw: bytes,
    view: x509.Certificate,
) -> ClientIdentity | None:
    """The identity with the subject and issuer read straight from the DER.

    ``None`` whenever the subject holds anything outside what is read here (an RDN of
    several attributes, an attribute type or string type not in the tables, a value that
    is not UTF-8): the caller then reads the certificate through cryptography, so the answer
    (or the refusal) is always the one that reading gives. Extensions are still parsed by
    cryptography, which refuses malformed or duplicated ones exactly as before.
    """
    (issuer_start, issuer_end), (subject_start, subject_end) = certificate_names(raw)
    subject = _subject(raw, subject_start, subject_end)
    if subject is None:
        return None
    hit = _issuer_by_der(raw[issuer_start:issuer_end], lambda: view.issuer)
    return _assemble(
        leaf,
        chain,
        source,
        subject,
        hit,
        _san_values(view),
        leaf.serial_number,
        hashlib.sha256(raw).hexdigest(),
    )


# Subjects repeat across certificates (renewals, replicas of one service): what ``_subject``
# reads from one is remembered by the Name's exact DER bytes (up to MEMO_MAX_KEY octets);
# ``False`` for a subject it does not read (the full reading decides those).
_SUBJECTS: BoundedMemo[bytes, _SubjectParts | Literal[False]] = BoundedMemo(
    1024, max_key_len=MEMO_MAX_KEY
)


def _from_facts(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    source: str,
    raw: bytes,
    facts: LeafFacts,
    fingerprint: str | None,
) -> ClientIdentity | None:
    """The identity from the leaf's DER alone, without a throwaway parse: only when
    ``extensions_read`` vouches that cryptography reads every extension (so reading them
    would refuse nothing) and ``_subject`` reads the subject; else ``None``.
    """
    if not extensions_read(facts):
        return None
    subject = _SUBJECTS.get(facts.subject)
    if subject is None:
        try:
            subject = _subject(facts.subject, 0, len(facts.subject)) or False
        except (DERError, UnicodeDecodeError):
            subject = False
        _SUBJECTS.put(facts.subject, subject)
    if subject is False:
        return None
    # A throwaway parse the first time: the leaf itself keeps no Name.
    hit = _issuer_by_der(facts.issuer, lambda: x509.load_der_x509_certificate(raw).issuer)
    values = facts.san()
    if values is None:
        return None
    return _assemble(
        leaf,
        chain,
        source,
        subject,
        hit,
        values,
        facts.serial,
        fingerprint or hashlib.sha256(raw).hexdigest(),
    )


def _assemble(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    source: str,
    subject: _SubjectParts,
    issuer: tuple[x509.Name, str],
    san: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[IPAddress, ...]],
    serial: int,
    fingerprint: str,
) -> ClientIdentity:
    """The identity of a leaf whose subject, issuer and SAN were read from its DER."""
    text, common_names, organizations, units = subject
    issuer_name, issuer_text = issuer
    dns, uris, emails, ips = san
    return ClientIdentity(
        subject=text,
        common_name=common_names[0] if common_names else None,
        organization=organizations[0] if organizations else None,
        organizations=organizations,
        organizational_units=units,
        dns_names=dns,
        uris=uris,
        emails=emails,
        ip_addresses=ips,
        spiffe_id=spiffe_id_of(uris),
        issuer=issuer_text,
        serial_number=serial,
        fingerprint_sha256=fingerprint,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        certificate=leaf,
        chain=chain or (leaf,),
        source=source,
        verified_by="mtlsauth",
        issuer_name=issuer_name,
        _organizations_from=(leaf, organizations),
    )


# Attribute types read directly: every NameOID, keyed by its DER content octets, with the
# name RFC 4514 strings use for it (the short name where cryptography has one, else the
# dotted OID, as ``Name.rfc4514_string`` writes them).
_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COUNTRY_NAME: "C",
    NameOID.STREET_ADDRESS: "STREET",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
}
_ATTRIBUTE_NAMES = {
    encode_oid(oid.dotted_string): _SHORT_NAMES.get(oid, oid.dotted_string)
    for oid in vars(NameOID).values()
    if isinstance(oid, x509.ObjectIdentifier)
}
_CN = encode_oid(NameOID.COMMON_NAME.dotted_string)
_O = encode_oid(NameOID.ORGANIZATION_NAME.dotted_string)
_OU = encode_oid(NameOID.ORGANIZATIONAL_UNIT_NAME.dotted_string)
# String types whose octets cryptography reads as UTF-8 (the others, BMPString, UniversalString
# and BIT STRING, take the full reading): UTF8String, NumericString, PrintableString,
# TeletexString, IA5String, VisibleString.
# Lengths (in UTF-8 octets) outside which cryptography warns when it reads the attribute.
_LENGTH_BOUNDS = {
    _CN: (1, 64),
    encode_oid(NameOID.COUNTRY_NAME.dotted_string): (2, 2),
    encode_oid(NameOID.JURISDICTION_COUNTRY_NAME.dotted_string): (2, 2),
}
_UTF8_TAGS = frozenset({12, 18, 19, 20, 22, 26})
_SubjectParts = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]


def _subject(raw: bytes, start: int, end: int) -> _SubjectParts | None:
    """RFC 4514 text, CNs, Os and OUs of a subject of single-attribute RDNs; else ``None``."""
    parts: list[str] = []
    cns: list[str] = []
    orgs: list[str] = []
    units: list[str] = []
    for rdn in read_name(raw, start, end):
        if len(rdn) != 1:
            return None
        oid, tag, octets = rdn[0]
        keyword = _ATTRIBUTE_NAMES.get(oid)
        if keyword is None or tag not in _UTF8_TAGS:
            return None
        bounds = _LENGTH_BOUNDS.get(oid)
        if bounds is not None and not bounds[0] <= len(octets) <= bounds[1]:
            return None  # cryptography warns about these: let it, as it always did
        value = octets.decode("utf-8")  # UnicodeDecodeError: the caller's full reading refuses
        if value == " ":
            return None  # cryptography 45 writes it "\\ ", later releases "\ ": let it say
        if oid == _CN:
            cns.append(value)
        elif oid == _O:
            orgs.append(value)
        elif oid == _OU:
            units.append(value)
        parts.append(f"{keyword}={_escape(value)}")
    return ",".join(reversed(parts)), tuple(cns), tuple(orgs), tuple(units)


def _escape(value: str) -> str:
    """An attribute value as RFC 4514 writes it (section 2.4), as cryptography escapes it."""
    if not value:
        return ""
    for char, escaped in _ESCAPES:
        if char in value:
            value = value.replace(char, escaped)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


_ESCAPES = (
    ("\\", "\\\\"),
    ('"', '\\"'),
    ("+", "\\+"),
    (",", "\\,"),
    (";", "\\;"),
    ("<", "\\<"),
    (">", "\\>"),
    ("\0", "\\00"),
)


def _parsed(
    leaf: x509.Certificate,
    chain: tuple[x509.Certificate, ...],
    source: str,
    raw: bytes,
    view: x509.Certificate,
) -> ClientIdentity:
    """The identity read entirely through cryptography's parsed objects (the reference)."""
    issuer_name, issuer = _issuer(view)
    dns: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()
    try:
        san = view.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        dns = tuple(san.get_values_for_type(x509.DNSName))
        uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
        emails = tuple(san.get_values_for_type(x509.RFC822Name))
        ips = tuple(
            ip
            for ip in san.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        )
    subject = view.subject
    organizations = _attr_values(subject, NameOID.ORGANIZATION_NAME)
    exact = all(
        isinstance(a.value, str) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )
    return ClientIdentity(
        subject=subject.rfc4514_string(),
        common_name=_first(_attr_values(subject, NameOID.COMMON_NAME)),
        organization=_first(organizations),
        organizations=organizations,
        organizational_units=_attr_values(subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        dns_names=dns,
        uris=uris,
        emails=emails,
        ip_addresses=ips,
        spiffe_id=spiffe_id_of(uris),
        issuer=issuer,
        serial_number=leaf.serial_number,
        fingerprint_sha256=hashlib.sha256(raw).hexdigest(),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        certificate=leaf,
        chain=chain or (leaf,),
        source=source,
        verified_by="mtlsauth",
        issuer_name=issuer_name,
        _organizations_from=(leaf, organizations) if exact else None,
    )


def spiffe_id_of(uris: tuple[str, ...]) -> str | None:
    """The SPIFFE ID of a certificate with these URI SANs: its only URI SAN, when that is a
    ``spiffe://`` URI; else ``None``.

    X.509-SVID (section 2): an SVID contains exactly one URI SAN, and "certificates
    containing more than one URI SAN MUST be rejected". A second URI of any scheme makes
    the certificate no SVID, so it has no SPIFFE ID (``uris`` still lists every URI). Nor
    does a ``spiffe://`` URI that is not a valid SPIFFE ID (``is_spiffe_id``): an upper-case
    trust domain, a port, a dot segment, a trailing slash, percent-encoding.
    """
    if len(uris) != 1 or uris[0][:9].lower() != "spiffe://":
        return None
    return uris[0] if is_spiffe_id(uris[0]) else None


# SPIFFE ID (section 2, as go-spiffe and the other reference libraries read it): the scheme
# "spiffe" in lower case; a trust domain of lower-case letters, digits, ".", "-" and "_" (no
# port, no userinfo); then path segments of letters, digits, ".", "-" and "_", none empty
# (so no trailing "/"), none "." or "..", and no percent-encoding, query or fragment.
_SPIFFE_ID = re.compile(r"spiffe://[a-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


def is_spiffe_id(text: str) -> bool:
    """Whether ``text`` is a valid SPIFFE ID (see ``_SPIFFE_ID``)."""
    if _SPIFFE_ID.fullmatch(text) is None:
        return False
    return not any(seg in (".", "..") for seg in text.split("/")[3:])


def subject_organizations(identity: ClientIdentity) -> tuple[str, ...] | None:
    """``identity.organizations`` when they are known to be those of its certificate's
    subject, read as text; ``None`` when only parsing the subject can tell."""
    source = identity._organizations_from
    if (
        source is None
        or identity.subject_name is not None
        or source[0] is not identity.certificate
        or source[1] is not identity.organizations
    ):
        return None
    return identity.organizations


def identity_subject(identity: ClientIdentity) -> x509.Name | None:
    """The identity's parsed subject: stored (proxy-verified) or read from its certificate."""
    if identity.subject_name is not None:
        return identity.subject_name
    if identity.certificate is None:
        return None
    # A throwaway parse: reading ``certificate.subject`` would cache the Name in the leaf.
    return x509.load_der_x509_certificate(identity.certificate.public_bytes(Encoding.DER)).subject


# --- what identifies a certificate ----------------------------------------------------------

# Group orders of the curves a verifier accepts: an ECDSA signature (r, s) is also valid as
# (r, n - s), so anyone can re-encode a certificate without the CA's key.
_EC_ORDERS = (
    0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,  # P-256
    int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),  # P-384
    int(
        "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
        "3BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),  # P-521
)
_ECDSA_ALGORITHM_ARC = b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03"  # 1.2.840.10045.4.3.*


def _der_header(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_header(len(content)) + content


def equivalent_fingerprints(der: bytes) -> frozenset[str]:
    """SHA-256 fingerprints of every encoding of this certificate that still validates.

    What identifies a certificate is its TBSCertificate, the part the CA signed. Around it,
    the outer encoding can change without the CA's key and still validate: an ECDSA
    signature's ``s`` may be replaced by ``n - s``, and the signature BIT STRING may claim
    unused padding bits where the signature ends in zero bits. The result holds the
    fingerprint of ``der`` itself and of every such encoding (each valid form of the
    signature with each possible padding), so a fingerprint taken of any of them (the
    certificate as the CA issued it, or a twin seen in a log) is found. Unparsable input
    gives just the fingerprint of its bytes.
    """
    out = {hashlib.sha256(der).hexdigest()}
    try:
        n = len(der)
        _, i, outer_end = item(der, 0, n)
        tbs_end = item(der, i, outer_end)[2]
        alg_end = item(der, tbs_end, outer_end)[2]
        sig_tag, sig_start, sig_end = item(der, alg_end, outer_end)
        if sig_tag != 0x03 or sig_end != n or outer_end != n:
            return frozenset(out)
        head = der[i:alg_end]  # TBSCertificate and signatureAlgorithm, exactly as signed
        signature = der[sig_start + 1 : sig_end]
        signatures = [signature]
        if der[tbs_end:alg_end][2:11] == _ECDSA_ALGORITHM_ARC:
            r, s = decode_dss_signature(signature)
            signatures += [encode_dss_signature(r, n - s) for n in _EC_ORDERS if 0 < s < n]
        for sig in signatures:
            # Unused bits may be claimed only where the last octet's low bits are zero.
            last = sig[-1] if sig else 1
            pad = 0
            while pad < 7 and not (last >> pad) & 1:
                pad += 1
            for bits in range(pad + 1):
                body = head + _tlv(0x03, bytes([bits]) + sig)
                out.add(hashlib.sha256(_tlv(0x30, body)).hexdigest())
    except (IndexError, ValueError):
        pass
    return frozenset(out)
