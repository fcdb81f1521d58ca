"""ClientIdentity read straight from the DER is identical to the one cryptography's objects give.

Differential: every certificate here goes through ``identity_from_certificate`` (the direct
reading, falling back to the full one) and through the full reading alone
(``_identity._parsed``); the identities must be equal field for field, and where the full
reading refuses, the direct one refuses with the same code and detail. Certificates come
from cryptography's builder (every SAN type, multi-valued RDNs, non-ASCII names, every
string type) and from byte surgery on the subject (invalid UTF-8, odd tags, empty RDNs,
unknown attribute types).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from _x509_forge import assemble, split, tlv
from mtlsauth import MTLSAuthError, _identity
from mtlsauth._der import item
from mtlsauth._identity import identity_from_certificate
from mtlsauth._leafder import read_leaf

_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_KEY = ec.generate_private_key(ec.SECP256R1())
_ISSUER = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Issuing, "CA"'),
    ]
)
_NOW = dt.datetime.now(dt.timezone.utc)


def _cert(subject: x509.Name, sans: list[x509.GeneralName] | None = None) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(_ISSUER)
        .public_key(_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - dt.timedelta(hours=1))
        .not_valid_after(_NOW + dt.timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(Encoding.DER)


def _with_subject(der: bytes, subject_der: bytes) -> bytes:
    """The certificate with its subject Name replaced by raw bytes (signature left stale)."""
    tbs, alg, signature = split(der)
    _, content, end = item(tbs, 0, len(tbs))
    pos = content
    fields = []
    while pos < end:
        _, _, stop = item(tbs, pos, end)
        fields.append(tbs[pos:stop])
        pos = stop
    # version, serial, signature, issuer, validity, subject, ...
    fields[5] = subject_der
    return assemble(tlv(0x30, b"".join(fields)), alg, signature)


def _outcome(fn: object, der: bytes) -> object:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "unloadable"
    try:
        identity = fn(cert, der)  # type: ignore[operator]
    except MTLSAuthError as exc:
        return ("refused", exc.code, exc.detail)
    fields = dataclasses.asdict(identity)
    fields.pop("certificate")
    fields.pop("chain")
    return fields, identity.issuer_name


def _direct(cert: x509.Certificate, der: bytes) -> _identity.ClientIdentity:
    return identity_from_certificate(cert, der=der)


def _reference(cert: x509.Certificate, der: bytes) -> _identity.ClientIdentity:
    try:
        return _identity._parsed(cert, (), "tls", der, x509.load_der_x509_certificate(der))
    except Exception as exc:  # noqa: BLE001 - the same mapping identity_from_certificate applies
        from mtlsauth._errors import CertificateInvalid

        raise CertificateInvalid(
            f"certificate fields cannot be read ({type(exc).__name__})",
            code="certificate_malformed",
        ) from None


def _from_facts(cert: x509.Certificate, der: bytes) -> _identity.ClientIdentity:
    return identity_from_certificate(cert, der=der, facts=read_leaf(der))


def _same(der: bytes) -> object:
    want = _outcome(_reference, der)
    got = _outcome(_direct, der)
    assert got == want
    assert _outcome(_from_facts, der) == want  # the DER reading and the fast constructor
    return got


# --- names built with cryptography ----------------------------------------------------------

_OIDS = [oid for oid in vars(NameOID).values() if isinstance(oid, x509.ObjectIdentifier)] + [
    x509.ObjectIdentifier("1.2.3.4"),
    x509.ObjectIdentifier("2.999.7"),
]
_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('\\"+,;<>\x00#= abcAZ09-._@éß中\U0001f600'), st.characters(codec="utf-8")
    ),
    max_size=12,
)
_STRING_TYPES = [
    _ASN1Type.UTF8String,
    _ASN1Type.PrintableString,
    _ASN1Type.IA5String,
    _ASN1Type.T61String,
    _ASN1Type.VisibleString,
    _ASN1Type.NumericString,
    _ASN1Type.BMPString,
    _ASN1Type.UniversalString,
]


@st.composite
def _attribute(draw: st.DrawFn) -> x509.NameAttribute:  # type: ignore[type-arg]
    oid = draw(st.sampled_from(_OIDS))
    kind = draw(st.sampled_from(_STRING_TYPES)) if draw(st.booleans()) else _STRING_TYPES[0]
    value = draw(_TEXT)
    if oid in (NameOID.COUNTRY_NAME, NameOID.JURISDICTION_COUNTRY_NAME):
        value = (value + "XX")[:2]
    if oid == NameOID.X500_UNIQUE_IDENTIFIER:
        return x509.NameAttribute(oid, draw(st.binary(max_size=6)), _ASN1Type.BitString)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lengths outside X.520's bounds are the point here
        return x509.NameAttribute(oid, value, kind, _validate=False)


_names = st.lists(
    st.one_of(
        st.lists(_attribute(), min_size=1, max_size=1),  # the usual shape, read directly
        st.lists(_attribute(), min_size=2, max_size=3, unique_by=lambda a: (a.oid, a.value)),
    ),
    max_size=5,
).map(lambda rdns: x509.Name([x509.RelativeDistinguishedName(r) for r in rdns]))
_general_names = st.lists(
    st.one_of(
        st.builds(x509.DNSName, st.sampled_from(["a.example", "*.b.example", "xn--e1a.test", ""])),
        st.builds(
            x509.UniformResourceIdentifier,
            st.sampled_from(["spiffe://t/a", "SPIFFE://t/b", "https://x/y", "urn:x"]),
        ),
        st.builds(x509.RFC822Name, st.sampled_from(["a@b.example", "c@d"])),
        st.builds(
            x509.IPAddress,
            st.sampled_from(
                [
                    ipaddress.ip_address("10.1.2.3"),
                    ipaddress.ip_address("::1"),
                    ipaddress.ip_address("::ffff:10.0.0.1"),
                    ipaddress.ip_network("10.0.0.0/8"),
                    ipaddress.ip_network("fd00::/8"),
                ]
            ),
        ),
        st.builds(x509.RegisteredID, st.just(x509.ObjectIdentifier("1.2.3.4"))),
        st.builds(x509.OtherName, st.just(x509.ObjectIdentifier("1.2.3.5")), st.just(b"\x05\x00")),
        st.builds(
            x509.DirectoryName,
            st.just(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dir")])),
        ),
    ),
    max_size=6,
)


@_SETTINGS
@given(subject=_names, sans=_general_names)
def test_builder_certificates_identical(subject: x509.Name, sans: list[x509.GeneralName]) -> None:
    try:
        der = _cert(subject, sans)
    except ValueError:  # a value its string type cannot hold (the builder checks)
        assume(False)
        raise
    _same(der)


# --- names built byte by byte ----------------------------------------------------------------

_RAW_TAGS = [12, 18, 19, 20, 22, 26, 28, 30, 3, 4, 2, 5, 0x2C, 0x80, 0x16, 23, 24, 1]
_RAW_OIDS = [
    bytes.fromhex("550403"),  # CN
    bytes.fromhex("55040a"),  # O
    bytes.fromhex("55040b"),  # OU
    bytes.fromhex("550406"),  # C
    bytes.fromhex("2a864886f70d010901"),  # emailAddress
    bytes.fromhex("0992268993f22c640119"),  # DC
    bytes.fromhex("2a0304"),  # 1.2.3.4, unknown
    bytes.fromhex("5504ff"),  # not a valid OID encoding (truncated arc)
    bytes.fromhex("558003"),  # non-minimal arc
    b"",
]
_VALUES = st.one_of(
    _TEXT.map(lambda t: t.encode("utf-8")),
    st.binary(max_size=8),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00\x00\x00a"]),
)


@st.composite
def _raw_attribute(draw: st.DrawFn) -> bytes:
    oid = draw(st.sampled_from(_RAW_OIDS))
    tag = draw(st.sampled_from(_RAW_TAGS))
    value = draw(_VALUES)
    extra = draw(st.sampled_from([b"", b"", b"", b"\x05\x00"]))
    return tlv(0x30, tlv(0x06, oid) + tlv(tag, value) + extra)


_raw_names = st.lists(
    st.lists(_raw_attribute(), max_size=2).map(lambda atvs: tlv(0x31, b"".join(atvs))),
    max_size=4,
).map(lambda rdns: tlv(0x30, b"".join(rdns)))
_BASE = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "base")]), [x509.DNSName("a")])


@_SETTINGS
@given(subject=_raw_names)
def test_forged_subjects_identical_or_refused_alike(subject: bytes) -> None:
    _same(_with_subject(_BASE, subject))


@pytest.mark.parametrize(
    "subject",
    [
        tlv(0x30, tlv(0x31, b"")),  # an empty RDN
        tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, bytes.fromhex("550403")) + tlv(12, b"\xff")))),
        tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, bytes.fromhex("550403")) + tlv(0x1E, b"\x00")))),
        tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x06, bytes.fromhex("550403")) + tlv(12, b"a")))),
        tlv(0x30, b""),
    ],
)
def test_malformed_subjects_refused_with_the_same_code(subject: bytes) -> None:
    _same(_with_subject(_BASE, subject))


def test_ordinary_certificates_take_the_direct_reading() -> None:
    """The direct reading must actually be used, or the differential proves nothing."""
    for name in (
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Zürich, "AG"'),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, " ops "),
                x509.NameAttribute(NameOID.COMMON_NAME, "#client+1;<>\\"),
            ]
        ),
        x509.Name([x509.NameAttribute(x509.ObjectIdentifier("2.5.4.97"), "VATDE-123")]),
        x509.Name([]),
    ):
        der = _cert(name, [x509.DNSName("a.example"), x509.IPAddress(ipaddress.ip_address("::1"))])
        cert = x509.load_der_x509_certificate(der)
        direct = _identity._direct(cert, (), "tls", der, x509.load_der_x509_certificate(der))
        assert direct is not None
        assert direct.subject == name.rfc4514_string()
        _same(der)


@pytest.mark.parametrize("char", list('\\"+,;<>\x00# =é\U0001f600'))
@pytest.mark.parametrize("where", ["start", "middle", "end", "alone"])
def test_every_special_character_is_escaped_alike(char: str, where: str) -> None:
    value = {"start": char + "ab", "middle": "a" + char + "b", "end": "ab" + char, "alone": char}
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, value[where]),
            x509.NameAttribute(NameOID.COMMON_NAME, value[where] + value[where]),
        ]
    )
    der = _cert(name)
    cert = x509.load_der_x509_certificate(der)
    direct = _identity._direct(cert, (), "tls", der, cert)
    if value[where] == " ":  # left to cryptography's own text (see the test below)
        assert direct is None
    else:
        assert direct is not None
    got = _same(der)
    assert got[0]["subject"] == name.rfc4514_string()  # type: ignore[index]


def test_a_value_that_is_one_space_is_left_to_cryptographys_reading() -> None:
    """cryptography 45 writes an attribute value of one space as ``\\\\ `` (escaped twice),
    later releases as ``\\ ``: the DER reading declines such a subject, so the identity's text
    is the installed release's own, whichever it is."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, " "),
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        ]
    )
    raw = name.public_bytes()
    assert _identity._subject(raw, 0, len(raw)) is None
    spaced = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, " a ")]).public_bytes()
    assert _identity._subject(spaced, 0, len(spaced)) is not None  # read directly as before
