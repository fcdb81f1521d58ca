"""Security checks that a mutation of the code (a flipped comparison, a dropped condition)
left passing elsewhere (docs/security.md, "Security checks mutated"): each test here fails
with its mutant and passes with the code as written."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from _x509_forge import assemble, der, ecdsa_twin, split, tlv
from mtlsauth import (
    CRLSet,
    ForwardedCert,
    MTLSAuthError,
    OCSPChecker,
    Policy,
    Presented,
    RevocationUnavailable,
    TrustStore,
    Verifier,
)
from mtlsauth._leafder import read_leaf
from mtlsauth._revocation._ocsp import _Failure
from mtlsauth.testing import CA, issue_ocsp_responder_cert
from mtlsauth.testing._encode import encode_url_pem

_NOW = dt.datetime.now(dt.timezone.utc)


def _leaf_with_key(ca: CA, public_key: object) -> x509.Certificate:
    """A client certificate of ``ca`` for ``public_key`` (any key type cryptography encodes)."""
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - dt.timedelta(hours=1))
        .not_valid_after(_NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.private_key.public_key()  # type: ignore[arg-type]
            ),
            False,
        )
        .sign(ca.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )


def _code(verifier: Verifier, chain: object) -> str:
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(chain)  # type: ignore[arg-type]
    return info.value.code


# --- leaf keys (_pathvalidation._key_verdict) ------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256K1(), ec.SECP224R1()], ids=lambda c: c.name)
def test_a_leaf_key_on_a_curve_outside_p256_p384_p521_is_weak(curve: ec.EllipticCurve) -> None:
    """cryptography's verifier checks the keys of issuers only; a secp256k1 or P-224 client key
    is refused by mtlsauth's own curve check, pinned or chained."""
    root = CA()
    leaf = _leaf_with_key(root, ec.generate_private_key(curve).public_key())
    verifier = Verifier(trust_store=TrustStore.from_certificates([root.certificate]), cache_size=0)
    assert _code(verifier, leaf) == "weak_key"
    assert _code(Verifier(pinned=[leaf], cache_size=0), leaf) == "weak_key"


def test_a_dsa_leaf_key_is_weak() -> None:
    """A key type outside RSA, EC and EdDSA (here DSA) is refused, not let through."""
    root = CA()
    leaf = _leaf_with_key(root, dsa.generate_private_key(2048).public_key())
    verifier = Verifier(trust_store=TrustStore.from_certificates([root.certificate]), cache_size=0)
    assert _code(verifier, leaf) == "weak_key"
    assert _code(Verifier(pinned=[leaf], cache_size=0), leaf) == "weak_key"


# --- pinned certificates (_pathvalidation.check_pinned_leaf) ----------------------------------


def _pinned(
    *, not_before: dt.datetime, not_after: dt.datetime, ca: bool = False
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(key, hashes.SHA256())
    )


def test_a_pinned_certificate_is_valid_through_its_last_second_and_not_after() -> None:
    """notAfter is inclusive (RFC 5280 4.1.2.5): the pin answers at that second, refuses the
    next one."""
    end = (_NOW + dt.timedelta(days=1)).replace(microsecond=0)
    leaf = _pinned(not_before=_NOW - dt.timedelta(days=1), not_after=end)
    verifier = Verifier(pinned=[leaf], cache_size=0)
    assert verifier.verify(leaf, at=end).common_name == "pinned"
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(leaf, at=end + dt.timedelta(seconds=1))
    assert info.value.code == "certificate_expired"


def test_a_pinned_certificate_is_refused_before_its_not_before() -> None:
    start = (_NOW + dt.timedelta(days=1)).replace(microsecond=0)
    leaf = _pinned(not_before=start, not_after=start + dt.timedelta(days=30))
    verifier = Verifier(pinned=[leaf], cache_size=0)
    assert _code(verifier, leaf) == "certificate_not_yet_valid"
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(leaf, at=start - dt.timedelta(seconds=1))
    assert info.value.code == "certificate_not_yet_valid"
    assert verifier.verify(leaf, at=start).common_name == "pinned"


def test_a_pinned_ca_certificate_is_not_a_client_certificate() -> None:
    """A pinned certificate with basicConstraints cA=TRUE (and no keyUsage, so that the
    keyCertSign rule does not decide) is refused as ``invalid_usage``."""
    leaf = _pinned(
        not_before=_NOW - dt.timedelta(days=1), not_after=_NOW + dt.timedelta(days=1), ca=True
    )
    assert _code(Verifier(pinned=[leaf], cache_size=0), leaf) == "invalid_usage"


# --- the leaf read from its DER (_leafder.read_leaf) -----------------------------------------


def test_the_leaf_reader_refuses_anything_after_the_extensions() -> None:
    """An element after [3] extensions inside the TBSCertificate is no shape the fast reader
    knows: it answers ``None`` (cryptography's reading decides), rather than facts that skip
    what follows."""
    root = CA()
    leaf = root.issue_client_cert(common_name="client")
    good = der(leaf.certificate)
    assert read_leaf(good) is not None
    tbs, alg, signature = split(good)
    start, end = _content(tbs)
    trailing = tlv(0x30, tbs[start:end] + tlv(0x04, b""))
    assert read_leaf(assemble(trailing, alg, signature)) is None
    twice = tlv(0x30, tbs[start:end] + tlv(0xA3, tlv(0x30, b"")))
    assert read_leaf(assemble(twice, alg, signature)) is None


def _content(item: bytes) -> tuple[int, int]:
    length = item[1]
    start = 2
    if length & 0x80:
        start += length & 0x7F
        length = int.from_bytes(item[2:start], "big")
    return start, start + length


# --- CRL freshness (_revocation._crl.CRLSet) -------------------------------------------------


def test_a_crl_is_usable_from_last_update_less_the_skew_until_before_next_update() -> None:
    """thisUpdate - 5 min <= at < nextUpdate: a CRL at its nextUpdate is stale, not current,
    and one is usable from the first moment of its skew allowance."""
    root = CA()
    leaf = root.issue_client_cert(common_name="client")
    last = (_NOW - dt.timedelta(hours=1)).replace(microsecond=0)
    nxt = (_NOW + dt.timedelta(days=1)).replace(microsecond=0)
    crls = CRLSet.from_pem(root.crl(last_update=last, next_update=nxt).bytes())
    chain = [leaf.certificate, root.certificate]
    assert crls.check(chain, at=nxt - dt.timedelta(microseconds=1)) == nxt
    with pytest.raises(RevocationUnavailable):
        crls.check(chain, at=nxt)
    first = last - dt.timedelta(minutes=5)
    assert crls.check(chain, at=first) == nxt
    with pytest.raises(RevocationUnavailable):
        crls.check(chain, at=first - dt.timedelta(microseconds=1))


# --- OCSP answers (_revocation._ocsp.OCSPChecker) --------------------------------------------


def _ocsp_good(
    ca: CA,
    leaf: x509.Certificate,
    this_update: dt.datetime,
    next_update: dt.datetime,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> tuple[bytes, ocsp.OCSPRequest]:
    """A GOOD answer for ``leaf`` (signed by the CA, or by ``signer``, which it includes) and
    the request it answers."""
    cert, key = signer or (ca.certificate, ca.private_key)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=ca.certificate,
            algorithm=hashes.SHA1(),  # noqa: S303 - RFC 6960 CertID
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=this_update,
            next_update=next_update,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, cert)
    )
    if signer is not None:
        builder = builder.certificates([cert])
    body = builder.sign(key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.DER
    )
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, ca.certificate, hashes.SHA1())  # noqa: S303
        .build()
    )
    return body, request


def test_an_ocsp_answer_is_stale_at_next_update_plus_the_skew() -> None:
    """at >= nextUpdate + 5 min is stale (no answer); the microsecond before is current."""
    ca = CA()
    leaf = ca.issue_client_cert(common_name="client").certificate
    next_update = (_NOW + dt.timedelta(hours=1)).replace(microsecond=0)
    body, request = _ocsp_good(ca, leaf, _NOW - dt.timedelta(hours=1), next_update)
    edge = next_update + dt.timedelta(minutes=5)
    checker = OCSPChecker()
    before = edge - dt.timedelta(microseconds=1)
    checker._evaluate(body, request, None, leaf, ca.certificate, before)
    with pytest.raises(_Failure, match="stale"):
        checker._evaluate(body, request, None, leaf, ca.certificate, edge)


def test_a_delegate_whose_eku_lacks_ocsp_signing_answers_nothing() -> None:
    """A certificate of the CA whose extendedKeyUsage is present but without
    id-kp-OCSPSigning (here another client's, clientAuth only) signs no answer: any client of
    the CA would otherwise vouch GOOD for a revoked certificate it holds the key of."""
    ca = CA()
    leaf = ca.issue_client_cert(common_name="revoked").certificate
    other = ca.issue_client_cert(common_name="other")
    signer = (other.certificate, other.private_key)
    body, request = _ocsp_good(
        ca, leaf, _NOW - dt.timedelta(hours=1), _NOW + dt.timedelta(hours=1), signer
    )
    with pytest.raises(_Failure, match="OCSPSigning"):
        OCSPChecker()._evaluate(body, request, None, leaf, ca.certificate, _NOW)
    delegate = issue_ocsp_responder_cert(ca)
    body, request = _ocsp_good(
        ca,
        leaf,
        _NOW - dt.timedelta(hours=1),
        _NOW + dt.timedelta(hours=1),
        (delegate.certificate, delegate.private_key),  # type: ignore[arg-type]
    )
    OCSPChecker()._evaluate(body, request, None, leaf, ca.certificate, _NOW)


def test_a_cached_ocsp_answer_is_not_reused_at_its_until_nor_before_it_was_judged() -> None:
    """The answer cache gives back an answer from the moment it was judged at (``since``) up
    to before its ``until``: not at ``until``, and not for an earlier moment (a clock
    stepped back), when a fresh judgement may refuse it."""
    from mtlsauth._revocation._ocsp import _Answer

    since = _NOW.replace(microsecond=0)
    until = since + dt.timedelta(hours=1)
    checker = OCSPChecker()
    key = (b"issuer", 1)

    def cached(at: dt.datetime) -> object:
        checker._store(key, _Answer(None, None, until, since=since))
        return checker._cached(key, at, False)

    assert cached(since) is not None
    assert cached(until - dt.timedelta(microseconds=1)) is not None
    assert cached(until) is None
    assert cached(since - dt.timedelta(microseconds=1)) is None


# --- identities a proxy verified (_forwarded._verified) --------------------------------------


@pytest.mark.parametrize(
    "validity",
    [
        "NotBefore=2020-01-01T00:00:00Z;NotAfter=2000-01-01T00:00:00Z;NotAfter=2099-01-01T00:00:00Z",
        "NotBefore=2099-01-01T00:00:00Z;NotBefore=2020-01-01T00:00:00Z;NotAfter=2098-01-01T00:00:00Z",
    ],
    ids=["an expired NotAfter, then a current one", "a future NotBefore, then a past one"],
)  # fmt: skip
def test_an_alb_validity_naming_a_bound_twice_is_malformed_whichever_comes_last(
    validity: str,
) -> None:
    """A key given twice is refused as such, not read as its last value: that one may open
    a window the first closed."""
    from mtlsauth._forwarded._verified import _validity

    with pytest.raises(MTLSAuthError) as info:
        _validity(validity)
    assert info.value.code == "certificate_malformed"


@pytest.mark.parametrize("size", [0, 20, 31, 33, 48])
def test_a_forwarded_fingerprint_that_is_not_a_sha256_digest_is_malformed(size: int) -> None:
    """A base64 fingerprint of another length (a SHA-1 one, a truncated one, none) is
    refused: read as it is, it would match no fingerprint deny-list entry."""
    from mtlsauth._forwarded._verified import _hex_digest

    with pytest.raises(MTLSAuthError) as info:
        _hex_digest(base64.b64encode(bytes(range(size))).decode())
    assert info.value.code == "certificate_malformed"
    assert (
        _hex_digest(base64.b64encode(bytes(range(32))).decode().rstrip("="))
        == bytes(range(32)).hex()
    )


# --- the verification cache (_verifier.Verifier) ----------------------------------------------


def test_a_cached_tls_chain_is_not_the_answer_for_a_trusted_proxy() -> None:
    """From a trusted proxy only its certificate header counts: the chain its own TLS
    connection presented, cached when another peer sent it directly, is no hit for the
    proxy (the fast lookup adapters try before the full path)."""
    root = CA()
    client = root.issue_client_cert(common_name="proxy-tls")
    forwarded = ForwardedCert.preset("nginx", trusted_proxies=["10.0.0.0/24"])
    verifier = Verifier(trust_store=root.trust_store(), forwarded=forwarded)
    chain = (client.cert_pem.text(),)
    direct = Presented(peer="192.0.2.7", tls_chain=chain)
    identity = verifier.authenticate(direct)
    assert identity is not None
    assert identity.common_name == "proxy-tls"
    assert verifier._cached_chain(chain, "192.0.2.7", None) is not None
    assert verifier._cached_chain(chain, "10.0.0.5", None) is None
    assert (
        verifier.authenticate(Presented(peer="10.0.0.5", tls_chain=chain), required=False) is None
    )


def test_a_cached_identity_is_no_hit_for_a_route_policy_that_refuses_it() -> None:
    """The fast cache lookup with a route's policy: an identity admitted without it (or on
    another route) is no hit where the policy refuses it, and the full path refuses."""
    root = CA()
    client = root.issue_client_cert(common_name="alice")
    verifier = Verifier(trust_store=root.trust_store())
    chain = (client.cert_pem.text(),)
    presented = Presented(peer="192.0.2.7", tls_chain=chain)
    assert verifier.authenticate(presented) is not None
    admins = Policy(common_names=["admin"])
    assert verifier._cached_chain(chain, "192.0.2.7", Policy(common_names=["alice"])) is not None
    assert verifier._cached_chain(chain, "192.0.2.7", admins) is None
    with pytest.raises(MTLSAuthError) as info:
        verifier.authenticate(presented, policy=admins)
    assert info.value.code == "common_name_not_allowed"


def test_a_remembered_header_value_is_no_hit_from_a_peer_that_is_not_a_trusted_proxy() -> None:
    """A certificate header admitted from the trusted proxy is remembered by its bytes; the
    same bytes sent by any other peer (a client certificate is public) are no cache hit,
    and the full path refuses the header."""
    root = CA()
    client = root.issue_client_cert(common_name="victim")
    forwarded = ForwardedCert.preset("nginx", trusted_proxies=["10.0.0.0/24"])
    verifier = Verifier(trust_store=root.trust_store(), forwarded=forwarded)
    value = encode_url_pem([client.der])
    via_proxy = Presented(peer="10.0.0.5", headers=(("x-ssl-client-cert", value),))
    identity = verifier.authenticate(via_proxy)
    assert identity is not None
    assert identity.common_name == "victim"
    assert verifier._cached_header(value, "10.0.0.5", None) is not None
    assert verifier._cached_header(value, "192.0.2.7", None) is None
    direct = Presented(peer="192.0.2.7", headers=(("x-ssl-client-cert", value),))
    with pytest.raises(MTLSAuthError) as info:
        verifier.authenticate(direct, required=False)
    assert info.value.code == "untrusted_forwarder"


# --- allow- and deny-lists (_policy._rules) ---------------------------------------------------


def test_a_fingerprint_deny_list_refuses_a_re_encoded_twin_of_the_denied_certificate() -> None:
    """An ECDSA signature's s replaced by n - s still verifies: the twin has another
    fingerprint, yet it is the deny-listed certificate."""
    root = CA()
    leaf = root.issue_client_cert(common_name="denied")
    twin = ecdsa_twin(leaf.der)
    assert twin != leaf.der
    denied = hashlib.sha256(leaf.der).hexdigest()
    verifier = Verifier(
        trust_store=root.trust_store(), policy=Policy(deny_fingerprints=[denied]), cache_size=0
    )
    assert _code(verifier, leaf.der) == "certificate_denied"
    assert _code(verifier, twin) == "certificate_denied"


def test_a_fingerprint_deny_list_refuses_a_proxy_verified_identity_without_a_fingerprint() -> None:
    """A load balancer that forwards no fingerprint leaves the deny-list uncheckable: the
    identity is refused as ``certificate_denied`` (fail closed), not admitted or crashed on."""
    forwarded = ForwardedCert.preset(
        "aws-alb-verify", trusted_proxies=["10.0.0.0/24"], verified_by_proxy=True
    )
    verifier = Verifier(
        trust_store=CA().trust_store(),
        forwarded=forwarded,
        policy=Policy(deny_fingerprints=["ab" * 32]),
    )
    start = (_NOW - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (_NOW + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    presented = Presented(
        peer="10.0.0.5",
        headers=(
            ("x-amzn-mtls-clientcert-subject", "CN=alice,O=Acme"),
            ("x-amzn-mtls-clientcert-issuer", "CN=Acme CA"),
            ("x-amzn-mtls-clientcert-serial-number", "0A1B"),
            ("x-amzn-mtls-clientcert-validity", f"NotBefore={start};NotAfter={end}"),
        ),
    )
    with pytest.raises(MTLSAuthError) as info:
        verifier.authenticate(presented)
    assert info.value.code == "certificate_denied"
    assert "fingerprint unknown" in str(info.value)
