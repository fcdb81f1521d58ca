"""The strict DER reader: what it accepts is DER, what it refuses raises DERError only.

Also the property/fuzz test of the reader: arbitrary bytes and corrupted real certificates
never make it raise anything but ``DERError`` (a ``ValueError``), and what it reads from a
real certificate is what cryptography reads.
"""

from __future__ import annotations

import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsauth._der import MAX_INPUT, DERError, certificate_names, encode_oid, item, read_name
from mtlsauth.testing import CA

_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CA = CA()
_LEAF = _CA.intermediate().issue_client_cert(
    common_name="client", organization="Acme", dns_names=["a.example"]
)
_DER = _LEAF.certificate.public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "truncated"),
        (b"\x30", "truncated"),
        (b"\x30\x80\x00\x00", "indefinite"),
        (b"\x30\x81\x05abcde", "long form for a short item"),
        (b"\x30\x82\x00\x80" + b"a" * 0x80, "leading zero octet"),
        (b"\x30\x85\x00\x00\x00\x00\x01a", "five length octets"),
        (b"\x1f\x01\x01a", "high tag number"),
        (b"\x30\x03ab", "runs past the buffer"),
    ],
)
def test_refuses_what_is_not_der(data: bytes, why: str) -> None:
    with pytest.raises(DERError):
        item(data, 0, len(data))


def test_reads_short_and_long_forms() -> None:
    assert item(b"\x04\x02ab", 0, 4) == (4, 2, 4)
    long = b"\x04\x81\x80" + b"x" * 0x80
    assert item(long, 0, len(long)) == (4, 3, 3 + 0x80)


def test_an_item_never_leaves_its_window() -> None:
    data = b"\x30\x04\x04\x02ab\x04\x00"
    with pytest.raises(DERError):
        item(data, 2, 5)  # the inner OCTET STRING needs up to 6


def test_input_over_the_bound_is_not_read() -> None:
    big = b"\x04\x84" + (MAX_INPUT).to_bytes(4, "big") + bytes(MAX_INPUT)
    with pytest.raises(DERError):
        item(big, 0, len(big))


def test_certificate_names_are_the_signed_bytes() -> None:
    (i0, i1), (s0, s1) = certificate_names(_DER)
    issuer = _LEAF.certificate.issuer.public_bytes()
    subject = _LEAF.certificate.subject.public_bytes()
    assert _DER[i0:i1] == issuer
    assert _DER[s0:s1] == subject


def test_trailing_data_after_a_certificate_is_refused() -> None:
    with pytest.raises(DERError):
        certificate_names(_DER + b"\x00")


def test_read_name_matches_cryptography() -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(x509.NameOID.COUNTRY_NAME, "DE")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(x509.NameOID.COMMON_NAME, "é"),
                    x509.NameAttribute(x509.NameOID.ORGANIZATION_NAME, "a+b"),
                ]
            ),
        ]
    )
    raw = name.public_bytes()
    rdns = read_name(raw, 0, len(raw))
    want = [
        [(encode_oid(a.oid.dotted_string), a.value) for a in rdn]  # type: ignore[misc]
        for rdn in name.rdns
    ]
    got = [[(oid, value.decode("utf-8")) for oid, _, value in rdn] for rdn in rdns]
    assert sorted(map(sorted, got)) == sorted(map(sorted, want))


@pytest.mark.parametrize(
    "dotted", ["2.5.4.3", "1.2.840.113549.1.9.1", "2.999.3", "0.9.2342.19200300.100.1.25"]
)
def test_encode_oid_matches_cryptography(dotted: str) -> None:
    name = x509.Name([x509.NameAttribute(x509.ObjectIdentifier(dotted), "x")])
    raw = name.public_bytes()
    assert read_name(raw, 0, len(raw))[0][0][0] == encode_oid(dotted)


def test_encode_oid_refuses_non_oids() -> None:
    for bad in ("1", "3.1", "1.40"):
        with pytest.raises(ValueError, match="object identifier"):
            encode_oid(bad)


def _only_der_errors(data: bytes) -> None:
    try:
        certificate_names(data)
    except DERError:
        pass
    try:
        read_name(data, 0, len(data))
    except DERError:
        pass


@_SETTINGS
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_der_errors(data: bytes) -> None:
    _only_der_errors(data)


@_SETTINGS
@given(data=st.data())
def test_corrupted_certificates_raise_only_der_errors(data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(_DER) - 1))
    j = data.draw(st.integers(i, min(len(_DER), i + 8)))
    noise = data.draw(st.binary(max_size=8))
    corrupted = _DER[:i] + noise + _DER[j:]
    _only_der_errors(corrupted)
    try:
        (i0, i1), (s0, s1) = certificate_names(corrupted)
    except DERError:
        return
    # Whatever is accepted is where cryptography finds the names too (when it can read it).
    try:
        # A corrupted serial may be negative, which cryptography accepts with a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(corrupted)
        issuer, subject = cert.issuer.public_bytes(), cert.subject.public_bytes()
    except ValueError:
        return
    assert corrupted[i0:i1] == issuer
    assert corrupted[s0:s1] == subject


def test_deep_nesting_is_walked_without_recursion() -> None:
    nested = b"\x30\x00"
    for _ in range(20000):
        nested = b"\x30" + _len(len(nested)) + nested
    with pytest.raises(DERError):
        read_name(nested, 0, len(nested))  # an RDN that is a SEQUENCE, refused at once


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw
