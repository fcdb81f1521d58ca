"""Throwaway PKI for the benchmarks: a root, an intermediate, many leaves and big CRLs, in memory.

Everything is generated at start-up and never written to the repository (no key leaves this
process). Two shortcuts keep start-up short without changing what is measured:

* Leaves share one key pair per key type. A "new certificate" only has to be new bytes
  (a new serial and signature); the verifier's work is the same. (``leaf(key=...)`` gives
  one its own key, for the measurement of leaves that share nothing.)
* CRLs are DER-encoded here by hand. cryptography's ``CertificateRevocationListBuilder``
  needs about 20 s for 100,000 entries; this encoder needs well under a second and produces
  a CRL that cryptography parses and whose signature it verifies.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtlsauth.testing import CA

ORGANIZATION = "payments"
_UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC).replace(microsecond=0)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@dataclass
class Hierarchy:
    """root -> intermediate -> leaves, one key type throughout (as a real deployment has)."""

    key_type: str
    root: CA
    intermediate: CA
    leaf_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    _serial: int = 1_000_000
    _crl_number: int = 0
    issued: int = field(default=0)

    @classmethod
    def create(cls, key_type: str = "ec") -> Hierarchy:
        root = CA(organization="mtlsauth bench", key_type=key_type)  # type: ignore[arg-type]
        inter = root.intermediate(key_type=key_type)
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        if key_type == "rsa":
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        return cls(key_type, root, inter, key)

    @property
    def root_pem(self) -> bytes:
        return self.root.cert_pem.bytes()

    @property
    def intermediate_der(self) -> bytes:
        return der(self.intermediate.certificate)

    def leaf(
        self,
        common_name: str = "ledger",
        *,
        serial: int | None = None,
        unit: str | None = None,
        host: str | None = None,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    ) -> x509.Certificate:
        """A client certificate as enterprise CAs issue them: CN, O, a DNS SAN, clientAuth.

        ``unit`` adds an OU (a subject of its own), ``host`` names the DNS SAN's first label
        (default: the common name), ``key`` replaces the shared leaf key.
        """
        if serial is None:
            self._serial += 1
            serial = self._serial
        self.issued += 1
        now = _now()
        ca = self.intermediate
        pub = (key or self.leaf_key).public_key()
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
        if unit is not None:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(ca.certificate.subject)
            .public_key(pub)
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName(f"{host or common_name}.payments.svc"),
                        x509.IPAddress(ipaddress.ip_address("10.1.2.3")),
                    ]
                ),
                critical=False,
            )
        )
        return builder.sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]

    def chain_der(self, leaf: x509.Certificate) -> tuple[bytes, bytes]:
        """What a client presents: its leaf, then the intermediate."""
        return der(leaf), self.intermediate_der

    def crl_der(self, ca: CA, revoked_serials: range | list[int]) -> bytes:
        """A signed, fresh CRL of ``ca`` listing ``revoked_serials`` (DER)."""
        self._crl_number += 1
        return fast_crl(ca, revoked_serials, number=self._crl_number)

    def crls_der(self, intermediate_entries: int) -> tuple[bytes, bytes]:
        """The root's CRL (covers the intermediate) and the intermediate's (covers leaves).

        Revoked serials start at 1 and never collide with issued leaves (from 1,000,001).
        """
        return (
            self.crl_der(self.root, range(1, 11)),
            self.crl_der(self.intermediate, range(1, intermediate_entries + 1)),
        )


# -- a minimal DER writer, enough for a CRL ---------------------------------------------------
def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return _tlv(0x02, body)


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _utctime(moment: dt.datetime) -> bytes:
    return _tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode("ascii"))


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


def fast_crl(
    ca: CA,
    revoked_serials: range | list[int],
    *,
    number: int = 1,
    next_update: dt.timedelta = dt.timedelta(days=7),
) -> bytes:
    """Encode and sign an RFC 5280 v2 CRL (CRLNumber, AKI) the way the CA's builder would."""
    key = ca.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = _seq(_oid("1.2.840.10045.4.3.2"))  # ecdsa-with-SHA256
    elif isinstance(key, rsa.RSAPrivateKey):
        alg = _seq(_oid("1.2.840.113549.1.1.11"), b"\x05\x00")  # sha256WithRSAEncryption
    else:
        raise TypeError("the benchmark CRL encoder signs with EC or RSA keys only")
    now = _now()
    revoked_on = _utctime(now - dt.timedelta(minutes=5))
    entries = b"".join(_seq(_int(s), revoked_on) for s in revoked_serials)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    extensions = _seq(
        _seq(_oid("2.5.29.20"), _tlv(0x04, _int(number))),  # cRLNumber
        _seq(_oid("2.5.29.35"), _tlv(0x04, aki.public_bytes())),  # authorityKeyIdentifier
    )
    tbs = _seq(
        _int(1),  # v2
        alg,
        ca.certificate.subject.public_bytes(),
        _utctime(now - dt.timedelta(minutes=10)),
        _utctime(now + next_update),
        *([_seq(entries)] if entries else []),
        _tlv(0xA0, extensions),
    )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    else:
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    crl = _seq(tbs, alg, _tlv(0x03, b"\x00" + signature))
    parsed = x509.load_der_x509_crl(crl)  # refuse to benchmark against a broken CRL
    if not parsed.is_signature_valid(key.public_key()):  # type: ignore[arg-type]
        raise RuntimeError("benchmark CRL encoder produced a bad signature")
    return crl


def der_to_pem_crl(data: bytes) -> bytes:
    return x509.load_der_x509_crl(data).public_bytes(serialization.Encoding.PEM)
