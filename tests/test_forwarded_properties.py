"""Property tests: no header value makes ForwardedCert raise anything but MTLSAuthError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsauth import CertificateInvalid, ForwardedCert, MTLSAuthError, Presented
from mtlsauth._forwarded._presets import PRESETS
from mtlsauth.testing import CA, encode_forwarded

ENCODINGS = ("url-pem", "pem", "der-base64", "traefik", "xfcc", "rfc9440")
_CHAIN = CA().intermediate().issue_client_cert(common_name="p").chain_der
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that matter to the grammars, plus everything else now and then.
_grammar = st.text(
    alphabet=st.sampled_from('=;,":%+/ \t\\-{}()[]ABCMIab09\x00é\r\n'),
    max_size=200,
)
_any_text = st.text(max_size=300)


def _run(fc: ForwardedCert, headers: list[tuple[str, str]]) -> None:
    presented = Presented(peer="127.0.0.1", headers=tuple((k.lower(), v) for k, v in headers))
    try:
        value = fc.extract(presented)
        if value is not None:
            value.decode()
    except MTLSAuthError:
        pass


@pytest.mark.parametrize("encoding", ENCODINGS)
@_SETTINGS
@given(value=st.one_of(_grammar, _any_text))
def test_arbitrary_text(encoding: str, value: str) -> None:
    for proxy_verified in (False, True):
        fc = ForwardedCert(
            header="X-Cert",
            encoding=encoding,
            trusted_proxies=["127.0.0.1"],
            verified_by_proxy=proxy_verified,
        )
        _run(fc, [("X-Cert", value)])


@pytest.mark.parametrize("name", sorted(PRESETS))
@_SETTINGS
@given(data=st.data())
def test_mutated_real_values(name: str, data: st.DataObject) -> None:
    """Take what a proxy really sends, then cut, splice and corrupt it."""
    pairs = encode_forwarded(name, _CHAIN)
    out = []
    for header, value in pairs:
        if value and data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(value)))
            j = data.draw(st.integers(i, len(value)))
            value = value[:i] + data.draw(_grammar) + value[j:]
        out.append((header, value))
    fc = ForwardedCert.preset(name, trusted_proxies=["127.0.0.1"], verified_by_proxy=True)
    _run(fc, out)


@_SETTINGS
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_as_base64_and_latin1(raw: bytes) -> None:
    import base64

    for encoding, value in (
        ("der-base64", base64.b64encode(raw).decode()),
        ("rfc9440", ":" + base64.b64encode(raw).decode() + ":"),
        ("pem", raw.decode("latin-1")),
        ("url-pem", raw.decode("latin-1")),
    ):
        fc = ForwardedCert(header="X-Cert", encoding=encoding, trusted_proxies=["127.0.0.1"])
        _run(fc, [("X-Cert", value)])


@_SETTINGS
@given(
    peer=st.one_of(
        st.none(),
        st.text(max_size=50),
        st.ip_addresses().map(str),
        st.sampled_from(["10.0.0.1 ", "[::1]", "::1%lo", "::ffff:10.1.2.3", "10.0.0.1\u00a0"]),
    )
)
def test_any_peer_string(peer: str | None) -> None:
    fc = ForwardedCert(header="X-Cert", encoding="pem", trusted_proxies=["10.0.0.0/8", "::1"])
    assert fc.is_trusted(peer) is _expected_trust(peer)


def _expected_trust(peer: str | None) -> bool:
    """The rule restated: an IP literal inside 10.0.0.0/8 or equal to ::1, nothing else."""
    import ipaddress

    if peer is None:
        return False
    text = peer.strip(" \t")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0] if "%" in text else text)
        ipaddress.ip_address(text)  # a zone is allowed only where ipaddress allows one
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr in ipaddress.ip_network("10.0.0.0/8") or addr == ipaddress.ip_address("::1")


def _extract_and_decode(fc: ForwardedCert, presented: Presented) -> object:
    got = fc.extract(presented)
    if got is None:
        raise AssertionError("no certificate seen where a (bad) one was sent")
    return got.decode()


# -- strictness: a fragment no proxy ever writes, put anywhere, is refused ---------------------
_FOREIGN = {
    # URL-encoded PEM: raw whitespace or controls, escaped CR/TAB/NUL/space, other alphabets
    "url-pem": [" ", "\t", "\r", "\x00", "%0D", "%09", "%00", "%20", "_", '"', "é", "%C3%A9"],
    # base64 of DER: no whitespace, no padding inside, no url-safe alphabet
    "der-base64": [" ", "\t", "\r\n", "=", "-", "_", "%", "\x00", "é", ":"],
    "traefik": [" ", "\t", "=", "-", "_", "\x00", "é", ":", ","],
    # PEM with spaces: controls and characters outside PEM text
    "pem": ["\x00", "\r", "%", "_", "é", '"', ",", ":"],
}


@pytest.mark.parametrize("encoding", sorted(_FOREIGN))
@_SETTINGS
@given(data=st.data())
def test_foreign_fragment_anywhere_is_malformed(encoding: str, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 2), label="certificates")
    value = encode_forwarded(encoding, _CHAIN[:n])[0][1]
    i = data.draw(st.integers(0, len(value)), label="position")
    fragment = data.draw(st.sampled_from(_FOREIGN[encoding]), label="fragment")
    fc = ForwardedCert(header="X-Cert", encoding=encoding, trusted_proxies=["127.0.0.1"])
    presented = Presented(peer="127.0.0.1", headers=(("x-cert", value[:i] + fragment + value[i:]),))
    with pytest.raises(CertificateInvalid) as info:
        _extract_and_decode(fc, presented)
    assert info.value.code == "certificate_malformed"


@_SETTINGS
@given(data=st.data())
def test_rfc9440_foreign_fragment_inside_is_malformed(data: st.DataObject) -> None:
    value = encode_forwarded("rfc9440", _CHAIN[:1])[0][1]
    i = data.draw(st.integers(1, len(value) - 1), label="position")
    fragment = data.draw(st.sampled_from([" ", "\t", "-", "_", "%", "\x00", "é", ",", ":"]))
    fc = ForwardedCert(header="X-Cert", encoding="rfc9440", trusted_proxies=["127.0.0.1"])
    presented = Presented(peer="127.0.0.1", headers=(("x-cert", value[:i] + fragment + value[i:]),))
    with pytest.raises(CertificateInvalid) as info:
        _extract_and_decode(fc, presented)
    assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("encoding", ["url-pem", "der-base64", "traefik", "pem", "rfc9440"])
@_SETTINGS
@given(data=st.data())
def test_genuine_values_round_trip(encoding: str, data: st.DataObject) -> None:
    """The strict decoders still take every value the encoders (that is, proxies) write."""
    n = 1 if encoding == "rfc9440" else data.draw(st.integers(1, 2))
    fc = ForwardedCert(header="X-Cert", encoding=encoding, trusted_proxies=["127.0.0.1"])
    value = encode_forwarded(encoding, _CHAIN[:n])[0][1]
    got = fc.extract(Presented(peer="127.0.0.1", headers=(("x-cert", value),)))
    assert got is not None
    assert got.decode() == tuple(_CHAIN[:n])


# -- RFC 9440: the byte-sequence alphabet is checked in one pass -----------------------------
_SF_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _reference_sf_body(body: str) -> bool:
    """The character-by-character check the one-pass pattern replaced."""
    return bool(body) and all(c in _SF_ALPHABET for c in body)


@_SETTINGS
@given(
    body=st.one_of(
        st.text(alphabet=st.sampled_from("AZaz09+/=-_.:~ é\x00\n"), max_size=40),
        st.text(max_size=40),
    )
)
def test_rfc9440_alphabet_check_matches_reference(body: str) -> None:
    from mtlsauth._forwarded._formats import _sf_base64_body

    assert _sf_base64_body(body) == _reference_sf_body(body), body
