"""Byte-level certificate surgery for tests: re-encode, re-sign and malleate DER certificates.

Everything here works on DER bytes, so a test can build what no certificate builder would:
an unsupported version, a duplicate extension, invalid UTF-8 in a name, or a second valid
encoding of the same certificate (ECDSA ``s`` replaced by ``n - s``, padding bits in the
signature BIT STRING).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding

ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "secp521r1": int(
        "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA51868783BF2F966B7FCC0148F709A5D0"
        "3BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


CA_KEY_USAGE = x509.KeyUsage(  # keyCertSign and cRLSign: what a CA certificate asserts
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _item(buf: bytes, i: int) -> tuple[int, int]:
    """(start of content, end) of the DER item at ``i``."""
    length = buf[i + 1]
    j = i + 2
    if length & 0x80:
        k = length & 0x7F
        length = int.from_bytes(buf[j : j + k], "big")
        j += k
    return j, j + length


def split(der: bytes) -> tuple[bytes, bytes, bytes]:
    """(TBSCertificate, signatureAlgorithm, signature value) of a DER certificate."""
    start, _ = _item(der, 0)
    tbs_end = _item(der, start)[1]
    alg_end = _item(der, tbs_end)[1]
    sig_start, sig_end = _item(der, alg_end)
    return der[start:tbs_end], der[tbs_end:alg_end], der[sig_start + 1 : sig_end]


def assemble(tbs: bytes, alg: bytes, signature: bytes, *, unused_bits: int = 0) -> bytes:
    return tlv(0x30, tbs + alg + tlv(0x03, bytes([unused_bits]) + signature))


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def resign(
    cert_der: bytes, key: ec.EllipticCurvePrivateKey, *replacements: tuple[bytes, bytes]
) -> bytes:
    """Replace byte strings inside the TBSCertificate (same length) and sign it again with ``key``."""
    tbs, alg, _ = split(cert_der)
    for old, new in replacements:
        assert len(old) == len(new), (old, new)
        assert old in tbs, old
        tbs = tbs.replace(old, new, 1)
    return assemble(tbs, alg, key.sign(tbs, ec.ECDSA(hashes.SHA256())))


def ecdsa_twin(cert_der: bytes, curve: str = "secp256r1") -> bytes:
    """The same certificate with its ECDSA signature's ``s`` replaced by ``n - s``."""
    tbs, alg, sig = split(cert_der)
    r, s = decode_dss_signature(sig)
    return assemble(tbs, alg, encode_dss_signature(r, ORDERS[curve] - s))


def padded_twin(cert_der: bytes) -> bytes | None:
    """The same certificate with the signature BIT STRING claiming unused (zero) bits, if it can."""
    tbs, alg, sig = split(cert_der)
    last = sig[-1]
    if last & 1:
        return None
    return assemble(tbs, alg, sig, unused_bits=1)
