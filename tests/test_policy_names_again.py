"""Names and policies reviewed once more: spellings an attacker's certificate could use."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from mtlsauth import ClientIdentity, Policy, PolicyDenied
from mtlsauth._identity import identity_from_certificate
from mtlsauth._leafder import read_leaf
from mtlsauth.testing import CA


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA(organization="Names Again")


def _identity(ca: CA, **kwargs: object) -> ClientIdentity:
    return _identity_of(ca.issue_client_cert(**kwargs).certificate)  # type: ignore[arg-type]


def _identity_of(cert: x509.Certificate) -> ClientIdentity:
    raw = cert.public_bytes(Encoding.DER)
    parsed = identity_from_certificate(cert)
    assert identity_from_certificate(cert, der=raw, facts=read_leaf(raw)) == parsed
    return parsed


@pytest.mark.parametrize(
    ("entry", "presented"),
    [
        ("urn:foo:bar", "urnf:oo:bar"),
        ("mailto:alice@example.com", "mailtoa:lice@example.com"),
        ("urn:a/*", "ur:na/x"),
    ],
)
def test_uri_without_authority_keeps_its_scheme_colon(ca: CA, entry: str, presented: str) -> None:
    # The scheme's ':' was dropped when normalising a URI without '//': "urnf:oo:bar" and
    # "urn:foo:bar" both became "urnfoo:bar".
    identity = _identity(ca, uris=[presented])
    with pytest.raises(PolicyDenied) as info:
        Policy(uris={entry}).check(identity)
    assert info.value.code == "uri_not_allowed"
    Policy(uris={presented}).check(identity)
    # The scheme still compares case-insensitively.
    Policy(uris={entry[:3].upper() + entry[3:]}).check(
        _identity(ca, uris=[entry.replace("*", "x")])
    )


@pytest.mark.parametrize("entry", ["1f:2", "1:f2", "1f::2e", ":1f2e", "1f2e:", "abc:de"])
def test_deny_serial_bytes_are_two_hex_digits_each(entry: str) -> None:
    # "1f:2" was read as 0x1f2, while whoever wrote it (dropping the zero of 02) meant 0x1f02:
    # the certificate meant passed.
    with pytest.raises(ValueError, match="two digits each"):
        Policy(deny_serials=[entry])


def test_deny_serial_forms_that_stay_accepted(ca: CA) -> None:
    cert = ca.issue_client_cert().certificate
    raw = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8, "big")
    identity = _identity_of(cert)
    for entry in (":".join(f"{b:02x}" for b in raw), f"0x{cert.serial_number:X}"):
        with pytest.raises(PolicyDenied):
            Policy(deny_serials=[entry, "01:02"]).check(identity)
    Policy(deny_serials=["0x1f", "01:02", 7]).check(identity)


def test_bit_string_unique_identifier_is_not_the_text_of_its_hex(ca: CA) -> None:
    # An x500UniqueIdentifier held as the bits 0xabcd was keyed "#abcd", the key of the text
    # "#abcd": a subjects entry naming that text admitted the certificate with the bits.
    def subject(uid: str | bytes) -> x509.Name:
        kind = {"_type": _ASN1Type.BitString} if isinstance(uid, bytes) else {}
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, uid, **kind),  # type: ignore[arg-type]
            ]
        )

    bits = _identity(ca, subject=subject(b"\xab\xcd"))
    text = _identity(ca, subject=subject("#abcd"))
    for entry in (
        "CN=alice,2.5.4.45=\\#abcd",
        'CN=alice,2.5.4.45="#abcd"',
        "/CN=alice/2.5.4.45=#abcd",
    ):
        policy = Policy(subjects=[entry])
        policy.check(text)
        with pytest.raises(PolicyDenied) as info:
            policy.check(bits)
        assert info.value.code == "subject_not_allowed"


@pytest.mark.parametrize("entry", ["https:/*", "HTTPS:/*", "spiffe:/*", "urn:/*"])
def test_a_prefix_a_slash_short_of_the_authority_is_refused(ca: CA, entry: str) -> None:
    # "https:/*" admitted every https URI: "https://evil.test/x" starts with "https:/".
    with pytest.raises(ValueError, match="admits every host") as info:
        Policy(uris=[entry])
    named = entry[:-1] + "/example.org/*"
    assert repr(named) in str(info.value)
    identity = _identity(ca, uris=[named.replace("*", "x")])
    Policy(uris=[named]).check(identity)


@pytest.mark.parametrize("entry", ["urn:x/*", "urn:x:/*", "file:///*", "https://h/*"])
def test_prefixes_below_a_scheme_stay_accepted(entry: str) -> None:
    Policy(uris=[entry])


# -- SPIFFE IDs as the specification and its reference libraries read them ----------------

_NOT_SPIFFE_IDS = [
    # (presented URI SAN, the entry that would have admitted it)
    ("SPIFFE://example.org/ns/prod/sa/api", "spiffe://example.org/ns/prod/sa/api"),
    ("Spiffe://example.org/ns/prod/sa/api", "spiffe://example.org/ns/prod/*"),
    ("spiffe://Example.org/ns/prod/sa/api", "spiffe://example.org/ns/prod/sa/api"),
    ("spiffe://EXAMPLE.ORG/ns/prod/sa/api", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod//sa/api", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/sa/api/", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/sa/%61pi", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/sa/api?x=1", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/sa/api#f", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/sa/a:pi", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/./sa/api", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org/ns/prod/sa/a~pi", "spiffe://example.org/ns/prod/*"),
    ("spiffe://example.org:443/ns/prod/sa/api", "spiffe://example.org/*"),
    ("spiffe://ops@example.org/ns/prod/sa/api", "spiffe://example.org/*"),
]


@pytest.mark.parametrize(("presented", "entry"), _NOT_SPIFFE_IDS)
def test_a_uri_that_is_no_valid_spiffe_id_is_no_spiffe_id(
    ca: CA, presented: str, entry: str
) -> None:
    """go-spiffe and the other reference libraries refuse these as SVIDs (a lower-case
    scheme and trust domain, segments of [A-Za-z0-9._-] that are neither empty, "." nor
    "..", no percent-encoding, query, fragment, port or userinfo). mtlsauth read the scheme
    and trust domain case-insensitively and took the rest as a path, so an entry admitted
    them; such a certificate now has no SPIFFE ID, and ``spiffe_ids`` refuses it."""
    identity = _identity(ca, uris=[presented])
    assert identity.uris == (presented,)
    assert identity.spiffe_id is None
    with pytest.raises(PolicyDenied) as info:
        Policy(spiffe_ids={entry}).check(identity)
    assert info.value.code == "spiffe_id_not_allowed"
    assert info.value.detail == "certificate has no single valid SPIFFE ID"


@pytest.mark.parametrize(
    "presented",
    [
        "spiffe://example.org",
        "spiffe://example.org/ns/prod/sa/api",
        "spiffe://k8s_west-1.example.org/ns/prod/sa/API.v2_x-y",
        "spiffe://example.org/..a/a..",
    ],
)
def test_valid_spiffe_ids_stay_spiffe_ids(ca: CA, presented: str) -> None:
    identity = _identity(ca, uris=[presented])
    assert identity.spiffe_id == presented
    Policy(spiffe_ids={presented}).check(identity)
    domain = presented[9:].split("/")[0]
    if presented != f"spiffe://{domain}":
        Policy(spiffe_ids={f"spiffe://{domain}/*"}).check(identity)


@pytest.mark.parametrize(
    "entry",
    [
        "spiffe://example.org:8443/ns/*",
        "spiffe://ops@example.org/*",
        "spiffe://example.org/ns/../admin",
        "spiffe://example.org/ns//x",
        "spiffe://example.org/ns/x/",
        "spiffe://example.org/ns/%78",
        "spiffe://example.org/ns/x?y",
        "spiffe://exa mple.org/x",
        "spiffe://example.org//*",
    ],
)
def test_an_entry_that_is_no_spiffe_id_is_refused_at_configuration(entry: str) -> None:
    with pytest.raises(ValueError, match=r"is not a SPIFFE ID|is not a URI"):
        Policy(spiffe_ids={entry})


def test_entries_read_scheme_and_trust_domain_case_insensitively(ca: CA) -> None:
    identity = _identity(ca, uris=["spiffe://example.org/ns/prod/sa/api"])
    Policy(spiffe_ids={"SPIFFE://Example.ORG/ns/prod/sa/api"}).check(identity)
    Policy(spiffe_ids={"Spiffe://EXAMPLE.org/ns/prod/*"}).check(identity)
    with pytest.raises(PolicyDenied):  # the path compares exactly
        Policy(spiffe_ids={"spiffe://example.org/NS/prod/*"}).check(identity)
