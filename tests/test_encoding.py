"""Strict decoding of certificate input."""

from __future__ import annotations

import pytest

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
