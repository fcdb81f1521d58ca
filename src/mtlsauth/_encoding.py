"""Strict decoding of certificate input: PEM text, DER bytes, concatenated DER.

Every function here raises ``CertificateInvalid(code="certificate_malformed")`` on bad input
and nothing else, so a garbage request can never turn into a 500.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mtlsauth import _der
from mtlsauth._der import DERError
from mtlsauth._errors import CertificateInvalid

__all__ = [
    "MAX_CHAIN_CERTS",
    "MAX_INPUT_BYTES",
    "MAX_LEAF_BYTES",
    "b64decode_strict",
    "chain_to_der",
    "check_leaf_size",
    "load_der",
    "pad_bits_clear",
    "pem_to_der_list",
    "split_der",
]

MAX_CHAIN_CERTS = 16  # a real client chain is 1-4 certificates; more is abuse
MAX_INPUT_BYTES = 256 * 1024
MAX_LEAF_BYTES = 32 * 1024
"""The largest client certificate read (``check_leaf_size``). A client certificate is one or
two KB; an RSA-16384 key or 400 long DNS names (22 KB, which nginx, Apache and Caddy
forward whole) stay under this. What a leaf costs to read before any signature vouches for
it grows with the names and extensions it holds: 64 KB of one-letter SAN entries cost about
27 genuine verifications, and several times that through cryptography's reading."""

_WS = b" \t\r\n\x0b\x0c"


def _malformed(detail: str) -> CertificateInvalid:
    return CertificateInvalid(detail, code="certificate_malformed")


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def pad_bits_clear(compact: bytes) -> bool:
    """Whether the bits that padding leaves unused in ``compact`` (valid standard base64,
    no whitespace) are zero, as every encoder writes them. Non-zero ones decode to the
    same bytes: one certificate would have several spellings."""
    if compact.endswith(b"=="):
        return _B64_ALPHABET.find(compact[-3:-2]) & 0x0F == 0
    if compact.endswith(b"="):
        return _B64_ALPHABET.find(compact[-2:-1]) & 0x03 == 0
    return True


def b64decode_strict(data: bytes | str, *, what: str = "value", canonical: bool = False) -> bytes:
    """Decode standard base64 (whitespace ignored); anything else is malformed.

    ``canonical`` also refuses non-zero padding bits (request input: a proxy's encoder
    never writes them).
    """
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise _malformed(f"{what} is not base64") from None
    data = data.translate(None, _WS)
    if not data:
        raise _malformed(f"{what} is empty")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{what} is not valid base64") from None
    if canonical and not pad_bits_clear(data):
        raise _malformed(f"{what} is not canonical base64 (non-zero padding bits)")
    return raw


def pem_to_der_list(data: bytes, *, allow_text: bool = False) -> list[bytes]:
    """Return the DER of every CERTIFICATE block in ``data``.

    Args:
        data: PEM text.
        allow_text: Tolerate explanatory text between blocks (CA bundle files). Request
            input is strict: only whitespace may surround the blocks.

    Raises:
        CertificateInvalid: no block, a non-certificate block (a private key), a truncated
            block, bad base64, or stray text.
    """
    # Scanned with find() rather than a regular expression: this runs on every uncached
    # request, and a DOTALL regex over the whole text costs several times more.
    ders: list[bytes] = []
    pos = 0
    n = len(data)
    while pos < n:
        begin = data.find(b"-----BEGIN ", pos)
        if begin < 0:
            break
        between = data[pos:begin]
        if not allow_text and between.strip():
            raise _malformed("unexpected data around PEM blocks")
        label_end = data.find(b"-----", begin + 11)
        if label_end < 0 or label_end - begin - 11 > 64:
            raise _malformed("truncated PEM block")
        label = data[begin + 11 : label_end]
        if label != b"CERTIFICATE":
            if b"PRIVATE KEY" in label:
                raise _malformed("a private key was supplied where a certificate belongs")
            raise _malformed(f"unexpected PEM block {label.decode('ascii', 'replace')!r}")
        body_start = label_end + 5
        end = data.find(b"-----END ", body_start)
        if end < 0:
            raise _malformed("truncated PEM block")
        body = data[body_start:end]
        if b"-----" in body:
            raise _malformed("truncated PEM block")
        end_label_end = data.find(b"-----", end + 9)
        if end_label_end < 0:
            raise _malformed("truncated PEM block")
        if data[end + 9 : end_label_end] != label:
            raise _malformed("mismatched PEM block labels")
        # Request input is held to what an encoder writes; files (bundles) as OpenSSL reads them.
        ders.append(b64decode_strict(body, what="PEM body", canonical=not allow_text))
        pos = end_label_end + 5
    tail = data[pos:]
    if not allow_text and tail.strip():
        raise _malformed("trailing data after PEM blocks")
    if not ders:
        raise _malformed("no PEM certificate found")
    return ders


def _der_length(data: bytes, pos: int, tag: int = 0x30) -> tuple[int, int]:
    """Return (content_length, header_length) of the DER TLV with ``tag`` at ``pos``.

    The content may run past ``data``: each caller names that case itself.
    """
    if pos + 2 > len(data) or data[pos] != tag:  # every certificate is a SEQUENCE
        raise _malformed("not a DER certificate")
    try:
        _, start, stop = _der.header(data, pos, len(data))
    except DERError:
        raise _malformed("bad DER length") from None
    return stop - start, start - pos


def split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER certificates by their ASN.1 lengths (HAProxy ``ssl_c_chain_der``)."""
    n = len(data)
    # The common item: one certificate of 256 octets to 64 KB, a SEQUENCE whose two-octet
    # length (minimal: its first octet is not zero) ends exactly at the end of the input.
    if (
        n > 4
        and data[0] == 0x30
        and data[1] == 0x82
        and data[2]
        and data[2] << 8 | data[3] == n - 4
    ):
        return [data]
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        length, header = _der_length(data, pos)
        end = pos + header + length
        if end > len(data):
            raise _malformed("truncated DER certificate")
        out.append(data[pos:end])
        pos = end
        if len(out) > MAX_CHAIN_CERTS:
            raise _malformed(f"more than {MAX_CHAIN_CERTS} certificates")
    if not out:
        raise _malformed("empty DER input")
    return out


def check_leaf_size(der: bytes) -> None:
    """Refuse a client certificate over ``MAX_LEAF_BYTES`` before anything reads it."""
    if len(der) > MAX_LEAF_BYTES:
        raise _malformed(
            f"client certificate too large ({len(der)} octets, at most {MAX_LEAF_BYTES})"
        )


def _serial_is_positive(der: bytes) -> bool:
    """Check the TBSCertificate serial (RFC 5280 4.1.2.2: a positive INTEGER) without parsing.

    cryptography still parses a non-positive serial but emits a deprecation warning, which
    under ``-W error`` escapes as an exception; refusing it first keeps failures uniform.
    """
    try:
        _, outer = _der_length(der, 0)
        _, tbs = _der_length(der, outer)
        pos = outer + tbs
        if der[pos] == 0xA0:  # [0] EXPLICIT version
            vlen, vhead = _der_length(der, pos, 0xA0)
            pos += vhead + vlen
        slen, shead = _der_length(der, pos, 0x02)
        serial = der[pos + shead : pos + shead + slen]
    except (CertificateInvalid, IndexError):
        return False
    return bool(serial) and not serial[0] & 0x80 and any(serial)


def load_der(der: bytes, *, serial_checked: bool = False) -> x509.Certificate:
    """Parse one DER certificate; trailing bytes or any parse error is malformed.

    ``serial_checked``: the caller's own strict reading of ``der`` already found a positive
    serial (``_leafder.read_leaf``), so it is not looked for again.
    """
    if not serial_checked and not _serial_is_positive(der):
        raise _malformed("not a valid X.509 certificate (serial number missing or not positive)")
    try:
        cert = x509.load_der_x509_certificate(der)
    except Exception:  # noqa: BLE001 - ValueError, x509.InvalidVersion, anything the parser raises
        raise _malformed("not a valid X.509 certificate") from None
    return cert


def _item_to_der(item: object) -> list[bytes]:
    if type(item) is bytes and item[:1] == b"\x30":  # DER: PEM starts with text or space
        if len(item) > MAX_INPUT_BYTES:
            raise _malformed("certificate input too large")
        return split_der(item)
    if isinstance(item, x509.Certificate):
        return [item.public_bytes(Encoding.DER)]
    if isinstance(item, str):
        try:
            item = item.encode("ascii")
        except UnicodeEncodeError:
            raise _malformed("certificate text is not ASCII") from None
    if isinstance(item, bytearray | memoryview):
        item = bytes(item)
    if not isinstance(item, bytes):
        raise _malformed(f"unsupported certificate input type {type(item).__name__}")
    if len(item) > MAX_INPUT_BYTES:
        raise _malformed("certificate input too large")
    stripped = item.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        return pem_to_der_list(item)
    if not stripped:
        return []
    return split_der(item)


def chain_to_der(chain: object) -> tuple[bytes, ...]:
    """Normalise any supported chain input to DER bytes, leaf first.

    Accepts PEM ``str``/``bytes`` (one or many certificates), DER ``bytes`` (one or several
    concatenated), an ``x509.Certificate``, or a sequence of these. Returns ``()`` for empty
    input so the caller can raise ``CertificateMissing``.
    """
    items: Iterable[object]
    # A sequence first: the common input, settled by one test instead of six.
    if isinstance(chain, list | tuple):
        items = chain
    elif isinstance(chain, str | bytes | bytearray | memoryview | x509.Certificate):
        items = (chain,)
    elif chain is None:
        return ()
    else:
        raise _malformed(f"unsupported certificate input type {type(chain).__name__}")
    ders: list[bytes] = []
    for item in items:
        ders.extend(_item_to_der(item))
        if len(ders) > MAX_CHAIN_CERTS:
            raise _malformed(f"more than {MAX_CHAIN_CERTS} certificates presented")
    return tuple(ders)
