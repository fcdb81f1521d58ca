"""A fixed, public test PKI for the fuzz targets, so that committed seeds keep verifying.

The keys are derived from public labels: anyone can recompute them, which is the point
(a seed certificate must chain to the same CA on every machine). They protect nothing.
No key material is stored in the repository, only the labels.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
NOT_AFTER = dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)
# Revocation data must be fresh at verification time; CRLs and OCSP answers are made at start.
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _scalar(label: str) -> int:
    return int.from_bytes(hashlib.sha256(b"mtlsauth fuzz key: " + label.encode()).digest(), "big")


def ec_key(label: str, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    curve = curve or ec.SECP256R1()
    order = {"secp256r1": 2**256, "secp384r1": 2**384}.get(curve.name, 2**256)
    return ec.derive_private_key(_scalar(label) % (order // 2) + 1, curve)


def ed_key(label: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"mtlsauth fuzz ed25519: " + label.encode()).digest()
    )


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _serial(label: str) -> int:
    return _scalar("serial " + label) >> 100


def _name(cn: str, org: str = "mtlsauth fuzz") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca_cert(
    label: str, key: PrivateKey, issuer: x509.Certificate | None, signer: PrivateKey
) -> x509.Certificate:
    subject = _name(f"fuzz {label}")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(_serial(label))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(signer, _hash_for(signer))


def leaf_builder(
    label: str, issuer: x509.Certificate, signer: PrivateKey, key: PrivateKey
) -> x509.CertificateBuilder:
    """A client-certificate builder with the usual extensions (callers may add more)."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"client {label}", "payments"))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(_serial(label))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
    )


@dataclass(frozen=True)
class FuzzPKI:
    """Root -> intermediate -> leaves, all derived from public labels."""

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate
    leaves: tuple[x509.Certificate, ...]

    def der(self, cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    @property
    def chains(self) -> tuple[tuple[bytes, ...], ...]:
        """Each leaf with the intermediate after it (what a client sends)."""
        return tuple((self.der(leaf), self.der(self.inter)) for leaf in self.leaves)

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def key_for(self, cert: x509.Certificate) -> PrivateKey:
        """The key that signed ``cert`` (for re-signing mutated certificates)."""
        return self.root_key if cert.issuer == self.root.subject else self.inter_key

    def crl(self, *, revoked: tuple[int, ...] = (), signer: str = "inter") -> bytes:
        ca, key = (self.inter, self.inter_key) if signer == "inter" else (self.root, self.root_key)
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=3650))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False
            )
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=1))
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp_response(self, leaf: x509.Certificate, *, revoked: bool = False) -> bytes:
        now = dt.datetime.now(dt.timezone.utc)
        status = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf,
            issuer=self.inter,
            algorithm=hashes.SHA1(),
            cert_status=status,
            this_update=now - dt.timedelta(minutes=1),
            next_update=now + dt.timedelta(days=3650),
            revocation_time=now - dt.timedelta(minutes=2) if revoked else None,
            revocation_reason=None,
        )
        resp = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.inter).sign(
            self.inter_key, hashes.SHA256()
        )
        return resp.public_bytes(serialization.Encoding.DER)


@functools.cache
def pki() -> FuzzPKI:
    root_key = ec_key("root")
    root = _ca_cert("root", root_key, None, root_key)
    inter_key = ec_key("intermediate")
    inter = _ca_cert("intermediate", inter_key, root, root_key)
    leaves = []
    plain = leaf_builder("plain", inter, inter_key, ec_key("leaf plain"))
    leaves.append(plain.sign(inter_key, hashes.SHA256()))
    san = leaf_builder("san", inter, inter_key, ec_key("leaf san", ec.SECP384R1()))
    san = san.add_extension(
        x509.SubjectAlternativeName(
            [
                x509.DNSName("client.example.com"),
                x509.UniformResourceIdentifier("spiffe://example.com/ns/prod/sa/ledger"),
                x509.RFC822Name("ops@example.com"),
                x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
            ]
        ),
        critical=False,
    )
    leaves.append(san.sign(inter_key, hashes.SHA256()))
    ed = leaf_builder("ed25519", inter, inter_key, ed_key("leaf ed25519"))
    leaves.append(ed.sign(inter_key, hashes.SHA384()))
    return FuzzPKI(root_key, root, inter_key, inter, tuple(leaves))
