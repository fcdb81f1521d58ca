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
from _x509_forge import assemble, split, tlv
from mtlsauth import CertificateInvalid, ForwardedCert, Presented, Verifier
from mtlsauth._der import item as der_item
from mtlsauth._encoding import MAX_LEAF_BYTES
from mtlsauth._revocation import _http
from mtlsauth.testing import CA

PROXY = "10.0.0.1"


def _with_issuer(der: bytes, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey) -> bytes:
    """``der`` naming ``issuer``, signed again by ``signer``."""
    tbs, alg, _ = split(der)
    parts = []
    _, pos, end = der_item(tbs, 0, len(tbs))
    while pos < end:
        _, _, stop = der_item(tbs, pos, end)
        parts.append(tbs[pos:stop])
        pos = stop
    parts[3] = issuer.public_bytes()
    body = tlv(0x30, b"".join(parts))
    return assemble(body, alg, signer.sign(body, ec.ECDSA(hashes.SHA256())))


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
    der = _leaf(ca, signer, 3000)  # type: ignore[arg-type]
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


# --- keys a client chooses ------------------------------------------------------------------


def _int(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _rsa_spki(n: int, e: int) -> bytes:
    alg = tlv(0x30, b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00")
    return tlv(0x30, alg + tlv(0x03, b"\x00" + tlv(0x30, _int(n) + _int(e))))


def _with_spki(cert: x509.Certificate, spki: bytes, signer: ec.EllipticCurvePrivateKey) -> bytes:
    """``cert`` with its subjectPublicKeyInfo replaced, signed again by ``signer``."""
    tbs, alg, _ = split(cert.public_bytes(Encoding.DER))
    parts = []
    _, pos, end = der_item(tbs, 0, len(tbs))
    while pos < end:
        _, _, stop = der_item(tbs, pos, end)
        parts.append(tbs[pos:stop])
        pos = stop
    parts[6] = spki
    body = tlv(0x30, b"".join(parts))
    return assemble(body, alg, signer.sign(body, ec.ECDSA(hashes.SHA256())))


def _ca_cert(
    subject: x509.Name, issuer: x509.Name, signer: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(signer.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(signer, hashes.SHA256())
    )


_N_2048 = (1 << 2047) | int.from_bytes(b"\x5a" * 255, "big") | 1  # odd, 2048 bits
_N_9000 = (1 << 8999) | int.from_bytes(b"\x5a" * 1124, "big") | 1


@pytest.mark.parametrize(
    ("n", "e"),
    [(_N_2048, (1 << 2000) | 0x10001), (_N_9000, 0x10001)],
    ids=["huge_exponent", "huge_modulus"],
)
@pytest.mark.parametrize("shape", ["look_alike", "self_issued"])
def test_a_presented_ca_whose_key_is_costly_to_use_checks_no_signature(
    ca: CA, monkeypatch: pytest.MonkeyPatch, n: int, e: int, shape: str
) -> None:
    # A signature check with an RSA key of a 2000-bit public exponent costs as much as a
    # private-key operation, about 20 genuine verifications (and a client may present
    # several such CAs); one with a 9000-bit modulus several. A client's CA is used to check
    # a signature (the leaf's, or its own when it is self-issued) before anything vouches
    # for it, so such a key is never used: no CA has one.
    import mtlsauth._pathbuilding as pb

    attacker = ec.generate_private_key(ec.SECP256R1())
    mid = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "look-alike CA")])
    issuer = mid if shape == "self_issued" else ca.certificate.subject
    hostile = x509.load_der_x509_certificate(
        _with_spki(_ca_cert(mid, issuer, attacker), _rsa_spki(n, e), attacker)
    )
    leaf_ca = CA()  # stands for the intermediate the leaf names: same name as the look-alike
    leaf = _leaf(leaf_ca, attacker, 1)
    leaf = _with_issuer(leaf, mid, attacker)
    selected: list[object] = []
    checked: list[tuple[object, object]] = []
    real_select, real_signed_by = pb._select, pb._signed_by

    def select(*args: object, **kwargs: object) -> object:
        result = real_select(*args, **kwargs)  # type: ignore[arg-type]
        selected.extend(result[0])
        return result

    def signed_by(cert: object, by: object) -> bool:
        checked.append((cert, by))
        return real_signed_by(cert, by)  # type: ignore[arg-type]

    monkeypatch.setattr(pb, "_signed_by", signed_by)
    monkeypatch.setattr(verifier_module, "_signed_by", signed_by)
    import mtlsauth._pathvalidation as pv

    monkeypatch.setattr(pv, "_select", select)
    verifier = Verifier(trust_store=ca.trust_store())
    with pytest.raises(CertificateInvalid) as info:
        verifier.verify([leaf, hostile.public_bytes(Encoding.DER)])
    assert info.value.code == "untrusted_issuer"
    assert hostile not in selected  # never handed to the path builder
    assert all(hostile is not by for _, by in checked)  # nor used by mtlsauth itself


def test_a_presented_ca_with_an_ordinary_rsa_key_is_still_used() -> None:
    root = CA(key_type="rsa4096")
    inter = root.intermediate(key_type="rsa")
    client = inter.issue_client_cert()
    identity = Verifier(trust_store=root.trust_store()).verify(list(client.chain_der))
    assert identity.chain[1] == inter.certificate


def test_a_pinned_certificate_is_not_checked_against_costly_presented_keys(
    ca: CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pin whose path is refused looks for the CAs that signed it, by name and signature,
    # among the known CAs and those the client sent: each look-alike with an RSA key of a
    # huge exponent cost about 20 genuine verifications there.
    from mtlsauth import CRLSet, RevocationUnavailable

    inter = ca.intermediate()
    pinned = inter.issue_client_cert(common_name="pinned")
    attacker = ec.generate_private_key(ec.SECP256R1())
    hostile = [
        x509.load_der_x509_certificate(
            _with_spki(
                _ca_cert(inter.certificate.subject, ca.certificate.subject, attacker),
                _rsa_spki(_N_2048, (1 << 2000) | (2 * i + 1)),
                attacker,
            )
        )
        for i in range(4)
    ]
    checked: list[object] = []
    real = verifier_module._signed_by

    def signed_by(cert: object, by: object) -> bool:
        checked.append(by)
        return real(cert, by)  # type: ignore[arg-type]

    searches: list[object] = []
    real_path = verifier_module._signed_path

    def signed_path(*args: object) -> object:
        searches.append(args)
        return real_path(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(verifier_module, "_signed_by", signed_by)
    monkeypatch.setattr(verifier_module, "_signed_path", signed_path)
    verifier = Verifier(
        trust_store=ca.trust_store(),
        pinned=[pinned.certificate],
        revocation=CRLSet.from_pem(ca.crl().bytes()),
    )
    with pytest.raises(RevocationUnavailable):
        verifier.verify([pinned.der, *(h.public_bytes(Encoding.DER) for h in hostile)])
    assert len(searches) == 1  # the search ran
    assert not any(by in hostile for by in checked)
