"""The strict DER reader: what it accepts is DER, what it refuses raises DERError only.

Also the property/fuzz test of the reader: arbitrary bytes and corrupted real certificates
never make it raise anything but ``DERError`` (a ``ValueError``), and what it reads from a
real certificate is what cryptography reads.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from unittest import mock

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.name import _ASN1Type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _x509_forge import resign
from mtlsauth import MTLSAuthError, _encoding
from mtlsauth._der import (
    MAX_INPUT,
    DERError,
    DERTruncated,
    certificate_names,
    decode_oid,
    encode_oid,
    header,
    item,
    read_name,
)
from mtlsauth._encoding import _der_length, chain_to_der, load_der
from mtlsauth._forwarded import _formats
from mtlsauth._forwarded._formats import check_certificate_shape, malformed
from mtlsauth._forwarded._verified import _STRING_TAGS, _der_name
from mtlsauth._names import _DER_STRINGS, _der_string
from mtlsauth._revocation._load import _tbs_version
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
    _names_agree_with_cryptography(_DER[:i] + noise + _DER[j:])


def _names_agree_with_cryptography(corrupted: bytes) -> None:
    """Only DERError from the reader; what it accepts is where cryptography finds the names."""
    _only_der_errors(corrupted)
    try:
        (i0, i1), (s0, s1) = certificate_names(corrupted)
    except DERError:
        return
    try:
        # A corrupted serial may be negative, which cryptography accepts with a warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(corrupted)
        issuer, subject = cert.issuer.public_bytes(), cert.subject.public_bytes()
    # TypeError: e.g. a BIT STRING value for another OID. KeyError: cryptography 45 reading a
    # value whose tag is no string type it knows (later releases raise ValueError).
    except (ValueError, TypeError, KeyError):
        return
    assert corrupted[i0:i1] == issuer
    assert corrupted[s0:s1] == subject


@pytest.mark.parametrize("tag", [0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x13, 0x1C])
def test_a_name_value_of_any_tag_is_read_where_cryptography_reads_it(tag: int) -> None:
    # The corruption CI's random run found: an issuer value's tag and OID zeroed. cryptography
    # 45 raises KeyError reading such a name; the comparison must not take that for a failure.
    intermediate = _CA.intermediate()
    leaf = intermediate.issue_client_cert(common_name="client").der
    forged = resign(
        leaf, intermediate.private_key, (b"\x0c\x06client", bytes([tag]) + b"\x06client")
    )
    assert certificate_names(forged)  # any tag: an AttributeValue is ANY
    _names_agree_with_cryptography(forged)
    # The issuer's first CN (the TBSCertificate names the issuer before the subject).
    zeroed = (b"\x06\x03\x55\x04\x03\x0c", b"\x06\x03\x00\x00\x00\x00")
    _names_agree_with_cryptography(resign(leaf, intermediate.private_key, zeroed))


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


# -- header, DERTruncated, decode_oid -------------------------------------------------------
def test_header_reads_past_the_window_and_item_does_not() -> None:
    data = b"\x30\x82\x01\x00" + b"a" * 10  # says 256 octets, holds 10
    assert header(data, 0, len(data)) == (0x30, 4, 260)
    with pytest.raises(DERTruncated) as caught:
        item(data, 0, len(data))
    assert (caught.value.tag, caught.value.start, caught.value.stop) == (0x30, 4, 260)


@pytest.mark.parametrize(
    "data", [b"\x30", b"\x30\x81\x05abcde", b"\x30\x82\x00\x80", b"\x30\x80", b"\x30\x84\x01"]
)
def test_header_is_as_strict_as_item_about_the_length_octets(data: bytes) -> None:
    with pytest.raises(DERError) as caught:
        header(data, 0, len(data))
    assert not isinstance(caught.value, DERTruncated)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "empty"),
        (b"\x2a\x86", "ends inside a sub-identifier"),
        (b"\x2a\x80\x01", "a leading zero octet"),
        (b"\x80\x2a", "a leading zero octet in the first arc"),
        (b"\x2a" + b"\xff" * 19 + b"\x01", "an arc over 133 bits"),
    ],
)
def test_decode_oid_refuses_what_is_not_der(content: bytes, why: str) -> None:
    with pytest.raises(DERError):
        decode_oid(content)


_ARC = st.integers(0, 2**127)


@_SETTINGS
@given(
    first=st.integers(0, 2),
    second=st.integers(0, 2**64),
    rest=st.lists(_ARC, max_size=6),
)
def test_decode_oid_inverts_encode_oid_and_agrees_with_cryptography(
    first: int, second: int, rest: list[int]
) -> None:
    if first < 2:
        second %= 40
    dotted = ".".join(str(a) for a in (first, second, *rest))
    assert decode_oid(encode_oid(dotted)) == dotted
    try:  # cryptography builds arcs under 2**128 and identifiers of bounded length only
        raw = x509.Name([x509.NameAttribute(x509.ObjectIdentifier(dotted), "x")]).public_bytes()
    except ValueError:
        return
    assert decode_oid(read_name(raw, 0, len(raw))[0][0][0]) == dotted


@_SETTINGS
@given(content=st.binary(max_size=64))
def test_decode_oid_raises_only_der_errors(content: bytes) -> None:
    try:
        decode_oid(content)
    except DERError:
        pass


# -- differential: the readers _der replaced, kept here as the reference ------------------
# Each old reader is copied as it was. The new ones must accept and refuse the same inputs
# with the same code and detail, except where an input is not DER (a length or an object
# identifier arc not in its shortest form): there the strict reader refuses it earlier.
def _old_der_length(data: bytes, pos: int, tag: int = 0x30) -> tuple[int, int]:
    if pos + 2 > len(data) or data[pos] != tag:
        raise malformed("not a DER certificate")
    first = data[pos + 1]
    if first < 0x80:
        return first, 2
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 2 + n > len(data):
        raise malformed("bad DER length")
    length = int.from_bytes(data[pos + 2 : pos + 2 + n], "big")
    return length, 2 + n


def _non_minimal_length_at(data: bytes, pos: int) -> bool:
    first = data[pos + 1]
    if first < 0x81:
        return False
    octets = data[pos + 2 : pos + 2 + (first & 0x7F)]
    return bool(octets) and (octets[0] == 0 or int.from_bytes(octets, "big") < 0x80)


def _outcome(call: Callable[[], object]) -> tuple[str, object]:
    try:
        return "ok", call()
    except MTLSAuthError as exc:
        return exc.code, str(exc)


def _mutations() -> st.SearchStrategy[bytes]:
    chain = b"".join(_LEAF.chain_der)
    return st.tuples(
        st.integers(0, len(chain)), st.integers(0, 8), st.binary(max_size=8), st.booleans()
    ).map(
        lambda t: (
            (chain if t[3] else _DER)[: t[0]] + t[2] + (chain if t[3] else _DER)[t[0] + t[1] :]
        )
    )


_LENGTH_PREFIXES = st.sampled_from(
    [b"\x30\x05", b"\x30\x81\x05", b"\x30\x81\x85", b"\x30\x82\x00\x05", b"\x30\x82\x01\x00",
     b"\x30\x84\x00\x00\x00\x05", b"\x30\x80", b"\x30\x85\x00\x00\x00\x00\x05", b"\x02\x01"]
)  # fmt: skip


@_SETTINGS
@given(
    data=st.one_of(
        _mutations(), st.tuples(_LENGTH_PREFIXES, st.binary(max_size=300)).map(b"".join)
    ),
    pos=st.integers(0, 8),
    tag=st.sampled_from([0x30, 0x02, 0x03, 0xA0]),
)
def test_der_length_differs_from_the_old_reader_only_on_non_der_lengths(
    data: bytes, pos: int, tag: int
) -> None:
    old = _outcome(lambda: _old_der_length(data, pos, tag))
    new = _outcome(lambda: _der_length(data, pos, tag))
    if old != new:
        assert old[0] == "ok"
        assert new == ("certificate_malformed", "bad DER length")
        assert _non_minimal_length_at(data, pos)


def _read_chain() -> tuple[bytes, ...]:
    ders = chain_to_der(_INPUT[0])
    for der in ders:
        check_certificate_shape(der)
        load_der(der)
    return ders


_INPUT: list[object] = [b""]


@_SETTINGS
@given(data=st.one_of(_mutations(), st.tuples(_LENGTH_PREFIXES, st.binary()).map(b"".join)))
def test_certificate_input_is_accepted_and_refused_as_by_the_old_reader(data: bytes) -> None:
    """DER request input (a chain of concatenated certificates, a forwarded header's value):
    the same certificates come out, or the same refusal; a non-DER length is refused with
    "bad DER length" where the old reader let cryptography refuse it a step later."""
    _INPUT[0] = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        new = _outcome(_read_chain)
        with (
            mock.patch.object(_encoding, "_der_length", _old_der_length),
            mock.patch.object(_formats, "_der_length", _old_der_length),
        ):
            old = _outcome(_read_chain)
    assert (old[0] == "ok") == (new[0] == "ok")
    assert old[0] == new[0]
    if old != new:
        assert new[1] == "bad DER length"


def _old_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > end:
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _old_oid(raw: bytes) -> str:
    if not raw or raw[-1] & 0x80:
        raise ValueError("bad OID")
    arcs: list[int] = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _old_der_name(data: bytes) -> x509.Name:
    try:
        tag, pos, end = _old_tlv(data, 0, len(data))
        if tag != 0x30 or end != len(data):
            raise ValueError("not a Name")
        rdns: list[x509.RelativeDistinguishedName] = []
        while pos < end:
            tag, spos, send = _old_tlv(data, pos, end)
            if tag != 0x31:
                raise ValueError("not a SET")
            attrs: list[x509.NameAttribute[str]] = []
            while spos < send:
                tag, apos, aend = _old_tlv(data, spos, send)
                otag, opos, oend = _old_tlv(data, apos, aend)
                vtag, vpos, vend = _old_tlv(data, oend, aend)
                if tag != 0x30 or otag != 0x06 or vend != aend or vtag not in _STRING_TAGS:
                    raise ValueError("bad attribute")
                raw = data[vpos:vend]
                text = raw.decode("utf-16-be" if vtag == 0x1E else "utf-8")
                oid = x509.ObjectIdentifier(_old_oid(data[opos:oend]))
                attrs.append(x509.NameAttribute(oid, text))
                spos = aend
            rdns.append(x509.RelativeDistinguishedName(attrs))
            pos = send
        return x509.Name(rdns)
    except (ValueError, IndexError, UnicodeDecodeError, TypeError):
        raise malformed("the load balancer's distinguished name is not a DER Name") from None


_STRICTNESS = {
    "long-form length for a short item",
    "length with a leading zero octet",
    "a sub-identifier with a leading zero octet",
}


def _strictness_refusal(data: bytes) -> str | None:
    """Why the strict reader refuses ``data`` where a lenient one reads it, if that is why."""
    try:
        rdns = read_name(data, 0, len(data))
        for rdn in rdns:
            for oid, _, _ in rdn:
                decode_oid(oid)
    except DERError as exc:
        return str(exc) if str(exc) in _STRICTNESS else None
    return None


_NAME_TYPES = st.sampled_from(
    [
        (x509.NameOID.COMMON_NAME, _ASN1Type.UTF8String),
        (x509.NameOID.ORGANIZATION_NAME, _ASN1Type.PrintableString),
        (x509.NameOID.EMAIL_ADDRESS, _ASN1Type.IA5String),
        (x509.NameOID.ORGANIZATIONAL_UNIT_NAME, _ASN1Type.BMPString),
        (x509.NameOID.LOCALITY_NAME, _ASN1Type.T61String),
        (x509.ObjectIdentifier("1.3.6.1.4.1.99999.7"), _ASN1Type.UTF8String),
        (x509.ObjectIdentifier("2.999.1"), _ASN1Type.UTF8String),
    ]
)
_ATTRIBUTE = st.tuples(_NAME_TYPES, st.text("abcXYZ 09.-", min_size=1, max_size=130)).map(
    lambda t: x509.NameAttribute(t[0][0], t[1], _type=t[0][1])
)
_NAMES = st.lists(
    st.lists(_ATTRIBUTE, min_size=1, max_size=2, unique=True).map(x509.RelativeDistinguishedName),
    max_size=4,
).map(lambda rdns: x509.Name(rdns).public_bytes())


@_SETTINGS
@given(raw=_NAMES, cut=st.integers(0, 400), drop=st.integers(0, 4), noise=st.binary(max_size=6))
def test_gcp_names_are_read_as_by_the_old_reader(
    raw: bytes, cut: int, drop: int, noise: bytes
) -> None:
    """The subject and issuer GCP sends in DER: the same Name, or the same refusal; the only
    difference is that a length or an OID arc not in its shortest form is now refused."""
    for data in (raw, raw[:cut] + noise + raw[cut + drop :]):
        old = _outcome(lambda data=data: _old_der_name(data))
        new = _outcome(lambda data=data: _der_name(data))
        if old != new:
            assert old[0] == "ok"
            assert new[0] == "certificate_malformed"
            assert _strictness_refusal(data) is not None
    assert _outcome(lambda: _der_name(raw))[0] == "ok"


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x81\x0a\x31\x08\x30\x06\x06\x01\x2a\x0c\x01a",  # outer length in long form
        b"\x30\x0b\x31\x09\x30\x07\x06\x02\x80\x2a\x0c\x01a",  # OID arc with a leading 0x80
    ],
)
def test_gcp_names_not_in_der_are_refused(data: bytes) -> None:
    assert _outcome(lambda: _old_der_name(data))[0] == "ok"  # the old reader took them
    with pytest.raises(MTLSAuthError, match="not a DER Name"):
        _der_name(data)


def _old_tbs_version(tbs: bytes) -> int:
    pos = 2 + (tbs[1] & 0x7F if tbs[1] & 0x80 else 0)
    if tbs[pos] != 0x02:
        return 0
    length = tbs[pos + 1]
    if length & 0x80 or length == 0:
        return -1
    return int.from_bytes(tbs[pos + 2 : pos + 2 + length], "big", signed=True)


@_SETTINGS
@given(
    version=st.one_of(
        st.none(), st.binary(min_size=0, max_size=3), st.binary(min_size=128, max_size=130)
    ),
    body=st.integers(0, 70000),
)
def test_the_crl_version_is_read_as_by_the_old_reader(version: bytes | None, body: int) -> None:
    """A TBSCertList (as cryptography hands it over, so DER): the same version, whether the
    field is absent (v1), short, empty or absurdly long, and however long the CRL is."""
    algorithm = b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b\x05\x00"
    field = b"" if version is None else b"\x02" + _len(len(version)) + version
    content_len = len(field) + len(algorithm) + body
    tbs = b"\x30" + _len(content_len) + field + algorithm  # the rest is never read
    assert _tbs_version(tbs) == _old_tbs_version(tbs)


def test_a_real_crl_is_version_2() -> None:
    crl = _CA.crl()
    parsed = x509.load_pem_x509_crl(crl.bytes()) if crl.bytes().startswith(b"-") else None
    assert parsed is not None
    assert _tbs_version(parsed.tbs_certlist_bytes) == 1


def _old_der_string(value: str, keyword: str) -> str:
    raw = bytes.fromhex(value[1:])
    tag, length, i = raw[0], raw[1] if len(raw) > 1 else -1, 2
    if length in (0x81, 0x82):
        n = length - 0x80
        length, i = int.from_bytes(raw[2 : 2 + n], "big"), 2 + n
    codec = _DER_STRINGS.get(tag)
    if codec is None or length != len(raw) - i:
        raise ValueError("not a DER string")
    return raw[i:].decode(codec)


_LENGTH_FORMS = st.sampled_from(["der", "81", "82", "83", "80", "none"])


@_SETTINGS
@given(
    tag=st.sampled_from([0x0C, 0x12, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E, 0x04, 0x1F]),
    content=st.one_of(st.binary(max_size=8), st.binary(min_size=127, max_size=300)),
    form=_LENGTH_FORMS,
)
def test_configured_hex_strings_are_read_as_by_the_old_reader_when_they_are_der(
    tag: int, content: bytes, form: str
) -> None:
    """``O=#0c03616263`` in a configured DN: a DER string reads as before; anything else (a
    length not in its shortest form, the tag alone, an indefinite length) is refused."""
    n = len(content)
    lengths = {
        "der": _len(n),
        "81": b"\x81" + bytes([n % 256]),
        "82": b"\x82" + n.to_bytes(2, "big"),
        "83": b"\x83",
        "80": b"\x80",
        "none": b"",
    }
    raw = bytes([tag]) + lengths[form] + (content if form != "none" else b"")
    value = "#" + raw.hex()
    der = bytes([tag]) + _len(n) + content
    try:
        new: object = _der_string(value, "O")
    except ValueError:
        new = ValueError
    if raw == der:
        try:
            old: object = _old_der_string(value, "O")
        except (ValueError, UnicodeDecodeError):
            old = ValueError
        assert new == old
    else:
        assert new is ValueError


def _with_outer_length(der: bytes, delta: int) -> bytes:
    """The certificate with its outer SEQUENCE length changed by ``delta`` (content kept)."""
    _, start, stop = header(der, 0, len(der))
    body = der[start:stop]
    length = len(body) + delta
    return b"\x30\x82" + length.to_bytes(2, "big") + body


@pytest.mark.parametrize("delta", [1, 2, 100, -1])
def test_certificate_shape_refuses_an_outer_length_that_does_not_fit_its_parts(delta: int) -> None:
    """The outer length must equal the three parts exactly: one too large claims bytes the
    certificate does not have, one too small cuts the signature."""
    der = _DER
    assert der[:2] == b"\x30\x82"  # a certificate of 256..65535 bytes
    check_certificate_shape(der)
    with pytest.raises(MTLSAuthError) as info:
        check_certificate_shape(_with_outer_length(der, delta))
    assert info.value.code == "certificate_malformed"
