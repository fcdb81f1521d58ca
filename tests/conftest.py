"""Session-wide test PKI: key generation is the slow part, so build it once."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mtlsauth.testing import CA, ClientCert


@dataclass(frozen=True)
class PKI:
    root: CA
    inter: CA
    other_root: CA
    good: ClientCert  # issued by the intermediate, with SANs and an O
    direct: ClientCert  # issued by the root directly


@pytest.fixture(scope="session")
def pki() -> PKI:
    root = CA(organization="Example Corp")
    inter = root.intermediate()
    good = inter.issue_client_cert(
        common_name="ledger",
        organization="payments",
        organizational_unit=["eng", "ops"],
        dns_names=["ledger.payments.svc"],
        uris=["spiffe://example.org/ns/payments/sa/ledger"],
        emails=["ledger@example.org"],
        ip_addresses=["10.1.2.3"],
    )
    return PKI(
        root=root,
        inter=inter,
        other_root=CA(organization="Evil Corp"),
        good=good,
        direct=root.issue_client_cert(common_name="direct"),
    )
