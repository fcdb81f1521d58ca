"""x5t#S256 parsing and the certificate binding check (RFC 8705 section 3.1)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from mtlsauth import Verifier
from mtlsauth.testing import CA


@pytest.fixture(scope="module")
def bound(ca: CA):
    # A certificate whose thumbprint uses '-' or '_', so the alphabet mutation changes it.
    verifier = Verifier(trust_store=ca.trust_store())
    for _ in range(50):
        cert = ca.issue_client_cert(common_name="alice")
        identity = verifier.verify_pem(cert.chain_pem.text())
        if set(identity.x5t_s256() or "") & {"-", "_"}:
            return identity
    raise AssertionError("no thumbprint with '-' or '_' in 50 certificates")


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t + "=", id="one padding character"),
        pytest.param(lambda t: t + "==", id="two padding characters"),
        pytest.param(lambda t: t.replace("-", "+").replace("_", "/"), id="base64 alphabet"),
        pytest.param(lambda t: " " + t, id="leading space"),
        pytest.param(lambda t: t + "\n", id="trailing newline"),
        pytest.param(lambda t: t[:-1], id="truncated"),
        pytest.param(lambda t: t + "A", id="one character more"),
        pytest.param(lambda t: t.lower(), id="lower-cased"),
        pytest.param(lambda t: t[:-1] + "\u00e9", id="non-ASCII character"),
        pytest.param(lambda t: t[:-1] + "\x00", id="NUL character"),
    ],
)
def test_a_non_canonical_thumbprint_never_matches(bound, mutate) -> None:
    mine = bound.x5t_s256()
    theirs = mutate(mine)
    assert theirs != mine
    assert bound.matches_token_binding({"x5t#S256": theirs}) is False


def test_a_non_canonical_last_character_never_matches(bound) -> None:
    # SHA-256 is 32 bytes: 43 base64url characters, the last carrying 2 unused bits.
    # A last character that differs only in those bits decodes to the same bytes.
    mine = bound.x5t_s256()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(mine[-1])
    sibling = mine[:-1] + alphabet[index ^ 1]
    assert base64.urlsafe_b64decode(sibling + "=") == base64.urlsafe_b64decode(mine + "=")
    assert bound.matches_token_binding({"x5t#S256": sibling}) is False


def test_the_exact_thumbprint_matches(bound) -> None:
    expected = _b64u(hashlib.sha256(bound.certificate.public_bytes(_der())).digest())
    assert bound.x5t_s256() == expected
    assert bound.matches_token_binding({"x5t#S256": expected}) is True


@pytest.mark.parametrize(
    "cnf",
    [
        pytest.param({"x5t#S256": 42}, id="number"),
        pytest.param({"x5t#S256": None}, id="null"),
        pytest.param({"x5t#S256": b"bytes"}, id="bytes"),
        pytest.param({"x5t#S256": ["a"]}, id="list"),
        pytest.param({}, id="empty cnf"),
        pytest.param({"jkt": "abc"}, id="another confirmation method"),
        pytest.param(None, id="no cnf"),
        pytest.param("x5t#S256", id="a string"),
    ],
)
def test_malformed_cnf_never_matches(bound, cnf) -> None:
    assert bound.matches_token_binding(cnf) is False


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}, id="DPoP jkt"),
        pytest.param({"jwk": {"kty": "EC"}}, id="a jwk"),
        pytest.param({"x5t": "AAAA"}, id="a SHA-1 thumbprint"),
        pytest.param({"x5t#S256 ": "AAAA"}, id="a near-duplicate name"),
    ],
)
def test_a_cnf_with_another_member_never_matches(bound, extra) -> None:
    # The same rule as TokenCheck: a cnf this check cannot confirm completely is refused,
    # or confirming the certificate alone would drop the issuer's other proof.
    cnf = {"x5t#S256": bound.x5t_s256(), **extra}
    assert bound.matches_token_binding(cnf) is False
