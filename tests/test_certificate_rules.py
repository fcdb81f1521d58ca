"""Certificate rules: what identifies a certificate, revocation of pins, hostile chains, the
client-certificate profile, name constraints on names read from the subject, error codes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from _x509_forge import CA_KEY_USAGE, assemble, der, ecdsa_twin, padded_twin, split, tlv
from mtlsauth import CRLSet, MTLSAuthError, Policy, TrustStore, Verifier
from mtlsauth._der import item
from mtlsauth._identity import equivalent_fingerprints
from mtlsauth._pathvalidation import MAX_ISSUER_CANDIDATES, select_intermediates
from mtlsauth.testing import CA, self_signed_client_cert


def _code(verifier: Verifier, chain: object) -> str:
    with pytest.raises(MTLSAuthError) as info:
        verifier.verify(chain)
    return info.value.code


def _fp(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _leaf(
    ca: CA,
    *,
    subject: x509.Name,
    extensions: Iterable[tuple[x509.ExtensionType, bool]] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A leaf with exactly the subject and extensions given (plus basicConstraints, EKU)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.private_key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return der(builder.sign(ca.private_key, hashes.SHA256()))  # type: ignore[arg-type]


def _cn(value: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, value)])


@pytest.fixture(scope="module")
def root() -> CA:
    return CA(organization="Rules Corp")


# --- 1. what identifies a certificate -------------------------------------------------------

_Twins = tuple[CA, list[bytes], list[list[bytes]]]


def _ec_issued_leaf(root: CA, curve: ec.EllipticCurve) -> tuple[bytes, bytes]:
    """(leaf, intermediate) DER: a leaf whose issuing CA has a key on ``curve``."""
    key = ec.generate_private_key(curve)
    now = dt.datetime.now(dt.timezone.utc)
    inter = (
        x509.CertificateBuilder()
        .subject_name(_cn(f"{curve.name} issuing CA"))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root.private_key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
        .sign(root.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_cn("denied"))
        .issuer_name(inter.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA384())
    )
    return der(leaf), der(inter)


@pytest.fixture(scope="module", params=["P-256", "P-384", "P-521"])
def twins(request: pytest.FixtureRequest) -> tuple[CA, list[bytes], list[list[bytes]]]:
    """(root, original chain, re-encoded chains): ECDSA s -> n - s, and signature padding."""
    ca = CA()
    for _ in range(64):  # until the signature's last bit is 0, so padding can be claimed
        if request.param == "P-256":
            leaf, rest, curve = ca.issue_client_cert(common_name="denied").der, [], "secp256r1"
        else:
            curve_obj = ec.SECP384R1() if request.param == "P-384" else ec.SECP521R1()
            leaf, inter = _ec_issued_leaf(ca, curve_obj)
            rest, curve = [inter], curve_obj.name
        padded = padded_twin(leaf)
        if padded is not None:
            break
    assert padded is not None
    return ca, [leaf, *rest], [[ecdsa_twin(leaf, curve), *rest], [padded, *rest]]


def test_twins_are_valid_certificates_with_other_fingerprints(twins: _Twins) -> None:
    ca, original, found = twins
    verifier = Verifier(trust_store=ca.trust_store(), cache_size=0)
    for twin in found:
        assert _fp(twin[0]) != _fp(original[0])
        assert verifier.verify(twin).common_name == "denied"


def test_deny_fingerprints_denies_every_valid_re_encoding(twins: _Twins) -> None:
    ca, original, found = twins
    verifier = Verifier(
        trust_store=ca.trust_store(), policy=Policy(deny_fingerprints={_fp(original[0])})
    )
    assert _code(verifier, original) == "certificate_denied"
    for twin in found:
        assert _code(verifier, twin) == "certificate_denied"
    # Denying a twin's fingerprint denies the original too: they are one certificate.
    for twin in found:
        by_twin = Verifier(
            trust_store=ca.trust_store(), policy=Policy(deny_fingerprints={_fp(twin[0])})
        )
        assert _code(by_twin, original) == "certificate_denied"


def test_deny_serials_denies_every_re_encoding(twins: _Twins) -> None:
    ca, original, found = twins
    serial = x509.load_der_x509_certificate(original[0]).serial_number
    verifier = Verifier(trust_store=ca.trust_store(), policy=Policy(deny_serials={serial}))
    for presented in (original, *found):
        assert _code(verifier, presented) == "certificate_denied"


def test_fingerprint_allow_list_matches_exact_bytes_only(twins: _Twins) -> None:
    ca, original, found = twins
    allow = Verifier(trust_store=ca.trust_store(), policy=Policy(fingerprints={_fp(original[0])}))
    assert allow.verify(original).common_name == "denied"
    for twin in found:
        assert _code(allow, twin) == "fingerprint_not_allowed"


def test_pinned_twin_is_not_the_pin() -> None:
    # A pin admits: it compares the exact bytes, so a re-encoding is refused, never admitted.
    pin = self_signed_client_cert(extensions=True)
    verifier = Verifier(pinned=[pin.certificate])
    assert verifier.verify(pin.der).common_name == "self-signed client"
    assert _code(verifier, ecdsa_twin(pin.der)) == "pin_mismatch"


def test_deny_listed_pin_twin_is_denied() -> None:
    pin = self_signed_client_cert(extensions=True)
    twin = ecdsa_twin(pin.der)
    verifier = Verifier(
        pinned=[pin.certificate, twin], policy=Policy(deny_fingerprints={_fp(pin.der)})
    )
    assert _code(verifier, pin.der) == "certificate_denied"
    assert _code(verifier, twin) == "certificate_denied"


def test_negative_cache_of_the_original_does_not_let_the_twin_in(twins: _Twins) -> None:
    ca, original, found = twins
    verifier = Verifier(
        trust_store=ca.trust_store(), policy=Policy(deny_fingerprints={_fp(original[0])})
    )
    for _ in range(2):
        for presented in (original, *found):
            assert _code(verifier, presented) == "certificate_denied"


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_every_curve_order_gives_a_valid_twin_signature(curve: ec.EllipticCurve) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    from mtlsauth._identity import _EC_ORDERS

    key = ec.generate_private_key(curve)
    r, s = decode_dss_signature(key.sign(b"tbs", ec.ECDSA(hashes.SHA256())))
    orders = [n for n in _EC_ORDERS if n.bit_length() == curve.key_size]
    assert len(orders) == 1
    key.public_key().verify(
        encode_dss_signature(r, orders[0] - s), b"tbs", ec.ECDSA(hashes.SHA256())
    )


def test_equivalent_fingerprints_of_garbage_is_its_own_fingerprint() -> None:
    assert equivalent_fingerprints(b"\x30\x03\x02\x01\x01") == {_fp(b"\x30\x03\x02\x01\x01")}
    assert equivalent_fingerprints(b"") == {_fp(b"")}


# --- 2. revocation always wins --------------------------------------------------------------


def test_pinned_certificate_under_the_trust_store_is_still_revoked(root: CA) -> None:
    leaf = root.issue_client_cert(common_name="pinned-and-revoked")
    crl = root.revoke(leaf)
    verifier = Verifier(
        trust_store=root.trust_store(),
        pinned=[leaf.certificate],
        revocation=CRLSet.from_pem(crl.bytes()),
    )
    assert _code(verifier, leaf.der) == "certificate_revoked"


def test_pinned_certificate_under_an_intermediate_is_still_revoked(root: CA) -> None:
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="pinned-and-revoked")
    crls = CRLSet.from_pem(root.crl().bytes() + inter.revoke(leaf).bytes())
    verifier = Verifier(trust_store=root.trust_store(), pinned=[leaf.certificate], revocation=crls)
    assert _code(verifier, leaf.chain_der) == "certificate_revoked"
    # The pin does not need the client to send its intermediate for revocation to apply.
    configured = Verifier(
        trust_store=root.trust_store(),
        pinned=[leaf.certificate],
        revocation=crls,
        intermediates=[inter.certificate],
    )
    assert _code(configured, leaf.der) == "certificate_revoked"


def _excluding(dns: str) -> x509.NameConstraints:
    return x509.NameConstraints(permitted_subtrees=None, excluded_subtrees=[x509.DNSName(dns)])


def test_a_revoked_pin_is_refused_when_its_path_no_longer_validates() -> None:
    # The pin vouches for a certificate its CA's path refuses (here a name constraint the
    # leaf breaks; an expired CA is the same), but the CA's CRL still speaks for it: the
    # pin bypasses path validation, never revocation.
    ca = CA(name_constraints=_excluding("blocked.example"))
    leaf = ca.issue_client_cert(common_name="pinned", dns_names=["a.blocked.example"])
    plain = Verifier(trust_store=ca.trust_store(), cache_size=0)
    assert _code(plain, leaf.der) == "untrusted_issuer"  # the path itself is refused
    unrevoked_crl = ca.crl().bytes()  # before the revocation below
    pinned = Verifier(
        trust_store=ca.trust_store(),
        pinned=[leaf.certificate],
        revocation=CRLSet.from_pem(ca.revoke(leaf).bytes()),
        cache_size=0,
    )
    assert _code(pinned, leaf.der) == "certificate_revoked"
    # The same pin, not revoked, is admitted on the pin alone as before.
    unrevoked = Verifier(
        trust_store=ca.trust_store(),
        pinned=[leaf.certificate],
        revocation=CRLSet.from_pem(unrevoked_crl),
        cache_size=0,
    )
    assert unrevoked.verify(leaf.der).common_name == "pinned"


def test_a_revoked_pin_under_an_intermediate_is_refused_when_its_path_fails() -> None:
    root = CA(name_constraints=_excluding("blocked.example"))
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="pinned", dns_names=["a.blocked.example"])
    crls = CRLSet.from_pem(root.crl().bytes() + inter.revoke(leaf).bytes())
    pinned = Verifier(
        trust_store=root.trust_store(),
        pinned=[leaf.certificate],
        revocation=crls,
        intermediates=[inter.certificate],
        cache_size=0,
    )
    assert _code(pinned, leaf.der) == "certificate_revoked"
    assert _code(pinned, leaf.chain_der) == "certificate_revoked"


def test_a_revoked_pin_without_a_trust_store_is_not_admitted(tmp_path: Path) -> None:
    """With no trust store, or none left after a reload emptied its file, the revocation
    check of a pin was skipped and a pin its CA revoked was admitted on the pin alone (an
    emptied trust file thus widened access). Such a pin is judged like one whose path is
    refused: a CA configured here (``intermediates=``) still speaks for its revocation, and
    without one it is ``revocation_unavailable``. A self-signed pin is still admitted."""
    ca = CA(organization="Pin CA")
    leaf = ca.issue_client_cert(common_name="pinned")
    crls = CRLSet.from_pem(ca.revoke(leaf).bytes())
    alone = Verifier(pinned=[leaf.certificate], revocation=crls, cache_size=0)
    assert _code(alone, leaf.der) == "revocation_unavailable"
    told = Verifier(
        pinned=[leaf.certificate], intermediates=[ca.certificate], revocation=crls, cache_size=0
    )
    assert _code(told, leaf.der) == "certificate_revoked"
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(path)
    reloaded = Verifier(
        trust_store=TrustStore.from_pem_file(path, reload_interval=None),
        pinned=[leaf.certificate],
        revocation=crls,
    )
    assert _code(reloaded, leaf.der) == "certificate_revoked"
    path.write_text("\n")  # the trust file emptied: its CA withdrawn, the pin kept
    past = time.time() - 5
    os.utime(path, (past, past))
    assert reloaded.reload() is True
    assert _code(reloaded, leaf.der) == "revocation_unavailable"
    pin = self_signed_client_cert(extensions=True)
    self_signed = Verifier(pinned=[pin.certificate], revocation=crls)
    assert self_signed.verify(pin.der).common_name == "self-signed client"


@pytest.mark.parametrize("failure", ["hard-fail", "soft-fail"])
def test_a_pin_under_a_ca_the_client_sent_alone_makes_no_request(failure: str) -> None:
    """A pinned certificate issued by the client's own CA, sent with that CA: the path to
    the trust store is refused, and the signed path found for revocation ended at the
    client's self-signed CA. The OCSP checker then posted to the AIA URL the client wrote
    (any host, port and path: a blind request into the server's own network), and a CRL
    set with ``allow_missing`` admitted it. A path that reaches no CA configured here is
    no issuer: refused, and nothing is sent."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from cryptography.x509.oid import AuthorityInformationAccessOID

    from mtlsauth import OCSPChecker

    hits: list[str] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/internal/admin"
        corp, own = CA(organization="Corp"), CA(organization="The client's own CA")
        aia = x509.AuthorityInformationAccess(
            [
                x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(url)
                )
            ]
        )
        pin = own.issue_client_cert(common_name="pinned", extra_extensions=[(aia, False)])
        sent = [pin.der, own.certificate.public_bytes(Encoding.DER)]
        for revocation in (
            OCSPChecker(failure=failure, timeout=2),  # type: ignore[arg-type]
            CRLSet.from_pem(corp.crl().bytes(), allow_missing=True),
        ):
            verifier = Verifier(
                trust_store=corp.trust_store(),
                pinned=[pin.certificate],
                revocation=revocation,
                cache_size=0,
            )
            assert _code(verifier, sent) == "revocation_unavailable"
            assert _code(verifier, pin.der) == "revocation_unavailable"
        assert hits == []
    finally:
        server.shutdown()
        server.server_close()


def test_pinned_unrevoked_certificate_under_the_trust_store_is_admitted(root: CA) -> None:
    leaf = root.issue_client_cert(common_name="pinned-good")
    verifier = Verifier(
        trust_store=root.trust_store(),
        pinned=[leaf.certificate],
        revocation=CRLSet.from_pem(root.crl().bytes()),
    )
    assert verifier.verify(leaf.der).common_name == "pinned-good"


def test_self_signed_pin_is_outside_every_crl(root: CA) -> None:
    # Documented: no CA vouches for a self-signed pin, so no CRL can cover it; remove the
    # pin, or deny it by fingerprint.
    pin = self_signed_client_cert(extensions=True)
    crls = CRLSet.from_pem(root.crl(extra_serials=[pin.certificate.serial_number]).bytes())
    verifier = Verifier(trust_store=root.trust_store(), pinned=[pin.certificate], revocation=crls)
    assert verifier.verify(pin.der).common_name == "self-signed client"
    denied = Verifier(
        trust_store=root.trust_store(),
        pinned=[pin.certificate],
        revocation=crls,
        policy=Policy(deny_fingerprints={_fp(pin.der)}),
    )
    assert _code(denied, pin.der) == "certificate_denied"


# --- 3. hostile chains ----------------------------------------------------------------------


def _look_alike(
    of: x509.Certificate,
    issuer: CA,
    *,
    ca: bool = True,
    self_issued: bool = False,
    ski: bytes | None = None,
) -> x509.Certificate:
    """A CA certificate carrying ``of``'s subject (and optionally its SKI) with a new key."""
    key = ec.generate_private_key(ec.SECP521R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(of.subject)
        .issuer_name(of.subject if self_issued else issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier(ski)
            if ski is not None
            else x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False,
        )
    )
    signer = key if self_issued else issuer.private_key
    return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hostile(root: CA) -> tuple[CA, CA, x509.Certificate, list[x509.Certificate]]:
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="hostile").certificate
    ski = inter.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    fakes = [_look_alike(inter.certificate, root, ski=ski.digest) for _ in range(15)]
    return root, inter, leaf, fakes


def test_look_alikes_are_capped_per_certificate(
    hostile: tuple[CA, CA, x509.Certificate, list[x509.Certificate]],
) -> None:
    _, inter, leaf, fakes = hostile
    kept = select_intermediates(leaf, [*fakes, inter.certificate], max_depth=8)
    assert len(kept) == MAX_ISSUER_CANDIDATES
    assert kept == fakes[:MAX_ISSUER_CANDIDATES]


def test_look_alike_chain_is_refused_and_genuine_configured_intermediate_still_works(
    hostile: tuple[CA, CA, x509.Certificate, list[x509.Certificate]],
) -> None:
    root, inter, leaf, fakes = hostile
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, *fakes]) == "untrusted_issuer"
    configured = Verifier(
        trust_store=root.trust_store(), intermediates=[inter.certificate], cache_size=0
    )
    assert configured.verify([leaf, *fakes]).common_name == "hostile"


def test_look_alikes_with_another_key_id_are_dropped(root: CA) -> None:
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="by-key-id").certificate
    # Only the first 2 * MAX_ISSUER_CANDIDATES same-name certificates are read at all.
    fakes = [_look_alike(inter.certificate, root) for _ in range(2 * MAX_ISSUER_CANDIDATES - 1)]
    assert select_intermediates(leaf, [*fakes, inter.certificate], max_depth=8) == [
        inter.certificate
    ]
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert verifier.verify([leaf, *fakes, inter.certificate]).common_name == "by-key-id"


def test_duplicates_non_cas_self_issued_and_unrelated_certificates_are_dropped(root: CA) -> None:
    inter = root.intermediate()
    client = inter.issue_client_cert(common_name="pruned")
    leaf = client.certificate
    other = CA().intermediate()
    junk = [
        leaf,  # the leaf again
        inter.certificate,
        inter.certificate,  # a duplicate
        root.certificate,  # self-signed: anchors come from the store
        _look_alike(inter.certificate, root, self_issued=True),
        _look_alike(inter.certificate, root, ca=False),  # not a CA
        other.certificate,  # not linked by name to the leaf
        inter.issue_client_cert().certificate,  # a leaf
    ]
    assert select_intermediates(leaf, junk, max_depth=8) == [inter.certificate]
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert verifier.verify(junk[:1] + junk).common_name == "pruned"


def _ca_cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_cn(subject))
        .issuer_name(_cn(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )


def _leaf_of(issuer: str, signer: ec.EllipticCurvePrivateKey, cn: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_cn(cn))
        .issuer_name(_cn(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )


def _unrelated(count: int) -> list[x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return [_ca_cert(f"Other {i}", f"Elsewhere {i}", key, key) for i in range(count)]


@pytest.mark.parametrize("others", [0, 1, 2, 3, 4])
def test_a_key_rollover_of_the_anchor_stays_beside_unrelated_cas(others: int) -> None:
    """leaf -> R (new key, self-issued by R's old key) -> anchor R: the self-issued CA is on
    the path although it is no step closer to the anchor by names. With more than two CAs
    presented, selection used to drop it (the leaf names an anchor), so the client's
    unrelated CAs turned an accepted chain into ``untrusted_issuer``."""
    old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    anchor = _ca_cert("Rollover Root", "Rollover Root", old, old)
    rolled = _ca_cert("Rollover Root", "Rollover Root", new, old)
    leaf = _leaf_of("Rollover Root", new, "rolled")
    verifier = Verifier(trust_store=TrustStore.from_certificates([anchor]), cache_size=0)
    chain = [leaf, rolled, *_unrelated(others)]
    assert verifier.verify(chain).common_name == "rolled"
    assert verifier.verify([leaf, *chain[2:], rolled]).common_name == "rolled"


@pytest.mark.parametrize("others", [0, 2, 3])
def test_a_key_rollover_of_an_intermediate_stays_beside_unrelated_cas(others: int) -> None:
    """leaf -> I (new key, self-issued by I's old key) -> I (old key) -> anchor R."""
    root_key, old, new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    anchor = _ca_cert("Rollover Root", "Rollover Root", root_key, root_key)
    inter = _ca_cert("Rollover CA", "Rollover Root", old, root_key)
    rolled = _ca_cert("Rollover CA", "Rollover CA", new, old)
    leaf = _leaf_of("Rollover CA", new, "rolled below")
    verifier = Verifier(trust_store=TrustStore.from_certificates([anchor]), cache_size=0)
    chain = [leaf, rolled, inter, *_unrelated(others)]
    assert verifier.verify(chain).common_name == "rolled below"


def test_a_self_issued_ca_that_no_anchor_signed_costs_one_check_and_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client's own "rollover" of the anchor's name (its key, signed by another of its
    keys) is checked against the anchor once and never reaches the path builder; only the
    first two self-issued certificates are looked at."""
    import mtlsauth._pathbuilding as pb

    old = ec.generate_private_key(ec.SECP256R1())
    anchor = _ca_cert("Rollover Root", "Rollover Root", old, old)
    mine, other = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    fakes = [_ca_cert("Rollover Root", "Rollover Root", mine, other) for _ in range(5)]
    leaf = _leaf_of("Rollover Root", mine, "fake")
    checks = 0
    real = pb._signed_by

    def counting(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        nonlocal checks
        checks += 1
        return real(cert, issuer)

    monkeypatch.setattr(pb, "_signed_by", counting)
    chosen = select_intermediates(leaf, [*fakes, *_unrelated(3)], max_depth=8, anchors=[anchor])
    assert chosen == []
    assert checks <= 2 * pb.MAX_SELF_ISSUED  # is it self-signed; did the anchor sign it
    verifier = Verifier(trust_store=TrustStore.from_certificates([anchor]), cache_size=0)
    assert _code(verifier, [leaf, *fakes, *_unrelated(3)]) == "untrusted_issuer"


def test_selection_is_capped_by_max_depth(root: CA) -> None:
    cas = [root]
    for _ in range(6):
        cas.append(cas[-1].intermediate())
    leaf = cas[-1].issue_client_cert(common_name="deep").certificate
    chain = [c.certificate for c in reversed(cas[1:])]
    assert len(select_intermediates(leaf, chain, max_depth=2)) == 3  # one level beyond, to tell
    verifier = Verifier(trust_store=root.trust_store(), max_depth=2, cache_size=0)
    assert _code(verifier, [leaf, *chain]) == "chain_too_long"
    deep_enough = Verifier(trust_store=root.trust_store(), max_depth=6, cache_size=0)
    assert deep_enough.verify([leaf, *chain]).common_name == "deep"


# --- 6. error codes that misreported the cause ---------------------------------------------


def test_unknown_ca_with_its_own_root_is_untrusted_issuer(root: CA) -> None:
    other = CA(organization="Unknown Corp")
    inter = other.intermediate()
    leaf = inter.issue_client_cert()
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    bundle = [*leaf.chain_der, der(other.certificate)]
    assert _code(verifier, bundle) == "untrusted_issuer"
    assert _code(verifier, [leaf.der, der(other.certificate)]) == "untrusted_issuer"


def test_a_loop_of_cross_issued_cas_is_untrusted_issuer(root: CA) -> None:
    # A is issued by B's name and B by A's name: the builder can walk in circles.
    key_a = ec.generate_private_key(ec.SECP256R1())
    key_b = ec.generate_private_key(ec.SECP256R1())
    name_a, name_b = _cn("Loop A"), _cn("Loop B")
    now = dt.datetime.now(dt.timezone.utc)

    def ca_cert(
        subject: x509.Name,
        issuer: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(CA_KEY_USAGE, critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
            .sign(signer, hashes.SHA256())
        )

    a = ca_cert(name_a, name_b, key_a, key_b)
    b = ca_cert(name_b, name_a, key_b, key_a)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_cn("looped"))
        .issuer_name(name_a)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key_a, hashes.SHA256())
    )
    # No name path from the circle to an anchor: nothing reaches the path builder.
    assert select_intermediates(leaf, [a, b], max_depth=8, anchors=[root.certificate]) == []
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, a, b]) == "untrusted_issuer"
    small = Verifier(trust_store=root.trust_store(), max_depth=1, cache_size=0)
    assert _code(small, [leaf, a, b]) == "untrusted_issuer"


def _tbs_with_serial(tbs: bytes, serial: bytes) -> bytes:
    """``tbs`` with its serialNumber INTEGER's content replaced by ``serial``."""
    _, start, end = item(tbs, 0, len(tbs))
    _, _, version_end = item(tbs, start, end)
    _, _, serial_end = item(tbs, version_end, end)
    return tlv(0x30, tbs[start:version_end] + tlv(0x02, serial) + tbs[serial_end:end])


def test_a_serial_over_20_octets_is_malformed_not_an_unknown_issuer(root: CA) -> None:
    """RFC 5280 4.1.2.2: at most 20 octets. The engine refuses a longer one; that refusal
    named no cause mtlsauth knew and fell through to ``untrusted_issuer``."""
    inter = root.intermediate()
    tbs, alg, _ = split(der(inter.issue_client_cert().certificate))
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    for serial in (b"\x01" * 22, b"\x01" * 40):
        forged = _tbs_with_serial(tbs, serial)
        signature = inter.private_key.sign(forged, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg, union-attr]
        leaf = assemble(forged, alg, signature)
        assert _code(verifier, [leaf, der(inter.certificate)]) == "certificate_malformed"
    # 21 octets (20 random octets and a sign octet) is what the engine admits, and so do we
    forged = _tbs_with_serial(tbs, b"\x01" * 21)
    signature = inter.private_key.sign(forged, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg, union-attr]
    assert verifier.verify([assemble(forged, alg, signature), der(inter.certificate)])


def test_a_signature_algorithm_that_differs_from_the_signed_one_is_malformed(root: CA) -> None:
    inter = root.intermediate()
    tbs, _alg, signature = split(der(inter.issue_client_cert().certificate))
    ecdsa_sha384 = bytes.fromhex("300a06082a8648ce3d040303")
    leaf = assemble(tbs, ecdsa_sha384, signature[1:])
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, der(inter.certificate)]) == "certificate_malformed"


def _ca_under(
    root: CA, extensions: Iterable[tuple[x509.ExtensionType, bool]], *, bc_critical: bool = True
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_cn("Profile CA"))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=bc_critical)
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                root.private_key.public_key()  # type: ignore[arg-type]
            ),
            critical=False,
        )
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(root.private_key, hashes.SHA256()), key  # type: ignore[arg-type]


_AIA = x509.AuthorityInformationAccess(
    [
        x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP,
            x509.UniformResourceIdentifier("http://ocsp.example.test"),
        )
    ]
)
_NC = x509.NameConstraints(
    permitted_subtrees=[x509.DNSName("example.test")], excluded_subtrees=None
)


@pytest.mark.parametrize(
    ("extensions", "code"),
    [
        pytest.param([(_NC, True)], "certificate_malformed", id="leaf with name constraints"),
        pytest.param([(_NC, False)], "certificate_malformed", id="leaf with non-critical NC"),
        pytest.param([(_AIA, True)], "certificate_malformed", id="leaf with a critical AIA"),
        pytest.param([(_AIA, False)], None, id="leaf with a non-critical AIA"),
    ],
)
def test_a_leaf_profile_fault_is_named_not_an_unknown_issuer(
    root: CA, extensions: list[tuple[x509.ExtensionType, bool]], code: str | None
) -> None:
    """Extensions a client certificate must not carry, or not critical: the engine refuses
    them, and the refusal names the certificate, not a missing issuer."""
    leaf = _leaf(root, subject=_cn("profile"), extensions=extensions)
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    if code is None:
        assert verifier.verify(leaf).common_name == "profile"
    else:
        assert _code(verifier, leaf) == code


def test_a_leaf_with_a_critical_eku_is_malformed_not_an_unknown_issuer(root: CA) -> None:
    """The web-PKI profile wants the EKU non-critical; refused, and named as such."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_cn("critical eku"))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=True)
        .sign(root.private_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, der(leaf)) == "certificate_malformed"


@pytest.mark.parametrize(
    ("extensions", "bc_critical", "code"),
    [
        pytest.param(
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)],
            True,
            "invalid_usage",
            id="CA EKU serverAuth only",
        ),
        pytest.param(
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)],
            True,
            "invalid_usage",
            id="CA EKU codeSigning only",
        ),
        pytest.param([], False, "certificate_malformed", id="CA basicConstraints not critical"),
        pytest.param([(_AIA, True)], True, "certificate_malformed", id="CA with a critical AIA"),
        pytest.param(
            [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
            True,
            None,
            id="CA EKU clientAuth",
        ),
    ],
)
def test_an_intermediate_profile_fault_is_named_not_an_unknown_issuer(
    root: CA,
    extensions: list[tuple[x509.ExtensionType, bool]],
    bc_critical: bool,
    code: str | None,
) -> None:
    """A CA whose EKU leaves out clientAuth cannot vouch for a client (``invalid_usage``,
    as for a leaf's EKU; OpenSSL names both "unsupported certificate purpose"); a CA whose
    extensions break the profile's criticality rules is ``certificate_malformed``."""
    ca, ca_key = _ca_under(root, extensions, bc_critical=bc_critical)
    issuing = CA.__new__(CA)
    issuing.certificate, issuing.private_key = ca, ca_key  # type: ignore[assignment]
    leaf = _leaf(issuing, subject=_cn("under"))
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    if code is None:
        assert verifier.verify([leaf, der(ca)]).common_name == "under"
    else:
        assert _code(verifier, [leaf, der(ca)]) == code


# --- 5. client-certificate profile ----------------------------------------------------------

_SAN = x509.SubjectAlternativeName([x509.DNSName("client.example.com")])
_EMPTY = x509.Name([])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.mark.parametrize(
    ("subject", "extensions", "code"),
    [
        pytest.param(
            _cn("c"), [(_key_usage(cert_sign=True), True)], "invalid_usage", id="keyCertSign"
        ),
        pytest.param(
            _cn("c"), [(_key_usage(cert_sign=False), True)], None, id="digitalSignature only"
        ),
        pytest.param(
            _EMPTY, [(_SAN, False)], "certificate_malformed", id="empty subject, SAN not critical"
        ),
        pytest.param(_cn("c"), [(_SAN, True)], "certificate_malformed", id="subject, SAN critical"),
        pytest.param(_EMPTY, [], "certificate_malformed", id="empty subject, no SAN"),
        pytest.param(_EMPTY, [(_SAN, True)], None, id="empty subject, SAN critical"),
        pytest.param(_cn("c"), [(_SAN, False)], None, id="subject, SAN not critical"),
        pytest.param(_cn("c"), [], None, id="subject, no SAN"),
    ],
)
def test_client_certificate_profile(
    root: CA,
    subject: x509.Name,
    extensions: list[tuple[x509.ExtensionType, bool]],
    code: str | None,
) -> None:
    leaf = _leaf(root, subject=subject, extensions=extensions)
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    if code is None:
        assert verifier.verify(leaf).subject == subject.rfc4514_string()
    else:
        assert _code(verifier, leaf) == code


def test_pinned_certificate_with_key_cert_sign_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_cn("pinned signer"))
        .issuer_name(_cn("pinned signer"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    assert _code(Verifier(pinned=[cert]), der(cert)) == "invalid_usage"


def test_pinned_certificate_with_critical_san_and_a_subject_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_cn("pinned"))
        .issuer_name(_cn("pinned"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(_SAN, critical=True)
        .sign(key, hashes.SHA256())
    )
    assert _code(Verifier(pinned=[cert]), der(cert)) == "certificate_malformed"


_URI = x509.UniformResourceIdentifier("http://crl.example.test/a.crl")
_EXTENSIONS = {
    "unknown OID": x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"),
    "certificatePolicies": x509.CertificatePolicies(
        [x509.PolicyInformation(x509.ObjectIdentifier("2.5.29.32.0"), None)]
    ),
    "policyConstraints": x509.PolicyConstraints(
        require_explicit_policy=0, inhibit_policy_mapping=None
    ),
    "inhibitAnyPolicy": x509.InhibitAnyPolicy(0),
    "cRLDistributionPoints": x509.CRLDistributionPoints(
        [x509.DistributionPoint([_URI], None, None, None)]
    ),
    "freshestCRL": x509.FreshestCRL([x509.DistributionPoint([_URI], None, None, None)]),
    "subjectInfoAccess": x509.SubjectInformationAccess(
        [x509.AccessDescription(x509.ObjectIdentifier("1.3.6.1.5.5.7.48.5"), _URI)]
    ),
    "OCSP no check": x509.OCSPNoCheck(),
    "TLS feature": x509.TLSFeature([x509.TLSFeatureType.status_request]),
    "issuerAltName": x509.IssuerAlternativeName([x509.DNSName("ca.example.test")]),
    "policyMappings": x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.33"), b"0\x00"),
    "MS certificate template": x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.311.21.7"), b"0\x03\x06\x01\x01"
    ),
    "authorityInfoAccess": _AIA,
    "nameConstraints": _NC,
    "keyUsage": _key_usage(cert_sign=False),
    "subjectAltName": _SAN,
}


@pytest.mark.parametrize("critical", [False, True], ids=["non-critical", "critical"])
@pytest.mark.parametrize("name", list(_EXTENSIONS))
def test_a_pinned_leaf_meets_the_chains_extension_rules(
    root: CA, name: str, critical: bool
) -> None:
    """The same certificate, validated through its CA and pinned: the same verdict and code.
    Pins skip path validation, which refuses unknown critical extensions (``invalid_usage``),
    and name constraints or a critical AIA or EKU in a leaf (``certificate_malformed``)."""
    leaf = _leaf(root, subject=_cn("both ways"), extensions=[(_EXTENSIONS[name], critical)])
    by_chain = Verifier(trust_store=root.trust_store(), cache_size=0)
    pinned = Verifier(pinned=[leaf], cache_size=0)
    verdicts = []
    for verifier in (by_chain, pinned):
        try:
            verifier.verify(leaf)
        except MTLSAuthError as exc:
            verdicts.append(exc.code)
        else:
            verdicts.append("accepted")
    assert verdicts[0] == verdicts[1], verdicts
    if critical and name != "keyUsage":
        assert verdicts[0] != "accepted"  # the rule under test is the engine's


def test_a_pinned_leaf_with_an_unknown_critical_extension_is_invalid_usage() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_cn("pinned"))
        .issuer_name(_cn("pinned"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(_EXTENSIONS["unknown OID"], critical=True)
        .sign(key, hashes.SHA256())
    )
    assert _code(Verifier(pinned=[cert]), der(cert)) == "invalid_usage"


# --- 5. name constraints bind the names an identity is read from ---------------------------


def _constrained(
    root: CA,
    permitted: list[x509.GeneralName] | None = None,
    excluded: list[x509.GeneralName] | None = None,
) -> CA:
    return root.intermediate(
        name_constraints=x509.NameConstraints(
            permitted_subtrees=permitted, excluded_subtrees=excluded
        )
    )


def _email_subject(address: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "mail user"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, address),
        ]
    )


_DNS_OK = [x509.DNSName("example.com")]
_MAIL_OK = [x509.RFC822Name("example.com")]
_IP_OK = [x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))]


@pytest.mark.parametrize(
    ("permitted", "excluded", "subject", "admitted"),
    [
        # e-mail constraints apply to the subject's emailAddress (RFC 5280 4.2.1.10)
        pytest.param(
            _MAIL_OK, None, _email_subject("evil@attacker.test"), False, id="mail: outside"
        ),
        pytest.param(_MAIL_OK, None, _email_subject("ok@example.com"), True, id="mail: inside"),
        pytest.param(
            _MAIL_OK, None, _email_subject("ok@sub.example.com"), False, id="mail: host only"
        ),
        pytest.param(
            None,
            [x509.RFC822Name("attacker.test")],
            _email_subject("evil@attacker.test"),
            False,
            id="mail: excluded",
        ),
        pytest.param(
            None,
            [x509.RFC822Name("attacker.test")],
            _email_subject("evil@ATTACKER.test"),
            False,
            id="mail: excluded, other case",
        ),
        # DNS constraints apply to a CN that reads as a DNS name
        pytest.param(_DNS_OK, None, _cn("evil.attacker.test"), False, id="dns: outside"),
        pytest.param(_DNS_OK, None, _cn("evil.attacker.test."), False, id="dns: trailing dot"),
        pytest.param(
            _DNS_OK, None, _cn("evil\u3002attacker\u3002test"), False, id="dns: ideographic dots"
        ),
        pytest.param(_DNS_OK, None, _cn("api.example.com"), True, id="dns: inside"),
        pytest.param(_DNS_OK, None, _cn("API.Example.COM"), True, id="dns: inside, other case"),
        pytest.param(
            _DNS_OK, None, _cn("notexample.com"), False, id="dns: suffix is not a subtree"
        ),
        pytest.param(_DNS_OK, None, _cn("client 1"), True, id="dns: CN that is not a name"),
        pytest.param(
            None,
            [x509.DNSName("attacker.test")],
            _cn("evil.attacker.test"),
            False,
            id="dns: excluded",
        ),
        pytest.param(
            None,
            [x509.DNSName("attacker.test")],
            _cn("evil.\uff41ttacker.test"),
            False,
            id="dns: excluded, fullwidth letter",
        ),
        pytest.param(
            None,
            [x509.DNSName("attacker.test")],
            _cn("good.example.com"),
            True,
            id="dns: excluded elsewhere",
        ),
        # IP constraints apply to a CN that reads as an IP address
        pytest.param(_IP_OK, None, _cn("192.168.1.1"), False, id="ip: outside"),
        pytest.param(_IP_OK, None, _cn("10.1.2.3"), True, id="ip: inside"),
        pytest.param(_IP_OK, None, _cn("3232235777"), False, id="ip: integer form"),
        pytest.param(_IP_OK, None, _cn("0xc0.168.1.1"), False, id="ip: hex form"),
        pytest.param(
            None,
            [x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))],
            _cn("10.9.9.9"),
            False,
            id="ip: excluded",
        ),
        pytest.param(
            None,
            [x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))],
            _cn("::ffff:10.9.9.9"),
            False,
            id="ip: excluded, IPv4-mapped",
        ),
        # a CN that reads as an e-mail address, a URL or host:port
        pytest.param(_MAIL_OK, None, _cn("evil@attacker.test"), False, id="cn mail: outside"),
        pytest.param(_MAIL_OK, None, _cn("ops@example.com"), True, id="cn mail: inside"),
        pytest.param(_DNS_OK, None, _cn("https://evil.attacker.test/x"), False, id="dns: URL"),
        pytest.param(_DNS_OK, None, _cn("evil.attacker.test:443"), False, id="dns: host:port"),
        pytest.param(_DNS_OK, None, _cn("https://api.example.com/x"), True, id="dns: URL inside"),
    ],
)
def test_name_constraints_bind_san_less_leaves(
    root: CA,
    permitted: list[x509.GeneralName] | None,
    excluded: list[x509.GeneralName] | None,
    subject: x509.Name,
    admitted: bool,
) -> None:
    inter = _constrained(root, permitted, excluded)
    leaf = _leaf(inter, subject=subject)
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    chain = [leaf, der(inter.certificate)]
    if admitted:
        assert verifier.verify(chain).subject == subject.rfc4514_string()
    else:
        assert _code(verifier, chain) == "untrusted_issuer"


def test_cn_beside_a_good_san_must_satisfy_dns_constraints(root: CA) -> None:
    # The identity exposes the CN whether or not a SAN is present: it is bound too.
    inter = _constrained(root, _DNS_OK)
    good_san = x509.SubjectAlternativeName([x509.DNSName("ok.example.com")])
    leaf = _leaf(inter, subject=_cn("evil.attacker.test"), extensions=[(good_san, False)])
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, der(inter.certificate)]) == "untrusted_issuer"


def test_constraints_of_every_ca_on_the_path_apply(root: CA) -> None:
    # The root is unconstrained; the upper intermediate is; the issuing one is not.
    upper = _constrained(root, _DNS_OK)
    issuing = upper.intermediate()
    leaf = _leaf(issuing, subject=_cn("evil.attacker.test"))
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    chain = [leaf, der(issuing.certificate), der(upper.certificate)]
    assert _code(verifier, chain) == "untrusted_issuer"
    constrained_root = CA(
        name_constraints=x509.NameConstraints(permitted_subtrees=_MAIL_OK, excluded_subtrees=None)
    )
    leaf = _leaf(constrained_root, subject=_email_subject("evil@attacker.test"))
    verifier = Verifier(trust_store=constrained_root.trust_store(), cache_size=0)
    assert _code(verifier, leaf) == "untrusted_issuer"


@pytest.mark.parametrize("excluded", [False, True])
def test_directory_name_constraints_are_refused_even_for_san_less_leaves(
    root: CA, excluded: bool
) -> None:
    subtree = [
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "good")]))
    ]
    inter = _constrained(root, None if excluded else subtree, subtree if excluded else None)
    leaf = _leaf(inter, subject=_cn("anyone"))
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, der(inter.certificate)]) == "untrusted_issuer"


# --- the same verdicts from OpenSSL ---------------------------------------------------------

_OPENSSL = shutil.which("openssl")


def _openssl_verify(tmp: Path, root: CA, chain: list[bytes]) -> bool:
    def pem(data: bytes) -> bytes:
        return x509.load_der_x509_certificate(data).public_bytes(Encoding.PEM)

    (tmp / "root.pem").write_bytes(root.cert_pem.bytes())
    (tmp / "untrusted.pem").write_bytes(b"".join(pem(c) for c in chain[1:]) or pem(chain[0]))
    (tmp / "leaf.pem").write_bytes(pem(chain[0]))
    assert _OPENSSL is not None
    args = [
        _OPENSSL,
        "verify",
        "-x509_strict",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(tmp / "root.pem"),
    ]
    if len(chain) > 1:
        args += ["-untrusted", str(tmp / "untrusted.pem")]
    done = subprocess.run([*args, str(tmp / "leaf.pem")], capture_output=True, check=False)
    print(done.stdout.decode(), done.stderr.decode())
    return done.returncode == 0


@pytest.mark.skipif(_OPENSSL is None, reason="the openssl command is not installed")
@pytest.mark.parametrize(
    ("case", "admitted"),
    [
        ("key_cert_sign", False),
        ("mail_outside", False),
        ("mail_inside", True),
        ("ip_outside", False),
        ("good", True),
    ],
)
def test_openssl_agrees(root: CA, tmp_path: Path, case: str, admitted: bool) -> None:
    if case == "key_cert_sign":
        chain = [_leaf(root, subject=_cn("c"), extensions=[(_key_usage(cert_sign=True), True)])]
    elif case.startswith("mail"):
        inter = _constrained(root, _MAIL_OK)
        address = "evil@attacker.test" if case == "mail_outside" else "ok@example.com"
        chain = [_leaf(inter, subject=_email_subject(address)), der(inter.certificate)]
    elif case == "ip_outside":
        inter = _constrained(root, _IP_OK)
        chain = [_leaf(inter, subject=_cn("192.168.1.1")), der(inter.certificate)]
    else:
        chain = [_leaf(root, subject=_cn("c"))]
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    if case == "ip_outside":
        # OpenSSL applies IP constraints to SANs only; mtlsauth also to a CN that is an IP.
        assert _openssl_verify(tmp_path, root, chain) is True
        assert _code(verifier, chain) == "untrusted_issuer"
        return
    assert _openssl_verify(tmp_path, root, chain) is admitted
    if admitted:
        assert verifier.verify(chain).issuer
    else:
        expected = "invalid_usage" if case == "key_cert_sign" else "untrusted_issuer"
        assert _code(verifier, chain) == expected


@pytest.mark.parametrize("expired", [True, False])
def test_an_anchor_outside_its_validity_is_named_as_such(expired: bool) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    if expired:
        anchor = CA(not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    else:
        anchor = CA(not_before=now + dt.timedelta(days=1), not_after=now + dt.timedelta(days=10))
    leaf = anchor.issue_client_cert()
    verifier = Verifier(trust_store=anchor.trust_store(), cache_size=0)
    expected = "certificate_expired" if expired else "certificate_not_yet_valid"
    assert _code(verifier, leaf.der) == expected


def test_ipv4_mapped_san_meets_ipv4_exclusions(root: CA) -> None:
    # Policies match ::ffff:10.1.1.1 as 10.1.1.1, so a CA's 10.0.0.0/8 exclusion covers it.
    inter = _constrained(root, None, [x509.IPAddress(ipaddress.ip_network("10.0.0.0/8"))])
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("::ffff:10.1.1.1"))])
    leaf = _leaf(inter, subject=_cn("mapped"), extensions=[(san, False)])
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, der(inter.certificate)]) == "untrusted_issuer"
    other = x509.SubjectAlternativeName(
        [x509.IPAddress(ipaddress.ip_address("::ffff:192.168.1.1"))]
    )
    leaf = _leaf(inter, subject=_cn("mapped"), extensions=[(other, False)])
    assert verifier.verify([leaf, der(inter.certificate)]).common_name == "mapped"


def _attacker_ca_chain(
    root: CA, names: list[x509.Name], *, width: int = 1
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """A leaf under attacker-held CAs named ``names`` (leaf side first); the last names the
    root as its issuer but is signed by an attacker key. ``width`` look-alikes per level."""
    now = dt.datetime.now(dt.timezone.utc)
    keys = [[ec.generate_private_key(ec.SECP256R1()) for _ in range(width)] for _ in names]
    issuers = [*names[1:], root.certificate.subject]
    certs = []
    for level, (subject, issuer) in enumerate(zip(names, issuers, strict=True)):
        signer = (
            keys[level + 1][0]
            if level + 1 < len(names)
            else ec.generate_private_key(ec.SECP256R1())
        )
        for key in keys[level]:
            certs.append(
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(issuer)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=3))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(CA_KEY_USAGE, critical=True)
                .sign(signer, hashes.SHA256())
            )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_cn("attacker leaf"))
        .issuer_name(names[0])
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(keys[0][0], hashes.SHA256())
    )
    return leaf, certs


@pytest.mark.parametrize(("levels", "width"), [(5, 3), (3, 5), (15, 1)])
def test_attacker_lattices_up_to_the_root_name_never_reach_the_path_builder(
    root: CA, levels: int, width: int
) -> None:
    # Every link verifies (the attacker holds every key) except the top one: checked from the
    # top, the whole lattice costs one failed signature check per certificate at that level.
    names = [_cn(f"Attacker level {i}") for i in range(levels)]
    leaf, certs = _attacker_ca_chain(root, names, width=width)
    anchors = [root.certificate]
    assert select_intermediates(leaf, certs, max_depth=8, anchors=anchors) == []
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    assert _code(verifier, [leaf, *certs][:16]) == "untrusted_issuer"


def test_a_genuine_chain_longer_than_max_depth_is_chain_too_long_without_path_building(
    root: CA,
) -> None:
    cas = [root]
    for _ in range(4):
        cas.append(cas[-1].intermediate())
    leaf = cas[-1].issue_client_cert(common_name="deep").certificate
    chain = [c.certificate for c in reversed(cas[1:])]
    verifier = Verifier(trust_store=root.trust_store(), max_depth=2, cache_size=0)
    assert _code(verifier, [leaf, *chain]) == "chain_too_long"
    # The same length by names, but not backed by signatures: untrusted, not too long.
    names = [_cn(f"Fake level {i}") for i in range(4)]
    fake_leaf, fakes = _attacker_ca_chain(root, names)
    assert _code(verifier, [fake_leaf, *fakes]) == "untrusted_issuer"


def test_a_revoked_pin_under_an_intermediate_is_not_admitted_without_it(root: CA) -> None:
    """Whether a pinned certificate chains to the trust store, and so whether its revocation
    is checked, must not be the client's choice: sent without its intermediate (or with an
    intermediate that does not validate), a revoked pin was admitted on the pin alone."""
    inter = root.intermediate()
    leaf = inter.issue_client_cert(common_name="pinned-and-revoked")
    crls = CRLSet.from_pem(root.crl().bytes() + inter.revoke(leaf).bytes())
    verifier = Verifier(trust_store=root.trust_store(), pinned=[leaf.certificate], revocation=crls)
    assert _code(verifier, leaf.der) == "revocation_unavailable"
    stranger = CA(organization="Stranger").certificate.public_bytes(Encoding.DER)
    assert _code(verifier, [leaf.der, stranger]) == "revocation_unavailable"
    assert _code(verifier, leaf.chain_der) == "certificate_revoked"
