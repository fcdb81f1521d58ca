"""Session-wide test PKI: key generation is the slow part, so build it once."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import settings

from mtlsauth.testing import CA, ClientCert

# Property tests draw new examples on every local run, which is how they keep finding things.
# Under CI (``CI`` set) each draws the same examples every time, so a run's verdict depends on
# the code alone; a failure prints the blob that replays it (``@reproduce_failure``).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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
