"""ForwardedCert: every encoding and sentinel, every preset, the trust gate, XFCC grammar."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import quote, unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsauth import (
    CertificateInvalid,
    ForwardedCert,
    MTLSAuthError,
    Presented,
    UntrustedForwarder,
    Verifier,
)
from mtlsauth._forwarded._presets import PRESETS
from mtlsauth._forwarded._trust import UNIX_PEER
from mtlsauth._identity import ClientIdentity
from mtlsauth.testing import CA, encode_forwarded
from mtlsauth.testing._encode import der_to_pem

PROXY = "10.0.0.5"
TRUSTED = ["10.0.0.0/24", "2001:db8::/32", "127.0.0.1"]


@pytest.fixture(scope="module")
def pki():
    root = CA(organization="fwd-test")
    inter = root.intermediate()
    # RSA: its DER base64 reliably contains '+' and '/', which the encodings must keep
    client = inter.issue_client_cert(
        common_name="alice",
        organization="Acme, Inc.",
        uris=["spiffe://example.org/ns/a/sa/b"],
        dns_names=["client.example"],
        key_type="rsa",
    )
    return root, inter, client


@pytest.fixture(scope="module")
def chain(pki):
    return pki[2].chain_der


def _fc(encoding="url-pem", header="X-Cert", **kw):
    kw.setdefault("trusted_proxies", TRUSTED)
    return ForwardedCert(header=header, encoding=encoding, **kw)


def _req(*headers, peer=PROXY):
    return Presented(peer=peer, headers=tuple((k.lower(), v) for k, v in headers))


def _decode(fc, *headers, peer=PROXY):
    value = fc.extract(_req(*headers, peer=peer))
    assert value is not None
    return value.decode()


# -- encodings ---------------------------------------------------------------------------------
def _pem(der):
    return der_to_pem(der)


@pytest.mark.parametrize(
    ("encoding", "make", "n"),
    [
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe=""), 1, id="nginx escaped"),
        pytest.param("url-pem", lambda c: quote("".join(map(_pem, c)), safe="+=/"), 2, id="aws raw +=/"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("%2B", "%2b"), 1, id="lower-case hex"),
        pytest.param("pem", lambda c: _pem(c[0]).replace("\n", " "), 1, id="apache spaces + trailing space"),
        pytest.param("pem", lambda c: _pem(c[0]).rstrip("\n").replace("\n", "\n\t"), 1, id="nginx tab folds"),
        pytest.param("pem", lambda c: _pem(c[0]).rstrip("\n").replace("\n", " "), 1, id="h11 unfolded to spaces"),
        pytest.param("pem", lambda c: _pem(c[0]), 1, id="real newlines (mod_wsgi)"),
        pytest.param("pem", lambda c: " ".join(_pem(d).replace("\n", " ") for d in c), 2, id="two pems"),
        pytest.param("der-base64", lambda c: base64.b64encode(c[0]).decode(), 1, id="haproxy leaf"),
        pytest.param("der-base64", lambda c: base64.b64encode(b"".join(c)).decode(), 2, id="concatenated DER"),
        pytest.param("traefik", lambda c: ",".join(base64.b64encode(d).decode() for d in c), 2, id="traefik raw"),
        pytest.param("traefik", lambda c: ",".join(quote(base64.b64encode(d).decode(), safe="") for d in c), 2, id="traefik escaped per certificate (1.7-2.9.1)"),
        pytest.param("traefik", lambda c: quote(",".join(base64.b64encode(d).decode() for d in c), safe=""), 2, id="traefik escaped whole value"),
        pytest.param("traefik", lambda c: base64.b64encode(c[0]).decode(), 1, id="traefik leaf only"),
        pytest.param("rfc9440", lambda c: ":" + base64.b64encode(c[0]).decode() + ":", 1, id="rfc9440"),
        pytest.param("rfc9440", lambda c: ":" + base64.b64encode(c[0]).decode().rstrip("=") + ":", 1, id="rfc9440 missing padding"),
        pytest.param("rfc9440", lambda c: " :" + base64.b64encode(c[0]).decode() + ":;a=1;b", 1, id="rfc9440 parameters"),
    ],
)  # fmt: skip
def test_encodings_decode_exactly(encoding, make, n, chain):
    ders = _decode(_fc(encoding), ("X-Cert", make(chain)))
    assert ders == tuple(chain[:n])


def test_aws_plus_is_never_a_space(chain):
    value = quote(_pem(chain[0]), safe="+=/")
    assert "+" in value  # the RSA fixture guarantees a raw '+'
    assert _decode(_fc(), ("X-Cert", value)) == (chain[0],)


@pytest.mark.parametrize(
    ("encoding", "value"),
    [
        pytest.param("url-pem", "-----BEGIN%20CERTIFICATE-----%0AMII%zz", id="bad percent escape"),
        pytest.param("url-pem", "-----BEGIN%20CERTIFICATE-----%0", id="truncated escape"),
        pytest.param("url-pem", "%C3%A9", id="escape decodes to non-ascii"),
        pytest.param("url-pem", "héllo", id="non-ascii"),
        pytest.param("url-pem", "not a cert", id="no pem"),
        pytest.param("pem", "-----BEGIN CERTIFICATE----- !!!! -----END CERTIFICATE-----", id="pem body not base64"),
        pytest.param("pem", "-----BEGIN PRIVATE KEY----- AAAA -----END PRIVATE KEY-----", id="private key"),
        pytest.param("der-base64", "MII*", id="base64 alphabet"),
        pytest.param("der-base64", "AAAA", id="not DER"),
        pytest.param("traefik", "MIIB,", id="traefik empty item"),
        pytest.param("traefik", "%ZZ", id="traefik bad escape"),
        pytest.param("rfc9440", "MIIB", id="rfc9440 no colons"),
        pytest.param("rfc9440", ":MII*:", id="rfc9440 alphabet"),
        pytest.param("rfc9440", ":AAAA", id="rfc9440 unterminated"),
        pytest.param("rfc9440", ":AAAA:junk", id="rfc9440 trailing"),
        pytest.param("rfc9440", ":A=AA:", id="rfc9440 inner padding"),
    ],
)  # fmt: skip
def test_malformed_values(encoding, value):
    fc = _fc(encoding)
    with pytest.raises(CertificateInvalid) as info:
        _decode(fc, ("X-Cert", value))
    assert info.value.code == "certificate_malformed"


def _odd_pad_bits(der: bytes) -> str:
    """The base64 of ``der`` with one unused padding bit set: it decodes to the same bytes."""
    text = base64.b64encode(der).decode()
    body = text.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    odd = body[:-1] + alphabet[alphabet.index(body[-1]) ^ 1] + text[len(body) :]
    assert odd != text
    assert base64.b64decode(odd) == der
    return odd


def _pem_of(b64: str) -> str:
    lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    ("encoding", "make", "accepted"),
    [
        pytest.param("url-pem", lambda b: quote(_pem_of(b), safe=""), False, id="url-pem"),
        pytest.param("url-pem", lambda b: quote(_pem_of(b), safe="+=/"), False, id="url-pem raw +=/"),
        pytest.param("pem", lambda b: _pem_of(b).replace("\n", " "), False, id="pem"),
        pytest.param("xfcc", lambda b: 'Cert="' + quote(_pem_of(b), safe="") + '"', False, id="xfcc"),
        pytest.param("der-base64", lambda b: b, False, id="der-base64"),
        pytest.param("traefik", lambda b: b, False, id="traefik"),
        # RFC 8941 4.2.7: parsers of a byte sequence SHOULD NOT fail on non-zero pad bits.
        pytest.param("rfc9440", lambda b: f":{b}:", True, id="rfc9440 tolerates"),
    ],
)  # fmt: skip
def test_non_zero_padding_bits_are_another_spelling_and_refused(encoding, make, accepted, pki):
    # One certificate, one spelling: a proxy's encoder always writes zero padding bits, and
    # every other spelling would be a new cache key for the same certificate.
    issued = (pki[1].issue_client_cert(common_name=f"pad{i}").der for i in range(30))
    der = next(d for d in issued if len(d) % 3)
    value = make(_odd_pad_bits(der))
    if accepted:
        assert _decode(_fc(encoding), ("X-Cert", value)) == (der,)
        return
    with pytest.raises(CertificateInvalid) as info:
        _decode(_fc(encoding), ("X-Cert", value))
    assert info.value.code == "certificate_malformed"


def test_trust_bundle_files_keep_reading_non_zero_padding_bits(tmp_path):
    # Files are read as OpenSSL reads them: only request input is held to one spelling.
    # A root whose DER needs padding (ECDSA signatures vary in length: one in three does not).
    roots = (CA(common_name=f"pad root {i}").certificate for i in range(30))
    root_der = next(d for d in (r.public_bytes(Encoding.DER) for r in roots) if len(d) % 3)
    path = tmp_path / "bundle.pem"
    path.write_text(_pem_of(_odd_pad_bits(root_der)))
    from mtlsauth import TrustStore

    assert TrustStore.from_pem_file(path).certificates[0].public_bytes(Encoding.DER) == root_der


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty (HAProxy)"),
        pytest.param("   ", id="blank"),
        pytest.param("(null)", id="Apache (null)"),
        pytest.param("{http.request.tls.client.certificate_der_base64}", id="Caddy placeholder"),
        pytest.param("{http.request.tls.client.certificate_pem}", id="Caddy pem placeholder"),
    ],
)
@pytest.mark.parametrize("encoding", ["url-pem", "pem", "der-base64", "traefik", "xfcc", "rfc9440"])
def test_no_certificate_sentinels(encoding, value):
    fc = _fc(encoding)
    assert fc.extract(_req(("X-Cert", value))) is None
    # a sentinel from an untrusted peer is still just "no certificate"
    assert fc.extract(_req(("X-Cert", value), peer="192.0.2.1")) is None


def test_header_absent():
    assert _fc().extract(_req(("Other", "x"))) is None


# Every ASCII character ``str.strip`` removes: ``is_absent`` reads a value made of them, or one
# that only they separate from a sentinel, as "no certificate".
_ASCII_SPACE = "".join(chr(c) for c in range(128) if chr(c).isspace())


@pytest.mark.parametrize("lead", list(_ASCII_SPACE))
@pytest.mark.parametrize("rest", ["", "(null)", "{http.request.tls.client.certificate_pem}"])
@pytest.mark.parametrize("encoding", ["url-pem", "pem", "der-base64", "traefik", "rfc9440"])
def test_sentinels_after_any_leading_space_are_no_certificate(encoding, lead, rest):
    """The hot path (one plain header: ``plain_key``) and the general one decide alike: a
    sentinel behind a form feed or a line break is still no certificate, not a malformed one."""
    fc = _fc(encoding)
    value = lead + rest
    assert fc.plain_key(value, PROXY) is None
    assert fc.plain_key(value.encode("ascii"), PROXY) is None
    assert fc.extract(_req(("X-Cert", value))) is None


def _outcome_of(fc, value, *, hot):
    from unittest import mock

    patch = mock.patch.object(ForwardedCert, "plain_key", return_value=None)
    try:
        if not hot:
            patch.start()
        got = fc.extract(_req(("X-Cert", value)))
        if got is None:
            return None
        try:
            decoded = got.decode()
        except MTLSAuthError as exc:
            return ("decode", type(exc).__name__, exc.code)
        return (got.source, got.key, decoded)
    except MTLSAuthError as exc:
        return ("extract", type(exc).__name__, exc.code)
    finally:
        if not hot:
            patch.stop()


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(
        st.sampled_from(
            [
                *_ASCII_SPACE,
                "(null)",
                "(",
                "{http.request.tls.client.",
                "}",
                ",",
                "a",
                "%0A",
                "\x85",
            ]
        ),
        max_size=5,
    ),
    encoding=st.sampled_from(["url-pem", "pem", "der-base64", "traefik", "rfc9440"]),
)
def test_the_hot_path_decides_as_the_general_path(parts, encoding):
    fc = _fc(encoding)
    value = "".join(parts)
    assert _outcome_of(fc, value, hot=True) == _outcome_of(fc, value, hot=False)


# -- single-valued headers, folding, size, counts ----------------------------------------
@pytest.mark.parametrize("encoding", ["url-pem", "pem", "der-base64", "traefik", "rfc9440"])
def test_two_copies_are_malformed(encoding, chain):
    value = encode_forwarded(encoding, chain[:1])[0][1]
    fc = _fc(encoding)
    with pytest.raises(CertificateInvalid, match="copies"):
        fc.extract(_req(("X-Cert", value), ("x-cert", value)))


@pytest.mark.parametrize("encoding", ["url-pem", "pem", "der-base64", "rfc9440"])
def test_wsgi_folded_comma_is_malformed(encoding, chain):
    value = encode_forwarded(encoding, chain[:1])[0][1]
    with pytest.raises(CertificateInvalid, match="comma"):
        _fc(encoding).extract(_req(("X-Cert", f"{value}, {value}")))


def test_size_cap(chain):
    value = encode_forwarded("url-pem", chain)[0][1]
    fc = _fc(max_size=len(value) - 1)
    with pytest.raises(CertificateInvalid, match="exceed"):
        fc.extract(_req(("X-Cert", value)))
    assert _fc(max_size=len(value)).extract(_req(("X-Cert", value))) is not None


@pytest.mark.parametrize(("count", "ok"), [(16, True), (17, False)])
def test_chain_count_cap(chain, count, ok):
    value = base64.b64encode(chain[0] * count).decode()
    fc = _fc("der-base64", max_size=1 << 20)
    if ok:
        assert len(_decode(fc, ("X-Cert", value))) == count
    else:
        with pytest.raises(CertificateInvalid):
            _decode(fc, ("X-Cert", value))


# -- chain headers ----------------------------------------------------------------------------
def test_apache_chain_headers(chain):
    pairs = encode_forwarded("apache", chain)
    assert [v for _, v in pairs][2:] == ["(null)", "(null)"]
    fc = ForwardedCert.preset("apache", trusted_proxies=TRUSTED)
    assert _decode(fc, *pairs) == tuple(chain)


def test_haproxy_chain_header_and_empty_chain(chain):
    fc = ForwardedCert.preset("haproxy", trusted_proxies=TRUSTED)
    assert _decode(fc, *encode_forwarded("haproxy", chain)) == tuple(chain)
    assert _decode(fc, *encode_forwarded("haproxy", chain[:1])) == tuple(chain[:1])


def test_chain_header_repeating_the_leaf_is_tolerated(chain):
    fc = ForwardedCert.preset("haproxy", trusted_proxies=TRUSTED)
    both = base64.b64encode(b"".join(chain)).decode()
    leaf = base64.b64encode(chain[0]).decode()
    assert _decode(fc, ("X-SSL-Client-Cert", leaf), ("X-SSL-Client-Chain", both)) == tuple(chain)


def test_rfc9440_chain_list_and_repeated_lines(chain, pki):
    root = pki[0].certificate.public_bytes(Encoding.DER)
    fc = ForwardedCert.preset("rfc9440", trusted_proxies=TRUSTED)
    leaf = ":" + base64.b64encode(chain[0]).decode() + ":"
    items = [":" + base64.b64encode(d).decode() + ":" for d in (chain[1], root)]
    one_line = _decode(fc, ("Client-Cert", leaf), ("Client-Cert-Chain", " ,  ".join(items)))
    two_lines = _decode(
        fc, ("Client-Cert", leaf), ("Client-Cert-Chain", items[0]), ("Client-Cert-Chain", items[1])
    )
    assert one_line == two_lines == (chain[0], chain[1], root)
    with pytest.raises(CertificateInvalid):
        _decode(fc, ("Client-Cert", leaf), ("Client-Cert-Chain", items[0] + ","))


# -- XFCC --------------------------------------------------------------------------------------
def _xfcc(chain, **kw):
    return encode_forwarded("envoy", chain)[0][1] if not kw else kw["value"]


@pytest.mark.parametrize(
    ("suffix", "n"),
    [
        pytest.param("", 2, id="element as Envoy writes it"),
        pytest.param(";", 2, id="trailing semicolon (Azure)"),
    ],
)
def test_xfcc_decodes(chain, suffix, n):
    fc = _fc("xfcc")
    assert _decode(fc, ("X-Cert", _xfcc(chain) + suffix)) == tuple(chain[:n])


def test_xfcc_last_element_wins_and_index_selects(chain, pki):
    other = CA().issue_client_cert(common_name="mallory")
    forged = encode_forwarded("envoy", other.chain_der)[0][1]
    value = forged + "," + _xfcc(chain)
    assert _decode(_fc("xfcc"), ("X-Cert", value))[0] == chain[0]
    assert _decode(_fc("xfcc", xfcc_element=0), ("X-Cert", value))[0] == other.der
    # two header lines are one list: the last element is still the nearest proxy's
    two = _decode(_fc("xfcc"), ("X-Cert", forged), ("X-Cert", _xfcc(chain)))
    assert two[0] == chain[0]
    with pytest.raises(CertificateInvalid, match="fewer"):
        _decode(_fc("xfcc", xfcc_element=5), ("X-Cert", value))


def test_xfcc_grammar_quotes_escapes_and_equals(chain):
    cert = quote(_pem(chain[0]), safe="")
    value = (
        'By=spiffe://td/ns/x/sa/y?a=b;Hash=' + hashlib.sha256(chain[0]).hexdigest()
        + ';Subject="CN=client \\"one\\",O=Acme\\, Inc.";URI=spiffe://td/ns/a/sa/b?x=1;'
        'DNS=a.example;DNS=b.example;Cert="' + cert + '";newkey="a,b;c"'
    )  # fmt: skip
    assert _decode(_fc("xfcc"), ("X-Cert", value)) == (chain[0],)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param('[{"Hash":"x"}]', id="json list"),
        pytest.param('{"Hash":"x"}', id="json object"),
        pytest.param('Cert="abc', id="unterminated quote"),
        pytest.param('Cert="abc"x', id="text after quote"),
        pytest.param("Hash", id="no equals"),
        pytest.param("=x", id="empty key"),
        pytest.param("Hash=a,,Hash=b", id="empty element"),
        pytest.param('Hash=a"b', id="stray quote"),
        pytest.param("Hash=a;Hash=b", id="repeated Hash"),
        pytest.param('Cert="x";Cert="y"', id="repeated Cert"),
    ],
)
def test_xfcc_grammar_errors(value):
    with pytest.raises(CertificateInvalid) as info:
        _fc("xfcc").extract(_req(("X-Cert", value)))
    assert info.value.code == "certificate_malformed"


def test_xfcc_hash_mismatch(chain):
    value = _xfcc(chain).replace(hashlib.sha256(chain[0]).hexdigest(), "0" * 64)
    with pytest.raises(CertificateInvalid, match="Hash"):
        _decode(_fc("xfcc"), ("X-Cert", value))
    bad = _xfcc(chain).replace(hashlib.sha256(chain[0]).hexdigest(), "zz")
    with pytest.raises(CertificateInvalid, match="Hash"):
        _decode(_fc("xfcc"), ("X-Cert", bad))


def test_xfcc_chain_must_start_with_cert(chain):
    other = CA().issue_client_cert().der
    value = (
        'Cert="' + quote(_pem(other), safe="") + '";Chain="' + quote(_pem(chain[0]), safe="") + '"'
    )
    with pytest.raises(CertificateInvalid, match="Chain"):
        _decode(_fc("xfcc"), ("X-Cert", value))


def test_xfcc_without_cert_is_no_certificate_unless_opted_in():
    value = (
        "By=spiffe://td/ns/app/sa/web;Hash="
        + "ab" * 32
        + ';Subject="CN=web,O=Acme";URI=spiffe://td/ns/a/sa/caller;DNS=caller.example'
    )
    assert _fc("xfcc").extract(_req(("X-Cert", value))) is None
    identity = _decode(_fc("xfcc", verified_by_proxy=True), ("X-Cert", value))
    assert isinstance(identity, ClientIdentity)
    assert identity.verified_by == "proxy"
    assert identity.certificate is None
    assert identity.chain == ()
    assert identity.spiffe_id == "spiffe://td/ns/a/sa/caller"
    assert identity.common_name == "web"
    assert identity.organization == "Acme"
    assert identity.fingerprint_sha256 == "ab" * 32
    assert identity.dns_names == ("caller.example",)
    assert identity.source == "header:X-Cert"


@pytest.mark.parametrize(
    "spelling",
    [
        "AB" * 32,  # upper-case hex
        "Ab" * 32,
        ":".join(["ab"] * 32),  # OpenSSL's colon form
        base64.b64encode(bytes([0xAB]) * 32).decode(),  # GCP's base64 form
        "ab" * 31,  # short
    ],
)
def test_xfcc_hash_of_a_proxy_verified_identity_is_lower_case_hex(spelling):
    """Envoy writes ``Hash`` as lower-case hex only. With a ``Cert`` any other spelling is
    refused; without one (a proxy-verified identity) it was read leniently, so a ``Hash``
    Envoy never writes passed, and a ``fingerprints`` rule admitted it."""
    value = "Hash=" + spelling + ';Subject="CN=web";URI=spiffe://td/ns/a/sa/caller'
    with pytest.raises(CertificateInvalid, match="Hash") as info:
        _decode(_fc("xfcc", verified_by_proxy=True), ("X-Cert", value))
    assert info.value.code == "certificate_malformed"


def test_xfcc_legacy_subject_form():
    value = 'Subject="/C=US/O=Lyft/OU=Eng/CN=Test Client";URI=spiffe://td/x'
    identity = _decode(_fc("xfcc", verified_by_proxy=True), ("X-Cert", value))
    assert identity.subject == "CN=Test Client,OU=Eng,O=Lyft,C=US"


# -- proxy-verified identities: AWS ALB verify mode, GCP ------------------------------------
def test_aws_alb_verify_prefers_leaf(chain):
    fc = ForwardedCert.preset("aws-alb-verify", trusted_proxies=TRUSTED, verified_by_proxy=True)
    pairs = encode_forwarded("aws-alb-verify", chain)
    assert _decode(fc, *pairs) == (chain[0],)
    fields = [p for p in pairs if not p[0].endswith("Leaf")]
    identity = _decode(fc, *fields)
    assert identity.verified_by == "proxy"
    assert identity.common_name == "alice"
    assert identity.organization == "Acme, Inc."
    assert identity.serial_number is not None
    assert identity.not_after is not None
    # without the opt-in, identity fields alone are no certificate
    plain = ForwardedCert.preset("aws-alb-verify", trusted_proxies=TRUSTED)
    assert plain.extract(_req(*fields)) is None


def test_gcp_fields(chain):
    fc = ForwardedCert.preset("gcp", trusted_proxies=TRUSTED, verified_by_proxy=True)
    pairs = encode_forwarded("gcp", chain)
    assert _decode(fc, *pairs) == tuple(chain)
    name = x509.Name.from_rfc4514_string("CN=alice of the googles,O=Acme\\, Inc.,C=US")
    subject_der = base64.b64encode(name.public_bytes()).decode()
    fields = [
        ("X-Client-Cert-Present", "true"),
        ("X-Client-Cert-Chain-Verified", "true"),
        ("X-Client-Cert-Hash", base64.b64encode(hashlib.sha256(chain[0]).digest()).decode().rstrip("=")),
        # GCP sends the SPIFFE ID apart; client_cert_uri_sans leaves it out
        ("X-Client-Cert-SPIFFE", "spiffe://td/ns/a/sa/b"),
        ("X-Client-Cert-DNSName-SANs", ",".join(base64.b64encode(d).decode() for d in (b"a.example", b"b.example"))),
        ("X-Client-Cert-Subject-DN", subject_der),
        ("X-Client-Cert-Serial-Number", "0a1b"),
        ("X-Client-Cert-Valid-Not-Before", "2020-01-01T00:00:00Z"),
        ("X-Client-Cert-Valid-Not-After", "9000-01-01T00:00:00Z"),
    ]  # fmt: skip
    identity = _decode(fc, *fields)
    assert identity.common_name == "alice of the googles"
    assert identity.subject_name == name
    assert identity.organization == "Acme, Inc."
    assert identity.fingerprint_sha256 == hashlib.sha256(chain[0]).hexdigest()
    assert identity.spiffe_id == "spiffe://td/ns/a/sa/b"
    assert identity.dns_names == ("a.example", "b.example")
    assert identity.serial_number == 0x0A1B
    assert fc.extract(_req(("X-Client-Cert-Present", "false"), *fields[1:])) is None
    unverified = [
        ("X-Client-Cert-Present", "true"),
        ("X-Client-Cert-Chain-Verified", "false"),
        *fields[-2:],
    ]
    with pytest.raises(CertificateInvalid):
        _decode(fc, *unverified)


def test_verdict_headers_are_never_authentication():
    fc = ForwardedCert.preset("nginx", trusted_proxies=TRUSTED)
    assert (
        fc.extract(_req(("X-SSL-Client-Verify", "SUCCESS"), ("X-SSL-Client-S-DN", "CN=admin")))
        is None
    )


# -- presets -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_the_verifier(name, pki):
    root, inter, client = pki
    fc = ForwardedCert.preset(name, trusted_proxies=TRUSTED)
    verifier = Verifier(
        trust_store=root.trust_store(), forwarded=fc, intermediates=[inter.cert_pem.bytes()]
    )
    pairs = encode_forwarded(name, client.chain_der)
    identity = verifier.authenticate(_req(*pairs))
    assert identity is not None
    assert identity.common_name == "alice"
    assert identity.source == f"header:{fc.header}"
    assert fc.header.lower() in fc.header_names()


def test_preset_overrides_and_errors():
    fc = ForwardedCert.preset("nginx", trusted_proxies=TRUSTED, header="X-Client-Cert")
    assert fc.header_names() == {"x-client-cert"}
    with pytest.raises(ValueError, match="nginx"):
        ForwardedCert.preset("nginks", trusted_proxies=TRUSTED)
    with pytest.raises(ValueError, match="der-base64"):
        _fc("base64")
    with pytest.raises(ValueError, match="nginx"):
        encode_forwarded("nope", [b"x"])


# -- the trust gate ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        pytest.param("10.0.0.5", True, id="v4 in CIDR"),
        pytest.param("10.0.1.5", False, id="v4 outside CIDR"),
        pytest.param("127.0.0.1", True, id="single address"),
        pytest.param("::ffff:127.0.0.1", True, id="v4-mapped v6"),
        pytest.param("::ffff:10.0.0.9", True, id="v4-mapped in CIDR"),
        pytest.param("2001:db8::1", True, id="v6 in CIDR"),
        pytest.param("[2001:db8::1]", True, id="bracketed v6"),
        pytest.param("2001:db9::1", False, id="v6 outside"),
        pytest.param("fe80::1%eth0", False, id="scoped v6"),
        pytest.param(None, False, id="no peer"),
        pytest.param("", False, id="empty peer"),
        pytest.param("unix:/run/app.sock", False, id="unparseable"),
        pytest.param("10.0.0.5, 1.2.3.4", False, id="x-forwarded-for style"),
    ],
)
def test_is_trusted(peer, trusted):
    fc = _fc()
    assert fc.is_trusted(peer) is trusted
    assert fc.is_trusted(peer) is trusted  # cached answer


def test_mapped_configured_entry_matches_ipv4_peer():
    assert _fc(trusted_proxies=["::ffff:192.0.2.0/120"]).is_trusted("192.0.2.7")


@pytest.mark.parametrize(
    ("proxies", "error"),
    [
        pytest.param(["*"], ValueError, id="star"),
        pytest.param(["0.0.0.0/0"], ValueError, id="all v4"),
        pytest.param(["::/0"], ValueError, id="all v6"),
        pytest.param(["::ffff:0:0/96"], ValueError, id="all mapped"),
        pytest.param([], ValueError, id="empty"),
        pytest.param(["10.0.0.0/33"], ValueError, id="bad prefix"),
        pytest.param(["10.0.0.1/8"], ValueError, id="host bits set"),
        pytest.param(["proxy.internal"], ValueError, id="hostname"),
        pytest.param("10.0.0.1", TypeError, id="a string, not a list"),
        pytest.param([10], TypeError, id="not a string"),
    ],
)
def test_bad_trusted_proxies(proxies, error):
    with pytest.raises(error):
        _fc(trusted_proxies=proxies)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"on_untrusted": "warn"}, ValueError, "on_untrusted must be"),
        ({"max_size": 0}, ValueError, "max_size must be a positive int"),
        ({"max_size": True}, TypeError, "max_size must be an int"),
        ({"max_size": "65536"}, TypeError, "max_size must be an int"),
        ({"header": "bad header"}, ValueError, "is not a valid HTTP header name"),
        ({"header": "X-Client-\u212aey"}, ValueError, "is not a valid HTTP header name"),
        ({"chain_header": "X-Chain-\u212aey"}, ValueError, "is not a valid HTTP header name"),
        ({"header": ""}, TypeError, "header must be a non-empty header name"),
        ({"chain_header": "x cert"}, ValueError, "chain_header 'x cert' is not a valid"),
        ({"chain_header": "X-Cert"}, ValueError, "must all be different"),
        ({"encoding": "xfcc", "chain_header": "X-Chain"}, ValueError, "drop chain_header"),
        ({"verified_by_proxy": "yes"}, TypeError, "verified_by_proxy must be a bool"),
        ({"xfcc_element": True}, TypeError, "xfcc_element must be an int"),
        ({"identity_format": "azure"}, ValueError, "identity_format must be one of"),
        ({"identity_headers": {"subject": "X-S"}}, ValueError, "needs identity_format"),
        (
            {"identity_format": "gcp", "identity_headers": {"colour": "X-C"}},
            ValueError,
            "unknown identity_headers fields ['colour']",
        ),
    ],
)
def test_bad_config(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _fc(**kwargs)


def test_untrusted_peer_reject_and_ignore(chain):
    value = encode_forwarded("url-pem", chain)[0][1]
    with pytest.raises(UntrustedForwarder) as info:
        _fc().extract(_req(("X-Cert", value), peer="192.0.2.1"))
    assert (info.value.code, info.value.status) == ("untrusted_forwarder", 401)
    assert _fc(on_untrusted="ignore").extract(_req(("X-Cert", value), peer="192.0.2.1")) is None


def test_header_names_cover_everything_read():
    assert ForwardedCert.preset("apache", trusted_proxies=TRUSTED).header_names() == {
        "x-ssl-client-cert",
        "x-ssl-client-cert-chain-0",
        "x-ssl-client-cert-chain-1",
        "x-ssl-client-cert-chain-2",
    }
    gcp = ForwardedCert.preset("gcp", trusted_proxies=TRUSTED).header_names()
    assert {"x-client-cert-leaf", "x-client-cert-chain", "x-client-cert-subject-dn"} <= gcp


def test_immutable_and_repr():
    fc = _fc()
    with pytest.raises(AttributeError):
        fc.header = "X-Other"  # type: ignore[misc]
    assert "url-pem" in repr(fc)


def test_key_is_raw_and_distinct(chain):
    fc = _fc()
    value = encode_forwarded("url-pem", chain)[0][1]
    a = fc.extract(_req(("X-Cert", value)))
    b = fc.extract(_req(("X-Cert", value)))
    c = fc.extract(_req(("X-Cert", value.replace("%0A", "%0a"))))
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.key == b.key != c.key
    assert value.encode() in a.key
    assert a.source == "header:X-Cert"


def test_tls_chain_wins_over_header_from_untrusted_peer(pki):
    root, _, client = pki
    verifier = Verifier(trust_store=root.trust_store(), forwarded=_fc())
    other = CA().issue_client_cert(common_name="mallory")
    forged = encode_forwarded("url-pem", other.chain_der)[0][1]
    presented = Presented(
        peer="192.0.2.1", headers=(("x-cert", forged),), tls_chain=tuple(client.chain_der)
    )
    identity = verifier.authenticate(presented)
    assert identity is not None
    assert identity.common_name == "alice"
    assert identity.source == "tls"


# -- strictness: refuse what the proxy could never send (adversarial review) ------------------
def _b64(*ders):
    return base64.b64encode(b"".join(ders)).decode()


def _K(c):  # a split point whose first part needs '=' padding
    return len(c[0]) // 3 * 3 - 2


def _unescape_one(escaped):
    """``escaped`` with its first escape of ``+``, ``/`` or ``=`` written raw."""
    out, n = re.subn("%(2B|2F|3D)", lambda m: unquote(m.group()), escaped, count=1)
    assert n == 1
    return out


@pytest.mark.parametrize(
    ("encoding", "make"),
    [
        pytest.param("url-pem", lambda c: _pem(c[0]), id="raw PEM, nothing escaped"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("%20", " "), id="raw space"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("%0A", "\t"), id="raw tab"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("%0A", "%0D%0A"), id="CRLF"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("%0A", "%09", 3), id="escaped tab"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0])[:40] + " " + _pem(c[0])[40:], safe=""), id="space inside base64 line"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="") + "%00", id="trailing NUL"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("MII", "MII%00", 1), id="NUL in body"),
        pytest.param("url-pem", lambda c: quote(quote(_pem(c[0]), safe=""), safe=""), id="double encoded"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="") + "x", id="trailing garbage"),
        pytest.param("url-pem", lambda c: "x" + quote(_pem(c[0]), safe=""), id="text before BEGIN"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]).replace("CERTIFICATE", "TRUSTED CERTIFICATE"), safe=""), id="TRUSTED CERTIFICATE"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]).replace("CERTIFICATE", "X509 CERTIFICATE"), safe=""), id="X509 CERTIFICATE"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]).replace("/", "_").replace("+", "-"), safe=""), id="url-safe alphabet"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("-", "%2D"), id="escaped dashes"),
        pytest.param("url-pem", lambda c: quote(_pem(c[0]), safe="").replace("M", "%4D", 1), id="escaped letter"),
        pytest.param("traefik", lambda c: quote(",".join(_b64(d) for d in c), safe="").replace("M", "%4D", 1), id="traefik escaped letter"),
        pytest.param("pem", lambda c: "x " + _pem(c[0]).replace("\n", " "), id="pem text before BEGIN"),
        pytest.param("pem", lambda c: _pem(c[0]).replace("\n", " ") + "\x00", id="pem NUL"),
        pytest.param("pem", lambda c: _pem(c[0]).replace("CERTIFICATE", "TRUSTED CERTIFICATE").replace("\n", " "), id="pem TRUSTED CERTIFICATE"),
        pytest.param("der-base64", lambda c: _b64(c[0])[:10] + " " + _b64(c[0])[10:], id="space inside base64"),
        pytest.param("der-base64", lambda c: _b64(c[0])[:10] + "\t" + _b64(c[0])[10:], id="tab inside base64"),
        pytest.param("der-base64", lambda c: " " + _b64(c[0]), id="leading space kept by the server"),
        pytest.param("der-base64", lambda c: base64.urlsafe_b64encode(c[0]).decode(), id="url-safe alphabet"),
        pytest.param("der-base64", lambda c: _b64(c[0])[:-4] + "-" + _b64(c[0])[-3:], id="mixed alphabets"),
        pytest.param("der-base64", lambda c: _b64(c[0] + b"\x00"), id="DER + trailing byte"),
        pytest.param("der-base64", lambda c: _b64(c[0] + b"\x30\x00"), id="DER + empty SEQUENCE"),
        pytest.param("der-base64", lambda c: _b64(b"\x30\x80" + c[0][4:] + b"\x00\x00"), id="indefinite length"),
        pytest.param("der-base64", lambda c: _b64(c[0][:_K(c)]) + _b64(c[0][_K(c):]), id="padding in the middle"),
        pytest.param("traefik", lambda c: ", ".join(_b64(d) for d in c), id="traefik space after comma"),
        pytest.param("traefik", lambda c: _b64(c[0])[:10] + " " + _b64(c[0])[10:], id="traefik space inside"),
        pytest.param("traefik", lambda c: quote(_b64(c[0]), safe="") + "," + _b64(c[1]), id="traefik half escaped"),
        pytest.param("traefik", lambda c: _b64(c[0]) + "," + quote(_b64(c[1]), safe=""), id="traefik escaped after a raw item"),
        pytest.param("traefik", lambda c: quote(_b64(c[0]), safe="") + "%2C" + quote(_b64(c[1]), safe="") + "," + quote(_b64(c[1]), safe=""), id="traefik escaped and raw commas"),
        pytest.param("traefik", lambda c: _unescape_one(quote(_b64(c[0]), safe="")) + "," + quote(_b64(c[1]), safe=""), id="traefik one raw character in an escaped item"),
        pytest.param("traefik", lambda c: quote(quote(",".join(_b64(d) for d in c), safe=""), safe=""), id="traefik double escaped"),
        pytest.param("rfc9440", lambda c: ":" + _b64(c[0])[:10] + " " + _b64(c[0])[10:] + ":", id="rfc9440 space inside"),
        pytest.param("rfc9440", lambda c: ":" + base64.urlsafe_b64encode(c[0]).decode() + ":", id="rfc9440 url-safe"),
        pytest.param("rfc9440", lambda c: ":" + _b64(c[0], c[1]) + ":", id="rfc9440 two DERs in one item"),
        pytest.param("rfc9440", lambda c: ":" + _b64(c[0]) + "=:", id="rfc9440 padding beyond the last group"),
        pytest.param("rfc9440", lambda c: ":" + _b64(c[0]) + "====:", id="rfc9440 a group of padding"),
        pytest.param("traefik", lambda c: _b64(c[0], c[1]), id="traefik two DERs in one item"),
        pytest.param("traefik", lambda c: _b64(c[0], c[1]) + "," + _b64(c[1]), id="traefik two DERs in the first item"),
        pytest.param("traefik", lambda c: quote(_b64(c[0], c[1]), safe=""), id="traefik two DERs in one escaped item"),
    ],
)  # fmt: skip
def test_values_no_proxy_sends_are_malformed(encoding, make, chain):
    with pytest.raises(CertificateInvalid) as info:
        _decode(_fc(encoding), ("X-Cert", make(chain)))
    assert info.value.code == "certificate_malformed"


# Presets whose certificate header holds the leaf alone: a second certificate in it is
# something that proxy never writes.
SINGLE_CERT_PRESETS = {
    "nginx": lambda c: quote(_pem(c[0]) + _pem(c[1]), safe=""),
    "ingress-nginx": lambda c: quote(_pem(c[0]) + _pem(c[1]), safe=""),
    "wso2": lambda c: quote(_pem(c[0]) + _pem(c[1]), safe=""),
    "cloudfront": lambda c: quote(_pem(c[0]) + _pem(c[1]), safe=""),
    "aws-alb-verify": lambda c: quote(_pem(c[0]) + _pem(c[1]), safe="+=/"),
    "apache": lambda c: (_pem(c[0]) + _pem(c[1])).replace("\n", " "),
    "gluu": lambda c: (_pem(c[0]) + _pem(c[1])).replace("\n", " "),
    "haproxy": lambda c: _b64(c[0], c[1]),
    "caddy": lambda c: _b64(c[0], c[1]),
    "azure": lambda c: _b64(c[0], c[1]),
    "cloudflare": lambda c: _b64(c[0], c[1]),
    "rfc9440": lambda c: ":" + _b64(c[0], c[1]) + ":",
    "gcp": lambda c: ":" + _b64(c[0], c[1]) + ":",
}


@pytest.mark.parametrize("name", sorted(SINGLE_CERT_PRESETS))
@pytest.mark.parametrize("drop_chain", [False, True], ids=["as is", "chain_header=None"])
def test_single_certificate_presets_refuse_two(name, chain, drop_chain):
    # overriding chain_header away must not turn a leaf-only header into a chain header
    extra = {"chain_header": None} if drop_chain else {}
    fc = ForwardedCert.preset(name, trusted_proxies=TRUSTED, **extra)
    assert fc.single_certificate is True
    with pytest.raises(CertificateInvalid) as info:
        _decode(fc, (fc.header, SINGLE_CERT_PRESETS[name](chain)))
    assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("name", ["aws-alb", "traefik", "envoy"])
def test_chain_carrying_presets_keep_the_chain(name, chain):
    fc = ForwardedCert.preset(name, trusted_proxies=TRUSTED)
    assert fc.single_certificate is False
    assert _decode(fc, *encode_forwarded(name, chain)) == tuple(chain)


def test_single_certificate_defaults_and_errors(chain):
    assert _fc("url-pem").single_certificate is False
    assert _fc("url-pem", chain_header="X-Chain").single_certificate is True
    assert _fc("rfc9440").single_certificate is True
    with pytest.raises(ValueError, match="chain"):
        _fc("url-pem", chain_header="X-Chain", single_certificate=False)
    with pytest.raises(ValueError, match="traefik"):
        _fc("traefik", single_certificate=True)
    with pytest.raises(TypeError):
        _fc("url-pem", single_certificate="yes")
    two = quote(_pem(chain[0]) + _pem(chain[1]), safe="")
    with pytest.raises(CertificateInvalid, match="one certificate"):
        _decode(_fc("url-pem", single_certificate=True), ("X-Cert", two))


def test_apache_chain_headers_hold_one_certificate_each_and_no_gap(chain, pki):
    fc = ForwardedCert.preset("apache", trusted_proxies=TRUSTED)
    leaf, inter = (_pem(d).replace("\n", " ") for d in chain)
    root = _pem(pki[0].certificate.public_bytes(Encoding.DER)).replace("\n", " ")
    ok = _decode(
        fc,
        ("X-SSL-Client-Cert", leaf),
        ("X-SSL-Client-Cert-Chain-0", inter),
        ("X-SSL-Client-Cert-Chain-1", root),
        ("X-SSL-Client-Cert-Chain-2", "(null)"),
    )
    assert len(ok) == 3
    for headers in (
        # CHAIN_0 missing but CHAIN_1 present: Apache numbers them without gaps
        [("X-SSL-Client-Cert-Chain-0", "(null)"), ("X-SSL-Client-Cert-Chain-1", inter)],
        [("X-SSL-Client-Cert-Chain-1", inter)],
        # two certificates in one CHAIN_n header
        [("X-SSL-Client-Cert-Chain-0", inter + " " + root)],
    ):
        with pytest.raises(CertificateInvalid) as info:
            _decode(fc, ("X-SSL-Client-Cert", leaf), *headers)
        assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize(
    ("name", "chain_value"),
    [
        pytest.param("haproxy", lambda c: _b64(c[1]), id="haproxy"),
        pytest.param("apache", lambda c: _pem(c[1]).replace("\n", " "), id="apache"),
        pytest.param("rfc9440", lambda c: ":" + _b64(c[1]) + ":", id="rfc9440"),
        pytest.param("gcp", lambda c: ":" + _b64(c[1]) + ":", id="gcp"),
    ],
)
@pytest.mark.parametrize(
    "leaf", [None, "", "(null)"], ids=["leaf absent", "leaf empty", "leaf (null)"]
)
def test_chain_header_without_leaf_is_malformed(name, chain_value, leaf, chain):
    fc = ForwardedCert.preset(name, trusted_proxies=TRUSTED)
    headers = [(fc.chain_header[0], chain_value(chain))]
    if leaf is not None:
        headers.append((fc.header, leaf))
    with pytest.raises(CertificateInvalid) as info:
        fc.extract(_req(*headers))
    assert info.value.code == "certificate_malformed"
    with pytest.raises(UntrustedForwarder):  # and from anyone else it is a forgery
        fc.extract(_req(*headers, peer="192.0.2.1"))


@pytest.mark.parametrize(
    "name",
    [
        "Host", "authorization", "Proxy-Authorization", "Cookie", "Connection", "Keep-Alive",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Content-Type",
        "Forwarded", "X-Forwarded-For", "X-Real-IP", "User-Agent", "Origin", "Referer",
    ],
)  # fmt: skip
@pytest.mark.parametrize("field", ["header", "chain_header", "identity_header"])
def test_well_known_header_names_are_refused(name, field):
    if field == "header":
        kw = {"header": name}
    elif field == "chain_header":
        kw = {"chain_header": ["X-Chain-0", name]}
    else:
        kw = {"identity_format": "aws-alb", "identity_headers": {"subject": name}}
    with pytest.raises(ValueError, match="client"):
        _fc(**kw)


@pytest.mark.parametrize("name", ["X_SSL_Client_Cert", "x-ssl_client-cert"])
def test_underscore_header_names_are_refused(name):
    with pytest.raises(ValueError, match="underscore"):
        _fc(header=name)
    with pytest.raises(ValueError, match="underscore"):
        _fc(chain_header=name)


def test_construction_types():
    with pytest.raises(TypeError, match="order"):
        _fc(chain_header={"X-Chain-0", "X-Chain-1"})
    with pytest.raises(TypeError):
        _fc(chain_header=b"X-Chain")
    with pytest.raises(TypeError):
        _fc(trusted_proxies=[b"10.0.0.1"])
    with pytest.raises(TypeError):
        _fc(trusted_proxies=None)
    with pytest.raises(TypeError):
        _fc(header=None)
    with pytest.raises(TypeError):
        _fc(identity_format="aws-alb", identity_headers=[("subject", "X-S")])
    with pytest.raises(TypeError):
        _fc(max_size="65536")
    with pytest.raises(TypeError):
        _fc(encoding=None)
    # a one-shot iterable is read once, and what is reported is what is trusted
    fc = _fc(trusted_proxies=(p for p in ["10.0.0.0/24", "unix"]))
    assert fc.trusted_proxies == ("10.0.0.0/24", "unix")
    assert fc.is_trusted("10.0.0.7")
    assert fc.is_trusted(UNIX_PEER)
    assert not fc.is_trusted(None)  # an unknown peer is never trusted
    # a set is fine for addresses (order does not matter there)
    assert _fc(trusted_proxies={"10.0.0.5"}).is_trusted("10.0.0.5")


@pytest.mark.parametrize(
    ("entry", "peer", "trusted"),
    [
        pytest.param("10.0.0.1", "::ffff:10.0.0.1", True, id="v4 entry, mapped peer"),
        pytest.param("::ffff:10.0.0.1", "10.0.0.1", True, id="mapped entry, v4 peer"),
        pytest.param("::ffff:10.0.0.1", "::ffff:10.0.0.1", True, id="mapped both"),
        pytest.param("10.0.0.1", "::ffff:10.0.0.2", False, id="mapped other"),
        pytest.param("10.0.0.1", "::10.0.0.1", False, id="v4-compatible is not mapped"),
        pytest.param("10.0.0.1", "64:ff9b::a00:1", False, id="NAT64 is not mapped"),
        pytest.param(" 10.0.0.1 ", "10.0.0.1", True, id="whitespace around an entry"),
        pytest.param("fe80::1%eth0", "fe80::1%eth0", True, id="zone matches"),
        pytest.param("fe80::1%eth0", "fe80::1%eth1", False, id="other zone"),
        pytest.param("fe80::1%eth0", "fe80::1", False, id="no zone on the peer"),
        pytest.param("fe80::1", "fe80::1%eth1", True, id="entry without zone"),
        pytest.param("10.0.0.1", "10.0.0.1:443", False, id="peer with a port"),
        pytest.param("10.0.0.1", "010.000.000.001", False, id="leading zeros"),
    ],
)
def test_peer_forms_decided(entry, peer, trusted):
    assert _fc(trusted_proxies=[entry]).is_trusted(peer) is trusted


# -- TLS chain and header together: which one speaks ------------------------------------------
@pytest.mark.parametrize("on_untrusted", ["reject", "ignore"])
@pytest.mark.parametrize(
    ("peer", "tls", "header", "expected"),
    [
        # a direct TLS client: its own certificate counts, its header never does
        pytest.param("192.0.2.1", True, "forged", "tls", id="untrusted+tls+forged header"),
        pytest.param("192.0.2.1", True, None, "tls", id="untrusted+tls"),
        pytest.param("192.0.2.1", False, None, "certificate_missing", id="untrusted, nothing"),
        # a trusted proxy speaks for its client through the header only; the certificate it
        # presented itself (upstream mTLS) names the proxy and is never a fallback
        pytest.param(PROXY, True, "good", "header", id="trusted+tls+header"),
        pytest.param(PROXY, False, "good", "header", id="trusted+header"),
        pytest.param(PROXY, True, None, "certificate_missing", id="trusted+tls, no header"),
        pytest.param(PROXY, True, "(null)", "certificate_missing", id="trusted+tls, (null)"),
        pytest.param(PROXY, True, "garbage", "certificate_malformed", id="trusted+tls, bad header"),
        pytest.param(PROXY, True, "two", "certificate_malformed", id="trusted+tls, two copies"),
    ],
)
def test_tls_chain_and_header_interplay(pki, peer, tls, header, expected, on_untrusted):
    root, inter, client = pki
    proxy_cert = inter.issue_client_cert(common_name="the-proxy")
    mallory = inter.issue_client_cert(common_name="mallory")
    verifier = Verifier(
        trust_store=root.trust_store(),
        intermediates=[inter.cert_pem.bytes()],
        forwarded=_fc(on_untrusted=on_untrusted),
    )
    good = quote(_pem(client.chain_der[0]), safe="")
    values = {
        "good": [good],
        "forged": [quote(_pem(mallory.chain_der[0]), safe="")],
        "(null)": ["(null)"],
        "garbage": ["-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----%0A"],
        "two": [good, good],
        None: [],
    }[header]
    # the direct client's TLS certificate is alice's own; the proxy's is its own
    tls_chain = (
        () if not tls else tuple(client.chain_der if peer != PROXY else proxy_cert.chain_der)
    )
    presented = Presented(
        peer=peer, headers=tuple(("x-cert", v) for v in values), tls_chain=tls_chain
    )
    if expected in ("tls", "header"):
        identity = verifier.authenticate(presented)
        assert identity is not None
        assert identity.common_name == "alice"
        assert identity.source == ("tls" if expected == "tls" else "header:X-Cert")
    else:
        with pytest.raises(MTLSAuthError) as info:
            verifier.authenticate(presented)
        assert info.value.code == expected


@pytest.mark.parametrize("on_untrusted", ["reject", "ignore"])
def test_untrusted_header_without_tls(pki, on_untrusted):
    verifier = Verifier(trust_store=pki[0].trust_store(), forwarded=_fc(on_untrusted=on_untrusted))
    forged = quote(_pem(pki[2].chain_der[0]), safe="")
    presented = Presented(peer="192.0.2.1", headers=(("x-cert", forged),))
    if on_untrusted == "reject":
        with pytest.raises(UntrustedForwarder):
            verifier.authenticate(presented)
    else:  # ignored: as if no certificate came, never believed
        assert verifier.authenticate(presented, required=False) is None
        with pytest.raises(MTLSAuthError) as info:
            verifier.authenticate(presented)
        assert info.value.code == "certificate_missing"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param(
            {"header": "X-Cert", "chain_header": "x-CERT"}, id="chain = header, other case"
        ),
        pytest.param({"chain_header": ["X-Chain", "x-chain"]}, id="chain twice, other case"),
        pytest.param(
            {"identity_format": "aws-alb", "identity_headers": {"subject": "X-CERT"}},
            id="identity header = certificate header",
        ),
    ],
)
def test_same_header_configured_twice(kwargs):
    with pytest.raises(ValueError, match="different"):
        _fc(**kwargs)


# -- trust gate: a link-local proxy named with its zone is trusted on that link only -------
@pytest.mark.parametrize(
    ("proxies", "peer", "trusted"),
    [
        pytest.param(["fe80::1%eth0"], "fe80::1%eth0", True, id="same zone"),
        pytest.param(["fe80::1%eth0"], "fe80::1%eth1", False, id="other zone"),
        pytest.param(["fe80::1%eth0"], "fe80::1", False, id="zoned entry, no zone on peer"),
        pytest.param(["fe80::/64"], "fe80::1%eth1", True, id="entry without zone"),
        pytest.param(["fe80::%eth0/64"], "fe80::9%eth0", True, id="zoned network"),
        pytest.param(["fe80::%eth0/64"], "fe80::9%wlan0", False, id="zoned network, other zone"),
    ],
)
def test_zone_of_a_link_local_proxy_counts(proxies, peer, trusted) -> None:
    from mtlsauth import ForwardedCert

    fc = ForwardedCert.preset("nginx", trusted_proxies=proxies)
    assert fc.is_trusted(peer) is trusted


# -- XFCC: a quoted Subject carries its own RFC 2253 escapes --------------------------------
def _xfcc_identity(value: str):
    from mtlsauth import ForwardedCert, Presented

    fc = ForwardedCert(
        header="X-Forwarded-Client-Cert",
        encoding="xfcc",
        trusted_proxies=[PROXY],
        verified_by_proxy=True,
    )
    presented = Presented(peer=PROXY, headers=(("x-forwarded-client-cert", value),))
    extracted = fc.extract(presented)
    assert extracted is not None
    return extracted.decode()


@pytest.mark.parametrize(
    ("subject", "cn", "org"),
    [
        pytest.param('CN=a \\"b\\",O=Acme\\, Inc.', 'a "b"', "Acme, Inc.", id="escaped quotes"),
        pytest.param("CN=back\\\\,O=Acme", "back\\", "Acme", id="value ending in a backslash"),
        pytest.param('CN=\\"\\\\\\",O=Acme', '"\\"', "Acme", id="quote, backslash, quote"),
        pytest.param("CN=a\\,b;c,O=x\\;y", None, None, id="unescaped ; stays in the quotes"),
    ],
)
def test_xfcc_subject_with_escapes_parses(subject, cn, org) -> None:
    from mtlsauth import MTLSAuthError

    header = f'Hash={"ab" * 32};Subject="{subject}";URI=spiffe://td/caller'
    if cn is None:  # RFC 2253 escapes ';': a bare one is refused by the DN parser, not split on
        with pytest.raises(MTLSAuthError):
            _xfcc_identity(header)
        return
    identity = _xfcc_identity(header)
    assert (identity.common_name, identity.organization) == (cn, org)
    assert identity.uris == ("spiffe://td/caller",)
    assert identity.spiffe_id == "spiffe://td/caller"


def test_xfcc_escaped_quote_cannot_end_the_subject() -> None:
    # An attacker's CN 'x";URI=spiffe://td/admin' reaches the header as RFC 2253 writes it.
    subject = 'CN=x\\"\\;URI=spiffe://td/admin,O=Acme'
    identity = _xfcc_identity(f'Hash={"ab" * 32};Subject="{subject}";URI=spiffe://td/mallory')
    assert identity.uris == ("spiffe://td/mallory",)
    assert identity.common_name == 'x";URI=spiffe://td/admin'


def test_xfcc_encoder_writes_the_subject_as_envoy_does() -> None:
    from mtlsauth._forwarded._xfcc import select_element
    from mtlsauth.testing._encode import encode_element

    subject = 'CN=a \\"b\\",O=Acme\\, Inc.\\\\'
    header = encode_element([], by=None, subject=subject)
    assert header == f'Subject="{subject}";URI='
    assert select_element(header, -1).subject == subject
    with pytest.raises(ValueError, match="cannot be quoted"):
        encode_element([], by=None, subject='CN=a "b"')


def test_rfc9440_parameter_strings_honour_escapes(chain) -> None:
    import base64

    from mtlsauth import MTLSAuthError
    from mtlsauth._forwarded._formats import decode_rfc9440, decode_rfc9440_list

    der = chain[0]
    item = ":" + base64.b64encode(der).decode() + ":"
    assert decode_rfc9440(f'{item};note="a \\"quoted\\", :x: value"') == [der]
    chain = decode_rfc9440_list(f'{item};note="a\\\\", {item}')
    assert chain == [der, der]
    for bad in (f'{item};note="a\\q"', f'{item};note="a\\"', f'{item};note="\u00e9"'):
        with pytest.raises(MTLSAuthError):
            decode_rfc9440(bad)


def test_proxy_identity_lists_every_organization() -> None:
    from mtlsauth import Policy, PolicyDenied

    identity = _xfcc_identity(f'Hash={"ab" * 32};Subject="CN=svc,O=ops,O=evil";URI=')
    assert (identity.organization, identity.organizations) == ("evil", ("evil", "ops"))
    with pytest.raises(PolicyDenied):
        Policy(organizations=["ops"]).check(identity)
    Policy(organizations=["ops", "evil"]).check(identity)


def test_gcp_spiffe_id_must_be_the_one_uri() -> None:
    import base64

    from mtlsauth._forwarded._verified import identity_from_gcp

    def fields(spiffe: str, *uris: str) -> dict[str, str]:
        listed = ",".join(base64.b64encode(u.encode()).decode() for u in uris)
        return {"chain_verified": "true", "spiffe": spiffe, "uri": listed}

    # GCP leaves the SPIFFE ID out of the URI list: a second URI SAN makes the certificate no
    # X.509-SVID, so no SPIFFE ID, as on the TLS path
    two = identity_from_gcp(fields("spiffe://td/a", "https://x"), "header:x")
    assert two.spiffe_id is None
    assert two.uris == ("spiffe://td/a", "https://x")
    again = identity_from_gcp(fields("spiffe://td/a", "spiffe://td/a"), "header:x")
    assert (again.spiffe_id, again.uris) == (None, ("spiffe://td/a", "spiffe://td/a"))
    ok = identity_from_gcp(fields("spiffe://td/a"), "header:x")
    assert (ok.spiffe_id, ok.uris) == ("spiffe://td/a", ("spiffe://td/a",))
    other = identity_from_gcp(fields("spiffe://td/admin", "spiffe://td/a"), "header:x")
    assert (other.spiffe_id, other.uris) == (None, ("spiffe://td/admin", "spiffe://td/a"))


@pytest.mark.parametrize(
    "peer",
    [
        pytest.param("::10.0.0.5", id="IPv4-compatible v6 (not mapped)"),
        pytest.param("64:ff9b::a00:5", id="NAT64 of 10.0.0.5"),
        pytest.param("2002:a00:5::1", id="6to4 of 10.0.0.5"),
        pytest.param("010.000.000.005", id="leading zeros"),
        pytest.param("0x0a.0.0.5", id="hex octet"),
        pytest.param("167772165", id="integer form"),
        pytest.param("10.5", id="short form"),
        pytest.param("10.0.0.5:443", id="with a port"),
        pytest.param("10.0.0.5%eth0", id="v4 with a zone"),
        pytest.param("10.0.0.5\n", id="trailing newline"),
        pytest.param("10.0.0.5\x00", id="trailing NUL"),
        pytest.param("10.0.0.5\u00a0", id="trailing no-break space"),
        pytest.param("\uff11\uff10.0.0.5", id="full-width digits"),
        pytest.param("[10.0.0.5", id="open bracket"),
        pytest.param("[10.0.0.5]", id="v4 in brackets (IPv6 literals only)"),
        pytest.param("::ffff:10.0.0.5%eth0", id="v4-mapped with a zone"),
        pytest.param("[::ffff:10.0.0.5%eth0]", id="v4-mapped with a zone, in brackets"),
    ],
)
def test_addresses_that_only_resemble_a_trusted_one_are_untrusted(peer):
    """Spellings that other parsers (inet_aton, a lenient proxy-header middleware) read as
    10.0.0.5, or that embed it in another address family, are not 10.0.0.0/24."""
    fc = _fc(trusted_proxies=["10.0.0.0/24"])
    assert fc.is_trusted(peer) is False
    assert fc.is_trusted(peer) is False  # the remembered answer too
    assert fc.is_trusted("10.0.0.5") is True
    assert fc.is_trusted("::ffff:10.0.0.5") is True


# -- header values that are not text: a direct caller's Presented ---------------------------
@pytest.mark.parametrize("preset", ["nginx", "haproxy", "traefik", "rfc9440", "apache", "envoy"])
def test_header_values_that_are_not_text_are_request_malformed(pki, preset):
    """``Presented.headers`` holds text values; bytes from a direct caller are refused as
    ``request_malformed`` (as other shapes are), never an ``AttributeError`` out of a
    decoder, and never admitted from the cache entry of the same text."""
    root, _inter, client = pki
    fwd = ForwardedCert.preset(preset, trusted_proxies=TRUSTED)
    verifier = Verifier(
        trust_store=root.trust_store(), intermediates=[client.chain_der[1]], forwarded=fwd
    )
    text = tuple((k.lower(), v) for k, v in encode_forwarded(preset, client.chain_der))
    as_bytes = tuple((k, v.encode("latin-1")) for k, v in text)
    for cached in (False, True):
        if cached:
            assert verifier.authenticate(Presented(peer=PROXY, headers=text)) is not None
        with pytest.raises(MTLSAuthError) as caught:
            verifier.authenticate(Presented(peer=PROXY, headers=as_bytes))  # type: ignore[arg-type]
        assert caught.value.code == "request_malformed"


def test_rfc9440_parameter_values_are_whole_bare_items(chain) -> None:
    """A parameter value is one RFC 8941 bare item; anything else fails the whole field.

    Read leniently, ``;a=x"y, :M:, "`` hid an item from the chain (a parser that follows
    RFC 8941 refuses the field), and ``;a=;b`` or ``;a=@`` passed as parameters.
    """
    from mtlsauth._forwarded._formats import decode_rfc9440, decode_rfc9440_list

    leaf, inter = chain[0], chain[1]
    item = ":" + base64.b64encode(leaf).decode() + ":"
    other = ":" + base64.b64encode(inter).decode() + ":"
    good = (
        ";a=1;b=-2.5;c=tok*/x:y;d=?0;e=" + other + ";f",
        ';a="s";b=@1700000000;c=%"caf%c3%a9"',
    )
    for params in good:
        assert decode_rfc9440(item + params) == [leaf]
        assert decode_rfc9440_list(f"{item}{params}, {other}") == [leaf, inter]
    bad = (
        ";a=",
        ";a=;b",
        ";a=@",
        ";a=\u00e9",
        ";a=1.2345",
        ";a=1234567890123456",
        ";a=?2",
        ";a=x(y)",
        ";a=1x",
        ";a=:AA",
        ';a=%"caf\u00e9"',
        ';a=%"%C3"',
        ';a=%"%c3"',
        ';a=%"%ff%fe"',
        ";a=(1 2)",
    )
    for params in bad:
        with pytest.raises(CertificateInvalid) as info:
            decode_rfc9440(item + params)
        assert info.value.code == "certificate_malformed"
    hidden = f'{other};a=x"y, {item}, ", {other}'
    with pytest.raises(CertificateInvalid):
        decode_rfc9440_list(hidden)


def test_rfc9440_bad_parameter_value_refused_end_to_end(pki) -> None:
    root, _, client = pki
    verifier = Verifier(
        trust_store=root.trust_store(),
        forwarded=ForwardedCert.preset("rfc9440", trusted_proxies=TRUSTED),
    )
    leaf = ":" + base64.b64encode(client.chain_der[0]).decode() + ":"
    mid = ":" + base64.b64encode(client.chain_der[1]).decode() + ":"
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(_req(("Client-Cert", leaf), ("Client-Cert-Chain", mid + ";a=;b")))
    assert info.value.code == "certificate_malformed"


def test_encode_forwarded_given_a_client_cert_says_what_to_pass() -> None:
    from mtlsauth.testing import CA, encode_forwarded

    cert = CA().issue_client_cert(common_name="gw")
    with pytest.raises(TypeError, match=r"not ClientCert: pass cert\.chain_der"):
        encode_forwarded("nginx", cert)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sequence of DER certificates"):
        encode_forwarded("nginx", cert.chain_der[0])
    with pytest.raises(TypeError, match="PEM text is not DER"):
        encode_forwarded("nginx", [cert.cert_pem.text()])  # type: ignore[list-item]
    assert encode_forwarded("nginx", cert.chain_der)
