"""What the request path reads from a client certificate, found in one strict walk of its DER.

``read_leaf`` locates the TBSCertificate, the serial number, the issuer, subject and
subjectPublicKeyInfo, and every extension (OID, critical flag, value) with the strict reader
of ``_der`` (short lengths inside the extensions read in place, by the same rules); it returns
``None`` for anything it does not read (a version other than v3, unique identifiers, a
critical flag spelt other than ``TRUE``, a duplicated extension, a non-positive serial, any
DER error), and the caller then takes the full reading through cryptography, which gives
the exact answer or refusal.

On these facts, two questions are answered without cryptography's Python objects, each
only with a "yes" that is certain; anything else means "ask cryptography":

* ``profile_passes``: the leaf's keyUsage and SubjectAlternativeName rules (the validators
  ``_pathvalidation`` gives cryptography's verifier) would pass, so the verifier may run
  without calling back into Python;
* ``extensions_read``: cryptography would read every extension without an error (its
  ``Certificate.extensions`` parses each extension type it knows), and the SAN values it
  would give. Only the forms listed below are vouched for, each no wider than what
  cryptography accepts; any other extension type or encoding is handed to cryptography.

Extension values repeat across the certificates of one CA (the same EKU, basicConstraints,
keyUsage and often the same SAN after a renewal), so their readings are remembered by
their exact bytes in bounded memos.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal

from mtlsauth._der import MAX_INPUT, DERError, item, item_in_window
from mtlsauth._memo import BoundedMemo

__all__ = ["LeafFacts", "SanValues", "extensions_read", "profile_passes", "read_leaf"]

SAN_OID: Final = b"\x55\x1d\x11"  # 2.5.29.17
KEY_USAGE_OID: Final = b"\x55\x1d\x0f"  # 2.5.29.15
BASIC_CONSTRAINTS_OID: Final = b"\x55\x1d\x13"  # 2.5.29.19
EKU_OID: Final = b"\x55\x1d\x25"  # 2.5.29.37
SKI_OID: Final = b"\x55\x1d\x0e"  # 2.5.29.14
AKI_OID: Final = b"\x55\x1d\x23"  # 2.5.29.35
EMPTY_NAME: Final = b"\x30\x00"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SanValues = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[IPAddress, ...]]
"""DNS names, URIs, e-mail addresses and IP addresses of a SAN, each in SAN order."""

_V3: Final = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2

MEMO_MAX_KEY: Final = 1024
"""The longest value (in octets) a memo by exact bytes keeps: a client chooses these bytes
before anything is verified, and a memo of a few thousand keys must stay a few megabytes."""


class LeafFacts:
    """A certificate's parts as DER slices, its serial number (a positive INTEGER, so the
    value cryptography gives), and its extensions by OID content octets."""

    __slots__ = ("_san", "extensions", "issuer", "serial", "spki", "subject", "tbs")

    def __init__(
        self,
        tbs: bytes,
        issuer: bytes,
        subject: bytes,
        spki: bytes,
        extensions: dict[bytes, tuple[bool, bytes]],
        serial: int,
    ) -> None:
        self.tbs = tbs
        self.issuer = issuer
        self.subject = subject
        self.spki = spki
        self.extensions = extensions  # OID -> (critical, extnValue content)
        self.serial = serial
        self._san: SanValues | Literal[False] | None = False  # False: not read yet

    def san(self) -> SanValues | None:
        """``san_values`` of the SAN extension (empty tuples without one), read once: the
        profile, the extensions check and the identity each ask."""
        known = self._san
        if known is False:
            value = self.extensions.get(SAN_OID)
            known = _NO_SAN if value is None else san_values(value[1])
            self._san = known
        return known


def read_leaf(der: bytes) -> LeafFacts | None:
    """The facts of a DER certificate, or ``None`` when it is not in the shape read here."""
    if len(der) > MAX_INPUT:
        return None
    try:
        return _read(der)
    except DERError:
        return None


def _read(der: bytes) -> LeafFacts | None:
    item = item_in_window
    n = len(der)
    tag, pos, end = item(der, 0, n)
    if tag != 0x30 or end != n:
        return None
    tag, tbs_content, tbs_end = item(der, pos, end)
    if tag != 0x30:
        return None
    tbs_start = pos
    pos = tbs_content
    if der[pos : pos + 5] != _V3:
        return None  # v1/v2 or an odd version encoding: cryptography's reading decides
    pos += 5
    tag, serial_start, pos = item(der, pos, tbs_end)
    # A positive INTEGER (RFC 5280 4.1.2.2), as _encoding.load_der requires before parsing.
    if tag != 0x02 or pos == serial_start or der[serial_start] & 0x80:
        return None
    serial = der[serial_start:pos]
    if not any(serial):
        return None
    fields = []
    for _ in range(5):  # signature, issuer, validity, subject, subjectPublicKeyInfo
        tag, _, stop = item(der, pos, tbs_end)
        if tag != 0x30:
            return None
        fields.append((pos, stop))
        pos = stop
    extensions: dict[bytes, tuple[bool, bytes]] = {}
    if pos < tbs_end:
        tag, content, stop = item(der, pos, tbs_end)
        if tag != 0xA3 or stop != tbs_end:
            return None  # unique identifiers, or anything after the extensions
        tag, pos, ext_end = item(der, content, stop)
        if tag != 0x30 or ext_end != stop or pos == ext_end:
            return None
        while pos < ext_end:
            # Short lengths read in place (the common case): what ``_der.item_in_window``
            # does for them, its tag checks implied by the tags required here. Every index
            # read below stays inside the extension (``pos`` is its end), so none can run
            # past the buffer.
            if pos + 2 > ext_end:
                return None
            length = der[pos + 1]
            if length < 0x80:
                if der[pos] != 0x30:
                    return None
                field = pos + 2
                pos = field + length
                if pos > ext_end:
                    return None
            else:
                tag, field, pos = item(der, pos, ext_end)
                if tag != 0x30:
                    return None
            # The OID, read in place: tag 6 and a one-octet length (no extension OID needs
            # more than 127 octets; a longer one is declined, not misread), then at least
            # the two octets of the value's header.
            if field + 2 > pos:
                return None
            oid_end = field + 2 + der[field + 1]
            if der[field] != 0x06 or der[field + 1] >= 0x80 or oid_end + 2 > pos:
                return None
            if der[oid_end] == 0x01:  # a BOOLEAN: only DER TRUE, with a value after it
                if oid_end + 5 > pos or der[oid_end + 1] != 0x01 or der[oid_end + 2] != 0xFF:
                    return None  # FALSE spelt out (DER forbids a default) or not DER TRUE
                critical = True
                value_at = oid_end + 3
            else:
                critical = False
                value_at = oid_end
            length = der[value_at + 1]
            if length < 0x80:
                if der[value_at] != 0x04 or value_at + 2 + length != pos:
                    return None
                value = der[value_at + 2 : pos]
            else:
                tag, value_start, value_end = item(der, value_at, pos)
                if tag != 0x04 or value_end != pos:
                    return None
                value = der[value_start:value_end]
            oid = der[field + 2 : oid_end]
            if oid in extensions:
                return None  # cryptography refuses a repeated extension: let it say so
            extensions[oid] = (critical, value)
    issuer, subject, spki = fields[1], fields[3], fields[4]
    return LeafFacts(
        der[tbs_start:tbs_end],
        der[issuer[0] : issuer[1]],
        der[subject[0] : subject[1]],
        der[spki[0] : spki[1]],
        extensions,
        int.from_bytes(serial, "big"),
    )


# --- the leaf profile -----------------------------------------------------------------------


def profile_passes(facts: LeafFacts) -> bool:
    """True only if the keyUsage and SAN validators of ``_pathvalidation`` would pass.

    They would be given cryptography's parsed values: a keyUsage that allows a signature
    (digitalSignature or keyAgreement) and does not assert keyCertSign; a SAN that is
    critical exactly when the subject is empty, or no SAN under a non-empty subject. Each
    value must also be one cryptography would parse (``_key_usage``, ``san_values``).
    """
    exts = facts.extensions
    empty_subject = facts.subject == EMPTY_NAME
    san = exts.get(SAN_OID)
    if san is None:
        if empty_subject:
            return False
    elif san[0] != empty_subject or facts.san() is None:
        return False
    ku = exts.get(KEY_USAGE_OID)
    if ku is not None:
        bits = _key_usage(ku[1])
        if bits is None:
            return False
        digital_signature, key_agreement, key_cert_sign = bits
        if not (digital_signature or key_agreement) or key_cert_sign:
            return False
    return True


def _key_usage(value: bytes) -> tuple[bool, bool, bool] | None:
    """(digitalSignature, keyAgreement, keyCertSign) of a keyUsage cryptography would read.

    Read: a BIT STRING of one octet, or of two whose second holds only decipherOnly, with
    the unused bits zero; encipherOnly or decipherOnly only together with keyAgreement (the
    ``KeyUsage`` constructor refuses them otherwise). Anything else: ``None``.
    """
    n = len(value)
    if n not in (4, 5) or value[0] != 0x03 or value[1] != n - 2:
        return None
    unused, first = value[2], value[3]
    if n == 5:
        if value[4] != 0x80 or unused != 7:
            return None
        decipher_only = True
    else:
        if unused > 7 or first & ((1 << unused) - 1):
            return None
        decipher_only = False
    key_agreement = bool(first & 0x08)
    if (first & 0x01 or decipher_only) and not key_agreement:
        return None
    return bool(first & 0x80), key_agreement, bool(first & 0x04)


# --- extensions cryptography would read -----------------------------------------------------


def extensions_read(facts: LeafFacts) -> bool:
    """True only if cryptography reads every extension of the certificate without an error.

    Vouched for: basicConstraints (``cA`` absent or TRUE, a short pathLen only with cA),
    keyUsage as ``_key_usage`` reads it, an extendedKeyUsage of well-formed OIDs, a
    subjectKeyIdentifier and an authorityKeyIdentifier holding only a keyIdentifier (each
    in short-form lengths: under 128 octets), and a SAN as ``san_values`` reads it. Any other extension type, or form, is for cryptography.
    """
    for oid, (_, value) in facts.extensions.items():
        if oid == SAN_OID:
            if facts.san() is None:
                return False
        elif oid == KEY_USAGE_OID:
            if _key_usage(value) is None:
                return False
        elif oid == BASIC_CONSTRAINTS_OID:
            if value not in _BASIC_CONSTRAINTS and not (
                len(value) == 8 and value[:7] == _BC_PATHLEN and value[7] < 0x80
            ):
                return False
        elif oid == SKI_OID:
            # A length octet is a length only below 0x80 (else it counts length octets):
            # comparing it with the size of the rest must first rule out the long form.
            n = len(value)
            if not (2 < n < 0x82 and value[0] == 0x04 and value[1] == n - 2):
                return False
        elif oid == AKI_OID:
            n = len(value)
            if not (4 < n < 0x82 and value[0] == 0x30 and value[1] == n - 2):
                return False
            if value[2] != 0x80 or value[3] != n - 4:
                return False
        elif oid == EKU_OID:
            if not _eku_read(value):
                return False
        else:
            return False
    return True


_BASIC_CONSTRAINTS = frozenset({b"\x30\x00", b"\x30\x03\x01\x01\xff"})
_BC_PATHLEN = b"\x30\x06\x01\x01\xff\x02\x01"
_EKUS: BoundedMemo[bytes, bool] = BoundedMemo(256, max_key_len=MEMO_MAX_KEY)


def _eku_read(value: bytes) -> bool:
    known = _EKUS.get(value)
    if known is None:
        known = _eku_walk(value)
        _EKUS.put(value, known)
    return known


def _eku_walk(value: bytes) -> bool:
    """A SEQUENCE of one or more OBJECT IDENTIFIERs, each in minimal base-128 arcs."""
    try:
        tag, pos, end = item(value, 0, len(value))
        if tag != 0x30 or end != len(value) or pos == end:
            return False
        while pos < end:
            tag, start, pos = item(value, pos, end)
            if tag != 0x06 or not _oid_ok(value[start:pos]):
                return False
    except DERError:
        return False
    return True


def _oid_ok(oid: bytes) -> bool:
    """Well-formed OID content: 1-32 octets, minimal arcs of at most 8 octets each."""
    if not 0 < len(oid) <= 32 or oid[-1] & 0x80:
        return False
    arc = 0
    for octet in oid:
        if arc == 0 and octet == 0x80:
            return False  # a leading zero septet
        arc += 1
        if arc > 8:
            return False
        if not octet & 0x80:
            arc = 0
    return True


_SANS: BoundedMemo[bytes, SanValues | Literal[False]] = BoundedMemo(1024, max_key_len=MEMO_MAX_KEY)
_NO_SAN: SanValues = ((), (), (), ())


def san_values(value: bytes) -> SanValues | None:
    """The SAN's values if cryptography reads them exactly so, else ``None``.

    Read: a SEQUENCE of one or more rfc822Name, dNSName and URI entries (IA5String: octets
    below 0x80, decoded as ASCII, as cryptography does) and iPAddress entries of 4 or 16
    octets. Any other GeneralName type (otherName, directoryName, registeredID, an address
    with a mask) is for cryptography. Remembered by the exact bytes of the value (up to
    ``MEMO_MAX_KEY`` octets).
    """
    known = _SANS.get(value)
    if known is None:
        known = _san_walk(value) or False
        _SANS.put(value, known)
    return known if known is not False else None


def _san_walk(value: bytes) -> SanValues | None:
    try:
        tag, pos, end = item(value, 0, len(value))
        if tag != 0x30 or end != len(value) or pos == end:
            return None
        dns: list[str] = []
        uris: list[str] = []
        emails: list[str] = []
        ips: list[IPAddress] = []
        while pos < end:
            # Short lengths read in place, as in ``_read``: a SAN of thousands of entries is
            # walked before any signature vouches for it.
            length = value[pos + 1] if pos + 2 <= end else 0x80
            if length < 0x80:
                tag, start, pos = value[pos], pos + 2, pos + 2 + length
                if pos > end:
                    return None
            else:
                tag, start, pos = item(value, pos, end)
            octets = value[start:pos]
            if tag == 0x87:
                if len(octets) not in (4, 16):
                    return None
                ips.append(ipaddress.ip_address(octets))
                continue
            if not octets.isascii():
                return None
            if tag == 0x82:
                dns.append(octets.decode("ascii"))
            elif tag == 0x86:
                uris.append(octets.decode("ascii"))
            elif tag == 0x81:
                emails.append(octets.decode("ascii"))
            else:
                return None
    except DERError:
        return None
    return tuple(dns), tuple(uris), tuple(emails), tuple(ips)
