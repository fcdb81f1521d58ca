"""Names in certificates read as their standards read them.

A dNSName is a host name in RFC 1034's preferred syntax, a uniformResourceIdentifier an
absolute RFC 3986 URI whose host is a host name or an address, an rfc822Name an RFC 5321
Mailbox (RFC 5280 4.2.1.6). A SAN that is none of these matches no allow-list entry, and an
entry that could only match such a SAN is refused at configuration.
"""

from __future__ import annotations

import base64
import time
import tracemalloc

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID
from hypothesis import given, settings
from hypothesis import strategies as st

from _x509_forge import tlv
from mtlsauth import (
    CertificateInvalid,
    ClientIdentity,
    ForwardedCert,
    MTLSAuthError,
    Policy,
    PolicyDenied,
    Presented,
    Verifier,
)
from mtlsauth._forwarded._verified import identity_from_gcp
from mtlsauth._identity import identity_from_certificate, is_spiffe_id, spiffe_id_of
from mtlsauth._leafder import read_leaf
from mtlsauth._names import is_host_name, is_mail_domain, is_uri
from mtlsauth.testing import CA

PROXY = "10.0.0.5"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA(organization="Names In Certificates")


def _identity_of(cert: x509.Certificate) -> ClientIdentity:
    raw = cert.public_bytes(Encoding.DER)
    parsed = identity_from_certificate(cert)
    assert identity_from_certificate(cert, der=raw, facts=read_leaf(raw)) == parsed
    return parsed


def _with_san(ca: CA, *general_names: bytes) -> ClientIdentity:
    """A certificate whose SAN holds exactly these GeneralNames, encoded as given."""
    san = x509.UnrecognizedExtension(
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME, tlv(0x30, b"".join(general_names))
    )
    return _identity_of(ca.issue_client_cert(extra_extensions=[(san, False)]).certificate)


def _refused(policy: Policy, identity: ClientIdentity, code: str) -> None:
    with pytest.raises(PolicyDenied) as info:
        policy.check(identity)
    assert info.value.code == code


# -- dNSName --------------------------------------------------------------------------------

_PARENT_253 = ".".join(["a" * 63] * 3) + "." + "b" * 61  # 253 octets: a host name still

_NO_HOST_NAMES = [
    # (presented dNSName, the entry that admitted it)
    ("a b.example.com", "*.example.com"),
    ("a/b.example.com", "*.example.com"),
    ("a@b.example.com", "*.example.com"),
    ("a:b.example.com", "*.example.com"),
    ("a%2e.example.com", "*.example.com"),
    ("evil\x00.example.com", "*.example.com"),
    ("-a.example.com", "*.example.com"),
    ("a-.example.com", "*.example.com"),
    ("xn--.example.com", "*.example.com"),
    ("xn--zz-.example.com", "*.example.com"),
    ("xn--ls8h.example.com", "*.example.com"),
    ("a" * 64 + ".example.com", "*.example.com"),
    ("x." + _PARENT_253, "*." + _PARENT_253),
]


@pytest.mark.parametrize(("presented", "entry"), _NO_HOST_NAMES)
def test_a_dns_name_that_is_no_host_name_matches_no_entry(
    ca: CA, presented: str, entry: str
) -> None:
    """Each was admitted by the wildcard entry: ``a/b.example.com`` is host ``a`` in a URL,
    ``evil\\0.example.com`` is ``evil`` to C, ``xn--zz-`` has no Unicode form."""
    identity = _with_san(ca, tlv(0x82, presented.encode("ascii")))
    assert identity.dns_names == (presented,)  # the identity still says what the SAN says
    _refused(Policy(dns_names=[entry]), identity, "dns_name_not_allowed")


@pytest.mark.parametrize(
    ("presented", "entries"),
    [
        ("API.Example.COM", ["api.example.com", "*.example.com"]),
        ("api.example.com.", ["api.example.com", "*.example.com", "API.example.com."]),
        ("a_b.example.com", ["a_b.example.com", "*.example.com"]),
        ("xn--bcher-kva.example", ["xn--bcher-kva.example", "*.example"]),
        ("xn--fa-hia.de", ["xn--fa-hia.de"]),
        ("123abc.example.com", ["*.example.com"]),
        ("localhost", ["localhost"]),
        ("x." + _PARENT_253[2:], ["*." + _PARENT_253[2:]]),
    ],
)
def test_host_names_and_their_equivalent_spellings_still_match(
    ca: CA, presented: str, entries: list[str]
) -> None:
    identity = _with_san(ca, tlv(0x82, presented.encode("ascii")))
    for entry in entries:
        Policy(dns_names=[entry]).check(identity)


@pytest.mark.parametrize(
    "entry",
    [
        "a..example.com",
        ".example.com",
        "a b.example.com",
        "a/b.example.com",
        "-a.example.com",
        "xn--zz-.example.com",
        "*.xn--.example",
        "a" * 64 + ".example.com",
        "example.123",
        "x." + _PARENT_253,
    ],
)
def test_a_dns_entry_that_is_no_host_name_is_refused_at_configuration(entry: str) -> None:
    with pytest.raises(ValueError, match="is not a DNS name"):
        Policy(dns_names=[entry])


def test_an_ip_address_in_dns_names_is_pointed_to_ip_addresses() -> None:
    with pytest.raises(ValueError, match="belongs in ip_addresses"):
        Policy(dns_names=["10.0.0.1"])


# -- uniformResourceIdentifier --------------------------------------------------------------

_NO_URIS = [
    # (presented URI SAN, the entry that admitted it)
    ("https://good.example/x y", "https://good.example/*"),
    ("https://good.example/x\x00y", "https://good.example/*"),
    ("https://good.example/<x>", "https://good.example/*"),
    ('https://good.example/x"y', "https://good.example/*"),
    ("https://good.example/x\\y", "https://good.example/*"),
    ("https://good.example/%zz", "https://good.example/*"),
    ("https://good.example/a#b#c", "https://good.example/*"),
    ("https://good.example/[x]", "https://good.example/*"),
    ("https://good.example/x\ty", "https://good.example/*"),
    ("urn:x:a b", "urn:x:a"),
]


@pytest.mark.parametrize(("presented", "entry"), _NO_URIS)
def test_a_uri_that_is_no_uri_matches_no_entry(ca: CA, presented: str, entry: str) -> None:
    identity = _with_san(ca, tlv(0x86, presented.encode("ascii")))
    assert identity.uris == (presented,)
    if entry.endswith("*"):
        _refused(Policy(uris=[entry]), identity, "uri_not_allowed")
    else:
        with pytest.raises(ValueError, match="is not a URI"):
            Policy(uris=[presented])


@pytest.mark.parametrize(
    "entry",
    [
        "https://%67ood.example/*",  # a percent-encoded host: good.example to some, not to us
        "https:///*",  # no host: WHATWG reads https:///evil.example/ as host evil.example
        "https:///good.example/x",
        "https://evil.example\\good.example/*",
        "https:\\\\good.example/*",
        "https://a..example/*",
        "https://a b.example/*",
        "https://good.example:44x/*",
        "https://a@b@good.example/*",
        "https://[::1%25eth0]/*",
        "https://[v1.x]/*",
        "https://01.2.3.4/*",
        "ht!tps://good.example/*",
        "1https://good.example/*",
        "https://good.example/%zz",
        "urn:",
    ],
)
def test_a_uri_entry_that_is_no_uri_is_refused_at_configuration(entry: str) -> None:
    with pytest.raises(ValueError, match="is not a URI"):
        Policy(uris=[entry])


@pytest.mark.parametrize(
    ("presented", "entry"),
    [
        ("HTTPS://GOOD.example/x?a=1#f", "https://good.example/*"),
        ("https://good.example./x", "https://good.example./*"),
        ("https://good.example:8443/x", "https://good.example:8443/*"),
        ("https://good.example:/x", "https://good.example:/*"),
        ("https://[2001:db8::1]:8443/x", "https://[2001:db8::1]:8443/*"),
        ("https://192.0.2.1/x", "https://192.0.2.1/*"),
        ("https://a_b.example/x%2Fy", "https://a_b.example/*"),
        ("https://ops@good.example/x", "https://ops@good.example/*"),
        (
            "urn:uuid:4f6b1c2e-0d5b-4c7e-9a1f-000000000001",
            "urn:uuid:4f6b1c2e-0d5b-4c7e-9a1f-000000000001",
        ),
        ("mailto:alice@example.com", "mailto:alice@example.com"),
        ("file:///etc/client", "file:///etc/*"),
        ("spiffe://example.org/ns/a", "spiffe://example.org/*"),
    ],
)
def test_uris_that_stay_uris(ca: CA, presented: str, entry: str) -> None:
    identity = _with_san(ca, tlv(0x86, presented.encode("ascii")))
    Policy(uris=[entry]).check(identity)


# -- rfc822Name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "@a..example.com",
        "alice@.example.com",
        "@evil.test%example.com",
        "@example.com:25",
        "@-x.example.com",
        "@xn--zz-.example.com",
        "alice@[10.0.0.01]",
        "alice@[IPv6:fe80::1%eth0]",
        "alice@[example.com]",
    ],
)
def test_an_email_entry_whose_domain_is_none_is_refused_at_configuration(entry: str) -> None:
    with pytest.raises(ValueError, match="the domain is not a DNS host name"):
        Policy(emails=[entry])


@pytest.mark.parametrize(
    ("presented", "entries"),
    [
        ("alice@EXAMPLE.com", ["alice@example.com", "@example.com"]),
        ("alice@example.com.", ["alice@example.com", "@example.com"]),
        ('"alice"@example.com', ['"alice"@example.com', "@example.com"]),
        ("alice@[192.0.2.1]", ["alice@[192.0.2.1]", "@[192.0.2.1]"]),
        ("alice@[IPv6:2001:db8::1]", ["alice@[ipv6:2001:db8::1]", "@[IPv6:2001:db8::1]"]),
    ],
)
def test_mailboxes_still_match(ca: CA, presented: str, entries: list[str]) -> None:
    identity = _with_san(ca, tlv(0x81, presented.encode("ascii")))
    for entry in entries:
        Policy(emails=[entry]).check(identity)


def test_a_mailbox_whose_domain_is_none_matches_no_entry(ca: CA) -> None:
    # The same rule on the certificate's side: the domain is read as the entry's is.
    identity = _with_san(ca, tlv(0x81, b"alice@a..example.com"))
    policy = Policy(emails=["@example.com"])
    _refused(policy, identity, "email_not_allowed")


# -- iPAddress ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 5, 15, 17, 33])
def test_an_ip_address_of_another_length_is_a_malformed_certificate(ca: CA, length: int) -> None:
    with pytest.raises(CertificateInvalid) as info:
        _with_san(ca, tlv(0x87, bytes(range(1, length + 1))))
    assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize(
    "octets", [bytes([10, 0, 0, 0, 255, 0, 0, 0]), bytes(16) + bytes([255] * 8 + [0] * 8)]
)
def test_an_address_with_a_mask_is_no_ip_address(ca: CA, octets: bytes) -> None:
    # Eight or 32 octets are a subnet (a name constraint's form): no address of the client.
    identity = _with_san(ca, tlv(0x87, octets))
    assert identity.ip_addresses == ()
    _refused(Policy(ip_addresses=["0.0.0.0/0", "::/0"]), identity, "ip_address_not_allowed")


# -- the same names from a proxy that verified the certificate ------------------------------


def _xfcc(value: str) -> ClientIdentity:
    fc = ForwardedCert(
        header="X-Forwarded-Client-Cert",
        encoding="xfcc",
        trusted_proxies=[PROXY],
        verified_by_proxy=True,
    )
    extracted = fc.extract(Presented(peer=PROXY, headers=(("x-forwarded-client-cert", value),)))
    assert extracted is not None
    identity = extracted.decode()
    assert isinstance(identity, ClientIdentity)
    return identity


@pytest.mark.parametrize(
    ("field", "presented", "rule", "entry", "code"),
    [
        ("DNS", "a/b.example.com", "dns_names", "*.example.com", "dns_name_not_allowed"),
        ("DNS", "xn--zz-.example.com", "dns_names", "*.example.com", "dns_name_not_allowed"),
        ("URI", "https://good.example/<x>", "uris", "https://good.example/*", "uri_not_allowed"),
    ],
)
def test_names_a_proxy_reports_are_held_to_the_same_rules(
    field: str, presented: str, rule: str, entry: str, code: str
) -> None:
    identity = _xfcc(f'By=spiffe://td/gw;Subject="CN=alice";{field}={presented}')
    _refused(Policy(**{rule: [entry]}), identity, code)  # type: ignore[arg-type]
    good = presented.replace("a/b", "ab").replace("xn--zz-", "zz").replace("<x>", "x")
    Policy(**{rule: [entry]}).check(  # type: ignore[arg-type]
        _xfcc(f'By=spiffe://td/gw;Subject="CN=alice";{field}={good}')
    )


@pytest.mark.parametrize("presented", ["a;b.example.com", "a,b.example.com", "a b.example.com"])
def test_quoted_xfcc_dns_values_are_held_to_the_host_name_rule(presented: str) -> None:
    # A quoted XFCC value may carry ';' and ',': each was admitted by the wildcard entry.
    # Envoy never quotes a DNS value, so a quoted one is refused before any rule now.
    with pytest.raises(CertificateInvalid) as info:
        _xfcc(f'By=spiffe://td/gw;Subject="CN=alice";DNS="{presented}"')
    assert info.value.code == "certificate_malformed"


def test_gcp_reported_names_are_held_to_the_same_rules() -> None:
    def fields(dns: str, uri: str) -> dict[str, str]:
        encode = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
        return {"chain_verified": "true", "dns": encode(dns), "uri": encode(uri)}

    bad = identity_from_gcp(fields("a/b.example.com", "https://good.example/<x>"), "header:x")
    _refused(Policy(dns_names=["*.example.com"]), bad, "dns_name_not_allowed")
    _refused(Policy(uris=["https://good.example/*"]), bad, "uri_not_allowed")
    good = identity_from_gcp(fields("ab.example.com", "https://good.example/x"), "header:x")
    Policy(dns_names=["*.example.com"], uris=["https://good.example/*"]).check(good)


@pytest.mark.parametrize(
    ("kind", "names"),
    [
        ("excluded", {"dns_names": ["EVIL.test"]}),
        ("excluded", {"dns_names": ["x.evil.test."]}),
        ("excluded", {"dns_names": ["a/b.evil.test"]}),
        ("excluded", {"dns_names": ["a..evil.test"]}),
        ("excluded", {"dns_names": ["evil.test\x00"]}),
        ("excluded", {"emails": ["a@EVIL.test"]}),
        ("excluded", {"uris": ["https://x.%65vil.test/"]}),
        ("excluded", {"uris": ["https://a@x.evil.test/"]}),
        ("permitted", {"dns_names": ["x.good.test."]}),
        ("permitted", {"dns_names": ["a/b.good.test"]}),
        ("permitted", {"dns_names": ["evil.test\x00.good.test"]}),
    ],
)
def test_name_constraints_refuse_these_spellings_too(
    kind: str, names: dict[str, list[str]]
) -> None:
    root = CA()
    if kind == "excluded":
        excluded = [
            x509.DNSName("evil.test"),
            x509.RFC822Name("evil.test"),
            x509.UniformResourceIdentifier(".evil.test"),
        ]
        constraints = x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=excluded)
    else:
        permitted = [x509.DNSName("good.test")]
        constraints = x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)
    ca = root.intermediate(name_constraints=constraints)
    verifier = Verifier(trust_store=root.trust_store())
    leaf = ca.issue_client_cert(**names)  # type: ignore[arg-type]
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify([leaf.certificate, ca.certificate])
    assert info.value.code == "untrusted_issuer"
    verifier.verify([ca.issue_client_cert(dns_names=["x.good.test"]).certificate, ca.certificate])


# -- what reading a name costs --------------------------------------------------------------

# A URI that fails only at its end: read with one pattern for the whole URI (an optional
# authority of any characters, then a path), each of its splits between authority and path
# was tried in turn, quadratic work: a 12 000-character one took 4 to 8 s, one near the
# leaf size limit minutes, for one request. Cut at its delimiters first, it takes well under
# a millisecond; the bound below leaves three orders of magnitude of margin.
_LATE_FAILURES = [
    "https://" + "a" * 12_000 + "/\x00",
    "https://" + "a" * 6_000 + "?" + "b" * 6_000 + "\x00",
    "https://" + "a" * 6_000 + "#" + "b" * 6_000 + "#",
]


@pytest.mark.parametrize("presented", _LATE_FAILURES, ids=["authority", "query", "fragment"])
def test_a_long_uri_that_fails_late_is_read_in_linear_time(ca: CA, presented: str) -> None:
    identity = _with_san(ca, tlv(0x86, presented.encode("ascii")))
    policy = Policy(uris=["https://a/*"])
    started = time.process_time()  # this process's CPU: tests beside it do not count
    _refused(policy, identity, "uri_not_allowed")
    assert time.process_time() - started < 2.0


def test_a_long_name_is_judged_without_being_kept() -> None:
    # Memoised by their text, a leaf's 30 KB dNSName or URI (and its host) stayed in memory
    # as keys, thousands of them at once; only names short enough to be real are remembered.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(50):
            host = f"h{i}." + "a." * 10_000 + "example"
            assert not is_host_name(host)
            assert not is_uri(f"https://{host}/x")
            assert is_uri(f"https://example.com/{i}/" + "x" * 20_000)
            del host
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 200_000  # 50 x 60 KB of text were kept: 3 MB


_PIECES = [*"aZ0-_.:/?#@[]%", "%4", "\x00", "\ud800", "\u212a", "xn--", "ipv6:", "::", "//"]


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.lists(
            st.sampled_from(_PIECES),
            max_size=30,
        ).map("".join),
    )
)
def test_the_name_rules_judge_any_text_without_raising(text: str) -> None:
    # Whatever a certificate or a proxy carries, each rule answers True or False.
    for rule in (is_uri, is_host_name, is_mail_domain, is_spiffe_id):
        assert rule(text) in (True, False)
    assert spiffe_id_of((text,)) in (None, text)
