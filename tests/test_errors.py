"""The error tree: codes, statuses and messages are a public contract."""

from __future__ import annotations

import pickle

import pytest

from mtlsauth import (
    CertificateInvalid,
    CertificateMissing,
    CertificateRevoked,
    IdentityMissing,
    InternalError,
    MTLSAuthError,
    PolicyDenied,
    RevocationUnavailable,
    UntrustedForwarder,
)

TABLE = [
    pytest.param(CertificateMissing, 401, {"certificate_missing"}, id="missing"),
    pytest.param(
        CertificateInvalid,
        401,
        {
            "certificate_malformed",
            "untrusted_issuer",
            "certificate_expired",
            "certificate_not_yet_valid",
            "invalid_usage",
            "chain_too_long",
            "pin_mismatch",
            "tls_verification_failed",
            "weak_key",
        },
        id="invalid",
    ),
    pytest.param(CertificateRevoked, 401, {"certificate_revoked"}, id="revoked"),
    pytest.param(
        RevocationUnavailable, 401, {"revocation_unavailable"}, id="revocation unavailable"
    ),
    pytest.param(
        PolicyDenied,
        403,
        {
            "subject_not_allowed",
            "common_name_not_allowed",
            "organization_not_allowed",
            "organizational_unit_not_allowed",
            "issuer_not_allowed",
            "dns_name_not_allowed",
            "uri_not_allowed",
            "spiffe_id_not_allowed",
            "email_not_allowed",
            "ip_address_not_allowed",
            "fingerprint_not_allowed",
            "certificate_denied",
        },
        id="policy",
    ),
    pytest.param(UntrustedForwarder, 401, {"untrusted_forwarder"}, id="untrusted forwarder"),
    pytest.param(IdentityMissing, 500, {"identity_missing"}, id="identity missing"),
    pytest.param(InternalError, 500, {"internal_error"}, id="internal error"),
]


@pytest.mark.parametrize(("cls", "status", "codes"), TABLE)
def test_codes_and_statuses(cls: type[MTLSAuthError], status: int, codes: set[str]) -> None:
    assert issubclass(cls, MTLSAuthError)
    assert cls.codes == codes
    for code in codes:
        err = cls("why", code=code)
        assert (err.code, err.status, err.detail, str(err)) == (code, status, "why", "why")
    assert cls().code == cls.default_code
    with pytest.raises(ValueError, match="has no code"):
        cls(code="made_up")


def test_revocation_unavailable_is_a_certificate_invalid() -> None:
    assert issubclass(RevocationUnavailable, CertificateInvalid)


def test_errors_survive_pickling() -> None:
    err = pickle.loads(pickle.dumps(CertificateInvalid("old", code="certificate_expired")))  # noqa: S301
    assert (type(err), err.code, err.detail) == (CertificateInvalid, "certificate_expired", "old")


def test_every_core_code_has_an_explanation_and_the_cli_prints_it() -> None:
    from mtlsauth import _errors
    from mtlsauth._cli._main import _explain

    classes = [
        c
        for c in vars(_errors).values()
        if isinstance(c, type) and issubclass(c, _errors.MTLSAuthError)
    ]
    assert len(classes) == 11
    for cls in classes:
        assert cls.codes == frozenset(cls.__dict__["explanations"]), cls
        for code in cls.codes:
            assert _explain(code) == cls.explanations[code]
    assert "allow-list" in _explain("spiffe_id_not_allowed")
    assert _explain("verification_busy").startswith("too many")
    assert _explain("no_such_code") == "no such code"


def test_request_errors_are_exported() -> None:
    import mtlsauth
    from mtlsauth import _guard, adapters

    assert mtlsauth.AmbiguousRequest is adapters.AmbiguousRequest is _guard.AmbiguousRequest
    assert mtlsauth.VerificationBusy is adapters.VerificationBusy is _guard.VerificationBusy
    assert (mtlsauth.AmbiguousRequest.status, mtlsauth.VerificationBusy.status) == (400, 503)
