"""The one strict, bounded DER reader: certificates and names on the request path, the
proxy-sent Names, the version of a CRL, the split of concatenated DER input.

Every function takes the whole buffer and a window ``[start, end)`` of it and returns
offsets, never copies, so a certificate is walked once without slicing it apart. The rules
are those of DER (X.690 section 10) for the parts read here:

* one-octet identifiers only (tag numbers 0-30): X.509 uses no high tag numbers where this
  reader looks, so one is refused rather than guessed at;
* definite lengths only, in the shortest form (no ``0x80`` indefinite length, no long form
  for lengths under 128, no leading zero octets, at most four length octets);
* an item never runs past its window, and a window read as a list of items ends exactly at
  the end of its last item;
* nesting is walked with loops, never recursion, and no input above ``MAX_INPUT`` octets is
  read at all.

Anything else raises ``DERError`` (a ``ValueError``), the only exception that escapes; callers
turn it into their own refusal or fall back to a full parser.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "MAX_INPUT",
    "DERError",
    "DERTruncated",
    "certificate_names",
    "decode_oid",
    "encode_oid",
    "header",
    "item",
    "item_in_window",
    "items",
    "read_name",
]

MAX_INPUT = 1 << 20  # no certificate on the request path is anywhere near a megabyte

SEQUENCE = 0x30
SET = 0x31
OID = 0x06


class DERError(ValueError):
    """The bytes are not the DER this reader expects."""


class DERTruncated(DERError):
    """An item whose content runs past its window; ``tag``, ``start`` and ``stop`` say where
    the content would have been (``stop`` beyond the window)."""

    def __init__(self, tag: int, start: int, stop: int) -> None:
        super().__init__("item runs past its container")
        self.tag, self.start, self.stop = tag, start, stop


def item(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The item at ``pos``: ``(tag, content start, content end)``, inside ``[pos, end)``."""
    if end > len(buf) or end > MAX_INPUT:
        raise DERError("input too large or window past the end of the buffer")
    if pos + 2 > end:
        raise DERError("truncated item")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers are not read here")
    length = buf[pos + 1]
    pos += 2
    if length >= 0x80:
        count = length & 0x7F
        if count == 0 or count > 4:
            raise DERError("indefinite or oversized length")
        if pos + count > end:
            raise DERError("truncated length")
        if buf[pos] == 0:
            raise DERError("length with a leading zero octet")
        length = int.from_bytes(buf[pos : pos + count], "big")
        if length < 0x80:
            raise DERError("long-form length for a short item")
        pos += count
    stop = pos + length
    if stop > end:
        raise DERTruncated(tag, pos, stop)
    return tag, pos, stop


def item_in_window(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """``item`` for the lengths a certificate uses (up to three length octets), with the
    same rules: a one-octet tag, the shortest definite length, inside ``[pos, end)``; a
    four-octet length is refused here. For a caller that has checked its window once
    (``end`` never past the buffer nor ``MAX_INPUT``: ``len(der)`` of a bounded input or an
    item's own end), so the per-item window check is left out: the leaf reader on the
    uncached path calls it about thirty times per certificate. ``tests/test_leafder.py``
    holds it to ``item``."""
    if pos + 2 > end:
        raise DERError("truncated item")
    tag = der[pos]
    if tag & 0x1F == 0x1F:
        raise DERError("high tag numbers are not read here")
    length = der[pos + 1]
    if length < 0x80:
        start = pos + 2
    elif length == 0x81:
        if pos + 3 > end or der[pos + 2] < 0x80:
            raise DERError("truncated or non-minimal length")
        length = der[pos + 2]
        start = pos + 3
    elif length == 0x82:
        if pos + 4 > end or der[pos + 2] == 0:
            raise DERError("truncated or non-minimal length")
        length = der[pos + 2] << 8 | der[pos + 3]
        start = pos + 4
    elif length == 0x83:
        if pos + 5 > end or der[pos + 2] == 0:
            raise DERError("truncated or non-minimal length")
        length = der[pos + 2] << 16 | der[pos + 3] << 8 | der[pos + 4]
        start = pos + 5
    else:
        raise DERError("indefinite or oversized length")
    stop = start + length
    if stop > end:
        raise DERError("item runs past its container")
    return tag, start, stop


def header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Like ``item``, for a caller that judges a content past ``end`` itself: the identifier
    and length octets must lie inside ``[pos, end)`` and be DER, but ``stop`` may lie beyond
    ``end`` (a CRL of many megabytes is read from its first octets; a concatenation of
    certificates says which one is cut short)."""
    try:
        return item(buf, pos, end)
    except DERTruncated as exc:
        return exc.tag, exc.start, exc.stop


def expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """The content ``(start, end)`` of the item at ``pos``, which must carry ``tag``."""
    got, start, stop = item(buf, pos, end)
    if got != tag:
        raise DERError(f"expected tag 0x{tag:02x}, found 0x{got:02x}")
    return start, stop


def items(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Every item of the window ``[start, end)`` in order; the last must end at ``end``."""
    pos = start
    while pos < end:
        tag, content, stop = item(buf, pos, end)
        yield tag, content, stop
        pos = stop


def certificate_names(der: bytes) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where the issuer and the subject Name of a certificate are: two ``(start, end)``.

    The offsets span each Name's whole encoding (tag and length included), so
    ``der[start:end]`` is the Name exactly as the CA signed it.
    """
    n = len(der)
    cert, cert_end = expect(der, 0, n, SEQUENCE)
    if cert_end != n:
        raise DERError("trailing data after the certificate")
    pos, tbs_end = expect(der, cert, cert_end, SEQUENCE)
    tag, _, stop = item(der, pos, tbs_end)
    if tag == 0xA0:  # [0] EXPLICIT version
        pos = stop
    _, _, pos = item(der, pos, tbs_end)  # serialNumber
    _, _, pos = item(der, pos, tbs_end)  # signature AlgorithmIdentifier
    _, _, issuer_end = expect_whole(der, pos, tbs_end, SEQUENCE)
    issuer = (pos, issuer_end)
    _, _, pos = expect_whole(der, issuer_end, tbs_end, SEQUENCE)  # validity
    _, _, subject_end = expect_whole(der, pos, tbs_end, SEQUENCE)
    return issuer, (pos, subject_end)


def expect_whole(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int, int]:
    """Like ``expect``, with the item's own start: ``(item start, content start, end)``."""
    start, stop = expect(buf, pos, end, tag)
    return pos, start, stop


def read_name(buf: bytes, start: int, end: int) -> list[list[tuple[bytes, int, bytes]]]:
    """The RDNs of the Name whose encoding is ``buf[start:end]``, in certificate order.

    Each RDN is a list of ``(OID content octets, value tag, value content octets)``. Only the
    structure is checked here (SEQUENCE OF SET OF SEQUENCE {OID, value}, each attribute
    exactly two items); what the tags and values mean is the caller's business.
    """
    content, stop = expect(buf, start, end, SEQUENCE)
    if stop != end:
        raise DERError("trailing data after the Name")
    rdns: list[list[tuple[bytes, int, bytes]]] = []
    for tag, set_start, set_end in items(buf, content, stop):
        if tag != SET:
            raise DERError("an RDN is not a SET")
        rdn: list[tuple[bytes, int, bytes]] = []
        for atv_tag, atv_start, atv_end in items(buf, set_start, set_end):
            if atv_tag != SEQUENCE:
                raise DERError("an attribute is not a SEQUENCE")
            oid_start, oid_end = expect(buf, atv_start, atv_end, OID)
            value_tag, value_start, value_end = item(buf, oid_end, atv_end)
            if value_end != atv_end:
                raise DERError("an attribute holds more than a type and a value")
            rdn.append((buf[oid_start:oid_end], value_tag, buf[value_start:value_end]))
        rdns.append(rdn)
    return rdns


_MAX_ARC_OCTETS = 19  # 133 bits: more than any arc cryptography accepts (under 2**128)


def decode_oid(content: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets.

    DER only: every sub-identifier in its shortest form (no leading ``0x80`` octet), the last
    octet ending one, and none longer than ``_MAX_ARC_OCTETS`` octets, so a hostile value
    cannot make the conversion to text quadratic.
    """
    if not content or content[-1] & 0x80:
        raise DERError("an object identifier ends inside a sub-identifier")
    arcs: list[int] = []
    value = 0
    octets = 0
    for b in content:
        if octets == 0 and b == 0x80:
            raise DERError("a sub-identifier with a leading zero octet")
        octets += 1
        if octets > _MAX_ARC_OCTETS:
            raise DERError("a sub-identifier too long to be read")
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = octets = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def encode_oid(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (for building look-up tables)."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an object identifier: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)
