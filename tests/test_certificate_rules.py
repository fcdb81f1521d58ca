"""Certificate rules: what identifies a certificate, revocation of pins, hostile chains, the
client-certificate profile, name constraints on names read from the subject, error codes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from _x509_forge import der, ecdsa_twin, padded_twin, resign
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mtlsauth import CRLSet, MTLSAuthError, Policy, Verifier
from mtlsauth._identity import equivalent_fingerprints
from mtlsauth._pathvalidation import MAX_ISSUER_CANDIDATES, select_intermediates
from mtlsauth.testing import CA, self_signed_client_cert


def _code(verifier: Verifier, chain: object) -> str:
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(chain)
    return info.value.code


def _fp(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _leaf(
    ca: CA,
    *,
    subject: x509.Name,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A leaf with exactly the subject and extensions given (plus basicConstraints, EKU)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return der(builder.sign(ca.private_key, hashes.SHA256()))  # type: ignore[arg-type]


_CA_KEY_USAGE = x509.KeyUsage(
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


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


@pytest.fixture(scope="module")
def root() -> CA:
    return CA(organization="Rules Corp")


# --- 1. what identifies a certificate -------------------------------------------------------

_Twins = tuple[CA, list[bytes], list[list[bytes]]]


def _p384_issued_leaf(root: CA) -> tuple[bytes, bytes]:
    """(leaf, intermediate) DER: a leaf whose issuing CA has a P-384 key."""
    key = ec.generate_private_key(ec.SECP384R1())
    now = dt.datetime.now(dt.timezone.utc)
    inter = (
        x509.CertificateBuilder()
        .subject_name(_cn("P-384 issuing CA"))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root.private_key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .sign(root.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_cn("denied"))
        .issuer_name(inter.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    return der(leaf), der(inter)


@pytest.fixture(scope="module", params=["P-256", "P-384"])
def twins(request: pytest.FixtureRequest) -> tuple[CA, list[bytes], list[list[bytes]]]:
    """(root, original chain, re-encoded chains): ECDSA s -> n - s, and signature padding."""
    ca = CA()
    for _ in range(64):  # until the signature's last bit is 0, so padding can be claimed
        if request.param == "P-256":
            leaf, rest, curve = ca.issue_client_cert(common_name="denied").der, [], "secp256r1"
        else:
            leaf, inter = _p384_issued_leaf(ca)
            rest, curve = [inter], "secp384r1"
        padded = padded_twin(leaf)
        if padded is not None:
            break
    assert padded is not None
    return ca, [leaf, *rest], [[ecdsa_twin(leaf, curve), *rest], [padded, *rest]]


def test_twins_are_valid_certificates_with_other_fingerprints(twins: _Twins) -> None:
    ca, original, found = twins
    verifier = Verifier(trust_store=ca.trust_store(), cache_size=0)
    for twin in found:
        assert _fp(twin[0]) != _fp(original[0])
        assert verifier.verify(twin).common_name == "denied"


def test_deny_fingerprints_denies_every_valid_re_encoding(twins: _Twins) -> None:
    ca, original, found = twins
    verifier = Verifier(
        trust_store=ca.trust_store(), policy=Policy(deny_fingerprints={_fp(original[0])})
    )
    assert _code(verifier, original) == "certificate_denied"
    for twin in found:
        assert _code(verifier, twin) == "certificate_denied"
    # Denying a twin's fingerprint denies the original too: they are one certificate.
    for twin in found:
        by_twin = Verifier(
            trust_store=ca.trust_store(), policy=Policy(deny_fingerprints={_fp(twin[0])})
        )
        assert _code(by_twin, original) == "certificate_denied"


def test_deny_serials_denies_every_re_encoding(twins: _Twins) -> None:
    ca, original, found = twins
    serial = x509.load_der_x509_certificate(original[0]).serial_number
    verifier = Verifier(trust_store=ca.trust_store(), policy=Policy(deny_serials={serial}))
    for presented in (original, *found):
        assert _code(verifier, presented) == "certificate_denied"


def test_fingerprint_allow_list_matches_exact_bytes_only(twins: _Twins) -> None:
    ca, original, found = twins
    allow = Verifier(trust_store=ca.trust_store(), policy=Policy(fingerprints={_fp(original[0])}))
    assert allow.verify(original).common_name == "denied"
    for twin in found:
        assert _code(allow, twin) == "fingerprint_not_allowed"


def test_pinned_twin_is_not_the_pin() -> None:
    # A pin admits: it compares the exact bytes, so a re-encoding is refused, never admitted.
    pin = self_signed_client_cert(extensions=True)
    verifier = Verifier(pinned=[pin.certificate])
    assert verifier.verify(pin.der).common_name == "self-signed client"
    assert _code(verifier, ecdsa_twin(pin.der)) == "pin_mismatch"


def test_deny_listed_pin_twin_is_denied() -> None:
    pin = self_signed_client_cert(extensions=True)
    twin = ecdsa_twin(pin.der)
    verifier = Verifier(
        pinned=[pin.certificate, twin], policy=Policy(deny_fingerprints={_fp(pin.der)})
    )
    assert _code(verifier, pin.der) == "certificate_denied"
    assert _code(verifier, twin) == "certificate_denied"


def test_negative_cache_of_the_original_does_not_let_the_twin_in(twins: _Twins) -> None:
    ca, original, found = twins
    verifier = Verifier(
        trust_store=ca.trust_store(), policy=Policy(deny_fingerprints={_fp(original[0])})
    )
    for _ in range(2):
        for presented in (original, *found):
            assert _code(verifier, presented) == "certificate_denied"


def test_equivalent_fingerprints_of_garbage_is_its_own_fingerprint() -> None:
    assert equivalent_fingerprints(b"\x30\x03\x02\x01\x01") == {_fp(b"\x30\x03\x02\x01\x01")}
    assert equivalent_fingerprints(b"") == {_fp(b"")}
