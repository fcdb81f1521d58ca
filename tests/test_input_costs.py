"""What an input costs is bounded by a size limit, refused with its code before any reading.

No wall-clock thresholds here: each test asserts that an input over a limit is refused with
the right code and that the work that scales with its size (the strict leaf reading, the
SAN walk, the path builder) never ran.
"""

from __future__ import annotations

import base64
import datetime as dt
import sys
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

import mtlsauth._verifier as verifier_module
from mtlsauth import CertificateInvalid, ForwardedCert, Presented, Verifier
from mtlsauth._encoding import MAX_LEAF_BYTES
from mtlsauth._revocation import _http
from mtlsauth.testing import CA

PROXY = "10.0.0.1"


def _leaf(issuer: CA, signer: ec.EllipticCurvePrivateKey, sans: int) -> bytes:
    """A client certificate naming ``issuer`` with ``sans`` DNS names, signed by ``signer``."""
    now = dt.datetime.now(dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "client")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"h{i}.example") for i in range(sans)]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.private_key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every leaf the verifier started to read."""
    seen: list[bytes] = []
    real = verifier_module.read_leaf

    def counting(der: bytes) -> object:
        seen.append(der)
        return real(der)

    monkeypatch.setattr(verifier_module, "read_leaf", counting)
    return seen


@pytest.mark.parametrize("signed", [False, True], ids=["forged", "ca_signed"])
def test_a_leaf_over_the_size_limit_is_refused_before_it_is_read(
    ca: CA, reads: list[bytes], signed: bool
) -> None:
    # Thousands of names cost a walk per name (and the verifier's own parse) before any
    # signature says whether the certificate is genuine: one header of 64 KB held some
    # 20 000 of them and cost about 27 genuine verifications.
    signer = ca.private_key if signed else ec.generate_private_key(ec.SECP256R1())
    der = _leaf(ca, signer, 2000)  # type: ignore[arg-type]
    assert len(der) > MAX_LEAF_BYTES
    verifier = Verifier(trust_store=ca.trust_store())
    with pytest.raises(CertificateInvalid) as info:
        verifier.verify(der)
    assert info.value.code == "certificate_malformed"
    assert "too large" in info.value.detail
    assert reads == []
    # The same through a forwarded header, and as a what-if verification.
    fwd = ForwardedCert(header="X-Client-Cert", encoding="der-base64", trusted_proxies=[PROXY])
    verifier = Verifier(trust_store=ca.trust_store(), forwarded=fwd)
    value = base64.b64encode(der).decode("ascii")
    with pytest.raises(CertificateInvalid) as info:
        verifier.authenticate(Presented(peer=PROXY, headers=(("x-client-cert", value),)))
    assert info.value.code == "certificate_malformed"
    with pytest.raises(CertificateInvalid) as info:
        verifier.verify(der, at=dt.datetime.now(dt.timezone.utc))
    assert info.value.code == "certificate_malformed"
    assert reads == []


def test_a_leaf_with_many_names_under_the_limit_still_verifies(ca: CA) -> None:
    der = _leaf(ca, ca.private_key, 400)  # type: ignore[arg-type]
    assert 4096 < len(der) <= MAX_LEAF_BYTES
    identity = Verifier(trust_store=ca.trust_store()).verify(der)
    assert len(identity.dns_names) == 400


# --- answers read from the network ----------------------------------------------------------


class _Dribble:
    """A connection handing over a response in the pieces given, then the end of the stream."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = iter(pieces)

    def recv(self, what: str) -> bytes:
        return next(self._pieces, b"")


def _calls(fn: Callable[[], object]) -> tuple[int, object]:
    """How many Python and C functions ``fn`` called (its work, whatever it does), and its
    result or the exception it raised."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        result: object = fn()
    except Exception as exc:  # noqa: BLE001 - the outcome is compared by the caller
        result = exc
    finally:
        sys.setprofile(None)
    return count, result


_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_chunked_answer_arriving_in_pieces_is_read_once() -> None:
    # Every piece that ended in an empty line re-read the whole body from its start: 10 000
    # chunks followed by 10 000 four-octet pieces took a minute of CPU, inside the deadline
    # an OCSP responder (or anyone on the plain-HTTP path to it) is given.
    chunks, pieces = 2000, 2000
    head = [_CHUNKED_HEAD + b"1\r\nx\r\n" * chunks + b"zz\r\n\r\n"]
    count, result = _calls(lambda: _http._read_response(_Dribble(head + [b"\r\n\r\n"] * pieces)))
    assert isinstance(result, _http._Failure)
    assert "malformed chunked body" in str(result)
    assert count < 40 * (chunks + pieces)  # linear; re-reading made it chunks x pieces


def test_a_chunked_answer_in_one_octet_pieces_is_read_linearly_and_whole() -> None:
    body = b"".join(b"%x\r\n%s\r\n" % (n, bytes([65 + n % 26]) * n) for n in range(1, 60))
    wire = _CHUNKED_HEAD + body + b"0\r\n\r\n"
    count, result = _calls(
        lambda: _http._read_response(_Dribble([wire[i : i + 1] for i in range(len(wire))]))
    )
    assert result == b"".join(bytes([65 + n % 26]) * n for n in range(1, 60))
    assert count < 40 * len(wire)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 60000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n",  # headers that never end
    ],
    ids=["body", "headers"],
)
def test_an_answer_in_one_octet_pieces_costs_linear_work(head: bytes) -> None:
    pieces = [head] + [b"a"] * 20000
    count, result = _calls(lambda: _http._read_response(_Dribble(pieces)))
    assert isinstance(result, _http._Failure)
    assert count < 40 * len(pieces)


def test_a_chunk_larger_than_any_answer_is_refused_at_its_size_line() -> None:
    pieces = [_CHUNKED_HEAD + b"100000\r\n"] + [b"a" * 1000] * 200
    count, result = _calls(lambda: _http._read_response(_Dribble(pieces)))
    assert isinstance(result, _http._Failure)
    assert "too large" in str(result)
    assert count < 400  # refused before the pieces were waited for
