"""The XFCC decoder's fast paths give exactly what the general readers give.

``parse_xfcc`` jumps between delimiters with ``find`` and ``re``, ``decode_element``
decodes a ``Chain`` that starts with its ``Cert`` without decoding that certificate twice,
and ``url_pem`` reads the spelling nginx and Envoy write without the strict decoder's
passes; each is checked here against a straightforward reference reader, over real values,
the same values cut and corrupted, and arbitrary text.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlsauth import MTLSAuthError
from mtlsauth._forwarded._formats import (
    _url_pem_fast,
    _url_pem_strict,
    malformed,
    url_pem,
)
from mtlsauth._forwarded._formats import _url_pem_strict as reference_url_pem
from mtlsauth._forwarded._xfcc import (
    XFCCElement,
    _element,
    _select_fast,
    decode_element,
    parse_xfcc,
    select_element,
)
from mtlsauth.testing import CA
from mtlsauth.testing._encode import der_to_pem, encode_element

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_CHAIN = CA().intermediate().issue_client_cert(common_name="xfcc").chain_der
_REAL = encode_element(_CHAIN, subject='CN=a \\"b\\",O=Acme\\, Inc.', uris=["spiffe://x/y"])
_PLAIN = encode_element(_CHAIN, subject="CN=xfcc,O=Acme", uris=["spiffe://x/y"], dns=["a.b"])
_grammar = st.text(alphabet=st.sampled_from('=;,"\\ \tABab09%é{-'), max_size=80)


def _reference_quoted(text: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return text[start:i], i + 1
        i += 1
    raise ValueError("unterminated")


def _reference_parse(text: str) -> list[list[tuple[str, str]]]:
    """The per-character reader the fast parser replaced (same grammar, same refusals)."""
    if text.lstrip(" \t")[:1] in ("[", "{"):
        raise ValueError("json")
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if pairs:
            if i >= n:
                elements.append(pairs)
                return elements
            if text[i] == ",":
                elements.append(pairs)
                pairs = []
                i += 1
                continue
        eq = i
        while eq < n and text[eq] not in '=;,"':
            eq += 1
        key = text[i:eq].lower()
        if eq >= n or text[eq] != "=" or not key or not key.isascii() or not key.isalnum():
            raise ValueError("pair")
        i = eq + 1
        # URI and DNS values Envoy writes unquoted and untrimmed: a quoted or blank-padded
        # one is kept under the key with '"' appended, so that it is never read as the SAN.
        marked = key + '"' if key in ("uri", "dns") else key
        if i < n and text[i] == '"':
            value, i = _reference_quoted(text, i + 1)
            key = marked
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] not in ";,":
                raise ValueError("after quote")
        else:
            end = i
            while end < n and text[end] not in ";,":
                if text[end] == '"':
                    raise ValueError("stray quote")
                end += 1
            if key in ("cert", "chain"):
                raise ValueError("unquoted cert or chain")
            value, i = text[i:end].strip(" \t"), end
            if len(value) != end - eq - 1:
                key = marked
        pairs.append((key, value))
        if i >= n:
            elements.append(pairs)
            return elements
        sep = text[i]
        i += 1
        if sep == ",":
            elements.append(pairs)
            pairs = []


def _same_parse(text: str) -> None:
    try:
        want: object = _reference_parse(text)
    except ValueError:
        want = "refused"
    try:
        got: object = parse_xfcc(text)
    except MTLSAuthError as exc:
        got = "refused" if exc.code == "certificate_malformed" else exc.code
    assert got == want, text
    for index in (-1, 0, 1, 2, -2, -4):
        _same_select(text, index, want)


def _same_select(text: str, index: int, elements: object) -> None:
    """The fast selection gives the reader's element, or leaves the header to the reader."""
    fast = _select_fast(text, index)
    if fast is not None:
        assert isinstance(elements, list), text
        assert fast == elements[index], (text, index)
    try:
        want: object = _element(elements[index]) if isinstance(elements, list) else "refused"
    except IndexError:
        want = "refused"
    except MTLSAuthError as exc:
        want = exc.detail
    try:
        got: object = select_element(text, index)
    except MTLSAuthError as exc:
        got = "refused" if "fewer elements" in exc.detail or want == "refused" else exc.detail
    assert got == want, (text, index)


def test_real_value_parses_as_before() -> None:
    _same_parse(_REAL)
    _same_parse(",".join([_REAL, _REAL, _REAL]))
    _same_parse(",".join([_PLAIN, _REAL, _PLAIN]))
    three = ",".join([_PLAIN, _PLAIN, _PLAIN.replace("URI=", "URI=spiffe://other;URI=")])
    _same_parse(three)
    # the fast selection takes Envoy's own spelling (else the tests compare nothing)
    for index in (-1, 0, 2):
        assert _select_fast(three, index) == parse_xfcc(three)[index]
    assert ("uri", "spiffe://other") in (_select_fast(three, -1) or [])
    assert parse_xfcc('Subject="a\\\\";URI=x') == [[("subject", "a\\\\"), ("uri", "x")]]


@pytest.mark.parametrize(
    "text",
    [
        'a=b"c=d',
        'a="b"c=d',
        'a="b" ;c=d',
        'a="b" ,c=d',
        'a="b\\"c";d=e',
        'a="b\\',
        'a="b\\\\";c=d',
        "a=b;",
        "a=b; ",
        "a=b;,c=d",
        "a=b,",
        "a=b,,c=d",
        "=b",
        " a =b",
        "a b=c",
        "a=b=c;d=e",
        "a=",
        "a=;b=",
        'a=""',
        'a="x;y,z=w"',
        "[a=b]",
        " {",
        "A=b;A=c",
        "a\n=b",
        "Cert=x",
        "a=b,cert=x",
        "a=b;CHAIN=x;c=d",
        "xcert=y;chainx=z",
        'cert="x",chain="y"',
        'a=b,c="d";e=f,g="h"',
        'a="x\\",b="y"',
        'a="x\\";b="y"',
        'a="x\\\\",b="y"',
        'a=b;{="x"',
        'a=b;k-y="x"',
        'a= "x";b=c',
        'a="x",b= "y"',
        'a=b, c="x"',
        "a= b \t;c=d ,e=\tf",
        "a=\x7f",
        "a=\x00",
        "a=é",
        'a="é";b=c',
        'a="b\nc";d=e',
        "é=b",
        "a=b\n;c=d",
        'a="b\nc"',
    ],
)
def test_parse_matches_reference_on_edge_cases(text: str) -> None:
    _same_parse(text)


@_SETTINGS
@given(text=st.one_of(_grammar, st.text(max_size=60)))
def test_parse_matches_reference_on_any_text(text: str) -> None:
    _same_parse(text)


@_SETTINGS
@given(data=st.data())
def test_parse_matches_reference_on_corrupted_values(data: st.DataObject) -> None:
    value = ",".join(data.draw(st.lists(st.sampled_from([_REAL, _PLAIN]), min_size=1, max_size=3)))
    i = data.draw(st.integers(0, len(value)))
    j = data.draw(st.integers(i, min(len(value), i + 40)))
    _same_parse(value[:i] + data.draw(_grammar) + value[j:])


def _reference_decode(element: XFCCElement) -> list[bytes]:
    cert = reference_url_pem(element.cert) if element.cert else None
    if cert is not None and len(cert) != 1:
        raise malformed("x-forwarded-client-cert Cert holds more than one certificate")
    chain = reference_url_pem(element.chain) if element.chain else None
    if chain is not None and cert is not None and chain[0] != cert[0]:
        raise malformed("x-forwarded-client-cert Chain does not start with its Cert")
    ders = chain if chain is not None else cert
    if not ders:
        raise malformed("x-forwarded-client-cert element has no certificate")
    return ders


def _same_decode(cert: str | None, chain: str | None) -> None:
    element = XFCCElement(cert=cert, chain=chain)
    try:
        want: object = _reference_decode(element)
    except MTLSAuthError as exc:
        want = (exc.code, exc.detail)
    try:
        got: object = decode_element(element)
    except MTLSAuthError as exc:
        got = (exc.code, exc.detail)
    assert got == want, (cert, chain)


def test_chain_that_starts_with_its_cert_decodes_as_a_whole() -> None:
    cert = quote(der_to_pem(_CHAIN[0]), safe="")
    rest = quote(der_to_pem(_CHAIN[1]), safe="")
    for c, ch in [
        (cert, cert + rest),
        (cert, cert + "%20%0A"),  # whitespace after the Cert: one certificate
        (cert, cert + "%0A" + rest),
        (cert, cert + "junk"),
        (cert, cert + rest[:-9]),
        (cert, cert + rest + cert),
        (cert + "%0A", cert + "%0A" + rest),
        (cert[:-3], cert + rest),  # a Cert without its final LF
        (cert[:-3], cert[:-3] + rest),  # ... and no LF between the blocks of the Chain
        (cert[:-3] + "%0a", cert[:-3] + "%0a" + rest),
        (cert[:-1], cert + rest),  # a Cert cut inside an escape
        (cert, cert + "-----" + rest),
        (cert[:-5], cert[:-5] + "-" + rest),
        (cert + cert, cert + cert + rest),
    ]:
        _same_decode(c, ch)


@_SETTINGS
@given(data=st.data())
def test_decode_matches_reference_on_spliced_chains(data: st.DataObject) -> None:
    cert = quote(der_to_pem(_CHAIN[0]), safe="")
    chain = cert + quote(der_to_pem(_CHAIN[1]), safe="")
    i = data.draw(st.integers(len(cert) - 40, len(chain)))
    j = data.draw(st.integers(i, min(len(chain), i + 12)))
    noise = data.draw(st.text(alphabet=st.sampled_from("%0aAFf2B3D-\n "), max_size=8))
    cut = data.draw(st.integers(len(cert) - 30, len(cert)))
    _same_decode(cert[:cut] if data.draw(st.booleans()) else cert, chain[:i] + noise + chain[j:])


# -- url_pem: the fast path is the strict decoder, for the spelling it reads ----------------
def _outcome(decode, value: str) -> object:
    try:
        return decode(value)
    except MTLSAuthError as exc:
        return (exc.code, exc.detail)


def _same_url_pem(value: str) -> None:
    """The fast path gives what the strict decoder gives, or leaves the value to it."""
    want = _outcome(_url_pem_strict, value)
    fast = _url_pem_fast(value)
    if fast is not None:
        assert fast == want, value
    assert _outcome(url_pem, value) == want, value


_PEM_NOISE = st.text(alphabet=st.sampled_from("%0aAbBdDfF2357=+/-_.~ \n\t\r"), max_size=8)


def _escaped(ders: list[bytes], *, safe: str = "", lower: bool = False, lf: bool = True) -> str:
    text = "".join(der_to_pem(d) for d in ders)
    value = quote(text if lf else text[:-1], safe=safe)
    if lower:
        value = "".join(
            c.lower() if i > 0 and "%" in value[i - 2 : i] else c for i, c in enumerate(value)
        )
    return value


def test_url_pem_fast_path_reads_the_common_spellings() -> None:
    # nginx and Envoy (everything escaped, upper-case hex), lower-case hex, no final LF:
    # the fast path must take these, or the differential tests below compare nothing.
    for value in [
        _escaped([_CHAIN[0]]),
        _escaped(list(_CHAIN)),
        _escaped(list(_CHAIN), lower=True),
        _escaped([_CHAIN[0]], lf=False),
    ]:
        assert _url_pem_fast(value) == _url_pem_strict(value)
        assert _url_pem_fast(value) is not None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v,
        lambda v: v.replace("%0A", "%0a", 1),
        lambda v: v.replace("%2B", "%2b"),
        lambda v: v.replace("%0A", "%0A%0A", 2),  # a blank line after BEGIN
        lambda v: v.replace("%0A-----END", "%0A%0A-----END"),  # a blank line before END
        lambda v: v.replace("%0A", "", 2),  # a 128-character line
        lambda v: v.replace("%0A", "%0D%0A"),
        lambda v: v.replace("%0A", "%20%0A", 3),
        lambda v: v.replace("%20", " "),
        lambda v: v.replace("%0A", "\n"),
        lambda v: v.replace("%3D", "="),  # raw padding, as AWS ALB writes it
        lambda v: v.replace("%2B", "+").replace("%2F", "/"),
        lambda v: v.replace("A", "%41", 1),  # an escaped letter: no proxy writes it
        lambda v: v.replace("-", "%2D", 1),
        lambda v: v.replace("%2B", "%2", 1),
        lambda v: v.replace("%2B", "%%2B", 1),
        lambda v: v.replace("%2B", "=2B", 1),
        lambda v: v.replace("%0A", "=%0A", 1),
        lambda v: v + "%0A",
        lambda v: v + "%0A%0A",
        lambda v: v + "%",
        lambda v: v + "=",
        lambda v: v + "A",
        lambda v: v[:-3] + "A",
        lambda v: v + "%0AA",
        lambda v: v + "-",
        lambda v: v[:-3],
        lambda v: v[:-4],
        lambda v: v[:-30],
        lambda v: v + v,
        lambda v: v + "%0A" + v,
        lambda v: v[:-3] + v,  # no LF between two blocks
        lambda v: v[:-3] + "A" + v,
        lambda v: v[:-3] + "%20" + v,
        lambda v: quote(der_to_pem(bytes(48)), safe=""),  # a last line of exactly 64
        lambda v: quote(der_to_pem(bytes(48)).replace("\n-----END", "\n\n-----END"), safe=""),
        lambda v: quote(der_to_pem(bytes(96)).replace("\n", "\n\n", 2)[:-1], safe=""),
        lambda v: v.replace("CERTIFICATE", "X509 CRL", 1),
        lambda v: v.replace("CERTIFICATE-----%0A", "CERTIFICATE-----%0A%3D%3D%3D%3D", 1),
        lambda v: "%0A" + v,
        lambda v: v.replace("M", "é", 1),
        lambda v: v.replace("%0AM", "%0A%C3%A9M", 1),
        lambda v: v.replace("%0A", "%0A ", 1),
        lambda v: "",
        lambda v: "%0A",
        lambda v: "-----BEGIN%20CERTIFICATE-----%0A%0A-----END%20CERTIFICATE-----%0A",
        lambda v: "-----BEGIN%20CERTIFICATE-----%0A-----END%20CERTIFICATE-----%0A",
        lambda v: "-----BEGIN%20CERTIFICATE-----%0A%0A%0A-----END%20CERTIFICATE-----%0A",
    ],
)
def test_url_pem_fast_path_matches_strict_on_edge_cases(mangle) -> None:
    for value in (_escaped([_CHAIN[0]]), _escaped(list(_CHAIN)), _escaped([_CHAIN[1]], lf=False)):
        _same_url_pem(mangle(value))


@_SETTINGS
@given(
    blobs=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=3),
    safe=st.sampled_from(["", "+=/"]),
    lower=st.booleans(),
    lf=st.booleans(),
)
def test_url_pem_fast_path_matches_strict_on_any_length(
    blobs: list[bytes], safe: str, lower: bool, lf: bool
) -> None:
    # Every length of the last base64 line and of padding, not only certificates' own.
    _same_url_pem(_escaped(blobs, safe=safe, lower=lower, lf=lf))


_BLOB = (st.sampled_from([48, 96, 47, 49]) | st.integers(0, 120)).flatmap(
    lambda n: st.binary(min_size=n, max_size=n)
)  # 48 bytes: one base64 line of exactly 64 characters


@_SETTINGS
@given(blobs=st.lists(_BLOB, min_size=1, max_size=2), data=st.data())
def test_url_pem_fast_path_matches_strict_on_any_layout(
    blobs: list[bytes], data: st.DataObject
) -> None:
    # PEM laid out in lines of any length, blank lines included, then escaped as nginx does.
    blocks = []
    for blob in blobs:
        body = base64.b64encode(blob).decode("ascii")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]  # as OpenSSL writes it
        if data.draw(st.booleans()):  # or any other layout
            widths = st.sampled_from([64, 63, 65]) | st.integers(1, 70)
            lines = [""] * data.draw(st.integers(0, 1))
            while body:
                width = data.draw(widths)
                lines.append(body[:width])
                body = body[width:]
                lines += [""] * (data.draw(st.integers(0, 7)) // 7)
        lines += [""] * (data.draw(st.integers(0, 3)) // 3)  # a blank line before END
        blocks.append(
            "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----"
        )
    seps = st.sampled_from(["\n", "", "\n\n", " \n", "\nA", "A", " ", "-"])
    text = "".join(b + data.draw(seps) for b in blocks[:-1]) + blocks[-1]
    text += data.draw(st.sampled_from(["\n", "", "\n\n", "A", "\nA"]))
    _same_url_pem(quote(text, safe=""))


@_SETTINGS
@given(data=st.data())
def test_url_pem_fast_path_matches_strict_on_corrupted_values(data: st.DataObject) -> None:
    value = _escaped(list(_CHAIN), lower=data.draw(st.booleans()))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(value)))
        j = data.draw(st.integers(i, min(len(value), i + 6)))
        value = value[:i] + data.draw(_PEM_NOISE) + value[j:]
    _same_url_pem(value)


@_SETTINGS
@given(text=st.text(alphabet=st.sampled_from("%0aAFf23D=+/-\n BEGINCRTFA"), max_size=80))
def test_url_pem_fast_path_matches_strict_on_any_text(text: str) -> None:
    _same_url_pem(text)
    _same_url_pem("-----BEGIN%20CERTIFICATE-----%0A" + text)


# -- what Envoy never writes is refused -------------------------------------------------------
def _xfcc_verifier():
    from mtlsauth import ForwardedCert, Verifier

    root = CA()
    cert = root.issue_client_cert(common_name="envoy-client")
    fwd = ForwardedCert.preset("envoy", trusted_proxies=["10.0.0.1"])
    return Verifier(trust_store=root.trust_store(), forwarded=fwd), cert


def _present(value: str):
    from mtlsauth import Presented

    return Presented(peer="10.0.0.1", headers=(("x-forwarded-client-cert", value),))


def test_envoy_spelling_is_accepted() -> None:
    verifier, cert = _xfcc_verifier()
    value = encode_element(cert.chain_der)
    assert verifier.authenticate(_present(value)).common_name == "envoy-client"


@pytest.mark.parametrize(
    "mangle",
    [
        # Envoy writes the Hash in lower-case hex
        lambda v: v.replace(v.split("Hash=")[1][:64], v.split("Hash=")[1][:64].upper()),
        # Envoy always quotes Cert and Chain
        lambda v: v.replace('Cert="', "Cert=").replace('";Chain', ";Chain"),
        lambda v: (
            v.replace('Chain="', "Chain=").rstrip('"')
            if v.endswith('"')
            else v.replace('Chain="', "Chain=")
        ),
        # no space around '='
        lambda v: v.replace("Cert=", "Cert ="),
        lambda v: v.replace("Hash=", "Hash\t="),
    ],
    ids=["upper-case hash", "unquoted cert", "unquoted chain", "space before =", "tab before ="],
)
def test_what_envoy_never_writes_is_malformed(mangle) -> None:
    verifier, cert = _xfcc_verifier()
    value = encode_element(cert.chain_der)
    mangled = mangle(value)
    assert mangled != value
    with pytest.raises(MTLSAuthError) as info:
        verifier.authenticate(_present(mangled))
    assert info.value.code == "certificate_malformed"
