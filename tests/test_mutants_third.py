"""Security checks that a mutation of the code left passing elsewhere (docs/security.md,
"Security checks mutated, third round"): each test here fails with its mutant and passes
with the code as written."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mtlsauth import CertificateRevoked, RevocationUnavailable, Verifier
from mtlsauth._cache import CacheEntry, VerificationCache
from mtlsauth._forwarded._xfcc import parse_xfcc
from mtlsauth._revocation._crl import CRLSet
from mtlsauth.testing import CA

UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)
DP = x509.UniformResourceIdentifier("http://crl.example/partition.crl")


# --- DER by hand -----------------------------------------------------------------------------


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _elements(der: bytes) -> list[bytes]:
    """The encoded elements inside one DER SEQUENCE (``der`` is exactly that SEQUENCE)."""
    pos, length = 2, der[1]
    if length & 0x80:
        width = length & 0x7F
        pos, length = 2 + width, int.from_bytes(der[2 : 2 + width], "big")
    content, out, i = der[pos : pos + length], [], 0
    while i < len(content):
        start, ln = i + 2, content[i + 1]
        if ln & 0x80:
            width = ln & 0x7F
            start, ln = i + 2 + width, int.from_bytes(content[i + 2 : i + 2 + width], "big")
        out.append(content[i : start + ln])
        i = start + ln
    return out


def _crl(ca: CA, extensions: tuple[tuple[x509.ExtensionType, bool], ...] = ()) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW - dt.timedelta(minutes=5))
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    crl = builder.sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


def _outcome(crls: CRLSet, chain: list[x509.Certificate]) -> str:
    try:
        crls.check(chain, at=NOW)
    except CertificateRevoked:
        return "revoked"
    except RevocationUnavailable:
        return "unavailable"
    return "ok"


# --- CRLs --------------------------------------------------------------------------------------


def test_a_crl_without_next_update_is_refused_when_loaded() -> None:
    # cryptography's builder insists on nextUpdate: the TBS is re-encoded without it (the
    # fifth field, after version, signature, issuer and thisUpdate) and signed again by the CA.
    ca = CA(organization="Mutants Three")
    tbs, outer_alg, _sig = _elements(_crl(ca))
    fields = _elements(tbs)
    assert fields[4][0] in (0x17, 0x18)  # nextUpdate, a UTCTime or GeneralizedTime
    new_tbs = _tlv(0x30, b"".join(fields[:4] + fields[5:]))
    sig = ca.private_key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
    der = _tlv(0x30, new_tbs + outer_alg + _tlv(0x03, b"\x00" + sig))
    assert x509.load_der_x509_crl(der).next_update_utc is None  # well-formed, only undated
    with pytest.raises(ValueError, match="no nextUpdate"):
        CRLSet.from_der(der)


def test_a_distribution_point_naming_reasons_is_no_partition_match() -> None:
    # The leaf points at the partition only for some reasons: a partitioned CRL of that
    # distribution point does not clear it for all of them (the CRL says nothing about the
    # others), so its status cannot be told.
    root = CA(organization="Mutants Three")
    inter = root.intermediate()

    def outcome(reasons: frozenset[x509.ReasonFlags] | None) -> str:
        dp = x509.DistributionPoint(
            full_name=[DP], relative_name=None, reasons=reasons, crl_issuer=None
        )
        leaf = inter.issue_client_cert(
            common_name="leaf", extra_extensions=[(x509.CRLDistributionPoints([dp]), False)]
        )
        idp = x509.IssuingDistributionPoint(
            full_name=[DP],
            relative_name=None,
            only_contains_user_certs=False,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )
        crls = CRLSet.from_der(_crl(inter, ((idp, True),)), _crl(root))
        return _outcome(crls, [leaf.certificate, inter.certificate, root.certificate])

    assert outcome(None) == "ok"
    assert outcome(frozenset({x509.ReasonFlags.key_compromise})) == "unavailable"


# --- The verification cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice():
    ca = CA(organization="Mutants Three")
    cert = ca.issue_client_cert(common_name="alice")
    return Verifier(trust_store=ca.trust_store()).verify_pem(cert.chain_pem.text())


def _cached(alice, *, since: float, expires: float) -> tuple[VerificationCache, object]:
    cache, tokens = VerificationCache(64), object()
    cache.put(b"leaf", b"alias", CacheEntry(alice, (), expires, tokens, since))
    return cache, tokens


def test_find_ignores_an_entry_verified_after_now(alice) -> None:
    # The clock stepped back before the moment the verification was made for.
    now = time.time()
    cache, tokens = _cached(alice, since=now, expires=now + 60)
    assert cache.find(b"leaf", b"other", now - 1, tokens) is None
    assert cache.find(b"leaf", b"other", now, tokens) is not None


def test_find_ignores_an_entry_at_its_exact_expiry_instant(alice) -> None:
    now = time.time()
    cache, tokens = _cached(alice, since=now - 60, expires=now)
    assert cache.find(b"leaf", b"other", now, tokens) is None
    assert cache.find(b"leaf", b"other", now - 0.5, tokens) is not None


# --- XFCC values Envoy never quotes -------------------------------------------------------------


@pytest.mark.parametrize("text", ["URI= spiffe://a/b", "URI=spiffe://a/b ", "DNS=\tx.example"])
def test_a_never_quoted_value_with_blanks_around_it_is_marked(text: str) -> None:
    # Envoy writes URI and DNS untrimmed: blanks around one are not its own, so the value is
    # marked (like a quoted one) instead of being read as a name of the certificate.
    ((key, value),) = parse_xfcc(text)[0]
    assert key.endswith('"')
    assert value.strip() == value


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Hash= ab ", "hash"),
        ("By= spiffe://p ", "by"),
        ("URI=spiffe://a/b", "uri"),
        ("DNS=x", "dns"),
    ],
)
def test_blanks_around_other_unquoted_values_are_trimmed_only(text: str, key: str) -> None:
    ((read, value),) = parse_xfcc(text)[0]
    assert read == key
    assert value == value.strip() != ""
