"""Strict decoding of certificate input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlsauth import CertificateInvalid
from mtlsauth._encoding import b64decode_strict, chain_to_der, pem_to_der_list, split_der
from mtlsauth.testing import CA


@pytest.fixture(scope="module")
def chain() -> tuple[bytes, ...]:
    return CA().intermediate().issue_client_cert().chain_der


def test_split_der_by_length(chain: tuple[bytes, ...]) -> None:
    assert tuple(split_der(b"".join(chain))) == chain
    assert split_der(chain[0]) == [chain[0]]


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x31\x00", id="not a SEQUENCE"),
        pytest.param(b"\x30", id="no length"),
        pytest.param(b"\x30\x80", id="indefinite length"),
        pytest.param(b"\x30\x85\x00\x00\x00\x00\x01", id="5-byte length"),
        pytest.param(b"\x30\x82\x10\x00abc", id="length past the end"),
        pytest.param(b"\x30\x00" * 17, id="too many certificates"),
    ],
)
def test_split_der_refuses(blob: bytes) -> None:
    with pytest.raises(CertificateInvalid) as info:
        split_der(blob)
    assert info.value.code == "certificate_malformed"


def test_pem_tolerates_text_only_in_bundles(chain: tuple[bytes, ...]) -> None:
    import base64

    pem = (
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(chain[0])
        + b"-----END CERTIFICATE-----\n"
    )
    assert pem_to_der_list(b"subject=CN=x\n" + pem, allow_text=True) == [chain[0]]
    with pytest.raises(CertificateInvalid):
        pem_to_der_list(b"subject=CN=x\n" + pem)
    with pytest.raises(CertificateInvalid, match="mismatched"):
        pem_to_der_list(pem.replace(b"END CERTIFICATE", b"END X509 CRL"))


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("aGVsbG8=", True),
        ("aGVs bG8=\n", True),
        ("aGVsbG8", False),
        ("a*b=", False),
        ("", False),
        ("é", False),
    ],
)
def test_b64decode_strict(text: str, ok: bool) -> None:
    if ok:
        assert b64decode_strict(text) == b"hello"
    else:
        with pytest.raises(CertificateInvalid):
            b64decode_strict(text)


def test_chain_to_der_shapes(chain: tuple[bytes, ...]) -> None:
    assert chain_to_der(None) == ()
    assert chain_to_der([]) == ()
    assert chain_to_der(bytearray(chain[0])) == (chain[0],)
    assert chain_to_der(memoryview(b"".join(chain))) == chain
    with pytest.raises(CertificateInvalid):
        chain_to_der({chain[0]})


def _outcome(value: object) -> object:
    try:
        return chain_to_der(value)
    except CertificateInvalid as exc:
        return (type(exc), exc.code, exc.detail)


_CHAIN = CA().intermediate().issue_client_cert().chain_der


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=64).map(lambda b: b"\x30" + b),
        st.builds(
            lambda parts, cut, tail: b"".join(parts)[:cut] + tail,
            st.lists(st.sampled_from(_CHAIN), min_size=1, max_size=3),
            st.integers(0, 4000),
            st.sampled_from([b"", b"\x00", b" ", b"\n", b"\x30\x00", b"-----BEGIN"]),
        ),
        st.builds(lambda n: b"\x30\x00" * n, st.integers(1, 20)),
    )
)
def test_der_bytes_take_the_short_way_to_the_same_answer(data: bytes) -> None:
    """DER ``bytes`` skip the PEM scan: the same certificates or the same refusal as the
    general path (a ``bytearray`` of the same octets takes it), alone or in a sequence."""
    assert _outcome(data) == _outcome(bytearray(data))
    assert _outcome([data, _CHAIN[1]]) == _outcome([bytearray(data), bytearray(_CHAIN[1])])


def _reference_split(data: bytes) -> object:
    """Concatenated DER split with the general strict reader, the way ``split_der`` does
    when its shortcut for one certificate does not apply."""
    from mtlsauth import _der
    from mtlsauth._der import DERError

    out = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data) or data[pos] != 0x30:
            return "malformed"
        try:
            _, _, stop = _der.header(data, pos, len(data))
        except DERError:
            return "malformed"
        if stop > len(data):
            return "malformed"
        out.append(data[pos:stop])
        pos = stop
        if len(out) > 16:
            return "malformed"
    return out or "malformed"


@settings(max_examples=400, deadline=None)
@given(
    data=st.one_of(
        st.builds(
            lambda head, body, cut: (head + body)[:cut],
            st.sampled_from([b"\x30\x82\x01\x00", b"\x30\x82\x00\xff", b"\x30\x82\x01\x04"]),
            st.binary(min_size=250, max_size=262),
            st.integers(250, 270),
        ),
        st.sampled_from([*_CHAIN, b"".join(_CHAIN), _CHAIN[0] + b"\x00", _CHAIN[0][:-1]]),
    )
)
def test_one_certificate_is_split_as_the_general_reader_splits_it(data: bytes) -> None:
    try:
        got: object = split_der(data)
    except CertificateInvalid as exc:
        got = "malformed" if exc.code == "certificate_malformed" else exc.code
    assert got == _reference_split(data)


def test_subclasses_and_look_alikes_read_as_before() -> None:
    """``chain_to_der`` settles a list or tuple first: subclasses of list, tuple, str and
    bytes read as the plain types do (a class cannot be both a sequence and text, nor
    subclass a certificate), and objects that only behave like sequences, iterators and
    mappings are refused, never iterated into a chain."""
    from collections import UserList, namedtuple
    from collections.abc import Sequence

    from cryptography import x509

    ca = CA()
    leaf = ca.issue_client_cert(common_name="svc")
    der, pem = leaf.der, leaf.cert_pem.text()
    want = (der,)

    class L(list):  # type: ignore[type-arg]
        pass

    class T(tuple):  # type: ignore[type-arg]
        pass

    class S(str):
        pass

    class B(bytes):
        pass

    class Lying(list):  # type: ignore[type-arg]
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([der])

    class Seq(Sequence):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i):  # type: ignore[no-untyped-def]
            if i:
                raise IndexError
            return der

    pair = namedtuple("pair", "leaf")
    for chain in (L([der]), T([pem]), pair(der), S(pem), B(der), [S(pem)], (B(der),)):
        assert chain_to_der(chain) == want, type(chain)
    assert chain_to_der(Lying(["not read"])) == want  # read once, by iteration, as before
    assert chain_to_der(x509.load_der_x509_certificate(der)) == want
    for odd in (Seq(), UserList([der]), iter([der]), (d for d in [der]), {der: 1}, 3):
        with pytest.raises(CertificateInvalid) as refused:
            chain_to_der(odd)
        assert refused.value.code == "certificate_malformed"
