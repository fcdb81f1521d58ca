"""An intermediate already validated up to an anchor is checked once, not on every new leaf.

After a path leaf -> I -> root validates, later leaves under I are validated against I alone
and the root is appended (``_pathvalidation._verify_vouched``). These tests hold what that
shortcut must never change: every refusal the full validation makes, made again with I
vouched for. Each refusal case first validates a good sibling under the same CAs, so the
shortcut is armed, and checks that it was (a test that never armed it would prove nothing).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

import mtlsauth._pathvalidation as pathvalidation
from _verdicts import verdict
from _x509_forge import resign
from mtlsauth import ClientIdentity, CRLSet, TrustStore, Verifier
from mtlsauth.testing import CA, ClientCert

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
DAY = dt.timedelta(days=1)


def _vouched(verifier_store: object, intermediate: x509.Certificate) -> bool:
    table = pathvalidation._VOUCHED.get(id(verifier_store))
    if table is None or table.store is not verifier_store:
        return False
    return any(e.intermediate == intermediate for e in table.entries.values())


def _store(verifier: Verifier) -> object:
    trust = verifier._trust_store
    assert trust is not None
    return trust.snapshot().store


def _armed(root: CA, inter: CA, *, at: dt.datetime | None = None, **leaf: object) -> Verifier:
    """A verifier (cache off) that has validated a good leaf under ``inter``: I vouched for."""
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    good = inter.issue_client_cert(dns_names=["good.payments.svc"], **leaf)  # type: ignore[arg-type]
    verifier.verify(good.chain_der, at=at)
    assert _vouched(_store(verifier), inter.certificate)
    return verifier


def _verify_counting_full_runs(verifier: Verifier, inter: CA) -> tuple[ClientIdentity, int]:
    """Verify a new leaf under ``inter``; also say how often the full validation ran."""
    calls: list[int] = []
    full = pathvalidation._verify

    def counting(*args: object, **kwargs: object) -> list[x509.Certificate]:
        calls.append(1)
        return full(*args, **kwargs)  # type: ignore[arg-type]

    pathvalidation._verify = counting  # type: ignore[assignment]
    try:
        identity = verifier.verify(inter.issue_client_cert(common_name="second").chain_der)
    finally:
        pathvalidation._verify = full
    return identity, len(calls)


def test_a_second_leaf_takes_the_shortcut_and_gets_the_same_chain() -> None:
    root = CA()
    inter = root.intermediate()
    verifier = _armed(root, inter)
    identity, full_runs = _verify_counting_full_runs(verifier, inter)
    assert full_runs == 0  # the full validation did not run
    assert [c.subject for c in identity.chain] == [
        identity.chain[0].subject,
        inter.certificate.subject,
        root.certificate.subject,
    ]
    assert identity.chain[2] == root.certificate


def test_a_root_with_name_constraints_is_never_vouched_for() -> None:
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("payments.svc")], excluded_subtrees=None
    )
    root = CA(name_constraints=constraints)
    inter = root.intermediate()
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    verifier.verify(inter.issue_client_cert(dns_names=["a.payments.svc"]).chain_der)
    outside = inter.issue_client_cert(dns_names=["evil.example.com"])
    assert verdict(verifier, outside.chain_der) == "untrusted_issuer"


def test_the_roots_validity_is_checked_at_each_validation() -> None:
    root = CA(not_after=NOW + 10 * DAY)
    inter = root.intermediate(not_after=NOW + 100 * DAY)
    leaf_kw = {"not_after": NOW + 50 * DAY}
    verifier = _armed(root, inter, **leaf_kw)
    late = inter.issue_client_cert(common_name="late", **leaf_kw)  # type: ignore[arg-type]
    assert verdict(verifier, late.chain_der, at=NOW + 20 * DAY) == "certificate_expired"
    assert verdict(verifier, late.chain_der, at=NOW + DAY) == "accepted"


def test_a_root_not_yet_valid_at_an_earlier_time_is_refused() -> None:
    root = CA(not_before=NOW - DAY)
    inter = root.intermediate(not_before=NOW - 30 * DAY)
    verifier = _armed(root, inter)
    early = inter.issue_client_cert(not_before=NOW - 30 * DAY)
    assert verdict(verifier, early.chain_der, at=NOW - 10 * DAY) == "certificate_not_yet_valid"


def test_the_intermediates_own_validity_is_still_checked() -> None:
    root = CA()
    inter = root.intermediate(not_after=NOW + 10 * DAY)
    verifier = _armed(root, inter)
    leaf = inter.issue_client_cert(not_after=NOW + 50 * DAY)
    assert verdict(verifier, leaf.chain_der, at=NOW + 20 * DAY) == "certificate_expired"


@pytest.mark.parametrize(
    "case",
    [
        "forged signature",
        "server EKU",
        "a CA as the leaf",
        "outside the intermediate's name constraints",
        "unknown critical extension",
    ],
)
def test_leaf_refusals_are_unchanged_by_the_shortcut(case: str) -> None:
    root = CA()
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("payments.svc")], excluded_subtrees=None
    )
    inter = root.intermediate(name_constraints=constraints)
    verifier = _armed(root, inter)
    cold = Verifier(trust_store=root.trust_store(), cache_size=0)
    if case == "forged signature":
        impostor = CA(common_name=inter.certificate.subject.rfc4514_string())
        impostor.certificate = inter.certificate  # same name and key identifiers in the leaf
        impostor.private_key = ec.generate_private_key(ec.SECP256R1())
        leaf = impostor.issue_client_cert(dns_names=["x.payments.svc"])
        chain = (leaf.der, inter.certificate.public_bytes(Encoding.DER))
    elif case == "server EKU":
        chain = inter.issue_client_cert(dns_names=["x.payments.svc"], eku="server").chain_der
    elif case == "a CA as the leaf":
        chain = inter.issue_client_cert(dns_names=["x.payments.svc"], ca=True).chain_der
    elif case == "outside the intermediate's name constraints":
        chain = inter.issue_client_cert(dns_names=["x.example.com"]).chain_der
    else:
        unknown = x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"
        )
        chain = inter.issue_client_cert(
            dns_names=["x.payments.svc"], extra_extensions=[(unknown, True)]
        ).chain_der
    warm = verdict(verifier, chain)
    assert warm != "accepted"
    assert warm == verdict(cold, chain)


def test_a_reload_starts_afresh(tmp_path: Path) -> None:
    root = CA()
    inter = root.intermediate()
    other = CA()
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(root.cert_pem.bytes() + other.cert_pem.bytes())
    store = TrustStore.from_pem_file(bundle)
    verifier = Verifier(trust_store=store, cache_size=0)
    verifier.verify(inter.issue_client_cert().chain_der)
    assert _vouched(_store(verifier), inter.certificate)
    bundle.write_bytes(other.cert_pem.bytes())
    assert store.reload()
    assert verdict(verifier, inter.issue_client_cert().chain_der) == "untrusted_issuer"


def test_the_leaf_alone_still_needs_the_intermediate_presented_or_configured() -> None:
    root = CA()
    inter = root.intermediate()
    verifier = _armed(root, inter)
    leaf = inter.issue_client_cert()
    assert verdict(verifier, (leaf.der,)) == "untrusted_issuer"


# --- more than one way up: the shortcut must take the path the full validation takes ---------
#
# cryptography's builder tries the potential issuers of each certificate in one order (trust
# anchors first, then the candidates, both sorted by key identifier match) and returns the
# first path that validates. mtlsauth's own checks (name constraints on subject names,
# revocation) then run on that one path. When a certificate has two possible issuers, the
# path through a vouched-for intermediate may not be the one a fresh verifier returns.

_CONSTRAINED = x509.NameConstraints(
    permitted_subtrees=[x509.DNSName("payments.svc")], excluded_subtrees=None
)


def _copy(
    of: CA,
    issuer: CA,
    *,
    name_constraints: x509.NameConstraints | None = None,
    ski: bool = True,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """A CA certificate with ``of``'s name and key, issued by ``issuer`` (itself: a root)."""
    key = of.private_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(of.certificate.subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or of.certificate.not_valid_before_utc)
        .not_valid_after(of.certificate.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
    )
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key), False)
    if name_constraints is not None:
        builder = builder.add_extension(name_constraints, critical=True)
    return builder.sign(issuer.private_key, hashes.SHA256())  # type: ignore[arg-type]


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _outside_by_subject(inter: CA) -> ClientCert:
    """SANs inside ``_CONSTRAINED``, a commonName outside it (mtlsauth's own check reads it)."""
    return inter.issue_client_cert(common_name="evil.example.com", dns_names=["b.payments.svc"])


@pytest.mark.parametrize("armed_by", ["a leaf outside the constraints", "a time it is not valid"])
def test_two_anchors_with_one_name_and_key_the_constrained_one_first(armed_by: str) -> None:
    """The trust store holds a root twice (same name and key), the first copy with name
    constraints: the full validation tries that copy first and its constraints apply."""
    root = CA(not_before=NOW - 60 * DAY)
    inter = root.intermediate(not_before=NOW - 60 * DAY)
    if armed_by == "a time it is not valid":
        constrained = _copy(root, root, name_constraints=_CONSTRAINED, not_before=NOW - DAY)
        arm, at = inter.issue_client_cert(not_before=NOW - 30 * DAY), NOW - 10 * DAY
    else:
        constrained = _copy(root, root, name_constraints=_CONSTRAINED)
        arm, at = inter.issue_client_cert(dns_names=["a.example.com"]), NOW
    bundle = _pem(constrained, root.certificate)
    chain = _outside_by_subject(inter).chain_der
    fresh = verdict(Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0), chain)
    assert fresh == "untrusted_issuer"
    warm = Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0)
    assert verdict(warm, arm.chain_der, at=at) == "accepted"  # through the unconstrained copy
    assert verdict(warm, chain) == fresh


def test_an_anchor_with_the_intermediates_name_and_key() -> None:
    """An anchor named like I (I's key, self-signed, constrained) is tried before I itself."""
    root = CA()
    inter = root.intermediate()
    bundle = _pem(root.certificate, _copy(inter, inter, name_constraints=_CONSTRAINED))
    chain = _outside_by_subject(inter).chain_der
    fresh = verdict(Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0), chain)
    assert fresh == "untrusted_issuer"
    warm = Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0)
    assert (
        verdict(warm, inter.issue_client_cert(dns_names=["a.example.com"]).chain_der) == "accepted"
    )
    assert verdict(warm, chain) == fresh


def test_a_cross_signed_copy_of_the_intermediate_sent_before_it() -> None:
    """I and a copy of I (same name and key) under another, constrained, root: the full
    validation takes the copy the client sent first."""
    root = CA()
    other = CA(name_constraints=_CONSTRAINED)
    inter = root.intermediate()
    copy = _copy(inter, other)
    bundle = _pem(root.certificate, other.certificate)
    leaf = _outside_by_subject(inter)
    chain = (leaf.der, _der(copy), _der(inter.certificate))
    fresh = verdict(Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0), chain)
    assert fresh == "untrusted_issuer"
    warm = Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0)
    assert verdict(warm, inter.issue_client_cert().chain_der) == "accepted"
    assert _vouched(_store(warm), inter.certificate)
    assert verdict(warm, chain) == fresh


def test_a_presented_ca_named_like_the_root_that_the_builder_tries_first() -> None:
    """A root without a subjectKeyIdentifier, and a cross-certificate of it (its name and
    key, under a constrained root) whose key identifier matches: cryptography tries the
    matching one first, so the full path runs through the constrained root."""
    base = CA()
    root = _copy(base, base, ski=False)
    other = CA(name_constraints=_CONSTRAINED)
    inter = base.intermediate()
    bridge = _copy(base, other)
    bundle = _pem(root, other.certificate)
    leaf = _outside_by_subject(inter)
    chain = (leaf.der, _der(inter.certificate), _der(bridge))
    fresh = verdict(Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0), chain)
    assert fresh == "untrusted_issuer"
    warm = Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0)
    assert verdict(warm, inter.issue_client_cert().chain_der) == "accepted"
    assert _vouched(_store(warm), inter.certificate)
    assert verdict(warm, chain) == fresh


def test_a_verifier_with_max_depth_0_sharing_the_store() -> None:
    """max_depth=0 admits no intermediate; the store of I alone would end the path at I."""
    root = CA()
    inter = root.intermediate()
    store = root.trust_store()
    Verifier(trust_store=store, cache_size=0).verify(inter.issue_client_cert().chain_der)
    shallow = Verifier(trust_store=store, max_depth=0, cache_size=0)
    assert _vouched(_store(shallow), inter.certificate)
    assert verdict(shallow, inter.issue_client_cert().chain_der) == "chain_too_long"


def test_a_client_that_sends_the_anchor_itself_still_takes_the_shortcut() -> None:
    """An anchor that is not self-signed (the trust store holds an issuing CA, not its root)
    is kept when the client sends it; it is the root's own certificate, no other way up."""
    top = CA()
    anchor = top.intermediate()
    inter = anchor.intermediate()
    verifier = Verifier(trust_store=TrustStore.from_pem(anchor.cert_pem.bytes()), cache_size=0)
    full_chain = inter.issue_client_cert().chain_der  # leaf, I, the anchor
    assert len(full_chain) == 3
    verifier.verify(full_chain)
    assert _vouched(_store(verifier), inter.certificate)
    identity, full_runs = _verify_counting_full_runs(verifier, inter)
    assert full_runs == 0
    assert identity.chain[2] == anchor.certificate


def test_a_revoked_copy_of_the_intermediate_sent_before_it_is_still_revoked() -> None:
    """Revocation is checked on the path the full validation takes: the copy of I that the
    client sends first, which its other root has revoked."""
    root = CA()
    other = CA()
    inter = root.intermediate()
    copy = _copy(inter, other)
    bundle = _pem(root.certificate, other.certificate)
    crls = root.crl().bytes() + other.revoke(copy).bytes() + inter.crl().bytes()
    leaf = inter.issue_client_cert()
    chain = (leaf.der, _der(copy), _der(inter.certificate))

    def verifier() -> Verifier:
        return Verifier(
            trust_store=TrustStore.from_pem(bundle),
            revocation=CRLSet.from_pem(crls),
            cache_size=0,
        )

    fresh = verdict(verifier(), chain)
    assert fresh == "certificate_revoked"
    warm = verifier()
    assert verdict(warm, inter.issue_client_cert().chain_der) == "accepted"
    assert _vouched(_store(warm), inter.certificate)
    assert verdict(warm, chain) == fresh


def test_the_tables_are_bounded() -> None:
    """Intermediates per store and stores with a table are bounded: a long-running process
    that meets many intermediates, or reloads often, keeps a fixed amount."""
    root = CA()
    verifier = Verifier(trust_store=root.trust_store(), cache_size=0)
    for _ in range(pathvalidation._VOUCHED_MAX + 10):
        verifier.verify(root.intermediate().issue_client_cert().chain_der)
    table = pathvalidation._VOUCHED[id(_store(verifier))]
    assert 0 < len(table.entries) <= pathvalidation._VOUCHED_MAX
    for _ in range(pathvalidation._VOUCHED_STORES + 2):
        other = CA()
        Verifier(trust_store=other.trust_store(), cache_size=0).verify(
            other.intermediate().issue_client_cert().chain_der
        )
    assert len(pathvalidation._VOUCHED) <= pathvalidation._VOUCHED_STORES


def test_names_spelled_otherwise_are_no_second_way_up_and_link_nothing() -> None:
    """cryptography links an issuer to a subject only when both names are the same DER, and
    the shortcut's tables compare the same bytes. An anchor and a presented copy bearing I's
    key and I's name as a PrintableString (I's own is a UTF8String) are no second way up for
    either; a leaf naming I that way has no path, fresh or warm."""
    root = CA(common_name="Names Root")
    inter = root.intermediate(common_name="Names Issuing CA")
    utf8, printable = (
        b"\x06\x03\x55\x04\x03" + bytes([tag, 16]) + b"Names Issuing CA" for tag in (0x0C, 0x13)
    )
    own = _der(_copy(inter, inter, name_constraints=_CONSTRAINED))
    anchor = x509.load_der_x509_certificate(
        resign(own, inter.private_key, (utf8, printable), (utf8, printable))
    )
    other = CA(name_constraints=_CONSTRAINED)
    copy = resign(_der(_copy(inter, other)), other.private_key, (utf8, printable))
    bundle = _pem(root.certificate, anchor)
    leaf = _outside_by_subject(inter)
    chain = (leaf.der, copy, _der(inter.certificate))
    respelled = (resign(leaf.der, inter.private_key, (utf8, printable)), _der(inter.certificate))
    fresh = Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0)
    assert verdict(fresh, chain) == "accepted"
    assert verdict(fresh, respelled) == "untrusted_issuer"
    warm = Verifier(trust_store=TrustStore.from_pem(bundle), cache_size=0)
    assert verdict(warm, inter.issue_client_cert().chain_der) == "accepted"
    assert _vouched(_store(warm), inter.certificate)
    identity = warm.verify(chain)
    assert identity.chain[1:] == (inter.certificate, root.certificate)
    assert verdict(warm, respelled) == "untrusted_issuer"
