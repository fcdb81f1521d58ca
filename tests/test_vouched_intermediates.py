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
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

import mtlsauth._pathvalidation as pathvalidation
from mtlsauth import CertificateInvalid, TrustStore, Verifier
from mtlsauth.testing import CA

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


def _code(verifier: Verifier, chain: tuple[bytes, ...], at: dt.datetime | None = None) -> str:
    try:
        verifier.verify(chain, at=at)
    except CertificateInvalid as exc:
        return exc.code
    return "accept"


def test_a_second_leaf_takes_the_shortcut_and_gets_the_same_chain() -> None:
    root = CA()
    inter = root.intermediate()
    verifier = _armed(root, inter)
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
    assert calls == []  # the full validation did not run
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
    assert _code(verifier, outside.chain_der) == "untrusted_issuer"


def test_the_roots_validity_is_checked_at_each_validation() -> None:
    root = CA(not_after=NOW + 10 * DAY)
    inter = root.intermediate(not_after=NOW + 100 * DAY)
    leaf_kw = {"not_after": NOW + 50 * DAY}
    verifier = _armed(root, inter, **leaf_kw)
    late = inter.issue_client_cert(common_name="late", **leaf_kw)  # type: ignore[arg-type]
    assert _code(verifier, late.chain_der, at=NOW + 20 * DAY) == "certificate_expired"
    assert _code(verifier, late.chain_der, at=NOW + DAY) == "accept"


def test_a_root_not_yet_valid_at_an_earlier_time_is_refused() -> None:
    root = CA(not_before=NOW - DAY)
    inter = root.intermediate(not_before=NOW - 30 * DAY)
    verifier = _armed(root, inter)
    early = inter.issue_client_cert(not_before=NOW - 30 * DAY)
    assert _code(verifier, early.chain_der, at=NOW - 10 * DAY) == "certificate_not_yet_valid"


def test_the_intermediates_own_validity_is_still_checked() -> None:
    root = CA()
    inter = root.intermediate(not_after=NOW + 10 * DAY)
    verifier = _armed(root, inter)
    leaf = inter.issue_client_cert(not_after=NOW + 50 * DAY)
    assert _code(verifier, leaf.chain_der, at=NOW + 20 * DAY) == "certificate_expired"


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
    warm = _code(verifier, chain)
    assert warm != "accept"
    assert warm == _code(cold, chain)


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
    assert _code(verifier, inter.issue_client_cert().chain_der) == "untrusted_issuer"


def test_the_leaf_alone_still_needs_the_intermediate_presented_or_configured() -> None:
    root = CA()
    inter = root.intermediate()
    verifier = _armed(root, inter)
    leaf = inter.issue_client_cert()
    assert _code(verifier, (leaf.der,)) == "untrusted_issuer"
