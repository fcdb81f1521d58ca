"""Chains found by a conformance run of client certificates (docs/security.md, "A conformance
run for client certificates"): each test builds the certificates the finding is about with the
project's own test PKI and fails when its rule is removed."""

from __future__ import annotations

import datetime as dt
import functools

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from _x509_forge import CA_KEY_USAGE, der, tlv
from mtlsauth import MTLSAuthError, TrustStore, Verifier
from mtlsauth.testing import CA

_Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@functools.cache
def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: x509.Name, issuer: x509.Name, key: _Key) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def _ca(
    cn: str, key: _Key, issuer: tuple[x509.Certificate, _Key] | None = None
) -> x509.Certificate:
    """A CA certificate for ``key``: self-signed, or issued by ``issuer`` (cert, key)."""
    parent_name, signer = (issuer[0].subject, issuer[1]) if issuer else (_name(cn), key)
    builder = (
        _builder(_name(cn), parent_name, key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    )
    return builder.sign(signer, hashes.SHA256())


def _leaf(issuer: x509.Certificate, issuer_key: _Key, key: _Key | None = None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name("client"), issuer.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    return der(builder.sign(issuer_key, hashes.SHA256()))


def _verifier(*anchors: x509.Certificate) -> Verifier:
    return Verifier(trust_store=TrustStore.from_certificates(anchors), cache_size=0)


def _code(verifier: Verifier, chain: object) -> str:
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(chain)
    return info.value.code


# --- RSA moduli that are not a whole number of octets (CA/B BR 6.1.5) -----------------------


def test_an_rsa_leaf_key_of_a_part_octet_is_refused_as_weak() -> None:
    """A 2052-bit leaf key passed the 2048-bit minimum; such a modulus comes from no key
    generator in use (CA/B BR 6.1.5 requires a multiple of 8 bits), so it is ``weak_key``, as a
    pinned copy of it is."""
    root = CA()
    odd = _leaf(root.certificate, root.private_key, _rsa(2052))  # type: ignore[arg-type]
    even = _leaf(root.certificate, root.private_key, _rsa(2056))  # type: ignore[arg-type]
    verifier = _verifier(root.certificate)
    assert verifier.verify(even).common_name == "client"
    assert _code(verifier, odd) == "weak_key"
    assert _code(Verifier(pinned=[odd], cache_size=0), odd) == "weak_key"


@pytest.mark.parametrize("where", ["root", "intermediate"])
def test_an_rsa_ca_key_of_a_part_octet_is_refused(where: str) -> None:
    """cryptography's verifier checks a CA's RSA modulus for its size only, so a root or an
    intermediate with a 2052-bit key issued accepted leaves; now ``untrusted_issuer``, as a
    CA key that is too weak."""
    odd, even = _rsa(2052), _rsa(2048)
    for ca_key, refused in ((even, False), (odd, True)):
        if where == "root":
            root_key: _Key = ca_key
            root = _ca("root", root_key)
            issuer, issuer_key, sent = root, root_key, []
        else:
            root_key = ec.generate_private_key(ec.SECP256R1())
            root = _ca("root", root_key)
            issuer = _ca("intermediate", ca_key, (root, root_key))
            issuer_key, sent = ca_key, [der(issuer)]
        chain = [_leaf(issuer, issuer_key), *sent]
        verifier = _verifier(root)
        if refused:
            assert _code(verifier, chain) == "untrusted_issuer"
        else:
            assert verifier.verify(chain).common_name == "client"


def test_a_part_octet_ca_key_is_refused_after_the_intermediate_was_vouched_for() -> None:
    """The rule holds on the shortcut for intermediates already validated up to an anchor:
    a second leaf under a vouched-for intermediate meets the same check of the root."""
    root = _ca("root", _rsa(2052))
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _ca("intermediate", inter_key, (root, _rsa(2052)))
    verifier = _verifier(root)
    for _ in range(2):
        assert _code(verifier, [_leaf(inter, inter_key), der(inter)]) == "untrusted_issuer"


# --- a CA certificate whose extensions do not parse, in a trust store -----------------------


def test_an_anchor_whose_extensions_cannot_be_read_is_named_as_such() -> None:
    """A root whose name constraints hold a wildcard cannot be read by cryptography, and was
    refused as "an end-entity certificate, which is not a CA", which sends an operator to look
    for a leaf in the bundle. It is refused still, naming what is wrong with it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subtree = tlv(0x30, tlv(0x82, b"*.example.com"))  # GeneralSubtree { dNSName }
    constraints = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.NAME_CONSTRAINTS, tlv(0x30, tlv(0xA0, subtree))
    )
    root = (
        _builder(_name("root"), _name("root"), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(constraints, critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(ValueError, match=r"CN=root whose extensions cannot be read") as info:
        Verifier(trust_store=TrustStore.from_certificates([root]))
    assert "end-entity" not in str(info.value)


# --- an extension that does not parse is malformed, not an unknown issuer -------------------


def test_a_leaf_with_an_empty_eku_is_malformed_not_an_unknown_issuer() -> None:
    """RFC 5280 4.2.1.12: extKeyUsage lists one or more purposes. An empty one does not parse
    and was refused as ``untrusted_issuer`` (no path to a trusted CA), which sends an
    operator after a missing intermediate."""
    root = CA()
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        _builder(_name("client"), root.certificate.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([]), critical=False)
        .sign(root.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    assert _code(_verifier(root.certificate), der(leaf)) == "certificate_malformed"
