"""This round's fixes attacked again: each test fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlsauth import TrustStore, server_ssl_context
from mtlsauth._cli._testpki import TestPKI, write_test_pki

# Not a key: only its shape matters (the header, and a body that must not be echoed).
_FAKE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nTUFSS0VSLW5vdC1hLWtleS1tYXJrZXI=\n-----END PRIVATE KEY-----\n"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return write_test_pki(tmp_path_factory.mktemp("pki"))


def test_pem_text_as_a_path_object_is_refused_without_echoing_it(pki: TestPKI) -> None:
    trust = TrustStore.from_pem_file(pki.path("ca.pem"), reload_interval=None)
    with pytest.raises(ValueError, match="PEM text where a file path belongs") as info:
        server_ssl_context(
            certfile=pki.path("server.pem"), keyfile=Path(_FAKE_KEY), trust_store=trust
        )
    assert "TUFSS0VS" not in str(info.value)
    with pytest.raises(ValueError, match="PEM text where a file path belongs") as info:
        TrustStore.from_pem_file(Path(_FAKE_KEY))
    assert "TUFSS0VS" not in str(info.value)
