"""What a refusal's text tells the client: nothing a server holds or sees internally.

The client-visible ``detail`` of a refusal is fixed per cause: it never varies with what
broke inside the server (an exception's type), and the operator finds the rest in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

import pytest
from cryptography import x509

from mtlsauth import MTLSAuthError, Presented, Verifier
from mtlsauth.testing import CA


class _Failing:
    """A revocation checker that breaks with an exception of the given type."""

    def __init__(self, exc: type[Exception]) -> None:
        self.exc = exc

    def check(self, chain: Sequence[x509.Certificate], *, at: datetime) -> datetime | None:
        raise self.exc("10.1.2.3:8080 refused")

    token = None
    may_block = False


def test_a_revocation_checker_that_breaks_tells_the_client_nothing_of_how(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Telling a refused connection from a timeout would make the checker a probe of the
    # server's network, as the OCSP checker's own refusals are careful not to be.
    ca = CA(organization="Broken revocation")
    leaf = ca.issue_client_cert(common_name="x")
    details = []
    with caplog.at_level(logging.ERROR, logger="mtlsauth"):
        for exc in (ConnectionRefusedError, TimeoutError, KeyError):
            verifier = Verifier(trust_store=ca.trust_store(), revocation=_Failing(exc))
            with pytest.raises(MTLSAuthError) as got:
                verifier.authenticate(Presented(peer="192.0.2.1", tls_chain=(leaf.der,)))
            assert got.value.code == "revocation_unavailable"
            details.append(got.value.detail)
    assert len(set(details)) == 1
    assert "Error" not in details[0]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "ConnectionRefusedError" in logged
    assert "TimeoutError" in logged
