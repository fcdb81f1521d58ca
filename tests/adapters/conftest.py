"""In-process fixtures shared by the adapter tests: certificates for every outcome."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from mtlsauth import CRLSet, Verifier
from mtlsauth.testing import CA, ClientCert


@dataclass(frozen=True)
class Certs:
    good: ClientCert  # leaf + intermediate, O=payments, CN=ledger
    other_org: ClientCert  # same CA, O=ads (for policy denials)
    wrong_ca: ClientCert  # issued by a CA the verifier does not trust
    expired: ClientCert
    revoked: ClientCert  # issued by rev_ca, on its CRL
    unrevoked: ClientCert  # issued by rev_ca, not revoked
    rev_ca: CA
    crl_pem: bytes


@pytest.fixture(scope="session")
def certs(pki) -> Certs:
    now = dt.datetime.now(dt.timezone.utc)
    rev_ca = CA(organization="Revocation Test")
    revoked = rev_ca.issue_client_cert(common_name="retired")
    crl = rev_ca.revoke(revoked)
    return Certs(
        good=pki.good,
        other_org=pki.inter.issue_client_cert(common_name="ads-bot", organization="ads"),
        wrong_ca=pki.other_root.issue_client_cert(common_name="ledger", organization="payments"),
        expired=pki.inter.issue_client_cert(
            common_name="old",
            organization="payments",
            not_before=now - dt.timedelta(days=30),
            not_after=now - dt.timedelta(days=1),
        ),
        revoked=revoked,
        unrevoked=rev_ca.issue_client_cert(common_name="current"),
        rev_ca=rev_ca,
        crl_pem=crl.bytes(),
    )


@pytest.fixture(scope="session")
def verifier(pki) -> Verifier:
    return Verifier(trust_store=pki.root.trust_store())


@pytest.fixture(scope="session")
def rev_verifier(certs) -> Verifier:
    return Verifier(
        trust_store=certs.rev_ca.trust_store(), revocation=CRLSet.from_pem(certs.crl_pem)
    )


TRUSTED_PROXY = "10.0.0.1"
UNTRUSTED_PEER = "203.0.113.9"
CERT_HEADER = "x-ssl-client-cert"


@pytest.fixture(scope="session")
def fwd_verifier(pki) -> Verifier:
    """Accepts nginx's URL-escaped PEM header from 10.0.0.1 only."""
    from mtlsauth import ForwardedCert

    forwarded = ForwardedCert.preset(
        "nginx",
        header=CERT_HEADER,
        trusted_proxies=[TRUSTED_PROXY],
        single_certificate=False,  # the tests send leaf + intermediate in the header
    )
    return Verifier(trust_store=pki.root.trust_store(), forwarded=forwarded)
